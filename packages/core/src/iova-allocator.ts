import { BTreeMap } from './btree.js';
import { IoasError } from './errors.js';
import { hex } from './format.js';
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
 * several ranges walk the same index from the largest extent down, as far as the pieces they take
 * (O(p log n) for p pieces when nothing is excluded by alignment or `limit`).
 */
export class IovaAllocator {
  private readonly free = new IovaRangeSet();
  /**
   * Key: `(size - 1) << 64 | start`, so that key order is size order, then address order. It
   * always holds `SENTINEL` as its greatest key, which no extent can have: see there.
   */
  private readonly bySize = new BTreeMap<true>(128).set(SENTINEL, true);
  private readonly onRemoved = (range: IovaRange): void => {
    this.bySize.delete(sizeKey(range));
  };
  private readonly onAdded = (range: IovaRange): void => {
    this.bySize.set(sizeKey(range), true);
  };
  /**
   * Whether a free extent may start or end off a granule: only a caller's `reserve` or `release`
   * of such a range can make one (allocations take whole granules). Sticky: it only makes
   * non-contiguous allocations look at more extents.
   */
  private misaligned = false;

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
    this.noteAlignment(range);
    this.free.remove(range, this.onRemoved, this.onAdded);
  }

  /** Returns `range` to the free space. The caller must only release what it allocated or reserved. */
  release(range: IovaRange): void {
    this.noteAlignment(range);
    this.free.add(range, this.onRemoved, this.onAdded);
  }

  private noteAlignment(range: IovaRange): void {
    if (!this.misaligned && ((range.start | (range.last + 1n)) & (this.granule - 1n)) !== 0n) this.misaligned = true;
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
      if (key === SENTINEL) return false;
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

  /**
   * The fewest aligned pieces below `limit` that sum to `size`: largest first, best fit for the rest.
   *
   * The rule, over the candidates (each free extent below `limit`, clipped to it, shrunk to whole
   * granules, its start aligned up) ordered by size descending then address ascending: take
   * candidates whole while each is smaller than what remains; the first one that holds the rest
   * ends the list, and the last piece goes to the smallest candidate that holds the rest (the
   * highest address among equals), cut to size.
   *
   * Sorting every candidate made this O(n log n) in bigints (about 1 ms across 10,000 holes); it
   * now walks the size index from the largest extent down, only as far as the pieces it takes, and
   * finds the last piece with a few descents from the smallest extent that can hold it. A
   * candidate is never larger than its extent, which is what lets the walk hand candidates out in
   * order before it has seen them all. Only a failed request still visits every extent.
   */
  private gather(size: bigint, align: bigint, limit: bigint): IovaRange[] {
    const pieces: IovaRange[] = [];
    let remaining = size;
    // Phase 1: candidates in order, taken whole while smaller than what remains.
    const ending = this.largestFirst(align, limit, (candidate) => {
      if (candidate.size >= remaining) return true;
      pieces.push({ start: candidate.start, last: candidate.last });
      remaining -= candidate.size;
      return false;
    });
    if (ending === undefined) {
      const total = size - remaining;
      throw new IoasError(
        'no-space',
        `cannot allocate ${hex(size)} bytes of IOVA space aligned to ${hex(align)} below ${hex(limit)}: only ${hex(total)} bytes are free there`,
      );
    }
    // Phase 2: the last piece.
    const best = this.smallestHolding(remaining, ending, align, limit);
    pieces.push({ start: best.start, last: best.start + remaining - 1n });
    return pieces.sort((a, b) => compareBigint(a.start, b.start));
  }

  /**
   * Hands `take` the candidates in order (size descending, address ascending) until it returns
   * true; returns that candidate, or `undefined` when they ran out first.
   *
   * Extents are visited by size descending, address ascending (each size's extents in address
   * order, then the next smaller size). A candidate can be handed out once it comes before the
   * next extent to visit: no later extent has a larger candidate, and one of the same size is
   * that extent itself, whole, at a higher address.
   */
  private largestFirst(align: bigint, limit: bigint, take: (candidate: Candidate) => boolean): Candidate | undefined {
    // Candidates seen but not handed out yet, the next one last.
    const pending: Candidate[] = [];
    let ending: Candidate | undefined;
    /** Hands out what comes before an extent of `size` at `start`; true when `take` is done. */
    const handOut = (size: bigint, start: bigint): boolean => {
      while (pending.length > 0) {
        const next = pending[pending.length - 1]!;
        if (next.size < size || (next.size === size && next.start > start)) return false;
        pending.pop();
        if (take(next)) {
          ending = next;
          return true;
        }
      }
      return false;
    };
    let top = this.bySize.floor(SENTINEL - 1n);
    while (top !== undefined) {
      const span = top.key >> 64n; // size - 1 of every extent in this group
      const extentSize = span + 1n;
      this.bySize.forEachFrom(span << 64n, (key) => {
        if (key >> 64n !== span || key === SENTINEL) return false;
        const start = key & U64_MAX;
        if (handOut(extentSize, start)) return false;
        const candidate = candidateOf(start, start + span, this.granule, align, limit);
        if (candidate !== undefined) insertPending(pending, candidate);
        return true;
      });
      if (ending !== undefined) return ending;
      top = span === 0n ? undefined : this.bySize.floor((span << 64n) - 1n);
    }
    handOut(-1n, 0n);
    return ending;
  }

  /**
   * The candidate that holds `wanted` bytes with the smallest size, then the highest address;
   * `known` is one that holds them. Only extents that can beat `known` are visited: from the
   * smallest that holds `wanted` up to those whose candidate cannot be smaller than the best so
   * far. The extent that `limit` cuts is looked at on its own, since its candidate can be much
   * smaller than the extent.
   */
  private smallestHolding(wanted: bigint, known: Candidate, align: bigint, limit: bigint): Candidate {
    let best = known;
    const consider = (candidate: Candidate | undefined): void => {
      if (candidate === undefined || candidate.size < wanted) return;
      if (candidate.size < best.size || (candidate.size === best.size && candidate.start > best.start)) best = candidate;
    };
    let cut: IovaRange | undefined;
    if (limit < U64_MAX) {
      const holder = this.free.find(limit);
      if (holder !== undefined && holder.last > limit) {
        cut = holder;
        consider(candidateOf(holder.start, holder.last, this.granule, align, limit));
      }
    }
    const granule = this.granule;
    if (align === granule && !this.misaligned) {
      // Every candidate but the cut one is its extent, whole: the first size from `wanted` up that
      // has an extent below the limit gives the answer, its highest such extent.
      let group = this.bySize.ceiling((wanted - 1n) << 64n);
      while (group !== undefined && group.key !== SENTINEL) {
        const span = group.key >> 64n;
        if (span + 1n > best.size) break;
        // The highest extent of this size that starts at or below the limit, the cut one aside.
        const highest = (span << 64n) | limit;
        let entry = this.bySize.floor(highest === SENTINEL ? SENTINEL - 1n : highest);
        if (entry !== undefined && entry.key >> 64n === span && cut !== undefined && (entry.key & U64_MAX) === cut.start) {
          entry = entry.key === 0n ? undefined : this.bySize.floor(entry.key - 1n);
        }
        if (entry !== undefined && entry.key >> 64n === span) {
          const start = entry.key & U64_MAX;
          consider({ start, last: start + span, size: span + 1n });
          break;
        }
        group = this.bySize.ceiling((span + 1n) << 64n);
      }
      return best;
    }
    // A candidate loses at most this much of its extent (start aligned up, end down to a granule).
    const maxLoss = this.misaligned ? align - 1n + (granule - 1n) : align - granule;
    this.bySize.forEachFrom((wanted - 1n) << 64n, (key) => {
      if (key === SENTINEL) return false;
      const span = key >> 64n;
      if (span + 1n - maxLoss > best.size) return false;
      const start = key & U64_MAX;
      if (start > limit || (cut !== undefined && start === cut.start)) return true;
      consider(candidateOf(start, start + span, granule, align, limit));
      return true;
    });
    return best;
  }
}

