import type { ConformanceTarget } from '@ioas/conformance';
import { Container } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { eduDevice, simDeviceDriver } from '@ioas/backend-sim/testing';
import { allocateDmaMemory } from '@ioas/vfio';
import { smmu, type SmmuBackend } from '../smmu-backend.js';

/** The second edu every paged preset holds for hot-plug, not bound to vfio-pci at start. */
const SECOND_EDU = '0000:00:10.0';

/** x86's device with an RMRR-style direct region at 0x3e000000-0x3effffff. */
const RMRR_DEVICE = '0000:00:11.0';

/** backend-smmu over the simulator's syscall face: the real ioctl bytes, no hardware. */
export function smmuOnSim(
  platform: 'arm-smmuv3' | 'x86-vtd',
  kernelInterface: 'type1' | 'iommufd',
  options: { readonly hardwareDirty?: boolean } = {},
): ConformanceTarget & { simulator: Simulator; backend: SmmuBackend } {
  // hardwareDirty: an IOMMU with dirty bits (VT-d SLADS, SMMUv3 HTTU), which the presets (QEMU's) lack.
  const simulator = createSimulator({ platform, ...(options.hardwareDirty === undefined ? {} : { hardwareDirty: options.hardwareDirty }) });
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
    // The preset's second edu (unbound at start): type1 takes its group, iommufd the device. On x86,
    // the RMRR-style device is the conflicting one: core refuses it while a mapping lies in its direct
    // region (the kernel never assigns it at all; arm64's second SMMU conflicts through its aperture,
    // which smmu cannot read beforehand: src/hot-plug.test.ts covers both).
    hotPlug: {
      first: () => (kernelInterface === 'iommufd' ? { devices: [edu.address] } : { groups: [edu.group!] }),
      second: () => {
        const second = simulator.device(SECOND_EDU);
        if (second.driver !== 'vfio-pci') simulator.bind(SECOND_EDU, 'vfio-pci');
        return { members: kernelInterface === 'iommufd' ? { devices: [second.address] } : { groups: [second.group!] }, device: simDeviceDriver(simulator, second) };
      },
      ...(platform === 'x86-vtd'
        ? {
            conflicting: () => {
              const device = simulator.device(RMRR_DEVICE);
              if (device.driver !== 'vfio-pci') simulator.bind(RMRR_DEVICE, 'vfio-pci');
              return { members: kernelInterface === 'iommufd' ? { devices: [device.address] } : { groups: [device.group!] }, inside: { start: 0x3e00_0000n, size: 0x20_0000n } };
            },
          }
        : {}),
    },
    injectFault: (errno, skip) => simulator.injectFault({ ioctl: '*', errno, skip }),
    clearFaults: () => simulator.clearInjectedFaults(),
    kernelState: () => ({ mappings: simulator.liveMappings(), openFiles: syscalls.openFiles }),
  };
}
