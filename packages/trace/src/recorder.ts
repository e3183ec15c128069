/**
 * The recorder: a `Syscalls` that forwards every call to another and writes it to a trace (the
 * format is in trace-format.ts), one JSON line per call, decoded with the ioctl codec.
 *
 * Memory contents are never recorded: pread/pwrite/read/write record their length and offset, not
 * the bytes (a guest's RAM, a device's registers, an eventfd's count), and `memory()` is not
 * recorded at all. What is recorded of memory is its shape: regions (mmaps, program buffers) and
 * pointers into them, and the argument data ioctls carry behind a pointer (`allowed_iovas`).
 *
 * Each call is durable once it returns (see trace-sink.ts); an ioctl's argument is written before
 * the call and its outcome after, so a recorder killed inside a call leaves that call in flight, an
 * unterminated last line. By default the file is a journal while the run lasts (journal.ts): the
 * ioctls of the hot path go in as binary records of the bytes that changed, everything else as the
 * trace's JSON lines, and `stop()` renders it to the trace. With `format: 'lines'` every call is a
 * JSON line as it happens, written straight into the file mapping by generated emitters.
 */
import { readFileSync } from 'node:fs';
import { arch as nodeArch, endianness, machine, release } from 'node:os';
import { errnoName, IoasError, type Syscalls } from '@ioas/core';
import { ioctlEmitter, ioctlName, writeIoctlIn, writeIoctlOut, type IoctlEmitter } from './ioctl-codec.js';
import { hotShape, JOURNAL_FORMAT, putCallThrew, renderJournalFile, slotLine, SLOTS, type HotShape } from './journal.js';
import { bytesOf, putBytes, type LineWriter } from './line-writer.js';
import { RegionNames } from './region-names.js';
import { TRACE_FORMAT, TRACE_VERSION, type TraceHeader } from './trace-format.js';
import { openTraceSink, type TraceSink, type TraceWriterKind } from './trace-sink.js';

/** Options of {@link recordSyscalls}. */
export interface RecordOptions {
  /** The trace file; created, or truncated when it exists. */
  readonly path: string;
  /** What the run is, for whoever reads the trace. */
  readonly label?: string;
  /**
   * The byte order of the recorded face's ioctl structs; default: this host's. The simulator's
   * P4080 (PAMU) platform speaks big-endian: pass `false` when recording it on a little-endian host.
   */
  readonly littleEndian?: boolean;
  /**
   * How lines reach the file: `mmap` (default) writes into a shared file mapping through libc,
   * falling back to `write` (one `writeSync` per line) where libc cannot load.
   */
  readonly writer?: TraceWriterKind;
  /**
   * What the file holds while the run lasts:
   * - `journal` (default): a compact journal, the ioctls of the hot path as binary records, which
   *   `stop()` renders to the JSON Lines trace. A recorder that dies leaves the journal: `readTraceFile`
   *   and `ioas replay` read it as the trace, and `renderJournalFile` turns it into one.
   * - `lines`: the JSON Lines trace itself, a line per call as it happens (readable while it grows,
   *   at about twice the cost per ioctl: see docs/performance.md).
   */
  readonly format?: TraceFileFormat;
}

/** What a recording's file holds while the run lasts: see {@link RecordOptions.format}. */
export type TraceFileFormat = 'journal' | 'lines';

/** A recording `Syscalls`: every call is forwarded and written to the trace. */
export interface RecordingSyscalls extends Syscalls {
  /**
   * Ends the recording: the file is cut to what was written and closed, and a journal is rendered
   * to the trace in its place (a failure to render throws and leaves the journal). Calls after it
   * are forwarded unrecorded. Safe to call twice.
   */
  stop(): void;
  /** Calls recorded so far. */
  readonly calls: number;
  /** The trace file. */
  readonly path: string;
  /** How lines reach the file: `mmap`, or `write` where libc could not load. */
  readonly writer: TraceWriterKind;
  /** What the file holds until `stop()`: see {@link RecordOptions.format}. */
  readonly format: TraceFileFormat;
}

