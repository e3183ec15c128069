import { ContainerErrors } from './container-errors.js';
import {
  type AllocateInput,
  checkedLast,
  type ContainerOpenOptions,
  isMapping,
  type MapInput,
  type MapRegionInput,
  type MembersInput,
  type MapRegionResult,
  type RangeInput,
  READ_WRITE,
  type SetGeometryInput,
  toHostMemory,
  type UnmapInput,
} from './container-input.js';
import { type ContainerDirty, DirtyTracker } from './dirty-tracker.js';
import { DmaMapper } from './dma-mapper.js';
import { IoasError } from './errors.js';
import { hex } from './format.js';
import { compareBigint, formatRange, type IovaRange, normalizeRanges, rangeContainsRange, rangesOverlap, subtractRanges } from './iova-range.js';
import { describeReserved, IovaSpace } from './iova-space.js';
import { MappingTable } from './mapping-table.js';
import { type ContainerMsi, MsiPlacement } from './msi-placement.js';
import { addressInput, allocateInput, fastMapInput, fastUnmapInput, geometryInput, mapInput, openInput, parseInput, rangeInput, unmapInput } from './schemas.js';
import { type ContainerSnapshot, SNAPSHOT_VERSION, snapshotHex, snapshotRange, snapshotReserved } from './snapshot.js';
import { SPECIFICATION_VERSION, type BackendHandle, type Members } from './spi.js';
import { checkWindowGeometry } from './window-geometry.js';
import { type Capabilities, type ContainerStats, type Geometry, granuleOf, type HostMemory, type Mapping, type ReservedRange, type U64Input, type Window } from './types.js';

export type {
  AllocateInput,
  ContainerOpenOptions,
  MapInput,
  MapRegionInput,
  MapRegionResult,
  MembersInput,
  RangeInput,
  SetGeometryInput,
  UnmapInput,
} from './container-input.js';
export type { ContainerMsi } from './msi-placement.js';
export type { ContainerDirty, DirtyReadInput, DirtyUnmapResult } from './dirty-tracker.js';

/**
 * An IOMMU container (a VFIO container, an iommufd IOAS, a PAMU domain) behind one API.
 *
 * Core validates every input, checks the backend's declared capabilities, refuses any map that
 * touches a reserved range or lies outside the usable ranges before the backend sees it, and keeps
 * its own record of mappings, windows, allocations and MSI doorbells. Operations are synchronous,
 * like the ioctls under them. `close()` (or `using`) releases everything.
 *
 * The container is a facade over pieces that own their state: the mapping table (the
 * record of mappings), the IOVA space (geometry, reserved ranges, windows, doorbells, allocations,
 * the allocator), the DMA mapper (map and unmap, the hot path) and the MSI placement.
 */
export class Container implements Disposable {
  /** Name of the backend, for messages. */
  readonly backendName: string;
  /** The MSI doorbell operations. */
  readonly msi: ContainerMsi;
  /** Dirty-page tracking for live migration (docs/kernel-rules.md#dirty-page-tracking). */
  readonly dirty: ContainerDirty;

  private readonly handle: BackendHandle;
  private readonly openedWith: Members;
  private readonly errors: ContainerErrors;
  private readonly table = new MappingTable();
  private readonly space: IovaSpace;
  private readonly dma: DmaMapper;
  private readonly tracker: DirtyTracker;
  private closed = false;

  /**
   * Opens a container through `backend` with the given groups or devices.
   *
   * @throws {IoasError} `invalid-argument` for bad options; `unsupported` for a backend of another
   *   SPI version; `backend-contract` when the handle's methods do not match its capabilities;
   *   whatever the backend throws (`kernel`, `backend-unavailable`...).
   */
  static async open(options: ContainerOpenOptions): Promise<Container> {
    const backend = options?.backend;
    if (typeof backend !== 'object' || backend === null || typeof backend.open !== 'function') {
      throw new IoasError('invalid-argument', 'Container.open: `backend` must be a backend object, such as sim() or smmu()');
    }
    if (backend.specificationVersion !== SPECIFICATION_VERSION) {
      throw new IoasError(
        'unsupported',
        `Container.open: backend '${String(backend.name)}' implements SPI ${String(backend.specificationVersion)}, but this @ioas/core speaks ${SPECIFICATION_VERSION}; install matching versions`,
        { backend: backend.name },
      );
    }
    const { groups, devices } = parseInput(openInput, { groups: options.groups, devices: options.devices }, 'Container.open');
    const errors = new ContainerErrors(String(backend.name));
    let handle: BackendHandle;
    try {
      handle = await backend.open({ groups, devices });
    } catch (error) {
      throw errors.wrap('open', error);
    }
    if (typeof handle !== 'object' || handle === null) {
      throw errors.error('backend-contract', 'open', `backend '${String(backend.name)}' open() resolved to ${handle === null ? 'null' : typeof handle}, not a handle`);
    }
    try {
      checkContract(backend.name, handle);
      return new Container(backend.name, handle, { groups: [...groups].sort((a, b) => a - b), devices: [...devices].sort() });
    } catch (error) {
      // Closing the handle is the undo; if it fails too, say so (rollback-failed).
      return errors.rollback('open', errors.wrap('open', error), [() => handle.doClose()]);
    }
  }

