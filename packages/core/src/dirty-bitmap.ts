/**
 * The dirty bitmap a read or a dirty unmap returns: the kernel's own bytes (bit n of little-endian
 * u64 word n / 64 is page n, as VFIO_IOMMU_DIRTY_PAGES and IOMMU_HWPT_GET_DIRTY_BITMAP write it),
 * scanned in 32-bit words. Nothing here allocates per page: the first scan of a bitmap lists its
 * stretches (a few numbers per 4 KiB of bitmap at most), `count()` and `forEachRun()` allocate
 * nothing else, `runs()` one range per run.
 *
 * Scans skip uniform stretches at memory speed: the words are first tested whole for being all
 * clean or all dirty (on Node, one native compare of the bytes with themselves shifted by a byte),
 * halved while mixed, and only stretches of 4 KiB or less are walked word by word. Type1's
 * pessimistic bitmaps (every mapped page dirty) and a quiet guest's (nothing dirty) cost one compare.
 */
import { IoasError } from './errors.js';
import { hex } from './format.js';
import { formatRange, type IovaRange } from './iova-range.js';
import type { U64Input } from './types.js';

/** The kernel's bitmaps are arrays of little-endian words on the hosts VFIO dirty tracking runs on. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Index of the lowest set bit of a non-zero 32-bit word. */
function lowestBit(word: number): number {
  return 31 - Math.clz32(word & -word);
}

