import { accessOf } from './container-input.js';
import { IoasError } from './errors.js';
import { hex } from './format.js';
import type { IovaRange } from './iova-range.js';
import { PageRangeMap } from './page-range-map.js';
import type { Access, HostMemory, Mapping } from './types.js';

/**
 * A container's record of its live mappings: what it believes the IOMMU holds. Mappings live in a
 * {@link PageRangeMap} keyed by 4 KiB page number, with no object or bigint per mapping (a VMM may
 * keep a million); {@link Mapping} objects are built only when asked for. Every IOVA and host
 * address in the table is a multiple of 4 KiB: the container's granule is never smaller (the
 * kernel's IO page size is never below the host page size).
 */

const PAGE = 4096;
const PAGE_SHIFT = 12n;
const SMALL_PAGE = 2 ** 41;

const READ = 1;
const WRITE = 2;
/** The mapping took its IOVA from free space, not from a user allocation. */
const OWNS = 4;
/** ... and that IOVA has not been taken out of the allocator yet (see {@link MappingTable.takePending}). */
const PENDING = 8;
/** Set only while {@link MappingTable.compactPending} runs: the start is listed already. */
const LISTED = 16;
/** Bits 8-15: log2 of `contiguousPageSize` plus one; 0 when absent or not a power of two. */
const PAGE_SIZE_SHIFT = 8;


/** Where a new mapping's IOVA comes from, for the allocator's book-keeping. */
export type IovaOwnership = 'allocation' | 'owned' | 'pending';

/** A mapping and whether it owns its IOVA. */
export interface TableEntry {
  readonly mapping: Mapping;
  readonly ownsIova: boolean;
}

/**
 * A bigint's two 32-bit halves, read through a typed array: three times cheaper than `Number()` of
 * a bigint (which is a runtime call in V8), and exact for every 64-bit value.
 */
const WIDE = new BigUint64Array(1);
const HALVES = new Uint32Array(WIDE.buffer);
const LOW = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 0 : 1;
const HIGH = 1 - LOW;

/** The 4 KiB page holding `address`, for `0 <= address < 2^64`. */
export function pageOf(address: bigint): number {
  WIDE[0] = address;
  return HALVES[HIGH]! * 0x10_0000 + (HALVES[LOW]! >>> 12);
}

/** The page number of `value` when it is a multiple of 4 KiB (`0 <= value < 2^64`), else -1. */
export function wholePage(value: bigint): number {
  WIDE[0] = value;
  const low = HALVES[LOW]!;
  return (low & 0xfff) === 0 ? HALVES[HIGH]! * 0x10_0000 + (low >>> 12) : -1;
}

/** The address of the first byte of `page`. */
export function pageAddress(page: number): bigint {
  return page < SMALL_PAGE ? BigInt(page * PAGE) : BigInt(page) << PAGE_SHIFT;
}

/**
 * The pages of `range` when it is made of whole 4 KiB pages, in `out` (`[startPage, lastPage]`);
 * false otherwise.
 */
export function wholePages(range: IovaRange, out: Float64Array): boolean {
  WIDE[0] = range.start;
  const startLow = HALVES[LOW]!;
  if ((startLow & 0xfff) !== 0) return false;
  out[0] = HALVES[HIGH]! * 0x10_0000 + (startLow >>> 12);
  WIDE[0] = range.last;
  const lastLow = HALVES[LOW]!;
  if ((lastLow & 0xfff) !== 0xfff) return false;
  out[1] = HALVES[HIGH]! * 0x10_0000 + (lastLow >>> 12);
  return true;
}

/**
 * The flags a mapping is stored with: its access (from {@link accessFlags}), whether it owns its
 * IOVA and whether that IOVA is still pending, and its contiguous page size when a power of two.
 */
export function mappingFlags(access: number, ownership: IovaOwnership, contiguousPageSize: bigint | undefined): number {
  let flags = access;
  if (ownership !== 'allocation') flags |= OWNS;
  if (ownership === 'pending') flags |= PENDING;
  if (contiguousPageSize !== undefined && (contiguousPageSize & (contiguousPageSize - 1n)) === 0n) flags |= (log2(contiguousPageSize) + 1) << PAGE_SIZE_SHIFT;
  return flags;
}