  private constructor(backendName: string, handle: BackendHandle, openedWith: Members) {
    this.backendName = backendName;
    this.handle = handle;
    this.openedWith = openedWith;
    this.errors = new ContainerErrors(backendName);
    const geometry = handle.doGetGeometry();
    if (granuleOf(geometry) < 0x1000n) {
      throw new IoasError('backend-contract', `backend '${backendName}' reports IO pages of ${hex(granuleOf(geometry))} bytes; the kernel's IO page size is never below the 4 KiB host page`, {
        backend: backendName,
        operation: 'open',
      });
    }
    this.space = new IovaSpace(handle.capabilities, geometry, handle.doGetReserved(), this.table, this.errors);
    this.dma = new DmaMapper(handle, this.space, this.table, this.errors);
    this.msi = new MsiPlacement(handle, this.space, this.table, this.errors, (operation) => this.assertOpen(operation));
    this.tracker = new DirtyTracker(handle, this.table, this.dma, this.errors, (operation) => this.assertOpen(operation));
    this.dirty = this.tracker;
  }

  /** What the backend declared it can do. */
  get capabilities(): Capabilities {
    return this.handle.capabilities;
  }

  /** True once {@link close} has run. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The current geometry: aperture, IO page sizes, kernel-reported ranges, windows. */
  geometry(): Geometry {
    this.assertOpen('geometry');
    return this.space.geometry;
  }

  /**
   * Sets the aperture and window count of a windowed IOMMU. Allowed only while nothing is mapped,
   * allocated or windowed: PAMU refuses geometry changes once translation is on (EBUSY, hidden by
   * the SDK driver; docs/kernel-rules.md#pamu-aperture-geometry).
   *
   * @throws {IoasError} `unsupported` (paged IOMMU), `invalid-argument` (not a power of two, below
   *   the granule, too many windows), `misaligned` (only the aperture's start is off),
   *   `in-use` (something is mapped).
   */
  setGeometry(input: SetGeometryInput): Geometry {
    const operation = 'setGeometry';
    const parsed = this.errors.guard(operation, () => parseInput(geometryInput, input, operation));
    this.assertOpen(operation);
    if (!this.capabilities.settableGeometry || this.handle.doSetGeometry === undefined) {
      throw this.errors.error('unsupported', operation, `the ${this.capabilities.model} IOMMU of backend '${this.backendName}' has a fixed geometry`);
    }
    const { start, size } = parsed.aperture;
    const count = parsed.windowCount;
    // The PAMU geometry rules live in window-geometry.ts, shared with planWindows and the PAMU backend.
    const problems = checkWindowGeometry({ start, size, windowCount: count }, { maxWindows: this.space.geometry.windows?.maxCount ?? 1, minWindowSize: granuleOf(this.space.geometry) });
    if (problems !== undefined) throw this.errors.error(problems.code, operation, problems.message);
    if (this.table.size > 0 || this.space.allocations.size > 0 || this.space.doorbells.length > 0 || this.space.windows.length > 0) {
      throw this.errors.error('in-use', operation, 'the geometry can only change while nothing is mapped, allocated or windowed; unmap and remove those first');
    }
    try {
      this.handle.doSetGeometry!({ aperture: { start, last: start + size - 1n }, windowCount: count });
    } catch (error) {
      // A driver cannot always go back (PAMU's cannot unset a first geometry): whatever the domain
      // holds now, the record follows it, so that no map is checked against a geometry that is gone.
      this.adoptGeometryAfterFailure();
      throw this.errors.wrap(operation, error);
    }
    this.errors.guard(operation, () => this.space.adopt(this.handle.doGetGeometry()));
    return this.space.geometry;
  }

