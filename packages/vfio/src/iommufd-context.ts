import type { IovaRange } from '@ioas/core';
import type { DirtyBitmapTarget, HwInfo, IovaRanges, VfioIoctls } from './ioctl.js';
import {
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  IOMMU_IOAS_MAP_FIXED_IOVA,
  IOMMU_IOAS_MAP_READABLE,
  IOMMU_IOAS_MAP_WRITEABLE,
} from './uapi/iommufd.js';
import { VfioDevice } from './vfio-device.js';

/** A device bound to iommufd through its cdev. */
export class IommufdDevice extends VfioDevice {
  constructor(
    ioctls: VfioIoctls,
    fd: number,
    name: string,
    /** The device id iommufd gave at bind. */
    readonly deviceId: number,
  ) {
    super(ioctls, fd, name);
  }

  /**
   * Attaches to an IOAS or a HWPT; returns the HWPT id the device is on. Again while attached: an
   * atomic replace (vfio_iommufd_physical_attach_ioas() calls iommufd_device_replace(); 6.6+).
   */
  attach(ptId: number): number {
    return this.ioctls.deviceAttachIommufdPt(this.fd, ptId);
  }

  /**
   * VFIO_DEVICE_DETACH_IOMMUFD_PT: takes the device out of its IOAS (it then blocks all DMA); it
   * stays bound, so {@link attach} may put it back. Closing the fd detaches and unbinds it too.
   */
  detach(): void {
    this.ioctls.deviceDetachIommufdPt(this.fd);
  }
}

/** One `/dev/iommu` file and the IOAS operations on it (docs/kernel-rules.md#iommufd). */
export class IommufdContext {
  private closed = false;

  private constructor(
    /** The ioctls the context is reached through. */
    readonly ioctls: VfioIoctls,
    /** The `/dev/iommu` file descriptor. */
    readonly fd: number,
  ) {}

  /** Opens `/dev/iommu` (Linux 6.2+, CONFIG_IOMMUFD). */
  static open(ioctls: VfioIoctls, path = '/dev/iommu'): IommufdContext {
    return new IommufdContext(ioctls, ioctls.openFile(path, `opening ${path}`));
  }

  /** IOMMU_IOAS_ALLOC: a new, empty IOAS; returns its id. */
  allocateIoas(): number {
    return this.ioctls.ioasAlloc(this.fd);
  }

  /** IOMMU_DESTROY: frees an object (an IOAS or a HWPT with no device attached; EBUSY otherwise). */
  destroy(id: number): void {
    this.ioctls.iommuDestroy(this.fd, id);
  }

  /**
   * IOMMU_IOAS_IOVA_RANGES: the IOAS's usable ranges and the IOVA alignment maps need; query again
   * after every device attach or detach (each device's reserved regions and aperture count).
   */
  iovaRanges(ioasId: number): IovaRanges {
    return this.ioctls.ioasIovaRanges(this.fd, ioasId);
  }

  /** IOMMU_IOAS_ALLOW_IOVAS: replaces the allow-list (an empty list allows everything). */
  allowIovas(ioasId: number, ranges: readonly IovaRange[]): void {
    this.ioctls.ioasAllowIovas(this.fd, ioasId, ranges);
  }

  /** Maps at a fixed IOVA, or (with `iova` undefined) where the kernel chooses; returns the IOVA. */
  map(ioasId: number, userVa: bigint, length: bigint, iova: bigint | undefined, access: { read: boolean; write: boolean }): bigint {
    const flags = (iova === undefined ? 0 : IOMMU_IOAS_MAP_FIXED_IOVA) | (access.read ? IOMMU_IOAS_MAP_READABLE : 0) | (access.write ? IOMMU_IOAS_MAP_WRITEABLE : 0);
    return this.ioctls.ioasMap(this.fd, ioasId, flags, userVa, length, iova ?? 0n);
  }

  /** Returns the bytes unmapped. */
  unmap(ioasId: number, iova: bigint, length: bigint): bigint {
    return this.ioctls.ioasUnmap(this.fd, ioasId, iova, length);
  }

  /** Copies mappings from one IOAS to another without pinning again; returns the destination IOVA. */
  copy(destinationIoas: number, sourceIoas: number, length: bigint, sourceIova: bigint, destinationIova: bigint | undefined, access: { read: boolean; write: boolean }): bigint {
    const flags = (destinationIova === undefined ? 0 : IOMMU_IOAS_MAP_FIXED_IOVA) | (access.read ? IOMMU_IOAS_MAP_READABLE : 0) | (access.write ? IOMMU_IOAS_MAP_WRITEABLE : 0);
    return this.ioctls.ioasCopy(this.fd, flags, destinationIoas, sourceIoas, length, destinationIova ?? 0n, sourceIova);
  }

  /** IOMMU_GET_HW_INFO: what a bound device's IOMMU is and can do (`IOMMU_HW_CAP_*`). */
  hwInfo(deviceId: number): HwInfo {
    return this.ioctls.iommuGetHwInfo(this.fd, deviceId);
  }

  /**
   * IOMMU_HWPT_ALLOC: a HWPT on IOAS `ioasId` holding its mappings, for `deviceId`'s IOMMU; with
   * `dirtyTracking`, one that can track dirty pages (EOPNOTSUPP when that device's IOMMU cannot).
   * Devices move onto it with {@link IommufdDevice.attach}; {@link destroy} frees it once none is.
   */
  allocateHwpt(deviceId: number, ioasId: number, options: { readonly dirtyTracking?: boolean } = {}): number {
    return this.ioctls.hwptAlloc(this.fd, options.dirtyTracking === true ? IOMMU_HWPT_ALLOC_DIRTY_TRACKING : 0, deviceId, ioasId);
  }

  /** IOMMU_HWPT_SET_DIRTY_TRACKING: on (the kernel clears stale dirty bits first) or off. */
  setDirtyTracking(hwptId: number, enable: boolean): void {
    this.ioctls.hwptSetDirtyTracking(this.fd, hwptId, enable);
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP: sets the bits of the dirty pages of `[iova, iova + length)` in
   * `bitmap`, clearing them unless `clear` is false. The range must be mapped without a hole
   * (iopt_area_contig_done(), EINVAL otherwise) and aligned to `pageSize` and the IOAS's alignment.
   */
  dirtyBitmap(hwptId: number, iova: bigint, length: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget, clear = true): void {
    this.ioctls.hwptGetDirtyBitmap(this.fd, hwptId, clear ? 0 : IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, iova, length, pageSize, bitmap);
  }

  /** Opens a device cdev (`/dev/vfio/devices/vfioN`) and binds it to this iommufd. */
  bindDevice(cdevPath: string, name: string): IommufdDevice {
    const fd = this.ioctls.openFile(cdevPath, `opening ${cdevPath} (${name})`);
    try {
      return new IommufdDevice(this.ioctls, fd, name, this.ioctls.deviceBindIommufd(fd, this.fd));
    } catch (error) {
      try {
        this.ioctls.closeFile(fd, `closing ${cdevPath} (${name})`);
      } catch {
        // The bind's failure is the one to report; the fd is released either way.
      }
      throw error;
    }
  }

  /** Closes `/dev/iommu`: every IOAS and its mappings go. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ioctls.closeFile(this.fd, 'closing /dev/iommu');
  }
}
