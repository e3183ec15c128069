import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { updateUserBitmap, UserBitmap } from './user-bitmap.js';

const M64 = (1n << 64n) - 1n;

/**
 * update_user_bitmap() transliterated over whole-bitmap bigints: dma->bitmap is `total` words,
 * bitmap_set, __bitmap_shift_left (lim words, no mask, words past lim untouched), __bitmap_or of
 * one whole word, copy_to_user of DIRTY_BITMAP_BYTES(nbits + shift), bitmap_clear(0, nbits).
 */
function reference(user: bigint[], nbits: number, bitOffset: number, pessimistic: boolean, tail: bigint): bigint {
  const W = Math.ceil(nbits / 64);
  const total = W + 1;
  const totalMask = (1n << BigInt(total * 64)) - 1n;
  let bitmap = (tail << BigInt(nbits)) & totalMask;
  if (pessimistic) bitmap |= (1n << BigInt(nbits)) - 1n;
  const shift = bitOffset % 64;
  const copyOffset = Math.floor(bitOffset / 64);
  if (shift !== 0) {
    const lim = Math.ceil((nbits + shift) / 64);
    const limMask = (1n << BigInt(lim * 64)) - 1n;
    bitmap = ((bitmap << BigInt(shift)) & limMask) | (bitmap & ~limMask & totalMask);
    bitmap |= user[copyOffset]!;
  }
  const words = Math.ceil((nbits + shift) / 64);
  for (let k = 0; k < words; k++) user[copyOffset + k] = (bitmap >> BigInt(k * 64)) & M64;
  bitmap &= ~((1n << BigInt(nbits)) - 1n);
  return bitmap >> BigInt(nbits);
}

function toBytes(words: bigint[]): Uint8Array {
  const bytes = new Uint8Array(words.length * 8);
  const view = new DataView(bytes.buffer);
  words.forEach((word, index) => view.setBigUint64(index * 8, word, true));
  return bytes;
}

function toWords(bytes: Uint8Array): bigint[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 8 }, (_, index) => view.getBigUint64(index * 8, true));
}

describe('updateUserBitmap (type1 update_user_bitmap)', () => {
  it('writes what the kernel writes and keeps what dma->bitmap keeps, over repeated reads (property)', () => {
    const word = fc.bigInt({ min: 0n, max: M64 });
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 0, max: 200 }),
        fc.boolean(),
        fc.array(word, { minLength: 12, maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 4 }),
        (nbits, firstOffset, pessimistic, initial, laterOffsets) => {
          let expectedTail = 0n;
          let actualTail = 0n;
          const expected = [...initial];
          const bytes = toBytes(initial);
          for (const bitOffset of [firstOffset, ...laterOffsets]) {
            expectedTail = reference(expected, nbits, bitOffset, pessimistic, expectedTail);
            actualTail = updateUserBitmap(new UserBitmap(bytes, true, 'test'), nbits, bitOffset, pessimistic, actualTail);
            expect(toWords(bytes)).toEqual(expected);
            expect(actualTail).toBe(expectedTail);
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('reports pages past a dma dirty once reads shift it (the carried bits), as the kernel does', () => {
    // A 10-page dma at bit 10 of the bitmap, read twice, pessimistic.
    const bytes = new Uint8Array(8);
    let tail = updateUserBitmap(new UserBitmap(bytes, true, 'test'), 10, 10, true, 0n);
    expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(0xffc00n); // pages 10-19
    bytes.fill(0);
    tail = updateUserBitmap(new UserBitmap(bytes, true, 'test'), 10, 10, true, tail);
    expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(0x3ffffc00n); // pages 10-29
    expect(tail).not.toBe(0n);
  });

  it('is EFAULT when the words it must touch are not in memory, writing nothing', () => {
    const bytes = new Uint8Array(8);
    expect(() => updateUserBitmap(new UserBitmap(bytes, true, 'test'), 100, 0, true, 0n)).toThrow(/EFAULT|not in the process/);
    expect([...bytes]).toEqual(Array(8).fill(0));
  });

  it('keeps dma->bitmap shifted when a read at a shift faults, and shows it on the next read (vfio_iova_dirty_bitmap())', () => {
    // A 10-page dma at bit 10, read into memory that is gone: set, shifted to bits 10-19, EFAULT.
    let kept: bigint | undefined;
    expect(() => updateUserBitmap(new UserBitmap(new Uint8Array(0), true, 'test'), 10, 10, true, 0n, (tail) => (kept = tail))).toThrow(/not in the process/);
    expect(kept).toBe(0x3ffn);
    // Read again from the dma's own first page: its 10 pages, and the 10 the fault left above them.
    const bytes = new Uint8Array(8);
    expect(updateUserBitmap(new UserBitmap(bytes, true, 'test'), 10, 0, true, kept!)).toBe(0x3ffn);
    expect(new DataView(bytes.buffer).getBigUint64(0, true)).toBe(0xfffffn);
    // At no shift a fault changes nothing above the dma's pages.
    kept = undefined;
    expect(() => updateUserBitmap(new UserBitmap(new Uint8Array(0), true, 'test'), 10, 0, true, 5n, (tail) => (kept = tail))).toThrow(/not in the process/);
    expect(kept).toBe(5n);
  });

  it('sets bit ranges ORing, in either byte order', () => {
    const little = new UserBitmap(new Uint8Array(16), true, 'test');
    little.setBits(3, 70);
    expect(toWords(little.bytes)).toEqual([M64 - 7n, 0x7fn]);
    const big = new UserBitmap(new Uint8Array(16), false, 'test');
    big.setBits(3, 70);
    const view = new DataView(big.bytes.buffer);
    expect([view.getBigUint64(0, false), view.getBigUint64(8, false)]).toEqual([M64 - 7n, 0x7fn]);
  });
});
