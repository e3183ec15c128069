import type { Syscalls } from '@ioas/core';

/** A `vfio_iommu_type1_dma_map` for `size` bytes at `vaddr` -> `iova`, read and write. */
export function dmaMapStruct(vaddr: bigint, iova?: bigint, size?: bigint, little?: boolean): Uint8Array;

/** A type1v2 container opened by hand on `syscalls`: `map(iova)` and `pair(iova)` give the ioctls' results. */
export function type1ByHand(syscalls: Syscalls): {
  map(iova: bigint): number;
  pair(iova: bigint): [number, number];
};
