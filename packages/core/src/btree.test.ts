import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BTreeMap } from './btree.js';

type Operation = { kind: 'set'; key: number; value: number } | { kind: 'delete'; key: number } | { kind: 'probe'; key: number };

const operation = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 400 }), value: fc.integer() }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 400 }) }),
  fc.record({ kind: fc.constant('probe' as const), key: fc.integer({ min: 0, max: 405 }) }),
);

/** The reference: a Map searched linearly. */
function modelFloor(model: Map<bigint, number>, key: bigint): [bigint, number] | undefined {
  let best: [bigint, number] | undefined;
  for (const entry of model) if (entry[0] <= key && (best === undefined || entry[0] > best[0])) best = entry;
  return best;
}
function modelCeiling(model: Map<bigint, number>, key: bigint, strict = false): [bigint, number] | undefined {
  let best: [bigint, number] | undefined;
  for (const entry of model) if ((strict ? entry[0] > key : entry[0] >= key) && (best === undefined || entry[0] < best[0])) best = entry;
  return best;
}

// Keys are small integers spread so that they straddle 32-bit word boundaries, the 2^53 limit of
// exact numbers, and the top of the key space.
const spreads = (bits: 64 | 128) => [
  (key: number) => BigInt(key),
  (key: number) => (1n << 32n) - 200n + BigInt(key),
  (key: number) => (1n << 53n) - 200n + BigInt(key) * 3n,
  (key: number) => (1n << BigInt(bits)) - 500n + BigInt(key),
  (key: number) => (BigInt(key % 7) << BigInt(bits - 8)) | BigInt(key),
];

describe('BTreeMap against a Map model', () => {
  it.each([
    [64, 4],
    [64, 5],
    [64, 64],
    [128, 4],
    [128, 64],
  ] as const)('agrees on every operation of random sequences, %i-bit keys, node order %i', (bits, order) => {
    fc.assert(
      fc.property(fc.array(operation, { minLength: 1, maxLength: 1000 }), fc.constantFrom(...spreads(bits)), (operations: Operation[], spread) => {
        const tree = new BTreeMap<number>(bits, order);
        const model = new Map<bigint, number>();
        for (const step of operations) {
          const key = spread(step.key);
          if (step.kind === 'set') {
            tree.set(key, step.value);
            model.set(key, step.value);
          } else if (step.kind === 'delete') {
            expect(tree.delete(key)).toBe(model.delete(key));
          } else {
            expect(tree.get(key)).toBe(model.get(key));
            expect(tree.has(key)).toBe(model.has(key));
            const floor = tree.floor(key);
            expect(floor === undefined ? undefined : [floor.key, floor.value]).toEqual(modelFloor(model, key));
            const ceiling = tree.ceiling(key);
            expect(ceiling === undefined ? undefined : [ceiling.key, ceiling.value]).toEqual(modelCeiling(model, key));
            const higher = tree.higher(key);
            expect(higher === undefined ? undefined : [higher.key, higher.value]).toEqual(modelCeiling(model, key, true));
          }
          expect(tree.size).toBe(model.size);
        }
        const sorted = [...model].sort((a, b) => (a[0] < b[0] ? -1 : 1));
        expect([...tree.entries()]).toEqual(sorted);
        expect(tree.first()?.key).toBe(sorted[0]?.[0]);
        expect(tree.last()?.key).toBe(sorted[sorted.length - 1]?.[0]);
      }),
      { numRuns: 40 },
    );
  });

  it('stays correct through a large fill and drain', () => {
    const tree = new BTreeMap<bigint>();
    const count = 50_000;
    for (let index = 0; index < count; index++) tree.set(BigInt((index * 7919) % count) << 12n, BigInt(index));
    expect(tree.size).toBe(count);
    let previous = -1n;
    let ordered = true;
    let seen = 0;
    tree.forEachFrom(undefined, (key) => {
      ordered &&= key > previous;
      previous = key;
      seen++;
    });
    expect(ordered).toBe(true);
    expect(seen).toBe(count);
    let deleted = 0;
    for (let index = 0; index < count; index += 2) if (tree.delete(BigInt(index) << 12n)) deleted++;
    expect(deleted).toBe(count / 2);
    expect(tree.size).toBe(count / 2);
    expect(tree.floor((4n << 12n) + 5n)?.key).toBe(3n << 12n);
    for (let index = 1; index < count; index += 2) tree.delete(BigInt(index) << 12n);
    expect(tree.size).toBe(0);
    expect(tree.first()).toBeUndefined();
  });

  it('forEachFrom stops when the visitor returns false', () => {
    const tree = new BTreeMap<string>();
    for (let key = 0n; key < 200n; key++) tree.set(key, `v${key}`);
    const seen: bigint[] = [];
    tree.forEachFrom(150n, (key) => {
      seen.push(key);
      return seen.length < 3;
    });
    expect(seen).toEqual([150n, 151n, 152n]);
  });

  it('refuses keys outside its width', () => {
    const tree = new BTreeMap<number>(64);
    expect(() => tree.set(1n << 64n, 1)).toThrow(RangeError);
    expect(() => tree.get(-1n)).toThrow(RangeError);
    new BTreeMap<number>(128).set((1n << 128n) - 1n, 1);
  });
});

