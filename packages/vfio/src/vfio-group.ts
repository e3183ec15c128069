import type { VfioIoctls } from './ioctl.js';
import { VFIO_GROUP_FLAGS_CONTAINER_SET, VFIO_GROUP_FLAGS_VIABLE } from './uapi/vfio.js';
import type { VfioContainer } from './vfio-container.js';

/** A VFIO group: `/dev/vfio/<N>`. */
export class VfioGroup {
  private closed = false;
  private container: VfioContainer | undefined;

  private constructor(
    /** The ioctls the group is reached through. */
    readonly ioctls: VfioIoctls,
    /** The group number. */
    readonly id: number,
    /** The `/dev/vfio/<id>` file descriptor. */
    readonly fd: number,
  ) {}

  /** Opens `/dev/vfio/<id>` (6.1 allows one open at a time: EBUSY otherwise). */
  static open(ioctls: VfioIoctls, id: number, devicePath = `/dev/vfio/${id}`): VfioGroup {
    return new VfioGroup(ioctls, id, ioctls.openFile(devicePath, `opening ${devicePath} (IOMMU group ${id})`));
  }

  /** VFIO_GROUP_GET_STATUS: viable (no member bound to a DMA-owning driver) and container set. */
  status(): {
    /** Every member is unbound or bound to a DMA-safe driver. */
    viable: boolean;
    /** The group is in a container. */
    containerSet: boolean;
  } {
    const flags = this.ioctls.groupGetStatus(this.fd);
    return { viable: (flags & VFIO_GROUP_FLAGS_VIABLE) !== 0, containerSet: (flags & VFIO_GROUP_FLAGS_CONTAINER_SET) !== 0 };
  }

  /**
   * VFIO_GROUP_SET_CONTAINER: puts the group in `container` (EPERM if not viable). Into a container
   * whose IOMMU is set, the group attaches at once, its mappings kept: the kernel refuses a mapping
   * in the group's reserved regions or outside its aperture (EINVAL), and the container's ranges may
   * shrink (read {@link VfioContainer.info} again).
   */
  setContainer(container: VfioContainer): void {
    this.ioctls.groupSetContainer(this.fd, container.fd);
    this.container = container;
  }

  /**
   * VFIO_GROUP_UNSET_CONTAINER: takes the group out of its container, whose mappings stay with the
   * groups left (the last group out takes the IOMMU and every mapping with it). EBUSY while a device
   * fd of the group is open, EINVAL when the group is in no container
   * (docs/kernel-rules.md#detaching-a-group).
   */
  unsetContainer(): void {
    this.ioctls.groupUnsetContainer(this.fd);
    this.container = undefined;
  }

  /** A device fd for a member (`0000:00:03.0`); needs the container set and SET_IOMMU done. */
  deviceFd(name: string): number {
    return this.ioctls.groupGetDeviceFd(this.fd, name);
  }

  /**
   * Closes the group fd; the kernel takes the group out of its container. Safe to call twice: the
   * fd is released at the first call even when close(2) reports an error (then thrown, once).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.container = undefined;
    this.ioctls.closeFile(this.fd, `closing /dev/vfio/${this.id} (IOMMU group ${this.id})`);
  }

  /** True while the group is in a container. */
  get inContainer(): boolean {
    return this.container !== undefined;
  }
}
