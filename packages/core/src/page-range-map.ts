/**
 * An ordered map of disjoint inclusive integer ranges `[start, last]` to two numbers, `value` and
 * `flags`: the record a simulator or an SDK keeps of a million live DMA mappings, keyed by page
 * number.
 *
 * Why not {@link BTreeMap}: it keeps a bigint key and a value object per entry (150+ bytes each
 * with the object) and hands out an entry object per lookup. Here the entries live in typed
 * arrays, one fixed-capacity block per leaf: `start`, `last` and `value` as doubles (exact for
 * integers below 2^53), `flags` as a uint32; 28 bytes a slot, and no JS object, bigint or closure
 * per entry or per call. Shifts within a node are `copyWithin`; lookups report through the
 * `found*` fields instead of returning an object.
 *
 * Separators in the branches are lower bounds, not the exact smallest key: a delete never walks
 * back up to refresh them, and the leaves are linked both ways so that `floor` can step to the
 * previous leaf when its key sorts before the first entry of the leaf the descent reached.
 */

/** Default node capacity. */
const DEFAULT_ORDER = 64;
/** Deepest tree the path buffers hold: far beyond 2^53 entries at the minimum order. */
const MAX_DEPTH = 64;

/** A leaf: `count` entries, `start,last,value` interleaved in `data`, flags in `flags`. */
class Leaf {
  count = 0;
  next: Leaf | null = null;
  prev: Leaf | null = null;
  /** `[start0, last0, value0, start1, ...]`, `3 * capacity` doubles. */
  readonly data: Float64Array;
  /** One uint32 per entry. */
  readonly flags: Uint32Array;

  constructor(capacity: number) {
    // One buffer for both views: one backing store per leaf instead of two.
    const buffer = new ArrayBuffer(capacity * 28);
    this.data = new Float64Array(buffer, 0, capacity * 3);
    this.flags = new Uint32Array(buffer, capacity * 24, capacity);
  }
}

/**
 * A branch: `count` children; `keys[i]` (for `i >= 1`) is a lower bound of every key under
 * `children[i]` and greater than every key under `children[i - 1]`. `keys[0]` is not used for
 * searches.
 */
class Branch {
  count = 0;
  readonly keys: Float64Array;
  readonly children: (Leaf | Branch | null)[];

  constructor(capacity: number) {
    this.keys = new Float64Array(capacity);
    this.children = new Array<Leaf | Branch | null>(capacity).fill(null);
  }
}

type Node = Leaf | Branch;

/** An ordered map of disjoint inclusive integer ranges `[start, last]` to a `value` (integer below 2^53) and `flags` (uint32), on a B+tree whose nodes are typed arrays: about 30-40 bytes an entry, no allocation per operation, O(log n) each. */
export class PageRangeMap {
  /** Start of the entry found by the last successful `floor`, `ceiling`, `get`, `overlaps` or `last`. */
  foundStart = 0;
  /** Last (inclusive) of the entry found by the last successful lookup. */
  foundLast = 0;
  /** Value of the entry found by the last successful lookup. */
  foundValue = 0;
  /** Flags of the entry found by the last successful lookup. */
  foundFlags = 0;

  private readonly capacity: number;
  private readonly minimum: number;
  private root: Node;
  /** Number of branch levels above the leaves. */
  private height = 0;
  private count = 0;
  /** The branches of the last descent, root first, and the child index taken in each. */
  private readonly pathNodes: (Branch | null)[] = new Array<Branch | null>(MAX_DEPTH).fill(null);
  private readonly pathIndex = new Int32Array(MAX_DEPTH);

