/**
 * A tiny userspace driver for QEMU's `edu` teaching device (vendor 0x1234, device 0x11e8), written
 * with the SDK: BAR0 registers, bus mastering, DMA through the IOMMU, MSI on an eventfd. Register
 * map in docs/kernel-rules.md#edu-registers. The same code drives the real device in the QEMU guest
 * and the simulated one.
 */
import { endianness } from 'node:os';
import { IoasError, hex, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
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

/** edu's registers and DMA engine, however BAR0 is reached. */
class EduEngine {
  constructor(protected readonly registers: Registers) {}

  /** 0x010000ed on QEMU's edu: major version 1, minor 0. */
  identification(): number {
    return this.registers.read32(REGISTER.IDENTIFICATION);
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
}

/** Whole-width register access over a mapped BAR (host byte order: PCI's little-endian where edu runs). */
function mappedRegisters(bytes: Uint8Array): Registers {
  // MMIO needs accesses of the register's own width: edu answers byte loads with nothing useful,
  // and a DataView may load byte by byte. 32- and 64-bit typed arrays give whole-width loads and
  // stores, in host byte order, which is PCI's little-endian on the hosts QEMU's edu runs on.
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, 0x40);
  const u64 = new BigUint64Array(bytes.buffer, bytes.byteOffset, 0x20);
  return {
    read32: (offset) => u32[offset >> 2]!,
    write32: (offset, value) => {
      u32[offset >> 2] = value >>> 0;
    },
    read64: (offset) => u64[offset >> 3]!,
    write64: (offset, value) => {
      u64[offset >> 3] = value;
    },
  };
}

/**
 * An edu reached with no VFIO file at all: BAR0 through `/sys/bus/pci/devices/<BDF>/resource0`
 * and the command register through its `config` file (root only). For one question: whether a
 * device that has left a container can still reach the container's IOVAs. Only reads from host
 * memory are offered: a DMA of unknown fate must never write.
 */
export class SysfsEdu {
  private readonly engine: EduEngine;
  private readonly command: number;

  private constructor(
    private readonly syscalls: Syscalls,
    readonly address: string,
    private readonly files: { resource: number; config: number; bar: bigint },
  ) {
    this.engine = new EduEngine(mappedRegisters(syscalls.memory(files.bar, 0x100)));
    const word = new Uint8Array(2);
    if (syscalls.pread(files.config, word, 4n) !== 2) throw new IoasError('kernel', `reading the command register of ${address} through sysfs`);
    this.command = new DataView(word.buffer).getUint16(0, true);
    // Memory space and bus master, as the VFIO path's enableBusMaster() sets them.
    new DataView(word.buffer).setUint16(0, this.command | 0x6, true);
    if (syscalls.pwrite(files.config, word, 4n) !== 2) throw new IoasError('kernel', `writing the command register of ${address} through sysfs`);
  }

  static open(syscalls: Syscalls, address: string): SysfsEdu {
    const directory = `/sys/bus/pci/devices/${address}`;
    const resource = syscalls.open(`${directory}/resource0`, SYSCALL_FLAGS.O_RDWR | SYSCALL_FLAGS.O_CLOEXEC);
    if (resource < 0) throw IoasError.fromErrno(-resource, 'open', `opening ${directory}/resource0`);
    const config = syscalls.open(`${directory}/config`, SYSCALL_FLAGS.O_RDWR | SYSCALL_FLAGS.O_CLOEXEC);
    const bar = config < 0 ? BigInt(config) : syscalls.mmap(0x1000n, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED, resource, 0n);
    if (config < 0 || bar < 0n) {
      syscalls.close(resource);
      if (config >= 0) syscalls.close(config);
      throw IoasError.fromErrno(Number(config < 0 ? -config : -bar), config < 0 ? 'open' : 'mmap', `reaching BAR0 of ${address} through sysfs`);
    }
    return new SysfsEdu(syscalls, address, { resource, config, bar });
  }

  /** The identification register: 0x010000ed when BAR0 is really reached. */
  identification(): number {
    return this.engine.identification();
  }

  /** DMA from host memory at `iova` into the device buffer (RAM to device): nothing is written to memory. */
  async readFromHost(iova: bigint, offset: number, length: number): Promise<void> {
    await this.engine.readFromHost(iova, offset, length);
  }

  /** Puts the command register back as it was, unmaps BAR0, closes both files. */
  close(): void {
    const word = new Uint8Array(2);
    new DataView(word.buffer).setUint16(0, this.command, true);
    this.syscalls.pwrite(this.files.config, word, 4n);
    this.syscalls.munmap(this.files.bar, 0x1000n);
    this.syscalls.close(this.files.config);
    this.syscalls.close(this.files.resource);
  }
}

export class EduDriver extends EduEngine {
  /** How the BAR is reached: `mmap` or `pread/pwrite` (when the BAR cannot be mapped). */
  readonly access: 'mmap' | 'pread/pwrite';
  private eventfd: number | undefined;

  constructor(readonly device: VfioDevice) {
    const { registers, access } = barOf(device);
    super(registers);
    this.access = access;
    // DMA and MSI need bus mastering, which vfio-pci leaves off
    // (docs/kernel-rules.md#bus-mastering-is-left-to-the-user).
    device.enableBusMaster();
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

  close(): void {
    this.device.close();
  }
}

/** BAR0 of a VFIO device: mmapped where the region allows it, else through pread/pwrite (the simulator). */
function barOf(device: VfioDevice): { registers: Registers; access: 'mmap' | 'pread/pwrite' } {
  const index = vfioUapi.VFIO_PCI_BAR0_REGION_INDEX;
  const bar = device.region(index);
  if (bar.size < 0x100n) throw new IoasError('wrong-device', `${device.name}: BAR0 is ${bar.size} bytes; is this an edu device?`);
  if ((bar.flags & vfioUapi.VFIO_REGION_INFO_FLAG_MMAP) !== 0 && endianness() === 'LE') {
    try {
      return { registers: mappedRegisters(device.ioctls.syscalls.memory(device.mmap(index), 0x100)), access: 'mmap' };
    } catch {
      // the simulator cannot map a BAR: registers through pread/pwrite
    }
  }
  return {
    registers: {
      read32: (offset) => device.read32(index, BigInt(offset)),
      write32: (offset, value) => device.write32(index, BigInt(offset), value),
      read64: (offset) => device.read64(index, BigInt(offset)),
      write64: (offset, value) => device.write64(index, BigInt(offset), value),
    },
    access: 'pread/pwrite',
  };
}
