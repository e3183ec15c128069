import {
  BTreeMap,
  dirtyBitmapBytes,
  ERRNO,
  hex,
  IoasError,
  rangeSize,
  subtractRanges,
  U64_MAX,
  type AttachPreview,
  type DirtyReadCall,
  type DirtyTracking,
  type BackendHandleV1,
  type BackendV1,
  type Capabilities,
  type Geometry,
  type IovaRange,
  type Members,
  type MsiModel,
  type OpenRequest,
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
  iommufdUapi,
  vfioUapi,
  type DirtyBitmapTarget,
  type HwInfo,
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
  /**
   * iommufd: when the dirty-tracking HWPT is made (docs/kernel-rules.md#a-dirty-tracking-hwpt).
   * `on-start` (default): at the first `container.dirty.start()`, which then moves every device
   * onto it. `at-open`: when the container opens, if every device's IOMMU can track, so that the
   * devices never use the IOAS's automatic domain and `start()` is one ioctl (QEMU allocates its
   * HWPT at attach the same way). Ignored on type1 and where the IOMMU cannot track.
   */
  readonly dirtyHwpt?: 'on-start' | 'at-open';
}

/** The backend, with access to the devices of its open containers. */
export interface SmmuBackend extends BackendV1 {
  /**
   * A device fd for a device of an open container: through its group on type1, the bound cdev on
   * iommufd. The caller closes it (on iommufd, closing it unbinds the device from the container),
   * before the container: on type1 an open device fd keeps its group, and so the container's
   * mappings, alive in the kernel until it closes. On iommufd, closing the container detaches a
   * device still open (VFIO_DEVICE_DETACH_IOMMUFD_PT), so that its DMA stops with the container.
   * While the fd is open, `container.detach()` of its device (or group) is refused with `in-use`:
   * close it first. On iommufd the device then stays a member, unbound, until that detach.
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
  if (options.dirtyHwpt !== undefined && options.dirtyHwpt !== 'on-start' && options.dirtyHwpt !== 'at-open') {
    throw new IoasError('invalid-argument', `smmu(): dirtyHwpt must be on-start or at-open, not ${typeof options.dirtyHwpt === 'string' ? options.dirtyHwpt : kind(options.dirtyHwpt)}`);
  }
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
      const resolution = resolveRequest(sysfs, request, 'open');
      // A group brings every member bound to vfio-pci (on iommufd too: one iommufd owns a group's DMA).
      const devices = new Set([...resolution.devices, ...[...resolution.groups.values()].flatMap((group) => group.bound)]);
      const useIommufd =
        requested === 'iommufd' || (requested === 'auto' && syscalls.exists('/dev/iommu') && [...devices].every((address) => sysfs.deviceCdev(address) !== undefined));
      const handle = useIommufd ? openIommufd(ioctls, sysfs, [...devices], resolution, open, options.dirtyHwpt ?? 'on-start') : openType1(ioctls, sysfs, [...resolution.groups.keys()], fallback, open);
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

/** Runs `undo` on every item, going on past failures: the items it failed for, and why. */
function undoEach<T>(items: readonly T[], undo: (item: T) => void): { lost: T[]; undoErrors: unknown[] } {
  const lost: T[] = [];
  const undoErrors: unknown[] = [];
  for (const item of items) {
    try {
      undo(item);
    } catch (undoError) {
      lost.push(item);
      undoErrors.push(undoError);
    }
  }
  return { lost, undoErrors };
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

/** Where an error arose: the backend, and the operation when the backend knows it (core fills it in otherwise). */
function where(operation: string | undefined): { backend: string; operation?: string } {
  return operation === undefined ? { backend: 'smmu' } : { backend: 'smmu', operation };
}

/** A group's member devices; `not-found` naming the group when it does not exist. */
function groupMembers(sysfs: Sysfs, group: number, operation?: string): string[] {
  try {
    return sysfs.groupDevices(group);
  } catch (error) {
    if (IoasError.isInstance(error) && error.code === 'not-found') {
      throw new IoasError('not-found', `there is no IOMMU group ${group} (/sys/kernel/iommu_groups/${group} does not exist)`, { ...where(operation), cause: error });
    }
    throw error;
  }
}

/** A group as sysfs shows it: every member, and the members bound to vfio-pci. */
interface GroupMembers {
  /** Every member device (what `/sys/kernel/iommu_groups/<N>/devices` lists), sorted. */
  readonly members: readonly string[];
  /** The members bound to vfio-pci: at least one, or `/dev/vfio/<N>` does not exist. */
  readonly bound: readonly string[];
}

/** What a request names, as sysfs shows it now. */
interface Resolution {
  /** Each group named, then each group a named device is in. */
  readonly groups: ReadonlyMap<number, GroupMembers>;
  /** The devices named, then every member bound to vfio-pci of each group named. */
  readonly devices: ReadonlySet<string>;
}

/**
 * Resolves a request against sysfs, reading only: `not-found` for a group or device that does not
 * exist or a group with no member bound to vfio-pci, `backend-unavailable` for a device with no
 * IOMMU group. What open() refuses, attach and detach refuse in the same words.
 */
function resolveRequest(sysfs: Sysfs, request: OpenRequest, operation?: string): Resolution {
  const devices = new Set<string>();
  const ids = new Set(request.groups);
  for (const address of request.devices) {
    if (!sysfs.hasDevice(address)) throw new IoasError('not-found', `there is no PCI device ${address} (/sys/bus/pci/devices/${address} does not exist)`, where(operation));
    const group = sysfs.deviceGroup(address);
    if (group === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: the IOMMU is off, or (arm64) no driver is bound yet`, where(operation));
    ids.add(group);
    devices.add(address);
  }
  const groups = new Map<number, GroupMembers>();
  for (const id of ids) {
    const members = groupMembers(sysfs, id, operation);
    const bound = members.filter((address) => sysfs.deviceDriver(address) === 'vfio-pci');
    if (bound.length === 0) {
      throw new IoasError('not-found', `IOMMU group ${id} has no member bound to vfio-pci, so /dev/vfio/${id} does not exist: bind ${members.join(', ') || 'its devices'} to vfio-pci first`, where(operation));
    }
    groups.set(id, { members, bound });
  }
  for (const id of request.groups) for (const address of groups.get(id)!.bound) devices.add(address);
  return { groups, devices };
}

/** `not-viable` naming what owns DMA in the group, unless the kernel says the group is viable. */
function checkViable(sysfs: Sysfs, group: VfioGroup, operation?: string): void {
  if (group.status().viable) return;
  throw new IoasError('not-viable', `IOMMU group ${group.id} is not viable: ${describeOwner(sysfs, group.id) || 'a member is bound to a driver that owns DMA'}; bind every member to vfio-pci`, where(operation));
}

/** `backend-unavailable` when a device has no VFIO cdev to bind to iommufd; else the cdev's name. */
function requireCdev(sysfs: Sysfs, address: string, operation?: string): string {
  const cdev = sysfs.deviceCdev(address);
  if (cdev !== undefined) return cdev;
  throw new IoasError('backend-unavailable', `${address} has no VFIO cdev (/sys/bus/pci/devices/${address}/vfio-dev): the kernel lacks CONFIG_VFIO_DEVICE_CDEV or the device is not bound to vfio-pci`, where(operation));
}

/**
 * Refuses a detach while a device fd the caller got from openDevice() is open for a leaving device:
 * the SDK does not close it behind the caller's back (the caller may still be driving the device).
 */
function refuseOpenDevices(open: readonly VfioDevice[], kernelReason: string): void {
  if (open.length === 0) return;
  const names = open.map((device) => device.name).join(', ');
  throw new IoasError(
    'in-use',
    `the device fd of ${names} that openDevice() handed out is still open: close it first (the SDK does not close it for you, since the caller may still be driving the device; ${kernelReason})`,
    { backend: 'smmu' },
  );
}

const byNumber = (a: number, b: number): number => a - b;

/** Runs undo steps, each even after another fails: they release fds, and the failure being undone is the one to report. */
function undoAll(steps: readonly (() => void)[], what: string): void {
  try {
    releaseAll(steps, what, 'smmu');
  } catch {
    // Every step ran and every fd was released (releaseAll); the caller throws the original failure.
  }
}

// --- dirty-page tracking (docs/kernel-rules.md#dirty-page-tracking) ---------------------------------

type DirtyMethods = Pick<BackendHandleV1, 'doDirtyStart' | 'doDirtyStop' | 'doDirtyRead' | 'doDirtyUnmap'>;

/** The bytes of `call.bitmap` the kernel fills for the whole range (DIRTY_BITMAP_BYTES of its pages). */
function bitmapTarget(call: DirtyReadCall): DirtyBitmapTarget {
  return { bytes: call.bitmap, length: dirtyBitmapBytes(Number(rangeSize(call.iova) / call.pageSize)) };
}

/**
 * type1's dirty tracking, from the MIGRATION capability of GET_INFO. vfio_iommu_migration_build_caps()
 * offers the smallest IO page size only (and vfio_iommu_type1_dirty_pages() takes no other) and
 * DIRTY_BITMAP_SIZE_MAX; with vfio-pci, which pins no pages, update_user_bitmap() marks every mapped
 * page dirty on every read (num_non_pinned_groups): pessimistic. GET_BITMAP always clears.
 */
function type1DirtyTracking(info: Type1Info): DirtyTracking {
  const migration = info.migration;
  if (migration === undefined) {
    return { supported: false, reason: "VFIO_IOMMU_GET_INFO has no MIGRATION capability: this kernel's VFIO type1 cannot log dirty pages (VFIO_IOMMU_DIRTY_PAGES came in Linux 5.8)" };
  }
  const smallest = migration.pageSizes & -migration.pageSizes;
  if (smallest === 0n) return { supported: false, reason: 'the MIGRATION capability of VFIO_IOMMU_GET_INFO offers no page size for dirty bitmaps' };
  return { supported: true, pageSizes: smallest, maxBitmapBytes: migration.maxBitmapBytes, precision: 'pessimistic', readWithoutClear: false };
}

/** type1's dirty operations: one ioctl each, so each is all or nothing in the kernel. */
function type1Dirty(container: VfioContainer): DirtyMethods {
  return {
    // START allocates a bitmap per mapping, freeing them all if one fails (vfio_dma_bitmap_alloc_all()).
    doDirtyStart: () => container.startDirtyLogging(),
    doDirtyStop: () => container.stopDirtyLogging(),
    // A range may hold holes but not cut a mapping (vfio_iova_dirty_bitmap(): EINVAL); core checks that.
    // update_user_bitmap() writes every word of each mapping's bits (docs/kernel-rules.md#type1-dirty-bitmap-words):
    // where the mappings cover the range, an earlier read's bytes (call.zeroed false) are all overwritten.
    doDirtyRead: (call) => container.dirtyBitmap(call.iova.start, rangeSize(call.iova), call.pageSize, bitmapTarget(call)),
    // The bits of each mapping are copied before it goes (vfio_dma_do_unmap() calls update_user_bitmap()).
    doDirtyUnmap: (call) => container.unmapDmaDirty(call.iova.start, rangeSize(call.iova), call.pageSize, bitmapTarget(call)),
  };
}

/** Every power of two from `smallest` up: the page sizes iommufd_check_iova_range() lets a dirty bitmap use. */
function powersFrom(smallest: bigint): bigint {
  return ((1n << 64n) - 1n) & ~(smallest - 1n);
}

const HW_INFO_TYPES: Record<number, string> = { [iommufdUapi.IOMMU_HW_INFO_TYPE_NONE]: 'a driver reporting no hardware info', [iommufdUapi.IOMMU_HW_INFO_TYPE_INTEL_VTD]: 'Intel VT-d' };

/**
 * Why `device`'s IOMMU cannot track dirty pages, or undefined when it can: IOMMU_GET_HW_INFO's
 * IOMMU_HW_CAP_DIRTY_TRACKING (iommufd_get_hw_info() sets it when the driver reports
 * IOMMU_CAP_DIRTY_TRACKING: VT-d with second-stage access/dirty support in scalable mode, SMMUv3 with
 * hardware dirty-state updates on a coherent SMMU). A kernel without GET_HW_INFO (ENOTTY) is a reason
 * too; any other failure is thrown.
 */
function dirtyUnsupportedReason(context: IommufdContext, device: IommufdDevice): string | undefined {
  let info: HwInfo;
  try {
    info = context.hwInfo(device.deviceId);
  } catch (error) {
    if (IoasError.isInstance(error) && error.errno === ERRNO.ENOTTY) return `the kernel has no IOMMU_GET_HW_INFO (Linux before 6.6), so the IOMMU of ${device.name} cannot be asked for dirty tracking`;
    throw error;
  }
  if ((info.capabilities & BigInt(iommufdUapi.IOMMU_HW_CAP_DIRTY_TRACKING)) !== 0n) return undefined;
  const kind = HW_INFO_TYPES[info.dataType] ?? `hardware info type ${info.dataType}`;
  return `the IOMMU of ${device.name} (${kind}) cannot track dirty pages: IOMMU_GET_HW_INFO reports no IOMMU_HW_CAP_DIRTY_TRACKING (VT-d needs second-stage access/dirty bits in scalable mode, SMMUv3 hardware dirty-state updates; kernels before 6.7 report none)`;
}

/**
 * ORs each set bit `index` of the first `bits` bits of `source` into `target` at bit
 * `floor((offset + index) / ratio)`: with ratio 1, a run whose first bit is not on a u64 boundary
 * (`offset` its bit); with ratio > 1, small pages folded into large ones, a large page dirty when any
 * small page in it is.
 */
function orBitsScaled(target: Uint8Array, offset: number, ratio: number, source: Uint8Array, bits: number): void {
  for (let byte = 0; byte * 8 < bits; byte++) {
    let value = source[byte]!;
    while (value !== 0) {
      const bit = 31 - Math.clz32(value & -value);
      value &= value - 1;
      const index = byte * 8 + bit;
      if (index >= bits) break;
      const position = Math.floor((offset + index) / ratio);
      target[position >>> 3]! |= 1 << (position & 7);
    }
  }
}

function openType1(ioctls: VfioIoctls, sysfs: Sysfs, groupIds: number[], fallback: IovaRange, registry: Set<OpenContainer>): BackendHandleV1 {
  const container = VfioContainer.open(ioctls);
  /** The groups in the container, their fds open (closing one takes the group out). */
  const groups: VfioGroup[] = [];
  /** Each group's members and reserved regions, read from sysfs when it joined, in joining order. */
  const joined = new Map<number, { readonly devices: readonly string[]; readonly reserved: readonly ReservedRange[] }>();
  /** Device fds openDevice() handed out: the caller's to close; a group leaves only once its are closed. */
  let handedOut: VfioDevice[] = [];
  const release = (): void => releaseContainer(groups, container, 'closing the type1 container', 'smmu');
  let capabilities: Capabilities;
  // GET_INFO is read after the last group of open is attached, and again after every attach or
  // detach: only a group joining or leaving changes the page sizes or the ranges (nothing else
  // this handle does), and the mapping budget is fixed for the handle's life, so geometry and
  // reserved answer from the latest reading.
  let info: Type1Info;
  try {
    if (!container.checkExtension(vfioUapi.VFIO_TYPE1v2_IOMMU)) {
      throw new IoasError('backend-unavailable', 'the kernel offers no VFIO type1v2 IOMMU (CHECK_EXTENSION(3) is 0)', { backend: 'smmu', operation: 'open' });
    }
    for (const id of groupIds) {
      const group = VfioGroup.open(ioctls, id);
      groups.push(group);
      checkViable(sysfs, group, 'open');
      group.setContainer(container);
    }
    container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
    const reserved = groupIds.map((id) => sysfs.reservedRegions(id));
    info = container.info();
    capabilities = {
      model: 'paged',
      windows: 'sdk',
      msi: msiModel(reserved.flat()),
      partialUnmap: false,
      // DMA_AVAIL (5.10+) is what is left; without it, the module's default dma_entry_limit.
      mappingBudget: info.dmaAvailable ?? 65535,
      settableGeometry: false,
      hotPlug: true,
      dirtyTracking: type1DirtyTracking(info),
    };
    groupIds.forEach((id, index) => joined.set(id, { devices: sysfs.groupDevices(id), reserved: reserved[index]! }));
  } catch (error) {
    abandon(release, error, 'smmu');
  }
  const devices = (): string[] => [...joined.values()].flatMap((group) => group.devices);
  const reserved = (): ReservedRange[] => [...joined.values()].flatMap((group) => group.reserved);
  const entry: OpenContainer = {
    get devices() {
      return devices();
    },
    openDevice: (address) => {
      const group = groups.find((candidate) => joined.get(candidate.id)?.devices.includes(address));
      if (group === undefined) throw new IoasError('not-found', `${address} is not in this container`, { backend: 'smmu' });
      const device = new VfioDevice(ioctls, group.deviceFd(address), address);
      handedOut = [...handedOut.filter((open) => !open.isClosed), device];
      return device;
    },
  };
  registry.add(entry);
  let closed = false;
  const mapFlags = (read: boolean, write: boolean) => (read ? vfioUapi.VFIO_DMA_MAP_FLAG_READ : 0) | (write ? vfioUapi.VFIO_DMA_MAP_FLAG_WRITE : 0);
  /** Forgets groups that left: out of the container, their fds closed (close(2) releases an fd whatever it answers). */
  const forget = (leaving: readonly VfioGroup[]): void => {
    for (const group of leaving) {
      groups.splice(groups.indexOf(group), 1);
      joined.delete(group.id);
      try {
        group.close();
      } catch {
        // The fd is released and the group out of the container either way: the detach is done.
      }
    }
  };
  return {
    capabilities,
    doGetGeometry: (): Geometry => {
      const geometry: Geometry = { aperture: hull(info.ranges, fallback), ioPageSizes: info.ioPageSizes ?? 0x1000n };
      return info.ranges === undefined ? { ...geometry, ranges: [fallback] } : { ...geometry, ranges: [...info.ranges] };
    },
    doGetReserved: () => {
      const regions = reserved();
      return [...regions, ...kernelHoles(info.ranges ?? [], regions)];
    },
    doMap: (call) => container.mapDma(call.memory.address, call.iova.start, call.memory.length, mapFlags(call.access.read, call.access.write)),
    doUnmap: (range) => container.unmapDma(range.start, rangeSize(range)),
    ...(capabilities.dirtyTracking?.supported === true ? type1Dirty(container) : {}),
    doMembers: (): Members => ({ groups: [...joined.keys()].sort(byNumber), devices: devices().sort() }),
    doResolveMembers: (request): Members => {
      // type1 attaches whole groups: a device brings its group, and a group all its members.
      const { groups: resolved } = resolveRequest(sysfs, request);
      const ids = [...resolved.keys()].sort(byNumber);
      return { groups: ids, devices: ids.flatMap((id) => resolved.get(id)!.members).sort() };
    },
    // What sysfs tells beforehand: the newcomers' reserved regions. Not their aperture: type1 shows
    // it only in GET_INFO, after they join (a conflict with it is the kernel's EINVAL, typed).
    doPreviewAttach: (members): AttachPreview => ({ reserved: members.groups.flatMap((id) => sysfs.reservedRegions(id)) }),
    doAttach: (members) => {
      // Read before the kernel is asked: a failure here changes nothing.
      const joining = members.groups.map((id) => ({ id, devices: sysfs.groupDevices(id), reserved: sysfs.reservedRegions(id) }));
      const opened: VfioGroup[] = [];
      let reread: Type1Info;
      try {
        for (const { id } of joining) {
          const group = VfioGroup.open(ioctls, id);
          opened.push(group);
          checkViable(sysfs, group);
          // The container has its IOMMU: the kernel attaches the group to it at once, mappings kept,
          // refusing a mapping in the group's reserved regions or outside its aperture (EINVAL,
          // vfio_iommu_type1_attach_group(); docs/kernel-rules.md#attaching-a-group-to-a-container).
          group.setContainer(container);
        }
        // The ranges may shrink: the newcomers' reserved regions and aperture now count.
        reread = container.info();
      } catch (error) {
        // All or nothing: every group this call opened leaves the container and its fd closes.
        undoAll(
          opened.map((group) => () => {
            try {
              if (group.inContainer) group.unsetContainer();
            } finally {
              group.close();
            }
          }),
          'undoing the attach',
        );
        throw asIoasError(error, 'attach', 'smmu');
      }
      groups.push(...opened);
      for (const { id, devices: members, reserved: regions } of joining) joined.set(id, { devices: members, reserved: regions });
      info = reread;
    },
    doDetach: (members) => {
      const leaving = groups.filter((group) => members.groups.includes(group.id));
      const leavingDevices = new Set(leaving.flatMap((group) => joined.get(group.id)!.devices));
      handedOut = handedOut.filter((device) => !device.isClosed);
      refuseOpenDevices(
        handedOut.filter((device) => leavingDevices.has(device.name)),
        'while it is open the kernel keeps its group, and the container\'s mappings it reaches, in the container: VFIO_GROUP_UNSET_CONTAINER is EBUSY',
      );
      const unset: VfioGroup[] = [];
      let reread: Type1Info;
      try {
        for (const group of leaving) {
          group.unsetContainer();
          unset.push(group);
        }
        // The ranges may grow: the groups that left take their reserved regions and aperture along.
        reread = container.info();
      } catch (error) {
        // All or nothing: the groups taken out go back in (their fds are still open).
        const { lost, undoErrors } = undoEach(unset, (group) => group.setContainer(container));
        const failure = asIoasError(error, 'detach', 'smmu');
        if (lost.length === 0) throw failure;
        // They stay out: say so, and keep the record true to the kernel.
        forget(lost);
        try {
          info = container.info();
        } catch {
          // The previous reading stands; the error below says the state is not what it was.
        }
        throw new IoasError('rollback-failed', `${failure.message}; undoing it failed too: IOMMU group ${lost.map((group) => group.id).join(', ')} could not go back into the container and has left it`, {
          backend: 'smmu',
          cause: new AggregateError([failure, ...undoErrors]),
        });
      }
      forget(leaving);
      info = reread;
    },
    doClose: () => {
      if (closed) return;
      closed = true;
      registry.delete(entry);
      release();
    },
  };
}

function openIommufd(ioctls: VfioIoctls, sysfs: Sysfs, addresses: string[], resolution: Resolution, registry: Set<OpenContainer>, dirtyHwpt: 'on-start' | 'at-open'): BackendHandleV1 {
  const context = IommufdContext.open(ioctls);
  /** Device fds this handle holds, each bound and attached to the IOAS. */
  const bound: IommufdDevice[] = [];
  /**
   * Device fds given to the caller by openDevice: theirs to close (closing one unbinds the device,
   * which leaves the IOAS). A device stays a member until detach, which then has nothing left to
   * ask the kernel for it.
   */
  const handedOut: IommufdDevice[] = [];
  /** The group of every member device. */
  const groupOf = new Map<string, number>();
  /** Each member group's reserved regions, and its members bound to vfio-pci (all of them make the group whole), from sysfs. */
  const groupInfo = new Map<number, { readonly bound: readonly string[]; readonly reserved: readonly ReservedRange[] }>();
  // A device fd the caller still holds keeps the iommufd context, and so the IOAS and its mappings,
  // alive after /dev/iommu closes (the bind holds a reference: iommufd_ctx_from_fd() takes the
  // file): detach it first, so that DMA stops with the container. When a detach fails, the device
  // stays attached until the caller closes it: the IOAS is emptied (IOAS_UNMAP of everything)
  // so that its DMA stops all the same. Then the device fds this handle holds (closing one unbinds
  // and detaches it), then /dev/iommu. A failing step does not stop the others.
  const release = (): void => {
    let stillAttached = false;
    const detach = (device: IommufdDevice) => () => {
      try {
        device.detach();
      } catch (error) {
        stillAttached = true;
        throw error;
      }
    };
    releaseAll(
      [
        ...handedOut.filter((device) => !device.isClosed).map(detach),
        // IOVA 0 and length U64_MAX unmap everything (iommufd_ioas_unmap()).
        () => void (stillAttached && context.unmap(ioas, 0n, U64_MAX)),
        ...bound.map((device) => () => device.close()),
        () => context.close(),
      ],
      'closing the iommufd context',
      'smmu',
    );
  };
  let ioas: number;
  let msi: MsiModel;
  let dirtyTracking: DirtyTracking;
  /** Each member's answer to IOMMU_GET_HW_INFO: why its IOMMU cannot track dirty pages, undefined when it can. */
  const dirtyReasons = new Map<string, string | undefined>();
  // IOAS_IOVA_RANGES depends only on the attached devices (their reserved regions and apertures;
  // ALLOW_IOVAS does not change it): read at open, and again after every attach or detach.
  let iovaRanges: IovaRanges;
  try {
    ioas = context.allocateIoas();
    for (const address of addresses) {
      const cdev = requireCdev(sysfs, address, 'open');
      const device = context.bindDevice(`/dev/vfio/devices/${cdev}`, address);
      bound.push(device);
      device.attach(ioas);
    }
    for (const [id, group] of resolution.groups) for (const address of group.members) if (addresses.includes(address)) groupOf.set(address, id);
    for (const id of new Set(groupOf.values())) groupInfo.set(id, { bound: resolution.groups.get(id)!.bound, reserved: sysfs.reservedRegions(id) });
    msi = msiModel([...groupInfo.values()].flatMap((group) => group.reserved));
    iovaRanges = context.iovaRanges(ioas);
    // Dirty tracking needs every device's IOMMU to offer it: IOMMU_HWPT_ALLOC_DIRTY_TRACKING makes
    // the kernel refuse an attach of any other (iommufd_hwpt_paging_alloc(), EOPNOTSUPP at alloc;
    // the driver's attach, EINVAL).
    for (const device of bound) dirtyReasons.set(device.name, dirtyUnsupportedReason(context, device));
    const lacking = [...dirtyReasons.values()].find((reason) => reason !== undefined);
    dirtyTracking =
      lacking === undefined
        ? // iommufd_check_iova_range(): any page size the range is aligned to, from the IOAS's alignment up.
          { supported: true, pageSizes: powersFrom(iovaRanges.alignment > 0x1000n ? iovaRanges.alignment : 0x1000n), maxBitmapBytes: null, precision: 'precise', readWithoutClear: true }
        : { supported: false, reason: lacking };
  } catch (error) {
    abandon(release, error, 'smmu');
  }
  const memberDevices = (): IommufdDevice[] => [...bound, ...handedOut];
  const reserved = (): ReservedRange[] => [...new Set(memberDevices().map((device) => groupOf.get(device.name)!))].flatMap((id) => groupInfo.get(id)!.reserved);
  /** The groups every member bound to vfio-pci of which is among `devices`: on iommufd a group means those. */
  const wholeGroups = (devices: readonly string[], known: ReadonlyMap<number, { readonly bound: readonly string[] }>, of: (address: string) => number | undefined): number[] =>
    [...new Set(devices.map(of))]
      .filter((id): id is number => id !== undefined && known.get(id)?.bound.every((address) => devices.includes(address)) === true)
      .sort(byNumber);
  const entry: OpenContainer = {
    get devices() {
      return memberDevices().map((device) => device.name);
    },
    openDevice: (address) => {
      // The bound cdev fd is the device fd; the caller gets it, and closing it unbinds.
      const index = bound.findIndex((device) => device.name === address);
      if (index < 0) {
        const given = handedOut.some((device) => device.name === address);
        throw new IoasError('not-found', given ? `the device fd of ${address} was handed out already (on iommufd the bound cdev is the one device fd)` : `${address} is not in this container`, { backend: 'smmu' });
      }
      const device = bound.splice(index, 1)[0]!;
      handedOut.push(device);
      return device;
    },
  };
  registry.add(entry);
  let closed = false;
  const ranges = (): IovaRanges => iovaRanges;
  /** Forgets devices that left; closes the fds this handle holds (close(2) releases an fd whatever it answers). */
  const forget = (leaving: readonly IommufdDevice[]): void => {
    for (const device of leaving) {
      const list = bound.includes(device) ? bound : handedOut;
      list.splice(list.indexOf(device), 1);
      onHwpt.delete(device);
      dirtyReasons.delete(device.name);
      const id = groupOf.get(device.name)!;
      groupOf.delete(device.name);
      if (![...groupOf.values()].includes(id)) groupInfo.delete(id);
      if (list === bound) {
        try {
          device.close();
        } catch {
          // The fd is released and the device out of the IOAS either way: the detach is done.
        }
      }
    }
  };

  // Dirty tracking (docs/kernel-rules.md#dirty-page-tracking). The IOAS's own (auto) domain cannot
  // track: start() allocates a HWPT with IOMMU_HWPT_ALLOC_DIRTY_TRACKING on the IOAS (the kernel
  // fills it with every mapping, iopt_table_add_domain()), moves every device onto it (ATTACH_PT
  // again is iommufd_device_replace(): no window without translation, and the auto domain goes when
  // its last device leaves) and enables tracking. stop() only disables it: the devices stay on the
  // HWPT, as QEMU keeps its dirty-tracking HWPT for a device's life. Going back would build a new
  // auto domain with every mapping (it can fail with ENOMEM half-way through a stop) for nothing:
  // translation is the same IOAS either way, and the next start() is then one ioctl.
  /** The dirty-tracking HWPT, once start() made one; it lives until the iommufd closes. */
  let hwpt: number | undefined;
  /** Devices attached to the HWPT rather than to the IOAS's auto domain. */
  const onHwpt = new Set<IommufdDevice>();
  /** Where a device is attached: the id to attach it to again. */
  const ptOf = (device: IommufdDevice): number => (hwpt !== undefined && onHwpt.has(device) ? hwpt : ioas);
  /**
   * The IOAS's areas (first IOVA to last), kept only when dirty tracking is offered: GET_DIRTY_BITMAP
   * needs its range mapped without a hole (iopt_area_contig_done(), EINVAL), so a read is split
   * into the runs of contiguous areas it covers.
   */
  const areas = dirtyTracking.supported ? new BTreeMap<bigint>() : undefined;
  const forgetAreas = (range: IovaRange): void => {
    if (areas === undefined) return;
    const inside: bigint[] = [];
    areas.forEachFrom(range.start, (start) => {
      if (start > range.last) return false;
      inside.push(start);
      return true;
    });
    for (const start of inside) areas.delete(start);
  };
  /** The runs of contiguous areas inside `range` (core has checked that it cuts none and holds one). */
  const runsIn = (range: IovaRange): IovaRange[] => {
    const runs: { start: bigint; last: bigint }[] = [];
    areas!.forEachFrom(range.start, (start, last) => {
      if (start > range.last) return false;
      const previous = runs[runs.length - 1];
      if (previous !== undefined && previous.last + 1n === start) previous.last = last;
      else runs.push({ start, last });
      return true;
    });
    return runs;
  };
  /**
   * Reads the dirty bits of `run` into `call.bitmap` at its place: straight into it when the run
   * starts on a u64 word of the bitmap and is whole pages, else through a scratch bitmap (ORed in,
   * or folded from the smallest page size when the run does not fill its first or last page).
   */
  const readRun = (call: DirtyReadCall, run: IovaRange, clear: boolean): void => {
    const base = call.iova.start;
    const pageSize = call.pageSize;
    const length = rangeSize(run);
    if (run.start % pageSize === 0n && (run.last + 1n) % pageSize === 0n) {
      const pages = Number(length / pageSize);
      const at = Number((run.start - base) / pageSize);
      if (at % 64 === 0) {
        context.dirtyBitmap(hwpt!, run.start, length, pageSize, { bytes: call.bitmap, offset: at / 8, length: dirtyBitmapBytes(pages) }, clear);
        return;
      }
      const scratch = new Uint8Array(dirtyBitmapBytes(pages));
      context.dirtyBitmap(hwpt!, run.start, length, pageSize, { bytes: scratch, length: scratch.length }, clear);
      orBitsScaled(call.bitmap, at, 1, scratch, pages);
      return;
    }
    // A page of the read holds a hole: the kernel cannot read it whole, so read the run at the
    // smallest page size offered (areas are aligned to it) and mark a page dirty when any part is.
    const offered = (dirtyTracking as Extract<DirtyTracking, { supported: true }>).pageSizes;
    const small = offered & -offered;
    const pages = Number(length / small);
    const scratch = new Uint8Array(dirtyBitmapBytes(pages));
    context.dirtyBitmap(hwpt!, run.start, length, small, { bytes: scratch, length: scratch.length }, clear);
    // Small page i of the run lies in large page (run.start - base) / small + i, divided by large / small.
    orBitsScaled(call.bitmap, Number((run.start - base) / small), Number(pageSize / small), scratch, pages);
  };
  /**
   * A read of several runs that clears: first every run without clearing (a failure then changes
   * nothing), then every run clearing (adding what was written in between). Only an unexpected
   * failure in that second pass, after its first run, leaves bits read and lost; it says which.
   */
  const readRuns = (call: DirtyReadCall, runs: readonly IovaRange[], clear: boolean): void => {
    // GET_DIRTY_BITMAP ORs bits in: a reused bitmap starts from zeros.
    if (!call.zeroed) call.bitmap.fill(0);
    if (runs.length === 1 || !clear) {
      for (const run of runs) readRun(call, run, clear);
      return;
    }
    for (const run of runs) readRun(call, run, false);
    for (const [index, run] of runs.entries()) {
      try {
        readRun(call, run, true);
      } catch (error) {
        if (index === 0) throw error;
        const lost = runs.slice(0, index).map((cleared) => `${hex(cleared.start)}-${hex(cleared.last)}`);
        throw new IoasError('rollback-failed', `reading the dirty bitmap of ${hex(run.start)}-${hex(run.last)} failed after the bits of ${lost.join(', ')} were read and cleared: treat those pages as dirty`, {
          backend: 'smmu',
          cause: error,
        });
      }
    }
  };
  const dirty: DirtyMethods | undefined = !dirtyTracking.supported
    ? undefined
    : {
        doDirtyStart: () => {
          const live = memberDevices().filter((device) => !device.isClosed);
          // Devices that joined after open have not been asked yet.
          for (const device of live) {
            if (!dirtyReasons.has(device.name)) dirtyReasons.set(device.name, dirtyUnsupportedReason(context, device));
            const reason = dirtyReasons.get(device.name);
            if (reason !== undefined) throw new IoasError('unsupported', `${device.name} joined the container after it opened, and ${reason}`, { backend: 'smmu' });
          }
          if (live.length === 0) throw new IoasError('not-ready', 'no device of the container is bound any more (every device fd was closed): there is nothing to track', { backend: 'smmu' });
          const allocated = hwpt === undefined;
          let enabled = false;
          const moved: IommufdDevice[] = [];
          try {
            hwpt ??= context.allocateHwpt(live[0]!.deviceId, ioas, { dirtyTracking: true });
            // Enabled before any device moves (clearing stale dirty bits first, iopt_set_dirty_tracking();
            // the drivers apply a domain's tracking state to devices that attach later): then a
            // failing move finds the devices not yet moved still on their automatic domain, which
            // keeps it alive, and the moved ones go back to that same domain.
            context.setDirtyTracking(hwpt, true);
            enabled = true;
            for (const device of live) {
              if (onHwpt.has(device)) continue;
              device.attach(hwpt);
              moved.push(device);
              onHwpt.add(device);
            }
          } catch (error) {
            // All or nothing: the devices moved go back to the IOAS's domain, a HWPT made here goes,
            // one kept from an earlier start is disabled again.
            const failure = asIoasError(error, 'dirty.start', 'smmu');
            const { lost, undoErrors } = undoEach(moved, (device) => {
              device.attach(ioas);
              onHwpt.delete(device);
            });
            if (lost.length === 0 && hwpt !== undefined) {
              try {
                if (allocated) {
                  context.destroy(hwpt);
                  hwpt = undefined;
                } else if (enabled) {
                  context.setDirtyTracking(hwpt, false);
                }
              } catch (undoError) {
                undoErrors.push(undoError);
              }
            }
            if (undoErrors.length === 0) throw failure;
            const left = lost.length > 0 ? `${lost.map((device) => device.name).join(', ')} stayed on the dirty-tracking HWPT (translation is the same IOAS)` : allocated ? 'the HWPT it allocated could not be destroyed (no device is on it; the next start uses it)' : 'tracking could not be disabled again';
            throw new IoasError('rollback-failed', `${failure.message}; undoing it failed too: ${left}`, {
              backend: 'smmu',
              cause: new AggregateError([failure, ...undoErrors]),
            });
          }
        },
        doDirtyStop: () => context.setDirtyTracking(hwpt!, false),
        doDirtyRead: (call) => readRuns(call, runsIn(call.iova), call.clear),
        // iommufd has no unmap that returns the bitmap: read without clearing (the bits go with the
        // mappings; NO_CLEAR is meant for a read followed by an unmap, iommufd.h), then unmap. A
        // failing unmap leaves the bits set, so nothing is lost. Pages written between the two
        // calls are not reported: stop the device's DMA to the range first.
        doDirtyUnmap: (call) => {
          readRuns(call, runsIn(call.iova), false);
          const unmapped = context.unmap(ioas, call.iova.start, rangeSize(call.iova));
          forgetAreas(call.iova);
          return unmapped;
        },
      };
  if (dirtyHwpt === 'at-open' && dirty !== undefined) {
    // Every device straight onto the dirty-tracking HWPT (tracking off until start()): a failure
    // here fails the open, which closes everything.
    try {
      hwpt = context.allocateHwpt(bound[0]!.deviceId, ioas, { dirtyTracking: true });
      for (const device of bound) {
        device.attach(hwpt);
        onHwpt.add(device);
      }
    } catch (error) {
      registry.delete(entry);
      abandon(release, error, 'smmu');
    }
  }
  return {
    capabilities: {
      model: 'paged',
      windows: 'kernel-allow-list',
      msi,
      partialUnmap: false,
      mappingBudget: null,
      settableGeometry: false,
      hotPlug: true,
      dirtyTracking,
    },
    doGetGeometry: (): Geometry => {
      const { ranges: usable, alignment } = ranges();
      return { aperture: hull(usable, FALLBACK_APERTURE), ioPageSizes: alignment > 0x1000n ? alignment : 0x1000n, ranges: [...usable] };
    },
    doGetReserved: () => {
      const regions = reserved();
      return [...regions, ...kernelHoles(ranges().ranges, regions)];
    },
    doMap: (call) => {
      context.map(ioas, call.memory.address, call.memory.length, call.iova.start, call.access);
      areas?.set(call.iova.start, call.iova.last);
    },
    doUnmap: (range) => {
      const unmapped = context.unmap(ioas, range.start, rangeSize(range));
      forgetAreas(range);
      return unmapped;
    },
    ...(dirty === undefined ? {} : dirty),
    doSetAllowedRanges: (ranges) => context.allowIovas(ioas, ranges),
    doMembers: (): Members => {
      const devices = memberDevices()
        .map((device) => device.name)
        .sort();
      return { groups: wholeGroups(devices, groupInfo, (address) => groupOf.get(address)), devices };
    },
    doResolveMembers: (request): Members => {
      // iommufd attaches devices: a group means its members bound to vfio-pci.
      const resolution = resolveRequest(sysfs, request);
      const devices = [...resolution.devices].sort();
      const of = (address: string): number | undefined => [...resolution.groups].find(([, group]) => group.members.includes(address))?.[0];
      return { groups: wholeGroups(devices, resolution.groups, of), devices };
    },
    // What sysfs tells beforehand: the newcomers' reserved regions. Not their aperture: the IOAS
    // shows it only in IOVA_RANGES, after they attach.
    doPreviewAttach: (members): AttachPreview => {
      const groups = new Set<number>();
      for (const address of members.devices) {
        const id = sysfs.deviceGroup(address);
        if (id === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: the IOMMU is off, or (arm64) no driver is bound yet`, { backend: 'smmu' });
        if (!groupInfo.has(id)) groups.add(id);
      }
      return { reserved: [...groups].flatMap((id) => sysfs.reservedRegions(id)) };
    },
    doAttach: (members) => {
      // Read before the kernel is asked: a failure here changes nothing.
      const joining = members.devices.map((address) => {
        const cdev = requireCdev(sysfs, address);
        const group = sysfs.deviceGroup(address);
        if (group === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: the IOMMU is off, or (arm64) no driver is bound yet`, { backend: 'smmu' });
        return { address, cdev, group };
      });
      const touched = new Map<number, { bound: string[]; reserved: ReservedRange[] }>();
      for (const { group: id } of joining) {
        if (touched.has(id)) continue;
        touched.set(id, { bound: groupMembers(sysfs, id).filter((address) => sysfs.deviceDriver(address) === 'vfio-pci'), reserved: sysfs.reservedRegions(id) });
      }
      const added: IommufdDevice[] = [];
      let reread: IovaRanges;
      try {
        for (const { address, cdev } of joining) {
          const device = context.bindDevice(`/dev/vfio/devices/${cdev}`, address);
          added.push(device);
          // The kernel refuses a mapping in the device's reserved regions (EADDRINUSE,
          // iopt_table_enforce_dev_resv_regions(); docs/kernel-rules.md#attaching-and-detaching-a-device).
          device.attach(ioas);
        }
        // The ranges may shrink: the newcomers' reserved regions and aperture now count.
        reread = context.iovaRanges(ioas);
      } catch (error) {
        // All or nothing: closing a cdev this call bound unbinds it, which detaches it.
        undoAll(
          added.map((device) => () => device.close()),
          'undoing the attach',
        );
        throw asIoasError(error, 'attach', 'smmu');
      }
      bound.push(...added);
      for (const { address, group } of joining) groupOf.set(address, group);
      for (const [id, group] of touched) groupInfo.set(id, group);
      iovaRanges = reread;
    },
    doDetach: (members) => {
      const leaving = memberDevices().filter((device) => members.devices.includes(device.name));
      refuseOpenDevices(
        leaving.filter((device) => handedOut.includes(device) && !device.isClosed),
        'closing it unbinds the device, which takes it out of the IOAS',
      );
      // A handed-out device whose fd the caller closed is unbound already: nothing to ask the kernel.
      const attached = leaving.filter((device) => bound.includes(device));
      const detached: IommufdDevice[] = [];
      let reread: IovaRanges;
      try {
        for (const device of attached) {
          device.detach();
          detached.push(device);
        }
        // The ranges may grow: the devices that left take their reserved regions and aperture along.
        reread = context.iovaRanges(ioas);
      } catch (error) {
        // All or nothing: the devices detached attach again (still bound: their fds are open).
        // Each goes back where it was: the IOAS's own domain, or the dirty-tracking HWPT.
        const { lost, undoErrors } = undoEach(detached, (device) => device.attach(ptOf(device)));
        const failure = asIoasError(error, 'detach', 'smmu');
        if (lost.length === 0) throw failure;
        // They stay out: say so, and keep the record true to the kernel.
        forget(lost);
        try {
          iovaRanges = context.iovaRanges(ioas);
        } catch {
          // The previous reading stands; the error below says the state is not what it was.
        }
        throw new IoasError('rollback-failed', `${failure.message}; undoing it failed too: ${lost.map((device) => device.name).join(', ')} could not attach again and has left the container`, {
          backend: 'smmu',
          cause: new AggregateError([failure, ...undoErrors]),
        });
      }
      forget(leaving);
      iovaRanges = reread;
    },
    doClose: () => {
      if (closed) return;
      closed = true;
      registry.delete(entry);
      release();
    },
  };
}