  /**
   * @param order node capacity (entries per leaf, children per branch), at least 4; tests use small
   *   orders to exercise deep trees.
   */
  constructor(order = DEFAULT_ORDER) {
    this.capacity = Math.max(4, Math.floor(order));
    this.minimum = this.capacity >> 1;
    this.root = new Leaf(this.capacity);
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Removes every entry. */
  clear(): void {
    this.root = new Leaf(this.capacity);
    this.height = 0;
    this.count = 0;
    this.pathNodes.fill(null);
  }

  /** Entry with the greatest start `<= key`; true and sets `found*` when there is one. */
  floor(key: number): boolean {
    const leaf = this.descend(key);
    const index = upperBound(leaf, key) - 1;
    if (index >= 0) return this.found(leaf, index);
    const prev = leaf.prev;
    return prev !== null && prev.count > 0 ? this.found(prev, prev.count - 1) : false;
  }

  /** Entry with the smallest start `>= key`; true and sets `found*` when there is one. */
  ceiling(key: number): boolean {
    const leaf = this.descend(key);
    const index = lowerBound(leaf, key);
    if (index < leaf.count) return this.found(leaf, index);
    const next = leaf.next;
    return next !== null && next.count > 0 ? this.found(next, 0) : false;
  }

  /** Entry whose start is exactly `start`; true and sets `found*` when there is one. */
  get(start: number): boolean {
    const leaf = this.descend(start);
    const index = lowerBound(leaf, start);
    return index < leaf.count && leaf.data[index * 3] === start ? this.found(leaf, index) : false;
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
    for (let level = this.height; level > 0; level--) {
      const branch = node as Branch;
      node = branch.children[branch.count - 1]!;
    }
    const leaf = node as Leaf;
    return leaf.count > 0 ? this.found(leaf, leaf.count - 1) : false;
  }

  /** Changes the flags of the entry starting at `start`; false when there is none. */
  setFlags(start: number, flags: number): boolean {
    const leaf = this.descend(start);
    const index = lowerBound(leaf, start);
    if (index >= leaf.count || leaf.data[index * 3] !== start) return false;
    leaf.flags[index] = flags;
    return true;
  }

  /**
   * Inserts `[start, last]` with `value` and `flags`, or replaces the entry with the same start.
   * The caller guarantees that the ranges stay disjoint, `0 <= start <= last < 2^53` integers.
   */
  set(start: number, last: number, value: number, flags: number): void {
    const leaf = this.descend(start);
    const index = lowerBound(leaf, start);
    if (index < leaf.count && leaf.data[index * 3] === start) {
      writeEntry(leaf, index, start, last, value, flags);
      return;
    }
    this.count++;
    if (leaf.count < this.capacity) {
      insertAt(leaf, index, start, last, value, flags);
      return;
    }
    this.insertIntoFull(leaf, index, start, last, value, flags);
  }

  /** Removes the entry starting at `start`; false when there is none. */
  delete(start: number): boolean {
    const leaf = this.descend(start);
    const index = lowerBound(leaf, start);
    if (index >= leaf.count || leaf.data[index * 3] !== start) return false;
    removeAt(leaf, index);
    this.count--;
    if (leaf.count < this.minimum && this.height > 0) this.rebalanceUp(leaf);
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
    let leaf: Leaf | null = this.descend(from);
    let index = lowerBound(leaf, from);
    if (fromContaining && !(index < leaf.count && leaf.data[index * 3] === from)) {
      // The entry before the first start >= from contains `from` when its last reaches it.
      if (index > 0) {
        if (leaf.data[(index - 1) * 3 + 1]! >= from) index--;
      } else {
        const prev = leaf.prev;
        if (prev !== null && prev.count > 0 && prev.data[(prev.count - 1) * 3 + 1]! >= from) {
          leaf = prev;
          index = prev.count - 1;
        }
      }
    }
    while (leaf !== null) {
      const { data, flags } = leaf;
      for (; index < leaf.count; index++) {
        const at = index * 3;
        if (visit(data[at]!, data[at + 1]!, data[at + 2]!, flags[index]!) === false) return;
      }
      leaf = leaf.next;
      index = 0;
    }
  }

  private found(leaf: Leaf, index: number): true {
    const data = leaf.data;
    const at = index * 3;
    this.foundStart = data[at]!;
    this.foundLast = data[at + 1]!;
    this.foundValue = data[at + 2]!;
    this.foundFlags = leaf.flags[index]!;
    return true;
  }

  /** Walks from the root to the leaf where `key` belongs, recording the path. */
  private descend(key: number): Leaf {
    let node = this.root;
    const nodes = this.pathNodes;
    const indexes = this.pathIndex;
    for (let depth = 0; depth < this.height; depth++) {
      const branch = node as Branch;
      // Largest i >= 1 with keys[i] <= key, else 0.
      const keys = branch.keys;
      let low = 1;
      let high = branch.count;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (keys[middle]! <= key) low = middle + 1;
        else high = middle;
      }
      nodes[depth] = branch;
      indexes[depth] = low - 1;
      node = branch.children[low - 1]!;
    }
    return node as Leaf;
  }

