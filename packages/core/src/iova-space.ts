import { BTreeMap } from './btree.js';
import type { ContainerErrors } from './container-errors.js';
import { hex } from './format.js';
import { IovaAllocator } from './iova-allocator.js';
import {
  alignRangeInward,
  compareBigint,
  formatRange,
  intersectRanges,
  type IovaRange,
  rangesOverlap,
  subtractRanges,
  U64_MAX,
} from './iova-range.js';
import { IovaRangeSet } from './iova-range-set.js';
import { type MappingTable, pageAddress, pageOf } from './mapping-table.js';
import {
  type Capabilities,
  type Geometry,
  granuleOf,
  isBlockingReserved,
  type MsiDoorbellPlacement,
  type ReservedRange,
  usableRanges,
} from './types.js';

/**
 * A container's IOVA space: the geometry, the reserved ranges, the windows and the MSI doorbells
 * that shape it, the usable ranges they leave, and what is taken from them (allocations and the
 * IOVAs the allocator chose for maps). It answers "may this range be used?" and "where is free
 * space?"; the mappings themselves are the {@link MappingTable}'s.
 */
export class IovaSpace {
  /** The current geometry (change it with {@link adopt}). */
  geometry!: Geometry;
  /** Reserved ranges, sorted by start (change them with {@link adoptMembers}). */
  reserved: readonly ReservedRange[];
  /** Windows created by the user, in address order. */
  readonly windows: IovaRange[] = [];
  /** MSI doorbells the container mapped (explicit model). */
  doorbells: MsiDoorbellPlacement[] = [];
  /** Ranges handed out by `allocate()`, by start. */
  readonly allocations = new BTreeMap<IovaRange>();
  /** What maps may use: see {@link recompute}. */
  usable: IovaRange[] = [];
  private usableSet = new IovaRangeSet();
  /** The window size (windowed; undefined until the windows are configured) or the granule (paged). */
  private mappingUnit: bigint | undefined;
  /** The mapping unit in 4 KiB pages (a power of two: the unit is one of 4 KiB or more). */
  unitPages = 1;
  /** The usable ranges as `[startPage, lastPage]` pairs of 4 KiB pages. */
  private usablePages = new Float64Array(0);
  private allocator: IovaAllocator;

  constructor(
    private readonly capabilities: Capabilities,
    geometry: Geometry,
    reserved: readonly ReservedRange[],
    private readonly table: MappingTable,
    private readonly errors: ContainerErrors,
  ) {
    this.reserved = sortReserved(reserved);
    this.allocator = new IovaAllocator([], 0x1000n);
    this.adopt(geometry);
  }

  /** Unit of every IOVA, address and size: the window size (windowed) or the smallest IO page. */
  unit(operation: string): bigint {
    const unit = this.mappingUnit;
    if (unit === undefined) {
      throw this.errors.error('not-ready', operation, 'the windowed IOMMU has no window geometry yet; call setGeometry() first');
    }
    return unit;
  }

  /** The kernel's ranges clipped to the aperture (the aperture alone when it reports none). */
  kernelRanges(): IovaRange[] {
    const { aperture, ranges } = this.geometry;
    return ranges === undefined ? [aperture] : intersectRanges(ranges, [aperture]);
  }

  /** The first reserved range that blocks maps and overlaps `range`. */
  blockingReservedOverlapping(range: IovaRange): ReservedRange | undefined {
    return this.reserved.find((reserved) => isBlockingReserved(reserved.kind) && rangesOverlap(reserved, range));
  }

  /** Everything that must stay inside the windows: mappings, allocations, SDK-mapped doorbells. */
  usedRanges(): IovaRange[] {
    return [
      ...this.table.mappings().map((mapping) => mapping.iova),
      ...this.allocations.values(),
      ...this.doorbells.map((doorbell) => doorbell.iova),
    ];
  }

  /** Throws `reserved` or `out-of-range` unless every address of `range` is usable. */
  checkUsable(operation: string, range: IovaRange, describe: () => string): void {
    if (!this.isUsable(range)) this.refuseUnusable(operation, range, describe());
  }

  /** True when every page of `[startPage, lastPage]` is usable (the hot path's {@link isUsable}). */
  isUsablePages(startPage: number, lastPage: number): boolean {
    const pages = this.usablePages;
    if (pages.length > 16) return this.isUsable({ start: pageAddress(startPage), last: pageAddress(lastPage + 1) - 1n });
    for (let index = 0; index < pages.length; index += 2) if (pages[index]! <= startPage && lastPage <= pages[index + 1]!) return true;
    return false;
  }

