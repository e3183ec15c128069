// The reference model: a plain list of mappings, allocations, windows and MSI doorbells, with the
// rules the SDK documents (docs/kernel-rules.md, Container's TSDoc), written for this test. It
// takes from the container only what the kernel answers: the geometry (aperture, ranges, IO page
// sizes, window size), the reserved ranges and the capabilities.
import type { Container, Geometry } from '@ioas/core';
import { alignInward, alignUp, contains, intersect, isPowerOfTwo, overlaps, type Range, size, subtract, U64_MAX } from './ranges.js';

export interface ModelMapping {
  readonly start: bigint;
  readonly last: bigint;
  readonly address: bigint;
  readonly length: bigint;
  readonly contiguousPageSize: bigint | undefined;
  readonly read: boolean;
  readonly write: boolean;
}

export interface ModelDoorbell {
  readonly index: number;
  readonly iova: Range;
}

export interface MemoryArgs {
  readonly address: bigint;
  readonly length: bigint;
  readonly contiguousPageSize: bigint | undefined;
}

/** What a call must do: fail with one of `codes`, or succeed (and `ok` checks the result and applies it). */
export type Expectation =
  | { readonly kind: 'fail'; readonly codes: readonly string[] }
  | { readonly kind: 'ok'; readonly ok: (result: unknown) => void };

export const fail = (...codes: string[]): Expectation => ({ kind: 'fail', codes });
export const ok = (check: (result: unknown) => void): Expectation => ({ kind: 'ok', ok: check });

/** Number of MSI banks of the P4080 (three MSIIR pages). */
export const P4080_MSI_BANKS = 3;

const inRange = (value: bigint): boolean => value >= 0n && value <= U64_MAX;

export class Model {
  unit: bigint | undefined;
  kernelRanges: Range[] = [];
  /** Reserved ranges the kernel refuses to map (every kind but direct-relaxable). */
  blocking: Range[] = [];
  mappings: ModelMapping[] = [];
  allocations: Range[] = [];
  windows: Range[] = [];
  doorbells: ModelDoorbell[] = [];
  readonly windowed: boolean;
  readonly partial: boolean;
  readonly explicitMsi: boolean;
  readonly msiModel: string;
  readonly allowList: boolean;
  readonly settable: boolean;
  maxWindows = 1;
  /** The IO page sizes (paged): an allocator-chosen IOVA is aligned for the largest the length allows. */
  ioPageSizes = 0n;
  aperture: Range = { start: 0n, last: 0n };
  /** Set by close(): every later call fails with `closed` (or `invalid-argument` for input that does not parse). */
  closed = false;

  constructor(
    container: Container,
    readonly budget: number | null,
  ) {
    const capabilities = container.capabilities;
    this.windowed = capabilities.model === 'windowed';
    this.partial = capabilities.partialUnmap;
    this.explicitMsi = capabilities.msi === 'explicit';
    this.msiModel = capabilities.msi;
    this.allowList = capabilities.windows === 'kernel-allow-list';
    this.settable = capabilities.settableGeometry;
    this.blocking = container
      .reserved()
      .filter((range) => range.kind !== 'direct-relaxable')
      .map((range) => ({ start: range.start, last: range.last }));
    this.readGeometry(container.geometry());
  }

  /** The kernel's answer after open or setGeometry. */
  readGeometry(geometry: Geometry): void {
    const aperture = { start: geometry.aperture.start, last: geometry.aperture.last };
    this.aperture = aperture;
    this.ioPageSizes = geometry.ioPageSizes;
    this.kernelRanges = geometry.ranges === undefined ? [aperture] : intersect(geometry.ranges, [aperture]);
    if (this.windowed) {
      const windows = geometry.windows;
      this.unit = windows !== undefined && windows.size > 0n ? windows.size : undefined;
      this.maxWindows = windows?.maxCount ?? 1;
    } else {
      this.unit = geometry.ioPageSizes & -geometry.ioPageSizes;
    }
  }

  get granule(): bigint {
    return this.unit ?? 0x1000n;
  }

  usable(): Range[] {
    if (this.unit === undefined) return [];
    let usable = subtract(subtract(this.kernelRanges, this.blocking), this.doorbells.map((doorbell) => doorbell.iova));
    if (this.windows.length > 0) usable = intersect(usable, this.windows);
    return alignInward(usable, this.unit);
  }

  isUsable(range: Range): boolean {
    return this.usable().some((usable) => contains(usable, range));
  }

  used(): Range[] {
    return [...this.mappings, ...this.allocations, ...this.doorbells.map((doorbell) => doorbell.iova)];
  }

