/**
 * An ordered map on a B+tree: O(log n) get, set, delete, floor and ceiling, and in-order iteration
 * through linked leaves. It backs the range sets, the IOVA allocator and the mapping records, which
 * must stay logarithmic with a million live entries; node arrays keep the per-entry overhead low.
 */

/** Default node capacity: entries per leaf and children per branch. */
const DEFAULT_ORDER = 64;

/** Orders two keys: negative, zero or positive, like `Array.prototype.sort`'s comparator. */
export type Comparator<K> = (a: K, b: K) => number;

/** Compares bigints (or numbers) in ascending order. */
export function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Leaf<K, V> {
  readonly leaf: true;
  keys: K[];
  values: V[];
  next: Leaf<K, V> | undefined;
}

interface Branch<K, V> {
  readonly leaf: false;
  /** `keys[i]` is the smallest key under `children[i]`. */
  keys: K[];
  children: Node<K, V>[];
}

type Node<K, V> = Leaf<K, V> | Branch<K, V>;

/** A key and its value, as the tree's navigation methods return them. */
export interface Entry<K, V> {
  readonly key: K;
  readonly value: V;
}

export class BTreeMap<K, V> {
  private root: Node<K, V> = { leaf: true, keys: [], values: [], next: undefined };
  private count = 0;

  private readonly maxNode: number;
  private readonly minNode: number;

  /**
   * @param compare the key order.
   * @param order node capacity (entries per leaf, children per branch), at least 4; tests use a
   *   small order to exercise deep trees.
   */
  constructor(
    private readonly compare: Comparator<K>,
    order = DEFAULT_ORDER,
  ) {
    this.maxNode = Math.max(4, Math.floor(order));
    this.minNode = this.maxNode >> 1;
  }

  /** Number of entries. */
  get size(): number {
    return this.count;
  }

  /** Removes every entry. */
  clear(): void {
    this.root = { leaf: true, keys: [], values: [], next: undefined };
    this.count = 0;
  }

  /** The value stored under `key`, or `undefined`. */
  get(key: K): V | undefined {
    const leaf = this.leafFor(key);
    const index = this.lowerBound(leaf.keys, key);
    return index < leaf.keys.length && this.compare(leaf.keys[index]!, key) === 0 ? leaf.values[index] : undefined;
  }

  /** True when `key` is present. */
  has(key: K): boolean {
    const leaf = this.leafFor(key);
    const index = this.lowerBound(leaf.keys, key);
    return index < leaf.keys.length && this.compare(leaf.keys[index]!, key) === 0;
  }

  /** Stores `value` under `key`, replacing any previous value. */
  set(key: K, value: V): this {
    const split = this.insert(this.root, key, value);
    if (split !== undefined) {
      this.root = { leaf: false, keys: [this.root.keys[0]!, split.keys[0]!], children: [this.root, split] };
    }
    return this;
  }

  /** Removes `key`; returns whether it was present. */
  delete(key: K): boolean {
    const removed = this.remove(this.root, key);
    if (removed && !this.root.leaf && this.root.children.length === 1) this.root = this.root.children[0]!;
    return removed;
  }

  /** The entry with the greatest key `<= key`, or `undefined`. */
  floor(key: K): Entry<K, V> | undefined {
    let node = this.root;
    while (!node.leaf) {
      const index = this.upperBound(node.keys, key) - 1;
      if (index < 0) return undefined;
      node = node.children[index]!;
    }
    const index = this.upperBound(node.keys, key) - 1;
    return index < 0 ? undefined : { key: node.keys[index]!, value: node.values[index]! };
  }

  /** The entry with the smallest key `>= key`, or `undefined`. */
  ceiling(key: K): Entry<K, V> | undefined {
    const leaf = this.leafFor(key);
    const index = this.lowerBound(leaf.keys, key);
    if (index < leaf.keys.length) return { key: leaf.keys[index]!, value: leaf.values[index]! };
    const next = leaf.next;
    return next === undefined ? undefined : { key: next.keys[0]!, value: next.values[0]! };
  }

  /** The entry with the smallest key `> key`, or `undefined`. */
  higher(key: K): Entry<K, V> | undefined {
    const leaf = this.leafFor(key);
    const index = this.upperBound(leaf.keys, key);
    if (index < leaf.keys.length) return { key: leaf.keys[index]!, value: leaf.values[index]! };
    const next = leaf.next;
    return next === undefined ? undefined : { key: next.keys[0]!, value: next.values[0]! };
  }

  /** The entry with the smallest key, or `undefined` when empty. */
  first(): Entry<K, V> | undefined {
    let node = this.root;
    while (!node.leaf) node = node.children[0]!;
    return node.keys.length === 0 ? undefined : { key: node.keys[0]!, value: node.values[0]! };
  }

  /** The entry with the greatest key, or `undefined` when empty. */
  last(): Entry<K, V> | undefined {
    let node = this.root;
    while (!node.leaf) node = node.children[node.children.length - 1]!;
    const index = node.keys.length - 1;
    return index < 0 ? undefined : { key: node.keys[index]!, value: node.values[index]! };
  }

