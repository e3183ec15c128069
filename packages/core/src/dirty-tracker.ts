import type { ContainerErrors } from './container-errors.js';
import { isMapping, type RangeInput, type UnmapInput } from './container-input.js';
import { DirtyBitmap, dirtyBitmapBytes, refilled } from './dirty-bitmap.js';
import type { DmaMapper } from './dma-mapper.js';
import { hex } from './format.js';
import { formatRange, type IovaRange, isPowerOfTwo } from './iova-range.js';
import type { MappingTable } from './mapping-table.js';
import { dirtyReadInput, dirtyUnmapOptions, fastUnmapInput, parseInput, unmapInput } from './schemas.js';
import type { BackendHandle } from './spi.js';
import type { DirtyTracking, U64Input } from './types.js';

/** What {@link ContainerDirty.read} takes. */
export interface DirtyReadInput {
  /** The IOVA range to read: whole pages, cutting no mapping, holding at least one. */
  readonly iova: RangeInput;
  /** Bytes one bit stands for; default the smallest the capability offers. */
  readonly pageSize?: U64Input;
  /**
   * Clear the bits read (default true: the next read reports only pages written since). False only
   * where the capability says `readWithoutClear`.
   */
  readonly clear?: boolean;
  /**
   * A bitmap of the same range and page size, from an earlier read, to read into instead of a new
   * one: its bytes are zeroed and refilled, and it is returned. A 64 GiB range at 4 KiB pages is
   * 2 MiB of bitmap; reusing it spares each pre-copy round that allocation (and the page faults of
   * its first write). A read refused before the kernel leaves it as it was; one the kernel fails
   * leaves it all clean.
   */
  readonly into?: DirtyBitmap;
}

/** What {@link ContainerDirty.unmap} returns. */
export interface DirtyUnmapResult {
  /** Bytes unmapped. */
  readonly unmapped: bigint;
  /** Pages of the unmapped mappings devices wrote since the last read; covers those mappings. */
  readonly dirty: DirtyBitmap;
}

/**
 * Dirty-page tracking for live migration: which pages devices wrote by DMA. Start it, read (and
 * clear) the bitmap of a range in pre-copy rounds, unmap with the bitmap of what goes, stop.
 * docs/kernel-rules.md#dirty-page-tracking
 */
export interface ContainerDirty {
  /** What the backend offers, or why it offers nothing. */
  readonly capability: DirtyTracking;
  /** True between {@link start} and {@link stop}. */
  readonly tracking: boolean;
  /**
   * Starts tracking: from now on, pages devices write are reported.
   *
   * @throws {IoasError} `unsupported` (with the reason), `in-use` (already started), `kernel`.
   */
  start(): void;
  /** Stops tracking; does nothing when it is not on. */
  stop(): void;
  /**
   * The dirty pages of a range, cleared as they are read unless `clear: false`.
   *
   * @throws {IoasError} `unsupported`, `not-ready` (not started), `invalid-argument` (a page size not
   *   offered, a bitmap above the largest), `misaligned`, `bisect` (the range cuts a mapping),
   *   `not-found` (nothing is mapped in it), `kernel`.
   */
  read(input: DirtyReadInput): DirtyBitmap;
  /**
   * Unmaps as {@link Container.unmap} does and returns the dirty bitmap of what it unmapped, read
   * in the same kernel call on type1 (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP).
   *
   * @throws {IoasError} as {@link read} and {@link Container.unmap}.
   */
  unmap(input: UnmapInput, options?: { readonly pageSize?: U64Input }): DirtyUnmapResult;
}

/**
 * The largest bitmap core reads at once when the backend sets no bound: 2^31 pages (256 MiB of
 * bitmap, 8 TiB of IOVA at 4 KiB pages), type1's own bound (DIRTY_BITMAP_PAGES_MAX).
 */
const UNBOUNDED_BITMAP_BYTES = BigInt(dirtyBitmapBytes(2 ** 31 - 1));

/** A container's {@link ContainerDirty}. */
export class DirtyTracker implements ContainerDirty {
  private on = false;

