/**
 * A trace as an `ioas sim` scenario: the IOVA space a recorded program built (its maps, unmaps and
 * iommufd allow-lists), written as steps that `runScenario` plays through the public API on the
 * simulator, so that a run on a real machine can be looked at, drawn (`ioas map --scenario`) and
 * varied without the machine.
 *
 * Failed calls are left out, each with a YAML comment saying so: the error a scenario step expects is
 * core's (`overlap`, `reserved`, `kernel`...), and core refuses many bad maps itself, before the
 * kernel sees them, with a code the trace cannot know. A step that guessed would fail the scenario.
 */
import type { PlatformName } from '@ioas/backend-sim';
import { hex, IoasError, normalizeRanges, subtractRanges, U64_MAX, type IovaRange } from '@ioas/core';
import { ioctlName } from './ioctl-codec.js';
import { choosePlatform } from './replay-platform.js';
import type { ReplayableTrace } from './replay.js';
import type { TraceCall, TraceField } from './trace-format.js';

/** Options of {@link traceToScenario}. */
export interface ToScenarioOptions {
  /** The scenario's platform; default: the one the header's `arch` implies, as for a replay. */
  readonly platform?: PlatformName;
}

/** type1 `VFIO_DMA_MAP_FLAG_READ` / `_WRITE` and `VFIO_DMA_UNMAP_FLAG_ALL` (include/uapi/linux/vfio.h). */
const TYPE1 = { READ: 0x1, WRITE: 0x2, UNMAP_ALL: 0x2 } as const;
/** `IOMMU_IOAS_MAP_WRITEABLE` / `_READABLE` (include/uapi/linux/iommufd.h). */
const IOMMUFD = { WRITEABLE: 0x2, READABLE: 0x4 } as const;

type IoctlCall = Extract<TraceCall, { call: 'ioctl' }>;

const MAPPING_IOCTLS = new Set(['VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_UNMAP_DMA', 'IOMMU_IOAS_MAP', 'IOMMU_IOAS_UNMAP', 'IOMMU_IOAS_ALLOW_IOVAS']);

/** A comment's text on one line (a label may hold anything). */
function commentText(value: string): string {
  return value.replace(/[\u0000-\u001f\u007f]+/g, ' ');
}

function field(call: IoctlCall, group: 'in' | 'out', name: string): TraceField | undefined {
  return call[group]?.[name];
}

/** A 64-bit field as a bigint; a bad trace when it is not hex. */
function u64Field(call: IoctlCall, group: 'in' | 'out', name: string): bigint {
  const value = field(call, group, name);
  if (typeof value !== 'string' || !/^0x[0-9a-f]+$/i.test(value)) throw new IoasError('invalid-argument', `trace call ${call.n}: ${call.ioctl} ${group}.${name} must be a hex string, not ${JSON.stringify(value)}`);
  return BigInt(value);
}

function u32Field(call: IoctlCall, group: 'in' | 'out', name: string): number {
  const value = field(call, group, name);
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new IoasError('invalid-argument', `trace call ${call.n}: ${call.ioctl} ${group}.${name} must be a number, not ${JSON.stringify(value)}`);
  return value;
}

function access(read: boolean, write: boolean): 'r' | 'w' | 'rw' | undefined {
  return read && write ? 'rw' : read ? 'r' : write ? 'w' : undefined;
}

/** An allow-list as ranges, or undefined when the recording could not read it (a raw pointer). */
function allowList(call: IoctlCall): IovaRange[] | undefined {
  const value = field(call, 'in', 'allowed_iovas');
  if (!Array.isArray(value)) return undefined;
  return (value as readonly unknown[]).map((range, index) => {
    const { start, last } = (range ?? {}) as { start?: unknown; last?: unknown };
    if (typeof start !== 'string' || typeof last !== 'string' || !/^0x[0-9a-f]+$/i.test(start) || !/^0x[0-9a-f]+$/i.test(last)) {
      throw new IoasError('invalid-argument', `trace call ${call.n}: ${call.ioctl} in.allowed_iovas[${index}] must be { start, last } in hex`);
    }
    return { start: BigInt(start), last: BigInt(last) };
  });
}

