/**
 * Test helpers over a simulated machine, for suites such as @ioas/conformance that drive a device
 * and inspect kernel state whatever backend they test (`@ioas/backend-sim/testing`).
 */
import type { HostMemory } from '@ioas/core';
import type { SimDevice, Simulator } from './simulator.js';

/** One MSI vector and DMA of a simulated device, in the shape @ioas/conformance's `ConformanceDevice` takes. */
export function simDeviceDriver(simulator: Simulator, device: SimDevice) {
  return {
    dmaWrite: (iova: bigint, bytes: Uint8Array) => device.dmaWrite(iova, bytes),
    dmaRead: (iova: bigint, length: number) => device.dmaRead(iova, length),
    faultCount: () => simulator.faults.filter((fault) => fault.device === device.address).length,
    enableMsi: (onInterrupt: () => void) => device.enableMsi([onInterrupt]),
    raiseMsi: () => device.raiseMsi(0),
    disableMsi: () => device.disableMsi(),
  };
}

/** The simulated machine's first QEMU `edu` device (every preset has one). */
export function eduDevice(simulator: Simulator): SimDevice {
  const device = simulator.devices().find((candidate) => candidate.edu);
  if (device === undefined) throw new Error(`the ${simulator.platform.name} preset has no edu device`);
  return device;
}

/**
 * Host memory on a simulated machine, in the shape @ioas/conformance's target takes: sparse (a
 * 64 MiB hugepage costs no 64 MiB buffer), physically contiguous per page when `pageSize` is above
 * 4 KiB, which the result then says in `contiguousPageSize`.
 */
export function simHostMemory(simulator: Simulator) {
  return {
    memory(length: bigint, pageSize = 0x1000n): HostMemory {
      const region = simulator.memory.allocate(length, pageSize);
      return pageSize > 0x1000n ? { address: region.address, length, contiguousPageSize: pageSize } : { address: region.address, length };
    },
    readMemory: (memory: HostMemory, offset: bigint, length: number) => simulator.memory.read(memory.address + offset, length),
    writeMemory: (memory: HostMemory, offset: bigint, bytes: Uint8Array) => simulator.memory.write(memory.address + offset, bytes),
  };
}
export { FaultySyscalls, IOCTL_NAMES } from './faulty-syscalls.js';