  constructor(
    private readonly handle: BackendHandle,
    private readonly table: MappingTable,
    private readonly dma: DmaMapper,
    private readonly errors: ContainerErrors,
    private readonly assertOpen: (operation: string) => void,
  ) {}

  get capability(): DirtyTracking {
    return this.handle.capabilities.dirtyTracking ?? { supported: false, reason: `backend '${this.errors.backendName}' does not offer dirty-page tracking` };
  }

  get tracking(): boolean {
    return this.on;
  }

  start(): void {
    const operation = 'dirty.start';
    this.assertOpen(operation);
    this.supported(operation);
    if (this.on) throw this.errors.error('in-use', operation, 'dirty tracking is already on; read() it, or stop() it first');
    this.errors.guard(operation, () => this.handle.doDirtyStart!());
    this.on = true;
  }

  stop(): void {
    const operation = 'dirty.stop';
    this.assertOpen(operation);
    if (!this.on) return;
    this.errors.guard(operation, () => this.handle.doDirtyStop!());
    this.on = false;
  }

  read(input: DirtyReadInput): DirtyBitmap {
    const operation = 'dirty.read';
    const parsed = this.errors.guard(operation, () => parseInput(dirtyReadInput, input, operation));
    this.assertOpen(operation);
    const capability = this.started(operation);
    const pageSize = this.pageSize(operation, capability, parsed.pageSize);
    const clear = parsed.clear ?? true;
    if (!clear && !capability.readWithoutClear) {
      throw this.errors.error('unsupported', operation, `backend '${this.errors.backendName}' clears the dirty bits it reads (VFIO type1 has no read-without-clear); read with clear: true`);
    }
    const range = parsed.iova;
    this.checkRange(operation, range, pageSize, capability);
    const into = parsed.into;
    if (into !== undefined && (into.iova.start !== range.start || into.iova.last !== range.last || into.pageSize !== pageSize)) {
      throw this.errors.error('invalid-argument', operation, `into covers ${formatRange(into.iova)} at ${hex(into.pageSize)}-byte pages, not ${formatRange(range)} at ${hex(pageSize)}; give a bitmap of the same range and page size, or none`);
    }
    if (into !== undefined && into.bytes.byteOffset % 8 !== 0) {
      throw this.errors.error('invalid-argument', operation, `into's bytes start at offset ${into.bytes.byteOffset} of their buffer; the kernel writes u64 words, so give a bitmap whose bytes are 8-byte aligned`);
    }
    const target = into ?? new DirtyBitmap(range, pageSize);
    // A new bitmap is zeroed. A reused one is zeroed here unless the mappings cover the range, where
    // a backend whose kernel overwrites each mapping's words needs no zeroing (DirtyReadCall.zeroed).
    const zeroed = into === undefined || !this.table.covers(range);
    if (into !== undefined && zeroed) into.clear();
    try {
      this.errors.guard(operation, () => this.handle.doDirtyRead!({ iova: range, pageSize, bitmap: target.bytes, clear, zeroed }));
    } catch (error) {
      into?.clear();
      throw error;
    }
    refilled(target);
    return target;
  }

  unmap(input: UnmapInput, options?: { readonly pageSize?: U64Input }): DirtyUnmapResult {
    const operation = 'dirty.unmap';
    const range = fastUnmapInput(input) ?? this.errors.guard(operation, () => parseInput(unmapInput, isMapping(input) ? input.iova : input, operation));
    const parsedOptions = this.errors.guard(operation, () => parseInput(dirtyUnmapOptions, options ?? {}, operation));
    this.assertOpen(operation);
    const capability = this.started(operation);
    const pageSize = this.pageSize(operation, capability, parsedOptions.pageSize);
    // The bitmap covers the mappings unmapped: from the first one's start to the last one's end.
    const affected = this.table.overlapping(range);
    if (affected.length === 0) throw this.errors.error('not-found', operation, `nothing is mapped in ${formatRange(range)}`);
    const covered = { start: affected[0]!.mapping.iova.start, last: affected[affected.length - 1]!.mapping.iova.last };
    this.checkRange(operation, covered, pageSize, capability);
    let dirty: DirtyBitmap | undefined;
    const unmapped = this.dma.unmap(operation, range, (target) => {
      const bitmap = new DirtyBitmap(target, pageSize);
      const bytes = this.handle.doDirtyUnmap!({ iova: target, pageSize, bitmap: bitmap.bytes, clear: true, zeroed: true });
      refilled(bitmap);
      dirty = bitmap;
      return bytes;
    });
    return { unmapped, dirty: dirty! };
  }

