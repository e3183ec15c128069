import { describe, expect, it, vi } from 'vitest';
import { DirtyBitmap, dirtyBitmapBytes } from './dirty-bitmap.js';
import { IoasError } from './errors.js';

const PAGE = 0x1000n;

/** A bitmap of `pages` 4 KiB pages from `start` with the listed pages set, through the kernel's byte layout. */
function bitmapOf(pages: number, dirty: readonly number[], start = 0x10_0000n): DirtyBitmap {
  const bytes = new Uint8Array(dirtyBitmapBytes(pages));
  // Little-endian u64 words: bit n of word n / 64 is page n, which is bit n % 8 of byte n / 8.
  for (const page of dirty) bytes[page >>> 3]! |= 1 << (page & 7);
  return new DirtyBitmap({ start, last: start + BigInt(pages) * PAGE - 1n }, PAGE, bytes);
}

/** The runs, found the slow way: one page at a time. */
function runsBySlowScan(bitmap: DirtyBitmap): [number, number][] {
  const runs: [number, number][] = [];
  for (let page = 0; page < bitmap.pages; page++) {
    if (!bitmap.isPageDirty(page)) continue;
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] + last[1] === page) last[1]++;
    else runs.push([page, 1]);
  }
  return runs;
}

function runsOf(bitmap: DirtyBitmap): [number, number][] {
  const runs: [number, number][] = [];
  bitmap.forEachRun((first, count) => runs.push([first, count]));
  return runs;
}

