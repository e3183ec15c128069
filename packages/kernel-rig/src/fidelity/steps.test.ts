import { describe, expect, it } from 'vitest';
import { deviceSequence, openDevice } from './device-family.js';
import { firstDifference, runSteps, type Step } from './steps.js';
import { simMachine } from '../targets.js';

/** The steps on a fresh simulated machine of the lane. */
function onSim(name: 'x86' | 'arm64' | 'iommufd', steps: readonly Step[]) {
  const machine = simMachine(name);
  return runSteps(machine.syscalls, machine.edu, steps);
}

describe('the step engine', () => {
  it('runs a sequence the same way twice on the same machine: fds and addresses are roles, not numbers', () => {
    const steps: Step[] = [
      ...openDevice('type1'),
      { op: 'mmap', pages: 2, as: 'ram' },
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_MAP_DMA', fields: { flags: 3, vaddr: { mapping: 'ram' }, iova: 0x10_0000n, size: 0x2000n } },
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_UNMAP_DMA', fields: { iova: 0x10_0000n, size: 0x2000n } },
      { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_GET_IRQ_INFO', fields: { argsz: 16, index: 1 } },
      { op: 'eventfd', as: 'e0' },
      { op: 'read', fd: 'e0' },
      { op: 'write', fd: 'e0', value: 3n },
      { op: 'read', fd: 'e0' },
      { op: 'pread', fd: 'device', region: 0, offset: 0, size: 4 },
      { op: 'readFile', path: '/sys/bus/pci/devices/{edu}/vendor' },
      { op: 'close', fd: 'device' },
    ];
    const first = onSim('x86', steps);
    expect(firstDifference(steps, first, onSim('x86', steps))).toBeUndefined();
    expect(first.map((outcome) => outcome.result)).toEqual(['fd', 'fd', '0', '0', 'fd', 'mapped', '0', '0', '0', 'fd', 'EAGAIN', '8', '8:3', '4', 'read', '0']);
    // The unmap's size written back; edu's identification register (0x010000ed) through BAR0.
    expect(first[7]!.bytes).toBe('180000000000000000001000000000000020000000000000');
    expect(first[13]!.bytes).toBe('ed000001');
  });

  it('gives a role whose call failed, or that was closed, a number no process has open: EBADF, on both sides', () => {
    const steps: Step[] = [
      { op: 'open', path: '/dev/vfio/999', as: 'missing' },
      { op: 'close', fd: 'missing' },
      { op: 'open', path: '/dev/vfio/vfio', as: 'container' },
      { op: 'close', fd: 'container' },
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_GET_API_VERSION', value: 0 },
    ];
    expect(onSim('x86', steps).map((outcome) => outcome.result)).toEqual(['ENOENT', 'EBADF', 'fd', '0', 'EBADF']);
  });

  it('closes at the end an fd whose role was given again, and one given no role: nothing leaks into the next sequence', () => {
    const machine = simMachine('x86');
    runSteps(machine.syscalls, machine.edu, [
      { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
      { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
      { op: 'open', path: '/dev/vfio/vfio' },
    ]);
    expect(machine.simulator!.openHandles()).toBe(0);
  });

  it('aligns mappings, writes and reads their bytes, and passes 64-bit tails with their pointers blanked', () => {
    const steps: Step[] = [
      ...openDevice('type1'),
      { op: 'mmap', pages: 4, as: 'ram', align: 512 },
      { op: 'poke', mapping: 'ram', offset: 8, words: [0x1122_3344_5566_7788n, -1n] },
      { op: 'peek', mapping: 'ram', offset: 8, length: 16 },
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_MAP_DMA', fields: { flags: 3, vaddr: { mapping: 'ram' }, iova: 0x10_0000n, size: 0x2000n } },
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_DIRTY_PAGES', fields: { flags: 1 } },
      // GET_BITMAP's tail: iova, size, then the vfio_bitmap (pgsize, size, data).
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_DIRTY_PAGES', fields: { flags: 4 }, words: [0x10_0000n, 0x2000n, 0x1000n, 8n, { mapping: 'ram', offset: 0x1000n }] },
      { op: 'peek', mapping: 'ram', offset: 0x1000, length: 8 },
      { op: 'munmap', mapping: 'ram' },
      // A dangling pointer is still the address it was.
      { op: 'ioctl', fd: 'container', ioctl: 'VFIO_IOMMU_MAP_DMA', fields: { flags: 3, vaddr: { mapping: 'ram' }, iova: 0x20_0000n, size: 0x1000n } },
    ];
    const machine = simMachine('x86');
    const outcomes = runSteps(machine.syscalls, machine.edu, steps);
    const at = steps.length - 8;
    expect(outcomes[at]!.result).toBe('written');
    expect(outcomes[at + 1]!.bytes).toBe('8877665544332211ffffffffffffffff');
    expect(outcomes.slice(at + 2).map((outcome) => outcome.result)).toEqual(['0', '0', '0', 'read', '0', 'EFAULT']);
    // The tail's data pointer is blanked; both pages the device may write are dirty from the start.
    expect(outcomes[at + 4]!.bytes!.slice(-16)).toBe('0000000000000000');
    expect(outcomes[at + 5]!.bytes).toBe('0300000000000000');
    expect(firstDifference(steps, outcomes, onSim('x86', steps))).toBeUndefined();
  });

  it('refuses memory steps outside their mapping, or into a page it unmapped', () => {
    const machine = simMachine('x86');
    const run = (steps: unknown[]) => () => runSteps(machine.syscalls, machine.edu, steps as Step[]);
    const ram: Step = { op: 'mmap', pages: 2, as: 'ram' };
    expect(run([ram, { op: 'peek', mapping: 'ram', offset: 0x1ff8, length: 16 }])).toThrow(/^step 1: bytes 8184\.\.8200 are not inside "ram"/);
    expect(run([ram, { op: 'munmap', mapping: 'ram' }, { op: 'poke', mapping: 'ram', offset: 0x1000, words: [1n] }])).toThrow(/^step 2: "ram" is unmapped/);
    expect(run([ram, { op: 'munmap', mapping: 'ram' }, { op: 'munmap', mapping: 'ram' }])).toThrow(/^step 2: "ram" is unmapped already/);
    expect(run([ram, ram])).toThrow(/^step 1: the mapping "ram" exists/);
    expect(run([{ op: 'mmap', pages: 2, as: 'ram', align: 3 }])).toThrow(/^step 0: mmap of 2 pages aligned to 3/);
    expect(run([{ op: 'open', path: '/dev/iommu', as: 'i' }, { op: 'ioctl', fd: 'i', ioctl: 'IOMMU_VFIO_IOAS' }])).toThrow(/^step 1: IOMMU_VFIO_IOAS is raw bytes to this engine/);
  });

  it('says where two runs part', () => {
    const steps: Step[] = [...openDevice('type1'), { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_GET_IRQ_INFO', fields: { index: 0 } }];
    const a = onSim('x86', steps);
    const b = a.map((outcome, index) => (index === a.length - 1 ? { ...outcome, result: 'EINVAL' } : outcome));
    expect(firstDifference(steps, a, b)).toMatchObject({ index: a.length - 1, a: { result: '0' }, b: { result: 'EINVAL' } });
  });

  it('refuses a step it cannot run, naming it', () => {
    const machine = simMachine('x86');
    const run = (steps: unknown[]) => () => runSteps(machine.syscalls, machine.edu, steps as Step[]);
    expect(run([{ op: 'fork' }])).toThrow(/^step 0: unknown op "fork"/);
    expect(run([{ op: 'close', fd: 'nothing' }])).toThrow(/^step 0: no step gives the role "nothing"/);
    expect(run([{ op: 'open', path: '/dev/vfio/vfio', as: 'c' }, { op: 'ioctl', fd: 'c', ioctl: 'VFIO_NO_SUCH' }])).toThrow(/^step 1: unknown ioctl "VFIO_NO_SUCH"/);
    expect(run([{ op: 'open', path: '/dev/vfio/vfio', as: 'c' }, { op: 'ioctl', fd: 'c', ioctl: 'VFIO_IOMMU_MAP_DMA', fields: { vaddress: 1 } }])).toThrow(/^step 1: VFIO_IOMMU_MAP_DMA has no field "vaddress"/);
    expect(run([{ op: 'open', path: '/dev/vfio/vfio', as: 'c' }, { op: 'ioctl', fd: 'c', ioctl: 'VFIO_SET_IOMMU' }])).toThrow(/^step 1: VFIO_SET_IOMMU takes an integer/);
    // What was opened before the bad step is closed again.
    expect(machine.simulator!.openHandles()).toBe(0);
  });
});

describe('the device family on the simulator', () => {
  for (const name of ['x86', 'arm64', 'iommufd'] as const) {
    it(`runs its sequences on ${name} with successes as often as errors`, () => {
      const results: string[] = [];
      for (let seed = 1; seed <= 40; seed++) {
        const steps = deviceSequence(seed, name === 'iommufd' ? 'iommufd' : 'type1');
        for (const [index, outcome] of onSim(name, steps).entries()) if (steps[index]!.op === 'ioctl') results.push(outcome.result);
      }
      const errors = results.filter((result) => /^E[A-Z]+$/.test(result)).length;
      expect(errors / results.length).toBeLessThanOrEqual(0.5);
      expect(new Set(results)).toContain('EINVAL');
    });
  }
});
