import {
  ERRNO,
  IoasError,
  rangeSize,
  subtractRanges,
  type BackendHandleV1,
  type BackendV1,
  type Capabilities,
  type Geometry,
  type IovaRange,
  type MsiModel,
  type ReservedRange,
  type Syscalls,
} from '@ioas/core';
import {
  describeBlockers,
  IommufdContext,
  libcSyscalls,
  Sysfs,
  VfioContainer,
  VfioDevice,
  VfioGroup,
  VfioIoctls,
  vfioUapi,
  type IoctlArch,
  type IommufdDevice,
  type IovaRanges,
  type Type1Info,
  abandon,
  asIoasError,
  releaseAll,
  releaseContainer,
} from '@ioas/vfio';

/** The kernel interface: VFIO type1v2 containers, iommufd, or chosen when the container opens. */
export type SmmuInterface = 'auto' | 'type1' | 'iommufd';

/** Options of {@link smmu}. */
export interface SmmuOptions {
  /** The system calls (default: libc through koffi). The simulator's `simSyscalls()` fits here. */
  readonly syscalls?: Syscalls;
  /**
   * `auto` (default) uses iommufd when `/dev/iommu` exists and every device has a VFIO cdev, else
   * type1. The `IOAS_SMMU_INTERFACE` environment variable overrides the default.
   */
  readonly interface?: SmmuInterface;
  /** Prefix for sysfs paths (a captured tree in tests). */
  readonly sysfsRoot?: string;
  /** Ioctl encoding and struct byte order (default: this host's). */
  readonly arch?: IoctlArch;
  /** Struct byte order (default: this host's). */
  readonly littleEndian?: boolean;
  /**
   * The usable range to assume when the kernel reports none (type1 before 5.4): 39 bits, as libvfn
   * and QEMU's vfio-helpers assume, since many VT-d parts and QEMU's intel-iommu are 39-bit
   * (docs/kernel-rules.md#address-width-limits).
   */
  readonly fallbackAperture?: IovaRange;
}

/** The backend, with access to the devices of its open containers. */
export interface SmmuBackend extends BackendV1 {
  /**
   * A device fd for a device of an open container: through its group on type1, the bound cdev on
   * iommufd. The caller closes it (on iommufd, closing it unbinds the device from the container),
   * before the container: on type1 an open device fd keeps its group, and so the container's
   * mappings, alive in the kernel until it closes. On iommufd, closing the container detaches a
   * device still open (VFIO_DEVICE_DETACH_IOMMUFD_PT), so that its DMA stops with the container.
   */
  openDevice(address: string): VfioDevice;
}

const FALLBACK_APERTURE: IovaRange = { start: 0n, last: (1n << 39n) - 1n };
/** x86's hardware MSI range (interrupt remapping), from intel/amd iommu drivers. */
const X86_MSI: IovaRange = { start: 0xfee0_0000n, last: 0xfeef_ffffn };

interface OpenContainer {
  readonly devices: readonly string[];
  openDevice(address: string): VfioDevice;
}

/**
 * A `Backend` for paged IOMMUs over VFIO type1v2 or iommufd: ARM SMMU first, Intel VT-d and AMD-Vi
 * work the same way.
 *
 * ```ts
 * const backend = smmu();
 * using container = await Container.open({ backend, groups: [12] });
 * ```
 */
