import { describe, expect, it } from 'vitest';
import { IoasError } from './errors.js';
import { formatWindowPlan, parseSize, parseSizeAt, planWindows } from './plan-windows.js';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

describe('planWindows', () => {
  it('reproduces the seed example exactly: 256 MiB on 64 MiB hugepages, 3 MSI banks', () => {
    const plan = planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 });
    expect(plan.aperture).toEqual({ start: 0n, size: 512n * MiB });
    // 16 windows of 32 MiB would also give 512 MiB: the 8 windows of 64 MiB win.
    expect(plan.windowSize).toBe(64n * MiB);
    expect(plan.windowCount).toBe(8);
    expect(plan.windows).toEqual([
      { index: 0, iova: 0x00000000n, size: 64n * MiB, kind: 'dma', memory: 0 },
      { index: 1, iova: 0x04000000n, size: 64n * MiB, kind: 'dma', memory: 0 },
      { index: 2, iova: 0x08000000n, size: 64n * MiB, kind: 'dma', memory: 0 },
      { index: 3, iova: 0x0c000000n, size: 64n * MiB, kind: 'dma', memory: 0 },
      { index: 4, iova: 0x10000000n, size: 64n * MiB, kind: 'msi', msiBank: 0 },
      { index: 5, iova: 0x14000000n, size: 64n * MiB, kind: 'msi', msiBank: 1 },
      { index: 6, iova: 0x18000000n, size: 64n * MiB, kind: 'msi', msiBank: 2 },
      { index: 7, iova: 0x1c000000n, size: 64n * MiB, kind: 'disabled' },
    ]);
    expect(formatWindowPlan(plan)).toBe(
      [
        'Total aperture: 512 MiB at 0x00000000, 8 windows of 64 MiB',
        '',
        'window  iova        kind',
        '0       0x00000000  guest RAM, 64 MiB',
        '1       0x04000000  guest RAM, 64 MiB',
        '2       0x08000000  guest RAM, 64 MiB',
        '3       0x0C000000  guest RAM, 64 MiB',
        '4       0x10000000  MSI bank 0',
        '5       0x14000000  MSI bank 1',
        '6       0x18000000  MSI bank 2',
        '7       —           disabled',
      ].join('\n'),
    );
  });

  it('prefers a smaller aperture over fewer windows', () => {
    // 240 MiB on 16 MiB pages + 3 banks: 16 MiB windows need 512 MiB; 4 MiB windows fit in 256 MiB.
    const plan = planWindows({ memory: [{ iova: 0n, size: 240n * MiB, pageSize: 16n * MiB }], msiBanks: 3 });
    expect(plan.aperture.size).toBe(256n * MiB);
    expect(plan.windowSize).toBe(4n * MiB);
    expect(plan.windowCount).toBe(64);
    expect(plan.windows.filter((window) => window.kind === 'msi').map((window) => window.iova)).toEqual([240n * MiB, 244n * MiB, 248n * MiB]);
  });

  it('aligns the aperture to its size for memory high in the address space', () => {
    const plan = planWindows({ memory: [{ iova: 4n * GiB, size: 1n * GiB, pageSize: 1n * GiB }], msiBanks: 3 });
    expect(plan.aperture).toEqual({ start: 4n * GiB, size: 2n * GiB });
    expect(plan.aperture.start % plan.aperture.size).toBe(0n);
    expect(plan.windowSize).toBe(256n * MiB);
    expect(plan.windowCount).toBe(8);
  });

  it('plans several segments with holes, MSI windows above the highest', () => {
    const plan = planWindows({
      memory: [
        { iova: 0n, size: 128n * MiB, pageSize: 64n * MiB },
        { iova: 256n * MiB, size: 64n * MiB, pageSize: 64n * MiB },
      ],
      msiBanks: 2,
    });
    expect(plan.windowSize).toBe(64n * MiB);
    const kinds = plan.windows.map((window) => window.kind);
    expect(kinds).toEqual(['dma', 'dma', 'disabled', 'disabled', 'dma', 'msi', 'msi', 'disabled']);
    expect(plan.windows[4]!.memory).toBe(1);
  });

  it('plans 256 windows at the limit and refuses 512 with what to change', () => {
    const plan = planWindows({ memory: [{ iova: 0n, size: 253n * 4n * MiB, pageSize: 4n * MiB }], msiBanks: 3 });
    expect(plan.windowCount).toBe(256);
    expect(() => planWindows({ memory: [{ iova: 0n, size: 254n * 4n * MiB, pageSize: 4n * MiB }], msiBanks: 3 })).toThrow(
      /needs at least 512 windows of 0x400000 bytes but at most 256 are allowed; back the memory with larger pages/,
    );
  });

  it('refuses overlapping segments and memory that no window size divides', () => {
    const overlapping = () =>
      planWindows({
        memory: [
          { iova: 0n, size: 128n * MiB, pageSize: 64n * MiB },
          { iova: 64n * MiB, size: 64n * MiB, pageSize: 64n * MiB },
        ],
        msiBanks: 0,
      });
    expect(overlapping).toThrow(/segments 0 .* and 1 .* overlap/);
    const misaligned = () => planWindows({ memory: [{ iova: 0x800n, size: 64n * MiB, pageSize: 64n * MiB }], msiBanks: 0 });
    expect(misaligned).toThrow(expect.objectContaining({ code: 'plan-impossible' }));
    expect(misaligned).toThrow(/no window size between 0x1000 and 0x4000000 divides/);
  });

  it('validates its input with typed errors', () => {
    const bad = (spec: unknown) => () => planWindows(spec as never);
    expect(bad({ memory: [], msiBanks: 3 })).toThrow(/at least one memory segment/);
    expect(bad({ memory: [{ iova: 0n, size: MiB, pageSize: 3n * MiB }], msiBanks: 0 })).toThrow(/power of two/);
    expect(bad({ memory: [{ iova: 0n, size: MiB, pageSize: MiB }], msiBanks: -1 })).toThrow(IoasError);
    try {
      bad({ memory: [{ iova: 0n, size: 0n, pageSize: MiB }], msiBanks: 0 })();
    } catch (error) {
      expect(IoasError.isInstance(error) && error.code).toBe('invalid-argument');
    }
  });

  it('accepts plain numbers for sizes', () => {
    const plan = planWindows({ memory: [{ iova: 0, size: 0x10000000, pageSize: 0x4000000 }], msiBanks: 3 });
    expect(plan.windowCount).toBe(8);
  });
});

