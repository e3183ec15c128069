/**
 * The simulator's syscall face: a fake `/dev/vfio/vfio`, `/dev/vfio/N`, `/dev/vfio/devices/vfioX`,
 * `/dev/iommu`, eventfds and the sysfs tree, behind the core `Syscalls` interface. It decodes the
 * real ioctl numbers and struct layouts and answers with the kernel's return values and errnos, so
 * that the koffi backends can run unchanged on it. Layouts and numbers are written here from the
 * kernel's UAPI headers and the SDK's (docs/kernel-rules.md#ioctl-encoding), independently of
 * @ioas/vfio's uapi, so that each checks the other.
 */
import { ERRNO, errnoName, SYSCALL_FLAGS, U64_MAX, type IovaRange, type Syscalls } from '@ioas/core';
import { IOAS_MAP_FLAGS, SimIommufdContext } from './iommufd.js';
import { KernelError } from './kernel-error.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import type { PlatformName } from './platforms.js';
import type { SimDevice, SimGroup, Simulator } from './simulator.js';
import { UserBitmap } from './user-bitmap.js';
import { SimVfioContainer } from './vfio-container.js';

/** VFIO `nr` values: 100 + n (docs/kernel-rules.md#ioctl-numbers-and-the-powerpc-direction-bit). */
const VFIO_NR = {
  GET_API_VERSION: 100,
  CHECK_EXTENSION: 101,
  SET_IOMMU: 102,
  GROUP_GET_STATUS: 103,
  GROUP_SET_CONTAINER: 104,
  GROUP_UNSET_CONTAINER: 105,
  GROUP_GET_DEVICE_FD: 106,
  DEVICE_GET_INFO: 107,
  DEVICE_GET_REGION_INFO: 108,
  DEVICE_GET_IRQ_INFO: 109,
  DEVICE_SET_IRQS: 110,
  DEVICE_RESET: 111,
  DEVICE_GET_PCI_HOT_RESET_INFO: 112,
  DEVICE_PCI_HOT_RESET: 113,
  IOMMU_GET_INFO: 112,
  IOMMU_MAP_DMA: 113,
  IOMMU_UNMAP_DMA: 114,
  IOMMU_DIRTY_PAGES: 117,
  PAMU_GET_ATTR: 115,
  PAMU_SET_ATTR: 116,
  PAMU_GET_MSI_BANK_COUNT: 117,
  PAMU_MAP_MSI_BANK: 118,
  PAMU_UNMAP_MSI_BANK: 119,
  DEVICE_BIND_IOMMUFD: 118,
  DEVICE_ATTACH_IOMMUFD_PT: 119,
  DEVICE_DETACH_IOMMUFD_PT: 120,
} as const;

/** iommufd `nr` values (include/uapi/linux/iommufd.h, 6.12). */
const IOMMUFD_NR = {
  DESTROY: 0x80,
  IOAS_ALLOC: 0x81,
  IOAS_ALLOW_IOVAS: 0x82,
  IOAS_COPY: 0x83,
  IOAS_IOVA_RANGES: 0x84,
  IOAS_MAP: 0x85,
  IOAS_UNMAP: 0x86,
  OPTION: 0x87,
  HWPT_ALLOC: 0x89,
  GET_HW_INFO: 0x8a,
  HWPT_SET_DIRTY_TRACKING: 0x8b,
  HWPT_GET_DIRTY_BITMAP: 0x8c,
} as const;

const GROUP_FLAGS = { VIABLE: 0x1, CONTAINER_SET: 0x2 } as const;
const INFO_FLAGS = { PGSIZES: 0x1, CAPS: 0x2 } as const;
const CAP = { IOVA_RANGE: 1, MIGRATION: 2, DMA_AVAIL: 3 } as const;
const MAP_FLAGS = { READ: 0x1, WRITE: 0x2, VADDR: 0x4 } as const;
const UNMAP_FLAGS = { GET_DIRTY_BITMAP: 0x1, ALL: 0x2, VADDR: 0x4 } as const;
const DEVICE_FLAGS = { RESET: 0x1, PCI: 0x2 } as const;
const REGION_FLAGS = { READ: 0x1, WRITE: 0x2, MMAP: 0x4 } as const;
const IRQ_INFO = { EVENTFD: 0x1, MASKABLE: 0x2, AUTOMASKED: 0x4, NORESIZE: 0x8 } as const;
const IRQ_SET = { DATA_NONE: 0x1, DATA_BOOL: 0x2, DATA_EVENTFD: 0x4, ACTION_MASK: 0x8, ACTION_UNMASK: 0x10, ACTION_TRIGGER: 0x20 } as const;
const PCI_REGION = { BAR0: 0, CONFIG: 7, VGA: 8, COUNT: 9 } as const;
const PCI_IRQ = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4, COUNT: 5 } as const;
/**
 * Vectors per IRQ index, as vfio_pci_get_irq_count() counts them for an edu (every simulated PCI
 * device is one): INTx 1 (interrupt pin A), MSI 1 (its MSI capability's one vector), MSI-X 0 (no
 * capability), ERR 0 (not PCIe), REQ 1. An index past the last counts 0.
 */
const IRQ_COUNT = [1, 1, 0, 0, 1] as const;
/** PCI_COMMAND bits the simulator acts on: bus master (DMA, MSI writes) and INTx disable. */
const PCI_COMMAND = { MASTER: 0x4, INTX_DISABLE: 0x400 } as const;
/** vfio-pci places region i at file offset i << 40 (VFIO_PCI_OFFSET_SHIFT); callers treat it as opaque. */
const REGION_SHIFT = 40n;
const EDU_BAR0_SIZE = 0x10_0000n;

/**
 * A `/dev/vfio/N` file. Each device fd obtained from it holds a reference on it, so its release
 * waits for the last of them (docs/kernel-rules.md#detaching-a-group). A group has one such file at
 * a time, so its `openDevices` counts the device fds from this one.
 */
interface GroupFile {
  kind: 'group';
  group: SimGroup;
  container: SimVfioContainer | undefined;
  /** The group fd was closed; the file is released when the group's `openDevices` reaches 0. */
  closed: boolean;
}

/** An eventfd's file: what the kernel's eventfd_ctx is, held by vfio while registered (the fd may be closed). */
interface EventfdFile {
  kind: 'eventfd';
  count: bigint;
  nonblocking: boolean;
}

/**
 * A device's interrupt state in vfio-pci (struct vfio_pci_core_device): which of INTx, MSI or
 * nothing is on (`irq_type`), INTx's trigger, mask and unmask virqfd, MSI's vectors, the REQ
 * trigger and the virtual INTx-disable bit (`virq_disabled`). Triggers are the eventfds themselves,
 * as the kernel holds an eventfd_ctx: closing the fd does not unregister them.
 */
interface DeviceIrqs {
  type: 'none' | 'intx' | 'msi';
  intxTrigger: EventfdFile | undefined;
  intxMasked: boolean;
  /** The INTx unmask eventfd (vfio_virqfd_enable): a write to it unmasks. */
  unmask: EventfdFile | undefined;
  /** One entry per enabled MSI vector: its eventfd, or undefined when de-assigned. */
  msi: (EventfdFile | undefined)[];
  req: EventfdFile | undefined;
  virqDisabled: boolean;
}

type File =
  | { kind: 'container'; container: SimVfioContainer }
  | GroupFile
  | { kind: 'device'; device: SimDevice; group: GroupFile | undefined; cdev: { iommufd: SimIommufdContext | undefined; id: number } | undefined }
  | { kind: 'iommufd'; context: SimIommufdContext }
  | EventfdFile;

/** What each VFIO_DEVICE_SET_IRQS action handler gets. */
interface IrqArgs {
  readonly device: SimDevice;
  readonly state: DeviceIrqs;
  readonly start: number;
  readonly count: number;
  /** The one DATA_ flag. */
  readonly data: number;
  /** The whole argument: the data starts at byte 20. */
  readonly view: DataView;
}

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
 * table over the shared machine.
 */
export function simSyscalls(simulator: Simulator, options: SimSyscallsOptions = {}): SimSyscalls {
  return new SimProcess(simulator, options);
}

/**
 * VFIO_GROUP_GET_DEVICE_FD's name lookup (6.1 drivers/vfio/vfio_main.c vfio_device_get_from_name(),
 * 6.12 drivers/vfio/group.c): the group's vfio devices only (members bound to another driver or
 * none are not on its device_list), each asked by vfio-pci's match (drivers/vfio/pci/vfio_pci_core.c
 * vfio_pci_core_match()): the name must start with the PCI address; anything after it must start
 * with a space (else no match), and past the spaces only one `vf_token=<uuid>` may follow, which a
 * device that is neither an SR-IOV PF nor a VF refuses (vfio_pci_validate_vf_token()); any other
 * word is EINVAL. So trailing spaces match. No device matching is ENODEV
 * (docs/kernel-rules.md#opening-a-device-from-a-group). Returns the device or an errno.
 */
function findDeviceByName(group: SimGroup, name: string): SimDevice | number {
  for (const device of group.devices) {
    if (device.driver !== 'vfio-pci' || !name.startsWith(device.address)) continue;
    const rest = name.slice(device.address.length);
    if (rest.length > 0 && rest[0] !== ' ') continue;
    // A vf_token (well formed or not), a second one, or any other word: EINVAL on an edu.
    // Only ' ' separates (a tab is a word).
    if (/[^ ]/.test(rest)) return ERRNO.EINVAL;
    return device;
  }
  return ERRNO.ENODEV;
}

