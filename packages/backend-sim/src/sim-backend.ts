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
  type Geometry,
  type IovaRange,
  type Members,
  type OpenRequest,
  type ReservedRange,
} from '@ioas/core';
import { IOAS_MAP_FLAGS, SimIommufdContext } from './iommufd.js';
import { KernelError, KernelOops } from './kernel-error.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import type { PlatformName, PlatformPreset } from './platforms.js';
import { backendOptionsSchema, checkOptions } from './options.js';
import { createSimulator, Simulator, type SimDevice, type SimGroup, type SimulatorOptions } from './simulator.js';
import { VFIO_EXTENSION, SimVfioContainer } from './vfio-container.js';

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
    };
    return {
      capabilities,
      ...hotPlug,
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
  const capabilities: Capabilities = { ...PAMU_CAPABILITIES, hotPlug: true };
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
  /** Binds the device's cdev and attaches it to the IOAS; unbinds it again on failure. */
  const join = (device: SimDevice): void => {
    const id = kernel(`binding ${device.address}`, () => context.bind(device));
    try {
      kernel(`attaching ${device.address} to the live IOAS`, () => context.attach(id, ioas));
    } catch (error) {
      context.unbind(id);
      throw error;
    }
    bound.set(device, id);
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
    },
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
