import { ERRNO, IoasError, hex, SYSCALL_FLAGS } from '@ioas/core';
import { releaseAll } from './release.js';
import type { DeviceInfo, IrqInfo, RegionInfo, VfioIoctls } from './ioctl.js';
import {
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
} from './uapi/vfio.js';

/**
 * A VFIO device fd (from a group, or a cdev bound to iommufd): info, regions, config space, BAR
 * access, MSI through eventfds, reset.
 */
export class VfioDevice {
  private closed = false;
  private readonly regions = new Map<number, RegionInfo>();
  private eventfds: number[] = [];
  /** IRQ indexes this object enabled (and has not disabled): the kernel refuses to disable any other. */
  private readonly enabledIrqs = new Set<number>();
  /** Regions this object mapped: a mapping holds the device file open, so close() unmaps them. */
  private mapped: { readonly address: bigint; readonly length: bigint; readonly index: number }[] = [];

  constructor(
    /** The ioctls (and syscalls) the device is reached through. */
    readonly ioctls: VfioIoctls,
    /** The device file descriptor. */
    readonly fd: number,
    /** The device's name: its PCI address. */
    readonly name: string,
  ) {}

  /** VFIO_DEVICE_GET_INFO: flags, region and interrupt counts. */
  info(): DeviceInfo {
    return this.ioctls.deviceGetInfo(this.fd);
  }

  /** Region `index` (cached): its flags, size and file offset. */
  region(index: number): RegionInfo {
    let region = this.regions.get(index);
    if (region === undefined) {
      region = this.ioctls.deviceGetRegionInfo(this.fd, index);
      this.regions.set(index, region);
    }
    return region;
  }

  /** Interrupt index `index` (`VFIO_PCI_MSI_IRQ_INDEX`...): flags and vector count. */
  irqInfo(index: number): IrqInfo {
    return this.ioctls.deviceGetIrqInfo(this.fd, index);
  }

  /** Reads `length` bytes at `offset` of a region through pread. */
  read(index: number, offset: bigint, length: number): Uint8Array {
    const region = this.region(index);
    const buffer = new Uint8Array(length);
    const count = this.ioctls.syscalls.pread(this.fd, buffer, region.offset + offset);
    if (count < 0) throw this.ioctls.failure(-count, 'pread', `reading ${length} bytes at ${hex(offset)} of region ${index} of ${this.name}`);
    if (count !== length) throw new IoasError('inconsistent', `short read of region ${index} of ${this.name}: ${count} of ${length} bytes`);
    return buffer;
  }

  /** Writes bytes at `offset` of a region through pwrite. */
  write(index: number, offset: bigint, bytes: Uint8Array): void {
    const region = this.region(index);
    const count = this.ioctls.syscalls.pwrite(this.fd, bytes, region.offset + offset);
    if (count < 0) throw this.ioctls.failure(-count, 'pwrite', `writing ${bytes.length} bytes at ${hex(offset)} of region ${index} of ${this.name}`);
    if (count !== bytes.length) throw new IoasError('inconsistent', `short write to region ${index} of ${this.name}: ${count} of ${bytes.length} bytes`);
  }

  /** 32-bit little-endian register read (PCI registers are little-endian on every CPU). */
  read32(index: number, offset: bigint): number {
    return new DataView(this.read(index, offset, 4).buffer).getUint32(0, true);
  }

