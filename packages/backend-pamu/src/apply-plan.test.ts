// The seed example end to end over the P4080 syscall face: a 256 MiB guest on 64 MiB hugepages with
// 3 MSI banks, planned by core, applied in one call, then the edu device's DMA engine moving guest
// RAM between windows and its MSI arriving on an eventfd through a mapped bank.
import { Container, ERRNO, formatWindowPlan, IoasError, planWindows } from '@ioas/core';
import { VfioDevice } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { pamuOnSim } from './__fixtures__/pamu-on-sim.js';
import { applyWindowPlan } from './apply-plan.js';

const MiB = 1n << 20n;
const seed = { memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 };

async function seedContainer() {
  const env = pamuOnSim();
  const container = await Container.open({ backend: env.backend, groups: [0] });
  const ram = env.simulator.memory.allocate(256n * MiB, 64n * MiB);
  return { env, container, ram, memory: { address: ram.address, length: ram.length, contiguousPageSize: 64n * MiB } };
}

describe('applyWindowPlan', () => {
  it('applies the seed plan; device DMA lands in guest RAM and an MSI arrives through bank 0', async () => {
    const { env, container, ram, memory } = await seedContainer();
    const plan = planWindows(seed);
    expect(formatWindowPlan(plan)).toContain('Total aperture: 512 MiB at 0x00000000, 8 windows of 64 MiB');
    const applied = applyWindowPlan(container, plan, [memory]);
    // One MAP_DMA for the four RAM windows, three MSI banks in windows 4-6, window 7 disabled.
    expect(applied.mappings.map((mapping) => [mapping.iova.start, mapping.iova.last])).toEqual([[0n, 256n * MiB - 1n]]);
    expect(applied.msi.doorbells.map((doorbell) => [doorbell.index, doorbell.iova.start])).toEqual([
      [0, 0x1000_0000n],
      [1, 0x1400_0000n],
      [2, 0x1800_0000n],
    ]);
    const pamu = env.backend.containerOf(0);
    expect(pamu.windows()).toMatchObject({ count: 8, size: 64n * MiB });
    expect(pamu.msiBanks().map((bank) => bank.deviceAddress)).toEqual([0x1000_0140n, 0x1400_0140n, 0x1800_0140n]);

    // edu through vfio-pci: bus master, then its DMA engine copies 64 bytes from guest RAM in window 0
    // (IOVA 0x1000) into its buffer, and from there into window 3 (IOVA 0xc001000).
    const device = env.backend.openDevice(env.edu.address);
    device.enableBusMaster();
    const text = new TextEncoder().encode('written by the guest in window 0, copied by edu to window 3.');
    env.simulator.memory.write(ram.address + 0x1000n, text);
    const dma = (source: bigint, destination: bigint, toRam: boolean): void => {
      device.write64(0, 0x80n, source);
      device.write64(0, 0x88n, destination);
      device.write64(0, 0x90n, BigInt(text.length));
      device.write64(0, 0x98n, toRam ? 3n : 1n);
    };
    dma(0x1000n, 0x40000n, false);
    dma(0x40000n, 0x0c00_1000n, true);
    expect(new TextDecoder().decode(env.simulator.memory.read(ram.address + 0x0c00_1000n, text.length))).toBe(new TextDecoder().decode(text));
    expect(env.simulator.faults).toEqual([]);

    // MSI: SET_IRQS with an eventfd finds bank 0's window (the kernel rewrites the address), then
    // edu's interrupt-raise register fires it.
    const [eventfd] = device.enableMsi(1);
    device.write32(0, 0x60n, 1);
    expect(VfioDevice.readEventfd(device.ioctls, eventfd!)).toBe(1n);
    device.disableIrqs();
    device.close();
    container.close();
    expect([env.simulator.liveMappings(), env.raw.openFiles]).toEqual([0, 0]);
  });

  it('undoes everything when a step fails: mappings, MSI banks, and the previous geometry', async () => {
    const plan = planWindows(seed);
    // Every kernel call of the plan, in turn, fails: the container must come back as it was.
    for (let skip = 0; ; skip++) {
      const { env, container, memory } = await seedContainer();
      container.setGeometry({ aperture: { start: 0n, size: 1n << 30n }, windowCount: 4 });
      const before = container.geometry();
      env.simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO, skip });
      let error: unknown;
      try {
        applyWindowPlan(container, plan, [memory]);
      } catch (caught) {
        error = caught;
      }
      env.simulator.clearInjectedFaults();
      if (error === undefined) {
        // SET+GET geometry, SET+GET windows, one MAP_DMA, three MAP_MSI_BANK: every one was made to fail.
        expect(skip).toBe(8);
        container.close();
        break;
      }
      expect(IoasError.isInstance(error) && error.code, String(error)).toBe('kernel');
      expect(container.mappings()).toEqual([]);
      expect(container.stats().msiDoorbellsMapped).toBe(0);
      expect(env.simulator.liveMappings()).toBe(0);
      expect(container.geometry()).toEqual(before);
      // And the container still works: the plan applies once the fault is gone.
      applyWindowPlan(container, plan, [memory]);
      container.close();
      expect(env.raw.openFiles).toBe(0);
    }
  });

  it('refuses memory that does not fit the plan before touching the container', async () => {
    const { env, container, memory } = await seedContainer();
    const plan = planWindows(seed);
    const from = env.log.length;
    expect(() => applyWindowPlan(container, plan, [])).toThrow(/only 0 memory regions/);
    expect(() => applyWindowPlan(container, plan, [{ ...memory, length: 128n * MiB }])).toThrow(/256 MiB|0x10000000 bytes in the plan/);
    expect(() => applyWindowPlan(container, plan, [memory, memory])).toThrow(/2 memory regions given for a plan of 1 segments/);
    expect(env.log.length).toBe(from);
    container.close();
  });
});