  /** True when every address of `range` is usable. */
  isUsable(range: IovaRange): boolean {
    // Usable ranges are few (the aperture minus a hole or two): a scan beats a tree descent.
    const usable = this.usable;
    if (usable.length > 8) return this.usableSet.covers(range);
    for (const candidate of usable) if (candidate.start <= range.start && range.last <= candidate.last) return true;
    return false;
  }

  /** Throws `reserved` or `out-of-range` for a range that is not usable, saying why. */
  refuseUnusable(operation: string, range: IovaRange, what: string): never {
    const blocking = this.blockingReservedOverlapping(range);
    if (blocking !== undefined) throw this.errors.error('reserved', operation, `failed to map ${what}: the range overlaps the ${describeReserved(blocking)}`);
    const doorbell = this.doorbells.find((placed) => rangesOverlap(placed.iova, range));
    if (doorbell !== undefined) {
      throw this.errors.error('reserved', operation, `failed to map ${what}: the range overlaps MSI doorbell ${doorbell.index} at ${formatRange(doorbell.iova)}`);
    }
    const place = this.windows.length > 0 ? 'the created windows' : 'the usable ranges';
    throw this.errors.error('out-of-range', operation, `failed to map ${what}: the range is outside ${place} (${this.usable.map(formatRange).join(', ') || 'none'})`);
  }

  /** True when `range` lies inside one allocation. */
  inAllocation(range: IovaRange): boolean {
    if (this.allocations.size === 0) return false;
    const allocation = this.allocations.floor(range.start)?.value;
    return allocation !== undefined && allocation.start <= range.start && range.last <= allocation.last;
  }

  /**
   * True when no allocation or allocator-chosen IOVA holds any of `range` (a usable range, so no
   * doorbell either). Mappings at explicit IOVAs not yet synced are the table's to check; callers
   * that need them counted call {@link syncAllocator} first.
   */
  isFree(range: IovaRange): boolean {
    if (this.allocations.size === 0 && !this.table.holdsAllocatorSpace) return true;
    return this.allocator.isFree(range);
  }

  /** Takes every pending explicit-IOVA reservation out of the allocator's free space. */
  syncAllocator(): void {
    for (const range of this.table.takePending()) this.allocator.reserve(range);
  }

  /** A free IOVA range for a map without `iova`, aligned for the largest IO page it can use. */
  allocateForMap(operation: string, length: bigint): IovaRange {
    this.syncAllocator();
    const unit = this.unit(operation);
    let align = unit;
    if (this.capabilities.model === 'paged') {
      for (let bits = this.geometry.ioPageSizes; bits > 0n; bits &= bits - 1n) {
        const pageSize = bits & -bits;
        if (pageSize <= length && pageSize > align) align = pageSize;
      }
    }
    try {
      return this.allocator.allocate({ size: length, align, contiguous: true })[0]!;
    } catch (error) {
      if (align === unit) throw this.errors.wrap(operation, error);
      try {
        return this.allocator.allocate({ size: length, align: unit, contiguous: true })[0]!;
      } catch (fallbackError) {
        throw this.errors.wrap(operation, fallbackError);
      }
    }
  }

  /** Gives the IOVA of an owned mapping (or part of it) back to the allocator. */
  releaseIova(range: IovaRange): void {
    this.allocator.release(range);
  }

  /** Allocates ranges for the user. */
  allocate(operation: string, request: { size: bigint; align?: bigint | undefined; limit?: bigint | undefined; contiguous?: boolean | undefined }): IovaRange[] {
    this.syncAllocator();
    const ranges = this.errors.guard(operation, () =>
      this.allocator.allocate({
        size: request.size,
        ...(request.align === undefined ? {} : { align: request.align }),
        ...(request.limit === undefined ? {} : { limit: request.limit }),
        ...(request.contiguous === undefined ? {} : { contiguous: request.contiguous }),
      }),
    );
    for (const range of ranges) this.allocations.set(range.start, range);
    return ranges;
  }

  /** Gives back an allocation (the caller has checked it is one and holds no mapping). */
  release(range: IovaRange): void {
    this.allocations.delete(range.start);
    this.allocator.release(range);
  }

  /** The free extents of the allocator, in address order. */
  freeRanges(): IovaRange[] {
    this.syncAllocator();
    return this.allocator.freeRanges();
  }

  /**
   * Takes a geometry the backend reports (at open, after setGeometry): its mapping unit is checked
   * first, so a geometry no kernel reports changes nothing.
   */
  adopt(geometry: Geometry): void {
    const unit = this.unitOf(geometry);
    if (unit !== undefined && (unit < 0x1000n || unit % 0x1000n !== 0n)) {
      throw this.errors.error('backend-contract', 'geometry', `backend '${this.errors.backendName}' reports a mapping unit of ${hex(unit)} bytes: not whole 4 KiB pages, which no kernel does`);
    }
    this.geometry = geometry;
    this.recompute();
  }

