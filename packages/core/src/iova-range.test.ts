import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IoasError } from './errors.js';
import {
  alignRangeInward,
  intersectRange,
  intersectRanges,
  iovaRange,
  normalizeRanges,
  rangeOfSize,
  rangesCover,
  rangeSize,
  splitRange,
  subtractRange,
  subtractRanges,
  U64_MAX,
  unionRanges,
  type IovaRange,
} from './iova-range.js';

// The reference model: a set of addresses in a 64-address window, kept as a bitmask. The window
// sits at 0 or at the very top of the 64-bit space, where off-by-one errors at 2^64-1 would show.
const WIDTH = 64n;
const bases = [0n, U64_MAX - WIDTH + 1n];

function toMask(ranges: readonly IovaRange[], base: bigint): bigint {
  let mask = 0n;
  for (const range of ranges) {
    for (let address = range.start; address <= range.last; address++) mask |= 1n << (address - base);
  }
  return mask;
}

const arbitraryList = (base: bigint) =>
  fc.array(
    fc.tuple(fc.bigInt(0n, WIDTH - 1n), fc.bigInt(0n, WIDTH - 1n)).map(([a, b]) => (a <= b ? { start: base + a, last: base + b } : { start: base + b, last: base + a })),
    { maxLength: 6 },
  );

function isNormal(ranges: readonly IovaRange[]): boolean {
  return ranges.every((range, index) => range.start <= range.last && (index === 0 || ranges[index - 1]!.last + 1n < range.start));
}

describe.each(bases)('range algebra against a bitmask model, window at %s', (base) => {
  it('normalize and union keep the addresses and give disjoint, non-adjacent, sorted ranges', () => {
    fc.assert(
      fc.property(arbitraryList(base), arbitraryList(base), (a, b) => {
        const union = unionRanges(a, b);
        expect(isNormal(union)).toBe(true);
        expect(toMask(union, base)).toBe(toMask(a, base) | toMask(b, base));
        expect(toMask(normalizeRanges(a), base)).toBe(toMask(a, base));
      }),
    );
  });

  it('intersectRanges and subtractRanges match set intersection and difference', () => {
    fc.assert(
      fc.property(arbitraryList(base), arbitraryList(base), (a, b) => {
        const both = intersectRanges(a, b);
        const difference = subtractRanges(a, b);
        expect(isNormal(both)).toBe(true);
        expect(isNormal(difference)).toBe(true);
        expect(toMask(both, base)).toBe(toMask(a, base) & toMask(b, base));
        expect(toMask(difference, base)).toBe(toMask(a, base) & ~toMask(b, base));
      }),
    );
  });

  it('single-range intersect, subtract and cover agree with the model', () => {
    fc.assert(
      fc.property(arbitraryList(base), arbitraryList(base), (a, b) => {
        const [x, y] = [a[0], b[0]];
        if (x === undefined || y === undefined) return;
        const common = intersectRange(x, y);
        expect(toMask(common ? [common] : [], base)).toBe(toMask([x], base) & toMask([y], base));
        expect(toMask(subtractRange(x, y), base)).toBe(toMask([x], base) & ~toMask([y], base));
        expect(rangesCover(a, y)).toBe((toMask([y], base) & ~toMask(a, base)) === 0n);
      }),
    );
  });

  it('alignRangeInward gives the largest aligned sub-range', () => {
    fc.assert(
      fc.property(arbitraryList(base), fc.constantFrom(1n, 2n, 4n, 8n, 16n), (list, align) => {
        const range = list[0];
        if (range === undefined) return;
        const aligned = alignRangeInward(range, align);
        // Model: every aligned block fully inside the range.
        let expected = 0n;
        for (let block = base; block < base + WIDTH; block += align) {
          if (block >= range.start && block + align - 1n <= range.last) expected |= ((1n << align) - 1n) << (block - base);
        }
        expect(toMask(aligned ? [aligned] : [], base)).toBe(expected);
      }),
    );
  });

  it('splitRange covers the range with chunk-bounded pieces', () => {
    fc.assert(
      fc.property(arbitraryList(base), fc.constantFrom(1n, 4n, 16n), (list, chunk) => {
        const range = list[0];
        if (range === undefined) return;
        const pieces = [...splitRange(range, chunk)];
        expect(toMask(pieces, base)).toBe(toMask([range], base));
        for (const piece of pieces) {
          expect(piece.last - piece.start + 1n <= chunk).toBe(true);
          expect(piece.start / chunk).toBe(piece.last / chunk);
        }
      }),
    );
  });
});

describe('range constructors and edges', () => {
  it('handles the whole 64-bit space', () => {
    const all = iovaRange(0n, U64_MAX);
    expect(rangeSize(all)).toBe(1n << 64n);
    expect(subtractRanges([all], [{ start: 0n, last: U64_MAX }])).toEqual([]);
    expect(subtractRanges([all], [{ start: 1n, last: U64_MAX - 1n }])).toEqual([
      { start: 0n, last: 0n },
      { start: U64_MAX, last: U64_MAX },
    ]);
    expect(normalizeRanges([{ start: U64_MAX, last: U64_MAX }, { start: 0n, last: U64_MAX - 1n }])).toEqual([all]);
  });

  it('rejects empty, negative and wrapping ranges with invalid-argument', () => {
    expect(() => iovaRange(5n, 4n)).toThrow(IoasError);
    expect(() => iovaRange(-1n, 4n)).toThrow(/invalid IOVA range/);
    expect(() => rangeOfSize(U64_MAX, 2n)).toThrow(/wrap past 2\^64-1/);
    expect(() => rangeOfSize(0n, 0n)).toThrow(/must be positive/);
    expect(rangeOfSize(U64_MAX, 1n)).toEqual({ start: U64_MAX, last: U64_MAX });
  });

  it('computes the x86 usable ranges from the aperture and the MSI window', () => {
    const aperture = { start: 0n, last: 0x7fffffffffn };
    const msi = { start: 0xfee00000n, last: 0xfeefffffn };
    // docs/kernel-rules.md#the-iova-range-capability: the IOVA_RANGE cap the kernel reported on q35 + intel-iommu.
    expect(subtractRanges([aperture], [msi])).toEqual([
      { start: 0n, last: 0xfedfffffn },
      { start: 0xfef00000n, last: 0x7fffffffffn },
    ]);
  });
});

describe('usableRanges', () => {
  it('cuts every blocking reserved kind out and keeps direct-relaxable (kernel-rules.md#reserved-region-types)', async () => {
    const { usableRanges } = await import('./types.js');
    const aperture = [{ start: 0n, last: (1n << 39n) - 1n }];
    const reserved = [
      { start: 0n, last: 0xffffffn, kind: 'direct-relaxable' as const, source: 'sysfs' as const },
      { start: 0xfee00000n, last: 0xfeefffffn, kind: 'msi' as const, source: 'sysfs' as const },
    ];
    expect(usableRanges(aperture, reserved)).toEqual([
      { start: 0n, last: 0xfedfffffn },
      { start: 0xfef00000n, last: (1n << 39n) - 1n },
    ]);
  });
});
