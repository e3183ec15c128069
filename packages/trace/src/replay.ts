/**
 * Replaying a trace on the simulator: every recorded call is made again, in order, on a fresh
 * simulated machine's syscall face, and each answer is compared with the one the recording got.
 * The first call where they part is the divergence: either the simulator models that kernel
 * behaviour wrongly, or the recorded machine was not the preset (`ioas replay` prints which call,
 * which field, what each side said).
 *
 * What a replay translates rather than compares: file descriptors (a recorded fd is mapped to the fd
 * the replay got at the same open, eventfd or fd-returning ioctl) and host memory (the recorded
 * region k, an mmap or a program buffer, is re-created and becomes the replay's region k, so that
 * pointers `{ buffer: k, offset }` name the same bytes on both sides).
 *
 * What it cannot compare is listed in {@link ReplayReport.notReplayed} with the reason, never dropped
 * silently: eventfd reads and writes (interrupt counts depend on timing and on device work the
 * trace does not hold), mmaps of device regions (MMIO through a mapped BAR is memory, not a syscall,
 * and the simulator does not model it), the bytes pread and pwrite moved (a trace records no memory
 * contents), and pointers the recording could not name.
 */
import { createSimulator, simSyscalls, type PlatformName, type SimKernel, type Simulator, type SimSyscalls } from '@ioas/backend-sim';
import { errnoName, hex, IoasError, SYSCALL_FLAGS } from '@ioas/core';
import { compareIoctl, decodeIoctl, encodeIoctl, ioctlName, ioctlSpec, type ComparedIoctl, type CompareOptions, type IoctlDecoding, type PointerNames } from './ioctl-codec.js';
import { choosePlatform, kernelOfRelease } from './replay-platform.js';
import type { TraceCall, TraceField, TraceHeader, TracePointer } from './trace-format.js';

/** A trace as {@link replayTrace} reads it: the header and the calls in order (what `readTrace` returns). */
export interface ReplayableTrace {
  /** The first line. */
  readonly header: TraceHeader;
  /** Every call, in order. */
  readonly calls: readonly TraceCall[];
}

/** Options of {@link replayTrace}. */
export interface ReplayOptions {
  /** The simulated platform; default: the one the header's `arch` implies (`x86_64` → `x86-vtd`...). */
  readonly platform?: PlatformName;
  /**
   * A simulator to replay on (a custom preset, fault injection...); default: a fresh one of the
   * platform. The replay opens files in it and leaves them open.
   */
  readonly machine?: Simulator;
}

/** One field on which a replayed call and its recording disagree. */
export interface ReplayDifference {
  /**
   * What differs: `result` (the outcome: a result, or an errno name), an ioctl's `in.<field>`,
   * `out.<field>`, `tailIn`, `tailOut`, or `ioctl` (another request).
   */
  readonly field: string;
  /** What the recording says (the kernel, when the trace was recorded on libc); undefined when absent. */
  readonly recorded: unknown;
  /** What the simulator said; undefined when absent. */
  readonly replayed: unknown;
}

/** The first call whose replay did not give the recorded answer. */
export interface ReplayDivergence {
  /** The call's number in the trace (`n`, from 1). */
  readonly n: number;
  /** The call (`ioctl`, `open`, `mmap`...). */
  readonly call: string;
  /** For an ioctl: its kernel name (`VFIO_IOMMU_MAP_DMA`). */
  readonly ioctl?: string;
  /** The call as people read it: `VFIO_IOMMU_MAP_DMA on fd 6`, `open /dev/vfio/3`. */
  readonly description: string;
  /** Every field that differs, the outcome (`result`) first when it is one of them. */
  readonly differences: readonly ReplayDifference[];
}

/** Calls of one kind that were not replayed, or not compared in full, and why. */
export interface NotReplayed {
  /** The call (`read`, `mmap`, `pread`...). */
  readonly call: string;
  /** Why, for people. */
  readonly reason: string;
  /** How many calls. */
  readonly count: number;
  /** The number of the first of them. */
  readonly first: number;
}

