// The presets must match what the real kernels showed. The rig captures each guest's sysfs tree
// (packages/kernel-rig/fixtures); the simulator's tree must agree on groups, addresses, IDs and
// reserved regions. Drivers differ on purpose: the rig's minimal guest binds none. A device the
// preset marks `modelled` (one the rig's guests have not shown yet, such as the hot-plug devices)
// may be missing from a capture; once a capture has it, it is compared like any other.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PLATFORMS } from './platforms.js';
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
    const capturedAddresses = new Set(captured.groups.flatMap((group) => group.devices.map((device) => device.address)));
    const modelled = new Set(PLATFORMS[platform].devices.filter((device) => device.modelled !== undefined).map((device) => device.address));
    const compared = (address: string) => capturedAddresses.has(address) || !modelled.has(address);
    const simulated = simulator
      .groups()
      .filter((group) => group.devices.some((device) => compared(device.address)))
      .map((group) => ({
        group: group.id,
        reservedRegions: group.reservedRegionsFile,
        devices: group.devices.filter((device) => compared(device.address)).map((device) => ({ address: device.address, vendor: device.vendor, device: device.deviceId })),
      }));
    const real = captured.groups.map((group) => ({
      group: group.group,
      reservedRegions: group.reservedRegions,
      devices: group.devices.map(({ address, vendor, device }) => ({ address, vendor, device })),
    }));
    expect(simulated).toEqual(real);
  });
});
