import { IoasError, hex, rangeSize, size64, u64, type Container, type HostMemory, type Mapping, type MsiPlan, type WindowPlan } from '@ioas/core';
import { z } from 'zod';

/** What {@link applyWindowPlan} did. */
export interface AppliedWindowPlan {
  /** The DMA mappings, one per run of consecutive windows of one memory segment. */
  readonly mappings: readonly Mapping[];
  /** The MSI banks mapped, each at the start of its planned window. */
  readonly msi: MsiPlan;
}

function planError(code: 'invalid-argument' | 'rollback-failed', message: string, cause?: unknown): IoasError {
  return new IoasError(code, `applyWindowPlan: ${message}`, { operation: 'applyWindowPlan', ...(cause === undefined ? {} : { cause }) });
}

const index = z.number().int().nonnegative();

const planSchema = z.object({
  aperture: z.object({ start: u64, size: size64 }),
  windowSize: size64,
  windowCount: z.number().int().positive(),
  windows: z.array(
    z
      .object({ index, iova: u64, size: size64, kind: z.enum(['dma', 'msi', 'disabled']), memory: index.optional(), msiBank: index.optional() })
      .refine((window) => window.kind !== 'msi' || window.msiBank !== undefined, 'an msi window needs its msiBank'),
  ),
});

/** Host memory: extra keys pass (what `allocateDmaMemory()` returns fits as it is); the copy holds bigints only. */
const memorySchema = z.array(
  z.object({ address: u64, length: size64, contiguousPageSize: size64.optional() }).transform((memory): HostMemory =>
    memory.contiguousPageSize === undefined ? { address: memory.address, length: memory.length } : { address: memory.address, length: memory.length, contiguousPageSize: memory.contiguousPageSize },
  ),
);

function parsed<Schema extends z.ZodType>(schema: Schema, input: unknown, name: string): z.output<Schema> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${[name, ...issue.path.map(String)].join('.')}: ${issue.message}`);
  throw planError('invalid-argument', problems.join('; '), result.error);
}

function isContainer(value: unknown): value is Container {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Record<'capabilities' | 'geometry' | 'setGeometry' | 'map' | 'unmap' | 'msi', unknown>>;
  const capabilities = candidate.capabilities as { model?: unknown } | null | undefined;
  return (
    typeof capabilities === 'object' &&
    capabilities !== null &&
    typeof capabilities.model === 'string' &&
    typeof candidate.geometry === 'function' &&
    typeof candidate.setGeometry === 'function' &&
    typeof candidate.map === 'function' &&
    typeof candidate.unmap === 'function' &&
    typeof candidate.msi === 'object' &&
    candidate.msi !== null
  );
}

/**
 * Applies a {@link WindowPlan} from core's `planWindows()` to an empty windowed container in one
 * call, in the driver's order (docs/kernel-rules.md#pamu-call-order): the geometry and window count, the
 * guest RAM windows (one MAP_DMA per run of consecutive windows of a segment), then the MSI banks
 * at their planned windows. `memory[i]` backs the plan's memory segment `i`, whose size it must
 * have, on pages physically contiguous over at least one window (`contiguousPageSize`).
 *
 * All or nothing: on a failure, the MSI banks and mappings already made are undone in reverse
 * order and the previous geometry, if the container had one, is set again; the error thrown is
 * the one that stopped the plan (or `rollback-failed`, with it as the cause, if undoing failed).
 *
 * @throws {IoasError} `invalid-argument` (a container, plan or memory of the wrong shape, naming the
 *   field; memory that does not fit the plan), any error of
 *   `setGeometry`, `map` or `msi.map`, `rollback-failed`.
 */
export function applyWindowPlan(container: Container, planInput: WindowPlan, memoryInput: readonly HostMemory[]): AppliedWindowPlan {
  if (!isContainer(container)) throw planError('invalid-argument', 'container: must be an open Container from Container.open()');
  // Checked and copied before anything is sent: a wrong type changes nothing.
  const plan = parsed(planSchema, planInput, 'plan');
  const memory = parsed(memorySchema, memoryInput, 'memory');
  if (container.capabilities.model !== 'windowed') throw planError('invalid-argument', `the container's IOMMU is ${container.capabilities.model}, not windowed`);
  const runs: { iova: bigint; memory: HostMemory }[] = [];
  const segmentBase = new Map<number, bigint>();
  const segmentWindows = new Map<number, number>();
  for (const window of plan.windows) {
    if (window.kind !== 'dma' || window.memory === undefined) continue;
    if (!segmentBase.has(window.memory)) segmentBase.set(window.memory, window.iova);
    segmentWindows.set(window.memory, (segmentWindows.get(window.memory) ?? 0) + 1);
  }
  for (const [segment, windows] of segmentWindows) {
    const backing = memory[segment];
    const size = BigInt(windows) * plan.windowSize;
    if (backing === undefined) throw planError('invalid-argument', `the plan maps memory segment ${segment}, but only ${memory.length} memory regions were given`);
    if (backing.length !== size) throw planError('invalid-argument', `memory segment ${segment} is ${hex(size)} bytes in the plan (${windows} windows of ${hex(plan.windowSize)}) but its memory is ${hex(backing.length)} bytes`);
  }
  if (memory.length > segmentWindows.size) throw planError('invalid-argument', `${memory.length} memory regions given for a plan of ${segmentWindows.size} segments`);
  for (const window of plan.windows) {
    if (window.kind !== 'dma' || window.memory === undefined) continue;
    const backing = memory[window.memory]!;
    const offset = window.iova - segmentBase.get(window.memory)!;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.iova + last.memory.length === window.iova && last.memory.address + last.memory.length === backing.address + offset) {
      runs[runs.length - 1] = { iova: last.iova, memory: { ...last.memory, length: last.memory.length + plan.windowSize } };
    } else {
      runs.push({ iova: window.iova, memory: { ...backing, address: backing.address + offset, length: plan.windowSize } });
    }
  }
  const msiPlan: MsiPlan = {
    model: 'explicit',
    doorbells: plan.windows
      .filter((window) => window.kind === 'msi')
      .map((window) => ({ index: window.msiBank!, iova: { start: window.iova, last: window.iova + window.size - 1n }, mappedBy: 'sdk' as const })),
  };

  const before = container.geometry();
  const hadGeometry = before.windows !== undefined && before.windows.size > 0n;
  const undo: (() => void)[] = [];
  try {
    container.setGeometry({ aperture: plan.aperture, windowCount: plan.windowCount });
    if (hadGeometry) {
      const aperture = { start: before.aperture.start, size: rangeSize(before.aperture) };
      const windowCount = before.windows!.count;
      undo.push(() => void container.setGeometry({ aperture, windowCount }));
    }
    const mappings: Mapping[] = [];
    for (const run of runs) {
      const mapping = container.map({ iova: run.iova, memory: run.memory });
      mappings.push(mapping);
      undo.push(() => void container.unmap(mapping));
    }
    const msi = msiPlan.doorbells.length === 0 ? msiPlan : container.msi.map(msiPlan);
    return { mappings, msi };
  } catch (error) {
    const failures: unknown[] = [];
    for (const step of undo.reverse()) {
      try {
        step();
      } catch (undoError) {
        failures.push(undoError);
      }
    }
    if (failures.length > 0) {
      throw planError('rollback-failed', `${(error as Error).message}; undoing failed too: ${failures.map((failure) => (failure as Error).message).join('; ')}`, error);
    }
    throw error;
  }
}
