/**
 * One function per ioctl: each encodes its struct with a DataView (host byte order unless told
 * otherwise), calls the injected `Syscalls`, and turns a negative return into an `IoasError` naming
 * the ioctl and the errno. The map and unmap paths reuse preallocated buffers (the hot path: see
 * docs/kernel-rules.md#calling-ioctl-from-node).
 */
import { endianness } from 'node:os';
import { ERRNO, IoasError, hex, SYSCALL_FLAGS, type IovaRange, type Syscalls } from '@ioas/core';
import { errnoOf } from './release.js';
import {
  IOMMU_HWPT_DATA_NONE,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMUFD_NR,
  iommu_destroy,
  iommu_hw_info,
  iommu_hwpt_alloc,
  iommu_hwpt_get_dirty_bitmap,
  iommu_hwpt_set_dirty_tracking,
  iommu_ioas_alloc,
  iommu_ioas_allow_iovas,
  iommu_ioas_copy,
  iommu_ioas_iova_ranges,
  iommu_ioas_map,
  iommu_ioas_unmap,
  iommu_iova_range,
  iommu_option,
} from './uapi/iommufd.js';
import { hostIoctlArch, ioctlNumber, type IoctlArch } from './uapi/ioctl-number.js';
import {
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_NR,
  vfio_bitmap,
  vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
  vfio_device_detach_iommufd_pt,
  vfio_device_info,
  vfio_group_status,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_info,
  vfio_irq_info,
  vfio_irq_set,
  vfio_region_info,
} from './uapi/vfio.js';

/** How to talk to the kernel: the syscalls, the ioctl encoding and the struct byte order. */
export interface IoctlOptions {
  /** The system calls: libc, or the simulator's syscall face. */
  readonly syscalls: Syscalls;
  /** Default: this process's architecture. */
  readonly arch?: IoctlArch;
  /** Default: this host's byte order. PAMU boards are big-endian. */
  readonly littleEndian?: boolean;
  /** Backend name for errors. */
  readonly backend?: string;
  /**
   * Request numbers to use instead of the ones computed from `arch`: an ABI profile that names its
   * own values (the PAMU SDK kernels' profiles do) passes them here.
   */
  readonly numbers?: Partial<Record<VfioIoctlName, number>>;
}

/** The name of an ioctl this class can call, as in the kernel headers. */
export type VfioIoctlName = keyof typeof VFIO_NR | keyof typeof IOMMUFD_NR;

/** What VFIO_DEVICE_GET_INFO says of a device. */
export interface DeviceInfo {
  /** `VFIO_DEVICE_FLAGS_*`: RESET, PCI, CAPS... */
  readonly flags: number;
  /** Regions (vfio-pci: 9, BAR0-5, ROM, config space, VGA). */
  readonly numRegions: number;
  /** Interrupt indexes (vfio-pci: 5, INTx, MSI, MSI-X, ERR, REQ). */
  readonly numIrqs: number;
}

/** What VFIO_DEVICE_GET_REGION_INFO says of a region. */
export interface RegionInfo {
  /** The region index asked about. */
  readonly index: number;
  /** `VFIO_REGION_INFO_FLAG_*`: READ, WRITE, MMAP, CAPS. */
  readonly flags: number;
  /** Bytes (0 for a BAR the device does not have). */
  readonly size: bigint;
  /** File offset on the device fd; opaque (vfio-pci happens to use index << 40). */
  readonly offset: bigint;
}

/** What VFIO_DEVICE_GET_IRQ_INFO says of an interrupt index. */
export interface IrqInfo {
  /** `VFIO_IRQ_INFO_*`: EVENTFD, MASKABLE, AUTOMASKED, NORESIZE. */
  readonly flags: number;
  /** Vectors available at this index. */
  readonly count: number;
}

/** An IOAS's usable IOVA ranges and the alignment its maps need (IOMMU_IOAS_IOVA_RANGES). */
export interface IovaRanges {
  /** The usable ranges, in order. */
  readonly ranges: IovaRange[];
  /** `out_iova_alignment`: every IOVA and length must be a multiple of it. */
  readonly alignment: bigint;
}

/** What IOMMU_GET_HW_INFO says of a bound device's IOMMU. */
export interface HwInfo {
  /** `out_data_type`: `IOMMU_HW_INFO_TYPE_*` (0 when the driver reports no hardware info). */
  readonly dataType: number;
  /** `out_capabilities`: `IOMMU_HW_CAP_*` bits (0 before 6.7, which had no such field). */
  readonly capabilities: bigint;
  /** `out_max_pasid_log2`: PASID width, 0 without PASID (0 before 6.11). */
  readonly maxPasidLog2: number;
}

