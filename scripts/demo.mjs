// `pnpm demo`: the SDK on the simulator, no hardware needed.
// 1. A Freescale P4080 (PAMU, windowed): the seed example's window plan (a 256 MiB guest on 64 MiB
//    hugepages, 3 MSI banks) applied, a device DMA landing in guest RAM, an MSI delivered.
// 2. An ARM SMMUv3 (paged): the kernel's software MSI window reported and kept clear, a mapping,
//    and a device DMA to an unmapped IOVA faulting while memory stays untouched.
import { Container, formatRange, formatSize, formatWindowPlan, hex, planWindows } from '@ioas/core';
import { sim } from '@ioas/backend-sim';

const MiB = 1n << 20n;
const text = (bytes) => new TextDecoder().decode(bytes);

console.log('== Freescale P4080 (PAMU, windowed) ==\n');
{
  const backend = sim({ platform: 'p4080' });
  const machine = backend.simulator;
  const device = machine.devices().find((candidate) => candidate.edu);
  const guest = { iova: 0n, size: 256n * MiB, pageSize: 64n * MiB };
  const plan = planWindows({ memory: [guest], msiBanks: 3 });
  console.log(formatWindowPlan(plan), '\n');

  // Node 20 has no `using` in plain JavaScript; TypeScript users can write `using container = ...`.
  const container = await Container.open({ backend, groups: [device.group] });
  container.setGeometry({ aperture: plan.aperture, windowCount: plan.windowCount });
  // Guest RAM: 64 MiB hugepages, physically contiguous, one per window.
  const ram = machine.memory.allocate(guest.size, guest.pageSize);
  const { mappings } = container.mapRegion({
    iova: guest.iova,
    memory: { address: ram.address, length: guest.size, contiguousPageSize: guest.pageSize },
  });
  const firstMsi = plan.windows.find((window) => window.kind === 'msi');
  const msi = container.msi.map(container.msi.plan({ iova: firstMsi.iova }));
  console.log(`mapped guest RAM: ${mappings.map((mapping) => formatRange(mapping.iova)).join(', ')} (${formatSize(guest.size)} in ${plan.windows.filter((window) => window.kind === 'dma').length} windows of ${formatSize(plan.windowSize)})`);
  for (const doorbell of msi.doorbells) console.log(`mapped MSI bank ${doorbell.index} into the window at ${hex(doorbell.iova.start)}`);

  device.dmaWrite(0x0c00_1000n, new TextEncoder().encode('written by the device through window 3'));
  console.log(`device DMA to IOVA 0xc001000 landed in guest RAM: "${text(machine.memory.read(ram.address + 0x0c00_1000n, 38))}"`);
  let delivered = 0;
  device.enableMsi([() => delivered++]);
  device.raiseMsi(0);
  console.log(`device MSI delivered: ${delivered === 1 ? 'yes' : 'no'} (interrupts so far: ${machine.interrupts.length})`);
  console.log(`stats: ${JSON.stringify(container.stats(), (_, value) => (typeof value === 'bigint' ? hex(value) : value))}\n`);
  container.close();
}

console.log('== ARM SMMUv3 (paged, VFIO type1v2) ==\n');
{
  const backend = sim({ platform: 'arm-smmuv3' });
  const machine = backend.simulator;
  const device = machine.devices().find((candidate) => candidate.edu);
  const container = await Container.open({ backend, groups: [device.group] });
  for (const reserved of container.reserved()) console.log(`reserved: ${formatRange(reserved)} ${reserved.kind} (from ${reserved.source})`);
  console.log(`usable:   ${container.usable().map(formatRange).join(', ')}`);
  const [doorbells] = container.msi.plan().doorbells;
  console.log(`MSI: ${container.capabilities.msi}; the kernel maps doorbells in ${formatRange(doorbells.iova)}`);

  const buffer = machine.memory.allocate(2n * MiB, 2n * MiB);
  const mapping = container.map({ memory: { address: buffer.address, length: buffer.length } });
  console.log(`mapped 2 MiB at IOVA ${formatRange(mapping.iova)} (allocated, 2 MiB aligned)`);
  try {
    container.map({ iova: 0x800_0000n, memory: { address: buffer.address, length: 0x1000n } });
  } catch (error) {
    console.log(`refused before the kernel saw it: ${error.message}`);
  }
  const before = machine.memory.read(buffer.address, 8);
  const ok = device.dmaWrite(0x4000_0000n, new Uint8Array(8).fill(0xff));
  const fault = machine.faults.at(-1);
  console.log(`device DMA to unmapped IOVA 0x40000000: ${ok ? 'landed?!' : 'faulted'}; kernel log: ${fault.log}`);
  console.log(`memory untouched: ${machine.memory.read(buffer.address, 8).every((byte, index) => byte === before[index])}`);
  container.close();
}
