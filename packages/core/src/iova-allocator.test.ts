import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IoasError } from './errors.js';
import { hex } from './format.js';
import { IovaAllocator } from './iova-allocator.js';
import { alignRangeInward, alignUp, compareBigint, intersectRanges, type IovaRange, subtractRanges, U64_MAX, unionRanges } from './iova-range.js';

const PAGE = 0x1000n;

/** Reference best fit: scan a sorted free list for the smallest extent with an aligned fit below the limit. */
function naiveBestFit(free: readonly IovaRange[], size: bigint, align: bigint, limit: bigint): IovaRange | undefined {
  let best: { extent: IovaRange; placed: IovaRange } | undefined;
  for (const extent of free) {
    const start = alignUp(extent.start, align);
    const last = start + size - 1n;
    if (last > extent.last || last > limit) continue;
    const extentSize = extent.last - extent.start;
    if (best === undefined || extentSize < best.extent.last - best.extent.start) best = { extent, placed: { start, last } };
  }
  return best?.placed;
}

const page = (count: number) => BigInt(count) * PAGE;

describe('IovaAllocator', () => {
  it('single-range allocations equal a naive best fit, and free space stays consistent', () => {
    const request = fc.record({
      pages: fc.integer({ min: 1, max: 40 }),
      alignPages: fc.constantFrom(1, 2, 4, 8, 16),
      limitPages: fc.option(fc.integer({ min: 1, max: 600 }), { nil: undefined }),
      release: fc.boolean(),
    });
    const usableRange = fc.tuple(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 1, max: 100 }));
    fc.assert(
      fc.property(fc.array(usableRange, { minLength: 1, maxLength: 6 }), fc.array(request, { maxLength: 60 }), (usablePages, requests) => {
        const usable = usablePages.map(([start, length]) => ({ start: page(start), last: page(start + length) - 1n }));
        const allocator = new IovaAllocator(usable, PAGE);
        let free = unionRanges(usable);
        const live: IovaRange[] = [];
        for (const { pages, alignPages, limitPages, release } of requests) {
          if (release && live.length > 0) {
            const released = live.shift()!;
            allocator.release(released);
            free = unionRanges(free, [released]);
            continue;
          }
          const size = page(pages);
          const align = page(alignPages);
          const limit = limitPages === undefined ? U64_MAX : page(limitPages) - 1n;
          const expected = naiveBestFit(free, size, align, limit);
          if (expected === undefined) {
            expect(() => allocator.allocate({ size, align, limit, contiguous: true })).toThrow(IoasError);
          } else {
            const got = allocator.allocate({ size, align, limit, contiguous: true });
            expect(got).toEqual([expected]);
            live.push(expected);
            free = subtractRanges(free, [expected]);
          }
          expect(allocator.freeRanges()).toEqual(free);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('splits a request over several ranges that sum to it, aligned and below the limit', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 1, max: 64 })), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 400 }),
        fc.constantFrom(1, 2, 4),
        fc.integer({ min: 100, max: 2100 }),
        (usablePages, wanted, alignPages, limitPages) => {
          const usable = usablePages.map(([start, length]) => ({ start: page(start), last: page(start + length) - 1n }));
          const allocator = new IovaAllocator(usable, PAGE);
          const before = allocator.freeRanges();
          const size = page(wanted);
          const align = page(alignPages);
          const limit = page(limitPages) - 1n;
          let pieces: readonly IovaRange[];
          try {
            pieces = allocator.allocate({ size, align, limit });
          } catch (error) {
            expect(IoasError.isInstance(error) && error.code === 'no-space').toBe(true);
            // Nothing changed, and indeed the aligned free space below the limit is too small.
            expect(allocator.freeRanges()).toEqual(before);
            let available = 0n;
            for (const range of intersectRanges(before, [{ start: 0n, last: limit }])) {
              const start = alignUp(range.start, align);
              if (start <= range.last) available += range.last - start + 1n;
            }
            expect(available < size).toBe(true);
            return;
          }
          let total = 0n;
          for (const piece of pieces) {
            total += piece.last - piece.start + 1n;
            expect(piece.start % align).toBe(0n);
            expect(piece.last <= limit).toBe(true);
            expect((piece.last + 1n) % PAGE).toBe(0n);
          }
          expect(total).toBe(size);
          // Pieces are disjoint, were free, and are now taken.
          expect(subtractRanges(pieces, before)).toEqual([]);
          expect(allocator.freeRanges()).toEqual(subtractRanges(before, pieces));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('gives 2 GiB below 4 GiB on x86 around the MSI window, in two ranges when it must', () => {
    const GiB = 1n << 30n;
    const usable = [
      { start: 0n, last: 0xfedfffffn },
      { start: 0xfef00000n, last: 0x7fffffffffn },
    ];
    const allocator = new IovaAllocator(usable, PAGE);
    const [low] = allocator.allocate({ size: 2n * GiB, limit: 0xffffffffn, contiguous: true });
    expect(low!.last <= 0xffffffffn).toBe(true);
    // Ask for more than any one hole below 4 GiB holds now.
    const rest = allocator.allocate({ size: 0xfd000000n - 2n * GiB, limit: 0xffffffffn });
    expect(rest.length).toBeGreaterThanOrEqual(1);
    expect(() => allocator.allocate({ size: 2n * GiB, limit: 0xffffffffn })).toThrow(/only 0x[0-9a-f]+ bytes are free/);
  });

  it('reserve refuses ranges that are not free and changes nothing', () => {
    const allocator = new IovaAllocator([{ start: 0n, last: page(16) - 1n }], PAGE);
    allocator.reserve({ start: page(4), last: page(8) - 1n });
    const before = allocator.freeRanges();
    expect(() => allocator.reserve({ start: page(6), last: page(10) - 1n })).toThrow(/not free/);
    expect(allocator.freeRanges()).toEqual(before);
  });

  it('rejects sizes that are not whole granules', () => {
    const allocator = new IovaAllocator([{ start: 0n, last: page(16) - 1n }], PAGE);
    expect(() => allocator.allocate({ size: 0x800n })).toThrow(expect.objectContaining({ code: 'misaligned' }));
    expect(() => allocator.allocate({ size: PAGE, align: 0x3000n })).toThrow(/not a power of two/);
  });
});

/**
 * The allocator before its non-contiguous search was rewritten (it sorted every candidate), over a
 * plain list of free extents: best fit for one range, else the fewest pieces, largest first.
 */
function referenceAllocate(free: readonly IovaRange[], granule: bigint, size: bigint, align: bigint, limit: bigint): IovaRange[] | string {
  const single = naiveBestFit(free, size, align, limit);
  if (single !== undefined) return [single];
  const candidates: IovaRange[] = [];
  for (const extent of free) {
    if (extent.start > limit) break;
    const aligned = alignRangeInward({ start: extent.start, last: extent.last < limit ? extent.last : limit }, granule);
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
  if (remaining > 0n) return `only ${hex(size - remaining)} bytes are free there`;
  return pieces.sort((a, b) => compareBigint(a.start, b.start));
}

describe('IovaAllocator non-contiguous allocations', () => {
  it('choose exactly the pieces the sorting algorithm chose, on random free spaces and requests', () => {
    // Free space: many extents of a few sizes (ties are the hard part), some cut off a granule by
    // a caller's reserve or release; requests: sizes that need one to many pieces, alignments
    // larger than the granule, limits that cut an extent or exclude some.
    const operation = fc.oneof(
      fc.record({ kind: fc.constant('reserve' as const), page: fc.integer({ min: 0, max: 400 }), pages: fc.integer({ min: 1, max: 3 }), offBy: fc.constantFrom(0n, 0n, 0x800n), endOffBy: fc.constantFrom(0n, 0n, -0x800n) }),
      fc.record({ kind: fc.constant('release' as const), index: fc.nat() }),
      fc.record({
        kind: fc.constant('allocate' as const),
        pages: fc.integer({ min: 1, max: 60 }),
        alignPages: fc.constantFrom(1, 1, 1, 2, 4),
        limitPages: fc.option(fc.integer({ min: 1, max: 420 }), { nil: undefined }),
        limitOffBy: fc.constantFrom(0n, 0x800n, 0x1800n),
      }),
    );
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 80 }), (operations) => {
        const allocator = new IovaAllocator([{ start: 0n, last: page(400) - 1n }], PAGE);
        // Start fragmented: every third page taken.
        const held: IovaRange[] = [];
        for (let at = 0; at < 400; at += 3) {
          const range = { start: page(at), last: page(at + 1) - 1n };
          allocator.reserve(range);
          held.push(range);
        }
        for (const step of operations) {
          if (step.kind === 'reserve') {
            const range = { start: page(step.page) + step.offBy, last: page(step.page + step.pages) - 1n + step.endOffBy };
            if (range.last >= range.start && allocator.isFree(range)) {
              allocator.reserve(range);
              held.push(range);
            }
          } else if (step.kind === 'release') {
            if (held.length === 0) continue;
            allocator.release(held.splice(step.index % held.length, 1)[0]!);
          } else {
            const size = page(step.pages);
            const align = page(step.alignPages);
            const limit = step.limitPages === undefined ? U64_MAX : page(step.limitPages) + step.limitOffBy - 1n;
            const before = allocator.freeRanges();
            const expected = referenceAllocate(before, PAGE, size, align, limit);
            if (typeof expected === 'string') {
              expect(() => allocator.allocate({ size, align, limit })).toThrow(expected);
              expect(allocator.freeRanges()).toEqual(before);
            } else {
              expect(allocator.allocate({ size, align, limit })).toEqual(expected);
              expect(allocator.freeRanges()).toEqual(subtractRanges(before, expected));
              held.push(...expected);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('takes the largest extents whole and the smallest that holds the rest, the highest among equals', () => {
    // Holes of 1, 2 and 3 pages, twice each, separated by taken pages.
    const allocator = new IovaAllocator([{ start: 0n, last: page(20) - 1n }], PAGE);
    for (const at of [1, 4, 8, 10, 13, 17]) allocator.reserve({ start: page(at), last: page(at + 1) - 1n });
    // Free: [0,1) 1p, [2,4) 2p, [5,8) 3p, [9,10) 1p, [11,13) 2p, [14,17) 3p, [18,20) 2p.
    // 7 pages: 3p at 5 and 3p at 14 whole, then 1 page from the highest 1-page hole (9).
    expect(allocator.allocate({ size: page(7) })).toEqual([
      { start: page(5), last: page(8) - 1n },
      { start: page(9), last: page(10) - 1n },
      { start: page(14), last: page(17) - 1n },
    ]);
  });

  it('counts an extent that a caller left off the granule at both ends as the granule it loses', () => {
    const allocator = new IovaAllocator([{ start: 0n, last: page(20) - 1n }], PAGE);
    allocator.reserve({ start: page(3), last: page(5) - 1n });
    allocator.reserve({ start: page(7), last: page(10) + 0x7ffn });
    allocator.reserve({ start: page(13) + 0x800n, last: page(20) - 1n });
    // Free: 3 pages at 0, 2 pages at 5, and 3 pages from 10.5 to 13.5 that hold 2 whole pages.
    // 5 pages: the 3 at 0, then the last 2 from the highest of the two 2-page candidates.
    expect(allocator.allocate({ size: page(5) })).toEqual([
      { start: 0n, last: page(3) - 1n },
      { start: page(11), last: page(13) - 1n },
    ]);
  });

  it('fails with the free total below the limit and changes nothing', () => {
    const allocator = new IovaAllocator([{ start: 0n, last: page(10) - 1n }], PAGE);
    for (const at of [2, 5, 8]) allocator.reserve({ start: page(at), last: page(at + 1) - 1n });
    const before = allocator.freeRanges();
    expect(() => allocator.allocate({ size: page(6), limit: page(6) - 1n })).toThrow(/only 0x4000 bytes are free there/);
    expect(allocator.freeRanges()).toEqual(before);
  });
});

describe('IovaAllocator at the edges of the 64-bit space', () => {
  it('allocates from the whole space and at its very top', () => {
    const allocator = new IovaAllocator([{ start: 0n, last: U64_MAX }], PAGE);
    expect(allocator.freeBytes()).toBe(1n << 64n);
    const [top] = allocator.allocate({ size: PAGE, align: 1n << 63n, contiguous: true });
    expect(top).toEqual({ start: 0n, last: PAGE - 1n });
    allocator.reserve({ start: U64_MAX - PAGE + 1n, last: U64_MAX });
    allocator.release({ start: U64_MAX - PAGE + 1n, last: U64_MAX });
    allocator.release(top!);
    expect(allocator.freeRanges()).toEqual([{ start: 0n, last: U64_MAX }]);
  });
});
