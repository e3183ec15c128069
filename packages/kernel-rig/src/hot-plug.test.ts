// Hot-plug end to end, on the simulator always and on the real kernel in the QEMU guest: a container
// opened with the first edu holds guest-like memory; the second edu is bound to vfio-pci and
// attached to the live container; both devices DMA through the one mapping (the second reads what
// the first wrote); the first leaves; the second still reaches the mapping and the first no longer
// does. No file is left open, and the second edu is unbound again, as the guest booted.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Container, ERRNO, IoasError, errnoName } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, VfioIoctls } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { EduDriver, SysfsEdu } from './edu-driver.js';
import { codeOf, interfaceOf, lane, openFiles, realMachine, simMachine, type Machine } from './targets.js';

const machines: [string, () => Machine][] = [['simulator', () => simMachine(lane ?? 'x86')]];
if (lane !== undefined) machines.push([`real kernel (${lane})`, realMachine]);

/** Where the mapping goes: low, since edu reaches only IOVAs below 256 MiB. */
const IOVA = 0x10_0000n;
/** Bytes per transfer: well under edu's 4096-byte limit (docs/kernel-rules.md#edu-dma-of-4096-bytes). */
const LENGTH = 2048;

/** A pattern that differs per call, so that one transfer's bytes cannot pass for another's. */
function pattern(seed: number): Uint8Array {
  return Uint8Array.from({ length: LENGTH }, (_, index) => (index * 13 + seed * 101 + 7) & 0xff);
}

/** The fd of `/dev/vfio/<group>` this process holds (the backend's), found through /proc. */
function groupFd(group: number): number {
  const fd = readdirSync('/proc/self/fd').find((entry) => {
    try {
      return readlinkSync(`/proc/self/fd/${entry}`) === `/dev/vfio/${group}`;
    } catch {
      return false; // the fd readdir itself used, closed by now
    }
  });
  if (fd === undefined) throw new Error(`no open /dev/vfio/${group}`);
  return Number(fd);
}

/**
 * The DMA faults the kernel has logged so far for device `address` in the page at IOVA
 * (docs/kernel-rules.md#real-kernel-fault-reports). VT-d: one line, "DMAR: [DMA Read NO_PASID]
 * Request device [00:03.0] fault addr 0x100000 ...". SMMUv3: "event 0x10 received:" then the
 * record's four 64-bit words, one a line: the StreamID (the PCI requester ID on virt) in the top
 * half of the first, the input address in the third (one event per 4-byte access of the transfer).
 */
function faults(address: string): number {
  const log = execFileSync('dmesg', { encoding: 'utf8' }).split('\n');
  if (lane === 'arm64') {
    const [bus, slot, fn] = address.split(':').slice(1).join(':').split(/[:.]/).map((part) => Number.parseInt(part, 16));
    const requester = BigInt((bus! << 8) | (slot! << 3) | fn!);
    const word = (line: string | undefined) => BigInt(/\s(0x[0-9a-f]{16})$/.exec(line ?? '')?.[1] ?? '0');
    return log.filter((line, index) => /arm-smmu-v3.*event 0x10 received/.test(line) && word(log[index + 1]) >> 32n === requester && (word(log[index + 3]) & ~0xfffn) === IOVA).length;
  }
  const device = address.replace(/^0000:/, '');
  return log.filter((line) => line.includes('DMAR: [DMA Read') && line.includes(`[${device}]`) && line.includes(`fault addr 0x${IOVA.toString(16)}`)).length;
}

/**
 * Waits until the kernel will log the next DMA fault. Both fault reports are rate-limited per call
 * site (DEFAULT_RATELIMIT_INTERVAL 5 s, DEFAULT_RATELIMIT_BURST 10: `pr_err_ratelimited` in
 * drivers/iommu/intel/dmar.c, a `__ratelimit()` in arm-smmu-v3.c's arm_smmu_evtq_thread()), and an
 * SMMUv3 reports each 4-byte access of a transfer: a fault another test caused a moment ago (the
 * edu driver's) can leave none of the burst. A window starts at a logged report, so 5 s after the
 * last one logged the next is logged.
 */
