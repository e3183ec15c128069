/**
 * The map as data: the aperture cut into rows at every boundary the snapshot has, each row with
 * what its space is, which window holds it and what uses it, and how tall to draw it. The SVG,
 * HTML and text formats all draw from this, so they show the same rows.
 *
 * Rows are a broken axis: an IOVA space spans 2^48 bytes and holds 4 KiB doorbells, so a linear
 * scale shows nothing. Free space is compressed to a fixed height (a gap); everything else gets a
 * readable height that grows with the logarithm of its size.
 */
import { type ContainerSnapshot, type SnapshotDoorbell, type SnapshotReserved, normalizeRanges } from '@ioas/core';
import { clusterRanges, type Cluster } from './cluster.js';
import { describeRow } from './describe.js';
import { LEGEND_ORDER, REGION_KINDS, type KindStyle, type LegendKind, type RegionKind } from './kinds.js';
import { pageSizesOf } from './numbers.js';
import { checkLayoutOptions, type LayoutOptions } from './options.js';
import { readSnapshot } from './read-snapshot.js';

/** An inclusive IOVA range, as bigints. */
export interface MapRange {
  /** First byte. */
  readonly start: bigint;
  /** Last byte (inclusive). */
  readonly last: bigint;
}

/** A reserved range of the snapshot, as bigints. */
export interface ReservedRegion extends MapRange {
  /** `msi`, `direct`, `direct-relaxable` or `reserved`, as sysfs names them. */
  readonly kind: SnapshotReserved['kind'];
  /** Where the SDK learned of it: `sysfs`, `kernel-ranges`, `platform`, `backend` or `user`. */
  readonly source: SnapshotReserved['source'];
  /** The group, device or file it was read for, when known. */
  readonly origin?: string;
}

/**
 * Why space inside the aperture is unusable: outside every range the kernel reports, outside every
 * window, or just absent from the usable ranges (a window given to MSI banks, say).
 */
export type UnusableReason = 'outside-kernel-ranges' | 'outside-windows' | 'not-usable';

/** What a row's addresses are: usable, reserved (by whom, why) or unusable. */
export type SpacePart =
  | {
      /** A mapping may use it. */
      readonly kind: 'usable';
    }
  | {
      /** Reserved. */
      readonly kind: 'reserved';
      /** Every reserved range that covers the row (usually one), in snapshot order; the first one is drawn. */
      readonly regions: readonly [ReservedRegion, ...ReservedRegion[]];
    }
  | {
      /** Not usable and not reserved. */
      readonly kind: 'unusable';
      /** Why. */
      readonly reason: UnusableReason;
    };

/**
 * The window a row lies in, when windows matter. On a windowed IOMMU these are hardware windows
 * (`hardware: true`, `first` to `last` their positions); on a paged one, windows the SDK created
 * (`hardware: false`, `first` = `last` their index in `snapshot.windows`).
 */
export interface WindowPart {
  /** `window`: enabled; `window-disabled`: a hardware window nothing enables. */
  readonly kind: 'window' | 'window-disabled';
  /** True for a windowed IOMMU's hardware windows. */
  readonly hardware: boolean;
  /** The first window of the row. */
  readonly first: number;
  /** The last window of the row: more than `first` for a run of disabled windows (or of enabled ones past the row budget). */
  readonly last: number;
  /** The IOVA range of windows `first` to `last`. */
  readonly range: MapRange;
}

/** A mapping as a row shows it. */
export interface MappingDetail {
  /** The whole mapping's IOVA range (it may reach past the row: one mapping over four windows). */
  readonly range: MapRange;
  /** The host virtual address behind the mapping's first byte; absent in a plan's snapshot (no host memory yet). */
  readonly address?: bigint;
  /** The device's rights: `rw`, `r`, `w` or `none`. */
  readonly access: 'rw' | 'r' | 'w' | 'none';
}

