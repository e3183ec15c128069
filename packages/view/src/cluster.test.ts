import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { clusterRanges } from './cluster.js';

/** Ranges from `[start, size]` pairs. */
function ranges(pairs: [number, number][]): { starts: bigint[]; lasts: bigint[] } {
  return { starts: pairs.map(([start]) => BigInt(start)), lasts: pairs.map(([start, size]) => BigInt(start + size - 1)) };
}

const spans = (clusters: ReturnType<typeof clusterRanges>) => clusters.map((cluster) => [Number(cluster.start), Number(cluster.last), cluster.first, cluster.end]);

describe('clusterRanges', () => {
  test('within the budget every range is its own cluster', () => {
    const { starts, lasts } = ranges([[0, 10], [20, 10], [100, 1]]);
    expect(spans(clusterRanges(starts, lasts, 3, []))).toEqual([[0, 9, 0, 1], [20, 29, 1, 2], [100, 100, 2, 3]]);
    expect(clusterRanges([], [], 5, [])).toEqual([]);
  });

  test('past the budget it splits at the largest holes', () => {
    // Holes: 10 (after 0-9), 70 (after 20-29), 1 (after 100-100), 899 (after 102-102).
    const { starts, lasts } = ranges([[0, 10], [20, 10], [100, 1], [102, 1], [1002, 5]]);
    expect(spans(clusterRanges(starts, lasts, 3, []))).toEqual([[0, 29, 0, 2], [100, 102, 2, 4], [1002, 1006, 4, 5]]);
    expect(spans(clusterRanges(starts, lasts, 1, []))).toEqual([[0, 1006, 0, 5]]);
  });

  test('a hole holding a structure boundary is split before any larger plain hole', () => {
    const { starts, lasts } = ranges([[0, 10], [20, 10], [1000, 10]]);
    // The boundary at 15 (a reserved range's start, say) lies in the small hole.
    expect(spans(clusterRanges(starts, lasts, 2, [15n]))).toEqual([[0, 9, 0, 1], [20, 1009, 1, 3]]);
    // A boundary right after a range's last byte counts too: a cluster would straddle it.
    expect(spans(clusterRanges(starts, lasts, 2, [10n]))).toEqual([[0, 9, 0, 1], [20, 1009, 1, 3]]);
    // A boundary inside a range is not in a hole: the plain largest hole wins.
    expect(spans(clusterRanges(starts, lasts, 2, [5n]))).toEqual([[0, 29, 0, 2], [1000, 1009, 2, 3]]);
  });

  test('equal holes are split evenly', () => {
    const pairs = Array.from({ length: 100 }, (_, index): [number, number] => [index * 2, 1]);
    const { starts, lasts } = ranges(pairs);
    const sizes = clusterRanges(starts, lasts, 4, []).map((cluster) => cluster.end - cluster.first);
    expect(sizes).toEqual([25, 25, 25, 25]);
  });

  test('any input: at most `budget` clusters, in order, each range in exactly one', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 1, max: 4096 })), { maxLength: 200 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 1 << 20 }), { maxLength: 10 }),
        (pairs, budget, cuts) => {
          const sorted = [...pairs].sort((a, b) => a[0] - b[0]);
          const { starts, lasts } = ranges(sorted);
          const clusters = clusterRanges(starts, lasts, budget, [...new Set(cuts)].sort((a, b) => a - b).map(BigInt));
          expect(clusters.length).toBeLessThanOrEqual(Math.max(budget, 0) || 1);
          let next = 0;
          for (const cluster of clusters) {
            expect(cluster.first).toBe(next);
            expect(cluster.end).toBeGreaterThan(cluster.first);
            expect(cluster.start).toBe(starts[cluster.first]);
            expect(cluster.last).toBe(lasts.slice(cluster.first, cluster.end).reduce((a, b) => (a > b ? a : b)));
            next = cluster.end;
          }
          expect(next).toBe(sorted.length);
        },
      ),
    );
  });
});
