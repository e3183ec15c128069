// On the real kernel, inside the QEMU guest (pnpm test:kernel boots it): the conformance suite
// against backend-smmu, the ABI values the kernel answers compared with the simulator's, and the
// sysfs tree captured as a fixture. Outside the guest these tests do not run: the rig runs them.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { conformanceSuite } from '@ioas/conformance';
import { Container } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, VfioContainer, VfioDevice, VfioGroup, VfioIoctls, vfioUapi } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { interfaceOf, lane, realMachine, simMachine, type Machine } from './targets.js';

if (lane === undefined) {
  describe('real kernel', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` (root, Debian) to boot it', () => undefined);
  });
} else {
  const currentLane = lane;
  const machine = realMachine();
  const kernelInterface = interfaceOf(lane);
  const backend = smmu({ syscalls: machine.syscalls, interface: kernelInterface });
  const limitFile = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';

  // First of all (this file runs first: vitest.config.mjs), before the hot-plug tests bind the second
  // edu: on arm64 its group appears on bind and stays after unbinding, and the fixture is the guest as booted.
  describe(`real kernel, lane ${lane}: the guest as booted`, () => {
    it('captures the sysfs tree of the guest as a fixture', () => {
      expect(machine.sysfs.deviceDriver(machine.edu2), 'the second edu, unbound at boot').toBeNull();
      const groups = machine.sysfs.groups().map((group) => ({
        group,
        reservedRegions: machine.syscalls.readFile(`/sys/kernel/iommu_groups/${group}/reserved_regions`),
        devices: machine.sysfs.groupDevices(group).map((address) => machine.sysfs.device(address)),
      }));
      writeFileSync(`/tmp/results/sysfs-${lane}.json`, JSON.stringify({ kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), groups }, null, 2));
      expect(groups.length).toBeGreaterThan(0);
    });
  });

  /** Whether the conformance suite's hot-plug group bound the second edu (unbound again after the file). */
  let boundSecond = false;
  afterAll(() => {
    if (boundSecond) machine.sysfs.unbindVfio(machine.edu2);
  });

  conformanceSuite({ describe, it, expect }, `real kernel, lane ${lane} (${kernelInterface})`, {
    // The guest runs as root, so type1's dma_entry_limit can be lowered for the budget test; it is
    // read when SET_IOMMU runs (docs/kernel-rules.md#the-mapping-budget).
    canLimitBudget: kernelInterface === 'type1',
    async open(options) {
      const saved = readFileSync(limitFile, 'utf8');
      if (options?.mappingBudget !== undefined) writeFileSync(limitFile, String(options.mappingBudget));
      try {
        return await Container.open({ backend, devices: [machine.edu] });
      } finally {
        writeFileSync(limitFile, saved);
      }
    },
    memory: (length, pageSize) => allocateDmaMemory(machine.syscalls, length, pageSize !== undefined && pageSize > 0x1000n ? pageSize : undefined),
    readMemory: (memory, offset, length) => machine.syscalls.memory(memory.address + offset, length).slice(),
    writeMemory: (memory, offset, bytes) => machine.syscalls.memory(memory.address + offset, bytes.length).set(bytes),
    kernelState: () => ({ mappings: 0, openFiles: readdirSync('/proc/self/fd').length }),
    // The second edu joins and leaves live containers (no device driven here: hot-plug.test.ts
    // drives both edus' DMA, which is asynchronous on the real device).
    hotPlug: {
      first: () => ({ devices: [machine.edu] }),
      second: () => {
        if (machine.sysfs.deviceDriver(machine.edu2) !== 'vfio-pci') {
          machine.sysfs.bindVfio(machine.edu2);
          boundSecond = true;
        }
        return { members: { devices: [machine.edu2] } };
      },
    },
  });

  /** What a machine answers to the calls whose values the fact sheets record. */
  function abiAnswers(target: Machine) {
    const ioctls = new VfioIoctls({ syscalls: target.syscalls });
    const group = target.sysfs.deviceGroup(target.edu)!;
    const answers: Record<string, unknown> = {
      reservedRegions: target.syscalls.readFile(`/sys/kernel/iommu_groups/${group}/reserved_regions`),
    };
    if (kernelInterface === 'type1') {
      const container = VfioContainer.open(ioctls);
      const vfioGroup = VfioGroup.open(ioctls, group);
      try {
        answers.extensionsBeforeSet = [1, 3, 8, 9, 10].map((extension) => container.checkExtension(extension));
        vfioGroup.setContainer(container);
        container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
        const raw = ioctls.iommuGetInfo(container.fd);
        answers.infoArgsz = raw.byteLength;
        answers.firstCapOffset = raw.getUint32(vfioUapi.vfio_iommu_type1_info.cap_offset, ioctls.little);
        answers.info = container.info();
        const device = new VfioDevice(ioctls, vfioGroup.deviceFd(target.edu), target.edu);
        answers.deviceInfo = device.info();
        answers.bar0 = device.region(vfioUapi.VFIO_PCI_BAR0_REGION_INDEX);
        answers.config = { flags: device.region(vfioUapi.VFIO_PCI_CONFIG_REGION_INDEX).flags };
        answers.msi = device.irqInfo(vfioUapi.VFIO_PCI_MSI_IRQ_INDEX);
        answers.intx = device.irqInfo(vfioUapi.VFIO_PCI_INTX_IRQ_INDEX);
        device.close();
      } finally {
        vfioGroup.close();
        container.close();
      }
    }
    return answers;
  }

  describe(`real kernel, lane ${lane}: what the kernel answers`, () => {
    it('answers the ABI calls as the simulator does (and as the fact sheets recorded)', () => {
      const real = abiAnswers(machine);
      const simulated = abiAnswers(simMachine(currentLane));
      writeFileSync(`/tmp/results/abi-${lane}.json`, JSON.stringify(real, (_, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value), 2));
      // BAR offsets are opaque; vfio-pci happens to use index << 40, which the simulator copies.
      expect(simulated).toEqual(real);
    });

  });
}
