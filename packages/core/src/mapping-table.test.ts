import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PAGED, scriptedBackend } from './__fixtures__/scripted-backend.js';
import { Container } from './container.js';
import { MappingTable, pageAddress, pageOf, wholePage, wholePages } from './mapping-table.js';
import type { Mapping } from './types.js';

const PAGE = 0x1000n;
const TOP = (1n << 64n) - 1n;

describe('page numbers', () => {
  it('are exact over the whole 64-bit space', () => {
    for (const address of [0n, 0xfffn, 0x1000n, (1n << 53n) + 0x1000n, (1n << 63n) | 0x1234_5000n, TOP - 0xfffn, TOP]) {
      expect(pageOf(address)).toBe(Number(address >> 12n));
      expect(pageAddress(pageOf(address))).toBe(address & ~0xfffn);
      expect(wholePage(address)).toBe(address % PAGE === 0n ? Number(address >> 12n) : -1);
    }
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: TOP }), fc.bigInt({ min: 0n, max: TOP }), (a, b) => {
        const [start, last] = a <= b ? [a, b] : [b, a];
        const out = new Float64Array(2);
        const whole = start % PAGE === 0n && (last + 1n) % PAGE === 0n;
        expect(wholePages({ start, last }, out)).toBe(whole);
        if (whole) expect([...out]).toEqual([Number(start >> 12n), Number(last >> 12n)]);
      }),
    );
  });
});

describe('MappingTable', () => {
  const memory = { address: 0x7f00_0000_0000n, length: 0x2000n };
  const rw = { read: true, write: true };

  it('says whether mappings hold every byte of a range, with no gap', () => {
    const table = new MappingTable();
    table.add({ start: 0x10000n, last: 0x11fffn }, memory, rw, 'owned');
    table.add({ start: 0x12000n, last: 0x13fffn }, memory, rw, 'owned');
    table.add({ start: 0x20000n, last: 0x21fffn }, memory, rw, 'owned');
    expect(table.covers({ start: 0x10000n, last: 0x13fffn })).toBe(true);
    expect(table.covers({ start: 0x11000n, last: 0x12fffn })).toBe(true);
    expect(table.covers({ start: 0x10000n, last: 0x21fffn })).toBe(false); // the hole at 0x14000
    expect(table.covers({ start: 0xf000n, last: 0x11fffn })).toBe(false); // before the first
    expect(table.covers({ start: 0x20000n, last: 0x22fffn })).toBe(false); // past the last
    expect(new MappingTable().covers({ start: 0n, last: 0xfffn })).toBe(false);
  });

  it('keeps ownership: pending IOVAs reach the allocator once, and only if still mapped', () => {
    const table = new MappingTable();
    table.add({ start: 0x10000n, last: 0x11fffn }, memory, rw, 'pending');
    table.add({ start: 0x20000n, last: 0x21fffn }, memory, rw, 'pending');
    table.add({ start: 0x30000n, last: 0x31fffn }, memory, rw, 'allocation');
    expect(table.holdsAllocatorSpace).toBe(false);
    expect(table.remove(0x20000n)).toBe('pending');
    expect(table.takePending()).toEqual([{ start: 0x10000n, last: 0x11fffn }]);
    expect(table.takePending()).toEqual([]);
    expect(table.holdsAllocatorSpace).toBe(true);
    expect(table.remove(0x10000n)).toBe('owned');
    expect(table.holdsAllocatorSpace).toBe(false);
    expect(table.remove(0x30000n)).toBe('allocation');
    expect(table.size).toBe(0);
    expect(table.bytesMapped).toBe(0n);
  });

  it('does not grow while maps and unmaps alternate at explicit IOVAs', () => {
    const table = new MappingTable();
    for (let round = 0; round < 1000; round++) {
      table.add({ start: 0x10000n, last: 0x11fffn }, memory, rw, 'pending');
      table.remove(0x10000n);
    }
    expect((table as unknown as { pending: Float64Array }).pending.length).toBe(16);
  });

  it('keeps its list of pending IOVAs within twice the pending mappings, in any order of maps and unmaps', () => {
    const table = new MappingTable();
    const list = table as unknown as { pendingLength: number };
    table.add({ start: 0x100000n, last: 0x100fffn }, memory, rw, 'pending');
    const live: bigint[] = [];
    for (let step = 0; step < 5000; step++) {
      const start = 0x200000n + BigInt((step * 7919) % 64) * 0x2000n;
      if (live.includes(start)) {
        table.remove(start);
        live.splice(live.indexOf(start), 1);
      } else {
        table.add({ start, last: start + 0x1fffn }, memory, rw, 'pending');
        live.push(start);
      }
      // Unmap the oldest now and then: not the last one listed.
      if (step % 5 === 0 && live.length > 0) table.remove(live.shift()!);
      expect(list.pendingLength).toBeLessThanOrEqual(2 * (live.length + 1) + 64);
    }
    expect(table.takePending().length).toBe(live.length + 1);
  });

  it('keeps every flag of a pending mapping when the allocator is rebuilt (ownedRanges)', () => {
    const table = new MappingTable();
    table.add({ start: 0x10000n, last: 0x10fffn }, memory, { read: true, write: false }, 'pending');
    table.add({ start: 0x20000n, last: 0x20fffn }, memory, { read: false, write: true }, 'owned');
    table.find(0x20000n); // leaves another entry's flags in the tree's out-slots
    expect(table.ownedRanges()).toEqual([
      { start: 0x10000n, last: 0x10fffn },
      { start: 0x20000n, last: 0x20fffn },
    ]);
    expect(table.mappings().map((mapping) => mapping.access)).toEqual([
      { read: true, write: false },
      { read: false, write: true },
    ]);
    expect(table.holdsAllocatorSpace).toBe(true);
    expect(table.remove(0x10000n)).toBe('owned');
    expect(table.takePending()).toEqual([]);
  });

  it('builds mappings as they were given: access, contiguous page sizes (odd ones too), the top of the space', () => {
    const table = new MappingTable();
    const given: Mapping[] = [
      { iova: { start: 0x1000n, last: 0x1fffn }, memory: { address: 0x5000n, length: 0x1000n }, access: { read: true, write: false } },
      { iova: { start: 0x200000n, last: 0x3fffffn }, memory: { address: 0x40000000n, length: 0x200000n, contiguousPageSize: 0x200000n }, access: { read: false, write: true } },
      { iova: { start: 0x800000n, last: 0x802fffn }, memory: { address: 0x9000n, length: 0x3000n, contiguousPageSize: 0x3000n }, access: rw },
      { iova: { start: TOP - 0x1fffn, last: TOP }, memory: { address: TOP - 0xfffffn, length: 0x2000n }, access: rw },
    ];
    for (const mapping of given) table.add(mapping.iova, mapping.memory, mapping.access, 'allocation');
    expect(table.mappings()).toEqual(given);
    expect(table.find(TOP)).toEqual(given[3]);
    expect(table.find(0x2000n)).toBeUndefined();
    expect(table.find(-1n)).toBeUndefined();
    expect(table.find(1n << 64n)).toBeUndefined();
    expect(table.last()).toEqual(given[3]);
    expect(table.overlapping({ start: 0x1800n, last: 0x200fffn })).toEqual([
      { mapping: given[0], ownsIova: false },
      { mapping: given[1], ownsIova: false },
    ]);
    expect(table.bytesMapped).toBe(0x1000n + 0x200000n + 0x3000n + 0x2000n);
    expect(table.remove(0x800000n)).toBe('allocation');
    table.add(given[2]!.iova, { address: 0x9000n, length: 0x3000n }, rw, 'allocation');
    expect(table.find(0x800000n)?.memory).toEqual({ address: 0x9000n, length: 0x3000n });
  });
});

