import { codeExpecter, freeIova, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `windows` group: `createWindow` restricting the usable ranges and `removeWindow` restoring
 * them.
 */
export const windowsGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
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
    expectCode(() => container.removeWindow(window), 'in-use');
    container.unmap(mapping);
    container.removeWindow(window);
    expect(container.usable()).toEqual(before);
  });
};
