// Differential fidelity: the same random operation sequences, seed for seed, on the real kernel and
// on the simulator's matching preset, through the same backend (backend-smmu's handle, below core's
// own checks, so that the kernels' answers are compared). Every result and errno must agree; a
// disagreement prints the seed and the shrunk sequence. Runs inside the QEMU guest.
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { edgesOf, HotPlugSide, hotPlugSequence, sequence, Side, type HotPlugOperation, type Operation } from './differential.js';
import { interfaceOf, lane, realMachine, simMachine } from './targets.js';

const SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_SEQUENCES ?? 1000);
/** The attach/detach family: fewer sequences, each opens two groups or binds two cdevs. */
const HOT_PLUG_SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_HOT_PLUG_SEQUENCES ?? 200);

function describeOperation(operation: Operation | HotPlugOperation): string {
  if (operation.kind === 'set-iommu') return 'set-iommu';
  if (operation.kind === 'attach' || operation.kind === 'detach' || operation.kind === 'open-device' || operation.kind === 'close-device') return `${operation.kind} edu ${operation.member + 1}`;
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

    it(`agrees on every result, errno and usable range over ${HOT_PLUG_SEQUENCES} attach/detach sequences`, async () => {
      const kernelInterface = interfaceOf(currentLane);
      const real = new HotPlugSide(realMachine(), kernelInterface);
      const simulated = new HotPlugSide(simMachine(currentLane), kernelInterface);
      const { msi, msiEnd, top } = edgesOf(currentLane);
      let operations = 0;
      /** How often each step gave each answer (the part before `|`): the sequences must reach every rule. */
      const answers: Record<string, number> = {};
      /**
       * Each distinct disagreement, by the first step whose answers differ (its kind and both answers,
       * usable ranges aside): the first seed's sequence shrunk, and every seed that showed it.
       */
      const disagreements = new Map<string, { report: string; seeds: number[] }>();
      try {
        for (let seed = 1; seed <= HOT_PLUG_SEQUENCES; seed++) {
          const ops = hotPlugSequence(seed, msi, msiEnd, top, kernelInterface);
          operations += ops.length;
          const [expected, actual] = [await real.run(ops), await simulated.run(ops)];
          expected.forEach((answer, index) => {
            const step = ops[index]!.kind;
            const key = `${step} ${answer.split(' | ')[0]!.replace(/^ok [0-9]+$/, answer === 'ok 0' ? 'ok 0 bytes' : 'ok some')}`;
            answers[key] = (answers[key] ?? 0) + 1;
          });
          if (JSON.stringify(expected) === JSON.stringify(actual)) continue;
          // Every seed runs: each distinct disagreement is shrunk once and reported with its seeds.
          const first = expected.findIndex((answer, index) => answer !== actual[index]);
          const signature = `${ops[first]!.kind}: kernel ${expected[first]!.split(' | ')[0]}, simulator ${actual[first]!.split(' | ')[0]}`;
          const known = disagreements.get(signature);
          if (known !== undefined) {
            known.seeds.push(seed);
            continue;
          }
          // Drop steps one at a time while the two still disagree, pass after pass until none can go.
          let shrunk = ops;
          for (let before = Infinity; shrunk.length < before; ) {
            before = shrunk.length;
            for (let index = shrunk.length - 1; index >= 0; index--) {
              const candidate = shrunk.filter((_, position) => position !== index);
              if (JSON.stringify(await real.run(candidate)) !== JSON.stringify(await simulated.run(candidate))) shrunk = candidate;
            }
          }
          const realResults = await real.run(shrunk);
          const simResults = await simulated.run(shrunk);
          const report = shrunk.map((operation, index) => `  ${describeOperation(operation)}: kernel ${realResults[index]}, simulator ${simResults[index]}`).join('\n');
          disagreements.set(signature, { report, seeds: [seed] });
        }
      } finally {
        real.release();
        simulated.release();
      }
      if (disagreements.size > 0) {
        const reports = [...disagreements].map(([signature, { report, seeds }]) => `${signature} (seeds ${seeds.join(', ')}); seed ${seeds[0]} shrunk:\n${report}`);
        expect.fail(`${disagreements.size} distinct attach/detach disagreement${disagreements.size === 1 ? '' : 's'}:\n${reports.join('\n')}`);
      }
      writeFileSync(`/tmp/results/differential-hot-plug-${lane}.json`, JSON.stringify({ lane, sequences: HOT_PLUG_SEQUENCES, operations, answers }));
      console.log(`differential ${lane}, attach/detach: ${HOT_PLUG_SEQUENCES} sequences, ${operations} operations, all agree; answers ${JSON.stringify(answers)}`);
      // The rules the family aims at. type1: a group joins a live container and leaves it; a group
      // already in it, or not in it, is EINVAL; leaving while a device fd is open is EBUSY; the last
      // group out takes the IOMMU with it, so maps are EINVAL until SET_IOMMU. iommufd: a device
      // attaches and detaches; an attach over a mapping in its reserved region is EADDRINUSE.
      const rules =
        kernelInterface === 'type1'
          ? ['attach ok', 'attach EINVAL', 'detach ok', 'detach EINVAL', 'detach EBUSY', 'open-device ok', 'map ok', 'map EINVAL']
          : ['attach bound, ok', 'attach ok, ok', 'detach ok', 'close-device ok', 'map ok', 'unmap ok some'];
      for (const expected of rules) expect(answers[expected] ?? 0, expected).toBeGreaterThan(0);
      if (kernelInterface === 'iommufd') expect(Object.keys(answers).some((key) => key.startsWith('attach') && key.endsWith('EADDRINUSE')), 'attach EADDRINUSE').toBe(true);
    });
  });
}
