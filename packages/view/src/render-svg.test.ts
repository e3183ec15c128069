import type { ContainerSnapshot } from '@ioas/core';
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { snapshotArbitrary } from './__fixtures__/arbitrary.js';
import { elements, markupProblems, unescapeXml } from './__fixtures__/markup.js';
import { exampleSnapshot, manyMappingsSnapshot, type ExamplePlatform } from './__fixtures__/snapshots.js';
import { REGION_KINDS } from './kinds.js';
import { layoutIovaMap } from './layout.js';
import { renderIovaMap } from './render.js';

const PLATFORMS: ExamplePlatform[] = ['arm-smmuv3', 'p4080', 'x86-vtd'];
const snapshots = {} as Record<ExamplePlatform, ContainerSnapshot>;

beforeAll(async () => {
  for (const platform of PLATFORMS) snapshots[platform] = await exampleSnapshot(platform);
});

describe('the markup checker the SVG tests rely on', () => {
  test('it catches what it is there to catch', () => {
    expect(markupProblems('<svg><g></svg>')).not.toEqual([]);
    expect(markupProblems('<svg><text>a & b</text></svg>')).not.toEqual([]);
    expect(markupProblems('<svg><text>a < b</text></svg>')).not.toEqual([]);
    expect(markupProblems('<svg a="1" a="2"></svg>')).not.toEqual([]);
    expect(markupProblems('<svg></svg><svg></svg>')).not.toEqual([]);
    expect(markupProblems('<svg><text x="1">a &amp; b</text><rect/></svg>')).toEqual([]);
  });
});

