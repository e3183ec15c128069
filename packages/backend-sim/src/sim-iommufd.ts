/**
 * The `/dev/iommu` ioctls (include/uapi/linux/iommufd.h, 6.12): IOMMU_DESTROY, the IOAS ones
 * (ALLOC, ALLOW_IOVAS, COPY, IOVA_RANGES, MAP, UNMAP), IOMMU_OPTION, IOMMU_GET_HW_INFO and the HWPT
 * ones, decoded from the calling process's structs (its memory and byte order) and handed to the
 * fd's {@link SimIommufdContext}. The device cdev's BIND/ATTACH/DETACH_IOMMUFD are device-fd
 * ioctls: sim-device.ts.
 */
import { ERRNO, U64_MAX, type IovaRange } from '@ioas/core';
import type { SimIommufdContext } from './iommufd.js';
import { KernelError } from './kernel-error.js';
import type { SimProcess } from './sim-syscalls.js';

// Request numbers: _IO(IOMMUFD_TYPE ';' = 0x3b, IOMMUFD_CMD_*), as on x86 and arm64 (the dispatcher
// drops PowerPC's direction bit before comparing).
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY = 0x80) */
const IOMMU_DESTROY = 0x3b80;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC = 0x81) */
const IOMMU_IOAS_ALLOC = 0x3b81;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82) */
const IOMMU_IOAS_ALLOW_IOVAS = 0x3b82;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_COPY = 0x83) */
const IOMMU_IOAS_COPY = 0x3b83;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84) */
const IOMMU_IOAS_IOVA_RANGES = 0x3b84;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP = 0x85) */
const IOMMU_IOAS_MAP = 0x3b85;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP = 0x86) */
const IOMMU_IOAS_UNMAP = 0x3b86;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION = 0x87) */
const IOMMU_OPTION = 0x3b87;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_VFIO_IOAS = 0x88) */
const IOMMU_VFIO_IOAS = 0x3b88;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC = 0x89) */
const IOMMU_HWPT_ALLOC = 0x3b89;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_GET_HW_INFO = 0x8a) */
const IOMMU_GET_HW_INFO = 0x3b8a;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b) */
const IOMMU_HWPT_SET_DIRTY_TRACKING = 0x3b8b;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c) */
const IOMMU_HWPT_GET_DIRTY_BITMAP = 0x3b8c;
/** _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d) */
const IOMMU_HWPT_INVALIDATE = 0x3b8d;

/**
 * The ioctls of a `/dev/iommu` fd (drivers/iommu/iommufd/main.c iommufd_fops_ioctl() and its
 * iommufd_ioctl_ops table), decoded from the process's structs and answered by its iommufd context.
 */
