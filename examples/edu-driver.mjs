// A tiny userspace driver for QEMU's `edu` PCI device (1234:11e8): it maps a buffer for DMA, has
// the device copy bytes from host memory into its own buffer and back to another place, and waits
// for the completion MSI on an eventfd. The device's registers are reached with pread/pwrite on
// BAR0, which works the same on the simulator and on the real device.
//
//   node examples/edu-driver.mjs                          a simulated x86 VT-d machine
//   node examples/edu-driver.mjs --device 0000:00:03.0    the real device, bound to vfio-pci (root)
import { parseArgs } from 'node:util';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { Container, hex } from '@ioas/core';
import { allocateDmaMemory, libcSyscalls, VfioDevice } from '@ioas/vfio';

const { values } = parseArgs({ options: { device: { type: 'string' } } });
const machine = values.device === undefined ? createSimulator({ platform: 'x86-vtd' }) : undefined;
const syscalls = machine === undefined ? libcSyscalls() : simSyscalls(machine);
const address = values.device ?? '0000:00:03.0';
const backend = smmu({ syscalls, ...(machine === undefined ? {} : { arch: 'generic', littleEndian: true }) });

// edu's registers (QEMU docs/specs/edu.rst): DMA source, destination, count, command.
const REG = { ID: 0x00n, RAISE: 0x60n, STATUS: 0x24n, ACK: 0x64n, SRC: 0x80n, DST: 0x88n, COUNT: 0x90n, CMD: 0x98n };
const CMD = { START: 1n, TO_RAM: 2n, IRQ: 4n };
const EDU_BUFFER = 0x40000n; // the device's own 4 KiB buffer, at this device address

const container = await Container.open({ backend, devices: [address] });
const device = backend.openDevice(address);
try {
  const id = device.read32(0, REG.ID);
  console.log(`${address}: edu version ${(id >>> 24) & 0xff}.${(id >>> 16) & 0xff} (id ${hex(id)})`);
  device.enableBusMaster(); // vfio-pci leaves bus mastering off: no DMA, no MSI without it
  const [eventfd] = device.enableMsi(1);

  const memory = allocateDmaMemory(syscalls, 0x2000n);
  // edu masks DMA addresses to 28 bits: keep the IOVA below 256 MiB.
  const mapping = container.map({ memory, iova: 0x10_0000n });
  const source = mapping.iova.start;
  const destination = mapping.iova.start + 0x1000n;
  const message = new TextEncoder().encode('copied by the edu device, through the IOMMU, twice');
  syscalls.memory(memory.address, message.length).set(message);

  const dma = (from, to, count, toRam) => {
    device.write64(0, REG.SRC, from);
    device.write64(0, REG.DST, to);
    device.write64(0, REG.COUNT, BigInt(count));
    device.write64(0, REG.CMD, CMD.START | CMD.IRQ | (toRam ? CMD.TO_RAM : 0n));
    for (let spin = 0; (device.read64(0, REG.CMD) & CMD.START) !== 0n; spin++) if (spin > 1_000_000) throw new Error('edu DMA did not finish');
    device.write32(0, REG.ACK, device.read32(0, REG.STATUS)); // acknowledge, so the next one raises again
  };
  dma(source, EDU_BUFFER, message.length, false); // host memory -> device buffer
  dma(EDU_BUFFER, destination, message.length, true); // device buffer -> host memory
  const copied = new TextDecoder().decode(syscalls.memory(memory.address + 0x1000n, message.length));
  console.log(`DMA round trip through IOVA ${hex(source)} and ${hex(destination)}: "${copied}"`);

  // Two DMA completions, two MSIs: the eventfd counts them (a non-blocking read; poll in real code).
  let interrupts = 0n;
  for (let tries = 0; interrupts === 0n && tries < 1000; tries++) {
    try {
      interrupts = VfioDevice.readEventfd(device.ioctls, eventfd);
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  console.log(`MSIs received on the eventfd: ${interrupts}`);
  device.disableIrqs();
  container.unmap(mapping);
  memory.free();
  if (copied !== new TextDecoder().decode(message) || interrupts < 1n) process.exitCode = 1;
} finally {
  device.close();
  container.close();
}
