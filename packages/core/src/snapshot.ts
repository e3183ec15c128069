/**
 * A container's state as plain data: what {@link Container.snapshot} returns and what a renderer
 * (such as `@ioas/view`) draws. Every 64-bit value is a lowercase hex string (`0x...`), so a
 * snapshot goes through `JSON.stringify` and back unchanged; {@link parseSnapshot} checks one that
 * came from a file.
 */
import { z } from 'zod';
import { IoasError } from './errors.js';
import { U64_MAX } from './iova-range.js';

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
  /** The host virtual address behind it. */
  readonly address: SnapshotHex;
  /** The device's rights. */
  readonly access: { readonly read: boolean; readonly write: boolean };
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
  readonly windowGeometry: { readonly count: number; readonly size: SnapshotHex; readonly maxCount: number } | null;
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
  readonly msi: { readonly model: 'explicit' | 'kernel-managed' | 'fixed' | 'none'; readonly doorbells: readonly SnapshotDoorbell[] };
  /** The mapping budget: mappings live, bytes mapped, mappings left (`null`: no count limit). */
  readonly budget: { readonly mappings: number; readonly bytesMapped: SnapshotHex; readonly left: number | null };
}

/** A bigint as a snapshot writes it. */
export function snapshotHex(value: bigint): SnapshotHex {
  return `0x${value.toString(16)}`;
}

/** A range as a snapshot writes it. */
export function snapshotRange(range: { readonly start: bigint; readonly last: bigint }): SnapshotRange {
  return { start: snapshotHex(range.start), last: snapshotHex(range.last) };
}

const HEX = /^0x[0-9a-f]{1,16}$/;

const hexValue = z
  .string()
  .regex(HEX, 'must be 0x and 1 to 16 lowercase hex digits')
  .refine((text) => BigInt(text) <= U64_MAX, 'must be at most 2^64-1');

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
    mappings: z.array(z.object({ iova: range, address: hexValue, access: z.object({ read: z.boolean(), write: z.boolean() }).strict() }).strict()),
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
