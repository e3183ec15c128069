import { IoasError, parseSnapshot, type ContainerSnapshot } from '@ioas/core';
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { snapshotArbitrary, type Range } from './__fixtures__/arbitrary.js';
import { directRelaxableSnapshot, exampleSnapshot, manyMappingsSnapshot, scenarioSnapshot, windowsSnapshot } from './__fixtures__/snapshots.js';
import { layoutIovaMap, type IovaMapLayout, type MapRow } from './layout.js';

const MiB = 1n << 20n;

/** The rows as `[start, last, kind]`, for comparing a whole map at a glance. */
function shape(layout: IovaMapLayout): [string, string, string][] {
  return layout.rows.map((row) => [`0x${row.start.toString(16)}`, `0x${row.last.toString(16)}`, row.kind]);
}

describe('the example platforms', () => {
  let arm: IovaMapLayout;
  let p4080: IovaMapLayout;
  let vtd: IovaMapLayout;
  beforeAll(async () => {
    arm = layoutIovaMap(await exampleSnapshot('arm-smmuv3'));
    p4080 = layoutIovaMap(await exampleSnapshot('p4080'));
    vtd = layoutIovaMap(await exampleSnapshot('x86-vtd'));
  });

  test('arm-smmuv3: the MSI hole sits between two mapped rows, then a free gap labelled with its size', () => {
    expect(shape(arm)).toEqual([
      ['0x0', '0x7ffffff', 'mapped'],
      ['0x8000000', '0x80fffff', 'msi-doorbell'],
      ['0x8100000', '0xfffffff', 'mapped'],
      ['0x10000000', '0xffffffffffff', 'free'],
    ]);
    const [below, hole, above, rest] = arm.rows as [MapRow, MapRow, MapRow, MapRow];
    expect(hole.space).toEqual({ kind: 'reserved', regions: [{ start: 0x8000000n, last: 0x80fffffn, kind: 'msi', source: 'sysfs', origin: '/sys/kernel/iommu_groups/4/reserved_regions' }] });
    expect(hole.use.doorbell).toEqual({ index: 0, mappedBy: 'kernel', range: { start: 0x8000000n, last: 0x80fffffn } });
    expect(hole.label).toBe('MSI doorbell 0 (kernel), reserved msi 1 MiB (sysfs: /sys/kernel/iommu_groups/4/reserved_regions)');
    expect(hole.hover.split('\n')).toEqual([
      '0x8000000-0x80fffff (1 MiB)',
      'reserved msi 0x8000000-0x80fffff, from sysfs: /sys/kernel/iommu_groups/4/reserved_regions',
      'MSI doorbell 0 at 0x8000000-0x80fffff, mapped by the kernel',
    ]);
    expect(below.label).toBe('mapped 128 MiB (1 mapping, rw)');
    expect(below.hover).toContain('host 0x7f0000000000-0x7f0007ffffff');
    expect(above.label).toBe('mapped 127 MiB (1 mapping, rw)');
    expect(rest.gap).toBe(true);
    expect(rest.label).toBe('free 255.9 TiB');
    expect(rest.hover).toContain('(255.9 TiB (281474708275200 bytes))');
    expect([below.gap, hole.gap, above.gap]).toEqual([false, false, false]);
    expect(arm.windowsMatter).toBe(false);
    expect(arm.rows.every((row) => row.window === null)).toBe(true);
  });

  test('arm-smmuv3: regions are drawn taller than gaps, and larger regions taller than smaller ones', () => {
    const [below, hole, , rest] = arm.rows as [MapRow, MapRow, MapRow, MapRow];
    expect(below.height).toBeGreaterThan(hole.height);
    expect(hole.height).toBeGreaterThanOrEqual(rest.height - 4);
    // 256 TiB of free space is drawn no taller than a 1 MiB doorbell: the axis is broken.
    expect(rest.height).toBeLessThan(below.height);
  });

  test('p4080: RAM in windows 0-3 one row each, a doorbell in each of windows 4-6, window 7 disabled', () => {
    expect(shape(p4080)).toEqual([
      ['0x0', '0x3ffffff', 'mapped'],
      ['0x4000000', '0x7ffffff', 'mapped'],
      ['0x8000000', '0xbffffff', 'mapped'],
      ['0xc000000', '0xfffffff', 'mapped'],
      ['0x10000000', '0x13ffffff', 'msi-doorbell'],
      ['0x14000000', '0x17ffffff', 'msi-doorbell'],
      ['0x18000000', '0x1bffffff', 'msi-doorbell'],
      ['0x1c000000', '0x1fffffff', 'window-disabled'],
    ]);
    expect(p4080.windowsMatter).toBe(true);
    p4080.rows.slice(0, 4).forEach((row, index) => {
      expect(row.window).toMatchObject({ kind: 'window', hardware: true, first: index, last: index });
      expect(row.use.mapped).toMatchObject({ count: 1, bytes: 64n * MiB, clustered: false, mapping: { range: { start: 0n, last: 0xfffffffn }, access: 'rw' } });
      expect(row.label).toBe(`window ${index}: mapped 64 MiB (rw, 1 mapping of 256 MiB)`);
    });
    p4080.rows.slice(4, 7).forEach((row, index) => {
      expect(row.window).toMatchObject({ kind: 'window', first: index + 4 });
      expect(row.use.doorbell).toMatchObject({ index, mappedBy: 'sdk' });
      // The banks' windows are not usable for mappings (they are not reserved either).
      expect(row.space).toEqual({ kind: 'unusable', reason: 'not-usable' });
    });
    const disabled = p4080.rows[7]!;
    expect(disabled.window).toEqual({ kind: 'window-disabled', hardware: true, first: 7, last: 7, range: { start: 0x1c000000n, last: 0x1fffffffn } });
    expect(disabled.space.kind).toBe('usable');
    expect(disabled.gap).toBe(false);
    expect(disabled.label).toBe('window 7 disabled 64 MiB');
    expect(p4080.legend.map((entry) => entry.kind)).toEqual(['msi-doorbell', 'mapped', 'window-disabled', 'unusable', 'free', 'window']);
  });

  test('x86-vtd: the fixed MSI range below 4 GiB, mapped by the hardware, between two free gaps', () => {
    expect(shape(vtd)).toEqual([
      ['0x0', '0x1fffff', 'mapped'],
      ['0x200000', '0xfedfffff', 'free'],
      ['0xfee00000', '0xfeefffff', 'msi-doorbell'],
      ['0xfef00000', '0x7fffffffff', 'free'],
    ]);
    expect(vtd.rows[1]!.label).toBe('free 3.9 GiB');
    expect(vtd.rows[2]!.use.doorbell?.mappedBy).toBe('hardware');
    expect(vtd.rows[2]!.hover).toContain('fixed in hardware, never translated');
  });

  test('the summary fields come from the snapshot', () => {
    expect(arm.aperture).toEqual({ start: 0n, last: 0xffffffffffffn, size: 1n << 48n });
    expect(arm.ioPageSizes).toEqual([0x1000n, 0x200000n, 0x40000000n]);
    expect(arm.budget).toEqual({ mappings: 2, bytesMapped: 0xff00000n, left: 65533 });
    expect(p4080.windowGeometry).toEqual({ count: 8, size: 64n * MiB, maxCount: 256 });
    expect(p4080.msiModel).toBe('explicit');
    expect(arm.clustered).toBe(false);
  });
});

