/**
 * An ordered map from unsigned integer keys (64 or 128 bits, given as bigints) to values, on a
 * B+tree: O(log n) get, set, delete, floor and ceiling, and in-order iteration through linked
 * leaves. It backs the range sets, the IOVA allocator and the mapping records, which must stay
 * logarithmic with a million live entries.
 *
 * Why not compare bigints: each bigint is a heap object, so a search through a million keys chases
 * a pointer per comparison and misses the cache at every step. Here each node also keeps its keys
 * as 32-bit words in one array of plain numbers, which V8 stores unboxed and contiguous; searches
 * compare numbers only, and the bigint keys are touched only to return them.
 */

/** Default node capacity: entries per leaf and children per branch. */
const DEFAULT_ORDER = 64;
const WORD = 0x1_0000_0000;

interface Leaf<V> {
  readonly leaf: true;
  /** `width` 32-bit words per key, most significant first. */
  words: number[];
  keys: bigint[];
  values: V[];
  next: Leaf<V> | undefined;
}

interface Branch<V> {
  readonly leaf: false;
  /** Words of the smallest key under each child. */
  words: number[];
  keys: bigint[];
  children: Node<V>[];
}

type Node<V> = Leaf<V> | Branch<V>;

/** A key and its value, as the tree's navigation methods return them. */
export interface Entry<V> {
  /** The key: an address, or two 64-bit fields packed into 128 bits. */
  readonly key: bigint;
  /** The value stored under the key. */
  readonly value: V;
}

/** Key width: 64-bit keys (addresses) or 128-bit keys (two packed 64-bit fields). */
export type KeyBits = 64 | 128;

/** An ordered map from 64- or 128-bit bigint keys to values: a B+tree whose keys are stored as 32-bit words, so that a million live ranges cost tens of bytes each and every operation is O(log n). The container's record and the IOVA allocator are built on it. */
export class BTreeMap<V> {
  private root: Node<V>;
  private count = 0;
  private readonly width: number;
  private readonly maxNode: number;
  private readonly minNode: number;
  private readonly limit: bigint;
  /** The words of the key being searched for (reused: no allocation per call). */
  private readonly query: number[];

