// Dirty-page tracking through the smmu backend over the simulator's syscall face (the real ioctl
// bytes): type1's VFIO_IOMMU_DIRTY_PAGES and dirty unmap, iommufd's dirty-tracking HWPT, what each
// asks the kernel, and how each fails. docs/kernel-rules.md#dirty-page-tracking
import { Container, DirtyBitmap, ERRNO, IoasError, type Syscalls } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { caught as failure } from '@ioas/conformance';
import { allocateDmaMemory, iommufdUapi } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { smmu } from './smmu-backend.js';

type Platform = 'x86-vtd' | 'arm-smmuv3';
type KernelInterface = 'type1' | 'iommufd';

const VFIO = (n: number) => (0x3b << 8) | (100 + n);
const IOMMUFD = (nr: number) => (0x3b << 8) | nr;
const NAMES: Record<number, string> = {
  [VFIO(12)]: 'GET_INFO',
  [VFIO(13)]: 'MAP_DMA',
  [VFIO(14)]: 'UNMAP_DMA',
  [VFIO(17)]: 'DIRTY_PAGES',
  [VFIO(19)]: 'ATTACH_PT',
  [VFIO(20)]: 'DETACH_PT',
  [IOMMUFD(0x80)]: 'DESTROY',
  [IOMMUFD(0x85)]: 'IOAS_MAP',
  [IOMMUFD(0x86)]: 'IOAS_UNMAP',
  [IOMMUFD(0x89)]: 'HWPT_ALLOC',
  [IOMMUFD(0x8a)]: 'GET_HW_INFO',
  [IOMMUFD(0x8b)]: 'SET_DIRTY_TRACKING',
  [IOMMUFD(0x8c)]: 'GET_DIRTY_BITMAP',
};

/** Where each logged ioctl's struct keeps its flags. */
const FLAGS_AT: Record<string, number> = { DIRTY_PAGES: 4, UNMAP_DMA: 4, ATTACH_PT: 4, HWPT_ALLOC: 4, SET_DIRTY_TRACKING: 4, GET_DIRTY_BITMAP: 8 };

/**
 * The simulator's syscall face, logging each ioctl by name with the flags word of its struct (at
 * FLAGS_AT), and letting a test rewrite a reply.
 */
function machine(platform: Platform, rewrite?: (name: string, bytes: Uint8Array) => void, hardwareDirty = true) {
  // hardwareDirty: an IOMMU with dirty bits (VT-d SLADS, SMMUv3 HTTU), which QEMU's do not emulate.
  const simulator = createSimulator({ platform, hardwareDirty });
  const inner = simSyscalls(simulator);
  const log: string[] = [];
  const syscalls = Object.assign(Object.create(inner) as Syscalls, {
    ioctl: (fd: number, request: number, argument: number | Uint8Array) => {
      const name = NAMES[request & 0xffff] ?? `0x${(request & 0xffff).toString(16)}`;
      const status = inner.ioctl(fd, request, argument);
      if (typeof argument !== 'number' && FLAGS_AT[name] !== undefined) {
        const view = new DataView(argument.buffer, argument.byteOffset, argument.byteLength);
        const flags = view.getUint32(FLAGS_AT[name], true);
        log.push(flags === 0 ? name : `${name}/${flags}`);
      } else {
        log.push(name);
      }
      if (status >= 0 && typeof argument !== 'number') rewrite?.(name, argument);
      return status;
    },
  });
  const device = simulator.devices().find((candidate) => candidate.edu)!;
  return { simulator, syscalls, inner, log, device };
}

async function open(m: ReturnType<typeof machine>, kernelInterface: KernelInterface): Promise<Container> {
  return Container.open({ backend: smmu({ syscalls: m.syscalls, interface: kernelInterface, arch: 'generic', littleEndian: true }), groups: [m.device.group!] });
}

const memory = (m: ReturnType<typeof machine>, length: bigint) => ({ address: allocateDmaMemory(m.inner, length).address, length });
const HIGH = 0x1_0000_0000n;

