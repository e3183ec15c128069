import { IoasError } from './errors.js';
import { hex } from './format.js';
import { alignRangeInward, intersectRanges, type IovaRange, rangeSize, subtractRanges } from './iova-range.js';

/** One mapping of a region split by {@link planRegionMappings}. */
export interface RegionPiece {
  /** The IOVA range of this mapping. */
  readonly iova: IovaRange;
  /** Offset of the piece's first byte from the start of the region's host memory. */
  readonly memoryOffset: bigint;
}

/** The result of splitting a region around what cannot be mapped. */
export interface RegionPlan {
  /** The mappings to make, in IOVA order: the fewest the usable ranges and the granule allow. */
  readonly pieces: readonly RegionPiece[];
  /** Parts of the region left unmapped because they are reserved or outside the usable ranges. */
  readonly skipped: readonly IovaRange[];
}

/**
 * Splits `region` (an IOVA range backed by host memory mapped 1:1 from its start) into the fewest
 * mappings the geometry allows: one per run of usable IOVA space, each shrunk inward to whole
 * `granule`s (for a windowed IOMMU, pass the window size: each map must cover whole windows). One
 * kernel call maps a run of any length, since type1 tracks one entry per MAP_DMA however large
 * (docs/kernel-rules.md#one-call-one-mapping), so more pieces would only spend the mapping budget.
 *
 * @throws {IoasError} `budget-exhausted` when the pieces outnumber `budgetLeft` (null: no limit).
 */
export function planRegionMappings(
  region: IovaRange,
  usable: readonly IovaRange[],
  granule: bigint,
  budgetLeft: number | null,
): RegionPlan {
  const pieces: RegionPiece[] = [];
  for (const run of intersectRanges([region], usable)) {
    const aligned = alignRangeInward(run, granule);
    if (aligned !== undefined) pieces.push({ iova: aligned, memoryOffset: aligned.start - region.start });
  }
  if (budgetLeft !== null && pieces.length > budgetLeft) {
    throw new IoasError(
      'budget-exhausted',
      `mapping ${hex(rangeSize(region))} bytes at IOVA ${hex(region.start)} needs ${pieces.length} mappings but only ${budgetLeft} are left in the mapping budget`,
    );
  }
  return { pieces, skipped: subtractRanges([region], pieces.map((piece) => piece.iova)) };
}
