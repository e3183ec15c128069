import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BTreeMap, compareBigint } from './btree.js';

type Operation = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number } | { kind: 'probe'; key: number };

const operation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 400 }), value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 400 }) }),
  fc.record({ kind: fc.constant('probe' as const), key: fc.integer({ min: -5, max: 405 }) }),
);

/** The reference: a sorted array of [key, value] pairs, searched linearly. */
function modelFloor(model: Map<number, number>, key: number): [number, number] | undefined {
  let best: [number, number] | undefined;
  for (const entry of model) if (entry[0] <= key && (best === undefined || entry[0] > best[0])) best = entry;
  return best;
}
function modelCeiling(model: Map<number, number>, key: number, strict = false): [number, number] | undefined {
  let best: [number, number] | undefined;
  for (const entry of model) if ((strict ? entry[0] > key : entry[0] >= key) && (best === undefined || entry[0] < best[0])) best = entry;
  return best;
}

describe('BTreeMap against a Map model', () => {
  it.each([4, 5, 64])('agrees on every operation of random sequences, node order %i', (order) => {
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 1500 }), (operations: Operation[]) => {
        const tree = new BTreeMap<number, number>((a, b) => a - b, order);
        const model = new Map<number, number>();
        for (const step of operations) {
          if (step.kind === 'set') {
            tree.set(step.key, step.value);
            model.set(step.key, step.value);
          } else if (step.kind === 'delete') {
            expect(tree.delete(step.key)).toBe(model.delete(step.key));
          } else {
            expect(tree.get(step.key)).toBe(model.get(step.key));
            const floor = tree.floor(step.key);
            expect(floor === undefined ? undefined : [floor.key, floor.value]).toEqual(modelFloor(model, step.key));
            const ceiling = tree.ceiling(step.key);
            expect(ceiling === undefined ? undefined : [ceiling.key, ceiling.value]).toEqual(modelCeiling(model, step.key));
            const higher = tree.higher(step.key);
            expect(higher === undefined ? undefined : [higher.key, higher.value]).toEqual(modelCeiling(model, step.key, true));
          }
          expect(tree.size).toBe(model.size);
        }
        const sorted = [...model].sort((a, b) => a[0] - b[0]);
        expect([...tree.entries()]).toEqual(sorted);
        expect(tree.first()?.key).toBe(sorted[0]?.[0]);
        expect(tree.last()?.key).toBe(sorted[sorted.length - 1]?.[0]);
      }),
      { numRuns: 60 },
    );
  });

  it('stays correct through a large fill and drain', () => {
    const tree = new BTreeMap<bigint, bigint>(compareBigint);
    const count = 50_000;
    for (let index = 0; index < count; index++) tree.set(BigInt((index * 7919) % count) << 12n, BigInt(index));
    expect(tree.size).toBe(count);
    let previous = -1n;
    let seen = 0;
    tree.forEachFrom(undefined, (key) => {
      expect(key > previous).toBe(true);
      previous = key;
      seen++;
    });
    expect(seen).toBe(count);
    for (let index = 0; index < count; index += 2) expect(tree.delete(BigInt(index) << 12n)).toBe(true);
    expect(tree.size).toBe(count / 2);
    expect(tree.floor((4n << 12n) + 5n)?.key).toBe(3n << 12n);
    for (let index = 1; index < count; index += 2) expect(tree.delete(BigInt(index) << 12n)).toBe(true);
    expect(tree.size).toBe(0);
    expect(tree.first()).toBeUndefined();
  });

  it('forEachFrom stops when the visitor returns false', () => {
    const tree = new BTreeMap<number, string>((a, b) => a - b);
    for (let key = 0; key < 200; key++) tree.set(key, `v${key}`);
    const seen: number[] = [];
    tree.forEachFrom(150, (key) => {
      seen.push(key);
      return seen.length < 3;
    });
    expect(seen).toEqual([150, 151, 152]);
  });
});
