import { BTreeMap } from './btree.js';
import { IoasError, type IoasErrorCode, hex } from './errors.js';
import { IovaAllocator } from './iova-allocator.js';
import {
  alignRangeInward,
  compareBigint,
  formatRange,
  intersectRange,
  intersectRanges,
  isPowerOfTwo,
  type IovaRange,
  normalizeRanges,
  rangeContainsRange,
  rangesOverlap,
  rangeSize,
  subtractRanges,
  U64_MAX,
} from './iova-range.js';
import { IovaRangeSet } from './iova-range-set.js';
import { planRegionMappings } from './plan-region.js';
import {
  allocateInput,
  fastMapInput,
  fastUnmapInput,
  geometryInput,
  mapInput,
  msiPlanInput,
  openInput,
  parseInput,
  rangeInput,
  unmapInput,
} from './schemas.js';
import { SPECIFICATION_VERSION, type Backend, type BackendHandle } from './spi.js';
import {
  type Access,
  type Capabilities,
  type ContainerStats,
  type Geometry,
  granuleOf,
  type HostMemory,
  isBlockingReserved,
  usableRanges,
  type Mapping,
  type MsiDoorbellPlacement,
  type MsiPlan,
  type ReservedRange,
  type U64Input,
  type Window,
} from './types.js';

/** Options of {@link Container.open}. */
export interface ContainerOpenOptions {
  /** The backend that talks to the kernel (`smmu()`, `pamu()`) or stands in for it (`sim()`). */
  readonly backend: Backend;
  /** IOMMU group numbers, for group-based backends (VFIO type1, PAMU). */
  readonly groups?: readonly number[];
  /** Device names such as `0000:00:03.0`, for device-based backends (iommufd). */
  readonly devices?: readonly string[];
}

/** A range as users write it: a start and a size, or a start and an inclusive last address. */
export type RangeInput =
  | {
      /** First address. */
      readonly start: U64Input;
      /** Bytes in the range (positive). */
      readonly size: U64Input;
    }
  | {
      /** First address. */
      readonly start: U64Input;
      /** Last address, inclusive (so a range can end at 2^64-1). */
      readonly last: U64Input;
    };

/** Input of {@link Container.map}. */
export interface MapInput {
  /** Where to map; omitted: the container allocates a free, suitably aligned IOVA range. */
  readonly iova?: U64Input;
/** The host memory to map (what `allocateDmaMemory()` returns fits as it is). */
  readonly memory: {
    /** Process virtual address of the first byte (MAP_DMA's `vaddr`, IOAS_MAP's `user_va`). */
    readonly address: U64Input;
    /** Bytes to map: a multiple of the granule (the window size on a windowed IOMMU). */
    readonly length: U64Input;
    /** Size of the physically contiguous pages behind it (the hugepage size); windowed IOMMUs need it. */
    readonly contiguousPageSize?: U64Input;
  };
  /** Default: read and write. */
  readonly access?: Access;
}

/** Input of {@link Container.mapRegion}. */
export interface MapRegionInput extends MapInput {
  readonly iova: U64Input;
}

/** Result of {@link Container.mapRegion}. */
export interface MapRegionResult {
  /** The mappings made, in IOVA order. */
  readonly mappings: readonly Mapping[];
  /** Parts of the region not mapped because they are reserved or outside the usable ranges. */
  readonly skipped: readonly IovaRange[];
}

/** Input of {@link Container.allocate}. */
export interface AllocateInput {
  /** Bytes to allocate (a multiple of the mapping granule). */
  readonly size: U64Input;
  /** Power-of-two alignment of every returned range (default: the mapping granule). */
  readonly align?: U64Input;
  /** Highest address any returned range may reach, inclusive (`0xffffffffn`: below 4 GiB). */
  readonly limit?: U64Input;
  /** Require a single range (default false: several ranges may sum to `size`). */
  readonly contiguous?: boolean;
}

/** Input of {@link Container.setGeometry}. */
export interface SetGeometryInput {
/** The whole translatable range: a power of two of at least 4 KiB, aligned to its size. */
  readonly aperture: {
    /** First IOVA of the aperture. */
    readonly start: U64Input;
    /** Bytes in the aperture. */
    readonly size: U64Input;
  };
  /** Windows to cut the aperture into: a power of two up to `geometry().windows.maxCount`. */
  readonly windowCount: number;
}

/** What {@link Container.unmap} accepts: a mapping, `{ iova, size }`, or a range. */
export type UnmapInput =
  | Mapping
  | {
      /** First IOVA to unmap. */
      readonly iova: U64Input;
      /** Bytes to unmap. */
      readonly size: U64Input;
    }
  | RangeInput;

/** The MSI doorbell operations of a container: one question, one typed answer. */
export interface ContainerMsi {
  /**
   * Where the doorbells are or would go. For the explicit model, `iova` places the first doorbell
   * (the others follow, one slot each); omitted, the lowest free windows above the DMA mappings.
   */
  plan(input?: { readonly iova?: U64Input }): MsiPlan;
  /** Makes MSI work: maps the doorbells (explicit model) or reports where the kernel has them. */
  map(plan?: MsiPlan): MsiPlan;
  /** Unmaps doorbells this container mapped (explicit model); otherwise does nothing. */
  unmap(): void;
  /** The doorbells this container has mapped. */
  mapped(): readonly MsiDoorbellPlacement[];
}

