import type { ContainerErrors } from './container-errors.js';
import { hex } from './format.js';
import { compareBigint, formatRange } from './iova-range.js';
import type { IovaSpace } from './iova-space.js';
import type { MappingTable } from './mapping-table.js';
import { msiPlanArgument, msiPlanInput, parseInput } from './schemas.js';
import type { BackendHandle } from './spi.js';
import type { MsiDoorbellPlacement, MsiPlan, U64Input } from './types.js';

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

/**
 * Where MSI doorbells go in a container's IOVA space, whatever the platform's model: reported from
 * the reserved ranges (kernel-managed, fixed), or placed and mapped by the SDK (explicit, PAMU).
 */
export class MsiPlacement implements ContainerMsi {
  constructor(
    private readonly handle: BackendHandle,
    private readonly space: IovaSpace,
    private readonly table: MappingTable,
    private readonly errors: ContainerErrors,
    private readonly assertOpen: (operation: string) => void,
  ) {}

  plan(input?: { readonly iova?: U64Input }): MsiPlan {
    const operation = 'msi.plan';
    const parsed = this.errors.guard(operation, () => parseInput(msiPlanInput, input ?? {}, operation));
    this.assertOpen(operation);
    const model = this.handle.capabilities.msi;
    if (model === 'none') return { model, doorbells: [] };
    if (model !== 'explicit') {
      if (parsed.iova !== undefined) {
        throw this.errors.error(
          'unsupported',
          operation,
          `MSI doorbells are ${model === 'fixed' ? 'at a fixed hardware range' : 'placed by the kernel in its software MSI window'} on this platform; they cannot be moved to ${hex(parsed.iova)}`,
        );
      }
      const mappedBy = model === 'fixed' ? 'hardware' : 'kernel';
      const doorbells = this.space.reserved
        .filter((reserved) => reserved.kind === 'msi')
        .map((reserved, index) => ({ index, iova: { start: reserved.start, last: reserved.last }, mappedBy }) as const);
      return { model, doorbells };
    }
    if (this.space.doorbells.length > 0) return { model, doorbells: [...this.space.doorbells] };
    this.space.syncAllocator();
    const doorbells = this.errors.guard(operation, () => this.handle.doListMsiDoorbells!());
    const slot = this.slotSize(operation, doorbells.reduce((largest, doorbell) => (doorbell.size > largest ? doorbell.size : largest), 0n));
    const starts = parsed.iova === undefined ? this.findSlots(operation, slot, doorbells.length) : this.checkSlots(operation, parsed.iova, slot, doorbells.length);
    return {
      model,
      doorbells: doorbells.map((doorbell, position) => ({
        index: doorbell.index,
        iova: { start: starts[position]!, last: starts[position]! + slot - 1n },
        mappedBy: 'sdk',
      })),
    };
  }

  map(plan?: MsiPlan): MsiPlan {
    const operation = 'msi.map';
    const given = plan === undefined ? undefined : (this.errors.guard(operation, () => parseInput(msiPlanArgument, plan, operation)) as MsiPlan);
    this.assertOpen(operation);
    const model = this.handle.capabilities.msi;
    if (model !== 'explicit') return this.plan(undefined);
    const space = this.space;
    if (space.doorbells.length > 0) throw this.errors.error('in-use', operation, 'MSI doorbells are already mapped; unmap them first');
    const chosen = given ?? this.plan(undefined);
    if (chosen.model !== 'explicit') throw this.errors.error('invalid-argument', operation, `a ${chosen.model} plan cannot be mapped on an explicit-MSI container`);
    const unit = space.unit(operation);
    if (given !== undefined) this.checkGivenPlan(operation, given);
    space.syncAllocator();
    for (const doorbell of chosen.doorbells) {
      const { iova } = doorbell;
      if (iova.start % unit !== 0n || (iova.last + 1n) % unit !== 0n) {
        throw this.errors.error('misaligned', operation, `doorbell ${doorbell.index} slot ${formatRange(iova)} must cover whole ${hex(unit)} units`);
      }
      space.checkUsable(operation, iova, () => `doorbell ${doorbell.index}`);
      if (!space.isFree(iova)) throw this.errors.error('overlap', operation, `doorbell ${doorbell.index} slot ${formatRange(iova)} is already in use`);
    }
    const done: MsiDoorbellPlacement[] = [];
    try {
      for (const doorbell of chosen.doorbells) {
        this.errors.guard(operation, () => this.handle.doMapMsiDoorbell!(doorbell.index, doorbell.iova.start));
        done.push(doorbell);
      }
    } catch (error) {
      this.errors.rollback(operation, error, done.reverse().map((doorbell) => () => this.handle.doUnmapMsiDoorbell!(doorbell.index, doorbell.iova.start)));
    }
    space.doorbells = [...chosen.doorbells];
    space.recompute();
    return { model, doorbells: [...space.doorbells] };
  }

