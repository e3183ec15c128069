// The built `ioas` binary, run as a user runs it: against sysfs trees written from the real-kernel
// rig's captures (6.1 VT-d and SMMUv3 guests, and the 6.12 VT-d guest whose LPC group is not
// viable), against the simulator, and with bad arguments and bad scenario files.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HEALTHY_HOST, writeHostTree, type HostFacts, type SysfsCapture } from '@ioas/vfio/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { colours, progressBar, type Io } from './output.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const examples = fileURLToPath(new URL('../examples/', import.meta.url));
const capture = (name: string): SysfsCapture => JSON.parse(readFileSync(new URL(`../../kernel-rig/fixtures/${name}.json`, import.meta.url), 'utf8')) as SysfsCapture;
const temporary: string[] = [];
afterAll(() => {
  for (const path of temporary) rmSync(path, { recursive: true, force: true });
});

const healthy: HostFacts = HEALTHY_HOST;

function tree(name: 'sysfs-x86' | 'sysfs-arm64' | 'sysfs-iommufd', host: HostFacts = healthy): string {
  const root = mkdtempSync(join(tmpdir(), 'ioas-cli-'));
  temporary.push(root);
  writeHostTree(root, capture(name), host);
  return root;
}

function ioas(args: string[], input?: string) {
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', input: input ?? '', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const vtd = tree('sysfs-x86');
const arm = tree('sysfs-arm64');

describe('ioas groups, reserved, ranges', () => {
  it('lists the VT-d guest groups with devices, drivers, viability and reserved regions', () => {
    const run = ioas(['groups', '--sysfs-root', vtd]);
    expect(run.status).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(/^group\s+viable\s+device\s+id\s+driver\s+reserved$/);
    expect(lines).toContainEqual(expect.stringMatching(/^3\s+yes\s+0000:00:03\.0\s+1234:11e8\s+vfio-pci\s+0xfee00000-0xfeefffff msi$/));
    expect(lines).toContainEqual(expect.stringMatching(/^7\s+yes\s+0000:00:1f\.0\s+8086:2918\s+-\s+0x0-0xffffff direct-relaxable$/));
  });

  it('gives a stable JSON shape with 64-bit values as hex strings', () => {
    const run = ioas(['groups', '--json', '--sysfs-root', arm]);
    expect(run.status).toBe(0);
    const parsed = JSON.parse(run.stdout) as { groups: { group: number }[] };
    expect(parsed.groups.find((group) => group.group === 4)).toEqual({
      group: 4,
      viable: true,
      vfio: true,
      devices: [{ address: '0000:00:02.0', vendor: '0x1234', device: '0x11e8', driver: 'vfio-pci' }],
      blockers: [],
      reserved: [{ start: '0x8000000', last: '0x80fffff', size: '0x100000', kind: 'msi' }],
    });
  });

  it('names what makes a group non-viable', () => {
    const run = ioas(['groups', '--sysfs-root', tree('sysfs-iommufd')]);
    expect(run.stdout).toMatch(/^6\s+no\s+0000:00:1f\.0/m);
    expect(run.stdout).toContain('group 6 is not viable: 0000:00:1f.2 is bound to ahci, 0000:00:1f.3 is bound to i801_smbus');
  });

  it('shows typed reserved regions and the usable ranges they leave: the kernel observed the same', () => {
    const reserved = ioas(['reserved', '7', '--sysfs-root', vtd]);
    expect(reserved.stdout).toMatch(/^0x0\s+0xffffff\s+16 MiB\s+direct-relaxable$/m);
    expect(reserved.stdout).toMatch(/^0xfee00000\s+0xfeefffff\s+1 MiB\s+msi$/m);
    // docs/kernel-rules.md#the-iova-range-capability: type1's IOVA_RANGE on this guest was [0-0xfedfffff], [0xfef00000-0x7fffffffff].
    const ranges = JSON.parse(ioas(['ranges', '3', '--aperture-bits', '39', '--json', '--sysfs-root', vtd]).stdout) as { usable: unknown };
    expect(ranges.usable).toEqual([
      { start: '0x0', last: '0xfedfffff', size: '0xfee00000' },
      { start: '0xfef00000', last: '0x7fffffffff', size: '0x7f01100000' },
    ]);
    const armRanges = ioas(['ranges', '4', '--sysfs-root', arm]);
    expect(armRanges.stdout).toContain('0x0-0x7ffffff');
    expect(armRanges.stdout).toContain('0x8100000-0xffffffffffffffff');
  });

  it('fails with exit 1 for a group that does not exist', () => {
    const run = ioas(['reserved', '9', '--sysfs-root', vtd]);
    expect([run.status, run.stderr]).toEqual([1, expect.stringMatching(/no IOMMU group 9 .* \(groups: 0, 1, 2, 3, 4, 5, 6, 7\)/)]);
  });
});

describe('ioas plan', () => {
  it('prints the seed example window table, and the planner output as is with --json', () => {
    const run = ioas(['plan', '--memory', '256M@0', '--page', '64M', '--msi-banks', '3']);
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(
      [
        'Total aperture: 512 MiB at 0x00000000, 8 windows of 64 MiB',
        '',
        'window  iova        kind',
        '0       0x00000000  guest RAM, 64 MiB',
        '1       0x04000000  guest RAM, 64 MiB',
        '2       0x08000000  guest RAM, 64 MiB',
        '3       0x0C000000  guest RAM, 64 MiB',
        '4       0x10000000  MSI bank 0',
        '5       0x14000000  MSI bank 1',
        '6       0x18000000  MSI bank 2',
        '7       —           disabled',
        '',
      ].join('\n'),
    );
    const plan = JSON.parse(ioas(['plan', '--memory', '256M@0', '--page', '64M', '--msi-banks', '3', '--json']).stdout) as Record<string, unknown>;
    expect(plan).toMatchObject({ aperture: { start: '0x0', size: '0x20000000' }, windowSize: '0x4000000', windowCount: 8 });
    expect((plan.windows as unknown[])[4]).toEqual({ index: 4, iova: '0x10000000', size: '0x4000000', kind: 'msi', msiBank: 0 });
  });

  it('takes several segments and a window limit', () => {
    const run = ioas(['plan', '--memory', '1G@0', '--memory', '1G@4G', '--page', '1G', '--msi-banks', '3', '--max-windows', '8', '--json']);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ windowSize: '0x40000000', windowCount: 8 });
    const impossible = ioas(['plan', '--memory', '1G@0', '--memory', '1G@64G', '--page', '1G', '--msi-banks', '3', '--max-windows', '8']);
    expect([impossible.status, impossible.stderr]).toEqual([1, expect.stringMatching(/plan-impossible: .*at most 8 are allowed/)]);
  });
});