  /** Reserved ranges, sorted by start, each with its kind and where it came from. */
  reserved(): readonly ReservedRange[] {
    this.assertOpen('reserved');
    return [...this.space.reserved];
  }

  /**
   * The IOVA ranges a mapping may use: the kernel's ranges (or the aperture) minus every reserved
   * range the kernel refuses to map (all but `direct-relaxable`) and the MSI doorbells this
   * container mapped, intersected with the created windows when there are any, shrunk to whole
   * granules (whole windows on a windowed IOMMU). Mappings and allocations do not shrink it.
   */
  usable(): readonly IovaRange[] {
    this.assertOpen('usable');
    return [...this.space.usable];
  }

  /** The windows created with {@link createWindow}, in address order. */
  windows(): readonly Window[] {
    this.assertOpen('windows');
    return this.space.windows.map((range) => ({ range }));
  }

  /**
   * Makes an IOVA range valid for mapping (the seeds' model: once any window exists, only windows
   * are usable). Realised by the backend's window mode: PAMU hardware windows (the range must cover
   * whole windows), iommufd `IOMMU_IOAS_ALLOW_IOVAS` (which binds the kernel's own IOVA choices and
   * later attaches, not fixed-IOVA maps), or the SDK alone on type1. Core refuses maps outside the
   * windows in every mode.
   *
   * @throws {IoasError} `misaligned`, `out-of-range` (outside the aperture), `reserved` (touches a
   *   reserved range: iommufd answers EADDRINUSE), `overlap` (another window), `in-use` (the first
   *   window would leave existing mappings or allocations outside every window).
   */
  createWindow(input: RangeInput): Window {
    const operation = 'createWindow';
    const range = this.errors.guard(operation, () => parseInput(rangeInput, input, operation));
    this.assertOpen(operation);
    const unit = this.space.unit(operation);
    if (range.start % unit !== 0n || (range.last + 1n) % unit !== 0n) {
      throw this.errors.error('misaligned', operation, `window ${formatRange(range)} must start and end on multiples of ${hex(unit)}`);
    }
    const blocking = this.space.blockingReservedOverlapping(range);
    if (blocking !== undefined) {
      throw this.errors.error('reserved', operation, `window ${formatRange(range)} overlaps the reserved ${describeReserved(blocking)}`);
    }
    const base = this.space.kernelRanges();
    if (subtractRanges([range], base).length > 0) {
      throw this.errors.error('out-of-range', operation, `window ${formatRange(range)} is not inside the IOMMU's ranges ${base.map(formatRange).join(', ')}`);
    }
    const clash = this.space.windows.find((window) => rangesOverlap(window, range));
    if (clash !== undefined) throw this.errors.error('overlap', operation, `window ${formatRange(range)} overlaps window ${formatRange(clash)}`);
    const windows = normalizeRanges([...this.space.windows, range]);
    if (this.space.windows.length === 0) {
      const outside = this.space.usedRanges().find((used) => !rangeContainsRange(range, used));
      if (outside !== undefined) {
        throw this.errors.error('in-use', operation, `IOVA ${formatRange(outside)} is in use outside the first window ${formatRange(range)}; unmap or release it first`);
      }
    }
    if (this.capabilities.windows === 'kernel-allow-list') {
      this.errors.guard(operation, () => this.handle.doSetAllowedRanges!(windows));
    }
    this.space.windows.push(range);
    this.space.windows.sort((a, b) => compareBigint(a.start, b.start));
    this.space.recompute();
    return { range };
  }

  /**
   * Removes a window created with {@link createWindow}; it must be given exactly and hold nothing.
   *
   * @throws {IoasError} `not-found`, `in-use` (a mapping, allocation or doorbell lies in it).
   */
  removeWindow(input: Window | RangeInput): void {
    const operation = 'removeWindow';
    const given = typeof input === 'object' && input !== null && 'range' in input ? input.range : input;
    const range = this.errors.guard(operation, () => parseInput(rangeInput, given, operation));
    this.assertOpen(operation);
    const index = this.space.windows.findIndex((window) => window.start === range.start && window.last === range.last);
    if (index < 0) throw this.errors.error('not-found', operation, `no window ${formatRange(range)}; windows: ${this.space.windows.map(formatRange).join(', ') || 'none'}`);
    const inside = this.space.usedRanges().find((used) => rangesOverlap(used, range));
    if (inside !== undefined) throw this.errors.error('in-use', operation, `IOVA ${formatRange(inside)} in window ${formatRange(range)} is still in use; unmap or release it first`);
    const remaining = this.space.windows.filter((_, position) => position !== index);
    if (this.capabilities.windows === 'kernel-allow-list') {
      this.errors.guard(operation, () => this.handle.doSetAllowedRanges!(remaining));
    }
    this.space.windows.splice(index, 1);
    this.space.recompute();
  }