/** log2 of a power of two below 2^64, from its 32-bit halves (no string, no bigint arithmetic). */
function log2(value: bigint): number {
  WIDE[0] = value;
  const high = HALVES[HIGH]!;
  return high !== 0 ? 63 - Math.clz32(high) : 31 - Math.clz32(HALVES[LOW]!);
}

/** Flags for an access. */
export function accessFlags(access: Access): number {
  return (access.read ? READ : 0) | (access.write ? WRITE : 0);
}

export class MappingTable {
  private readonly tree = new PageRangeMap();
  private pagesMapped = 0;
  /** Mappings that own their IOVA and hold it in the allocator. */
  private reservedOwners = 0;
  /** Start pages of mappings marked PENDING (some may be gone since: checked when taken). */
  private pending = new Float64Array(16);
  private pendingLength = 0;
  private pendingCount = 0;
  /** `contiguousPageSize`s that are not a power of two, by start page (rare: kept aside). */
  private readonly oddPageSizes = new Map<number, bigint>();
  /** What {@link tryRemove} took out, for {@link restoreRemove} and {@link commitRemove}. */
  private removedValue = 0;
  private removedFlags = 0;

  /** Live mappings. */
  get size(): number {
    return this.tree.size;
  }

  /** Bytes in the live mappings. */
  get bytesMapped(): bigint {
    return BigInt(this.pagesMapped) << PAGE_SHIFT;
  }

  /** True when some mapping holds IOVA space in the allocator. */
  get holdsAllocatorSpace(): boolean {
    return this.reservedOwners > 0;
  }

  /** The mapping with the highest start at or below `range.last`, if it reaches into `range`. */
  overlap(range: IovaRange): Mapping | undefined {
    return this.tree.overlaps(pageOf(range.start), pageOf(range.last)) ? this.found() : undefined;
  }

  /** Records a mapping; the caller has checked that it overlaps none. */
  add(iova: IovaRange, memory: HostMemory, access: Access, ownership: IovaOwnership): void {
    const startPage = pageOf(iova.start);
    const lastPage = pageOf(iova.last);
    const flags = mappingFlags(accessFlags(access), ownership, memory.contiguousPageSize);
    this.tree.set(startPage, lastPage, pageOf(memory.address), flags);
    this.book(startPage, lastPage, flags, memory.contiguousPageSize);
  }

  /**
   * Map, step one: puts IOVA pages `[startPage, lastPage]` (to host memory from page
   * `addressPage`, `flags` from {@link mappingFlags}) in the table unless a mapping shares a page
   * with them; false then, and nothing changes. One tree descent for the overlap check and the
   * insert. Until {@link commitInsert}, the entry is tentative: {@link withdrawInsert} takes it back.
   */
  tryInsert(startPage: number, lastPage: number, addressPage: number, flags: number): boolean {
    return this.tree.setIfFree(startPage, lastPage, addressPage, flags);
  }

  /** Takes back a tentative insert (the backend refused the map, or a later check failed). */
  withdrawInsert(startPage: number, lastPage: number): void {
    this.tree.deleteExact(startPage, lastPage);
  }

  /** Map, step two: the backend has mapped it; the table's counters and lists take it in. */
  commitInsert(startPage: number, lastPage: number, flags: number, contiguousPageSize: bigint | undefined): void {
    this.book(startPage, lastPage, flags, contiguousPageSize);
  }

  /**
   * Unmap, step one: takes out the mapping that is exactly pages `[startPage, lastPage]`; false
   * when there is none (nothing changes). One tree descent. Until {@link commitRemove}, the removal
   * is tentative: {@link restoreRemove} puts the mapping back.
   */
  tryRemove(startPage: number, lastPage: number): boolean {
    const tree = this.tree;
    if (!tree.deleteExact(startPage, lastPage)) return false;
    this.removedValue = tree.foundValue;
    this.removedFlags = tree.foundFlags;
    return true;
  }

