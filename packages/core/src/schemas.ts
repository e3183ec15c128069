/**
 * Validation of every public input, once, with zod. Numbers are accepted where they are safe
 * integers and turned into bigints; everything a backend receives is a parsed, typed value.
 */
import { z } from 'zod';
import { accessOf } from './container-input.js';
import { DirtyBitmap } from './dirty-bitmap.js';
import { IoasError } from './errors.js';
import { isPowerOfTwo, U64_MAX } from './iova-range.js';

/** A 64-bit unsigned integer given as a bigint or as a safe non-negative integer number. */
export const u64 = z
  .union([z.bigint(), z.number().int().nonnegative().refine(Number.isSafeInteger, 'must be a safe integer; use a bigint')])
  .transform((value) => BigInt(value))
  .refine((value) => value >= 0n && value <= U64_MAX, 'must be between 0 and 2^64-1');

/** A positive 64-bit size. */
export const size64 = u64.refine((value) => value > 0n, 'must be positive');

/** `{ start, size }` or `{ start, last }`: an IOVA range as users write it. */
export const rangeInput = z
  .union([z.object({ start: u64, size: size64 }).strict(), z.object({ start: u64, last: u64 }).strict()])
  .transform((value, context) => {
    const last = 'size' in value ? value.start + value.size - 1n : value.last;
    if (last < value.start || last > U64_MAX) {
      context.addIssue({ code: 'custom', message: 'range is empty or wraps past 2^64-1' });
      return z.NEVER;
    }
    return { start: value.start, last };
  });

export const accessInput = z.object({ read: z.boolean(), write: z.boolean() }).strict()
  .refine((access) => access.read === true || access.write === true, 'a mapping needs read or write access (the kernel refuses neither: EINVAL)');

/** Host memory: extra keys are dropped, so that allocation results (with `bytes`, `free`) pass as they are. */
export const memoryInput = z.object({ address: u64, length: size64, contiguousPageSize: size64.optional() });

export const mapInput = z
  .object({ iova: u64.optional(), memory: memoryInput, access: accessInput.optional() })
  .strict();

export const allocateInput = z
  .object({
    size: size64,
    align: size64.refine(isPowerOfTwo, 'must be a power of two').optional(),
    limit: u64.optional(),
    contiguous: z.boolean().optional(),
  })
  .strict();

export const geometryInput = z
  .object({
    aperture: z.object({ start: u64, size: size64 }).strict(),
    windowCount: z.number().int().positive(),
  })
  .strict();

export const unmapInput = z.union([
  z
    .object({ iova: u64, size: size64 })
    .strict()
    // zod runs a refinement even when a field failed: check the types before the arithmetic.
    .refine((value) => typeof value.iova !== 'bigint' || typeof value.size !== 'bigint' || value.iova + value.size - 1n <= U64_MAX, 'range wraps past 2^64-1')
    .transform((value) => ({ start: value.iova, last: value.iova + value.size - 1n })),
  rangeInput,
]);

export const msiPlanInput = z.object({ iova: u64.optional() }).strict();

/** An MSI plan handed back to `msi.map()`: the shape {@link MsiPlan} has, checked field by field. */
export const msiPlanArgument = z
  .object({
    model: z.enum(['explicit', 'kernel-managed', 'fixed', 'none']),
    doorbells: z.array(
      z
        .object({
          index: z.number().int().nonnegative(),
          iova: z.object({ start: u64, last: u64 }).refine((range) => typeof range.start !== 'bigint' || typeof range.last !== 'bigint' || range.start <= range.last, 'last must not be below start'),
          mappedBy: z.enum(['sdk', 'kernel', 'hardware']),
        })
        .strict(),
    ),
  })
  .strict();

/** A dirty-bitmap read: the range, and optionally the page size and whether to clear. */
export const dirtyReadInput = z
  .object({ iova: rangeInput, pageSize: size64.optional(), clear: z.boolean().optional(), into: z.instanceof(DirtyBitmap, { message: 'into must be a DirtyBitmap an earlier read returned' }).optional() })
  .strict();

