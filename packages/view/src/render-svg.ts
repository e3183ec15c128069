/**
 * The map as a self-contained SVG: a vertical memory map, lowest address at the top, with the
 * addresses on the left, the bar in the middle and the labels on the right. No scripts, no external
 * fonts or images, no randomness: the same snapshot always gives the same bytes, so a dashboard can
 * cache it and a test can compare it.
 */
import { formatRange, hex } from '@ioas/core';
import { escapeXml, truncate } from './escape.js';
import { REGION_KINDS, type LegendKind } from './kinds.js';
import { reservedKind, type IovaMapLayout, type MapRow } from './layout.js';
import { addressDigits, paddedHex, readableSize } from './numbers.js';

const PAD = 16;
/** Monospace glyphs are about 0.6em wide: what text widths are estimated with, in the absence of a DOM. */
const GLYPH = 0.6;
const ADDRESS_FONT = 11;
const LABEL_FONT = 12;
const TITLE_FONT = 16;
const STRIP_WIDTH = 14;
const BAR_WIDTH = 120;
/** The use part is drawn inset, so that the space it sits on (a reserved range, say) shows around it. */
const USE_INSET = 12;
/** Labels longer than this are cut (the hover text has everything); the picture is as wide as its longest label up to here. */
const LABEL_CHARS = 120;
const MIN_LABEL_CHARS = 48;
const FONT_FAMILY = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'Liberation Mono', monospace";
const TEXT_COLOUR = '#1a1a1a';
const MUTED_COLOUR = '#555555';
/** Free space is nearly white: an edge keeps it visible on a white page. */
const FREE_EDGE = '#c8c8c8';