/** The mappings in a row. */
export interface MappedUse {
  /** How many mappings touch the row. */
  readonly count: number;
  /** How many bytes of the row they map. */
  readonly bytes: bigint;
  /** True when the row stands for a cluster of mappings (there were more than `maxRows` allows). */
  readonly clustered: boolean;
  /** The mapping, when the row is (part of) exactly one and not a cluster. */
  readonly mapping?: MappingDetail;
}

/** The allocations (from `allocate()`) in a row. */
export interface AllocatedUse {
  /** How many allocations touch the row. */
  readonly count: number;
  /** How many bytes of the row they hold. */
  readonly bytes: bigint;
  /** True when the row stands for a cluster of allocations. */
  readonly clustered: boolean;
  /** The allocation, when the row is (part of) exactly one and not a cluster. */
  readonly range?: MapRange;
}

/** An MSI doorbell in a row. */
export interface DoorbellUse {
  /** The bank index, or the window's position for kernel-managed and fixed windows. */
  readonly index: number;
  /** `sdk` (this container mapped it), `kernel` or `hardware`. */
  readonly mappedBy: SnapshotDoorbell['mappedBy'];
  /** The doorbell's IOVA range. */
  readonly range: MapRange;
}

/** What uses a row: the strongest use in `kind`, and every use present in its own field. */
export interface UsePart {
  /** `msi-doorbell` > `mapped` > `allocated` > `free`. */
  readonly kind: 'msi-doorbell' | 'mapped' | 'allocated' | 'free';
  /** The doorbell, when one sits here (the first the snapshot lists, should two overlap). */
  readonly doorbell?: DoorbellUse;
  /** The mappings, when any. */
  readonly mapped?: MappedUse;
  /** The allocations, when any. */
  readonly allocated?: AllocatedUse;
}

/** One row of the map: a range of the aperture whose every byte is in the same state. */
export interface MapRow {
  /** Position in {@link IovaMapLayout.rows}, from 0. */
  readonly index: number;
  /** First byte. */
  readonly start: bigint;
  /** Last byte (inclusive). */
  readonly last: bigint;
  /** Bytes in the row. */
  readonly size: bigint;
  /** The main kind, which picks the colour. */
  readonly kind: RegionKind;
  /** What the addresses are. */
  readonly space: SpacePart;
  /** The window, when windows matter ({@link IovaMapLayout.windowsMatter}); otherwise `null`. */
  readonly window: WindowPart | null;
  /** What uses the row. */
  readonly use: UsePart;
  /** True for free or unusable space with nothing else in it: drawn compressed, with a break mark. */
  readonly gap: boolean;
  /** One line for people: `mapped 128 MiB (1 mapping, rw)`, `free 255.9 TiB`. */
  readonly label: string;
  /** Hover text, one fact a line: the exact range and size, then every part with its source, origin or host address. */
  readonly hover: string;
  /** Where the row starts on the drawn axis, in drawing units (SVG pixels), from 0. */
  readonly offset: number;
  /** How tall the row is drawn, in drawing units: fixed for gaps, growing with log2 of the size otherwise. */
  readonly height: number;
}

/** One legend entry: a kind the map shows and how it looks. */
export interface LegendEntry extends KindStyle {
  /** The kind. */
  readonly kind: LegendKind;
}

