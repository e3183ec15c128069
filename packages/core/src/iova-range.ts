import { IoasError } from './errors.js';
import { hex } from './format.js';

/**
 * A range of IO virtual addresses with an **inclusive** `last`, as the kernel reports them (type1's
 * IOVA_RANGE cap, iommufd's `iommu_iova_range`, sysfs `reserved_regions`). Inclusive ends let a range
 * reach 2^64-1, which an exclusive end could not express in 64 bits.
 */
export interface IovaRange {
  /** First address of the range. */
  readonly start: bigint;
  /** Last address of the range, inclusive. */
  readonly last: bigint;
}

/** The largest 64-bit IOVA, 2^64-1. */
export const U64_MAX = (1n << 64n) - 1n;

/**
 * Makes a checked {@link IovaRange} from its first and its **last** address (both inclusive, as the
 * kernel gives them). To make one from a start and a byte count, use {@link rangeOfSize}.
 *
 * @throws {IoasError} `invalid-argument` when `last < start` or either leaves 0 to 2^64-1.
 */
export function iovaRange(start: bigint, last: bigint): IovaRange {
  if (start < 0n || last > U64_MAX || last < start) {
    throw new IoasError('invalid-argument', `invalid IOVA range ${hex(start)}-${hex(last)}: need 0 <= start <= last <= 2^64-1`);
  }
  return { start, last };
}

/**
 * Makes a checked {@link IovaRange} from its first address and a **size in bytes** (`last = start +
 * size - 1`), as map and unmap calls give them. The inverse of {@link rangeSize}; from inclusive
 * ends, use {@link iovaRange}.
 *
 * @throws {IoasError} `invalid-argument` when the size is 0 or the range wraps past 2^64-1.
 */
export function rangeOfSize(start: bigint, size: bigint): IovaRange {
  if (size <= 0n) throw new IoasError('invalid-argument', `invalid size ${hex(size)} at IOVA ${hex(start)}: must be positive`);
  const last = start + size - 1n;
  if (last > U64_MAX) {
    throw new IoasError('invalid-argument', `${hex(size)} bytes at IOVA ${hex(start)} wrap past 2^64-1`);
  }
  return iovaRange(start, last);
}

/**
 * The **size in bytes** of a range, `last - start + 1` (up to 2^64 for the whole space): what
 * {@link rangeOfSize} takes. Use it rather than writing the arithmetic out.
 */
export function rangeSize(range: IovaRange): bigint {
  return range.last - range.start + 1n;
}

/** True when `address` lies in `range`. */
export function rangeContains(range: IovaRange, address: bigint): boolean {
  return address >= range.start && address <= range.last;
}

/** True when every address of `inner` lies in `outer`. */
export function rangeContainsRange(outer: IovaRange, inner: IovaRange): boolean {
  return inner.start >= outer.start && inner.last <= outer.last;
}

/** True when the two ranges share at least one address. */
export function rangesOverlap(a: IovaRange, b: IovaRange): boolean {
  return a.start <= b.last && b.start <= a.last;
}

/** The addresses common to both ranges, or `undefined` when they are disjoint. */
export function intersectRange(a: IovaRange, b: IovaRange): IovaRange | undefined {
  const start = a.start > b.start ? a.start : b.start;
  const last = a.last < b.last ? a.last : b.last;
  return start <= last ? { start, last } : undefined;
}

/** The parts of `a` outside `b`: zero, one or two ranges, in address order. */
export function subtractRange(a: IovaRange, b: IovaRange): IovaRange[] {
  if (!rangesOverlap(a, b)) return [a];
  const parts: IovaRange[] = [];
  if (a.start < b.start) parts.push({ start: a.start, last: b.start - 1n });
  if (a.last > b.last) parts.push({ start: b.last + 1n, last: a.last });
  return parts;
}

/** True when `value` is a power of two (1, 2, 4...). */
export function isPowerOfTwo(value: bigint): boolean {
  return value > 0n && (value & (value - 1n)) === 0n;
}

/** Rounds `value` up to a multiple of `align` (any positive alignment). */
export function alignUp(value: bigint, align: bigint): bigint {
  const remainder = value % align;
  return remainder === 0n ? value : value + align - remainder;
}

/** Rounds `value` down to a multiple of `align` (any positive alignment). */
export function alignDown(value: bigint, align: bigint): bigint {
  return value - (value % align);
}

/**
 * The largest part of `range` whose start and end (last + 1) are multiples of `align`, or
 * `undefined` when no whole aligned block fits. This is how a usable range shrinks to a granule.
 */
export function alignRangeInward(range: IovaRange, align: bigint): IovaRange | undefined {
  const start = alignUp(range.start, align);
  const end = alignDown(range.last + 1n, align);
  return end > start ? { start, last: end - 1n } : undefined;
}

/**
 * Cuts `range` into pieces of at most `chunk` bytes whose boundaries fall on multiples of `chunk`
 * (the first and last pieces may be shorter). Lazily, since a range can hold 2^52 pages.
 */
