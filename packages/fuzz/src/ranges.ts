// Range arithmetic for the reference model, written for the test (not core's helpers): every range
// is inclusive, `{ start, last }`, in bigints.

export interface Range {
  readonly start: bigint;
  readonly last: bigint;
}

export const U64_MAX = (1n << 64n) - 1n;

export const size = (range: Range): bigint => range.last - range.start + 1n;

export const overlaps = (a: Range, b: Range): boolean => a.start <= b.last && b.start <= a.last;

export const contains = (outer: Range, inner: Range): boolean => outer.start <= inner.start && inner.last <= outer.last;

export const alignUp = (value: bigint, unit: bigint): bigint => ((value + unit - 1n) / unit) * unit;

export const alignDown = (value: bigint, unit: bigint): bigint => (value / unit) * unit;

/** Sorted, merged (adjacent ranges joined). */
export function normalize(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const result: Range[] = [];
  for (const range of sorted) {
    const previous = result[result.length - 1];
    if (previous !== undefined && range.start <= previous.last + 1n) {
      if (range.last > previous.last) result[result.length - 1] = { start: previous.start, last: range.last };
    } else {
      result.push({ start: range.start, last: range.last });
    }
  }
  return result;
}

/** `from` minus every range of `minus`. */
export function subtract(from: readonly Range[], minus: readonly Range[]): Range[] {
  let pieces = normalize(from);
  for (const hole of minus) {
    const next: Range[] = [];
    for (const piece of pieces) {
      if (!overlaps(piece, hole)) {
        next.push(piece);
        continue;
      }
      if (piece.start < hole.start) next.push({ start: piece.start, last: hole.start - 1n });
      if (piece.last > hole.last) next.push({ start: hole.last + 1n, last: piece.last });
    }
    pieces = next;
  }
  return pieces;
}

export function intersect(a: readonly Range[], b: readonly Range[]): Range[] {
  const result: Range[] = [];
  for (const x of normalize(a)) {
    for (const y of normalize(b)) {
      const start = x.start > y.start ? x.start : y.start;
      const last = x.last < y.last ? x.last : y.last;
      if (start <= last) result.push({ start, last });
    }
  }
  return normalize(result);
}

/** Each range shrunk inward to whole units; empty ones dropped. */
export function alignInward(ranges: readonly Range[], unit: bigint): Range[] {
  const result: Range[] = [];
  for (const range of ranges) {
    const start = alignUp(range.start, unit);
    const end = alignDown(range.last + 1n, unit);
    if (end > start) result.push({ start, last: end - 1n });
  }
  return result;
}

export const isPowerOfTwo = (value: bigint): boolean => value > 0n && (value & (value - 1n)) === 0n;

export const hex = (value: bigint): string => (value < 0n ? `-0x${(-value).toString(16)}` : `0x${value.toString(16)}`);

export const show = (range: Range): string => `${hex(range.start)}-${hex(range.last)}`;