const K = {
  n: bytesOf('{"n":'),
  ioctl: bytesOf(',"call":"ioctl","fd":'),
  result: bytesOf(',"result":'),
  errno: bytesOf(',"errno":'),
  end: bytesOf('}\n'),
  fd: bytesOf(',"fd":'),
  path: bytesOf(',"path":'),
  flags: bytesOf(',"flags":'),
  length: bytesOf(',"length":'),
  offset: bytesOf(',"offset":'),
  prot: bytesOf(',"prot":'),
  address: bytesOf(',"address":'),
  initial: bytesOf(',"initial":'),
  data: bytesOf(',"data":'),
  pointerStart: bytesOf('{"buffer":'),
  pointerZero: bytesOf(',"offset":"0x0"}'),
  trueValue: bytesOf('true'),
  falseValue: bytesOf('false'),
};

const RESULT_ZERO = bytesOf(',"result":0}\n');

function callKey(name: string): Uint8Array {
  return bytesOf(`,"call":"${name}"`);
}

const CALL = {
  open: callKey('open'),
  close: callKey('close'),
  mmap: callKey('mmap'),
  munmap: callKey('munmap'),
  pread: callKey('pread'),
  pwrite: callKey('pwrite'),
  eventfd: callKey('eventfd'),
  read: callKey('read'),
  write: callKey('write'),
  readFile: callKey('readFile'),
  writeFile: callKey('writeFile'),
  readLink: callKey('readLink'),
  readDir: callKey('readDir'),
  exists: callKey('exists'),
};