  /**
   * Visits entries in key order, starting at the first key `>= from` (or the first key), until
   * `visit` returns `false`. Safe only if `visit` does not modify the tree.
   */
  forEachFrom(from: K | undefined, visit: (key: K, value: V) => boolean | void): void {
    let leaf: Leaf<K, V> | undefined;
    let index: number;
    if (from === undefined) {
      let node = this.root;
      while (!node.leaf) node = node.children[0]!;
      leaf = node;
      index = 0;
    } else {
      leaf = this.leafFor(from);
      index = this.lowerBound(leaf.keys, from);
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

  /** Every entry in key order (a snapshot-free iterator: do not modify the tree while iterating). */
  *entries(): IterableIterator<[K, V]> {
    let node = this.root;
    while (!node.leaf) node = node.children[0]!;
    for (let leaf: Leaf<K, V> | undefined = node; leaf !== undefined; leaf = leaf.next) {
      for (let index = 0; index < leaf.keys.length; index++) yield [leaf.keys[index]!, leaf.values[index]!];
    }
  }

  /** Every value in key order. */
  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  private leafFor(key: K): Leaf<K, V> {
    let node = this.root;
    while (!node.leaf) {
      const index = this.upperBound(node.keys, key) - 1;
      node = node.children[index < 0 ? 0 : index]!;
    }
    return node;
  }

  /** First index whose key is `>= key`. */
  private lowerBound(keys: K[], key: K): number {
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.compare(keys[middle]!, key) < 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** First index whose key is `> key`. */
  private upperBound(keys: K[], key: K): number {
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.compare(keys[middle]!, key) <= 0) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  /** Inserts under `node`; returns a new right sibling when `node` had to split. */
  private insert(node: Node<K, V>, key: K, value: V): Node<K, V> | undefined {
    if (node.leaf) {
      const index = this.lowerBound(node.keys, key);
      if (index < node.keys.length && this.compare(node.keys[index]!, key) === 0) {
        node.values[index] = value;
        return undefined;
      }
      node.keys.splice(index, 0, key);
      node.values.splice(index, 0, value);
      this.count++;
      if (node.keys.length <= this.maxNode) return undefined;
      const half = node.keys.length >> 1;
      const sibling: Leaf<K, V> = {
        leaf: true,
        keys: node.keys.splice(half),
        values: node.values.splice(half),
        next: node.next,
      };
      node.next = sibling;
      return sibling;
    }
    let index = this.upperBound(node.keys, key) - 1;
    if (index < 0) index = 0;
    const child = node.children[index]!;
    const split = this.insert(child, key, value);
    node.keys[index] = child.keys[0]!;
    if (split === undefined) return undefined;
    node.keys.splice(index + 1, 0, split.keys[0]!);
    node.children.splice(index + 1, 0, split);
    if (node.children.length <= this.maxNode) return undefined;
    const half = node.children.length >> 1;
    return { leaf: false, keys: node.keys.splice(half), children: node.children.splice(half) };
  }

  /** Removes `key` under `node`, rebalancing children that fall below half full. */
  private remove(node: Node<K, V>, key: K): boolean {
    if (node.leaf) {
      const index = this.lowerBound(node.keys, key);
      if (index >= node.keys.length || this.compare(node.keys[index]!, key) !== 0) return false;
      node.keys.splice(index, 1);
      node.values.splice(index, 1);
      this.count--;
      return true;
    }
    const index = this.upperBound(node.keys, key) - 1;
    if (index < 0) return false;
    const child = node.children[index]!;
    if (!this.remove(child, key)) return false;
    const minimum = this.minNode;
    const length = child.leaf ? child.keys.length : child.children.length;
    if (length < minimum && node.children.length > 1) this.rebalance(node, index);
    else if (child.keys.length > 0) node.keys[index] = child.keys[0]!;
    return true;
  }

  /** Refills `parent.children[index]` from a sibling, or merges the two when both are small. */
  private rebalance(parent: Branch<K, V>, index: number): void {
    const leftIndex = index > 0 ? index - 1 : index;
    const left = parent.children[leftIndex]!;
    const right = parent.children[leftIndex + 1]!;
    if (left.leaf && right.leaf) {
      if (left.keys.length + right.keys.length <= this.maxNode) {
        left.keys.push(...right.keys);
        left.values.push(...right.values);
        left.next = right.next;
        parent.keys.splice(leftIndex + 1, 1);
        parent.children.splice(leftIndex + 1, 1);
      } else if (left.keys.length > right.keys.length) {
        right.keys.unshift(left.keys.pop()!);
        right.values.unshift(left.values.pop()!);
      } else {
        left.keys.push(right.keys.shift()!);
        left.values.push(right.values.shift()!);
      }
    } else if (!left.leaf && !right.leaf) {
      if (left.children.length + right.children.length <= this.maxNode) {
        left.keys.push(...right.keys);
        left.children.push(...right.children);
        parent.keys.splice(leftIndex + 1, 1);
        parent.children.splice(leftIndex + 1, 1);
      } else if (left.children.length > right.children.length) {
        right.keys.unshift(left.keys.pop()!);
        right.children.unshift(left.children.pop()!);
      } else {
        left.keys.push(right.keys.shift()!);
        left.children.push(right.children.shift()!);
      }
    }
    // Refresh the separator keys of the one or two children that remain.
    for (let i = leftIndex; i <= leftIndex + 1 && i < parent.children.length; i++) {
      const child = parent.children[i]!;
      if (child.keys.length > 0) parent.keys[i] = child.keys[0]!;
    }
  }
}
