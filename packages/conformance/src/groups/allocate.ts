import { rangeSize, subtractRanges } from '@ioas/core';
import { codeExpecter, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `allocate` group: IOVA allocation inside the usable ranges, its upper limit, and `no-space`.
 */
export const allocateGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
  it('allocates IOVA space in the usable ranges, maps into it, and releases it', async () => {
    using container = await target.open();
    const { unit, pageSize } = prepare(container);
    const ranges = container.allocate({ size: unit * 2n, align: unit });
    const total = ranges.reduce((sum, range) => sum + rangeSize(range), 0n);
    expect(total).toBe(unit * 2n);
    for (const range of ranges) expect(subtractRanges([range], container.usable())).toEqual([]);
    const first = ranges[0]!;
    const mapping = container.map({ iova: first.start, memory: target.memory(unit, pageSize) });
    expectCode(() => container.release(first), 'in-use');
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
};
