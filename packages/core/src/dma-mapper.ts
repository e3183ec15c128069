import type { ContainerErrors } from './container-errors.js';
import { hex } from './format.js';
import { formatRange, intersectRange, type IovaRange, isPowerOfTwo, rangeSize, subtractRanges } from './iova-range.js';
import type { IovaSpace } from './iova-space.js';
import { accessFlags, type IovaOwnership, type MappingTable, mappingFlags, pageOf, wholePage, wholePages } from './mapping-table.js';
import { planRegionMappings } from './plan-region.js';
import type { BackendHandle } from './spi.js';
import type { Access, HostMemory, Mapping } from './types.js';

/**
 * DMA map and unmap: the checks core makes before the backend sees a call, the backend call, and
 * the record kept in step with it. This is the hot path of a VMM that emulates an IOMMU for its
 * guest: no closure, message or per-call collection is built unless something fails.
 */
export class DmaMapper {
  constructor(
    private readonly handle: BackendHandle,
    private readonly space: IovaSpace,
    private readonly table: MappingTable,
    private readonly errors: ContainerErrors,
  ) {}

  /** Out-slot of {@link wholePages}. */
  private readonly pages = new Float64Array(2);

  /** Mappings that can still be made; `null` without a count limit. */
  budgetLeft(): number | null {
    const budget = this.handle.capabilities.mappingBudget;
    return budget === null ? null : budget - this.table.size;
  }

  /**
   * Maps `memory` at `requested` (or at an allocated IOVA), after the checks in the order type1
   * applies them (docs: Container.map). Nothing is left behind on failure.
   */
  map(operation: string, requested: bigint | undefined, memory: HostMemory, access: Access): Mapping {
    const space = this.space;
    const unit = space.unit(operation);
    const windowed = this.handle.capabilities.model === 'windowed';
    // Checks on page numbers (exact for any 64-bit value; see wholePage), messages on bigints.
    const unitPages = space.unitPages;
    const addressPage = wholePage(memory.address);
    const pages = wholePage(memory.length);
    if (addressPage < 0 || pages < 0 || addressPage % unitPages !== 0 || pages % unitPages !== 0) {
      throw this.errors.error(
        'misaligned',
        operation,
        `${failed(memory)} from host address ${hex(memory.address)}: address and length must be multiples of ${windowed ? `the window size ${hex(unit)}` : `the IO page size ${hex(unit)}`}`,
      );
    }
    if (addressPage + pages > PAGES_IN_64_BITS) {
      throw this.errors.error('invalid-argument', operation, `${failed(memory)} from host address ${hex(memory.address)}: the memory wraps past 2^64-1`);
    }
    if (windowed) {
      // Each PAMU window maps one physically contiguous chunk
      // (docs/kernel-rules.md#pamu-window-size-and-contiguous-memory):
      // refuse memory whose contiguity is unknown or smaller than a window before the kernel sees it.
      const page = memory.contiguousPageSize;
      if (page === undefined || page < unit || !isPowerOfTwo(page)) {
        throw this.errors.error(
          'invalid-argument',
          operation,
          `${failed(memory)}: every ${hex(unit)}-byte window must be backed by one physically contiguous chunk; give memory.contiguousPageSize (a hugepage size of at least ${hex(unit)})`,
        );
      }
    }
    const table = this.table;
    const accessBits = accessFlags(access);
    let iova: IovaRange;
    let startPage: number;
    let flags: number;
    if (requested === undefined) {
      this.checkBudget(operation, memory);
      iova = space.allocateForMap(operation, memory.length);
      startPage = pageOf(iova.start);
      flags = mappingFlags(accessBits, 'owned', memory.contiguousPageSize);
      // Free in the allocator, which holds every mapping once synced (allocateForMap syncs).
      if (!table.tryInsert(startPage, startPage + pages - 1, addressPage, flags)) {
        space.releaseIova(iova);
        throw this.errors.error('inconsistent', operation, `${failed(memory)}: the allocator chose ${formatRange(iova)}, which the record says is mapped`);
      }
    } else {
      startPage = wholePage(requested);
      if (startPage < 0 || startPage % unitPages !== 0) {
        throw this.errors.error('misaligned', operation, `${failed(memory)} at IOVA ${hex(requested)}: the IOVA must be a multiple of ${hex(unit)}`);
      }
      if (startPage + pages > PAGES_IN_64_BITS) {
        throw this.errors.error('invalid-argument', operation, `${hex(memory.length)} bytes at IOVA ${hex(requested)} wrap past 2^64-1`);
      }
      iova = { start: requested, last: requested + memory.length - 1n };
      // Inside an allocation the IOVA is the user's; elsewhere it is taken from free space, and
      // reaches the allocator only when it is next asked (MappingTable.takePending).
      const ownership = space.inAllocation(iova) ? 'allocation' : 'pending';
      flags = mappingFlags(accessBits, ownership, memory.contiguousPageSize);
      // The overlap check and the insert in one step; the entry is withdrawn if anything fails.
      if (!table.tryInsert(startPage, startPage + pages - 1, addressPage, flags)) {
        throw this.errors.error('overlap', operation, `${failed(memory)} at IOVA ${hex(requested)}: the range overlaps mapping ${formatRange(table.overlap(iova)!.iova)}`);
      }
      if (!this.checkInserted(operation, memory, iova, startPage, pages, ownership)) {
        table.withdrawInsert(startPage, startPage + pages - 1);
        this.refuseInserted(operation, memory, iova, startPage, pages, ownership);
      }
    }
    const mapping: Mapping = { iova, memory, access };
    try {
      this.handle.doMap(mapping);
    } catch (error) {
      table.withdrawInsert(startPage, startPage + pages - 1);
      if (requested === undefined) space.releaseIova(iova);
      throw this.errors.wrap(operation, error);
    }
    table.commitInsert(startPage, startPage + pages - 1, flags, memory.contiguousPageSize);
    return mapping;
  }

