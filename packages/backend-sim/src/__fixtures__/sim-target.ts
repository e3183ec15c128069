import type { ConformanceTarget } from '@ioas/conformance';
import { Container } from '@ioas/core';
import { sim } from '../sim-backend.js';
import { createSimulator, type Simulator } from '../simulator.js';
import type { PlatformName } from '../platforms.js';
import { eduDevice, simDeviceDriver, simHostMemory } from '../testing.js';

/** The conformance target over the simulator's Backend face: one simulated machine per target. */
export function simTarget(platform: PlatformName, kernelInterface: 'type1' | 'iommufd' = 'type1'): ConformanceTarget & { simulator: Simulator } {
  const simulator = createSimulator({ platform });
  const edu = eduDevice(simulator);
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
  };
}
