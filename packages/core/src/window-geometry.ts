/**
 * The geometry rules of a windowed IOMMU (Freescale PAMU), in one place: `Container.setGeometry`,
 * `planWindows` and the PAMU backend all check an aperture and a window count here, so the same
 * input gets the same answer, in the same words, whoever asks.
 *
 * The rules (PAMU through the SDK kernels' VFIO driver; docs/kernel-rules.md#pamu-aperture-geometry and
 * docs/kernel-rules.md#pamu-window-count): the aperture is a power of two of at least {@link PAMU_PAGE_SIZE}, aligned to its size, inside 64
 * bits; the window count is a power of two from 1 to the maximum ({@link PAMU_VFIO_MAX_WINDOWS}
 * through VFIO, less when the hardware says so); no window is smaller than a page.
 */
import { hex } from './format.js';
import { isPowerOfTwo, U64_MAX } from './iova-range.js';
import type { Capabilities } from './types.js';

/** 4 KiB, PAMU_PAGE_SIZE: the smallest PAMU aperture, window and mapping. */
export const PAMU_PAGE_SIZE = 0x1000n;

/** 256: the most windows the SDK's VFIO layer accepts (the hardware may allow fewer: 2^(1+MWCE)). */
export const PAMU_VFIO_MAX_WINDOWS = 256;

/**
 * What a PAMU domain can do, as the PAMU backend and the simulator's PAMU face both declare it:
 * windowed, its windows the hardware's, MSI banks mapped explicitly, window-aligned cuts allowed
 * (the SDK driver trims and splits its records: docs/kernel-rules.md#pamu-unmap-dma), no count
 * limit, a geometry set by the user.
 */
export const PAMU_CAPABILITIES: Capabilities = Object.freeze({
  model: 'windowed',
  windows: 'hardware',
  msi: 'explicit',
  partialUnmap: true,
  mappingBudget: null,
  settableGeometry: true,
});

/** An aperture and window count to check with {@link checkWindowGeometry}. */
export interface WindowGeometryRequest {
  /** First IOVA of the aperture. */
  readonly start: bigint;
  /** Bytes in the aperture. */
  readonly size: bigint;
  /** Windows to cut the aperture into. */
  readonly windowCount: number;
}

/** The limits a {@link WindowGeometryRequest} is checked against. */
export interface WindowGeometryLimits {
  /** Most windows allowed (the hardware's maximum, at most {@link PAMU_VFIO_MAX_WINDOWS}). */
  readonly maxWindows: number;
  /** Smallest aperture and window; default {@link PAMU_PAGE_SIZE}. */
  readonly minWindowSize?: bigint;
}

/** What is wrong with a window geometry: every broken rule, in words, and the error code that fits. */
export interface WindowGeometryProblems {
  /** `misaligned` when the only problem is the aperture's alignment, `invalid-argument` otherwise. */
  readonly code: 'invalid-argument' | 'misaligned';
  /** Each broken rule, in words, in the order the rules are listed above. */
  readonly problems: readonly string[];
  /** The problems joined with `; `: the message every checker gives for this input. */
  readonly message: string;
}

/**
 * Checks an aperture and a window count against the PAMU geometry rules. Returns `undefined` when
 * every rule holds, otherwise every broken rule in words.
 *
 * ```ts
 * checkWindowGeometry({ start: 0n, size: 0x2000n, windowCount: 4 }, { maxWindows: 256 })?.message;
 * // '4 windows of a 0x2000-byte aperture are smaller than 0x1000'
 * ```
 */
export function checkWindowGeometry(request: WindowGeometryRequest, limits: WindowGeometryLimits): WindowGeometryProblems | undefined {
  const { start, size, windowCount: count } = request;
  const minimum = limits.minWindowSize ?? PAMU_PAGE_SIZE;
  const problems: string[] = [];
  let misaligned = false;
  const sizeOk = isPowerOfTwo(size) && size >= minimum;
  if (!sizeOk) problems.push(`aperture size ${hex(size)} must be a power of two of at least ${hex(minimum)}`);
  else if (start % size !== 0n) {
    problems.push(`aperture start ${hex(start)} must be aligned to the aperture size ${hex(size)}`);
    misaligned = true;
  }
  if (start < 0n || (size > 0n && start + size - 1n > U64_MAX)) problems.push(`aperture of ${hex(size)} bytes at ${hex(start)} must lie within 0 to 2^64-1`);
  const countOk = Number.isInteger(count) && count >= 1 && count <= limits.maxWindows && isPowerOfTwo(BigInt(count));
  if (!countOk) problems.push(`window count ${count} must be a power of two from 1 to ${limits.maxWindows}`);
  else if (sizeOk && size / BigInt(count) < minimum) problems.push(`${count} windows of a ${hex(size)}-byte aperture are smaller than ${hex(minimum)}`);
  if (problems.length === 0) return undefined;
  return { code: misaligned && problems.length === 1 ? 'misaligned' : 'invalid-argument', problems, message: problems.join('; ') };
}