  /** Free IOVA space: usable minus mappings and allocations (doorbells are not usable). */
  free(): Range[] {
    return subtract(this.usable(), [...this.mappings, ...this.allocations]);
  }

  budgetLeft(): number | null {
    return this.budget === null ? null : this.budget - this.mappings.length;
  }

  addMapping(mapping: ModelMapping): void {
    this.mappings.push(mapping);
    this.mappings.sort((a, b) => (a.start < b.start ? -1 : 1));
  }

  /** The code core gives a map outside the usable ranges. */
  private unusableCode(range: Range): string {
    if (this.blocking.some((blocked) => overlaps(blocked, range))) return 'reserved';
    if (this.doorbells.some((doorbell) => overlaps(doorbell.iova, range))) return 'reserved';
    return 'out-of-range';
  }

  /** The failure of a map before its IOVA is considered (memory and access), or undefined. */
  private memoryProblem(memory: MemoryArgs, read: boolean, write: boolean): string | undefined {
    const { address, length, contiguousPageSize } = memory;
    if (!inRange(address) || !inRange(length) || length === 0n) return 'invalid-argument';
    if (contiguousPageSize !== undefined && (!inRange(contiguousPageSize) || contiguousPageSize === 0n)) return 'invalid-argument';
    if (!read && !write) return 'invalid-argument';
    return undefined;
  }

  /**
   * Container.map at an explicit IOVA (or the allocator's, `iova` undefined): the checks in type1's
   * order (Container.map's TSDoc).
   */
  expectMap(iova: bigint | undefined, memory: MemoryArgs, read: boolean, write: boolean, onOk: (mapping: ModelMapping, result: unknown) => void): Expectation {
    if (iova !== undefined && !inRange(iova)) return fail('invalid-argument');
    const problem = this.memoryProblem(memory, read, write);
    if (problem !== undefined) return fail(problem);
    const unit = this.unit;
    if (unit === undefined) return fail('not-ready');
    if (memory.address % unit !== 0n || memory.length % unit !== 0n) return fail('misaligned');
    if (this.windowed) {
      const page = memory.contiguousPageSize;
      if (page === undefined || page < unit || !isPowerOfTwo(page)) return fail('invalid-argument');
    }
    const left = this.budgetLeft();
    const record = (start: bigint): ModelMapping => ({
      start,
      last: start + memory.length - 1n,
      address: memory.address,
      length: memory.length,
      contiguousPageSize: memory.contiguousPageSize,
      read,
      write,
    });
    if (iova === undefined) {
      if (left !== null && left <= 0) return fail('budget-exhausted');
      const fits = this.free().some((run) => alignUp(run.start, unit) + memory.length - 1n <= run.last);
      if (!fits) return fail('no-space');
      return ok((result) => {
        const mapping = result as { iova: Range };
        const chosen = mapping.iova;
        check(chosen.start % unit === 0n, `allocator-chosen IOVA ${chosen.start} is not aligned to ${unit}`);
        check(size(chosen) === memory.length, 'allocator-chosen IOVA range has the wrong size');
        check(this.isUsable(chosen), 'allocator-chosen IOVA range is not usable');
        check(!this.used().some((used) => overlaps(used, chosen)), 'allocator-chosen IOVA range overlaps something live');
        // Aligned for the largest IO page the length allows, when such a slot is free (Container.map's TSDoc).
        if (!this.windowed) {
          let large = unit;
          for (let bits = this.ioPageSizes; bits > 0n; bits &= bits - 1n) {
            const page = bits & -bits;
            if (page <= memory.length && page > large) large = page;
          }
          const free = this.free().some((run) => alignUp(run.start, large) + memory.length - 1n <= run.last);
          if (free) check(chosen.start % large === 0n, `allocator-chosen IOVA ${chosen.start} is not aligned to the ${large}-byte IO page its length allows`);
        }
        const made = record(chosen.start);
        onOk(made, result);
        this.addMapping(made);
      });
    }
    if (iova % unit !== 0n) return fail('misaligned');
    if (iova + memory.length - 1n > U64_MAX) return fail('invalid-argument');
    const range = { start: iova, last: iova + memory.length - 1n };
    if (this.mappings.some((mapping) => overlaps(mapping, range))) return fail('overlap');
    if (left !== null && left <= 0) return fail('budget-exhausted');
    if (!this.isUsable(range)) return fail(this.unusableCode(range));
    const inAllocation = this.allocations.some((allocation) => contains(allocation, range));
    if (!inAllocation && this.allocations.some((allocation) => overlaps(allocation, range))) return fail('overlap');
    return ok((result) => {
      const made = record(iova);
      onOk(made, result);
      this.addMapping(made);
    });
  }