describe('Container at the edges of the page table', () => {
  it('maps the last page of the 64-bit space and refuses a map that wraps past it', async () => {
    const { backend } = scriptedBackend({ capabilities: PAGED, reserved: [], geometry: { aperture: { start: 0n, last: TOP }, ioPageSizes: 0x1000n } });
    const container = await Container.open({ backend, groups: [0] });
    const mapping = container.map({ iova: TOP - 0xfffn, memory: { address: 0x1000n, length: PAGE } });
    expect(mapping.iova).toEqual({ start: TOP - 0xfffn, last: TOP });
    expect(container.findMapping(TOP)).toEqual(mapping);
    expect(() => container.map({ iova: TOP - 0xfffn, memory: { address: 0x1000n, length: 2n * PAGE } })).toThrow(expect.objectContaining({ code: 'invalid-argument', message: expect.stringMatching(/wrap past 2\^64-1/) }));
    expect(container.unmap({ iova: TOP - 0xfffn, size: PAGE })).toBe(PAGE);
    expect(container.stats().mappings).toBe(0);
  });

  it('refuses a backend whose IO pages are below 4 KiB', async () => {
    const { backend, state } = scriptedBackend({ capabilities: PAGED, geometry: { aperture: { start: 0n, last: TOP }, ioPageSizes: 0x200n } });
    await expect(Container.open({ backend, groups: [0] })).rejects.toMatchObject({ code: 'backend-contract', message: /0x200 bytes/ });
    expect(state().closed).toBe(true);
  });
});
