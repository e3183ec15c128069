/**
 * The one way this package reads a snapshot: through core's `parseSnapshot`, so that a malformed
 * one fails the same way everywhere, with the failing operation named first.
 */
import { IoasError, parseSnapshot, type ContainerSnapshot } from '@ioas/core';

/**
 * Validates `value` with core's `parseSnapshot` and returns it typed.
 *
 * @throws {IoasError} `invalid-argument` naming the field, or `unsupported` for another snapshot
 *   version; the message starts with `operation`.
 */
export function readSnapshot(value: unknown, operation: string): ContainerSnapshot {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const what = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    throw new IoasError('invalid-argument', `${operation}: the snapshot must be a ContainerSnapshot object (from container.snapshot() or parsed JSON), not ${what}`, { operation });
  }
  try {
    return parseSnapshot(value);
  } catch (error) {
    if (IoasError.isInstance(error)) throw new IoasError(error.code, `${operation}: ${error.message}`, { operation, cause: error });
    throw error;
  }
}
