/**
 * The IOMMU driver ioctls on a VFIO container (`/dev/vfio/vfio` after VFIO_SET_IOMMU): type1's
 * GET_INFO, MAP_DMA, UNMAP_DMA and DIRTY_PAGES, and the PAMU SDK driver's. Each handler takes the
 * calling process (its memory, byte order and fd table) and the container.
 */
import { ERRNO } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import type { SimProcess } from './sim-syscalls.js';
import type { SimVfioContainer } from './vfio-container.js';

// Request numbers (include/uapi/linux/vfio.h): _IO(VFIO_TYPE ';' = 0x3b, VFIO_BASE 100 + n), as on
// x86 and arm64 (the dispatcher drops PowerPC's direction bit before comparing).
/** _IO(VFIO_TYPE, VFIO_BASE + 12) */
const VFIO_IOMMU_GET_INFO = 0x3b70;
/** _IO(VFIO_TYPE, VFIO_BASE + 13) */
const VFIO_IOMMU_MAP_DMA = 0x3b71;
/** _IO(VFIO_TYPE, VFIO_BASE + 14) */
const VFIO_IOMMU_UNMAP_DMA = 0x3b72;
/** _IO(VFIO_TYPE, VFIO_BASE + 17) */
const VFIO_IOMMU_DIRTY_PAGES = 0x3b75;
// The Freescale SDK's PAMU driver (its include/uapi/linux/vfio.h; @ioas/backend-pamu's uapi.ts).
/** _IO(VFIO_TYPE, VFIO_BASE + 15) */
const VFIO_IOMMU_PAMU_GET_ATTR = 0x3b73;
/** _IO(VFIO_TYPE, VFIO_BASE + 16) */
const VFIO_IOMMU_PAMU_SET_ATTR = 0x3b74;
/** _IO(VFIO_TYPE, VFIO_BASE + 17) */
const VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT = 0x3b75;
/** _IO(VFIO_TYPE, VFIO_BASE + 18) */
const VFIO_IOMMU_PAMU_MAP_MSI_BANK = 0x3b76;
/** _IO(VFIO_TYPE, VFIO_BASE + 19) */
const VFIO_IOMMU_PAMU_UNMAP_MSI_BANK = 0x3b77;

/** What type1 answers with its argument looked at (DIRTY_PAGES is dispatched before). */
const TYPE1_REQUESTS: readonly number[] = [VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA];
/** What the PAMU driver answers with its argument looked at (GET_MSI_BANK_COUNT takes none). */
const PAMU_REQUESTS: readonly number[] = [VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA, VFIO_IOMMU_PAMU_GET_ATTR, VFIO_IOMMU_PAMU_SET_ATTR, VFIO_IOMMU_PAMU_MAP_MSI_BANK, VFIO_IOMMU_PAMU_UNMAP_MSI_BANK];

const INFO_FLAGS = { PGSIZES: 0x1, CAPS: 0x2 } as const;
const CAP = { IOVA_RANGE: 1, MIGRATION: 2, DMA_AVAIL: 3 } as const;
const MAP_FLAGS = { READ: 0x1, WRITE: 0x2, VADDR: 0x4 } as const;
const UNMAP_FLAGS = { GET_DIRTY_BITMAP: 0x1, ALL: 0x2, VADDR: 0x4 } as const;

/**
 * The IOMMU driver's ioctls on a `/dev/vfio/vfio` container once VFIO_SET_IOMMU chose one
 * (vfio_fops_unl_ioctl() forwards what it does not handle itself): type1's (drivers/vfio/
 * vfio_iommu_type1.c vfio_iommu_type1_ioctl(): GET_INFO, MAP_DMA, UNMAP_DMA, DIRTY_PAGES) and the
 * Freescale SDK's PAMU driver's (docs/kernel-rules.md#pamu-ioctls).
 */