  /** The capability, or `unsupported` saying why. */
  private supported(operation: string): Extract<DirtyTracking, { supported: true }> {
    const capability = this.capability;
    if (!capability.supported) throw this.errors.error('unsupported', operation, `no dirty-page tracking: ${capability.reason}`);
    return capability;
  }

  /** The capability of a started tracker, or `unsupported` / `not-ready`. */
  private started(operation: string): Extract<DirtyTracking, { supported: true }> {
    const capability = this.supported(operation);
    if (!this.on) throw this.errors.error('not-ready', operation, 'dirty tracking is not on; call dirty.start() first');
    return capability;
  }

  /** The page size asked for, or the smallest offered; `invalid-argument` for one not offered. */
  private pageSize(operation: string, capability: Extract<DirtyTracking, { supported: true }>, asked: bigint | undefined): bigint {
    const offered = capability.pageSizes;
    const smallest = offered & -offered;
    if (asked === undefined) return smallest;
    if (!isPowerOfTwo(asked) || (offered & asked) === 0n) {
      throw this.errors.error('invalid-argument', operation, `page size ${hex(asked)} is not offered; dirty bitmaps here use ${describePageSizes(offered)}`);
    }
    return asked;
  }

  /** Whole pages, within the largest bitmap, cutting no mapping and holding one. */
  private checkRange(operation: string, range: IovaRange, pageSize: bigint, capability: Extract<DirtyTracking, { supported: true }>): void {
    if (range.start % pageSize !== 0n || (range.last + 1n) % pageSize !== 0n) {
      throw this.errors.error('misaligned', operation, `${formatRange(range)} is not whole ${hex(pageSize)}-byte pages`);
    }
    const bytes = BigInt(dirtyBitmapBytes(Number((range.last - range.start + 1n) / pageSize)));
    const largest = capability.maxBitmapBytes ?? UNBOUNDED_BITMAP_BYTES;
    if (bytes > largest) {
      throw this.errors.error('invalid-argument', operation, `${formatRange(range)} at ${hex(pageSize)}-byte pages needs ${hex(bytes)} bytes of bitmap, above the largest, ${hex(largest)}; read it in pieces`);
    }
    const first = this.table.find(range.start);
    if (first !== undefined && first.iova.start < range.start) {
      throw this.errors.error('bisect', operation, `${formatRange(range)} starts inside mapping ${formatRange(first.iova)}; give whole mappings`);
    }
    const last = this.table.find(range.last);
    if (last !== undefined && last.iova.last > range.last) {
      throw this.errors.error('bisect', operation, `${formatRange(range)} ends inside mapping ${formatRange(last.iova)}; give whole mappings`);
    }
    if (this.table.overlap(range) === undefined) throw this.errors.error('not-found', operation, `nothing is mapped in ${formatRange(range)}, so nothing there can be dirty`);
  }
}

/** `4 KiB pages (0x1000)`, `pages of 0x1000, 0x2000, ... 0x8000000000` */
function describePageSizes(sizes: bigint): string {
  const list: string[] = [];
  for (let bit = 0n; bit < 64n; bit++) if ((sizes >> bit) & 1n) list.push(hex(1n << bit));
  return list.length === 1 ? `pages of ${list[0]!} bytes only` : `pages of ${list.length > 6 ? `${list.slice(0, 3).join(', ')}, ... ${list[list.length - 1]!}` : list.join(', ')} bytes`;
}
