import { DirtyBitmap, ERRNO, IoasError, type Container, type Mapping } from '@ioas/core';
import { codeExpecter, prepare, type GroupDeclaration } from '../context.js';
import type { ConformanceExpect } from '../types.js';

/** What a dirty-tracking call must leave as it was when it fails. */
function observable(container: Container) {
  return { tracking: container.dirty.tracking, mappings: container.mappings(), stats: container.stats() };
}

/** The pages a device wrote must read dirty; precise tracking reports only those, pessimistic every page. */
function checkBitmap(expect: ConformanceExpect, container: Container, bitmap: DirtyBitmap, mapping: Mapping, written: readonly bigint[], label: string): void {
  const pages = Number((mapping.iova.last - mapping.iova.start + 1n) / bitmap.pageSize);
  expect(bitmap.iova, `${label}: the bitmap covers the mapping`).toEqual(mapping.iova);
  expect(bitmap.pages, `${label}: pages`).toBe(pages);
  for (const iova of written) expect(bitmap.isDirty(iova), `${label}: the page the device wrote at 0x${iova.toString(16)} is dirty`).toBe(true);
  const capability = container.dirty.capability;
  if (capability.supported && capability.precision === 'pessimistic') {
    expect(bitmap.count(), `${label}: pessimistic tracking reports every mapped page`).toBe(pages);
  } else {
    const distinct = new Set(written.map((iova) => (iova - mapping.iova.start) / bitmap.pageSize));
    expect(bitmap.count(), `${label}: precise tracking reports only the pages written`).toBe(distinct.size);
  }
}

/**
 * The `dirty` group: dirty-page tracking for live migration. Where the backend offers it: the pages
 * a device writes read dirty (every mapped page when the tracking is pessimistic, only those when
 * precise), a read clears them, a read into a reused bitmap answers as one into a new bitmap, an unmap returns the bitmap of what it unmapped, bad input is
 * refused with nothing changed, and a fault at every kernel call of start, read, unmap and stop
 * leaves nothing behind. Where it does not, start() refuses with `unsupported` and a reason.
 */
