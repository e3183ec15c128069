// A type1 container opened by hand on a fresh simulator, through raw ioctls: the container, the
// group of the edu bound to vfio-pci set in it, and the IOMMU type set. The raw-ioctl tests' setup,
// written once.
import { SYSCALL_FLAGS } from '@ioas/core';
import { expect } from 'vitest';
import type { PlatformName, SimKernel } from '../platforms.js';
import { simSyscalls } from '../sim-syscalls.js';
import { createSimulator } from '../simulator.js';

/** Opens /dev/vfio/vfio and the edu's group, VFIO_GROUP_SET_CONTAINER, then VFIO_SET_IOMMU `type` (default type1v2; null: none). */
export function type1ByHand({ platform = 'x86-vtd', kernel, type = 3 }: { platform?: PlatformName; kernel?: SimKernel | undefined; type?: number | null } = {}) {
  const simulator = createSimulator({ platform, ...(kernel === undefined ? {} : { kernel }) });
  const sys = simSyscalls(simulator);
  const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!;
  const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
  const group = sys.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR);
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  expect(sys.ioctl(group, 0x3b00 + 104, fd)).toBe(0);
  if (type !== null) expect(sys.ioctl(container, 0x3b00 + 102, type)).toBe(0);
  return { simulator, sys, edu, container, group };
}

/** A little-endian `vfio_iommu_type1_dma_map` (argsz 32). */
export function type1MapStruct(flags: number, vaddr: bigint, iova: bigint, size: bigint): Uint8Array {
  const bytes = new Uint8Array(32);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 32, true);
  view.setUint32(4, flags, true);
  view.setBigUint64(8, vaddr, true);
  view.setBigUint64(16, iova, true);
  view.setBigUint64(24, size, true);
  return bytes;
}
