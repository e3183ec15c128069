// Dirty tracking on the simulator's Backend face, through core's container.dirty: type1
// (pessimistic: every mapped page, every read), iommufd with hardware dirty bits (precise: what
// devices wrote since the last clearing read), iommufd on the presets and PAMU (unsupported, with
// the reason), all-or-nothing starts, and hot-plug while tracking.
import { Container } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { sim } from './sim-backend.js';
import { caught } from '@ioas/conformance';
import { createSimulator, type SimDevice } from './simulator.js';

const MiB = 1n << 20n;
const RAM = 0x4000_0000n;

async function open(platform: 'x86-vtd' | 'arm-smmuv3' | 'p4080', mode: 'type1' | 'iommufd' | 'pamu', hardwareDirty = false) {
  const simulator = createSimulator({ platform, ...(hardwareDirty ? { hardwareDirty } : {}) });
  const backend = sim({ simulator, ...(mode === 'iommufd' ? { interface: 'iommufd' as const } : {}) });
  const device = simulator.devices().find((candidate) => candidate.edu && candidate.driver === 'vfio-pci')!;
  const container = await Container.open({ backend, ...(mode === 'iommufd' ? { devices: [device.address] } : { groups: [device.group!] }) });
  const memory = (length: bigint) => {
    const region = simulator.memory.allocate(length, 0x1000n);
    return { address: region.address, length };
  };
  return { simulator, container, device, memory };
}

const pagesOf = (bitmap: { forEachRun(visit: (first: number, count: number) => void): void }): number[] => {
  const pages: number[] = [];
  bitmap.forEachRun((first, count) => {
    for (let page = first; page < first + count; page++) pages.push(page);
  });
  return pages;
};

describe.each(['x86-vtd', 'arm-smmuv3'] as const)('%s type1: pessimistic tracking', (platform) => {
  it('declares the MIGRATION capability, reads every mapped page dirty every time, and unmaps with the bits', async () => {
    const { simulator, container, device, memory } = await open(platform, 'type1');
    expect(container.dirty.capability).toEqual({ supported: true, pageSizes: 0x1000n, maxBitmapBytes: 0x1000_0000n, precision: 'pessimistic', readWithoutClear: false });
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + 2n * MiB, memory: memory(MiB) });
    container.dirty.start();
    expect(simulator.device(device.address).dmaWrite(RAM + 0x3000n, new Uint8Array(8))).toBe(true);
    for (let round = 0; round < 2; round++) {
      const bitmap = container.dirty.read({ iova: { start: RAM, size: 3n * MiB } });
      expect(bitmap.count()).toBe(512);
    }
    expect(caught(() => container.dirty.read({ iova: { start: RAM, size: MiB }, clear: false })).code).toBe('unsupported');
    const result = container.dirty.unmap({ start: RAM, size: MiB });
    expect(result.unmapped).toBe(MiB);
    expect(result.dirty.count()).toBe(256);
    container.dirty.stop();
    expect(container.mappings()).toHaveLength(1);
    container.close();
  });
});