/** What {@link replayTrace} found. */
export interface ReplayReport {
  /** True when every call replayed gave the recorded answer. */
  readonly ok: boolean;
  /** Calls in the trace. */
  readonly calls: number;
  /** Calls replayed: all of them, or up to and including the divergence. */
  readonly replayed: number;
  /** The simulated platform. */
  readonly platform: PlatformName;
  /** The simulator's kernel profile: the recorded kernel's (6.1 or 6.12), else the preset's. */
  readonly kernel: SimKernel;
  /** Why that platform: `option` (named by the caller), `machine` (the caller's simulator), `header` (the simulator the trace was recorded on), `arch` (inferred from the header's architecture). */
  readonly platformSource: 'option' | 'machine' | 'header' | 'arch';
  /** The header's `syscalls`: `libc` when the recording talked to the kernel, `sim` to a simulator. */
  readonly recordedOn: string;
  /** The first call that disagreed, when one did. */
  readonly divergence?: ReplayDivergence;
  /** What was not replayed, or not compared in full, by kind and reason (in order of first appearance). */
  readonly notReplayed: readonly NotReplayed[];
}

/** An fd number no replay ever hands out: what a recorded fd that was never open becomes. */
const CLOSED_FD = 0x3fff_0000;

const REASONS = {
  eventfd: 'eventfd reads and writes carry interrupt counts, which depend on timing and on device work (MMIO through a mapped BAR) the trace does not hold: the fd is checked, the call is not made',
  deviceMmap: 'an mmap of a device region (a BAR): the simulator does not model MMIO through a mapping, so an anonymous mapping of the same length stands in for it, as region the trace names',
  rawMunmap: 'a munmap of an address in no region the trace knows (memory from outside the Syscalls face): the replay has no such memory',
  regionData: 'replayed and its byte count compared; the bytes read or written are not (a trace records no memory contents; writes replay zeros)',
  rawPointer: 'a pointer the recording could not name (in no region it knew) is recorded as a raw address, which means nothing in another process: that field is not compared',
  inFlight: 'the call was in flight when the recording stopped: there is no answer to compare',
} as const;

/** A region of the trace, re-created in the replay. */
interface Region {
  readonly address: bigint;
  readonly length: bigint;
  live: boolean;
  /** A program buffer: kept here so that its address stays valid for the whole replay. */
  readonly bytes?: Uint8Array;
}

/** What a call's outcome was: its result, or the errno name it failed with. */
type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly errno: string };

/** A bad trace: an IoasError naming the call. */
function badTrace(n: number, what: string): IoasError {
  return new IoasError('invalid-argument', `trace call ${n}: ${what}`);
}

/**
 * The simulator threw from a call that answers with -errno (a model gap, such as an mmap length the
 * kernel rounds up and the model refuses): reported as that call's divergence, not as a bad trace.
 */
class SimulatorThrew extends Error {
  constructor(readonly thrown: unknown) {
    super(thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown));
  }
}

/** The calls of a syscall face that answer -errno rather than throw, each made to throw {@link SimulatorThrew} instead of anything else. */
function guarded(syscalls: SimSyscalls): SimSyscalls {
  const face = Object.create(syscalls) as Record<string, unknown>;
  for (const name of ['open', 'close', 'ioctl', 'mmap', 'munmap', 'pread', 'pwrite', 'eventfd', 'read', 'write'] as const) {
    const call = syscalls[name] as (...args: unknown[]) => unknown;
    face[name] = (...args: unknown[]) => {
      try {
        return call.apply(syscalls, args);
      } catch (error) {
        throw new SimulatorThrew(error);
      }
    };
  }
  return face as unknown as SimSyscalls;
}

/** The errno name of a file helper's throw (`code`), or `THROWN` as the recorder writes it. */
function thrownErrno(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code !== '' ? code : 'THROWN';
}