  /** The checks after the overlap check, in type1's order, on a tentatively inserted mapping. */
  private checkInserted(operation: string, memory: HostMemory, iova: IovaRange, startPage: number, pages: number, ownership: IovaOwnership): boolean {
    const budget = this.handle.capabilities.mappingBudget;
    // The table holds the new mapping already: count it out.
    if (budget !== null && budget - (this.table.size - 1) <= 0) return false;
    if (!this.space.isUsablePages(startPage, startPage + pages - 1)) return false;
    // Mappings are checked; what the allocator has taken (allocations, IOVAs it chose) must be free too.
    return ownership !== 'pending' || this.space.isFree(iova);
  }

  /** Throws the error of the first check {@link checkInserted} failed (the entry withdrawn). */
  private refuseInserted(operation: string, memory: HostMemory, iova: IovaRange, startPage: number, pages: number, ownership: IovaOwnership): never {
    this.checkBudget(operation, memory);
    if (!this.space.isUsablePages(startPage, startPage + pages - 1)) this.space.refuseUnusable(operation, iova, `${hex(memory.length)} bytes at IOVA ${hex(iova.start)}`);
    const used = ownership === 'pending' ? this.space.usedRanges().find((range) => range.start <= iova.last && iova.start <= range.last) : undefined;
    throw this.errors.error('overlap', operation, `${failed(memory)} at IOVA ${hex(iova.start)}: the range overlaps ${used ? `allocated range ${formatRange(used)}` : 'IOVA space in use'}`);
  }

  /**
   * Maps a region with the fewest mappings the usable ranges allow, all or nothing; returns the
   * mappings made and the parts skipped.
   */
  mapRegion(operation: string, region: IovaRange, memory: HostMemory, access: Access): { mappings: Mapping[]; skipped: readonly IovaRange[] } {
    const plan = this.errors.guard(operation, () => planRegionMappings(region, this.space.usable, this.space.unit(operation), this.budgetLeft()));
    const done: Mapping[] = [];
    try {
      for (const piece of plan.pieces) {
        const pieceMemory: HostMemory = { ...memory, address: memory.address + piece.memoryOffset, length: rangeSize(piece.iova) };
        done.push(this.map(operation, piece.iova.start, pieceMemory, access));
      }
    } catch (error) {
      this.errors.rollback(operation, error, done.reverse().map((mapping) => () => void this.unmap(operation, mapping.iova)));
    }
    return { mappings: done, skipped: plan.skipped };
  }

