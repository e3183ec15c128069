// Hostile arguments to the exported functions besides Container (issue 13: "other exports throw raw
// on wrong types"): each throws an IoasError or returns, never a raw TypeError/RangeError.
import { applyWindowPlan, pamu } from '@ioas/backend-pamu';
import { createSimulator, sim } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { formatRange, formatSize, hex, IoasError, parseSize, parseSizeAt, planWindows, usableRanges } from '@ioas/core';
import { parseReservedRegions } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';

const HOSTILE: readonly unknown[] = [
  undefined,
  null,
  'x',
  42,
  -1n,
  Number.NaN,
  {},
  [],
  { platform: 'nope' },
  { profile: {} },
  { start: 5n, last: 1n },
  [{ start: 'a', last: 1n }],
  Object.create(null) as object,
  Object.freeze({ extra: 1 }),
];

function raws(call: (value: unknown) => unknown): string[] {
  const found: string[] = [];
  for (const value of HOSTILE) {
    try {
      call(value);
    } catch (error) {
      if (!IoasError.isInstance(error)) found.push(`${describeValue(value)}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    }
  }
  return found;
}

function describeValue(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null) return Object.getPrototypeOf(value) === null ? '[null-proto]' : JSON.stringify(value, (_key, inner: unknown) => (typeof inner === 'bigint' ? `${inner}n` : inner));
  return String(value);
}

/** [name, call, a known bug: `fails` (found by this test, kept failing) or `skip` (issue 13's list, being fixed)]. */
const CALLS: [string, (value: unknown) => unknown, ({ fails: string } | { skip: string })?][] = [
  ['sim', (value) => sim(value as never)],
  ['createSimulator', (value) => createSimulator(value as never)],
  ['pamu', (value) => pamu(value as never)],
  // Found by this test (fixed): smmu(null) read `options.syscalls` of null.
  ['smmu', (value) => smmu(value as never)],
  ['applyWindowPlan', (value) => applyWindowPlan(value as never, value as never, value as never)],
  ['formatRange', (value) => formatRange(value as never)],
  ['usableRanges', (value) => usableRanges(value as never, value as never)],
  ['parseSize', (value) => parseSize(value as never)],
  ['parseSizeAt', (value) => parseSizeAt(value as never)],
  // Issue 13's list (fixed): parseReservedRegions(non-string) called text.split.
  ['parseReservedRegions', (value) => parseReservedRegions(value as never, value as never)],
  ['planWindows', (value) => planWindows(value as never)],
  ['formatSize', (value) => formatSize(value as never)],
  // Found by this test (fixed): hex(undefined | null | {}) called value.toString.
  ['hex', (value) => hex(value as never)],
];

describe('exports: hostile arguments throw an IoasError or return', () => {
  for (const [name, call, knownBug] of CALLS) {
    const test = knownBug === undefined ? it : 'fails' in knownBug ? it.fails : it.skip;
    const bug = knownBug === undefined ? '' : ` (known bug: ${'fails' in knownBug ? knownBug.fails : knownBug.skip})`;
    test(`${name}${bug}`, () => {
      expect(raws(call)).toEqual([]);
    });
  }
});
