// The fidelity differential: each family's sequences run step by step on the real kernel of the
// lane and on the simulator's preset for it, in the same process (four lanes in three boots: the
// 6.12 guest runs the families through type1 as well as through iommufd); every step's outcome (result or
// errno, the argument's bytes after the call, eventfd counts) must agree. The lane writes a report
// (/tmp/results/fidelity-<lane>.json: sequences, steps, the answers, the disagreements) and the
// golden transcript of a fixed corpus (/tmp/results/transcript-<lane>-<family>.json), which
// `node scripts/refresh-traces.mjs` checks in for the simulator-only replay in transcripts.test.ts.
import { writeFileSync } from 'node:fs';
import { libcSyscalls } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { lane, realMachine, simMachine } from '../targets.js';
import { EXPLORING, FAMILIES, FIDELITY_LANES, transcriptSeeds, type Transcript } from './families.js';
import { describeStep, firstDifference, runSteps, type StepOutcome } from './steps.js';
import { encodeTranscript } from './transcript.js';

if (lane === undefined) {
  describe('the fidelity differential', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` to boot it (transcripts.test.ts replays the checked-in transcripts everywhere)', () => undefined);
  });
} else {
  const guest = lane;
  for (const fidelityLane of FIDELITY_LANES[guest]) {
    const { name, kernelInterface } = fidelityLane;
    describe(`the fidelity differential, lane ${name}`, () => {
      const exploring = process.env.IOAS_FIDELITY_EXPLORE === '1';
      for (const family of [...FAMILIES, ...EXPLORING]) {
        if (!family.interfaces.includes(kernelInterface)) continue;
        const proven = FAMILIES.includes(family);
        if (!proven && !exploring) continue;
        it(`${family.name}: ${family.sequences} sequences agree step by step with the simulator${proven ? '' : ' (exploring: reported, not asserted)'}`, () => {
          const real = libcSyscalls();
          const { edu } = realMachine();
          const sim = simMachine(guest);
          const answers = new Map<string, number>();
          const disagreements: string[] = [];
          const transcript: Transcript = { lane: name, family: family.name, sequences: [] };
          let steps = 0;
          let disagreeing = 0;
          for (let seed = 1; seed <= family.sequences; seed++) {
            const sequence = family.generate(seed, fidelityLane);
            const kernel: StepOutcome[] = runSteps(real, edu, sequence);
            const simulated = runSteps(sim.syscalls, sim.edu, sequence);
            steps += sequence.length;
            sequence.forEach((step, index) => {
              if (step.op === 'ioctl') answers.set(kernel[index]!.result, (answers.get(kernel[index]!.result) ?? 0) + 1);
            });
            const difference = firstDifference(sequence, kernel, simulated);
            if (difference !== undefined) {
              disagreeing++;
              if (disagreements.length < 40) disagreements.push(`seed ${seed} step ${difference.index} ${describeStep(difference.step)}: kernel ${JSON.stringify(difference.a)}, simulator ${JSON.stringify(difference.b)}`);
            }
            if (transcriptSeeds(family).includes(seed)) transcript.sequences.push({ seed, steps: sequence, outcomes: kernel });
          }
          const ioctls = [...answers.values()].reduce((sum, count) => sum + count, 0);
          const errors = [...answers].filter(([answer]) => /^E[A-Z0-9]+$/.test(answer)).reduce((sum, [, count]) => sum + count, 0);
          const report = { lane: name, family: family.name, sequences: family.sequences, steps, ioctls, errorShare: errors / ioctls, answers: Object.fromEntries(answers), disagreeing, disagreements };
          writeFileSync(`/tmp/results/fidelity-${name}-${family.name}.json`, JSON.stringify(report, null, 2));
          // Only a proven family's kernel answers become a golden transcript: the simulator must replay them.
          if (!proven) return;
          writeFileSync(`/tmp/results/transcript-${name}-${family.name}.json`, encodeTranscript(transcript));
          expect(disagreements, disagreements.join('\n')).toEqual([]);
          // Successes at least as often as errors, else agreement proves little.
          expect(errors / ioctls).toBeLessThanOrEqual(0.5);
        });
      }
    });
  }
}
