import { Container, formatRange } from '@ioas/core';
import { sim } from '@ioas/backend-sim';

// A simulated Intel VT-d machine: QEMU's edu at 0000:00:03.0 is bound to vfio-pci; a second edu
// (the "NIC" that will be hot-plugged) sits at 0000:00:10.0, and 0000:00:11.0 has an RMRR.
const backend = sim({ platform: 'x86-vtd' });
const machine = backend.simulator;
const container = await Container.open({ backend, devices: ['0000:00:03.0'] });

// The guest's 1 GiB of RAM, mapped 1:1 from IOVA 0 on 2 MiB pages.
const ram = machine.memory.allocate(1n << 30n, 2n << 20n);
container.mapRegion({ iova: 0n, memory: { address: ram.address, length: ram.length } });

// The NIC arrives: bind it to vfio-pci (the host's job), then attach it to the live container.
machine.bind('0000:00:10.0', 'vfio-pci');
const joined = container.attach({ devices: ['0000:00:10.0'] });
console.log('attached', joined.devices.join(', '), 'in IOMMU group', joined.groups.join(', '));

// Both devices DMA through the same guest RAM mappings.
const [first, nic] = ['0000:00:03.0', '0000:00:10.0'].map((address) => machine.device(address));
nic.dmaWrite(0x100000n, new TextEncoder().encode('from the NIC'));
console.log('the first device reads', new TextDecoder().decode(first.dmaRead(0x100000n, 12)));

// A device whose RMRR lies in the guest RAM is refused before the kernel sees it; nothing changes.
machine.bind('0000:00:11.0', 'vfio-pci');
try {
  container.attach({ devices: ['0000:00:11.0'] });
} catch (error) {
  console.log(error.code, '-', error.message);
}

// The first device leaves: the mappings stay, the NIC keeps using them, the first is cut off.
container.detach({ devices: ['0000:00:03.0'] });
console.log('members', container.members().devices.join(', '), '-', container.mappings().length, 'mapping of', formatRange(container.mappings()[0].iova));
console.log('NIC DMA', nic.dmaWrite(0x200000n, new Uint8Array([1])) ? 'lands' : 'faults', '- first device DMA', first.dmaWrite(0x200000n, new Uint8Array([1])) ? 'lands' : 'faults');
container.close();