describe.each(['x86-vtd', 'arm-smmuv3'] as const)('%s iommufd', (platform) => {
  it('without hardware dirty bits: unsupported, saying what the IOMMU lacks', async () => {
    const { container } = await open(platform, 'iommufd');
    const capability = container.dirty.capability;
    expect(capability.supported).toBe(false);
    if (!capability.supported) expect(capability.reason).toMatch(platform === 'x86-vtd' ? /SLADS.*EOPNOTSUPP.*hardwareDirty/ : /HTTU.*EOPNOTSUPP.*hardwareDirty/);
    expect(caught(() => container.dirty.start()).code).toBe('unsupported');
  });

  it('with hardware dirty bits: precise, read with and without clearing, unmap with the bits, stop and start again', async () => {
    const { simulator, container, device, memory } = await open(platform, 'iommufd', true);
    expect(container.dirty.capability).toEqual({ supported: true, pageSizes: ((1n << 64n) - 1n) & ~0xfffn, maxBitmapBytes: null, precision: 'precise', readWithoutClear: true });
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + MiB, memory: memory(MiB) });
    container.map({ iova: RAM + 4n * MiB, memory: memory(MiB) });
    const dma = (iova: bigint): void => void expect(simulator.device(device.address).dmaWrite(iova, new Uint8Array(8))).toBe(true);
    dma(RAM); // before start: not reported
    container.dirty.start();
    const sim = simulator.device(device.address) as SimDevice;
    expect(sim.domain).toBeDefined();
    dma(RAM + 0x5000n);
    dma(RAM + MiB + 0x1000n);
    dma(RAM + 4n * MiB);
    const range = { start: RAM, size: 5n * MiB };
    expect(pagesOf(container.dirty.read({ iova: range, clear: false }))).toEqual([5, 257, 1024]);
    // A gap (2-4 MiB) in the range: read piece by piece.
    expect(pagesOf(container.dirty.read({ iova: range }))).toEqual([5, 257, 1024]);
    expect(container.dirty.read({ iova: range }).count()).toBe(0);
    dma(RAM + 0x8000n);
    expect(pagesOf(container.dirty.read({ iova: { start: RAM, size: 2n * MiB }, pageSize: 0x20_0000n }))).toEqual([0]);
    dma(RAM + MiB + 0x2000n);
    const unmapped = container.dirty.unmap({ start: RAM + MiB, size: MiB });
    expect(unmapped.unmapped).toBe(MiB);
    expect(pagesOf(unmapped.dirty)).toEqual([2]);
    container.dirty.stop();
    container.dirty.start();
    expect(container.dirty.read({ iova: { start: RAM, size: MiB } }).count()).toBe(0);
    container.close();
    expect(simulator.liveMappings()).toBe(0);
  });

  it('puts a device that joins after a first start on the dirty-tracking HWPT, which tracks it on the next start', async () => {
    const { simulator, container, memory } = await open(platform, 'iommufd', true);
    container.map({ iova: RAM, memory: memory(MiB) });
    container.dirty.start();
    // core lets devices join and leave only while tracking is off.
    container.dirty.stop();
    const second = simulator.bind('0000:00:10.0', 'vfio-pci');
    container.attach({ devices: [second.address] });
    expect((second.domain as unknown as { auto: boolean; dirty: unknown }).auto).toBe(false);
    container.dirty.start();
    expect(second.dmaWrite(RAM + 0x7000n, new Uint8Array(4))).toBe(true);
    expect(pagesOf(container.dirty.read({ iova: { start: RAM, size: MiB } }))).toEqual([7]);
    container.dirty.stop();
    container.detach({ devices: [second.address] });
  });

  it('reads over a gap all or nothing: a refused call clears nothing; a clearing call failing after another says rollback-failed', async () => {
    const { simulator, container, device, memory } = await open(platform, 'iommufd', true);
    container.map({ iova: RAM, memory: memory(MiB) });
    container.map({ iova: RAM + 4n * MiB, memory: memory(MiB) });
    container.dirty.start();
    const dma = (iova: bigint): void => void expect(simulator.device(device.address).dmaWrite(iova, new Uint8Array(8))).toBe(true);
    dma(RAM);
    dma(RAM + 4n * MiB);
    const range = { start: RAM, size: 5n * MiB };
    // Two runs: two reads without clearing, then two clearing ones. The second read fails: nothing cleared.
    simulator.injectFault({ ioctl: 'IOMMU_HWPT_GET_DIRTY_BITMAP', errno: 5, skip: 1 });
    expect(caught(() => container.dirty.read({ iova: range })).code).toBe('kernel');
    expect(pagesOf(container.dirty.read({ iova: range, clear: false }))).toEqual([0, 1024]);
    // The second clearing call fails: the first run's bits are gone.
    simulator.injectFault({ ioctl: 'IOMMU_HWPT_GET_DIRTY_BITMAP', errno: 5, skip: 3 });
    expect(caught(() => container.dirty.read({ iova: range })).code).toBe('rollback-failed');
    expect(pagesOf(container.dirty.read({ iova: range, clear: false }))).toEqual([1024]);
  });

  it('starts all or nothing: a refused HWPT allocation leaves the devices on their automatic domain', async () => {
    const { simulator, container, device, memory } = await open(platform, 'iommufd', true);
    container.map({ iova: RAM, memory: memory(MiB) });
    const before = simulator.device(device.address).domain;
    simulator.injectFault({ ioctl: 'IOMMU_HWPT_SET_DIRTY_TRACKING', errno: 5 });
    expect(caught(() => container.dirty.start()).code).toBe('kernel');
    expect(container.dirty.tracking).toBe(false);
    const after = simulator.device(device.address).domain as unknown as { auto: boolean };
    expect(after.auto).toBe(true);
    expect(after).not.toBe(before); // a new automatic domain, as attaching to the IOAS again makes
    // It works once the fault is gone.
    container.dirty.start();
    expect(container.dirty.tracking).toBe(true);
  });
});

describe('PAMU', () => {
  it('offers no dirty tracking and says why', async () => {
    const { container } = await open('p4080', 'pamu');
    const capability = container.dirty.capability;
    expect(capability.supported).toBe(false);
    if (!capability.supported) expect(capability.reason).toMatch(/type-2 VFIO backend has no dirty-page ioctl/);
    expect(caught(() => container.dirty.start()).code).toBe('unsupported');
  });
});
