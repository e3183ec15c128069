/**
 * Validation of every public input, once, with zod. Numbers are accepted where they are safe
 * integers and turned into bigints; everything a backend receives is a parsed, typed value.
 */
import { z } from 'zod';
import { IoasError } from './errors.js';
import { U64_MAX } from './iova-range.js';

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
  .refine((access) => access.read || access.write, 'a mapping needs read or write access (the kernel refuses neither: EINVAL)');

export const memoryInput = z
  .object({ address: u64, length: size64, contiguousPageSize: size64.optional() })
  .strict();

export const mapInput = z
  .object({ iova: u64.optional(), memory: memoryInput, access: accessInput.optional() })
  .strict();

export const allocateInput = z
  .object({ size: size64, align: size64.optional(), limit: u64.optional(), contiguous: z.boolean().optional() })
  .strict();

export const geometryInput = z
  .object({
    aperture: z.object({ start: u64, size: size64 }).strict(),
    windowCount: z.number().int().positive(),
  })
  .strict();

export const unmapInput = z.union([
  z.object({ iova: u64, size: size64 }).strict().transform((value) => ({ start: value.iova, last: value.iova + value.size - 1n })),
  rangeInput,
]);

export const msiPlanInput = z.object({ iova: u64.optional() }).strict();

export const openInput = z
  .object({
    groups: z.array(z.number().int().nonnegative()).default([]),
    devices: z.array(z.string().min(1)).default([]),
  })
  .refine((value) => value.groups.length + value.devices.length > 0, 'give at least one IOMMU group or device');

/** Parses `input` or throws `invalid-argument` naming the operation and every problem. */
export function parseInput<Schema extends z.ZodType>(schema: Schema, input: unknown, operation: string): z.output<Schema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw new IoasError('invalid-argument', `${operation}: invalid input\n${z.prettifyError(result.error)}`, {
    operation,
    cause: result.error,
  });
}