  /** Puts back the mapping {@link tryRemove} took out (the backend refused the unmap). */
  restoreRemove(startPage: number, lastPage: number): void {
    this.tree.set(startPage, lastPage, this.removedValue, this.removedFlags);
  }

  /** Unmap, step two: the backend has unmapped it; returns what the mapping owned. */
  commitRemove(startPage: number, lastPage: number): IovaOwnership {
    return this.unbook(startPage, lastPage, this.removedFlags);
  }

  /** Removes the mapping starting at `start` (which must exist); returns what it owned. */
  remove(start: bigint): IovaOwnership {
    const startPage = pageOf(start);
    const tree = this.tree;
    if (!tree.get(startPage)) throw new IoasError('inconsistent', `the container's record has no mapping at ${hex(start)} although it listed one there`);
    const { foundLast: lastPage, foundFlags: flags } = tree;
    tree.delete(startPage);
    return this.unbook(startPage, lastPage, flags);
  }

  /** Counts a mapping that is in the tree: bytes, allocator ownership, odd page sizes. */
  private book(startPage: number, lastPage: number, flags: number, contiguousPageSize: bigint | undefined): void {
    this.pagesMapped += lastPage - startPage + 1;
    if (contiguousPageSize !== undefined && (flags >> PAGE_SIZE_SHIFT) === 0) this.oddPageSizes.set(startPage, contiguousPageSize);
    if ((flags & OWNS) === 0) return;
    if ((flags & PENDING) === 0) {
      this.reservedOwners++;
      return;
    }
    if (this.pendingLength === this.pending.length) {
      const grown = new Float64Array(this.pending.length * 2);
      grown.set(this.pending);
      this.pending = grown;
    }
    this.pending[this.pendingLength++] = startPage;
    this.pendingCount++;
    if (this.pendingLength > 2 * this.pendingCount + 64) this.compactPending();
  }

  /** Uncounts a mapping that has left the tree; returns what it owned. */
  private unbook(startPage: number, lastPage: number, flags: number): IovaOwnership {
    this.pagesMapped -= lastPage - startPage + 1;
    if (this.oddPageSizes.size > 0) this.oddPageSizes.delete(startPage);
    if ((flags & OWNS) === 0) return 'allocation';
    if ((flags & PENDING) === 0) {
      this.reservedOwners--;
      return 'owned';
    }
    // A map undone by the next unmap (the common case) takes its start back off the list.
    if (--this.pendingCount === 0) this.pendingLength = 0;
    else if (this.pending[this.pendingLength - 1] === startPage) this.pendingLength--;
    else if (this.pendingLength > 2 * this.pendingCount + 64) this.compactPending();
    return 'pending';
  }

  /** The mappings sharing an address with `range`, in IOVA order. */
  overlapping(range: IovaRange): TableEntry[] {
    const result: TableEntry[] = [];
    const lastPage = pageOf(range.last);
    this.tree.forEachFrom(
      pageOf(range.start),
      (start, last, value, flags) => {
        if (start > lastPage) return false;
        result.push({ mapping: this.build(start, last, value, flags), ownsIova: (flags & OWNS) !== 0 });
        return true;
      },
      true,
    );
    return result;
  }

  /** True when mappings hold every byte of `range`, with no gap. Stops at the first gap. */
  covers(range: IovaRange): boolean {
    let next = range.start;
    let covered = false;
    this.tree.forEachFrom(
      pageOf(range.start),
      (start, last, value, flags) => {
        const { iova } = this.build(start, last, value, flags);
        if (iova.start > next) return false;
        if (iova.last >= next) next = iova.last + 1n;
        if (next > range.last) {
          covered = true;
          return false;
        }
        return true;
      },
      true,
    );
    return covered;
  }

  /** The mapping that contains `address`, if any. */
  find(address: bigint): Mapping | undefined {
    if (address < 0n || address >= 1n << 64n) return undefined;
    const page = pageOf(address);
    return this.tree.floor(page) && this.tree.foundLast >= page ? this.found() : undefined;
  }

