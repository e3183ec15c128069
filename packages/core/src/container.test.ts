import { describe, expect, it } from 'vitest';
import { PAGED, scriptedBackend, SMMU_RESERVED, WINDOWED, type ScriptedOptions } from './__fixtures__/scripted-backend.js';
import { Container } from './container.js';
import { ERRNO } from './errno.js';
import { IoasError } from './errors.js';
import type { BackendV1 } from './spi.js';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

async function openPaged(options: ScriptedOptions = {}) {
  const { backend, state } = scriptedBackend({ reserved: SMMU_RESERVED, ...options });
  const container = await Container.open({ backend, groups: [0] });
  return { container, state: state() };
}

/** Asserts `run` throws an IoasError with `code` (and message matching `message`) and changes nothing. */
function expectRefused(container: Container, state: { calls: string[] }, run: () => unknown, code: string, message?: RegExp) {
  const calls = state.calls.length;
  const stats = container.stats();
  const mappings = container.mappings();
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(IoasError.isInstance(thrown), `expected an IoasError, got ${String(thrown)}`).toBe(true);
  const error = thrown as IoasError;
  expect(error.code).toBe(code);
  expect(error.backend).toBe('scripted');
  if (message) expect(error.message).toMatch(message);
  expect(state.calls.length).toBe(calls);
  expect(container.stats()).toEqual(stats);
  expect(container.mappings()).toEqual(mappings);
  return error;
}

describe('Container.open', () => {
  it('validates options and the SPI version', async () => {
    const { backend } = scriptedBackend();
    await expect(Container.open({ backend })).rejects.toMatchObject({ code: 'invalid-argument', message: /at least one IOMMU group or device/ });
    await expect(Container.open({ backend: { ...backend, specificationVersion: 'v0' } as unknown as BackendV1, groups: [1] })).rejects.toMatchObject({
      code: 'unsupported',
    });
    await expect(Container.open({ backend: undefined as unknown as BackendV1, groups: [1] })).rejects.toMatchObject({ code: 'invalid-argument' });
  });

  it('refuses a handle whose methods do not match its capabilities, and closes it', async () => {
    const { backend, state } = scriptedBackend({ capabilities: { settableGeometry: true } });
    const broken: BackendV1 = {
      ...backend,
      open: async (request) => {
        const handle = await backend.open(request);
        delete handle.doSetGeometry;
        return handle;
      },
    };
    await expect(Container.open({ backend: broken, groups: [1] })).rejects.toMatchObject({ code: 'backend-contract', message: /lacks doSetGeometry/ });
    expect(state().closed).toBe(true);
  });
});

