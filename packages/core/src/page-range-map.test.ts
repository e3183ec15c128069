import { describe, expect, it } from 'vitest';
import { PageRangeMap } from './page-range-map.js';

/** The reference: entries kept sorted by start in a plain array, searched linearly. */
interface RefEntry {
  start: number;
  last: number;
  value: number;
  flags: number;
}

class Reference {
  entries: RefEntry[] = [];
  indexOf(start: number): number {
    return this.entries.findIndex((entry) => entry.start === start);
  }
  floor(key: number): RefEntry | undefined {
    let best: RefEntry | undefined;
    for (const entry of this.entries) if (entry.start <= key) best = entry;
    return best;
  }
  ceiling(key: number): RefEntry | undefined {
    return this.entries.find((entry) => entry.start >= key);
  }
  set(entry: RefEntry): void {
    const index = this.indexOf(entry.start);
    if (index >= 0) this.entries[index] = entry;
    else {
      this.entries.push(entry);
      this.entries.sort((a, b) => a.start - b.start);
    }
  }
  delete(start: number): boolean {
    const index = this.indexOf(start);
    if (index < 0) return false;
    this.entries.splice(index, 1);
    return true;
  }
}

/** A small deterministic PRNG (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Internals {
  root: number;
  height: number;
  capacity: number;
  minimum: number;
  block: number;
  data: Float64Array;
  leafCount: Int32Array;
  leafNext: Int32Array;
  leafPrev: Int32Array;
  branchKeys: Float64Array;
  branchChild: Int32Array;
  branchCount: Int32Array;
}

/** Fails the test with `message` unless `ok` (plain checks: `expect` per entry is slow at 100k entries). */
function check(ok: boolean, message: string): void {
  if (!ok) expect.fail(message);
}

/** Checks the tree's structure: fill, separators as bounds, leaf links. Returns the leaf ids in order. */
function checkStructure(map: PageRangeMap): number[] {
  const tree = map as unknown as Internals;
  const capacity = tree.capacity;
  const leaves: number[] = [];
  const walk = (node: number, level: number, low: number, high: number, isRoot: boolean): void => {
    if (level === 0) {
      const count = tree.leafCount[node]!;
      check(isRoot || count >= 1, 'a non-root leaf is empty');
      check(count <= capacity, 'a leaf is over capacity');
      for (let i = 0; i < count; i++) {
        const start = tree.data[node * tree.block + i * 2]!;
        check(start >= low && start < high, `start ${start} outside its separators [${low}, ${high})`);
        if (i > 0) check(start > tree.data[node * tree.block + (i - 1) * 2]!, 'leaf starts out of order');
      }
      leaves.push(node);
      return;
    }
    const count = tree.branchCount[node]!;
    // Appends leave the last node of a level under half full; never a branch with one child.
    check(count >= 2, `a branch has ${count} children`);
    check(count <= capacity, 'a branch is over capacity');
    for (let i = 0; i < count; i++) {
      const childLow = i === 0 ? low : tree.branchKeys[node * capacity + i]!;
      const childHigh = i + 1 < count ? tree.branchKeys[node * capacity + i + 1]! : high;
      check(childLow >= low && childHigh <= high && childLow < childHigh, 'separators out of order');
      walk(tree.branchChild[node * capacity + i]!, level - 1, childLow, childHigh, false);
    }
  };
  walk(tree.root, tree.height, -Infinity, Infinity, true);
  for (let i = 0; i < leaves.length; i++) {
    check(tree.leafPrev[leaves[i]!] === (i === 0 ? -1 : leaves[i - 1]), 'broken prev link');
    check(tree.leafNext[leaves[i]!] === (i + 1 < leaves.length ? leaves[i + 1] : -1), 'broken next link');
  }
  return leaves;
}

function found(map: PageRangeMap): RefEntry {
  return { start: map.foundStart, last: map.foundLast, value: map.foundValue, flags: map.foundFlags };
}

