/**
 * VFIO uapi: numbers and struct layouts named as in the kernel header.
 *
 * Matches Linux 6.1 `include/uapi/linux/vfio.h` (Debian linux-libc-dev 6.1.187-1, the system header
 * on these machines), checked by the golden test against a C compiler; see
 * docs/kernel-rules.md#argsz-and-minsz. The VFIO cdev ioctls (BIND/ATTACH/DETACH_IOMMUFD_PT) are from
 * Linux 6.12 (Debian linux-libc-dev 6.12, bookworm-backports); see
 * docs/kernel-rules.md#binding-a-device-cdev.
 * Offsets are in bytes; every struct starts with `argsz` (u32) and `flags` (u32).
 */

/** `VFIO_API_VERSION` (0) in include/uapi/linux/vfio.h. */
export const VFIO_API_VERSION = 0;
/** `VFIO_TYPE` is ';' and every request is `_IO(VFIO_TYPE, VFIO_BASE + n)`. */
export const VFIO_TYPE = 0x3b;
/** `VFIO_BASE` (100) in include/uapi/linux/vfio.h. */
export const VFIO_BASE = 100;

/** Request `nr` values (`VFIO_BASE + n`); turn them into numbers with `ioctlNumber()`. */
export const VFIO_NR = {
  VFIO_GET_API_VERSION: VFIO_BASE + 0,
  VFIO_CHECK_EXTENSION: VFIO_BASE + 1,
  VFIO_SET_IOMMU: VFIO_BASE + 2,
  VFIO_GROUP_GET_STATUS: VFIO_BASE + 3,
  VFIO_GROUP_SET_CONTAINER: VFIO_BASE + 4,
  VFIO_GROUP_UNSET_CONTAINER: VFIO_BASE + 5,
  VFIO_GROUP_GET_DEVICE_FD: VFIO_BASE + 6,
  VFIO_DEVICE_GET_INFO: VFIO_BASE + 7,
  VFIO_DEVICE_GET_REGION_INFO: VFIO_BASE + 8,
  VFIO_DEVICE_GET_IRQ_INFO: VFIO_BASE + 9,
  VFIO_DEVICE_SET_IRQS: VFIO_BASE + 10,
  VFIO_DEVICE_RESET: VFIO_BASE + 11,
  VFIO_IOMMU_GET_INFO: VFIO_BASE + 12,
  VFIO_IOMMU_MAP_DMA: VFIO_BASE + 13,
  VFIO_IOMMU_UNMAP_DMA: VFIO_BASE + 14,
  /** Linux 5.8+: dirty-page logging of a type1v2 container (START, STOP, GET_BITMAP). */
  VFIO_IOMMU_DIRTY_PAGES: VFIO_BASE + 17,
  /** Linux 6.6+ (CONFIG_VFIO_DEVICE_CDEV). */
  VFIO_DEVICE_BIND_IOMMUFD: VFIO_BASE + 18,
  VFIO_DEVICE_ATTACH_IOMMUFD_PT: VFIO_BASE + 19,
  VFIO_DEVICE_DETACH_IOMMUFD_PT: VFIO_BASE + 20,
} as const;

/** `VFIO_TYPE1_IOMMU` (1) in include/uapi/linux/vfio.h. */
export const VFIO_TYPE1_IOMMU = 1;
/** `VFIO_SPAPR_TCE_IOMMU` (2) in include/uapi/linux/vfio.h. */
export const VFIO_SPAPR_TCE_IOMMU = 2;
/** `VFIO_TYPE1v2_IOMMU` (3) in include/uapi/linux/vfio.h. */
export const VFIO_TYPE1v2_IOMMU = 3;
/** `VFIO_DMA_CC_IOMMU` (4) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_CC_IOMMU = 4;
/** `VFIO_EEH` (5) in include/uapi/linux/vfio.h. */
export const VFIO_EEH = 5;
/** `VFIO_TYPE1_NESTING_IOMMU` (6) in include/uapi/linux/vfio.h. */
export const VFIO_TYPE1_NESTING_IOMMU = 6;
/** `VFIO_SPAPR_TCE_v2_IOMMU` (7) in include/uapi/linux/vfio.h. */
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
/** `VFIO_NOIOMMU_IOMMU` (8) in include/uapi/linux/vfio.h. */
export const VFIO_NOIOMMU_IOMMU = 8;
/** `VFIO_UNMAP_ALL` (9) in include/uapi/linux/vfio.h. */
export const VFIO_UNMAP_ALL = 9;
/** `VFIO_UPDATE_VADDR` (10) in include/uapi/linux/vfio.h. */
export const VFIO_UPDATE_VADDR = 10;