  /**
   * @param bits key width; keys must be in [0, 2^bits).
   * @param order node capacity (entries per leaf, children per branch), at least 4; tests use a
   *   small order to exercise deep trees.
   */
  constructor(bits: KeyBits = 64, order = DEFAULT_ORDER) {
    this.width = bits / 32;
    this.limit = 1n << BigInt(bits);
    this.query = new Array<number>(this.width).fill(0);
    this.maxNode = Math.max(4, Math.floor(order));
    this.minNode = this.maxNode >> 1;
    this.root = this.emptyLeaf();
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Removes every entry. */
  clear(): void {
    this.root = this.emptyLeaf();
    this.count = 0;
  }

  /** The value stored under `key`, or `undefined`. */
  get(key: bigint): V | undefined {
    this.load(key);
    const leaf = this.leafForQuery();
    const index = this.lowerBound(leaf.words, leaf.keys.length);
    return index < leaf.keys.length && this.compareAt(leaf.words, index) === 0 ? leaf.values[index] : undefined;
  }

  /** True when `key` is present. */
  has(key: bigint): boolean {
    this.load(key);
    const leaf = this.leafForQuery();
    const index = this.lowerBound(leaf.words, leaf.keys.length);
    return index < leaf.keys.length && this.compareAt(leaf.words, index) === 0;
  }

  /** Stores `value` under `key`, replacing any previous value. */
  set(key: bigint, value: V): this {
    this.load(key);
    const split = this.insert(this.root, key, value);
    if (split !== undefined) {
      const root = this.root;
      this.root = {
        leaf: false,
        words: [...root.words.slice(0, this.width), ...split.words.slice(0, this.width)],
        keys: [root.keys[0]!, split.keys[0]!],
        children: [root, split],
      };
    }
    return this;
  }

  /** Removes `key`; returns whether it was present. */
  delete(key: bigint): boolean {
    this.load(key);
    const removed = this.remove(this.root);
    if (removed && !this.root.leaf && this.root.children.length === 1) this.root = this.root.children[0]!;
    return removed;
  }

  /** The entry with the greatest key `<= key`, or `undefined`. */
  floor(key: bigint): Entry<V> | undefined {
    this.load(key);
    let node = this.root;
    while (!node.leaf) {
      const index = this.upperBound(node.words, node.keys.length) - 1;
      if (index < 0) return undefined;
      node = node.children[index]!;
    }
    const index = this.upperBound(node.words, node.keys.length) - 1;
    return index < 0 ? undefined : { key: node.keys[index]!, value: node.values[index]! };
  }

  /** The entry with the smallest key `>= key`, or `undefined`. */
  ceiling(key: bigint): Entry<V> | undefined {
    this.load(key);
    const leaf = this.leafForQuery();
    return this.entryAtOrNext(leaf, this.lowerBound(leaf.words, leaf.keys.length));
  }

  /** The entry with the smallest key `> key`, or `undefined`. */
  higher(key: bigint): Entry<V> | undefined {
    this.load(key);
    const leaf = this.leafForQuery();
    return this.entryAtOrNext(leaf, this.upperBound(leaf.words, leaf.keys.length));
  }

  /** The entry with the smallest key, or `undefined` when empty. */
  first(): Entry<V> | undefined {
    const leaf = this.firstLeaf();
    return leaf.keys.length === 0 ? undefined : { key: leaf.keys[0]!, value: leaf.values[0]! };
  }

  /** The entry with the greatest key, or `undefined` when empty. */
  last(): Entry<V> | undefined {
    let node = this.root;
    while (!node.leaf) node = node.children[node.children.length - 1]!;
    const index = node.keys.length - 1;
    return index < 0 ? undefined : { key: node.keys[index]!, value: node.values[index]! };
  }

  /**
   * Visits entries in key order, starting at the first key `>= from` (or the first key), until
   * `visit` returns `false`. `visit` must not modify the tree.
   */
  forEachFrom(from: bigint | undefined, visit: (key: bigint, value: V) => boolean | void): void {
    let leaf: Leaf<V> | undefined;
    let index: number;
    if (from === undefined) {
      leaf = this.firstLeaf();
      index = 0;
    } else {
      this.load(from);
      leaf = this.leafForQuery();
      index = this.lowerBound(leaf.words, leaf.keys.length);
    }
    while (leaf !== undefined) {
      const { keys, values } = leaf;
      for (; index < keys.length; index++) {
        if (visit(keys[index]!, values[index]!) === false) return;
      }
      leaf = leaf.next;
      index = 0;
    }
  }

  /** Every entry in key order. Do not modify the tree while iterating. */
  *entries(): IterableIterator<[bigint, V]> {
    for (let leaf: Leaf<V> | undefined = this.firstLeaf(); leaf !== undefined; leaf = leaf.next) {
      for (let index = 0; index < leaf.keys.length; index++) yield [leaf.keys[index]!, leaf.values[index]!];
    }
  }

  /** Every value in key order. */
  *values(): IterableIterator<V> {
    for (let leaf: Leaf<V> | undefined = this.firstLeaf(); leaf !== undefined; leaf = leaf.next) yield* leaf.values;
  }

  /** Iterates over `[key, value]` pairs in key order. */
  [Symbol.iterator](): IterableIterator<[bigint, V]> {
    return this.entries();
  }

  private emptyLeaf(): Leaf<V> {
    return { leaf: true, words: [], keys: [], values: [], next: undefined };
  }

  private firstLeaf(): Leaf<V> {
    let node = this.root;
    while (!node.leaf) node = node.children[0]!;
    return node;
  }

  private entryAtOrNext(leaf: Leaf<V>, index: number): Entry<V> | undefined {
    if (index < leaf.keys.length) return { key: leaf.keys[index]!, value: leaf.values[index]! };
    const next = leaf.next;
    return next === undefined ? undefined : { key: next.keys[0]!, value: next.values[0]! };
  }

  /** Splits `key` into 32-bit words in `this.query`, most significant first. */
  private load(key: bigint): void {
    if (key < 0n || key >= this.limit) throw new RangeError(`B-tree key ${key} is outside [0, ${this.limit})`);
    if (this.width === 2) {
      this.loadHalf(key, 0);
    } else {
      this.loadHalf(key >> 64n, 0);
      this.loadHalf(key & 0xffff_ffff_ffff_ffffn, 2);
    }
  }

  /** Writes a 64-bit value as two words at `this.query[at]`. */
  private loadHalf(value: bigint, at: number): void {
    const query = this.query;
    if (value < 0x20_0000_0000_0000n) {
      // Below 2^53 the number conversion is exact and avoids bigint arithmetic.
      const number = Number(value);
      const high = Math.floor(number / WORD);
      query[at] = high;
      query[at + 1] = number - high * WORD;
    } else {
      query[at] = Number(value >> 32n);
      query[at + 1] = Number(value & 0xffff_ffffn);
    }
  }

  /** Compares the key at `index` of `words` with the query: negative, zero or positive. */
  private compareAt(words: number[], index: number): number {
    const query = this.query;
    let offset = index * this.width;
    for (let word = 0; word < this.width; word++, offset++) {
      const stored = words[offset]!;
      const wanted = query[word]!;
      if (stored !== wanted) return stored < wanted ? -1 : 1;
    }
    return 0;
  }

  private leafForQuery(): Leaf<V> {
    let node = this.root;
    while (!node.leaf) {
      const index = this.upperBound(node.words, node.keys.length) - 1;
      node = node.children[index < 0 ? 0 : index]!;
    }
    return node;
  }

  /** First index whose key is `>=` the query. */
  private lowerBound(words: number[], length: number): number {
    return this.bound(words, length, false);
  }

  /** First index whose key is `>` the query. */
  private upperBound(words: number[], length: number): number {
    return this.bound(words, length, true);
  }

  /** First index whose key is past the query: `>` it when `inclusive`, else `>=` it. */
  private bound(words: number[], length: number, inclusive: boolean): number {
    let low = 0;
    let high = length;
    if (this.width === 2) {
      // The common 64-bit case, with the two-word comparison written out (about twice as fast).
      const high0 = this.query[0]!;
      const low0 = this.query[1]!;
      while (low < high) {
        const middle = (low + high) >>> 1;
        const word = words[middle * 2]!;
        const second = words[middle * 2 + 1]!;
        if (word < high0 || (word === high0 && (second < low0 || (inclusive && second === low0)))) low = middle + 1;
        else high = middle;
      }
      return low;
    }
    while (low < high) {
      const middle = (low + high) >>> 1;
      const order = this.compareAt(words, middle);
      if (order < 0 || (inclusive && order === 0)) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Inserts the query key under `node`; returns a new right sibling when `node` had to split. */
  private insert(node: Node<V>, key: bigint, value: V): Node<V> | undefined {
    const width = this.width;
    if (node.leaf) {
      const index = this.lowerBound(node.words, node.keys.length);
      if (index < node.keys.length && this.compareAt(node.words, index) === 0) {
        node.values[index] = value;
        return undefined;
      }
      if (width === 2) node.words.splice(index * 2, 0, this.query[0]!, this.query[1]!);
      else node.words.splice(index * width, 0, ...this.query);
      node.keys.splice(index, 0, key);
      node.values.splice(index, 0, value);
      this.count++;
      if (node.keys.length <= this.maxNode) return undefined;
      // Appending past the last key of the last leaf (ascending inserts: a VMM mapping guest RAM in
      // order) leaves the full leaf full and starts a new one; a half split would leave every leaf
      // half empty for good.
      const half = index === node.keys.length - 1 && node.next === undefined ? node.keys.length - 1 : node.keys.length >> 1;
      const sibling: Leaf<V> = {
        leaf: true,
        words: node.words.splice(half * width),
        keys: node.keys.splice(half),
        values: node.values.splice(half),
        next: node.next,
      };
      node.next = sibling;
      return sibling;
    }
    let index = this.upperBound(node.words, node.keys.length) - 1;
    if (index < 0) index = 0;
    const child = node.children[index]!;
    const split = this.insert(child, key, value);
    this.refreshSeparator(node, index);
    if (split === undefined) return undefined;
    node.words.splice((index + 1) * width, 0, ...split.words.slice(0, width));
    node.keys.splice(index + 1, 0, split.keys[0]!);
    node.children.splice(index + 1, 0, split);
    if (node.children.length <= this.maxNode) return undefined;
    // Appending (the new leaf at the right edge): keep this branch nearly full, as for leaves, but
    // give the new branch two children. With one, its leaf could empty with no sibling to merge
    // into, and floor() and last() would stop at the empty leaf (they do not step back).
    const half = index + 1 === node.children.length - 1 && split.keys.length === 1 ? node.children.length - 2 : node.children.length >> 1;
    return { leaf: false, words: node.words.splice(half * width), keys: node.keys.splice(half), children: node.children.splice(half) };
  }

  /** Removes the query key under `node`, rebalancing children that fall below half full. */
  private remove(node: Node<V>): boolean {
    if (node.leaf) {
      const index = this.lowerBound(node.words, node.keys.length);
      if (index >= node.keys.length || this.compareAt(node.words, index) !== 0) return false;
      node.words.splice(index * this.width, this.width);
      node.keys.splice(index, 1);
      node.values.splice(index, 1);
      this.count--;
      return true;
    }
    const index = this.upperBound(node.words, node.keys.length) - 1;
    if (index < 0) return false;
    const child = node.children[index]!;
    if (!this.remove(child)) return false;
    const length = child.leaf ? child.keys.length : child.children.length;
    if (length < this.minNode && node.children.length > 1) this.rebalance(node, index);
    else this.refreshSeparator(node, index);
    return true;
  }

  /** Copies the smallest key of `parent.children[index]` into the parent's separator. */
  private refreshSeparator(parent: Branch<V>, index: number): void {
    const child = parent.children[index]!;
    if (child.keys.length === 0) return;
    const width = this.width;
    parent.keys[index] = child.keys[0]!;
    for (let word = 0; word < width; word++) parent.words[index * width + word] = child.words[word]!;
  }

  /** Refills `parent.children[index]` from a sibling, or merges the two when both are small. */
  private rebalance(parent: Branch<V>, index: number): void {
    const width = this.width;
    const leftIndex = index > 0 ? index - 1 : index;
    const left = parent.children[leftIndex]!;
    const right = parent.children[leftIndex + 1]!;
    const leftLength = left.leaf ? left.keys.length : left.children.length;
    const rightLength = right.leaf ? right.keys.length : right.children.length;
    if (leftLength + rightLength <= this.maxNode) {
      left.words.push(...right.words);
      left.keys.push(...right.keys);
      if (left.leaf && right.leaf) {
        left.values.push(...right.values);
        left.next = right.next;
      } else if (!left.leaf && !right.leaf) {
        left.children.push(...right.children);
      }
      parent.words.splice((leftIndex + 1) * width, width);
      parent.keys.splice(leftIndex + 1, 1);
      parent.children.splice(leftIndex + 1, 1);
    } else if (leftLength > rightLength) {
      right.words.unshift(...left.words.splice((leftLength - 1) * width, width));
      right.keys.unshift(left.keys.pop()!);
      if (left.leaf && right.leaf) right.values.unshift(left.values.pop()!);
      else if (!left.leaf && !right.leaf) right.children.unshift(left.children.pop()!);
    } else {
      left.words.push(...right.words.splice(0, width));
      left.keys.push(right.keys.shift()!);
      if (left.leaf && right.leaf) left.values.push(right.values.shift()!);
      else if (!left.leaf && !right.leaf) left.children.push(right.children.shift()!);
    }
    for (let i = leftIndex; i <= leftIndex + 1 && i < parent.children.length; i++) this.refreshSeparator(parent, i);
  }
}