function collect(map: PageRangeMap, from: number, fromContaining?: boolean, limit = Infinity): RefEntry[] {
  const out: RefEntry[] = [];
  map.forEachFrom(
    from,
    (start, last, value, flags) => {
      out.push({ start, last, value, flags });
      return out.length < limit;
    },
    fromContaining,
  );
  return out;
}

/**
 * Random operations against the reference. Entries live in slots of 10 keys from `base`, so they
 * stay disjoint: slot k holds at most one range within [base + 10k, base + 10k + 9].
 */
function runRandom(order: number | undefined, seed: number, steps: number, slots: number, base: number): void {
  const next = random(seed);
  const int = (n: number) => Math.floor(next() * n);
  const map = order === undefined ? new PageRangeMap() : new PageRangeMap(order);
  const reference = new Reference();
  const bySlot = new Map<number, number>();
  // Phases: grow, churn, shrink to empty, grow again.
  const phase = (step: number) => (step < steps * 0.3 ? 0.8 : step < steps * 0.6 ? 0.5 : step < steps * 0.85 ? 0.15 : 0.7);
  for (let step = 0; step < steps; step++) {
    const roll = next();
    const slot = int(slots);
    const slotBase = base + slot * 10;
    if (roll < 0.55) {
      const insertRate = phase(step);
      if (next() < 0.15) {
        // setIfFree / deleteExact against the reference's own overlap and exact-match answers.
        const start = slotBase + int(12) - 1;
        const last = start + int(14);
        if (next() < 0.5) {
          const free = !reference.entries.some((entry) => entry.start <= last && entry.last >= start);
          const value = int(2 ** 52);
          const flags = int(2 ** 32);
          const before = found(map);
          expect(map.setIfFree(start, last, value, flags)).toBe(free);
          expect(found(map)).toEqual(before);
          // Only ranges inside one slot keep the slot bookkeeping simple; others are removed again.
          if (free) {
            if (Math.floor((start - base) / 10) === slot && Math.floor((last - base) / 10) === slot && !bySlot.has(slot)) {
              reference.set({ start, last, value, flags });
              bySlot.set(slot, start);
            } else {
              expect(map.deleteExact(start, last)).toBe(true);
            }
          }
        } else {
          const entry = reference.entries.find((candidate) => candidate.start === start);
          const exact = entry !== undefined && (next() < 0.5 || entry.last === last);
          const target = exact ? entry.last : last;
          const removes = entry !== undefined && entry.last === target;
          expect(map.deleteExact(start, target)).toBe(removes);
          if (removes) {
            reference.delete(start);
            bySlot.delete(Math.floor((start - base) / 10));
          }
        }
      } else if (next() < insertRate) {
        const offset = int(5);
        const start = slotBase + offset;
        const last = start + int(5);
        const value = next() < 0.3 ? 2 ** 53 - 1 - int(1000) : next() < 0.5 ? -int(2 ** 40) : int(2 ** 52);
        const flags = next() < 0.2 ? 0xffff_ffff : int(2 ** 32);
        const existing = bySlot.get(slot);
        if (existing !== undefined && existing !== start) {
          expect(map.delete(existing)).toBe(true);
          reference.delete(existing);
        }
        map.set(start, last, value, flags);
        reference.set({ start, last, value, flags });
        bySlot.set(slot, start);
      } else {
        const start = bySlot.get(slot) ?? slotBase + int(5);
        expect(map.delete(start)).toBe(reference.delete(start));
        bySlot.delete(slot);
      }
    } else {
      const key = slotBase + int(12) - 1;
      const kind = int(7);
      if (kind === 0) {
        const want = reference.floor(key);
        expect(map.floor(key)).toBe(want !== undefined);
        if (want) expect(found(map)).toEqual(want);
      } else if (kind === 1) {
        const want = reference.ceiling(key);
        expect(map.ceiling(key)).toBe(want !== undefined);
        if (want) expect(found(map)).toEqual(want);
      } else if (kind === 2) {
        const index = reference.indexOf(key);
        expect(map.get(key)).toBe(index >= 0);
        if (index >= 0) expect(found(map)).toEqual(reference.entries[index]);
      } else if (kind === 3) {
        const last = key + int(25);
        const want = reference.entries.filter((entry) => entry.start <= last && entry.last >= key).at(-1);
        expect(map.overlaps(key, last)).toBe(want !== undefined);
        if (want) expect(found(map)).toEqual(want);
      } else if (kind === 4) {
        const index = reference.indexOf(key);
        const flags = int(2 ** 32);
        expect(map.setFlags(key, flags)).toBe(index >= 0);
        if (index >= 0) reference.entries[index]!.flags = flags;
      } else if (kind === 5) {
        const containing = next() < 0.5;
        const limit = 1 + int(30);
        const first = reference.entries.findIndex((entry) => entry.start >= key || (containing && entry.last >= key));
        const want = first < 0 ? [] : reference.entries.slice(first, first + limit);
        expect(collect(map, key, containing, limit)).toEqual(want);
      } else {
        const want = reference.entries.at(-1);
        expect(map.last()).toBe(want !== undefined);
        if (want) expect(found(map)).toEqual(want);
      }
    }
    expect(map.size).toBe(reference.entries.length);
    if (step % 997 === 0) checkStructure(map);
  }
  checkStructure(map);
  expect(collect(map, 0)).toEqual(reference.entries.filter((entry) => entry.start >= 0));
  // Down to empty, in random order: merges and borrows at every level.
  const remaining = reference.entries.map((entry) => entry.start);
  for (let i = remaining.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [remaining[i], remaining[j]] = [remaining[j]!, remaining[i]!];
  }
  for (const [i, start] of remaining.entries()) {
    expect(map.delete(start)).toBe(true);
    expect(map.get(start)).toBe(false);
    if (i % 101 === 0) checkStructure(map);
  }
  expect(map.size).toBe(0);
  expect(map.last()).toBe(false);
  expect(map.floor(2 ** 53 - 1)).toBe(false);
  expect(map.ceiling(0)).toBe(false);
  expect((map as unknown as Internals).height).toBe(0);
  expect(collect(map, 0)).toEqual([]);
}