describe('BTreeMap with ascending inserts (append splits)', () => {
  it.each([4, 64])('stays correct when keys arrive in order and are then removed at random, order %i', (order) => {
    const tree = new BTreeMap<number>(64, order);
    const model = new Map<bigint, number>();
    for (let index = 0; index < 5000; index++) {
      tree.set(BigInt(index) << 12n, index);
      model.set(BigInt(index) << 12n, index);
    }
    for (let step = 0; step < 5000; step++) {
      const key = BigInt((step * 7919) % 5000) << 12n;
      expect(tree.delete(key)).toBe(model.delete(key));
      if (step % 500 === 0) expect([...tree.entries()]).toEqual([...model].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
      // Inserting back below the current maximum exercises ordinary splits of full leaves.
      if (step % 3 === 0) {
        tree.set(key + 1n, step);
        model.set(key + 1n, step);
      }
    }
    expect(tree.size).toBe(model.size);
    expect([...tree.entries()]).toEqual([...model].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  });
});

describe('BTreeMap after appends and deletes at the right edge', () => {
  it('finds floor and last when the newest leaf has emptied (it once split off a branch of one child)', () => {
    const tree = new BTreeMap<number>(64, 4);
    for (let key = 0; key <= 16; key++) tree.set(BigInt(key), key);
    for (const key of [16, 15, 14]) tree.delete(BigInt(key));
    expect(tree.last()).toEqual({ key: 13n, value: 13 });
    expect(tree.floor(27n)).toEqual({ key: 13n, value: 13 });
  });

  it.each([4, 5, 8])('agrees with a model on appends mixed with deletes from the top, order %i', (order) => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant('append' as const), fc.constant('pop' as const), fc.integer({ min: 0, max: 300 })), { maxLength: 400 }), (steps) => {
        const tree = new BTreeMap<number>(64, order);
        const model = new Map<bigint, number>();
        let next = 0;
        for (const step of steps) {
          if (step === 'append') {
            tree.set(BigInt(next), next);
            model.set(BigInt(next), next);
            next++;
          } else if (step === 'pop') {
            const top = [...model.keys()].reduce((a, b) => (b > a ? b : a), -1n);
            if (top >= 0n) expect(tree.delete(top)).toBe(model.delete(top));
          } else {
            const found = tree.floor(BigInt(step));
            expect(found === undefined ? undefined : [found.key, found.value]).toEqual(modelFloor(model, BigInt(step)));
            const last = tree.last();
            expect(last === undefined ? undefined : [last.key, last.value]).toEqual(modelFloor(model, 1n << 62n));
          }
        }
      }),
    );
  });
});