export function iommufdIoctl(proc: SimProcess, context: SimIommufdContext, request: number, argument: number | Uint8Array): number {
  // iommufd_fops_ioctl(): an nr outside IOMMUFD_CMD_BASE..the last command goes to the VFIO compat
  // layer, which matches whole request numbers (vfio_compat.c, iommufd_vfio_ioctl()).
  const nr = request & 0xff;
  if (nr < 0x80 || nr > 0x8e) return compatIoctl(proc, context, request, argument);
  const buffer = proc.bytes(argument);
  // The hot paths, decoded from the bytes (no view, no bigint below 2^53): a struct of exactly the
  // kernel's size whose common case the context handles at once. Anything else (and any case the
  // context declines, having changed nothing) goes through the checked decoding below.
  if (request === IOMMU_IOAS_MAP && buffer.byteLength >= 40 && proc.u32(buffer, 0) === 40 && proc.u32(buffer, 12) === 0) {
    const vaddr = proc.u64Number(buffer, 16);
    const length = proc.u64Number(buffer, 24);
    const iova = proc.u64Number(buffer, 32);
    if (vaddr >= 0 && length >= 0 && iova >= 0 && context.mapNumbers(proc.u32(buffer, 8), proc.u32(buffer, 4), vaddr, length, iova) >= 0) return 0;
  } else if (request === IOMMU_IOAS_UNMAP && buffer.byteLength >= 24 && proc.u32(buffer, 0) === 24) {
    const iova = proc.u64Number(buffer, 8);
    const length = proc.u64Number(buffer, 16);
    if (iova >= 0 && length >= 0) {
      const unmapped = context.unmapNumbers(proc.u32(buffer, 4), iova, length);
      if (unmapped >= 0) {
        proc.setU64Number(buffer, 16, unmapped);
        return 0;
      }
    }
  }
  switch (request) {
    case IOMMU_DESTROY: {
      const view = sized(proc, buffer, 8, 8);
      context.destroy(view.getUint32(4, proc.little));
      return 0;
    }
    case IOMMU_IOAS_ALLOC: {
      const view = sized(proc, buffer, 12, 12);
      view.setUint32(8, context.allocateIoas(view.getUint32(4, proc.little)), proc.little);
      return 0;
    }
    case IOMMU_IOAS_IOVA_RANGES: {
      const view = sized(proc, buffer, 32, 32);
      if (view.getUint32(12, proc.little) !== 0) return -ERRNO.EOPNOTSUPP;
      const { ranges, alignment } = context.iovaRanges(view.getUint32(4, proc.little));
      const slots = view.getUint32(8, proc.little);
      const pointer = view.getBigUint64(16, proc.little);
      // One entry at a time (iommufd_ioas_iova_ranges()): an unwritable one is EFAULT, with the
      // entries before it written and the struct not.
      ranges.slice(0, Math.min(slots, ranges.length)).forEach((range, index) => proc.simulator.memory.write(pointer + BigInt(index * 16), encodeRanges(proc, [range])));
      // The struct is written back even when the slots are too few: num_iovas is the total
      // (docs/kernel-rules.md#iova-ranges-two-step-query).
      view.setUint32(8, ranges.length, proc.little);
      view.setBigUint64(24, alignment, proc.little);
      return ranges.length > slots ? -ERRNO.EMSGSIZE : 0;
    }
    case IOMMU_IOAS_ALLOW_IOVAS: {
      const view = sized(proc, buffer, 24, 24);
      if (view.getUint32(12, proc.little) !== 0) return -ERRNO.EOPNOTSUPP;
      const pointer = view.getBigUint64(16, proc.little);
      // The IOAS first, then the entries one at a time (6.12 ioas.c, iommufd_ioas_load_iovas()):
      // an unreadable one is EFAULT only when the ones before it were good.
      context.allowIovasFrom(view.getUint32(4, proc.little), view.getUint32(8, proc.little), (index) => {
        const address = pointer + BigInt(index) * 16n;
        if (address + 15n > U64_MAX || !proc.simulator.memory.isMapped(address, 16n)) throw new KernelError(ERRNO.EFAULT, 'IOMMU_IOAS_ALLOW_IOVAS', `allowed_iovas[${index}] at ${address.toString(16)} is not readable`);
        return decodeRanges(proc, proc.simulator.memory.read(address, 16))[0]!;
      });
      return 0;
    }
    case IOMMU_IOAS_MAP: {
      const view = sized(proc, buffer, 40, 40);
      if (view.getUint32(12, proc.little) !== 0) return -ERRNO.EOPNOTSUPP;
      const iova = context.map(
        view.getUint32(8, proc.little),
        view.getUint32(4, proc.little),
        view.getBigUint64(16, proc.little),
        view.getBigUint64(24, proc.little),
        view.getBigUint64(32, proc.little),
      );
      view.setBigUint64(32, iova, proc.little);
      return 0;
    }
    case IOMMU_IOAS_UNMAP: {
      const view = sized(proc, buffer, 24, 24);
      const bytes = context.unmap(view.getUint32(4, proc.little), view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little));
      view.setBigUint64(16, bytes, proc.little);
      return 0;
    }
    case IOMMU_IOAS_COPY: {
      // struct iommu_ioas_copy: size, flags, dst_ioas_id @8, src_ioas_id @12, length @16,
      // dst_iova @24, src_iova @32; the kernel's checks and their order are the context's.
      const view = sized(proc, buffer, 40, 40);
      const iova = context.copy(
        view.getUint32(8, proc.little),
        view.getUint32(12, proc.little),
        view.getUint32(4, proc.little),
        view.getBigUint64(16, proc.little),
        view.getBigUint64(32, proc.little),
        view.getBigUint64(24, proc.little),
      );
      view.setBigUint64(24, iova, proc.little);
      return 0;
    }
    case IOMMU_GET_HW_INFO: {
      // struct iommu_hw_info: size, flags, dev_id, data_len, data_uptr @16, out_data_type @24,
      // out_max_pasid_log2 @28, __reserved[3] @29, out_capabilities @32; 40 bytes, 32 at least.
      const view = sized(proc, buffer, 32, 40);
      const size = Math.min(view.getUint32(0, proc.little), buffer.byteLength);
      const info = context.hwInfo(view.getUint32(8, proc.little), view.getUint32(4, proc.little), buffer[29]! | buffer[30]! | buffer[31]!);
      const userLength = view.getUint32(12, proc.little);
      const pointer = view.getBigUint64(16, proc.little);
      const data = new Uint8Array(info.vtd === undefined ? 0 : 24);
      if (info.vtd !== undefined) {
        const out = proc.view(data);
        out.setUint32(0, info.vtd.flags, proc.little);
        out.setBigUint64(8, info.vtd.cap, proc.little);
        out.setBigUint64(16, info.vtd.ecap, proc.little);
      }
      // copy_to_user() of min(data_len, the kernel's length), then clear_user() of the rest.
      const copied = Math.min(userLength, data.length);
      if (copied > 0) proc.simulator.memory.write(pointer, data.subarray(0, copied));
      if (userLength > copied) proc.simulator.memory.write(pointer + BigInt(copied), new Uint8Array(userLength - copied));
      view.setUint32(12, data.length, proc.little);
      view.setUint32(24, info.type, proc.little);
      buffer[28] = 0; // out_max_pasid_log2: no PASID on the simulated devices
      if (size >= 40) view.setBigUint64(32, info.capabilities, proc.little);
      return 0;
    }
    case IOMMU_VFIO_IOAS: {
      // struct iommu_vfio_ioas: size, ioas_id @4, op (u16) @8, __reserved (u16) @10. GET writes the
      // struct back with the compat IOAS's id.
      const view = sized(proc, buffer, 12, 12);
      const id = context.vfioIoas(view.getUint16(8, proc.little), view.getUint16(10, proc.little), view.getUint32(4, proc.little));
      if (id !== undefined) view.setUint32(4, id, proc.little);
      return 0;
    }
    case IOMMU_HWPT_INVALIDATE: {
      // struct iommu_hwpt_invalidate: size, hwpt_id @4, data_uptr @8, data_type @16, entry_len @20,
      // entry_num @24, __reserved @28. The struct goes back with entry_num (0: none done) whatever
      // the answer (iommufd_hwpt_invalidate()).
      const view = sized(proc, buffer, 32, 32);
      try {
        context.invalidateHwpt(view.getUint32(4, proc.little), view.getUint32(28, proc.little), view.getBigUint64(8, proc.little), view.getUint32(20, proc.little), view.getUint32(24, proc.little));
      } finally {
        view.setUint32(24, 0, proc.little);
      }
    }
    case IOMMU_HWPT_ALLOC: {
      // struct iommu_hwpt_alloc: size, flags, dev_id, pt_id, out_hwpt_id @16, __reserved @20,
      // data_type @24, data_len @28, data_uptr @32, fault_id @40, __reserved2 @44; 48 bytes, 24 at least.
      const view = sized(proc, buffer, 24, 48);
      const size = Math.min(view.getUint32(0, proc.little), buffer.byteLength);
      const field = (at: number): number => (at + 4 <= size ? view.getUint32(at, proc.little) : 0);
      const id = context.allocateHwpt(field(8), field(12), field(4), field(24), field(28), field(20));
      view.setUint32(16, id, proc.little);
      return 0;
    }
    case IOMMU_HWPT_SET_DIRTY_TRACKING: {
      // struct iommu_hwpt_set_dirty_tracking: size, flags, hwpt_id, __reserved (not checked).
      const view = sized(proc, buffer, 16, 16);
      context.setDirtyTracking(view.getUint32(8, proc.little), view.getUint32(4, proc.little));
      return 0;
    }
    case IOMMU_HWPT_GET_DIRTY_BITMAP: {
      // struct iommu_hwpt_get_dirty_bitmap: size, hwpt_id, flags, __reserved, iova @16,
      // length @24, page_size @32, data @40; 48 bytes.
      const view = sized(proc, buffer, 48, 48);
      const iova = view.getBigUint64(16, proc.little);
      const length = view.getBigUint64(24, proc.little);
      const pageSize = view.getBigUint64(32, proc.little);
      const data = view.getBigUint64(40, proc.little);
      try {
        context.dirtyBitmap(view.getUint32(4, proc.little), view.getUint32(8, proc.little), view.getUint32(12, proc.little), iova, length, pageSize, () => {
          // The words the range needs (iova_bitmap: (length - 1) >> pgshift bits, whole u64s).
          let shift = 0n;
          while (shift < 64n && ((pageSize >> shift) & 1n) === 0n) shift++;
          const bytes = ((((length - 1n) >> shift) / 64n) + 1n) * 8n;
          return proc.userBitmap(data, bytes, 'IOMMU_HWPT_GET_DIRTY_BITMAP');
        });
      } finally {
        proc.commitUserBitmaps();
      }
      return 0;
    }
    case IOMMU_OPTION: {
      // struct iommu_option: size, option_id @4, op (u16) @8, __reserved (u16) @10, object_id @12,
      // val64 @16. Only val64 is written back (6.12 main.c, iommufd_option()). SW_MSI_START/SIZE
      // (2, 3) were never merged: EOPNOTSUPP (docs/kernel-rules.md#software-msi-window-options-are-not-merged).
      const view = sized(proc, buffer, 24, 24);
      const value = context.option(
        view.getUint32(4, proc.little),
        view.getUint16(8, proc.little),
        view.getUint16(10, proc.little),
        view.getUint32(12, proc.little),
        view.getBigUint64(16, proc.little),
      );
      view.setBigUint64(16, value, proc.little);
      return 0;
    }
    default:
      return -ERRNO.ENOTTY;
  }
}

