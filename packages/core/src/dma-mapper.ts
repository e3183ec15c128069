import type { ContainerErrors } from './container-errors.js';
import { hex } from './errors.js';
import { formatRange, intersectRange, type IovaRange, isPowerOfTwo, rangeSize, subtractRanges } from './iova-range.js';
import type { IovaSpace } from './iova-space.js';
import { accessFlags, type IovaOwnership, type MappingTable, pageOf, wholePage, wholePages } from './mapping-table.js';
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
    if (windowed) {
      // Each PAMU window maps one physically contiguous chunk (shared/facts/pamu-sdk-abi.md §4):
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
    let iova: IovaRange;
    let ownership: IovaOwnership;
    let startPage: number;
    if (requested === undefined) {
      this.checkBudget(operation, memory);
      iova = space.allocateForMap(operation, memory.length);
      startPage = pageOf(iova.start);
      ownership = 'owned';
    } else {
      startPage = wholePage(requested);
      if (startPage < 0 || startPage % unitPages !== 0) {
        throw this.errors.error('misaligned', operation, `${failed(memory)} at IOVA ${hex(requested)}: the IOVA must be a multiple of ${hex(unit)}`);
      }
      if (startPage + pages > PAGES_IN_64_BITS) {
        throw this.errors.error('invalid-argument', operation, `${hex(memory.length)} bytes at IOVA ${hex(requested)} wrap past 2^64-1`);
      }
      iova = { start: requested, last: requested + memory.length - 1n };
      if (table.overlapsPages(startPage, startPage + pages - 1)) {
        throw this.errors.error('overlap', operation, `${failed(memory)} at IOVA ${hex(requested)}: the range overlaps mapping ${formatRange(table.overlap(iova)!.iova)}`);
      }
      this.checkBudget(operation, memory);
      if (!space.isUsablePages(startPage, startPage + pages - 1)) space.refuseUnusable(operation, iova, `${hex(memory.length)} bytes at IOVA ${hex(requested)}`);
      if (space.inAllocation(iova)) {
        ownership = 'allocation';
      } else {
        // Mappings are checked above; what the allocator has taken (allocations, doorbells, IOVAs it
        // chose) must be free too. The explicit IOVA itself reaches the allocator only when it is
        // next asked (MappingTable.takePending).
        if (!space.isFree(iova)) {
          const used = space.usedRanges().find((range) => range.start <= iova.last && iova.start <= range.last);
          throw this.errors.error('overlap', operation, `${failed(memory)} at IOVA ${hex(requested)}: the range overlaps ${used ? `allocated range ${formatRange(used)}` : 'IOVA space in use'}`);
        }
        ownership = 'pending';
      }
    }
    const mapping: Mapping = { iova, memory, access };
    try {
      this.handle.doMap(mapping);
    } catch (error) {
      if (ownership === 'owned') space.releaseIova(iova);
      throw this.errors.wrap(operation, error);
    }
    table.addPages(startPage, startPage + pages - 1, addressPage, accessFlags(access), ownership, memory.contiguousPageSize);
    return mapping;
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

  /** Unmaps every mapping inside `range`; returns the bytes unmapped (see Container.unmap). */
  unmap(operation: string, range: IovaRange): bigint {
    // The common case, a whole mapping given exactly: two tree descents, nothing allocated.
    const table = this.table;
    const pages = this.pages;
    const flags = wholePages(range, pages) ? table.exactFlags(pages[0]!, pages[1]!) : -1;
    if (flags >= 0) {
      const startPage = pages[0]!;
      const lastPage = pages[1]!;
      let reported: bigint;
      try {
        reported = this.handle.doUnmap(range);
      } catch (error) {
        throw this.errors.wrap(operation, error);
      }
      const ownership = table.removeExact(startPage, lastPage, flags);
      if (ownership === 'owned') this.space.releaseIova(range);
      const expected = range.last - range.start + 1n;
      if (reported !== expected) this.refuseReport(operation, range, reported, expected);
      return expected;
    }
    return this.unmapOverlapping(operation, range);
  }

  private unmapOverlapping(operation: string, range: IovaRange): bigint {
    const affected = this.table.overlapping(range);
    if (affected.length === 0) return 0n;
    const first = affected[0]!.mapping.iova;
    const last = affected[affected.length - 1]!.mapping.iova;
    const partial = this.handle.capabilities.partialUnmap;
    // A cut through a mapping releases part of its IOVA: the allocator must hold the whole first.
    // Whole mappings (the common case) need no sync: their pending reservations are just dropped.
    if (partial && (first.start < range.start || last.last > range.last)) this.space.syncAllocator();
    if (!partial) {
      if (first.start < range.start) {
        throw this.errors.error('bisect', operation, `failed to unmap ${formatRange(range)}: it starts inside mapping ${formatRange(first)}; unmap whole mappings`);
      }
      if (last.last > range.last) {
        throw this.errors.error('bisect', operation, `failed to unmap ${formatRange(range)}: it ends inside mapping ${formatRange(last)}; unmap whole mappings`);
      }
    }
    // The tightest range covering what is unmapped: for type1v2 and iommufd exactly whole mappings.
    const target = intersectRange(range, { start: first.start, last: last.last })!;
    const reported = this.errors.guard(operation, () => this.handle.doUnmap(target));
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
      'kernel',
      operation,
      `unmapping ${formatRange(target)}: the kernel reports ${hex(reported)} bytes unmapped but the container had ${hex(expected)} bytes mapped there; the container's record was updated as if the unmap succeeded`,
    );
  }

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
