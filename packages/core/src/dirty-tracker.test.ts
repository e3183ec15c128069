import { describe, expect, it } from 'vitest';
import { scriptedBackend, SMMU_RESERVED, type ScriptedState } from './__fixtures__/scripted-backend.js';
import { Container } from './container.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { ERRNO } from './errno.js';
import { IoasError } from './errors.js';
import type { BackendHandleV1 } from './spi.js';
import type { DirtyTracking } from './types.js';

const PAGE = 0x1000n;
const MiB = 1n << 20n;
const RAM = 0x1000_0000n;
const memory = (length: bigint, address = 0x7f00_0000_0000n) => ({ address, length });

const PRECISE: DirtyTracking = { supported: true, pageSizes: 0x1000n | 0x20_0000n, maxBitmapBytes: null, precision: 'precise', readWithoutClear: true };
const TYPE1: DirtyTracking = { supported: true, pageSizes: 0x1000n, maxBitmapBytes: 0x1000n, precision: 'pessimistic', readWithoutClear: false };

/** `null`: a backend that says nothing of dirty tracking. */
async function open(dirtyTracking: DirtyTracking | null = PRECISE, hotPlug = false) {
  const { backend, state } = scriptedBackend({
    reserved: SMMU_RESERVED,
    capabilities: { ...(dirtyTracking === null ? {} : { dirtyTracking }), hotPlug },
    groups: { 0: { devices: ['0000:00:03.0'] }, 1: { devices: ['0000:00:10.0'] } },
  });
  const container = await Container.open({ backend, groups: [0] });
  return { container, state: state() };
}

/** Runs `run`, expects an IoasError with `code`, and checks that neither the container nor the backend changed. */
function expectRefused(container: Container, state: ScriptedState, run: () => unknown, code: string, message?: RegExp): IoasError {
  const before = { mappings: container.mappings(), tracking: container.dirty.tracking, backendTracking: state.tracking, written: [...state.written], mapped: state.mapped.length };
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(IoasError.isInstance(thrown), `expected an IoasError, got ${String(thrown)}`).toBe(true);
  const error = thrown as IoasError;
  expect(error.code).toBe(code);
  if (message) expect(error.message).toMatch(message);
  expect({ mappings: container.mappings(), tracking: container.dirty.tracking, backendTracking: state.tracking, written: [...state.written], mapped: state.mapped.length }).toEqual(before);
  return error;
}

