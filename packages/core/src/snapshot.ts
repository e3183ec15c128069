/**
 * A container's state as plain data: what {@link Container.snapshot} returns and what a renderer
 * (such as `@ioas/view`) draws. Every 64-bit value is a lowercase hex string (`0x...`), so a
 * snapshot goes through `JSON.stringify` and back unchanged; {@link parseSnapshot} checks one that
 * came from a file.
 */
import { z } from 'zod';
import { IoasError } from './errors.js';
import { subtractRanges, U64_MAX } from './iova-range.js';
import { formatSize, type WindowPlan } from './plan-windows.js';
import type { ReservedRange } from './types.js';
import { PAMU_VFIO_MAX_WINDOWS } from './window-geometry.js';

/** The version of the snapshot format this core writes and reads. */
export const SNAPSHOT_VERSION = 1;

/** A 64-bit value in a snapshot: `0x` and lowercase hex, at most 2^64-1. */
export type SnapshotHex = string;

/** An inclusive IOVA range in a snapshot. */
export interface SnapshotRange {
  /** First byte. */
  readonly start: SnapshotHex;
  /** Last byte (inclusive). */
  readonly last: SnapshotHex;
}

/** A reserved range in a snapshot: its kind and where the SDK learned of it. */
export interface SnapshotReserved extends SnapshotRange {
  /** `msi`, `direct`, `direct-relaxable` or `reserved`, as sysfs names them. */
  readonly kind: 'msi' | 'direct' | 'direct-relaxable' | 'reserved';
  /** `sysfs`, `kernel-ranges`, `platform`, `backend` or `user`. */
  readonly source: 'sysfs' | 'kernel-ranges' | 'platform' | 'backend' | 'user';
  /** The group, device or file it was read for, when known. */
  readonly origin?: string;
}

/** A live mapping in a snapshot. */
export interface SnapshotMapping {
  /** The IOVA range the device uses. */
  readonly iova: SnapshotRange;
  /** The host virtual address behind it; absent in a plan's snapshot (no host memory yet). */
  readonly address?: SnapshotHex;
  /** The device's rights. */
  readonly access: {
    /** The device may read. */
    readonly read: boolean;
    /** The device may write. */
    readonly write: boolean;
  };
}

/** An MSI doorbell in a snapshot. */
export interface SnapshotDoorbell {
  /** The bank index, or the window's position for kernel-managed and fixed windows. */
  readonly index: number;
  /** Where device MSI writes go. */
  readonly iova: SnapshotRange;
  /** `sdk` (this container mapped it), `kernel` or `hardware`. */
  readonly mappedBy: 'sdk' | 'kernel' | 'hardware';
}

/**
 * A container's IOVA space as plain data (version {@link SNAPSHOT_VERSION}): everything
 * `Container` reports, in one JSON-serialisable object.
 */
export interface ContainerSnapshot {
  /** The format version: 1. */
  readonly version: 1;
  /** What the snapshot shows, for titles: the backend's name, a platform, a host group, a plan. */
  readonly title: string;
  /** `paged` or `windowed`. */
  readonly model: 'paged' | 'windowed';
  /** The whole translatable range. */
  readonly aperture: SnapshotRange;
  /** Bitmap of IO page sizes (bit n set: 2^n-byte pages). */
  readonly ioPageSizes: SnapshotHex;
  /** The kernel's own usable ranges (type1 IOVA_RANGE, iommufd IOVA_RANGES); `null` when it reports none. */
  readonly kernelRanges: readonly SnapshotRange[] | null;
  /** Windowed IOMMUs: how the aperture is cut; `null` on a paged IOMMU. */
  readonly windowGeometry: {
    /** Windows the aperture is cut into. */
    readonly count: number;
    /** Bytes per window (`0x0` until the geometry is set). */
    readonly size: SnapshotHex;
    /** Most windows the hardware and the kernel allow. */
    readonly maxCount: number;
  } | null;
  /** Windows created with `createWindow()` (on PAMU, the enabled hardware windows). */
  readonly windows: readonly SnapshotRange[];
  /** Reserved ranges, sorted by start. */
  readonly reserved: readonly SnapshotReserved[];
  /** The ranges a mapping may use. */
  readonly usable: readonly SnapshotRange[];
  /** Live mappings, in IOVA order. */
  readonly mappings: readonly SnapshotMapping[];
  /** Ranges handed out by `allocate()` and not released, in IOVA order. */
  readonly allocations: readonly SnapshotRange[];
  /** The MSI model and where its doorbells sit. */
  readonly msi: {
    /** The platform's MSI model (`capabilities.msi`). */
    readonly model: 'explicit' | 'kernel-managed' | 'fixed' | 'none';
    /** Where device MSI writes go: mapped by this container (explicit) or reserved by the kernel. */
    readonly doorbells: readonly SnapshotDoorbell[];
  };
  /** The mapping budget: mappings live, bytes mapped, mappings left (`null`: no count limit). */
  readonly budget: {
    /** Live mappings. */
    readonly mappings: number;
    /** Bytes in the live mappings. */
    readonly bytesMapped: SnapshotHex;
    /** Mappings that can still be made; `null` when the backend has no count limit. */
    readonly left: number | null;
  };
}

/** A bigint as a snapshot writes it. */
export function snapshotHex(value: bigint): SnapshotHex {
  return `0x${value.toString(16)}`;
}

/** A range as a snapshot writes it. */
export function snapshotRange(range: { readonly start: bigint; readonly last: bigint }): SnapshotRange {
  return { start: snapshotHex(range.start), last: snapshotHex(range.last) };
}

