/**
 * Validation of the options of {@link createSimulator} and {@link sim}, with zod as core validates
 * its inputs: whatever the caller passes, a wrong option is an `invalid-argument` IoasError naming
 * it, never a raw TypeError or RangeError from deep inside the simulator.
 */
import { IoasError, U64_MAX } from '@ioas/core';
import { z } from 'zod';
import { PLATFORMS } from './platforms.js';

const u64 = z.bigint().min(0n).max(U64_MAX);
const range = z.object({ start: u64, last: u64 }).refine((value) => typeof value.start !== 'bigint' || typeof value.last !== 'bigint' || value.start <= value.last, 'last must not be below start');
const reservedRegion = z.object({ start: u64, last: u64, kind: z.enum(['msi', 'direct', 'direct-relaxable', 'reserved']) });
const u32 = z.number().int().min(0).max(0xffff_ffff);

const device = z.object({
  address: z.string().min(1),
  vendor: z.number().int().min(0).max(0xffff),
  device: z.number().int().min(0).max(0xffff),
  driver: z.string().min(1).nullable(),
  group: u32.optional(),
  reserved: z.array(reservedRegion).optional(),
  edu: z.boolean().optional(),
  aperture: range.optional(),
  modelled: z.string().optional(),
});

/** A whole preset: the fields the simulator reads (others pass). */
const preset = z.object({
  name: z.string().min(1),
  model: z.enum(['paged', 'windowed']),
  aperture: range,
  ioPageSizes: u64.refine((value) => value > 0n, 'must not be 0'),
  msi: z.enum(['explicit', 'kernel-managed', 'fixed', 'none']),
  reserved: z.array(reservedRegion),
  swMsiDoorbell: z.object({ window: range, physical: u64 }).optional(),
  hwMsi: range.optional(),
  pamu: z.object({ msiir: z.array(u64), maxWindows: z.number().int().positive() }).optional(),
  devices: z.array(device),
  vfioAtStart: z.array(z.string()),
  interruptRemapping: z.boolean(),
  hardwareDirty: z.boolean().optional(),
  vtdRegisters: z.object({ cap: u64, ecap: u64 }).optional(),
  kernel: z.enum(['6.1', '6.12']).optional(),
});

const platformNames = Object.keys(PLATFORMS);

/** A preset name, or a whole preset (checked field by field, so that an issue names the field). */
const platform = z.unknown().superRefine((value, context) => {
  if (typeof value === 'string' && platformNames.includes(value)) return;
  if (typeof value !== 'object' || value === null) {
    context.addIssue({ code: 'custom', message: `must be ${platformNames.join(', ')} or a whole preset, not ${typeof value === 'string' ? JSON.stringify(value) : value === null ? 'null' : typeof value}` });
    return;
  }
  const result = preset.safeParse(value);
  if (!result.success) for (const issue of result.error.issues) context.addIssue({ code: 'custom', message: issue.message, path: issue.path });
});

const simulatorFields = {
  dmaEntryLimit: u32.optional(),
  memlockLimit: u64.optional(),
  allowUnsafeInterrupts: z.boolean().optional(),
  pamuType: z.union([z.literal(2), z.literal(7)]).optional(),
  vfio: z.array(z.string().min(1)).optional(),
  hardwareDirty: z.boolean().optional(),
  kernel: z.enum(['6.1', '6.12']).optional(),
};

/** The options of createSimulator(). */
export const simulatorOptionsSchema = z.object({ platform, ...simulatorFields }).strict();

/** The options of sim(): a platform or a simulator, the simulator's options, the interface. */
export function backendOptionsSchema(isSimulator: (value: unknown) => boolean) {
  return z
    .object({
      platform: platform.optional(),
      simulator: z.custom<unknown>(isSimulator, 'must be a Simulator from createSimulator()').optional(),
      interface: z.enum(['type1', 'iommufd']).optional(),
      ...simulatorFields,
    })
    .strict();
}

/** Parses `input` with `schema` or throws `invalid-argument` for `entry` naming every option at fault. */
export function checkOptions(schema: z.ZodType, input: unknown, entry: string): void {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new IoasError('invalid-argument', `${entry}: options must be an object, not ${input === null ? 'null' : Array.isArray(input) ? 'an array' : typeof input}`, { operation: entry });
  }
  const result = schema.safeParse(input);
  if (result.success) return;
  const problems = result.error.issues.map((issue) => `${issue.path.map(String).join('.') || 'options'}: ${issue.message}`);
  throw new IoasError('invalid-argument', `${entry}: invalid options: ${problems.join('; ')}`, { operation: entry, cause: result.error });
}
