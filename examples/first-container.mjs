import { Container, formatRange } from '@ioas/core';
import { sim } from '@ioas/backend-sim';

// A simulated ARM SMMUv3 machine with QEMU's edu device bound to vfio-pci, in IOMMU group 4.
const backend = sim({ platform: 'arm-smmuv3' });
const machine = backend.simulator;
const container = await Container.open({ backend, groups: [4] });

// What the kernel reserves, and what is left to map.
for (const region of container.reserved()) console.log('reserved', formatRange(region), region.kind);
console.log('usable', container.usable().map(formatRange).join(', '));

// 2 MiB of host memory on a 2 MiB hugepage, mapped at an IOVA the container chooses.
const buffer = machine.memory.allocate(0x200000n, 0x200000n);
const mapping = container.map({ memory: { address: buffer.address, length: buffer.length } });
console.log('mapped', formatRange(mapping.iova));

// The device writes through the IOMMU; the bytes land in host memory.
const device = machine.devices().find((candidate) => candidate.edu);
device.dmaWrite(mapping.iova.start, new TextEncoder().encode('hello'));
console.log(new TextDecoder().decode(machine.memory.read(buffer.address, 5)));

// Mistakes are typed errors, raised before the kernel sees anything.
try {
  container.map({ iova: 0x8000000n, memory: { address: buffer.address, length: 0x1000n } });
} catch (error) {
  console.log(error.code, '-', error.message); // reserved - ... overlaps the MSI window ...
}
container.close();