/** The answer as it is shown: a value, or an errno name. */
function shownOutcome(outcome: Outcome): unknown {
  return outcome.ok ? outcome.value : outcome.errno;
}

/** A copy without the keys whose value is undefined (the trace types are exact-optional). */
function defined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, item]) => item !== undefined)) as T;
}

function isPointer(value: unknown): value is TracePointer {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && 'buffer' in value;
}

/** The hex text of a 64-bit trace value, as a bigint; a bad trace when it is not one. */
function u64(n: number, text: unknown, what: string): bigint {
  if (typeof text !== 'string' || !/^0x[0-9a-f]+$/i.test(text)) throw badTrace(n, `${what} must be a hex string such as "0x1000", not ${JSON.stringify(text)}`);
  return BigInt(text);
}

function count(n: number, value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw badTrace(n, `${what} must be a non-negative integer, not ${JSON.stringify(value)}`);
  return value;
}

function text(n: number, value: unknown, what: string): string {
  if (typeof value !== 'string') throw badTrace(n, `${what} must be a string, not ${JSON.stringify(value)}`);
  return value;
}

/**
 * Every difference between a recorded ioctl and its replay. {@link compareIoctl} gives the first;
 * removing that field from both sides and asking again gives the next, so that the codec stays the
 * one judge of what "the same" means (fds through the map, pointers by region, raw addresses never).
 */
function ioctlDifferences(recorded: ComparedIoctl, replayed: ComparedIoctl, options: CompareOptions): ReplayDifference[] {
  let left: Record<string, unknown> = { ...recorded };
  let right: Record<string, unknown> = { ...replayed };
  const found: ReplayDifference[] = [];
  const without = (side: Record<string, unknown>, field: string): Record<string, unknown> => {
    const dot = field.indexOf('.');
    if (dot < 0) {
      const { [field]: _gone, ...rest } = side;
      void _gone;
      return rest;
    }
    const group = field.slice(0, dot);
    const { [field.slice(dot + 1)]: _gone, ...rest } = (side[group] ?? {}) as Record<string, unknown>;
    void _gone;
    return { ...side, [group]: rest };
  };
  // Each round removes one field from both sides, so the loop ends; the bound is a guard only.
  for (let round = 0; round < 1024; round++) {
    const difference = compareIoctl(left as ComparedIoctl, right as ComparedIoctl, options);
    if (difference === undefined) break;
    found.push({ field: difference.field, recorded: difference.recorded, replayed: difference.replayed });
    if (difference.field === 'ioctl') break;
    left = without(left, difference.field);
    right = without(right, difference.field);
  }
  // `errno` and `result` are one answer seen twice: show it once, as the outcome.
  const outcome = found.findIndex((difference) => difference.field === 'errno' || difference.field === 'result');
  if (outcome < 0) return found;
  const merged: ReplayDifference = { field: 'result', recorded: recorded.errno ?? recorded.result, replayed: replayed.errno ?? replayed.result };
  return [merged, ...found.filter((difference) => difference.field !== 'errno' && difference.field !== 'result')];
}

/** True when an ioctl line holds a pointer field recorded as a raw address. */
function hasRawPointer(call: Extract<TraceCall, { call: 'ioctl' }>): boolean {
  const spec = ioctlSpec(call.request);
  if (spec === undefined) return false;
  return spec.fields.some((field) => (field.kind === 'pointer' || field.kind === 'iova-ranges') && [call.in?.[field.name], call.out?.[field.name]].some((value) => typeof value === 'string'));
}

/** One replay: the machine, its process, and the maps from the recording's fds and regions to its own. */
class Replay {
  /** Recorded fd → the replay's fd. */
  private readonly fds = new Map<number, number>();
  /** Replay fds that are eventfds. */
  private readonly eventfds = new Set<number>();
  /** Replay fds of VFIO containers (`/dev/vfio/vfio`). */
  private readonly containers = new Set<number>();
  /** Recorded fds used while not open (the recording got EBADF): compared as {@link CLOSED_FD}. */
  private readonly stale = new Set<number>();
  /** Recorded region number → the replay's copy. */
  private readonly regions = new Map<number, Region>();
  private readonly skipped = new Map<string, { call: string; reason: string; count: number; first: number }>();
  private readonly little: boolean;
  private readonly pointerNames: PointerNames;
  private readonly compareOptions: CompareOptions;