describe('ioas doctor', () => {
  it('passes a healthy host and device', () => {
    const run = ioas(['doctor', '0000:00:03.0', '--memlock', '32M', '--sysfs-root', vtd]);
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^ok\s+IOMMU group 3\s+viable: the device is alone in it$/m);
    expect(run.stdout).toMatch(/^ok\s+RLIMIT_MEMLOCK\s+64 MiB, enough for 32 MiB$/m);
    expect(run.stdout).toContain('VFIO should work here (see the warnings)');
  });

  it('fails with exit 1 and a fix for each problem', () => {
    const run = ioas(['doctor', '0000:00:1f.0', '--memlock', '1G', '--sysfs-root', tree('sysfs-iommufd', { ...healthy, modules: ['vfio'] })]);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^FAIL\s+vfio modules loaded\s+missing: vfio_iommu_type1 \(or iommufd\)$/m);
    expect(run.stdout).toMatch(/^\s+fix: ioas bind 0000:00:1f\.2; ioas bind 0000:00:1f\.3$/m);
    expect(run.stdout).toMatch(/^FAIL\s+RLIMIT_MEMLOCK\s+64 MiB, but 1 GiB will be pinned/m);
    const parsed = JSON.parse(ioas(['doctor', '--json', '--sysfs-root', tree('sysfs-iommufd', { ...healthy, modules: ['vfio'] })]).stdout) as { ok: boolean; checks: { id: string; status: string }[] };
    expect(parsed.ok).toBe(false);
    expect(parsed.checks.map((check) => check.id)).toEqual(['iommu', 'modules', 'vfio-node', 'iommufd', 'device', 'interrupts', 'memlock', 'hugepages']);
  });
});