describe('type1: VFIO_IOMMU_DIRTY_PAGES', () => {
  for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
    it(`declares pessimistic tracking from the MIGRATION capability, the smallest IO page only (${platform})`, async () => {
      const m = machine(platform);
      using container = await open(m, 'type1');
      expect(container.dirty.capability).toEqual({ supported: true, pageSizes: 0x1000n, maxBitmapBytes: 0x1000_0000n, precision: 'pessimistic', readWithoutClear: false });
    });
  }

  it('starts, reads every mapped page dirty (vfio-pci pins nothing), unmaps with the bitmap, stops: one ioctl each', async () => {
    const m = machine('x86-vtd');
    using container = await open(m, 'type1');
    const first = container.map({ iova: HIGH, memory: memory(m, 0x4000n) });
    container.map({ iova: HIGH + 0x10000n, memory: memory(m, 0x2000n) });
    m.log.length = 0;
    container.dirty.start();
    expect(m.log).toEqual(['DIRTY_PAGES/1']);
    expect(m.device.dmaWrite(HIGH + 0x1010n, new Uint8Array([1]))).toBe(true);
    m.log.length = 0;
    // A range with a hole between mappings: type1 takes it whole (vfio_iova_dirty_bitmap()).
    const bitmap = container.dirty.read({ iova: { start: HIGH, last: HIGH + 0x11fffn } });
    expect(m.log).toEqual(['DIRTY_PAGES/4']);
    expect(bitmap.pages).toBe(0x12);
    expect([...bitmap.runs()]).toEqual([
      { start: HIGH, last: HIGH + 0x3fffn },
      { start: HIGH + 0x10000n, last: HIGH + 0x11fffn },
    ]);
    m.log.length = 0;
    const { unmapped, dirty } = container.dirty.unmap(first);
    expect(m.log).toEqual(['UNMAP_DMA/1']);
    expect(unmapped).toBe(0x4000n);
    expect(dirty.count()).toBe(4);
    m.log.length = 0;
    container.dirty.stop();
    expect(m.log).toEqual(['DIRTY_PAGES/2']);
  });

  it('types a kernel refusal and changes nothing: the tracker stays as it was', async () => {
    const m = machine('arm-smmuv3');
    using container = await open(m, 'type1');
    const mapping = container.map({ iova: HIGH, memory: memory(m, 0x2000n) });
    m.simulator.injectFault({ ioctl: '*', errno: ERRNO.ENOMEM, skip: 0 });
    expect(failure(() => container.dirty.start())).toMatchObject({ code: 'kernel', errno: ERRNO.ENOMEM, ioctl: 'VFIO_IOMMU_DIRTY_PAGES', backend: 'smmu' });
    m.simulator.clearInjectedFaults();
    expect(container.dirty.tracking).toBe(false);
    container.dirty.start();
    m.simulator.injectFault({ ioctl: '*', errno: ERRNO.EFAULT, skip: 0 });
    expect(failure(() => container.dirty.unmap(mapping))).toMatchObject({ code: 'kernel', errno: ERRNO.EFAULT, ioctl: 'VFIO_IOMMU_UNMAP_DMA' });
    m.simulator.clearInjectedFaults();
    expect(container.mappings()).toHaveLength(1);
    expect(m.simulator.liveMappings()).toBe(1);
    container.dirty.stop();
  });

  it('without the MIGRATION capability offers none, and says why', async () => {
    // The capability's id rewritten to one no kernel uses: what a kernel before 5.8 answers.
    const m = machine('x86-vtd', (name, bytes) => {
      if (name !== 'GET_INFO') return;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      for (let offset = bytes.length > 20 ? view.getUint32(16, true) : 0; offset !== 0 && offset + 8 <= bytes.length; offset = view.getUint32(offset + 4, true)) {
        if (view.getUint16(offset, true) === 2) view.setUint16(offset, 0x7fff, true);
      }
    });
    using container = await open(m, 'type1');
    const capability = container.dirty.capability;
    expect(capability).toEqual({ supported: false, reason: expect.stringMatching(/no MIGRATION capability.*5\.8/) });
    expect(failure(() => container.dirty.start())).toMatchObject({ code: 'unsupported', message: expect.stringContaining('no MIGRATION capability') });
  });
});

