import { ERRNO, IoasError, type Container, type Mapping } from '@ioas/core';
import { prepare, type GroupDeclaration } from '../context.js';

/**
 * The `rollback` group: a fault injected at every kernel call of open, mapRegion and MSI mapping
 * leaves nothing behind.
 */
export const rollbackGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
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
};
