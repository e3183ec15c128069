/**
 * A syscall face that fails one chosen call, for fault sweeps: every syscall of a multi-step
 * operation fails in turn, and the test checks that the error is typed and nothing changed.
 */
import { ERRNO, errnoName, type Syscalls } from '@ioas/core';
import type { SimSyscalls } from './sim-syscalls.js';

/** Names of the ioctls by `nr` (the low byte; VFIO and iommufd share type ';'), for the report. */
export const IOCTL_NAMES: Record<number, string> = {
  100: 'VFIO_GET_API_VERSION',
  101: 'VFIO_CHECK_EXTENSION',
  102: 'VFIO_SET_IOMMU',
  103: 'VFIO_GROUP_GET_STATUS',
  104: 'VFIO_GROUP_SET_CONTAINER',
  105: 'VFIO_GROUP_UNSET_CONTAINER',
  106: 'VFIO_GROUP_GET_DEVICE_FD',
  107: 'VFIO_DEVICE_GET_INFO',
  109: 'VFIO_DEVICE_GET_IRQ_INFO',
  110: 'VFIO_DEVICE_SET_IRQS',
  112: 'VFIO_IOMMU_GET_INFO',
  113: 'VFIO_IOMMU_MAP_DMA',
  114: 'VFIO_IOMMU_UNMAP_DMA',
  118: 'VFIO_DEVICE_BIND_IOMMUFD',
  119: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT',
  120: 'VFIO_DEVICE_DETACH_IOMMUFD_PT',
  0x80: 'IOMMU_DESTROY',
  0x81: 'IOMMU_IOAS_ALLOC',
  0x82: 'IOMMU_IOAS_ALLOW_IOVAS',
  0x83: 'IOMMU_IOAS_COPY',
  0x84: 'IOMMU_IOAS_IOVA_RANGES',
  0x85: 'IOMMU_IOAS_MAP',
  0x86: 'IOMMU_IOAS_UNMAP',
  0x87: 'IOMMU_OPTION',
};

/** An error as Node's fs throws it, for the file-system calls. */
function fsError(errno: number, path: string): Error {
  return Object.assign(new Error(`${errnoName(errno)}: injected failure, ${path}`), { code: errnoName(errno), errno: -errno, path });
}

/**
 * The simulator's syscall face with one injected failure: the `failAt`-th call (counted over every
 * syscall: open, close, ioctl, mmap, munmap, pread, pwrite, eventfd, read, write and the sysfs
 * reads and writes) answers `-errno` (or throws, for the file system calls, as Node's fs does).
 * A failing close(2) still releases the fd, as Linux does (only EBADF leaves nothing released).
 * `exists` is a query that cannot fail, and `memory`/`addressOf` are not system calls.
 */
export class FaultySyscalls implements Syscalls {
  readonly name = 'sim-faulty';
  calls = 0;
  /** What each call was, while `recording`. */
  readonly log: string[] = [];
  recording = false;
  /** The call that failed, once it has. */
  failed: string | undefined;
  private failAt = 0;
  private errno: number = ERRNO.EIO;

  constructor(readonly inner: SimSyscalls) {}

  /** Fails the `k`-th call from now (1-based) with `errno`. */
  arm(k: number, errno: number): void {
    this.failAt = this.calls + k;
    this.errno = errno;
    this.failed = undefined;
  }

  disarm(): void {
    this.failAt = 0;
  }

  private fails(label: string): boolean {
    this.calls++;
    if (this.recording) this.log.push(label);
    if (this.calls !== this.failAt) return false;
    this.failed = label;
    return true;
  }

  open(path: string, flags: number): number {
    return this.fails(`open ${path}`) ? -this.errno : this.inner.open(path, flags);
  }
  close(fd: number): number {
    if (!this.fails('close')) return this.inner.close(fd);
    this.inner.close(fd);
    return -this.errno;
  }
  ioctl(fd: number, request: number, argument: number | Uint8Array): number {
    return this.fails(`ioctl ${IOCTL_NAMES[request & 0xff] ?? `nr ${request & 0xff}`}`) ? -this.errno : this.inner.ioctl(fd, request, argument);
  }
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
    return this.fails('mmap') ? -BigInt(this.errno) : this.inner.mmap(length, prot, flags, fd, offset);
  }
  munmap(address: bigint, length: bigint): number {
    return this.fails('munmap') ? -this.errno : this.inner.munmap(address, length);
  }
  memory(address: bigint, length: number): Uint8Array {
    return this.inner.memory(address, length);
  }
  addressOf(buffer: Uint8Array): bigint {
    return this.inner.addressOf(buffer);
  }
  pread(fd: number, buffer: Uint8Array, offset: bigint): number {
    return this.fails('pread') ? -this.errno : this.inner.pread(fd, buffer, offset);
  }
  pwrite(fd: number, buffer: Uint8Array, offset: bigint): number {
    return this.fails('pwrite') ? -this.errno : this.inner.pwrite(fd, buffer, offset);
  }
  eventfd(initialValue: number, flags: number): number {
    return this.fails('eventfd') ? -this.errno : this.inner.eventfd(initialValue, flags);
  }
  read(fd: number, buffer: Uint8Array): number {
    return this.fails('read') ? -this.errno : this.inner.read(fd, buffer);
  }
  write(fd: number, buffer: Uint8Array): number {
    return this.fails('write') ? -this.errno : this.inner.write(fd, buffer);
  }
  readFile(path: string): string {
    if (this.fails(`read ${path}`)) throw fsError(this.errno, path);
    return this.inner.readFile(path);
  }
  writeFile(path: string, data: string): void {
    if (this.fails(`write ${path}`)) throw fsError(this.errno, path);
    this.inner.writeFile(path, data);
  }
  readLink(path: string): string {
    if (this.fails(`readlink ${path}`)) throw fsError(this.errno, path);
    return this.inner.readLink(path);
  }
  readDir(path: string): string[] {
    if (this.fails(`readdir ${path}`)) throw fsError(this.errno, path);
    return this.inner.readDir(path);
  }
  exists(path: string): boolean {
    return this.inner.exists(path);
  }
}