  private readonly syscalls: SimSyscalls;

  constructor(
    private readonly machine: Simulator,
    syscalls: SimSyscalls,
  ) {
    this.syscalls = guarded(syscalls);
    // The simulator's struct byte order (big-endian on the P4080): the recorded values are decoded,
    // so they are encoded again in the order of the machine that receives them.
    this.little = machine.platform.name !== 'p4080';
    this.pointerNames = {
      name: (address) => {
        for (const [number, region] of this.regions) {
          if (region.live && address >= region.address && address < region.address + region.length) return { buffer: number, offset: hex(address - region.address) };
        }
        return undefined;
      },
      read: (address, length) => {
        try {
          return this.syscalls.memory(address, length);
        } catch {
          return undefined;
        }
      },
    };
    this.compareOptions = { fd: (recorded) => this.fds.get(recorded) ?? (this.stale.has(recorded) ? CLOSED_FD : undefined) };
  }

  notReplayed(): NotReplayed[] {
    return [...this.skipped.values()];
  }

  private skip(call: TraceCall, reason: string): void {
    const key = `${call.call}\u0000${reason}`;
    const entry = this.skipped.get(key);
    if (entry === undefined) this.skipped.set(key, { call: call.call, reason, count: 1, first: call.n });
    else entry.count++;
  }

  /** The replay's fd for a recorded one; `failed` is the recorded errno, which allows an fd that was never open. */
  private fd(n: number, recorded: unknown, failed: string | undefined, badFdAllowed: boolean): number {
    if (typeof recorded !== 'number' || !Number.isSafeInteger(recorded)) throw badTrace(n, `fd must be an integer, not ${JSON.stringify(recorded)}`);
    // A negative fd (mmap's -1, a bad fd passed on purpose) is not a descriptor: passed as it is.
    if (recorded < 0) return recorded;
    const fd = this.fds.get(recorded);
    if (fd !== undefined) return fd;
    // The program used an fd that was not open and the kernel said so: the replay passes one that is
    // not open either, and compares the answer.
    if (failed !== undefined && (badFdAllowed || failed === 'EBADF')) {
      this.stale.add(recorded);
      return CLOSED_FD;
    }
    throw badTrace(n, `fd ${recorded} was never opened (no open, eventfd or fd-returning ioctl before this call gave it)`);
  }

  private pointer(n: number, pointer: TracePointer): bigint {
    if (!Number.isSafeInteger(pointer.buffer)) throw badTrace(n, `a pointer's buffer must be a region number, not ${JSON.stringify(pointer.buffer)}`);
    const region = this.regions.get(pointer.buffer);
    if (region === undefined) throw badTrace(n, `a pointer into region ${pointer.buffer}, which no mmap or announced buffer before this call created`);
    if (!region.live) throw badTrace(n, `a pointer into region ${pointer.buffer}, which an earlier munmap retired`);
    return region.address + u64(n, pointer.offset, 'a pointer offset');
  }

  private addRegion(n: number, number: unknown, region: Region): void {
    if (typeof number !== 'number' || !Number.isSafeInteger(number) || number < 1) throw badTrace(n, `a region number must be a positive integer, not ${JSON.stringify(number)}`);
    if (this.regions.get(number)?.live === true) throw badTrace(n, `region ${number} is created twice`);
    this.regions.set(number, region);
  }