/**
 * Turns a trace into an `ioas sim` scenario, as YAML text: the platform (as {@link replayTrace}
 * chooses it), the kernel interface (`iommufd` when the trace uses IOMMU_IOAS_MAP, else `type1`), and
 * a step per successful mapping call of the trace's first container (one scenario runs one):
 *
 * - `VFIO_IOMMU_MAP_DMA` / `IOMMU_IOAS_MAP` → `map: { iova, size, access }` (the IOVA the kernel used);
 * - `VFIO_IOMMU_UNMAP_DMA` / `IOMMU_IOAS_UNMAP` → `unmap: { iova, size }`;
 * - `IOMMU_IOAS_ALLOW_IOVAS` → a `window` per range it adds to the allow-list (what
 *   `Container.createWindow` asks of iommufd).
 *
 * Everything else is left out with a YAML comment saying why: failed calls (core refuses many bad
 * maps itself, with an error code the trace cannot tell, so a step expecting one would be a guess),
 * unmap-all, calls on another container, allow-lists that shrink.
 *
 * @throws {IoasError} `invalid-argument` for a malformed mapping call or a platform that cannot be
 *   chosen; `unsupported` for the P4080 (the trace codec has no PAMU layouts); `not-found` when the
 *   trace holds no mapping call at all (a scenario needs a step).
 */
