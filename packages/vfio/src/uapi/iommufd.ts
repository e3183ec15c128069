/**
 * iommufd uapi: numbers and struct layouts named as in the kernel header.
 *
 * Matches Linux 6.12 `include/uapi/linux/iommufd.h` (Debian linux-libc-dev 6.12 from
 * bookworm-backports; bookworm's 6.1 headers have no iommufd.h), checked by the golden test; the rules
 * are in docs/kernel-rules.md#the-size-protocol and the sections after it. Every struct starts with `size` (u32).
 */

/** `IOMMUFD_TYPE` is ';' like VFIO's; the command numbers do not collide (0x80...). */
export const IOMMUFD_NR = {
  IOMMU_DESTROY: 0x80,
  IOMMU_IOAS_ALLOC: 0x81,
  IOMMU_IOAS_ALLOW_IOVAS: 0x82,
  IOMMU_IOAS_COPY: 0x83,
  IOMMU_IOAS_IOVA_RANGES: 0x84,
  IOMMU_IOAS_MAP: 0x85,
  IOMMU_IOAS_UNMAP: 0x86,
  IOMMU_OPTION: 0x87,
  IOMMU_VFIO_IOAS: 0x88,
  /** Linux 6.6+: a hardware page table (an iommu_domain) on an IOAS, for one device's IOMMU. */
  IOMMU_HWPT_ALLOC: 0x89,
  /** Linux 6.6+: what a bound device's IOMMU is and can do (IOMMU_HW_CAP_DIRTY_TRACKING from 6.7). */
  IOMMU_GET_HW_INFO: 0x8a,
  /** Linux 6.7+: dirty tracking of a HWPT on or off. */
  IOMMU_HWPT_SET_DIRTY_TRACKING: 0x8b,
  /** Linux 6.7+: the dirty bits of an IOVA range of a HWPT, read (and cleared unless NO_CLEAR). */
  IOMMU_HWPT_GET_DIRTY_BITMAP: 0x8c,
} as const;

/** `IOMMU_IOAS_MAP_FIXED_IOVA` (1 << 0) in include/uapi/linux/iommufd.h. */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
/** `IOMMU_IOAS_MAP_WRITEABLE` (1 << 1) in include/uapi/linux/iommufd.h. */
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
/** `IOMMU_IOAS_MAP_READABLE` (1 << 2) in include/uapi/linux/iommufd.h. */
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

/** `IOMMU_OPTION_RLIMIT_MODE` (0) in include/uapi/linux/iommufd.h. */
export const IOMMU_OPTION_RLIMIT_MODE = 0;
/** `IOMMU_OPTION_HUGE_PAGES` (1) in include/uapi/linux/iommufd.h. */
export const IOMMU_OPTION_HUGE_PAGES = 1;
/** `IOMMU_OPTION_OP_SET` (0) in include/uapi/linux/iommufd.h. */
export const IOMMU_OPTION_OP_SET = 0;
/** `IOMMU_OPTION_OP_GET` (1) in include/uapi/linux/iommufd.h. */
export const IOMMU_OPTION_OP_GET = 1;

/** `IOMMU_HWPT_ALLOC_NEST_PARENT` (1 << 0) in include/uapi/linux/iommufd.h. */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
/** `IOMMU_HWPT_ALLOC_DIRTY_TRACKING` (1 << 1): the domain can track dirty pages; a device whose IOMMU cannot is refused at attach. */
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
/** `IOMMU_HWPT_FAULT_ID_VALID` (1 << 2) in include/uapi/linux/iommufd.h. */
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;
/** `IOMMU_HWPT_DATA_NONE` (0): a kernel-managed (paging) HWPT, no driver data. */
export const IOMMU_HWPT_DATA_NONE = 0;
/** `IOMMU_HW_INFO_TYPE_NONE` (0): the IOMMU driver reports no hardware info. */
export const IOMMU_HW_INFO_TYPE_NONE = 0;
/** `IOMMU_HW_INFO_TYPE_INTEL_VTD` (1) in include/uapi/linux/iommufd.h. */
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
/** `IOMMU_HW_CAP_DIRTY_TRACKING` (1 << 0) of `out_capabilities`: SET_DIRTY_TRACKING and GET_DIRTY_BITMAP work. */
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
/** `IOMMU_HW_CAP_PCI_PASID_EXEC` (1 << 1) in include/uapi/linux/iommufd.h. */
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
/** `IOMMU_HW_CAP_PCI_PASID_PRIV` (1 << 2) in include/uapi/linux/iommufd.h. */
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;
/** `IOMMU_HWPT_DIRTY_TRACKING_ENABLE` (1): SET_DIRTY_TRACKING's flag; 0 disables. */
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
/** `IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR` (1): read the dirty bits and leave them set. */
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

