import { describe, expect, it } from 'vitest';
import { scriptedBackend, SMMU_RESERVED, WINDOWED } from './__fixtures__/scripted-backend.js';
import { Container } from './container.js';
import { IoasError } from './errors.js';
import { planWindows } from './plan-windows.js';
import { parseSnapshot, planSnapshot, SNAPSHOT_VERSION } from './snapshot.js';

const MiB = 1n << 20n;

async function pagedWithEverything() {
  const { backend } = scriptedBackend({ reserved: SMMU_RESERVED });
  const container = await Container.open({ backend, groups: [0] });
  container.map({ iova: 0n, memory: { address: 0x7f00_0000_0000n, length: 2n * MiB } });
  container.map({ iova: 0x900_0000n, memory: { address: 0x7f00_1000_0000n, length: 0x1000n }, access: { read: true, write: false } });
  container.allocate({ size: 0x4000n });
  return container;
}

describe('Container.snapshot', () => {
  it('describes the container as plain JSON that parseSnapshot reads back unchanged', async () => {
    const container = await pagedWithEverything();
    const snapshot = container.snapshot('guest 1');
    const copy = JSON.parse(JSON.stringify(snapshot));
    expect(copy).toEqual(snapshot);
    expect(parseSnapshot(copy)).toEqual(snapshot);
    expect(snapshot).toMatchObject({
      version: SNAPSHOT_VERSION,
      title: 'guest 1',
      model: 'paged',
      windowGeometry: null,
      reserved: [{ start: '0x8000000', last: '0x80fffff', kind: 'msi', source: 'sysfs', origin: 'group 0' }],
      mappings: [
        { iova: { start: '0x0', last: '0x1fffff' }, address: '0x7f0000000000', access: { read: true, write: true } },
        { iova: { start: '0x9000000', last: '0x9000fff' }, address: '0x7f0010000000', access: { read: true, write: false } },
      ],
      msi: { model: 'kernel-managed', doorbells: [{ index: 0, iova: { start: '0x8000000', last: '0x80fffff' }, mappedBy: 'kernel' }] },
      budget: { mappings: 2, bytesMapped: '0x201000' },
    });
    // The same answers the container's own queries give, in hex.
    expect(snapshot.usable).toEqual(container.usable().map((range) => ({ start: `0x${range.start.toString(16)}`, last: `0x${range.last.toString(16)}` })));
    expect(snapshot.allocations).toHaveLength(1);
    expect(snapshot.budget.left).toBe(container.stats().mappingBudgetLeft);
    expect(snapshot.aperture.start).toBe(`0x${container.geometry().aperture.start.toString(16)}`);
  });

  it('names the backend when no title is given, refuses a bad title, and refuses after close', async () => {
    const container = await pagedWithEverything();
    expect(container.snapshot().title).toBe('scripted');
    expect(() => container.snapshot('x'.repeat(201))).toThrow(expect.objectContaining({ code: 'invalid-argument', operation: 'snapshot' }));
    expect(() => container.snapshot(7 as unknown as string)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    container.close();
    expect(() => container.snapshot()).toThrow(IoasError);
  });

  it('shows a windowed container: its window geometry and the doorbells the SDK mapped', async () => {
    const geometry = { aperture: { start: 0n, last: 0xfffffffffn }, ioPageSizes: 0x1000n, windows: { count: 256, size: 0n, maxCount: 256 } };
    const { backend } = scriptedBackend({ capabilities: WINDOWED, geometry, doorbells: [{ index: 0, size: 0x1000n }] });
    const container = await Container.open({ backend, groups: [0] });
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    container.msi.map();
    const snapshot = container.snapshot();
    expect(snapshot.model).toBe('windowed');
    expect(snapshot.windowGeometry).toEqual({ count: 8, size: '0x4000000', maxCount: 256 });
    expect(snapshot.msi.model).toBe('explicit');
    expect(snapshot.msi.doorbells).toHaveLength(1);
    expect(snapshot.msi.doorbells[0]!.mappedBy).toBe('sdk');
    expect(parseSnapshot(JSON.parse(JSON.stringify(snapshot)))).toEqual(snapshot);
  });
});

describe('planSnapshot', () => {
  it("draws seed 000's plan as the PAMU domain it becomes: RAM in windows 0-3, a bank per MSI window, window 7 off", () => {
    const plan = planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 });
    const snapshot = planSnapshot(plan);
    expect(parseSnapshot(JSON.parse(JSON.stringify(snapshot)))).toEqual(snapshot);
    expect(snapshot.title).toBe('window plan: 8 windows of 64 MiB');
    expect(snapshot.aperture).toEqual({ start: '0x0', last: '0x1fffffff' });
    expect(snapshot.windowGeometry).toEqual({ count: 8, size: '0x4000000', maxCount: 256 });
    expect(snapshot.mappings.map((mapping) => mapping.iova.start)).toEqual(['0x0', '0x4000000', '0x8000000', '0xc000000']);
    expect(snapshot.mappings.every((mapping) => mapping.address === undefined)).toBe(true);
    expect(snapshot.msi.doorbells.map((doorbell) => [doorbell.index, doorbell.iova.start])).toEqual([[0, '0x10000000'], [1, '0x14000000'], [2, '0x18000000']]);
    expect(snapshot.usable).toEqual([{ start: '0x0', last: '0xfffffff' }, { start: '0x1c000000', last: '0x1fffffff' }]);
    expect(snapshot.budget).toEqual({ mappings: 4, bytesMapped: '0x10000000', left: null });
  });
});