export const dirtyGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);

  it('refuses with unsupported, saying why, where there is no tracking', async () => {
    using container = await target.open();
    const capability = container.dirty.capability;
    if (capability.supported) return;
    expect(capability.reason.length, 'the reason is said in words').toBeGreaterThan(10);
    const error = expectCode(() => container.dirty.start(), 'unsupported');
    expect(error.message).toContain(capability.reason);
    expect(container.dirty.tracking).toBe(false);
  });

  it('reports the pages a device wrote, clears them on read, and unmaps with the bitmap', async () => {
    using container = await target.open();
    const capability = container.dirty.capability;
    if (!capability.supported) return;
    const { pageSize } = prepare(container);
    const mapping = container.map({ memory: target.memory(16n * 0x1000n, pageSize) });
    const device = target.device?.();
    container.dirty.start();
    expect(container.dirty.tracking).toBe(true);
    const written: bigint[] = [];
    if (device !== undefined) {
      for (const page of [1n, 2n, 9n]) {
        const iova = mapping.iova.start + page * 0x1000n + 0x10n;
        expect(device.dmaWrite(iova, new Uint8Array([0xd1, 0x47, Number(page)])), `the device writes page ${page}`).toBe(true);
        written.push(iova);
      }
    }
    const first = container.dirty.read({ iova: mapping.iova });
    checkBitmap(expect, container, first, mapping, written, 'first read');
    // Read again: precise tracking cleared them; pessimistic reports every page again.
    checkBitmap(expect, container, container.dirty.read({ iova: mapping.iova }), mapping, [], 'second read');
    // Into a reused bitmap, even one holding other bits: the same answer as into a new one.
    const since: bigint[] = [];
    if (device !== undefined) {
      const iova = mapping.iova.start + 12n * 0x1000n;
      expect(device.dmaWrite(iova, new Uint8Array([0xd3])), 'the device writes page 12').toBe(true);
      since.push(iova);
    }
    const reused = new DirtyBitmap(mapping.iova, first.pageSize, new Uint8Array(first.bytes.length).fill(0xa5));
    const refilled = container.dirty.read({ iova: mapping.iova, into: reused });
    expect(refilled, 'read({ into }) returns the bitmap it was given').toBe(reused);
    checkBitmap(expect, container, refilled, mapping, since, 'a read into a reused bitmap');
    if (device !== undefined) {
      const iova = mapping.iova.start + 5n * 0x1000n;
      expect(device.dmaWrite(iova, new Uint8Array([0xd2])), 'the device writes again').toBe(true);
      written.splice(0, written.length, iova);
    }
    const { unmapped, dirty } = container.dirty.unmap(mapping);
    expect(unmapped).toBe(mapping.memory.length);
    checkBitmap(expect, container, dirty, mapping, written, 'unmap');
    expect(container.mappings()).toEqual([]);
    container.dirty.stop();
    expect(container.dirty.tracking).toBe(false);
    // Tracking can start again.
    container.dirty.start();
    container.dirty.stop();
  });

  it('refuses bad input with a typed error and changes nothing', async () => {
    using container = await target.open();
    const capability = container.dirty.capability;
    if (!capability.supported) return;
    const { pageSize } = prepare(container);
    const mapping = container.map({ memory: target.memory(4n * 0x1000n, pageSize) });
    const refused = (run: () => unknown, code: Parameters<typeof expectCode>[1]) => {
      const before = observable(container);
      expectCode(run, code);
      expect(observable(container), `after the ${code} refusal`).toEqual(before);
    };
    refused(() => container.dirty.read({ iova: mapping.iova }), 'not-ready');
    container.dirty.start();
    refused(() => container.dirty.start(), 'in-use');
    // The smallest power of two the capability does not offer, above its smallest.
    let unoffered = capability.pageSizes & -capability.pageSizes;
    while ((capability.pageSizes & unoffered) !== 0n) unoffered <<= 1n;
    refused(() => container.dirty.read({ iova: mapping.iova, pageSize: unoffered }), 'invalid-argument');
    refused(() => container.dirty.read({ iova: { start: mapping.iova.start + 0x1000n, last: mapping.iova.last } }), 'bisect');
    const free = container.allocate({ size: 0x10000n })[0]!;
    refused(() => container.dirty.read({ iova: free }), 'not-found');
    refused(() => container.dirty.unmap(free), 'not-found');
    refused(() => container.dirty.read({ iova: mapping.iova, pageSize: 0n }), 'invalid-argument');
    if (!capability.readWithoutClear) refused(() => container.dirty.read({ iova: mapping.iova, clear: false }), 'unsupported');
    container.dirty.stop();
  });

  it('leaves nothing behind when any kernel call of start, read, unmap or stop fails', async () => {
    const inject = target.injectFault;
    const state = target.kernelState;
    if (inject === undefined || state === undefined) return;
    using container = await target.open();
    if (!container.dirty.capability.supported) return;
    const { pageSize } = prepare(container);
    const mapping = container.map({ memory: target.memory(4n * 0x1000n, pageSize) });
    const maxSteps = 32;
    const operations = {
      start: () => container.dirty.start(),
      read: () => container.dirty.read({ iova: mapping.iova }),
      unmap: () => container.dirty.unmap(mapping),
      stop: () => container.dirty.stop(),
    };
    for (const [name, run] of Object.entries(operations)) {
      const before = observable(container);
      const files = state().openFiles;
      const mappings = state().mappings;
      for (let step = 0; ; step++) {
        expect(step, `${name} still fails with no fault left to inject`).toBeLessThan(maxSteps);
        inject(ERRNO.EIO, step);
        try {
          run();
        } catch (error) {
          expect(IoasError.isInstance(error), String(error)).toBe(true);
          expect(observable(container), `after ${name} failed at kernel call ${step + 1}`).toEqual(before);
          expect(state().openFiles, `files open after ${name} failed at kernel call ${step + 1}`).toBe(files);
          expect(state().mappings, `kernel mappings after ${name} failed at kernel call ${step + 1}`).toBe(mappings);
          continue;
        }
        target.clearFaults?.();
        break;
      }
    }
    expect(container.dirty.tracking).toBe(false);
    expect(container.mappings()).toEqual([]);
  });
};
