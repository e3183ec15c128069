/**
 * The IOMMU's dirty bits: one per 4 KiB IO page, set when a device's DMA write goes through a
 * writable leaf of a page table that records them (VT-d second-stage A/D with SSADE on, SMMUv3
 * HTTU with DBM), and cleared by a clearing read. Stored sparsely: chunks of 2^15 pages (128 MiB
 * of IOVA, 4 KiB of bits each) created on the first dirty page inside them and dropped when their
 * last bit clears, so nothing exists per page and nothing exists at all until a device writes.
 *
 * Page numbers are IOVA >> 12, exact numbers (IOVAs below 2^64 give page numbers below 2^52).
 */
const CHUNK_SHIFT = 15;
const CHUNK_PAGES = 1 << CHUNK_SHIFT;
const CHUNK_WORDS = CHUNK_PAGES / 32;

/** Set bits in a 32-bit word. */
function popcount(word: number): number {
  let bits = word - ((word >>> 1) & 0x55555555);
  bits = (bits & 0x33333333) + ((bits >>> 2) & 0x33333333);
  return (((bits + (bits >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** Bits `[from, to]` (0..31) of a word as a mask. */
function mask(from: number, to: number): number {
  return to === 31 ? (0xffffffff << from) >>> 0 : (((1 << (to + 1)) - 1) & (0xffffffff << from)) >>> 0;
}

/** Dirty bits of 4 KiB IO pages, sparse. */
export class DirtyPages {
  /** Chunk index (page >> 15) -> its bits; a chunk exists only while it has a set bit. */
  private readonly chunks = new Map<number, Uint32Array>();

  /** True when no page is dirty. */
  get empty(): boolean {
    return this.chunks.size === 0;
  }

  /** Marks pages `[first, last]` dirty. */
  set(first: number, last: number): void {
    for (let page = first; page <= last; ) {
      const index = Math.floor(page / CHUNK_PAGES);
      const end = Math.min(last, (index + 1) * CHUNK_PAGES - 1);
      let chunk = this.chunks.get(index);
      if (chunk === undefined) {
        chunk = new Uint32Array(CHUNK_WORDS);
        this.chunks.set(index, chunk);
      }
      this.apply(chunk, page - index * CHUNK_PAGES, end - index * CHUNK_PAGES, true);
      page = end + 1;
    }
  }

  /** Clears pages `[first, last]` (an unmap, a clearing read). */
  clear(first: number, last: number): void {
    if (this.chunks.size === 0) return;
    this.forChunks(first, last, (index, chunk, from, to) => {
      this.apply(chunk, from, to, false);
      if (chunk.every((word) => word === 0)) this.chunks.delete(index);
    });
  }

  /** Clears every page. */
  clearAll(): void {
    this.chunks.clear();
  }

  /** True when `page` is dirty. */
  test(page: number): boolean {
    const chunk = this.chunks.get(Math.floor(page / CHUNK_PAGES));
    if (chunk === undefined) return false;
    const bit = page % CHUNK_PAGES;
    return ((chunk[bit >>> 5]! >>> (bit & 31)) & 1) === 1;
  }

  /** Dirty pages in `[first, last]`. */
  count(first: number, last: number): number {
    let total = 0;
    this.forChunks(first, last, (_index, chunk, from, to) => {
      const fromWord = from >>> 5;
      const toWord = to >>> 5;
      for (let word = fromWord; word <= toWord; word++) {
        const bits = chunk[word]! & mask(word === fromWord ? from & 31 : 0, word === toWord ? to & 31 : 31);
        if (bits !== 0) total += popcount(bits);
      }
    });
    return total;
  }

  /**
   * Calls `run(first, last)` for each maximal run of dirty pages inside `[first, last]`, in page
   * order. Allocates nothing but a sorted key list when the range spans more chunks than exist.
   */
  forEachRun(first: number, last: number, run: (first: number, last: number) => void): void {
    let open = -1;
    let previous = -2;
    this.forChunks(first, last, (index, chunk, from, to) => {
      const base = index * CHUNK_PAGES;
      const fromWord = from >>> 5;
      const toWord = to >>> 5;
      for (let word = fromWord; word <= toWord; word++) {
        let bits = (chunk[word]! & mask(word === fromWord ? from & 31 : 0, word === toWord ? to & 31 : 31)) >>> 0;
        const wordBase = base + word * 32;
        if (bits === 0) continue;
        if (bits === 0xffffffff) {
          if (open >= 0 && previous === wordBase - 1) {
            previous = wordBase + 31;
          } else {
            if (open >= 0) run(open, previous);
            open = wordBase;
            previous = wordBase + 31;
          }
          continue;
        }
        while (bits !== 0) {
          const low = 31 - Math.clz32(bits & -bits);
          // The run of set bits from `low` up.
          const shifted = ~(bits >>> low) >>> 0;
          const length = shifted === 0 ? 32 - low : 31 - Math.clz32(shifted & -shifted);
          const runFirst = wordBase + low;
          const runLast = runFirst + length - 1;
          if (open >= 0 && previous === runFirst - 1) {
            previous = runLast;
          } else {
            if (open >= 0) run(open, previous);
            open = runFirst;
            previous = runLast;
          }
          bits = low + length >= 32 ? 0 : (bits & (0xffffffff << (low + length))) >>> 0;
        }
      }
    });
    if (open >= 0) run(open, previous);
  }

  /** Each existing chunk overlapping `[first, last]`, in order, with the chunk-relative bit range. */
  private forChunks(first: number, last: number, visit: (index: number, chunk: Uint32Array, from: number, to: number) => void): void {
    if (this.chunks.size === 0 || last < first) return;
    const firstIndex = Math.floor(first / CHUNK_PAGES);
    const lastIndex = Math.floor(last / CHUNK_PAGES);
    const visitIndex = (index: number): void => {
      const chunk = this.chunks.get(index);
      if (chunk === undefined) return;
      const base = index * CHUNK_PAGES;
      visit(index, chunk, Math.max(first, base) - base, Math.min(last, base + CHUNK_PAGES - 1) - base);
    };
    if (lastIndex - firstIndex + 1 <= this.chunks.size * 4) {
      for (let index = firstIndex; index <= lastIndex; index++) visitIndex(index);
      return;
    }
    const keys = [...this.chunks.keys()].filter((index) => index >= firstIndex && index <= lastIndex).sort((a, b) => a - b);
    for (const index of keys) visitIndex(index);
  }

  /** Sets or clears chunk bits `[from, to]`. */
  private apply(chunk: Uint32Array, from: number, to: number, value: boolean): void {
    const fromWord = from >>> 5;
    const toWord = to >>> 5;
    for (let word = fromWord; word <= toWord; word++) {
      const bits = mask(word === fromWord ? from & 31 : 0, word === toWord ? to & 31 : 31);
      chunk[word] = value ? chunk[word]! | bits : chunk[word]! & ~bits;
    }
  }
}
