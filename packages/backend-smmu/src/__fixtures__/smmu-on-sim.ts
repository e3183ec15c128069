import type { ConformanceTarget } from '@ioas/conformance';
import { Container } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { eduDevice, simDeviceDriver } from '@ioas/backend-sim/testing';
import { allocateDmaMemory } from '@ioas/vfio';
import { smmu, type SmmuBackend } from '../smmu-backend.js';

/** The second edu every paged preset holds for hot-plug, not bound to vfio-pci at start. */
const SECOND_EDU = '0000:00:10.0';

/** backend-smmu over the simulator's syscall face: the real ioctl bytes, no hardware. */
export function smmuOnSim(platform: 'arm-smmuv3' | 'x86-vtd', kernelInterface: 'type1' | 'iommufd'): ConformanceTarget & { simulator: Simulator; backend: SmmuBackend } {
  const simulator = createSimulator({ platform });
  const syscalls = simSyscalls(simulator);
  const backend = smmu({ syscalls, interface: kernelInterface, arch: 'generic', littleEndian: true });
  const edu = eduDevice(simulator);
  const limitFile = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';
  return {
    simulator,
    backend,
    canLimitBudget: kernelInterface === 'type1',
    async open(options) {
      // As root would: dma_entry_limit is read when SET_IOMMU runs (docs/kernel-rules.md#the-mapping-budget).
      const defaultLimit = syscalls.readFile(limitFile);
      if (options?.mappingBudget !== undefined) syscalls.writeFile(limitFile, String(options.mappingBudget));
      try {
        return kernelInterface === 'iommufd' ? await Container.open({ backend, devices: [edu.address] }) : await Container.open({ backend, groups: [edu.group!] });
      } finally {
        syscalls.writeFile(limitFile, defaultLimit);
      }
    },
    memory: (length, pageSize = 0x1000n) => allocateDmaMemory(syscalls, length, pageSize > 0x1000n ? pageSize : undefined),
    readMemory: (memory, offset, length) => syscalls.memory(memory.address + offset, length).slice(),
    writeMemory: (memory, offset, bytes) => syscalls.memory(memory.address + offset, bytes.length).set(bytes),
    device: () => simDeviceDriver(simulator, edu),
    // The preset's second edu (unbound at start): type1 takes its group, iommufd the device. No
    // `conflicting`: the presets' conflict devices are refused by the kernel even with nothing mapped
    // (x86's RMRR device) or conflict through their aperture, which smmu cannot read beforehand
    // (arm64's second SMMU); src/hot-plug.test.ts covers both.
    hotPlug: {
      first: () => (kernelInterface === 'iommufd' ? { devices: [edu.address] } : { groups: [edu.group!] }),
      second: () => {
        const second = simulator.device(SECOND_EDU);
        if (second.driver !== 'vfio-pci') simulator.bind(SECOND_EDU, 'vfio-pci');
        return { members: kernelInterface === 'iommufd' ? { devices: [second.address] } : { groups: [second.group!] }, device: simDeviceDriver(simulator, second) };
      },
    },
    injectFault: (errno, skip) => simulator.injectFault({ ioctl: '*', errno, skip }),
    clearFaults: () => simulator.clearInjectedFaults(),
    kernelState: () => ({ mappings: simulator.liveMappings(), openFiles: syscalls.openFiles }),
  };
}
