import { BTreeMap } from './btree.js';
import type { IovaRange } from './iova-range.js';

/**
 * A mutable set of IOVAs kept as disjoint, non-adjacent ranges in a B+tree keyed by start: adding
 * merges neighbours, removing splits. Every operation is O(log n + k), k being the number of stored
 * ranges the argument touches.
 */
export class IovaRangeSet implements Iterable<IovaRange> {
  private readonly tree = new BTreeMap<bigint>();

  constructor(ranges: Iterable<IovaRange> = []) {
    for (const range of ranges) this.add(range);
  }

  /** Number of disjoint ranges stored. */
  get count(): number {
    return this.tree.size;
  }

  /** True when the set holds no address. */
  get empty(): boolean {
    return this.tree.size === 0;
  }

  /**
   * Adds every address of `range`, merging with ranges it overlaps or touches. Calls `onRemoved`
   * and `onAdded` with the stored ranges that disappear and appear (the allocator keeps a size index
   * in step this way). Written to touch the tree as little as possible: a range that grows keeps
   * its key and is updated in place.
   */
  add(range: IovaRange, onRemoved?: (range: IovaRange) => void, onAdded?: (range: IovaRange) => void): void {
    let start = range.start;
    let last = range.last;
    // Stored ranges are disjoint and never adjacent, so only the one starting at or before `start`
    // can overlap or touch the new range from the left.
    const base = this.tree.floor(start);
    const merged = base !== undefined && base.value + 1n >= start;
    if (merged) {
      if (base.value >= last) return; // already covered: nothing changes
      start = base.key;
    }
    // Absorb every stored range that starts inside (start, last + 1].
    for (let next = this.tree.higher(start); next !== undefined && next.key <= last + 1n; next = this.tree.higher(start)) {
      if (next.value > last) last = next.value;
      this.tree.delete(next.key);
      onRemoved?.({ start: next.key, last: next.value });
    }
    if (merged) onRemoved?.({ start: base.key, last: base.value });
    this.tree.set(start, last);
    onAdded?.({ start, last });
  }

  /** Removes every address of `range`, splitting stored ranges it cuts. Same callbacks as {@link add}. */
  remove(range: IovaRange, onRemoved?: (range: IovaRange) => void, onAdded?: (range: IovaRange) => void): void {
    let cursor = this.tree.floor(range.start);
    if (cursor === undefined) {
      cursor = this.tree.ceiling(range.start);
    } else if (cursor.key < range.start) {
      if (cursor.value < range.start) {
        cursor = this.tree.higher(cursor.key);
      } else {
        // The range cuts this stored range: keep its left part under the same key (in place).
        const { key: start, value: last } = cursor;
        onRemoved?.({ start, last });
        this.tree.set(start, range.start - 1n);
        onAdded?.({ start, last: range.start - 1n });
        if (last > range.last) {
          this.tree.set(range.last + 1n, last);
          onAdded?.({ start: range.last + 1n, last });
          return;
        }
        cursor = this.tree.higher(start);
      }
    }
    while (cursor !== undefined && cursor.key <= range.last) {
      const { key: start, value: last } = cursor;
      this.tree.delete(start);
      onRemoved?.({ start, last });
      if (last > range.last) {
        this.tree.set(range.last + 1n, last);
        onAdded?.({ start: range.last + 1n, last });
        return;
      }
      cursor = this.tree.higher(start);
    }
  }

  /** The stored range that contains `address`, or `undefined`. */
  find(address: bigint): IovaRange | undefined {
    const entry = this.tree.floor(address);
    return entry !== undefined && entry.value >= address ? { start: entry.key, last: entry.value } : undefined;
  }

  /** True when `address` is in the set. */
  has(address: bigint): boolean {
    return this.find(address) !== undefined;
  }

  /** True when every address of `range` is in the set (one stored range covers it, as the set is merged). */
  covers(range: IovaRange): boolean {
    const entry = this.tree.floor(range.start);
    return entry !== undefined && entry.value >= range.last;
  }

  /** True when at least one address of `range` is in the set. */
  intersects(range: IovaRange): boolean {
    const entry = this.tree.floor(range.last);
    return entry !== undefined && entry.value >= range.start;
  }

  /** The stored ranges that share an address with `range`, in order, unclipped. */
  overlapping(range: IovaRange): IovaRange[] {
    const result: IovaRange[] = [];
    const first = this.tree.floor(range.start);
    const from = first !== undefined && first.value >= range.start ? first.key : range.start;
    this.tree.forEachFrom(from, (start, last) => {
      if (start > range.last) return false;
      result.push({ start, last });
      return true;
    });
    return result;
  }

  /** The stored ranges, in address order. */
  *[Symbol.iterator](): Iterator<IovaRange> {
    for (const [start, last] of this.tree.entries()) yield { start, last };
  }

  /** The stored ranges as an array, in address order. */
  toArray(): IovaRange[] {
    return [...this];
  }

  /** Total bytes in the set (may exceed 2^64 - 1 only for the full space, which is exactly 2^64). */
  totalSize(): bigint {
    let total = 0n;
    for (const [start, last] of this.tree.entries()) total += last - start + 1n;
    return total;
  }

  /** Removes every range. */
  clear(): void {
    this.tree.clear();
  }
}
