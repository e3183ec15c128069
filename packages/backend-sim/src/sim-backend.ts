import {
  PAMU_CAPABILITIES,
  ERRNO,
  hex,
  IoasError,
  rangeSize,
  type AttachPreview,
  type BackendHandleV1,
  type BackendV1,
  type Capabilities,
  type DirtyReadCall,
  type DirtyTracking,
  type Geometry,
  type IovaRange,
  type Members,
  type OpenRequest,
  type ReservedRange,
} from '@ioas/core';
import { HWPT_ALLOC_FLAGS, HWPT_DIRTY_TRACKING_ENABLE, HWPT_GET_DIRTY_BITMAP_NO_CLEAR, IOAS_MAP_FLAGS, SimIommufdContext } from './iommufd.js';
import { KernelError, KernelOops } from './kernel-error.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import type { PlatformName, PlatformPreset } from './platforms.js';
import { backendOptionsSchema, checkOptions } from './options.js';
import { createSimulator, Simulator, type SimDevice, type SimGroup, type SimulatorOptions } from './simulator.js';
import { UserBitmap } from './user-bitmap.js';
import { DIRTY_PAGES_FLAGS, VFIO_EXTENSION, SimVfioContainer } from './vfio-container.js';

/** PAMU: no dirty tracking, and why. */
const PAMU_DIRTY: DirtyTracking = {
  supported: false,
  reason:
    "the PAMU SDK kernels' type-2 VFIO backend has no dirty-page ioctl (no VFIO_IOMMU_DIRTY_PAGES, no MIGRATION capability in any GET_INFO), and the PAMU grants windows without keeping dirty state",
};

/**
 * iommufd's GET_DIRTY_BITMAP page sizes: any power of two the range is aligned to, from the
 * IOMMU's smallest page (4 KiB, the io_pagetable's alignment) up (iommufd_check_iova_range()). The
 * kernel takes smaller ones too, but a 4 KiB leaf only ever sets all of their bits at once.
 */
const IOMMUFD_DIRTY_PAGE_SIZES = ((1n << 64n) - 1n) & ~0xfffn;

/** Why iommufd offers no dirty tracking on this simulated IOMMU. */
function iommufdNoDirtyReason(simulator: Simulator): string {
  const what =
    simulator.platform.name === 'x86-vtd'
      ? "this VT-d has no second-stage access/dirty bits (ECAP.SLADS is 0, as on QEMU's intel-iommu)"
      : "this SMMUv3 has no hardware dirty-state update (IDR0.HTTU without dirty, as on QEMU's smmuv3)";
  return (
    `iommufd tracks dirty pages only with the IOMMU's hardware dirty bits, and ${what}: the 6.12 kernel reports no IOMMU_HW_CAP_DIRTY_TRACKING ` +
    "and refuses IOMMU_HWPT_ALLOC_DIRTY_TRACKING with EOPNOTSUPP. Use the type1 interface (pessimistic tracking), or simulate hardware that has them with hardwareDirty: true"
  );
}


/** Options of {@link sim}. */
export interface SimBackendOptions extends Omit<SimulatorOptions, 'platform'> {
  /** The platform to simulate, when no `simulator` is given. */
  readonly platform?: PlatformName | PlatformPreset;
  /** An existing simulated machine to open containers on (to look inside it from a test). */
  readonly simulator?: Simulator;
  /** The kernel interface on paged platforms: VFIO type1v2 containers (default) or iommufd. */
  readonly interface?: 'type1' | 'iommufd';
}

/** The simulator's `Backend` face, with the simulated machine behind it. */
export interface SimBackend extends BackendV1 {
  /** The simulated machine: memory, devices, faults, interrupts. */
  readonly simulator: Simulator;
}

/**
 * A backend over the simulator: what a VMM author swaps in for `smmu()` or `pamu()` in tests. It
 * creates the simulated machine itself ({@link createSimulator} is for tests that drive that machine
 * without `Container`, or through a real backend and {@link simSyscalls}); pass `simulator` to open
 * containers on one you made, to look inside it.
 *
 * ```ts
 * const backend = sim({ platform: 'arm-smmuv3' });
 * using container = await Container.open({ backend, groups: [backend.simulator.vfioGroups()[0]!.id] });
 * ```
 *
 * @throws {IoasError} `invalid-argument` naming the option at fault (as {@link createSimulator}, plus
 *   `simulator` that is not one, an unknown `interface`, iommufd on the PAMU platform).
 */
export function sim(options: SimBackendOptions): SimBackend {
  checkOptions(backendOptions, options, 'sim()');
  const simulator =
    options.simulator ??
    (() => {
      if (options.platform === undefined) throw new IoasError('invalid-argument', 'sim(): give a platform (p4080, arm-smmuv3, x86-vtd) or a simulator', { operation: 'sim()' });
      const { simulator: _simulator, interface: _interface, ...simulatorOptions } = options;
      try {
        return createSimulator({ ...simulatorOptions, platform: options.platform });
      } catch (error) {
        if (IoasError.isInstance(error) && error.code === 'invalid-argument') {
          throw new IoasError('invalid-argument', error.message.replace(/^createSimulator\(\)/, 'sim()'), { operation: 'sim()', cause: error });
        }
        throw error;
      }
    })();
  const mode = simulator.platform.model === 'windowed' ? 'pamu' : (options.interface ?? 'type1');
  if (mode === 'pamu' && options.interface === 'iommufd') {
    throw new IoasError('invalid-argument', 'sim(): iommufd is for paged platforms; the PAMU platform speaks the SDK type-2 VFIO only');
  }
  return {
    specificationVersion: 'v1',
    name: 'sim',
    simulator,
    probe: async () => ({ available: true, detail: `simulated ${simulator.platform.name} (${mode})` }),
    open: async (request) => {
      const groups = request.groups.map((id) => {
        const group = simulator.group(id);
        if (group === undefined) throw IoasError.fromErrno(ERRNO.ENOENT, 'open', `no IOMMU group ${id} (/dev/vfio/${id})`, { backend: 'sim' });
        return requireGroupFile(group);
      });
      const devices = request.devices.map((address) => {
        const device = kernel('open', () => simulator.device(address));
        // A device's cdev (/dev/vfio/devices/vfioX) exists only while vfio-pci holds it
        // (6.12 drivers/vfio/device_cdev.c, vfio_device_add()).
        if (mode === 'iommufd' && device.driver !== 'vfio-pci') {
          throw new IoasError('not-found', `${address} is not bound to vfio-pci, so it has no VFIO cdev (/dev/vfio/devices/vfioX): bind it to vfio-pci first`, {
            backend: 'sim',
            operation: 'open',
            ioctl: 'open',
            errno: ERRNO.ENOENT,
          });
        }
        return device;
      });
      return mode === 'iommufd' ? openIommufd(simulator, groups, devices) : openContainer(simulator, mode, groups, devices);
    },
  };
}