describe('reading into a reused bitmap', () => {
  for (const kernelInterface of ['type1', 'iommufd'] as const) {
    it(`gives what a new bitmap gives, whatever the reused one held, over covered ranges and holes (${kernelInterface})`, async () => {
      // Two machines driven alike: one reads into new bitmaps, one into bitmaps full of garbage.
      const runs = await Promise.all(
        [false, true].map(async (reuse) => {
          const m = machine('x86-vtd');
          const container = await open(m, kernelInterface);
          container.map({ iova: HIGH, memory: memory(m, 0x4000n) });
          container.map({ iova: HIGH + 0x4000n, memory: memory(m, 0x42000n) }); // adjacent: one covered stretch
          container.map({ iova: HIGH + 0x10_0000n, memory: memory(m, 0x2000n) }); // after a hole of whole bitmap words
          container.dirty.start();
          const seen: number[][] = [];
          for (const [write, range] of [
            [HIGH + 0x5000n, { start: HIGH, last: HIGH + 0x45fffn }],
            [HIGH + 0x3000n, { start: HIGH, last: HIGH + 0x10_1fffn }],
            [HIGH + 0x10_1000n, { start: HIGH, last: HIGH + 0x10_1fffn }],
          ] as const) {
            expect(m.device.dmaWrite(write, new Uint8Array([1]))).toBe(true);
            const pages = Number((range.last - range.start + 1n) / 0x1000n);
            const garbage = new DirtyBitmap(range, 0x1000n, new Uint8Array(Math.ceil(pages / 64) * 8).fill(0xa5));
            const bitmap = reuse ? container.dirty.read({ iova: range, into: garbage }) : container.dirty.read({ iova: range });
            if (reuse) expect(bitmap).toBe(garbage);
            const found: number[] = [];
            bitmap.forEachRun((first, count) => found.push(first, count));
            seen.push([bitmap.count(), ...found]);
          }
          container.close();
          return seen;
        }),
      );
      expect(runs[1]).toEqual(runs[0]);
      // type1 reports every mapped page (and, from the second read, pages past a mapping that
      // starts off a word: update_user_bitmap()'s carried bits, docs/kernel-rules.md#type1-dirty-bitmap-words);
      // iommufd the page written since the last read.
      expect(runs[0]![0]).toEqual(kernelInterface === 'type1' ? [70, 0, 70] : [1, 5, 1]);
      if (kernelInterface === 'iommufd') expect(runs[0]!.slice(1)).toEqual([[1, 3, 1], [1, 257, 1]]);
      else expect(runs[0]![1]!.slice(-2)).toEqual([256, 2]);
    });
  }
});

