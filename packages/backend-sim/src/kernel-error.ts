import { errnoName } from '@ioas/core';

/**
 * A failure the simulated kernel reports with an errno, as an ioctl returning -1 would. The backend
 * face turns it into an IoasError naming the ioctl; the syscall face returns `-errno`.
 */
export class KernelError extends Error {
  /** Always `'KernelError'`. */
  override readonly name = 'KernelError';
  constructor(
    /** The errno the kernel returns. */
    readonly errno: number,
    /** The kernel call that failed. */
    readonly ioctl: string,
    detail: string,
  ) {
    super(`${ioctl}: ${errnoName(errno)} (${errno}): ${detail}`);
  }
}

/**
 * What the real kernel would do with a request that crashes it, such as the PAMU SDK driver's
 * division by a window size of zero (docs/kernel-rules.md#pamu-window-count-divides-first). The simulator records it and
 * throws this instead of answering: a backend must never send such a request.
 */
export class KernelOops extends Error {
  /** Always `'KernelOops'`. */
  override readonly name = 'KernelOops';
}