/**
 * The group, when its `/dev/vfio/N` exists: the char device exists only while a member is bound
 * to a vfio driver (6.12 drivers/vfio/group.c: vfio_group_find_or_alloc() creates it when vfio-pci
 * registers a device, vfio_device_remove_group() deletes it with the last one), so open() is
 * ENOENT otherwise: `not-found`, as backend-smmu answers
 * (docs/kernel-rules.md#a-groups-node-exists-only-with-a-vfio-member).
 */
function requireGroupFile(group: SimGroup): SimGroup {
  if (group.devices.some((device) => device.driver === 'vfio-pci')) return group;
  const members = group.devices.map((device) => device.address).join(', ');
  throw new IoasError('not-found', `IOMMU group ${group.id} has no member bound to vfio-pci, so /dev/vfio/${group.id} does not exist: bind ${members || 'its devices'} to vfio-pci first`, {
    backend: 'sim',
    operation: 'open',
    ioctl: 'open',
    errno: ERRNO.ENOENT,
  });
}

const backendOptions = backendOptionsSchema((value) => value instanceof Simulator);

/** Runs a simulated kernel call, turning its failure into the IoasError a real backend would throw. */
function kernel<T>(what: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (error instanceof KernelError) throw IoasError.fromErrno(error.errno, error.ioctl, what, { backend: 'sim', cause: error });
    if (error instanceof KernelOops) throw new IoasError('backend-contract', `${what}: ${error.message}`, { backend: 'sim', cause: error });
    throw error;
  }
}

function reservedOf(groups: Iterable<SimGroup>): ReservedRange[] {
  const result: ReservedRange[] = [];
  for (const group of groups) {
    for (const region of group.reserved) {
      result.push({ start: region.start, last: region.last, kind: region.kind, source: 'sysfs', origin: `/sys/kernel/iommu_groups/${group.id}/reserved_regions` });
    }
  }
  return result;
}

function hull(ranges: readonly IovaRange[], fallback: IovaRange): IovaRange {
  if (ranges.length === 0) return fallback;
  return { start: ranges[0]!.start, last: ranges[ranges.length - 1]!.last };
}

function groupsOfDevices(simulator: Simulator, groups: SimGroup[], devices: SimDevice[]): SimGroup[] {
  const all = new Set(groups);
  for (const device of devices) {
    if (device.group === undefined) throw IoasError.fromErrno(ERRNO.ENODEV, 'open', `${device.address} has no IOMMU group (bind it to vfio-pci first)`, { backend: 'sim' });
    all.add(requireGroupFile(simulator.group(device.group)!));
  }
  return [...all];
}

async function openContainer(simulator: Simulator, mode: 'type1' | 'pamu', groups: SimGroup[], devices: SimDevice[]): Promise<BackendHandleV1> {
  const members = groupsOfDevices(simulator, groups, devices);
  const container = new SimVfioContainer(simulator);
  const opened: SimGroup[] = [];
  const release = (): void => {
    container.close();
    for (const group of opened) group.opened = false;
  };
  try {
    return handleFor(simulator, mode, container, members, opened, release);
  } catch (error) {
    release();
    throw error;
  }
}

