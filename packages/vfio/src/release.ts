import { ERRNO, IoasError } from '@ioas/core';

/**
 * The errno of anything a system call threw: Node's fs errors carry a negative `errno` and a
 * `code`, a syscall face may carry either; EIO when neither says.
 */
export function errnoOf(error: unknown): number {
  const { code, errno } = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; errno?: unknown };
  if (typeof errno === 'number' && Number.isInteger(errno) && errno !== 0) return Math.abs(errno);
  if (typeof code === 'string') return (ERRNO as Record<string, number>)[code] ?? ERRNO.EIO;
  return ERRNO.EIO;
}

/** Any thrown value as an IoasError (what the steps of open and close throw already is one). */
export function asIoasError(error: unknown, operation: string, backend: string): IoasError {
  if (IoasError.isInstance(error)) return error;
  return IoasError.fromErrno(errnoOf(error), operation, `${backend}: ${operation} failed: ${error instanceof Error ? error.message : String(error)}`, {
    backend,
    cause: error,
  });
}

/**
 * Undoes a failed open: runs `release` (a {@link releaseAll} of what was opened), then throws the
 * open's failure, typed, not a close's: every fd is released even when a close fails.
 */
export function abandon(release: () => void, error: unknown, backend: string): never {
  try {
    release();
  } catch {
    // releaseAll released every fd; the open's failure is the one to report.
  }
  throw asIoasError(error, 'open', backend);
}

/**
 * Runs every release step of a backend's close, even after one fails (each closes one fd, which
 * Linux releases even when close(2) reports an error), then throws what failed: the one error, or
 * an error listing them all (with the first one's code, errno and call) and the errors in `cause`.
 * Backends share it so that a close that meets a fault releases every fd it can, the same way.
 */
export function releaseAll(steps: readonly (() => void)[], what: string, backend: string): void {
  const failures: IoasError[] = [];
  for (const step of steps) {
    try {
      step();
    } catch (error) {
      failures.push(asIoasError(error, 'close', backend));
    }
  }
  if (failures.length === 0) return;
  if (failures.length === 1) throw failures[0]!;
  const first = failures[0]!;
  throw new IoasError(first.code, `${what}: ${failures.length} steps failed (every fd was released): ${failures.map((failure) => failure.message).join('; ')}`, {
    backend,
    operation: 'close',
    ...(first.errno === undefined ? {} : { errno: first.errno }),
    ...(first.ioctl === undefined ? {} : { ioctl: first.ioctl }),
    cause: new AggregateError(failures),
  });
}

/**
 * Releases a VFIO container's files in the kernel's order: the group fds first (closing one takes
 * its group out of the container), then the container; every fd even when a close fails.
 */
export function releaseContainer(groups: readonly { close(): void }[], container: { close(): void }, what: string, backend: string): void {
  releaseAll([...groups.map((group) => () => group.close()), () => container.close()], what, backend);
}
