import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { U64_MAX, type IovaRange } from './iova-range.js';
import { IovaRangeSet } from './iova-range-set.js';

// Reference: a boolean per address of a 128-address window placed at 0 or at the top of the space.
const WIDTH = 128;

describe.each([0n, U64_MAX - BigInt(WIDTH) + 1n])('IovaRangeSet against a bitmap model, window at %s', (base) => {
  const range = fc
    .tuple(fc.integer({ min: 0, max: WIDTH - 1 }), fc.integer({ min: 0, max: WIDTH - 1 }))
    .map(([a, b]): IovaRange => ({ start: base + BigInt(Math.min(a, b)), last: base + BigInt(Math.max(a, b)) }));
  const step = fc.record({ add: fc.boolean(), range });

  it('add and remove keep the set merged and equal to the model', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80 }), range, (steps, probe) => {
        const set = new IovaRangeSet();
        const model = new Array<boolean>(WIDTH).fill(false);
        let sizeIndex = new Set<string>();
        const onRemoved = (r: IovaRange) => {
          expect(sizeIndex.delete(`${r.start}-${r.last}`)).toBe(true);
        };
        const onAdded = (r: IovaRange) => {
          sizeIndex.add(`${r.start}-${r.last}`);
        };
        for (const { add, range: r } of steps) {
          if (add) set.add(r, onRemoved, onAdded);
          else set.remove(r, onRemoved, onAdded);
          for (let address = r.start; address <= r.last; address++) model[Number(address - base)] = add;
        }
        const stored = set.toArray();
        // The callbacks saw exactly the ranges that are stored now.
        expect(new Set(stored.map((r) => `${r.start}-${r.last}`))).toEqual(sizeIndex);
        sizeIndex = new Set();
        for (let index = 0; index < stored.length; index++) {
          if (index > 0) expect(stored[index - 1]!.last + 1n < stored[index]!.start).toBe(true);
        }
        const fromSet = new Array<boolean>(WIDTH).fill(false);
        for (const r of stored) for (let address = r.start; address <= r.last; address++) fromSet[Number(address - base)] = true;
        expect(fromSet).toEqual(model);
        const probed = model.slice(Number(probe.start - base), Number(probe.last - base) + 1);
        expect(set.covers(probe)).toBe(probed.every(Boolean));
        expect(set.intersects(probe)).toBe(probed.some(Boolean));
        expect(set.has(probe.start)).toBe(model[Number(probe.start - base)]);
        const found = set.find(probe.start);
        expect(found !== undefined).toBe(model[Number(probe.start - base)]);
        const overlapping = set.overlapping(probe);
        expect(overlapping).toEqual(stored.filter((r) => r.start <= probe.last && r.last >= probe.start));
        expect(set.totalSize()).toBe(BigInt(model.filter(Boolean).length));
      }),
      { numRuns: 150 },
    );
  });
});

describe('IovaRangeSet edges', () => {
  it('holds the whole 64-bit space and splits it at the top', () => {
    const set = new IovaRangeSet([{ start: 0n, last: U64_MAX }]);
    expect(set.totalSize()).toBe(1n << 64n);
    set.remove({ start: U64_MAX, last: U64_MAX });
    expect(set.toArray()).toEqual([{ start: 0n, last: U64_MAX - 1n }]);
    set.add({ start: U64_MAX, last: U64_MAX });
    expect(set.toArray()).toEqual([{ start: 0n, last: U64_MAX }]);
  });
});