describe('windows, allocations and reserved kinds', () => {
  test('adjacent disabled windows merge into one row', async () => {
    const layout = layoutIovaMap(
      await scenarioSnapshot({
        platform: 'p4080',
        steps: [{ geometry: { aperture: '512M@0', windows: 8 } }, { map: { iova: 0, size: '64M', page: '64M' } }],
      }),
    );
    expect(shape(layout)).toEqual([
      ['0x0', '0x3ffffff', 'mapped'],
      ['0x4000000', '0x1fffffff', 'window-disabled'],
    ]);
    expect(layout.rows[1]!.window).toMatchObject({ first: 1, last: 7 });
    expect(layout.rows[1]!.label).toBe('windows 1–7 disabled 448 MiB');
  });

  test('a paged container with createWindow: windows show, space outside them is unusable, an allocation shows', async () => {
    const layout = layoutIovaMap(await windowsSnapshot());
    expect(layout.windowsMatter).toBe(true);
    expect(shape(layout)).toEqual([
      ['0x0', '0x7ffffff', 'unusable'],
      ['0x8000000', '0x80fffff', 'msi-doorbell'],
      ['0x8100000', '0x3fffffff', 'unusable'],
      ['0x40000000', '0x43ffffff', 'mapped'],
      ['0x44000000', '0x441fffff', 'allocated'],
      ['0x44200000', '0x7fffffff', 'free'],
      ['0x80000000', '0xffffffff', 'unusable'],
      ['0x100000000', '0x1001fffff', 'free'],
      ['0x100200000', '0xffffffffffff', 'unusable'],
    ]);
    const window = { kind: 'window', hardware: false, first: 0, last: 0, range: { start: 0x40000000n, last: 0x7fffffffn } };
    expect(layout.rows[3]!.window).toEqual(window);
    expect(layout.rows[4]!.window).toEqual(window);
    expect(layout.rows[7]!.window).toMatchObject({ first: 1, last: 1 });
    expect(layout.rows[0]!.window).toBeNull();
    expect(layout.rows[0]!.space).toEqual({ kind: 'unusable', reason: 'outside-windows' });
    expect(layout.rows[0]!.label).toBe('unusable 128 MiB (outside every window)');
    expect(layout.rows[0]!.gap).toBe(true);
    expect(layout.rows[4]!.label).toBe('allocated 2 MiB (not mapped)');
    expect(layout.rows[4]!.use.allocated).toEqual({ count: 1, bytes: 2n * MiB, clustered: false, range: { start: 0x44000000n, last: 0x441fffffn } });
    expect(layout.rows[3]!.hover).toContain('in window 0x40000000-0x7fffffff (created with createWindow)');
  });

  test('a direct-relaxable reserved range gets its own kind, words and source', async () => {
    const layout = layoutIovaMap(await directRelaxableSnapshot());
    const first = layout.rows[0]!;
    expect(first.kind).toBe('reserved-direct-relaxable');
    expect(first.label).toBe('reserved direct-relaxable 16 MiB (sysfs: /sys/kernel/iommu_groups/7/reserved_regions)');
    expect(layout.legend.map((entry) => entry.kind)).toContain('reserved-direct-relaxable');
  });

  test("outside the kernel's ranges is unusable with that reason, and a plan's mapping has no host address", () => {
    const snapshot: ContainerSnapshot = {
      ...baseSnapshot(),
      kernelRanges: [{ start: '0x0', last: '0xffff' }],
      usable: [{ start: '0x0', last: '0xffff' }],
      mappings: [{ iova: { start: '0x0', last: '0xfff' }, access: { read: true, write: false } }],
    };
    const layout = layoutIovaMap(snapshot);
    expect(shape(layout)).toEqual([
      ['0x0', '0xfff', 'mapped'],
      ['0x1000', '0xffff', 'free'],
      ['0x10000', '0xffffffff', 'unusable'],
    ]);
    expect(layout.rows[0]!.label).toBe('mapped 4 KiB (1 mapping, r)');
    expect(layout.rows[0]!.hover).toContain('no host memory yet');
    // 4 GiB less 64 KiB, rounded down: a size is never shown larger than it is.
    expect(layout.rows[2]!.label).toBe("unusable 3.9 GiB (outside the kernel's IOVA ranges)");
  });
});

