// The presets must match what the real kernels showed. The rig captures each guest's sysfs tree
// (packages/kernel-rig/fixtures); the simulator's tree must agree on groups, addresses, IDs and
// reserved regions. Drivers differ on purpose: the rig's minimal guest binds none.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSimulator } from './simulator.js';

const fixtures = join(import.meta.dirname, '../../kernel-rig/fixtures');

describe('presets against the sysfs trees captured on real kernels', () => {
  it.each([
    ['x86-vtd', 'sysfs-x86.json'],
    ['arm-smmuv3', 'sysfs-arm64.json'],
  ] as const)('%s matches the guest the rig captured in %s', (platform, fixture) => {
    const captured = JSON.parse(readFileSync(join(fixtures, fixture), 'utf8')) as {
      groups: { group: number; reservedRegions: string; devices: { address: string; vendor: number; device: number }[] }[];
    };
    const simulator = createSimulator({ platform });
    const simulated = simulator.groups().map((group) => ({
      group: group.id,
      reservedRegions: group.reservedRegionsFile,
      devices: group.devices.map((device) => ({ address: device.address, vendor: device.vendor, device: device.deviceId })),
    }));
    const real = captured.groups.map((group) => ({
      group: group.group,
      reservedRegions: group.reservedRegions,
      devices: group.devices.map(({ address, vendor, device }) => ({ address, vendor, device })),
    }));
    expect(simulated).toEqual(real);
  });
});