  /**
   * Reserves IOVA space ("2 GiB below 4 GiB"): best fit over the usable ranges, one range when
   * possible, else (unless `contiguous`) the fewest ranges that sum to `size`. Map into them with
   * an explicit `iova`; give them back with {@link release}.
   *
   * @throws {IoasError} `misaligned` (size not a multiple of the granule), `no-space`.
   */
  allocate(input: AllocateInput): readonly IovaRange[] {
    const operation = 'allocate';
    const parsed = this.errors.guard(operation, () => parseInput(allocateInput, input, operation));
    this.assertOpen(operation);
    const unit = parsed.align === undefined ? undefined : this.space.unit(operation);
    if (parsed.align !== undefined && unit !== undefined && parsed.align < unit) {
      throw this.errors.error('invalid-argument', operation, `alignment ${hex(parsed.align)} is below the mapping unit ${hex(unit)}: every range is aligned to it already; give at least ${hex(unit)} or leave it out`);
    }
    return this.space.allocate(operation, parsed);
  }

  /**
   * Gives back a range returned by {@link allocate}.
   *
   * @throws {IoasError} `not-found` (not an allocation), `in-use` (a mapping still lies in it).
   */
  release(input: RangeInput): void {
    const operation = 'release';
    const range = this.errors.guard(operation, () => parseInput(rangeInput, input, operation));
    this.assertOpen(operation);
    const allocation = this.space.allocations.get(range.start);
    if (allocation === undefined || allocation.last !== range.last) {
      throw this.errors.error('not-found', operation, `${formatRange(range)} is not a range returned by allocate()`);
    }
    const mapped = this.table.overlapping(range)[0];
    if (mapped !== undefined) throw this.errors.error('in-use', operation, `mapping ${formatRange(mapped.mapping.iova)} still lies in ${formatRange(range)}; unmap it first`);
    this.space.release(range);
  }

  /**
   * Maps host memory for device DMA. With `iova` omitted, a free IOVA range is allocated, aligned to
   * the largest IO page size the length allows so that the IOMMU can use large pages.
   *
   * Checks, in the order type1 applies them (docs/kernel-rules.md#map-checks-in-kernel-order):
   * alignment to the
   * granule (`misaligned`), overlap with a mapping (`overlap`, the kernel's EEXIST), the mapping
   * budget (`budget-exhausted`, ENOSPC), then the usable ranges (`reserved` or `out-of-range`,
   * EINVAL). A windowed IOMMU also needs whole windows backed by memory whose physically contiguous
   * page size is known and at least the window size. Nothing is left behind on failure.
   */
  map(input: MapInput): Mapping {
    const operation = 'map';
    const fast = fastMapInput(input);
    if (fast !== undefined) {
      this.assertOpen(operation);
      // fastMapInput never sets an absent contiguousPageSize: its memory is a HostMemory as it is.
      return this.dma.map(operation, fast.iova, fast.memory as HostMemory, fast.access ?? READ_WRITE);
    }
    const parsed = this.errors.guard(operation, () => parseInput(mapInput, input, operation));
    this.assertOpen(operation);
    return this.dma.map(operation, parsed.iova, toHostMemory(parsed.memory), parsed.access ?? READ_WRITE);
  }

  /**
   * Maps a large region (guest RAM, say) at `iova` with the fewest mappings the geometry allows,
   * skipping reserved holes and anything outside the usable ranges (the memory facing a hole is left
   * unmapped, as a VMM mapping guest RAM 1:1 needs). All or nothing: on failure every piece already
   * mapped is unmapped.
   *
   * @throws {IoasError} `budget-exhausted` before anything is mapped when the pieces outnumber the
   *   budget left; any error of {@link map}; `rollback-failed` if undoing failed too.
   */
  mapRegion(input: MapRegionInput): MapRegionResult {
    const operation = 'mapRegion';
    const parsed = this.errors.guard(operation, () => parseInput(mapInput, input, operation));
    this.assertOpen(operation);
    if (parsed.iova === undefined) throw this.errors.error('invalid-argument', operation, 'mapRegion needs an explicit `iova`');
    const memory = toHostMemory(parsed.memory);
    const region = this.errors.guard(operation, () => ({ start: parsed.iova!, last: checkedLast(parsed.iova!, memory.length) }));
    return this.dma.mapRegion(operation, region, memory, parsed.access ?? READ_WRITE);
  }