/** Numbers in attributes: integers as is, others to one decimal, so the output is stable. */
function n(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** Attributes of a text or shape element, escaped. */
function attributes(values: Record<string, string | number>): string {
  return Object.entries(values)
    .map(([name, value]) => ` ${name}="${typeof value === 'number' ? n(value) : escapeXml(value)}"`)
    .join('');
}

/** Where things go: computed once from the layout, shared by {@link renderSvg} and the HTML page. */
interface Frame {
  readonly digits: number;
  readonly addressRight: number;
  readonly stripX: number;
  readonly barX: number;
  readonly labelX: number;
  readonly labelChars: number;
  readonly width: number;
  readonly mapTop: number;
}

function frameOf(layout: IovaMapLayout): Frame {
  const digits = addressDigits(layout.aperture.last);
  const addressRight = PAD + (2 + digits) * ADDRESS_FONT * GLYPH;
  const stripX = addressRight + 10;
  const barX = layout.windowsMatter ? stripX + STRIP_WIDTH + 4 : stripX;
  const labelX = barX + BAR_WIDTH + 12;
  const longest = layout.rows.reduce((most, row) => Math.max(most, row.label.length), 0);
  const labelChars = Math.min(LABEL_CHARS, Math.max(MIN_LABEL_CHARS, longest));
  const width = Math.ceil(labelX + labelChars * LABEL_FONT * GLYPH + PAD);
  return { digits, addressRight, stripX, barX, labelX, labelChars, width, mapTop: PAD + TITLE_FONT + 46 };
}

/** The fill of a kind, with its pattern laid over it when it has one. */
function fills(kind: LegendKind, prefix: string, box: { x: number; y: number; width: number; height: number }, className: string): string {
  const style = REGION_KINDS[kind];
  const shape = `<rect class="${className}"${attributes({ ...box, fill: style.colour, ...(kind === 'free' ? { stroke: FREE_EDGE, 'stroke-width': 1 } : {}) })}/>`;
  return style.pattern === 'none' ? shape : `${shape}<rect class="${className}-pattern"${attributes({ ...box, fill: `url(#${prefix}-${style.pattern})` })}/>`;
}

/** The colour of the space under a row: its reserved kind, a disabled window's grey, unusable or free. */
function spaceKindOf(row: MapRow): LegendKind {
  if (row.space.kind === 'reserved') return reservedKind(row.space.regions[0]);
  if (row.window?.kind === 'window-disabled') return 'window-disabled';
  return row.space.kind === 'unusable' ? 'unusable' : 'free';
}

/** A zig-zag across `width` at `y`: the break mark of a compressed gap. */
function zigzag(x: number, y: number, width: number, step = 8): string {
  let path = `M${n(x)} ${n(y)}`;
  const rise = step / 2;
  for (let offset = step, up = true; offset <= width + 0.01; offset += step, up = !up) path += ` L${n(x + Math.min(offset, width))} ${n(y + (up ? -rise : rise))}`;
  return path;
}

function rowSvg(row: MapRow, layout: IovaMapLayout, frame: Frame, prefix: string, withIds: boolean): string {
  const y = frame.mapTop + row.offset;
  const height = row.height - 1; // a 1-unit seam, so that equal neighbours (four mapped windows) stay four
  const parts: string[] = [`<title>${escapeXml(row.hover)}</title>`];
  const bar = { x: frame.barX, y, width: BAR_WIDTH, height };
  parts.push(fills(spaceKindOf(row), prefix, bar, 'space'));
  if (row.use.kind !== 'free') {
    const use = { x: frame.barX + USE_INSET, y: y + 3, width: BAR_WIDTH - 2 * USE_INSET, height: height - 6 };
    const cluster = row.use.kind === 'mapped' && row.use.mapped?.clustered === true ? row.use.mapped : undefined;
    if (cluster === undefined) parts.push(fills(row.use.kind, prefix, use, 'use'));
    else {
      // A cluster is not all mapped: a pale extent, and a solid bar as long as the share mapped.
      const share = Number((cluster.bytes * 1000n) / row.size) / 1000;
      parts.push(`<rect class="use cluster"${attributes({ ...use, fill: REGION_KINDS.mapped.colour, 'fill-opacity': 0.3 })}/>`);
      parts.push(`<rect class="use-density"${attributes({ ...use, width: Math.max(2, Math.round(use.width * share * 10) / 10), fill: REGION_KINDS.mapped.colour })}/>`);
    }
  }
  if (row.window !== null) parts.push(fills(row.window.kind, prefix, { x: frame.stripX, y, width: STRIP_WIDTH, height }, 'window'));
  if (row.gap) {
    // The break: a white band across the bar (and the strip), edged by two thin zig-zags.
    const middle = y + height / 2;
    const left = row.window === null ? frame.barX : frame.stripX;
    const width = frame.barX + BAR_WIDTH - left;
    parts.push(`<path class="break"${attributes({ d: zigzag(left, middle, width), fill: 'none', stroke: '#ffffff', 'stroke-width': 6 })}/>`);
    parts.push(`<path class="break"${attributes({ d: `${zigzag(left, middle - 4, width)} ${zigzag(left, middle + 4, width)}`, fill: 'none', stroke: MUTED_COLOUR, 'stroke-width': 1 })}/>`);
  }
  parts.push(`<text class="address"${attributes({ x: frame.addressRight, y: y + ADDRESS_FONT, 'text-anchor': 'end' })}>${paddedHex(row.start, frame.digits)}</text>`);
  parts.push(`<text class="address"${attributes({ x: frame.addressRight, y: y + height - 4, 'text-anchor': 'end', fill: MUTED_COLOUR })}>${paddedHex(row.last, frame.digits)}</text>`);
  const labelClass = row.gap ? 'gap-label' : 'region-label';
  const labelStyle = row.gap ? { 'font-style': 'italic', fill: MUTED_COLOUR } : {};
  parts.push(`<text class="${labelClass}"${attributes({ x: frame.labelX, y: y + height / 2 + 4, 'font-size': LABEL_FONT, ...labelStyle })}>${escapeXml(truncate(row.label, frame.labelChars))}</text>`);
  const id = withIds ? { id: `${prefix}-region-${row.index}` } : {};
  const group = attributes({ ...id, class: 'region', 'data-kind': row.kind, 'data-start': hex(row.start), 'data-last': hex(row.last), 'data-gap': String(row.gap) });
  return `<g${group}>${parts.join('')}</g>`;
}

function legendSvg(layout: IovaMapLayout, frame: Frame, prefix: string, top: number): { svg: string; height: number } {
  const entries: { kind: LegendKind | 'gap'; words: string }[] = layout.legend.map((entry) => ({ kind: entry.kind, words: entry.words }));
  if (layout.rows.some((row) => row.gap)) entries.push({ kind: 'gap', words: 'gap: compressed, size in its label' });
  const lineHeight = 20;
  let x = PAD;
  let y = 0;
  const items: string[] = [];
  for (const entry of entries) {
    const width = 20 + entry.words.length * LABEL_FONT * GLYPH + 18;
    if (x > PAD && x + width > frame.width - PAD) {
      x = PAD;
      y += lineHeight;
    }
    const box = { x, y: y + 2, width: 14, height: 14 };
    const swatch =
      entry.kind === 'gap'
        ? `<rect${attributes({ ...box, fill: REGION_KINDS.free.colour, stroke: FREE_EDGE })}/><path${attributes({ d: `${zigzag(x, y + 7, 14, 3.5)} ${zigzag(x, y + 11, 14, 3.5)}`, fill: 'none', stroke: MUTED_COLOUR, 'stroke-width': 1 })}/>`
        : fills(entry.kind, prefix, box, 'swatch');
    items.push(`<g${attributes({ class: 'legend-entry', 'data-kind': entry.kind })}>${swatch}<text${attributes({ x: x + 20, y: y + 13, 'font-size': LABEL_FONT })}>${escapeXml(entry.words)}</text></g>`);
    x += width;
  }
  return { svg: `<g${attributes({ class: 'legend', transform: `translate(0 ${n(top)})` })}>${items.join('')}</g>`, height: y + lineHeight };
}

/**
 * The layout as an SVG document fragment (no XML declaration, so it also inlines into HTML).
 * `withIds` gives every region an `id` the HTML page's CSS points at.
 */
export function renderSvg(layout: IovaMapLayout, prefix: string, withIds = false): string {
  const frame = frameOf(layout);
  const legendTop = frame.mapTop + layout.height + 18;
  const legend = legendSvg(layout, frame, prefix, legendTop);
  const height = Math.ceil(legendTop + legend.height + PAD);
  const titleChars = Math.floor((frame.width - 2 * PAD) / (TITLE_FONT * GLYPH));
  const subtitleChars = Math.floor((frame.width - 2 * PAD) / (LABEL_FONT * GLYPH));
  const windows = layout.windowGeometry !== null && layout.windowGeometry.size > 0n ? ` · ${layout.windowGeometry.count} windows of ${readableSize(layout.windowGeometry.size)}` : '';
  const subtitle = `${layout.model} IOMMU · aperture ${formatRange(layout.aperture)} (${readableSize(layout.aperture.size)})${windows} · MSI ${layout.msiModel}`;
  const description = `${subtitle}; ${layout.rows.length} rows, lowest address at the top; gaps are compressed.`;
  const hatch = (name: string, lines: string) =>
    `<pattern${attributes({ id: `${prefix}-${name}`, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' })}>${lines}</pattern>`;
  const style = [
    `#${prefix} .region:hover .space,#${prefix} .region:hover .use{stroke:#000000;stroke-width:1.5}`,
    `#${prefix} .region:hover .region-label,#${prefix} .region:hover .gap-label{font-weight:bold}`,
  ].join('');
  return [
    `<svg${attributes({ xmlns: 'http://www.w3.org/2000/svg', id: prefix, class: 'ioas-iova-map', viewBox: `0 0 ${frame.width} ${height}`, width: frame.width, height, role: 'img', 'aria-labelledby': `${prefix}-title ${prefix}-desc`, 'font-family': FONT_FAMILY, 'font-size': ADDRESS_FONT, fill: TEXT_COLOUR })}>`,
    `<title${attributes({ id: `${prefix}-title` })}>${escapeXml(`IOVA map: ${layout.title}`)}</title>`,
    `<desc${attributes({ id: `${prefix}-desc` })}>${escapeXml(description)}</desc>`,
    `<style>${style}</style>`,
    `<defs>${hatch('hatch', '<rect width="2" height="6" fill="#ffffff" fill-opacity="0.55"/>')}${hatch('cross', '<rect width="1.5" height="6" fill="#ffffff" fill-opacity="0.7"/><rect width="6" height="1.5" fill="#ffffff" fill-opacity="0.7"/>')}</defs>`,
    `<rect${attributes({ class: 'background', x: 0, y: 0, width: frame.width, height, fill: '#ffffff' })}/>`,
    `<text${attributes({ class: 'title', x: PAD, y: PAD + TITLE_FONT, 'font-size': TITLE_FONT, 'font-weight': 'bold' })}>${escapeXml(truncate(layout.title, titleChars))}</text>`,
    `<text${attributes({ class: 'subtitle', x: PAD, y: PAD + TITLE_FONT + 20, 'font-size': LABEL_FONT, fill: MUTED_COLOUR })}>${escapeXml(truncate(subtitle, subtitleChars))}</text>`,
    `<g class="rows">${layout.rows.map((row) => rowSvg(row, layout, frame, prefix, withIds)).join('')}</g>`,
    legend.svg,
    '</svg>',
  ].join('\n');
}
