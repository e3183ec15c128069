// Dirty-page tracking end to end through the SDK (container.dirty), on the simulator always and on
// the real kernel in the QEMU guest: a container opened with the first edu maps guest-like memory,
// tracking starts, edu writes into it by DMA (bytes checked), the bitmap is read, and the mapping is
// unmapped with the bitmap of what it held. VFIO type1 with vfio-pci is pessimistic: every mapped
// page reads dirty, every time (update_user_bitmap() in drivers/vfio/vfio_iommu_type1.c). iommufd
// tracks only on an IOMMU with dirty bits: QEMU's VT-d has none (ssads_supported() is false), so on
// the 6.12 lane the capability says why and start() is refused; where the capability says precise,
// only the page edu wrote reads dirty. Bad input is a typed error that changes nothing.
import { Container } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { EduDriver } from './edu-driver.js';
import { codeOf, interfaceOf, lane, openFiles, realMachine, simMachine, type Machine } from './targets.js';

const machines: [string, () => Machine][] = [['simulator', () => simMachine(lane ?? 'x86')]];
if (lane !== undefined) machines.push([`real kernel (${lane})`, realMachine]);

/** Where the mapping goes: low, since edu reaches only IOVAs below 256 MiB. */
const IOVA = 0x10_0000n;
const PAGES = 8;
const PAGE = 0x1000n;
/** The page edu writes (page 0 holds the source pattern edu reads first). */
const WRITTEN = 5;
const LENGTH = 2048;

/** Dirty runs as `[first page, count]` pairs. */
function runsOf(bitmap: { forEachRun(visit: (first: number, count: number) => void): void }): [number, number][] {
  const runs: [number, number][] = [];
  bitmap.forEachRun((first, count) => runs.push([first, count]));
  return runs;
}