class SimProcess implements Syscalls {
  readonly name = 'sim';
  private readonly files = new Map<number, File>();
  private nextFd = 3;
  private readonly powerpc: boolean;
  private readonly little: boolean;
  /** PCI config space of each device, as vfio-pci exposes it (256 bytes). */
  private readonly configSpaces = new Map<SimDevice, Uint8Array>();
  /** edu BAR0 registers per device; `intxLine`: edu asserts its INTx pin (raised while MSI is off, until acked). */
  private readonly eduRegisters = new Map<SimDevice, { liveness: number; interruptStatus: number; intxLine: boolean; dmaSource: bigint; dmaDestination: bigint; dmaCount: bigint; dmaCommand: bigint; buffer: Uint8Array }>();
  /** vfio-pci's interrupt state of each device this process has open. */
  private readonly irqs = new Map<SimDevice, DeviceIrqs>();
  /** Device fds open per device: the kernel turns the device off at the last close only. */
  private readonly deviceOpens = new Map<SimDevice, number>();

  constructor(
    private readonly simulator: Simulator,
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
      const device = this.vfioDevices()[Number(cdev[1])];
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
        // Device fds hold a reference on the group file: its release, which takes the group out of
        // its container, waits for the last of them (docs/kernel-rules.md#detaching-a-group).
        file.closed = true;
        if (file.group.openDevices === 0) this.releaseGroup(file);
        break;
      case 'device':
        if (file.group !== undefined) {
          file.group.group.openDevices--;
          if (file.group.closed && file.group.group.openDevices === 0) this.releaseGroup(file.group);
        }
        if (file.cdev?.iommufd !== undefined) file.cdev.iommufd.unbind(file.cdev.id);
        this.deviceClosed(file.device);
        break;
      case 'iommufd':
        file.context.close();
        break;
      case 'eventfd':
        // Closing an INTx unmask eventfd drops its virqfd (EPOLLHUP, drivers/vfio/virqfd.c
        // virqfd_wakeup()); a trigger stays registered, as the kernel holds its eventfd_ctx.
        for (const state of this.irqs.values()) if (state.unmask === file) state.unmask = undefined;
        break;
    }
  }

  /**
   * A device fd's release: only the last close of the device turns it off (6.1 vfio_main.c
   * vfio_device_fops_release(), 6.12 vfio_df_close(): close_device when open_count is 1), which
   * vfio_pci_core_disable() does: bus master cleared, the enabled IRQ type disabled, virq_disabled
   * reset, the ERR and REQ triggers dropped (vfio_pci_core.c).
   */
  private deviceClosed(device: SimDevice): void {
    const opens = (this.deviceOpens.get(device) ?? 1) - 1;
    if (opens > 0) {
      this.deviceOpens.set(device, opens);
      return;
    }
    this.deviceOpens.delete(device);
    const state = this.irqs.get(device);
    if (state !== undefined) {
      if (state.type === 'intx') this.intxDisable(state);
      if (state.type === 'msi') this.msiDisable(device, state);
    }
    this.irqs.delete(device);
    const config = this.configSpaces.get(device);
    if (config !== undefined) {
      config[4]! &= ~PCI_COMMAND.MASTER;
      config[5]! &= ~(PCI_COMMAND.INTX_DISABLE >> 8);
    }
  }

  /**
   * The group file's release, once its fd and every device fd from it are closed: the group leaves
   * its container and `/dev/vfio/N` may be opened again (6.1 drivers/vfio/vfio_main.c, 6.12
   * drivers/vfio/group.c, vfio_group_fops_release()).
   */
  private releaseGroup(file: GroupFile): void {
    if (file.container !== undefined && file.group.owner === file.container) file.container.removeGroup(file.group);
    file.container = undefined;
    file.group.opened = false;
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
    // An INTx unmask eventfd: its virqfd reads the count and unmasks (drivers/vfio/virqfd.c
    // virqfd_wakeup(); the kernel re-signals a still-pending INTx from a workqueue, here at once).
    for (const [device, state] of this.irqs) {
      if (state.unmask === file) {
        file.count = 0n;
        if (this.intxUnmaskHandler(device, state)) this.sendIntx(state);
      }
    }
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
    return this.regionAccess(fd, buffer, offset, false);
  }

  pwrite(fd: number, buffer: Uint8Array, offset: bigint): number {
    return this.regionAccess(fd, buffer, offset, true);
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
    const nr = base & 0xff;
    try {
      switch (file.kind) {
        case 'container':
          return this.containerIoctl(file.container, nr, argument);
        case 'group':
          return this.groupIoctl(file, nr, argument);
        case 'device':
          return this.deviceIoctl(file, nr, argument);
        case 'iommufd':
          return this.iommufdIoctl(file.context, nr, argument);
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

  private containerIoctl(container: SimVfioContainer, nr: number, argument: number | Uint8Array): number {
    if (nr === VFIO_NR.GET_API_VERSION) return 0;
    if (nr === VFIO_NR.CHECK_EXTENSION) return container.checkExtension(Number(argument));
    if (nr === VFIO_NR.SET_IOMMU) {
      container.setIommu(Number(argument));
      return 0;
    }
    // Before SET_IOMMU the container has no backend to forward to: EINVAL
    // (docs/kernel-rules.md#container-ioctls-before-the-iommu-is-set).
    if (container.iommuType === null) return -ERRNO.EINVAL;
    // GET_MSI_BANK_COUNT takes no argument (the value passed is ignored).
    if (container.pamu !== undefined && nr === VFIO_NR.PAMU_GET_MSI_BANK_COUNT) return container.pamu.msiBankCount();
    if (container.pamu === undefined && nr === VFIO_NR.IOMMU_DIRTY_PAGES) return this.type1DirtyPages(container, argument);
    // A request the driver does not know is ENOTTY before its argument is looked at
    // (vfio_iommu_type1_ioctl()'s default).
    const known: readonly number[] =
      container.pamu === undefined
        ? [VFIO_NR.IOMMU_GET_INFO, VFIO_NR.IOMMU_MAP_DMA, VFIO_NR.IOMMU_UNMAP_DMA]
        : [VFIO_NR.IOMMU_MAP_DMA, VFIO_NR.IOMMU_UNMAP_DMA, VFIO_NR.PAMU_GET_ATTR, VFIO_NR.PAMU_SET_ATTR, VFIO_NR.PAMU_MAP_MSI_BANK, VFIO_NR.PAMU_UNMAP_MSI_BANK];
    if (!known.includes(nr)) return -ERRNO.ENOTTY;
    const buffer = this.bytes(argument);
    if (container.pamu !== undefined) return this.pamuIoctl(container, nr, buffer);
    switch (nr) {
      case VFIO_NR.IOMMU_GET_INFO:
        return this.type1Info(container, buffer);
      case VFIO_NR.IOMMU_MAP_DMA: {
        // Decoded from the bytes (no DataView, no bigint while the values are below 2^53): this is
        // the hot path of every map.
        this.argCheck(buffer, 32);
        const flags = this.u32(buffer, 4);
        if ((flags & ~(MAP_FLAGS.READ | MAP_FLAGS.WRITE | MAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
        if ((flags & MAP_FLAGS.VADDR) !== 0) {
          // VADDR alone re-points a mapping whose vaddr was invalidated; with READ/WRITE it is
          // EINVAL (vfio_dma_do_map(): docs/kernel-rules.md#remapping-a-vaddr).
          if ((flags & (MAP_FLAGS.READ | MAP_FLAGS.WRITE)) !== 0) return -ERRNO.EINVAL;
          const view = this.view(buffer);
          container.remapVaddr(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), view.getBigUint64(24, this.little));
          return 0;
        }
        const read = (flags & MAP_FLAGS.READ) !== 0;
        const write = (flags & MAP_FLAGS.WRITE) !== 0;
        const vaddr = this.u64Number(buffer, 8);
        const iova = this.u64Number(buffer, 16);
        const size = this.u64Number(buffer, 24);
        if (vaddr >= 0 && iova >= 0 && size >= 0) {
          container.mapNumbers(vaddr, iova, size, read, write);
        } else {
          const view = this.view(buffer);
          container.map(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), view.getBigUint64(24, this.little), read, write);
        }
        return 0;
      }
      case VFIO_NR.IOMMU_UNMAP_DMA: {
        this.argCheck(buffer, 24);
        const flags = this.u32(buffer, 4);
        if ((flags & ~(UNMAP_FLAGS.GET_DIRTY_BITMAP | UNMAP_FLAGS.ALL | UNMAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
        if ((flags & UNMAP_FLAGS.GET_DIRTY_BITMAP) !== 0) return this.unmapWithDirtyBitmap(container, buffer, flags);
        const all = (flags & UNMAP_FLAGS.ALL) !== 0;
        if ((flags & UNMAP_FLAGS.VADDR) !== 0) {
          // The mappings stay; their vaddrs are invalidated, and `size` says how many bytes
          // (vfio_dma_do_unmap(): docs/kernel-rules.md#invalidating-a-vaddr).
          const view = this.view(buffer);
          view.setBigUint64(16, container.unmap(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), all, undefined, true), this.little);
          return 0;
        }
        const iova = this.u64Number(buffer, 8);
        const size = this.u64Number(buffer, 16);
        // `size` is written back only on success, as the bytes unmapped
        // (docs/kernel-rules.md#unmapped-size-written-back).
        const unmapped = all || iova < 0 || size < 0 ? -1 : container.unmapNumbers(iova, size);
        if (unmapped >= 0) {
          this.setU64Number(buffer, 16, unmapped);
        } else {
          const view = this.view(buffer);
          view.setBigUint64(16, container.unmap(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), all), this.little);
        }
        return 0;
      }
      default:
        return -ERRNO.ENOTTY;
    }
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES: `struct vfio_iommu_type1_dirty_bitmap` { argsz, flags } then, for
   * GET_BITMAP, `struct vfio_iommu_type1_dirty_bitmap_get` { iova, size, struct vfio_bitmap
   * { pgsize, size, data } } at offset 8 (48 bytes in all); the checks are the container's.
   */
  private type1DirtyPages(container: SimVfioContainer, argument: number | Uint8Array): number {
    try {
      container.dirtyPages(
        () => {
          const buffer = this.bytes(argument);
          if (buffer.byteLength < 8) throw new KernelError(ERRNO.EFAULT, 'VFIO_IOMMU_DIRTY_PAGES', 'argument shorter than its header');
          return { argsz: this.u32(buffer, 0), flags: this.u32(buffer, 4) };
        },
        () => {
          const buffer = this.bytes(argument);
          if (buffer.byteLength < 48) throw new KernelError(ERRNO.EFAULT, 'VFIO_IOMMU_DIRTY_PAGES', 'argument shorter than struct vfio_iommu_type1_dirty_bitmap_get');
          const view = this.view(buffer);
          const data = view.getBigUint64(40, this.little);
          const bitmapSize = view.getBigUint64(32, this.little);
          return {
            iova: view.getBigUint64(8, this.little),
            size: view.getBigUint64(16, this.little),
            pgsize: view.getBigUint64(24, this.little),
            bitmapSize,
            data,
            bitmap: () => this.userBitmap(data, bitmapSize, 'VFIO_IOMMU_DIRTY_PAGES'),
          };
        },
      );
      return 0;
    } finally {
      this.commitUserBitmaps();
    }
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: with ALL or VADDR EINVAL, argsz
   * below 24 + 24 EINVAL, then `struct vfio_bitmap` { pgsize, size, data } at offset 24; `size` is
   * written back only on success.
   */
  private unmapWithDirtyBitmap(container: SimVfioContainer, buffer: Uint8Array, flags: number): number {
    if ((flags & (UNMAP_FLAGS.ALL | UNMAP_FLAGS.VADDR)) !== 0) return -ERRNO.EINVAL;
    if (this.u32(buffer, 0) < 48) return -ERRNO.EINVAL;
    if (buffer.byteLength < 48) return -ERRNO.EFAULT;
    const view = this.view(buffer);
    const data = view.getBigUint64(40, this.little);
    const size = view.getBigUint64(32, this.little);
    try {
      const unmapped = container.unmapWithDirtyBitmap(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), {
        pgsize: view.getBigUint64(24, this.little),
        size,
        data,
        bitmap: () => this.userBitmap(data, size, 'VFIO_IOMMU_UNMAP_DMA'),
      });
      view.setBigUint64(16, unmapped, this.little);
      return 0;
    } finally {
      this.commitUserBitmaps();
    }
  }

  /** Writes back the bitmaps of sparse memory regions that a dirty ioctl read into a copy. */
  private readonly userBitmapCommits: (() => void)[] = [];

  /**
   * The process memory of a dirty bitmap at `data`: as many of `size` bytes as the region there
   * holds (a word past them is EFAULT). A dense region is written in place; any other is copied
   * and written back when the ioctl returns (whatever it returns: the kernel's copies are done).
   */
  private userBitmap(data: bigint, size: bigint, ioctl: string): UserBitmap {
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

  private commitUserBitmaps(): void {
    for (const commit of this.userBitmapCommits.splice(0)) commit();
  }

  /**
   * VFIO_IOMMU_GET_INFO (vfio_iommu_type1_get_info(), docs/kernel-rules.md#the-argsz-growth-protocol):
   * the chain is MIGRATION (32 bytes), DMA_AVAIL, IOVA_RANGE (16 + 16n). 6.1's vfio_info_cap_add()
   * packs it (DMA_AVAIL 12 bytes), 6.12's aligns each capability to 8 (DMA_AVAIL 16, zero padded).
   * Too small an argsz gets argsz := the size needed, the header, no caps; 6.1 copies 16 header
   * bytes below argsz 20, else 20 (cap_offset, never the 4 bytes after it), 6.12 `min(argsz, 24)`
   * of a zeroed struct (cap_offset and pad 0). A large enough argsz is left as it is, gets the caps
   * at 24 and cap_offset 24.
   */
  private type1Info(container: SimVfioContainer, buffer: Uint8Array): number {
    const view = this.argView(buffer, 16);
    const argsz = view.getUint32(0, this.little);
    const info = container.info();
    const aligned = this.simulator.kernel !== '6.1';
    const migrationAt = 24;
    const availAt = migrationAt + 32;
    const rangesAt = availAt + (aligned ? 16 : 12);
    const needed = rangesAt + 16 + 16 * info.ranges.length;
    const flags = INFO_FLAGS.PGSIZES | INFO_FLAGS.CAPS;
    const header = aligned ? Math.min(argsz, 24) : argsz >= 20 ? 20 : 16;
    const out = new DataView(new ArrayBuffer(needed));
    out.setUint32(4, flags, this.little);
    out.setBigUint64(8, info.ioPageSizes, this.little);
    if (argsz < needed) {
      // Too small for the caps: argsz says what is needed, cap_offset stays 0, the call succeeds.
      out.setUint32(0, needed, this.little);
      buffer.set(new Uint8Array(out.buffer, 0, Math.min(header, buffer.byteLength)));
      return 0;
    }
    out.setUint32(0, argsz, this.little);
    out.setUint32(16, migrationAt, this.little);
    this.capHeader(out, migrationAt, CAP.MIGRATION, availAt);
    out.setUint32(migrationAt + 8, 0, this.little);
    out.setBigUint64(migrationAt + 16, info.migration.pageSizes, this.little);
    out.setBigUint64(migrationAt + 24, info.migration.maxDirtyBitmapSize, this.little);
    this.capHeader(out, availAt, CAP.DMA_AVAIL, rangesAt);
    out.setUint32(availAt + 8, info.dmaAvailable, this.little);
    this.capHeader(out, rangesAt, CAP.IOVA_RANGE, 0);
    out.setUint32(rangesAt + 8, info.ranges.length, this.little);
    info.ranges.forEach((range, index) => {
      out.setBigUint64(rangesAt + 16 + index * 16, range.start, this.little);
      out.setBigUint64(rangesAt + 24 + index * 16, range.last, this.little);
    });
    const bytes = new Uint8Array(out.buffer);
    buffer.set(bytes.subarray(0, Math.min(header, buffer.byteLength)));
    if (buffer.byteLength > 24) buffer.set(bytes.subarray(24, Math.min(needed, buffer.byteLength)), 24);
    return 0;
  }

  private capHeader(view: DataView, at: number, id: number, next: number): void {
    view.setUint16(at, id, this.little);
    view.setUint16(at + 2, 1, this.little);
    view.setUint32(at + 4, next, this.little);
  }

  /** The PAMU SDK backend's ioctls (docs/kernel-rules.md#pamu-ioctls). */
  private pamuIoctl(container: SimVfioContainer, nr: number, buffer: Uint8Array): number {
    const pamu = container.pamu!;
    switch (nr) {
      case VFIO_NR.IOMMU_MAP_DMA: {
        const view = this.argView(buffer, 32);
        const flags = view.getUint32(4, this.little);
        if ((flags & ~(MAP_FLAGS.READ | MAP_FLAGS.WRITE)) !== 0) return -ERRNO.EINVAL;
        container.map(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), view.getBigUint64(24, this.little), (flags & 1) !== 0, (flags & 2) !== 0);
        return 0;
      }
      case VFIO_NR.IOMMU_UNMAP_DMA: {
        const view = this.argView(buffer, 24);
        if (view.getUint32(4, this.little) !== 0) return -ERRNO.EINVAL;
        // No size feedback: `size` is left as the caller wrote it.
        container.unmap(view.getBigUint64(8, this.little), view.getBigUint64(16, this.little), false);
        return 0;
      }
      case VFIO_NR.PAMU_GET_ATTR: {
        const view = this.argView(buffer, 32);
        const value = pamu.getAttr(view.getUint32(8, this.little));
        if (value !== undefined && 'start' in value) {
          view.setBigUint64(16, value.start, this.little);
          view.setBigUint64(24, value.end, this.little);
        } else if (value !== undefined && 'windows' in value) {
          view.setUint32(16, value.windows, this.little);
        } else if (value !== undefined) {
          view.setUint32(16, value.cpu, this.little);
          view.setUint32(20, value.cache, this.little);
        }
        return 0;
      }
      case VFIO_NR.PAMU_SET_ATTR: {
        const view = this.argView(buffer, 32);
        const attribute = view.getUint32(8, this.little);
        if (attribute === PAMU_ATTRIBUTE.GEOMETRY) pamu.setGeometry(view.getBigUint64(16, this.little), view.getBigUint64(24, this.little));
        else if (attribute === PAMU_ATTRIBUTE.WINDOWS) pamu.setWindows(view.getUint32(16, this.little));
        else if (attribute === PAMU_ATTRIBUTE.PAMU_STASH) pamu.setStash(view.getUint32(16, this.little), view.getUint32(20, this.little));
        return 0; // always, after the argsz check
      }
      case VFIO_NR.PAMU_MAP_MSI_BANK: {
        const view = this.argView(buffer, 24);
        const flags = view.getUint32(4, this.little);
        pamu.mapMsiBank(view.getUint32(8, this.little), view.getBigUint64(16, this.little), (flags & 1) !== 0, (flags & 2) !== 0);
        return 0;
      }
      case VFIO_NR.PAMU_UNMAP_MSI_BANK: {
        const view = this.argView(buffer, 16);
        pamu.unmapMsiBank(view.getBigUint64(8, this.little));
        return 0;
      }
      default:
        return -ERRNO.ENOTTY; // GET_INFO included
    }
  }

  private groupIoctl(file: Extract<File, { kind: 'group' }>, nr: number, argument: number | Uint8Array): number {
    const group = file.group;
    switch (nr) {
      case VFIO_NR.GROUP_GET_STATUS: {
        const view = this.argView(this.bytes(argument), 8);
        const set = group.owner !== undefined;
        view.setUint32(4, (group.viable || set ? GROUP_FLAGS.VIABLE : 0) | (set ? GROUP_FLAGS.CONTAINER_SET : 0), this.little);
        return 0;
      }
      case VFIO_NR.GROUP_SET_CONTAINER: {
        const buffer = this.bytes(argument);
        if (buffer.byteLength < 4) return -ERRNO.EFAULT;
        const target = this.files.get(this.view(buffer).getInt32(0, this.little));
        if (target === undefined) return -ERRNO.EBADF;
        if (target.kind !== 'container') return -ERRNO.EINVAL; // 6.1: only VFIO containers
        target.container.addGroup(group);
        file.container = target.container;
        return 0;
      }
      case VFIO_NR.GROUP_UNSET_CONTAINER: {
        // EINVAL out of a container, EBUSY with a device fd open; the last group out takes the
        // IOMMU and the mappings (docs/kernel-rules.md#detaching-from-a-live-container).
        if (file.container === undefined) {
          this.simulator.checkInjected('VFIO_GROUP_UNSET_CONTAINER');
          return -ERRNO.EINVAL;
        }
        file.container.unsetGroup(group);
        file.container = undefined;
        return 0;
      }
      case VFIO_NR.GROUP_GET_DEVICE_FD: {
        const buffer = this.bytes(argument);
        const end = buffer.indexOf(0);
        // strndup_user(arg, PAGE_SIZE): a name with no NUL in its first 4096 bytes is EINVAL.
        if ((end < 0 ? buffer.byteLength : end) >= 4096) return -ERRNO.EINVAL;
        if (end < 0) return -ERRNO.EFAULT;
        const name = new TextDecoder().decode(buffer.subarray(0, end));
        const found = findDeviceByName(group, name);
        if (typeof found === 'number') return -found;
        const device = found;
        if (file.container === undefined || file.container.iommuType === null) return -ERRNO.EINVAL;
        group.openDevices++;
        return this.install({ kind: 'device', device, group: file, cdev: undefined });
      }
      default:
        return -ERRNO.ENOTTY;
    }
  }

  private deviceIoctl(file: Extract<File, { kind: 'device' }>, nr: number, argument: number | Uint8Array): number {
    const { device, cdev } = file;
    if (cdev !== undefined) {
      if (nr === VFIO_NR.DEVICE_BIND_IOMMUFD) {
        const view = this.argView(this.bytes(argument), 16);
        if (view.getUint32(4, this.little) !== 0 || cdev.iommufd !== undefined) return -ERRNO.EINVAL;
        const fd = view.getInt32(8, this.little);
        if (fd < 0) return -ERRNO.EINVAL;
        const target = this.files.get(fd);
        if (target === undefined) return -ERRNO.EBADF;
        if (target.kind !== 'iommufd') return -ERRNO.EBADFD;
        cdev.id = target.context.bind(device);
        cdev.iommufd = target.context;
        view.setUint32(12, cdev.id, this.little);
        return 0;
      }
      // Before bind every other device ioctl is EINVAL (docs/kernel-rules.md#binding-a-device-cdev).
      if (cdev.iommufd === undefined) return -ERRNO.EINVAL;
      if (nr === VFIO_NR.DEVICE_ATTACH_IOMMUFD_PT) {
        const view = this.argView(this.bytes(argument), 12);
        if (view.getUint32(4, this.little) !== 0) return -ERRNO.EINVAL;
        // The kernel writes back the id of the domain it attached to (docs/kernel-rules.md#attaching-and-detaching-a-device).
        view.setUint32(8, cdev.iommufd.attach(cdev.id, view.getUint32(8, this.little)), this.little);
        return 0;
      }
      if (nr === VFIO_NR.DEVICE_DETACH_IOMMUFD_PT) {
        const view = this.argView(this.bytes(argument), 8);
        if (view.getUint32(4, this.little) !== 0) return -ERRNO.EINVAL;
        cdev.iommufd.detach(cdev.id);
        return 0;
      }
    }
    switch (nr) {
      case VFIO_NR.DEVICE_GET_INFO: {
        // vfio_pci_ioctl_get_info() (drivers/vfio/pci/vfio_pci_core.c): argsz < 16 is EINVAL; the
        // reply is 16 bytes, or 20 (cap_offset 0) when argsz >= 20 on 6.1; min(argsz, 24) on 6.12,
        // whose struct has a zeroed pad after cap_offset. No caps on a conventional PCI device.
        const buffer = this.bytes(argument);
        const view = this.argView(buffer, 16);
        const argsz = view.getUint32(0, this.little);
        const length = this.simulator.kernel === '6.1' ? (argsz >= 20 ? 20 : 16) : Math.min(argsz, 24);
        if (buffer.byteLength < length) return -ERRNO.EFAULT; // copy_to_user past the caller's memory
        const out = new DataView(new ArrayBuffer(24));
        out.setUint32(0, argsz, this.little);
        out.setUint32(4, DEVICE_FLAGS.PCI, this.little);
        out.setUint32(8, PCI_REGION.COUNT, this.little);
        out.setUint32(12, PCI_IRQ.COUNT, this.little);
        buffer.set(new Uint8Array(out.buffer, 0, length));
        return 0;
      }
      case VFIO_NR.DEVICE_GET_REGION_INFO: {
        const view = this.argView(this.bytes(argument), 32);
        const index = view.getUint32(8, this.little);
        // vfio_pci_ioctl_get_region_info(): VGA (index 8) only with has_vga, which an edu (class
        // 0x00ff) has not; past the last region, EINVAL.
        if (index >= PCI_REGION.COUNT || index === PCI_REGION.VGA) return -ERRNO.EINVAL;
        let size = 0n;
        let flags = 0;
        if (index === PCI_REGION.BAR0 && device.edu) {
          size = EDU_BAR0_SIZE;
          flags = REGION_FLAGS.READ | REGION_FLAGS.WRITE | REGION_FLAGS.MMAP;
        } else if (index === PCI_REGION.CONFIG) {
          size = 0x100n;
          flags = REGION_FLAGS.READ | REGION_FLAGS.WRITE;
        }
        // Without caps the kernel never assigns cap_offset: the caller's value goes back as it was.
        view.setUint32(4, flags, this.little);
        view.setBigUint64(16, size, this.little);
        view.setBigUint64(24, BigInt(index) << REGION_SHIFT, this.little);
        return 0;
      }
      case VFIO_NR.DEVICE_GET_IRQ_INFO: {
        const view = this.argView(this.bytes(argument), 16);
        const index = view.getUint32(8, this.little);
        if (index >= PCI_IRQ.COUNT || index === PCI_IRQ.ERR) return -ERRNO.EINVAL; // ERR needs PCIe
        const count = index === PCI_IRQ.MSIX ? 0 : 1;
        const flags = index === PCI_IRQ.INTX ? IRQ_INFO.EVENTFD | IRQ_INFO.MASKABLE | IRQ_INFO.AUTOMASKED : IRQ_INFO.EVENTFD | IRQ_INFO.NORESIZE;
        view.setUint32(4, flags, this.little);
        view.setUint32(12, count, this.little);
        return 0;
      }
      case VFIO_NR.DEVICE_SET_IRQS:
        return this.setIrqs(device, this.bytes(argument));
      case VFIO_NR.DEVICE_RESET:
        return -ERRNO.EINVAL; // edu does not advertise VFIO_DEVICE_FLAGS_RESET
      case VFIO_NR.DEVICE_GET_PCI_HOT_RESET_INFO:
        // vfio_pci_ioctl_get_pci_hot_reset_info(): argsz < 12 is EINVAL; then neither a slot nor a
        // bus reset can be done for an edu on the root bus (no bridge, no hotplug slot): ENODEV.
        this.argView(this.bytes(argument), 12);
        return -ERRNO.ENODEV;
      case VFIO_NR.DEVICE_PCI_HOT_RESET: {
        // vfio_pci_ioctl_pci_hot_reset(): argsz < 12 or flags is EINVAL; 6.12 also refuses a group
        // count on a cdev and none on a group fd (`!!hdr.count == vfio_device_cdev_opened()`); then ENODEV.
        const view = this.argView(this.bytes(argument), 12);
        if (view.getUint32(4, this.little) !== 0) return -ERRNO.EINVAL;
        if (this.simulator.kernel === '6.12' && (view.getUint32(8, this.little) !== 0) === (cdev !== undefined)) return -ERRNO.EINVAL;
        return -ERRNO.ENODEV;
      }
      default:
        return -ERRNO.ENOTTY;
    }
  }

  /**
   * VFIO_DEVICE_SET_IRQS (docs/kernel-rules.md#setting-irqs), in the kernel's order: the header
   * (vfio_main.c vfio_set_irqs_validate_and_prepare(): EINVAL), the data copied in (EFAULT), the
   * index and action dispatched (vfio_pci_intrs.c vfio_pci_set_irqs_ioctl(): ENOTTY), then the
   * action itself. Nothing is written back.
   */
  private setIrqs(device: SimDevice, buffer: Uint8Array): number {
    const view = this.argView(buffer, 20);
    const argsz = view.getUint32(0, this.little);
    const flags = view.getUint32(4, this.little);
    const index = view.getUint32(8, this.little);
    const start = view.getUint32(12, this.little);
    const count = view.getUint32(16, this.little);
    // vfio_set_irqs_validate_and_prepare(): max is vfio_pci_get_irq_count(index), 0 past the last.
    const max = IRQ_COUNT[index as 0] ?? 0;
    if (index >= PCI_IRQ.COUNT || count >= 0xffff_ffff - start || (flags & ~0x3f) !== 0) return -ERRNO.EINVAL;
    // Bounds apply to count 0 too: an index with no vectors (MSI-X, ERR on an edu) takes nothing.
    if (start >= max || start + count > max) return -ERRNO.EINVAL;
    const data = flags & (IRQ_SET.DATA_NONE | IRQ_SET.DATA_BOOL | IRQ_SET.DATA_EVENTFD);
    const element = data === IRQ_SET.DATA_NONE ? 0 : data === IRQ_SET.DATA_BOOL ? 1 : data === IRQ_SET.DATA_EVENTFD ? 4 : -1;
    if (element < 0) return -ERRNO.EINVAL;
    if (argsz - 20 < count * element) return -ERRNO.EINVAL;
    // memdup_user() of the data argsz promises: past the caller's buffer it faults.
    if (20 + count * element > buffer.byteLength) return -ERRNO.EFAULT;
    const action = flags & (IRQ_SET.ACTION_MASK | IRQ_SET.ACTION_UNMASK | IRQ_SET.ACTION_TRIGGER);
    const args: IrqArgs = { device, state: this.irqState(device), start, count, data, view };
    // vfio_pci_set_irqs_ioctl(): exactly one action, and one the index has; else ENOTTY.
    if (index === PCI_IRQ.INTX) {
      if (action === IRQ_SET.ACTION_MASK) return this.intxMaskIoctl(args);
      if (action === IRQ_SET.ACTION_UNMASK) return this.intxUnmaskIoctl(args);
      if (action === IRQ_SET.ACTION_TRIGGER) return this.intxTrigger(args);
    } else if (index === PCI_IRQ.MSI || index === PCI_IRQ.MSIX) {
      // MSI-X has no vectors on an edu, so the bounds above refuse it first.
      if (action === IRQ_SET.ACTION_TRIGGER) return this.msiTrigger(args);
    } else if (index === PCI_IRQ.REQ) {
      if (action === IRQ_SET.ACTION_TRIGGER) return this.reqTrigger(args);
    }
    // ERR: TRIGGER only on PCIe (pci_is_pcie()); an edu is conventional PCI (and ERR counts 0 vectors).
    return -ERRNO.ENOTTY;
  }

  private irqState(device: SimDevice): DeviceIrqs {
    let state = this.irqs.get(device);
    if (state === undefined) {
      state = { type: 'none', intxTrigger: undefined, intxMasked: false, unmask: undefined, msi: [], req: undefined, virqDisabled: false };
      this.irqs.set(device, state);
    }
    return state;
  }

  /** The eventfd behind `fd`, as eventfd_ctx_fdget() finds it: EBADF when not open, EINVAL when not an eventfd. */
  private eventfdOf(fd: number): EventfdFile {
    const file = this.files.get(fd);
    if (file === undefined) throw new KernelError(ERRNO.EBADF, 'VFIO_DEVICE_SET_IRQS', `fd ${fd} is not open`);
    if (file.kind !== 'eventfd') throw new KernelError(ERRNO.EINVAL, 'VFIO_DEVICE_SET_IRQS', `fd ${fd} is not an eventfd`);
    return file;
  }

  /** eventfd_signal(): the count grows, whether or not an fd still names it. */
  private signalEventfd(file: EventfdFile | undefined): void {
    if (file !== undefined) file.count += 1n;
  }

  // --- INTx (vfio_pci_intrs.c) ----------------------------------------------------------------

  /** vfio_pci_set_intx_trigger(). */
  private intxTrigger({ device, state, start, count, data, view }: IrqArgs): number {
    if (state.type === 'intx' && count === 0 && data === IRQ_SET.DATA_NONE) {
      this.intxDisable(state);
      return 0;
    }
    if (!(state.type === 'intx' || state.type === 'none') || start !== 0 || count !== 1) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_EVENTFD) {
      // Any negative fd means no eventfd: INTx is enabled (or stays on) with no trigger.
      const fd = view.getInt32(20, this.little);
      const trigger = fd >= 0 ? this.eventfdOf(fd) : undefined;
      if (state.type === 'intx') {
        state.intxTrigger = trigger; // vfio_intx_set_signal()
        return 0;
      }
      // vfio_intx_enable(): masked from the start when INTx is disabled in the command register.
      state.type = 'intx';
      state.intxTrigger = trigger;
      state.intxMasked = state.virqDisabled;
      this.intxCheck(device, state); // a line already asserted interrupts as soon as the handler is in
      return 0;
    }
    if (state.type !== 'intx') return -ERRNO.EINVAL;
    // Loopback: vfio_send_intx_eventfd(), whatever the mask.
    if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) this.sendIntx(state);
    return 0;
  }

  /** vfio_pci_set_intx_mask(). */
  private intxMaskIoctl({ state, start, count, data, view }: IrqArgs): number {
    if (state.type !== 'intx' || start !== 0 || count !== 1) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_EVENTFD) return -ERRNO.ENOTTY; // "XXX implement me"
    if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) state.intxMasked = true;
    return 0;
  }

  /** vfio_pci_set_intx_unmask(). */
  private intxUnmaskIoctl({ device, state, start, count, data, view }: IrqArgs): number {
    if (state.type !== 'intx' || start !== 0 || count !== 1) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_EVENTFD) {
      const fd = view.getInt32(20, this.little);
      if (fd < 0) {
        state.unmask = undefined; // vfio_virqfd_disable()
        return 0;
      }
      // vfio_virqfd_enable(): EBADF, EINVAL (not an eventfd), then EBUSY when one is registered.
      const file = this.eventfdOf(fd);
      if (state.unmask !== undefined) return -ERRNO.EBUSY;
      state.unmask = file;
      // A count already pending runs the handler at once (without reading the count).
      if (file.count > 0n && this.intxUnmaskHandler(device, state)) this.sendIntx(state);
      return 0;
    }
    if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) {
      if (this.intxUnmaskHandler(device, state)) this.sendIntx(state);
    }
    return 0;
  }

  /**
   * vfio_pci_intx_unmask_handler(): a masked INTx (not disabled in the command register) unmasks,
   * unless the device still asserts the line: then it stays masked and the caller signals again
   * (returns true).
   */
  private intxUnmaskHandler(device: SimDevice, state: DeviceIrqs): boolean {
    if (state.type !== 'intx' || !state.intxMasked || state.virqDisabled) return false;
    const pending = this.eduRegisters.get(device)?.intxLine === true;
    state.intxMasked = pending;
    return pending;
  }

  /** vfio_send_intx_eventfd(): INTx on and not disabled in the command register. */
  private sendIntx(state: DeviceIrqs): void {
    if (state.type === 'intx' && !state.virqDisabled) this.signalEventfd(state.intxTrigger);
  }

  /** vfio_intx_handler(): an unmasked INTx whose line is asserted masks itself and signals. */
  private intxCheck(device: SimDevice, state: DeviceIrqs): void {
    if (state.type !== 'intx' || state.intxMasked || this.eduRegisters.get(device)?.intxLine !== true) return;
    state.intxMasked = true;
    this.sendIntx(state);
  }

  /** vfio_intx_disable(): the unmask virqfd and the trigger dropped. */
  private intxDisable(state: DeviceIrqs): void {
    state.type = 'none';
    state.intxTrigger = undefined;
    state.intxMasked = false;
    state.unmask = undefined;
  }

  // --- MSI (vfio_pci_intrs.c) -----------------------------------------------------------------

  /** vfio_pci_set_msi_trigger(). */
  private msiTrigger({ device, state, start, count, data, view }: IrqArgs): number {
    if (state.type === 'msi' && count === 0 && data === IRQ_SET.DATA_NONE) {
      this.msiDisable(device, state);
      return 0;
    }
    if (!(state.type === 'msi' || state.type === 'none')) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_EVENTFD) {
      const fds = Array.from({ length: count }, (_, vector) => view.getInt32(20 + vector * 4, this.little));
      if (state.type === 'msi') return this.msiSetBlock(state, start, fds);
      // vfio_msi_enable(): pci_alloc_irq_vectors(pdev, 1, start + count) refuses 0 vectors (ERANGE).
      const vectors = start + count;
      if (vectors === 0) return -ERRNO.ERANGE;
      // The kernel programs the doorbell (it may refuse: PAMU without a bank window).
      device.enableMsi(Array.from({ length: vectors }, (_, vector) => () => this.signalEventfd(state.msi[vector])));
      state.type = 'msi';
      state.msi = new Array<EventfdFile | undefined>(vectors).fill(undefined);
      const result = this.msiSetBlock(state, start, fds);
      if (result !== 0) this.msiDisable(device, state);
      return result;
    }
    // Loopback (DATA_NONE / DATA_BOOL): the kernel signals the vectors' eventfds itself.
    if (state.type !== 'msi') return -ERRNO.EINVAL;
    if (this.simulator.kernel === '6.1' && start + count > state.msi.length) return -ERRNO.EINVAL;
    for (let vector = start; vector < start + count; vector++) {
      if (data === IRQ_SET.DATA_NONE || view.getUint8(20 + vector - start) !== 0) this.signalEventfd(state.msi[vector]);
    }
    return 0;
  }

  /**
   * vfio_msi_set_block(): each vector's old eventfd is dropped first, then a negative fd leaves it
   * without one; a failure de-assigns the vectors from `start` to the one that failed, MSI staying on.
   */
  private msiSetBlock(state: DeviceIrqs, start: number, fds: readonly number[]): number {
    if (this.simulator.kernel === '6.1' && (start >= state.msi.length || start + fds.length > state.msi.length)) return -ERRNO.EINVAL;
    for (let i = 0; i < fds.length; i++) {
      const vector = start + i;
      state.msi[vector] = undefined;
      const fd = fds[i]!;
      if (fd < 0) continue;
      try {
        state.msi[vector] = this.eventfdOf(fd);
      } catch (error) {
        for (let undo = start; undo < vector; undo++) state.msi[undo] = undefined;
        if (error instanceof KernelError) return -error.errno;
        throw error;
      }
    }
    return 0;
  }

  /** vfio_msi_disable(). */
  private msiDisable(device: SimDevice, state: DeviceIrqs): void {
    device.disableMsi();
    state.type = 'none';
    state.msi = [];
  }

  // --- REQ (vfio_pci_intrs.c) -----------------------------------------------------------------

  /** vfio_pci_set_req_trigger() and vfio_pci_set_ctx_trigger_single(). */
  private reqTrigger({ state, start, count, data, view }: IrqArgs): number {
    if (start !== 0 || count > 1) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_NONE) {
      if (state.req === undefined) return -ERRNO.EINVAL;
      if (count === 1) this.signalEventfd(state.req);
      else state.req = undefined;
      return 0;
    }
    if (count === 0) return -ERRNO.EINVAL;
    if (data === IRQ_SET.DATA_BOOL) {
      if (view.getUint8(20) !== 0) this.signalEventfd(state.req);
      return 0;
    }
    const fd = view.getInt32(20, this.little);
    if (fd === -1) {
      state.req = undefined;
      return 0;
    }
    if (fd >= 0) {
      state.req = this.eventfdOf(fd);
      return 0;
    }
    // fd <= -2: 6.1 ignores it (returns 0, nothing changes); 6.12 falls through to EINVAL.
    return this.simulator.kernel === '6.1' ? 0 : -ERRNO.EINVAL;
  }

  private iommufdIoctl(context: SimIommufdContext, nr: number, argument: number | Uint8Array): number {
    const buffer = this.bytes(argument);
    // The hot paths, decoded from the bytes (no view, no bigint below 2^53): a struct of exactly the
    // kernel's size whose common case the context handles at once. Anything else (and any case the
    // context declines, having changed nothing) goes through the checked decoding below.
    if (nr === IOMMUFD_NR.IOAS_MAP && buffer.byteLength >= 40 && this.u32(buffer, 0) === 40 && this.u32(buffer, 12) === 0) {
      const vaddr = this.u64Number(buffer, 16);
      const length = this.u64Number(buffer, 24);
      const iova = this.u64Number(buffer, 32);
      if (vaddr >= 0 && length >= 0 && iova >= 0 && context.mapNumbers(this.u32(buffer, 8), this.u32(buffer, 4), vaddr, length, iova) >= 0) return 0;
    } else if (nr === IOMMUFD_NR.IOAS_UNMAP && buffer.byteLength >= 24 && this.u32(buffer, 0) === 24) {
      const iova = this.u64Number(buffer, 8);
      const length = this.u64Number(buffer, 16);
      if (iova >= 0 && length >= 0) {
        const unmapped = context.unmapNumbers(this.u32(buffer, 4), iova, length);
        if (unmapped >= 0) {
          this.setU64Number(buffer, 16, unmapped);
          return 0;
        }
      }
    }
    const sized = (minimum: number, kernelSize: number): DataView => {
      const view = this.view(buffer);
      const size = view.getUint32(0, this.little);
      if (size < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'iommufd', 'size below the struct minimum');
      // Bytes past the kernel's struct must be zero (copy_struct_from_user): else E2BIG.
      for (let at = kernelSize; at < Math.min(size, buffer.byteLength); at++) if (buffer[at] !== 0) throw new KernelError(ERRNO.E2BIG, 'iommufd', 'unknown trailing bytes');
      return view;
    };
    switch (nr) {
      case IOMMUFD_NR.DESTROY: {
        const view = sized(8, 8);
        context.destroy(view.getUint32(4, this.little));
        return 0;
      }
      case IOMMUFD_NR.IOAS_ALLOC: {
        const view = sized(12, 12);
        view.setUint32(8, context.allocateIoas(view.getUint32(4, this.little)), this.little);
        return 0;
      }
      case IOMMUFD_NR.IOAS_IOVA_RANGES: {
        const view = sized(32, 32);
        if (view.getUint32(12, this.little) !== 0) return -ERRNO.EOPNOTSUPP;
        const { ranges, alignment } = context.iovaRanges(view.getUint32(4, this.little));
        const slots = view.getUint32(8, this.little);
        const pointer = view.getBigUint64(16, this.little);
        const written = Math.min(slots, ranges.length);
        if (written > 0) this.simulator.memory.write(pointer, this.encodeRanges(ranges.slice(0, written)));
        // The struct is written back even when the slots are too few: num_iovas is the total
        // (docs/kernel-rules.md#iova-ranges-two-step-query).
        view.setUint32(8, ranges.length, this.little);
        view.setBigUint64(24, alignment, this.little);
        return ranges.length > slots ? -ERRNO.EMSGSIZE : 0;
      }
      case IOMMUFD_NR.IOAS_ALLOW_IOVAS: {
        const view = sized(24, 24);
        if (view.getUint32(12, this.little) !== 0) return -ERRNO.EOPNOTSUPP;
        const count = view.getUint32(8, this.little);
        const ranges = count === 0 ? [] : this.decodeRanges(this.simulator.memory.read(view.getBigUint64(16, this.little), count * 16));
        context.allowIovas(view.getUint32(4, this.little), ranges);
        return 0;
      }
      case IOMMUFD_NR.IOAS_MAP: {
        const view = sized(40, 40);
        if (view.getUint32(12, this.little) !== 0) return -ERRNO.EOPNOTSUPP;
        const iova = context.map(
          view.getUint32(8, this.little),
          view.getUint32(4, this.little),
          view.getBigUint64(16, this.little),
          view.getBigUint64(24, this.little),
          view.getBigUint64(32, this.little),
        );
        view.setBigUint64(32, iova, this.little);
        return 0;
      }
      case IOMMUFD_NR.IOAS_UNMAP: {
        const view = sized(24, 24);
        const bytes = context.unmap(view.getUint32(4, this.little), view.getBigUint64(8, this.little), view.getBigUint64(16, this.little));
        view.setBigUint64(16, bytes, this.little);
        return 0;
      }
      case IOMMUFD_NR.IOAS_COPY: {
        const view = sized(40, 40);
        const flags = view.getUint32(4, this.little);
        const destination = context.ioas(view.getUint32(8, this.little), 'IOMMU_IOAS_COPY');
        const source = context.ioas(view.getUint32(12, this.little), 'IOMMU_IOAS_COPY');
        const length = view.getBigUint64(16, this.little);
        const sourceIova = view.getBigUint64(32, this.little);
        const sourceLast = sourceIova + length - 1n;
        const areas = source.areas.overlapping(sourceIova, sourceLast);
        // The 6.12 code answers ENOENT unless contiguous areas cover the source range
        // (docs/kernel-rules.md#ioas-copy).
        let cursor = sourceIova;
        for (const area of areas) {
          if (area.start > cursor) break;
          cursor = area.last + 1n;
        }
        if (areas.length === 0 || cursor <= sourceLast || areas[0]!.start > sourceIova) return -ERRNO.ENOENT;
        let iova = view.getBigUint64(24, this.little);
        let first = true;
        for (const area of areas) {
          const start = area.start > sourceIova ? area.start : sourceIova;
          const last = area.last < sourceLast ? area.last : sourceLast;
          const mapped = context.map(
            destination.id,
            first ? flags : flags | IOAS_MAP_FLAGS.FIXED_IOVA,
            area.vaddr + (start - area.start),
            last - start + 1n,
            iova,
          );
          if (first) view.setBigUint64(24, mapped, this.little);
          iova = mapped + (last - start + 1n);
          first = false;
        }
        return 0;
      }
      case IOMMUFD_NR.GET_HW_INFO: {
        // struct iommu_hw_info: size, flags, dev_id, data_len, data_uptr @16, out_data_type @24,
        // out_max_pasid_log2 @28, __reserved[3] @29, out_capabilities @32; 40 bytes, 32 at least.
        const view = sized(32, 40);
        const size = Math.min(view.getUint32(0, this.little), buffer.byteLength);
        const info = context.hwInfo(view.getUint32(8, this.little), view.getUint32(4, this.little), buffer[29]! | buffer[30]! | buffer[31]!);
        const userLength = view.getUint32(12, this.little);
        const pointer = view.getBigUint64(16, this.little);
        const data = new Uint8Array(info.vtd === undefined ? 0 : 24);
        if (info.vtd !== undefined) {
          const out = this.view(data);
          out.setUint32(0, info.vtd.flags, this.little);
          out.setBigUint64(8, info.vtd.cap, this.little);
          out.setBigUint64(16, info.vtd.ecap, this.little);
        }
        // copy_to_user() of min(data_len, the kernel's length), then clear_user() of the rest.
        const copied = Math.min(userLength, data.length);
        if (copied > 0) this.simulator.memory.write(pointer, data.subarray(0, copied));
        if (userLength > copied) this.simulator.memory.write(pointer + BigInt(copied), new Uint8Array(userLength - copied));
        view.setUint32(12, data.length, this.little);
        view.setUint32(24, info.type, this.little);
        buffer[28] = 0; // out_max_pasid_log2: no PASID on the simulated devices
        if (size >= 40) view.setBigUint64(32, info.capabilities, this.little);
        return 0;
      }
      case IOMMUFD_NR.HWPT_ALLOC: {
        // struct iommu_hwpt_alloc: size, flags, dev_id, pt_id, out_hwpt_id @16, __reserved @20,
        // data_type @24, data_len @28, data_uptr @32, fault_id @40, __reserved2 @44; 48 bytes, 24 at least.
        const view = sized(24, 48);
        const size = Math.min(view.getUint32(0, this.little), buffer.byteLength);
        const field = (at: number): number => (at + 4 <= size ? view.getUint32(at, this.little) : 0);
        const id = context.allocateHwpt(field(8), field(12), field(4), field(24), field(28), field(20));
        view.setUint32(16, id, this.little);
        return 0;
      }
      case IOMMUFD_NR.HWPT_SET_DIRTY_TRACKING: {
        // struct iommu_hwpt_set_dirty_tracking: size, flags, hwpt_id, __reserved (not checked).
        const view = sized(16, 16);
        context.setDirtyTracking(view.getUint32(8, this.little), view.getUint32(4, this.little));
        return 0;
      }
      case IOMMUFD_NR.HWPT_GET_DIRTY_BITMAP: {
        // struct iommu_hwpt_get_dirty_bitmap: size, hwpt_id, flags, __reserved, iova @16,
        // length @24, page_size @32, data @40; 48 bytes.
        const view = sized(48, 48);
        const iova = view.getBigUint64(16, this.little);
        const length = view.getBigUint64(24, this.little);
        const pageSize = view.getBigUint64(32, this.little);
        const data = view.getBigUint64(40, this.little);
        try {
          context.dirtyBitmap(view.getUint32(4, this.little), view.getUint32(8, this.little), view.getUint32(12, this.little), iova, length, pageSize, () => {
            // The words the range needs (iova_bitmap: (length - 1) >> pgshift bits, whole u64s).
            let shift = 0n;
            while (shift < 64n && ((pageSize >> shift) & 1n) === 0n) shift++;
            const bytes = ((((length - 1n) >> shift) / 64n) + 1n) * 8n;
            return this.userBitmap(data, bytes, 'IOMMU_HWPT_GET_DIRTY_BITMAP');
          });
        } finally {
          this.commitUserBitmaps();
        }
        return 0;
      }
      case IOMMUFD_NR.OPTION: {
        const view = sized(24, 24);
        const option = view.getUint32(4, this.little);
        const operation = view.getUint16(8, this.little);
        if (view.getUint16(10, this.little) !== 0 || operation > 1) return -ERRNO.EOPNOTSUPP;
        // RLIMIT_MODE (0): global; GET answers per-user accounting (0). HUGE_PAGES (1): per IOAS, default 1.
        if (option === 0) {
          if (view.getUint32(12, this.little) !== 0) return -ERRNO.EOPNOTSUPP;
          if (operation === 1) view.setBigUint64(16, 0n, this.little);
          else return -ERRNO.EPERM; // needs CAP_SYS_RESOURCE, which the simulated process lacks
          return 0;
        }
        if (option === 1) {
          context.ioas(view.getUint32(12, this.little), 'IOMMU_OPTION');
          if (operation === 1) view.setBigUint64(16, 1n, this.little);
          else if (view.getBigUint64(16, this.little) > 1n) return -ERRNO.EINVAL;
          return 0;
        }
        return -ERRNO.EOPNOTSUPP; // SW_MSI_START/SIZE (2, 3) were never merged (docs/kernel-rules.md#software-msi-window-options-are-not-merged)
      }
      default:
        return -ERRNO.ENOTTY;
    }
  }

  // --- device regions ---------------------------------------------------------------------------

  private regionAccess(fd: number, buffer: Uint8Array, offset: bigint, write: boolean): number {
    const file = this.files.get(fd);
    if (file === undefined) return -ERRNO.EBADF;
    if (file.kind !== 'device') return -ERRNO.EINVAL;
    if (file.cdev !== undefined && file.cdev.iommufd === undefined) return -ERRNO.EINVAL;
    const index = Number(offset >> REGION_SHIFT);
    const at = Number(offset & ((1n << REGION_SHIFT) - 1n));
    if (index === PCI_REGION.CONFIG) {
      const config = this.configSpace(file.device);
      if (at >= config.length) return 0;
      const count = Math.min(buffer.byteLength, config.length - at);
      if (write) {
        // Only the command register (offset 4) is writable in this model.
        for (let byte = 0; byte < count; byte++) if (at + byte === 4 || at + byte === 5) config[at + byte] = buffer[byte]!;
        if (at <= 5 && at + count > 4) this.commandWritten(file.device, config);
      } else {
        buffer.set(config.subarray(at, at + count));
      }
      return count;
    }
    if (index === PCI_REGION.BAR0 && file.device.edu) return this.eduAccess(file.device, buffer, at, write);
    return -ERRNO.EINVAL;
  }

  /**
   * A write to PCI_COMMAND: the INTx-disable bit sets or clears virq_disabled, masking or unmasking
   * INTx (drivers/vfio/pci/vfio_pci_config.c vfio_basic_config_write(), "Emulate INTx disable").
   */
  private commandWritten(device: SimDevice, config: Uint8Array): void {
    const disabled = ((config[4]! | (config[5]! << 8)) & PCI_COMMAND.INTX_DISABLE) !== 0;
    const state = this.irqState(device);
    if (disabled && !state.virqDisabled) {
      state.virqDisabled = true;
      if (state.type === 'intx') state.intxMasked = true; // vfio_pci_intx_mask()
    } else if (!disabled && state.virqDisabled) {
      state.virqDisabled = false;
      if (this.intxUnmaskHandler(device, state)) this.sendIntx(state); // vfio_pci_intx_unmask()
    }
  }

  /**
   * The edu raises an interrupt (QEMU hw/misc/edu.c edu_raise_irq()): an MSI when the kernel enabled
   * MSI in it (a memory write, so bus master is needed), else its INTx pin, which stays asserted
   * until the status is acked.
   */
  private eduRaise(device: SimDevice, state: { interruptStatus: number; intxLine: boolean }, busMaster: boolean): void {
    if (state.interruptStatus === 0) return;
    // The MSI enable bit of the edu's capability: set when the kernel enabled MSI for it.
    if (device.msiVectors > 0) {
      if (busMaster) device.raiseMsi(0);
      return;
    }
    state.intxLine = true;
    const irqs = this.irqs.get(device);
    if (irqs !== undefined) this.intxCheck(device, irqs);
  }

  private configSpace(device: SimDevice): Uint8Array {
    let config = this.configSpaces.get(device);
    if (config === undefined) {
      config = new Uint8Array(256);
      const view = new DataView(config.buffer);
      // PCI config space is little-endian whatever the CPU.
      view.setUint16(0, device.vendor, true);
      view.setUint16(2, device.deviceId, true);
      view.setUint8(0x0b, 0x00);
      this.configSpaces.set(device, config);
    }
    return config;
  }

  /** The edu device's BAR0 registers (docs/kernel-rules.md#edu-registers): identification, liveness, DMA engine, interrupts. */
  private eduAccess(device: SimDevice, buffer: Uint8Array, at: number, write: boolean): number {
    let state = this.eduRegisters.get(device);
    if (state === undefined) {
      state = { liveness: 0, interruptStatus: 0, intxLine: false, dmaSource: 0n, dmaDestination: 0n, dmaCount: 0n, dmaCommand: 0n, buffer: new Uint8Array(4096) };
      this.eduRegisters.set(device, state);
    }
    const size = buffer.byteLength;
    if (size !== 4 && size !== 8) return -ERRNO.EINVAL;
    // MMIO registers are little-endian on the PCI bus.
    const view = this.view(buffer);
    const value = size === 8 ? view.getBigUint64(0, true) : BigInt(view.getUint32(0, true));
    const busMaster = (this.configSpace(device)[4]! & 0x4) !== 0;
    if (write) {
      switch (at) {
        case 0x04:
          state.liveness = Number(value & 0xffff_ffffn);
          break;
        case 0x60:
          state.interruptStatus |= Number(value & 0xffff_ffffn);
          this.eduRaise(device, state, busMaster);
          break;
        case 0x64:
          // edu_lower_irq(): the pin goes down once no status bit is left (and MSI is off).
          state.interruptStatus &= ~Number(value & 0xffff_ffffn);
          if (state.interruptStatus === 0 && device.msiVectors === 0) state.intxLine = false;
          break;
        case 0x80:
          state.dmaSource = value;
          break;
        case 0x88:
          state.dmaDestination = value;
          break;
        case 0x90:
          state.dmaCount = value;
          break;
        case 0x98:
          state.dmaCommand = value;
          if ((value & 1n) !== 0n) this.eduDma(device, state, busMaster);
          break;
        default:
          break;
      }
      return size;
    }
    let result = 0n;
    switch (at) {
      case 0x00:
        result = 0x0100_00edn;
        break;
      case 0x04:
        result = BigInt(~state.liveness >>> 0);
        break;
      case 0x24:
        result = BigInt(state.interruptStatus >>> 0);
        break;
      case 0x80:
        result = state.dmaSource;
        break;
      case 0x88:
        result = state.dmaDestination;
        break;
      case 0x90:
        result = state.dmaCount;
        break;
      case 0x98:
        result = state.dmaCommand;
        break;
      default:
        result = 0n;
    }
    if (size === 8) view.setBigUint64(0, result, true);
    else view.setUint32(0, Number(result & 0xffff_ffffn), true);
    return size;
  }

  /** The edu DMA engine: between its 4 KiB buffer at device address 0x40000 and host IOVAs, done at once. */
  private eduDma(device: SimDevice, state: NonNullable<ReturnType<SimProcess['eduRegisters']['get']>>, busMaster: boolean): void {
    const toRam = (state.dmaCommand & 2n) !== 0n;
    const count = Number(state.dmaCount);
    const bufferBase = 0x40000n;
    // edu masks DMA addresses to 28 bits (docs/kernel-rules.md#edu-dma-address-mask).
    const mask = (1n << 28n) - 1n;
    if (count === 4096) {
      // QEMU 7.2's edu aborts the whole VM on a DMA of exactly 4096 bytes (off-by-one;
      // docs/kernel-rules.md#edu-dma-of-4096-bytes).
      this.simulator.oopses.push('edu: QEMU 7.2 aborts the VM on a DMA of exactly 4096 bytes; keep transfers <= 4095');
    } else if (busMaster && count > 0 && count < 4096) {
      if (toRam) {
        const from = Number(state.dmaSource - bufferBase);
        device.dmaWrite(state.dmaDestination & mask, state.buffer.subarray(from, from + count));
      } else {
        const bytes = device.dmaRead(state.dmaSource & mask, count);
        if (bytes !== undefined) state.buffer.set(bytes, Number(state.dmaDestination - bufferBase));
      }
    }
    state.dmaCommand &= ~1n;
    if ((state.dmaCommand & 4n) !== 0n) {
      state.interruptStatus |= 0x100;
      this.eduRaise(device, state, busMaster);
    }
  }

  // --- sysfs ------------------------------------------------------------------------------------

  readFile(path: string): string {
    const group = /^\/sys\/kernel\/iommu_groups\/(\d+)\/(reserved_regions|type)$/.exec(path);
    if (group !== null) {
      const found = this.simulator.group(Number(group[1]));
      if (found === undefined) throw fsError('ENOENT', path);
      return group[2] === 'type' ? 'DMA\n' : found.reservedRegionsFile;
    }
    const device = /^\/sys\/bus\/pci\/devices\/([^/]+)\/(vendor|device|driver_override)$/.exec(path);
    if (device !== null) {
      const found = this.findDevice(device[1]!, path);
      if (device[2] === 'vendor') return `0x${found.vendor.toString(16).padStart(4, '0')}\n`;
      if (device[2] === 'device') return `0x${found.deviceId.toString(16).padStart(4, '0')}\n`;
      return `${this.overrides.get(found) ?? '(null)'}\n`;
    }
    const parameter = /^\/sys\/module\/vfio_iommu_type1\/parameters\/(dma_entry_limit|allow_unsafe_interrupts)$/.exec(path);
    if (parameter !== null) {
      return parameter[1] === 'dma_entry_limit' ? `${this.simulator.dmaEntryLimit}\n` : `${this.simulator.allowUnsafeInterrupts ? 'Y' : 'N'}\n`;
    }
    throw fsError(this.exists(path) ? 'EISDIR' : 'ENOENT', path);
  }

  private readonly overrides = new Map<SimDevice, string>();

  writeFile(path: string, data: string): void {
    const value = data.replace(/\n$/, '');
    const override = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(path);
    if (override !== null) {
      const device = this.findDevice(override[1]!, path);
      if (value === '') this.overrides.delete(device);
      else this.overrides.set(device, value);
      return;
    }
    const unbind = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver\/unbind$/.exec(path);
    if (unbind !== null) {
      const device = this.findDevice(unbind[1]!, path);
      if (device.driver === null || value !== device.address) throw fsError('ENODEV', path);
      this.kernelCall(path, () => this.simulator.bind(device.address, null));
      return;
    }
    if (path === '/sys/bus/pci/drivers_probe') {
      const device = this.findDevice(value, path);
      const driver = this.overrides.get(device);
      if (device.driver === null && driver !== undefined) this.kernelCall(path, () => this.simulator.bind(device.address, driver));
      return;
    }
    if (path === '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit') {
      const limit = Number(value);
      if (!Number.isInteger(limit) || limit < 0 || limit > 0xffff_ffff) throw fsError('EINVAL', path);
      this.simulator.dmaEntryLimit = limit;
      return;
    }
    throw fsError(this.exists(path) ? 'EACCES' : 'ENOENT', path);
  }

  readLink(path: string): string {
    const link = /^\/sys\/bus\/pci\/devices\/([^/]+)\/(iommu_group|driver)$/.exec(path);
    if (link !== null) {
      const device = this.findDevice(link[1]!, path);
      // Relative to the device's real directory (DIR/X), up to /sys (docs/kernel-rules.md#sysfs-device-links).
      const up = '../'.repeat(this.simulator.platform.pciDevicesDirectory.split('/').length - 1);
      if (link[2] === 'iommu_group') {
        if (device.group === undefined) throw fsError('ENOENT', path);
        return `${up}kernel/iommu_groups/${device.group}`;
      }
      if (device.driver === null) throw fsError('ENOENT', path);
      return `${up}bus/pci/drivers/${device.driver}`;
    }
    throw fsError(this.exists(path) ? 'EINVAL' : 'ENOENT', path);
  }

  readDir(path: string): string[] {
    const trimmed = path.replace(/\/$/, '');
    if (trimmed === '/sys/kernel/iommu_groups') return this.simulator.groups().map((group) => String(group.id));
    const members = /^\/sys\/kernel\/iommu_groups\/(\d+)\/devices$/.exec(trimmed);
    if (members !== null) {
      const group = this.simulator.group(Number(members[1]));
      if (group === undefined) throw fsError('ENOENT', path);
      return group.devices.map((device) => device.address);
    }
    if (trimmed === '/sys/bus/pci/devices') return this.simulator.devices().map((device) => device.address);
    const cdev = /^\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev$/.exec(trimmed);
    if (cdev !== null) {
      const index = this.vfioDevices().indexOf(this.findDevice(cdev[1]!, path));
      if (index < 0) throw fsError('ENOENT', path);
      return [`vfio${index}`];
    }
    if (trimmed === '/dev/vfio') {
      const groups = this.simulator.groups().filter((group) => group.devices.some((device) => device.driver === 'vfio-pci'));
      return ['vfio', ...groups.map((group) => String(group.id)), ...(this.vfioDevices().length > 0 ? ['devices'] : [])];
    }
    if (trimmed === '/dev/vfio/devices') return this.vfioDevices().map((_, index) => `vfio${index}`);
    throw fsError('ENOENT', path);
  }

  exists(path: string): boolean {
    const trimmed = path.replace(/\/$/, '');
    if (['/dev/vfio', '/dev/vfio/vfio', '/dev/iommu', '/sys/kernel/iommu_groups', '/sys/bus/pci/devices', '/sys/bus/pci/drivers_probe'].includes(trimmed)) return true;
    try {
      if (/^\/sys\/kernel\/iommu_groups\/\d+(\/(reserved_regions|type|devices))?$/.test(trimmed)) {
        return this.simulator.group(Number(trimmed.split('/')[4])) !== undefined;
      }
      const device = /^\/sys\/bus\/pci\/devices\/([^/]+)(\/.*)?$/.exec(trimmed);
      if (device !== null) {
        const found = this.findDevice(device[1]!, path);
        const rest = device[2] ?? '';
        if (rest === '/iommu_group') return found.group !== undefined;
        if (rest === '/driver' || rest === '/driver/unbind') return found.driver !== null;
        if (rest === '/vfio-dev') return found.driver === 'vfio-pci';
        return ['', '/vendor', '/device', '/driver_override'].includes(rest);
      }
      if (/^\/dev\/vfio\/\d+$/.test(trimmed)) return this.readDir('/dev/vfio').includes(trimmed.slice(10));
      if (/^\/dev\/vfio\/devices\/vfio\d+$/.test(trimmed)) return Number(trimmed.slice(22)) < this.vfioDevices().length;
      if (/^\/sys\/module\/vfio_iommu_type1\/parameters\/(dma_entry_limit|allow_unsafe_interrupts)$/.test(trimmed)) return true;
    } catch {
      return false;
    }
    return false;
  }

  // --- helpers ----------------------------------------------------------------------------------

  private install(file: File): number {
    const fd = this.nextFd++;
    this.files.set(fd, file);
    if (file.kind === 'device') this.deviceOpens.set(file.device, (this.deviceOpens.get(file.device) ?? 0) + 1);
    return fd;
  }

  /** Devices bound to vfio-pci, in address order: `/dev/vfio/devices/vfioN` is the Nth. */
  private vfioDevices(): SimDevice[] {
    return this.simulator.devices().filter((device) => device.driver === 'vfio-pci');
  }

  private findDevice(address: string, path: string): SimDevice {
    try {
      return this.simulator.device(address);
    } catch {
      throw fsError('ENOENT', path);
    }
  }

  private kernelCall(path: string, call: () => unknown): void {
    try {
      call();
    } catch (error) {
      if (error instanceof KernelError) throw fsError(errnoName(error.errno), path);
      throw error;
    }
  }

  private bytes(argument: number | Uint8Array): Uint8Array {
    if (typeof argument === 'number') throw new KernelError(ERRNO.EFAULT, 'ioctl', 'a pointer argument was passed as an integer');
    return argument;
  }

  private view(buffer: Uint8Array): DataView {
    return new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }

  /** The struct, after the argsz (or size) check every VFIO ioctl makes: argsz < minsz is EINVAL. */
  private argView(buffer: Uint8Array, minimum: number): DataView {
    const view = this.view(buffer);
    if (buffer.byteLength < 4) throw new KernelError(ERRNO.EFAULT, 'ioctl', 'argument shorter than its argsz field');
    if (view.getUint32(0, this.little) < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'ioctl', `argsz below ${minimum}`);
    return view;
  }

  /** {@link argView}'s checks, without building a view. */
  private argCheck(buffer: Uint8Array, minimum: number): void {
    if (buffer.byteLength < 4) throw new KernelError(ERRNO.EFAULT, 'ioctl', 'argument shorter than its argsz field');
    if (this.u32(buffer, 0) < minimum || buffer.byteLength < minimum) throw new KernelError(ERRNO.EINVAL, 'ioctl', `argsz below ${minimum}`);
  }

  /** The u32 at `at`, in the process's byte order. */
  private u32(buffer: Uint8Array, at: number): number {
    return this.little
      ? (buffer[at]! | (buffer[at + 1]! << 8) | (buffer[at + 2]! << 16) | (buffer[at + 3]! << 24)) >>> 0
      : ((buffer[at]! << 24) | (buffer[at + 1]! << 16) | (buffer[at + 2]! << 8) | buffer[at + 3]!) >>> 0;
  }

  /** The u64 at `at` as a number when it is below 2^53 (exact), else -1. */
  private u64Number(buffer: Uint8Array, at: number): number {
    const high = this.u32(buffer, this.little ? at + 4 : at);
    if (high >= 0x20_0000) return -1;
    return high * 0x1_0000_0000 + this.u32(buffer, this.little ? at : at + 4);
  }

  /** Writes a u64 given as an integer below 2^53. */
  private setU64Number(buffer: Uint8Array, at: number, value: number): void {
    const low = value % 0x1_0000_0000;
    const high = (value - low) / 0x1_0000_0000;
    this.setU32(buffer, this.little ? at : at + 4, low);
    this.setU32(buffer, this.little ? at + 4 : at, high);
  }

  private setU32(buffer: Uint8Array, at: number, value: number): void {
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

  private encodeRanges(ranges: readonly IovaRange[]): Uint8Array {
    const bytes = new Uint8Array(ranges.length * 16);
    const view = this.view(bytes);
    ranges.forEach((range, index) => {
      view.setBigUint64(index * 16, range.start, this.little);
      view.setBigUint64(index * 16 + 8, range.last, this.little);
    });
    return bytes;
  }

  private decodeRanges(bytes: Uint8Array): IovaRange[] {
    const view = this.view(bytes);
    const ranges: IovaRange[] = [];
    for (let at = 0; at + 16 <= bytes.byteLength; at += 16) {
      ranges.push({ start: view.getBigUint64(at, this.little), last: view.getBigUint64(at + 8, this.little) & U64_MAX });
    }
    return ranges;
  }
}

function fsError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code, path });
}