  /**
   * Unmaps every mapping inside the range and returns the bytes unmapped (0 when nothing is
   * mapped there). Unless the backend can cut mappings (`partialUnmap`), the range may not cut one:
   * type1v2 refuses that with EINVAL and iommufd with ENOENT
   * (docs/kernel-rules.md#no-bisecting-unmaps-in-type1v2, docs/kernel-rules.md#ioas-unmap). Checks the size the kernel reports against the container's record.
   *
   * @throws {IoasError} `bisect`, `kernel`, `inconsistent` (the kernel unmapped another size than the
   *   record holds).
   */
  unmap(input: UnmapInput): bigint {
    const operation = 'unmap';
    const range = fastUnmapInput(input) ?? this.errors.guard(operation, () => parseInput(unmapInput, isMapping(input) ? input.iova : input, operation));
    this.assertOpen(operation);
    return this.dma.unmap(operation, range);
  }

  /** The live mappings, in IOVA order. */
  mappings(): readonly Mapping[] {
    this.assertOpen('mappings');
    return this.table.mappings();
  }

  /** The mapping that contains `iova`, if any. O(log n). */
  findMapping(iova: U64Input): Mapping | undefined {
    const operation = 'findMapping';
    const address = this.errors.guard(operation, () => parseInput(addressInput, iova, operation));
    this.assertOpen(operation);
    return this.table.find(address);
  }

  /** Mappings, bytes mapped, budget left, windows, allocations, doorbells. */
  stats(): ContainerStats {
    this.assertOpen('stats');
    return {
      mappings: this.table.size,
      bytesMapped: this.table.bytesMapped,
      mappingBudgetLeft: this.dma.budgetLeft(),
      windows: this.space.windows.length,
      allocations: this.space.allocations.size,
      msiDoorbellsMapped: this.space.doorbells.length,
    };
  }

  /**
   * The container's IOVA space as plain, JSON-serialisable data (64-bit values as hex strings):
   * aperture, IO page sizes, the kernel's ranges, windows, reserved ranges with kind and source,
   * usable ranges, mappings, allocations, MSI doorbells and the mapping budget. `@ioas/view` draws it.
   *
   * @param title What the picture shows (default: the backend's name).
   */
  snapshot(title?: string): ContainerSnapshot {
    if (title !== undefined && (typeof title !== 'string' || title.length > 200)) {
      throw this.errors.error('invalid-argument', 'snapshot', 'the title must be a string of at most 200 characters');
    }
    this.assertOpen('snapshot');
    const { geometry } = this.space;
    const capabilities = this.handle.capabilities;
    const msi = capabilities.msi === 'explicit' ? { model: capabilities.msi, doorbells: [...this.space.doorbells] } : this.msi.plan();
    return {
      version: SNAPSHOT_VERSION,
      title: title ?? this.backendName,
      model: capabilities.model,
      aperture: snapshotRange(geometry.aperture),
      ioPageSizes: snapshotHex(geometry.ioPageSizes),
      kernelRanges: geometry.ranges === undefined ? null : geometry.ranges.map(snapshotRange),
      windowGeometry: geometry.windows === undefined ? null : { count: geometry.windows.count, size: snapshotHex(geometry.windows.size), maxCount: geometry.windows.maxCount },
      windows: this.space.windows.map(snapshotRange),
      reserved: this.space.reserved.map(snapshotReserved),
      usable: this.space.usable.map(snapshotRange),
      mappings: this.table.mappings().map((mapping) => ({ iova: snapshotRange(mapping.iova), address: snapshotHex(mapping.memory.address), access: { read: mapping.access.read, write: mapping.access.write } })),
      allocations: [...this.space.allocations.values()].map(snapshotRange),
      msi: { model: msi.model, doorbells: msi.doorbells.map((doorbell) => ({ index: doorbell.index, iova: snapshotRange(doorbell.iova), mappedBy: doorbell.mappedBy })) },
      budget: { mappings: this.table.size, bytesMapped: snapshotHex(this.table.bytesMapped), left: this.dma.budgetLeft() },
    };
  }