export function traceToScenario(trace: ReplayableTrace, options: ToScenarioOptions = {}): string {
  const { platform } = choosePlatform(trace.header, options.platform);
  if (platform === 'p4080') throw new IoasError('unsupported', 'a scenario from a P4080 trace is not written: the trace codec has no PAMU layouts (geometry and windows), which its steps would need');
  const lines: string[] = [];
  let iommufd = false;
  /** The container the steps follow: type1's container fd, or iommufd's fd and IOAS. */
  let primary: string | undefined;
  let primaryFd: number | undefined;
  let primaryClosed = false;
  let allowed: IovaRange[] = [];
  let steps = 0;
  const left = (call: IoctlCall, why: string) => lines.push(`  # call ${call.n}: ${call.ioctl} ${why}: left out`);
  const step = (call: IoctlCall, text: string) => {
    lines.push(`  - ${text}${' '.repeat(Math.max(1, 56 - text.length))}# call ${call.n}`);
    steps++;
  };

  for (const call of trace.calls) {
    if (call.call === 'close' && call.fd === primaryFd) primaryClosed = true;
    if (call.call !== 'ioctl') continue;
    const name = call.ioctl ?? ioctlName(call.request);
    if (!MAPPING_IOCTLS.has(name)) continue;
    const typed = { ...call, ioctl: name };
    const iommufdCall = name.startsWith('IOMMU_');
    const space = iommufdCall ? `iommufd fd ${call.fd}, IOAS ${String(field(typed, 'in', 'ioas_id'))}` : `container fd ${call.fd}`;
    if (primary === undefined && call.errno === undefined) {
      primary = space;
      primaryFd = call.fd;
      iommufd = iommufdCall;
    }
    if (primary !== undefined && (space !== primary || primaryClosed)) {
      left(typed, `on ${space}, not the first container the trace maps in (a scenario has one)`);
      continue;
    }
    if (call.errno !== undefined) {
      left(typed, `failed with ${call.errno} (core refuses many bad maps itself, with its own error code, so the step's expect cannot be known from the trace)`);
      continue;
    }
    switch (name) {
      case 'VFIO_IOMMU_MAP_DMA': {
        const flags = u32Field(typed, 'in', 'flags');
        const rights = access((flags & TYPE1.READ) !== 0, (flags & TYPE1.WRITE) !== 0);
        if (rights === undefined) left(typed, `maps with flags ${hex(flags)}, neither read nor write, which a scenario cannot say`);
        else step(typed, `map: { iova: ${hex(u64Field(typed, 'in', 'iova'))}, size: ${hex(u64Field(typed, 'in', 'size'))}, access: ${rights} }`);
        break;
      }
      case 'IOMMU_IOAS_MAP': {
        const flags = u32Field(typed, 'in', 'flags');
        const rights = access((flags & IOMMUFD.READABLE) !== 0, (flags & IOMMUFD.WRITEABLE) !== 0);
        // The IOVA the kernel used (its own choice without FIXED_IOVA), so the scenario maps the same place.
        if (rights === undefined) left(typed, `maps with flags ${hex(flags)}, neither readable nor writeable, which a scenario cannot say`);
        else step(typed, `map: { iova: ${hex(u64Field(typed, 'out', 'iova'))}, size: ${hex(u64Field(typed, 'in', 'length'))}, access: ${rights} }`);
        break;
      }
      case 'VFIO_IOMMU_UNMAP_DMA': {
        const flags = u32Field(typed, 'in', 'flags');
        if ((flags & TYPE1.UNMAP_ALL) !== 0) left(typed, 'unmaps everything (VFIO_DMA_UNMAP_FLAG_ALL), which a scenario step cannot say');
        else if (flags !== 0) left(typed, `unmaps with flags ${hex(flags)} (dirty bitmap, vaddr), which a scenario cannot say`);
        else step(typed, `unmap: { iova: ${hex(u64Field(typed, 'in', 'iova'))}, size: ${hex(u64Field(typed, 'in', 'size'))} }`);
        break;
      }
      case 'IOMMU_IOAS_UNMAP': {
        const iova = u64Field(typed, 'in', 'iova');
        const length = u64Field(typed, 'in', 'length');
        if (iova === 0n && length === U64_MAX) left(typed, 'unmaps everything (iova 0, length 2^64-1), which a scenario step cannot say');
        else step(typed, `unmap: { iova: ${hex(iova)}, size: ${hex(length)} }`);
        break;
      }
      case 'IOMMU_IOAS_ALLOW_IOVAS': {
        const ranges = allowList(typed);
        if (ranges === undefined) {
          left(typed, 'has an allow-list the recording could not read');
          break;
        }
        const next = normalizeRanges(ranges);
        const added = subtractRanges(next, allowed);
        const removed = subtractRanges(allowed, next);
        if (next.length === 0 && allowed.length > 0) left(typed, 'empties the allow-list (every IOVA allowed again): a scenario cannot remove windows');
        else if (removed.length > 0) left(typed, `takes ${removed.map((range) => `${hex(range.start)}-${hex(range.last)}`).join(', ')} out of the allow-list: a scenario cannot remove windows`);
        for (const range of added) step(typed, `window: { iova: ${hex(range.start)}, size: ${hex(range.last - range.start + 1n)} }`);
        allowed = next;
        break;
      }
    }
  }
  if (steps === 0) throw new IoasError('not-found', `the trace has no successful map, unmap or allow-list call${lines.length > 0 ? ` (${lines.length} left out)` : ''}: a scenario needs at least one step`);
  const header = trace.header;
  const source = `${header.label === undefined ? 'a trace' : `the trace ${JSON.stringify(commentText(String(header.label)))}`} (recorded on ${commentText(String(header.syscalls))}, kernel ${commentText(String(header.kernel))}, ${commentText(String(header.arch))})`;
  return [
    `# Written by ioas replay --to-scenario from ${source}.`,
    '# Each successful map, unmap and allow-list call of its first container is a step; failed calls',
    '# and what a scenario cannot say are left out, each with a comment. Run: ioas sim FILE',
    `platform: ${platform}`,
    `interface: ${iommufd ? 'iommufd' : 'type1'}`,
    'steps:',
    ...lines,
    '',
  ].join('\n');
}
