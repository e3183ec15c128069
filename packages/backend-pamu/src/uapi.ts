/**
 * The PAMU VFIO uapi of the Freescale/NXP SDK kernels: request `nr` values, attribute ids and struct
 * layouts. No kernel header for it exists on these machines (the ABI was never in mainline); every
 * value here is from the SDK's `include/uapi/linux/vfio.h` (docs/kernel-rules.md#pamu-ioctls and
 * docs/kernel-rules.md#pamu-structs), computed with a C probe on
 * x86-64, powerpc32 and powerpc64 (the layouts are the same on all three).
 */

import { vfioUapi } from '@ioas/vfio';

/** `VFIO_BASE + n` for the container ioctls the PAMU backend answers (docs/kernel-rules.md#pamu-ioctls). */
export const PAMU_NR = {
  VFIO_IOMMU_MAP_DMA: vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA: vfioUapi.VFIO_NR.VFIO_IOMMU_UNMAP_DMA,
  VFIO_IOMMU_PAMU_GET_ATTR: 115,
  VFIO_IOMMU_PAMU_SET_ATTR: 116,
  VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT: 117,
  VFIO_IOMMU_PAMU_MAP_MSI_BANK: 118,
  VFIO_IOMMU_PAMU_UNMAP_MSI_BANK: 119,
} as const;

/** The name of a PAMU container ioctl. */
export type PamuIoctlName = keyof typeof PAMU_NR;

/** `vfio_pamu_attr.attribute` values (docs/kernel-rules.md#pamu-structs). */
export const PAMU_ATTRIBUTE = { GEOMETRY: 0, WINDOWS: 1, PAMU_STASH: 2 } as const;

/** PAMU stash cache levels (docs/kernel-rules.md#pamu-stash): 1 = L1, 2 = L2, 3 = L3; SDK kernels add 4 = DSP_L2. */
export const PAMU_STASH_CACHE = { L1: 1, L2: 2, L3: 3, DSP_L2: 4 } as const;

/**
 * `struct vfio_pamu_attr`, 32 bytes (docs/kernel-rules.md#pamu-structs): the kernel needs `argsz >= 32`. The union at 16 holds
 * the geometry (`aperture_start`, `aperture_end`: the last mappable IOVA, inclusive), the window
 * count, or the stash `{cpu, cache}`.
 */
export const vfio_pamu_attr = {
  sizeof: 32,
  argsz: 0,
  flags: 4,
  attribute: 8,
  aperture_start: 16,
  aperture_end: 24,
  windows: 16,
  stash_cpu: 16,
  stash_cache: 20,
} as const;

/** `struct vfio_pamu_msi_bank_map`, 24 bytes: the flags carry READ 0x1 / WRITE 0x2 (the code needs one). */
export const vfio_pamu_msi_bank_map = { sizeof: 24, argsz: 0, flags: 4, msi_bank_index: 8, iova: 16 } as const;

/** `struct vfio_pamu_msi_bank_unmap`, 16 bytes: `iova` must be exactly the one given to MAP. */
export const vfio_pamu_msi_bank_unmap = { sizeof: 16, argsz: 0, flags: 4, iova: 8 } as const;

/** The MSI bank page is mapped at the start of its window with this size
 * (docs/kernel-rules.md#pamu-msi-bank-map). */
export const PAMU_MSI_PAGE_SIZE = 0x1000n;

// The 4 KiB floor and the VFIO layer's cap of 256 windows are geometry rules: @ioas/core's
// PAMU_PAGE_SIZE and PAMU_VFIO_MAX_WINDOWS (window-geometry.ts), with the checks that use them.