describe('iommufd: a dirty-tracking HWPT', () => {
  for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
    it(`asks IOMMU_GET_HW_INFO of each device at open and declares precise tracking from the IOAS alignment up (${platform})`, async () => {
      const m = machine(platform);
      using container = await open(m, 'iommufd');
      expect(m.log.filter((name) => name === 'GET_HW_INFO')).toHaveLength(1);
      expect(container.dirty.capability).toEqual({ supported: true, pageSizes: 0xffff_ffff_ffff_f000n, maxBitmapBytes: null, precision: 'precise', readWithoutClear: true });
    });
  }

  it('start allocates the HWPT, enables it and moves the device onto it; stop only disables; the next start is one ioctl', async () => {
    const m = machine('x86-vtd');
    using container = await open(m, 'iommufd');
    container.map({ iova: HIGH, memory: memory(m, 0x4000n) });
    m.log.length = 0;
    container.dirty.start();
    expect(m.log).toEqual([`HWPT_ALLOC/${iommufdUapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING}`, 'SET_DIRTY_TRACKING/1', 'ATTACH_PT']);
    m.log.length = 0;
    container.dirty.stop();
    expect(m.log).toEqual(['SET_DIRTY_TRACKING']);
    m.log.length = 0;
    container.dirty.start();
    expect(m.log).toEqual(['SET_DIRTY_TRACKING/1']);
    // The device still translates through the same IOAS.
    expect(m.device.dmaWrite(HIGH + 0x10n, new Uint8Array([7]))).toBe(true);
    container.dirty.stop();
  });

  it('reads exactly the pages the device wrote, clears them, keeps them with clear: false', async () => {
    const m = machine('arm-smmuv3');
    using container = await open(m, 'iommufd');
    const mapping = container.map({ iova: HIGH, memory: memory(m, 0x10000n) });
    container.dirty.start();
    for (const page of [0n, 3n, 15n]) expect(m.device.dmaWrite(HIGH + page * 0x1000n + 8n, new Uint8Array([1, 2]))).toBe(true);
    m.log.length = 0;
    const kept = container.dirty.read({ iova: mapping.iova, clear: false });
    expect(m.log).toEqual([`GET_DIRTY_BITMAP/${iommufdUapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR}`]);
    expect([...kept.runs()].map((run) => run.start)).toEqual([HIGH, HIGH + 0x3000n, HIGH + 0xf000n]);
    const read = container.dirty.read({ iova: mapping.iova });
    expect(read.count()).toBe(3);
    expect(container.dirty.read({ iova: mapping.iova }).count()).toBe(0);
    // A larger page: dirty when any 4 KiB in it was written.
    expect(m.device.dmaWrite(HIGH + 0x9000n, new Uint8Array([1]))).toBe(true);
    const coarse = container.dirty.read({ iova: mapping.iova, pageSize: 0x8000n });
    expect([coarse.isPageDirty(0), coarse.isPageDirty(1)]).toEqual([false, true]);
    container.dirty.stop();
  });

  it('splits a read over a hole into runs of contiguous mappings (GET_DIRTY_BITMAP refuses holes), each bit at its place', async () => {
    const m = machine('x86-vtd');
    using container = await open(m, 'iommufd');
    // Runs at pages 0-1, 5-7 (adjacent mappings: one run) and 100-163 of the range: the second and
    // third start off a u64 word of the bitmap, the first on one.
    container.map({ iova: HIGH, memory: memory(m, 0x2000n) });
    container.map({ iova: HIGH + 0x5000n, memory: memory(m, 0x1000n) });
    container.map({ iova: HIGH + 0x6000n, memory: memory(m, 0x2000n) });
    container.map({ iova: HIGH + 0x64000n, memory: memory(m, 0x40000n) });
    container.dirty.start();
    for (const page of [1n, 5n, 7n, 100n, 130n, 163n]) expect(m.device.dmaWrite(HIGH + page * 0x1000n, new Uint8Array([1]))).toBe(true);
    m.log.length = 0;
    const range = { start: HIGH, last: HIGH + 0xa3fffn };
    const bitmap = container.dirty.read({ iova: range, clear: false });
    expect(m.log.filter((name) => name.startsWith('GET_DIRTY_BITMAP'))).toHaveLength(3);
    const dirty: number[] = [];
    bitmap.forEachRun((first, count) => {
      for (let page = first; page < first + count; page++) dirty.push(page);
    });
    expect(dirty).toEqual([1, 5, 7, 100, 130, 163]);
    // Clearing over several runs: every run read without clearing first, then clearing.
    m.log.length = 0;
    expect(container.dirty.read({ iova: range }).count()).toBe(6);
    expect(m.log).toEqual([...Array(3).fill('GET_DIRTY_BITMAP/1'), ...Array(3).fill('GET_DIRTY_BITMAP')]);
    expect(container.dirty.read({ iova: range }).count()).toBe(0);
    // A page size whose pages hold a hole: the run is read at 4 KiB and folded.
    expect(m.device.dmaWrite(HIGH + 0x6000n, new Uint8Array([1]))).toBe(true);
    const coarse = container.dirty.read({ iova: { start: HIGH, last: HIGH + 0xfffffn }, pageSize: 0x10_0000n });
    expect(coarse.count()).toBe(1);
    container.dirty.stop();
  });

  it('unmaps with the bitmap: a NO_CLEAR read, then IOAS_UNMAP; a failed unmap leaves the bits set', async () => {
    const m = machine('x86-vtd');
    using container = await open(m, 'iommufd');
    const mapping = container.map({ iova: HIGH, memory: memory(m, 0x4000n) });
    container.dirty.start();
    expect(m.device.dmaWrite(HIGH + 0x2000n, new Uint8Array([1]))).toBe(true);
    m.simulator.injectFault({ ioctl: '*', errno: ERRNO.EBUSY, skip: 1 });
    expect(failure(() => container.dirty.unmap(mapping))).toMatchObject({ code: 'kernel', errno: ERRNO.EBUSY, ioctl: 'IOMMU_IOAS_UNMAP' });
    m.simulator.clearInjectedFaults();
    m.log.length = 0;
    const { unmapped, dirty } = container.dirty.unmap(mapping);
    expect(m.log).toEqual([`GET_DIRTY_BITMAP/${iommufdUapi.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR}`, 'IOAS_UNMAP']);
    expect(unmapped).toBe(0x4000n);
    expect([...dirty.runs()]).toEqual([{ start: HIGH + 0x2000n, last: HIGH + 0x2fffn }]);
    container.dirty.stop();
  });

  it('start is all or nothing: a failure at any of its calls leaves the device on the same domain and no HWPT', async () => {
    for (let skip = 0; skip < 3; skip++) {
      const m = machine('arm-smmuv3');
      using container = await open(m, 'iommufd');
      container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
      const domain = m.device.domain;
      m.log.length = 0;
      m.simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO, skip });
      expect(failure(() => container.dirty.start())).toMatchObject({ code: 'kernel', errno: ERRNO.EIO });
      m.simulator.clearInjectedFaults();
      expect(container.dirty.tracking).toBe(false);
      expect(m.device.domain).toBe(domain);
      // What was made is undone: the device attached back, the HWPT destroyed.
      const alloc = `HWPT_ALLOC/${iommufdUapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING}`;
      const expected = [[alloc], [alloc, 'SET_DIRTY_TRACKING/1', 'DESTROY'], [alloc, 'SET_DIRTY_TRACKING/1', 'ATTACH_PT', 'DESTROY']][skip];
      expect(m.log).toEqual(expected);
      container.dirty.start();
      container.dirty.stop();
    }
  });

  it('a device attached after a stop is moved at the next start; a failed detach puts a device back on the HWPT', async () => {
    const m = machine('x86-vtd');
    const backend = smmu({ syscalls: m.syscalls, interface: 'iommufd', arch: 'generic', littleEndian: true });
    using container = await Container.open({ backend, devices: [m.device.address] });
    container.map({ iova: HIGH, memory: memory(m, 0x2000n) });
    container.dirty.start();
    container.dirty.stop();
    const second = m.simulator.device('0000:00:10.0');
    m.simulator.bind(second.address, 'vfio-pci');
    container.attach({ devices: [second.address] });
    m.log.length = 0;
    container.dirty.start();
    expect(m.log).toEqual(['GET_HW_INFO', 'SET_DIRTY_TRACKING/1', 'ATTACH_PT']);
    expect(second.dmaWrite(HIGH + 0x1000n, new Uint8Array([1]))).toBe(true);
    expect([...container.dirty.read({ iova: { start: HIGH, last: HIGH + 0x1fffn } }).runs()]).toEqual([{ start: HIGH + 0x1000n, last: HIGH + 0x1fffn }]);
    container.dirty.stop();
    const hwptDomain = m.device.domain;
    m.simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO, skip: 1 });
    expect(() => container.detach({ devices: [second.address] })).toThrow(IoasError);
    m.simulator.clearInjectedFaults();
    expect(second.domain).toBe(hwptDomain);
    container.dirty.start();
    expect(second.dmaWrite(HIGH, new Uint8Array([1]))).toBe(true);
    expect(container.dirty.read({ iova: { start: HIGH, last: HIGH + 0x1fffn } }).count()).toBe(1);
    container.dirty.stop();
  });

  it('with dirtyHwpt: at-open, the devices go onto the HWPT as the container opens and start is one ioctl; without the capability, open is as before', async () => {
    const m = machine('arm-smmuv3');
    const backend = smmu({ syscalls: m.syscalls, interface: 'iommufd', arch: 'generic', littleEndian: true, dirtyHwpt: 'at-open' });
    using container = await Container.open({ backend, groups: [m.device.group!] });
    expect(m.log.filter((name) => /HWPT|ATTACH|DIRTY/.test(name))).toEqual(['ATTACH_PT', `HWPT_ALLOC/${iommufdUapi.IOMMU_HWPT_ALLOC_DIRTY_TRACKING}`, 'ATTACH_PT']);
    const mapping = container.map({ iova: HIGH, memory: memory(m, 0x2000n) });
    m.log.length = 0;
    container.dirty.start();
    expect(m.log).toEqual(['SET_DIRTY_TRACKING/1']);
    expect(m.device.dmaWrite(HIGH + 0x1000n, new Uint8Array([1]))).toBe(true);
    expect([...container.dirty.read({ iova: mapping.iova }).runs()]).toEqual([{ start: HIGH + 0x1000n, last: HIGH + 0x1fffn }]);
    container.dirty.stop();
    const plain = machine('x86-vtd', undefined, false);
    using refused = await Container.open({ backend: smmu({ syscalls: plain.syscalls, interface: 'iommufd', dirtyHwpt: 'at-open' }), groups: [plain.device.group!] });
    expect(refused.dirty.capability.supported).toBe(false);
    expect(plain.log.filter((name) => name.startsWith('HWPT_ALLOC'))).toEqual([]);
    expect(() => smmu({ syscalls: plain.syscalls, dirtyHwpt: 'later' as never })).toThrow(/dirtyHwpt must be on-start or at-open, not later/);
  });

  it('offers nothing when a device lacks IOMMU_HW_CAP_DIRTY_TRACKING, naming it and what its IOMMU lacks (the presets: QEMU emulates no dirty bits)', async () => {
    for (const [platform, kind] of [
      ['x86-vtd', 'Intel VT-d'],
      ['arm-smmuv3', 'a driver reporting no hardware info'],
    ] as const) {
      const m = machine(platform, undefined, false);
      using container = await open(m, 'iommufd');
      const capability = container.dirty.capability;
      expect(capability.supported).toBe(false);
      expect(!capability.supported && capability.reason).toContain(`the IOMMU of ${m.device.address} (${kind}) cannot track dirty pages: IOMMU_GET_HW_INFO reports no IOMMU_HW_CAP_DIRTY_TRACKING`);
      m.log.length = 0;
      expect(failure(() => container.dirty.start()).code).toBe('unsupported');
      expect(m.log).toEqual([]);
      // Nothing is kept for reads that cannot happen: maps cost what they did.
      container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
    }
  });
});