export function smmu(options: SmmuOptions = {}): SmmuBackend {
  const kind = (value: unknown): string => (value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value);
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new IoasError('invalid-argument', `smmu(): options must be an object, not ${kind(options)}`);
  if (options.syscalls !== undefined && (typeof options.syscalls !== 'object' || options.syscalls === null || typeof options.syscalls.ioctl !== 'function')) {
    throw new IoasError('invalid-argument', `smmu(): syscalls must be a Syscalls object (libcSyscalls(), simSyscalls(...)), not ${kind(options.syscalls)}`);
  }
  if (options.sysfsRoot !== undefined && typeof options.sysfsRoot !== 'string') throw new IoasError('invalid-argument', `smmu(): sysfsRoot must be a path, not ${kind(options.sysfsRoot)}`);
  if (options.interface !== undefined && typeof options.interface !== 'string') throw new IoasError('invalid-argument', `smmu(): interface must be auto, type1 or iommufd, not ${kind(options.interface)}`);
  const syscalls = options.syscalls ?? libcSyscalls();
  const sysfs = new Sysfs(syscalls, options.sysfsRoot ?? '');
  const requested = options.interface ?? (process.env.IOAS_SMMU_INTERFACE as SmmuInterface | undefined) ?? 'auto';
  if (!['auto', 'type1', 'iommufd'].includes(requested)) throw new IoasError('invalid-argument', `smmu(): interface must be auto, type1 or iommufd, not ${requested}`);
  const ioctls = new VfioIoctls({
    syscalls,
    backend: 'smmu',
    ...(options.arch === undefined ? {} : { arch: options.arch }),
    ...(options.littleEndian === undefined ? {} : { littleEndian: options.littleEndian }),
  });
  const open = new Set<OpenContainer>();
  const fallback = options.fallbackAperture ?? FALLBACK_APERTURE;
  return {
    specificationVersion: 'v1',
    name: 'smmu',
    probe: async () => {
      if (requested !== 'type1' && syscalls.exists('/dev/iommu')) return { available: true, detail: 'iommufd (/dev/iommu)' };
      if (requested !== 'iommufd' && syscalls.exists('/dev/vfio/vfio')) return { available: true, detail: 'VFIO type1v2 (/dev/vfio/vfio)' };
      const groups = sysfs.groups().length;
      return {
        available: false,
        reason:
          groups === 0
            ? 'no IOMMU groups in /sys/kernel/iommu_groups: the IOMMU is off (intel_iommu=on / iommu.passthrough=0) or absent'
            : `${requested === 'iommufd' ? '/dev/iommu' : '/dev/vfio/vfio'} is missing: load the vfio${requested === 'iommufd' ? ' and iommufd' : '-pci'} modules`,
      };
    },
    open: async (request) => {
      const devices = new Set(request.devices);
      const groups = new Set(request.groups);
      for (const address of devices) {
        if (!sysfs.hasDevice(address)) throw new IoasError('not-found', `there is no PCI device ${address} (/sys/bus/pci/devices/${address} does not exist)`, { backend: 'smmu', operation: 'open' });
        const group = sysfs.deviceGroup(address);
        if (group === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: the IOMMU is off, or (arm64) no driver is bound yet`, { backend: 'smmu', operation: 'open' });
        groups.add(group);
      }
      for (const group of groups) {
        const members = groupMembers(sysfs, group);
        const bound = members.filter((address) => sysfs.deviceDriver(address) === 'vfio-pci');
        if (bound.length === 0) {
          throw new IoasError('not-found', `IOMMU group ${group} has no member bound to vfio-pci, so /dev/vfio/${group} does not exist: bind ${members.join(', ') || 'its devices'} to vfio-pci first`, {
            backend: 'smmu',
            operation: 'open',
          });
        }
        for (const address of bound) devices.add(address);
      }
      const useIommufd =
        requested === 'iommufd' || (requested === 'auto' && syscalls.exists('/dev/iommu') && [...devices].every((address) => sysfs.deviceCdev(address) !== undefined));
      const handle = useIommufd ? openIommufd(ioctls, sysfs, [...devices], open) : openType1(ioctls, sysfs, [...groups], fallback, open);
      return handle;
    },
    openDevice: (address) => {
      for (const container of open) if (container.devices.includes(address)) return container.openDevice(address);
      throw new IoasError('not-found', `${address} is in no open smmu container`, { backend: 'smmu' });
    },
  };
}

/** Which MSI model the reserved regions show: x86's fixed range, or a software MSI window. */
function msiModel(reserved: readonly ReservedRange[]): MsiModel {
  const msi = reserved.filter((region) => region.kind === 'msi');
  if (msi.length === 0) return 'none';
  return msi.some((region) => region.start === X86_MSI.start && region.last === X86_MSI.last) ? 'fixed' : 'kernel-managed';
}

/** Holes in the kernel's ranges that sysfs does not explain, as reserved ranges from the kernel. */
function kernelHoles(ranges: readonly IovaRange[], reserved: readonly ReservedRange[]): ReservedRange[] {
  if (ranges.length < 2) return [];
  const hull = { start: ranges[0]!.start, last: ranges[ranges.length - 1]!.last };
  const holes = subtractRanges(subtractRanges([hull], ranges), reserved);
  return holes.map((hole) => ({ ...hole, kind: 'reserved' as const, source: 'kernel-ranges' as const, origin: 'a hole in the IOVA ranges the kernel reports' }));
}

function hull(ranges: readonly IovaRange[] | undefined, fallback: IovaRange): IovaRange {
  if (ranges === undefined || ranges.length === 0) return fallback;
  return { start: ranges[0]!.start, last: ranges[ranges.length - 1]!.last };
}

function describeOwner(sysfs: Sysfs, group: number): string {
  try {
    return describeBlockers(sysfs.groupBlockers(group));
  } catch {
    // Only a message detail: the not-viable error is the one to report.
    return '';
  }
}

/** A group's member devices; `not-found` naming the group when it does not exist. */
function groupMembers(sysfs: Sysfs, group: number): string[] {
  try {
    return sysfs.groupDevices(group);
  } catch (error) {
    if (IoasError.isInstance(error) && error.code === 'not-found') {
      throw new IoasError('not-found', `there is no IOMMU group ${group} (/sys/kernel/iommu_groups/${group} does not exist)`, { backend: 'smmu', operation: 'open', cause: error });
    }
    throw error;
  }
}

function openType1(ioctls: VfioIoctls, sysfs: Sysfs, groupIds: number[], fallback: IovaRange, registry: Set<OpenContainer>): BackendHandleV1 {
  const container = VfioContainer.open(ioctls);
  const groups: VfioGroup[] = [];
  const release = (): void => releaseContainer(groups, container, 'closing the type1 container', 'smmu');
  let devices: string[];
  let reserved: ReservedRange[];
  let capabilities: Capabilities;
  // GET_INFO is read once, after the last group is attached: nothing this handle does later changes
  // the page sizes or the ranges (only attaching or detaching a group does), and the mapping budget
  // is fixed for the handle's life, so geometry and reserved answer from this one reading.
  let info: Type1Info;
  try {
    if (!container.checkExtension(vfioUapi.VFIO_TYPE1v2_IOMMU)) {
      throw new IoasError('backend-unavailable', 'the kernel offers no VFIO type1v2 IOMMU (CHECK_EXTENSION(3) is 0)', { backend: 'smmu', operation: 'open' });
    }
    for (const id of groupIds) {
      const group = VfioGroup.open(ioctls, id);
      groups.push(group);
      if (!group.status().viable) {
        throw new IoasError('not-viable', `IOMMU group ${id} is not viable: ${describeOwner(sysfs, id) || 'a member is bound to a driver that owns DMA'}; bind every member to vfio-pci`, {
          backend: 'smmu',
          operation: 'open',
        });
      }
      group.setContainer(container);
    }
    container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
    reserved = groupIds.flatMap((id) => sysfs.reservedRegions(id));
    info = container.info();
    capabilities = {
      model: 'paged',
      windows: 'sdk',
      msi: msiModel(reserved),
      partialUnmap: false,
      // DMA_AVAIL (5.10+) is what is left; without it, the module's default dma_entry_limit.
      mappingBudget: info.dmaAvailable ?? 65535,
      settableGeometry: false,
    };
    devices = groupIds.flatMap((id) => sysfs.groupDevices(id));
  } catch (error) {
    abandon(release, error, 'smmu');
  }
  const entry: OpenContainer = {
    devices,
    openDevice: (address) => {
      const id = sysfs.deviceGroup(address);
      const group = groups.find((candidate) => candidate.id === id);
      if (group === undefined) throw new IoasError('not-found', `${address} is not in this container`, { backend: 'smmu' });
      return new VfioDevice(ioctls, group.deviceFd(address), address);
    },
  };
  registry.add(entry);
  let closed = false;
  const mapFlags = (read: boolean, write: boolean) => (read ? vfioUapi.VFIO_DMA_MAP_FLAG_READ : 0) | (write ? vfioUapi.VFIO_DMA_MAP_FLAG_WRITE : 0);
  return {
    capabilities,
    doGetGeometry: (): Geometry => {
      const geometry: Geometry = { aperture: hull(info.ranges, fallback), ioPageSizes: info.ioPageSizes ?? 0x1000n };
      return info.ranges === undefined ? { ...geometry, ranges: [fallback] } : { ...geometry, ranges: [...info.ranges] };
    },
    doGetReserved: () => [...reserved, ...kernelHoles(info.ranges ?? [], reserved)],
    doMap: (call) => container.mapDma(call.memory.address, call.iova.start, call.memory.length, mapFlags(call.access.read, call.access.write)),
    doUnmap: (range) => container.unmapDma(range.start, rangeSize(range)),
    doClose: () => {
      if (closed) return;
      closed = true;
      registry.delete(entry);
      release();
    },
  };
}

function openIommufd(ioctls: VfioIoctls, sysfs: Sysfs, addresses: string[], registry: Set<OpenContainer>): BackendHandleV1 {
  const context = IommufdContext.open(ioctls);
  const bound: IommufdDevice[] = [];
  /** Device fds given to the caller by openDevice: theirs to close. */
  const handedOut: IommufdDevice[] = [];
  // A device fd the caller still holds keeps the iommufd context, and so the IOAS and its mappings,
  // alive after /dev/iommu closes (the bind holds a reference): detach it first, so that DMA stops
  // with the container. Then the device fds this handle holds (closing one unbinds and detaches
  // it), then /dev/iommu. A failing step does not stop the others.
  const release = (): void =>
    releaseAll(
      [...handedOut.filter((device) => !device.isClosed).map((device) => () => device.detach()), ...bound.map((device) => () => device.close()), () => context.close()],
      'closing the iommufd context',
      'smmu',
    );
  let ioas: number;
  let reserved: ReservedRange[];
  // IOAS_IOVA_RANGES depends only on the reserved regions of the attached devices (ALLOW_IOVAS does
  // not change it), and devices attach only here: read it once, at open.
  let iovaRanges: IovaRanges;
  try {
    ioas = context.allocateIoas();
    for (const address of addresses) {
      const cdev = sysfs.deviceCdev(address);
      if (cdev === undefined) {
        throw new IoasError('backend-unavailable', `${address} has no VFIO cdev (/sys/bus/pci/devices/${address}/vfio-dev): the kernel lacks CONFIG_VFIO_DEVICE_CDEV or the device is not bound to vfio-pci`, {
          backend: 'smmu',
          operation: 'open',
        });
      }
      const device = context.bindDevice(`/dev/vfio/devices/${cdev}`, address);
      bound.push(device);
      device.attach(ioas);
    }
    const groups = [...new Set(addresses.map((address) => sysfs.deviceGroup(address)!))];
    reserved = groups.flatMap((id) => sysfs.reservedRegions(id));
    iovaRanges = context.iovaRanges(ioas);
  } catch (error) {
    abandon(release, error, 'smmu');
  }
  const entry: OpenContainer = {
    devices: addresses,
    openDevice: (address) => {
      // The bound cdev fd is the device fd; the caller gets it, and closing it unbinds.
      const index = bound.findIndex((device) => device.name === address);
      if (index < 0) throw new IoasError('not-found', `${address} is not in this container`, { backend: 'smmu' });
      const device = bound.splice(index, 1)[0]!;
      handedOut.push(device);
      return device;
    },
  };
  registry.add(entry);
  let closed = false;
  const ranges = (): IovaRanges => iovaRanges;
  return {
    capabilities: {
      model: 'paged',
      windows: 'kernel-allow-list',
      msi: msiModel(reserved),
      partialUnmap: false,
      mappingBudget: null,
      settableGeometry: false,
    },
    doGetGeometry: (): Geometry => {
      const { ranges: usable, alignment } = ranges();
      return { aperture: hull(usable, FALLBACK_APERTURE), ioPageSizes: alignment > 0x1000n ? alignment : 0x1000n, ranges: [...usable] };
    },
    doGetReserved: () => [...reserved, ...kernelHoles(ranges().ranges, reserved)],
    doMap: (call) => void context.map(ioas, call.memory.address, call.memory.length, call.iova.start, call.access),
    doUnmap: (range) => context.unmap(ioas, range.start, rangeSize(range)),
    doSetAllowedRanges: (ranges) => context.allowIovas(ioas, ranges),
    doClose: () => {
      if (closed) return;
      closed = true;
      registry.delete(entry);
      release();
    },
  };
}