function handleFor(
  simulator: Simulator,
  mode: 'type1' | 'pamu',
  container: SimVfioContainer,
  members: SimGroup[],
  opened: SimGroup[],
  release: () => void,
): BackendHandleV1 {
  for (const group of members) {
    if (group.opened) throw IoasError.fromErrno(ERRNO.EBUSY, 'open', `/dev/vfio/${group.id} is already open`, { backend: 'sim' });
    // 6.12 drivers/vfio/group.c, vfio_group_fops_open(): EBUSY while a member's cdev is bound.
    if (group.cdevBound) throw IoasError.fromErrno(ERRNO.EBUSY, 'open', `a device of IOMMU group ${group.id} is bound to an iommufd through its cdev`, { backend: 'sim' });
    group.opened = true;
    opened.push(group);
    kernel(`adding group ${group.id}`, () => container.addGroup(group));
  }
  const type = mode === 'pamu' ? simulator.pamuType : VFIO_EXTENSION.TYPE1v2_IOMMU;
  if (kernel('checking the IOMMU type', () => container.checkExtension(type)) !== 1) {
    throw new IoasError('backend-unavailable', `the simulated kernel does not offer IOMMU type ${type}`, { backend: 'sim' });
  }
  kernel('setting the IOMMU type', () => container.setIommu(type));
  let closed = false;
  const close = (): void => {
    if (closed) return;
    closed = true;
    release();
  };
  /** PAMU: the aperture start, window size and count last set (the backend's own copy, as backend-pamu keeps it). */
  let windowing: { start: bigint; windowSize: bigint; count: number } | undefined;
  const hotPlug = containerHotPlug(simulator, mode, container, opened, () => windowing);
  if (mode === 'type1') {
    const initial = kernel('reading IOMMU info', () => container.info());
    const capabilities: Capabilities = {
      model: 'paged',
      windows: 'sdk',
      msi: simulator.platform.msi,
      partialUnmap: false,
      mappingBudget: initial.dmaAvailable,
      settableGeometry: false,
      hotPlug: true,
      // The MIGRATION capability's answer: the smallest IO page size, DIRTY_BITMAP_SIZE_MAX; with
      // vfio-pci pinning no pages, every mapped page reads dirty (update_user_bitmap()).
      dirtyTracking: {
        supported: true,
        pageSizes: initial.migration.pageSizes,
        maxBitmapBytes: initial.migration.maxDirtyBitmapSize,
        precision: 'pessimistic',
        readWithoutClear: false,
      },
    };
    const dirtyPages = (what: string, flags: number, call?: DirtyReadCall): void =>
      kernel(what, () =>
        container.dirtyPages(
          () => ({ argsz: call === undefined ? 8 : 48, flags }),
          () => ({
            iova: call!.iova.start,
            size: rangeSize(call!.iova),
            pgsize: call!.pageSize,
            bitmapSize: BigInt(call!.bitmap.length),
            // The SDK's own buffer: any user address passes access_ok().
            data: 0n,
            bitmap: () => new UserBitmap(call!.bitmap, true, 'VFIO_IOMMU_DIRTY_PAGES'),
          }),
        ),
      );
    return {
      capabilities,
      ...hotPlug,
      doDirtyStart: () => dirtyPages('starting dirty tracking', DIRTY_PAGES_FLAGS.START),
      doDirtyStop: () => dirtyPages('stopping dirty tracking', DIRTY_PAGES_FLAGS.STOP),
      // update_user_bitmap() writes every word of each mapping's bits: a covered range needs no zeroing (call.zeroed).
      doDirtyRead: (call) => dirtyPages('reading the dirty bitmap', DIRTY_PAGES_FLAGS.GET_BITMAP, call),
      /** VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP: the bits and the unmap in one call. */
      doDirtyUnmap: (call) =>
        kernel('unmapping with the dirty bitmap', () =>
          container.unmapWithDirtyBitmap(call.iova.start, rangeSize(call.iova), {
            pgsize: call.pageSize,
            size: BigInt(call.bitmap.length),
            data: 0n,
            bitmap: () => new UserBitmap(call.bitmap, true, 'VFIO_IOMMU_UNMAP_DMA'),
          }),
        ),
      doGetGeometry: (): Geometry => {
        const info = kernel('reading IOMMU info', () => container.info());
        return { aperture: hull(info.ranges, simulator.platform.aperture), ioPageSizes: info.ioPageSizes, ranges: info.ranges };
      },
      doGetReserved: () => reservedOf(container.groups),
      doMap: (call) =>
        kernel(`mapping ${call.memory.length} bytes`, () =>
          container.map(call.memory.address, call.iova.start, call.memory.length, call.access.read, call.access.write),
        ),
      doUnmap: (range) => kernel('unmapping', () => container.unmap(range.start, rangeSize(range), false)),
      doClose: close,
    };
  }
  // PAMU. The backend keeps what it set, since the driver's answers prove nothing
  // (docs/kernel-rules.md#pamu-attributes-fail-silently).
  const pamu = container.pamu!;
  const maxCount = (kernel('reading the window count', () => pamu.getAttr(PAMU_ATTRIBUTE.WINDOWS)) as { windows: number }).windows;
  let configured = false;
  const capabilities: Capabilities = { ...PAMU_CAPABILITIES, hotPlug: true, dirtyTracking: PAMU_DIRTY };
  const recordedBytes = (): bigint => pamu.dmaRanges.reduce((sum, range) => sum + range.size, 0n);
  /**
   * What the domain answered before the last setGeometry: the preset's aperture and the hardware
   * maximum (what GET_ATTR answers before any WINDOWS) until one succeeds.
   */
  let lastGood = { start: simulator.platform.aperture.start, end: simulator.platform.aperture.last, count: maxCount };
  /**
   * After a failed step of setGeometry: sends the last good geometry again (the SDK backend saved
   * the new one before the domain answered: docs/kernel-rules.md#pamu-geometry-saved-before-the-domain-answers)
   * and, if WINDOWS was sent, the last good count, so that GET_ATTR answers what core still holds.
   * Nothing is mapped here (core allows setGeometry only then), so WINDOWS discards nothing.
   */
  const restoreGeometry = (sentGeometry: boolean, sentWindows: boolean, error: unknown): void => {
    if (!sentGeometry) return; // the first SET_ATTR failed on entry: nothing changed
    try {
      pamu.setGeometry(lastGood.start, lastGood.end);
      if (sentWindows) pamu.setWindows(lastGood.count);
    } catch (restoreError) {
      throw new IoasError(
        'rollback-failed',
        `setGeometry failed and putting the previous geometry back failed too: the PAMU domain may no longer match the container's record (${(restoreError as Error).message})`,
        { backend: 'sim', operation: 'setGeometry', cause: new AggregateError([error, restoreError]) },
      );
    }
  };
  return {
    capabilities,
    ...hotPlug,
    doGetGeometry: (): Geometry => {
      const geometry = kernel('reading the geometry', () => pamu.getAttr(PAMU_ATTRIBUTE.GEOMETRY)) as { start: bigint; end: bigint };
      const count = (kernel('reading the window count', () => pamu.getAttr(PAMU_ATTRIBUTE.WINDOWS)) as { windows: number }).windows;
      const size = geometry.end - geometry.start + 1n;
      return {
        aperture: { start: geometry.start, last: geometry.end },
        ioPageSizes: simulator.platform.ioPageSizes,
        windows: { count, size: configured ? size / BigInt(count) : 0n, maxCount },
      };
    },
    doGetReserved: () => reservedOf(container.groups),
    doSetGeometry: (call) => {
      // Geometry first, then the window count (the driver's order), each read back: SET_ATTR returns
      // 0 even when the domain refused. Any failing step puts back what was there before, as
      // backend-pamu's PamuContainer.configure does: core keeps the old geometry when this throws,
      // and the domain must then translate as that record says.
      let sentGeometry = false;
      let sentWindows = false;
      try {
        kernel('setting the geometry', () => pamu.setGeometry(call.aperture.start, call.aperture.last));
        sentGeometry = true;
        const geometry = kernel('reading the geometry', () => pamu.getAttr(PAMU_ATTRIBUTE.GEOMETRY)) as { start: bigint; end: bigint };
        if (geometry.start !== call.aperture.start || geometry.end !== call.aperture.last) {
          throw IoasError.fromErrno(ERRNO.EINVAL, 'VFIO_IOMMU_PAMU_SET_ATTR', 'the PAMU domain silently refused the geometry', { backend: 'sim' });
        }
        kernel('setting the window count', () => pamu.setWindows(call.windowCount));
        sentWindows = true;
        const count = (kernel('reading the window count', () => pamu.getAttr(PAMU_ATTRIBUTE.WINDOWS)) as { windows: number }).windows;
        if (count !== call.windowCount) {
          throw IoasError.fromErrno(ERRNO.EINVAL, 'VFIO_IOMMU_PAMU_SET_ATTR', `the PAMU domain silently refused ${call.windowCount} windows`, { backend: 'sim' });
        }
      } catch (error) {
        restoreGeometry(sentGeometry, sentWindows, error);
        throw error;
      }
      configured = true;
      lastGood = { start: call.aperture.start, end: call.aperture.last, count: call.windowCount };
      windowing = { start: call.aperture.start, windowSize: (call.aperture.last - call.aperture.start + 1n) / BigInt(call.windowCount), count: call.windowCount };
    },
    doMap: (call) =>
      kernel(`mapping ${call.memory.length} bytes`, () =>
        container.map(call.memory.address, call.iova.start, call.memory.length, call.access.read, call.access.write),
      ),
    doUnmap: (range) => {
      // The driver disables every window the range touches but keeps the rest of a cut range
      // recorded (docs/kernel-rules.md#pamu-unmap-dma): a cut inside a window would leave memory
      // recorded as mapped that no longer translates. Refused before the domain is touched, with
      // the code backend-pamu's PamuContainer.unmapDma uses.
      const size = rangeSize(range);
      if (windowing === undefined) {
        throw new IoasError('not-ready', 'unmap: the windows are not configured: set the geometry and window count first', { backend: 'sim', operation: 'unmap' });
      }
      const { start, windowSize } = windowing;
      if (range.start < start || (range.start - start) % windowSize !== 0n || size % windowSize !== 0n) {
        throw new IoasError(
          'misaligned',
          `unmap: ${hex(size)} bytes at IOVA ${hex(range.start)} do not cover whole ${hex(windowSize)}-byte windows: the driver would disable the windows it touches and keep the rest recorded`,
          { backend: 'sim', operation: 'unmap' },
        );
      }
      // The PAMU driver does not write the unmapped size back: measure it from the record.
      const before = recordedBytes();
      kernel('unmapping', () => container.unmap(range.start, rangeSize(range), false));
      return before - recordedBytes();
    },
    doListMsiDoorbells: () => {
      const count = kernel('counting MSI banks', () => pamu.msiBankCount());
      const msiir = simulator.platform.pamu?.msiir ?? [];
      return Array.from({ length: count }, (_, index) => ({ index, size: 0x1000n, physicalAddress: msiir[index]! - (msiir[index]! % 0x1000n) }));
    },
    doMapMsiDoorbell: (index, iova) => kernel(`mapping MSI bank ${index}`, () => pamu.mapMsiBank(index, iova, true, true)),
    doUnmapMsiDoorbell: (index, iova) => kernel(`unmapping MSI bank ${index}`, () => pamu.unmapMsiBank(iova)),
    doClose: close,
  };
}

