import { errnoName } from './errno.js';

const marker = Symbol.for('ioas.error');

/**
 * The closed set of error codes. Each says what kind of thing went wrong, so that callers can branch
 * on `error.code` without parsing messages.
 *
 * - `invalid-argument`: the input failed validation (zod); nothing was sent to the backend.
 * - `unsupported`: the backend's declared capabilities do not include this operation.
 * - `misaligned`: an address or size is not a multiple of the granule the geometry requires.
 * - `out-of-range`: the IOVA range lies (partly) outside the usable ranges.
 * - `reserved`: the IOVA range touches a reserved region (an MSI window, a direct-mapped region...).
 * - `overlap`: the IOVA range overlaps an existing mapping (the kernel's EEXIST).
 * - `bisect`: an unmap would cut a mapping in two, which the backend cannot do.
 * - `not-found`: nothing matches (no such mapping, window or allocation).
 * - `budget-exhausted`: the container's mapping budget is used up (type1's ENOSPC).
 * - `no-space`: the IOVA allocator found no free range that satisfies the request.
 * - `in-use`: something still uses what the operation would change or remove (a mapping in a window
 *   or allocation, doorbells already mapped, a geometry or stash change once DMA is on): unmap,
 *   release or remove it first.
 * - `not-ready`: an earlier step is missing (the windows of a windowed IOMMU are not configured
 *   yet: call `setGeometry()` first).
 * - `not-viable`: an IOMMU group cannot be used for DMA: a member is bound to a driver that owns DMA.
 * - `wrong-device`: the device is not the one the driver was written for.
 * - `timeout`: a device did not finish in time.
 * - `closed`: the container was closed.
 * - `plan-impossible`: a planner cannot satisfy the request; the message says what to change.
 * - `kernel`: a system call failed; `errno` and `ioctl` say which and why (always set).
 * - `inconsistent`: a system call succeeded but its answer contradicts what the SDK knows (an unmap
 *   reporting another size than the record holds, a short read or write of a device region).
 * - `abi-mismatch`: the kernel's answers do not fit the ABI the backend expects (a wrong profile, a
 *   malformed capability chain, a sysfs line that does not parse).
 * - `backend-unavailable`: the backend cannot run on this host (probe failed).
 * - `backend-contract`: a backend broke the SPI contract (a bug in the backend).
 * - `rollback-failed`: a multi-step operation failed and undoing it failed too; state may be left behind.
 */
export type IoasErrorCode =
  | 'invalid-argument'
  | 'unsupported'
  | 'misaligned'
  | 'out-of-range'
  | 'reserved'
  | 'overlap'
  | 'bisect'
  | 'not-found'
  | 'budget-exhausted'
  | 'no-space'
  | 'in-use'
  | 'not-ready'
  | 'not-viable'
  | 'wrong-device'
  | 'timeout'
  | 'closed'
  | 'plan-impossible'
  | 'kernel'
  | 'inconsistent'
  | 'abi-mismatch'
  | 'backend-unavailable'
  | 'backend-contract'
  | 'rollback-failed';

/** Structured fields an {@link IoasError} may carry besides its code and message. */
export interface IoasErrorDetails {
  /** Name of the backend that failed, such as `'smmu'`. */
  backend?: string;
  /** The SDK operation, such as `'map'` or `'setGeometry'`. */
  operation?: string;
  /** The ioctl's kernel name, such as `'VFIO_IOMMU_MAP_DMA'`. */
  ioctl?: string;
  /** The errno number the kernel returned. Its name is in {@link IoasError.errnoName}. */
  errno?: number;
  /** The original error. */
  cause?: unknown;
}

/**
 * The one error class of the SDK. Every failure a user can see is an `IoasError` with a stable
 * {@link IoasErrorCode}. Use {@link IoasError.isInstance} rather than `instanceof`: it also works
 * across realms and duplicated package copies.
 */
export class IoasError extends Error {
  /** @internal marker checked by {@link IoasError.isInstance}. */
  private readonly [marker] = true;
  /** Always `'IoasError'`. */
  override readonly name = 'IoasError';
  /** What kind of thing went wrong: branch on this, not on the message. */
  readonly code: IoasErrorCode;
  /** The backend that failed (`'smmu'`, `'pamu'`, `'sim'`), when known. */
  readonly backend: string | undefined;
  /** The SDK operation (`'map'`, `'setGeometry'`, `'open'`...), when known. */
  readonly operation: string | undefined;
  /** The kernel call that failed (`'VFIO_IOMMU_MAP_DMA'`), for `kernel` errors. */
  readonly ioctl: string | undefined;
  /** The errno the kernel returned, for `kernel` errors; its name is in {@link IoasError.errnoName}. */
  readonly errno: number | undefined;

  constructor(code: IoasErrorCode, message: string, details: IoasErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.backend = details.backend;
    this.operation = details.operation;
    this.ioctl = details.ioctl;
    this.errno = details.errno;
  }

  /** The errno's name (`'EEXIST'`), when the error carries an errno. */
  get errnoName(): string | undefined {
    return this.errno === undefined ? undefined : errnoName(this.errno);
  }

  /** True when `error` is an `IoasError`, from any copy of this package. */
  static isInstance(error: unknown): error is IoasError {
    return typeof error === 'object' && error !== null && (error as Record<symbol, unknown>)[marker] === true;
  }

  /**
   * Fills in the backend and the operation this error was raised without, and starts its message
   * with the operation (`map: ...`), as every error a container throws does; returns the same
   * error, so that its stack and cause stay the ones it was raised with.
   *
   * @internal Used by `Container`; backends pass `backend` and `operation` when they know them.
   */
  inContext(backend: string, operation: string): this {
    const fields = this as { backend: string | undefined; operation: string | undefined };
    fields.backend ??= backend;
    fields.operation ??= operation;
    if (!this.message.startsWith(`${fields.operation}: `)) this.message = `${fields.operation}: ${this.message}`;
    return this;
  }

  /**
   * An error for a failed system call: the message names the ioctl, the errno and what the SDK was
   * doing, so that it reads on its own in a log.
   */
  static fromErrno(errno: number, ioctl: string, what: string, details: Omit<IoasErrorDetails, 'errno' | 'ioctl'> = {}): IoasError {
    return new IoasError('kernel', `${what}: ${ioctl} failed with ${errnoName(errno)} (${errno})`, {
      ...details,
      ioctl,
      errno,
    });
  }
}
