// Differential fidelity: the same random operation sequences, seed for seed, on the real kernel and
// on the simulator's matching preset, through the same backend (backend-smmu's handle, below core's
// own checks, so that the kernels' answers are compared). Every result and errno must agree; a
// disagreement prints the seed and the shrunk sequence. Runs inside the QEMU guest.
import { writeFileSync } from 'node:fs';
import { errnoName, IoasError, type BackendHandleV1 } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, type DmaMemory } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { interfaceOf, lane, realMachine, simMachine, type Machine } from './targets.js';

const PAGE = 0x1000n;
const SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_SEQUENCES ?? 1000);
const BUDGET = 6;

type Operation =
  | { kind: 'map'; iova: bigint; pages: number; vaddrPage: number; read: boolean; write: boolean }
  | { kind: 'unmap'; iova: bigint; pages: number }
  /** iommufd only: IOMMU_IOAS_ALLOW_IOVAS with these ranges (start, last inclusive). */
  | { kind: 'allow'; ranges: { start: bigint; last: bigint }[] };

/** xorshift32: the same seed gives the same sequence everywhere. */
function generator(seed: number) {
  let state = seed * 2654435761 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  return { next, int: (low: number, high: number) => low + Math.floor(next() * (high - low + 1)) };
}

/** IOVAs near what matters: low memory, both edges of the MSI window, the aperture top, misaligned. */
function interestingIova(random: ReturnType<typeof generator>, msi: bigint, msiEnd: bigint, top: bigint): bigint {
  switch (random.int(0, 5)) {
    case 0:
    case 1:
      return BigInt(random.int(0, 24)) * PAGE;
    case 2:
      return msi + BigInt(random.int(-3, 2)) * PAGE;
    case 3:
      return msiEnd + BigInt(random.int(-2, 3)) * PAGE;
    case 4:
      return top + BigInt(random.int(-3, 2)) * PAGE;
    default:
      return BigInt(random.int(0, 24)) * PAGE + 0x800n;
  }
}

function sequence(seed: number, msi: bigint, msiEnd: bigint, top: bigint, allowLists: boolean): Operation[] {
  const random = generator(seed);
  const operations: Operation[] = [];
  const length = random.int(4, 16);
  for (let step = 0; step < length; step++) {
    const iova = interestingIova(random, msi, msiEnd, top);
    const pages = random.int(1, 4);
    if (allowLists && random.next() < 0.15) {
      // Allow-lists: empty (allow all), one or two ranges, some of one byte (start == last), some
      // overlapping each other, some over the MSI window.
      const ranges: { start: bigint; last: bigint }[] = [];
      const count = random.int(0, 2);
      for (let index = 0; index < count; index++) {
        const start = index === 0 ? iova : interestingIova(random, msi, msiEnd, top);
        ranges.push({ start, last: random.next() < 0.1 ? start : start + BigInt(random.int(1, 64)) * PAGE - 1n });
      }
      operations.push({ kind: 'allow', ranges });
    } else if (random.next() < 0.65) {
      const access = random.int(0, 3);
      operations.push({ kind: 'map', iova, pages, vaddrPage: random.int(0, 12), read: access !== 1, write: access !== 2 });
    } else {
      operations.push({ kind: 'unmap', iova, pages });
    }
  }
  return operations;
}

/** One side of the comparison: a container through backend-smmu's handle on one machine. */
class Side {
  private readonly memory: DmaMemory;
  constructor(private readonly machine: Machine) {
    this.memory = allocateDmaMemory(machine.syscalls, 16n * PAGE);
  }

  async run(operations: readonly Operation[]): Promise<string[]> {
    const limitFile = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';
    const saved = this.machine.syscalls.readFile(limitFile);
    this.machine.syscalls.writeFile(limitFile, String(BUDGET));
    let handle: BackendHandleV1;
    try {
      handle = await smmu({ syscalls: this.machine.syscalls, interface: interfaceOf(lane!) }).open({ groups: [], devices: [this.machine.edu] });
    } finally {
      this.machine.syscalls.writeFile(limitFile, saved);
    }
    const results: string[] = [];
    try {
      for (const operation of operations) {
        const size = operation.kind === 'allow' ? 0n : BigInt(operation.pages) * PAGE;
        try {
          if (operation.kind === 'map') {
            handle.doMap({
              iova: { start: operation.iova, last: operation.iova + size - 1n },
              memory: { address: this.memory.address + BigInt(operation.vaddrPage) * PAGE, length: size },
              access: { read: operation.read, write: operation.write },
            });
            results.push('ok');
          } else if (operation.kind === 'allow') {
            handle.doSetAllowedRanges!(operation.ranges);
            results.push('allowed');
          } else {
            results.push(`ok ${handle.doUnmap({ start: operation.iova, last: operation.iova + size - 1n })}`);
          }
        } catch (error) {
          if (!IoasError.isInstance(error) || error.errno === undefined) throw error;
          results.push(errnoName(error.errno));
        }
      }
    } finally {
      handle.doClose();
    }
    return results;
  }
}