/** `not-found` (or, for a device with no group, `backend-unavailable`), as backend-smmu words them. */
function notFound(what: string, code: 'not-found' | 'backend-unavailable' = 'not-found'): IoasError {
  return new IoasError(code, what, { backend: 'sim' });
}

/** The device at `address`, or `not-found`. */
function deviceNamed(simulator: Simulator, address: string): SimDevice {
  const device = simulator.devices().find((candidate) => candidate.address === address);
  if (device === undefined) throw notFound(`there is no PCI device ${address} (/sys/bus/pci/devices/${address} does not exist)`);
  return device;
}

/** The group `id` with its `/dev/vfio/N` (a member bound to vfio-pci), or `not-found`. */
function groupNamed(simulator: Simulator, id: number): SimGroup {
  const group = simulator.group(id);
  if (group === undefined) throw notFound(`there is no IOMMU group ${id} (/sys/kernel/iommu_groups/${id} does not exist)`);
  return requireGroupFile(group);
}

const byNumber = (a: number, b: number): number => a - b;

/** Groups and devices as {@link Members} lists them: groups ascending, devices sorted. */
function membersOf(groups: Iterable<number>, devices: Iterable<string>): Members {
  return { groups: [...new Set(groups)].sort(byNumber), devices: [...new Set(devices)].sort() };
}

