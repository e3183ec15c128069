// Model-based test: random operation sequences on a simulated container (Container over the sim
// backend, x86-vtd, type1v2) against a plain reference model written from the fact sheets. Any
// divergence makes fast-check shrink the sequence and print it.
import { Container, IoasError } from '@ioas/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sim } from './sim-backend.js';
import { createSimulator } from './simulator.js';

const PAGE = 0x1000n;
const BUDGET = 6;
const MSI = { start: 0xfee0_0000n, last: 0xfeef_ffffn };
const APERTURE_LAST = 0x7f_ffff_ffffn;

type Operation = { kind: 'map' | 'unmap'; iova: bigint; pages: number };

/** IOVAs near the interesting places: low memory, both edges of the MSI window, the aperture top. */
const iova = fc.oneof(
  fc.integer({ min: 0, max: 63 }).map((page) => BigInt(page) * PAGE),
  fc.integer({ min: -4, max: 4 }).map((page) => MSI.start + BigInt(page) * PAGE),
  fc.integer({ min: -4, max: 4 }).map((page) => MSI.last + 1n + BigInt(page) * PAGE),
  fc.integer({ min: -4, max: 2 }).map((page) => APERTURE_LAST + 1n + BigInt(page) * PAGE),
);
// Three maps to one unmap, so that sequences reach the mapping budget.
const operation = fc.record({ kind: fc.constantFrom('map' as const, 'map' as const, 'map' as const, 'unmap' as const), iova, pages: fc.integer({ min: 1, max: 4 }) });

/** The reference: type1v2 as the fact sheets state it, seen through core's checks. */
class Reference {
  mappings: { start: bigint; last: bigint }[] = [];

  map(start: bigint, pages: number): string {
    const last = start + BigInt(pages) * PAGE - 1n;
    if (this.mappings.some((mapping) => mapping.start <= last && start <= mapping.last)) return 'overlap';
    if (this.mappings.length >= BUDGET) return 'budget-exhausted';
    if (start <= MSI.last && MSI.start <= last) return 'reserved';
    if (last > APERTURE_LAST) return 'out-of-range';
    this.mappings.push({ start, last });
    return 'ok';
  }

  unmap(start: bigint, pages: number): string {
    const last = start + BigInt(pages) * PAGE - 1n;
    const affected = this.mappings.filter((mapping) => mapping.start <= last && start <= mapping.last);
    if (affected.some((mapping) => mapping.start < start || mapping.last > last)) return 'bisect';
    this.mappings = this.mappings.filter((mapping) => !affected.includes(mapping));
    return `ok ${affected.reduce((sum, mapping) => sum + mapping.last - mapping.start + 1n, 0n)}`;
  }
}

describe('model-based: a simulated x86-vtd container against a reference model', () => {
  it('agrees on every result, and the kernel holds exactly the model mappings', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 40 }), async (operations: Operation[]) => {
        const simulator = createSimulator({ platform: 'x86-vtd', dmaEntryLimit: BUDGET });
        const container = await Container.open({ backend: sim({ simulator }), groups: [3] });
        const memory = simulator.memory.allocate(6n * PAGE);
        const reference = new Reference();
        for (const { kind, iova: start, pages } of operations) {
          let actual: string;
          try {
            if (kind === 'map') {
              container.map({ iova: start, memory: { address: memory.address, length: BigInt(pages) * PAGE } });
              actual = 'ok';
            } else {
              actual = `ok ${container.unmap({ iova: start, size: BigInt(pages) * PAGE })}`;
            }
          } catch (error) {
            if (!IoasError.isInstance(error)) throw error;
            actual = error.code;
          }
          const expected = kind === 'map' ? reference.map(start, pages) : reference.unmap(start, pages);
          expect(actual, `${kind} ${pages} pages at 0x${start.toString(16)}`).toBe(expected);
          expect(simulator.liveMappings()).toBe(reference.mappings.length);
          expect(container.stats().mappings).toBe(reference.mappings.length);
        }
        container.close();
        expect(simulator.liveMappings()).toBe(0);
      }),
      { numRuns: 150 },
    );
  });
});