describe('a paged container (arm-smmuv3 figures)', () => {
  it('reports geometry, reserved and usable ranges: the SW MSI window cut out', async () => {
    const { container } = await openPaged();
    expect(container.geometry().ioPageSizes).toBe(0x40201000n);
    expect(container.reserved()).toEqual(SMMU_RESERVED);
    expect(container.usable()).toEqual([
      { start: 0n, last: 0x7ffffffn },
      { start: 0x8100000n, last: 0xffffffffffffn },
    ]);
    expect(container.msi.plan()).toEqual({
      model: 'kernel-managed',
      doorbells: [{ index: 0, iova: { start: 0x8000000n, last: 0x80fffffn }, mappedBy: 'kernel' }],
    });
    expect(container.msi.map()).toEqual(container.msi.plan());
    expect(() => container.msi.plan({ iova: 0x100000n })).toThrow(/placed by the kernel in its software MSI window/);
  });

  it('maps, refuses overlaps, reserved hits, out-of-range and misaligned requests before the backend', async () => {
    const { container, state } = await openPaged();
    const mapping = container.map({ iova: 0x100000n, memory: { address: 0x7f0000000000n, length: 0x2000n } });
    expect(mapping.iova).toEqual({ start: 0x100000n, last: 0x101fffn });
    expect(state.mapped).toHaveLength(1);
    expectRefused(container, state, () => container.map({ iova: 0x101000n, memory: { address: 0x7f0000010000n, length: 0x1000n } }), 'overlap', /overlaps mapping 0x100000-0x101fff/);
    expectRefused(
      container,
      state,
      () => container.map({ iova: 0x7fff000n, memory: { address: 0x7f0000010000n, length: 0x2000n } }),
      'reserved',
      /failed to map 0x2000 bytes at IOVA 0x7fff000: the range overlaps the MSI window 0x8000000-0x80fffff \(from sysfs, group 0\)/,
    );
    expectRefused(container, state, () => container.map({ iova: 1n << 48n, memory: { address: 0x7f0000010000n, length: 0x1000n } }), 'out-of-range', /outside the usable ranges/);
    expectRefused(container, state, () => container.map({ iova: 0x200800n, memory: { address: 0x7f0000010000n, length: 0x1000n } }), 'misaligned', /multiple of 0x1000/);
    expectRefused(container, state, () => container.map({ iova: 0x200000n, memory: { address: 0x7f0000010800n, length: 0x1000n } }), 'misaligned');
    expectRefused(container, state, () => container.map({ iova: 0x200000n, memory: { address: 0x1000n, length: 0x1000n }, access: { read: false, write: false } }), 'invalid-argument', /read or write/);
    expectRefused(container, state, () => container.map({ iova: -1n, memory: { address: 0x1000n, length: 0x1000n } } as never), 'invalid-argument', /iova/);
    expectRefused(container, state, () => container.map({ iova: (1n << 64n) - 0x1000n, memory: { address: 0x1000n, length: 0x2000n } }), 'invalid-argument', /wrap/);
    expect(container.stats()).toMatchObject({ mappings: 1, bytesMapped: 0x2000n, mappingBudgetLeft: 65534 });
  });

  it('allocates an IOVA when none is given, aligned for the largest IO page', async () => {
    const { container, state } = await openPaged();
    const big = container.map({ memory: { address: 0x7f0000000000n, length: 4n * MiB } });
    expect(big.iova.start % (2n * MiB)).toBe(0n);
    const small = container.map({ memory: { address: 0x7f0000400000n, length: 0x3000n } });
    expect(state.mapped.map((call) => call.iova)).toEqual([big.iova, small.iova]);
    for (const mapping of [big, small]) {
      expect(mapping.iova.last < 0x8000000n || mapping.iova.start > 0x80fffffn).toBe(true);
    }
    expect(container.findMapping(big.iova.start + 5n)).toEqual(big);
    expect(container.findMapping(1n << 47n)).toBeUndefined();
  });

  it('counts the mapping budget and refuses past it', async () => {
    const { container, state } = await openPaged({ capabilities: { mappingBudget: 2 } });
    container.map({ iova: 0n, memory: { address: 0x10000n, length: 0x1000n } });
    container.map({ memory: { address: 0x20000n, length: 0x1000n } });
    expect(container.stats().mappingBudgetLeft).toBe(0);
    expectRefused(container, state, () => container.map({ iova: 0x10000n, memory: { address: 0x30000n, length: 0x1000n } }), 'budget-exhausted', /dma_entry_limit/);
    expectRefused(container, state, () => container.map({ memory: { address: 0x30000n, length: 0x1000n } }), 'budget-exhausted');
    container.unmap({ iova: 0n, size: 0x1000n });
    expect(container.stats().mappingBudgetLeft).toBe(1);
  });

  it('unmaps whole mappings, refuses bisecting ranges, and returns 0 for empty ranges without a call', async () => {
    const { container, state } = await openPaged();
    const a = container.map({ iova: 0x100000n, memory: { address: 0x10000n, length: 0x2000n } });
    container.map({ iova: 0x104000n, memory: { address: 0x20000n, length: 0x1000n } });
    expectRefused(container, state, () => container.unmap({ iova: 0x101000n, size: 0x1000n }), 'bisect', /starts inside mapping 0x100000-0x101fff/);
    expectRefused(container, state, () => container.unmap({ iova: 0x100000n, size: 0x1000n }), 'bisect', /ends inside mapping/);
    const calls = state.calls.length;
    expect(container.unmap({ iova: 0x200000n, size: 0x1000n })).toBe(0n);
    expect(state.calls.length).toBe(calls);
    // One call covering both mappings and the hole between them.
    expect(container.unmap({ start: 0n, last: 0xffffffn })).toBe(0x3000n);
    expect(state.calls.at(-1)).toBe('unmap 100000-104fff');
    expect(container.stats()).toMatchObject({ mappings: 0, bytesMapped: 0n });
    // The IOVA is free again.
    expect(container.map({ iova: a.iova.start, memory: a.memory }).iova).toEqual(a.iova);
    expect(container.unmap(container.mappings()[0]!)).toBe(0x2000n);
  });

  it('keeps a mapping whose unmap the kernel refuses, and can unmap it afterwards', async () => {
    const { container, state } = await openPaged();
    const explicit = container.map({ iova: 0x100000n, memory: { address: 0x10000n, length: 0x2000n } });
    const allocated = container.map({ memory: { address: 0x20000n, length: 0x1000n } });
    for (const mapping of [explicit, allocated]) {
      state.failNext('unmap', ERRNO.EINVAL);
      const before = container.stats();
      expect(() => container.unmap({ iova: mapping.iova.start, size: mapping.memory.length })).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EINVAL }));
      expect(container.stats()).toEqual(before);
      expect(container.findMapping(mapping.iova.start)).toEqual(mapping);
    }
    // An allocation still sees the allocated mapping's IOVA as taken; both unmap cleanly now.
    const [range] = container.allocate({ size: 0x1000n });
    expect(range!.start === allocated.iova.start).toBe(false);
    expect(container.unmap(explicit)).toBe(0x2000n);
    expect(container.unmap(allocated)).toBe(0x1000n);
    expect(container.stats()).toMatchObject({ mappings: 0, bytesMapped: 0n });
  });

  it('names the allocation a map collides with, not the refused map itself', async () => {
    const { container, state } = await openPaged();
    const allocated = container.map({ memory: { address: 0x20000n, length: 0x1000n } });
    expectRefused(
      container,
      state,
      () => container.map({ iova: allocated.iova.start, memory: { address: 0x30000n, length: 0x1000n } }),
      'overlap',
      new RegExp(`overlaps mapping 0x${allocated.iova.start.toString(16)}`),
    );
    const [range] = container.allocate({ size: 0x4000n });
    expectRefused(
      container,
      state,
      () => container.map({ iova: range!.last - 0xfffn, memory: { address: 0x30000n, length: 0x2000n } }),
      'overlap',
      new RegExp(`allocated range 0x${range!.start.toString(16)}-`),
    );
  });

  it('passes a backend error through as the same object, with the operation and backend filled in once', async () => {
    const { container, state } = await openPaged();
    state.failNext('map', ERRNO.EFAULT);
    let error: IoasError | undefined;
    try {
      container.map({ iova: 0x100000n, memory: { address: 0x10000n, length: 0x1000n } });
    } catch (caught) {
      error = caught as IoasError;
    }
    expect(error).toMatchObject({ code: 'kernel', operation: 'map', backend: 'scripted', errno: ERRNO.EFAULT });
    expect(error!.message).toMatch(/^map: /);
    expect(error!.message).not.toMatch(/^map: map: /);
    expect(error!.cause).toBeUndefined();
  });

  it('leaves nothing behind when the kernel refuses a map, and keeps the errno', async () => {
    const { container, state } = await openPaged();
    state.failNext('map', ERRNO.EFAULT);
    let error: IoasError | undefined;
    try {
      container.map({ memory: { address: 0x10000n, length: 0x1000n } });
    } catch (caught) {
      error = caught as IoasError;
    }
    expect(error).toMatchObject({ code: 'kernel', errno: ERRNO.EFAULT, ioctl: 'SCRIPTED_MAP', operation: 'map', backend: 'scripted' });
    expect(error?.errnoName).toBe('EFAULT');
    expect(container.stats()).toMatchObject({ mappings: 0, bytesMapped: 0n });
    expect(container.usable()).toEqual([
      { start: 0n, last: 0x7ffffffn },
      { start: 0x8100000n, last: 0xffffffffffffn },
    ]);
    // The IOVA the failed map had been given is handed out again.
    const again = container.map({ memory: { address: 0x10000n, length: 0x1000n } });
    expect(again.iova.start).toBe(0n);
  });

  it('reports a kernel that unmapped a different size than recorded', async () => {
    const { container } = await openPaged({ unmapReportFactor: 2n });
    container.map({ iova: 0n, memory: { address: 0x10000n, length: 0x1000n } });
    expect(() => container.unmap({ iova: 0n, size: 0x1000n })).toThrow(
      expect.objectContaining({ code: 'inconsistent', message: expect.stringMatching(/kernel reports 0x2000 bytes unmapped but the container had 0x1000/) }),
    );
    expect(container.stats().mappings).toBe(0);
  });

  it('maps a region around the MSI hole with the fewest mappings, and rolls back on failure', async () => {
    const { container, state } = await openPaged();
    const region = { iova: 0n, memory: { address: 0x7f0000000000n, length: 256n * MiB } };
    state.failNext('map', ERRNO.ENOMEM, 2);
    expect(() => container.mapRegion(region)).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.ENOMEM }));
    expect(state.mapped).toEqual([]);
    expect(container.stats()).toMatchObject({ mappings: 0, bytesMapped: 0n });

    const result = container.mapRegion(region);
    expect(result.skipped).toEqual([{ start: 0x8000000n, last: 0x80fffffn }]);
    expect(result.mappings.map((mapping) => mapping.iova)).toEqual([
      { start: 0n, last: 0x7ffffffn },
      { start: 0x8100000n, last: 0xfffffffn },
    ]);
    // The second piece's memory starts at the same offset as its IOVA: guest RAM stays 1:1.
    expect(result.mappings[1]!.memory.address).toBe(0x7f0000000000n + 0x8100000n);
    expect(container.stats().bytesMapped).toBe(256n * MiB - MiB);
  });

  it('refuses a region that needs more mappings than the budget left, before mapping anything', async () => {
    const { container, state } = await openPaged({ capabilities: { mappingBudget: 1 } });
    expectRefused(container, state, () => container.mapRegion({ iova: 0n, memory: { address: 0n, length: 256n * MiB } }), 'budget-exhausted', /needs 2 mappings but only 1/);
  });

  it('allocates 2 GiB below 4 GiB on x86 and maps inside the allocation', async () => {
    const { container, state } = await openPaged({
      geometry: {
        aperture: { start: 0n, last: 0x7fffffffffn },
        ioPageSizes: 0x40201000n,
        ranges: [
          { start: 0n, last: 0xfedfffffn },
          { start: 0xfef00000n, last: 0x7fffffffffn },
        ],
      },
      reserved: [
        { start: 0xfee00000n, last: 0xfeefffffn, kind: 'msi', source: 'sysfs' },
        { start: 0n, last: 0xffffffn, kind: 'direct-relaxable', source: 'sysfs' },
      ],
    });
    // direct-relaxable stays mappable (type1 and iommufd ignore it).
    expect(container.usable()[0]).toEqual({ start: 0n, last: 0xfedfffffn });
    const ranges = container.allocate({ size: 2n * GiB, limit: 0xffffffffn });
    expect(ranges.reduce((sum, range) => sum + range.last - range.start + 1n, 0n)).toBe(2n * GiB);
    expect(ranges.every((range) => range.last <= 0xffffffffn)).toBe(true);
    const first = ranges[0]!;
    container.map({ iova: first.start, memory: { address: 0x10000000n, length: 0x1000n } });
    expect(container.stats().allocations).toBe(ranges.length);
    // A map straddling the allocation's end and free space is refused.
    expectRefused(
      container,
      state,
      () => container.map({ iova: first.last - 0xfffn, memory: { address: 0x10000000n, length: 0x2000n } }),
      first.last >= 0xfedfffffn ? 'reserved' : 'overlap',
    );
    expect(() => container.release(first)).toThrow(expect.objectContaining({ code: 'in-use' }));
    container.unmap({ iova: first.start, size: 0x1000n });
    container.release(first);
    expect(() => container.release(first)).toThrow(expect.objectContaining({ code: 'not-found' }));
    expect(() => container.allocate({ size: 0x800n })).toThrow(expect.objectContaining({ code: 'misaligned', operation: 'allocate' }));
  });

  it('enforces created windows in the SDK on type1: only windows are usable once one exists', async () => {
    const { container, state } = await openPaged();
    container.map({ iova: 0x200000n, memory: { address: 0x10000n, length: 0x1000n } });
    expectRefused(container, state, () => container.createWindow({ start: 0x400000n, size: 0x100000n }), 'in-use', /in use outside the first window/);
    const window = container.createWindow({ start: 0n, size: 0x1000000n });
    expect(container.usable()).toEqual([{ start: 0n, last: 0xffffffn }]);
    expectRefused(container, state, () => container.map({ iova: 0x2000000n, memory: { address: 0x10000n, length: 0x1000n } }), 'out-of-range', /outside the created windows/);
    expectRefused(container, state, () => container.createWindow({ start: 0x7f00000n, size: 0x400000n }), 'reserved', /MSI window/);
    expectRefused(container, state, () => container.createWindow({ start: 0x800000n, size: 0x1000000n }), 'overlap');
    expectRefused(container, state, () => container.createWindow({ start: 0x1000000n, size: 0x800n }), 'misaligned');
    expectRefused(container, state, () => container.createWindow({ start: 1n << 60n, size: 0x1000n }), 'out-of-range');
    expectRefused(container, state, () => container.removeWindow(window), 'in-use', /still in use/);
    container.unmap({ iova: 0x200000n, size: 0x1000n });
    container.removeWindow(window);
    expect(container.usable()).toHaveLength(2);
    expect(() => container.removeWindow(window)).toThrow(expect.objectContaining({ code: 'not-found' }));
  });

  it('passes windows to the kernel allow-list (iommufd) and keeps them unchanged when it refuses', async () => {
    const { container, state } = await openPaged({ capabilities: { windows: 'kernel-allow-list', mappingBudget: null } });
    container.createWindow({ start: 0n, size: 0x100000n });
    expect(state.allowed).toEqual([{ start: 0n, last: 0xfffffn }]);
    state.failNext('setAllowedRanges', ERRNO.EADDRINUSE);
    expect(() => container.createWindow({ start: 0x200000n, size: 0x100000n })).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EADDRINUSE }));
    expect(container.windows()).toEqual([{ range: { start: 0n, last: 0xfffffn } }]);
    container.createWindow({ start: 0x200000n, size: 0x100000n });
    expect(state.allowed).toHaveLength(2);
    expect(container.stats().mappingBudgetLeft).toBeNull();
  });

  it('closes once, refuses every later call, and supports `using`', async () => {
    const { backend, state } = scriptedBackend();
    {
      using container = await Container.open({ backend, groups: [3] });
      container.map({ iova: 0n, memory: { address: 0x10000n, length: 0x1000n } });
    }
    expect(state().closed).toBe(true);
    const container = await Container.open({ backend, groups: [3] });
    container.close();
    container.close();
    expect(state().calls.filter((call) => call === 'close')).toHaveLength(1);
    expect(container.isClosed).toBe(true);
    expect(() => container.map({ iova: 0n, memory: { address: 0x10000n, length: 0x1000n } })).toThrow(expect.objectContaining({ code: 'closed' }));
    expect(() => container.stats()).toThrow(/closed/);
  });

  it('wraps a non-IoasError thrown by a backend as a contract violation', async () => {
    const { backend } = scriptedBackend();
    const throwing: BackendV1 = {
      ...backend,
      open: async (request) => ({
        ...(await backend.open(request)),
        doMap: () => {
          throw new TypeError('oops');
        },
      }),
    };
    const container = await Container.open({ backend: throwing, groups: [0] });
    expect(() => container.map({ iova: 0n, memory: { address: 0x10000n, length: 0x1000n } })).toThrow(
      expect.objectContaining({ code: 'backend-contract', message: expect.stringMatching(/threw a non-IoasError: oops/) }),
    );
    expect(container.stats().mappings).toBe(0);
  });
});