  /**
   * Takes the geometry and reserved ranges the backend reports after a group or device joined or
   * left: the usable ranges and the allocator follow. Checked as {@link adopt} is, before anything
   * changes.
   */
  adoptMembers(geometry: Geometry, reserved: readonly ReservedRange[]): void {
    const previous = this.reserved;
    this.reserved = sortReserved(reserved);
    try {
      this.adopt(geometry);
    } catch (error) {
      this.reserved = previous;
      throw error;
    }
  }

  /**
   * The first thing in use (a mapping, an allocation, a window, an MSI doorbell) that `reserved`
   * would block or that lies outside `ranges`: what an attach would put in conflict.
   */
  conflictWith(reserved: readonly ReservedRange[], ranges: readonly IovaRange[] | undefined): { what: string; range: IovaRange; blocking?: ReservedRange } | undefined {
    // What may not be used once they join: their blocking reserved ranges, and all the IOVA space
    // outside their ranges. Each is looked up in the table (O(log n) each, not a scan of mappings).
    const forbidden: { range: IovaRange; blocking?: ReservedRange }[] = reserved.filter((region) => isBlockingReserved(region.kind)).map((region) => ({ range: region, blocking: region }));
    if (ranges !== undefined) for (const range of subtractRanges([{ start: 0n, last: U64_MAX }], ranges)) forbidden.push({ range });
    for (const { range, blocking } of forbidden) {
      const found = this.usedOverlapping(range);
      if (found !== undefined) return { ...found, ...(blocking === undefined ? {} : { blocking }) };
    }
    return undefined;
  }

  /** The first mapping, allocation, window or SDK-mapped MSI doorbell overlapping `range`. */
  private usedOverlapping(range: IovaRange): { what: string; range: IovaRange } | undefined {
    const mapping = this.table.overlapping(range)[0];
    if (mapping !== undefined) return { what: 'mapping', range: mapping.mapping.iova };
    for (const allocation of this.allocations.values()) if (rangesOverlap(allocation, range)) return { what: 'allocation', range: allocation };
    for (const window of this.windows) if (rangesOverlap(window, range)) return { what: 'window', range: window };
    for (const doorbell of this.doorbells) if (rangesOverlap(doorbell.iova, range)) return { what: `MSI doorbell ${doorbell.index}`, range: doorbell.iova };
    return undefined;
  }

  /** The window size (windowed; undefined until the windows are configured) or the granule (paged). */
  private unitOf(geometry: Geometry): bigint | undefined {
    if (this.capabilities.model !== 'windowed') return granuleOf(geometry);
    const windows = geometry.windows;
    return windows !== undefined && windows.size > 0n ? windows.size : undefined;
  }

  /**
   * Rebuilds the usable ranges and the allocator after geometry, windows or doorbells change: the
   * kernel's ranges (or the aperture) minus every blocking reserved range and the doorbells,
   * intersected with the windows when there are any, shrunk to whole units.
   */
  recompute(): void {
    let usable = usableRanges(this.kernelRanges(), this.reserved);
    usable = subtractRanges(usable, this.doorbells.map((doorbell) => doorbell.iova));
    if (this.windows.length > 0) usable = intersectRanges(usable, this.windows);
    const unit = this.unitOf(this.geometry);
    this.mappingUnit = unit;
    this.unitPages = unit === undefined ? 1 : Number(unit / 0x1000n);
    this.usable = unit === undefined ? [] : usable.map((range) => alignRangeInward(range, unit)).filter((range) => range !== undefined);
    this.usableSet = new IovaRangeSet(this.usable);
    this.usablePages = new Float64Array(this.usable.flatMap((range) => [pageOf(range.start), pageOf(range.last)]));
    const allocator = new IovaAllocator(this.usable, unit ?? 0x1000n);
    for (const allocation of this.allocations.values()) allocator.reserve(allocation);
    for (const owned of this.table.ownedRanges()) allocator.reserve(owned);
    this.allocator = allocator;
  }
}

function sortReserved(reserved: readonly ReservedRange[]): ReservedRange[] {
  return [...reserved].sort((a, b) => compareBigint(a.start, b.start) || compareBigint(a.last, b.last));
}

/** A reserved range in words: its kind, where it is and where it came from. */
export function describeReserved(range: ReservedRange): string {
  const what = range.kind === 'msi' ? 'MSI window' : range.kind === 'reserved' ? 'reserved region' : `${range.kind} region`;
  return `${what} ${formatRange(range)} (from ${range.source}${range.origin === undefined ? '' : `, ${range.origin}`})`;
}