// The VFIO container ioctls iommufd answers for compatibility: _IO(VFIO_TYPE ';', VFIO_BASE + n).
/** VFIO_GET_API_VERSION, _IO(';', 100). */
const VFIO_GET_API_VERSION = 0x3b64;
/** VFIO_CHECK_EXTENSION, _IO(';', 101). */
const VFIO_CHECK_EXTENSION = 0x3b65;
/** VFIO_SET_IOMMU, _IO(';', 102). */
const VFIO_SET_IOMMU = 0x3b66;
/** VFIO_IOMMU_GET_INFO, _IO(';', 112). */
const VFIO_IOMMU_GET_INFO = 0x3b70;
/** VFIO_IOMMU_MAP_DMA, _IO(';', 113). */
const VFIO_IOMMU_MAP_DMA = 0x3b71;
/** VFIO_IOMMU_UNMAP_DMA, _IO(';', 114). */
const VFIO_IOMMU_UNMAP_DMA = 0x3b72;

/**
 * The VFIO compat layer of `/dev/iommu` (6.12 drivers/iommu/iommufd/vfio_compat.c,
 * iommufd_vfio_ioctl()): six container ioctls acting on the compat IOAS (IOMMU_VFIO_IOAS); any
 * other request ENOTTY (-ENOIOCTLCMD), VFIO_IOMMU_DIRTY_PAGES included.
 */
