import { describe, expect, test } from 'vitest';
import { addressDigits, pageSizesOf, paddedHex, preciseSize, readableSize } from './numbers.js';

describe('sizes and addresses', () => {
  test('whole numbers of the largest unit are exact; others get one decimal, rounded down', () => {
    expect(readableSize(0n)).toBe('0 bytes');
    expect(readableSize(1023n)).toBe('1023 bytes');
    expect(readableSize(0x100000n)).toBe('1 MiB');
    expect(readableSize((1n << 48n) - (256n << 20n))).toBe('255.9 TiB');
    expect(readableSize(0xfec00000n)).toBe('3.9 GiB');
    expect(readableSize(1536n)).toBe('1.5 KiB');
    expect(readableSize(1n << 64n)).toBe('16 EiB');
    expect(readableSize((1n << 64n) - 1n)).toBe('15.9 EiB');
  });

  test('hover sizes add the exact byte count when rounded', () => {
    expect(preciseSize(0x100000n)).toBe('1 MiB');
    expect(preciseSize(1536n)).toBe('1.5 KiB (1536 bytes)');
  });

  test('addresses are padded to the aperture, at least 8 digits', () => {
    expect(addressDigits(0xffffn)).toBe(8);
    expect(addressDigits(0xffffffffffffn)).toBe(12);
    expect(paddedHex(0x8000000n, 12)).toBe('0x000008000000');
    expect(paddedHex((1n << 64n) - 1n, 16)).toBe('0xffffffffffffffff');
  });

  test('page-size bitmaps', () => {
    expect(pageSizesOf(0x40201000n)).toEqual([0x1000n, 0x200000n, 0x40000000n]);
    expect(pageSizesOf(0n)).toEqual([]);
  });
});