  /**
   * Replays one call; returns the differences from the recording (empty when they agree).
   * Throws an `invalid-argument` IoasError for a call that cannot be replayed as written.
   */
  run(call: TraceCall): ReplayDifference[] {
    const n = call.n;
    const failed = call.errno;
    if (failed !== undefined && typeof failed !== 'string') throw badTrace(n, `errno must be a name such as "EINVAL", not ${JSON.stringify(failed)}`);
    const sys = this.syscalls;
    /** The outcome of a call that answers a number or -errno. */
    const status = (value: number | bigint): Outcome => (value < 0 ? { ok: false, errno: errnoName(Number(-value)) } : { ok: true, value });
    /** The outcome of a file helper, which throws on failure. */
    const attempt = (action: () => unknown): Outcome => {
      try {
        return { ok: true, value: action() };
      } catch (error) {
        return { ok: false, errno: thrownErrno(error) };
      }
    };
    const recordedOutcome = (value: unknown): Outcome => (failed !== undefined ? { ok: false, errno: failed } : { ok: true, value });
    /** Compares outcomes; `same` judges two successful values (default: equal as JSON). */
    const compare = (recorded: Outcome, replayed: Outcome, same: (a: unknown, b: unknown) => boolean = (a, b) => JSON.stringify(a) === JSON.stringify(b)): ReplayDifference[] => {
      const agree = recorded.ok && replayed.ok ? same(recorded.value, replayed.value) : !recorded.ok && !replayed.ok && recorded.errno === replayed.errno;
      return agree ? [] : [{ field: 'result', recorded: shownOutcome(recorded), replayed: shownOutcome(replayed) }];
    };

    switch (call.call) {
      case 'open': {
        const result = sys.open(text(n, call.path, 'path'), count(n, call.flags, 'flags'));
        return this.newFd(call, result, false);
      }
      case 'close': {
        const fd = this.fd(n, call.fd, failed, false);
        const result = sys.close(fd);
        // Linux frees the descriptor even when close reports an error: the recorded fd is gone either way.
        this.fds.delete(call.fd);
        this.eventfds.delete(fd);
        this.containers.delete(fd);
        return compare(recordedOutcome(0), status(result));
      }
      case 'eventfd':
        return this.newFd(call, sys.eventfd(count(n, call.initial, 'initial'), count(n, call.flags, 'flags')), true);
      case 'read':
      case 'write': {
        const fd = this.fd(n, call.fd, failed, false);
        if (this.eventfds.has(fd)) {
          this.skip(call, REASONS.eventfd);
          return [];
        }
        const buffer = new Uint8Array(count(n, call.length, 'length'));
        return compare(recordedOutcome(call.result), status(call.call === 'read' ? sys.read(fd, buffer) : sys.write(fd, buffer)));
      }
      case 'pread':
      case 'pwrite': {
        const fd = this.fd(n, call.fd, failed, false);
        const buffer = new Uint8Array(count(n, call.length, 'length'));
        const offset = u64(n, call.offset, 'offset');
        this.skip(call, REASONS.regionData);
        return compare(recordedOutcome(call.result), status(call.call === 'pread' ? sys.pread(fd, buffer, offset) : sys.pwrite(fd, buffer, offset)));
      }
      case 'mmap': {
        const length = u64(n, call.length, 'length');
        const prot = count(n, call.prot, 'prot');
        const flags = count(n, call.flags, 'flags');
        const offset = u64(n, call.offset, 'offset');
        if (failed === undefined && !isPointer(call.result)) throw badTrace(n, 'a successful mmap must have a region pointer as its result');
        const fd = this.fd(n, call.fd, failed, false);
        if (call.fd >= 0 && failed === undefined) {
          this.skip(call, REASONS.deviceMmap);
          const address = sys.mmap(length, prot, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
          if (address < 0n) return [{ field: 'result', recorded: call.result, replayed: errnoName(Number(-address)) }];
          this.addRegion(n, (call.result as TracePointer).buffer, { address, length, live: true });
          return [];
        }
        const address = sys.mmap(length, prot, flags, fd, offset);
        const differences = compare(recordedOutcome(call.result), address < 0n ? status(address) : { ok: true, value: call.result });
        if (differences.length === 0 && address >= 0n) this.addRegion(n, (call.result as TracePointer).buffer, { address, length, live: true });
        return differences.map((difference) => (address >= 0n ? { ...difference, replayed: 'an address' } : difference));
      }
      case 'munmap': {
        const length = u64(n, call.length, 'length');
        if (!isPointer(call.address)) {
          u64(n, call.address, 'address');
          this.skip(call, REASONS.rawMunmap);
          return [];
        }
        const address = this.pointer(n, call.address);
        const differences = compare(recordedOutcome(0), status(sys.munmap(address, length)));
        const region = this.regions.get(call.address.buffer)!;
        // A region unmapped whole is retired, as the recorder retires it: its number is not used again.
        if (differences.length === 0 && failed === undefined && address === region.address && length >= region.length) region.live = false;
        return differences;
      }
      case 'readFile':
        return compare(recordedOutcome(call.result), attempt(() => sys.readFile(text(n, call.path, 'path'))));
      case 'readLink':
        return compare(recordedOutcome(call.result), attempt(() => sys.readLink(text(n, call.path, 'path'))));
      case 'readDir':
        // Compared as sets: the order of a directory's entries is the file system's business.
        return compare(recordedOutcome(call.result), attempt(() => sys.readDir(text(n, call.path, 'path'))), (a, b) => Array.isArray(a) && Array.isArray(b) && JSON.stringify([...a].sort()) === JSON.stringify([...b].sort()));
      case 'exists':
        return compare(recordedOutcome(call.result), attempt(() => sys.exists(text(n, call.path, 'path'))));
      case 'writeFile':
        return compare(recordedOutcome(undefined), attempt(() => sys.writeFile(text(n, call.path, 'path'), text(n, call.data, 'data'))));
      case 'ioctl':
        return this.ioctl(call);
      default:
        throw badTrace(n, `unknown call ${JSON.stringify((call as { call?: unknown }).call)}`);
    }
  }

  /**
   * A call that makes an fd (open, eventfd): both sides must succeed or fail alike; the numbers are
   * not compared (each process numbers its own), the recorded one is mapped to the replay's.
   */
  private newFd(call: Extract<TraceCall, { call: 'open' | 'eventfd' }>, result: number, eventfd: boolean): ReplayDifference[] {
    const said = (fd: unknown, errno: string | undefined) => errno ?? `fd ${String(fd)}`;
    const recorded = said(call.result, call.errno);
    const replayed = said(result, result < 0 ? errnoName(-result) : undefined);
    if ((call.errno === undefined) !== (result >= 0) || (result < 0 && recorded !== replayed)) return [{ field: 'result', recorded, replayed }];
    if (result >= 0) {
      this.fds.set(count(call.n, call.result, 'result'), result);
      this.stale.delete(call.result!);
      if (eventfd) this.eventfds.add(result);
      if (call.call === 'open' && call.path === '/dev/vfio/vfio') this.containers.add(result);
    }
    return [];
  }

  private ioctl(call: Extract<TraceCall, { call: 'ioctl' }>): ReplayDifference[] {
    const n = call.n;
    if (typeof call.request !== 'number' || !Number.isSafeInteger(call.request)) throw badTrace(n, `request must be a number, not ${JSON.stringify(call.request)}`);
    const fd = this.fd(n, call.fd, call.errno, false);
    for (const announced of call.buffers ?? []) {
      // A program buffer the recording pointed into for the first time: one of the same size, zeroed
      // (the trace records no memory contents), at an address of the simulator's.
      const bytes = new Uint8Array(Number(u64(n, announced.length, 'a buffer length')));
      this.addRegion(n, announced.buffer, { address: this.syscalls.addressOf(bytes), length: BigInt(Math.max(bytes.byteLength, 1)), live: true, bytes });
    }
    // No ioctl that carries an fd in its struct goes to a VFIO container; the PAMU container ioctls
    // share command numbers with device ones (PAMU_MAP_MSI_BANK is 118, as VFIO_DEVICE_BIND_IOMMUFD),
    // and the codec, which decodes by number, takes their bank index for an fd. On a container the
    // "fd" fields are plain numbers: passed and compared as recorded.
    const onContainer = this.containers.has(fd);
    let argument: number | Uint8Array;
    const sideBuffers: bigint[] = [];
    try {
      argument = encodeIoctl(call, {
        littleEndian: this.little,
        pointer: (pointer) => this.pointer(n, pointer),
        // An fd inside a struct that was never open is allowed when the recording got an error for it.
        fd: (recorded) => (onContainer ? recorded : this.fd(n, recorded, call.errno, true)),
        addressOf: (buffer) => {
          const address = this.syscalls.addressOf(buffer);
          sideBuffers.push(address);
          return address;
        },
      }).argument;
    } catch (error) {
      if (IoasError.isInstance(error) && error.message.startsWith('trace call ')) throw error;
      throw badTrace(n, `${call.ioctl ?? ioctlName(call.request)}: ${(error as Error).message}`);
    }
    if (hasRawPointer(call)) this.skip(call, REASONS.rawPointer);
    const decodeOptions = { littleEndian: this.little, pointers: this.pointerNames };
    const going: IoctlDecoding = decodeIoctl(call.request, argument, 'in', decodeOptions);
    const result = this.syscalls.ioctl(fd, call.request, argument);
    const coming = decodeIoctl(call.request, argument, 'out', { ...decodeOptions, before: going });
    // The arrays the encoding placed behind pointers were read by now: the simulator can forget them.
    for (const address of sideBuffers) this.machine.memory.free(address);
    const replayed: ComparedIoctl = defined({
      ioctl: going.ioctl,
      request: call.request,
      value: going.value,
      in: going.in,
      tailIn: going.tailIn,
      out: coming.out,
      tailOut: coming.tailOut,
      result: result >= 0 ? result : undefined,
      errno: result < 0 ? errnoName(-result) : undefined,
    } as ComparedIoctl);
    const differences = ioctlDifferences(call, replayed, onContainer ? { fd: (recorded) => recorded } : this.compareOptions);
    if (differences.length === 0 && result >= 0 && ioctlSpec(call.request)?.returnsFd === true && typeof call.result === 'number') this.fds.set(call.result, result);
    return differences;
  }

  /** True when a call has no answer: the recorder was killed inside it. */
  static inFlight(call: TraceCall): boolean {
    if (call.errno !== undefined) return false;
    switch (call.call) {
      case 'open':
      case 'ioctl':
      case 'mmap':
      case 'pread':
      case 'pwrite':
      case 'eventfd':
      case 'read':
      case 'write':
      case 'readFile':
      case 'readLink':
      case 'readDir':
      case 'exists':
        return (call as { result?: unknown }).result === undefined;
      default:
        return false;
    }
  }

  /** Counts a call that was not made because the recording has no answer for it. */
  skipInFlight(call: TraceCall): void {
    this.skip(call, REASONS.inFlight);
  }
}

/** The call as people read it, for the divergence. */
function describeCall(call: TraceCall): string {
  switch (call.call) {
    case 'ioctl':
      return `${call.ioctl ?? ioctlName(call.request)} on fd ${call.fd}`;
    case 'open':
      return `open ${call.path}`;
    case 'close':
      return `close fd ${call.fd}`;
    case 'mmap':
      return `mmap ${call.length} bytes${call.fd >= 0 ? ` of fd ${call.fd} at ${call.offset}` : ''}`;
    case 'munmap':
      return `munmap ${call.length} bytes at ${isPointer(call.address) ? `region ${call.address.buffer} + ${call.address.offset}` : call.address}`;
    case 'pread':
    case 'pwrite':
      return `${call.call} ${call.length} bytes at ${call.offset} of fd ${call.fd}`;
    case 'read':
    case 'write':
      return `${call.call} ${call.length} bytes of fd ${call.fd}`;
    case 'eventfd':
      return `eventfd(${call.initial}, ${hex(call.flags)})`;
    default:
      return `${call.call} ${call.path}`;
  }
}

/**
 * Replays a trace on a simulated machine and compares every answer with the recorded one; stops at
 * the first call that disagrees.
 *
 * ```ts
 * const report = replayTrace(readTraceFile('run.trace'));
 * if (!report.ok) console.log(report.divergence);
 * ```
 *
 * @throws {IoasError} `invalid-argument` for a trace that cannot be replayed as written, naming the
 *   call (`trace call 12: fd 9 was never opened`): an unknown call, a pointer into a region that does
 *   not exist, an fd never opened, a malformed value; or a platform that cannot be chosen.
 */
export function replayTrace(trace: ReplayableTrace, options: ReplayOptions = {}): ReplayReport {
  if (trace === null || typeof trace !== 'object' || !Array.isArray(trace.calls) || trace.header === null || typeof trace.header !== 'object') {
    throw new IoasError('invalid-argument', 'replayTrace: give a trace { header, calls } as readTrace returns it');
  }
  let platform: PlatformName;
  let source: ReplayReport['platformSource'];
  if (options.machine !== undefined) {
    platform = options.machine.platform.name;
    source = 'machine';
    if (options.platform !== undefined && options.platform !== platform) throw new IoasError('invalid-argument', `replayTrace: platform ${options.platform} and a ${platform} machine were both given`);
  } else {
    const chosen = choosePlatform(trace.header, options.platform);
    platform = chosen.platform;
    source = chosen.source;
  }
  // A kernel's recording replays on that kernel's profile (where 6.1 and 6.12 answer differently).
  const kernel = kernelOfRelease(trace.header.kernel);
  const machine = options.machine ?? createSimulator({ platform, ...(kernel === undefined ? {} : { kernel }) });
  const replay = new Replay(machine, simSyscalls(machine));
  let replayed = 0;
  let divergence: ReplayDivergence | undefined;
  for (const [index, call] of trace.calls.entries()) {
    if (call === null || typeof call !== 'object') throw badTrace(index + 1, 'a call must be an object');
    if (call.n !== index + 1) throw badTrace(index + 1, `the call is numbered ${JSON.stringify(call.n)}: calls are numbered from 1 in order`);
    replayed++;
    if (Replay.inFlight(call)) {
      if (index !== trace.calls.length - 1) throw badTrace(call.n, `the ${call.call} has neither a result nor an errno: only the last call, in flight when the recording stopped, may lack its answer`);
      replay.skipInFlight(call);
      continue;
    }
    let differences: ReplayDifference[];
    try {
      differences = replay.run(call);
    } catch (error) {
      if (!(error instanceof SimulatorThrew)) throw error;
      differences = [{ field: 'result', recorded: call.errno ?? (call as { result?: unknown }).result, replayed: `the simulator threw ${error.message}` }];
    }
    if (differences.length > 0) {
      divergence = defined({ n: call.n, call: call.call, ioctl: call.call === 'ioctl' ? (call.ioctl ?? ioctlName(call.request)) : undefined, description: describeCall(call), differences } as ReplayDivergence);
      break;
    }
  }
  const report = { ok: divergence === undefined, calls: trace.calls.length, replayed, platform, kernel: machine.kernel, platformSource: source, recordedOn: String(trace.header.syscalls), notReplayed: replay.notReplayed() };
  return divergence === undefined ? report : { ...report, divergence };
}

/** A field value as people read it: numbers, hex strings and names as they are; regions as `region k + offset`. */
export function describeTraceValue(value: unknown): string {
  if (value === undefined) return '(nothing)';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (isPointer(value)) return `region ${value.buffer} + ${value.offset}`;
  return JSON.stringify(value as TraceField, (_key, item: unknown) => (typeof item === 'bigint' ? hex(item) : item));
}
