/**
 * Reading a trace back: every line validated with zod against the format (trace-format.ts), and
 * every problem reported as an `invalid-argument` IoasError naming the line and the field, so that
 * a replay never runs on a trace it misread.
 */
import { readFileSync } from 'node:fs';
import { IoasError } from '@ioas/core';
import { z } from 'zod';
import { ioctlSpec, type IoctlFieldKind } from './ioctl-codec.js';
import { isJournal, JOURNAL_FORMAT, renderJournal } from './journal.js';
import { TRACE_FORMAT, TRACE_VERSION, type IoctlCall, type TraceCall, type TraceHeader } from './trace-format.js';

/** Options of {@link readTrace}. */
export interface ReadTraceOptions {
  /**
   * Accept a last line cut short (the recorder was killed while writing it: the call in flight) by
   * leaving it out of `calls` and returning it in `truncated`. Default: it is an error.
   */
  readonly allowTruncated?: boolean;
}

/** A trace read back. */
export interface ReadTrace {
  /** The first line. */
  readonly header: TraceHeader;
  /** Every call, in order. */
  readonly calls: TraceCall[];
  /** With `allowTruncated`: the unterminated last line, when there was one. */
  readonly truncated?: string;
}

const hex = z.string().regex(/^0x[0-9a-f]+$/, 'must be a lowercase hex string such as "0x1000"');
const hexBytes = z.string().regex(/^(?:[0-9a-f]{2})*$/, 'must be hex bytes (pairs of lowercase hex digits)');
const int = z.number().int();
const count = int.nonnegative();
const pointer = z.strictObject({ buffer: int.positive(), offset: hex });
const iovaRange = z.strictObject({ start: hex, last: hex });
const field = z.union([int, z.string(), pointer, z.array(int), z.array(iovaRange)]);
const fields = z.record(z.string(), field);

// Loose objects: a field a later version-1 writer adds passes through (the format grows by optional fields).
const base = { n: int.positive(), errno: z.string().min(1).optional() };
const call = <T extends string, S extends z.ZodRawShape>(name: T, shape: S) => z.looseObject({ ...base, call: z.literal(name), ...shape });

const callSchemas = {
  open: call('open', { path: z.string(), flags: int, result: count.optional() }),
  close: call('close', { fd: int }),
  ioctl: call('ioctl', {
    fd: int,
    ioctl: z.string().min(1),
    request: int.min(0).max(0xffff_ffff),
    value: int.optional(),
    length: count.optional(),
    buffers: z.array(z.strictObject({ buffer: int.positive(), length: hex })).optional(),
    in: fields.optional(),
    out: fields.optional(),
    tailIn: hexBytes.optional(),
    tailOut: hexBytes.optional(),
    result: count.optional(),
  }),
  mmap: call('mmap', { length: hex, prot: int, flags: int, fd: int, offset: hex, result: pointer.optional() }),
  munmap: call('munmap', { address: z.union([pointer, hex]), length: hex }),
  pread: call('pread', { fd: int, length: count, offset: hex, result: count.optional() }),
  pwrite: call('pwrite', { fd: int, length: count, offset: hex, result: count.optional() }),
  eventfd: call('eventfd', { initial: count, flags: int, result: count.optional() }),
  read: call('read', { fd: int, length: count, result: count.optional() }),
  write: call('write', { fd: int, length: count, result: count.optional() }),
  readFile: call('readFile', { path: z.string(), result: z.string().optional() }),
  writeFile: call('writeFile', { path: z.string(), data: z.string() }),
  readLink: call('readLink', { path: z.string(), result: z.string().optional() }),
  readDir: call('readDir', { path: z.string(), result: z.array(z.string()).optional() }),
  exists: call('exists', { path: z.string(), result: z.boolean() }),
} as const;

const headerSchema = z.looseObject({
  type: z.literal('header'),
  format: z.literal(TRACE_FORMAT),
  version: z.literal(TRACE_VERSION),
  kernel: z.string(),
  arch: z.string(),
  ioas: z.string(),
  syscalls: z.string(),
  label: z.string().optional(),
  endian: z.enum(['little', 'big']).optional(),
  platform: z.string().optional(),
});

function fail(line: number, message: string): never {
  throw new IoasError('invalid-argument', `trace line ${line}: ${message}`);
}

/** `field: message` of the first zod issue, the field as a dotted path (`in.vaddr.offset`). */
function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  return path === '' ? issue.message : `${path}: ${issue.message}`;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkHeader(value: unknown): TraceHeader {
  if (!isRecord(value) || value.type !== 'header') fail(1, 'missing header: the first line must be {"type":"header","format":"ioas-trace",...}');
  if (value.format !== TRACE_FORMAT) fail(1, `format: not an ioas trace (format ${JSON.stringify(value.format)}, expected "${TRACE_FORMAT}")`);
  if (value.version !== TRACE_VERSION) fail(1, `version: ${JSON.stringify(value.version)} is not a version this reader knows (it reads ${TRACE_VERSION})`);
  const parsed = headerSchema.safeParse(value);
  if (!parsed.success) fail(1, firstIssue(parsed.error));
  return parsed.data as TraceHeader;
}

