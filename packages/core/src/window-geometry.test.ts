import { describe, expect, it } from 'vitest';
import { checkWindowGeometry, PAMU_PAGE_SIZE } from './window-geometry.js';

const MiB = 1n << 20n;

describe('checkWindowGeometry', () => {
  it('accepts a power-of-two aperture aligned to its size, cut into a power of two of windows', () => {
    expect(checkWindowGeometry({ start: 0n, size: 512n * MiB, windowCount: 8 }, { maxWindows: 256 })).toBeUndefined();
    expect(checkWindowGeometry({ start: 0n, size: PAMU_PAGE_SIZE, windowCount: 1 }, { maxWindows: 256 })).toBeUndefined();
  });

  it('names every broken rule, with one code', () => {
    expect(checkWindowGeometry({ start: 0n, size: 384n * MiB, windowCount: 8 }, { maxWindows: 256 })).toMatchObject({ code: 'invalid-argument', message: 'aperture size 0x18000000 must be a power of two of at least 0x1000' });
    expect(checkWindowGeometry({ start: 256n * MiB, size: 512n * MiB, windowCount: 8 }, { maxWindows: 256 })).toMatchObject({ code: 'misaligned', message: 'aperture start 0x10000000 must be aligned to the aperture size 0x20000000' });
    expect(checkWindowGeometry({ start: 0n, size: 0x2000n, windowCount: 4 }, { maxWindows: 256 })?.message).toBe('4 windows of a 0x2000-byte aperture are smaller than 0x1000');
    for (const count of [0, 3, 512, 1.5]) expect(checkWindowGeometry({ start: 0n, size: 512n * MiB, windowCount: count }, { maxWindows: 256 })?.message).toBe(`window count ${count} must be a power of two from 1 to 256`);
    const both = checkWindowGeometry({ start: 256n * MiB, size: 512n * MiB, windowCount: 3 }, { maxWindows: 256 });
    expect(both?.code).toBe('invalid-argument');
    expect(both?.problems).toHaveLength(2);
  });
});