/** Set bits in a 32-bit word. */
function popcount(word: number): number {
  let bits = word - ((word >>> 1) & 0x55555555);
  bits = (bits & 0x33333333) + ((bits >>> 2) & 0x33333333);
  return (((bits + (bits >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** A byte view with a native compare of two of its stretches (memcmp): Node's `Buffer`. */
interface ComparableBytes {
  compare(target: Uint8Array, targetStart: number, targetEnd: number, sourceStart: number, sourceEnd: number): number;
}

/** Node's `Buffer`, when the platform has one: its `compare` with offsets allocates nothing. */
const NativeBuffer = (globalThis as { Buffer?: { from(buffer: ArrayBufferLike, byteOffset: number, length: number): ComparableBytes & Uint8Array } }).Buffer;

/** Stretches of at most this many 32-bit words (4 KiB) are walked word by word. */
const LEAF_WORDS = 1024;

/** What a stretch of words holds: all clean, all dirty, or both. */
const CLEAN = 0;
const DIRTY = 1;
const MIXED = 2;

/** Lets the tracker refill a bitmap it reuses (see {@link refilled}) without a public method. */
let refill: (bitmap: DirtyBitmap) => void;

/** Bytes of the kernel's bitmap for `pages` pages: whole u64 words (DIRTY_BITMAP_BYTES()). */
export function dirtyBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** Which pages of an IOVA range devices wrote since tracking started or the last read cleared them. */
export class DirtyBitmap {
  /** The IOVA range the bitmap covers, whole pages of {@link pageSize}. */
  readonly iova: IovaRange;
  /** Bytes one bit stands for. */
  readonly pageSize: bigint;
  /** Pages the bitmap covers (bits that mean something). */
  readonly pages: number;
  /** The kernel's bytes: {@link dirtyBitmapBytes}(pages) long; bits past `pages` are 0. */
  readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private counted = -1;
  /** The stretches of {@link layout}, once worked out; undefined until the first scan. */
  private stretchList: number[] | undefined;

  static {
    refill = (bitmap) => {
      bitmap.clearTail();
      bitmap.forget();
    };
  }

  /**
   * A bitmap over `iova` at `pageSize`. With `bytes` omitted it is all clean; given, it is taken as
   * the kernel wrote it (its length at least {@link dirtyBitmapBytes}(pages), 4-byte aligned), and
   * any bit past the last page is cleared.
   */
  constructor(iova: IovaRange, pageSize: bigint, bytes?: Uint8Array) {
    if (!LITTLE_ENDIAN) throw new IoasError('unsupported', 'dirty bitmaps are read as little-endian words, as the kernels that track dirty pages (x86, arm64) write them');
    const size = iova.last - iova.start + 1n;
    if (pageSize <= 0n || iova.start % pageSize !== 0n || size % pageSize !== 0n) {
      throw new IoasError('misaligned', `a dirty bitmap of ${formatRange(iova)} needs whole pages of ${hex(pageSize)} bytes`);
    }
    const pages = size / pageSize;
    if (pages > 0xffff_ffffn) throw new IoasError('invalid-argument', `a dirty bitmap of ${formatRange(iova)} at ${hex(pageSize)}-byte pages would have ${pages} bits, more than 2^32-1`);
    this.iova = iova;
    this.pageSize = pageSize;
    this.pages = Number(pages);
    const length = dirtyBitmapBytes(this.pages);
    if (bytes === undefined) {
      this.bytes = new Uint8Array(length);
    } else {
      if (bytes.length < length || bytes.byteOffset % 4 !== 0) {
        throw new IoasError('invalid-argument', `a dirty bitmap of ${this.pages} pages needs ${length} bytes at a 4-byte aligned offset, not ${bytes.length} at offset ${bytes.byteOffset}`);
      }
      this.bytes = bytes.length === length ? bytes : bytes.subarray(0, length);
    }
    this.words = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, length / 4);
    this.clearTail();
  }

  /** Dirty pages. At most O(pages / 32), computed once. */
  count(): number {
    if (this.counted >= 0) return this.counted;
    const words = this.words;
    const layout = this.layout();
    let total = 0;
    for (let at = 0; at < layout.length; at += 3) {
      const from = layout[at]!;
      const to = layout[at + 1]!;
      const kind = layout[at + 2]!;
      if (kind === DIRTY) {
        total += (to - from) * 32;
      } else if (kind === MIXED) {
        for (let index = from; index < to; index++) {
          const word = words[index]!;
          if (word === 0xffff_ffff) total += 32;
          else if (word !== 0) total += popcount(word);
        }
      }
    }
    this.counted = total;
    return total;
  }

  /** Marks every page clean. */
  clear(): void {
    this.bytes.fill(0);
    this.counted = 0;
    this.stretchList = [0, this.words.length, CLEAN];
  }

  /** Dirty bytes: {@link count} pages of {@link pageSize}. */
  dirtyBytes(): bigint {
    return BigInt(this.count()) * this.pageSize;
  }

  /**
   * True when the page holding `iova` is dirty.
   *
   * @throws {IoasError} `out-of-range` when `iova` is outside the bitmap's range.
   */
  isDirty(iova: U64Input): boolean {
    const address = typeof iova === 'bigint' ? iova : Number.isSafeInteger(iova) && iova >= 0 ? BigInt(iova) : undefined;
    if (address === undefined) throw new IoasError('invalid-argument', `isDirty: ${String(iova)} is not an IOVA (a bigint or a safe non-negative integer)`);
    if (address < this.iova.start || address > this.iova.last) throw new IoasError('out-of-range', `isDirty: ${hex(address)} is outside the bitmap's range ${formatRange(this.iova)}`);
    return this.isPageDirty(Number((address - this.iova.start) / this.pageSize));
  }

  /** True when page `page` (0 is the page at `iova.start`) is dirty. */
  isPageDirty(page: number): boolean {
    if (!Number.isInteger(page) || page < 0 || page >= this.pages) throw new IoasError('out-of-range', `isPageDirty: page ${page} is outside 0..${this.pages - 1}`);
    return ((this.words[page >>> 5]! >>> (page & 31)) & 1) === 1;
  }

  /**
   * Calls `visit(firstPage, pageCount)` for every run of dirty pages, in order (page 0 is the page
   * at `iova.start`). Allocates nothing; skips 32 clean (or 32 dirty) pages at a time.
   */
  forEachRun(visit: (firstPage: number, pageCount: number) => void): void {
    const words = this.words;
    const layout = this.layout();
    let runStart = -1;
    let dirty = 0;
    for (let at = 0; at < layout.length; at += 3) {
      const first = layout[at]!;
      const last = layout[at + 1]!;
      const kind = layout[at + 2]!;
      if (kind === CLEAN) {
        if (runStart >= 0) {
          visit(runStart, first * 32 - runStart);
          dirty += first * 32 - runStart;
          runStart = -1;
        }
        continue;
      }
      if (kind === DIRTY) {
        if (runStart < 0) runStart = first * 32;
        continue;
      }
      for (let index = first; index < last; index++) {
        const word = words[index]!;
        if (runStart < 0 ? word === 0 : word === 0xffff_ffff) continue;
        const base = index * 32;
        let from = 0;
        while (from < 32) {
          // The bits at `from` and above that end the current state: set bits while clean, clear bits while in a run.
          const mask = from === 0 ? -1 : -1 << from;
          const ending = (runStart < 0 ? word : ~word) & mask;
          if (ending === 0) break;
          const bit = lowestBit(ending);
          if (runStart < 0) {
            runStart = base + bit;
          } else {
            visit(runStart, base + bit - runStart);
            dirty += base + bit - runStart;
            runStart = -1;
          }
          from = bit + 1;
        }
      }
    }
    if (runStart >= 0) {
      visit(runStart, this.pages - runStart);
      dirty += this.pages - runStart;
    }
    this.counted = dirty;
  }

  /** The dirty runs as IOVA ranges, in order: one object per run, none per page. */
  *runs(): IterableIterator<IovaRange> {
    const found: number[] = [];
    this.forEachRun((first, count) => {
      found.push(first, count);
    });
    const { start } = this.iova;
    const pageSize = this.pageSize;
    for (let index = 0; index < found.length; index += 2) {
      const first = start + BigInt(found[index]!) * pageSize;
      yield { start: first, last: first + BigInt(found[index + 1]!) * pageSize - 1n };
    }
  }

  /**
   * ORs `source` (a bitmap at the same page size whose range lies inside this one) into this one, at
   * its place: how a dirty unmap's pieces come together.
   */
  merge(source: DirtyBitmap): void {
    if (source.pageSize !== this.pageSize || source.iova.start < this.iova.start || source.iova.last > this.iova.last) {
      throw new IoasError('invalid-argument', `cannot merge a bitmap of ${formatRange(source.iova)} at ${hex(source.pageSize)} into one of ${formatRange(this.iova)} at ${hex(this.pageSize)}`);
    }
    const offset = Number((source.iova.start - this.iova.start) / this.pageSize);
    source.forEachRun((first, count) => this.setPages(offset + first, count));
    this.forget();
  }

  /** Drops what scans worked out from the bytes, which have changed. */
  private forget(): void {
    this.counted = -1;
    this.stretchList = undefined;
  }

  /**
   * The words as stretches in order, three numbers each: `from`, `to` (exclusive), and what they
   * hold: all clean, all dirty, or mixed (at most {@link LEAF_WORDS} words, walked word by word).
   * Worked out once, on the first scan: a few hundred numbers at most for a 2 MiB bitmap.
   */
  private layout(): readonly number[] {
    if (this.stretchList !== undefined) return this.stretchList;
    const list: number[] = [];
    const bytes = this.bytes;
    const native = NativeBuffer?.from(bytes.buffer, bytes.byteOffset, bytes.length);
    if (this.words.length > 0) this.split(0, this.words.length, this.holds(0, this.words.length, native), list, native);
    this.stretchList = list;
    return list;
  }

  /** Adds stretch `[from, to)` holding `kind`, halving it while it is mixed and large. */
  private split(from: number, to: number, kind: number, list: number[], native: (ComparableBytes & Uint8Array) | undefined): void {
    if (kind !== MIXED || to - from <= LEAF_WORDS) {
      list.push(from, to, kind);
      return;
    }
    const middle = from + ((to - from) >>> 1);
    this.split(from, middle, this.holds(from, middle, native), list, native);
    this.split(middle, to, this.holds(middle, to, native), list, native);
  }

  /** What words `[from, to)` hold: one native compare of the bytes with themselves a byte on, where there is one. */
  private holds(from: number, to: number, native: (ComparableBytes & Uint8Array) | undefined): number {
    const words = this.words;
    const first = words[from]!;
    if (first !== 0 && first !== 0xffff_ffff) return MIXED;
    if (native !== undefined) return native.compare(native, from * 4 + 1, to * 4, from * 4, to * 4 - 1) === 0 ? (first === 0 ? CLEAN : DIRTY) : MIXED;
    for (let index = from + 1; index < to; index++) if (words[index] !== first) return MIXED;
    return first === 0 ? CLEAN : DIRTY;
  }

  /** Marks `count` pages from page `first` dirty (whole words at a time). */
  private setPages(first: number, count: number): void {
    const words = this.words;
    let page = first;
    const end = first + count;
    while (page < end) {
      const bit = page & 31;
      const take = Math.min(32 - bit, end - page);
      const mask = take === 32 ? -1 : ((1 << take) - 1) << bit;
      words[page >>> 5] = (words[page >>> 5]! | mask) >>> 0;
      page += take;
    }
  }

  /** Clears the bits past the last page: they mean nothing, and a kernel or backend may leave some. */
  private clearTail(): void {
    const used = this.pages & 31;
    const lastWord = this.pages >>> 5;
    if (used !== 0) this.words[lastWord] = (this.words[lastWord]! & ((1 << used) - 1)) >>> 0;
    for (let index = used === 0 ? lastWord : lastWord + 1; index < this.words.length; index++) this.words[index] = 0;
  }
}

/**
 * After a backend wrote a bitmap's bytes (a read, a reused bitmap of `ContainerDirty.read`'s `into`,
 * a dirty unmap): bits past the last page cleared, counts and scans forgotten. Not exported from
 * the package.
 */
export function refilled(bitmap: DirtyBitmap): void {
  refill(bitmap);
}