describe('svg', () => {
  test.each(PLATFORMS)('%s: a well-formed, self-contained SVG', (platform) => {
    const svg = renderIovaMap(snapshots[platform], { format: 'svg' });
    expect(markupProblems(svg)).toEqual([]);
    const [root] = elements(svg, 'svg');
    expect(root!.attributes).toMatchObject({ xmlns: 'http://www.w3.org/2000/svg', role: 'img' });
    expect(root!.attributes['viewBox']).toBe(`0 0 ${root!.attributes['width']} ${root!.attributes['height']}`);
    expect(Number(root!.attributes['width'])).toBeGreaterThan(400);
    // No scripts, no event handlers, nothing fetched: the only URL is the SVG namespace.
    expect(svg).not.toMatch(/<script|\son[a-z]+=|javascript:|@import|<image|<foreignObject/i);
    expect(svg.match(/https?:\/\/[^"]*/g)).toEqual(['http://www.w3.org/2000/svg']);
    expect(svg.match(/url\(([^)]*)\)/g)?.every((reference) => /^url\(#ioas-map-(hatch|cross)\)$/.test(reference)) ?? true).toBe(true);
  });

  test.each(PLATFORMS)('%s: one region group per row, with kind, range, hover title and a label', (platform) => {
    const svg = renderIovaMap(snapshots[platform], { format: 'svg' });
    const layout = layoutIovaMap(snapshots[platform]);
    const groups = elements(svg, 'g').filter((group) => group.attributes['class'] === 'region');
    expect(groups.map((group) => [group.attributes['data-kind'], group.attributes['data-start'], group.attributes['data-last']])).toEqual(
      layout.rows.map((row) => [row.kind, `0x${row.start.toString(16)}`, `0x${row.last.toString(16)}`]),
    );
    const titles = [...svg.matchAll(/<g class="region"[^>]*><title>([^<]*)<\/title>/g)].map((match) => unescapeXml(match[1]!));
    expect(titles).toEqual(layout.rows.map((row) => row.hover));
    const labels = elements(svg, 'text').filter((text) => text.attributes['class'] === 'region-label');
    const gapLabels = elements(svg, 'text').filter((text) => text.attributes['class'] === 'gap-label');
    expect(labels.map((label) => unescapeXml(label.text))).toEqual(layout.rows.filter((row) => !row.gap).map((row) => row.label));
    expect(gapLabels.map((label) => unescapeXml(label.text))).toEqual(layout.rows.filter((row) => row.gap).map((row) => row.label));
    // A break mark per gap, nowhere else.
    expect((svg.match(/<path class="break"/g) ?? []).length).toBe(2 * layout.rows.filter((row) => row.gap).length);
  });

  test('arm-smmuv3: the MSI hole between the two mapped rows, the free gap labelled 255.9 TiB, padded addresses on both edges', () => {
    const svg = renderIovaMap(snapshots['arm-smmuv3'], { format: 'svg' });
    const kinds = elements(svg, 'g')
      .filter((group) => group.attributes['class'] === 'region')
      .map((group) => `${group.attributes['data-kind']}@${group.attributes['data-start']}`);
    expect(kinds).toEqual(['mapped@0x0', 'msi-doorbell@0x8000000', 'mapped@0x8100000', 'free@0x10000000']);
    expect(svg).toContain('<text class="gap-label"');
    expect(svg).toMatch(/class="gap-label"[^>]*>free 255\.9 TiB</);
    const addresses = elements(svg, 'text')
      .filter((text) => text.attributes['class'] === 'address')
      .map((text) => text.text);
    expect(addresses).toEqual(['0x000000000000', '0x000007ffffff', '0x000008000000', '0x0000080fffff', '0x000008100000', '0x00000fffffff', '0x000010000000', '0xffffffffffff']);
    // Start at the row's top edge, last at its bottom edge.
    const ys = elements(svg, 'text')
      .filter((text) => text.attributes['class'] === 'address')
      .map((text) => Number(text.attributes['y']));
    for (let index = 1; index < ys.length; index++) expect(ys[index]).toBeGreaterThan(ys[index - 1]!);
  });

  test('p4080: a window strip for every row, enabled for windows 0-6, cross-hatched for window 7', () => {
    const svg = renderIovaMap(snapshots.p4080, { format: 'svg' });
    const strips = elements(svg, 'rect').filter((rect) => rect.attributes['class'] === 'window');
    expect(strips.map((strip) => strip.attributes['fill'])).toEqual([...Array(7).fill(REGION_KINDS.window.colour), REGION_KINDS['window-disabled'].colour]);
    expect(elements(svg, 'rect').filter((rect) => rect.attributes['class'] === 'window-pattern')).toHaveLength(1);
    // The use part (mapping, doorbell) is drawn over the space part, inset.
    const uses = elements(svg, 'rect').filter((rect) => rect.attributes['class'] === 'use');
    expect(uses.map((use) => use.attributes['fill'])).toEqual([...Array(4).fill(REGION_KINDS.mapped.colour), ...Array(3).fill(REGION_KINDS['msi-doorbell'].colour)]);
  });

  test('the legend lists the kinds drawn, with their colours, and the gap mark when there is a gap', () => {
    const svg = renderIovaMap(snapshots['arm-smmuv3'], { format: 'svg' });
    expect(svg).toContain('<g class="legend"');
    const entries = elements(svg, 'g').filter((group) => group.attributes['class'] === 'legend-entry');
    expect(entries.map((entry) => entry.attributes['data-kind'])).toEqual(['msi-doorbell', 'mapped', 'reserved-msi', 'free', 'gap']);
    expect(svg).toContain(`fill="${REGION_KINDS['reserved-msi'].colour}"`);
  });

  test('user text is escaped: a title and an origin holding markup stay text', () => {
    const snapshot: ContainerSnapshot = {
      ...snapshots['arm-smmuv3'],
      title: `<script>alert("owned")</script> & 'co' ]]> <!--`,
      reserved: snapshots['arm-smmuv3'].reserved.map((region) => ({ ...region, origin: '</title><script>x()</script>&amp;\u0001' })),
    };
    const svg = renderIovaMap(snapshot, { format: 'svg' });
    expect(markupProblems(svg)).toEqual([]);
    expect(svg).not.toContain('<script');
    expect(svg).not.toContain('<!--');
    expect(svg).toContain('&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt; &amp; &#39;co&#39; ]]&gt; &lt;!--');
    expect(svg).toContain('&lt;/title&gt;&lt;script&gt;x()&lt;/script&gt;&amp;amp;');
    expect(svg).not.toContain('\u0001');
  });

  test('the same snapshot gives the same bytes; idPrefix renames every id and selector', () => {
    const first = renderIovaMap(snapshots.p4080, { format: 'svg' });
    expect(renderIovaMap(structuredClone(snapshots.p4080), { format: 'svg' })).toBe(first);
    const other = renderIovaMap(snapshots.p4080, { format: 'svg', idPrefix: 'left-map' });
    expect(other).not.toContain('ioas-map');
    expect(other).toContain('id="left-map"');
    expect(other).toContain('url(#left-map-cross)');
    expect(other.replaceAll('left-map', 'ioas-map')).toBe(first);
  });

  test('a cluster of mappings is drawn as a pale extent with a solid bar as long as the share mapped', () => {
    // 4 KiB mappings 4 KiB apart: every cluster is half mapped.
    const svg = renderIovaMap(manyMappingsSnapshot(2000, 200).snapshot, { format: 'svg', maxRows: 40 });
    expect(markupProblems(svg)).toEqual([]);
    const extents = elements(svg, 'rect').filter((rect) => rect.attributes['class'] === 'use cluster');
    const bars = elements(svg, 'rect').filter((rect) => rect.attributes['class'] === 'use-density');
    expect(extents.length).toBeGreaterThan(5);
    expect(bars).toHaveLength(extents.length);
    bars.forEach((bar, index) => {
      const share = Number(bar.attributes['width']) / Number(extents[index]!.attributes['width']);
      expect(share).toBeGreaterThan(0.45);
      expect(share).toBeLessThan(0.55);
    });
  });

  test('any snapshot renders to well-formed SVG', () => {
    fc.assert(
      fc.property(snapshotArbitrary(), fc.string({ maxLength: 40 }), (snapshot, title) => {
        const svg = renderIovaMap({ ...snapshot, title }, { format: 'svg', maxRows: 24 });
        expect(markupProblems(svg)).toEqual([]);
      }),
      { numRuns: 150 },
    );
  });
});