interface MappingRecord {
  readonly mapping: Mapping;
  /** True when the mapping took its IOVA from free space (not from a user allocation). */
  readonly ownsIova: boolean;
}

/**
 * An IOMMU container (a VFIO container, an iommufd IOAS, a PAMU domain) behind one API.
 *
 * Core validates every input, checks the backend's declared capabilities, refuses any map that
 * touches a reserved range or lies outside the usable ranges before the backend sees it, and keeps
 * its own record of mappings, windows, allocations and MSI doorbells. Operations are synchronous,
 * like the ioctls under them. `close()` (or `using`) releases everything.
 */
export class Container implements Disposable {
  /** Name of the backend, for messages. */
  readonly backendName: string;
  /** The MSI doorbell operations. */
  readonly msi: ContainerMsi;

  private readonly handle: BackendHandle;
  private currentGeometry: Geometry;
  private reservedRanges: readonly ReservedRange[];
  private readonly createdWindows: IovaRange[] = [];
  private readonly allocations = new BTreeMap<IovaRange>();
  private readonly records = new BTreeMap<MappingRecord>();
  private msiDoorbells: MsiDoorbellPlacement[] = [];
  private usableRanges: IovaRange[] = [];
  private usableSet = new IovaRangeSet();
  private allocator: IovaAllocator;
  /**
   * IOVA of mappings made at an explicit address, not yet taken out of the allocator's free space.
   * A VMM maps and unmaps at addresses it chose far more often than it asks the allocator for one,
   * so these reach the allocator only when it is next asked ({@link syncAllocator}): a map followed
   * by its unmap never touches the allocator's trees.
   */
  private readonly pendingReservations = new Map<bigint, IovaRange>();
  private bytesMapped = 0n;
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
    const handle = await backend.open({ groups, devices });
    try {
      checkContract(backend.name, handle);
      return new Container(backend.name, handle);
    } catch (error) {
      handle.doClose();
      throw error;
    }
  }

  private constructor(backendName: string, handle: BackendHandle) {
    this.backendName = backendName;
    this.handle = handle;
    this.currentGeometry = handle.doGetGeometry();
    this.reservedRanges = sortReserved(handle.doGetReserved());
    this.allocator = new IovaAllocator([], 0x1000n);
    this.recomputeSpace();
    this.msi = {
      plan: (input) => this.planMsi(input),
      map: (plan) => this.mapMsi(plan),
      unmap: () => this.unmapMsi(),
      mapped: () => [...this.msiDoorbells],
    };
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
    return this.currentGeometry;
  }

  /**
   * Sets the aperture and window count of a windowed IOMMU. Allowed only while nothing is mapped,
   * allocated or windowed: PAMU refuses geometry changes once translation is on (EBUSY, hidden by
   * the SDK driver; shared/facts/pamu-sdk-abi.md §4).
   *
   * @throws {IoasError} `unsupported` (paged IOMMU), `invalid-argument` (not a power of two, below
   *   the granule, misaligned, too many windows), `state` (something is mapped).
   */
  setGeometry(input: SetGeometryInput): Geometry {
    const operation = 'setGeometry';
    const parsed = this.guard(operation, () => parseInput(geometryInput, input, operation));
    this.assertOpen(operation);
    if (!this.capabilities.settableGeometry || this.handle.doSetGeometry === undefined) {
      throw this.error('unsupported', operation, `the ${this.capabilities.model} IOMMU of backend '${this.backendName}' has a fixed geometry`);
    }
    const { start, size } = parsed.aperture;
    const granule = granuleOf(this.currentGeometry);
    const maxCount = this.currentGeometry.windows?.maxCount ?? 1;
    // Rules from shared/facts/pamu-sdk-abi.md §4: aperture a power of two >= 4 KiB aligned to its
    // size; window count a power of two up to the hardware maximum; windows no smaller than a page.
    const problems: string[] = [];
    if (!isPowerOfTwo(size) || size < granule) problems.push(`aperture size ${hex(size)} must be a power of two of at least ${hex(granule)}`);
    else if (start % size !== 0n) problems.push(`aperture start ${hex(start)} must be aligned to the aperture size ${hex(size)}`);
    if (start + size - 1n > (1n << 64n) - 1n) problems.push(`aperture ${hex(size)} bytes at ${hex(start)} wraps past 2^64-1`);
    const count = parsed.windowCount;
    if (!isPowerOfTwo(BigInt(count)) || count > maxCount) problems.push(`window count ${count} must be a power of two from 1 to ${maxCount}`);
    else if (isPowerOfTwo(size) && size / BigInt(count) < granule) problems.push(`${count} windows of ${hex(size)} bytes are smaller than ${hex(granule)}`);
    if (problems.length > 0) throw this.error('invalid-argument', operation, problems.join('; '));
    if (this.records.size > 0 || this.allocations.size > 0 || this.msiDoorbells.length > 0 || this.createdWindows.length > 0) {
      throw this.error('state', operation, 'the geometry can only change while nothing is mapped, allocated or windowed; unmap and remove those first');
    }
    this.guard(operation, () => this.handle.doSetGeometry!({ aperture: { start, last: start + size - 1n }, windowCount: count }));
    this.currentGeometry = this.guard(operation, () => this.handle.doGetGeometry());
    this.recomputeSpace();
    return this.currentGeometry;
  }

  /** Reserved ranges, sorted by start, each with its kind and where it came from. */
  reserved(): readonly ReservedRange[] {
    this.assertOpen('reserved');
    return [...this.reservedRanges];
  }

  /**
   * The IOVA ranges a mapping may use: the kernel's ranges (or the aperture) minus every reserved
   * range the kernel refuses to map (all but `direct-relaxable`) and the MSI doorbells this
   * container mapped, intersected with the created windows when there are any, shrunk to whole
   * granules (whole windows on a windowed IOMMU). Mappings and allocations do not shrink it.
   */
  usable(): readonly IovaRange[] {
    this.assertOpen('usable');
    return [...this.usableRanges];
  }

  /** The windows created with {@link createWindow}, in address order. */
  windows(): readonly Window[] {
    this.assertOpen('windows');
    return this.createdWindows.map((range) => ({ range }));
  }

  /**
   * Makes an IOVA range valid for mapping (the seeds' model: once any window exists, only windows
   * are usable). Realised by the backend's window mode: PAMU hardware windows (the range must cover
   * whole windows), iommufd `IOMMU_IOAS_ALLOW_IOVAS` (which binds the kernel's own IOVA choices and
   * later attaches, not fixed-IOVA maps), or the SDK alone on type1. Core refuses maps outside the
   * windows in every mode.
   *
   * @throws {IoasError} `misaligned`, `out-of-range` (outside the aperture), `reserved` (touches a
   *   reserved range: iommufd answers EADDRINUSE), `overlap` (another window), `state` (the first
   *   window would leave existing mappings or allocations outside every window).
   */
  createWindow(input: RangeInput): Window {
    const operation = 'createWindow';
    const range = this.guard(operation, () => parseInput(rangeInput, input, operation));
    this.assertOpen(operation);
    const unit = this.mappingUnit(operation);
    if (range.start % unit !== 0n || (range.last + 1n) % unit !== 0n) {
      throw this.error('misaligned', operation, `window ${formatRange(range)} must start and end on multiples of ${hex(unit)}`);
    }
    const blocking = this.blockingReservedOverlapping(range);
    if (blocking !== undefined) {
      throw this.error('reserved', operation, `window ${formatRange(range)} overlaps the reserved ${describeReserved(blocking)}`);
    }
    const base = this.kernelRanges();
    if (subtractRanges([range], base).length > 0) {
      throw this.error('out-of-range', operation, `window ${formatRange(range)} is not inside the IOMMU's ranges ${base.map(formatRange).join(', ')}`);
    }
    const clash = this.createdWindows.find((window) => rangesOverlap(window, range));
    if (clash !== undefined) throw this.error('overlap', operation, `window ${formatRange(range)} overlaps window ${formatRange(clash)}`);
    const windows = normalizeRanges([...this.createdWindows, range]);
    if (this.createdWindows.length === 0) {
      const outside = this.usedRanges().find((used) => !rangeContainsRange(range, used));
      if (outside !== undefined) {
        throw this.error('state', operation, `IOVA ${formatRange(outside)} is in use outside the first window ${formatRange(range)}; unmap or release it first`);
      }
    }
    if (this.capabilities.windows === 'kernel-allow-list') {
      this.guard(operation, () => this.handle.doSetAllowedRanges!(windows));
    }
    this.createdWindows.push(range);
    this.createdWindows.sort((a, b) => compareBigint(a.start, b.start));
    this.recomputeSpace();
    return { range };
  }

  /**
   * Removes a window created with {@link createWindow}; it must be given exactly and hold nothing.
   *
   * @throws {IoasError} `not-found`, `state` (a mapping, allocation or doorbell lies in it).
   */
  removeWindow(input: Window | RangeInput): void {
    const operation = 'removeWindow';
    const range = this.guard(operation, () => parseInput(rangeInput, 'range' in input ? input.range : input, operation));
    this.assertOpen(operation);
    const index = this.createdWindows.findIndex((window) => window.start === range.start && window.last === range.last);
    if (index < 0) throw this.error('not-found', operation, `no window ${formatRange(range)}; windows: ${this.createdWindows.map(formatRange).join(', ') || 'none'}`);
    const inside = this.usedRanges().find((used) => rangesOverlap(used, range));
    if (inside !== undefined) throw this.error('state', operation, `IOVA ${formatRange(inside)} in window ${formatRange(range)} is still in use; unmap or release it first`);
    const remaining = this.createdWindows.filter((_, position) => position !== index);
    if (this.capabilities.windows === 'kernel-allow-list') {
      this.guard(operation, () => this.handle.doSetAllowedRanges!(remaining));
    }
    this.createdWindows.splice(index, 1);
    this.recomputeSpace();
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
    const parsed = this.guard(operation, () => parseInput(allocateInput, input, operation));
    this.assertOpen(operation);
    this.syncAllocator();
    const ranges = this.guard(operation, () =>
      this.allocator.allocate({
        size: parsed.size,
        ...(parsed.align === undefined ? {} : { align: parsed.align }),
        ...(parsed.limit === undefined ? {} : { limit: parsed.limit }),
        ...(parsed.contiguous === undefined ? {} : { contiguous: parsed.contiguous }),
      }),
    );
    for (const range of ranges) this.allocations.set(range.start, range);
    return ranges;
  }

  /**
   * Gives back a range returned by {@link allocate}.
   *
   * @throws {IoasError} `not-found` (not an allocation), `state` (a mapping still lies in it).
   */
  release(input: RangeInput): void {
    const operation = 'release';
    const range = this.guard(operation, () => parseInput(rangeInput, input, operation));
    this.assertOpen(operation);
    const allocation = this.allocations.get(range.start);
    if (allocation === undefined || allocation.last !== range.last) {
      throw this.error('not-found', operation, `${formatRange(range)} is not a range returned by allocate()`);
    }
    const mapped = this.mappingsOverlapping(range)[0];
    if (mapped !== undefined) throw this.error('state', operation, `mapping ${formatRange(mapped.mapping.iova)} still lies in ${formatRange(range)}; unmap it first`);
    this.allocations.delete(range.start);
    this.allocator.release(range);
  }

  /**
   * Maps host memory for device DMA. With `iova` omitted, a free IOVA range is allocated, aligned to
   * the largest IO page size the length allows so that the IOMMU can use large pages.
   *
   * Checks, in the order type1 applies them (shared/facts/vfio-type1.md §7): alignment to the
   * granule (`misaligned`), overlap with a mapping (`overlap`, the kernel's EEXIST), the mapping
   * budget (`budget-exhausted`, ENOSPC), then the usable ranges (`reserved` or `out-of-range`,
   * EINVAL). A windowed IOMMU also needs whole windows backed by memory whose physically contiguous
   * page size is known and at least the window size. Nothing is left behind on failure.
   */
  map(input: MapInput): Mapping {
    const operation = 'map';
    const parsed = fastMapInput(input) ?? this.guard(operation, () => parseInput(mapInput, input, operation));
    this.assertOpen(operation);
    const memory = toHostMemory(parsed.memory);
    const access = parsed.access ?? { read: true, write: true };
    return this.mapParsed(operation, parsed.iova, memory, access);
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
    const parsed = this.guard(operation, () => parseInput(mapInput, input, operation));
    this.assertOpen(operation);
    if (parsed.iova === undefined) throw this.error('invalid-argument', operation, 'mapRegion needs an explicit `iova`');
    const memory = toHostMemory(parsed.memory);
    const access = parsed.access ?? { read: true, write: true };
    const region = this.guard(operation, () => ({ start: parsed.iova!, last: checkedLast(parsed.iova!, memory.length) }));
    const plan = this.guard(operation, () =>
      planRegionMappings(region, this.usableRanges, this.mappingUnit(operation), this.budgetLeft()),
    );
    const done: Mapping[] = [];
    try {
      for (const piece of plan.pieces) {
        const pieceMemory: HostMemory = { ...memory, address: memory.address + piece.memoryOffset, length: rangeSize(piece.iova) };
        done.push(this.mapParsed(operation, piece.iova.start, pieceMemory, access));
      }
    } catch (error) {
      this.rollback(operation, error, done.reverse().map((mapping) => () => void this.unmapRange(operation, mapping.iova)));
    }
    return { mappings: done, skipped: plan.skipped };
  }

  /**
   * Unmaps every mapping inside the range and returns the bytes unmapped (0 when nothing is
   * mapped there). Unless the backend can cut mappings (`partialUnmap`), the range may not cut one:
   * type1v2 refuses that with EINVAL and iommufd with ENOENT (shared/facts/vfio-type1.md §8,
   * iommufd.md §3). Checks the size the kernel reports against the container's record.
   *
   * @throws {IoasError} `bisect`, `kernel`.
   */
  unmap(input: UnmapInput): bigint {
    const operation = 'unmap';
    const range = fastUnmapInput(input) ?? this.guard(operation, () => parseInput(unmapInput, isMapping(input) ? input.iova : input, operation));
    this.assertOpen(operation);
    return this.unmapRange(operation, range);
  }

  /** The live mappings, in IOVA order. */
  mappings(): readonly Mapping[] {
    this.assertOpen('mappings');
    return [...this.records.values()].map((record) => record.mapping);
  }

  /** The mapping that contains `iova`, if any. O(log n). */
  findMapping(iova: U64Input): Mapping | undefined {
    this.assertOpen('findMapping');
    const address = BigInt(iova);
    const entry = this.records.floor(address);
    return entry !== undefined && entry.value.mapping.iova.last >= address ? entry.value.mapping : undefined;
  }

  /** Mappings, bytes mapped, budget left, windows, allocations, doorbells. */
  stats(): ContainerStats {
    this.assertOpen('stats');
    return {
      mappings: this.records.size,
      bytesMapped: this.bytesMapped,
      mappingBudgetLeft: this.budgetLeft(),
      windows: this.createdWindows.length,
      allocations: this.allocations.size,
      msiDoorbellsMapped: this.msiDoorbells.length,
    };
  }

  /** Releases the container: the backend drops every mapping and doorbell and closes its files. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.records.clear();
    this.allocations.clear();
    this.msiDoorbells = [];
    this.bytesMapped = 0n;
    this.guard('close', () => this.handle.doClose());
  }

  /** Closes the container (what `using container = await Container.open(...)` calls). */
  [Symbol.dispose](): void {
    this.close();
  }

  // --- MSI -----------------------------------------------------------------------------------

  private planMsi(input: { readonly iova?: U64Input } | undefined): MsiPlan {
    const operation = 'msi.plan';
    const parsed = this.guard(operation, () => parseInput(msiPlanInput, input ?? {}, operation));
    this.assertOpen(operation);
    const model = this.capabilities.msi;
    if (model === 'none') return { model, doorbells: [] };
    if (model !== 'explicit') {
      if (parsed.iova !== undefined) {
        throw this.error(
          'unsupported',
          operation,
          `MSI doorbells are ${model === 'fixed' ? 'at a fixed hardware range' : 'placed by the kernel in its software MSI window'} on this platform; they cannot be moved to ${hex(parsed.iova)}`,
        );
      }
      const mappedBy = model === 'fixed' ? 'hardware' : 'kernel';
      const doorbells = this.reservedRanges
        .filter((reserved) => reserved.kind === 'msi')
        .map((reserved, index) => ({ index, iova: { start: reserved.start, last: reserved.last }, mappedBy }) as const);
      return { model, doorbells };
    }
    if (this.msiDoorbells.length > 0) return { model, doorbells: [...this.msiDoorbells] };
    this.syncAllocator();
    const doorbells = this.guard(operation, () => this.handle.doListMsiDoorbells!());
    const slot = this.msiSlotSize(operation, doorbells.reduce((largest, doorbell) => (doorbell.size > largest ? doorbell.size : largest), 0n));
    const starts = parsed.iova === undefined ? this.findMsiSlots(operation, slot, doorbells.length) : this.checkMsiSlots(operation, parsed.iova, slot, doorbells.length);
    return {
      model,
      doorbells: doorbells.map((doorbell, position) => ({
        index: doorbell.index,
        iova: { start: starts[position]!, last: starts[position]! + slot - 1n },
        mappedBy: 'sdk',
      })),
    };
  }

  private mapMsi(plan: MsiPlan | undefined): MsiPlan {
    const operation = 'msi.map';
    this.assertOpen(operation);
    const model = this.capabilities.msi;
    if (model !== 'explicit') return this.planMsi(undefined);
    if (this.msiDoorbells.length > 0) throw this.error('state', operation, 'MSI doorbells are already mapped; unmap them first');
    const chosen = plan ?? this.planMsi(undefined);
    if (chosen.model !== 'explicit') throw this.error('invalid-argument', operation, `a ${chosen.model} plan cannot be mapped on an explicit-MSI container`);
    const unit = this.mappingUnit(operation);
    this.syncAllocator();
    for (const doorbell of chosen.doorbells) {
      const { iova } = doorbell;
      if (iova.start % unit !== 0n || (iova.last + 1n) % unit !== 0n) {
        throw this.error('misaligned', operation, `doorbell ${doorbell.index} slot ${formatRange(iova)} must cover whole ${hex(unit)} units`);
      }
      this.checkUsable(operation, iova, () => `doorbell ${doorbell.index}`);
      if (!this.allocator.isFree(iova)) throw this.error('overlap', operation, `doorbell ${doorbell.index} slot ${formatRange(iova)} is already in use`);
    }
    const done: MsiDoorbellPlacement[] = [];
    try {
      for (const doorbell of chosen.doorbells) {
        this.guard(operation, () => this.handle.doMapMsiDoorbell!(doorbell.index, doorbell.iova.start));
        done.push(doorbell);
      }
    } catch (error) {
      this.rollback(operation, error, done.reverse().map((doorbell) => () => this.handle.doUnmapMsiDoorbell!(doorbell.index, doorbell.iova.start)));
    }
    this.msiDoorbells = [...chosen.doorbells];
    this.recomputeSpace();
    return { model, doorbells: [...this.msiDoorbells] };
  }

  private unmapMsi(): void {
    const operation = 'msi.unmap';
    this.assertOpen(operation);
    if (this.capabilities.msi !== 'explicit' || this.msiDoorbells.length === 0) return;
    const remaining = [...this.msiDoorbells];
    try {
      while (remaining.length > 0) {
        const doorbell = remaining[remaining.length - 1]!;
        this.guard(operation, () => this.handle.doUnmapMsiDoorbell!(doorbell.index, doorbell.iova.start));
        remaining.pop();
      }
    } finally {
      this.msiDoorbells = remaining;
      this.recomputeSpace();
    }
  }

  /** IOVA bytes one doorbell takes: a whole window (windowed), else its size in whole granules. */
  private msiSlotSize(operation: string, doorbellSize: bigint): bigint {
    const unit = this.mappingUnit(operation);
    if (this.capabilities.model === 'windowed') return unit;
    const size = doorbellSize > unit ? doorbellSize : unit;
    return ((size + unit - 1n) / unit) * unit;
  }

  private checkMsiSlots(operation: string, first: bigint, slot: bigint, count: number): bigint[] {
    if (first % slot !== 0n) throw this.error('misaligned', operation, `MSI doorbell IOVA ${hex(first)} must be a multiple of ${hex(slot)}`);
    const starts: bigint[] = [];
    for (let position = 0; position < count; position++) {
      const iova = { start: first + BigInt(position) * slot, last: first + BigInt(position + 1) * slot - 1n };
      this.checkUsable(operation, iova, () => `MSI doorbell ${position}`);
      if (!this.allocator.isFree(iova)) throw this.error('overlap', operation, `MSI doorbell slot ${formatRange(iova)} is already in use`);
      starts.push(iova.start);
    }
    return starts;
  }

  /** The lowest free slots above the highest DMA mapping, then the lowest free slots below it. */
  private findMsiSlots(operation: string, slot: bigint, count: number): bigint[] {
    const highest = this.records.last();
    const above = highest === undefined ? 0n : highest.value.mapping.iova.last + 1n;
    const candidates: bigint[] = [];
    const collect = (from: bigint, to: bigint): void => {
      for (const run of this.allocator.freeRanges()) {
        if (candidates.length >= count) return;
        let start = run.start > from ? run.start : from;
        start = ((start + slot - 1n) / slot) * slot;
        for (; start + slot - 1n <= run.last && start < to && candidates.length < count; start += slot) candidates.push(start);
      }
    };
    collect(above, 1n << 64n);
    if (candidates.length < count) collect(0n, above);
    if (candidates.length < count) {
      throw this.error('no-space', operation, `${count} MSI doorbells need ${count} free slots of ${hex(slot)} bytes, but only ${candidates.length} are free`);
    }
    return candidates.sort(compareBigint);
  }

  // --- internals -----------------------------------------------------------------------------

  private mapParsed(operation: string, requested: bigint | undefined, memory: HostMemory, access: Access): Mapping {
    const unit = this.mappingUnit(operation);
    const windowed = this.capabilities.model === 'windowed';
    // Messages are built only when an error is thrown: this is the hot path.
    const what = (): string => `failed to map ${hex(memory.length)} bytes`;
    if (memory.address % unit !== 0n || memory.length % unit !== 0n) {
      throw this.error(
        'misaligned',
        operation,
        `${what()} from host address ${hex(memory.address)}: address and length must be multiples of ${windowed ? `the window size ${hex(unit)}` : `the IO page size ${hex(unit)}`}`,
      );
    }
    if (windowed) {
      // Each PAMU window maps one physically contiguous chunk (shared/facts/pamu-sdk-abi.md §4):
      // refuse memory whose contiguity is unknown or smaller than a window before the kernel sees it.
      const page = memory.contiguousPageSize;
      if (page === undefined || page < unit || !isPowerOfTwo(page)) {
        throw this.error(
          'invalid-argument',
          operation,
          `${what()}: every ${hex(unit)}-byte window must be backed by one physically contiguous chunk; give memory.contiguousPageSize (a hugepage size of at least ${hex(unit)})`,
        );
      }
    }
    let iova: IovaRange;
    let ownsIova = false;
    if (requested === undefined) {
      this.checkBudget(operation, what);
      iova = this.allocateForMap(operation, memory.length);
      ownsIova = true;
    } else {
      if (requested % unit !== 0n) {
        throw this.error('misaligned', operation, `${what()} at IOVA ${hex(requested)}: the IOVA must be a multiple of ${hex(unit)}`);
      }
      const last = requested + memory.length - 1n;
      if (last > U64_MAX) throw this.error('invalid-argument', operation, `${hex(memory.length)} bytes at IOVA ${hex(requested)} wrap past 2^64-1`);
      iova = { start: requested, last };
      const clash = this.firstOverlap(iova);
      if (clash !== undefined) {
        throw this.error('overlap', operation, `${what()} at IOVA ${hex(iova.start)}: the range overlaps mapping ${formatRange(clash.mapping.iova)}`);
      }
      this.checkBudget(operation, what);
      this.checkUsable(operation, iova, () => `${hex(memory.length)} bytes at IOVA ${hex(iova.start)}`);
      const allocation = this.allocations.size === 0 ? undefined : this.allocations.floor(iova.start)?.value;
      if (allocation === undefined || !rangeContainsRange(allocation, iova)) {
        // Mappings are checked above; what the allocator has taken (allocations, doorbells, IOVAs it
        // chose) must be free too. Explicit IOVAs themselves wait in pendingReservations.
        if (!this.allocator.isFree(iova)) {
          const used = this.usedRanges().find((range) => rangesOverlap(range, iova));
          throw this.error('overlap', operation, `${what()} at IOVA ${hex(iova.start)}: the range overlaps ${used ? `allocated range ${formatRange(used)}` : 'IOVA space in use'}`);
        }
        this.pendingReservations.set(iova.start, iova);
        ownsIova = true;
      }
    }
    const mapping: Mapping = { iova, memory, access };
    try {
      this.guard(operation, () => this.handle.doMap(mapping));
    } catch (error) {
      if (ownsIova) this.releaseIova(iova);
      throw error;
    }
    this.records.set(iova.start, { mapping, ownsIova });
    this.bytesMapped += memory.length;
    return mapping;
  }

  private checkBudget(operation: string, what: () => string): void {
    const budgetLeft = this.budgetLeft();
    if (budgetLeft !== null && budgetLeft <= 0) {
      throw this.error(
        'budget-exhausted',
        operation,
        `${what()}: the container holds ${this.records.size} mappings, its whole mapping budget; unmap some, map larger regions, or raise vfio_iommu_type1's dma_entry_limit`,
      );
    }
  }

  /** A free IOVA range for a map without `iova`, aligned for the largest IO page it can use. */
  private allocateForMap(operation: string, length: bigint): IovaRange {
    this.syncAllocator();
    const unit = this.mappingUnit(operation);
    let align = unit;
    if (this.capabilities.model === 'paged') {
      for (let bits = this.currentGeometry.ioPageSizes; bits > 0n; bits &= bits - 1n) {
        const pageSize = bits & -bits;
        if (pageSize <= length && pageSize > align) align = pageSize;
      }
    }
    try {
      return this.allocator.allocate({ size: length, align, contiguous: true })[0]!;
    } catch (error) {
      if (align === unit) throw this.wrap(operation, error);
      try {
        return this.allocator.allocate({ size: length, align: unit, contiguous: true })[0]!;
      } catch (fallbackError) {
        throw this.wrap(operation, fallbackError);
      }
    }
  }

  private unmapRange(operation: string, range: IovaRange): bigint {
    // The common case, a whole mapping given exactly, needs one tree lookup.
    const exact = this.records.get(range.start);
    const affected = exact !== undefined && exact.mapping.iova.last === range.last ? [exact] : this.mappingsOverlapping(range);
    if (affected.length === 0) return 0n;
    const first = affected[0]!.mapping.iova;
    const last = affected[affected.length - 1]!.mapping.iova;
    const partial = this.capabilities.partialUnmap;
    // A cut through a mapping releases part of its IOVA: the allocator must hold the whole first.
    // Whole mappings (the common case) need no sync: their pending reservations are just dropped.
    if (partial && (first.start < range.start || last.last > range.last)) this.syncAllocator();
    if (!partial) {
      if (first.start < range.start) {
        throw this.error('bisect', operation, `failed to unmap ${formatRange(range)}: it starts inside mapping ${formatRange(first)}; unmap whole mappings`);
      }
      if (last.last > range.last) {
        throw this.error('bisect', operation, `failed to unmap ${formatRange(range)}: it ends inside mapping ${formatRange(last)}; unmap whole mappings`);
      }
    }
    // The tightest range covering what is unmapped: for type1v2 and iommufd exactly whole mappings.
    const target = intersectRange(range, { start: first.start, last: last.last })!;
    const reported = this.guard(operation, () => this.handle.doUnmap(target));
    let expected = 0n;
    for (const record of affected) {
      const { mapping, ownsIova } = record;
      const whole = mapping.iova.start >= range.start && mapping.iova.last <= range.last;
      const cut = whole ? mapping.iova : intersectRange(mapping.iova, range)!;
      expected += rangeSize(cut);
      this.records.delete(mapping.iova.start);
      if (ownsIova) this.releaseIova(cut);
      if (whole) continue;
      for (const remnant of subtractRanges([mapping.iova], [cut])) {
        const offset = remnant.start - mapping.iova.start;
        const memory: HostMemory = { ...mapping.memory, address: mapping.memory.address + offset, length: rangeSize(remnant) };
        this.records.set(remnant.start, { mapping: { iova: remnant, memory, access: mapping.access }, ownsIova });
      }
    }
    this.bytesMapped -= expected;
    if (reported !== expected) {
      throw this.error(
        'kernel',
        operation,
        `unmapping ${formatRange(target)}: the kernel reports ${hex(reported)} bytes unmapped but the container had ${hex(expected)} bytes mapped there; the container's record was updated as if the unmap succeeded`,
      );
    }
    return expected;
  }

  /** The mapping with the highest start at or below `range.last`, if it reaches into the range. */
  private firstOverlap(range: IovaRange): MappingRecord | undefined {
    const entry = this.records.floor(range.last);
    return entry !== undefined && entry.value.mapping.iova.last >= range.start ? entry.value : undefined;
  }

  /** Gives a mapping's IOVA back: dropped from the pending reservations, or returned to the allocator. */
  private releaseIova(range: IovaRange): void {
    const pending = this.pendingReservations.get(range.start);
    if (pending !== undefined && pending.last === range.last) this.pendingReservations.delete(range.start);
    else this.allocator.release(range);
  }

  /** Takes every pending explicit-IOVA reservation out of the allocator's free space. */
  private syncAllocator(): void {
    for (const range of this.pendingReservations.values()) this.allocator.reserve(range);
    this.pendingReservations.clear();
  }

  private mappingsOverlapping(range: IovaRange): MappingRecord[] {
    const result: MappingRecord[] = [];
    const before = this.records.floor(range.start);
    const from = before !== undefined && before.value.mapping.iova.last >= range.start ? before.key : range.start;
    this.records.forEachFrom(from, (start, record) => {
      if (start > range.last) return false;
      result.push(record);
      return true;
    });
    return result;
  }

  /** Throws `reserved` or `out-of-range` unless every address of `range` is usable. */
  private checkUsable(operation: string, range: IovaRange, describe: () => string): void {
    // Usable ranges are few (the aperture minus a hole or two): a scan beats a tree descent.
    const usable = this.usableRanges;
    if (usable.length <= 8) {
      for (const candidate of usable) if (candidate.start <= range.start && range.last <= candidate.last) return;
    } else if (this.usableSet.covers(range)) {
      return;
    }
    const what = describe();
    const blocking = this.blockingReservedOverlapping(range);
    if (blocking !== undefined) throw this.error('reserved', operation, `failed to map ${what}: the range overlaps the ${describeReserved(blocking)}`);
    const doorbell = this.msiDoorbells.find((placed) => rangesOverlap(placed.iova, range));
    if (doorbell !== undefined) {
      throw this.error('reserved', operation, `failed to map ${what}: the range overlaps MSI doorbell ${doorbell.index} at ${formatRange(doorbell.iova)}`);
    }
    const place = this.createdWindows.length > 0 ? 'the created windows' : 'the usable ranges';
    throw this.error(
      'out-of-range',
      operation,
      `failed to map ${what}: the range is outside ${place} (${this.usableRanges.map(formatRange).join(', ') || 'none'})`,
    );
  }

  private blockingReservedOverlapping(range: IovaRange): ReservedRange | undefined {
    return this.reservedRanges.find((reserved) => isBlockingReserved(reserved.kind) && rangesOverlap(reserved, range));
  }

  /** The kernel's ranges clipped to the aperture (the aperture alone when it reports none). */
  private kernelRanges(): IovaRange[] {
    const { aperture, ranges } = this.currentGeometry;
    return ranges === undefined ? [aperture] : intersectRanges(ranges, [aperture]);
  }

  /** Everything that must stay inside the windows: mappings, allocations, SDK-mapped doorbells. */
  private usedRanges(): IovaRange[] {
    return [
      ...[...this.records.values()].map((record) => record.mapping.iova),
      ...this.allocations.values(),
      ...this.msiDoorbells.map((doorbell) => doorbell.iova),
    ];
  }

  /** Unit of every IOVA, address and size: the window size (windowed) or the smallest IO page. */
  private mappingUnit(operation: string): bigint {
    if (this.capabilities.model !== 'windowed') return granuleOf(this.currentGeometry);
    const windows = this.currentGeometry.windows;
    if (windows === undefined || windows.size === 0n) {
      throw this.error('state', operation, 'the windowed IOMMU has no window geometry yet; call setGeometry() first');
    }
    return windows.size;
  }

  private budgetLeft(): number | null {
    const budget = this.capabilities.mappingBudget;
    return budget === null ? null : budget - this.records.size;
  }

  /** Rebuilds the usable ranges and the allocator after geometry, windows or doorbells change. */
  private recomputeSpace(): void {
    let usable = usableRanges(this.kernelRanges(), this.reservedRanges);
    usable = subtractRanges(usable, this.msiDoorbells.map((doorbell) => doorbell.iova));
    if (this.createdWindows.length > 0) usable = intersectRanges(usable, this.createdWindows);
    let unit: bigint | undefined;
    if (this.capabilities.model === 'windowed') {
      const windows = this.currentGeometry.windows;
      unit = windows !== undefined && windows.size > 0n ? windows.size : undefined;
    } else {
      unit = granuleOf(this.currentGeometry);
    }
    this.usableRanges = unit === undefined ? [] : usable.map((range) => alignRangeInward(range, unit)).filter((range) => range !== undefined);
    this.usableSet = new IovaRangeSet(this.usableRanges);
    const allocator = new IovaAllocator(this.usableRanges, unit ?? 0x1000n);
    for (const allocation of this.allocations.values()) allocator.reserve(allocation);
    for (const record of this.records.values()) if (record.ownsIova) allocator.reserve(record.mapping.iova);
    this.allocator = allocator;
    this.pendingReservations.clear();
  }

  /** Runs undo steps after `error`; throws `error`, or `rollback-failed` when an undo step fails. */
  private rollback(operation: string, error: unknown, undo: readonly (() => void)[]): never {
    for (const step of undo) {
      try {
        step();
      } catch (undoError) {
        throw this.error('rollback-failed', operation, `${operation} failed and undoing it failed too; state may be left behind: ${messageOf(undoError)}`, new AggregateError([error, undoError]));
      }
    }
    throw error;
  }

  /** Runs `call`, turning whatever it throws into an IoasError naming this backend and operation. */
  private guard<T>(operation: string, call: () => T): T {
    try {
      return call();
    } catch (error) {
      throw this.wrap(operation, error);
    }
  }

  /** Passes IoasErrors through with the backend and operation filled in; wraps anything else. */
  private wrap(operation: string, error: unknown): IoasError {
    if (IoasError.isInstance(error)) {
      if (error.backend !== undefined && error.operation !== undefined) return error;
      return new IoasError(error.code, error.message, {
        backend: error.backend ?? this.backendName,
        operation: error.operation ?? operation,
        ...(error.ioctl === undefined ? {} : { ioctl: error.ioctl }),
        ...(error.errno === undefined ? {} : { errno: error.errno }),
        cause: error.cause ?? error,
      });
    }
    return this.error('backend-contract', operation, `backend '${this.backendName}' threw a non-IoasError: ${messageOf(error)}`, error);
  }

  private error(code: IoasErrorCode, operation: string, message: string, cause?: unknown): IoasError {
    return new IoasError(code, `${operation}: ${message}`, {
      backend: this.backendName,
      operation,
      ...(cause === undefined ? {} : { cause }),
    });
  }

  private assertOpen(operation: string): void {
    if (this.closed) throw this.error('closed', operation, 'the container is closed');
  }
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

