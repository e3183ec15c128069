import { rangeSize } from '@ioas/core';
import { freeIova, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `map` group: map and unmap, with the stats and the mapping record in step, at a chosen IOVA,
 * across holes, and read-only.
 */
export const mapGroup: GroupDeclaration = ({ runner: { it, expect }, target, enabled }) => {
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
};
