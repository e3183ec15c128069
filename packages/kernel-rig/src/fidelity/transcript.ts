/**
 * A golden transcript's file format: JSON, with 64-bit step values written as `"0x..."` strings
 * (`"-0x..."` below zero). `decodeTranscript` checks every sequence, step and outcome against the
 * engine's vocabulary, so a damaged or hand-edited transcript is an `invalid-argument` error naming
 * the file and the place in it, never a replay that fails for a reason nobody can read.
 */
import { IoasError } from '@ioas/core';
import { z } from 'zod';
import type { FidelityLaneName, Transcript } from './families.js';
import type { Step } from './steps.js';

const HEX = /^-?0x[0-9a-f]+$/;

const integer = z.number().int();
const wide = z.union([integer, z.bigint()]);
const fdRole = z.strictObject({ fd: z.string() });
const pointer = z.strictObject({ mapping: z.string(), offset: z.bigint().optional() });
const value = z.union([wide, fdRole, pointer]);

const step = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('open'), path: z.string(), as: z.string().optional() }),
  z.strictObject({ op: z.literal('close'), fd: z.string() }),
  z.strictObject({
    op: z.literal('ioctl'),
    fd: z.string(),
    ioctl: z.string(),
    fields: z.record(z.string(), value).optional(),
    data: z.array(z.union([integer, fdRole])).optional(),
    bytes: z.array(integer.min(0).max(255)).optional(),
    words: z.array(value).optional(),
    name: z.string().optional(),
    value: integer.optional(),
    as: z.string().optional(),
  }),
  z.strictObject({ op: z.literal('eventfd'), as: z.string() }),
  z.strictObject({ op: z.literal('read'), fd: z.string() }),
  z.strictObject({ op: z.literal('write'), fd: z.string(), value: z.bigint() }),
  z.strictObject({ op: z.literal('pwrite'), fd: z.string(), region: integer, offset: integer, size: z.union([z.literal(1), z.literal(2), z.literal(4)]), value: integer }),
  z.strictObject({ op: z.literal('pread'), fd: z.string(), region: integer, offset: integer, size: z.union([z.literal(1), z.literal(2), z.literal(4)]) }),
  z.strictObject({ op: z.literal('mmap'), pages: integer.positive(), as: z.string(), align: integer.positive().optional() }),
  z.strictObject({ op: z.literal('munmap'), mapping: z.string() }),
  z.strictObject({ op: z.literal('poke'), mapping: z.string(), offset: integer.min(0).optional(), words: z.array(z.bigint()) }),
  z.strictObject({ op: z.literal('peek'), mapping: z.string(), offset: integer.min(0).optional(), length: integer.min(0) }),
  z.strictObject({ op: z.literal('readFile'), path: z.string() }),
]);

const outcome = z.strictObject({ result: z.string().min(1), bytes: z.string().regex(/^(?:[0-9a-f]{2})*$/, 'hex bytes').optional() });

const LANES: readonly FidelityLaneName[] = ['x86', 'arm64', 'iommufd', 'type1-6.12'];

const transcript = z.strictObject({
  lane: z.enum(LANES as [FidelityLaneName, ...FidelityLaneName[]]),
  family: z.string().min(1),
  sequences: z.array(
    z
      .strictObject({ seed: integer, steps: z.array(step), outcomes: z.array(outcome) })
      .refine((sequence) => sequence.outcomes.length === sequence.steps.length, { message: 'a sequence has one outcome for each step' }),
  ),
});

function bad(source: string, what: string): never {
  throw new IoasError('invalid-argument', `transcript ${source}: ${what}`);
}

/** A transcript as its file's text. */
export function encodeTranscript(value: Transcript): string {
  return JSON.stringify(value, (_, item: unknown) => (typeof item === 'bigint' ? (item < 0n ? `-0x${(-item).toString(16)}` : `0x${item.toString(16)}`) : item));
}

/**
 * The transcript a file's text holds. `source` names the file in errors. Any damage (not JSON, a
 * field missing or of the wrong type, an unknown op or key, outcomes that do not match the steps) is
 * an `invalid-argument` IoasError saying where.
 */
export function decodeTranscript(text: string, source: string): Transcript {
  let parsed: unknown;
  try {
    // Outcome bytes and results are text; a 64-bit step value is the only other "0x" string.
    parsed = JSON.parse(text, (key, item: unknown) =>
      typeof item === 'string' && key !== 'bytes' && key !== 'result' && HEX.test(item) ? (item.startsWith('-') ? -BigInt(item.slice(1)) : BigInt(item)) : item,
    );
  } catch (error) {
    return bad(source, `not JSON (${(error as Error).message})`);
  }
  const checked = transcript.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0]!;
    return bad(source, `${issue.path.length === 0 ? 'the top level' : issue.path.join('.')}: ${issue.message}`);
  }
  return checked.data as Transcript & { sequences: { steps: Step[] }[] };
}
