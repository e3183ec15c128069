import { describe, expect, it } from 'vitest';
import { dirtyHandSequence, dirtySequence } from './dirty-family.js';
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

describe('the dirty-pages family by hand', () => {
  it('answers sequence 1 as the kernel does (6.1 x86 and arm64, 6.12 type1)', () => {
    const steps = dirtyHandSequence();
    expect(dirtySequence(1)).toEqual(steps);
    const outcomes = onSim('x86', steps);
    const answers = outcomes.map((outcome) => outcome.result);
    expect(answers).toEqual([
      ...['mapped', 'mapped', 'mapped', 'fd', 'fd', '0', '0', '0', '0'],
      // GET_BITMAP before START; STOP before START; START twice; two flags; argsz 4.
      ...['EINVAL', '0', '0', '0', 'EINVAL', 'EINVAL'],
      ...['written', '0', 'read'],
      // Another page size, a bitmap of 0 bytes, a range cutting a mapping, argsz 47.
      ...['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL'],
      ...['written', '0', 'read', '0', 'EFAULT'],
      ...['written', '0', 'read', 'EINVAL', '0', 'EINVAL', '0'],
      ...['written', '0', 'read', '0', '0'],
    ]);
    const peeks = steps.flatMap((step, index) => (step.op === 'peek' ? [outcomes[index]!.bytes] : []));
    expect(peeks).toEqual([
      // Bits 7-8 and 22 over the pattern's word (ORed in whole: bits 0 and 63 stay); the next word untouched.
      '8101400000000080a5a5a5a5a5a5a5a5',
      // At bit 0 the word is written whole: the mapping's bits 0-1, and bits 7, 8 and 63 that the
      // read at bit 7 left in the kernel's bitmap of the mapping.
      '83010000000000800000000000000000',
      // The dangling read at bit 7 set and shifted the kernel's bitmap (bits 7-8, 14-15) and
      // faulted before clearing it: the unmap's bitmap shows them.
      '83c10000000000005555555555555555',
      // After STOP and START the 1-page mapping's bitmap is new: bit 22 over the pattern.
      'a5a5e5a5a5a5a5a50000000000000000',
    ]);
    // The unmap with the bitmap writes back the size it unmapped.
    expect(outcomes[28]!.bytes!.slice(32, 48)).toBe('0020000000000000');
  });
});