/**
 * A dirty bitmap for the kernel to fill: `bytes` zeroed, at least `ceil(pages / 64) * 8` long, one
 * bit per page of `pageSize` from the range's start (bit n of the little-endian u64 word n / 64).
 */
export interface DirtyBitmapTarget {
  /** The bytes the kernel writes (their address goes into the struct through `Syscalls.addressOf`). */
  readonly bytes: Uint8Array;
  /** Byte offset into `bytes` where the range's first bit is (a multiple of 8). */
  readonly offset?: number;
  /** Bytes the bitmap of this range takes (`vfio_bitmap.size` on type1). */
  readonly length: number;
}

/** A struct buffer with its DataView. */
export interface IoctlStruct {
  /** The struct's bytes, passed to the ioctl. */
  readonly bytes: Uint8Array;
  /** A view for reading and writing its fields. */
  readonly view: DataView;
}

function struct(size: number): IoctlStruct {
  const bytes = new Uint8Array(size);
  return { bytes, view: new DataView(bytes.buffer) };
}

/** The ioctls of VFIO (container, group, device, type1), the VFIO cdev, and iommufd. */
export class VfioIoctls {
  /** The system calls every ioctl goes through. */
  readonly syscalls: Syscalls;
  /** Struct byte order: true for little-endian. */
  readonly little: boolean;
  /** The request-number encoding. */
  readonly arch: IoctlArch;
  /** The backend its errors name (`smmu`, `pamu`), when one was given. */
  readonly backend: string | undefined;
  private readonly numbers: Record<VfioIoctlName, number>;
  private readonly mapBuffer = struct(vfio_iommu_type1_dma_map.sizeof);
  private readonly unmapBuffer = struct(vfio_iommu_type1_dma_unmap.sizeof);
  private readonly ioasMapBuffer = struct(iommu_ioas_map.sizeof);
  private readonly ioasUnmapBuffer = struct(iommu_ioas_unmap.sizeof);

  constructor(options: IoctlOptions) {
    this.syscalls = options.syscalls;
    this.arch = options.arch ?? hostIoctlArch();
    this.little = options.littleEndian ?? endianness() === 'LE';
    this.backend = options.backend;
    const numbers: Record<string, number> = {};
    for (const [name, nr] of Object.entries({ ...VFIO_NR, ...IOMMUFD_NR })) numbers[name] = ioctlNumber(nr, this.arch);
    for (const [name, value] of Object.entries(options.numbers ?? {})) if (value !== undefined) numbers[name] = value >>> 0;
    this.numbers = numbers as VfioIoctls['numbers'];
    this.mapBuffer.view.setUint32(0, vfio_iommu_type1_dma_map.sizeof, this.little);
    this.unmapBuffer.view.setUint32(0, vfio_iommu_type1_dma_unmap.sizeof, this.little);
    this.ioasMapBuffer.view.setUint32(0, iommu_ioas_map.sizeof, this.little);
    this.ioasUnmapBuffer.view.setUint32(0, iommu_ioas_unmap.sizeof, this.little);
  }

  /** The request number of an ioctl in this encoding. */
  number(name: VfioIoctlName): number {
    return this.numbers[name];
  }

  /** Calls an ioctl; throws an IoasError naming it when the kernel answers -errno. */
  call(name: VfioIoctlName, fd: number, argument: number | Uint8Array, what: string): number {
    return this.request(this.numbers[name], name, fd, argument, what);
  }

  /**
   * Calls an ioctl by request number, for one this class has no name for (a vendor's, such as the
   * PAMU SDK kernels' `VFIO_IOMMU_PAMU_*`); throws an IoasError naming `name` when the kernel
   * answers -errno.
   */
  request(request: number, name: string, fd: number, argument: number | Uint8Array, what: string): number {
    const status = this.syscalls.ioctl(fd, request, argument);
    if (status < 0) throw this.failure(-status, name, what);
    return status;
  }

  /** The `kernel` IoasError for `errno` from `ioctl`, saying what was being done. */
  failure(errno: number, ioctl: string, what: string): IoasError {
    return IoasError.fromErrno(errno, ioctl, what, this.backend === undefined ? {} : { backend: this.backend });
  }

