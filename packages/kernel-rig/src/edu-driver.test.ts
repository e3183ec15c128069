// The edu driver end to end: on the simulator always, and on the real device in the QEMU guest.
import { execFileSync } from 'node:child_process';
import { Container } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { EduDriver } from './edu-driver.js';
import { interfaceOf, lane, realMachine, simMachine, type Machine } from './targets.js';

const machines: [string, () => Machine][] = [['simulator', () => simMachine(lane ?? 'x86')]];
if (lane !== undefined) machines.push([`real kernel (${lane})`, realMachine]);

describe.each(machines)('edu driver on the %s', (_, machineOf) => {
  it('does DMA both ways through the IOMMU, faults on unmapped IOVAs, and raises an MSI on an eventfd', async () => {
    const machine = machineOf();
    const backend = smmu({ syscalls: machine.syscalls, interface: interfaceOf(lane ?? 'x86') });
    const container = await Container.open({ backend, devices: [machine.edu] });
    const driver = new EduDriver(backend.openDevice(machine.edu));
    try {
      expect(driver.identification()).toBe(0x010000ed);
      expect(driver.liveness(0x12345678)).toBe(~0x12345678 >>> 0);
      driver.enableMsi();
      const memory = allocateDmaMemory(machine.syscalls, 0x2000n);
      const mapping = container.map({ iova: 0x100000n, memory });
      const pattern = Uint8Array.from({ length: 1024 }, (_, index) => (index * 7 + 3) & 0xff);
      memory.bytes.set(pattern, 0);
      // Host -> device, then device -> host at another offset with an MSI when done.
      await driver.readFromHost(mapping.iova.start, 0, pattern.length);
      await driver.writeToHost(0, mapping.iova.start + 0x1000n, pattern.length, true);
      expect(memory.bytes.subarray(0x1000, 0x1000 + pattern.length)).toEqual(pattern);
      expect(await driver.waitForInterrupt()).toBeGreaterThanOrEqual(1n);
      driver.acknowledge(driver.interruptStatus());
      // A software-raised interrupt arrives on the same eventfd.
      driver.raiseInterrupt(0x1);
      expect(await driver.waitForInterrupt()).toBeGreaterThanOrEqual(1n);
      driver.acknowledge(0x1);
      // DMA to an IOVA that is not mapped: the IOMMU faults and memory stays as it was.
      const before = memory.bytes.slice();
      await driver.writeToHost(0, 0x800000n, 64);
      expect(memory.bytes).toEqual(before);
      if (machine.kind === 'sim') {
        expect(machine.simulator!.faults.at(-1)).toMatchObject({ iova: 0x800000n, access: 'write' });
      } else {
        // The kernel logs the fault: DMAR on VT-d, event 0x10 on SMMUv3 (docs/kernel-rules.md#real-kernel-fault-reports).
        const log = execFileSync('dmesg', { encoding: 'utf8' });
        expect(log).toMatch(lane === 'arm64' ? /arm-smmu-v3.*event 0x10/ : /DMAR: \[DMA Write[^\n]*fault addr 0x800000/);
      }
      container.unmap(mapping);
      memory.free();
    } finally {
      driver.close();
      container.close();
    }
  });
});
