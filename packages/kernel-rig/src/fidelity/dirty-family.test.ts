import { describe, expect, it } from 'vitest';
import { dirtySequence } from './dirty-family.js';
import { firstDifference, runSteps, type Step } from './steps.js';
import { simMachine } from '../targets.js';

/** The steps on a fresh simulated machine of the lane. */
function onSim(name: 'x86' | 'arm64' | 'iommufd', steps: readonly Step[]) {
  const machine = simMachine(name);
  return runSteps(machine.syscalls, machine.edu, steps);
}

describe('the dirty-pages family on the simulator', () => {
  it('gives the same steps for a seed every time, and other steps for other seeds', () => {
    expect(dirtySequence(7)).toEqual(dirtySequence(7));
    expect(dirtySequence(7)).not.toEqual(dirtySequence(8));
  });

  for (const name of ['x86', 'arm64', 'iommufd'] as const) {
    it(`runs its sequences on ${name} with no engine error and successes more often than errors`, () => {
      const results: string[] = [];
      const machine = simMachine(name);
      for (let seed = 1; seed <= 60; seed++) {
        const steps = dirtySequence(seed);
        const outcomes = runSteps(machine.syscalls, machine.edu, steps);
        // The same sequence on a fresh machine answers the same: nothing leaks between sequences.
        expect(firstDifference(steps, outcomes, onSim(name, steps))).toBeUndefined();
        for (const [index, outcome] of outcomes.entries()) if (steps[index]!.op === 'ioctl') results.push(outcome.result);
      }
      const errors = results.filter((result) => /^E[A-Z0-9]+$/.test(result)).length;
      expect(errors / results.length).toBeLessThanOrEqual(0.5);
      for (const answer of ['0', 'EINVAL', 'EFAULT', 'EACCES']) expect(results).toContain(answer);
    });
  }
});