  /** 32-bit little-endian register write. */
  write32(index: number, offset: bigint, value: number): void {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value >>> 0, true);
    this.write(index, offset, bytes);
  }

  /** 64-bit little-endian register read. */
  read64(index: number, offset: bigint): bigint {
    return new DataView(this.read(index, offset, 8).buffer).getBigUint64(0, true);
  }

  /** 64-bit little-endian register write. */
  write64(index: number, offset: bigint, value: bigint): void {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setBigUint64(0, value, true);
    this.write(index, offset, bytes);
  }

  /** Reads PCI config space. */
  configRead(offset: number, length: number): Uint8Array {
    return this.read(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), length);
  }

  /** Writes PCI config space. */
  configWrite(offset: number, bytes: Uint8Array): void {
    this.write(VFIO_PCI_CONFIG_REGION_INDEX, BigInt(offset), bytes);
  }

  /**
   * Turns on bus mastering (command register bits 1 and 2: memory space and bus master), which DMA
   * and MSI need and vfio-pci does not do (docs/kernel-rules.md#bus-mastering-is-left-to-the-user).
   */
  enableBusMaster(): void {
    const command = new DataView(this.configRead(4, 2).buffer).getUint16(0, true);
    const bytes = new Uint8Array(2);
    new DataView(bytes.buffer).setUint16(0, command | 0x6, true);
    this.configWrite(4, bytes);
  }

  /** mmaps a region (a BAR with the MMAP flag) and returns its address. */
  mmap(index: number): bigint {
    const region = this.region(index);
    const address = this.ioctls.syscalls.mmap(region.size, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED, this.fd, region.offset);
    if (address < 0n) throw this.ioctls.failure(Number(-address), 'mmap', `mapping region ${index} of ${this.name}`);
    this.mapped.push({ address, length: region.size, index });
    return address;
  }

  /**
   * Enables `vectors` MSI vectors, each signalling a new eventfd; returns the eventfds. Rolls back
   * the eventfds if the kernel refuses. With NORESIZE, a different count needs disable first
   * (docs/kernel-rules.md#setting-irqs). While INTx or another MSI index is on the kernel refuses
   * (EINVAL): one interrupt type at a time.
   *
   * @throws {IoasError} `invalid-argument` when `vectors` is not a whole number from 1 to 2048
   *   (the kernel would answer ERANGE for 0), before any eventfd is made.
   */
  enableMsi(vectors: number, index = VFIO_PCI_MSI_IRQ_INDEX): number[] {
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > 2048) {
      throw new IoasError('invalid-argument', `enableMsi: vectors must be a whole number from 1 to 2048, not ${String(vectors)}`, { operation: 'enableMsi' });
    }
    const syscalls = this.ioctls.syscalls;
    const fds: number[] = [];
    try {
      for (let vector = 0; vector < vectors; vector++) {
        const fd = syscalls.eventfd(0, SYSCALL_FLAGS.EFD_CLOEXEC | SYSCALL_FLAGS.EFD_NONBLOCK);
        if (fd < 0) throw this.ioctls.failure(-fd, 'eventfd', 'creating an MSI eventfd');
        fds.push(fd);
      }
      this.ioctls.deviceSetIrqs(this.fd, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, fds);
    } catch (error) {
      for (const fd of fds) syscalls.close(fd);
      throw error;
    }
    this.eventfds.push(...fds);
    this.enabledIrqs.add(index);
    return fds;
  }

  /**
   * Disables every vector of an IRQ index this object enabled (DATA_NONE | ACTION_TRIGGER with
   * count 0) and closes the eventfds it made. An index it did not enable is left alone: the kernel
   * answers EINVAL to disabling an index that is not the enabled one
   * (drivers/vfio/pci/vfio_pci_intrs.c vfio_pci_set_msi_trigger(); docs/kernel-rules.md#setting-irqs),
   * so there is nothing to ask it. The eventfds are closed either way.
   */
  disableIrqs(index = VFIO_PCI_MSI_IRQ_INDEX): void {
    if (this.enabledIrqs.has(index)) {
      this.ioctls.deviceSetIrqs(this.fd, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, []);
      this.enabledIrqs.delete(index);
    }
    if (this.enabledIrqs.size > 0) return; // the eventfds belong to the index still on
    for (const fd of this.eventfds) this.ioctls.syscalls.close(fd);
    this.eventfds = [];
  }

  /** Reads and clears an eventfd's counter: the number of interrupts since the last read (0 if none). */
  static readEventfd(ioctls: VfioIoctls, fd: number): bigint {
    const buffer = new Uint8Array(8);
    const count = ioctls.syscalls.read(fd, buffer);
    if (count === -ERRNO.EAGAIN) return 0n;
    if (count < 0) throw ioctls.failure(-count, 'read', 'reading an eventfd');
    return new DataView(buffer.buffer).getBigUint64(0, ioctls.little);
  }

  /** VFIO_DEVICE_RESET, when the device advertises it. */
  reset(): void {
    if ((this.info().flags & VFIO_DEVICE_FLAGS_RESET) === 0) throw new IoasError('unsupported', `${this.name} does not support VFIO_DEVICE_RESET`);
    this.ioctls.deviceReset(this.fd);
  }

  /** True once {@link close} has run. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Unmaps the regions {@link mmap} mapped, then closes the device fd and its eventfds. Safe to call
   * twice. A mapped region holds the device file open after its fd is closed (mmap takes a
   * reference to the file), which keeps the device, and so its group, busy: the group's next open
   * fails with EBUSY until the process exits. Everything is released even when one step fails; what
   * failed is thrown once, after the rest ({@link releaseAll}). Views of a mapped region must not
   * be used after this.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const eventfds = this.eventfds;
    const mapped = this.mapped;
    this.eventfds = [];
    this.mapped = [];
    const syscalls = this.ioctls.syscalls;
    releaseAll(
      [
        ...mapped.map((region) => () => {
          const result = syscalls.munmap(region.address, region.length);
          if (result < 0) throw this.ioctls.failure(-result, 'munmap', `unmapping region ${region.index} of ${this.name}`);
        }),
        ...eventfds.map((fd) => () => this.ioctls.closeFile(fd, `closing an MSI eventfd of ${this.name}`)),
        () => this.ioctls.closeFile(this.fd, `closing the device fd of ${this.name}`),
      ],
      `closing ${this.name}`,
      this.ioctls.backend ?? 'vfio',
    );
  }
}
