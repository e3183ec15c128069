import { IoasError, planWindows, type Container, type IoasErrorCode } from '@ioas/core';
import type { ConformanceExpect, ConformanceGroup, ConformanceRunner, ConformanceTarget } from './types.js';

/** What every group is declared with: the runner, the target, and which groups are switched on. */
export interface GroupContext {
  /** The runner's `describe`, `it` and `expect`. */
  readonly runner: ConformanceRunner;
  /** The platform under test. */
  readonly target: ConformanceTarget;
  /** False for the groups the options skip. */
  readonly enabled: (group: ConformanceGroup) => boolean;
}

/** Declares the tests of one group (inside the `describe` block the index opens for it). */
export type GroupDeclaration = (context: GroupContext) => void;

/** One mebibyte. */
export const MiB = 1n << 20n;

/** Sets up a windowed container (a 512 MiB aperture of 8 windows of 64 MiB) so that it can map. */
export function prepare(container: Container): { unit: bigint; pageSize: bigint } {
  const geometry = container.geometry();
  if (container.capabilities.model !== 'windowed') {
    const sizes = geometry.ioPageSizes;
    return { unit: sizes & -sizes, pageSize: 0x1000n };
  }
  const plan = planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 });
  container.setGeometry({ aperture: plan.aperture, windowCount: plan.windowCount });
  return { unit: plan.windowSize, pageSize: plan.windowSize };
}

/** Runs `run` and returns the IoasError it throws (failing the test when it does not throw one). */
export function caught(run: () => unknown): IoasError {
  try {
    run();
  } catch (error) {
    if (IoasError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected an IoasError, but the call succeeded');
}

/** Returns an `expectCode(run, code)` that checks `run` throws an IoasError with `code`, and returns it. */
export function codeExpecter(expect: ConformanceExpect): (run: () => unknown, code: IoasErrorCode) => IoasError {
  return (run, code) => {
    const error = caught(run);
    expect(error.code, error.message).toBe(code);
    return error;
  };
}

/** A free, usable IOVA range of `size` bytes, aligned to `size` when possible. */
export function freeIova(container: Container, size: bigint): bigint {
  const [range] = container.allocate({ size, align: size, contiguous: true });
  container.release(range!);
  return range!.start;
}