/**
 * Hot-plug on a VFIO container (type1 and PAMU): whole groups join and leave, a device bringing its
 * group. The kernel's checks are the container's (docs/kernel-rules.md#attaching-to-a-live-container,
 * docs/kernel-rules.md#detaching-from-a-live-container); a refusal comes back as a `kernel`
 * IoasError with the errno. `opened` is the handle's list of the group files it holds open.
 */
function containerHotPlug(
  simulator: Simulator,
  mode: 'type1' | 'pamu',
  container: SimVfioContainer,
  opened: SimGroup[],
  windowing: () => { start: bigint; windowSize: bigint; count: number } | undefined,
): Pick<BackendHandleV1, 'doMembers' | 'doResolveMembers' | 'doPreviewAttach' | 'doAttach' | 'doDetach'> {
  const groupsOf = (members: Members): SimGroup[] => members.groups.map((id) => groupNamed(simulator, id));
  const describe = (groups: readonly SimGroup[]): Members =>
    membersOf(
      groups.map((group) => group.id),
      groups.flatMap((group) => group.devices.map((device) => device.address)),
    );
  /** Closes the group file the handle held (a release: it cannot fail). */
  const closeFile = (group: SimGroup): void => {
    group.opened = false;
    const index = opened.indexOf(group);
    if (index >= 0) opened.splice(index, 1);
  };
  /** Opens `/dev/vfio/N` and puts the group in the container (GROUP_SET_CONTAINER); closes it again on failure. */
  const join = (group: SimGroup): void => {
    if (group.opened) throw IoasError.fromErrno(ERRNO.EBUSY, 'open', `/dev/vfio/${group.id} is already open`, { backend: 'sim' });
    // 6.12 drivers/vfio/group.c, vfio_group_fops_open(): EBUSY while a member's cdev is bound.
    if (group.cdevBound) throw IoasError.fromErrno(ERRNO.EBUSY, 'open', `a device of IOMMU group ${group.id} is bound to an iommufd through its cdev`, { backend: 'sim' });
    group.opened = true;
    opened.push(group);
    try {
      kernel(`adding IOMMU group ${group.id} to the live container`, () => container.addGroup(group));
    } catch (error) {
      closeFile(group);
      throw error;
    }
  };
  /**
   * PAMU: where the re-enabling map goes when the domain translates (it has a DMA range), decided
   * before anything is sent: the highest window holding neither DMA nor an MSI bank, backed by the
   * first window of the first DMA range. `no-space` when every window is busy, as backend-pamu says.
   */
  const aliasWindow = (): { iova: bigint; vaddr: bigint; size: bigint } | undefined => {
    const pamu = container.pamu;
    const source = pamu?.dmaRanges[0];
    const layout = windowing();
    if (pamu === undefined || source === undefined || layout === undefined) return undefined;
    const count = layout.count;
    const busy = new Set<bigint>();
    for (const range of pamu.dmaRanges) {
      for (let at = range.iova - ((range.iova - layout.start) % layout.windowSize); at < range.iova + range.size; at += layout.windowSize) busy.add(at);
    }
    for (const msiir of simulator.platform.pamu?.msiir ?? []) {
      const doorbell = pamu.msiAddressFor(msiir);
      if (doorbell !== undefined) busy.add(doorbell - ((doorbell - layout.start) % layout.windowSize));
    }
    for (let window = count - 1; window >= 0; window--) {
      const iova = layout.start + BigInt(window) * layout.windowSize;
      if (!busy.has(iova)) return { iova, vaddr: source.vaddr, size: layout.windowSize };
    }
    throw new IoasError(
      'no-space',
      `the domain translates, and the SDK driver leaves a joining LIODN disabled until the next MAP_DMA enables the domain again; that map needs a free window, but all ${count} windows hold DMA or an MSI bank: unmap a window first, or attach before mapping`,
      { backend: 'sim', operation: 'attach' },
    );
  };
  /**
   * PAMU: the re-enabling map after groups joined a translating domain (the driver left their
   * LIODNs disabled: docs/kernel-rules.md#attaching-to-a-live-container), read-only in the alias
   * window, then unmapped at once; the unmap is tried twice.
   */
  const reenable = (alias: { iova: bigint; vaddr: bigint; size: bigint }): void => {
    kernel('re-enabling the LIODNs', () => container.map(alias.vaddr, alias.iova, alias.size, true, false));
    try {
      kernel('unmapping the re-enabling map', () => container.unmap(alias.iova, alias.size, false));
    } catch (error) {
      kernel('unmapping the re-enabling map', () => container.unmap(alias.iova, alias.size, false));
      throw error;
    }
  };
  /** GROUP_UNSET_CONTAINER, then the group file closes. */
  const leave = (group: SimGroup): void => {
    kernel(`removing IOMMU group ${group.id} from the container`, () => container.unsetGroup(group));
    closeFile(group);
  };
  return {
    doMembers: () => describe([...container.groups]),
    doResolveMembers: (request: OpenRequest): Members => {
      const groups = new Set(request.groups.map((id) => groupNamed(simulator, id)));
      for (const address of request.devices) {
        const device = deviceNamed(simulator, address);
        if (device.group === undefined) throw notFound(`${address} has no IOMMU group: (arm64) no driver is bound yet; bind it to vfio-pci first`, 'backend-unavailable');
        groups.add(groupNamed(simulator, device.group));
      }
      return describe([...groups]);
    },
    // sysfs tells the newcomers' reserved regions; their aperture only the kernel knows, at attach.
    // PAMU has no reserved regions, and a new LIODN takes the domain's geometry as it is.
    doPreviewAttach: (members: Members): AttachPreview => ({ reserved: mode === 'pamu' ? [] : reservedOf(groupsOf(members)) }),
    doAttach: (members: Members): void => {
      const joined: SimGroup[] = [];
      const alias = mode === 'pamu' ? aliasWindow() : undefined;
      try {
        for (const group of groupsOf(members)) {
          join(group);
          joined.push(group);
        }
        if (alias !== undefined) reenable(alias);
      } catch (error) {
        // All or nothing: the groups that joined leave again (a release, which cannot fail).
        for (const group of joined.reverse()) {
          container.removeGroup(group);
          closeFile(group);
        }
        throw error;
      }
    },
    doDetach: (members: Members): void => {
      const leaving = groupsOf(members);
      // The kernel answers EBUSY while a device fd of the group is open (container_users != 1):
      // refused before anything changes, and never closed behind the caller's back.
      for (const group of leaving) {
        if (group.openDevices > 0) {
          throw new IoasError('in-use', `a device fd of IOMMU group ${group.id} is open: close it first (VFIO_GROUP_UNSET_CONTAINER would answer EBUSY)`, { backend: 'sim' });
        }
      }
      const left: SimGroup[] = [];
      try {
        for (const group of leaving) {
          leave(group);
          left.push(group);
        }
      } catch (error) {
        // All or nothing: the groups that left join again.
        try {
          const alias = mode === 'pamu' && left.length > 0 ? aliasWindow() : undefined;
          for (const group of left.reverse()) join(group);
          if (alias !== undefined) reenable(alias);
        } catch (undoError) {
          throw new IoasError('rollback-failed', `detach failed and putting IOMMU groups back failed too: ${(undoError as Error).message}`, {
            backend: 'sim',
            cause: new AggregateError([error, undoError]),
          });
        }
        throw error;
      }
    },
  };
}