  unmap(): void {
    const operation = 'msi.unmap';
    this.assertOpen(operation);
    const space = this.space;
    if (this.handle.capabilities.msi !== 'explicit' || space.doorbells.length === 0) return;
    const remaining = [...space.doorbells];
    try {
      while (remaining.length > 0) {
        const doorbell = remaining[remaining.length - 1]!;
        this.errors.guard(operation, () => this.handle.doUnmapMsiDoorbell!(doorbell.index, doorbell.iova.start));
        remaining.pop();
      }
    } finally {
      space.doorbells = remaining;
      space.recompute();
    }
  }

  /**
   * A plan the caller built or edited must name each of the backend's doorbells at most once, give
   * each exactly one slot of its size (a whole window on a windowed IOMMU), and keep the slots
   * apart: the hardware has one doorbell per window.
   */
  private checkGivenPlan(operation: string, plan: MsiPlan): void {
    const known = this.errors.guard(operation, () => this.handle.doListMsiDoorbells!());
    const seen = new Set<number>();
    for (const doorbell of plan.doorbells) {
      const backendDoorbell = known.find((candidate) => candidate.index === doorbell.index);
      if (backendDoorbell === undefined) {
        throw this.errors.error('not-found', operation, `MSI doorbell ${doorbell.index} does not exist: the backend has ${known.map((candidate) => candidate.index).join(', ') || 'none'}`);
      }
      if (seen.has(doorbell.index)) throw this.errors.error('invalid-argument', operation, `MSI doorbell ${doorbell.index} is in the plan twice`);
      seen.add(doorbell.index);
      const slot = this.slotSize(operation, backendDoorbell.size);
      if (doorbell.iova.last - doorbell.iova.start + 1n !== slot) {
        throw this.errors.error('invalid-argument', operation, `MSI doorbell ${doorbell.index} slot ${formatRange(doorbell.iova)} must be exactly ${hex(slot)} bytes (one ${this.handle.capabilities.model === 'windowed' ? 'window' : 'slot'})`);
      }
      const clash = plan.doorbells.find((other) => other !== doorbell && other.iova.start <= doorbell.iova.last && doorbell.iova.start <= other.iova.last);
      if (clash !== undefined) {
        throw this.errors.error('overlap', operation, `MSI doorbells ${clash.index} and ${doorbell.index} share IOVA ${formatRange(doorbell.iova)}: one doorbell a slot`);
      }
    }
  }

  mapped(): readonly MsiDoorbellPlacement[] {
    return [...this.space.doorbells];
  }

  /** IOVA bytes one doorbell takes: a whole window (windowed), else its size in whole granules. */
  private slotSize(operation: string, doorbellSize: bigint): bigint {
    const unit = this.space.unit(operation);
    if (this.handle.capabilities.model === 'windowed') return unit;
    const size = doorbellSize > unit ? doorbellSize : unit;
    return ((size + unit - 1n) / unit) * unit;
  }

  private checkSlots(operation: string, first: bigint, slot: bigint, count: number): bigint[] {
    if (first % slot !== 0n) throw this.errors.error('misaligned', operation, `MSI doorbell IOVA ${hex(first)} must be a multiple of ${hex(slot)}`);
    const starts: bigint[] = [];
    for (let position = 0; position < count; position++) {
      const iova = { start: first + BigInt(position) * slot, last: first + BigInt(position + 1) * slot - 1n };
      this.space.checkUsable(operation, iova, () => `MSI doorbell ${position}`);
      if (!this.space.isFree(iova)) throw this.errors.error('overlap', operation, `MSI doorbell slot ${formatRange(iova)} is already in use`);
      starts.push(iova.start);
    }
    return starts;
  }

  /** The lowest free slots above the highest DMA mapping, then the lowest free slots below it. */
  private findSlots(operation: string, slot: bigint, count: number): bigint[] {
    const highest = this.table.last();
    const above = highest === undefined ? 0n : highest.iova.last + 1n;
    const free = this.space.freeRanges();
    const candidates: bigint[] = [];
    const collect = (from: bigint, to: bigint): void => {
      for (const run of free) {
        if (candidates.length >= count) return;
        let start = run.start > from ? run.start : from;
        start = ((start + slot - 1n) / slot) * slot;
        for (; start + slot - 1n <= run.last && start < to && candidates.length < count; start += slot) candidates.push(start);
      }
    };
    collect(above, 1n << 64n);
    if (candidates.length < count) collect(0n, above);
    if (candidates.length < count) {
      throw this.errors.error('no-space', operation, `${count} MSI doorbells need ${count} free slots of ${hex(slot)} bytes, but only ${candidates.length} are free`);
    }
    return candidates.sort(compareBigint);
  }
}
