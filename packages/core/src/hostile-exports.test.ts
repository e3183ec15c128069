import { describe, expect, it } from 'vitest';
import { IoasError } from './errors.js';
import { formatRange } from './iova-range.js';
import { formatSize, parseSize, parseSizeAt } from './plan-windows.js';
import { usableRanges } from './types.js';

const HOSTILE: unknown[] = [null, undefined, 5, -1, Number.NaN, 'x', {}, [], [1], { start: 1, last: 2 }, { start: 2n, last: 1n }, { start: -1n, last: 1n }, Object.create(null), 2n ** 64n];

function code(call: () => unknown): string | undefined {
  try {
    call();
    return undefined;
  } catch (error) {
    if (!IoasError.isInstance(error)) throw new Error(`raw ${(error as Error)?.constructor?.name}: ${String(error)}`);
    return error.code;
  }
}

describe('utility exports under hostile arguments', () => {
  it('answer invalid-argument, never a raw TypeError', () => {
    for (const value of HOSTILE) {
      const label = JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? `${item}n` : item)) ?? String(value);
      expect(code(() => formatRange(value as never)), `formatRange(${label})`).toBe('invalid-argument');
      expect(code(() => usableRanges(value as never, [])), `usableRanges(${label}, [])`).toBe(Array.isArray(value) && value.length === 0 ? undefined : 'invalid-argument');
      expect(code(() => usableRanges([{ start: 0n, last: 10n }], value as never)), `usableRanges(ranges, ${label})`).toBe(Array.isArray(value) && value.length === 0 ? undefined : 'invalid-argument');
      if (typeof value !== 'string') expect(code(() => parseSizeAt(value as never)), `parseSizeAt(${label})`).toBe('invalid-argument');
      if (typeof value !== 'bigint' && !(typeof value === 'number' && Number.isSafeInteger(value) && value >= 0)) expect(code(() => parseSize(value as never)), `parseSize(${label})`).toBe('invalid-argument');
      if (typeof value !== 'bigint') expect(code(() => formatSize(value as never)), `formatSize(${label})`).toBe('invalid-argument');
    }
    expect(formatRange({ start: 0n, last: 0xfffn })).toBe('0x0-0xfff');
    expect(parseSizeAt('256M@1G')).toEqual({ size: 256n << 20n, iova: 1n << 30n });
  });
});