/** `struct iommu_destroy`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_destroy = { sizeof: 8, size: 0, id: 4 } as const;
/** `struct iommu_ioas_alloc`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_alloc = { sizeof: 12, size: 0, flags: 4, out_ioas_id: 8 } as const;
/** `struct iommu_iova_range`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_iova_range = { sizeof: 16, start: 0, last: 8 } as const;
/** `struct iommu_ioas_iova_ranges`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_iova_ranges = { sizeof: 32, size: 0, ioas_id: 4, num_iovas: 8, __reserved: 12, allowed_iovas: 16, out_iova_alignment: 24 } as const;
/** `struct iommu_ioas_allow_iovas`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_allow_iovas = { sizeof: 24, size: 0, ioas_id: 4, num_iovas: 8, __reserved: 12, allowed_iovas: 16 } as const;
/** `struct iommu_ioas_copy`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_copy = { sizeof: 40, size: 0, flags: 4, dst_ioas_id: 8, src_ioas_id: 12, length: 16, dst_iova: 24, src_iova: 32 } as const;
/** `struct iommu_ioas_map`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_map = { sizeof: 40, size: 0, flags: 4, ioas_id: 8, __reserved: 12, user_va: 16, length: 24, iova: 32 } as const;
/** `struct iommu_ioas_unmap`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_ioas_unmap = { sizeof: 24, size: 0, ioas_id: 4, iova: 8, length: 16 } as const;
/** `struct iommu_option`: its size and the byte offset of each field used, as in include/uapi/linux/iommufd.h. */
export const iommu_option = { sizeof: 24, size: 0, option_id: 4, op: 8, __reserved: 10, object_id: 12, val64: 16 } as const;
/**
 * `struct iommu_hwpt_alloc` as of Linux 6.12 (48 bytes; `fault_id` and `__reserved2` came in 6.11,
 * and older kernels take the shorter size, so the zeroed tail is accepted by copy_struct_from_user).
 */
export const iommu_hwpt_alloc = { sizeof: 48, size: 0, flags: 4, dev_id: 8, pt_id: 12, out_hwpt_id: 16, __reserved: 20, data_type: 24, data_len: 28, data_uptr: 32, fault_id: 40, __reserved2: 44 } as const;
/** `struct iommu_hw_info` as of Linux 6.12 (`out_capabilities` since 6.7, `out_max_pasid_log2` since 6.11). */
export const iommu_hw_info = { sizeof: 40, size: 0, flags: 4, dev_id: 8, data_len: 12, data_uptr: 16, out_data_type: 24, out_max_pasid_log2: 28, __reserved: 29, out_capabilities: 32 } as const;
/** `struct iommu_hwpt_set_dirty_tracking`: its size and the byte offset of each field, as in include/uapi/linux/iommufd.h. */
export const iommu_hwpt_set_dirty_tracking = { sizeof: 16, size: 0, flags: 4, hwpt_id: 8, __reserved: 12 } as const;
/** `struct iommu_hwpt_get_dirty_bitmap`: `data` is a user pointer to the bitmap (bit n of u64 word n / 64 is page n from `iova`). */
export const iommu_hwpt_get_dirty_bitmap = { sizeof: 48, size: 0, hwpt_id: 4, flags: 8, __reserved: 12, iova: 16, length: 24, page_size: 32, data: 40 } as const;
