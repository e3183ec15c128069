import { codeExpecter, freeIova, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `errors` group: every refusal of map and unmap (`overlap`, `bisect`, `reserved`, `out-of-
 * range`, `misaligned`, `budget-exhausted`), each changing nothing.
 */
export const errorsGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
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
};
