/**
 * Reading a file the user named, or one under `--sysfs-root`, with a size bound: `/dev/zero`, a
 * symbolic link to it, or a huge file is refused instead of read forever; a FIFO with no writer reads
 * as empty instead of blocking in open(2); a directory is refused with a message that says so.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** The most a scenario file may hold. */
export const SCENARIO_LIMIT = 1 << 20;

/** The most a sysfs or /proc file may hold (a /proc/interrupts of a large machine runs to megabytes). */
export const HOST_FILE_LIMIT = 16 << 20;

/** A read refused for what the file is (too large, a directory): a Node-style error with a code. */
export class InputError extends Error {
  constructor(
    message: string,
    readonly code: 'EFBIG' | 'EISDIR',
    readonly path: string,
  ) {
    super(message);
  }
}

function binarySize(bytes: number): string {
  return bytes >= 1 << 20 ? `${bytes / (1 << 20)} MiB` : `${bytes / 1024} KiB`;
}

/** Sleeps without returning to the event loop (a FIFO whose writer has not written yet). */
function pause(milliseconds: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, milliseconds);
}

/**
 * Reads a whole file as UTF-8, at most `limit` bytes. Throws an {@link InputError} for a directory or
 * a file larger than `limit`, and Node's own error (ENOENT, EACCES...) when it cannot be opened.
 */
export function readBounded(path: string | URL, limit: number): string {
  return readBoundedBytes(path, limit).toString('utf8');
}

/** {@link readBounded}'s bytes, undecoded (a trace journal holds binary records). */
export function readBoundedBytes(path: string | URL, limit: number): Buffer {
  const name = typeof path === 'string' ? path : path.pathname;
  // O_NONBLOCK: open(2) of a FIFO with no writer returns at once instead of waiting for one.
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new InputError(`${name} is a directory, not a file`, 'EISDIR', name);
    const tooLarge = () => new InputError(`${name} is larger than ${binarySize(limit)}: refusing to read it`, 'EFBIG', name);
    if (stat.isFile() && stat.size > limit) throw tooLarge();
    const buffer = Buffer.alloc(Math.min(limit + 1, stat.isFile() && stat.size > 0 ? stat.size + 1 : 64 * 1024));
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      let count: number;
      try {
        count = readSync(fd, buffer, 0, Math.min(buffer.length, limit + 1 - total), null);
      } catch (error) {
        // A FIFO or terminal whose writer has not written yet.
        if ((error as { code?: string }).code === 'EAGAIN') {
          pause(5);
          continue;
        }
        throw error;
      }
      if (count === 0) break;
      chunks.push(Buffer.from(buffer.subarray(0, count)));
      total += count;
      if (total > limit) throw tooLarge();
    }
    return Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}
