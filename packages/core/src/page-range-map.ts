/**
 * An ordered map of disjoint inclusive integer ranges `[start, last]` to two numbers, `value` and
 * `flags`: the record a simulator or an SDK keeps of a million live DMA mappings, keyed by page
 * number.
 *
 * Why not {@link BTreeMap}: it keeps a bigint key and a value object per entry (150+ bytes each
 * with the object) and hands out an entry object per lookup. Here the B+tree's nodes are slots in
 * a few shared typed arrays, addressed by node number: `start` and `last` interleaved and `value`
 * as doubles (exact for integers below 2^53), `flags` as uint32, branch keys as doubles and child
 * numbers as int32. No JS object, bigint or closure per entry, per node or per call: 28 bytes a
 * slot plus 12 a leaf. Shifts within a node and moves between nodes are `copyWithin`; lookups report
 * through the `found*` fields instead of returning an object.
 *
 * Why node numbers rather than an object per node: at a million entries the tree is far larger than
 * the CPU caches, and every pointer hop of a descent (node object, typed-array object, its bytes)
 * is a cache miss; here a descent touches the key bytes and nothing else. Searches within a node
 * probe every eighth key first (independent loads the CPU issues together), then scan the eight
 * keys of one block, instead of a binary search whose every step waits for the previous miss.
 *
 * Separators in the branches are lower bounds, not the exact smallest key: a delete never walks
 * back up to refresh them, and the leaves are linked both ways so that `floor` can step to the
 * previous leaf when its key sorts before the first entry of the leaf the descent reached.
 */

/** Shifts of at most this many entries are done with a loop rather than copyWithin. */
const SHORT_MOVE = 16;
/** Default node capacity. */
const DEFAULT_ORDER = 64;
/** Deepest tree the path buffers hold: far beyond 2^53 entries at the minimum order. */
const MAX_DEPTH = 64;
/** No node. */
const NONE = -1;

/** An ordered map of disjoint inclusive integer ranges `[start, last]` to a `value` (integer below 2^53) and `flags` (uint32), on a B+tree kept in typed arrays: about 30-40 bytes an entry, no allocation per operation, O(log n) each. Every key, stored or searched for, is an integer below 2^53. */
export class PageRangeMap {
  /** Start of the entry found by the last successful `floor`, `ceiling`, `get`, `overlaps` or `last`. */
  foundStart = 0;
  /** Last (inclusive) of the entry found by the last successful lookup. */
  foundLast = 0;
  /** Value of the entry found by the last successful lookup. */
  foundValue = 0;
  /** Flags of the entry found by the last successful lookup. */
  foundFlags = 0;

  /** Entries per leaf, children per branch. */
  private readonly capacity: number;
  /** Below this a node is refilled from a sibling or merged with it. */
  private readonly minimum: number;
  /** Two siblings merge only when they hold at most this many (three quarters of a node). */
  private readonly mergeLimit: number;

  // Leaves: leaf `l` is one block of `block` doubles from `l * block` in `data`: `capacity` pairs
  // (start, last), then `capacity` values, then `capacity` flags (uint32, through `words`). One
  // block per leaf keeps a leaf's bytes together: a search, a shift and a lookup of its value touch
  // neighbouring cache lines and one memory page rather than three far apart.
  /** Doubles per leaf block: 3.5 * capacity, rounded up. */
  private readonly block: number;
  /** Leaf ids allocated in the arrays below. */
  private leafSlots = 0;
  /** Ids below this have been handed out at least once. */
  private leafTop = 0;
  /** Freed leaves, linked through `leafNext`. */
  private leafFree = NONE;
  private data = new Float64Array(0);
  private words = new Uint32Array(0);
  private leafCount = new Int32Array(0);
  private leafNext = new Int32Array(0);
  private leafPrev = new Int32Array(0);

  // Branches: branch `b` holds its children at `b * capacity`. `branchKeys[i]` (i >= 1 in a node)
  // is a lower bound of every key under child i and above every key under child i - 1; the key of
  // child 0 is not used by searches.
  private branchSlots = 0;
  private branchTop = 0;
  /** Freed branches, linked through the first child slot. */
  private branchFree = NONE;
  private branchKeys = new Float64Array(0);
  private branchChild = new Int32Array(0);
  private branchCount = new Int32Array(0);