  /** Opens a device file read-write and close-on-exec; throws an IoasError naming `what` on failure. */
  openFile(path: string, what: string): number {
    const fd = this.syscalls.open(path, SYSCALL_FLAGS.O_RDWR | SYSCALL_FLAGS.O_CLOEXEC);
    if (fd < 0) throw this.failure(-fd, 'open', what);
    return fd;
  }

  /**
   * Closes a file descriptor; throws a `kernel` IoasError naming `what` when close(2) answers
   * -errno. Linux releases the descriptor even then (only EBADF means it was not open), so callers
   * treat the fd as gone either way. A `Syscalls` whose close throws is answered the same way.
   */
  closeFile(fd: number, what: string): void {
    let status: number;
    try {
      status = this.syscalls.close(fd);
    } catch (error) {
      if (IoasError.isInstance(error)) throw error;
      throw IoasError.fromErrno(errnoOf(error), 'close', what, { ...(this.backend === undefined ? {} : { backend: this.backend }), cause: error });
    }
    if (status < 0) throw this.failure(-status, 'close', what);
  }

  /** A zeroed struct of `size` bytes with its `argsz`/`size` field set. */
  struct(size: number): IoctlStruct {
    const value = struct(size);
    value.view.setUint32(0, size, this.little);
    return value;
  }

  // --- container ---------------------------------------------------------------------------------

  /** VFIO_GET_API_VERSION: 0 (VFIO_API_VERSION) on every kernel so far. */
  getApiVersion(container: number): number {
    return this.call('VFIO_GET_API_VERSION', container, 0, 'reading the VFIO API version');
  }

  /** VFIO_CHECK_EXTENSION: whether an IOMMU type or extension is offered (before SET_IOMMU: by any backend). */
  checkExtension(container: number, extension: number): boolean {
    return this.call('VFIO_CHECK_EXTENSION', container, extension, `checking VFIO extension ${extension}`) > 0;
  }

  /** VFIO_SET_IOMMU: selects the IOMMU backend; needs a group in the container first (EINVAL otherwise). */
  setIommu(container: number, type: number): void {
    this.call('VFIO_SET_IOMMU', container, type, `setting IOMMU type ${type}`);
  }

  /** VFIO_IOMMU_GET_INFO with the argsz growth protocol: returns the whole buffer, caps included. */
  iommuGetInfo(container: number): DataView {
    const first = this.struct(vfio_iommu_type1_info.sizeof);
    this.call('VFIO_IOMMU_GET_INFO', container, first.bytes, 'reading IOMMU info');
    const needed = first.view.getUint32(vfio_iommu_type1_info.argsz, this.little);
    if (needed <= vfio_iommu_type1_info.sizeof) return first.view;
    // The kernel rewrote argsz to what the caps need and returned 0: ask again with that much.
    const second = this.struct(needed);
    this.call('VFIO_IOMMU_GET_INFO', container, second.bytes, 'reading IOMMU info with capabilities');
    return second.view;
  }

  /** VFIO_IOMMU_MAP_DMA (hot path: one preallocated buffer). */
  iommuMapDma(container: number, vaddr: bigint, iova: bigint, size: bigint, flags: number): void {
    const { bytes, view } = this.mapBuffer;
    const little = this.little;
    view.setUint32(vfio_iommu_type1_dma_map.flags, flags, little);
    view.setBigUint64(vfio_iommu_type1_dma_map.vaddr, vaddr, little);
    view.setBigUint64(vfio_iommu_type1_dma_map.iova, iova, little);
    view.setBigUint64(vfio_iommu_type1_dma_map.size, size, little);
    const status = this.syscalls.ioctl(container, this.numbers.VFIO_IOMMU_MAP_DMA, bytes);
    if (status < 0) throw this.failure(-status, 'VFIO_IOMMU_MAP_DMA', `mapping ${hex(size)} bytes at IOVA ${hex(iova)}`);
  }