describe('container.dirty', () => {
  it('starts, reads and clears the pages written, reads again without them, and stops', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(MiB) });
    container.dirty.start();
    expect(container.dirty.tracking).toBe(true);
    state.written.add(RAM + 3n * PAGE);
    state.written.add(RAM + 4n * PAGE);
    state.written.add(RAM + 200n * PAGE);
    const first = container.dirty.read({ iova: { start: RAM, size: MiB } });
    expect(first.pageSize).toBe(PAGE);
    expect(first.pages).toBe(256);
    expect(first.count()).toBe(3);
    expect([...first.runs()]).toEqual([
      { start: RAM + 3n * PAGE, last: RAM + 5n * PAGE - 1n },
      { start: RAM + 200n * PAGE, last: RAM + 201n * PAGE - 1n },
    ]);
    expect(container.dirty.read({ iova: { start: RAM, size: MiB } }).count()).toBe(0);
    container.dirty.stop();
    expect(container.dirty.tracking).toBe(false);
    expect(state.calls.filter((call) => call.startsWith('dirty'))).toEqual(['dirtyStart', 'dirtyRead 10000000-100fffff/1000', 'dirtyRead 10000000-100fffff/1000', 'dirtyStop']);
    // stop() when not tracking does nothing (safe in a finally).
    container.dirty.stop();
    expect(state.calls.at(-1)).toBe('dirtyStop');
  });

  it('reads at a larger page size the capability offers, and can leave the bits set', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(4n * MiB) });
    container.dirty.start();
    state.written.add(RAM + 0x20_0000n + 5n * PAGE);
    const kept = container.dirty.read({ iova: { start: RAM, size: 4n * MiB }, pageSize: 0x20_0000n, clear: false });
    expect(kept.pages).toBe(2);
    expect([...kept.runs()]).toEqual([{ start: RAM + 0x20_0000n, last: RAM + 0x40_0000n - 1n }]);
    expect(container.dirty.read({ iova: { start: RAM, size: 4n * MiB } }).count()).toBe(1);
  });

  it('reads into an earlier bitmap of the same range: zeroed, refilled, returned; refused unchanged when it does not fit', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + 2n * MiB, memory: memory(MiB, 0x7f00_1000_0000n) });
    container.dirty.start();
    const range = { start: RAM, size: MiB };
    state.written.add(RAM + 3n * PAGE);
    const first = container.dirty.read({ iova: range });
    expect(first.count()).toBe(1);
    state.written.add(RAM + 9n * PAGE);
    const bytes = first.bytes;
    const second = container.dirty.read({ iova: range, into: first });
    expect(second).toBe(first);
    expect(second.bytes).toBe(bytes);
    // Page 3 was cleared by the first read: only page 9 now, counts and runs recomputed.
    expect([...second.runs()]).toEqual([{ start: RAM + 9n * PAGE, last: RAM + 10n * PAGE - 1n }]);
    expect(second.count()).toBe(1);
    state.written.add(RAM + 11n * PAGE);
    const other = container.dirty.read({ iova: { start: RAM + 2n * MiB, size: MiB } });
    const snapshot = [...first.bytes];
    expectRefused(container, state, () => container.dirty.read({ iova: range, into: other }), 'invalid-argument', /into covers 0x10200000-0x102fffff/);
    expectRefused(container, state, () => container.dirty.read({ iova: { start: RAM, size: 2n * MiB }, pageSize: 0x20_0000n, into: first }), 'invalid-argument', /same range and page size/);
    expectRefused(container, state, () => container.dirty.read({ iova: range, into: { bytes: new Uint8Array(32) } as never }), 'invalid-argument', /into must be a DirtyBitmap/);
    const odd = new DirtyBitmap(first.iova, first.pageSize, new Uint8Array(first.bytes.length + 4).subarray(4));
    expectRefused(container, state, () => container.dirty.read({ iova: range, into: odd }), 'invalid-argument', /8-byte aligned/);
    expect([...first.bytes]).toEqual(snapshot);
    // A read the kernel fails leaves the reused bitmap all clean, not showing the last round as this one.
    state.failNext('dirtyRead', ERRNO.EIO);
    expect(() => container.dirty.read({ iova: range, into: first })).toThrow(expect.objectContaining({ code: 'kernel' }));
    expect(first.count()).toBe(0);
    expect(container.dirty.read({ iova: range, into: first }).count()).toBe(1);
  });

  it('unmaps with the bitmap of what it unmapped, covering those mappings', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + 2n * MiB, memory: memory(MiB, 0x7f00_1000_0000n) });
    container.dirty.start();
    state.written.add(RAM + PAGE);
    state.written.add(RAM + 2n * MiB + 7n * PAGE);
    const result = container.dirty.unmap({ start: RAM - MiB, size: 5n * MiB });
    expect(result.unmapped).toBe(2n * MiB);
    expect(result.dirty.iova).toEqual({ start: RAM, last: RAM + 3n * MiB - 1n });
    expect([...result.dirty.runs()].map((run) => run.start)).toEqual([RAM + PAGE, RAM + 2n * MiB + 7n * PAGE]);
    expect(container.mappings()).toEqual([]);
    expect(state.calls.filter((call) => call.startsWith('dirtyUnmap'))).toEqual(['dirtyUnmap 10000000-102fffff/1000']);
  });

  it('refuses bad input with a typed error and changes nothing', async () => {
    const { container, state } = await open(TYPE1);
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + 4n * MiB, memory: memory(MiB, 0x7f00_1000_0000n) });
    const range = { start: RAM, size: MiB };
    expectRefused(container, state, () => container.dirty.read({ iova: range }), 'not-ready', /dirty\.start\(\) first/);
    expectRefused(container, state, () => container.dirty.unmap(range), 'not-ready');
    container.dirty.start();
    state.written.add(RAM);
    expectRefused(container, state, () => container.dirty.start(), 'in-use', /already on/);
    expectRefused(container, state, () => container.dirty.read({ iova: range, pageSize: 0x20_0000n }), 'invalid-argument', /page size 0x200000 is not offered; dirty bitmaps here use pages of 0x1000 bytes only/);
    expectRefused(container, state, () => container.dirty.read({ iova: range, pageSize: 0x3000n }), 'invalid-argument');
    expectRefused(container, state, () => container.dirty.read({ iova: range, clear: false }), 'unsupported', /clears the dirty bits/);
    expectRefused(container, state, () => container.dirty.read({ iova: { start: RAM + 0x800n, size: MiB } }), 'misaligned');
    expectRefused(container, state, () => container.dirty.read({ iova: { start: RAM + PAGE, size: MiB - PAGE } }), 'bisect', /starts inside mapping/);
    expectRefused(container, state, () => container.dirty.read({ iova: { start: RAM, size: MiB / 2n } }), 'bisect', /ends inside mapping/);
    expectRefused(container, state, () => container.dirty.read({ iova: { start: RAM + 2n * MiB, size: MiB } }), 'not-found', /nothing is mapped/);
    // 0x1000 bytes of bitmap at most: 0x8000 pages, 128 MiB of IOVA.
    expectRefused(container, state, () => container.dirty.read({ iova: { start: 0n, size: 256n * MiB + 8n * MiB } }), 'invalid-argument', /above the largest, 0x1000; read it in pieces/);
    expectRefused(container, state, () => container.dirty.unmap({ start: RAM + 2n * MiB, size: MiB }), 'not-found');
    expectRefused(container, state, () => container.dirty.unmap({ start: RAM + PAGE, size: PAGE }), 'bisect');
    for (const hostile of [undefined, null, 7, { iova: 'x' }, { iova: { start: -1n, size: 1n } }, { iova: range, pageSize: 0n }, { iova: range, extra: 1 }, { iova: range, clear: 'yes' }]) {
      expectRefused(container, state, () => container.dirty.read(hostile as never), 'invalid-argument');
    }
    expectRefused(container, state, () => container.dirty.unmap(range, { pageSize: -4 } as never), 'invalid-argument');
  });

  it('refuses with unsupported, and says why, where the backend has no tracking', async () => {
    const reason = 'the IOMMU of device 0000:00:03.0 has no dirty bits (IOMMU_HW_CAP_DIRTY_TRACKING unset)';
    const { container, state } = await open({ supported: false, reason });
    expect(container.dirty.capability).toEqual({ supported: false, reason });
    expectRefused(container, state, () => container.dirty.start(), 'unsupported', /no dirty-page tracking: the IOMMU of device 0000:00:03.0 has no dirty bits/);
    const none = await open(null);
    expect(none.container.dirty.capability.supported).toBe(false);
    expectRefused(none.container, none.state, () => none.container.dirty.start(), 'unsupported', /backend 'scripted' does not offer dirty-page tracking/);
    expectRefused(none.container, none.state, () => none.container.dirty.read({ iova: { start: RAM, size: MiB } }), 'unsupported');
  });

  it('a kernel refusal comes back typed and leaves tracking and mappings as they were', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(MiB) });
    state.failNext('dirtyStart', ERRNO.ENOMEM);
    const error = expectRefused(container, state, () => container.dirty.start(), 'kernel');
    expect(error.errno).toBe(ERRNO.ENOMEM);
    container.dirty.start();
    state.failNext('dirtyUnmap', ERRNO.EFAULT);
    expectRefused(container, state, () => container.dirty.unmap({ start: RAM, size: MiB }), 'kernel');
    expect(container.mappings()).toHaveLength(1);
    state.failNext('dirtyStop', ERRNO.EIO);
    expectRefused(container, state, () => container.dirty.stop(), 'kernel');
    expect(container.dirty.tracking).toBe(true);
  });

  it('refuses hot-plug while tracking, and everything once closed', async () => {
    const { container, state } = await open(PRECISE, true);
    container.map({ iova: RAM, memory: memory(MiB) });
    container.dirty.start();
    expectRefused(container, state, () => container.attach({ groups: [1] }), 'in-use', /dirty\.stop\(\) it before devices join or leave/);
    container.dirty.stop();
    container.attach({ groups: [1] });
    container.close();
    expect(() => container.dirty.start()).toThrow(expect.objectContaining({ code: 'closed' }));
    expect(() => container.dirty.read({ iova: { start: RAM, size: MiB } })).toThrow(expect.objectContaining({ code: 'closed' }));
  });

  it('refuses a backend whose dirty methods do not match its capability', async () => {
    const { backend } = scriptedBackend({ capabilities: { dirtyTracking: PRECISE } });
    const broken = {
      ...backend,
      open: async (request: Parameters<typeof backend.open>[0]) => {
        const { doDirtyRead: _dropped, ...handle } = (await backend.open(request)) as BackendHandleV1;
        return handle;
      },
    };
    await expect(Container.open({ backend: broken, groups: [0] })).rejects.toMatchObject({ code: 'backend-contract', message: expect.stringMatching(/lacks doDirtyRead/) });
  });
});
