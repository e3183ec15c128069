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