/** What each field kind the codec knows must look like in `in` / `out`. */
const kindSchemas: Record<IoctlFieldKind, z.ZodType> = {
  u8: count.max(0xff),
  u16: count.max(0xffff),
  u32: count.max(0xffff_ffff),
  fd: int.min(-0x8000_0000).max(0x7fff_ffff),
  u64: hex,
  pointer: z.union([pointer, hex]),
  'iova-ranges': z.union([z.array(iovaRange), pointer, hex]),
  string: z.string(),
  bytes: hexBytes,
};
const eventfds = z.array(int.min(-1).max(0x7fff_ffff));

/** Checks `in` and `out` of an ioctl the codec knows against its struct: the right kind for each field, no stray field. */
function checkIoctlFields(call: IoctlCall, line: number): void {
  const spec = ioctlSpec(call.request);
  if (spec === undefined) return;
  if (spec.name !== call.ioctl) fail(line, `ioctl: ${JSON.stringify(call.ioctl)} is not the name of request ${call.request} (${spec.name})`);
  for (const direction of ['in', 'out'] as const) {
    const given = call[direction];
    if (given === undefined) continue;
    for (const [name, value] of Object.entries(given)) {
      const field = spec.fields.find((candidate) => candidate.name === name);
      const schema = field !== undefined ? kindSchemas[field.kind] : direction === 'in' && name === 'data' && spec.tail === 'irq-data' ? eventfds : undefined;
      if (schema === undefined) fail(line, `${direction}.${name}: not a field of ${spec.struct ?? spec.name}`);
      if (field !== undefined && direction === 'out' && !field.out) fail(line, `out.${name}: the kernel does not write it`);
      const parsed = schema.safeParse(value);
      if (!parsed.success) fail(line, `${direction}.${name}: ${firstIssue(parsed.error)} (a ${field?.kind ?? 'fd array'} field)`);
    }
  }
}

function checkCall(value: unknown, line: number): TraceCall {
  if (!isRecord(value)) fail(line, 'not a JSON object');
  if (value.type === 'header') fail(line, 'type: a second header');
  const name = value.call;
  if (typeof name !== 'string') fail(line, 'call: missing (every line after the header is a call)');
  const schema = (callSchemas as Record<string, z.ZodType>)[name];
  if (schema === undefined) fail(line, `call: ${JSON.stringify(name)} is not a call this reader knows (${Object.keys(callSchemas).join(', ')})`);
  const parsed = schema.safeParse(value);
  if (!parsed.success) fail(line, firstIssue(parsed.error));
  const checked = parsed.data as TraceCall;
  if (checked.call === 'ioctl') checkIoctlFields(checked, line);
  return checked;
}

/**
 * Reads a trace (its text, or a file's bytes: a recorder's journal, left by a recorder that died
 * before `stop()`, is rendered first): the header line, then one call a line, each validated. NUL bytes at the end (a
 * recorder that died before truncating its file) end the trace. Throws an `invalid-argument`
 * IoasError naming the line and the field for a malformed line, a truncated last line, a missing
 * or foreign header, another version, or a call number `n` that does not increase.
 */
export function readTrace(trace: string | Uint8Array, options: ReadTraceOptions = {}): ReadTrace {
  let text: string;
  if (typeof trace === 'string') {
    const newline = trace.indexOf('\n');
    if ((newline < 0 ? trace : trace.slice(0, newline)).includes(`"format":"${JOURNAL_FORMAT}"`)) {
      fail(1, 'a recorder journal (the recorder did not reach stop()) holds binary records: pass its bytes, or read it with readTraceFile()');
    }
    text = trace;
  } else text = Buffer.from(isJournal(trace) ? renderJournal(trace) : trace).toString('utf8');
  let end = text.length;
  while (end > 0 && text.charCodeAt(end - 1) === 0) end--;
  const body = text.slice(0, end);
  const lines = body.split('\n');
  // A complete trace ends with a newline: the split leaves an empty last element.
  const unterminated = lines.pop()!;
  let truncated: string | undefined;
  if (unterminated !== '') {
    let complete = false;
    try {
      JSON.parse(unterminated);
      complete = true;
    } catch {
      // Cut short: handled below.
    }
    if (complete) lines.push(unterminated);
    else if (options.allowTruncated === true) truncated = unterminated;
    else fail(lines.length + 1, 'truncated (no newline, not complete JSON: the recorder died while writing it?); the calls before it are whole, and allowTruncated reads them');
  }
  if (lines.length === 0) fail(1, 'missing header: the trace is empty');
  const parse = (source: string, line: number): unknown => {
    if (source.trim() === '') fail(line, 'empty line');
    try {
      return JSON.parse(source);
    } catch (error) {
      return fail(line, `not JSON (${(error as Error).message})`);
    }
  };
  const header = checkHeader(parse(lines[0]!, 1));
  const calls: TraceCall[] = [];
  let previous = 0;
  for (let index = 1; index < lines.length; index++) {
    const line = index + 1;
    const parsed = checkCall(parse(lines[index]!, line), line);
    if (parsed.n <= previous) fail(line, `n: ${parsed.n} does not follow ${previous} (call numbers increase)`);
    previous = parsed.n;
    calls.push(parsed);
  }
  return truncated === undefined ? { header, calls } : { header, calls, truncated };
}

/** {@link readTrace} of a file: a trace (UTF-8), or a recorder's journal. */
export function readTraceFile(path: string, options: ReadTraceOptions = {}): ReadTrace {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new IoasError('invalid-argument', `cannot read trace ${path}: ${typeof code === 'string' ? code : String(error)}`, { cause: error });
  }
  return readTrace(bytes, options);
}