  /**
   * Adds groups or devices to the live container (hot-plug): they share its mappings at once. Core
   * first asks the backend what they bring (their reserved ranges from sysfs or the platform, and
   * their aperture where it can tell) and refuses, before the kernel sees it, an attach that would
   * put a mapping, allocation, window or MSI doorbell inside a blocking reserved range or outside
   * the aperture, as the kernel would (type1: EINVAL, vfio_iommu_type1_attach_group(); iommufd:
   * EADDRINUSE; docs/kernel-rules.md#attaching-to-a-live-container). Then it attaches, and re-reads
   * the geometry and reserved ranges: the usable ranges may shrink. On any failure nothing changes.
   *
   * @returns The groups and devices that joined (a device brings its whole group on type1 and PAMU).
   * @throws {IoasError} `unsupported` (the backend's members are fixed), `invalid-argument`,
   *   `not-found` (no such group or device), `in-use` (already in the container), `reserved` or
   *   `out-of-range` (a conflict: the message names what is in use and the region, its kind and
   *   source), `not-viable`, `kernel` (the kernel refused what the backend could not foresee).
   */
  attach(input: MembersInput): Members {
    const operation = 'attach';
    const { handle, members, current } = this.resolveMembers(operation, input);
    // By device: on iommufd another device of a group already in may join.
    const already = members.devices.filter((device) => current.devices.includes(device));
    if (already.length > 0) throw this.errors.error('in-use', operation, `${describeDevices(already)} ${already.length === 1 ? 'is' : 'are'} already in this container`);
    const preview = this.errors.guard(operation, () => handle.doPreviewAttach!(members));
    const conflict = preview.reserved === undefined && preview.ranges === undefined ? undefined : this.space.conflictWith(preview.reserved ?? [], preview.ranges);
    if (conflict !== undefined) {
      const who = describeMembers(members);
      if (conflict.blocking !== undefined) {
        throw this.errors.error('reserved', operation, `${who} would reserve ${describeReserved(conflict.blocking)}, but ${conflict.what} ${formatRange(conflict.range)} lies in it; unmap or release it first`);
      }
      throw this.errors.error('out-of-range', operation, `${who} can translate only ${preview.ranges!.map(formatRange).join(', ') || 'nothing'}, but ${conflict.what} ${formatRange(conflict.range)} lies outside; unmap or release it first`);
    }
    this.errors.guard(operation, () => handle.doAttach!(members));
    this.rereadMembers(operation, () => handle.doDetach!(members));
    return members;
  }

  /**
   * Removes groups or devices from the live container (hot-unplug). Mappings stay: they belong to
   * the container, and the devices left keep using them. The usable ranges may grow. A device fd
   * the backend handed out (`openDevice()`) for a leaving device must be closed first: the caller
   * may still be driving it, so the SDK does not close it behind its back.
   *
   * @returns The groups and devices that left.
   * @throws {IoasError} `unsupported`, `invalid-argument`, `not-found` (not in this container),
   *   `in-use` (it would leave the container with no device: close() it instead; or a device fd
   *   handed out for a leaving device is still open), `kernel`.
   */
  detach(input: MembersInput): Members {
    const operation = 'detach';
    const { handle, members, current } = this.resolveMembers(operation, input);
    const absent = members.devices.filter((device) => !current.devices.includes(device));
    if (absent.length > 0) throw this.errors.error('not-found', operation, `${describeDevices(absent)} ${absent.length === 1 ? 'is' : 'are'} not in this container (members: ${describeMembers(current)})`);
    if (current.devices.every((device) => members.devices.includes(device))) {
      throw this.errors.error('in-use', operation, `detaching ${describeMembers(members)} would leave the container with no device; close() the container instead`);
    }
    this.errors.guard(operation, () => handle.doDetach!(members));
    this.rereadMembers(operation, () => handle.doAttach!(members));
    return members;
  }

  /**
   * The groups and devices in the container now, resolved by the backend; for a backend without
   * hot-plug, the groups and devices given to {@link Container.open}, as given.
   */
  members(): Members {
    this.assertOpen('members');
    const handle = this.handle;
    if (!this.capabilities.hotPlug || handle.doMembers === undefined) return { groups: [...this.openedWith.groups], devices: [...this.openedWith.devices] };
    return this.errors.guard('members', () => handle.doMembers!());
  }