function compatIoctl(proc: SimProcess, context: SimIommufdContext, request: number, argument: number | Uint8Array): number {
  switch (request) {
    case VFIO_GET_API_VERSION:
      return 0; // VFIO_API_VERSION
    case VFIO_CHECK_EXTENSION:
      return context.compatCheckExtension(Number(argument));
    case VFIO_SET_IOMMU:
      context.compatSetIommu(Number(argument));
      return 0;
    case VFIO_IOMMU_GET_INFO: {
      // iommufd_vfio_iommu_get_info(): copy 16 bytes (EFAULT), argsz < 16 EINVAL; the compat IOAS
      // (ENODEV); then the caps after the 24-byte struct, each written only where argsz has room:
      // DMA_AVAIL (12 bytes, avail U32_MAX, padded to 16), IOVA_RANGE (16 + 16 a range). argsz
      // becomes the total, cap_offset 24 when all fit, flags PGSIZES | CAPS; min(argsz, 24) bytes
      // of the struct are written back.
      const buffer = proc.bytes(argument);
      if (buffer.byteLength < 16) return -ERRNO.EFAULT;
      const view = proc.view(buffer);
      const argsz = view.getUint32(0, proc.little);
      if (argsz < 16) return -ERRNO.EINVAL;
      const { pageSizes, ranges } = context.compatInfo();
      const availAt = 24;
      const rangesAt = availAt + 16;
      const total = rangesAt + 16 + 16 * ranges.length;
      const out = new DataView(new ArrayBuffer(total));
      const put = (from: number, to: number): void => buffer.set(new Uint8Array(out.buffer, from, Math.max(0, Math.min(to, buffer.byteLength) - from)), from);
      if (argsz - availAt >= 12) {
        out.setUint16(availAt, CAP_DMA_AVAIL, proc.little);
        out.setUint16(availAt + 2, 1, proc.little);
        if (argsz >= rangesAt) out.setUint32(availAt + 4, rangesAt, proc.little); // last_cap->next
        out.setUint32(availAt + 8, 0xffff_ffff, proc.little);
        put(availAt, availAt + 12);
      }
      if (argsz > rangesAt) {
        const avail = argsz - rangesAt;
        ranges.forEach((range, index) => {
          if (avail < 16 + 16 * (index + 1)) return;
          out.setBigUint64(rangesAt + 16 + 16 * index, range.start, proc.little);
          out.setBigUint64(rangesAt + 24 + 16 * index, range.last, proc.little);
          put(rangesAt + 16 + 16 * index, rangesAt + 32 + 16 * index);
        });
        if (avail >= 16 + 16 * ranges.length) {
          out.setUint16(rangesAt, CAP_IOVA_RANGE, proc.little);
          out.setUint16(rangesAt + 2, 1, proc.little);
          out.setUint32(rangesAt + 8, ranges.length, proc.little);
          put(rangesAt, rangesAt + 16);
        }
      }
      const header = new DataView(new ArrayBuffer(24));
      header.setUint32(0, total, proc.little);
      header.setUint32(4, VFIO_INFO_FLAGS.PGSIZES | VFIO_INFO_FLAGS.CAPS, proc.little);
      header.setBigUint64(8, pageSizes, proc.little);
      header.setUint32(16, argsz >= total ? 24 : 0, proc.little);
      buffer.set(new Uint8Array(header.buffer, 0, Math.min(argsz, 24, buffer.byteLength)));
      return 0;
    }
    case VFIO_IOMMU_MAP_DMA: {
      // struct vfio_iommu_type1_dma_map: argsz, flags, vaddr @8, iova @16, size @24. Copy 32
      // (EFAULT); argsz < 32 or a flag beyond READ | WRITE EINVAL; no flag at all is allowed.
      const buffer = proc.bytes(argument);
      if (buffer.byteLength < 32) return -ERRNO.EFAULT;
      const view = proc.view(buffer);
      const flags = view.getUint32(4, proc.little);
      if (view.getUint32(0, proc.little) < 32 || (flags & ~0x3) !== 0) return -ERRNO.EINVAL;
      context.compatMap((flags & 0x1) !== 0, (flags & 0x2) !== 0, view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), view.getBigUint64(24, proc.little));
      return 0;
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      // struct vfio_iommu_type1_dma_unmap: argsz, flags, iova @8, size @16. Copy 24 (EFAULT);
      // argsz < 24 or a flag beyond ALL (GET_DIRTY_BITMAP, VADDR) EINVAL; `size` gets the bytes
      // unmapped once the unmap ran, whatever it answered.
      const buffer = proc.bytes(argument);
      if (buffer.byteLength < 24) return -ERRNO.EFAULT;
      const view = proc.view(buffer);
      const flags = view.getUint32(4, proc.little);
      if (view.getUint32(0, proc.little) < 24 || (flags & ~0x2) !== 0) return -ERRNO.EINVAL;
      const { bytes, error } = context.compatUnmap((flags & 0x2) !== 0, view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little));
      view.setBigUint64(16, bytes, proc.little);
      if (error !== undefined) throw error;
      return 0;
    }
    default:
      return -ERRNO.ENOTTY;
  }
}

