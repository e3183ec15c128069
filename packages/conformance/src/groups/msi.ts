import { rangesOverlap, subtractRanges } from '@ioas/core';
import { prepare, type GroupDeclaration } from '../context.js';

/**
 * The `msi` group: where the MSI doorbells are (mapped by the SDK when the model is explicit), and
 * a device MSI delivered.
 */
export const msiGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
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
};
