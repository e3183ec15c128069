// Test set-ups for the simulated iommufd spoken by hand: the errno a context call throws, and a
// little-endian process with /dev/iommu open, IOAS 1 allocated through the ioctl, and 64 KiB of memory.
import { SYSCALL_FLAGS } from '@ioas/core';
import { expect } from 'vitest';
import { KernelError } from '../kernel-error.js';
import { simSyscalls } from '../sim-syscalls.js';
import { createSimulator } from '../simulator.js';

/** The errno `run` throws as a KernelError, or undefined when it returns. */
export function errnoOf(run: () => unknown): number | undefined {
  try {
    run();
  } catch (error) {
    if (error instanceof KernelError) return error.errno;
    throw error;
  }
  return undefined;
}

/** An x86 VT-d machine, a process with /dev/iommu open as `fd` and IOAS 1 in it, and 64 KiB of its memory. */
export function iommufdByHand() {
  const simulator = createSimulator({ platform: 'x86-vtd' });
  const sys = simSyscalls(simulator, { littleEndian: true });
  const fd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
  const memory = sys.mmap(0x10000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
  const alloc = new Uint8Array(12);
  new DataView(alloc.buffer).setUint32(0, 12, true);
  expect(sys.ioctl(fd, 0x3b81, alloc)).toBe(0); // IOMMU_IOAS_ALLOC: IOAS 1
  return { simulator, sys, fd, memory };
}