/** A free extent as an allocation can use it: clipped to the limit, in whole granules, aligned. */
interface Candidate {
  readonly start: bigint;
  readonly last: bigint;
  readonly size: bigint;
}

/** The candidate of the free extent `start`-`last`, or `undefined` when nothing of it is usable. */
function candidateOf(start: bigint, last: bigint, granule: bigint, align: bigint, limit: bigint): Candidate | undefined {
  if (start > limit) return undefined;
  const aligned = alignRangeInward({ start, last: last < limit ? last : limit }, granule);
  if (aligned === undefined) return undefined;
  const placed = alignUp(aligned.start, align);
  return placed <= aligned.last ? { start: placed, last: aligned.last, size: aligned.last - placed + 1n } : undefined;
}

/** Inserts into `pending`, kept so that the candidate to hand out next is last. */
function insertPending(pending: Candidate[], candidate: Candidate): void {
  let low = 0;
  let high = pending.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const other = pending[middle]!;
    // `other` goes after `candidate` (nearer the end) when it comes first in the order.
    const otherFirst = other.size > candidate.size || (other.size === candidate.size && other.start < candidate.start);
    if (otherFirst) high = middle;
    else low = middle + 1;
  }
  pending.splice(low, 0, candidate);
}

/**
 * The greatest key of the size index, which no extent has (a range of 2^64 bytes cannot start at
 * 2^64 - 1): an end marker, so that the walks from the largest extent down start at
 * `floor(SENTINEL - 1n)` and stop at it. (It was added when BTreeMap could be left with an empty
 * leaf at its right edge; that bug is fixed and tested in btree.test.ts.)
 */
const SENTINEL = (1n << 128n) - 1n;

function sizeKey(range: IovaRange): bigint {
  return ((range.last - range.start) << 64n) | range.start;
}