  /** The same check as {@link expectMap}, as a code (or undefined: succeeds), for mapRegion's pieces. */
  private mapCode(iova: bigint, memory: MemoryArgs, read: boolean, write: boolean): string | undefined {
    const expectation = this.expectMap(iova, memory, read, write, () => undefined);
    return expectation.kind === 'fail' ? expectation.codes[0] : undefined;
  }

  expectMapRegion(iova: bigint, memory: MemoryArgs, read: boolean, write: boolean, onOk: (pieces: Range[], skipped: Range[], result: unknown) => void): Expectation {
    if (!inRange(iova)) return fail('invalid-argument');
    const problem = this.memoryProblem(memory, read, write);
    if (problem !== undefined) return fail(problem);
    if (iova + memory.length - 1n > U64_MAX) return fail('invalid-argument');
    const unit = this.unit;
    if (unit === undefined) return fail('not-ready');
    const region = { start: iova, last: iova + memory.length - 1n };
    const pieces = alignInward(intersect([region], this.usable()), unit);
    const left = this.budgetLeft();
    if (left !== null && pieces.length > left) return fail('budget-exhausted');
    // Each piece as a map, on a model with the earlier pieces in it; the first failure is the answer.
    const added: ModelMapping[] = [];
    let code: string | undefined;
    for (const piece of pieces) {
      const pieceMemory = { ...memory, address: memory.address + (piece.start - region.start), length: size(piece) };
      code = this.mapCode(piece.start, pieceMemory, read, write);
      if (code !== undefined) break;
      const mapping = { start: piece.start, last: piece.last, ...pieceMemory, read, write };
      added.push(mapping);
      this.addMapping(mapping);
    }
    this.mappings = this.mappings.filter((mapping) => !added.includes(mapping));
    if (code !== undefined) return fail(code);
    return ok((result) => {
      onOk(pieces, subtract([region], pieces), result);
      for (const mapping of added) this.addMapping(mapping);
    });
  }

  expectUnmap(range: Range, onOk: (result: unknown) => void): { expectation: Expectation; subWindowCut: boolean } {
    const exact = this.mappings.find((mapping) => mapping.start === range.start && mapping.last === range.last);
    if (exact !== undefined) {
      return {
        subWindowCut: false,
        expectation: ok((result) => {
          check(result === size(range), `unmap returned ${String(result)}, expected ${size(range)}`);
          onOk(result);
          this.mappings = this.mappings.filter((mapping) => mapping !== exact);
        }),
      };
    }
    const affected = this.mappings.filter((mapping) => overlaps(mapping, range));
    if (affected.length === 0) {
      return { subWindowCut: false, expectation: ok((result) => check(result === 0n, `unmap of nothing returned ${String(result)}`)) };
    }
    const first = affected[0]!;
    const last = affected[affected.length - 1]!;
    const cutsFirst = first.start < range.start;
    const cutsLast = last.last > range.last;
    if (!this.partial && (cutsFirst || cutsLast)) return { subWindowCut: false, expectation: fail('bisect') };
    const unit = this.granule;
    // A cut must fall on a window boundary: the hardware disables whole windows
    // (backend-pamu refuses anything else).
    const subWindowCut = (cutsFirst && range.start % unit !== 0n) || (cutsLast && (range.last + 1n) % unit !== 0n);
    if (subWindowCut) return { subWindowCut, expectation: fail('invalid-argument', 'misaligned', 'bisect', 'unsupported', 'kernel') };
    let expected = 0n;
    const kept: ModelMapping[] = [];
    for (const mapping of this.mappings) {
      if (!overlaps(mapping, range)) {
        kept.push(mapping);
        continue;
      }
      const cut = { start: mapping.start > range.start ? mapping.start : range.start, last: mapping.last < range.last ? mapping.last : range.last };
      expected += size(cut);
      for (const remnant of subtract([mapping], [cut])) {
        const offset = remnant.start - mapping.start;
        kept.push({ ...mapping, start: remnant.start, last: remnant.last, address: mapping.address + offset, length: size(remnant) });
      }
    }
    return {
      subWindowCut,
      expectation: ok((result) => {
        check(result === expected, `unmap returned ${String(result)}, expected ${expected}`);
        onOk(result);
        this.mappings = kept.sort((a, b) => (a.start < b.start ? -1 : 1));
      }),
    };
  }

