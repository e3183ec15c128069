import { rangesOverlap, subtractRanges } from '@ioas/core';
import { codeExpecter, MiB, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `geometry` group: the reported geometry, usable ranges inside the aperture and clear of
 * blocking reserved ranges, and `setGeometry` refused unless declared settable.
 */
export const geometryGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
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
};
