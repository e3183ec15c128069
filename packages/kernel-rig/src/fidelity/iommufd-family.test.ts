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

  it('chooses the IOVAs the 6.12 kernel of the iommufd lane chose (no THP there: alignment capped at a page)', () => {
    // The lane's guest has no /sys/kernel/mm/transparent_hugepage: iopt_alloc_iova()'s max_alignment
    // is PAGE_SIZE, so 2 pages at an 8 KiB-aligned, not 2 MiB-aligned user_va land at 0x1000 (with
    // THP: 0x2000). The lowest fit from 0x1000 up; a sub-page user_va keeps its page offset.
    const steps: Step[] = [
      { op: 'mmap', pages: 8, as: 'ram', align: 512 },
      { op: 'open', path: '/dev/iommu', as: 'iommufd' },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_ALLOC', fields: { size: 12 } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_MAP', fields: { size: 40, flags: 6, ioas_id: 1, user_va: { mapping: 'ram', offset: 0x2000n }, length: 0x2000n } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_MAP', fields: { size: 40, flags: 6, ioas_id: 1, user_va: { mapping: 'ram' }, length: 0x4000n } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_MAP', fields: { size: 40, flags: 6, ioas_id: 1, user_va: { mapping: 'ram', offset: 0x10n }, length: 0x800n } },
    ];
    const machine = simMachine('iommufd');
    // The kernel's outcomes (iommufd lane, 6.12.118): the struct after each call, user_va blanked.
    expect(runSteps(machine.syscalls, machine.edu, steps)).toEqual([
      { result: 'mapped' },
      { result: 'fd' },
      { result: '0', bytes: '0c0000000000000001000000' },
      { result: '0', bytes: '28000000060000000100000000000000000000000000000000200000000000000010000000000000' },
      { result: '0', bytes: '28000000060000000100000000000000000000000000000000400000000000000030000000000000' },
      { result: '0', bytes: '28000000060000000100000000000000000000000000000000080000000000001070000000000000' },
    ]);
  });
});