  expectAllocate(request: { size: bigint; align: bigint | undefined; limit: bigint | undefined; contiguous: boolean | undefined }): Expectation {
    const { size: wanted, align, limit, contiguous } = request;
    if (!inRange(wanted) || wanted === 0n) return fail('invalid-argument');
    if (align !== undefined && (!inRange(align) || !isPowerOfTwo(align))) return fail('invalid-argument');
    if (limit !== undefined && !inRange(limit)) return fail('invalid-argument');
    const unit = this.unit;
    if (align !== undefined) {
      if (unit === undefined) return fail('not-ready');
      if (align < unit) return fail('invalid-argument');
    }
    // Before setGeometry a windowed container's allocator has no space and 4 KiB granules.
    const granule = unit ?? 0x1000n;
    if (wanted % granule !== 0n) return fail('misaligned');
    const step = align ?? granule;
    const top = limit ?? U64_MAX;
    const free = unit === undefined ? [] : this.free();
    const single = free.some((run) => {
      const start = alignUp(run.start, step);
      const last = start + wanted - 1n;
      return last <= run.last && last <= top;
    });
    let capacity = 0n;
    for (const run of free) {
      if (run.start > top) continue;
      const end = ((run.last < top ? run.last : top) + 1n) / granule * granule;
      const start = alignUp(run.start, step);
      if (end > start) capacity += end - start;
    }
    if (!single && (contiguous === true || capacity < wanted)) return fail('no-space');
    return ok((result) => {
      const ranges = result as Range[];
      check(Array.isArray(ranges) && ranges.length > 0, 'allocate returned no range');
      if (contiguous === true || single) check(ranges.length === 1, `allocate returned ${ranges.length} ranges where one fits`);
      let total = 0n;
      for (const range of ranges) {
        total += size(range);
        check(range.start % step === 0n, `allocated ${range.start} is not aligned to ${step}`);
        check(size(range) % granule === 0n, 'allocated range is not whole granules');
        check(range.last <= top, 'allocated range passes the limit');
        check(this.isUsable(range), 'allocated range is not usable');
        check(!this.used().some((used) => overlaps(used, range)), 'allocated range overlaps something live');
        check(ranges.every((other) => other === range || !overlaps(other, range)), 'allocated ranges overlap each other');
      }
      check(total === wanted, `allocated ${total} bytes, asked ${wanted}`);
      this.allocations.push(...ranges.map((range) => ({ start: range.start, last: range.last })));
      this.allocations.sort((a, b) => (a.start < b.start ? -1 : 1));
    });
  }

  expectRelease(range: Range): Expectation {
    const allocation = this.allocations.find((candidate) => candidate.start === range.start && candidate.last === range.last);
    if (allocation === undefined) return fail('not-found');
    if (this.mappings.some((mapping) => overlaps(mapping, allocation))) return fail('in-use');
    return ok(() => {
      this.allocations = this.allocations.filter((candidate) => candidate !== allocation);
    });
  }

  expectCreateWindow(range: Range): Expectation {
    const unit = this.unit;
    if (unit === undefined) return fail('not-ready');
    if (range.start % unit !== 0n || (range.last + 1n) % unit !== 0n) return fail('misaligned');
    if (this.blocking.some((blocked) => overlaps(blocked, range))) return fail('reserved');
    if (subtract([range], this.kernelRanges).length > 0) return fail('out-of-range');
    if (this.windows.some((window) => overlaps(window, range))) return fail('overlap');
    if (this.windows.length === 0 && this.used().some((used) => !contains(range, used))) return fail('in-use');
    return ok((result) => {
      const window = result as { range: Range };
      check(window.range.start === range.start && window.range.last === range.last, 'createWindow returned another range');
      this.windows.push(range);
      this.windows.sort((a, b) => (a.start < b.start ? -1 : 1));
    });
  }

  expectRemoveWindow(range: Range): Expectation {
    const window = this.windows.find((candidate) => candidate.start === range.start && candidate.last === range.last);
    if (window === undefined) return fail('not-found');
    if (this.used().some((used) => overlaps(used, window))) return fail('in-use');
    return ok(() => {
      this.windows = this.windows.filter((candidate) => candidate !== window);
    });
  }

  findMapping(iova: bigint): ModelMapping | undefined {
    return this.mappings.find((mapping) => mapping.start <= iova && iova <= mapping.last);
  }

