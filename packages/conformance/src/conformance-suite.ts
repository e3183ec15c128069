import {
  Container,
  ERRNO,
  IoasError,
  planWindows,
  rangeSize,
  rangesOverlap,
  subtractRanges,
  type HostMemory,
  type IoasErrorCode,
  type Mapping,
} from '@ioas/core';
import { describe, expect, it } from 'vitest';

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
}

/** Options of {@link conformanceSuite}. */
export interface ConformanceOptions {
  /** Groups of tests to switch off, by name: `geometry`, `map`, `errors`, `allocate`, `windows`, `msi`, `dma`, `lifecycle`, `rollback`. */
  readonly skip?: readonly string[];
}

const MiB = 1n << 20n;

/** Sets up a windowed container (a 512 MiB aperture of 8 windows of 64 MiB) so that it can map. */
function prepare(container: Container): { unit: bigint; pageSize: bigint } {
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
function caught(run: () => unknown): IoasError {
  try {
    run();
  } catch (error) {
    if (IoasError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected an IoasError, but the call succeeded');
}

function expectCode(run: () => unknown, code: IoasErrorCode): IoasError {
  const error = caught(run);
  expect(error.code, error.message).toBe(code);
  return error;
}

/** A free, usable IOVA range of `size` bytes, aligned to `size` when possible. */
function freeIova(container: Container, size: bigint): bigint {
  const [range] = container.allocate({ size, align: size, contiguous: true });
  container.release(range!);
  return range!.start;
}

/**
 * The behaviour every ioas backend must show, as one vitest suite. Tests that need a capability run
 * only when the backend declares it; tests that need a device, fault injection or kernel-state
 * inspection run only when the target provides them.
 */
export function conformanceSuite(name: string, target: ConformanceTarget, options: ConformanceOptions = {}): void {
  const enabled = (group: string): boolean => !(options.skip ?? []).includes(group);
  const group = (title: string, body: () => void): void => {
    if (enabled(title)) describe(title, body);
    else describe.skip(title, body);
  };

  describe(`ioas conformance: ${name}`, () => {
    group('geometry', () => {
      it('reports a geometry whose usable ranges lie in the aperture and avoid blocking reserved ranges', async () => {
        using container = await target.open();
        prepare(container);
        const geometry = container.geometry();
        expect(geometry.ioPageSizes > 0n).toBe(true);
        const usable = container.usable();
        expect(usable.length).toBeGreaterThan(0);
        expect(subtractRanges(usable, [geometry.aperture])).toEqual([]);
        for (const reserved of container.reserved()) {
          if (reserved.kind === 'direct-relaxable') continue;
          expect(usable.some((range) => rangesOverlap(range, reserved)), `usable overlaps reserved ${reserved.kind}`).toBe(false);
        }
        if (container.capabilities.model === 'windowed') {
          expect(geometry.windows?.count).toBe(8);
          expect(geometry.windows?.size).toBe(64n * MiB);
        }
      });

      it('refuses setGeometry unless the backend declares a settable geometry', async () => {
        using container = await target.open();
        if (container.capabilities.settableGeometry) return;
        expectCode(() => container.setGeometry({ aperture: { start: 0n, size: 1n << 30n }, windowCount: 1 }), 'unsupported');
      });
    });

    group('map', () => {
      it('maps and unmaps, keeping stats and the record in step', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const memory = target.memory(unit * 2n, pageSize);
        const before = container.stats();
        const mapping = container.map({ memory });
        expect(rangeSize(mapping.iova)).toBe(unit * 2n);
        expect(container.findMapping(mapping.iova.start + unit)).toEqual(mapping);
        const during = container.stats();
        expect(during.mappings).toBe(before.mappings + 1);
        expect(during.bytesMapped).toBe(before.bytesMapped + unit * 2n);
        if (before.mappingBudgetLeft !== null) expect(during.mappingBudgetLeft).toBe(before.mappingBudgetLeft - 1);
        expect(container.unmap(mapping)).toBe(unit * 2n);
        expect(container.stats()).toEqual(before);
        // Unmapping nothing is not an error at this level (iommufd's ENOENT never reaches users).
        expect(container.unmap(mapping)).toBe(0n);
      });

      it('maps at a chosen IOVA and unmaps several mappings and the holes between them in one call', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const base = freeIova(container, unit * 4n);
        const first = container.map({ iova: base, memory: target.memory(unit, pageSize) });
        const second = container.map({ iova: base + unit * 2n, memory: target.memory(unit, pageSize) });
        expect(first.iova.start).toBe(base);
        expect(second.iova.start).toBe(base + unit * 2n);
        expect(container.unmap({ iova: base, size: unit * 4n })).toBe(unit * 2n);
        expect(container.mappings()).toEqual([]);
      });

      if (enabled('map')) {
        it('maps read-only mappings', async () => {
          using container = await target.open();
          const { unit, pageSize } = prepare(container);
          const mapping = container.map({ memory: target.memory(unit, pageSize), access: { read: true, write: false } });
          expect(mapping.access).toEqual({ read: true, write: false });
          container.unmap(mapping);
        });
      }
    });

    group('errors', () => {
      it('refuses an overlapping map with `overlap` and changes nothing', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const mapping = container.map({ memory: target.memory(unit, pageSize) });
        const stats = container.stats();
        expectCode(() => container.map({ iova: mapping.iova.start, memory: target.memory(unit, pageSize) }), 'overlap');
        expect(container.stats()).toEqual(stats);
      });

      it('refuses an unmap that cuts a mapping unless the backend can cut', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const mapping = container.map({ memory: target.memory(unit * 2n, pageSize) });
        if (container.capabilities.partialUnmap) {
          expect(container.unmap({ iova: mapping.iova.start, size: unit })).toBe(unit);
          expect(container.stats().bytesMapped).toBe(unit);
        } else {
          expectCode(() => container.unmap({ iova: mapping.iova.start, size: unit }), 'bisect');
          expectCode(() => container.unmap({ iova: mapping.iova.start + unit, size: unit }), 'bisect');
          expect(container.stats().bytesMapped).toBe(unit * 2n);
        }
      });

      it('refuses maps touching a blocking reserved range with `reserved`', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const hole = container.reserved().find((range) => range.kind !== 'direct-relaxable' && range.start >= container.geometry().aperture.start);
        if (hole === undefined) return;
        const start = hole.start - (hole.start % unit);
        const error = expectCode(() => container.map({ iova: start, memory: target.memory(unit, pageSize) }), 'reserved');
        expect(error.message).toContain(`0x${hole.start.toString(16)}`);
      });

      it('refuses maps outside the aperture with `out-of-range` and misaligned ones with `misaligned`', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const { aperture } = container.geometry();
        if (aperture.last + unit < 1n << 64n) {
          expectCode(() => container.map({ iova: aperture.last + 1n, memory: target.memory(unit, pageSize) }), 'out-of-range');
        }
        const iova = freeIova(container, unit * 2n);
        expectCode(() => container.map({ iova: iova + unit / 2n, memory: target.memory(unit, pageSize) }), 'misaligned');
        expectCode(() => container.map({ iova, memory: { address: target.memory(unit * 2n, pageSize).address + unit / 2n, length: unit } }), 'misaligned');
        expect(container.stats().mappings).toBe(0);
      });

      it('refuses the map past the mapping budget with `budget-exhausted`', async () => {
        if (!target.canLimitBudget) return;
        using container = await target.open({ mappingBudget: 8 });
        if (container.capabilities.mappingBudget === null) return;
        const { unit, pageSize } = prepare(container);
        const budget = container.stats().mappingBudgetLeft!;
        expect(budget).toBe(8);
        for (let index = 0; index < budget; index++) container.map({ memory: target.memory(unit, pageSize) });
        expectCode(() => container.map({ memory: target.memory(unit, pageSize) }), 'budget-exhausted');
        expect(container.stats().mappingBudgetLeft).toBe(0);
      });
    });

    group('allocate', () => {
      it('allocates IOVA space in the usable ranges, maps into it, and releases it', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const ranges = container.allocate({ size: unit * 2n, align: unit });
        const total = ranges.reduce((sum, range) => sum + rangeSize(range), 0n);
        expect(total).toBe(unit * 2n);
        for (const range of ranges) expect(subtractRanges([range], container.usable())).toEqual([]);
        const first = ranges[0]!;
        const mapping = container.map({ iova: first.start, memory: target.memory(unit, pageSize) });
        expectCode(() => container.release(first), 'state');
        container.unmap(mapping);
        for (const range of ranges) container.release(range);
        expect(container.stats().allocations).toBe(0);
      });

      it('honours an upper limit and reports `no-space` when nothing fits', async () => {
        using container = await target.open();
        const { unit } = prepare(container);
        const usable = container.usable();
        const lowest = usable[0]!;
        const limit = lowest.start + unit * 2n - 1n;
        const [range] = container.allocate({ size: unit, limit, contiguous: true });
        expect(range!.last <= limit).toBe(true);
        expectCode(() => container.allocate({ size: unit * 4n, limit, contiguous: true }), 'no-space');
      });
    });

    group('windows', () => {
      it('restricts the usable ranges to created windows, and restores them when removed', async () => {
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const before = container.usable();
        const start = freeIova(container, unit * 2n);
        const window = container.createWindow({ start, size: unit * 2n });
        expect(container.usable()).toEqual([window.range]);
        const outside = before.find((range) => range.last - range.start + 1n >= unit && (range.last < start || range.start > window.range.last));
        if (outside !== undefined) {
          const iova = outside.start + ((unit - (outside.start % unit)) % unit);
          if (iova + unit - 1n <= outside.last) expectCode(() => container.map({ iova, memory: target.memory(unit, pageSize) }), 'out-of-range');
        }
        const mapping = container.map({ iova: start, memory: target.memory(unit, pageSize) });
        expectCode(() => container.removeWindow(window), 'state');
        container.unmap(mapping);
        container.removeWindow(window);
        expect(container.usable()).toEqual(before);
      });
    });

    group('msi', () => {
      it('answers where MSI doorbells are, and maps them when the model is explicit', async () => {
        using container = await target.open();
        prepare(container);
        const model = container.capabilities.msi;
        const plan = container.msi.plan();
        expect(plan.model).toBe(model);
        if (model === 'kernel-managed' || model === 'fixed') {
          expect(plan.doorbells.length).toBeGreaterThan(0);
          for (const doorbell of plan.doorbells) {
            expect(container.reserved().some((range) => range.kind === 'msi' && range.start === doorbell.iova.start)).toBe(true);
            expect(container.usable().some((range) => rangesOverlap(range, doorbell.iova))).toBe(false);
          }
        }
        if (model === 'explicit') {
          const usableBefore = container.usable();
          const mapped = container.msi.map(plan);
          expect(mapped.doorbells.length).toBeGreaterThan(0);
          for (const doorbell of mapped.doorbells) {
            expect(doorbell.mappedBy).toBe('sdk');
            expect(subtractRanges([doorbell.iova], usableBefore)).toEqual([]);
            expect(container.usable().some((range) => rangesOverlap(range, doorbell.iova))).toBe(false);
          }
          expect(container.stats().msiDoorbellsMapped).toBe(mapped.doorbells.length);
          container.msi.unmap();
          expect(container.usable()).toEqual(usableBefore);
        }
      });

      it('delivers a device MSI', async () => {
        if (target.device === undefined) return;
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        if (container.capabilities.msi === 'explicit') {
          // PAMU translates (MSI windows included) only once a DMA window is mapped; the doorbells
          // then take the lowest free windows above it.
          container.map({ memory: target.memory(unit, pageSize) });
          container.msi.map();
        }
        const device = target.device();
        let delivered = 0;
        device.enableMsi(() => delivered++);
        expect(device.raiseMsi()).toBe(true);
        expect(delivered).toBe(1);
        device.disableMsi();
      });
    });

    group('dma', () => {
      it('lands device DMA in host memory through a mapping, and faults elsewhere leaving memory untouched', async () => {
        if (target.device === undefined) return;
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const memory = target.memory(unit, pageSize);
        const mapping = container.map({ memory });
        const device = target.device();
        const payload = new TextEncoder().encode('hello from the device');
        expect(device.dmaWrite(mapping.iova.start + 0x100n, payload)).toBe(true);
        expect(target.readMemory(memory, 0x100n, payload.length)).toEqual(payload);
        target.writeMemory(memory, 0x800n, payload);
        expect(device.dmaRead(mapping.iova.start + 0x800n, payload.length)).toEqual(payload);
        const faults = device.faultCount();
        const unmapped = freeIova(container, unit);
        expect(device.dmaWrite(unmapped, payload)).toBe(false);
        expect(device.faultCount()).toBe(faults + 1);
        container.unmap(mapping);
        expect(device.dmaWrite(mapping.iova.start + 0x100n, new Uint8Array(payload.length))).toBe(false);
        expect(target.readMemory(memory, 0x100n, payload.length)).toEqual(payload);
      });

      it('faults a device write through a read-only mapping', async () => {
        if (target.device === undefined) return;
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const memory = target.memory(unit, pageSize);
        const mapping = container.map({ memory, access: { read: true, write: false } });
        const device = target.device();
        expect(device.dmaRead(mapping.iova.start, 16)).toBeDefined();
        expect(device.dmaWrite(mapping.iova.start, new Uint8Array([1, 2, 3]))).toBe(false);
        expect(target.readMemory(memory, 0n, 3)).toEqual(new Uint8Array(3));
      });
    });

    group('lifecycle', () => {
      it('closes once, refuses later calls with `closed`, and releases kernel state', async () => {
        const baseline = target.kernelState?.();
        const container = await target.open();
        const { unit, pageSize } = prepare(container);
        container.map({ memory: target.memory(unit, pageSize) });
        container.close();
        container.close();
        expectCode(() => container.map({ memory: target.memory(unit, pageSize) }), 'closed');
        if (baseline !== undefined) expect(target.kernelState!()).toEqual(baseline);
      });
    });

    group('rollback', () => {
      it('leaves no mapping and no open file behind when any step of a multi-step operation fails', async () => {
        const inject = target.injectFault;
        const state = target.kernelState;
        if (inject === undefined || state === undefined) return;
        const baseline = state();
        // Container.open: groups attached, IOMMU set, info read... A bound keeps a backend that
        // fails for another reason from looping forever.
        const maxSteps = 64;
        for (let step = 0; ; step++) {
          expect(step, 'open still fails with no fault left to inject').toBeLessThan(maxSteps);
          inject(ERRNO.EIO, step);
          let container: Container | undefined;
          try {
            container = await target.open();
          } catch (error) {
            expect(IoasError.isInstance(error)).toBe(true);
            expect(state()).toEqual(baseline);
            continue;
          }
          target.clearFaults?.();
          container.close();
          expect(state()).toEqual(baseline);
          break;
        }
        // mapRegion over a reserved hole (several pieces), and explicit MSI doorbell mapping.
        using container = await target.open();
        const { unit, pageSize } = prepare(container);
        const opened = state();
        const usable = container.usable();
        const region =
          usable.length > 1
            ? { start: usable[0]!.last + 1n - unit * 2n, last: usable[1]!.start + unit * 2n - 1n }
            : { start: usable[0]!.start, last: usable[0]!.start + unit * 4n - 1n };
        const length = region.last - region.start + 1n;
        const steps = container.capabilities.msi === 'explicit' ? ['mapRegion', 'msi'] : ['mapRegion'];
        for (const operation of steps) {
          for (let step = 0; ; step++) {
            expect(step, `${operation} still fails with no fault left to inject`).toBeLessThan(maxSteps);
            inject(ERRNO.ENOMEM, step);
            try {
              if (operation === 'mapRegion') {
                const memory = target.memory(length, pageSize);
                container.mapRegion({ iova: region.start, memory });
              } else {
                container.msi.map();
              }
            } catch (error) {
              expect(IoasError.isInstance(error) && error.code === 'kernel').toBe(true);
              expect(container.stats().mappings).toBe(0);
              expect(container.stats().msiDoorbellsMapped).toBe(0);
              expect(state()).toEqual(opened);
              continue;
            }
            target.clearFaults?.();
            break;
          }
          expect(container.stats().mappings + container.stats().msiDoorbellsMapped).toBeGreaterThan(0);
          if (operation === 'mapRegion') {
            for (const mapping of container.mappings() as Mapping[]) container.unmap(mapping);
          } else {
            container.msi.unmap();
          }
        }
      });
    });
  });
}