describe('parseSnapshot', () => {
  async function valid() {
    return JSON.parse(JSON.stringify((await pagedWithEverything()).snapshot()));
  }

  it('refuses another version as unsupported, saying which', async () => {
    const snapshot = { ...(await valid()), version: 2 };
    expect(() => parseSnapshot(snapshot)).toThrow(expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/version 2 is not 1/) }));
  });

  it.each([
    ['not an object', 'a string', /expected object/],
    ['null', null, /expected object/],
    ['a missing field', (snapshot: Record<string, unknown>) => ({ ...snapshot, aperture: undefined }), /aperture/],
    ['uppercase hex', (snapshot: Record<string, unknown>) => ({ ...snapshot, ioPageSizes: '0xFF' }), /ioPageSizes/],
    ['a host address that is not hex', (snapshot: { mappings: object[] }) => ({ ...snapshot, mappings: [{ ...snapshot.mappings[0], address: '0xZZ' }] }), /mappings\[0\]\.address/],
    ['a value past 2^64-1', (snapshot: Record<string, unknown>) => ({ ...snapshot, aperture: { start: '0x0', last: '0x1ffffffffffffffff' } }), /aperture/],
    ['last below start', (snapshot: Record<string, unknown>) => ({ ...snapshot, usable: [{ start: '0x2000', last: '0x1000' }] }), /last must not be below start[\s\S]*usable/],
    ['an unknown reserved kind', (snapshot: Record<string, unknown>) => ({ ...snapshot, reserved: [{ start: '0x0', last: '0x1', kind: 'hole', source: 'sysfs' }] }), /reserved/],
    ['an extra key', (snapshot: Record<string, unknown>) => ({ ...snapshot, colour: 'red' }), /colour/],
  ])('refuses %s with invalid-argument naming the field', async (_name, change, message) => {
    const input = typeof change === 'function' ? change(await valid()) : change;
    let thrown: unknown;
    try {
      parseSnapshot(input);
    } catch (error) {
      thrown = error;
    }
    expect(IoasError.isInstance(thrown)).toBe(true);
    expect((thrown as IoasError).code).toBe('invalid-argument');
    expect((thrown as IoasError).message).toMatch(message);
  });
});