async function faultReportsAllowed(): Promise<void> {
  const stamps = execFileSync('dmesg', { encoding: 'utf8' })
    .split('\n')
    .filter((line) => /DMAR: \[DMA |arm-smmu-v3.*event 0x/.test(line))
    .map((line) => Number(/^\[\s*([0-9.]+)\]/.exec(line)?.[1] ?? 0));
  const now = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  const wait = Math.max(0, (stamps.at(-1) ?? -Infinity) + 5.5 - now);
  await new Promise((resolve) => setTimeout(resolve, wait * 1000));
}

describe.each(machines)('hot-plug on the %s', (_, machineOf) => {
  it('attaches the second edu to a live container, DMA from both through the shared mapping, detaches the first', async () => {
    const machine = machineOf();
    const kernelInterface = interfaceOf(lane ?? 'x86');
    const { edu, edu2, sysfs, syscalls } = machine;
    expect(sysfs.deviceDriver(edu2), 'the second edu is unbound at start').toBeNull();
    const filesBefore = openFiles(machine);
    const backend = smmu({ syscalls, interface: kernelInterface });
    const container = await Container.open({ backend, devices: [edu] });
    const memory = allocateDmaMemory(syscalls, 0x4000n);
    const drivers: EduDriver[] = [];
    let bound = false;
    try {
      const mapping = container.map({ iova: IOVA, memory });
      // The second edu is bound to vfio-pci only now, with the guest's memory mapped (on arm64 its
      // group appears with the bind: docs/kernel-rules.md#groups-appear-on-bind-on-arm64).
      sysfs.bindVfio(edu2);
      bound = true;
      const group2 = sysfs.deviceGroup(edu2)!;
      const joined = container.attach({ devices: [edu2] });
      expect(joined.devices).toEqual([edu2]);
      expect(container.members().devices).toEqual([edu, edu2].sort());
      if (kernelInterface === 'type1') expect(container.members().groups).toEqual([sysfs.deviceGroup(edu)!, group2].sort((a, b) => a - b));
      expect(container.mappings()).toEqual([mapping]);

      const first = new EduDriver(backend.openDevice(edu));
      drivers.push(first);
      const second = new EduDriver(backend.openDevice(edu2));
      drivers.push(second);
      expect([first.identification(), second.identification()]).toEqual([0x010000ed, 0x010000ed]);
      // The first copies host page 0 to page 1; the second copies page 1 (what the first wrote) to page 2.
      const bytes = pattern(1);
      memory.bytes.set(bytes, 0);
      await first.readFromHost(IOVA, 0, LENGTH);
      await first.writeToHost(0, IOVA + 0x1000n, LENGTH);
      expect(memory.bytes.subarray(0x1000, 0x1000 + LENGTH), 'page 1, written by the first edu').toEqual(bytes);
      await second.readFromHost(IOVA + 0x1000n, 0, LENGTH);
      await second.writeToHost(0, IOVA + 0x2000n, LENGTH);
      expect(memory.bytes.subarray(0x2000, 0x2000 + LENGTH), 'page 2, written by the second edu from page 1').toEqual(bytes);

      // The first cannot leave while the fd openDevice() handed out for it is open: the SDK refuses
      // first (in-use), changing nothing.
      const before = { members: container.members(), usable: container.usable(), mappings: container.mappings() };
      expect(codeOf(() => container.detach({ devices: [edu] }))).toBe('in-use');
      expect({ members: container.members(), usable: container.usable(), mappings: container.mappings() }).toEqual(before);
      if (kernelInterface === 'type1' && machine.kind === 'real') {
        // The kernel would refuse too: VFIO_GROUP_UNSET_CONTAINER is EBUSY while a device fd of the
        // group is open (docs/kernel-rules.md#detaching-a-group), asked here of the backend's own group fd.
        const ioctls = new VfioIoctls({ syscalls });
        let errno: number | undefined;
        try {
          ioctls.groupUnsetContainer(groupFd(sysfs.deviceGroup(edu)!));
        } catch (error) {
          errno = IoasError.isInstance(error) ? error.errno : undefined;
        }
        expect(errno === undefined ? 'success' : errnoName(errno)).toBe(errnoName(ERRNO.EBUSY));
      }
      // Nothing changed: the first still reaches the mapping.
      await first.readFromHost(IOVA, 0x800, 64);
      await first.writeToHost(0x800, IOVA + 0x3000n, 64);
      expect(memory.bytes.subarray(0x3000, 0x3040)).toEqual(bytes.subarray(0, 64));

      // The first leaves once its fd is closed; the mapping stays, for the second.
      first.close();
      const left = container.detach({ devices: [edu] });
      expect(left.devices).toEqual([edu]);
      expect(container.members().devices).toEqual([edu2]);
      if (kernelInterface === 'type1') expect(container.members().groups).toEqual([group2]);
      expect(container.mappings()).toEqual([mapping]);
      const again = pattern(2);
      memory.bytes.set(again, 0);
      await second.readFromHost(IOVA, 0, LENGTH);
      await second.writeToHost(0, IOVA + 0x3000n, LENGTH);
      expect(memory.bytes.subarray(0x3000, 0x3000 + LENGTH), 'page 3, written by the second edu after the first left').toEqual(again);

      // The first no longer reaches the mapping. Asked with a read (RAM to device) only, which
      // cannot write anywhere whatever its fate: the first edu is outside the container now.
      if (machine.kind === 'sim') {
        expect(machine.simulator!.devices().find((device) => device.address === edu)!.dmaRead(IOVA, 64)).toBeUndefined();
      } else {
        await faultReportsAllowed();
        const faultsBefore = faults(edu);
        const outside = SysfsEdu.open(syscalls, edu);
        try {
          expect(outside.identification()).toBe(0x010000ed);
          await outside.readFromHost(IOVA, 0, 64);
        } finally {
          outside.close();
        }
        expect(faults(edu), `a new DMA fault logged for ${edu} reading IOVA 0x${IOVA.toString(16)}`).toBeGreaterThan(faultsBefore);
      }
      second.close();
      container.unmap(mapping);
    } finally {
      for (const driver of drivers) driver.close();
      container.close();
      memory.free();
      if (bound) sysfs.unbindVfio(edu2);
    }
    expect(openFiles(machine), 'files open after the container closed').toBe(filesBefore);
    expect([sysfs.deviceDriver(edu), sysfs.deviceDriver(edu2)], 'the edus as the guest booted').toEqual(['vfio-pci', null]);
  });
});