export function iommuIoctl(proc: SimProcess, container: SimVfioContainer, request: number, argument: number | Uint8Array): number {
  // GET_MSI_BANK_COUNT takes no argument (the value passed is ignored).
  if (container.pamu !== undefined && request === VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT) return container.pamu.msiBankCount();
  if (container.pamu === undefined && request === VFIO_IOMMU_DIRTY_PAGES) return type1DirtyPages(proc, container, argument);
  // A request the driver does not know is ENOTTY before its argument is looked at
  // (vfio_iommu_type1_ioctl()'s default).
  if (!(container.pamu === undefined ? TYPE1_REQUESTS : PAMU_REQUESTS).includes(request)) return -ERRNO.ENOTTY;
  const buffer = proc.bytes(argument);
  if (container.pamu !== undefined) return pamuIoctl(proc, container, request, buffer);
  switch (request) {
    case VFIO_IOMMU_GET_INFO:
      return type1Info(proc, container, buffer);
    case VFIO_IOMMU_MAP_DMA: {
      // Decoded from the bytes (no DataView, no bigint while the values are below 2^53): this is
      // the hot path of every map.
      proc.argCheck(buffer, 32);
      const flags = proc.u32(buffer, 4);
      if ((flags & ~(MAP_FLAGS.READ | MAP_FLAGS.WRITE | MAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
      if ((flags & MAP_FLAGS.VADDR) !== 0) {
        // VADDR alone re-points a mapping whose vaddr was invalidated; with READ/WRITE it is
        // EINVAL (vfio_dma_do_map(): docs/kernel-rules.md#remapping-a-vaddr).
        if ((flags & (MAP_FLAGS.READ | MAP_FLAGS.WRITE)) !== 0) return -ERRNO.EINVAL;
        const view = proc.view(buffer);
        container.remapVaddr(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), view.getBigUint64(24, proc.little));
        return 0;
      }
      const read = (flags & MAP_FLAGS.READ) !== 0;
      const write = (flags & MAP_FLAGS.WRITE) !== 0;
      const vaddr = proc.u64Number(buffer, 8);
      const iova = proc.u64Number(buffer, 16);
      const size = proc.u64Number(buffer, 24);
      if (vaddr >= 0 && iova >= 0 && size >= 0) {
        container.mapNumbers(vaddr, iova, size, read, write);
      } else {
        const view = proc.view(buffer);
        container.map(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), view.getBigUint64(24, proc.little), read, write);
      }
      return 0;
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      proc.argCheck(buffer, 24);
      const flags = proc.u32(buffer, 4);
      if ((flags & ~(UNMAP_FLAGS.GET_DIRTY_BITMAP | UNMAP_FLAGS.ALL | UNMAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
      if ((flags & UNMAP_FLAGS.GET_DIRTY_BITMAP) !== 0) return unmapWithDirtyBitmap(proc, container, buffer, flags);
      const all = (flags & UNMAP_FLAGS.ALL) !== 0;
      if ((flags & UNMAP_FLAGS.VADDR) !== 0) {
        // The mappings stay; their vaddrs are invalidated, and `size` says how many bytes
        // (vfio_dma_do_unmap(): docs/kernel-rules.md#invalidating-a-vaddr).
        const view = proc.view(buffer);
        view.setBigUint64(16, container.unmap(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), all, undefined, true), proc.little);
        return 0;
      }
      const iova = proc.u64Number(buffer, 8);
      const size = proc.u64Number(buffer, 16);
      // `size` is written back only on success, as the bytes unmapped
      // (docs/kernel-rules.md#unmapped-size-written-back).
      const unmapped = all || iova < 0 || size < 0 ? -1 : container.unmapNumbers(iova, size);
      if (unmapped >= 0) {
        proc.setU64Number(buffer, 16, unmapped);
      } else {
        const view = proc.view(buffer);
        view.setBigUint64(16, container.unmap(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), all), proc.little);
      }
      return 0;
    }
    default:
      return -ERRNO.ENOTTY;
  }
}

/**
 * VFIO_IOMMU_DIRTY_PAGES: `struct vfio_iommu_type1_dirty_bitmap` { argsz, flags } then, for
 * GET_BITMAP, `struct vfio_iommu_type1_dirty_bitmap_get` { iova, size, struct vfio_bitmap
 * { pgsize, size, data } } at offset 8 (48 bytes in all); the checks are the container's.
 */
function type1DirtyPages(proc: SimProcess, container: SimVfioContainer, argument: number | Uint8Array): number {
  try {
    container.dirtyPages(
      () => {
        const buffer = proc.bytes(argument);
        if (buffer.byteLength < 8) throw new KernelError(ERRNO.EFAULT, 'VFIO_IOMMU_DIRTY_PAGES', 'argument shorter than its header');
        return { argsz: proc.u32(buffer, 0), flags: proc.u32(buffer, 4) };
      },
      () => {
        const buffer = proc.bytes(argument);
        if (buffer.byteLength < 48) throw new KernelError(ERRNO.EFAULT, 'VFIO_IOMMU_DIRTY_PAGES', 'argument shorter than struct vfio_iommu_type1_dirty_bitmap_get');
        const view = proc.view(buffer);
        const data = view.getBigUint64(40, proc.little);
        const bitmapSize = view.getBigUint64(32, proc.little);
        return {
          iova: view.getBigUint64(8, proc.little),
          size: view.getBigUint64(16, proc.little),
          pgsize: view.getBigUint64(24, proc.little),
          bitmapSize,
          data,
          bitmap: () => proc.userBitmap(data, bitmapSize, 'VFIO_IOMMU_DIRTY_PAGES'),
        };
      },
    );
    return 0;
  } finally {
    proc.commitUserBitmaps();
  }
}

/**
 * VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: with ALL or VADDR EINVAL, argsz
 * below 24 + 24 EINVAL, then `struct vfio_bitmap` { pgsize, size, data } at offset 24; `size` is
 * written back only on success.
 */
function unmapWithDirtyBitmap(proc: SimProcess, container: SimVfioContainer, buffer: Uint8Array, flags: number): number {
  if ((flags & (UNMAP_FLAGS.ALL | UNMAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
  if (proc.u32(buffer, 0) < 48) return -ERRNO.EINVAL;
  if (buffer.byteLength < 48) return -ERRNO.EFAULT;
  const view = proc.view(buffer);
  const data = view.getBigUint64(40, proc.little);
  const size = view.getBigUint64(32, proc.little);
  try {
    const unmapped = container.unmapWithDirtyBitmap(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), {
      pgsize: view.getBigUint64(24, proc.little),
      size,
      data,
      bitmap: () => proc.userBitmap(data, size, 'VFIO_IOMMU_UNMAP_DMA'),
    });
    view.setBigUint64(16, unmapped, proc.little);
    return 0;
  } finally {
    proc.commitUserBitmaps();
  }
}

/**
 * VFIO_IOMMU_GET_INFO (vfio_iommu_type1_get_info(), docs/kernel-rules.md#the-argsz-growth-protocol):
 * the chain is MIGRATION (32 bytes), DMA_AVAIL, IOVA_RANGE (16 + 16n). 6.1's vfio_info_cap_add()
 * packs it (DMA_AVAIL 12 bytes), 6.12's aligns each capability to 8 (DMA_AVAIL 16, zero padded).
 * Too small an argsz gets argsz := the size needed, the header, no caps; 6.1 copies 16 header
 * bytes below argsz 20, else 20 (cap_offset, never the 4 bytes after it), 6.12 `min(argsz, 24)`
 * of a zeroed struct (cap_offset and pad 0). A large enough argsz is left as it is, gets the caps
 * at 24 and cap_offset 24.
 */
function type1Info(proc: SimProcess, container: SimVfioContainer, buffer: Uint8Array): number {
  const view = proc.argView(buffer, 16);
  const argsz = view.getUint32(0, proc.little);
  const info = container.info();
  const aligned = proc.simulator.kernel !== '6.1';
  const migrationAt = 24;
  const availAt = migrationAt + 32;
  const rangesAt = availAt + (aligned ? 16 : 12);
  const needed = rangesAt + 16 + 16 * info.ranges.length;
  const flags = INFO_FLAGS.PGSIZES | INFO_FLAGS.CAPS;
  const header = aligned ? Math.min(argsz, 24) : argsz >= 20 ? 20 : 16;
  const out = new DataView(new ArrayBuffer(needed));
  out.setUint32(4, flags, proc.little);
  out.setBigUint64(8, info.ioPageSizes, proc.little);
  if (argsz < needed) {
    // Too small for the caps: argsz says what is needed, cap_offset stays 0, the call succeeds.
    out.setUint32(0, needed, proc.little);
    buffer.set(new Uint8Array(out.buffer, 0, Math.min(header, buffer.byteLength)));
    return 0;
  }
  out.setUint32(0, argsz, proc.little);
  out.setUint32(16, migrationAt, proc.little);
  capHeader(out, migrationAt, CAP.MIGRATION, availAt, proc.little);
  out.setUint32(migrationAt + 8, 0, proc.little);
  out.setBigUint64(migrationAt + 16, info.migration.pageSizes, proc.little);
  out.setBigUint64(migrationAt + 24, info.migration.maxDirtyBitmapSize, proc.little);
  capHeader(out, availAt, CAP.DMA_AVAIL, rangesAt, proc.little);
  out.setUint32(availAt + 8, info.dmaAvailable, proc.little);
  capHeader(out, rangesAt, CAP.IOVA_RANGE, 0, proc.little);
  out.setUint32(rangesAt + 8, info.ranges.length, proc.little);
  info.ranges.forEach((range, index) => {
    out.setBigUint64(rangesAt + 16 + index * 16, range.start, proc.little);
    out.setBigUint64(rangesAt + 24 + index * 16, range.last, proc.little);
  });
  const bytes = new Uint8Array(out.buffer);
  buffer.set(bytes.subarray(0, Math.min(header, buffer.byteLength)));
  if (buffer.byteLength > 24) buffer.set(bytes.subarray(24, Math.min(needed, buffer.byteLength)), 24);
  return 0;
}

/** A capability chain header: id, version 1, the next one's offset. */
function capHeader(view: DataView, at: number, id: number, next: number, little: boolean): void {
  view.setUint16(at, id, little);
  view.setUint16(at + 2, 1, little);
  view.setUint32(at + 4, next, little);
}

/** The PAMU SDK backend's ioctls (docs/kernel-rules.md#pamu-ioctls). */
function pamuIoctl(proc: SimProcess, container: SimVfioContainer, request: number, buffer: Uint8Array): number {
  const pamu = container.pamu!;
  switch (request) {
    case VFIO_IOMMU_MAP_DMA: {
      const view = proc.argView(buffer, 32);
      const flags = view.getUint32(4, proc.little);
      if ((flags & ~(MAP_FLAGS.READ | MAP_FLAGS.WRITE)) !== 0) return -ERRNO.EINVAL;
      container.map(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), view.getBigUint64(24, proc.little), (flags & 1) !== 0, (flags & 2) !== 0);
      return 0;
    }
    case VFIO_IOMMU_UNMAP_DMA: {
      const view = proc.argView(buffer, 24);
      if (view.getUint32(4, proc.little) !== 0) return -ERRNO.EINVAL;
      // No size feedback: `size` is left as the caller wrote it.
      container.unmap(view.getBigUint64(8, proc.little), view.getBigUint64(16, proc.little), false);
      return 0;
    }
    case VFIO_IOMMU_PAMU_GET_ATTR: {
      const view = proc.argView(buffer, 32);
      const value = pamu.getAttr(view.getUint32(8, proc.little));
      if (value !== undefined && 'start' in value) {
        view.setBigUint64(16, value.start, proc.little);
        view.setBigUint64(24, value.end, proc.little);
      } else if (value !== undefined && 'windows' in value) {
        view.setUint32(16, value.windows, proc.little);
      } else if (value !== undefined) {
        view.setUint32(16, value.cpu, proc.little);
        view.setUint32(20, value.cache, proc.little);
      }
      return 0;
    }
    case VFIO_IOMMU_PAMU_SET_ATTR: {
      const view = proc.argView(buffer, 32);
      const attribute = view.getUint32(8, proc.little);
      if (attribute === PAMU_ATTRIBUTE.GEOMETRY) pamu.setGeometry(view.getBigUint64(16, proc.little), view.getBigUint64(24, proc.little));
      else if (attribute === PAMU_ATTRIBUTE.WINDOWS) pamu.setWindows(view.getUint32(16, proc.little));
      else if (attribute === PAMU_ATTRIBUTE.PAMU_STASH) pamu.setStash(view.getUint32(16, proc.little), view.getUint32(20, proc.little));
      return 0; // always, after the argsz check
    }
    case VFIO_IOMMU_PAMU_MAP_MSI_BANK: {
      const view = proc.argView(buffer, 24);
      const flags = view.getUint32(4, proc.little);
      pamu.mapMsiBank(view.getUint32(8, proc.little), view.getBigUint64(16, proc.little), (flags & 1) !== 0, (flags & 2) !== 0);
      return 0;
    }
    case VFIO_IOMMU_PAMU_UNMAP_MSI_BANK: {
      const view = proc.argView(buffer, 16);
      pamu.unmapMsiBank(view.getBigUint64(8, proc.little));
      return 0;
    }
    default:
      return -ERRNO.ENOTTY; // GET_INFO included
  }
}
