/**
 * Where the recorder's lines go, so that each survives a crash of the recording process the moment
 * its call returns, without a system call per line:
 *
 * - `mmap`: the trace file is sized ahead in chunks (`ftruncate`) and mapped `MAP_SHARED` through
 *   libc; lines are written into the mapping. (Extending it by writing zeros instead gets ext4 to
 *   use large folios, 9x fewer write faults, but the zero writes made the cost bimodal under
 *   dirty-page pressure: 1.98-3.25x against a steady 2.2x; see bench/run.mjs.) The bytes belong to the page cache as soon as they
 *   are stored, so SIGKILL or a segfault loses nothing (a machine crash may: nothing here calls
 *   msync). The window moves forward (a remap) when a line does not fit; `close()` truncates the
 *   file to the bytes written. A file whose recorder died ends in NUL bytes: readers stop there.
 * - `write`: one `writeSync` per line, for hosts where libc cannot be loaded through koffi. Slower
 *   (a system call per line), just as crash-safe.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { libcSyscalls } from '@ioas/vfio';
import { LineWriter } from './line-writer.js';

/** How lines reach the file. */
export type TraceWriterKind = 'mmap' | 'write';

/** Sizing step of the file and the mapping window: 4 MiB (a multiple of every page size, 64 KiB on ppc64 included). */
const CHUNK = 4 << 20;

/** A trace file being written. */
export interface TraceSink {
  /** How lines reach the file. */
  readonly kind: TraceWriterKind;
  /** The writer lines are written with. */
  readonly writer: LineWriter;
  /** Ends a line (after its `\n`): makes it durable against a crash of this process. */
  commit(): void;
  /** Truncates the file to what was written and closes it. */
  close(): void;
}

/** Opens `path` (created or truncated) for a trace: mapped when libc loads and `kind` allows, else written. */
export function openTraceSink(path: string, kind: TraceWriterKind): TraceSink {
  const fd = openSync(path, 'w+');
  if (kind === 'mmap') {
    try {
      return new MappedSink(fd, libcSyscalls());
    } catch {
      // koffi or libc did not load (or mmap failed): one write per line instead.
    }
  }
  return new WriteSink(fd);
}

class MappedSink implements TraceSink {
  readonly kind = 'mmap';
  readonly writer: LineWriter;
  /** File offset of the mapping window. */
  private windowStart = 0;
  private address: bigint;
  private windowLength = CHUNK;
  private fileLength: number;
  private closed = false;

  constructor(
    private readonly fd: number,
    private readonly libc: Syscalls,
  ) {
    this.fileLength = 0;
    this.extend(CHUNK);
    this.address = this.map(0, CHUNK);
    this.writer = new LineWriter(libc.memory(this.address, CHUNK), (writer, need) => this.slide(writer, need));
  }

  private map(offset: number, length: number): bigint {
    const address = this.libc.mmap(BigInt(length), SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED, this.fd, BigInt(offset));
    if (address < 0n) throw new Error(`mmap of the trace file failed: errno ${-address}`);
    return address;
  }

  /** Extends the file (sparse) to `length` bytes. */
  private extend(length: number): void {
    ftruncateSync(this.fd, length);
    this.fileLength = length;
  }

  /** Moves the window so that it starts at or just before the write position and holds `need` more bytes. */
  private slide(writer: LineWriter, need: number): void {
    if (this.closed) throw new Error('the trace file is closed');
    const at = this.windowStart + writer.position;
    const start = Math.floor(at / CHUNK) * CHUNK;
    const length = Math.ceil((at - start + need) / CHUNK) * CHUNK;
    if (start + length > this.fileLength) this.extend(start + length);
    // The bytes written so far are in the page cache: dropping the old window loses none of them.
    this.libc.munmap(this.address, BigInt(this.windowLength));
    this.address = this.map(start, length);
    this.windowStart = start;
    this.windowLength = length;
    writer.reset(this.libc.memory(this.address, length), at - start);
  }

  commit(): void {
    // Nothing to do: the line is in the page cache already.
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const written = this.windowStart + this.writer.position;
    this.libc.munmap(this.address, BigInt(this.windowLength));
    // The writer must never touch the unmapped window again.
    this.writer.reset(new Uint8Array(0), 0);
    ftruncateSync(this.fd, written);
    closeSync(this.fd);
  }
}

class WriteSink implements TraceSink {
  readonly kind = 'write';
  readonly writer: LineWriter;
  private closed = false;

  constructor(private readonly fd: number) {
    this.writer = new LineWriter(new Uint8Array(64 * 1024), (writer, need) => {
      const grown = new Uint8Array(Math.max(2 * writer.buffer.byteLength, writer.position + need));
      grown.set(writer.buffer.subarray(0, writer.position));
      writer.reset(grown, writer.position);
    });
  }

  commit(): void {
    const writer = this.writer;
    let done = 0;
    while (done < writer.position) done += writeSync(this.fd, writer.buffer, done, writer.position - done);
    writer.position = 0;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
