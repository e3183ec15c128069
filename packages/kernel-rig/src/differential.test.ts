// Differential fidelity: the same random operation sequences, seed for seed, on the real kernel and
// on the simulator's matching preset, through the same backend (backend-smmu's handle, below core's
// own checks, so that the kernels' answers are compared). Every result and errno must agree; a
// disagreement prints the seed and the shrunk sequence. Runs inside the QEMU guest.
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { edgesOf, sequence, Side, type Operation } from './differential.js';
import { interfaceOf, lane, realMachine, simMachine } from './targets.js';

const SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_SEQUENCES ?? 1000);

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
      const { msi, msiEnd, top } = edgesOf(currentLane);
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