  /** VFIO_IOMMU_UNMAP_DMA: returns the `size` the kernel wrote back (bytes unmapped). */
  iommuUnmapDma(container: number, iova: bigint, size: bigint, flags: number): bigint {
    const { bytes, view } = this.unmapBuffer;
    const little = this.little;
    view.setUint32(vfio_iommu_type1_dma_unmap.flags, flags, little);
    view.setBigUint64(vfio_iommu_type1_dma_unmap.iova, iova, little);
    view.setBigUint64(vfio_iommu_type1_dma_unmap.size, size, little);
    const status = this.syscalls.ioctl(container, this.numbers.VFIO_IOMMU_UNMAP_DMA, bytes);
    if (status < 0) throw this.failure(-status, 'VFIO_IOMMU_UNMAP_DMA', `unmapping ${hex(size)} bytes at IOVA ${hex(iova)}`);
    return view.getBigUint64(vfio_iommu_type1_dma_unmap.size, little);
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: unmaps and writes the dirty
   * bits of what it unmapped into `bitmap` (pages of `pageSize`, the container's smallest IO page,
   * from `iova`); returns the bytes unmapped. Needs dirty logging started (EINVAL otherwise).
   */
  iommuUnmapDmaDirty(container: number, iova: bigint, size: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget): bigint {
    const unmap = this.struct(vfio_iommu_type1_dma_unmap.sizeof + vfio_bitmap.sizeof);
    const { view } = unmap;
    const little = this.little;
    view.setUint32(vfio_iommu_type1_dma_unmap.flags, VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, little);
    view.setBigUint64(vfio_iommu_type1_dma_unmap.iova, iova, little);
    view.setBigUint64(vfio_iommu_type1_dma_unmap.size, size, little);
    this.encodeBitmap(view, vfio_iommu_type1_dma_unmap.data, pageSize, bitmap);
    this.call('VFIO_IOMMU_UNMAP_DMA', container, unmap.bytes, `unmapping ${hex(size)} bytes at IOVA ${hex(iova)} with their dirty bitmap`);
    return view.getBigUint64(vfio_iommu_type1_dma_unmap.size, little);
  }

  /** VFIO_IOMMU_DIRTY_PAGES with START or STOP (one flag: the kernel refuses two). */
  iommuDirtyPages(container: number, flag: number): void {
    const dirty = this.struct(vfio_iommu_type1_dirty_bitmap.sizeof);
    dirty.view.setUint32(vfio_iommu_type1_dirty_bitmap.flags, flag, this.little);
    this.call('VFIO_IOMMU_DIRTY_PAGES', container, dirty.bytes, flag === VFIO_IOMMU_DIRTY_PAGES_FLAG_START ? 'starting dirty-page logging' : 'stopping dirty-page logging');
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES with GET_BITMAP: writes the dirty bits of `[iova, iova + size)` into
   * `bitmap` and clears them. argsz counts the `_get` struct, not the bitmap (vfio.h).
   */
  iommuDirtyPagesGetBitmap(container: number, iova: bigint, size: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget): void {
    const header = vfio_iommu_type1_dirty_bitmap.sizeof;
    const dirty = this.struct(header + vfio_iommu_type1_dirty_bitmap_get.sizeof);
    const { view } = dirty;
    const little = this.little;
    view.setUint32(vfio_iommu_type1_dirty_bitmap.flags, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP, little);
    view.setBigUint64(header + vfio_iommu_type1_dirty_bitmap_get.iova, iova, little);
    view.setBigUint64(header + vfio_iommu_type1_dirty_bitmap_get.size, size, little);
    this.encodeBitmap(view, header + vfio_iommu_type1_dirty_bitmap_get.bitmap, pageSize, bitmap);
    this.call('VFIO_IOMMU_DIRTY_PAGES', container, dirty.bytes, `reading the dirty bitmap of ${hex(size)} bytes at IOVA ${hex(iova)}`);
  }

  /** Fills a `struct vfio_bitmap` at `at`. */
  private encodeBitmap(view: DataView, at: number, pageSize: bigint, bitmap: DirtyBitmapTarget): void {
    view.setBigUint64(at + vfio_bitmap.pgsize, pageSize, this.little);
    view.setBigUint64(at + vfio_bitmap.size, BigInt(bitmap.length), this.little);
    view.setBigUint64(at + vfio_bitmap.data, this.bitmapAddress(bitmap), this.little);
  }

  /** The user address of a bitmap target's first byte. */
  private bitmapAddress(bitmap: DirtyBitmapTarget): bigint {
    const offset = bitmap.offset ?? 0;
    if (offset % 8 !== 0 || offset + bitmap.length > bitmap.bytes.byteLength) {
      throw new IoasError('invalid-argument', `a dirty bitmap of ${bitmap.length} bytes at offset ${offset} does not fit its ${bitmap.bytes.byteLength}-byte buffer at a u64 boundary`);
    }
    return this.syscalls.addressOf(bitmap.bytes) + BigInt(offset);
  }

  // --- group -------------------------------------------------------------------------------------

  /** VFIO_GROUP_GET_STATUS: the `VFIO_GROUP_FLAGS_*` bits (VIABLE, CONTAINER_SET). */
  groupGetStatus(group: number): number {
    const status = this.struct(vfio_group_status.sizeof);
    this.call('VFIO_GROUP_GET_STATUS', group, status.bytes, 'reading the group status');
    return status.view.getUint32(vfio_group_status.flags, this.little);
  }

  /** VFIO_GROUP_SET_CONTAINER: EPERM for a non-viable group. */
  groupSetContainer(group: number, container: number): void {
    const argument = struct(4);
    argument.view.setInt32(0, container, this.little);
    this.call('VFIO_GROUP_SET_CONTAINER', group, argument.bytes, 'adding the group to the container');
  }

  /** VFIO_GROUP_UNSET_CONTAINER. */
  groupUnsetContainer(group: number): void {
    this.call('VFIO_GROUP_UNSET_CONTAINER', group, 0, 'removing the group from its container');
  }

  /** VFIO_GROUP_GET_DEVICE_FD: a device fd by name (`0000:00:03.0`); needs SET_IOMMU done. */
  groupGetDeviceFd(group: number, name: string): number {
    return this.call('VFIO_GROUP_GET_DEVICE_FD', group, new TextEncoder().encode(`${name}\0`), `opening device ${name}`);
  }

  // --- device ------------------------------------------------------------------------------------

  /** VFIO_DEVICE_GET_INFO. */
  deviceGetInfo(device: number): DeviceInfo {
    const info = this.struct(vfio_device_info.sizeof);
    this.call('VFIO_DEVICE_GET_INFO', device, info.bytes, 'reading device info');
    const { view } = info;
    return {
      flags: view.getUint32(vfio_device_info.flags, this.little),
      numRegions: view.getUint32(vfio_device_info.num_regions, this.little),
      numIrqs: view.getUint32(vfio_device_info.num_irqs, this.little),
    };
  }

  /** VFIO_DEVICE_GET_REGION_INFO for region `index`. */
  deviceGetRegionInfo(device: number, index: number): RegionInfo {
    const info = this.struct(vfio_region_info.sizeof);
    info.view.setUint32(vfio_region_info.index, index, this.little);
    this.call('VFIO_DEVICE_GET_REGION_INFO', device, info.bytes, `reading region ${index}`);
    const { view } = info;
    return {
      index,
      flags: view.getUint32(vfio_region_info.flags, this.little),
      size: view.getBigUint64(vfio_region_info.size, this.little),
      offset: view.getBigUint64(vfio_region_info.offset, this.little),
    };
  }

  /** VFIO_DEVICE_GET_IRQ_INFO for interrupt index `index`. */
  deviceGetIrqInfo(device: number, index: number): IrqInfo {
    const info = this.struct(vfio_irq_info.sizeof);
    info.view.setUint32(vfio_irq_info.index, index, this.little);
    this.call('VFIO_DEVICE_GET_IRQ_INFO', device, info.bytes, `reading IRQ info ${index}`);
    return { flags: info.view.getUint32(vfio_irq_info.flags, this.little), count: info.view.getUint32(vfio_irq_info.count, this.little) };
  }

  /** VFIO_DEVICE_SET_IRQS with eventfds (`-1` de-assigns a vector), or with no data (`fds` empty). */
  deviceSetIrqs(device: number, flags: number, index: number, start: number, fds: readonly number[]): void {
    const set = this.struct(vfio_irq_set.sizeof + fds.length * 4);
    const { view } = set;
    view.setUint32(vfio_irq_set.flags, flags, this.little);
    view.setUint32(vfio_irq_set.index, index, this.little);
    view.setUint32(vfio_irq_set.start, start, this.little);
    view.setUint32(vfio_irq_set.count, fds.length, this.little);
    fds.forEach((fd, position) => view.setInt32(vfio_irq_set.data + position * 4, fd, this.little));
    this.call('VFIO_DEVICE_SET_IRQS', device, set.bytes, `setting IRQs of index ${index}`);
  }

  /** VFIO_DEVICE_RESET. */
  deviceReset(device: number): void {
    this.call('VFIO_DEVICE_RESET', device, 0, 'resetting the device');
  }

  /** VFIO_DEVICE_BIND_IOMMUFD (6.6+): binds a cdev to an iommufd; returns the device id. */
  deviceBindIommufd(device: number, iommufd: number): number {
    const bind = this.struct(vfio_device_bind_iommufd.sizeof);
    bind.view.setInt32(vfio_device_bind_iommufd.iommufd, iommufd, this.little);
    this.call('VFIO_DEVICE_BIND_IOMMUFD', device, bind.bytes, 'binding the device to iommufd');
    return bind.view.getUint32(vfio_device_bind_iommufd.out_devid, this.little);
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT: attaches a bound device to an IOAS (or hw page table); returns the id attached. */
  deviceAttachIommufdPt(device: number, ptId: number): number {
    const attach = this.struct(vfio_device_attach_iommufd_pt.sizeof);
    attach.view.setUint32(vfio_device_attach_iommufd_pt.pt_id, ptId, this.little);
    this.call('VFIO_DEVICE_ATTACH_IOMMUFD_PT', device, attach.bytes, `attaching the device to IOAS ${ptId}`);
    return attach.view.getUint32(vfio_device_attach_iommufd_pt.pt_id, this.little);
  }

  /** VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  deviceDetachIommufdPt(device: number): void {
    this.call('VFIO_DEVICE_DETACH_IOMMUFD_PT', device, this.struct(vfio_device_detach_iommufd_pt.sizeof).bytes, 'detaching the device');
  }

  // --- iommufd -----------------------------------------------------------------------------------

  /** IOMMU_DESTROY: frees an iommufd object (an IOAS, a HWPT); EBUSY while it is in use. */
  iommuDestroy(iommufd: number, id: number): void {
    const destroy = this.struct(iommu_destroy.sizeof);
    destroy.view.setUint32(iommu_destroy.id, id, this.little);
    this.call('IOMMU_DESTROY', iommufd, destroy.bytes, `destroying iommufd object ${id}`);
  }

  /** IOMMU_IOAS_ALLOC: a new, empty IOAS; returns its id. */
  ioasAlloc(iommufd: number): number {
    const alloc = this.struct(iommu_ioas_alloc.sizeof);
    this.call('IOMMU_IOAS_ALLOC', iommufd, alloc.bytes, 'allocating an IOAS');
    return alloc.view.getUint32(iommu_ioas_alloc.out_ioas_id, this.little);
  }

  /** IOMMU_IOAS_IOVA_RANGES with the EMSGSIZE two-step: ask, then ask again with room for every range. */
  ioasIovaRanges(iommufd: number, ioasId: number): IovaRanges {
    let slots = 4;
    for (;;) {
      const query = this.struct(iommu_ioas_iova_ranges.sizeof);
      const ranges = new Uint8Array(slots * iommu_iova_range.sizeof);
      const { view } = query;
      view.setUint32(iommu_ioas_iova_ranges.ioas_id, ioasId, this.little);
      view.setUint32(iommu_ioas_iova_ranges.num_iovas, slots, this.little);
      view.setBigUint64(iommu_ioas_iova_ranges.allowed_iovas, this.syscalls.addressOf(ranges), this.little);
      const status = this.syscalls.ioctl(iommufd, this.numbers.IOMMU_IOAS_IOVA_RANGES, query.bytes);
      const total = view.getUint32(iommu_ioas_iova_ranges.num_iovas, this.little);
      if (status === -ERRNO.EMSGSIZE && total > slots) {
        slots = total;
        continue;
      }
      if (status < 0) throw this.failure(-status, 'IOMMU_IOAS_IOVA_RANGES', 'reading the IOAS IOVA ranges');
      const rangeView = new DataView(ranges.buffer);
      const result: IovaRange[] = [];
      for (let index = 0; index < total; index++) {
        result.push({
          start: rangeView.getBigUint64(index * iommu_iova_range.sizeof + iommu_iova_range.start, this.little),
          last: rangeView.getBigUint64(index * iommu_iova_range.sizeof + iommu_iova_range.last, this.little),
        });
      }
      return { ranges: result, alignment: view.getBigUint64(iommu_ioas_iova_ranges.out_iova_alignment, this.little) };
    }
  }

  /** IOMMU_IOAS_ALLOW_IOVAS: replaces the IOAS's allow-list (maps outside it then fail); an empty list allows everything. */
  ioasAllowIovas(iommufd: number, ioasId: number, ranges: readonly IovaRange[]): void {
    const allow = this.struct(iommu_ioas_allow_iovas.sizeof);
    const list = new Uint8Array(Math.max(ranges.length, 1) * iommu_iova_range.sizeof);
    const listView = new DataView(list.buffer);
    ranges.forEach((range, index) => {
      listView.setBigUint64(index * 16 + iommu_iova_range.start, range.start, this.little);
      listView.setBigUint64(index * 16 + iommu_iova_range.last, range.last, this.little);
    });
    const { view } = allow;
    view.setUint32(iommu_ioas_allow_iovas.ioas_id, ioasId, this.little);
    view.setUint32(iommu_ioas_allow_iovas.num_iovas, ranges.length, this.little);
    view.setBigUint64(iommu_ioas_allow_iovas.allowed_iovas, this.syscalls.addressOf(list), this.little);
    this.call('IOMMU_IOAS_ALLOW_IOVAS', iommufd, allow.bytes, 'setting the allowed IOVA ranges');
  }

  /** IOMMU_IOAS_MAP (hot path): returns the IOVA (chosen by the kernel without FIXED_IOVA). */
  ioasMap(iommufd: number, ioasId: number, flags: number, userVa: bigint, length: bigint, iova: bigint): bigint {
    const { bytes, view } = this.ioasMapBuffer;
    const little = this.little;
    view.setUint32(iommu_ioas_map.flags, flags, little);
    view.setUint32(iommu_ioas_map.ioas_id, ioasId, little);
    view.setBigUint64(iommu_ioas_map.user_va, userVa, little);
    view.setBigUint64(iommu_ioas_map.length, length, little);
    view.setBigUint64(iommu_ioas_map.iova, iova, little);
    const status = this.syscalls.ioctl(iommufd, this.numbers.IOMMU_IOAS_MAP, bytes);
    if (status < 0) throw this.failure(-status, 'IOMMU_IOAS_MAP', `mapping ${hex(length)} bytes at IOVA ${hex(iova)}`);
    return view.getBigUint64(iommu_ioas_map.iova, little);
  }

  /** IOMMU_IOAS_UNMAP (hot path): returns the bytes unmapped. */
  ioasUnmap(iommufd: number, ioasId: number, iova: bigint, length: bigint): bigint {
    const { bytes, view } = this.ioasUnmapBuffer;
    const little = this.little;
    view.setUint32(iommu_ioas_unmap.ioas_id, ioasId, little);
    view.setBigUint64(iommu_ioas_unmap.iova, iova, little);
    view.setBigUint64(iommu_ioas_unmap.length, length, little);
    const status = this.syscalls.ioctl(iommufd, this.numbers.IOMMU_IOAS_UNMAP, bytes);
    if (status < 0) throw this.failure(-status, 'IOMMU_IOAS_UNMAP', `unmapping ${hex(length)} bytes at IOVA ${hex(iova)}`);
    return view.getBigUint64(iommu_ioas_unmap.length, little);
  }

  /** IOMMU_IOAS_COPY: returns the destination IOVA. */
  ioasCopy(iommufd: number, flags: number, destinationIoas: number, sourceIoas: number, length: bigint, destinationIova: bigint, sourceIova: bigint): bigint {
    const copy = this.struct(iommu_ioas_copy.sizeof);
    const { view } = copy;
    view.setUint32(iommu_ioas_copy.flags, flags, this.little);
    view.setUint32(iommu_ioas_copy.dst_ioas_id, destinationIoas, this.little);
    view.setUint32(iommu_ioas_copy.src_ioas_id, sourceIoas, this.little);
    view.setBigUint64(iommu_ioas_copy.length, length, this.little);
    view.setBigUint64(iommu_ioas_copy.dst_iova, destinationIova, this.little);
    view.setBigUint64(iommu_ioas_copy.src_iova, sourceIova, this.little);
    this.call('IOMMU_IOAS_COPY', iommufd, copy.bytes, `copying ${hex(length)} bytes of mappings`);
    return view.getBigUint64(iommu_ioas_copy.dst_iova, this.little);
  }

  /** IOMMU_GET_HW_INFO for a bound device (`dev_id` from VFIO_DEVICE_BIND_IOMMUFD), without the driver-specific data. */
  iommuGetHwInfo(iommufd: number, deviceId: number): HwInfo {
    const info = this.struct(iommu_hw_info.sizeof);
    const { view } = info;
    view.setUint32(iommu_hw_info.dev_id, deviceId, this.little);
    // data_len 0 and data_uptr 0: only the generic answer (the kernel allows a zero data_len).
    this.call('IOMMU_GET_HW_INFO', iommufd, info.bytes, `reading the IOMMU hardware info of device ${deviceId}`);
    return {
      dataType: view.getUint32(iommu_hw_info.out_data_type, this.little),
      capabilities: view.getBigUint64(iommu_hw_info.out_capabilities, this.little),
      maxPasidLog2: view.getUint8(iommu_hw_info.out_max_pasid_log2),
    };
  }

  /** IOMMU_HWPT_ALLOC of a kernel-managed (paging) HWPT on `ptId` (an IOAS) for `deviceId`'s IOMMU; returns its id. */
  hwptAlloc(iommufd: number, flags: number, deviceId: number, ptId: number): number {
    const alloc = this.struct(iommu_hwpt_alloc.sizeof);
    const { view } = alloc;
    view.setUint32(iommu_hwpt_alloc.flags, flags, this.little);
    view.setUint32(iommu_hwpt_alloc.dev_id, deviceId, this.little);
    view.setUint32(iommu_hwpt_alloc.pt_id, ptId, this.little);
    view.setUint32(iommu_hwpt_alloc.data_type, IOMMU_HWPT_DATA_NONE, this.little);
    this.call('IOMMU_HWPT_ALLOC', iommufd, alloc.bytes, `allocating a hardware page table on IOAS ${ptId} for device ${deviceId}`);
    return view.getUint32(iommu_hwpt_alloc.out_hwpt_id, this.little);
  }

  /** IOMMU_HWPT_SET_DIRTY_TRACKING: on (clearing the dirty bits first) or off. */
  hwptSetDirtyTracking(iommufd: number, hwptId: number, enable: boolean): void {
    const set = this.struct(iommu_hwpt_set_dirty_tracking.sizeof);
    set.view.setUint32(iommu_hwpt_set_dirty_tracking.flags, enable ? IOMMU_HWPT_DIRTY_TRACKING_ENABLE : 0, this.little);
    set.view.setUint32(iommu_hwpt_set_dirty_tracking.hwpt_id, hwptId, this.little);
    this.call('IOMMU_HWPT_SET_DIRTY_TRACKING', iommufd, set.bytes, `${enable ? 'enabling' : 'disabling'} dirty tracking on HWPT ${hwptId}`);
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: sets the bits of the dirty pages of `[iova, iova + length)` in
   * `bitmap` (it only sets bits: zero it first), clearing them in the IOMMU unless `flags` has
   * IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR.
   */
  hwptGetDirtyBitmap(iommufd: number, hwptId: number, flags: number, iova: bigint, length: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget): void {
    const get = this.struct(iommu_hwpt_get_dirty_bitmap.sizeof);
    const { view } = get;
    const little = this.little;
    view.setUint32(iommu_hwpt_get_dirty_bitmap.hwpt_id, hwptId, little);
    view.setUint32(iommu_hwpt_get_dirty_bitmap.flags, flags, little);
    view.setBigUint64(iommu_hwpt_get_dirty_bitmap.iova, iova, little);
    view.setBigUint64(iommu_hwpt_get_dirty_bitmap.length, length, little);
    view.setBigUint64(iommu_hwpt_get_dirty_bitmap.page_size, pageSize, little);
    view.setBigUint64(iommu_hwpt_get_dirty_bitmap.data, this.bitmapAddress(bitmap), little);
    this.call('IOMMU_HWPT_GET_DIRTY_BITMAP', iommufd, get.bytes, `reading the dirty bitmap of ${hex(length)} bytes at IOVA ${hex(iova)} of HWPT ${hwptId}`);
  }

  /** IOMMU_OPTION: returns `val64` (the value read for GET). */
  iommuOption(iommufd: number, optionId: number, op: number, objectId: number, value: bigint): bigint {
    const option = this.struct(iommu_option.sizeof);
    const { view } = option;
    view.setUint32(iommu_option.option_id, optionId, this.little);
    view.setUint16(iommu_option.op, op, this.little);
    view.setUint32(iommu_option.object_id, objectId, this.little);
    view.setBigUint64(iommu_option.val64, value, this.little);
    this.call('IOMMU_OPTION', iommufd, option.bytes, `option ${optionId}`);
    return view.getBigUint64(iommu_option.val64, this.little);
  }
}
