import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DirtyPages } from './dirty-pages.js';
import type { DmaDomain, Translation } from './paged-domain.js';
import { createSimulator } from './simulator.js';

/** Pages 0 to 350,000: past the largest page the property sets (200,000 + 40,000) or reads (200,000 + 150,000). */
const REFERENCE_PAGES = 350_001;

/**
 * A page set as the reference: what DirtyPages must behave as. One byte a page, so the reference's
 * own cost (up to 480,000 page updates a case) stays far below a Set's under a loaded machine.
 */
function runsOf(pages: Uint8Array, first: number, last: number): [number, number][] {
  const runs: [number, number][] = [];
  for (let page = first; page <= last; page++) {
    if (pages[page] === 0) continue;
    const top = runs[runs.length - 1];
    if (top !== undefined && top[1] === page - 1) top[1] = page;
    else runs.push([page, page]);
  }
  return runs;
}

describe('DirtyPages', () => {
  it('behaves as a set of pages under sets, clears, counts and runs (property)', () => {
    const page = fc.integer({ min: 0, max: 200_000 });
    const operation = fc.tuple(fc.constantFrom('set', 'clear'), page, fc.integer({ min: 0, max: 40_000 }));
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 12 }), page, fc.integer({ min: 0, max: 150_000 }), (operations, from, span) => {
        const dirty = new DirtyPages();
        const reference = new Uint8Array(REFERENCE_PAGES);
        for (const [kind, first, length] of operations) {
          const last = first + length;
          if (kind === 'set') {
            dirty.set(first, last);
            reference.fill(1, first, last + 1);
          } else {
            dirty.clear(first, last);
            reference.fill(0, first, last + 1);
          }
        }
        const to = from + span;
        const runs: [number, number][] = [];
        dirty.forEachRun(from, to, (a, b) => runs.push([a, b]));
        expect(runs).toEqual(runsOf(reference, from, to));
        expect(dirty.count(from, to)).toBe(runsOf(reference, from, to).reduce((sum, [a, b]) => sum + b - a + 1, 0));
        expect(dirty.empty).toBe(!reference.includes(1));
        for (const probe of [from, to, from + 1, 32_767, 32_768]) expect(dirty.test(probe)).toBe(reference[probe] === 1);
      }),
      { numRuns: 150 },
    );
  });

  it('stores nothing per page: a chunk per 128 MiB of IOVA touched, dropped when it clears', () => {
    const dirty = new DirtyPages();
    // 2^40 pages apart: page numbers of IOVAs near 2^52 stay exact.
    dirty.set(0, 0);
    dirty.set(2 ** 40, 2 ** 40 + 10);
    const chunks = (dirty as unknown as { chunks: Map<number, Uint32Array> }).chunks;
    expect(chunks.size).toBe(2);
    const runs: [number, number][] = [];
    dirty.forEachRun(0, 2 ** 41, (a, b) => runs.push([a, b]));
    expect(runs).toEqual([
      [0, 0],
      [2 ** 40, 2 ** 40 + 10],
    ]);
    dirty.clear(0, 2 ** 41);
    expect(chunks.size).toBe(0);
    expect(dirty.empty).toBe(true);
  });

  it('merges runs across words and chunks', () => {
    const dirty = new DirtyPages();
    dirty.set(30, 70_000);
    const runs: [number, number][] = [];
    dirty.forEachRun(0, 100_000, (a, b) => runs.push([a, b]));
    expect(runs).toEqual([[30, 70_000]]);
    expect(dirty.count(0, 100_000)).toBe(70_000 - 30 + 1);
  });
});

describe('device DMA writes and dirty bits', () => {
  /** A domain mapping every IOVA 1:1 onto a buffer, recording the writes it is told of. */
  function recordingDomain(base: bigint, writable: boolean): DmaDomain & { writes: [bigint, number][] } {
    const writes: [bigint, number][] = [];
    return {
      writes,
      translate: (iova: bigint, write: boolean): Translation =>
        write && !writable ? { kind: 'fault', reason: 'permission' } : { kind: 'memory', vaddr: base + iova, writable },
      recordWrite: (iova: bigint, length: number) => void writes.push([iova, length]),
    };
  }

  it('tells the domain of a write that landed, once, with its IOVA and length', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const region = simulator.memory.allocate(0x10000n);
    const device = simulator.device('0000:00:03.0');
    const domain = recordingDomain(region.address, true);
    device.domain = domain;
    expect(device.dmaWrite(0x1ff0n, new Uint8Array(0x20))).toBe(true);
    expect(domain.writes).toEqual([[0x1ff0n, 0x20]]);
    // Reads dirty nothing.
    device.dmaRead(0x3000n, 16);
    expect(domain.writes).toHaveLength(1);
  });

  it('records nothing for a write that faults (the simulator writes all or nothing)', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const region = simulator.memory.allocate(0x10000n);
    const device = simulator.device('0000:00:03.0');
    const domain = recordingDomain(region.address, false);
    device.domain = domain;
    expect(device.dmaWrite(0x1000n, new Uint8Array(8))).toBe(false);
    expect(domain.writes).toEqual([]);
  });
});