/** `VFIO_GROUP_FLAGS_VIABLE` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
/** `VFIO_GROUP_FLAGS_CONTAINER_SET` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

/** `VFIO_DEVICE_FLAGS_RESET` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
/** `VFIO_DEVICE_FLAGS_PCI` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
/** `VFIO_DEVICE_FLAGS_CAPS` (1 << 7) in include/uapi/linux/vfio.h. */
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;

/** `VFIO_REGION_INFO_FLAG_READ` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
/** `VFIO_REGION_INFO_FLAG_WRITE` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
/** `VFIO_REGION_INFO_FLAG_MMAP` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
/** `VFIO_REGION_INFO_FLAG_CAPS` (1 << 3) in include/uapi/linux/vfio.h. */
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
/** `VFIO_REGION_INFO_CAP_SPARSE_MMAP` (1) in include/uapi/linux/vfio.h. */
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;

/** `VFIO_IRQ_INFO_EVENTFD` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
/** `VFIO_IRQ_INFO_MASKABLE` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
/** `VFIO_IRQ_INFO_AUTOMASKED` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
/** `VFIO_IRQ_INFO_NORESIZE` (1 << 3) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

/** `VFIO_IRQ_SET_DATA_NONE` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
/** `VFIO_IRQ_SET_DATA_BOOL` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
/** `VFIO_IRQ_SET_DATA_EVENTFD` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
/** `VFIO_IRQ_SET_ACTION_MASK` (1 << 3) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
/** `VFIO_IRQ_SET_ACTION_UNMASK` (1 << 4) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
/** `VFIO_IRQ_SET_ACTION_TRIGGER` (1 << 5) in include/uapi/linux/vfio.h. */
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;

/** vfio-pci region and IRQ indexes. */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
/** `VFIO_PCI_ROM_REGION_INDEX` (6) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_ROM_REGION_INDEX = 6;
/** `VFIO_PCI_CONFIG_REGION_INDEX` (7) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
/** `VFIO_PCI_NUM_REGIONS` (9) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_NUM_REGIONS = 9;
/** `VFIO_PCI_INTX_IRQ_INDEX` (0) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
/** `VFIO_PCI_MSI_IRQ_INDEX` (1) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
/** `VFIO_PCI_MSIX_IRQ_INDEX` (2) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
/** `VFIO_PCI_NUM_IRQS` (5) in include/uapi/linux/vfio.h. */
export const VFIO_PCI_NUM_IRQS = 5;

/** `VFIO_IOMMU_INFO_PGSIZES` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
/** `VFIO_IOMMU_INFO_CAPS` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
/** `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE` (1) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
/** `VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION` (2) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
/** `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL` (3) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

/** `VFIO_DMA_MAP_FLAG_READ` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
/** `VFIO_DMA_MAP_FLAG_WRITE` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
/** `VFIO_DMA_MAP_FLAG_VADDR` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
/** `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP` (1 << 0) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
/** `VFIO_DMA_UNMAP_FLAG_ALL` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
/** `VFIO_DMA_UNMAP_FLAG_VADDR` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

/** `VFIO_IOMMU_DIRTY_PAGES_FLAG_START` (1 << 0) in include/uapi/linux/vfio.h: only one of START, STOP, GET_BITMAP per call. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
/** `VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP` (1 << 1) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
/** `VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP` (1 << 2) in include/uapi/linux/vfio.h. */
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;

