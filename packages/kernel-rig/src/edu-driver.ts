/**
 * A tiny userspace driver for QEMU's `edu` teaching device (vendor 0x1234, device 0x11e8), written
 * with the SDK: BAR0 registers, bus mastering, DMA through the IOMMU, MSI on an eventfd. Register
 * map in docs/kernel-rules.md#edu-registers. The same code drives the real device in the QEMU guest
 * and the simulated one.
 */
import { endianness } from 'node:os';
import { IoasError, hex } from '@ioas/core';
import { VfioDevice, vfioUapi } from '@ioas/vfio';

const REGISTER = {
  IDENTIFICATION: 0x00,
  LIVENESS: 0x04,
  INTERRUPT_STATUS: 0x24,
  INTERRUPT_RAISE: 0x60,
  INTERRUPT_ACK: 0x64,
  DMA_SOURCE: 0x80,
  DMA_DESTINATION: 0x88,
  DMA_COUNT: 0x90,
  DMA_COMMAND: 0x98,
} as const;
const DMA_START = 1n;
const DMA_TO_RAM = 2n;
const DMA_IRQ = 4n;
/** The device's own 4 KiB buffer, at this device address. */
export const EDU_BUFFER = 0x40000n;
/** QEMU 7.2's edu aborts the VM on a DMA of exactly 4096 bytes: transfers stay below. */
export const EDU_MAX_DMA = 4095;

/** How registers are reached: a mapped BAR (the real device) or pread/pwrite (the simulator). */
interface Registers {
  read32(offset: number): number;
  write32(offset: number, value: number): void;
  read64(offset: number): bigint;
  write64(offset: number, value: bigint): void;
}

export class EduDriver {
  private readonly registers: Registers;
  /** How the BAR is reached: `mmap` or `pread/pwrite` (when the BAR cannot be mapped). */
  readonly access: 'mmap' | 'pread/pwrite';
  private eventfd: number | undefined;

  constructor(readonly device: VfioDevice) {
    const bar = device.region(vfioUapi.VFIO_PCI_BAR0_REGION_INDEX);
    if (bar.size < 0x100n) throw new IoasError('wrong-device', `${device.name}: BAR0 is ${bar.size} bytes; is this an edu device?`);
    // MMIO needs accesses of the register's own width: edu answers byte loads with nothing useful,
    // and a DataView may load byte by byte. 32- and 64-bit typed arrays give whole-width loads and
    // stores, in host byte order, which is PCI's little-endian on the hosts QEMU's edu runs on.
    let words: { u32: Uint32Array; u64: BigUint64Array } | undefined;
    if ((bar.flags & vfioUapi.VFIO_REGION_INFO_FLAG_MMAP) !== 0 && endianness() === 'LE') {
      try {
        const address = device.mmap(vfioUapi.VFIO_PCI_BAR0_REGION_INDEX);
        const bytes = device.ioctls.syscalls.memory(address, 0x100);
        words = { u32: new Uint32Array(bytes.buffer, bytes.byteOffset, 0x40), u64: new BigUint64Array(bytes.buffer, bytes.byteOffset, 0x20) };
      } catch {
        words = undefined; // the simulator cannot map a BAR: registers through pread/pwrite
      }
    }
    const index = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
    this.registers =
      words !== undefined
        ? {
            read32: (offset) => words.u32[offset >> 2]!,
            write32: (offset, value) => {
              words.u32[offset >> 2] = value >>> 0;
            },
            read64: (offset) => words.u64[offset >> 3]!,
            write64: (offset, value) => {
              words.u64[offset >> 3] = value;
            },
          }
        : {
            read32: (offset) => device.read32(index, BigInt(offset)),
            write32: (offset, value) => device.write32(index, BigInt(offset), value),
            read64: (offset) => device.read64(index, BigInt(offset)),
            write64: (offset, value) => device.write64(index, BigInt(offset), value),
          };
    this.access = words === undefined ? 'pread/pwrite' : 'mmap';
    // DMA and MSI need bus mastering, which vfio-pci leaves off
    // (docs/kernel-rules.md#bus-mastering-is-left-to-the-user).
    device.enableBusMaster();
  }

  /** 0x010000ed on QEMU's edu: major version 1, minor 0. */
  identification(): number {
    return this.registers.read32(REGISTER.IDENTIFICATION);
  }

  /** The liveness check: the device answers the bitwise NOT of what was written. */
  liveness(value: number): number {
    this.registers.write32(REGISTER.LIVENESS, value);
    return this.registers.read32(REGISTER.LIVENESS);
  }

  /** Enables MSI vector 0 on an eventfd. */
  enableMsi(): void {
    [this.eventfd] = this.device.enableMsi(1);
  }

  /** Interrupts counted on the eventfd since the last call. */
  interrupts(): bigint {
    if (this.eventfd === undefined) return 0n;
    return VfioDevice.readEventfd(this.device.ioctls, this.eventfd);
  }

  /** Waits until the eventfd has counted an interrupt or `timeoutMs` passes; returns the count. */
  async waitForInterrupt(timeoutMs = 5000): Promise<bigint> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const count = this.interrupts();
      if (count > 0n || Date.now() > deadline) return count;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Raises an interrupt by software (the "raise interrupt" register). */
  raiseInterrupt(status = 1): void {
    this.registers.write32(REGISTER.INTERRUPT_RAISE, status);
  }

  acknowledge(status: number): void {
    this.registers.write32(REGISTER.INTERRUPT_ACK, status);
  }

  interruptStatus(): number {
    return this.registers.read32(REGISTER.INTERRUPT_STATUS);
  }

  /** DMA from host memory at `iova` into the device buffer at `offset` (RAM to device). */
  async readFromHost(iova: bigint, offset: number, length: number): Promise<void> {
    await this.dma(iova, EDU_BUFFER + BigInt(offset), length, 0n);
  }

  /** DMA from the device buffer at `offset` to host memory at `iova` (device to RAM), with an MSI when done if asked. */
  async writeToHost(offset: number, iova: bigint, length: number, interrupt = false): Promise<void> {
    await this.dma(EDU_BUFFER + BigInt(offset), iova, length, DMA_TO_RAM | (interrupt ? DMA_IRQ : 0n));
  }

  private async dma(source: bigint, destination: bigint, length: number, flags: bigint): Promise<void> {
    if (length <= 0 || length > EDU_MAX_DMA) throw new IoasError('invalid-argument', `edu DMA of ${length} bytes: keep it between 1 and ${EDU_MAX_DMA} (QEMU 7.2 aborts at 4096)`);
    // edu masks DMA addresses to 28 bits (docs/kernel-rules.md#edu-dma-address-mask).
    const host = (flags & DMA_TO_RAM) !== 0n ? destination : source;
    if (host >= 1n << 28n) throw new IoasError('invalid-argument', `edu can only reach IOVAs below 256 MiB, not ${hex(host)}`);
    this.registers.write64(REGISTER.DMA_SOURCE, source);
    this.registers.write64(REGISTER.DMA_DESTINATION, destination);
    this.registers.write64(REGISTER.DMA_COUNT, BigInt(length));
    this.registers.write64(REGISTER.DMA_COMMAND, DMA_START | flags);
    // The device clears the start bit when the transfer is done (a timer in QEMU).
    const deadline = Date.now() + 10_000;
    while ((this.registers.read64(REGISTER.DMA_COMMAND) & DMA_START) !== 0n) {
      if (Date.now() > deadline) throw new IoasError('timeout', 'edu DMA did not complete within 10 s');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  close(): void {
    this.device.close();
  }
}