describe('a windowed container (PAMU-like)', () => {
  const geometry = {
    aperture: { start: 0n, last: 0xfffffffffn },
    ioPageSizes: 0x1000n,
    windows: { count: 256, size: 0n, maxCount: 256 },
  };
  const doorbells = [0, 1, 2].map((index) => ({ index, size: 0x1000n, physicalAddress: 0xffe044000n + BigInt(index) * 0x1000n }));

  async function openWindowed() {
    const { backend, state } = scriptedBackend({ capabilities: WINDOWED, geometry, doorbells });
    const container = await Container.open({ backend, groups: [1] });
    return { container, state: state() };
  }

  it('refuses maps until the geometry is set, and validates the geometry', async () => {
    const { container, state } = await openWindowed();
    expect(container.usable()).toEqual([]);
    expectRefused(container, state, () => container.map({ iova: 0n, memory: { address: 0n, length: 64n * MiB, contiguousPageSize: 64n * MiB } }), 'not-ready', /setGeometry/);
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: 384n * MiB }, windowCount: 8 }), 'invalid-argument', /power of two/);
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 256n * MiB, size: 512n * MiB }, windowCount: 8 }), 'misaligned', /aligned/);
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 512 }), 'invalid-argument', /from 1 to 256/);
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 0 }), 'invalid-argument');
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: 0x2000n }, windowCount: 4 }), 'invalid-argument', /smaller than 0x1000/);
    const set = container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    expect(set.windows).toEqual({ count: 8, size: 64n * MiB, maxCount: 256 });
    expect(container.usable()).toEqual([{ start: 0n, last: 512n * MiB - 1n }]);
  });

  it('applies the seed plan: RAM in whole windows, MSI banks in the lowest windows above it', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    expectRefused(container, state, () => container.map({ iova: 0n, memory: { address: 0n, length: 256n * MiB } }), 'invalid-argument', /contiguousPageSize/);
    expectRefused(container, state, () => container.map({ iova: 0n, memory: { address: 0n, length: 256n * MiB, contiguousPageSize: 2n * MiB } }), 'invalid-argument', /at least 0x4000000/);
    expectRefused(container, state, () => container.map({ iova: 0n, memory: { address: 0n, length: 32n * MiB, contiguousPageSize: 64n * MiB } }), 'misaligned', /window size 0x4000000/);
    container.map({ iova: 0n, memory: { address: 0x40000000n, length: 256n * MiB, contiguousPageSize: 64n * MiB } });
    const plan = container.msi.plan();
    expect(plan.doorbells.map((doorbell) => [doorbell.index, doorbell.iova.start])).toEqual([
      [0, 0x10000000n],
      [1, 0x14000000n],
      [2, 0x18000000n],
    ]);
    container.msi.map(plan);
    expect([...state.doorbells]).toEqual([
      [0, 0x10000000n],
      [1, 0x14000000n],
      [2, 0x18000000n],
    ]);
    expect(container.usable()).toEqual([
      { start: 0n, last: 0xfffffffn },
      { start: 0x1c000000n, last: 0x1fffffffn },
    ]);
    expectRefused(
      container,
      state,
      () => container.map({ iova: 0x14000000n, memory: { address: 0x80000000n, length: 64n * MiB, contiguousPageSize: 64n * MiB } }),
      'reserved',
      /MSI doorbell 1 at 0x14000000-0x17ffffff/,
    );
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: 1n * GiB }, windowCount: 16 }), 'in-use');
    expect(container.stats()).toMatchObject({ mappings: 1, msiDoorbellsMapped: 3 });
    container.msi.unmap();
    expect(state.doorbells.size).toBe(0);
    expect(container.msi.mapped()).toEqual([]);
  });

  it('rolls MSI doorbell mapping back when a bank fails', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    state.failNext('mapMsiDoorbell', ERRNO.EBUSY, 3);
    expect(() => container.msi.map()).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EBUSY }));
    expect(state.doorbells.size).toBe(0);
    expect(container.msi.mapped()).toEqual([]);
    expect(state.calls.filter((call) => call.startsWith('unmapMsiDoorbell'))).toEqual(['unmapMsiDoorbell 1@4000000', 'unmapMsiDoorbell 0@0']);
    // Doorbells at a chosen IOVA, one window each.
    const plan = container.msi.map(container.msi.plan({ iova: 0x1c000000n - 2n * 64n * MiB }));
    expect(plan.doorbells.map((doorbell) => doorbell.iova.start)).toEqual([0x14000000n, 0x18000000n, 0x1c000000n]);
    expect(() => container.msi.map()).toThrow(expect.objectContaining({ code: 'in-use' }));
  });

  it('refuses an edited MSI plan the hardware cannot honour, before any doorbell is mapped', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    const plan = container.msi.plan();
    const window = (index: number) => ({ start: BigInt(index) * 64n * MiB, last: BigInt(index + 1) * 64n * MiB - 1n });
    const edited = (doorbells: { index: number; iova: { start: bigint; last: bigint } }[]) => ({
      model: 'explicit' as const,
      doorbells: doorbells.map((doorbell) => ({ ...doorbell, mappedBy: 'sdk' as const })),
    });
    const cases: [unknown, string, RegExp][] = [
      [{ model: 'explicit', doorbells: null }, 'invalid-argument', /invalid input/],
      [{ model: 'explicit', doorbells: [{ index: 0, iova: { start: 0n } }] }, 'invalid-argument', /invalid input/],
      [{ model: 'explicit', doorbells: [{ index: 0, iova: { start: 0, last: 64 * 2 ** 20 - 1 }, mappedBy: 'sdk', extra: 1 }] }, 'invalid-argument', /invalid input/],
      [edited([{ index: 7, iova: window(5) }]), 'not-found', /doorbell 7 does not exist/],
      [edited([{ index: 1, iova: window(5) }, { index: 1, iova: window(6) }]), 'invalid-argument', /in the plan twice/],
      [edited([{ index: 0, iova: window(5) }, { index: 1, iova: window(5) }]), 'overlap', /share IOVA/],
      [edited([{ index: 0, iova: { start: window(5).start, last: window(6).last } }]), 'invalid-argument', /exactly 0x4000000 bytes/],
    ];
    for (const [given, code, message] of cases) {
      const mapped = state.doorbells.size;
      expect(() => container.msi.map(given as never)).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
      expect(state.doorbells.size).toBe(mapped);
      expect(container.msi.mapped()).toEqual([]);
    }
    // A plan for one doorbell of three is fine, as is the planner's own.
    expect(container.msi.map(edited([{ index: 2, iova: window(7) }])).doorbells).toHaveLength(1);
    container.msi.unmap();
    expect(container.msi.map(plan).doorbells).toHaveLength(3);
  });

  it('types every hostile argument as invalid-argument and changes nothing', async () => {
    const { container, state } = await openPaged();
    container.map({ iova: 0x100000n, memory: { address: 0x10000n, length: 0x1000n } });
    const hostile: [string, () => unknown][] = [
      ['findMapping string', () => container.findMapping('abc' as never)],
      ['findMapping fraction', () => container.findMapping(1.5)],
      ['findMapping null', () => container.findMapping(null as never)],
      ['findMapping object', () => container.findMapping({} as never)],
      ['findMapping -1n', () => container.findMapping(-1n)],
      ['findMapping 2^64', () => container.findMapping(2n ** 64n)],
      ['removeWindow number', () => container.removeWindow(5 as never)],
      ['removeWindow null', () => container.removeWindow(null as never)],
      ['removeWindow string', () => container.removeWindow('x' as never)],
      ['unmap negative size', () => container.unmap({ iova: 0n, size: -4096 })],
      ['allocate align 3', () => container.allocate({ size: 0x1000n, align: 3n })],
      ['allocate align below the page', () => container.allocate({ size: 0x1000n, align: 0x800n })],
    ];
    for (const [what, call] of hostile) {
      const calls = state.calls.length;
      const before = { stats: container.stats(), mappings: container.mappings() };
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(IoasError.isInstance(thrown) && thrown.code, what).toBe('invalid-argument');
      expect(state.calls.length, what).toBe(calls);
      expect({ stats: container.stats(), mappings: container.mappings() }, what).toEqual(before);
    }
  });

  it('blames a backend whose open() throws a plain error or resolves to nothing', async () => {
    const { backend } = scriptedBackend();
    const throwing: BackendV1 = { ...backend, open: async () => { throw new Error('ENOENT: no such file'); } };
    await expect(Container.open({ backend: throwing, groups: [99] })).rejects.toMatchObject({ code: 'backend-contract', operation: 'open', message: /ENOENT/ });
    const empty: BackendV1 = { ...backend, open: async () => undefined as never };
    await expect(Container.open({ backend: empty, groups: [1] })).rejects.toMatchObject({ code: 'backend-contract', message: /resolved to undefined/ });
  });

  it('refuses a cut through a mapping off a window boundary, and memory that wraps past 2^64-1', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    container.map({ iova: 0n, memory: { address: 0x40000000n, length: 256n * MiB, contiguousPageSize: 64n * MiB } });
    expectRefused(container, state, () => container.unmap({ iova: 0x1000n, size: 0x1000n }), 'misaligned', /multiple of 0x4000000/);
    expectRefused(container, state, () => container.unmap({ iova: 0n, size: 64n * MiB + 0x1000n }), 'misaligned', /multiple of 0x4000000/);
    const paged = await openPaged();
    expectRefused(paged.container, paged.state, () => paged.container.map({ iova: 0x100000n, memory: { address: (1n << 64n) - 0x1000n, length: 0x2000n } }), 'invalid-argument', /wraps past 2\^64-1/);
  });

  it('cuts mappings on partial unmap when the backend can (PAMU trims and splits)', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    container.map({ iova: 0n, memory: { address: 0x40000000n, length: 256n * MiB, contiguousPageSize: 64n * MiB } });
    expect(container.unmap({ iova: 64n * MiB, size: 64n * MiB })).toBe(64n * MiB);
    expect(container.mappings().map((mapping) => [mapping.iova.start, mapping.memory.address, mapping.memory.length])).toEqual([
      [0n, 0x40000000n, 64n * MiB],
      [128n * MiB, 0x40000000n + 128n * MiB, 128n * MiB],
    ]);
    expect(state.mapped.map((call) => call.iova.start)).toEqual([0n, 128n * MiB]);
    expect(container.stats().bytesMapped).toBe(192n * MiB);
    // The cut window is free again.
    container.map({ iova: 64n * MiB, memory: { address: 0x80000000n, length: 64n * MiB, contiguousPageSize: 64n * MiB } });
  });

  it('needs whole hardware windows for createWindow', async () => {
    const { container, state } = await openWindowed();
    container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
    expectRefused(container, state, () => container.createWindow({ start: 0n, size: 32n * MiB }), 'misaligned', /multiples of 0x4000000/);
    container.createWindow({ start: 0n, size: 128n * MiB });
    expect(container.usable()).toEqual([{ start: 0n, last: 128n * MiB - 1n }]);
  });
});