/** The ioas version, from this package's package.json. */
function ioasVersion(): string {
  try {
    const json = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof json.version === 'string' ? json.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** `os.machine()` (Node 18.9+), or Node's arch name where it is missing. */
function machineName(): string {
  try {
    return machine();
  } catch {
    return nodeArch();
  }
}

/** The errno name a thrown error carries (`error.code`), or `THROWN`. */
function thrownCode(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : 'THROWN';
}

/** The preset of a simulator's face (`SimSyscalls.platform`), for the header; nothing for libc. */
function simulatedPlatform(syscalls: Syscalls): { platform?: string } {
  const platform = (syscalls as { platform?: unknown }).platform;
  return syscalls.name === 'sim' && typeof platform === 'string' ? { platform } : {};
}

/**
 * Wraps `syscalls` so that every call (open, close, ioctl, mmap, munmap, pread, pwrite, eventfd,
 * read, write, readFile, writeFile, readLink, readDir, exists) is forwarded and recorded to
 * `options.path`; `memory` and `addressOf` are forwarded unrecorded (`addressOf` lets the trace
 * name pointers into the program's buffers). Results are returned, and errors thrown, unchanged.
 * Call `stop()` at the end of the run.
 */
export function recordSyscalls(syscalls: Syscalls, options: RecordOptions): RecordingSyscalls {
  const format = options.format ?? 'journal';
  if (format !== 'journal' && format !== 'lines') throw new IoasError('invalid-argument', `recordSyscalls: format is 'journal' or 'lines', not ${JSON.stringify(format)}`);
  const journal = format === 'journal';
  const sink: TraceSink = openTraceSink(options.path, options.writer ?? 'mmap');
  const w: LineWriter = sink.writer;
  const little = options.littleEndian ?? endianness() === 'LE';
  const regions = new RegionNames(syscalls);
  const header: TraceHeader = {
    type: 'header',
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
    kernel: syscalls.name === 'sim' ? 'sim' : release(),
    arch: machineName(),
    ioas: ioasVersion(),
    syscalls: syscalls.name,
    ...(options.label === undefined ? {} : { label: options.label }),
    endian: little ? 'little' : 'big',
    ...simulatedPlatform(syscalls),
  };
  // A journal's header differs in its format alone: rendering puts the trace's back.
  w.json(`${JSON.stringify(journal ? { ...header, format: JOURNAL_FORMAT } : header)}\n`);
  sink.commit();

  let count = 0;
  let recording = true;
  /** `,"ioctl":"NAME","request":N` per request number, encoded once. */
  const ioctlKeys = new Map<number, Uint8Array>();
  const errnoKeys = new Map<number, Uint8Array>();

  const begin = (call: Uint8Array): void => {
    w.bytes(K.n);
    w.uint(++count);
    w.bytes(call);
  };
  const end = (): void => {
    regions.writeAnnounced(w);
    w.bytes(K.end);
    sink.commit();
  };
  const errno = (status: number): void => {
    let key = errnoKeys.get(status);
    if (key === undefined) {
      key = bytesOf(`,"errno":"${errnoName(-status)}"`);
      errnoKeys.set(status, key);
    }
    w.bytes(key);
  };
  /** Ends a line with the result of a call answering a number or -errno. */
  const status = (value: number): number => {
    if (value < 0) errno(value);
    else {
      w.bytes(K.result);
      w.uint(value);
    }
    end();
    return value;
  };
  /** Ends a line whose call threw: the error's code, then the same error rethrown. */
  const threw = (error: unknown): never => {
    w.bytes(K.errno);
    w.string(thrownCode(error));
    end();
    throw error;
  };
  const fdKey = (fd: number): void => {
    w.bytes(K.fd);
    w.int(fd);
  };
  const hexKey = (key: Uint8Array, value: bigint): void => {
    w.bytes(key);
    w.hexBigint(value);
  };
  /** A file helper: path in, result as JSON (or the thrown code) out. */
  const fileCall = <T>(call: Uint8Array, path: string, run: () => T, result: (value: T) => void): T => {
    begin(call);
    w.bytes(K.path);
    w.string(path);
    let value: T;
    try {
      value = run();
    } catch (error) {
      return threw(error);
    }
    result(value);
    end();
    return value;
  };

  /** How a request's struct arguments are recorded fast: a binary record (journal), a generated emitter, or neither (null). */
  interface Fast {
    readonly shape: HotShape | undefined;
    readonly emitter: IoctlEmitter;
  }
  const fasts = new Map<number, Fast | null>();
  let slots = 0;
  let lastRequest = -1;
  let lastFast: Fast | null = null;
  let previousRequest = -1;
  let previousFast: Fast | null = null;
  const fastOf = (request: number): Fast | null => {
    let fast = fasts.get(request);
    if (fast === undefined) {
      const emitter = ioctlEmitter(request, little);
      const shape = journal && emitter !== undefined && slots < SLOTS ? hotShape(request, slots + 1, little) : undefined;
      if (shape !== undefined) {
        slots++;
        w.json(slotLine(shape));
        sink.commit();
      }
      fast = emitter === undefined ? null : { shape, emitter };
      fasts.set(request, fast);
    }
    return fast;
  };
  /** A `write` sink writes at commit; a mapped one holds each byte as it is stored, and needs no call. */
  const commits = sink.kind === 'write';
  /** The journal's hot path: a binary record of what changed; undefined when a pointer needs a JSON line to announce its buffer. */
  const hotIoctl = (shape: HotShape, fd: number, request: number, argument: Uint8Array): number | undefined => {
    // Room for both halves at once: nothing else writes while the call runs.
    w.ensure(shape.firstMax + shape.secondMax);
    const at = shape.start(w.buffer, w.view, w.position, argument, shape.wordsOf(argument), fd, regions);
    if (at < 0) return undefined;
    w.position = at;
    count++;
    let result: number;
    try {
      result = syscalls.ioctl(fd, request, argument);
    } catch (error) {
      w.position = putCallThrew(w.buffer, w.position, thrownCode(error));
      sink.commit();
      throw error;
    }
    w.position = shape.end(w.buffer, w.view, w.position, shape.wordsOf(argument), result);
    if (commits) sink.commit();
    return result;
  };
  /** The hot path: an exact-size struct through its generated emitter, one capacity check per half line. */
  const fastIoctl = (emitter: IoctlEmitter, fd: number, request: number, argument: Uint8Array): number => {
    w.ensure(emitter.startMax);
    w.position = emitter.start(w.buffer, w.view, w.position, argument, ++count, fd, regions);
    let result: number;
    try {
      result = syscalls.ioctl(fd, request, argument);
    } catch (error) {
      return threw(error);
    }
    w.ensure(emitter.endMax + RESULT_ZERO.length);
    const at = emitter.end(w.buffer, w.view, w.position, argument, regions);
    if (result !== 0 || regions.announcing) {
      w.position = at;
      return status(result);
    }
    w.position = putBytes(w.buffer, at, RESULT_ZERO);
    sink.commit();
    return 0;
  };

  const recorder = {
    name: syscalls.name,
    path: options.path,
    writer: sink.kind,
    format,
    get calls() {
      return count;
    },

    open(path: string, flags: number): number {
      if (!recording) return syscalls.open(path, flags);
      begin(CALL.open);
      w.bytes(K.path);
      w.string(path);
      w.bytes(K.flags);
      w.uint(flags);
      try {
        return status(syscalls.open(path, flags));
      } catch (error) {
        return threw(error);
      }
    },

    stop(): void {
      if (!recording) return;
      recording = false;
      sink.close();
      if (journal) renderJournalFile(options.path);
    },

    close(fd: number): number {
      if (!recording) return syscalls.close(fd);
      begin(CALL.close);
      fdKey(fd);
      let result: number;
      try {
        result = syscalls.close(fd);
      } catch (error) {
        return threw(error);
      }
      // The format's close line has no result: only errno on failure.
      if (result < 0) errno(result);
      end();
      return result;
    },

    ioctl(fd: number, request: number, argument: number | Uint8Array): number {
      if (!recording) return syscalls.ioctl(fd, request, argument);
      if (typeof argument !== 'number') {
        // The two requests seen last (a map/unmap loop alternates two), then the cache.
        let fast: Fast | null;
        if (request === lastRequest) fast = lastFast;
        else if (request === previousRequest) fast = previousFast;
        else {
          fast = fastOf(request);
          previousRequest = lastRequest;
          previousFast = lastFast;
          lastRequest = request;
          lastFast = fast;
        }
        if (fast !== null && argument.byteLength === fast.emitter.sizeof) {
          if (fast.shape !== undefined) {
            const result = hotIoctl(fast.shape, fd, request, argument);
            if (result !== undefined) return result;
          }
          return fastIoctl(fast.emitter, fd, request, argument);
        }
      }
      w.bytes(K.n);
      w.uint(++count);
      w.bytes(K.ioctl);
      w.int(fd);
      let key = ioctlKeys.get(request);
      if (key === undefined) {
        key = bytesOf(`,"ioctl":${JSON.stringify(ioctlName(request))},"request":${request >>> 0}`);
        ioctlKeys.set(request, key);
      }
      w.bytes(key);
      const elements = writeIoctlIn(w, request, argument, little, regions);
      let result: number;
      try {
        result = syscalls.ioctl(fd, request, argument);
      } catch (error) {
        return threw(error);
      }
      // Recorded whatever the outcome: the kernel writes some structs when it fails too
      // (IOMMU_IOAS_IOVA_RANGES: num_iovas with EMSGSIZE).
      writeIoctlOut(w, request, argument, little, regions, elements);
      return status(result);
    },

    mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint {
      if (!recording) return syscalls.mmap(length, prot, flags, fd, offset);
      begin(CALL.mmap);
      hexKey(K.length, length);
      w.bytes(K.prot);
      w.uint(prot);
      w.bytes(K.flags);
      w.uint(flags);
      fdKey(fd);
      hexKey(K.offset, offset);
      let address: bigint;
      try {
        address = syscalls.mmap(length, prot, flags, fd, offset);
      } catch (error) {
        return threw(error);
      }
      if (address < 0n) errno(Number(address));
      else {
        w.bytes(K.result);
        w.bytes(K.pointerStart);
        w.uint(regions.addMapping(address, length));
        w.bytes(K.pointerZero);
      }
      end();
      return address;
    },

    munmap(address: bigint, length: bigint): number {
      if (!recording) return syscalls.munmap(address, length);
      begin(CALL.munmap);
      w.bytes(K.address);
      regions.writeAddress(w, address);
      hexKey(K.length, length);
      let result: number;
      try {
        result = syscalls.munmap(address, length);
      } catch (error) {
        return threw(error);
      }
      if (result < 0) errno(result);
      else regions.remove(address, length);
      end();
      return result;
    },

    memory(address: bigint, length: number): Uint8Array {
      return syscalls.memory(address, length);
    },

    addressOf(buffer: Uint8Array): bigint {
      const address = syscalls.addressOf(buffer);
      if (recording) regions.addBuffer(address, buffer);
      return address;
    },

    pread(fd: number, buffer: Uint8Array, offset: bigint): number {
      if (!recording) return syscalls.pread(fd, buffer, offset);
      begin(CALL.pread);
      fdKey(fd);
      w.bytes(K.length);
      w.uint(buffer.byteLength);
      hexKey(K.offset, offset);
      try {
        return status(syscalls.pread(fd, buffer, offset));
      } catch (error) {
        return threw(error);
      }
    },

    pwrite(fd: number, buffer: Uint8Array, offset: bigint): number {
      if (!recording) return syscalls.pwrite(fd, buffer, offset);
      begin(CALL.pwrite);
      fdKey(fd);
      w.bytes(K.length);
      w.uint(buffer.byteLength);
      hexKey(K.offset, offset);
      try {
        return status(syscalls.pwrite(fd, buffer, offset));
      } catch (error) {
        return threw(error);
      }
    },

    eventfd(initialValue: number, flags: number): number {
      if (!recording) return syscalls.eventfd(initialValue, flags);
      begin(CALL.eventfd);
      w.bytes(K.initial);
      w.uint(initialValue);
      w.bytes(K.flags);
      w.uint(flags);
      try {
        return status(syscalls.eventfd(initialValue, flags));
      } catch (error) {
        return threw(error);
      }
    },

    read(fd: number, buffer: Uint8Array): number {
      if (!recording) return syscalls.read(fd, buffer);
      begin(CALL.read);
      fdKey(fd);
      w.bytes(K.length);
      w.uint(buffer.byteLength);
      try {
        return status(syscalls.read(fd, buffer));
      } catch (error) {
        return threw(error);
      }
    },

    write(fd: number, buffer: Uint8Array): number {
      if (!recording) return syscalls.write(fd, buffer);
      begin(CALL.write);
      fdKey(fd);
      w.bytes(K.length);
      w.uint(buffer.byteLength);
      try {
        return status(syscalls.write(fd, buffer));
      } catch (error) {
        return threw(error);
      }
    },

    readFile(path: string): string {
      if (!recording) return syscalls.readFile(path);
      return fileCall(CALL.readFile, path, () => syscalls.readFile(path), (text) => {
        w.bytes(K.result);
        w.string(text);
      });
    },

    writeFile(path: string, data: string): void {
      if (!recording) return syscalls.writeFile(path, data);
      begin(CALL.writeFile);
      w.bytes(K.path);
      w.string(path);
      w.bytes(K.data);
      w.string(data);
      try {
        syscalls.writeFile(path, data);
      } catch (error) {
        threw(error);
      }
      end();
    },

    readLink(path: string): string {
      if (!recording) return syscalls.readLink(path);
      return fileCall(CALL.readLink, path, () => syscalls.readLink(path), (target) => {
        w.bytes(K.result);
        w.string(target);
      });
    },

    readDir(path: string): string[] {
      if (!recording) return syscalls.readDir(path);
      return fileCall(CALL.readDir, path, () => syscalls.readDir(path), (entries) => {
        w.bytes(K.result);
        w.json(JSON.stringify(entries));
      });
    },

    exists(path: string): boolean {
      if (!recording) return syscalls.exists(path);
      return fileCall(CALL.exists, path, () => syscalls.exists(path), (exists) => {
        w.bytes(K.result);
        w.bytes(exists ? K.trueValue : K.falseValue);
      });
    },
  };
  return recorder as RecordingSyscalls;
}