/** VFIO_IOMMU_INFO_* flags. */
const VFIO_INFO_FLAGS = { PGSIZES: 0x1, CAPS: 0x2 } as const;
/** VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE. */
const CAP_IOVA_RANGE = 1;
/** VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL. */
const CAP_DMA_AVAIL = 3;

/**
 * The struct after iommufd's size check (drivers/iommu/iommufd/main.c iommufd_fops_ioctl(), then
 * copy_struct_from_user()): `size` below the struct's minimum is EINVAL; bytes past the kernel's
 * struct must be zero, else E2BIG.
 */
function sized(proc: SimProcess, buffer: Uint8Array, minimum: number, kernelSize: number): DataView {
  const view = proc.view(buffer);
  const size = view.getUint32(0, proc.little);
  if (size < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'iommufd', 'size below the struct minimum');
  for (let at = kernelSize; at < Math.min(size, buffer.byteLength); at++) if (buffer[at] !== 0) throw new KernelError(ERRNO.E2BIG, 'iommufd', 'unknown trailing bytes');
  return view;
}

/** `struct iommu_iova_range` entries, in the process's byte order. */
function encodeRanges(proc: SimProcess, ranges: readonly IovaRange[]): Uint8Array {
  const bytes = new Uint8Array(ranges.length * 16);
  const view = proc.view(bytes);
  ranges.forEach((range, index) => {
    view.setBigUint64(index * 16, range.start, proc.little);
    view.setBigUint64(index * 16 + 8, range.last, proc.little);
  });
  return bytes;
}

/** The `struct iommu_iova_range` entries of `bytes`. */
function decodeRanges(proc: SimProcess, bytes: Uint8Array): IovaRange[] {
  const view = proc.view(bytes);
  const ranges: IovaRange[] = [];
  for (let at = 0; at + 16 <= bytes.byteLength; at += 16) {
    ranges.push({ start: view.getBigUint64(at, proc.little), last: view.getBigUint64(at + 8, proc.little) & U64_MAX });
  }
  return ranges;
}
