/**
 * Random snapshots for property tests: any aperture (up to the whole 64-bit space), paged or
 * windowed, with ranges of every list inside, across and outside the aperture. Mappings and
 * allocations are sorted and disjoint, as a container reports them; everything else may overlap.
 */
import type { ContainerSnapshot } from '@ioas/core';
import fc from 'fast-check';

const U64_MAX = (1n << 64n) - 1n;
const hex = (value: bigint): string => `0x${value.toString(16)}`;

/** A range as bigints. */
export interface Range {
  start: bigint;
  last: bigint;
}

const apertureArbitrary: fc.Arbitrary<Range> = fc.oneof(
  fc.constant({ start: 0n, last: U64_MAX }),
  fc.constant({ start: 0n, last: 0xffffffffffffn }),
  fc.tuple(fc.bigInt({ min: 0n, max: 1n << 40n }), fc.bigInt({ min: 1n, max: 1n << 48n })).map(([start, size]) => ({ start, last: start + size - 1n })),
);

/** A range near `aperture`: mostly inside, sometimes across an edge or outside it. */
function rangeNear(aperture: Range): fc.Arbitrary<Range> {
  const size = aperture.last - aperture.start + 1n;
  const low = aperture.start > 0x100000n ? aperture.start - 0x100000n : 0n;
  const length = fc.oneof(fc.bigInt({ min: 1n, max: 0x10000n }), fc.bigInt({ min: 1n, max: size }));
  return fc.tuple(fc.bigInt({ min: low, max: aperture.last }), length).map(([start, bytes]) => ({ start, last: start + bytes - 1n > U64_MAX ? U64_MAX : start + bytes - 1n }));
}

/** Sorted, disjoint ranges: what `mappings` and `allocations` are in a real snapshot. */
function disjoint(aperture: Range, max: number): fc.Arbitrary<Range[]> {
  return fc.array(rangeNear(aperture), { maxLength: max }).map((ranges) => {
    const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    const kept: Range[] = [];
    for (const range of sorted) if (kept.length === 0 || range.start > kept[kept.length - 1]!.last) kept.push(range);
    return kept;
  });
}

/**
 * A random valid snapshot (as `parseSnapshot` accepts it). `disjoint`: windows and doorbells do not
 * overlap each other either, as in every snapshot a container writes.
 */
export function snapshotArbitrary(options: { maxMappings?: number; disjoint?: boolean } = {}): fc.Arbitrary<ContainerSnapshot> {
  return apertureArbitrary.chain((aperture) => {
    const near = rangeNear(aperture);
    const size = aperture.last - aperture.start + 1n;
    return fc
      .record({
        model: fc.constantFrom('paged' as const, 'windowed' as const),
        windowCount: fc.integer({ min: 1, max: 12 }),
        windowSize: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: size > U64_MAX ? U64_MAX : size }), fc.constant((size + 7n) / 8n)),
        kernelRanges: fc.option(fc.array(near, { maxLength: 4 }), { nil: null }),
        windows: options.disjoint === true ? disjoint(aperture, 3) : fc.array(near, { maxLength: 3 }),
        reserved: fc.array(
          fc.record({
            range: near,
            kind: fc.constantFrom('msi' as const, 'direct' as const, 'direct-relaxable' as const, 'reserved' as const),
            source: fc.constantFrom('sysfs' as const, 'kernel-ranges' as const, 'platform' as const, 'backend' as const, 'user' as const),
            origin: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }),
          }),
          { maxLength: 4 },
        ),
        usable: fc.array(near, { maxLength: 4 }),
        mappings: disjoint(aperture, options.maxMappings ?? 24),
        allocations: disjoint(aperture, 6),
        doorbells: (options.disjoint === true ? disjoint(aperture, 3) : fc.array(near, { maxLength: 3 })).chain((ranges) =>
          fc.tuple(...ranges.map((range) => fc.record({ range: fc.constant(range), index: fc.nat(7), mappedBy: fc.constantFrom('sdk' as const, 'kernel' as const, 'hardware' as const) }))),
        ),
        hostAddress: fc.boolean(),
      })
      .map(
        (drawn): ContainerSnapshot => ({
          version: 1,
          title: 'random',
          model: drawn.model,
          aperture: { start: hex(aperture.start), last: hex(aperture.last) },
          ioPageSizes: '0x1000',
          kernelRanges: drawn.kernelRanges === null ? null : drawn.kernelRanges.map((range) => ({ start: hex(range.start), last: hex(range.last) })),
          windowGeometry: drawn.model === 'windowed' ? { count: drawn.windowCount, size: hex(drawn.windowSize), maxCount: 256 } : null,
          windows: drawn.windows.map((range) => ({ start: hex(range.start), last: hex(range.last) })),
          reserved: drawn.reserved.map((region) => ({
            start: hex(region.range.start),
            last: hex(region.range.last),
            kind: region.kind,
            source: region.source,
            ...(region.origin === undefined ? {} : { origin: region.origin }),
          })),
          usable: drawn.usable.map((range) => ({ start: hex(range.start), last: hex(range.last) })),
          mappings: drawn.mappings.map((range, index) => ({
            iova: { start: hex(range.start), last: hex(range.last) },
            ...(drawn.hostAddress ? { address: hex(0x7f0000000000n + BigInt(index) * 0x100000000n) } : {}),
            access: { read: index % 3 !== 1, write: index % 2 === 0 },
          })),
          allocations: drawn.allocations.map((range) => ({ start: hex(range.start), last: hex(range.last) })),
          msi: { model: 'explicit', doorbells: drawn.doorbells.map((doorbell) => ({ index: doorbell.index, iova: { start: hex(doorbell.range.start), last: hex(doorbell.range.last) }, mappedBy: doorbell.mappedBy })) },
          budget: { mappings: drawn.mappings.length, bytesMapped: '0x0', left: null },
        }),
      );
  });
}