export function* splitRange(range: IovaRange, chunk: bigint): Generator<IovaRange> {
  if (chunk <= 0n) throw new IoasError('invalid-argument', `invalid chunk size ${hex(chunk)}`);
  let start = range.start;
  for (;;) {
    const boundary = alignDown(start, chunk) + chunk - 1n;
    const last = boundary < range.last ? boundary : range.last;
    yield { start, last };
    if (last === range.last) return;
    start = last + 1n;
  }
}

/** Compares bigints in ascending order, for sorting. */
export function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares ranges by start, then by last, for sorting. */
export function compareRanges(a: IovaRange, b: IovaRange): number {
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  if (a.last !== b.last) return a.last < b.last ? -1 : 1;
  return 0;
}

/**
 * Sorts ranges and merges those that overlap or touch: the normal form every list-taking function
 * here returns. `[0-9], [10-19], [15-30]` becomes `[0-30]`.
 */
export function normalizeRanges(ranges: Iterable<IovaRange>): IovaRange[] {
  const sorted = [...ranges].sort(compareRanges);
  const merged: IovaRange[] = [];
  for (const range of sorted) {
    const previous = merged[merged.length - 1];
    // `previous.last + 1n >= range.start` also merges neighbours that touch (adjacent ranges).
    if (previous !== undefined && previous.last + 1n >= range.start) {
      if (range.last > previous.last) merged[merged.length - 1] = { start: previous.start, last: range.last };
    } else {
      merged.push(range);
    }
  }
  return merged;
}

/** Every address in at least one of the lists, normalised. */
export function unionRanges(...lists: Iterable<IovaRange>[]): IovaRange[] {
  return normalizeRanges(lists.flatMap((list) => [...list]));
}

/** Addresses present in both lists, normalised. Linear in the sum of the list lengths. */
export function intersectRanges(a: Iterable<IovaRange>, b: Iterable<IovaRange>): IovaRange[] {
  const left = normalizeRanges(a);
  const right = normalizeRanges(b);
  const result: IovaRange[] = [];
  let i = 0;
  let j = 0;
  while (i < left.length && j < right.length) {
    const x = left[i]!;
    const y = right[j]!;
    const common = intersectRange(x, y);
    if (common) result.push(common);
    if (x.last < y.last) i++;
    else j++;
  }
  return result;
}

/** Addresses of `a` that are in no range of `b`, normalised. Linear in the sum of the list lengths. */
export function subtractRanges(a: Iterable<IovaRange>, b: Iterable<IovaRange>): IovaRange[] {
  const holes = normalizeRanges(b);
  const result: IovaRange[] = [];
  let j = 0;
  for (const range of normalizeRanges(a)) {
    let start = range.start;
    let exhausted = false;
    while (j < holes.length && holes[j]!.last < start) j++;
    for (let k = j; k < holes.length; k++) {
      const hole = holes[k]!;
      if (hole.start > range.last) break;
      if (hole.start > start) result.push({ start, last: hole.start - 1n });
      if (hole.last >= range.last) {
        exhausted = true;
        break;
      }
      start = hole.last + 1n;
    }
    if (!exhausted) result.push({ start, last: range.last });
  }
  return result;
}

/** True when every address of `inner` is covered by the union of `ranges`. */
export function rangesCover(ranges: Iterable<IovaRange>, inner: IovaRange): boolean {
  return subtractRanges([inner], ranges).length === 0;
}

/** Formats a range as the kernel's sysfs does: `0x8000000-0x80fffff`. */
export function formatRange(range: IovaRange): string {
  if (!isRange(range)) throw new IoasError('invalid-argument', `formatRange: ${describeValue(range)} is not an IOVA range ({ start, last } as bigints)`);
  return `${hex(range.start)}-${hex(range.last)}`;
}

/** True when `value` is an {@link IovaRange}: bigint `start` and `last`, `0 <= start <= last <= 2^64-1`. */
export function isRange(value: unknown): value is IovaRange {
  if (typeof value !== 'object' || value === null) return false;
  const { start, last } = value as { start?: unknown; last?: unknown };
  return typeof start === 'bigint' && typeof last === 'bigint' && start >= 0n && start <= last && last <= U64_MAX;
}

/** Throws `invalid-argument` naming `what` unless `value` is an array of {@link IovaRange}s. */
export function assertRanges(what: string, value: unknown): asserts value is readonly IovaRange[] {
  if (!Array.isArray(value)) throw new IoasError('invalid-argument', `${what}: ${describeValue(value)} is not an array of IOVA ranges`);
  const bad = value.findIndex((range) => !isRange(range));
  if (bad >= 0) throw new IoasError('invalid-argument', `${what}: element ${bad} (${describeValue(value[bad])}) is not an IOVA range ({ start, last } as bigints, start <= last)`);
}

/** A value as a message can show it, whatever it is (even an object with no prototype). */
export function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? `an array of ${value.length}` : 'an object';
}