  /**
   * Unmaps every mapping inside `range`; returns the bytes unmapped (see Container.unmap). `call`,
   * when given, makes the backend call instead of `doUnmap` (a dirty unmap), on the tightest range
   * covering the mappings unmapped.
   */
  unmap(operation: string, range: IovaRange, call?: (target: IovaRange) => bigint): bigint {
    // The common case, a whole mapping given exactly: one tree descent, nothing allocated. The
    // mapping is taken out first and put back if the backend refuses.
    const table = this.table;
    const pages = this.pages;
    if (wholePages(range, pages) && table.tryRemove(pages[0]!, pages[1]!)) {
      const startPage = pages[0]!;
      const lastPage = pages[1]!;
      let reported: bigint;
      try {
        reported = call === undefined ? this.handle.doUnmap(range) : call(range);
      } catch (error) {
        table.restoreRemove(startPage, lastPage);
        throw this.errors.wrap(operation, error);
      }
      if (table.commitRemove(startPage, lastPage) === 'owned') this.space.releaseIova(range);
      const expected = range.last - range.start + 1n;
      if (reported !== expected) this.refuseReport(operation, range, reported, expected);
      return expected;
    }
    return this.unmapOverlapping(operation, range, call);
  }

  private unmapOverlapping(operation: string, range: IovaRange, call: ((target: IovaRange) => bigint) | undefined): bigint {
    const affected = this.table.overlapping(range);
    if (affected.length === 0) return 0n;
    const first = affected[0]!.mapping.iova;
    const last = affected[affected.length - 1]!.mapping.iova;
    const partial = this.handle.capabilities.partialUnmap;
    const cuts = first.start < range.start || last.last > range.last;
    if (partial) {
      // A cut must fall on a unit boundary: the record keeps whole pages (whole windows on PAMU),
      // as the kernel does.
      const unit = this.space.unit(operation);
      if ((first.start < range.start && range.start % unit !== 0n) || (last.last > range.last && (range.last + 1n) % unit !== 0n)) {
        throw this.errors.error('misaligned', operation, `failed to unmap ${formatRange(range)}: a cut through a mapping must fall on a multiple of ${hex(unit)}`);
      }
      // A cut releases part of a mapping's IOVA: the allocator must hold the whole first. Whole
      // mappings (the common case) need no sync: their pending reservations are just dropped.
      if (cuts) this.space.syncAllocator();
    } else {
      if (first.start < range.start) {
        throw this.errors.error('bisect', operation, `failed to unmap ${formatRange(range)}: it starts inside mapping ${formatRange(first)}; unmap whole mappings`);
      }
      if (last.last > range.last) {
        throw this.errors.error('bisect', operation, `failed to unmap ${formatRange(range)}: it ends inside mapping ${formatRange(last)}; unmap whole mappings`);
      }
    }
    // The tightest range covering what is unmapped: for type1v2 and iommufd exactly whole mappings.
    const target = intersectRange(range, { start: first.start, last: last.last })!;
    const reported = this.errors.guard(operation, () => (call === undefined ? this.handle.doUnmap(target) : call(target)));
    let expected = 0n;
    for (const { mapping, ownsIova } of affected) {
      const whole = mapping.iova.start >= range.start && mapping.iova.last <= range.last;
      const cut = whole ? mapping.iova : intersectRange(mapping.iova, range)!;
      expected += rangeSize(cut);
      const ownership = this.table.remove(mapping.iova.start);
      if (ownership === 'owned') this.space.releaseIova(cut);
      if (whole) continue;
      for (const remnant of subtractRanges([mapping.iova], [cut])) {
        const offset = remnant.start - mapping.iova.start;
        const memory: HostMemory = { ...mapping.memory, address: mapping.memory.address + offset, length: rangeSize(remnant) };
        this.table.add(remnant, memory, mapping.access, ownsIova ? 'owned' : 'allocation');
      }
    }
    if (reported !== expected) this.refuseReport(operation, target, reported, expected);
    return expected;
  }

  private refuseReport(operation: string, target: IovaRange, reported: bigint, expected: bigint): never {
    throw this.errors.error(
      'inconsistent',
      operation,
      `unmapping ${formatRange(target)}: the kernel reports ${hex(reported)} bytes unmapped but the container had ${hex(expected)} bytes mapped there; the container's record was updated as if the unmap succeeded`,
    );
  }

  /** Throws `budget-exhausted` when no mapping can be made. */
  private checkBudget(operation: string, memory: HostMemory): void {
    const budgetLeft = this.budgetLeft();
    if (budgetLeft !== null && budgetLeft <= 0) {
      throw this.errors.error(
        'budget-exhausted',
        operation,
        `${failed(memory)}: the container holds ${this.table.size} mappings, its whole mapping budget; unmap some, map larger regions, or raise vfio_iommu_type1's dma_entry_limit`,
      );
    }
  }
}

/** 2^64 / 4 KiB. */
const PAGES_IN_64_BITS = 2 ** 52;

/** The start of every map failure message. */
function failed(memory: HostMemory): string {
  return `failed to map ${hex(memory.length)} bytes`;
}
