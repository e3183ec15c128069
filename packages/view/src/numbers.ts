/**
 * Sizes and addresses as the map prints them. Sizes use core's `formatSize` when it gives a whole
 * number of the largest unit (`1 MiB`); an IOVA space is full of sizes that are not (the 256 TiB
 * aperture minus a 256 MiB guest is `268435200 MiB` to `formatSize`), so those get one decimal.
 */
import { BINARY_UNITS, formatSize, hex } from '@ioas/core';

/** The largest unit `bytes` holds at least one of, or `undefined` under 1 KiB. */
function unitOf(bytes: bigint): readonly [bigint, string] | undefined {
  return BINARY_UNITS.find(([unit]) => bytes >= unit);
}

/** True when {@link readableSize} is exact for `bytes`: a whole number of its largest unit, or under 1 KiB. */
export function isExactSize(bytes: bigint): boolean {
  const unit = unitOf(bytes);
  return unit === undefined || bytes % unit[0] === 0n;
}

/**
 * `bytes` for people, in the largest unit it holds: core's `formatSize` when that is a whole
 * number (`64 MiB`), else one decimal rounded **down** (`255.9 TiB` for 256 TiB less 256 MiB,
 * which `formatSize` would write `268435200 MiB`), so that a size is never shown larger than it is.
 */
export function readableSize(bytes: bigint): string {
  const unit = unitOf(bytes);
  if (unit === undefined || bytes % unit[0] === 0n) return formatSize(bytes);
  const tenths = (bytes * 10n) / unit[0];
  return `${tenths / 10n}.${tenths % 10n} ${unit[1]}`;
}

/** {@link readableSize} with the exact byte count after it when it had to round: for hover text. */
export function preciseSize(bytes: bigint): string {
  return isExactSize(bytes) ? formatSize(bytes) : `${readableSize(bytes)} (${bytes} bytes)`;
}

/** Hex digits needed to print every address up to `last`, at least 8, so that a column of addresses lines up. */
export function addressDigits(last: bigint): number {
  return Math.max(8, last.toString(16).length);
}

/** An address as core's `hex` prints it, zero-padded to `digits` hex digits. */
export function paddedHex(value: bigint, digits: number): string {
  return `0x${hex(value).slice(2).padStart(digits, '0')}`;
}

/** The IO page sizes a bitmap holds (bit n set: 2^n-byte pages), smallest first. */
export function pageSizesOf(bitmap: bigint): bigint[] {
  const sizes: bigint[] = [];
  for (let bit = 0n; bitmap >> bit !== 0n; bit++) if ((bitmap >> bit) & 1n) sizes.push(1n << bit);
  return sizes;
}
