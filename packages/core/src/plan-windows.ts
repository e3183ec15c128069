import { z } from 'zod';
import { IoasError } from './errors.js';
import { hex } from './format.js';
import { describeValue, isPowerOfTwo, U64_MAX } from './iova-range.js';
import { parseInput, size64, u64 } from './schemas.js';
import type { U64Input } from './types.js';
import { checkWindowGeometry, PAMU_PAGE_SIZE, PAMU_VFIO_MAX_WINDOWS } from './window-geometry.js';

/** One segment of guest RAM, mapped 1:1 (IOVA = guest physical address). */
export interface WindowPlanSegment {
  /** Guest physical address, which is also the IOVA. */
  readonly iova: U64Input;
  /** Bytes of guest RAM: a multiple of the window size the plan picks. */
  readonly size: U64Input;
  /** The physically contiguous backing unit (a hugepage size such as 64 MiB). */
  readonly pageSize: U64Input;
}

/** Hardware and kernel limits the plan must respect. */
export interface WindowPlanLimits {
  /** Most windows (PAMU through VFIO: 256). */
  readonly maxWindows: number;
  /** Smallest window (PAMU: 4 KiB). */
  readonly minWindowSize: U64Input;
}

/** Input of {@link planWindows}. */
export interface WindowPlanSpec {
  /** Guest RAM segments, mapped 1:1; they may not overlap. */
  readonly memory: readonly WindowPlanSegment[];
  /** MSI banks that need a window each (P4080: 3). */
  readonly msiBanks: number;
  /** Limits other than PAMU's through VFIO ({@link DEFAULT_WINDOW_PLAN_LIMITS}). */
  readonly limits?: Partial<WindowPlanLimits>;
}

/** One window of a plan. */
export interface PlannedWindow {
  /** Window number, from 0 at the aperture's start. */
  readonly index: number;
  /** First IOVA of the window. */
  readonly iova: bigint;
  /** Bytes in the window (the plan's window size). */
  readonly size: bigint;
  /** Guest RAM (`dma`), an MSI bank's page (`msi`), or nothing (`disabled`). */
  readonly kind: 'dma' | 'msi' | 'disabled';
  /** For `dma` windows: index of the memory segment it maps. */
  readonly memory?: number;
  /** For `msi` windows: the MSI bank mapped at the window's start. */
  readonly msiBank?: number;
}

/** Output of {@link planWindows}. */
export interface WindowPlan {
/** The aperture: a power of two, aligned to its size. */
  readonly aperture: {
    /** First IOVA. */
    readonly start: bigint;
    /** Bytes. */
    readonly size: bigint;
  };
  /** Bytes per window: aperture size / window count. */
  readonly windowSize: bigint;
  /** Windows in the aperture (a power of two). */
  readonly windowCount: number;
  /** Every window, in order, with what it holds. */
  readonly windows: readonly PlannedWindow[];
}

/**
 * The PAMU limits through the SDK's VFIO driver: at most 256 windows (the VFIO layer's cap; hardware
 * reports 2^(1+MWCE)), windows and aperture powers of two of at least 4 KiB (PAMU_PAGE_SIZE).
 * Source: docs/kernel-rules.md#pamu-aperture-geometry and docs/kernel-rules.md#pamu-window-count.
 */
export const DEFAULT_WINDOW_PLAN_LIMITS: {
  /** 256: the cap of the SDK's VFIO layer. */
  readonly maxWindows: number;
  /** 4 KiB: PAMU_PAGE_SIZE. */
  readonly minWindowSize: bigint;
} = { maxWindows: PAMU_VFIO_MAX_WINDOWS, minWindowSize: PAMU_PAGE_SIZE };

const powerOfTwo = size64.refine(isPowerOfTwo, 'must be a power of two');