  /** Inserts into a full leaf: append past the end, spill to a sibling with room, or split. */
  private insertIntoFull(leaf: Leaf, index: number, start: number, last: number, value: number, flags: number): void {
    const capacity = this.capacity;
    const depth = this.height - 1;
    if (index === capacity && leaf.next === null) {
      // Ascending appends (a VMM mapping guest RAM in order) start a new leaf and leave this one
      // full: a half split would leave every leaf half empty for good.
      const sibling = new Leaf(capacity);
      insertAt(sibling, 0, start, last, value, flags);
      this.linkAfter(leaf, sibling);
      this.insertChild(depth, start, sibling, true);
      return;
    }
    if (depth >= 0) {
      const parent = this.pathNodes[depth]!;
      const at = this.pathIndex[depth]!;
      if (at + 1 < parent.count) {
        const right = parent.children[at + 1] as Leaf;
        const room = capacity - right.count;
        if (room >= 2) {
          // Spill the last entries to the right sibling; both then have room.
          const moved = room >> 1;
          const keep = capacity - moved;
          shiftRight(right, 0, moved);
          copyEntries(leaf, keep, right, 0, moved);
          leaf.count = keep;
          if (index <= keep) insertAt(leaf, index, start, last, value, flags);
          else insertAt(right, index - keep, start, last, value, flags);
          parent.keys[at + 1] = right.data[0]!;
          return;
        }
      }
      if (at > 0) {
        const left = parent.children[at - 1] as Leaf;
        const room = capacity - left.count;
        if (room >= 2) {
          const moved = room >> 1;
          copyEntries(leaf, 0, left, left.count, moved);
          left.count += moved;
          shiftLeft(leaf, moved, moved);
          if (index < moved) insertAt(left, left.count - moved + index, start, last, value, flags);
          else insertAt(leaf, index - moved, start, last, value, flags);
          parent.keys[at] = leaf.data[0]!;
          return;
        }
      }
    }
    const half = capacity >> 1;
    const sibling = new Leaf(capacity);
    copyEntries(leaf, half, sibling, 0, capacity - half);
    sibling.count = capacity - half;
    leaf.count = half;
    if (index <= half) insertAt(leaf, index, start, last, value, flags);
    else insertAt(sibling, index - half, start, last, value, flags);
    this.linkAfter(leaf, sibling);
    this.insertChild(depth, sibling.data[0]!, sibling, false);
  }

  private linkAfter(leaf: Leaf, sibling: Leaf): void {
    sibling.next = leaf.next;
    sibling.prev = leaf;
    if (leaf.next !== null) leaf.next.prev = sibling;
    leaf.next = sibling;
  }