async function openIommufd(simulator: Simulator, groups: SimGroup[], devices: SimDevice[]): Promise<BackendHandleV1> {
  const initial = new Set(devices);
  for (const group of groups) for (const device of group.devices) if (device.driver === 'vfio-pci') initial.add(device);
  const context = new SimIommufdContext(simulator);
  /** The devices in the IOAS, with the id each was bound with. */
  const bound = new Map<SimDevice, number>();
  let ioas: number;
  try {
    ioas = kernel('allocating an IOAS', () => context.allocateIoas(0));
    for (const device of initial) {
      const id = kernel(`binding ${device.address}`, () => context.bind(device));
      bound.set(device, id);
      kernel(`attaching ${device.address}`, () => context.attach(id, ioas));
    }
  } catch (error) {
    context.close();
    throw error;
  }
  const deviceGroups = (members: Iterable<SimDevice> = bound.keys()): SimGroup[] => [...new Set([...members].map((device) => simulator.group(device.group!)!))];
  const describe = (members: Iterable<SimDevice>): Members => {
    const list = [...members];
    return membersOf(
      list.map((device) => device.group!),
      list.map((device) => device.address),
    );
  };
  /**
   * Dirty tracking: the dirty-tracking HWPTs allocated on the IOAS, one per IOMMU the devices sit
   * behind (keyed by its aperture: a HWPT takes only devices of its IOMMU), created by the first
   * start() and kept until close, so that their bits outlive a device that leaves.
   */
  const dirtyHwpts = new Map<string, number>();
  let dirtyOn = false;
  const iommuOf = (device: SimDevice): string => `${device.aperture.start}-${device.aperture.last}`;
  /**
   * Puts a bound device on the dirty-tracking HWPT of its IOMMU (IOMMU_HWPT_ALLOC with
   * IOMMU_HWPT_ALLOC_DIRTY_TRACKING on the IOAS first if there is none; its tracking enabled when
   * tracking is on), replacing its automatic domain (VFIO_DEVICE_ATTACH_IOMMUFD_PT again: an
   * atomic replace). `undo` collects what to take back.
   */
  const onDirtyHwpt = (device: SimDevice, id: number, undo: (() => void)[]): void => {
    const key = iommuOf(device);
    let hwpt = dirtyHwpts.get(key);
    if (hwpt === undefined) {
      const created = kernel(`allocating a dirty-tracking HWPT for ${device.address}`, () => context.allocateHwpt(id, ioas, HWPT_ALLOC_FLAGS.DIRTY_TRACKING, 0, 0, 0));
      dirtyHwpts.set(key, created);
      undo.push(() => {
        dirtyHwpts.delete(key);
        context.destroy(created);
      });
      if (dirtyOn) kernel('enabling dirty tracking', () => context.setDirtyTracking(created, HWPT_DIRTY_TRACKING_ENABLE));
      hwpt = created;
    }
    if (context.attachedTo(id)?.id === hwpt) return;
    const target = hwpt;
    kernel(`moving ${device.address} onto the dirty-tracking HWPT`, () => context.attach(id, target));
    undo.push(() => void context.attach(id, ioas));
  };
  /** Runs the undo steps, newest first; `rollback-failed` when one fails. */
  const rollBack = (undo: (() => void)[], error: unknown, what: string): never => {
    const failures: unknown[] = [];
    for (const step of undo.reverse()) {
      try {
        step();
      } catch (undoError) {
        failures.push(undoError);
      }
    }
    if (failures.length > 0) {
      throw new IoasError('rollback-failed', `${what} failed and undoing it failed too: ${(failures[0] as Error).message}`, { backend: 'sim', cause: new AggregateError([error, ...failures]) });
    }
    throw error;
  };
  /** Binds the device's cdev and attaches it to the IOAS (to the dirty-tracking HWPT once tracking started); unbinds it again on failure. */
  const join = (device: SimDevice): void => {
    const id = kernel(`binding ${device.address}`, () => context.bind(device));
    const undo: (() => void)[] = [];
    try {
      kernel(`attaching ${device.address} to the live IOAS`, () => context.attach(id, ioas));
      if (dirtyHwpts.size > 0) onDirtyHwpt(device, id, undo);
    } catch (error) {
      try {
        for (const step of undo.reverse()) step();
      } finally {
        context.unbind(id);
      }
      throw error;
    }
    bound.set(device, id);
  };
  /**
   * GET_DIRTY_BITMAP of `call` from every dirty-tracking HWPT, ORed into `call.bitmap` (the kernel
   * ORs: bits already set stay). The kernel refuses a range with a gap between areas (EINVAL), which
   * core allows: each run of contiguous areas is read on its own and its bits placed at its offset.
   * A clearing read of more than one piece (runs, HWPTs) reads them all without clearing first, then
   * clears piece by piece, so that a refusal changes nothing; a clearing call failing after another
   * has cleared is `rollback-failed`, the bits already cleared being lost.
   */
  const readDirty = (call: DirtyReadCall, clear: boolean): void => {
    const runs: { start: bigint; last: bigint }[] = [];
    for (const area of context.ioas(ioas, 'IOMMU_HWPT_GET_DIRTY_BITMAP').areas.overlapping(call.iova.start, call.iova.last)) {
      const top = runs[runs.length - 1];
      if (top !== undefined && top.last + 1n === area.start) top.last = area.last;
      else runs.push({ start: area.start, last: area.last });
    }
    const whole = runs.length === 1 && runs[0]!.start <= call.iova.start && runs[0]!.last >= call.iova.last;
    // GET_DIRTY_BITMAP ORs bits in: a reused bitmap starts from zeros.
    if (!call.zeroed) call.bitmap.fill(0);
    const target = new UserBitmap(call.bitmap, true, 'IOMMU_HWPT_GET_DIRTY_BITMAP');
    /** One GET_DIRTY_BITMAP per HWPT and piece, its bits ORed into `call.bitmap` when `into`. */
    const pass = (flags: number, into: boolean, done: () => void): void => {
      for (const hwpt of dirtyHwpts.values()) {
        if (whole) {
          const bitmap = into ? target : new UserBitmap(new Uint8Array(call.bitmap.length), true, 'IOMMU_HWPT_GET_DIRTY_BITMAP');
          kernel('reading the dirty bitmap', () => context.dirtyBitmap(hwpt, flags, 0, call.iova.start, rangeSize(call.iova), call.pageSize, () => bitmap));
          done();
          continue;
        }
        for (const run of runs) {
          // A run starts and ends on the page size only when its mappings do; else the kernel answers EINVAL.
          const start = run.start < call.iova.start ? call.iova.start : run.start;
          const last = run.last > call.iova.last ? call.iova.last : run.last;
          const pages = (last - start + 1n) / call.pageSize;
          const piece = new Uint8Array(Number(((pages + 63n) / 64n) * 8n));
          kernel('reading the dirty bitmap', () => context.dirtyBitmap(hwpt, flags, 0, start, last - start + 1n, call.pageSize, () => new UserBitmap(piece, true, 'IOMMU_HWPT_GET_DIRTY_BITMAP')));
          done();
          if (!into) continue;
          const offset = Number((start - call.iova.start) / call.pageSize);
          for (let bit = 0; bit < Number(pages); bit++) if (((piece[bit >>> 3]! >>> (bit & 7)) & 1) !== 0) target.setBits(offset + bit, offset + bit);
        }
      }
    };
    const pieces = dirtyHwpts.size * (whole ? 1 : runs.length);
    if (!clear || pieces <= 1) {
      pass(clear ? 0 : HWPT_GET_DIRTY_BITMAP_NO_CLEAR, true, () => undefined);
      return;
    }
    pass(HWPT_GET_DIRTY_BITMAP_NO_CLEAR, true, () => undefined);
    let cleared = 0;
    try {
      pass(0, false, () => void cleared++);
    } catch (error) {
      if (cleared === 0) throw error;
      throw new IoasError('rollback-failed', `a clearing dirty read failed after ${cleared} of ${pieces} clearing calls: the bits those cleared are lost (the bitmap they returned was not)`, {
        backend: 'sim',
        operation: 'dirty.read',
        cause: error,
      });
    }
  };
  // What IOMMU_GET_HW_INFO's IOMMU_HW_CAP_DIRTY_TRACKING says (read from the machine, so that opening
  // issues no ioctl more than before).
  const hardwareDirty = simulator.hardwareDirty;
  const dirtyTracking: DirtyTracking = hardwareDirty
    ? { supported: true, pageSizes: IOMMUFD_DIRTY_PAGE_SIZES, maxBitmapBytes: null, precision: 'precise', readWithoutClear: true }
    : { supported: false, reason: iommufdNoDirtyReason(simulator) };
  const dirtyMethods: Pick<BackendHandleV1, 'doDirtyStart' | 'doDirtyStop' | 'doDirtyRead' | 'doDirtyUnmap'> = !hardwareDirty
    ? {}
    : {
        /**
         * Moves every device onto a dirty-tracking HWPT of its IOMMU (allocated on the IOAS the
         * first time), then enables tracking on each, which clears their bits. All or nothing.
         */
        doDirtyStart: () => {
          if (bound.size === 0 && dirtyHwpts.size === 0) {
            throw new IoasError('not-ready', 'no device is in the IOAS: iommufd allocates a dirty-tracking HWPT for a device (IOMMU_HWPT_ALLOC takes a dev_id); attach one first', {
              backend: 'sim',
              operation: 'dirty.start',
            });
          }
          const undo: (() => void)[] = [];
          try {
            for (const [device, id] of bound) onDirtyHwpt(device, id, undo);
            for (const hwpt of dirtyHwpts.values()) {
              kernel('enabling dirty tracking', () => context.setDirtyTracking(hwpt, HWPT_DIRTY_TRACKING_ENABLE));
              undo.push(() => context.setDirtyTracking(hwpt, 0));
            }
          } catch (error) {
            rollBack(undo, error, 'starting dirty tracking');
          }
          dirtyOn = true;
        },
        /**
         * Disables tracking on the HWPTs and leaves the devices on them, as QEMU does (it allocates
         * its dirty-tracking HWPT at attach and only toggles IOMMU_HWPT_SET_DIRTY_TRACKING around
         * a migration): the kernel asks nothing more, the next start() only enables again, and the
         * SMMUv3's hardware, which records regardless, is cleared by that enable.
         */
        doDirtyStop: () => {
          const undo: (() => void)[] = [];
          try {
            for (const hwpt of dirtyHwpts.values()) {
              kernel('disabling dirty tracking', () => context.setDirtyTracking(hwpt, 0));
              undo.push(() => context.setDirtyTracking(hwpt, HWPT_DIRTY_TRACKING_ENABLE));
            }
          } catch (error) {
            rollBack(undo, error, 'stopping dirty tracking');
          }
          dirtyOn = false;
        },
        doDirtyRead: (call) => readDirty(call, call.clear),
        /**
         * iommufd has no unmap that returns dirty bits (IOMMU_IOAS_UNMAP drops the page-table
         * entries and their bits): this reads the bitmap, then unmaps. It reads with
         * IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, since the unmap clears those bits anyway, so that
         * an unmap the kernel refuses leaves them for the next read (all or nothing). On a real
         * machine a device write between the two calls is lost; quiesce devices first.
         */
        doDirtyUnmap: (call) => {
          readDirty(call, false);
          return kernel('unmapping', () => context.unmap(ioas, call.iova.start, rangeSize(call.iova)));
        },
      };
  let closed = false;
  return {
    capabilities: {
      model: 'paged',
      windows: 'kernel-allow-list',
      msi: simulator.platform.msi,
      partialUnmap: false,
      mappingBudget: null,
      settableGeometry: false,
      hotPlug: true,
      dirtyTracking,
    },
    ...dirtyMethods,
    doGetGeometry: (): Geometry => {
      const { ranges, alignment } = kernel('reading IOVA ranges', () => context.iovaRanges(ioas));
      return { aperture: hull(ranges, simulator.platform.aperture), ioPageSizes: alignment > 0x1000n ? alignment : 0x1000n, ranges };
    },
    doGetReserved: () => reservedOf(deviceGroups()),
    doMap: (call) =>
      void kernel(`mapping ${call.memory.length} bytes`, () =>
        context.map(
          ioas,
          IOAS_MAP_FLAGS.FIXED_IOVA | (call.access.read ? IOAS_MAP_FLAGS.READABLE : 0) | (call.access.write ? IOAS_MAP_FLAGS.WRITEABLE : 0),
          call.memory.address,
          call.memory.length,
          call.iova.start,
        ),
      ),
    doUnmap: (range) => kernel('unmapping', () => context.unmap(ioas, range.start, rangeSize(range))),
    doSetAllowedRanges: (ranges) => kernel('setting the allowed IOVA ranges', () => context.allowIovas(ioas, ranges)),
    // Hot-plug on iommufd: devices join and leave one by one (a group means its members bound to
    // vfio-pci); the kernel's checks are the IOAS's (docs/kernel-rules.md#attaching-to-a-live-container).
    doMembers: () => describe(bound.keys()),
    doResolveMembers: (request: OpenRequest): Members => {
      const devices = new Set<SimDevice>();
      for (const address of request.devices) {
        const device = deviceNamed(simulator, address);
        // A device's cdev exists only while vfio-pci holds it (6.12 drivers/vfio/device_cdev.c, vfio_device_add()).
        if (device.driver !== 'vfio-pci') throw notFound(`${address} is not bound to vfio-pci, so it has no VFIO cdev (/dev/vfio/devices/vfioX): bind it to vfio-pci first`);
        devices.add(device);
      }
      for (const id of request.groups) {
        for (const device of groupNamed(simulator, id).devices) if (device.driver === 'vfio-pci') devices.add(device);
      }
      return describe(devices);
    },
    // sysfs tells the newcomers' reserved regions; their IOMMU's aperture only the kernel knows.
    doPreviewAttach: (members: Members): AttachPreview => ({ reserved: reservedOf(deviceGroups(members.devices.map((address) => deviceNamed(simulator, address)))) }),
    doAttach: (members: Members): void => {
      const joined: SimDevice[] = [];
      try {
        for (const address of members.devices) {
          const device = deviceNamed(simulator, address);
          join(device);
          joined.push(device);
        }
      } catch (error) {
        // All or nothing: the devices that joined are unbound again (closing a cdev cannot fail).
        for (const device of joined.reverse()) {
          context.unbind(bound.get(device)!);
          bound.delete(device);
        }
        throw error;
      }
    },
    doDetach: (members: Members): void => {
      const left: SimDevice[] = [];
      try {
        for (const address of members.devices) {
          const device = deviceNamed(simulator, address);
          const id = bound.get(device)!;
          kernel(`detaching ${address} from the IOAS`, () => context.detach(id));
          // Closing the cdev unbinds it: its group may be opened through /dev/vfio/N again.
          context.unbind(id);
          bound.delete(device);
          left.push(device);
        }
      } catch (error) {
        // All or nothing: the devices that left are bound and attached again.
        try {
          for (const device of left.reverse()) join(device);
        } catch (undoError) {
          throw new IoasError('rollback-failed', `detach failed and attaching the devices back failed too: ${(undoError as Error).message}`, {
            backend: 'sim',
            cause: new AggregateError([error, undoError]),
          });
        }
        throw error;
      }
    },
    doClose: () => {
      if (closed) return;
      closed = true;
      context.close();
    },
  };
}