describe('ioas bind / unbind', () => {
  it('binds through driver_override after confirmation, and changes nothing when not confirmed', () => {
    const root = tree('sysfs-iommufd');
    const override = join(root, '/sys/bus/pci/devices/0000:00:02.0/driver_override');
    const refused = ioas(['bind', '0000:00:02.0', '--sysfs-root', root], 'n\n');
    expect([refused.status, refused.stderr]).toEqual([1, expect.stringMatching(/bind 0000:00:02\.0 \(8086:10d3, now e1000e\) to vfio-pci\? \[y\/N\] ioas: not confirmed: nothing changed/)]);
    expect(readFileSync(override, 'utf8')).toBe('(null)\n');
    const done = ioas(['bind', '0000:00:02.0', '--sysfs-root', root], 'y\n');
    expect(done.status).toBe(0);
    // docs/kernel-rules.md#binding-with-driver-override: driver_override, unbind from the current driver, drivers_probe.
    expect(readFileSync(override, 'utf8')).toBe('vfio-pci\n');
    expect(readFileSync(join(root, '/sys/bus/pci/drivers/e1000e/unbind'), 'utf8')).toBe('0000:00:02.0');
    expect(readFileSync(join(root, '/sys/bus/pci/drivers_probe'), 'utf8')).toBe('0000:00:02.0');
  });

  it('unbinds with --yes, and says when there is nothing to do', () => {
    const root = tree('sysfs-x86');
    const run = ioas(['unbind', '0000:00:03.0', '--yes', '--json', '--sysfs-root', root]);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ address: '0000:00:03.0', group: 3, before: 'vfio-pci', changed: true });
    expect(readFileSync(join(root, '/sys/bus/pci/devices/0000:00:03.0/driver_override'), 'utf8')).toBe('\n');
    expect(readFileSync(join(root, '/sys/bus/pci/drivers/vfio-pci/unbind'), 'utf8')).toBe('0000:00:03.0');
    expect(ioas(['unbind', '0000:00:04.0', '--sysfs-root', root]).stdout).toMatch(/is not bound to vfio-pci \(virtio-pci\): nothing to do/);
    expect(ioas(['bind', '0000:00:09.0', '--yes', '--sysfs-root', root])).toMatchObject({ status: 1, stderr: expect.stringMatching(/no PCI device 0000:00:09\.0/) });
  });
});

describe('ioas sim and demo', () => {
  it('runs each platform\'s example scenario with a trace', () => {
    for (const platform of ['p4080', 'arm-smmuv3', 'x86-vtd']) {
      const run = ioas(['sim', join(examples, `${platform}.yaml`)]);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toContain(`scenario on ${platform}`);
    }
    const hotPlug = ioas(['sim', join(examples, 'hot-plug.yaml')]);
    expect(hotPlug.status, hotPlug.stderr).toBe(0);
    expect(hotPlug.stdout).toMatch(/^2\s+attach\s+ok\s+attached 0000:00:10\.0; usable now/m);
    expect(hotPlug.stdout).toMatch(/^5\s+attach\s+error\s+reserved: attach: IOMMU group 8 with device 0000:00:11\.0 would reserve direct region 0x3e000000-0x3effffff/m);
    expect(hotPlug.stdout).toMatch(/^8\s+dma-read\s+ok\s+device read 12 bytes at 0x100000: "from the NIC"$/m);
    const seed = ioas(['sim']);
    expect(seed.stdout).toMatch(/^3\s+msi-map\s+ok\s+MSI \(explicit\): 0@0x10000000, 1@0x14000000, 2@0x18000000$/m);
    expect(seed.stdout).toMatch(/^7\s+dma-write\s+fault\s+fsl-pamu: access violation/m);
    const json = JSON.parse(ioas(['sim', '--platform', 'x86-vtd', '--json']).stdout) as { ok: boolean; bytesMapped: string; events: unknown[] };
    expect([json.ok, json.bytesMapped, json.events.length]).toEqual([true, '0x200000', 6]);
  });

  it('exits 1 when a step does not do what the scenario expects', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ioas-sim-')), 'bad.yaml');
    temporary.push(file);
    writeFileSync(file, 'platform: arm-smmuv3\nsteps:\n  - map: { iova: 0x8000000, size: 4K }\n');
    const run = ioas(['sim', file]);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/error \(unexpected\)\s+reserved: /);
    expect(run.stderr).toContain('step 1 (map) ended with reserved, which the scenario did not expect');
  });

  it('points at the bad lines of an invalid scenario and exits 2', () => {
    const directory = mkdtempSync(join(tmpdir(), 'ioas-sim-'));
    temporary.push(directory);
    const file = join(directory, 'invalid.yaml');
    writeFileSync(file, ['platform: p4080', 'steps:', '  - geometry: { aperture: 512M@0, windows: 8 }', '  - map: { iova: 0, size: 12Q }', '  - mapp: {}', '  - msi: {}', '    expect: fault', ''].join('\n'));
    const run = ioas(['sim', file]);
    expect(run.status).toBe(2);
    expect(run.stderr).toContain(`${file}:4:27: steps.1.map.size: 12Q is not a size`);
    expect(run.stderr).toMatch(new RegExp(`${file}:5:5: steps.2: .*mapp`));
    expect(run.stderr).toContain(`${file}:7:13: steps.3.expect: expect for msi is one of: delivered, lost`);
    writeFileSync(file, 'steps:\n  - map: { iova: 0\n');
    expect(ioas(['sim', file])).toMatchObject({ status: 2, stderr: expect.stringMatching(/invalid.yaml:\d+:\d+: /) });
    expect(ioas(['sim', join(directory, 'missing.yaml')])).toMatchObject({ status: 2, stderr: expect.stringMatching(/cannot read .*missing.yaml/) });
  });

  it('runs the demo, ending with the two pictures it describes', () => {
    const directory = mkdtempSync(join(tmpdir(), 'ioas-demo-'));
    temporary.push(directory);
    const run = ioas(['demo', '--out', directory]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`  ${join(directory, 'p4080.html')}\n  ${join(directory, 'arm-smmuv3.html')}`);
    expect(readFileSync(join(directory, 'p4080.html'), 'utf8')).toContain("seed 000&#39;s 256 MiB guest on a simulated P4080");
    expect(readFileSync(join(directory, 'arm-smmuv3.html'), 'utf8')).toMatch(/data-kind="msi-doorbell"[^>]*data-start="0x8000000"/);
    expect(run.stdout).toContain('device DMA to IOVA 0xc001000 landed in guest RAM: "written by the device through window 3"');
    expect(run.stdout).toContain('device MSI delivered: yes');
    expect(run.stdout).toContain('memory untouched: true');
    expect(JSON.parse(ioas(['demo', '--json', '--out', directory]).stdout)).toMatchObject({
      pamu: { dmaLanded: true, msiDelivered: true, msiDoorbells: ['0x10000140', '0x14000140', '0x18000140'] },
      smmu: { faulted: true },
      pictures: [join(directory, 'p4080.html'), join(directory, 'arm-smmuv3.html')],
    });
    expect(ioas(['demo', '--out', join(directory, 'p4080.html', 'below-a-file')])).toMatchObject({ status: 1, stderr: expect.stringMatching(/cannot create .*below-a-file for the pictures/) });
  });
});