  /** The root: a leaf when `height` is 0, else a branch. */
  private root = 0;
  /** Number of branch levels above the leaves. */
  private height = 0;
  private count = 0;
  /** The branches of the last descent, root first, and the child index taken in each. */
  private readonly pathNode = new Int32Array(MAX_DEPTH);
  private readonly pathIndex = new Int32Array(MAX_DEPTH);

  /**
   * @param order node capacity (entries per leaf, children per branch), at least 4; tests use small
   *   orders to exercise deep trees.
   */
  constructor(order = DEFAULT_ORDER) {
    this.capacity = Math.max(4, Math.floor(order));
    this.minimum = this.capacity >> 1;
    this.mergeLimit = this.capacity - (this.capacity >> 2);
    this.block = 3 * this.capacity + ((this.capacity + 1) >> 1);
    this.clear();
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Removes every entry (and gives back the memory). */
  clear(): void {
    const capacity = this.capacity;
    this.leafSlots = 1;
    this.leafTop = 0;
    this.leafFree = NONE;
    const buffer = new ArrayBuffer(this.block * 8);
    this.data = new Float64Array(buffer);
    this.words = new Uint32Array(buffer);
    this.leafCount = new Int32Array(1);
    this.leafNext = new Int32Array(1);
    this.leafPrev = new Int32Array(1);
    this.branchSlots = 0;
    this.branchTop = 0;
    this.branchFree = NONE;
    this.branchKeys = new Float64Array(0);
    this.branchChild = new Int32Array(0);
    this.branchCount = new Int32Array(0);
    this.root = this.allocateLeaf();
    this.height = 0;
    this.count = 0;
  }

  /** Entry with the greatest start `<= key`; true and sets `found*` when there is one. */
  floor(key: number): boolean {
    const leaf = this.descend(key);
    const index = this.upperBound(leaf, key) - 1;
    if (index >= 0) return this.found(leaf, index);
    const prev = this.leafPrev[leaf]!;
    return prev !== NONE ? this.found(prev, this.leafCount[prev]! - 1) : false;
  }

  /** Entry with the smallest start `>= key`; true and sets `found*` when there is one. */
  ceiling(key: number): boolean {
    const leaf = this.descend(key);
    const index = this.lowerBound(leaf, key);
    if (index < this.leafCount[leaf]!) return this.found(leaf, index);
    const next = this.leafNext[leaf]!;
    return next !== NONE ? this.found(next, 0) : false;
  }

  /** Entry whose start is exactly `start`; true and sets `found*` when there is one. */
  get(start: number): boolean {
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    return index < this.leafCount[leaf]! && this.data[leaf * this.block + index * 2] === start ? this.found(leaf, index) : false;
  }

  /**
   * True when an entry shares a point with `[start, last]` (`floor(last) && foundLast >= start`,
   * the entries being disjoint); sets `found*` to that entry. After `false`, `found*` may hold the
   * entry before the range.
   */
  overlaps(start: number, last: number): boolean {
    return this.floor(last) && this.foundLast >= start;
  }

  /** Last entry (greatest start): true and sets `found*`; false when the map is empty. */
  last(): boolean {
    let node = this.root;
    const capacity = this.capacity;
    for (let level = this.height; level > 0; level--) node = this.branchChild[node * capacity + this.branchCount[node]! - 1]!;
    const count = this.leafCount[node]!;
    return count > 0 ? this.found(node, count - 1) : false;
  }

  /** Changes the flags of the entry starting at `start`; false when there is none. */
  setFlags(start: number, flags: number): boolean {
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    if (index >= this.leafCount[leaf]! || this.data[leaf * this.block + index * 2] !== start) return false;
    this.words[(leaf * this.block + 3 * this.capacity) * 2 + index] = flags;
    return true;
  }

  /**
   * Inserts `[start, last]` with `value` and `flags`, or replaces the entry with the same start.
   * The caller guarantees that the ranges stay disjoint, `0 <= start <= last < 2^53` integers.
   */
  set(start: number, last: number, value: number, flags: number): void {
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    const count = this.leafCount[leaf]!;
    if (index < count && this.data[leaf * this.block + index * 2] === start) {
      this.write(leaf, index, start, last, value, flags);
      return;
    }
    this.count++;
    if (count < this.capacity) this.insertAt(leaf, index, start, last, value, flags);
    else this.insertIntoFull(leaf, index, start, last, value, flags);
  }

  /**
   * Inserts `[start, last]` (`start <= last`) with `value` and `flags` when no entry shares a point
   * with it, and returns true; returns false and changes nothing otherwise. One descent, and only
   * the neighbours' keys read: `overlaps` then `set` in one step. Does not touch `found*`.
   */
  setIfFree(start: number, last: number, value: number, flags: number): boolean {
    const block = this.block;
    const data = this.data;
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    const count = this.leafCount[leaf]!;
    // The entry after: the first start >= start.
    if (index < count) {
      if (data[leaf * block + index * 2]! <= last) return false;
    } else {
      const next = this.leafNext[leaf]!;
      if (next !== NONE && data[next * block]! <= last) return false;
    }
    // The entry before: its last must stay below start.
    if (index > 0) {
      if (data[leaf * block + index * 2 - 1]! >= start) return false;
    } else {
      const prev = this.leafPrev[leaf]!;
      if (prev !== NONE && data[prev * block + this.leafCount[prev]! * 2 - 1]! >= start) return false;
    }
    this.count++;
    if (count < this.capacity) this.insertAt(leaf, index, start, last, value, flags);
    else this.insertIntoFull(leaf, index, start, last, value, flags);
    return true;
  }

  /**
   * Removes the entry that is exactly `[start, last]`; false (and nothing removed) when no entry
   * starts at `start` and ends at `last`. One descent: `get` then `delete` in one step. When it
   * removes the entry, `found*` holds what it was (so that a caller can put it back).
   */
  deleteExact(start: number, last: number): boolean {
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    const at = leaf * this.block + index * 2;
    if (index >= this.leafCount[leaf]! || this.data[at] !== start || this.data[at + 1] !== last) return false;
    this.found(leaf, index);
    this.removeAt(leaf, index);
    this.count--;
    if (this.leafCount[leaf]! < this.minimum && this.height > 0) this.rebalance();
    return true;
  }

  /** Removes the entry starting at `start`; false when there is none. */
  delete(start: number): boolean {
    const leaf = this.descend(start);
    const index = this.lowerBound(leaf, start);
    if (index >= this.leafCount[leaf]! || this.data[leaf * this.block + index * 2] !== start) return false;
    this.removeAt(leaf, index);
    this.count--;
    if (this.leafCount[leaf]! < this.minimum && this.height > 0) this.rebalance();
    return true;
  }

  /**
   * Visits the entries with `start >= from` in order (with `fromContaining`, first the entry that
   * contains `from`, if any) until `visit` returns `false`. `visit` must not modify the map.
   */
  forEachFrom(
    from: number,
    visit: (start: number, last: number, value: number, flags: number) => boolean | void,
    fromContaining = false,
  ): void {
    const block = this.block;
    const capacity = this.capacity;
    let leaf = this.descend(from);
    let index = this.lowerBound(leaf, from);
    if (fromContaining && !(index < this.leafCount[leaf]! && this.data[leaf * block + index * 2] === from)) {
      // The entry before the first start >= from contains `from` when its last reaches it.
      if (index > 0) {
        if (this.data[leaf * block + index * 2 - 1]! >= from) index--;
      } else {
        const prev = this.leafPrev[leaf]!;
        if (prev !== NONE && this.data[prev * block + this.leafCount[prev]! * 2 - 1]! >= from) {
          leaf = prev;
          index = this.leafCount[prev]! - 1;
        }
      }
    }
    while (leaf !== NONE) {
      const { data, words } = this;
      const base = leaf * block;
      const flagsBase = (base + 3 * capacity) * 2;
      for (; index < this.leafCount[leaf]!; index++) {
        if (visit(data[base + index * 2]!, data[base + index * 2 + 1]!, data[base + 2 * capacity + index]!, words[flagsBase + index]!) === false) return;
      }
      leaf = this.leafNext[leaf]!;
      index = 0;
    }
  }

  // --- searches -------------------------------------------------------------------------------

  private found(leaf: number, index: number): true {
    const base = leaf * this.block;
    const data = this.data;
    this.foundStart = data[base + index * 2]!;
    this.foundLast = data[base + index * 2 + 1]!;
    this.foundValue = data[base + 2 * this.capacity + index]!;
    this.foundFlags = this.words[(base + 3 * this.capacity) * 2 + index]!;
    return true;
  }

  /** Walks from the root to the leaf where `key` belongs, recording the path. */
  private descend(key: number): number {
    let node = this.root;
    const height = this.height;
    if (height === 0) return node;
    const capacity = this.capacity;
    const keys = this.branchKeys;
    const children = this.branchChild;
    const counts = this.branchCount;
    const pathNode = this.pathNode;
    const pathIndex = this.pathIndex;
    for (let depth = 0; depth < height; depth++) {
      const base = node * capacity;
      const count = counts[node]!;
      // The first i >= 1 with keys[i] > key; the child is i - 1. Every eighth key first, then the
      // block of eight that holds the answer.
      let probe = 8;
      while (probe < count && keys[base + probe]! <= key) probe += 8;
      let index = probe - 7;
      const end = probe < count ? probe : count;
      while (index < end && keys[base + index]! <= key) index++;
      pathNode[depth] = node;
      pathIndex[depth] = index - 1;
      node = children[base + index - 1]!;
    }
    return node;
  }

  /** First index of `leaf` whose start is `>= key`. */
  private lowerBound(leaf: number, key: number): number {
    const keys = this.data;
    const count = this.leafCount[leaf]!;
    const base = leaf * this.block;
    let probe = 7;
    while (probe < count && keys[base + probe * 2]! < key) probe += 8;
    let index = probe - 7;
    const end = probe < count ? probe : count;
    while (index < end && keys[base + index * 2]! < key) index++;
    return index;
  }

  /** First index of `leaf` whose start is `> key`: keys are integers, so the first `>= key + 1`. */
  private upperBound(leaf: number, key: number): number {
    return this.lowerBound(leaf, key + 1);
  }


  // --- leaf entries ---------------------------------------------------------------------------

  private write(leaf: number, index: number, start: number, last: number, value: number, flags: number): void {
    const base = leaf * this.block;
    const data = this.data;
    data[base + index * 2] = start;
    data[base + index * 2 + 1] = last;
    data[base + 2 * this.capacity + index] = value;
    this.words[(base + 3 * this.capacity) * 2 + index] = flags;
  }

  /** Inserts at `index` of a leaf with room. */
  private insertAt(leaf: number, index: number, start: number, last: number, value: number, flags: number): void {
    const count = this.leafCount[leaf]!;
    if (index < count) this.moveEntries(leaf, index, leaf, index + 1, count - index);
    this.write(leaf, index, start, last, value, flags);
    this.leafCount[leaf] = count + 1;
  }

  private removeAt(leaf: number, index: number): void {
    const count = this.leafCount[leaf]! - 1;
    if (index < count) this.moveEntries(leaf, index + 1, leaf, index, count - index);
    this.leafCount[leaf] = count;
  }

  /** Moves `length` entries (within a leaf or between leaves; counts are the caller's). */
  private moveEntries(fromLeaf: number, fromIndex: number, toLeaf: number, toIndex: number, length: number): void {
    const block = this.block;
    const capacity = this.capacity;
    const from = fromLeaf * block;
    const to = toLeaf * block;
    const data = this.data;
    if (length <= SHORT_MOVE) {
      // copyWithin is a builtin call costing ~15 ns each (three here) whatever the length: a loop
      // is cheaper for the short shifts of a random insert or delete. Backwards when moving up
      // within one leaf, so that nothing is overwritten before it is read.
      const words = this.words;
      const fromFlags = (from + 3 * capacity) * 2 + fromIndex;
      const toFlags = (to + 3 * capacity) * 2 + toIndex;
      const up = from + fromIndex < to + toIndex;
      for (let step = 0; step < length; step++) {
        const offset = up ? length - 1 - step : step;
        const source = from + (fromIndex + offset) * 2;
        const target = to + (toIndex + offset) * 2;
        data[target] = data[source]!;
        data[target + 1] = data[source + 1]!;
        data[to + 2 * capacity + toIndex + offset] = data[from + 2 * capacity + fromIndex + offset]!;
        words[toFlags + offset] = words[fromFlags + offset]!;
      }
      return;
    }
    data.copyWithin(to + toIndex * 2, from + fromIndex * 2, from + (fromIndex + length) * 2);
    data.copyWithin(to + 2 * capacity + toIndex, from + 2 * capacity + fromIndex, from + 2 * capacity + fromIndex + length);
    const fromFlags = (from + 3 * capacity) * 2 + fromIndex;
    this.words.copyWithin((to + 3 * capacity) * 2 + toIndex, fromFlags, fromFlags + length);
  }

  // --- insertion ------------------------------------------------------------------------------

  /** Inserts into a full leaf: append past the end, spill to a sibling with room, or split. */
  private insertIntoFull(leaf: number, index: number, start: number, last: number, value: number, flags: number): void {
    const capacity = this.capacity;
    const depth = this.height - 1;
    if (index === capacity && this.leafNext[leaf] === NONE) {
      // Ascending appends (a VMM mapping guest RAM in order) start a new leaf and leave this one
      // full: a half split would leave every leaf half empty for good.
      const sibling = this.allocateLeaf();
      this.insertAt(sibling, 0, start, last, value, flags);
      this.linkAfter(leaf, sibling);
      this.insertChild(depth, start, sibling, true);
      return;
    }
    if (depth >= 0) {
      const parent = this.pathNode[depth]!;
      const at = this.pathIndex[depth]!;
      const parentBase = parent * capacity;
      if (at + 1 < this.branchCount[parent]!) {
        const right = this.branchChild[parentBase + at + 1]!;
        const room = capacity - this.leafCount[right]!;
        if (room >= 2) {
          // Spill the last entries to the right sibling; both then have room.
          const moved = room >> 1;
          const keep = capacity - moved;
          this.moveEntries(right, 0, right, moved, this.leafCount[right]!);
          this.moveEntries(leaf, keep, right, 0, moved);
          this.leafCount[right] = this.leafCount[right]! + moved;
          this.leafCount[leaf] = keep;
          if (index <= keep) this.insertAt(leaf, index, start, last, value, flags);
          else this.insertAt(right, index - keep, start, last, value, flags);
          this.branchKeys[parentBase + at + 1] = this.data[right * this.block]!;
          return;
        }
      }
      if (at > 0) {
        const left = this.branchChild[parentBase + at - 1]!;
        const leftCount = this.leafCount[left]!;
        const room = capacity - leftCount;
        if (room >= 2) {
          const moved = room >> 1;
          this.moveEntries(leaf, 0, left, leftCount, moved);
          this.moveEntries(leaf, moved, leaf, 0, capacity - moved);
          this.leafCount[left] = leftCount + moved;
          this.leafCount[leaf] = capacity - moved;
          if (index < moved) this.insertAt(left, leftCount + index, start, last, value, flags);
          else this.insertAt(leaf, index - moved, start, last, value, flags);
          this.branchKeys[parentBase + at] = this.data[leaf * this.block]!;
          return;
        }
      }
    }
    const half = capacity >> 1;
    const sibling = this.allocateLeaf();
    this.moveEntries(leaf, half, sibling, 0, capacity - half);
    this.leafCount[sibling] = capacity - half;
    this.leafCount[leaf] = half;
    if (index <= half) this.insertAt(leaf, index, start, last, value, flags);
    else this.insertAt(sibling, index - half, start, last, value, flags);
    this.linkAfter(leaf, sibling);
    this.insertChild(depth, this.data[sibling * this.block]!, sibling, false);
  }

  private linkAfter(leaf: number, sibling: number): void {
    const next = this.leafNext[leaf]!;
    this.leafNext[sibling] = next;
    this.leafPrev[sibling] = leaf;
    if (next !== NONE) this.leafPrev[next] = sibling;
    this.leafNext[leaf] = sibling;
  }

  /**
   * Inserts `child` (lower bound `key`) after the path's child at `depth`, splitting branches
   * upwards as needed; `appending` when the child is a new last node of the tree.
   */
  private insertChild(depth: number, key: number, child: number, appending: boolean): void {
    const capacity = this.capacity;
    for (; depth >= 0; depth--) {
      const branch = this.pathNode[depth]!;
      const at = this.pathIndex[depth]! + 1;
      if (this.branchCount[branch]! < capacity) {
        this.branchInsert(branch, at, key, child);
        return;
      }
      const sibling = this.allocateBranch();
      if (appending && at === capacity) {
        // Appending: the new branch takes the last child and the new one, the full one stays
        // nearly full (every branch keeps at least two children, so every node has a sibling).
        this.branchMove(branch, capacity - 1, sibling, 0, 1);
        this.branchCount[branch] = capacity - 1;
        this.branchCount[sibling] = 1;
        this.branchInsert(sibling, 1, key, child);
      } else {
        appending = false;
        // capacity + 1 children: the left keeps `half`.
        const half = (capacity + 1) >> 1;
        if (at < half) {
          this.branchMove(branch, half - 1, sibling, 0, capacity - half + 1);
          this.branchCount[branch] = half - 1;
          this.branchCount[sibling] = capacity - half + 1;
          this.branchInsert(branch, at, key, child);
        } else {
          this.branchMove(branch, half, sibling, 0, capacity - half);
          this.branchCount[branch] = half;
          this.branchCount[sibling] = capacity - half;
          this.branchInsert(sibling, at - half, key, child);
        }
      }
      key = this.branchKeys[sibling * capacity]!;
      child = sibling;
    }
    const root = this.allocateBranch();
    const base = root * capacity;
    this.branchKeys[base] = 0;
    this.branchChild[base] = this.root;
    this.branchKeys[base + 1] = key;
    this.branchChild[base + 1] = child;
    this.branchCount[root] = 2;
    this.root = root;
    this.height++;
  }

  private branchInsert(branch: number, at: number, key: number, child: number): void {
    const count = this.branchCount[branch]!;
    const slot = branch * this.capacity + at;
    if (at < count) this.branchShift(slot, slot + 1, count - at);
    this.branchKeys[slot] = key;
    this.branchChild[slot] = child;
    this.branchCount[branch] = count + 1;
  }

  private branchRemove(branch: number, at: number): void {
    const count = this.branchCount[branch]! - 1;
    const slot = branch * this.capacity + at;
    if (at < count) this.branchShift(slot + 1, slot, count - at);
    this.branchCount[branch] = count;
  }

  /** Moves `length` keys and children from `from`'s index `fromIndex` to `to`'s `toIndex` (counts are the caller's). */
  private branchMove(from: number, fromIndex: number, to: number, toIndex: number, length: number): void {
    this.branchShift(from * this.capacity + fromIndex, to * this.capacity + toIndex, length);
  }

  private branchShift(from: number, to: number, length: number): void {
    this.branchKeys.copyWithin(to, from, from + length);
    this.branchChild.copyWithin(to, from, from + length);
  }

  // --- deletion -------------------------------------------------------------------------------

  /** Refills or merges nodes below half full, from the last descent's leaf up its path. */
  private rebalance(): void {
    const capacity = this.capacity;
    let depth = this.height - 1;
    // The leaf level.
    {
      const parent = this.pathNode[depth]!;
      const at = this.pathIndex[depth]!;
      const li = at > 0 ? at - 1 : 0;
      const parentBase = parent * capacity;
      const left = this.branchChild[parentBase + li]!;
      const right = this.branchChild[parentBase + li + 1]!;
      const leftCount = this.leafCount[left]!;
      const rightCount = this.leafCount[right]!;
      // Merge only when the two fill at most three quarters of a leaf, else even them out: merging
      // whenever they fit would undo the split that the next insert makes again (a random map and
      // its unmap would split and merge a full leaf every time).
      if (leftCount + rightCount <= this.mergeLimit) {
        this.moveEntries(right, 0, left, leftCount, rightCount);
        this.leafCount[left] = leftCount + rightCount;
        const next = this.leafNext[right]!;
        this.leafNext[left] = next;
        if (next !== NONE) this.leafPrev[next] = left;
        this.freeLeaf(right);
        this.branchRemove(parent, li + 1);
      } else {
        const target = (leftCount + rightCount) >> 1;
        if (leftCount > target) {
          const moved = leftCount - target;
          this.moveEntries(right, 0, right, moved, rightCount);
          this.moveEntries(left, target, right, 0, moved);
        } else {
          const moved = target - leftCount;
          this.moveEntries(right, 0, left, leftCount, moved);
          this.moveEntries(right, moved, right, 0, rightCount - moved);
        }
        this.leafCount[left] = target;
        this.leafCount[right] = leftCount + rightCount - target;
        this.branchKeys[parentBase + li + 1] = this.data[right * this.block]!;
        return;
      }
    }
    // The branch levels.
    for (depth--; depth >= 0; depth--) {
      const node = this.pathNode[depth + 1]!;
      if (this.branchCount[node]! >= this.minimum) break;
      const parent = this.pathNode[depth]!;
      const at = this.pathIndex[depth]!;
      const li = at > 0 ? at - 1 : 0;
      const parentBase = parent * capacity;
      const left = this.branchChild[parentBase + li]!;
      const right = this.branchChild[parentBase + li + 1]!;
      const leftCount = this.branchCount[left]!;
      const rightCount = this.branchCount[right]!;
      const separator = this.branchKeys[parentBase + li + 1]!;
      const keys = this.branchKeys;
      if (leftCount + rightCount <= this.mergeLimit) {
        this.branchMove(right, 0, left, leftCount, rightCount);
        keys[left * capacity + leftCount] = separator;
        this.branchCount[left] = leftCount + rightCount;
        this.freeBranch(right);
        this.branchRemove(parent, li + 1);
      } else {
        const target = (leftCount + rightCount) >> 1;
        const rightBase = right * capacity;
        if (leftCount > target) {
          const moved = leftCount - target;
          this.branchShift(rightBase, rightBase + moved, rightCount);
          keys[rightBase + moved] = separator;
          this.branchMove(left, target, right, 0, moved);
          keys[parentBase + li + 1] = keys[rightBase]!;
        } else {
          const moved = target - leftCount;
          this.branchMove(right, 0, left, leftCount, moved);
          keys[left * capacity + leftCount] = separator;
          keys[parentBase + li + 1] = keys[rightBase + moved]!;
          this.branchShift(rightBase + moved, rightBase, rightCount - moved);
        }
        this.branchCount[left] = target;
        this.branchCount[right] = leftCount + rightCount - target;
        return;
      }
    }
    // A root branch left with one child gives way to it.
    while (this.height > 0 && this.branchCount[this.root] === 1) {
      const single = this.root;
      this.root = this.branchChild[single * capacity]!;
      this.freeBranch(single);
      this.height--;
    }
  }

  // --- node storage ---------------------------------------------------------------------------

  private allocateLeaf(): number {
    let leaf = this.leafFree;
    if (leaf !== NONE) {
      this.leafFree = this.leafNext[leaf]!;
    } else {
      if (this.leafTop === this.leafSlots) this.growLeaves();
      leaf = this.leafTop++;
    }
    this.leafCount[leaf] = 0;
    this.leafNext[leaf] = NONE;
    this.leafPrev[leaf] = NONE;
    return leaf;
  }

  private freeLeaf(leaf: number): void {
    this.leafCount[leaf] = 0;
    this.leafPrev[leaf] = NONE;
    this.leafNext[leaf] = this.leafFree;
    this.leafFree = leaf;
  }

  /** Grows the leaf arrays by an eighth (at least 4 leaves): at most 12.5% of them ever idle. */
  private growLeaves(): void {
    const slots = this.leafSlots + Math.max(4, this.leafSlots >> 3);
    const buffer = new ArrayBuffer(slots * this.block * 8);
    // Copied as 32-bit words: the flags' bits must pass untouched.
    const words = grown(this.words, new Uint32Array(buffer));
    this.data = new Float64Array(buffer);
    this.words = words;
    this.leafCount = grown(this.leafCount, new Int32Array(slots));
    this.leafNext = grown(this.leafNext, new Int32Array(slots));
    this.leafPrev = grown(this.leafPrev, new Int32Array(slots));
    this.leafSlots = slots;
  }

  private allocateBranch(): number {
    let branch = this.branchFree;
    if (branch !== NONE) {
      this.branchFree = this.branchChild[branch * this.capacity]!;
    } else {
      if (this.branchTop === this.branchSlots) this.growBranches();
      branch = this.branchTop++;
    }
    this.branchCount[branch] = 0;
    return branch;
  }

  private freeBranch(branch: number): void {
    this.branchCount[branch] = 0;
    this.branchChild[branch * this.capacity] = this.branchFree;
    this.branchFree = branch;
  }

  private growBranches(): void {
    const slots = this.branchSlots + Math.max(2, this.branchSlots >> 3);
    const capacity = this.capacity;
    this.branchKeys = grown(this.branchKeys, new Float64Array(slots * capacity));
    this.branchChild = grown(this.branchChild, new Int32Array(slots * capacity));
    this.branchCount = grown(this.branchCount, new Int32Array(slots));
    this.branchSlots = slots;
  }
}

/** `larger` with `array` copied to its start. */
function grown<T extends Float64Array | Uint32Array | Int32Array>(array: T, larger: T): T {
  larger.set(array);
  return larger;
}