function isMapping(input: unknown): input is Mapping {
  return typeof input === 'object' && input !== null && 'iova' in input && typeof (input as { iova: unknown }).iova === 'object';
}

function toHostMemory(memory: { address: bigint; length: bigint; contiguousPageSize?: bigint | undefined }): HostMemory {
  return memory.contiguousPageSize === undefined
    ? { address: memory.address, length: memory.length }
    : { address: memory.address, length: memory.length, contiguousPageSize: memory.contiguousPageSize };
}

function checkedLast(start: bigint, length: bigint): bigint {
  const last = start + length - 1n;
  if (last > (1n << 64n) - 1n) throw new IoasError('invalid-argument', `${hex(length)} bytes at IOVA ${hex(start)} wrap past 2^64-1`);
  return last;
}

function sortReserved(ranges: readonly ReservedRange[]): readonly ReservedRange[] {
  return [...ranges].sort((a, b) => compareBigint(a.start, b.start) || compareBigint(a.last, b.last));
}

function describeReserved(range: ReservedRange): string {
  const what = range.kind === 'msi' ? 'MSI window' : range.kind === 'reserved' ? 'reserved region' : `${range.kind} region`;
  return `${what} ${formatRange(range)} (from ${range.source}${range.origin === undefined ? '' : `, ${range.origin}`})`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
