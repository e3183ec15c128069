import type { Container, HostMemory, MembersInput } from '@ioas/core';

/** A device the suite can drive: DMA through the IOMMU and MSI. */
export interface ConformanceDevice {
  /** Device writes `bytes` at `iova`; false when the IOMMU faulted. */
  dmaWrite(iova: bigint, bytes: Uint8Array): boolean;
  /** Device reads `length` bytes at `iova`; undefined when the IOMMU faulted. */
  dmaRead(iova: bigint, length: number): Uint8Array | undefined;
  /** Number of IOMMU faults recorded for this device so far. */
  faultCount(): number;
  /** Enables one MSI vector; `onInterrupt` runs when it is delivered. */
  enableMsi(onInterrupt: () => void): void;
  /** The device raises its MSI; returns whether it was delivered. */
  raiseMsi(): boolean;
  /** Disables the MSI vector. */
  disableMsi(): void;
}

/** What the suite needs from the platform under test. */
export interface ConformanceTarget {
  /** Opens a container on a fresh, idle machine (or the real one, cleaned up by the last close). */
  open(options?: { readonly mappingBudget?: number }): Promise<Container>;
  /** Host memory for DMA: `length` bytes backed by pages of `pageSize` (hugepages when above 4 KiB). */
  memory(length: bigint, pageSize?: bigint): HostMemory;
  /** Reads host memory (what a device wrote). */
  readMemory(memory: HostMemory, offset: bigint, length: number): Uint8Array;
  /** Writes host memory (what a device will read). */
  writeMemory(memory: HostMemory, offset: bigint, bytes: Uint8Array): void;
  /** The device of the last opened container, when the target can drive one. */
  device?(): ConformanceDevice;
  /** Makes the kernel call `skip + 1` from now fail with `errno` (any ioctl); for rollback tests. */
  injectFault?(errno: number, skip: number): void;
  /** Removes pending injected faults. */
  clearFaults?(): void;
  /** Kernel-side state for leak checks: live mappings and open files. */
  kernelState?(): {
    /** Mappings the kernel holds. */
    readonly mappings: number;
    /** File descriptors open. */
    readonly openFiles: number;
  };
  /** True when `open({ mappingBudget })` can really lower the budget (type1's dma_entry_limit). */
  readonly canLimitBudget?: boolean;
  /** Hot-plug: other members for the last opened container, on targets that have them. */
  readonly hotPlug?: HotPlugTarget;
}

/** What the `hotPlug` group attaches and detaches, on the machine of the last opened container. */
export interface HotPlugTarget {
  /** The member `open()` put in the container, as {@link Container.detach} takes it. */
  first(): MembersInput;
  /**
   * A second member, ready to attach (bound to vfio-pci): the request, and its device when the
   * target can drive one.
   */
  second(): HotPlugMember;
  /**
   * A member with a blocking reserved region where a guest maps RAM (an RMRR-style direct region),
   * ready to attach: the request, and a range inside that region to map before attaching it. The
   * suite expects only the refusal, before the kernel, with nothing changed.
   */
  conflicting?(): ConflictingMember;
}

/** A member {@link HotPlugTarget.second} gives. */
export interface HotPlugMember {
  /** What to pass to `attach` and `detach`. */
  readonly members: MembersInput;
  /** Its device, when the target can drive one. */
  readonly device?: ConformanceDevice;
}

/** A member {@link HotPlugTarget.conflicting} gives. */
export interface ConflictingMember {
  /** What to pass to `attach`. */
  readonly members: MembersInput;
  /** A range inside its blocking reserved region, to map before attaching it. */
  readonly inside: {
    /** First IOVA. */
    readonly start: bigint;
    /** Bytes (a multiple of the mapping unit). */
    readonly size: bigint;
  };
}

/**
 * The groups of the suite, in the order they run. Each is one `describe` block under the suite's
 * own, titled with its name, and can be switched off with {@link ConformanceOptions.skip}.
 */
export const CONFORMANCE_GROUPS = ['geometry', 'map', 'errors', 'allocate', 'windows', 'msi', 'dma', 'lifecycle', 'rollback', 'hotPlug', 'dirty'] as const;

/**
 * One group of the suite: `geometry` (aperture, usable and reserved ranges, `setGeometry`), `map`
 * (map/unmap and the bookkeeping), `errors` (every refusal of map and unmap), `allocate` (IOVA
 * allocation), `windows` (`createWindow`/`removeWindow`), `msi` (doorbells, and a device MSI),
 * `dma` (device DMA landing and faulting), `lifecycle` (close and dispose), `rollback` (a fault
 * injected at every kernel call of every multi-step operation), `hotPlug` (attach and detach on a
 * live container), `dirty` (dirty-page tracking for live migration).
 */
export type ConformanceGroup = (typeof CONFORMANCE_GROUPS)[number];

/** Options of {@link conformanceSuite}. */
export interface ConformanceOptions {
  /** Groups of tests to switch off: they are reported as skipped. */
  readonly skip?: readonly ConformanceGroup[];
}

/**
 * The assertions the suite makes on one value: the subset of vitest's (and Jest's) matchers it
 * uses. A failed assertion throws.
 */
export interface ConformanceAssertion {
  /** `Object.is` equality. */
  toBe(expected: unknown): void;
  /** Deep equality. */
  toEqual(expected: unknown): void;
  /** The value is a number or bigint greater than `expected`. */
  toBeGreaterThan(expected: number | bigint): void;
  /** The value is a number or bigint less than `expected`. */
  toBeLessThan(expected: number | bigint): void;
  /** The value is not `undefined`. */
  toBeDefined(): void;
  /** The value (a string) contains `expected`. */
  toContain(expected: string): void;
}

/** The runner's `expect`: `message`, when given, is shown on failure (vitest's second argument). */
export type ConformanceExpect = (actual: unknown, message?: string) => ConformanceAssertion;

/** The runner's `describe`, with its `skip` variant (the suite registers skipped groups with it). */
export interface ConformanceDescribe {
  /** Declares a block of tests titled `title`; `body` declares them. */
  (title: string, body: () => void): unknown;
  /** Declares a block whose tests are all reported as skipped. */
  skip(title: string, body: () => void): unknown;
}

/** The runner's `it` (or `test`): declares one test; `body` may return a promise. */
export type ConformanceIt = (title: string, body: () => Promise<void>) => unknown;

/**
 * The test runner's functions the suite declares its tests with, so that the package does not
 * depend on one runner: vitest's module namespace fits as it is (`import * as vitest from
 * 'vitest'`), as does `{ describe, it, expect }` from vitest or Jest's globals.
 */
export interface ConformanceRunner {
  /** Declares a block of tests. */
  readonly describe: ConformanceDescribe;
  /** Declares one test. */
  readonly it: ConformanceIt;
  /** Makes an assertion inside a test. */
  readonly expect: ConformanceExpect;
}
