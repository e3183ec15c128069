import { IoasError, type IovaRange } from '@ioas/core';
import {
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
  vfio_info_cap_header,
  vfio_iommu_type1_info,
  vfio_iommu_type1_info_cap_iova_range,
  vfio_iommu_type1_info_cap_migration,
  vfio_iommu_type1_info_dma_avail,
  vfio_iova_range,
} from './uapi/vfio.js';

/** What VFIO_IOMMU_GET_INFO said, capabilities parsed. */
export interface Type1Info {
  /** `iova_pgsizes` when the PGSIZES flag is set. */
  readonly ioPageSizes: bigint | undefined;
  /** The IOVA_RANGE capability (inclusive ends), when present. */
  readonly ranges: readonly IovaRange[] | undefined;
  /** The DMA_AVAIL capability: mappings still allowed, when present. */
  readonly dmaAvailable: number | undefined;
  /**
   * The MIGRATION capability (5.8+): the container can log dirty pages (VFIO_IOMMU_DIRTY_PAGES).
   * Absent when the kernel does not offer it.
   */
  readonly migration: Type1Migration | undefined;
}

/** What the MIGRATION capability of VFIO_IOMMU_GET_INFO says (vfio_iommu_migration_build_caps()). */
export interface Type1Migration {
  /** `flags` (0 on every kernel so far). */
  readonly flags: number;
  /** `pgsize_bitmap`: the page sizes a dirty bitmap may use; the kernel sets only the smallest IO page size. */
  readonly pageSizes: bigint;
  /** `max_dirty_bitmap_size`: the largest bitmap one call takes, in bytes (DIRTY_BITMAP_SIZE_MAX, 256 MiB). */
  readonly maxBitmapBytes: bigint;
}

/**
 * Parses a VFIO_IOMMU_GET_INFO buffer. Capabilities are found by id, not position (the chain order
 * is MIGRATION, DMA_AVAIL, IOVA_RANGE on 6.1 and 6.12, but nothing promises it), unknown ids and
 * versions are skipped, and every field is read through a DataView because 6.1 does not pad caps:
 * the IOVA_RANGE entry sat at offset 68, its u64s 4-byte aligned
 * (docs/kernel-rules.md#capability-alignment-by-kernel-version).
 */
export function parseType1Info(view: DataView, little: boolean): Type1Info {
  const flags = view.getUint32(vfio_iommu_type1_info.flags, little);
  const ioPageSizes = (flags & VFIO_IOMMU_INFO_PGSIZES) !== 0 ? view.getBigUint64(vfio_iommu_type1_info.iova_pgsizes, little) : undefined;
  let ranges: IovaRange[] | undefined;
  let dmaAvailable: number | undefined;
  let migration: Type1Migration | undefined;
  let offset = (flags & VFIO_IOMMU_INFO_CAPS) !== 0 && view.byteLength >= 20 ? view.getUint32(vfio_iommu_type1_info.cap_offset, little) : 0;
  const seen = new Set<number>();
  while (offset !== 0) {
    if (offset < vfio_iommu_type1_info.sizeof - 4 || offset + vfio_info_cap_header.sizeof > view.byteLength || seen.has(offset)) {
      throw new IoasError('abi-mismatch', `VFIO_IOMMU_GET_INFO: malformed capability chain at offset ${offset} of ${view.byteLength} bytes`);
    }
    seen.add(offset);
    const id = view.getUint16(offset + vfio_info_cap_header.id, little);
    const version = view.getUint16(offset + vfio_info_cap_header.version, little);
    if (id === VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE && version === 1) {
      const count = view.getUint32(offset + vfio_iommu_type1_info_cap_iova_range.nr_iovas, little);
      const first = offset + vfio_iommu_type1_info_cap_iova_range.iova_ranges;
      if (first + count * vfio_iova_range.sizeof > view.byteLength) throw new IoasError('abi-mismatch', 'VFIO_IOMMU_GET_INFO: IOVA_RANGE capability runs past the buffer');
      ranges = [];
      for (let index = 0; index < count; index++) {
        const at = first + index * vfio_iova_range.sizeof;
        ranges.push({ start: view.getBigUint64(at + vfio_iova_range.start, little), last: view.getBigUint64(at + vfio_iova_range.end, little) });
      }
    } else if (id === VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL && version === 1) {
      dmaAvailable = view.getUint32(offset + vfio_iommu_type1_info_dma_avail.avail, little);
    } else if (id === VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION && version === 1) {
      if (offset + vfio_iommu_type1_info_cap_migration.sizeof > view.byteLength) throw new IoasError('abi-mismatch', 'VFIO_IOMMU_GET_INFO: MIGRATION capability runs past the buffer');
      migration = {
        flags: view.getUint32(offset + vfio_iommu_type1_info_cap_migration.flags, little),
        pageSizes: view.getBigUint64(offset + vfio_iommu_type1_info_cap_migration.pgsize_bitmap, little),
        maxBitmapBytes: view.getBigUint64(offset + vfio_iommu_type1_info_cap_migration.max_dirty_bitmap_size, little),
      };
    }
    offset = view.getUint32(offset + vfio_info_cap_header.next, little);
  }
  return { ioPageSizes, ranges, dmaAvailable, migration };
}