describe('DirtyBitmap', () => {
  it('sizes the bitmap in whole u64 words, as DIRTY_BITMAP_BYTES() does', () => {
    expect([1, 63, 64, 65, 128, 129].map(dirtyBitmapBytes)).toEqual([8, 8, 8, 16, 16, 24]);
    // 64 GiB at 4 KiB pages: 2 MiB of bitmap.
    expect(dirtyBitmapBytes(Number((64n << 30n) / PAGE))).toBe(2 << 20);
  });

  it('reads the kernel layout: counts, tests pages and addresses, finds runs across word edges', () => {
    const bitmap = bitmapOf(200, [0, 1, 2, 31, 32, 63, 64, 65, 127, 128, 199]);
    expect(bitmap.count()).toBe(11);
    expect(bitmap.dirtyBytes()).toBe(11n * PAGE);
    expect(bitmap.isDirty(0x10_0000n)).toBe(true);
    expect(bitmap.isDirty(0x10_0000n + 3n * PAGE + 5n)).toBe(false);
    expect(bitmap.isDirty(Number(0x10_0000n + 199n * PAGE))).toBe(true);
    expect(runsOf(bitmap)).toEqual([
      [0, 3],
      [31, 2],
      [63, 3],
      [127, 2],
      [199, 1],
    ]);
    expect([...bitmap.runs()]).toEqual([
      { start: 0x10_0000n, last: 0x10_0000n + 3n * PAGE - 1n },
      { start: 0x10_0000n + 31n * PAGE, last: 0x10_0000n + 33n * PAGE - 1n },
      { start: 0x10_0000n + 63n * PAGE, last: 0x10_0000n + 66n * PAGE - 1n },
      { start: 0x10_0000n + 127n * PAGE, last: 0x10_0000n + 129n * PAGE - 1n },
      { start: 0x10_0000n + 199n * PAGE, last: 0x10_0000n + 200n * PAGE - 1n },
    ]);
  });

  it('finds the same runs as a page-by-page scan on random bitmaps, dense and sparse', () => {
    let seed = 17;
    const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (const density of [0.01, 0.3, 0.7, 0.99]) {
      for (let round = 0; round < 20; round++) {
        const pages = 1 + Math.floor(random() * 700);
        const dirty: number[] = [];
        // Runs of random length, so that whole words of ones and of zeros both occur.
        for (let page = 0; page < pages; ) {
          const length = 1 + Math.floor(random() * 80);
          if (random() < density) for (let next = page; next < Math.min(pages, page + length); next++) dirty.push(next);
          page += length;
        }
        const bitmap = bitmapOf(pages, dirty);
        expect(runsOf(bitmap)).toEqual(runsBySlowScan(bitmap));
        expect(bitmap.count()).toBe(dirty.length);
      }
    }
  });

  it('finds the same runs and counts on large bitmaps of uniform stretches, with and without a native compare', async () => {
    vi.resetModules();
    vi.stubGlobal('Buffer', undefined);
    const plain = (await import('./dirty-bitmap.js')).DirtyBitmap;
    vi.unstubAllGlobals();
    // 64 GiB at 4 KiB pages (2 MiB of bitmap), and a size that ends inside a word.
    for (const pages of [16 * 1024 * 1024, 3 * 1024 * 1024 + 77]) {
      const layouts: [string, [number, number][]][] = [
        ['all clean', []],
        ['all dirty', [[0, pages]]],
        ['dirty but the last page', [[0, pages - 1]]],
        // Stretches across the 4 KiB (32768-page) leaves and the halving points, and single pages among them.
        ['stretches', [[5, 40_000], [65_536, 1], [98_304, 300_000], [1_000_001, 3], [pages - 100_000, 100_000]]],
      ];
      for (const [name, runs] of layouts) {
        const bytes = new Uint8Array(dirtyBitmapBytes(pages));
        for (const [first, count] of runs) for (let page = first; page < first + count; page++) bytes[page >>> 3]! |= 1 << (page & 7);
        const iova = { start: 0n, last: BigInt(pages) * PAGE - 1n };
        for (const Bitmap of [DirtyBitmap, plain]) {
          const bitmap = new Bitmap(iova, PAGE, bytes.slice());
          const found: [number, number][] = [];
          bitmap.forEachRun((first, count) => found.push([first, count]));
          expect(found, `${name}, ${pages} pages`).toEqual(runs);
          expect(bitmap.count()).toBe(runs.reduce((sum, [, count]) => sum + count, 0));
          expect(new Bitmap(iova, PAGE, bytes.slice()).count()).toBe(bitmap.count());
        }
      }
    }
  });

  it('clear() marks every page clean, and a merge after it is counted again', () => {
    const bitmap = bitmapOf(300, [1, 2, 250]);
    expect(bitmap.count()).toBe(3);
    bitmap.clear();
    expect(bitmap.count()).toBe(0);
    expect(runsOf(bitmap)).toEqual([]);
    bitmap.merge(bitmapOf(64, [0, 63], 0x10_0000n + 64n * PAGE));
    expect(runsOf(bitmap)).toEqual([
      [64, 1],
      [127, 1],
    ]);
    expect(bitmap.count()).toBe(2);
  });

  it('an all-dirty bitmap is one run, and bits past the last page are ignored', () => {
    const bytes = new Uint8Array(dirtyBitmapBytes(100)).fill(0xff);
    const bitmap = new DirtyBitmap({ start: 0n, last: 100n * PAGE - 1n }, PAGE, bytes);
    expect(bitmap.count()).toBe(100);
    expect(runsOf(bitmap)).toEqual([[0, 100]]);
    // The tail bits of the second word were cleared in the kernel's bytes.
    expect(bytes[12]).toBe(0x0f);
    expect([...bytes.subarray(13)]).toEqual([0, 0, 0]);
  });

  it('merges a piece at its place, across word edges', () => {
    const whole = bitmapOf(256, [0]);
    const piece = bitmapOf(40, [0, 1, 39], 0x10_0000n + 70n * PAGE);
    whole.merge(piece);
    expect(runsOf(whole)).toEqual([
      [0, 1],
      [70, 2],
      [109, 1],
    ]);
    expect(whole.count()).toBe(4);
  });

  it('refuses what is not a bitmap of whole pages, and addresses outside it, with typed errors', () => {
    const code = (run: () => unknown) => {
      try {
        run();
      } catch (error) {
        return IoasError.isInstance(error) ? error.code : `raw ${String(error)}`;
      }
      return 'no error';
    };
    expect(code(() => new DirtyBitmap({ start: 0x800n, last: 0x17ffn }, PAGE))).toBe('misaligned');
    expect(code(() => new DirtyBitmap({ start: 0n, last: 0xfffn }, PAGE, new Uint8Array(4)))).toBe('invalid-argument');
    const bitmap = bitmapOf(8, [1]);
    expect(code(() => bitmap.isDirty(0n))).toBe('out-of-range');
    expect(code(() => bitmap.isDirty(-1))).toBe('invalid-argument');
    expect(code(() => bitmap.isPageDirty(8))).toBe('out-of-range');
    expect(code(() => bitmap.merge(bitmapOf(8, [], 0x20_0000n)))).toBe('invalid-argument');
  });
});
