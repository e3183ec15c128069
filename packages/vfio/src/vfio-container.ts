import { ERRNO } from '@ioas/core';
import type { DirtyBitmapTarget, VfioIoctls } from './ioctl.js';
import { parseType1Info, type Type1Info } from './type1-info.js';
import { VFIO_API_VERSION, VFIO_DMA_UNMAP_FLAG_ALL, VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP } from './uapi/vfio.js';

/** A VFIO container: `/dev/vfio/vfio`, holding groups and one IOMMU context. */
export class VfioContainer {
  private closed = false;

  private constructor(
    /** The ioctls the container is reached through. */
    readonly ioctls: VfioIoctls,
    /** The `/dev/vfio/vfio` file descriptor. */
    readonly fd: number,
  ) {}

  /** Opens a new, empty container and checks the API version (docs/kernel-rules.md#the-type1-call-order, step 1). */
  static open(ioctls: VfioIoctls, path = '/dev/vfio/vfio'): VfioContainer {
    const fd = ioctls.openFile(path, `opening ${path}`);
    const container = new VfioContainer(ioctls, fd);
    try {
      const version = ioctls.getApiVersion(fd);
      if (version !== VFIO_API_VERSION) throw ioctls.failure(ERRNO.EINVAL, 'VFIO_GET_API_VERSION', `VFIO API version ${version} is not ${VFIO_API_VERSION}`);
    } catch (error) {
      try {
        container.close();
      } catch {
        // The version check's failure is the one to report; the fd is released either way.
      }
      throw error;
    }
    return container;
  }

  /** VFIO_CHECK_EXTENSION: whether the kernel offers this IOMMU type or extension. */
  checkExtension(extension: number): boolean {
    return this.ioctls.checkExtension(this.fd, extension);
  }

  /** VFIO_SET_IOMMU: selects the IOMMU backend (needs a group in the container). */
  setIommu(type: number): void {
    this.ioctls.setIommu(this.fd, type);
  }

  /** IOMMU info with its capabilities parsed; read it again after every group attach or detach. */
  info(): Type1Info {
    return parseType1Info(this.ioctls.iommuGetInfo(this.fd), this.ioctls.little);
  }

  /** VFIO_IOMMU_MAP_DMA: maps `size` bytes of process memory at `vaddr` to `iova` with `VFIO_DMA_MAP_FLAG_*` rights. */
  mapDma(vaddr: bigint, iova: bigint, size: bigint, flags: number): void {
    this.ioctls.iommuMapDma(this.fd, vaddr, iova, size, flags);
  }

  /** Returns the bytes the kernel reports unmapped. */
  unmapDma(iova: bigint, size: bigint): bigint {
    return this.ioctls.iommuUnmapDma(this.fd, iova, size, 0);
  }

  /** Unmaps everything (needs CHECK_EXTENSION(VFIO_UNMAP_ALL)); returns the bytes unmapped. */
  unmapAll(): bigint {
    return this.ioctls.iommuUnmapDma(this.fd, 0n, 0n, VFIO_DMA_UNMAP_FLAG_ALL);
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES START: logs the pages devices may write from now on (a bitmap per
   * mapping; all or nothing in the kernel, vfio_dma_bitmap_alloc_all()). Again while on: nothing.
   */
  startDirtyLogging(): void {
    this.ioctls.iommuDirtyPages(this.fd, VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  }

  /** VFIO_IOMMU_DIRTY_PAGES STOP: frees the logs. Again while off: nothing. */
  stopDirtyLogging(): void {
    this.ioctls.iommuDirtyPages(this.fd, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES GET_BITMAP: the dirty bits of `[iova, iova + size)` at `pageSize` (the
   * smallest IO page size only) into `bitmap`, cleared as read. The range must not cut a mapping.
   */
  dirtyBitmap(iova: bigint, size: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget): void {
    this.ioctls.iommuDirtyPagesGetBitmap(this.fd, iova, size, pageSize, bitmap);
  }

  /** VFIO_IOMMU_UNMAP_DMA with the dirty bitmap of what it unmaps (logging on); returns the bytes unmapped. */
  unmapDmaDirty(iova: bigint, size: bigint, pageSize: bigint, bitmap: DirtyBitmapTarget): bigint {
    return this.ioctls.iommuUnmapDmaDirty(this.fd, iova, size, pageSize, bitmap);
  }

  /** Closes the container; the kernel drops every mapping. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ioctls.closeFile(this.fd, 'closing the VFIO container (/dev/vfio/vfio)');
  }
}