describe('bad usage', () => {
  it('exits 2 with a clear message and changes nothing', () => {
    const root = tree('sysfs-iommufd');
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command 'frobnicate'/],
      [['groups', '--colour'], /unknown option '--colour'/],
      [['reserved'], /missing required argument 'group'/],
      [['reserved', 'abc', '--sysfs-root', root], /abc is not an IOMMU group number/],
      [['bind', '00:02.0', '--yes', '--sysfs-root', root], /00:02\.0 is not a PCI address: write domain:bus:slot\.function/],
      [['plan', '--memory', '256M', '--msi-banks', '3'], /required option '--page <size>' not specified/],
      [['plan', '--memory', '256M', '--page', '64X', '--msi-banks', '3'], /64X is not a size/],
      [['plan', '--memory', '256M', '--page', '64M', '--msi-banks', 'three'], /three is not a whole number/],
      [['ranges', '3', '--aperture-bits', '80', '--sysfs-root', root], /--aperture-bits must be between 12 and 64/],
      [['sim', '--platform', 'z80'], /argument 'z80' is invalid. Allowed choices are p4080, arm-smmuv3, x86-vtd/],
    ];
    for (const [args, message] of cases) {
      const run = ioas(args);
      expect(run.status, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(message);
      expect(run.stdout).toBe('');
    }
    expect(readFileSync(join(root, '/sys/bus/pci/devices/0000:00:02.0/driver_override'), 'utf8')).toBe('(null)\n');
  });

  it('documents --json and --sysfs-root in each command\'s help', () => {
    for (const command of ['groups', 'reserved', 'ranges', 'doctor', 'bind', 'unbind']) {
      const run = ioas([command, '--help']);
      expect(run.status).toBe(0);
      expect(run.stdout).toContain('--json');
      expect(run.stdout).toContain('--sysfs-root <dir>');
    }
    for (const command of ['plan', 'sim', 'demo']) expect(ioas([command, '--help']).stdout).toContain('--json');
  });
});

describe('terminal output', () => {
  const sink = (isTTY: boolean) => {
    const written: string[] = [];
    const io: Io = { stdout: { write: (text: string) => written.push(text), isTTY }, stderr: { write: () => true }, readLine: async () => undefined, env: {} };
    return { io, written };
  };

  it('draws a progress bar and colours only on a terminal', () => {
    const tty = sink(true);
    const bar = progressBar(tty.io, 'scenario');
    bar.update(3, 6, 'map');
    bar.done();
    expect(tty.written[0]).toBe('\rscenario [############............] 3/6 map\u001b[K');
    expect(colours(tty.io).red('FAIL')).toBe('\u001b[31mFAIL\u001b[0m');
    const pipe = sink(false);
    progressBar(pipe.io, 'scenario').update(1, 2, 'map');
    expect(pipe.written).toEqual([]);
    expect(colours(pipe.io).red('FAIL')).toBe('FAIL');
    expect(colours({ ...tty.io, env: { NO_COLOR: '1' } }).red('FAIL')).toBe('FAIL');
  });
});
