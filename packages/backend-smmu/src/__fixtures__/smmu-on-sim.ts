import type { ConformanceTarget } from '@ioas/conformance';
import { Container } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { eduDevice, simDeviceDriver } from '@ioas/backend-sim/testing';
import { allocateDmaMemory } from '@ioas/vfio';
import { smmu, type SmmuBackend } from '../smmu-backend.js';

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
    injectFault: (errno, skip) => simulator.injectFault({ ioctl: '*', errno, skip }),
    clearFaults: () => simulator.clearInjectedFaults(),
    kernelState: () => ({ mappings: simulator.liveMappings(), openFiles: syscalls.openFiles }),
  };
}