const specSchema = z
  .object({
    memory: z.array(z.object({ iova: u64, size: size64, pageSize: powerOfTwo }).strict()).min(1, 'give at least one memory segment'),
    msiBanks: z.number().int().nonnegative(),
    limits: z
      .object({
        maxWindows: z.number().int().positive().refine((value) => isPowerOfTwo(BigInt(value)), 'must be a power of two').optional(),
        minWindowSize: powerOfTwo.optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/**
 * Plans a windowed IOMMU (PAMU) for a guest: the aperture, the window size and count, which windows
 * map which guest RAM, and which hold MSI banks.
 *
 * Rules (docs/kernel-rules.md#pamu-aperture-geometry,
 * docs/kernel-rules.md#pamu-window-size-and-contiguous-memory): the aperture is a power of two aligned to its size; the
 * window count is a power of two, at most `maxWindows`; each window maps exactly one physically
 * contiguous chunk of the window size, so a window can be no larger than a segment's page size and
 * each segment must start and end on window boundaries. Guest RAM windows sit at their guest
 * addresses; MSI banks take the lowest windows above the highest RAM window. Among the plans that
 * work it picks the smallest aperture, then the fewest windows.
 *
 * @throws {IoasError} `invalid-argument` for malformed input or overlapping segments,
 *   `plan-impossible` when no window size works, with what to change.
 */
export function planWindows(spec: WindowPlanSpec): WindowPlan {
  const parsed = parseInput(specSchema, spec, 'planWindows');
  const limits = {
    maxWindows: parsed.limits?.maxWindows ?? DEFAULT_WINDOW_PLAN_LIMITS.maxWindows,
    minWindowSize: parsed.limits?.minWindowSize ?? DEFAULT_WINDOW_PLAN_LIMITS.minWindowSize,
  };
  const segments = parsed.memory.map((segment, index) => ({ ...segment, index, end: segment.iova + segment.size }));
  for (const segment of segments) {
    if (segment.end - 1n > U64_MAX) {
      throw new IoasError('invalid-argument', `planWindows: memory segment ${segment.index} (${hex(segment.size)} bytes at ${hex(segment.iova)}) wraps past 2^64-1`);
    }
  }
  const ordered = [...segments].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  for (let i = 1; i < ordered.length; i++) {
    const previous = ordered[i - 1]!;
    const current = ordered[i]!;
    if (current.iova < previous.end) {
      throw new IoasError(
        'invalid-argument',
        `planWindows: memory segments ${previous.index} (${hex(previous.iova)}-${hex(previous.end - 1n)}) and ${current.index} (${hex(current.iova)}-${hex(current.end - 1n)}) overlap; give each guest address once`,
      );
    }
  }
  const lowest = ordered[0]!.iova;
  const highestEnd = ordered[ordered.length - 1]!.end;
  const largestWindow = ordered.reduce((smallest, segment) => (segment.pageSize < smallest ? segment.pageSize : smallest), ordered[0]!.pageSize);

  let best: { start: bigint; size: bigint; windowSize: bigint } | undefined;
  let smallestCountSeen: { windowSize: bigint; count: bigint } | undefined;
  for (let windowSize = largestWindow; windowSize >= limits.minWindowSize; windowSize >>= 1n) {
    // Every segment must start and end on a window boundary of this size.
    if (ordered.some((segment) => segment.iova % windowSize !== 0n || segment.size % windowSize !== 0n)) continue;
    const end = highestEnd + BigInt(parsed.msiBanks) * windowSize;
    if (end - 1n > U64_MAX) continue;
    const aperture = smallestAlignedPowerOfTwo(lowest, end, windowSize);
    if (aperture === undefined) continue;
    const count = aperture.size / windowSize;
    if (smallestCountSeen === undefined || count < smallestCountSeen.count) smallestCountSeen = { windowSize, count };
    // The rules setGeometry and the PAMU backend check too (window-geometry.ts): the window maximum, above all.
    if (checkWindowGeometry({ ...aperture, windowCount: Number(count) }, limits) !== undefined) continue;
    // Candidates come from the largest window down, so a strictly smaller aperture is needed to win:
    // at equal apertures the larger window (fewer windows) found first stays.
    if (best === undefined || aperture.size < best.size) best = { ...aperture, windowSize };
  }

  if (best === undefined) {
    if (smallestCountSeen === undefined) {
      throw new IoasError(
        'plan-impossible',
        `planWindows: no window size between ${hex(limits.minWindowSize)} and ${hex(largestWindow)} divides every memory segment's address and size; align each segment to its page size, or to at least ${hex(limits.minWindowSize)}`,
      );
    }
    throw new IoasError(
      'plan-impossible',
      `planWindows: the memory needs at least ${smallestCountSeen.count} windows of ${hex(smallestCountSeen.windowSize)} bytes but at most ${limits.maxWindows} are allowed; back the memory with larger pages, place segments closer together, or use fewer MSI banks`,
    );
  }

  const windowCount = Number(best.size / best.windowSize);
  const windows: PlannedWindow[] = [];
  const firstIndexAbove = Number((highestEnd - best.start) / best.windowSize);
  for (let index = 0; index < windowCount; index++) {
    const iova = best.start + BigInt(index) * best.windowSize;
    const segment = segments.find((candidate) => iova >= candidate.iova && iova < candidate.end);
    if (segment !== undefined) {
      windows.push({ index, iova, size: best.windowSize, kind: 'dma', memory: segment.index });
    } else if (index >= firstIndexAbove && index < firstIndexAbove + parsed.msiBanks) {
      windows.push({ index, iova, size: best.windowSize, kind: 'msi', msiBank: index - firstIndexAbove });
    } else {
      windows.push({ index, iova, size: best.windowSize, kind: 'disabled' });
    }
  }
  return { aperture: { start: best.start, size: best.size }, windowSize: best.windowSize, windowCount, windows };
}

/** The smallest power-of-two block, aligned to its size and at least `minimum`, holding [start, end). */
function smallestAlignedPowerOfTwo(start: bigint, end: bigint, minimum: bigint): { start: bigint; size: bigint } | undefined {
  let size = minimum;
  while (size < end - start) size <<= 1n;
  for (; size <= 1n << 64n; size <<= 1n) {
    const base = start - (start % size);
    if (base + size >= end) return { start: base, size };
  }
  return undefined;
}

const SIZE_UNITS: Readonly<Record<string, bigint>> = { '': 1n, K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n, P: 1n << 50n, E: 1n << 60n };

/**
 * Parses a size or address as people write them: `4096`, `0x1000`, `64K`, `256M`, `1G`, `2MiB`
 * (binary units, case-insensitive, an optional `B`/`iB`), or a bigint / safe integer.
 *
 * @throws {IoasError} `invalid-argument` for anything else, or a value past 2^64-1.
 */
export function parseSize(input: string | number | bigint): bigint {
  let value: bigint | undefined;
  if (typeof input === 'bigint') value = input;
  else if (typeof input === 'number') value = Number.isSafeInteger(input) ? BigInt(input) : undefined;
  else if (typeof input === 'string') {
    const match = /^\s*(0x[0-9a-f]+|\d+)\s*([kmgtpe]?)(i?b)?\s*$/i.exec(input);
    if (match !== null && !(match[2] === '' && match[3] !== undefined && match[3].toLowerCase() === 'ib')) {
      value = BigInt(match[1]!) * SIZE_UNITS[match[2]!.toUpperCase()]!;
    }
  }
  if (value === undefined || value < 0n || value > U64_MAX) {
    throw new IoasError('invalid-argument', `${typeof input === "string" ? input : describeValue(input)} is not a size: write 4096, 0x1000, 64K, 256M, 1G (binary units), at most 2^64-1`);
  }
  return value;
}

/**
 * Parses `SIZE[@IOVA]` (`256M@0`, `1G@0x100000000`, `64K`): a size placed at an address, 0 when
 * omitted. Both parts as {@link parseSize} reads them.
 *
 * @throws {IoasError} `invalid-argument`.
 */
export function parseSizeAt(text: string): {
  /** The size. */
  size: bigint;
  /** The address after `@`, 0 without one. */
  iova: bigint;
} {
  if (typeof text !== 'string') throw new IoasError('invalid-argument', `${describeValue(text)} is not a size: write SIZE or SIZE@IOVA as text, such as 256M@0`);
  const [size, iova, extra] = text.split('@');
  if (extra !== undefined) throw new IoasError('invalid-argument', `${text}: write SIZE or SIZE@IOVA, such as 256M@0`);
  return { size: parseSize(size!), iova: iova === undefined ? 0n : parseSize(iova) };
}

/** The binary units sizes are written in, largest first: `[bytes, name]`. */
export const BINARY_UNITS: readonly (readonly [bigint, string])[] = [
  [1n << 60n, 'EiB'],
  [1n << 50n, 'PiB'],
  [1n << 40n, 'TiB'],
  [1n << 30n, 'GiB'],
  [1n << 20n, 'MiB'],
  [1n << 10n, 'KiB'],
];

/** Formats a byte count with the largest binary unit that divides it: `64 MiB`, `4 KiB`, `0x1234 bytes`. */
export function formatSize(bytes: bigint): string {
  if (typeof bytes !== 'bigint' || bytes < 0n) throw new IoasError('invalid-argument', `formatSize: ${describeValue(bytes)} is not a byte count (a non-negative bigint)`);
  for (const [unit, name] of BINARY_UNITS) if (bytes >= unit && bytes % unit === 0n) return `${bytes / unit} ${name}`;
  return `${bytes} bytes`;
}

/**
 * The plan as the table the 2013 "type 2" thread drew: window, IOVA, what it holds.
 *
 * ```
 * Total aperture: 512 MiB at 0x00000000, 8 windows of 64 MiB
 *
 * window  iova        kind
 * 0       0x00000000  guest RAM, 64 MiB
 * 4       0x10000000  MSI bank 0
 * 7       —           disabled
 * ```
 */
export function formatWindowPlan(plan: WindowPlan): string {
  const digits = Math.max(8, (plan.aperture.start + plan.aperture.size - 1n).toString(16).length);
  const address = (value: bigint): string => `0x${value.toString(16).toUpperCase().padStart(digits, '0')}`;
  const rows = plan.windows.map((window) => {
    const kind =
      window.kind === 'dma'
        ? `guest RAM, ${formatSize(window.size)}${window.memory ? ` (segment ${window.memory})` : ''}`
        : window.kind === 'msi'
          ? `MSI bank ${window.msiBank}`
          : 'disabled';
    return [String(window.index), window.kind === 'disabled' ? '—' : address(window.iova), kind];
  });
  const header = ['window', 'iova', 'kind'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]): string => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ');
  return [
    `Total aperture: ${formatSize(plan.aperture.size)} at ${address(plan.aperture.start)}, ${plan.windowCount} windows of ${formatSize(plan.windowSize)}`,
    '',
    line(header),
    ...rows.map(line),
  ].join('\n');
}