  /**
   * Inserts `child` (lower bound `key`) after the path's child at `depth`, splitting branches
   * upwards as needed; `appending` when the child is a new last node of the tree.
   */
  private insertChild(depth: number, key: number, child: Node, appending: boolean): void {
    const capacity = this.capacity;
    for (; depth >= 0; depth--) {
      const branch = this.pathNodes[depth]!;
      const at = this.pathIndex[depth]! + 1;
      if (branch.count < capacity) {
        branchInsert(branch, at, key, child);
        return;
      }
      const sibling = new Branch(capacity);
      if (appending && at === capacity) {
        // Appending: the new branch takes the last child and the new one, the full one stays
        // nearly full (every branch keeps at least two children, so every node has a sibling).
        branchMove(branch, capacity - 1, sibling, 0, 1);
        branch.count = capacity - 1;
        sibling.count = 1;
        branchInsert(sibling, 1, key, child);
      } else {
        appending = false;
        // capacity + 1 children: the left keeps `half`.
        const half = (capacity + 1) >> 1;
        if (at < half) {
          branchMove(branch, half - 1, sibling, 0, capacity - half + 1);
          branch.count = half - 1;
          sibling.count = capacity - half + 1;
          branchInsert(branch, at, key, child);
        } else {
          branchMove(branch, half, sibling, 0, capacity - half);
          branch.count = half;
          sibling.count = capacity - half;
          branchInsert(sibling, at - half, key, child);
        }
      }
      key = sibling.keys[0]!;
      child = sibling;
    }
    const root = new Branch(capacity);
    root.keys[0] = 0;
    root.children[0] = this.root;
    root.keys[1] = key;
    root.children[1] = child;
    root.count = 2;
    this.root = root;
    this.height++;
  }

  /** Refills or merges nodes below half full, from `leaf` up along the last descent's path. */
  private rebalanceUp(leaf: Leaf): void {
    const capacity = this.capacity;
    let depth = this.height - 1;
    // The leaf level.
    {
      const parent = this.pathNodes[depth]!;
      const at = this.pathIndex[depth]!;
      const li = at > 0 ? at - 1 : 0;
      const left = parent.children[li] as Leaf;
      const right = parent.children[li + 1] as Leaf;
      if (left.count + right.count <= capacity) {
        copyEntries(right, 0, left, left.count, right.count);
        left.count += right.count;
        right.count = 0;
        left.next = right.next;
        if (right.next !== null) right.next.prev = left;
        right.next = right.prev = null;
        branchRemove(parent, li + 1);
      } else {
        const target = (left.count + right.count) >> 1;
        if (left.count > target) {
          const moved = left.count - target;
          shiftRight(right, 0, moved);
          copyEntries(left, target, right, 0, moved);
          left.count = target;
        } else {
          const moved = target - left.count;
          copyEntries(right, 0, left, left.count, moved);
          left.count = target;
          shiftLeft(right, moved, moved);
        }
        parent.keys[li + 1] = right.data[0]!;
        return;
      }
    }
    // The branch levels.
    for (depth--; depth >= 0; depth--) {
      const node = this.pathNodes[depth + 1]!;
      if (node.count >= this.minimum) break;
      const parent = this.pathNodes[depth]!;
      const at = this.pathIndex[depth]!;
      const li = at > 0 ? at - 1 : 0;
      const left = parent.children[li] as Branch;
      const right = parent.children[li + 1] as Branch;
      const separator = parent.keys[li + 1]!;
      if (left.count + right.count <= capacity) {
        const base = left.count;
        branchMove(right, 0, left, base, right.count);
        left.keys[base] = separator;
        left.count = base + right.count;
        right.count = 0;
        branchRemove(parent, li + 1);
      } else {
        const target = (left.count + right.count) >> 1;
        if (left.count > target) {
          const moved = left.count - target;
          right.keys.copyWithin(moved, 0, right.count);
          right.children.copyWithin(moved, 0, right.count);
          right.keys[moved] = separator;
          branchMove(left, target, right, 0, moved);
          right.count += moved;
          left.count = target;
          parent.keys[li + 1] = right.keys[0]!;
        } else {
          const moved = target - left.count;
          const base = left.count;
          branchMove(right, 0, left, base, moved);
          left.keys[base] = separator;
          left.count = target;
          parent.keys[li + 1] = right.keys[moved]!;
          right.keys.copyWithin(0, moved, right.count);
          right.children.copyWithin(0, moved, right.count);
          right.children.fill(null, right.count - moved, right.count);
          right.count -= moved;
        }
        return;
      }
    }
    // A root branch left with one child gives way to it.
    while (this.height > 0 && (this.root as Branch).count === 1) {
      const single = this.root as Branch;
      this.root = single.children[0]!;
      single.children[0] = null;
      this.height--;
    }
  }
}