/** A 4 GiB paged snapshot with nothing in it. */
function baseSnapshot(): ContainerSnapshot {
  return {
    version: 1,
    title: 'base',
    model: 'paged',
    aperture: { start: '0x0', last: '0xffffffff' },
    ioPageSizes: '0x1000',
    kernelRanges: null,
    windowGeometry: null,
    windows: [],
    reserved: [],
    usable: [{ start: '0x0', last: '0xffffffff' }],
    mappings: [],
    allocations: [],
    msi: { model: 'none', doorbells: [] },
    budget: { mappings: 0, bytesMapped: '0x0', left: null },
  };
}

/** What the snapshot says about one address, worked out the slow way: the oracle the layout is checked against. */
function factsAt(snapshot: ContainerSnapshot, address: bigint) {
  const inside = (range: { start: string; last: string }) => BigInt(range.start) <= address && address <= BigInt(range.last);
  return {
    reserved: snapshot.reserved.filter(inside),
    usable: snapshot.usable.some(inside),
    doorbells: snapshot.msi.doorbells.filter((doorbell) => inside(doorbell.iova)),
    mappings: snapshot.mappings.filter((mapping) => inside(mapping.iova)),
    allocations: snapshot.allocations.filter(inside),
  };
}

function overlapBytes(a: Range, b: Range): bigint {
  const start = a.start > b.start ? a.start : b.start;
  const last = a.last < b.last ? a.last : b.last;
  return last >= start ? last - start + 1n : 0n;
}

