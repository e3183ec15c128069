import { IoasError, type IoasErrorCode } from './errors.js';

/**
 * How a container's pieces report failure: every error names the backend and the operation, and
 * whatever a backend throws that is not an {@link IoasError} becomes `backend-contract`.
 */
export class ContainerErrors {
  constructor(readonly backendName: string) {}

  /** A new error of `code` for `operation`, its message prefixed with the operation. */
  error(code: IoasErrorCode, operation: string, message: string, cause?: unknown): IoasError {
    return new IoasError(code, `${operation}: ${message}`, {
      backend: this.backendName,
      operation,
      ...(cause === undefined ? {} : { cause }),
    });
  }

  /** Runs `call`, turning whatever it throws into an IoasError naming this backend and operation. */
  guard<T>(operation: string, call: () => T): T {
    try {
      return call();
    } catch (error) {
      throw this.wrap(operation, error);
    }
  }

  /**
   * Passes IoasErrors through, the same objects, with the backend and operation filled in where
   * they were missing (see {@link IoasError.inContext}); wraps anything else as `backend-contract`.
   */
  wrap(operation: string, error: unknown): IoasError {
    // An IoasError from another copy of the package may lack inContext: wrap it as before then.
    if (IoasError.isInstance(error)) {
      if (typeof error.inContext === 'function') return error.inContext(this.backendName, operation);
      return new IoasError(error.code, `${operation}: ${error.message}`, { backend: error.backend ?? this.backendName, operation: error.operation ?? operation, cause: error });
    }
    return this.error('backend-contract', operation, `backend '${this.backendName}' threw a non-IoasError: ${messageOf(error)}`, error);
  }

  /** Runs undo steps after `error`; throws `error`, or `rollback-failed` when an undo step fails. */
  rollback(operation: string, error: unknown, undo: readonly (() => void)[]): never {
    for (const step of undo) {
      try {
        step();
      } catch (undoError) {
        throw this.error('rollback-failed', operation, `${operation} failed and undoing it failed too; state may be left behind: ${messageOf(undoError)}`, new AggregateError([error, undoError]));
      }
    }
    throw error;
  }
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