/** Struct layouts: `sizeof` and the offset of each field used. */
export const vfio_group_status = { sizeof: 8, argsz: 0, flags: 4 } as const;
/** 20 bytes on 6.1; later kernels append a u32 pad (24). The kernel checks argsz >= 16 (minsz). */
export const vfio_device_info = { sizeof: 20, minsz: 16, argsz: 0, flags: 4, num_regions: 8, num_irqs: 12, cap_offset: 16 } as const;
/** `struct vfio_region_info`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_region_info = { sizeof: 32, argsz: 0, flags: 4, index: 8, cap_offset: 12, size: 16, offset: 24 } as const;
/** `struct vfio_irq_info`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_irq_info = { sizeof: 16, argsz: 0, flags: 4, index: 8, count: 12 } as const;
/** `struct vfio_irq_set`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_irq_set = { sizeof: 20, argsz: 0, flags: 4, index: 8, start: 12, count: 16, data: 20 } as const;
/** `struct vfio_iommu_type1_info`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iommu_type1_info = { sizeof: 24, minsz: 16, argsz: 0, flags: 4, iova_pgsizes: 8, cap_offset: 16 } as const;
/** `struct vfio_iommu_type1_dma_map`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iommu_type1_dma_map = { sizeof: 32, argsz: 0, flags: 4, vaddr: 8, iova: 16, size: 24 } as const;
/** `struct vfio_iommu_type1_dma_unmap`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iommu_type1_dma_unmap = { sizeof: 24, argsz: 0, flags: 4, iova: 8, size: 16, data: 24 } as const;
/**
 * `struct vfio_bitmap`: what follows `vfio_iommu_type1_dma_unmap` (in its `data[]`) with
 * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, and ends `vfio_iommu_type1_dirty_bitmap_get`. `data` is a
 * user pointer to the zeroed bitmap (u64 words), `size` its length in bytes.
 */
export const vfio_bitmap = { sizeof: 24, pgsize: 0, size: 8, data: 16 } as const;
/** `struct vfio_iommu_type1_dirty_bitmap`: VFIO_IOMMU_DIRTY_PAGES's header; GET_BITMAP puts a `_get` in `data[]`. */
export const vfio_iommu_type1_dirty_bitmap = { sizeof: 8, argsz: 0, flags: 4, data: 8 } as const;
/** `struct vfio_iommu_type1_dirty_bitmap_get`: the range and bitmap of a GET_BITMAP (argsz counts it, not the bitmap). */
export const vfio_iommu_type1_dirty_bitmap_get = { sizeof: 40, iova: 0, size: 8, bitmap: 16 } as const;
/** `struct vfio_info_cap_header`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_info_cap_header = { sizeof: 8, id: 0, version: 2, next: 4 } as const;
/** `struct vfio_iommu_type1_info_cap_iova_range`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iommu_type1_info_cap_iova_range = { sizeof: 16, header: 0, nr_iovas: 8, iova_ranges: 16 } as const;
/** `struct vfio_iova_range`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iova_range = { sizeof: 16, start: 0, end: 8 } as const;
/**
 * `struct vfio_iommu_type1_info_cap_migration`: dirty-page logging exists (vfio_iommu_migration_build_caps():
 * `pgsize_bitmap` is the smallest IO page size only, `max_dirty_bitmap_size` DIRTY_BITMAP_SIZE_MAX, 256 MiB).
 */
export const vfio_iommu_type1_info_cap_migration = { sizeof: 32, header: 0, flags: 8, pgsize_bitmap: 16, max_dirty_bitmap_size: 24 } as const;
/** `struct vfio_iommu_type1_info_dma_avail`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_iommu_type1_info_dma_avail = { sizeof: 12, header: 0, avail: 8 } as const;
/** `struct vfio_device_bind_iommufd`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_device_bind_iommufd = { sizeof: 16, argsz: 0, flags: 4, iommufd: 8, out_devid: 12 } as const;
/** `struct vfio_device_attach_iommufd_pt`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_device_attach_iommufd_pt = { sizeof: 12, argsz: 0, flags: 4, pt_id: 8 } as const;
/** `struct vfio_device_detach_iommufd_pt`: its size and the byte offset of each field used, as in include/uapi/linux/vfio.h. */
export const vfio_device_detach_iommufd_pt = { sizeof: 8, argsz: 0, flags: 4 } as const;
