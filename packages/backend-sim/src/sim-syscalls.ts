/**
 * The simulator's syscall face: a fake `/dev/vfio/vfio`, `/dev/vfio/N`, `/dev/vfio/devices/vfioX`,
 * `/dev/iommu`, eventfds and the sysfs tree, behind the core `Syscalls` interface. It decodes the
 * real ioctl numbers and struct layouts and answers with the kernel's return values and errnos, so
 * that the koffi backends can run unchanged on it. Layouts and numbers are written here from the
 * kernel's UAPI headers and the SDK's (docs/kernel-rules.md#ioctl-encoding), independently of
 * @ioas/vfio's uapi, so that each checks the other.
 *
 * This module is the process: its file descriptor table, open/close, eventfds, mmap, the byte-order
 * helpers, and the ioctl dispatch to the subsystems' handlers: sim-container.ts (`/dev/vfio/vfio`,
 * `/dev/vfio/N`), sim-type1.ts (the container's IOMMU driver), sim-device.ts (device fds),
 * sim-iommufd.ts (`/dev/iommu`) and sim-sysfs.ts (the sysfs and `/dev` tree).
 */
import { ERRNO, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { SimIommufdContext } from './iommufd.js';
import { KernelError } from './kernel-error.js';
import type { PlatformName } from './platforms.js';
import { containerIoctl, groupDeviceClosed, groupFileClosed, groupIoctl } from './sim-container.js';
import { deviceClosed, deviceIoctl, eventfdClosed, eventfdWritten, regionAccess } from './sim-device.js';
import { iommufdIoctl } from './sim-iommufd.js';
import * as sysfs from './sim-sysfs.js';
import type { SimDevice, SimGroup, Simulator } from './simulator.js';
import { UserBitmap } from './user-bitmap.js';
import { SimVfioContainer } from './vfio-container.js';

/**
 * A `/dev/vfio/N` file. Each device fd obtained from it holds a reference on it, so its release
 * waits for the last of them (docs/kernel-rules.md#detaching-a-group). A group has one such file at
 * a time, so its `openDevices` counts the device fds from this one.
 */
export interface GroupFile {
  kind: 'group';
  group: SimGroup;
  container: SimVfioContainer | undefined;
  /** The group fd was closed; the file is released when the group's `openDevices` reaches 0. */
  closed: boolean;
}

/** An eventfd's file: what the kernel's eventfd_ctx is, held by vfio while registered (the fd may be closed). */
export interface EventfdFile {
  kind: 'eventfd';
  count: bigint;
  nonblocking: boolean;
  /**
   * The INTx unmask virqfd waiting on this eventfd (vfio_virqfd_enable() adds it to the eventfd's
   * wait queue): what runs when the eventfd is signalled or written (drivers/vfio/virqfd.c virqfd_wakeup()).
   */
  virqfd?: (() => void) | undefined;
}

/** A device fd: from a group fd (`group`) or a device cdev (`cdev`: the iommufd it is bound to, and its id there). */
export interface DeviceFile {
  kind: 'device';
  device: SimDevice;
  group: GroupFile | undefined;
  cdev: { iommufd: SimIommufdContext | undefined; id: number } | undefined;
}

/** An open file of the process. */
export type File = { kind: 'container'; container: SimVfioContainer } | GroupFile | DeviceFile | { kind: 'iommufd'; context: SimIommufdContext } | EventfdFile;

/** The simulator's syscall face: `Syscalls` plus what leak checks need. */
export interface SimSyscalls extends Syscalls {
  /** File descriptors this process has open. */
  readonly openFiles: number;
  /** The simulated machine's preset (what a trace recorded on this face names, so a replay picks it). */
  readonly platform: PlatformName;
}

/** Options of {@link simSyscalls}. */
export interface SimSyscallsOptions {
  /** Struct byte order; default: big-endian on the PowerPC P4080, little-endian elsewhere. */
  readonly littleEndian?: boolean;
}

/**
 * The syscall face of a simulated machine. One instance is one process: its own file descriptor
 * table (containers, iommufd contexts, eventfds) over the shared machine. Several over one
 * simulator see one machine, as processes on Linux do: a driver_override or a driver binding one
 * writes, a group one holds open (EBUSY for the others), a device's open count and registers.
 */
export function simSyscalls(simulator: Simulator, options: SimSyscallsOptions = {}): SimSyscalls {
  return new SimProcess(simulator, options);
}

/**
 * One simulated process: its file descriptor table over the shared machine. The ioctl handlers of
 * the sim-*.ts modules take it as their context (its fds, its byte order). Everything that Linux
 * keeps per machine (drivers and driver_override, group and device opens, vfio-pci's device state,
 * the devices' registers) lives on the {@link Simulator}, so that processes made by
 * {@link simSyscalls} over one simulator see one machine.
 *
 * @internal
 */
export class SimProcess implements Syscalls {
  readonly name = 'sim';
  readonly files = new Map<number, File>();
  private nextFd = 3;
  readonly powerpc: boolean;
  /** Struct byte order. */
  readonly little: boolean;
  constructor(
    readonly simulator: Simulator,
    options: SimSyscallsOptions,
  ) {
    this.powerpc = simulator.platform.name === 'p4080';
    this.little = options.littleEndian ?? !this.powerpc;
  }

  get openFiles(): number {
    return this.files.size;
  }

  get platform(): PlatformName {
    return this.simulator.platform.name;
  }

  // --- files -----------------------------------------------------------------------------------

  open(path: string, flags: number): number {
    void flags;
    const vfioGroup = /^\/dev\/vfio\/(\d+)$/.exec(path);
    if (path === '/dev/vfio/vfio') return this.install({ kind: 'container', container: new SimVfioContainer(this.simulator) });
    if (vfioGroup !== null) {
      const group = this.simulator.group(Number(vfioGroup[1]));
      if (group === undefined || !group.devices.some((device) => device.driver === 'vfio-pci')) return -ERRNO.ENOENT;
      // 6.1 allows one open of a group at a time; iommufd binding also excludes it
      // (docs/kernel-rules.md#one-open-of-a-group-at-a-time).
      if (group.opened || group.cdevBound) return -ERRNO.EBUSY;
      group.opened = true;
      return this.install({ kind: 'group', group, container: undefined, closed: false });
    }
    if (path === '/dev/iommu') return this.install({ kind: 'iommufd', context: new SimIommufdContext(this.simulator) });
    const cdev = /^\/dev\/vfio\/devices\/vfio(\d+)$/.exec(path);
    if (cdev !== null) {
      const device = sysfs.vfioDevices(this.simulator)[Number(cdev[1])];
      if (device === undefined) return -ERRNO.ENOENT;
      return this.install({ kind: 'device', device, group: undefined, cdev: { iommufd: undefined, id: 0 } });
    }
    return -ERRNO.ENOENT;
  }

  /**
   * close(2): -EBADF for an fd that is not open; otherwise the file is released, which cannot fail
   * (a release is no ioctl: no injected ioctl fault applies). An injected `close` fault is answered
   * after the release, as Linux frees the descriptor even when close() reports an error.
   */
  close(fd: number): number {
    const file = this.files.get(fd);
    if (file === undefined) return -ERRNO.EBADF;
    this.files.delete(fd);
    this.release(file);
    try {
      this.simulator.checkInjected('close');
    } catch (error) {
      if (error instanceof KernelError) return -error.errno;
      throw error;
    }
    return 0;
  }

  private release(file: File): void {
    switch (file.kind) {
      case 'container':
        // The groups in the container keep it alive (docs/kernel-rules.md#closing-the-container-fd).
        file.container.closeFile();
        break;
      case 'group':
        groupFileClosed(file);
        break;
      case 'device':
        if (file.group !== undefined) groupDeviceClosed(file.group, file.device);
        if (file.cdev?.iommufd !== undefined) file.cdev.iommufd.unbind(file.cdev.id);
        deviceClosed(file.device);
        break;
      case 'iommufd':
        file.context.releaseFile();
        break;
      case 'eventfd':
        eventfdClosed(this.simulator, file);
        break;
    }
  }

  eventfd(initialValue: number, flags: number): number {
    return this.install({ kind: 'eventfd', count: BigInt(initialValue), nonblocking: (flags & SYSCALL_FLAGS.EFD_NONBLOCK) !== 0 });
  }

  read(fd: number, buffer: Uint8Array): number {
    const file = this.files.get(fd);
    if (file === undefined) return -ERRNO.EBADF;
    if (file.kind !== 'eventfd' || buffer.byteLength < 8) return -ERRNO.EINVAL;
    // A blocking read of an empty eventfd would sleep; the simulator cannot, so it answers EAGAIN.
    if (file.count === 0n) return -ERRNO.EAGAIN;
    this.view(buffer).setBigUint64(0, file.count, this.little);
    file.count = 0n;
    return 8;
  }

  write(fd: number, buffer: Uint8Array): number {
    const file = this.files.get(fd);
    if (file === undefined) return -ERRNO.EBADF;
    if (file.kind !== 'eventfd' || buffer.byteLength < 8) return -ERRNO.EINVAL;
    file.count += this.view(buffer).getBigUint64(0, this.little);
    eventfdWritten(file);
    return 8;
  }

  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    void prot;
    if (length <= 0n) return -BigInt(ERRNO.EINVAL);
    if (fd >= 0) {
      // Device BAR mmaps: MMIO cannot be modelled through a plain memory view (the device would not
      // see the accesses), so the simulator refuses; use pread/pwrite on the region instead.
      const file = this.files.get(fd);
      void offset;
      return -BigInt(file === undefined ? ERRNO.EBADF : ERRNO.ENODEV);
    }
    if ((flags & SYSCALL_FLAGS.MAP_ANONYMOUS) === 0) return -BigInt(ERRNO.EINVAL);
    let pageSize = 0x1000n;
    if ((flags & SYSCALL_FLAGS.MAP_HUGETLB) !== 0) {
      const shift = (flags >>> SYSCALL_FLAGS.MAP_HUGE_SHIFT) & 0x3f;
      pageSize = 1n << BigInt(shift === 0 ? 21 : shift);
      if (length % pageSize !== 0n) return -BigInt(ERRNO.EINVAL);
    }
    return this.simulator.memory.allocate(length, pageSize, true).address;
  }

  munmap(address: bigint, length: bigint): number {
    void length;
    return this.simulator.memory.free(address) ? 0 : -ERRNO.EINVAL;
  }

  memory(address: bigint, length: number): Uint8Array {
    return this.simulator.memory.view(address, length);
  }

  addressOf(buffer: Uint8Array): bigint {
    return this.simulator.memory.register(buffer);
  }

  pread(fd: number, buffer: Uint8Array, offset: bigint): number {
    return regionAccess(this, fd, buffer, offset, false);
  }

  pwrite(fd: number, buffer: Uint8Array, offset: bigint): number {
    return regionAccess(this, fd, buffer, offset, true);
  }

  // --- ioctl ------------------------------------------------------------------------------------

  ioctl(fd: number, request: number, argument: number | Uint8Array): number {
    const file = this.files.get(fd);
    if (file === undefined) return -ERRNO.EBADF;
    const base = (request >>> 0) & ~(this.powerpc ? 0x2000_0000 : 0);
    if ((this.powerpc && ((request >>> 0) & 0x2000_0000) === 0) || (base & 0xff00) !== 0x3b00 || (base & ~0xffff) !== 0) {
      // No VFIO request: the container forwards what it does not know to its IOMMU driver, which
      // answers ENOTTY, and with none set it answers EINVAL itself (6.1 drivers/vfio/container.c
      // vfio_fops_unl_ioctl(): `ret = -EINVAL`; docs/kernel-rules.md#container-ioctls-before-the-iommu-is-set).
      if (file.kind === 'container' && file.container.iommuType === null) return -ERRNO.EINVAL;
      return -ERRNO.ENOTTY;
    }
    // `base` is the request as the uapi headers define it (_IO(';', nr)): what the handlers' tables hold.
    try {
      switch (file.kind) {
        case 'container':
          return containerIoctl(this, file.container, base, argument);
        case 'group':
          return groupIoctl(this, file, base, argument);
        case 'device':
          return deviceIoctl(this, file, base, argument);
        case 'iommufd':
          return iommufdIoctl(this, file.context, base, argument);
        default:
          return -ERRNO.ENOTTY;
      }
    } catch (error) {
      if (error instanceof KernelError) return -error.errno;
      // A struct field read past the caller's buffer: the kernel's copy_from_user would fault.
      if (error instanceof RangeError && /outside the bounds of the DataView/.test(error.message)) return -ERRNO.EFAULT;
      throw error;
    }
  }

  // --- sysfs (sim-sysfs.ts) ---------------------------------------------------------------------

  readFile(path: string): string {
    return sysfs.readFile(this.simulator, path);
  }

  writeFile(path: string, data: string): void {
    sysfs.writeFile(this.simulator, path, data);
  }

  readLink(path: string): string {
    return sysfs.readLink(this.simulator, path);
  }

  readDir(path: string): string[] {
    return sysfs.readDir(this.simulator, path);
  }

  exists(path: string): boolean {
    return sysfs.exists(this.simulator, path);
  }

  // --- helpers for the handlers -----------------------------------------------------------------

  /** Installs `file` at the next free fd. */
  install(file: File): number {
    const fd = this.nextFd++;
    this.files.set(fd, file);
    if (file.kind === 'device') file.device.openCount++;
    return fd;
  }

  bytes(argument: number | Uint8Array): Uint8Array {
    if (typeof argument === 'number') throw new KernelError(ERRNO.EFAULT, 'ioctl', 'a pointer argument was passed as an integer');
    return argument;
  }

  view(buffer: Uint8Array): DataView {
    return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  /** The struct, after the argsz (or size) check every VFIO ioctl makes: argsz < minsz is EINVAL. */
  argView(buffer: Uint8Array, minimum: number): DataView {
    const view = this.view(buffer);
    if (buffer.byteLength < 4) throw new KernelError(ERRNO.EFAULT, 'ioctl', 'argument shorter than its argsz field');
    if (view.getUint32(0, this.little) < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'ioctl', `argsz below ${minimum}`);
    return view;
  }

  /** {@link argView}'s checks, without building a view. */
  argCheck(buffer: Uint8Array, minimum: number): void {
    if (buffer.byteLength < 4) throw new KernelError(ERRNO.EFAULT, 'ioctl', 'argument shorter than its argsz field');
    if (this.u32(buffer, 0) < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'ioctl', `argsz below ${minimum}`);
  }

  /** The u32 at `at`, in the process's byte order. */
  u32(buffer: Uint8Array, at: number): number {
    return this.little
      ? (buffer[at]! | (buffer[at + 1]! << 8) | (buffer[at + 2]! << 16) | (buffer[at + 3]! << 24)) >>> 0
      : ((buffer[at]! << 24) | (buffer[at + 1]! << 16) | (buffer[at + 2]! << 8) | buffer[at + 3]!) >>> 0;
  }

  /** The u64 at `at` as a number when it is below 2^53 (exact), else -1. */
  u64Number(buffer: Uint8Array, at: number): number {
    const high = this.u32(buffer, this.little ? at + 4 : at);
    if (high >= 0x20_0000) return -1;
    return high * 0x1_0000_0000 + this.u32(buffer, this.little ? at : at + 4);
  }

  /** Writes a u64 given as an integer below 2^53. */
  setU64Number(buffer: Uint8Array, at: number, value: number): void {
    const low = value % 0x1_0000_0000;
    const high = (value - low) / 0x1_0000_0000;
    this.setU32(buffer, this.little ? at : at + 4, low);
    this.setU32(buffer, this.little ? at + 4 : at, high);
  }

  setU32(buffer: Uint8Array, at: number, value: number): void {
    if (this.little) {
      buffer[at] = value;
      buffer[at + 1] = value >>> 8;
      buffer[at + 2] = value >>> 16;
      buffer[at + 3] = value >>> 24;
    } else {
      buffer[at] = value >>> 24;
      buffer[at + 1] = value >>> 16;
      buffer[at + 2] = value >>> 8;
      buffer[at + 3] = value;
    }
  }

  /** Writes back the bitmaps of sparse memory regions that a dirty ioctl read into a copy. */
  private readonly userBitmapCommits: (() => void)[] = [];

  /**
   * The process memory of a dirty bitmap at `data`: as many of `size` bytes as the region there
   * holds (a word past them is EFAULT). A dense region is written in place; any other is copied
   * and written back when the ioctl returns (whatever it returns: the kernel's copies are done).
   */
  userBitmap(data: bigint, size: bigint, ioctl: string): UserBitmap {
    const memory = this.simulator.memory;
    const region = memory.region(data);
    if (region === undefined) return new UserBitmap(new Uint8Array(0), this.little, ioctl);
    const end = region.address + region.length;
    const available = Number(size < end - data ? size : end - data);
    try {
      return new UserBitmap(memory.view(data, available), this.little, ioctl);
    } catch {
      const copy = memory.read(data, available);
      this.userBitmapCommits.push(() => memory.write(data, copy));
      return new UserBitmap(copy, this.little, ioctl);
    }
  }

  commitUserBitmaps(): void {
    for (const commit of this.userBitmapCommits.splice(0)) commit();
  }
}