/** The whole map: the snapshot's facts, the rows and the legend. */
export interface IovaMapLayout {
  /** The snapshot's title. */
  readonly title: string;
  /** `paged` or `windowed`. */
  readonly model: ContainerSnapshot['model'];
  /** The aperture and its size in bytes (up to 2^64). */
  readonly aperture: MapRange & {
    /** Bytes in the aperture. */
    readonly size: bigint;
  };
  /** The IO page sizes, smallest first. */
  readonly ioPageSizes: readonly bigint[];
  /** How a windowed IOMMU cuts the aperture; `null` on a paged one. */
  readonly windowGeometry: {
    /** How many windows. */
    readonly count: number;
    /** Bytes per window. */
    readonly size: bigint;
    /** The most windows the hardware has. */
    readonly maxCount: number;
  } | null;
  /** True when rows carry a window part: a windowed IOMMU with its geometry set, or SDK windows on a paged one. */
  readonly windowsMatter: boolean;
  /** The MSI model. */
  readonly msiModel: ContainerSnapshot['msi']['model'];
  /** The mapping budget: mappings live, bytes mapped, mappings left (`null`: no count limit). */
  readonly budget: {
    /** Mappings live. */
    readonly mappings: number;
    /** Bytes mapped. */
    readonly bytesMapped: bigint;
    /** Mappings left, or `null` when there is no count limit. */
    readonly left: number | null;
  };
  /** The rows, in address order, covering the aperture exactly. */
  readonly rows: readonly MapRow[];
  /** Every kind the map draws (row kinds, the space under uses, window strips), in {@link REGION_KINDS} order. */
  readonly legend: readonly LegendEntry[];
  /** The drawn axis's total height in drawing units: the sum of the rows' heights. */
  readonly height: number;
  /** True when mappings or allocations were drawn as clusters to stay within `maxRows`. */
  readonly clustered: boolean;
  /** The row budget used. */
  readonly maxRows: number;
}

/** Heights in drawing units (SVG pixels): enough for a start and a last address in 11px text. */
const GAP_HEIGHT = 32;
const MIN_HEIGHT = 28;
const MAX_HEIGHT = 100;
/** Units per doubling of size above 4 KiB: 2 keeps a 256 TiB region under 4x a 4 KiB doorbell. */
const PER_DOUBLING = 2;

/**
 * Lays the snapshot out as rows: cuts the aperture at every boundary of every range in it, merges
 * neighbours whose state is the same, clusters mappings past `maxRows`, and gives each row its kind,
 * label, hover text and drawn height. What {@link renderIovaMap} draws.
 *
 * @param snapshot A snapshot from `container.snapshot()` or parsed JSON; checked with core's
 *   `parseSnapshot`.
 * @throws {IoasError} `invalid-argument` for a malformed snapshot (naming the field) or a bad
 *   option; `unsupported` for another snapshot version.
 */
export function layoutIovaMap(snapshot: ContainerSnapshot, options?: LayoutOptions): IovaMapLayout {
  const checked = readSnapshot(snapshot, 'layoutIovaMap');
  return layoutSnapshot(checked, checkLayoutOptions(options));
}

/** A range list as bigints, in the input's order of ranges but sorted by start. */
interface Sorted {
  readonly starts: bigint[];
  readonly lasts: bigint[];
  /** `order[i]`: the input index of the i-th range. */
  readonly order: number[];
}

function sortRanges(count: number, startOf: (index: number) => string, lastOf: (index: number) => string): Sorted {
  const starts = new Array<bigint>(count);
  const lasts = new Array<bigint>(count);
  let sorted = true;
  for (let index = 0; index < count; index++) {
    starts[index] = BigInt(startOf(index));
    lasts[index] = BigInt(lastOf(index));
    if (index > 0 && starts[index]! < starts[index - 1]!) sorted = false;
  }
  const order = Array.from({ length: count }, (_, index) => index);
  // Snapshots list mappings and allocations in IOVA order; sort only a hand-made one that is not.
  if (sorted) return { starts, lasts, order };
  order.sort((a, b) => (starts[a]! < starts[b]! ? -1 : starts[a]! > starts[b]! ? 1 : a - b));
  return { starts: order.map((index) => starts[index]!), lasts: order.map((index) => lasts[index]!), order };
}

/** Items sorted by start, handed out as the sweep reaches them: those that contain the current address. */
class Sweep<T extends MapRange> {
  private readonly items: T[];
  private next = 0;
  private active: T[] = [];

