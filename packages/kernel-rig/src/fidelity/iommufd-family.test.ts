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
  it('unmaps as the 6.12 kernel does: a range that takes one area whole and cuts the next removes the first and answers ENOENT', () => {
    // iopt_unmap_iova_range() (io_pagetable.c) removes areas in ascending order as it meets them and
    // stops at the first one the range cuts: not atomic. Outcomes from the iommufd lane.
    const U64 = (1n << 64n) - 1n;
    const unmap = (ioas_id: number, iova: bigint, length: bigint): Step => ({ op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_UNMAP', fields: { size: 24, ioas_id, iova, length } });
    const steps: Step[] = [
      { op: 'mmap', pages: 8, as: 'ram', align: 512 },
      { op: 'open', path: '/dev/iommu', as: 'iommufd' },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_ALLOC', fields: { size: 12 } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_MAP', fields: { size: 40, flags: 7, ioas_id: 1, user_va: { mapping: 'ram' }, length: 0x1000n, iova: 0x10_0000n } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_MAP', fields: { size: 40, flags: 7, ioas_id: 1, user_va: { mapping: 'ram' }, length: 0x2000n, iova: 0x10_1000n } },
      unmap(1, 0x10_0000n, 0x2000n),
      unmap(1, 0x10_0000n, 0x1000n),
      unmap(1, U64, 0n),
      unmap(9, 0n, 0n),
      unmap(1, 0n, U64),
      unmap(1, 0n, U64),
    ];
    const machine = simMachine('iommufd');
    expect(runSteps(machine.syscalls, machine.edu, steps).slice(5)).toEqual([
      { result: 'ENOENT', bytes: '180000000100000000001000000000000020000000000000' },
      // The first area went with the call above.
      { result: 'ENOENT', bytes: '180000000100000000001000000000000010000000000000' },
      // iova ~0 is EOVERFLOW before length 0 is EINVAL; a missing IOAS is ENOENT before anything.
      { result: 'EOVERFLOW', bytes: '1800000001000000ffffffffffffffff0000000000000000' },
      { result: 'ENOENT', bytes: '180000000900000000000000000000000000000000000000' },
      // Unmap all: the bytes removed (the second area), then 0 of an empty IOAS.
      { result: '0', bytes: '180000000100000000000000000000000020000000000000' },
      { result: '0', bytes: '180000000100000000000000000000000000000000000000' },
    ]);
  });

  it('gives object ids as the 6.12 kernel does: lowest free, a replacing HWPT taking its id before the old one goes', () => {
    const attach = (pt_id: number): Step => ({ op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', fields: { pt_id } });
    const destroy = (id: number): Step => ({ op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_DESTROY', fields: { size: 8, id } });
    const bind = (fd: string, iommufd: string): Step => ({ op: 'ioctl', fd, ioctl: 'VFIO_DEVICE_BIND_IOMMUFD', fields: { iommufd: { fd: iommufd } } });
    const steps: Step[] = [
      { op: 'open', path: '/dev/iommu', as: 'iommufd' },
      { op: 'open', path: '/dev/iommu', as: 'iommufd2' },
      { op: 'eventfd', as: 'e' },
      { op: 'open', path: '/dev/vfio/devices/{cdev}', as: 'device' },
      bind('device', 'closed'),
      bind('device', 'e'),
      attach(1),
      bind('device', 'iommufd'),
      bind('device', 'iommufd'),
      { op: 'open', path: '/dev/vfio/devices/{cdev}', as: 'device2' },
      bind('device2', 'iommufd2'),
      bind('device2', 'e'),
      attach(1),
      { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_DETACH_IOMMUFD_PT' },
      { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_DETACH_IOMMUFD_PT' },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_ALLOC', fields: { size: 12 } },
      { op: 'ioctl', fd: 'iommufd', ioctl: 'IOMMU_IOAS_ALLOC', fields: { size: 12 } },
      attach(2),
      attach(4),
      attach(3),
      attach(1),
      attach(4),
      destroy(1),
      destroy(2),
      destroy(3),
      destroy(4),
      { op: 'close', fd: 'device' },
      destroy(3),
      destroy(1),
    ];
    const machine = simMachine('iommufd');
    const results = runSteps(machine.syscalls, machine.edu, steps).map((outcome) => outcome.result + (outcome.bytes === undefined ? '' : ` ${outcome.bytes}`));
    // The iommufd lane's outcomes: a bad fd (EBADF) and an eventfd (EBADFD) refused, ATTACH before
    // BIND EINVAL, the device is object 1, a second bind (either fd) EINVAL, the device id as pt_id
    // EINVAL, DETACH when not attached 0; IOAS 2 and 3; ATTACH 2 makes HWPT 4, ATTACH 4 keeps it,
    // ATTACH 3 makes HWPT 5 and frees 4; DESTROY: the device and an attached IOAS EBUSY.
    expect(results).toEqual([
      'fd', 'fd', 'fd', 'fd',
      'EBADF 10000000000000000000000000000000',
      'EBADFD 10000000000000000000000000000000',
      'EINVAL 0c0000000000000001000000',
      '0 10000000000000000000000001000000',
      'EINVAL 10000000000000000000000000000000',
      'fd',
      'EINVAL 10000000000000000000000000000000',
      'EBADFD 10000000000000000000000000000000',
      'EINVAL 0c0000000000000001000000',
      '0 0800000000000000',
      '0 0800000000000000',
      '0 0c0000000000000002000000',
      '0 0c0000000000000003000000',
      '0 0c0000000000000004000000',
      '0 0c0000000000000004000000',
      '0 0c0000000000000005000000',
      'EINVAL 0c0000000000000001000000',
      'ENOENT 0c0000000000000004000000',
      'EBUSY 0800000001000000',
      '0 0800000002000000',
      'EBUSY 0800000003000000',
      'ENOENT 0800000004000000',
      '0',
      '0 0800000003000000',
      'ENOENT 0800000001000000',
    ]);
  });
});