describe('PageRangeMap against a sorted-array reference', () => {
  // 24,000 checked operations a case: about a second alone, five under a full parallel test run.
  it.each([4, 5, 8, undefined])('agrees on random operations, order %s', { timeout: 60_000 }, (order) => {
    for (let seed = 1; seed <= 4; seed++) runRandom(order, seed * 7919 + (order ?? 64), 6000, order === undefined ? 3000 : 400, 0);
  });

  it.each([4, 5, 64])('keeps starts, lasts and values near 2^53 exact, order %i', (order) => {
    runRandom(order, 42 + order, 4000, 300, 2 ** 53 - 300 * 10 - 20);
  });

  it('agrees at scale with the default order', { timeout: 60_000 }, () => {
    runRandom(undefined, 99, 30_000, 5_000, 1_000_000);
  });
});

describe('PageRangeMap', () => {
  it('reports entries through the found* slots', () => {
    const map = new PageRangeMap(4);
    map.set(100, 109, 2 ** 53 - 1, 0xffff_ffff);
    map.set(200, 200, -5, 7);
    expect(map.size).toBe(2);
    expect(map.floor(150)).toBe(true);
    expect(found(map)).toEqual({ start: 100, last: 109, value: 2 ** 53 - 1, flags: 0xffff_ffff });
    expect(map.ceiling(150)).toBe(true);
    expect(found(map)).toEqual({ start: 200, last: 200, value: -5, flags: 7 });
    expect(map.floor(99)).toBe(false);
    expect(map.ceiling(201)).toBe(false);
    expect(map.get(101)).toBe(false);
    expect(map.get(100)).toBe(true);
    expect(map.foundLast).toBe(109);
    expect(map.overlaps(110, 199)).toBe(false);
    expect(map.overlaps(109, 150)).toBe(true);
    expect(map.foundStart).toBe(100);
    expect(map.overlaps(0, 2 ** 53 - 1)).toBe(true);
    expect(map.foundStart).toBe(200);
    expect(map.setFlags(200, 9)).toBe(true);
    expect(map.setFlags(201, 9)).toBe(false);
    expect(map.last()).toBe(true);
    expect(found(map)).toEqual({ start: 200, last: 200, value: -5, flags: 9 });
    // Replacing by start keeps the size.
    map.set(200, 205, 1, 2);
    expect(map.size).toBe(2);
    expect(map.get(200) && found(map)).toEqual({ start: 200, last: 205, value: 1, flags: 2 });
    map.clear();
    expect(map.size).toBe(0);
    expect(map.last()).toBe(false);
  });

  it('visits from a key, or from the entry containing it', () => {
    const map = new PageRangeMap(4);
    for (let i = 0; i < 50; i++) map.set(i * 10, i * 10 + 4, i, i);
    expect(collect(map, 23).map((entry) => entry.start).slice(0, 2)).toEqual([30, 40]);
    expect(collect(map, 23, true).map((entry) => entry.start).slice(0, 2)).toEqual([20, 30]);
    expect(collect(map, 25, true).map((entry) => entry.start).slice(0, 2)).toEqual([30, 40]);
    expect(collect(map, 20, true).map((entry) => entry.start).slice(0, 2)).toEqual([20, 30]);
    expect(collect(map, 0, true, 3).map((entry) => entry.start)).toEqual([0, 10, 20]);
    expect(collect(map, 1000, true)).toEqual([]);
    expect(collect(map, 494, true).map((entry) => entry.start)).toEqual([490]);
    // The containing entry at the end of the previous leaf.
    for (let key = 0; key < 500; key++) {
      const want = key % 10 <= 4 ? key - (key % 10) : key - (key % 10) + 10;
      const got = collect(map, key, true, 1);
      expect(got.length === 0 ? undefined : got[0]!.start).toBe(want < 500 ? want : undefined);
    }
    let calls = 0;
    map.forEachFrom(0, () => {
      calls++;
      return false;
    });
    expect(calls).toBe(1);
  });

  it('fills leaves completely on ascending appends', () => {
    const map = new PageRangeMap();
    const n = 100_000;
    for (let i = 0; i < n; i++) map.set(i * 2, i * 2, i, 0);
    const leaves = checkStructure(map);
    expect(leaves.length).toBe(Math.ceil(n / 64));
    expect(map.last() && map.foundStart).toBe((n - 1) * 2);
    expect(map.floor(n) && map.foundStart).toBe(n);
    // Small orders too, down to every branch.
    const small = new PageRangeMap(4);
    for (let i = 0; i < 1000; i++) small.set(i, i, i, i);
    expect(checkStructure(small).length).toBe(250);
  });

  it('keeps leaves well filled on random inserts (spilling to siblings before splitting)', () => {
    const map = new PageRangeMap();
    const next = random(5);
    const n = 200_000;
    const seen = new Set<number>();
    while (seen.size < n) {
      const start = Math.floor(next() * 2 ** 40);
      if (seen.has(start)) continue;
      seen.add(start);
      map.set(start, start, 0, 0);
    }
    const leaves = checkStructure(map);
    const fill = n / (leaves.length * 64);
    expect(fill).toBeGreaterThan(0.75);
  });

  it('treats orders below 4 as 4', () => {
    const map = new PageRangeMap(1);
    for (let i = 0; i < 100; i++) map.set(i, i, i, i);
    checkStructure(map);
    expect((map as unknown as Internals).capacity).toBe(4);
  });
});
