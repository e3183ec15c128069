import { codeExpecter, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `lifecycle` group: close is idempotent, later calls fail with `closed`, and kernel state is
 * released.
 */
export const lifecycleGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
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
};