  /** Releases the container: the backend drops every mapping and doorbell and closes its files. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.table.clear();
    this.space.allocations.clear();
    this.space.doorbells = [];
    this.errors.guard('close', () => this.handle.doClose());
  }

  /** Closes the container (what `using container = await Container.open(...)` calls). */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Attach's and detach's first steps: the input checked, resolved by the backend, and the members now. */
  private resolveMembers(operation: string, input: MembersInput): { handle: BackendHandle; members: Members; current: Members } {
    const request = this.errors.guard(operation, () => parseInput(openInput, input, operation));
    this.assertOpen(operation);
    if (!this.capabilities.hotPlug) {
      throw this.errors.error('unsupported', operation, `backend '${this.backendName}' fixes a container's groups and devices when it opens; open another container for other devices`);
    }
    // A member joining or leaving mid-migration would change what the dirty bitmap covers (QEMU
    // blocks hot-plug while migrating, too).
    if (this.tracker.tracking) throw this.errors.error('in-use', operation, 'dirty tracking is on; dirty.stop() it before devices join or leave');
    const handle = this.handle;
    const members = this.errors.guard(operation, () => handle.doResolveMembers!(request));
    const current = this.errors.guard(operation, () => handle.doMembers!());
    return { handle, members, current };
  }

  /**
   * Adopts the geometry and reserved ranges after members joined or left; if the backend's answer
   * cannot be adopted, `undo` puts the members back and the error is thrown.
   */
  private rereadMembers(operation: string, undo: () => void): void {
    try {
      this.space.adoptMembers(this.handle.doGetGeometry(), this.handle.doGetReserved());
    } catch (error) {
      this.errors.rollback(operation, this.errors.wrap(operation, error), [undo]);
    }
  }

  /** Re-reads the geometry after a failed change (nothing is mapped: setGeometry checked it). */
  private adoptGeometryAfterFailure(): void {
    try {
      this.space.adopt(this.handle.doGetGeometry());
    } catch {
      // The backend cannot tell either: the setGeometry error, thrown next, says what failed.
    }
  }

  private assertOpen(operation: string): void {
    if (this.closed) throw this.errors.error('closed', operation, 'the container is closed');
  }
}

/** `device 0000:00:04.0`, `devices 0000:00:04.0, 0000:00:05.0` */
function describeDevices(devices: readonly string[]): string {
  return `${devices.length === 1 ? 'device' : 'devices'} ${devices.join(', ')}`;
}

/** `IOMMU groups 3, 4 and device 0000:00:04.0` */
function describeMembers(members: Members): string {
  const groups = members.groups.length === 0 ? [] : [`IOMMU group${members.groups.length === 1 ? '' : 's'} ${members.groups.join(', ')}`];
  const devices = members.devices.length === 0 ? [] : [describeDevices(members.devices)];
  return [...groups, ...devices].join(' with ') || 'nothing';
}

/** Checks that the handle's optional methods exist exactly when its capabilities say so. */
function checkContract(backendName: string, handle: BackendHandle): void {
  const capabilities = handle.capabilities;
  const expected: [keyof BackendHandle, boolean][] = [
    ['doSetGeometry', capabilities.settableGeometry],
    ['doSetAllowedRanges', capabilities.windows === 'kernel-allow-list'],
    ['doListMsiDoorbells', capabilities.msi === 'explicit'],
    ['doMapMsiDoorbell', capabilities.msi === 'explicit'],
    ['doUnmapMsiDoorbell', capabilities.msi === 'explicit'],
    ...(['doMembers', 'doResolveMembers', 'doPreviewAttach', 'doAttach', 'doDetach'] as const).map((method): [keyof BackendHandle, boolean] => [method, capabilities.hotPlug === true]),
    ...(['doDirtyStart', 'doDirtyStop', 'doDirtyRead', 'doDirtyUnmap'] as const).map((method): [keyof BackendHandle, boolean] => [method, capabilities.dirtyTracking?.supported === true]),
  ];
  for (const [method, wanted] of expected) {
    const present = typeof handle[method] === 'function';
    if (present !== wanted) {
      throw new IoasError(
        'backend-contract',
        `backend '${backendName}' ${present ? 'has' : 'lacks'} ${method} but its capabilities say it ${wanted ? 'must' : 'must not'}`,
        { backend: backendName, operation: 'open' },
      );
    }
  }
}