/** The options of a dirty unmap. */
export const dirtyUnmapOptions = z.object({ pageSize: size64.optional() }).strict();

/** An address to look up: a 64-bit value. */
export const addressInput = u64;

export const openInput = z
  .object({
    groups: z.array(z.number().int().nonnegative()).default([]),
    devices: z.array(z.string().min(1)).default([]),
  })
  .refine((value) => (value.groups?.length ?? 0) + (value.devices?.length ?? 0) > 0, 'give at least one IOMMU group or device');

/** Parses `input` or throws `invalid-argument` naming the operation and every problem. */
export function parseInput<Schema extends z.ZodType>(schema: Schema, input: unknown, operation: string): z.output<Schema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new IoasError('invalid-argument', `${operation}: invalid input\n${z.prettifyError(result.error)}`, {
    operation,
    cause: result.error,
  });
}

/** Parsed map input. */
export type MapInputParsed = z.output<typeof mapInput>;

const isU64 = (value: unknown): value is bigint => typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
const MAP_KEYS = ['iova', 'memory', 'access'] as const;
const ACCESS_KEYS = ['read', 'write'] as const;
const UNMAP_KEYS = ['iova', 'size'] as const;

/** True when `value` has no own enumerable key but `keys` (a for-in loop: no array is built). */
function hasOnly(value: object, keys: readonly string[]): boolean {
  for (const key in value) {
    // Own keys only, as Object.keys (and zod) see them; hasOwn only for a key that is not expected.
    if (key !== keys[0] && key !== keys[1] && key !== keys[2] && Object.hasOwn(value, key)) return false;
  }
  return true;
}

/**
 * The map input in its canonical form (bigints, no extra keys), recognised without zod: the hot
 * path. It accepts a strict subset of what {@link mapInput} accepts and returns what zod would;
 * anything else returns `undefined` and goes through zod, which also writes the error messages. A
 * property test holds the two together.
 */
export function fastMapInput(input: unknown): MapInputParsed | undefined {
  if (typeof input !== 'object' || input === null || !hasOnly(input, MAP_KEYS)) return undefined;
  const { iova, memory, access } = input as { iova?: unknown; memory?: unknown; access?: unknown };
  if (iova !== undefined && !isU64(iova)) return undefined;
  if (typeof memory !== 'object' || memory === null) return undefined;
  const { address, length, contiguousPageSize } = memory as { address?: unknown; length?: unknown; contiguousPageSize?: unknown };
  if (!isU64(address) || !isU64(length) || length === 0n) return undefined;
  if (contiguousPageSize !== undefined && (!isU64(contiguousPageSize) || contiguousPageSize === 0n)) return undefined;
  if (access !== undefined) {
    if (typeof access !== 'object' || access === null || !hasOnly(access, ACCESS_KEYS)) return undefined;
    const { read, write } = access as { read?: unknown; write?: unknown };
    if (typeof read !== 'boolean' || typeof write !== 'boolean' || (!read && !write)) return undefined;
  }
  const parsedMemory = contiguousPageSize === undefined ? { address, length } : { address, length, contiguousPageSize: contiguousPageSize as bigint };
  const result: MapInputParsed = { memory: parsedMemory };
  if (iova !== undefined) result.iova = iova;
  // Not the caller's object, so that a mapping's access cannot change when the caller's does: one
  // frozen object per combination, as zod's copy would be equal to.
  if (access !== undefined) result.access = accessOf((access as { read: boolean }).read, (access as { write: boolean }).write);
  return result;
}

/** The canonical `{ iova, size }` unmap input, recognised without zod (see {@link fastMapInput}). */
export function fastUnmapInput(input: unknown): { start: bigint; last: bigint } | undefined {
  if (typeof input !== 'object' || input === null || !hasOnly(input, UNMAP_KEYS)) return undefined;
  const { iova, size } = input as { iova?: unknown; size?: unknown };
  if (!isU64(iova) || !isU64(size) || size === 0n || iova + size - 1n > U64_MAX) return undefined;
  return { start: iova, last: iova + size - 1n };
}
