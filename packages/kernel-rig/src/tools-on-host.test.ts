// The `ioas` command and the examples on the real kernel, inside the QEMU guest: what the command
// reads from the live sysfs, /dev and /proc agrees with what the kernel does (in particular
// `doctor` must not call a host broken where VFIO works: the conformance suite in this guest has
// just opened containers there), and examples/edu-driver.mjs drives the real edu device.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { lane, realMachine } from './targets.js';

const bin = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));
const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));

function node(script: string, args: string[]) {
  const result = spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
const ioas = (args: string[]) => node(bin, args);

if (lane === undefined) {
  describe('ioas on the real kernel', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` (root, Debian) to boot it', () => undefined);
  });
} else {
  const machine = realMachine();

  describe(`ioas on the real kernel, lane ${lane}`, () => {
    it('lists the groups the kernel has, with the edu device bound to vfio-pci', () => {
      const run = ioas(['groups', '--json']);
      expect(run.status, run.stderr).toBe(0);
      const { groups } = JSON.parse(run.stdout) as { groups: { group: number; devices: { address: string; driver: string | null }[]; reserved: { kind: string }[] }[] };
      expect(groups.map((group) => group.group)).toEqual(machine.sysfs.groups());
      const edu = groups.find((group) => group.devices.some((device) => device.address === machine.edu))!;
      expect(edu.group).toBe(machine.sysfs.deviceGroup(machine.edu));
      expect(edu.devices.find((device) => device.address === machine.edu)!.driver).toBe('vfio-pci');
      expect(edu.reserved.map((region) => region.kind)).toContain('msi');
    });

    it('doctor passes every check VFIO needs, on a host where VFIO works', () => {
      const run = ioas(['doctor', machine.edu, '--json']);
      const report = JSON.parse(run.stdout) as { ok: boolean; checks: { id: string; status: string; detail: string }[] };
      const status = Object.fromEntries(report.checks.map((check) => [check.id, `${check.status}: ${check.detail}`]));
      for (const id of ['iommu', 'modules', 'vfio-node', 'device', 'group', 'group-node', 'interrupts']) expect(status[id], id).toMatch(/^pass: /);
      expect(status.iommufd).toMatch(lane === 'iommufd' ? /^pass: / : /^(pass|warn): /);
      expect([run.status, report.ok]).toEqual([0, true]);
    });

    it('unbinds the edu device from vfio-pci and binds it back through driver_override', () => {
      const unbound = ioas(['unbind', machine.edu, '--yes', '--json']);
      expect(unbound.status, unbound.stderr).toBe(0);
      expect(JSON.parse(unbound.stdout)).toMatchObject({ address: machine.edu, before: 'vfio-pci', after: null, changed: true });
      // With no driver, doctor says so and how to fix it.
      const doctor = JSON.parse(ioas(['doctor', machine.edu, '--json']).stdout) as { checks: { id: string; status: string; fix?: string }[] };
      expect(doctor.checks.find((check) => check.id === 'device')).toMatchObject({ status: 'fail', fix: `ioas bind ${machine.edu}` });
      const bound = ioas(['bind', machine.edu, '--yes', '--json']);
      expect(bound.status, bound.stderr).toBe(0);
      expect(JSON.parse(bound.stdout)).toMatchObject({ address: machine.edu, before: null, after: 'vfio-pci', changed: true });
      const group = machine.sysfs.deviceGroup(machine.edu);
      expect(group).toBeDefined();
      expect(machine.syscalls.exists(`/dev/vfio/${group}`)).toBe(true);
    });

    it('runs examples/edu-driver.mjs on the real device: DMA round trip and MSI', () => {
      const run = node(`${examples}edu-driver.mjs`, ['--device', machine.edu]);
      expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(0);
      expect(run.stdout).toContain('"copied by the edu device, through the IOMMU, twice"');
      expect(run.stdout).toMatch(/MSIs received on the eventfd: [12]\n/);
    });
  });
}