describe('parseSize', () => {
  it('reads decimal, hex and binary-unit sizes', () => {
    expect(['4096', '0x1000', '4K', '4k', '4KiB', '4KB', ' 256M ', '1G', '1g', '2T'].map((text) => parseSize(text))).toEqual([
      4096n,
      4096n,
      4096n,
      4096n,
      4096n,
      4096n,
      256n << 20n,
      1n << 30n,
      1n << 30n,
      2n << 40n,
    ]);
    expect(parseSize(0x10000000)).toBe(0x10000000n);
    expect(parseSize(15n << 60n)).toBe(15n << 60n);
  });

  it('refuses what is not a size, with the forms it accepts', () => {
    for (const bad of ['', 'M', '1.5G', '-1', '12Q', '0x', '4iB', '16E', 2 ** 60, -1]) {
      expect(() => parseSize(bad), String(bad)).toThrow(/is not a size: write 4096, 0x1000, 64K/);
    }
  });
});

describe('parseSizeAt', () => {
  it('reads SIZE and SIZE@IOVA', () => {
    expect(parseSizeAt('256M@0')).toEqual({ size: 256n << 20n, iova: 0n });
    expect(parseSizeAt('1G@0x100000000')).toEqual({ size: 1n << 30n, iova: 1n << 32n });
    expect(parseSizeAt('64K')).toEqual({ size: 64n << 10n, iova: 0n });
    expect(() => parseSizeAt('1M@2@3')).toThrow(/SIZE@IOVA/);
    expect(() => parseSizeAt('1M@x')).toThrow(/is not a size/);
  });
});