describe('any snapshot', () => {
  test('rows cover the aperture exactly, in address order, with no overlap, and the drawing offsets add up', () => {
    fc.assert(
      fc.property(snapshotArbitrary(), fc.integer({ min: 16, max: 60 }), (snapshot, maxRows) => {
        const layout = layoutIovaMap(snapshot, { maxRows });
        expect(layout.rows.length).toBeGreaterThan(0);
        expect(layout.rows[0]!.start).toBe(BigInt(snapshot.aperture.start));
        expect(layout.rows.at(-1)!.last).toBe(BigInt(snapshot.aperture.last));
        let offset = 0;
        layout.rows.forEach((row, index) => {
          expect(row.index).toBe(index);
          expect(row.last).toBeGreaterThanOrEqual(row.start);
          expect(row.size).toBe(row.last - row.start + 1n);
          if (index > 0) expect(row.start).toBe(layout.rows[index - 1]!.last + 1n);
          expect(row.offset).toBe(offset);
          expect(row.height).toBeGreaterThan(0);
          offset += row.height;
          expect(row.label).not.toBe('');
          expect(row.hover.split('\n')[0]).toMatch(/^0x[0-9a-f]+-0x[0-9a-f]+ \(/);
        });
        expect(layout.height).toBe(offset);
      }),
      { numRuns: 300 },
    );
  });

  test('every row says what the snapshot says about its first and last byte', () => {
    fc.assert(
      fc.property(snapshotArbitrary(), (snapshot) => {
        const layout = layoutIovaMap(snapshot, { maxRows: 100_000 });
        expect(layout.clustered).toBe(false);
        for (const row of layout.rows) {
          const first = factsAt(snapshot, row.start);
          // Rows are cut at every boundary: the last byte is in exactly the same ranges as the first
          // (except usable, which a reserved range hides: a snapshot never has both).
          const last = factsAt(snapshot, row.last);
          expect(first.reserved.length > 0 ? { ...last, usable: first.usable } : last).toEqual(first);
          if (first.reserved.length > 0) {
            expect(row.space.kind).toBe('reserved');
            if (row.space.kind === 'reserved') expect(row.space.regions.map((region) => `0x${region.start.toString(16)}-0x${region.last.toString(16)}`)).toEqual(first.reserved.map((region) => `${region.start}-${region.last}`));
          } else expect(row.space.kind).toBe(first.usable ? 'usable' : 'unusable');
          expect(row.use.doorbell?.index).toBe(first.doorbells[0]?.index);
          expect(row.use.mapped?.mapping?.range.start).toBe(first.mappings[0] === undefined ? undefined : BigInt(first.mappings[0].iova.start));
          expect(row.use.allocated?.range?.start).toBe(first.allocations[0] === undefined ? undefined : BigInt(first.allocations[0].start));
          const expectedKind =
            first.doorbells.length > 0 ? 'msi-doorbell' : first.mappings.length > 0 ? 'mapped' : first.allocations.length > 0 ? 'allocated' : first.reserved.length > 0 ? undefined : row.window?.kind === 'window-disabled' ? 'window-disabled' : first.usable ? 'free' : 'unusable';
          if (expectedKind === undefined) expect(row.kind).toMatch(/^reserved/);
          else expect(row.kind).toBe(expectedKind);
          expect(row.gap).toBe(row.kind === 'free' || row.kind === 'unusable');
        }
      }),
      { numRuns: 300 },
    );
  });

  test('hardware windows are enabled exactly when something is mapped, a doorbell or a window in them', () => {
    fc.assert(
      fc.property(
        snapshotArbitrary().filter((snapshot) => snapshot.model === 'windowed' && BigInt(snapshot.windowGeometry!.size) > 0n),
        (snapshot) => {
          const layout = layoutIovaMap(snapshot, { maxRows: 100_000 });
          const start = BigInt(snapshot.aperture.start);
          const size = BigInt(snapshot.windowGeometry!.size);
          const ranges = [...snapshot.mappings.map((mapping) => mapping.iova), ...snapshot.msi.doorbells.map((doorbell) => doorbell.iova), ...snapshot.windows].map((range) => ({ start: BigInt(range.start), last: BigInt(range.last) }));
          for (const row of layout.rows) {
            const position = (row.start - start) / size;
            if (position >= BigInt(snapshot.windowGeometry!.count)) {
              expect(row.window).toBeNull();
              continue;
            }
            const end = start + (position + 1n) * size - 1n;
            const window = { start: start + position * size, last: end < BigInt(snapshot.aperture.last) ? end : BigInt(snapshot.aperture.last) };
            const enabled = ranges.some((range) => overlapBytes(range, window) > 0n);
            expect(row.window?.kind).toBe(enabled ? 'window' : 'window-disabled');
            expect(row.window!.first).toBe(Number(position));
            if (enabled) expect(row.window!.last).toBe(Number(position));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('neighbouring rows always differ in what they show: identical neighbours are merged', () => {
    const signature = (row: MapRow) =>
      JSON.stringify({
        space: row.space.kind === 'reserved' ? row.space.regions.map((region) => `${region.start}-${region.last}`) : row.space,
        window: row.window === null ? null : row.window.kind === 'window' ? `${row.window.kind}${row.window.hardware ? '' : row.window.first}${row.window.hardware ? row.window.first : ''}` : 'disabled',
        doorbell: row.use.doorbell === undefined ? null : `${row.use.doorbell.index}@${row.use.doorbell.range.start}-${row.use.doorbell.range.last}`,
        mapping: row.use.mapped?.mapping?.range.start.toString() ?? null,
        allocation: row.use.allocated?.range?.start.toString() ?? null,
      });
    fc.assert(
      // Overlapping windows or doorbells (which no container writes) rightly stay apart with only the first shown.
      fc.property(snapshotArbitrary({ disjoint: true }), (snapshot) => {
        const layout = layoutIovaMap(snapshot, { maxRows: 100_000 });
        for (let index = 1; index < layout.rows.length; index++) expect(signature(layout.rows[index]!)).not.toBe(signature(layout.rows[index - 1]!));
      }),
      { numRuns: 300 },
    );
  });

  test('past maxRows, clustered rows count the mappings they hold and the bytes they map exactly', () => {
    fc.assert(
      fc.property(snapshotArbitrary({ maxMappings: 60 }), fc.integer({ min: 16, max: 30 }), (snapshot, maxRows) => {
        const layout = layoutIovaMap(snapshot, { maxRows });
        const mappings = snapshot.mappings.map((mapping) => ({ start: BigInt(mapping.iova.start), last: BigInt(mapping.iova.last) }));
        let bytes = 0n;
        for (const row of layout.rows) {
          const touching = mappings.filter((mapping) => overlapBytes(mapping, row) > 0n);
          const mapped = touching.reduce((total, mapping) => total + overlapBytes(mapping, row), 0n);
          if (row.use.mapped === undefined) expect(touching).toEqual([]);
          else {
            expect(row.use.mapped.count).toBe(touching.length);
            expect(row.use.mapped.bytes).toBe(mapped);
          }
          bytes += mapped;
        }
        // Every mapped byte inside the aperture is in some row, once.
        const aperture = { start: BigInt(snapshot.aperture.start), last: BigInt(snapshot.aperture.last) };
        expect(bytes).toBe(mappings.reduce((total, mapping) => total + overlapBytes(mapping, aperture), 0n));
      }),
      { numRuns: 300 },
    );
  });

  test('overlapping, unsorted mappings (no container reports them) still lay out without throwing', () => {
    fc.assert(
      fc.property(snapshotArbitrary(), fc.array(fc.tuple(fc.bigInt({ min: 0n, max: 0xffffn }), fc.bigInt({ min: 0n, max: 0xffffn })), { maxLength: 40 }), fc.integer({ min: 16, max: 40 }), (snapshot, pairs, maxRows) => {
        const mappings = pairs.map(([a, b]) => ({ iova: { start: `0x${(a < b ? a : b).toString(16)}`, last: `0x${(a < b ? b : a).toString(16)}` }, access: { read: true, write: true } }));
        const layout = layoutIovaMap({ ...snapshot, mappings }, { maxRows });
        expect(layout.rows.at(-1)!.last).toBe(BigInt(snapshot.aperture.last));
      }),
      { numRuns: 200 },
    );
  });
});

describe('scale', () => {
  // A million mappings built and laid out (20-70 s beside a busy machine): a timeout, not a speed bound.
  test('a million mappings make at most maxRows rows (plus a few), split at the big holes', () => {
    const { snapshot, holes } = manyMappingsSnapshot(1_000_000, 10_000);
    const started = performance.now();
    const layout = layoutIovaMap(snapshot);
    const elapsed = performance.now() - started;
    expect(layout.clustered).toBe(true);
    expect(layout.rows.length).toBeLessThanOrEqual(layout.maxRows + 4);
    expect(layout.rows.length).toBeGreaterThan(layout.maxRows / 2);
    const mapped = layout.rows.filter((row) => row.use.mapped !== undefined);
    expect(mapped.reduce((total, row) => total + row.use.mapped!.count, 0)).toBe(1_000_000);
    expect(mapped.reduce((total, row) => total + row.use.mapped!.bytes, 0n)).toBe(1_000_000n * 0x1000n);
    // Each 1 GiB hole between the groups is split at, so it shows as its own gap (the first holds the MSI window).
    for (const hole of holes.slice(1)) expect(layout.rows.some((row) => row.start === hole.start && row.last === hole.last && row.kind === 'free')).toBe(true);
    const cluster = mapped.find((row) => row.use.mapped!.clustered)!;
    // Equal holes are split evenly: no cluster is more than a few times the average.
    const counts = mapped.map((row) => row.use.mapped!.count);
    expect(Math.max(...counts)).toBeLessThan((3 * 1_000_000) / counts.length);
    expect(cluster.label).toMatch(/^\d+ mappings, [\d.]+ [KMG]iB mapped in [\d.]+ [KMG]iB$/);
    expect(layout.rows.some((row) => row.kind === 'reserved-msi')).toBe(true);
    // Not a timing assertion (CI machines vary), but a record: parseSnapshot dominates.
    console.info(`layout of 1,000,000 mappings: ${Math.round(elapsed)} ms, ${layout.rows.length} rows`);
  }, 60_000);

  test('more enabled hardware windows than half the budget are drawn as runs', () => {
    const count = 64;
    const snapshot: ContainerSnapshot = {
      ...baseSnapshot(),
      model: 'windowed',
      windowGeometry: { count, size: '0x4000000', maxCount: 256 },
      mappings: Array.from({ length: count }, (_, index) => ({ iova: { start: `0x${(BigInt(index) * 0x4000000n).toString(16)}`, last: `0x${(BigInt(index) * 0x4000000n + 0x3ffffffn).toString(16)}` }, access: { read: true, write: true } })),
    };
    const wide = layoutIovaMap(snapshot, { maxRows: 400 });
    expect(wide.rows.length).toBe(count);
    const narrow = layoutIovaMap(snapshot, { maxRows: 32 });
    expect(narrow.rows.length).toBeLessThanOrEqual(32 + 4);
    expect(narrow.rows.some((row) => row.window !== null && row.window.last > row.window.first && row.window.kind === 'window')).toBe(true);
  }, 300_000);
});

describe('errors', () => {
  test('a malformed snapshot is invalid-argument naming the field, from layoutIovaMap', () => {
    const snapshot = { ...baseSnapshot(), usable: [{ start: '0x10', last: '0x1' }] };
    let caught: unknown;
    try {
      layoutIovaMap(snapshot);
    } catch (error) {
      caught = error;
    }
    expect(IoasError.isInstance(caught)).toBe(true);
    expect((caught as IoasError).code).toBe('invalid-argument');
    expect((caught as IoasError).message).toMatch(/^layoutIovaMap: parseSnapshot: not a container snapshot/);
    expect((caught as IoasError).message).toContain('usable[0]');
  });

  test('bad layout options are invalid-argument saying what is allowed', () => {
    expect(() => layoutIovaMap(baseSnapshot(), { maxRows: 3 })).toThrow(/maxRows must be an integer from 16 to 100000, not 3/);
    expect(() => layoutIovaMap(baseSnapshot(), { rows: 3 } as never)).toThrow(/unknown option 'rows'; the options are 'maxRows'/);
    expect(() => layoutIovaMap(baseSnapshot(), 'big' as never)).toThrow(IoasError);
  });

  test('the snapshot test helpers agree with core (sanity)', async () => {
    const snapshot = await exampleSnapshot('arm-smmuv3');
    expect(() => parseSnapshot(snapshot)).not.toThrow();
    expect(() => parseSnapshot(manyMappingsSnapshot(10, 4).snapshot)).not.toThrow();
  });
});