/** First index whose start is `>= key`. */
function lowerBound(leaf: Leaf, key: number): number {
  const data = leaf.data;
  let low = 0;
  let high = leaf.count;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (data[middle * 3]! < key) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** First index whose start is `> key`. */
function upperBound(leaf: Leaf, key: number): number {
  const data = leaf.data;
  let low = 0;
  let high = leaf.count;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (data[middle * 3]! <= key) low = middle + 1;
    else high = middle;
  }
  return low;
}

function writeEntry(leaf: Leaf, index: number, start: number, last: number, value: number, flags: number): void {
  const data = leaf.data;
  const at = index * 3;
  data[at] = start;
  data[at + 1] = last;
  data[at + 2] = value;
  leaf.flags[index] = flags;
}

/** Inserts at `index` of a leaf with room. */
function insertAt(leaf: Leaf, index: number, start: number, last: number, value: number, flags: number): void {
  const count = leaf.count;
  if (index < count) {
    leaf.data.copyWithin(index * 3 + 3, index * 3, count * 3);
    leaf.flags.copyWithin(index + 1, index, count);
  }
  writeEntry(leaf, index, start, last, value, flags);
  leaf.count = count + 1;
}

function removeAt(leaf: Leaf, index: number): void {
  const count = leaf.count - 1;
  if (index < count) {
    leaf.data.copyWithin(index * 3, index * 3 + 3, count * 3 + 3);
    leaf.flags.copyWithin(index, index + 1, count + 1);
  }
  leaf.count = count;
}

/** Opens `by` slots at `index` (the count grows by `by`). */
function shiftRight(leaf: Leaf, index: number, by: number): void {
  const count = leaf.count;
  leaf.data.copyWithin((index + by) * 3, index * 3, count * 3);
  leaf.flags.copyWithin(index + by, index, count);
  leaf.count = count + by;
}

/** Drops the `by` entries before `index` (the count shrinks by `by`). */
function shiftLeft(leaf: Leaf, index: number, by: number): void {
  const count = leaf.count;
  leaf.data.copyWithin((index - by) * 3, index * 3, count * 3);
  leaf.flags.copyWithin(index - by, index, count);
  leaf.count = count - by;
}

/** Copies `length` entries between leaves (a loop: `subarray` would allocate); counts are the caller's. */
function copyEntries(from: Leaf, fromIndex: number, to: Leaf, toIndex: number, length: number): void {
  const source = from.data;
  const target = to.data;
  for (let i = fromIndex * 3, j = toIndex * 3, end = (fromIndex + length) * 3; i < end; i++, j++) target[j] = source[i]!;
  const sourceFlags = from.flags;
  const targetFlags = to.flags;
  for (let i = 0; i < length; i++) targetFlags[toIndex + i] = sourceFlags[fromIndex + i]!;
}

function branchInsert(branch: Branch, at: number, key: number, child: Node): void {
  const count = branch.count;
  if (at < count) {
    branch.keys.copyWithin(at + 1, at, count);
    branch.children.copyWithin(at + 1, at, count);
  }
  branch.keys[at] = key;
  branch.children[at] = child;
  branch.count = count + 1;
}

function branchRemove(branch: Branch, at: number): void {
  const count = branch.count - 1;
  branch.keys.copyWithin(at, at + 1, count + 1);
  branch.children.copyWithin(at, at + 1, count + 1);
  branch.children[count] = null;
  branch.count = count;
}

/** Moves `length` keys and children (the source's slots are cleared; counts are the caller's). */
function branchMove(from: Branch, fromIndex: number, to: Branch, toIndex: number, length: number): void {
  for (let i = 0; i < length; i++) {
    to.keys[toIndex + i] = from.keys[fromIndex + i]!;
    to.children[toIndex + i] = from.children[fromIndex + i]!;
    from.children[fromIndex + i] = null;
  }
}
