import { BTreeMap } from './btree.js';
import { IoasError, hex } from './errors.js';
import { alignRangeInward, alignUp, compareBigint, isPowerOfTwo, type IovaRange, U64_MAX } from './iova-range.js';
import { IovaRangeSet } from './iova-range-set.js';

/** What {@link IovaAllocator.allocate} is asked for. */
export interface AllocationRequest {
  /** Bytes wanted in all; a multiple of the allocator's granule. */
  readonly size: bigint;
  /** Every returned range starts on a multiple of this power of two (default: the granule). */
  readonly align?: bigint;
  /** Highest address any returned range may reach, inclusive (`0xffffffffn` for "below 4 GiB"). */
  readonly limit?: bigint;
  /** When true, return exactly one range or fail; when false, several ranges may sum to `size`. */
  readonly contiguous?: boolean;
}

/**
 * Best-fit IOVA allocator over a set of usable ranges.
 *
 * Free space is kept twice: by address (to merge on release) and by (size, address) so that the
 * smallest free extent that fits is found in O(log n). Alignment and `limit` can make a candidate
 * unusable; the search then moves to the next larger extent, so a request costs O(log n + k) where k
 * is the number of free extents skipped for those two reasons. Requests that have to be split into
 * several ranges scan the free extents below the limit once.
 */
export class IovaAllocator {
  private readonly free = new IovaRangeSet();
  /** Key: `(size - 1) << 64 | start`, so that key order is size order, then address order. */
  private readonly bySize = new BTreeMap<true>(128);
  private readonly onRemoved = (range: IovaRange): void => {
    this.bySize.delete(sizeKey(range));
  };
  private readonly onAdded = (range: IovaRange): void => {
    this.bySize.set(sizeKey(range), true);
  };

  /**
   * @param usable the ranges to allocate from; each is shrunk inward to whole granules.
   * @param granule the unit of every allocation: the smallest IO page size.
   */
  constructor(usable: Iterable<IovaRange>, readonly granule: bigint) {
    if (!isPowerOfTwo(granule)) throw new IoasError('invalid-argument', `allocator granule ${hex(granule)} is not a power of two`);
    for (const range of usable) {
      const aligned = alignRangeInward(range, granule);
      if (aligned) this.free.add(aligned, this.onRemoved, this.onAdded);
    }
  }

  /** Number of disjoint free extents. */
  get freeExtents(): number {
    return this.free.count;
  }

  /** Total free bytes. */
  freeBytes(): bigint {
    return this.free.totalSize();
  }

  /** The free extents, in address order. */
  freeRanges(): IovaRange[] {
    return this.free.toArray();
  }

  /** True when every address of `range` is free. */
  isFree(range: IovaRange): boolean {
    return this.free.covers(range);
  }

  /**
   * Takes `range` out of the free space (an IOVA chosen by the caller). Throws `no-space` when any
   * part of it is not free, and changes nothing then.
   */
  reserve(range: IovaRange): void {
    if (!this.free.covers(range)) {
      throw new IoasError('no-space', `IOVA range ${hex(range.start)}-${hex(range.last)} is not free`);
    }
    this.free.remove(range, this.onRemoved, this.onAdded);
  }

  /** Returns `range` to the free space. The caller must only release what it allocated or reserved. */
  release(range: IovaRange): void {
    this.free.add(range, this.onRemoved, this.onAdded);
  }

  /**
   * Allocates `size` bytes: one range when possible (the smallest free extent that fits, lowest
   * address among equals), else, unless `contiguous`, the fewest ranges that sum to `size`.
   * Throws `no-space` and changes nothing when the request cannot be met.
   */
  allocate(request: AllocationRequest): IovaRange[] {
    const { size } = request;
    const align = request.align === undefined || request.align < this.granule ? this.granule : request.align;
    const limit = request.limit ?? U64_MAX;
    if (size <= 0n || size % this.granule !== 0n) {
      throw new IoasError('misaligned', `allocation size ${hex(size)} is not a positive multiple of the granule ${hex(this.granule)}`);
    }
    if (!isPowerOfTwo(align)) throw new IoasError('invalid-argument', `alignment ${hex(align)} is not a power of two`);

    const single = this.bestFit(size, align, limit);
    if (single !== undefined) {
      this.free.remove(single, this.onRemoved, this.onAdded);
      return [single];
    }
    if (request.contiguous) {
      throw new IoasError(
        'no-space',
        `no free IOVA range of ${hex(size)} bytes aligned to ${hex(align)} below ${hex(limit)}; largest free extents may be fragmented`,
      );
    }
    const pieces = this.gather(size, align, limit);
    for (const piece of pieces) this.free.remove(piece, this.onRemoved, this.onAdded);
    return pieces;
  }

  /** The best-fit placement of one range, or `undefined`. */
  private bestFit(size: bigint, align: bigint, limit: bigint): IovaRange | undefined {
    let found: IovaRange | undefined;
    // Walk free extents from the smallest whose size is >= `size`, in (size, address) order.
    this.bySize.forEachFrom((size - 1n) << 64n, (key) => {
      const start = key & U64_MAX;
      const last = start + (key >> 64n);
      const placed = alignUp(start, align);
      const placedLast = placed + size - 1n;
      if (placedLast <= last && placedLast <= limit) {
        found = { start: placed, last: placedLast };
        return false;
      }
      return true;
    });
    return found;
  }

  /** The fewest aligned pieces below `limit` that sum to `size`: largest first, best fit for the rest. */
  private gather(size: bigint, align: bigint, limit: bigint): IovaRange[] {
    const candidates: IovaRange[] = [];
    for (const extent of this.free) {
      if (extent.start > limit) break;
      const clipped = { start: extent.start, last: extent.last < limit ? extent.last : limit };
      const aligned = alignRangeInward(clipped, this.granule);
      if (aligned === undefined) continue;
      const start = alignUp(aligned.start, align);
      if (start <= aligned.last) candidates.push({ start, last: aligned.last });
    }
    candidates.sort((a, b) => {
      const difference = b.last - b.start - (a.last - a.start);
      return difference === 0n ? compareBigint(a.start, b.start) : difference > 0n ? 1 : -1;
    });
    const pieces: IovaRange[] = [];
    let remaining = size;
    for (let index = 0; index < candidates.length && remaining > 0n; index++) {
      const candidate = candidates[index]!;
      const available = candidate.last - candidate.start + 1n;
      if (available >= remaining) {
        // The last piece: the smallest candidate that still holds the remainder (best fit).
        let best = candidate;
        for (let later = index + 1; later < candidates.length; later++) {
          const other = candidates[later]!;
          if (other.last - other.start + 1n >= remaining) best = other;
          else break;
        }
        pieces.push({ start: best.start, last: best.start + remaining - 1n });
        remaining = 0n;
      } else {
        pieces.push(candidate);
        remaining -= available;
      }
    }
    if (remaining > 0n) {
      const total = size - remaining;
      throw new IoasError(
        'no-space',
        `cannot allocate ${hex(size)} bytes of IOVA space aligned to ${hex(align)} below ${hex(limit)}: only ${hex(total)} bytes are free there`,
      );
    }
    return pieces.sort((a, b) => compareBigint(a.start, b.start));
  }
}

function sizeKey(range: IovaRange): bigint {
  return ((range.last - range.start) << 64n) | range.start;
}
