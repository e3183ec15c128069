import type { ConformanceTarget } from '@ioas/conformance';
import { Container, type MembersInput } from '@ioas/core';
import { sim } from '../sim-backend.js';
import { createSimulator, type SimDevice, type Simulator } from '../simulator.js';
import type { PlatformName } from '../platforms.js';
import { eduDevice, simDeviceDriver, simHostMemory } from '../testing.js';

/** The preset's second edu, the one hot-plug tests attach (unbound until they want it). */
const SECOND_EDU: Record<PlatformName, string> = { 'x86-vtd': '0000:00:10.0', 'arm-smmuv3': '0000:00:10.0', p4080: '0001:01:00.0' };

/** x86's device with an RMRR-style direct region at 0x3e000000-0x3effffff. */
const RMRR_DEVICE = '0000:00:11.0';

/** The conformance target over the simulator's Backend face: one simulated machine per target. */
export function simTarget(platform: PlatformName, kernelInterface: 'type1' | 'iommufd' = 'type1', options: { hardwareDirty?: boolean } = {}): ConformanceTarget & { simulator: Simulator } {
  const simulator = createSimulator({ platform, ...options });
  const edu = eduDevice(simulator);
  /** A device as the container takes it: its group on type1 and PAMU, itself on iommufd. */
  const membersOf = (device: SimDevice): MembersInput => (kernelInterface === 'iommufd' ? { devices: [device.address] } : { groups: [device.group!] });
  return {
    simulator,
    canLimitBudget: kernelInterface === 'type1' && platform !== 'p4080',
    async open(options) {
      const backend = sim({ simulator, interface: kernelInterface });
      const defaultLimit = simulator.dmaEntryLimit;
      if (options?.mappingBudget !== undefined) simulator.dmaEntryLimit = options.mappingBudget;
      try {
        return kernelInterface === 'iommufd'
          ? await Container.open({ backend, devices: [edu.address] })
          : await Container.open({ backend, groups: [edu.group!] });
      } finally {
        simulator.dmaEntryLimit = defaultLimit;
      }
    },
    ...simHostMemory(simulator),
    device: () => simDeviceDriver(simulator, edu),
    injectFault: (errno, skip) => simulator.injectFault({ ioctl: '*', errno, skip }),
    clearFaults: () => simulator.clearInjectedFaults(),
    kernelState: () => ({ mappings: simulator.liveMappings(), openFiles: simulator.openHandles() }),
    hotPlug: {
      first: () => membersOf(edu),
      second: () => {
        const device = simulator.bind(SECOND_EDU[platform], 'vfio-pci');
        return { members: membersOf(device), device: simDeviceDriver(simulator, device) };
      },
      // x86's RMRR-style device: core refuses it while a mapping lies in its direct region (the kernel
      // never assigns it at all: docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned).
      ...(platform === 'x86-vtd'
        ? {
            conflicting: () => {
              const device = simulator.device(RMRR_DEVICE);
              if (device.driver !== 'vfio-pci') simulator.bind(RMRR_DEVICE, 'vfio-pci');
              return { members: membersOf(device), inside: { start: 0x3e00_0000n, size: 0x20_0000n } };
            },
          }
        : {}),
    },
  };
}