describe('capability checks', () => {
  it('refuses setGeometry on a paged IOMMU without calling the backend', async () => {
    const { container, state } = await openPaged({ capabilities: PAGED });
    expectRefused(container, state, () => container.setGeometry({ aperture: { start: 0n, size: GiB }, windowCount: 1 }), 'unsupported', /fixed geometry/);
  });

  it('answers MSI questions for the fixed and none models', async () => {
    const fixed = await openPaged({ capabilities: { msi: 'fixed' }, reserved: [{ start: 0xfee00000n, last: 0xfeefffffn, kind: 'msi', source: 'sysfs' }] });
    expect(fixed.container.msi.plan().doorbells).toEqual([{ index: 0, iova: { start: 0xfee00000n, last: 0xfeefffffn }, mappedBy: 'hardware' }]);
    expect(() => fixed.container.msi.plan({ iova: 0n })).toThrow(/fixed hardware range/);
    const none = await openPaged({ capabilities: { msi: 'none' } });
    expect(none.container.msi.map()).toEqual({ model: 'none', doorbells: [] });
  });
});

describe('the canonical-input fast path', () => {
  it('accepts only what zod accepts, and parses it the same', async () => {
    const { fastMapInput, fastUnmapInput, mapInput, unmapInput } = await import('./schemas.js');
    const fc = (await import('fast-check')).default;
    const u64ish = fc.oneof(fc.bigInt(-2n, (1n << 64n) + 2n), fc.constant(0n), fc.integer({ min: -1, max: 5000 }), fc.constant(undefined), fc.constant('1'));
    const access = fc.oneof(fc.constant(undefined), fc.record({ read: fc.boolean(), write: fc.boolean() }), fc.record({ read: fc.boolean(), write: fc.boolean(), extra: fc.constant(1) }));
    const memory = fc.record({ address: u64ish, length: u64ish, contiguousPageSize: u64ish }, { requiredKeys: ['address', 'length'] });
    const input = fc.oneof(fc.record({ iova: u64ish, memory, access }, { requiredKeys: ['memory'] }), fc.record({ iova: u64ish, memory, bogus: fc.constant(1) }));
    fc.assert(
      fc.property(input, (value) => {
        const fast = fastMapInput(value);
        if (fast === undefined) return;
        const slow = mapInput.safeParse(value);
        expect(slow.success).toBe(true);
        expect(fast).toEqual(slow.data);
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.record({ iova: u64ish, size: u64ish }), (value) => {
        const fast = fastUnmapInput(value);
        if (fast === undefined) return;
        expect(unmapInput.parse(value)).toEqual(fast);
      }),
      { numRuns: 2000 },
    );
  });
});
