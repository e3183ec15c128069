import type { ContainerSnapshot } from '@ioas/core';
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { snapshotArbitrary } from './__fixtures__/arbitrary.js';
import { exampleSnapshot, manyMappingsSnapshot, windowsSnapshot, type ExamplePlatform } from './__fixtures__/snapshots.js';
import { displayWidth } from './escape.js';
import { renderIovaMap } from './render.js';

const PLATFORMS: ExamplePlatform[] = ['arm-smmuv3', 'p4080', 'x86-vtd'];
const snapshots = {} as Record<ExamplePlatform, ContainerSnapshot>;
const ANSI = /\u001b\[[0-9;]*m/g;

beforeAll(async () => {
  for (const platform of PLATFORMS) snapshots[platform] = await exampleSnapshot(platform);
});

/** Lines wider than 80 terminal columns, ANSI colours not counted. */
function wideLines(text: string): string[] {
  return text.split('\n').filter((line) => displayWidth(line.replace(ANSI, '')) > 80);
}

describe('text', () => {
  test.each(PLATFORMS)('%s: every line fits 80 columns, with or without colour', (platform) => {
    expect(wideLines(renderIovaMap(snapshots[platform], { format: 'text' }))).toEqual([]);
    expect(wideLines(renderIovaMap(snapshots[platform], { format: 'text', colour: true }))).toEqual([]);
  });

  test('arm-smmuv3: title, one line per row with start, size, strip and label, then the legend', () => {
    const text = renderIovaMap(snapshots['arm-smmuv3'], { format: 'text' });
    const lines = text.split('\n');
    expect(lines[0]).toBe('IOVA map: arm-smmuv3 (type1) after the scenario');
    expect(lines[1]).toBe('paged IOMMU, aperture 0x0-0xffffffffffff (256 TiB)');
    expect(lines.slice(4, 8)).toEqual([
      '0x000000000000   128 MiB │█████           │ mapped 128 MiB (1 mapping, rw)',
      '0x000008000000     1 MiB │    MMMMM       │ MSI doorbell 0 (kernel), reserved m…',
      '0x000008100000   127 MiB │        ██████  │ mapped 127 MiB (1 mapping, rw)',
      '0x000010000000 255.9 TiB │             ░░░│ free 255.9 TiB',
    ]);
    expect(lines[8]).toBe('legend: M MSI doorbell  █ mapped  ░ free (gap)');
    expect(text.endsWith('\n')).toBe(true);
  });

  test('p4080: windows 0-3 mapped, doorbells in 4-6, window 7 disabled', () => {
    const lines = renderIovaMap(snapshots.p4080, { format: 'text' }).split('\n');
    expect(lines.slice(4, 12).map((line) => line.slice(0, 28))).toEqual([
      '0x00000000 64 MiB │██       ',
      '0x04000000 64 MiB │  ██     ',
      '0x08000000 64 MiB │    ██   ',
      '0x0c000000 64 MiB │      ██ ',
      '0x10000000 64 MiB │        M',
      '0x14000000 64 MiB │         ',
      '0x18000000 64 MiB │         ',
      '0x1c000000 64 MiB │         ',
    ]);
    expect(lines[8]).toContain('│        MM      │ window 4: MSI doorbell 0 (sdk) 64 MiB');
    expect(lines[11]).toContain('│              ××│ window 7 disabled 64 MiB');
  });

  test('long origins, a long wide-character title and a 64-bit aperture still fit, cut with …', () => {
    const snapshot: ContainerSnapshot = {
      ...snapshots['arm-smmuv3'],
      title: '漢字のタイトル'.repeat(20),
      aperture: { start: '0x0', last: '0xffffffffffffffff' },
      usable: [{ start: '0x0', last: '0x7ffffff' }, { start: '0x8100000', last: '0xffffffffffffffff' }],
      reserved: snapshots['arm-smmuv3'].reserved.map((region) => ({ ...region, origin: `/sys/${'very-long-directory/'.repeat(22)}reserved_regions` })),
    };
    const text = renderIovaMap(snapshot, { format: 'text' });
    expect(wideLines(text)).toEqual([]);
    expect(text.split('\n')[0]!.endsWith('…')).toBe(true);
    expect(text).toContain('0x0000000008000000');
  });

  test('a paged container with windows and an allocation, and a million mappings, fit too', async () => {
    expect(wideLines(renderIovaMap(await windowsSnapshot(), { format: 'text' }))).toEqual([]);
    const many = renderIovaMap(manyMappingsSnapshot(20_000, 500).snapshot, { format: 'text', maxRows: 60 });
    expect(wideLines(many)).toEqual([]);
    expect(many).toMatch(/\d+ mappings, [\d.]+ [KM]iB mapped in/);
  });

  test('colour adds ANSI escapes around the strip and nothing else', () => {
    const plain = renderIovaMap(snapshots.p4080, { format: 'text' });
    const coloured = renderIovaMap(snapshots.p4080, { format: 'text', colour: true });
    expect(plain).not.toMatch(ANSI);
    expect(coloured).toContain('\u001b[34m██\u001b[0m');
    expect(coloured).toContain('\u001b[90m××\u001b[0m');
    expect(coloured.replace(ANSI, '')).toBe(plain);
  });

  test('control characters in user text cannot reach the terminal', () => {
    const text = renderIovaMap({ ...snapshots['x86-vtd'], title: 'evil\u001b]0;pwned\u0007\u001b[2J\u202etitle' }, { format: 'text' });
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    expect(text.split('\n')[0]).toBe('IOVA map: evil\ufffd]0;pwned\ufffd\ufffd[2J\ufffdtitle');
  });

  test('any snapshot: every line fits 80 columns', () => {
    fc.assert(
      fc.property(snapshotArbitrary(), fc.string({ maxLength: 200, unit: 'binary' }), fc.boolean(), (snapshot, title, colour) => {
        expect(wideLines(renderIovaMap({ ...snapshot, title }, { format: 'text', colour, maxRows: 30 }))).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