  /** Where msi.plan puts the doorbells on an explicit-MSI container; a failure code, or the slots. */
  planSlots(iova: bigint | undefined): string | Range[] {
    const unit = this.unit;
    if (unit === undefined) return 'not-ready';
    const slot = unit;
    const count = P4080_MSI_BANKS;
    if (iova !== undefined) {
      if (iova % slot !== 0n) return 'misaligned';
      const slots: Range[] = [];
      for (let position = 0; position < count; position++) {
        const range = { start: iova + BigInt(position) * slot, last: iova + BigInt(position + 1) * slot - 1n };
        if (!this.isUsable(range)) return this.unusableCode(range);
        if ([...this.mappings, ...this.allocations].some((used) => overlaps(used, range))) return 'overlap';
        slots.push(range);
      }
      return slots;
    }
    const highest = this.mappings[this.mappings.length - 1];
    const above = highest === undefined ? 0n : highest.last + 1n;
    const free = this.free();
    const starts: bigint[] = [];
    const collect = (from: bigint, to: bigint): void => {
      for (const run of free) {
        if (starts.length >= count) return;
        let start = alignUp(run.start > from ? run.start : from, slot);
        for (; start + slot - 1n <= run.last && start < to && starts.length < count; start += slot) starts.push(start);
      }
    };
    collect(above, 1n << 64n);
    if (starts.length < count) collect(0n, above);
    if (starts.length < count) return 'no-space';
    return starts.sort((a, b) => (a < b ? -1 : 1)).map((start) => ({ start, last: start + slot - 1n }));
  }

  /** msi.map with a plan (already checked to parse) on an explicit-MSI container. */
  expectMsiMap(plan: { model: string; doorbells: { index: number; iova: Range }[] } | undefined): Expectation {
    if (this.doorbells.length > 0) return fail('in-use');
    let chosen: ModelDoorbell[];
    if (plan === undefined) {
      const slots = this.planSlots(undefined);
      if (typeof slots === 'string') return fail(slots);
      chosen = slots.map((iova, index) => ({ index, iova }));
    } else {
      if (plan.model !== 'explicit') return fail('invalid-argument');
      if (this.unit === undefined) return fail('not-ready');
      const seen = new Set<number>();
      for (const doorbell of plan.doorbells) {
        if (doorbell.index >= P4080_MSI_BANKS) return fail('not-found');
        if (seen.has(doorbell.index)) return fail('invalid-argument');
        seen.add(doorbell.index);
        if (size(doorbell.iova) !== this.unit) return fail('invalid-argument');
        if (plan.doorbells.some((other) => other !== doorbell && overlaps(other.iova, doorbell.iova))) return fail('overlap');
      }
      chosen = plan.doorbells.map((doorbell) => ({ index: doorbell.index, iova: { start: doorbell.iova.start, last: doorbell.iova.last } }));
    }
    const unit = this.unit!;
    for (const doorbell of chosen) {
      if (doorbell.iova.start % unit !== 0n || (doorbell.iova.last + 1n) % unit !== 0n) return fail('misaligned');
      if (!this.isUsable(doorbell.iova)) return fail(this.unusableCode(doorbell.iova));
      if ([...this.mappings, ...this.allocations].some((used) => overlaps(used, doorbell.iova))) return fail('overlap');
    }
    return ok((result) => {
      const mapped = (result as { doorbells: { index: number; iova: Range }[] }).doorbells;
      check(mapped.length === chosen.length, 'msi.map mapped another number of doorbells');
      mapped.forEach((doorbell, position) => {
        check(doorbell.index === chosen[position]!.index && doorbell.iova.start === chosen[position]!.iova.start && doorbell.iova.last === chosen[position]!.iova.last, 'msi.map placed a doorbell elsewhere');
      });
      this.doorbells = chosen;
    });
  }

  expectSetGeometry(start: bigint, apertureSize: bigint, count: number, onOk: () => void): Expectation {
    if (!inRange(start) || !inRange(apertureSize) || apertureSize === 0n || !Number.isInteger(count) || count <= 0) return fail('invalid-argument');
    if (!this.settable) return fail('unsupported');
    const minimum = 0x1000n;
    const problems: string[] = [];
    let misaligned = false;
    const sizeOk = isPowerOfTwo(apertureSize) && apertureSize >= minimum;
    if (!sizeOk) problems.push('size');
    else if (start % apertureSize !== 0n) {
      problems.push('start');
      misaligned = true;
    }
    if (start + apertureSize - 1n > U64_MAX) problems.push('wraps');
    const countOk = count >= 1 && count <= this.maxWindows && isPowerOfTwo(BigInt(count));
    if (!countOk) problems.push('count');
    else if (sizeOk && apertureSize / BigInt(count) < minimum) problems.push('small');
    if (problems.length > 0) return fail(misaligned && problems.length === 1 ? 'misaligned' : 'invalid-argument');
    if (this.mappings.length > 0 || this.allocations.length > 0 || this.doorbells.length > 0 || this.windows.length > 0) return fail('in-use');
    return ok(onOk);
  }
}

export class Disagreement extends Error {}

export function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Disagreement(message);
}