/** A reserved range as a snapshot writes it: its kind, source and origin kept. */
export function snapshotReserved(region: ReservedRange): SnapshotReserved {
  return { ...snapshotRange(region), kind: region.kind, source: region.source, ...(region.origin === undefined ? {} : { origin: region.origin }) };
}

const HEX = /^0x[0-9a-f]{1,16}$/;

const hexValue = z
  .string()
  .regex(HEX, 'must be 0x and 1 to 16 lowercase hex digits')
  .refine((text) => !HEX.test(text) || BigInt(text) <= U64_MAX, 'must be at most 2^64-1');

/** zod runs a refinement even when a field failed: compare only two well-formed values. */
const inOrder = (value: { start: string; last: string }) => !HEX.test(value.start) || !HEX.test(value.last) || BigInt(value.start) <= BigInt(value.last);

const range = z
  .object({ start: hexValue, last: hexValue })
  .strict()
  .refine(inOrder, 'last must not be below start');

const count = z.number().int().nonnegative();

const snapshotSchema = z
  .object({
    version: z.literal(SNAPSHOT_VERSION),
    title: z.string().max(200),
    model: z.enum(['paged', 'windowed']),
    aperture: range,
    ioPageSizes: hexValue,
    kernelRanges: z.array(range).nullable(),
    windowGeometry: z.object({ count, size: hexValue, maxCount: count }).strict().nullable(),
    windows: z.array(range),
    reserved: z.array(
      z
        .object({
          start: hexValue,
          last: hexValue,
          kind: z.enum(['msi', 'direct', 'direct-relaxable', 'reserved']),
          source: z.enum(['sysfs', 'kernel-ranges', 'platform', 'backend', 'user']),
          origin: z.string().max(500).optional(),
        })
        .strict()
        .refine(inOrder, 'last must not be below start'),
    ),
    usable: z.array(range),
    mappings: z.array(z.object({ iova: range, address: hexValue.optional(), access: z.object({ read: z.boolean(), write: z.boolean() }).strict() }).strict()),
    allocations: z.array(range),
    msi: z
      .object({
        model: z.enum(['explicit', 'kernel-managed', 'fixed', 'none']),
        doorbells: z.array(z.object({ index: count, iova: range, mappedBy: z.enum(['sdk', 'kernel', 'hardware']) }).strict()),
      })
      .strict(),
    budget: z.object({ mappings: count, bytesMapped: hexValue, left: count.nullable() }).strict(),
  })
  .strict();

/**
 * Checks that `value` (parsed JSON, say) is a {@link ContainerSnapshot} this core can read and
 * returns it typed.
 *
 * @throws {IoasError} `unsupported` for another snapshot version; `invalid-argument` naming every
 *   field that is wrong.
 */
export function parseSnapshot(value: unknown): ContainerSnapshot {
  const version = (value as { version?: unknown } | null)?.version;
  if (typeof value === 'object' && value !== null && typeof version === 'number' && version !== SNAPSHOT_VERSION) {
    throw new IoasError('unsupported', `parseSnapshot: snapshot version ${version} is not ${SNAPSHOT_VERSION}, the only version this @ioas/core reads; install a matching version`, { operation: 'parseSnapshot' });
  }
  const result = snapshotSchema.safeParse(value);
  if (result.success) return result.data as ContainerSnapshot;
  throw new IoasError('invalid-argument', `parseSnapshot: not a container snapshot\n${z.prettifyError(result.error)}`, { operation: 'parseSnapshot', cause: result.error });
}

/**
 * A window plan ({@link planWindows}) as a snapshot of the PAMU domain it describes once applied:
 * the aperture cut into the plan's windows, guest RAM mapped 1:1 in its `dma` windows (no host
 * address yet), an MSI bank in each `msi` window, and nothing in the `disabled` ones.
 *
 * @param title What the picture shows (default: a description of the plan).
 */
export function planSnapshot(plan: WindowPlan, title?: string): ContainerSnapshot {
  const window = (planned: { readonly iova: bigint; readonly size: bigint }) => snapshotRange({ start: planned.iova, last: planned.iova + planned.size - 1n });
  const msiWindows = plan.windows.filter((planned) => planned.kind === 'msi').map((planned) => ({ start: planned.iova, last: planned.iova + planned.size - 1n }));
  const dma = plan.windows.filter((planned) => planned.kind === 'dma');
  const bytesMapped = dma.reduce((total, planned) => total + planned.size, 0n);
  const aperture = { start: plan.aperture.start, last: plan.aperture.start + plan.aperture.size - 1n };
  return {
    version: SNAPSHOT_VERSION,
    title: title ?? `window plan: ${plan.windowCount} windows of ${formatSize(plan.windowSize)}`,
    model: 'windowed',
    aperture: snapshotRange(aperture),
    ioPageSizes: snapshotHex(0x1000n),
    kernelRanges: null,
    windowGeometry: { count: plan.windowCount, size: snapshotHex(plan.windowSize), maxCount: PAMU_VFIO_MAX_WINDOWS },
    // Applied by mapping, as backend-pamu applies it: no window is created with createWindow(), and
    // what a map may still use is the aperture minus the banks' windows (as Container.usable() says).
    windows: [],
    reserved: [],
    usable: subtractRanges([aperture], msiWindows).map(snapshotRange),
    mappings: dma.map((planned) => ({ iova: window(planned), access: { read: true, write: true } })),
    allocations: [],
    msi: { model: 'explicit', doorbells: plan.windows.flatMap((planned) => (planned.kind === 'msi' ? [{ index: planned.msiBank ?? 0, iova: window(planned), mappedBy: 'sdk' as const }] : [])) },
    budget: { mappings: dma.length, bytesMapped: snapshotHex(bytesMapped), left: null },
  };
}
