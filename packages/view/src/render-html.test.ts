import type { ContainerSnapshot } from '@ioas/core';
import { beforeAll, describe, expect, test } from 'vitest';
import { elements, markupProblems, unescapeXml } from './__fixtures__/markup.js';
import { exampleSnapshot, manyMappingsSnapshot, type ExamplePlatform } from './__fixtures__/snapshots.js';
import { layoutIovaMap } from './layout.js';
import { renderIovaMap } from './render.js';

const PLATFORMS: ExamplePlatform[] = ['arm-smmuv3', 'p4080', 'x86-vtd'];
const snapshots = {} as Record<ExamplePlatform, ContainerSnapshot>;

beforeAll(async () => {
  for (const platform of PLATFORMS) snapshots[platform] = await exampleSnapshot(platform);
});

describe('html', () => {
  test.each(PLATFORMS)('%s: a complete, well-formed HTML5 document with no script and nothing external', (platform) => {
    const html = renderIovaMap(snapshots[platform], { format: 'html' });
    expect(html.startsWith('<!doctype html>\n<html lang="en">')).toBe(true);
    expect(markupProblems(html, { html: true })).toEqual([]);
    expect(html).toContain('<meta charset="utf-8">');
    expect(html).toContain(`<title>IOVA map: ${snapshots[platform].title}</title>`);
    expect(html).toContain("Content-Security-Policy\" content=\"default-src 'none'");
    expect(html).not.toMatch(/<script|\son[a-z]+=|javascript:|<link|@import|src=/i);
    expect(html.match(/https?:\/\/[^"]*/g)).toEqual(['http://www.w3.org/2000/svg']);
    // The SVG inline, once.
    expect(elements(html, 'svg')).toHaveLength(1);
  });

  test('arm-smmuv3: the summary and one table row per map row, tied to its region', () => {
    const html = renderIovaMap(snapshots['arm-smmuv3'], { format: 'html' });
    const layout = layoutIovaMap(snapshots['arm-smmuv3']);
    const summary = Object.fromEntries([...html.matchAll(/<dt>([^<]*)<\/dt><dd>([^<]*)<\/dd>/g)].map((match) => [match[1], unescapeXml(match[2]!)]));
    expect(summary).toEqual({
      model: 'paged IOMMU',
      aperture: '0x0-0xffffffffffff (256 TiB)',
      'IO page sizes': '4 KiB, 2 MiB, 1 GiB',
      MSI: 'kernel-managed',
      mappings: '2, 255 MiB mapped',
      'budget left': '65533 mappings',
      rows: '4',
    });
    const rows = elements(html, 'tr').filter((row) => row.attributes['id'] !== undefined);
    expect(rows.map((row) => [row.attributes['id'], row.attributes['data-kind']])).toEqual(layout.rows.map((row) => [`ioas-map-row-${row.index}`, row.kind]));
    expect(html).toContain('<td><code>0x000008000000</code></td><td><code>0x0000080fffff</code></td><td class="size" title="1 MiB">1 MiB</td>');
    expect(html).toContain('<strong>MSI doorbell 0 (kernel), reserved msi 1 MiB (sysfs: /sys/kernel/iommu_groups/4/reserved_regions)</strong>');
    // Every region in the SVG has an id the highlight rules point at, and each row has its rules.
    for (const row of layout.rows) {
      expect(html).toContain(`id="ioas-map-region-${row.index}"`);
      expect(html).toContain(`body:has(#ioas-map-row-${row.index}:hover) #ioas-map-region-${row.index} .space`);
    }
  });

  test('p4080: the windows in the summary', () => {
    const html = renderIovaMap(snapshots.p4080, { format: 'html' });
    expect(html).toContain('<dt>windows</dt><dd>8 of 64 MiB (the hardware has up to 256)</dd>');
    expect(html).toContain('<dt>budget left</dt><dd>no mapping limit</dd>');
    expect(html).toContain('window 7 disabled 64 MiB');
  });

  test('a hostile title is text in the page title, the heading and the SVG', () => {
    const html = renderIovaMap({ ...snapshots['x86-vtd'], title: '</title><script>alert(1)</script>&' }, { format: 'html' });
    expect(markupProblems(html, { html: true })).toEqual([]);
    expect(html).not.toContain('<script');
    expect(html.match(/&lt;\/title&gt;&lt;script&gt;alert\(1\)&lt;\/script&gt;&amp;/g)?.length).toBe(4);
  });

  test('a clustered map says so in the summary', () => {
    const html = renderIovaMap(manyMappingsSnapshot(5000, 100).snapshot, { format: 'html', maxRows: 50 });
    expect(markupProblems(html, { html: true })).toEqual([]);
    expect(html).toMatch(/<dt>rows<\/dt><dd>\d+ \(mappings clustered to stay within 50\)<\/dd>/);
  });
});
