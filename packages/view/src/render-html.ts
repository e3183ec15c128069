/**
 * The map as a complete HTML5 page: a summary, the SVG inline and a table of the rows. No script
 * and nothing loaded from elsewhere (a Content-Security-Policy says so too, in case a dashboard
 * serves the page as is); hovering a table row highlights its region and the other way round, in
 * CSS alone.
 */
import { formatRange } from '@ioas/core';
import { escapeXml } from './escape.js';
import { REGION_KINDS } from './kinds.js';
import type { IovaMapLayout, MapRow } from './layout.js';
import { addressDigits, paddedHex, preciseSize, readableSize } from './numbers.js';
import { renderSvg } from './render-svg.js';

/** Past this many rows the page skips the per-row highlight rules: two CSS rules a row would grow it past use. */
const HIGHLIGHT_ROWS = 2000;

const CSS = `
body{margin:0;padding:24px;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#ffffff}
main{max-width:1100px}
h1{font-size:20px;margin:0 0 12px}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0 0 16px}
dl.summary dt{font-weight:600}
dl.summary dd{margin:0}
figure{margin:0 0 20px;overflow-x:auto}
table.rows{border-collapse:collapse;font-size:13px}
table.rows th,table.rows td{border-bottom:1px solid #dddddd;padding:4px 8px;text-align:left;vertical-align:top}
table.rows td.size{text-align:right;white-space:nowrap}
table.rows code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:nowrap}
table.rows tr:hover{background:#fff3bf}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px;border:1px solid #00000033}
.detail{white-space:pre-line}
`;

function summary(layout: IovaMapLayout): string {
  const facts: [string, string][] = [['model', `${layout.model} IOMMU`], ['aperture', `${formatRange(layout.aperture)} (${preciseSize(layout.aperture.size)})`]];
  if (layout.windowGeometry !== null) {
    const { count, size, maxCount } = layout.windowGeometry;
    facts.push(['windows', size > 0n ? `${count} of ${readableSize(size)} (the hardware has up to ${maxCount})` : `not set yet (up to ${maxCount})`]);
  }
  facts.push(['IO page sizes', layout.ioPageSizes.length === 0 ? 'none' : layout.ioPageSizes.map(readableSize).join(', ')]);
  facts.push(['MSI', layout.msiModel]);
  const { mappings, bytesMapped, left } = layout.budget;
  facts.push(['mappings', `${mappings}, ${preciseSize(bytesMapped)} mapped`]);
  facts.push(['budget left', left === null ? 'no mapping limit' : `${left} mappings`]);
  facts.push(['rows', `${layout.rows.length}${layout.clustered ? ` (mappings clustered to stay within ${layout.maxRows})` : ''}`]);
  return `<dl class="summary">${facts.map(([term, value]) => `<dt>${escapeXml(term)}</dt><dd>${escapeXml(value)}</dd>`).join('')}</dl>`;
}

function tableRow(row: MapRow, digits: number, prefix: string): string {
  const style = REGION_KINDS[row.kind];
  // The hover text's first line is the range, which the start and last columns already show.
  const detail = row.hover.split('\n').slice(1).join('\n');
  return [
    `<tr id="${prefix}-row-${row.index}" data-kind="${row.kind}">`,
    `<td><code>${paddedHex(row.start, digits)}</code></td>`,
    `<td><code>${paddedHex(row.last, digits)}</code></td>`,
    `<td class="size" title="${escapeXml(preciseSize(row.size))}">${escapeXml(readableSize(row.size))}</td>`,
    `<td><span class="swatch" style="background:${style.colour}"></span>${escapeXml(style.words)}${row.gap ? ' (gap)' : ''}</td>`,
    `<td class="detail"><strong>${escapeXml(row.label)}</strong>\n${escapeXml(detail)}</td>`,
    '</tr>',
  ].join('');
}

/** Rules that tie table row i and region i together: hovering either highlights both. */
function highlightRules(layout: IovaMapLayout, prefix: string): string {
  if (layout.rows.length > HIGHLIGHT_ROWS) return '';
  return layout.rows
    .map((row) => {
      const tr = `#${prefix}-row-${row.index}`;
      const region = `#${prefix}-region-${row.index}`;
      return `body:has(${tr}:hover) ${region} .space{stroke:#000000;stroke-width:2}body:has(${region}:hover) ${tr}{background:#fff3bf}`;
    })
    .join('\n');
}

/** The layout as a complete HTML5 document. */
export function renderHtml(layout: IovaMapLayout, prefix: string): string {
  const digits = addressDigits(layout.aperture.last);
  const title = `IOVA map: ${layout.title}`;
  return [
    '<!doctype html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    // No script may run and nothing may load, even if a future change let markup through.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeXml(title)}</title>`,
    `<style>${CSS}${highlightRules(layout, prefix)}</style>`,
    '</head>',
    '<body>',
    '<main>',
    `<h1>${escapeXml(title)}</h1>`,
    summary(layout),
    `<figure>${renderSvg(layout, prefix, true)}</figure>`,
    '<table class="rows">',
    '<thead><tr><th>start</th><th>last</th><th>size</th><th>kind</th><th>detail</th></tr></thead>',
    `<tbody>${layout.rows.map((row) => tableRow(row, digits, prefix)).join('\n')}</tbody>`,
    '</table>',
    '</main>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}