describe.each(machines)('dirty-page tracking on the %s', (_, machineOf) => {
  it('tracks what edu writes by DMA through container.dirty, or refuses as the kernel says', async () => {
    const machine = machineOf();
    const kernelInterface = interfaceOf(lane ?? 'x86');
    const { edu, syscalls } = machine;
    const filesBefore = openFiles(machine);
    const backend = smmu({ syscalls, interface: kernelInterface });
    const container = await Container.open({ backend, devices: [edu] });
    const memory = allocateDmaMemory(syscalls, BigInt(PAGES) * PAGE);
    let driver: EduDriver | undefined;
    try {
      const capability = container.dirty.capability;
      console.log(`${machine.kind} ${lane ?? 'x86'} (${kernelInterface}): dirty capability ${JSON.stringify(capability, (_, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))}`);
      const mapping = container.map({ iova: IOVA, memory });
      const whole = { start: IOVA, last: IOVA + BigInt(PAGES) * PAGE - 1n };
      // Before start: not-ready where tracking exists, unsupported where it does not; nothing changes.
      expect(codeOf(() => container.dirty.read({ iova: whole }))).toBe(capability.supported ? 'not-ready' : 'unsupported');

      if (!capability.supported) {
        // The kernel refuses (iommufd on an IOMMU without dirty bits): the reason says so, in words.
        expect(kernelInterface, 'type1 tracks on every lane').toBe('iommufd');
        expect(capability.reason).toMatch(/dirty/i);
        expect(codeOf(() => container.dirty.start())).toBe('unsupported');
        expect(container.dirty.tracking).toBe(false);
        expect(codeOf(() => container.dirty.unmap(mapping))).toBe('unsupported');
        expect(container.mappings()).toEqual([mapping]);
        container.unmap(mapping);
        return;
      }

      if (kernelInterface === 'type1') {
        // The MIGRATION capability of GET_INFO: the smallest IO page only, a 256 MiB bitmap at most,
        // and vfio-pci pins no pages, so every mapped page is dirty (vfio_iommu_migration_build_caps()).
        expect(capability).toEqual({ supported: true, pageSizes: PAGE, maxBitmapBytes: 0x1000_0000n, precision: 'pessimistic', readWithoutClear: false });
      }
      container.dirty.start();
      expect(container.dirty.tracking).toBe(true);
      expect(codeOf(() => container.dirty.start()), 'a second start').toBe('in-use');

      // edu copies page 0 (the pattern) to page WRITTEN: RAM to device, then device to RAM.
      driver = new EduDriver(backend.openDevice(edu));
      expect(driver.identification()).toBe(0x010000ed);
      const pattern = Uint8Array.from({ length: LENGTH }, (_, index) => (index * 29 + 11) & 0xff);
      memory.bytes.set(pattern, 0);
      await driver.readFromHost(IOVA, 0, LENGTH);
      await driver.writeToHost(0, IOVA + BigInt(WRITTEN) * PAGE, LENGTH);
      expect(memory.bytes.subarray(WRITTEN * 0x1000, WRITTEN * 0x1000 + LENGTH), `page ${WRITTEN}, written by edu`).toEqual(pattern);

      const first = container.dirty.read({ iova: whole });
      expect(first.iova).toEqual(whole);
      expect(first.pageSize).toBe(PAGE);
      expect(first.isDirty(IOVA + BigInt(WRITTEN) * PAGE), 'the page edu wrote').toBe(true);
      if (capability.precision === 'pessimistic') {
        // Every mapped page, and again on the next read: reading clears nothing that stays clean.
        expect(runsOf(first)).toEqual([[0, PAGES]]);
        expect(runsOf(container.dirty.read({ iova: whole })), 'a second read').toEqual([[0, PAGES]]);
      } else {
        // Precise: only what edu wrote; read and cleared, so the next read is clean.
        expect(runsOf(first)).toEqual([[WRITTEN, 1]]);
        expect(container.dirty.read({ iova: whole }).count(), 'a second read, after clearing').toBe(0);
      }

      // Bad input is a typed error that changes nothing.
      const before = { tracking: container.dirty.tracking, mappings: container.mappings() };
      expect(codeOf(() => container.dirty.read({ iova: whole, pageSize: 0x2000n })), 'a page size not offered').toBe(capability.pageSizes & 0x2000n ? 'no error' : 'invalid-argument');
      expect(codeOf(() => container.dirty.read({ iova: { start: IOVA + PAGE, last: whole.last } })), 'a range cutting the mapping').toBe('bisect');
      expect(codeOf(() => container.dirty.read({ iova: { start: IOVA + 0x800n, last: whole.last } })), 'an unaligned range').toBe('misaligned');
      expect(codeOf(() => container.dirty.read({ iova: { start: 0x800_0000n, last: 0x800_0fffn } })), 'a range with nothing mapped').toBe('not-found');
      expect({ tracking: container.dirty.tracking, mappings: container.mappings() }).toEqual(before);

      // A second write, then the unmap hands back the bitmap of what it unmapped.
      await driver.writeToHost(0, IOVA + BigInt(WRITTEN + 1) * PAGE, LENGTH);
      driver.close();
      driver = undefined;
      const { unmapped, dirty } = container.dirty.unmap(mapping);
      expect(unmapped).toBe(BigInt(PAGES) * PAGE);
      expect(dirty.iova).toEqual(whole);
      expect(runsOf(dirty)).toEqual(capability.precision === 'pessimistic' ? [[0, PAGES]] : [[WRITTEN + 1, 1]]);
      expect(container.mappings()).toEqual([]);

      container.dirty.stop();
      expect(container.dirty.tracking).toBe(false);
      container.dirty.stop(); // nothing to stop: does nothing
      expect(codeOf(() => container.dirty.read({ iova: whole })), 'a read after stop').toBe('not-ready');
    } finally {
      driver?.close();
      container.close();
      memory.free();
    }
    expect(openFiles(machine), 'files open after the container closed').toBe(filesBefore);
  });
});