  constructor(items: readonly T[]) {
    this.items = [...items].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  /** The items that contain `address`; calls must come with non-decreasing addresses. */
  at(address: bigint): readonly T[] {
    while (this.next < this.items.length && this.items[this.next]!.start <= address) this.active.push(this.items[this.next++]!);
    if (this.active.some((item) => item.last < address)) this.active = this.active.filter((item) => item.last >= address);
    return this.active;
  }
}

/** `items` (a few reserved ranges, doorbells or windows at one address) in the order the snapshot lists them. */
function inSnapshotOrder<T>(items: readonly T[], list: readonly T[]): T[] {
  return items.length <= 1 ? [...items] : [...items].sort((a, b) => list.indexOf(a) - list.indexOf(b));
}

/** The index of the range (of sorted, disjoint ones) that contains `address`, or -1; `cursor` moves forward only. */
function clusterAt(clusters: readonly MapRange[], cursor: { index: number }, address: bigint): number {
  while (cursor.index < clusters.length && clusters[cursor.index]!.last < address) cursor.index++;
  const cluster = clusters[cursor.index];
  return cluster !== undefined && cluster.start <= address ? cursor.index : -1;
}

/** A row while it is being built, before its parts are described. */
interface RawRow {
  start: bigint;
  last: bigint;
  readonly key: string;
  readonly usable: boolean;
  readonly reserved: readonly ReservedRegion[];
  readonly reason: UnusableReason;
  /** Hardware windows: enabled or not; `undefined` outside the windows or when there are none. */
  readonly hardwareEnabled: boolean | undefined;
  readonly sdkWindow: { readonly index: number; readonly range: MapRange } | undefined;
  readonly doorbell: DoorbellUse | undefined;
  readonly mappingCluster: number;
  readonly allocationCluster: number;
}

/** Counts and bytes of sorted ranges inside a row, by binary search over prefix sums. */
class RangeIndex {
  private reach: bigint[] | undefined;
  private sums: bigint[] | undefined;

  constructor(private readonly ranges: Sorted) {}

  /** Ranges `first` to `end - 1` that touch `start..last`, and the bytes of `start..last` they cover. */
  within(first: number, end: number, start: bigint, last: bigint): { count: number; bytes: bigint } {
    const { starts, lasts } = this.ranges;
    if (this.reach === undefined || this.sums === undefined) {
      // Built on first use: only clustered rows need them. `reach` (running maximum of the ends)
      // is sorted even when the ranges overlap, so the search below stays valid.
      const reach = new Array<bigint>(starts.length);
      const sums = new Array<bigint>(starts.length + 1);
      sums[0] = 0n;
      for (let index = 0; index < starts.length; index++) {
        reach[index] = index === 0 || lasts[index]! > reach[index - 1]! ? lasts[index]! : reach[index - 1]!;
        sums[index + 1] = sums[index]! + (lasts[index]! - starts[index]! + 1n);
      }
      this.reach = reach;
      this.sums = sums;
    }
    const reach = this.reach;
    const low = lowerBound(first, end, (index) => reach[index]! >= start);
    const high = lowerBound(first, end, (index) => starts[index]! > last);
    if (high <= low) return { count: 0, bytes: 0n };
    let bytes = this.sums[high]! - this.sums[low]!;
    if (starts[low]! < start) bytes -= start - starts[low]!;
    if (lasts[high - 1]! > last) bytes -= lasts[high - 1]! - last;
    const size = last - start + 1n;
    return { count: high - low, bytes: bytes < 0n ? 0n : bytes > size ? size : bytes };
  }
}

/** The first index in `low..high` where `test` holds (`test` is false then true), or `high`. */
function lowerBound(low: number, high: number, test: (index: number) => boolean): number {
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (test(middle)) high = middle;
    else low = middle + 1;
  }
  return low;
}

const USE_KIND_PRIORITY: readonly UsePart['kind'][] = ['msi-doorbell', 'mapped', 'allocated'];

/**
 * {@link layoutIovaMap} on a snapshot already checked with `parseSnapshot`: {@link renderIovaMap}
 * checks it once and lays it out here.
 */
