import { IoasError, hex, SYSCALL_FLAGS, type HostMemory, type Syscalls } from '@ioas/core';

/** Pinned-for-DMA host memory from mmap. */
export interface DmaMemory extends HostMemory {
  /** A view of the memory (what the device reads and writes). */
  readonly bytes: Uint8Array;
  /** Unmaps the memory; unmap any IOMMU mapping of it first. */
  free(): void;
}

/**
 * Allocates host memory for DMA: shared anonymous memory, populated up front (MAP_POPULATE), from
 * hugepages when `hugePageSize` is given (MAP_HUGETLB with log2 of the size in the flags). Hugepages
 * are physically contiguous and naturally aligned, which windowed IOMMUs need; the result says so
 * in `contiguousPageSize`.
 */
export function allocateDmaMemory(syscalls: Syscalls, length: bigint, hugePageSize?: bigint): DmaMemory {
  let flags = SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS | SYSCALL_FLAGS.MAP_POPULATE;
  if (hugePageSize !== undefined) {
    if (hugePageSize <= 0n || (hugePageSize & (hugePageSize - 1n)) !== 0n) throw new IoasError('invalid-argument', `hugepage size ${hex(hugePageSize)} is not a power of two`);
    if (length % hugePageSize !== 0n) throw new IoasError('misaligned', `length ${hex(length)} is not a multiple of the hugepage size ${hex(hugePageSize)}`);
    const shift = hugePageSize.toString(2).length - 1;
    flags |= SYSCALL_FLAGS.MAP_HUGETLB | (shift << SYSCALL_FLAGS.MAP_HUGE_SHIFT);
  }
  const address = syscalls.mmap(length, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, flags, -1, 0n);
  if (address < 0n) {
    const errno = Number(-address);
    throw IoasError.fromErrno(errno, 'mmap', `allocating ${hex(length)} bytes of DMA memory${hugePageSize === undefined ? '' : ` on ${hex(hugePageSize)}-byte hugepages (are enough reserved in /proc/sys/vm/nr_hugepages?)`}`);
  }
  let freed = false;
  const memory: DmaMemory = {
    address,
    length,
    bytes: syscalls.memory(address, Number(length)),
    ...(hugePageSize === undefined ? {} : { contiguousPageSize: hugePageSize }),
    free() {
      if (freed) return;
      freed = true;
      syscalls.munmap(address, length);
    },
  };
  return memory;
}