  /** The mapping with the highest IOVA, if any. */
  last(): Mapping | undefined {
    return this.tree.last() ? this.found() : undefined;
  }

  /** Every live mapping, in IOVA order. */
  mappings(): Mapping[] {
    const result: Mapping[] = [];
    this.tree.forEachFrom(0, (start, last, value, flags) => void result.push(this.build(start, last, value, flags)));
    return result;
  }

  /**
   * The IOVA of every mapping that owns its IOVA, all marked as held by the allocator from now on
   * (the allocator is being rebuilt and takes them all).
   */
  ownedRanges(): IovaRange[] {
    const owned: IovaRange[] = [];
    const starts: number[] = [];
    this.tree.forEachFrom(0, (start, last, _value, flags) => {
      if ((flags & OWNS) === 0) return;
      owned.push(pageRange(start, last));
      if ((flags & PENDING) !== 0) starts.push(start);
    });
    for (const start of starts) this.markReserved(start);
    this.pendingLength = 0;
    this.pendingCount = 0;
    return owned;
  }

  /**
   * The IOVA of mappings made at an explicit address that the allocator does not know of yet, each
   * marked as held by the allocator from now on. A VMM maps and unmaps at addresses it chose far
   * more often than it asks the allocator for one, so these reach the allocator only when it is
   * next asked: a map followed by its unmap never touches the allocator's trees.
   */
  takePending(): IovaRange[] {
    const taken: IovaRange[] = [];
    const tree = this.tree;
    for (let index = 0; index < this.pendingLength; index++) {
      const start = this.pending[index]!;
      if (tree.get(start) && (tree.foundFlags & PENDING) !== 0) {
        taken.push(pageRange(start, tree.foundLast));
        this.markReserved(start);
      }
    }
    this.pendingLength = 0;
    this.pendingCount = 0;
    return taken;
  }

  /** Forgets every mapping. */
  clear(): void {
    this.tree.clear();
    this.pagesMapped = 0;
    this.reservedOwners = 0;
    this.pendingLength = 0;
    this.pendingCount = 0;
    this.oddPageSizes.clear();
  }

  /**
   * Drops the starts of mappings that are gone or no longer pending, and repeats, so that the list
   * stays within twice the pending mappings whatever order maps and unmaps come in.
   */
  private compactPending(): void {
    const tree = this.tree;
    const pending = this.pending;
    let kept = 0;
    for (let index = 0; index < this.pendingLength; index++) {
      const start = pending[index]!;
      if (tree.get(start) && (tree.foundFlags & (PENDING | LISTED)) === PENDING) {
        tree.setFlags(start, tree.foundFlags | LISTED);
        pending[kept++] = start;
      }
    }
    for (let index = 0; index < kept; index++) {
      tree.get(pending[index]!);
      tree.setFlags(pending[index]!, tree.foundFlags & ~LISTED);
    }
    this.pendingLength = kept;
  }

  /** Marks the pending mapping at `start` as held by the allocator (reads its flags itself). */
  private markReserved(start: number): void {
    const tree = this.tree;
    if (!tree.get(start)) return;
    tree.setFlags(start, tree.foundFlags & ~PENDING);
    this.reservedOwners++;
  }

  private found(): Mapping {
    const tree = this.tree;
    return this.build(tree.foundStart, tree.foundLast, tree.foundValue, tree.foundFlags);
  }

  private build(start: number, last: number, value: number, flags: number): Mapping {
    const iova = pageRange(start, last);
    const length = iova.last - iova.start + 1n;
    const address = pageAddress(value);
    const bits = (flags >> PAGE_SIZE_SHIFT) & 0xff;
    const pageSize = bits !== 0 ? 1n << BigInt(bits - 1) : this.oddPageSizes.get(start);
    const memory: HostMemory = pageSize === undefined ? { address, length } : { address, length, contiguousPageSize: pageSize };
    return { iova, memory, access: accessOf((flags & READ) !== 0, (flags & WRITE) !== 0) };
  }
}

function pageRange(start: number, last: number): IovaRange {
  return { start: pageAddress(start), last: pageAddress(last + 1) - 1n };
}