function describeOperation(operation: Operation): string {
  if (operation.kind === 'allow') return `allow [${operation.ranges.map((range) => `0x${range.start.toString(16)}-0x${range.last.toString(16)}`).join(', ')}]`;
  const where = `0x${operation.iova.toString(16)}+${operation.pages}p`;
  return operation.kind === 'map' ? `map ${where} vaddr page ${operation.vaddrPage} ${operation.read ? 'r' : ''}${operation.write ? 'w' : ''}` : `unmap ${where}`;
}

if (lane === undefined) {
  describe('differential fidelity', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` to boot it', () => undefined);
  });
} else {
  const currentLane = lane;
  describe(`differential fidelity, lane ${lane}: real kernel against the simulator`, () => {
    it(`agrees on every result and errno over ${SEQUENCES} random sequences`, async () => {
      const real = new Side(realMachine());
      const simulated = new Side(simMachine(currentLane));
      const x86 = lane !== 'arm64';
      const msi = x86 ? 0xfee0_0000n : 0x800_0000n;
      const msiEnd = x86 ? 0xfef0_0000n : 0x810_0000n;
      const top = x86 ? 1n << 39n : 1n << 48n;
      let operations = 0;
      /** How often each answer came up: the sequences must reach every rule, not only 'ok'. */
      const answers: Record<string, number> = {};
      for (let seed = 1; seed <= SEQUENCES; seed++) {
        const ops = sequence(seed, msi, msiEnd, top, interfaceOf(currentLane) === 'iommufd');
        operations += ops.length;
        const [expected, actual] = [await real.run(ops), await simulated.run(ops)];
        for (const answer of expected) {
          const key = answer.startsWith('ok ') ? (answer === 'ok 0' ? 'unmap 0 bytes' : 'unmap some') : answer;
          answers[key] = (answers[key] ?? 0) + 1;
        }
        if (JSON.stringify(expected) === JSON.stringify(actual)) continue;
        // Shrink: drop operations one at a time while the two still disagree.
        let shrunk = ops;
        for (let index = shrunk.length - 1; index >= 0; index--) {
          const candidate = shrunk.filter((_, position) => position !== index);
          if (JSON.stringify(await real.run(candidate)) !== JSON.stringify(await simulated.run(candidate))) shrunk = candidate;
        }
        const realResults = await real.run(shrunk);
        const simResults = await simulated.run(shrunk);
        const report = shrunk.map((operation, index) => `  ${describeOperation(operation)}: kernel ${realResults[index]}, simulator ${simResults[index]}`).join('\n');
        expect.fail(`seed ${seed} disagrees; shrunk sequence:\n${report}`);
      }
      const summary = { lane, sequences: SEQUENCES, operations, answers };
      writeFileSync(`/tmp/results/differential-${lane}.json`, JSON.stringify(summary));
      console.log(`differential ${lane}: ${SEQUENCES} sequences, ${operations} operations, all agree; answers ${JSON.stringify(answers)}`);
      // Every rule the generator aims at must have been hit (else the agreement proves little).
      // type1 has a mapping budget (ENOSPC); iommufd has none but refuses unmaps of nothing (ENOENT).
      // iommufd also answers allow-lists: accepted, or EADDRINUSE over a reserved region.
      const rules = interfaceOf(currentLane) === 'type1' ? ['ok', 'unmap some', 'EEXIST', 'EINVAL', 'ENOSPC'] : ['ok', 'EEXIST', 'EINVAL', 'ENOENT', 'allowed', 'EADDRINUSE'];
      for (const expected of rules) expect(answers[expected] ?? 0, expected).toBeGreaterThan(0);
    });
  });
}
