import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IoasError } from './errors.js';
import { IovaAllocator } from './iova-allocator.js';
import { alignUp, intersectRanges, type IovaRange, subtractRanges, U64_MAX, unionRanges } from './iova-range.js';

const PAGE = 0x1000n;

/** Reference best fit: scan a sorted free list for the smallest extent with an aligned fit below the limit. */
function naiveBestFit(free: IovaRange[], size: bigint, align: bigint, limit: bigint): IovaRange | undefined {
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
