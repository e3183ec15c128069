// diagnoseHost and the group descriptions against sysfs trees written from the captures of the
// real-kernel rig's guests (6.1 VT-d, 6.1 SMMUv3, 6.12 VT-d with iommufd), read through libc.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { diagnoseHost, type HostCheck } from './host-check.js';
import { libcSyscalls } from './libc-syscalls.js';
import { Sysfs } from './sysfs.js';
import { writeHostTree, type HostFacts, type SysfsCapture } from './testing/host-tree.js';

const capture = (name: string): SysfsCapture => JSON.parse(readFileSync(new URL(`../../kernel-rig/fixtures/${name}.json`, import.meta.url), 'utf8')) as SysfsCapture;
const roots: string[] = [];
afterAll(() => {
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

function tree(name: string, host: HostFacts = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'ioas-host-'));
  roots.push(root);
  writeHostTree(root, capture(name), host);
  return root;
}

const healthy: HostFacts = {
  modules: ['vfio', 'vfio_pci', 'vfio_iommu_type1', 'iommufd'],
  dev: ['/dev/vfio/vfio', '/dev/iommu'],
  memlock: 8n << 20n,
  capEff: '0000000000000000',
  interrupts: '           CPU0\n 24:          0  IR-PCI-MSI 49152-edge      vfio-msi[0]\n',
  hugepages: { 2048: { total: 64, free: 64 } },
};

const byId = (checks: HostCheck[]) => Object.fromEntries(checks.map((check) => [check.id, check]));

describe('Sysfs group descriptions', () => {
  it('describes the VT-d guest: devices, reserved regions, viability', () => {
    const sysfs = new Sysfs(libcSyscalls(), tree('sysfs-iommufd'));
    const groups = sysfs.describeGroups();
    expect(groups.map((group) => group.group)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(groups[3]).toMatchObject({ viable: true, vfio: true, devices: [{ address: '0000:00:03.0', vendor: 0x1234, device: 0x11e8, driver: 'vfio-pci', group: 3 }] });
    expect(groups[6]!.reserved.map((region) => [region.start, region.last, region.kind])).toEqual([
      [0n, 0xffffffn, 'direct-relaxable'],
      [0xfee00000n, 0xfeefffffn, 'msi'],
    ]);
    expect(groups[6]).toMatchObject({ viable: false, blockers: [{ address: '0000:00:1f.2', driver: 'ahci' }, { address: '0000:00:1f.3', driver: 'i801_smbus' }] });
  });
});

describe('diagnoseHost', () => {
  it('passes a healthy VT-d host with a device bound to vfio-pci', () => {
    const checks = byId(diagnoseHost({ syscalls: libcSyscalls(), root: tree('sysfs-x86', healthy), device: '0000:00:03.0', memlock: 4n << 20n }));
    expect(Object.values(checks).map((check) => [check.id, check.status])).toEqual([
      ['iommu', 'pass'],
      ['modules', 'pass'],
      ['vfio-node', 'pass'],
      ['iommufd', 'pass'],
      ['device', 'pass'],
      ['group', 'pass'],
      ['group-node', 'pass'],
      ['interrupts', 'pass'],
      ['memlock', 'pass'],
      ['hugepages', 'pass'],
    ]);
    expect(checks.memlock!.detail).toBe('8 MiB, enough for 4 MiB');
  });

  it('says what is wrong and how to fix it', () => {
    const checks = byId(
      diagnoseHost({
        syscalls: libcSyscalls(),
        root: tree('sysfs-iommufd', { modules: ['vfio'], memlock: 8n << 20n, interrupts: ' 24: 0 PCI-MSI 49152-edge\n' }),
        device: '0000:00:1f.0',
        memlock: 1n << 30n,
      }),
    );
    expect(checks.modules).toMatchObject({ status: 'fail', detail: 'missing: vfio_iommu_type1 (or iommufd)' });
    expect(checks['vfio-node']).toMatchObject({ status: 'fail', fix: expect.stringMatching(/modprobe vfio-pci/) });
    expect(checks.iommufd!.status).toBe('warn');
    expect(checks.device).toMatchObject({ status: 'fail', detail: '8086:2918, bound to no driver', fix: 'ioas bind 0000:00:1f.0' });
    expect(checks.group).toMatchObject({ status: 'fail', detail: 'not viable: 0000:00:1f.2 is bound to ahci, 0000:00:1f.3 is bound to i801_smbus', fix: 'ioas bind 0000:00:1f.2; ioas bind 0000:00:1f.3' });
    expect(checks['group-node']!.status).toBe('fail');
    expect(checks.interrupts).toMatchObject({ status: 'fail', detail: expect.stringMatching(/EPERM/) });
    expect(checks.memlock).toMatchObject({ status: 'fail', detail: '8 MiB, but 1 GiB will be pinned: MAP_DMA fails with ENOMEM past the limit' });
    expect(checks.hugepages!.status).toBe('warn');
  });

  it('fails the IOMMU check with no groups, and accepts CAP_IPC_LOCK or unsafe interrupts with their caveats', () => {
    const root = tree('sysfs-arm64', { ...healthy, capEff: '000001ffffffffff', interrupts: ' 24: 0 PCI-MSI\n', allowUnsafeInterrupts: true, memlock: 64n << 10n });
    const checks = byId(diagnoseHost({ syscalls: libcSyscalls(), root, memlock: 1n << 40n }));
    expect(checks.memlock).toMatchObject({ status: 'pass', detail: expect.stringMatching(/CAP_IPC_LOCK/) });
    expect(checks.interrupts!.status).toBe('warn');
    expect(checks.device!.status).toBe('skip');
    const empty = mkdtempSync(join(tmpdir(), 'ioas-host-'));
    roots.push(empty);
    expect(byId(diagnoseHost({ syscalls: libcSyscalls(), root: empty })).iommu!.status).toBe('fail');
  });
});