export function layoutSnapshot(snapshot: ContainerSnapshot, maxRows: number): IovaMapLayout {
  const aperture = { start: BigInt(snapshot.aperture.start), last: BigInt(snapshot.aperture.last) };
  const end = aperture.last + 1n; // may be 2^64: bigints do not wrap
  const toRange = (range: { readonly start: string; readonly last: string }): MapRange => ({ start: BigInt(range.start), last: BigInt(range.last) });
  const clip = (range: MapRange): MapRange[] =>
    range.last < aperture.start || range.start > aperture.last
      ? []
      : [{ start: range.start < aperture.start ? aperture.start : range.start, last: range.last > aperture.last ? aperture.last : range.last }];

  const usable = normalizeRanges(snapshot.usable.map(toRange).flatMap(clip));
  const kernel = snapshot.kernelRanges === null ? null : normalizeRanges(snapshot.kernelRanges.map(toRange).flatMap(clip));
  const reserved: ReservedRegion[] = snapshot.reserved.map((region) => ({
    ...toRange(region),
    kind: region.kind,
    source: region.source,
    ...(region.origin === undefined ? {} : { origin: region.origin }),
  }));
  const sdkWindows = snapshot.windows.map((window, index) => ({ ...toRange(window), index }));
  const doorbells: (DoorbellUse & MapRange)[] = snapshot.msi.doorbells.map((doorbell) => ({ ...toRange(doorbell.iova), index: doorbell.index, mappedBy: doorbell.mappedBy, range: toRange(doorbell.iova) }));
  const mappings = sortRanges(snapshot.mappings.length, (index) => snapshot.mappings[index]!.iova.start, (index) => snapshot.mappings[index]!.iova.last);
  const allocations = sortRanges(snapshot.allocations.length, (index) => snapshot.allocations[index]!.start, (index) => snapshot.allocations[index]!.last);

  const cuts = new Set<bigint>();
  const cut = (address: bigint): void => {
    if (address > aperture.start && address < end) cuts.add(address);
  };
  const cutAround = (range: MapRange): void => {
    cut(range.start);
    cut(range.last + 1n);
  };
  for (const range of usable) cutAround(range);
  for (const range of kernel ?? []) cutAround(range);
  for (const range of reserved) cutAround(range);
  for (const range of sdkWindows) cutAround(range);
  for (const range of doorbells) cutAround(range);

  // Hardware windows. PAMU enables a window by mapping into it (MAP_DMA and MAP_MSI_BANK enable
  // the windows they fill: docs/kernel-rules.md#pamu-map-dma-checks and
  // docs/kernel-rules.md#pamu-msi-bank-map), so a window is enabled when it holds a mapping or a
  // doorbell (or the snapshot lists it); runs of the others merge into one row.
  const geometry = snapshot.windowGeometry;
  const windowSize = geometry === null ? 0n : BigInt(geometry.size);
  const hardware = snapshot.model === 'windowed' && geometry !== null && windowSize > 0n && geometry.count > 0;
  const apertureSize = end - aperture.start;
  const windowCount = hardware ? Number(BigInt(geometry.count) < (apertureSize + windowSize - 1n) / windowSize ? BigInt(geometry.count) : (apertureSize + windowSize - 1n) / windowSize) : 0;
  const windowStart = (index: number): bigint => aperture.start + BigInt(index) * windowSize;
  const windowsEnd = hardware ? (windowStart(windowCount) < end ? windowStart(windowCount) : end) : aperture.start;
  const windowOf = (address: bigint): number => Number((address - aperture.start) / windowSize);
  const enabledRuns: [number, number][] = [];
  let hardwareIdentity = true;
  if (hardware) {
    const runs: [number, number][] = [];
    const enable = (range: MapRange): void => {
      if (range.last < aperture.start || range.start >= windowsEnd) return;
      const first = windowOf(range.start < aperture.start ? aperture.start : range.start);
      const last = windowOf(range.last >= windowsEnd ? windowsEnd - 1n : range.last);
      const previous = runs[runs.length - 1];
      // Mappings come sorted, so most extend the previous run: a million mappings make few runs.
      if (previous !== undefined && first >= previous[0] && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
      else runs.push([first, last]);
    };
    for (let index = 0; index < mappings.starts.length; index++) enable({ start: mappings.starts[index]!, last: mappings.lasts[index]! });
    for (const doorbell of doorbells) enable(doorbell);
    for (const window of sdkWindows) enable(window);
    for (const run of normalizeRanges(runs.map(([first, last]) => ({ start: BigInt(first), last: BigInt(last) })))) enabledRuns.push([Number(run.start), Number(run.last)]);
    const enabledCount = enabledRuns.reduce((sum, [first, last]) => sum + last - first + 1, 0);
    // Enabled windows are drawn one row each, unless that alone would take half the row budget.
    hardwareIdentity = enabledCount <= Math.floor(maxRows / 2);
    cut(windowsEnd);
    for (const [first, last] of enabledRuns) {
      if (hardwareIdentity) for (let index = first; index <= last + 1; index++) cut(windowStart(index));
      else {
        cut(windowStart(first));
        cut(windowStart(last + 1));
      }
    }
  }
  const windowsMatter = hardware || sdkWindows.length > 0;

  // Mappings and allocations: one row each while they fit, clusters past the budget. Each adds at
  // most two cuts, so the budget left after the structure's own rows is halved.
  const structureCuts = [...cuts].sort(compare);
  const structureRows = structureCuts.length + 1;
  const mappingCount = mappings.starts.length;
  const allocationCount = allocations.starts.length;
  let mappingBudget = mappingCount;
  let allocationBudget = allocationCount;
  if (structureRows + 2 * (mappingCount + allocationCount) > maxRows) {
    const clusterBudget = Math.max(1, Math.floor(Math.max(2, maxRows - structureRows) / 2));
    mappingBudget = allocationCount === 0 ? clusterBudget : mappingCount === 0 ? 0 : Math.max(1, Math.round((clusterBudget * mappingCount) / (mappingCount + allocationCount)));
    allocationBudget = allocationCount === 0 ? 0 : Math.max(1, clusterBudget - mappingBudget);
  }
  const mappingClusters = clusterRanges(mappings.starts, mappings.lasts, mappingBudget, structureCuts);
  const allocationClusters = clusterRanges(allocations.starts, allocations.lasts, allocationBudget, structureCuts);
  const clustered = mappingClusters.length < mappingCount || allocationClusters.length < allocationCount;
  for (const cluster of mappingClusters) cutAround(cluster);
  for (const cluster of allocationClusters) cutAround(cluster);

  // The sweep: one elementary interval between consecutive cuts at a time, merged into the previous
  // row when every part is the same.
  const boundaries = [aperture.start, ...[...cuts].sort(compare), end];
  const reservedSweep = new Sweep(reserved);
  const windowSweep = new Sweep(sdkWindows);
  const doorbellSweep = new Sweep(doorbells);
  const usableCursor = { index: 0 };
  const kernelCursor = { index: 0 };
  const runCursor = { index: 0 };
  const mappingCursor = { index: 0 };
  const allocationCursor = { index: 0 };
  const raw: RawRow[] = [];
  for (let index = 0; index + 1 < boundaries.length; index++) {
    const start = boundaries[index]!;
    const last = boundaries[index + 1]! - 1n;
    const isUsable = clusterAt(usable, usableCursor, start) >= 0;
    const inKernel = kernel === null || clusterAt(kernel, kernelCursor, start) >= 0;
    const regions = inSnapshotOrder(reservedSweep.at(start), reserved);
    const inWindows = inSnapshotOrder(windowSweep.at(start), sdkWindows);
    const atDoorbells = inSnapshotOrder(doorbellSweep.at(start), doorbells);
    const sdkWindow = inWindows[0];
    const doorbell = atDoorbells[0];
    let hardwareEnabled: boolean | undefined;
    let window = '';
    if (hardware && start < windowsEnd) {
      const position = windowOf(start);
      while (runCursor.index < enabledRuns.length && enabledRuns[runCursor.index]![1] < position) runCursor.index++;
      const run = enabledRuns[runCursor.index];
      hardwareEnabled = run !== undefined && run[0] <= position;
      window = hardwareEnabled ? (hardwareIdentity ? `w${position}` : 'w') : 'd';
    } else if (!hardware && sdkWindow !== undefined) window = `s${inWindows.map((item) => item.index).join(',')}`;
    const reason: UnusableReason = !inKernel ? 'outside-kernel-ranges' : (hardware && start >= windowsEnd) || (!hardware && sdkWindows.length > 0 && sdkWindow === undefined) ? 'outside-windows' : 'not-usable';
    const space = regions.length > 0 ? `r${regions.map((region) => reserved.indexOf(region)).join(',')}` : isUsable ? 'u' : `x${reason}`;
    const mappingCluster = clusterAt(mappingClusters, mappingCursor, start);
    const allocationCluster = clusterAt(allocationClusters, allocationCursor, start);
    // Every range present is in the key, even where only the first is drawn (overlapping doorbells
    // or windows, which no container reports), so that merging never hides one.
    const key = `${space}|${window}|${atDoorbells.map((item) => doorbells.indexOf(item)).join(',')}|${mappingCluster}|${allocationCluster}`;
    const previous = raw[raw.length - 1];
    if (previous !== undefined && previous.key === key) {
      previous.last = last;
      continue;
    }
    raw.push({
      start,
      last,
      key,
      usable: isUsable,
      reserved: regions,
      reason,
      hardwareEnabled,
      // On a windowed IOMMU, listed windows enable hardware windows (above) rather than show on their own.
      sdkWindow: hardware || sdkWindow === undefined ? undefined : { index: sdkWindow.index, range: { start: sdkWindow.start, last: sdkWindow.last } },
      doorbell: doorbell === undefined ? undefined : { index: doorbell.index, mappedBy: doorbell.mappedBy, range: doorbell.range },
      mappingCluster,
      allocationCluster,
    });
  }

  const mappingIndex = new RangeIndex(mappings);
  const allocationIndex = new RangeIndex(allocations);
  const context = { windowCount, windowSize };
  let offset = 0;
  const rows: MapRow[] = raw.map((row, index) => {
    const size = row.last - row.start + 1n;
    const space: SpacePart =
      row.reserved.length > 0 ? { kind: 'reserved', regions: row.reserved as [ReservedRegion, ...ReservedRegion[]] } : row.usable ? { kind: 'usable' } : { kind: 'unusable', reason: row.reason };
    let window: WindowPart | null = null;
    if (row.hardwareEnabled !== undefined) {
      const first = windowOf(row.start);
      const last = Math.min(windowOf(row.last), windowCount - 1);
      const rangeLast = windowStart(last + 1) - 1n;
      window = { kind: row.hardwareEnabled ? 'window' : 'window-disabled', hardware: true, first, last, range: { start: windowStart(first), last: rangeLast > aperture.last ? aperture.last : rangeLast } };
    } else if (row.sdkWindow !== undefined) {
      window = { kind: 'window', hardware: false, first: row.sdkWindow.index, last: row.sdkWindow.index, range: row.sdkWindow.range };
    }
    const mapped = row.mappingCluster < 0 ? undefined : mappedUse(mappingClusters[row.mappingCluster]!, row, mappings, mappingIndex, snapshot);
    const allocated = row.allocationCluster < 0 ? undefined : allocatedUse(allocationClusters[row.allocationCluster]!, row, allocations, allocationIndex);
    const present = { 'msi-doorbell': row.doorbell, mapped, allocated };
    const use: UsePart = {
      kind: USE_KIND_PRIORITY.find((kind) => present[kind as keyof typeof present] !== undefined) ?? 'free',
      ...(row.doorbell === undefined ? {} : { doorbell: row.doorbell }),
      ...(mapped === undefined ? {} : { mapped }),
      ...(allocated === undefined ? {} : { allocated }),
    };
    const kind = primaryKind(space, window, use);
    const gap = kind === 'free' || kind === 'unusable';
    const height = gap ? GAP_HEIGHT : regionHeight(size);
    const { label, hover } = describeRow({ start: row.start, last: row.last, size, kind, space, window, use }, context);
    const result: MapRow = { index, start: row.start, last: row.last, size, kind, space, window, use, gap, label, hover, offset, height };
    offset += height;
    return result;
  });

  const geometryOut = geometry === null ? null : { count: geometry.count, size: windowSize, maxCount: geometry.maxCount };
  return {
    title: snapshot.title,
    model: snapshot.model,
    aperture: { ...aperture, size: apertureSize },
    ioPageSizes: pageSizesOf(BigInt(snapshot.ioPageSizes)),
    windowGeometry: geometryOut,
    windowsMatter,
    msiModel: snapshot.msi.model,
    budget: { mappings: snapshot.budget.mappings, bytesMapped: BigInt(snapshot.budget.bytesMapped), left: snapshot.budget.left },
    rows,
    legend: legendOf(rows),
    height: offset,
    clustered,
    maxRows,
  };
}

function compare(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function mappedUse(cluster: Cluster, row: MapRange, mappings: Sorted, index: RangeIndex, snapshot: ContainerSnapshot): MappedUse {
  if (cluster.end - cluster.first === 1) {
    const position = cluster.first;
    const source = snapshot.mappings[mappings.order[position]!]!;
    const range = { start: mappings.starts[position]!, last: mappings.lasts[position]! };
    const access = source.access.read ? (source.access.write ? 'rw' : 'r') : source.access.write ? 'w' : 'none';
    const mapping: MappingDetail = { range, access, ...(source.address === undefined ? {} : { address: BigInt(source.address) }) };
    return { count: 1, bytes: overlap(range, row), clustered: false, mapping };
  }
  const { count, bytes } = index.within(cluster.first, cluster.end, row.start, row.last);
  return { count, bytes, clustered: true };
}

function allocatedUse(cluster: Cluster, row: MapRange, allocations: Sorted, index: RangeIndex): AllocatedUse {
  if (cluster.end - cluster.first === 1) {
    const range = { start: allocations.starts[cluster.first]!, last: allocations.lasts[cluster.first]! };
    return { count: 1, bytes: overlap(range, row), clustered: false, range };
  }
  const { count, bytes } = index.within(cluster.first, cluster.end, row.start, row.last);
  return { count, bytes, clustered: true };
}

function overlap(a: MapRange, b: MapRange): bigint {
  const start = a.start > b.start ? a.start : b.start;
  const last = a.last < b.last ? a.last : b.last;
  return last >= start ? last - start + 1n : 0n;
}

/** The row's colour: msi-doorbell > mapped > allocated > reserved-<kind> > window-disabled > unusable > free. */
function primaryKind(space: SpacePart, window: WindowPart | null, use: UsePart): RegionKind {
  if (use.kind !== 'free') return use.kind;
  if (space.kind === 'reserved') return reservedKind(space.regions[0]);
  if (window?.kind === 'window-disabled') return 'window-disabled';
  return space.kind === 'unusable' ? 'unusable' : 'free';
}

/** The {@link RegionKind} of a reserved range. */
export function reservedKind(region: ReservedRegion): RegionKind {
  return region.kind === 'reserved' ? 'reserved' : `reserved-${region.kind}`;
}

function regionHeight(size: bigint): number {
  const doublings = Math.max(0, size.toString(2).length - 1 - 12);
  return Math.min(MAX_HEIGHT, MIN_HEIGHT + PER_DOUBLING * doublings);
}

/** The kinds drawn anywhere: each row's kind, the space under its use, its window strip. */
function legendOf(rows: readonly MapRow[]): LegendEntry[] {
  const drawn = new Set<LegendKind>();
  for (const row of rows) {
    drawn.add(row.kind);
    if (row.use.kind !== 'free') drawn.add(row.use.kind);
    drawn.add(row.space.kind === 'reserved' ? reservedKind(row.space.regions[0]) : row.space.kind === 'usable' ? 'free' : 'unusable');
    if (row.window !== null) drawn.add(row.window.kind);
  }
  return LEGEND_ORDER.filter((kind) => drawn.has(kind)).map((kind) => ({ kind, ...REGION_KINDS[kind] }));
}
