/**
 * The map for a terminal or a log: 80 columns, one line per row, with a narrow strip that stands
 * for the whole broken axis and marks where the row sits in it.
 */
import { formatRange } from '@ioas/core';
import { displayWidth, terminalSafe, truncate } from './escape.js';
import { REGION_KINDS, type LegendKind } from './kinds.js';
import type { IovaMapLayout, MapRow } from './layout.js';
import { addressDigits, paddedHex, readableSize } from './numbers.js';

/** The width every line fits in. */
export const TEXT_COLUMNS = 80;
/** Characters of the strip that stands for the axis. */
const STRIP = 16;

const RESET = '\u001b[0m';

/** The layout as text lines of at most {@link TEXT_COLUMNS} terminal columns (ANSI escapes not counted), ending in a newline. */
export function renderText(layout: IovaMapLayout, colour: boolean): string {
  const paint = (text: string, kind: LegendKind): string => (colour ? `\u001b[${REGION_KINDS[kind].ansi}m${text}${RESET}` : text);
  const fit = (text: string): string => truncate(terminalSafe(text), TEXT_COLUMNS);
  const digits = addressDigits(layout.aperture.last);
  const lines = [fit(`IOVA map: ${layout.title}`), fit(headline(layout)), fit(budgetLine(layout))];
  // As wide as the widest size shown (`1023.9 MiB` is the widest readableSize writes), so that
  // labels, which a terminal cuts, get every column left.
  const sizes = layout.rows.map((row) => readableSize(row.size));
  const sizeWidth = Math.max(4, ...sizes.map((size) => size.length));
  const labelWidth = TEXT_COLUMNS - (2 + digits) - 1 - sizeWidth - 1 - (STRIP + 2) - 1;
  lines.push(`${'start'.padEnd(2 + digits)} ${'size'.padStart(sizeWidth)} ${'axis'.padEnd(STRIP + 2)} what`);
  for (const row of layout.rows) {
    const [from, to] = stripSpan(row, layout.height);
    const mark = paint(REGION_KINDS[row.kind].char.repeat(to - from + 1), row.kind);
    const strip = `│${' '.repeat(from)}${mark}${' '.repeat(STRIP - 1 - to)}│`;
    lines.push(`${paddedHex(row.start, digits)} ${sizes[row.index]!.padStart(sizeWidth)} ${strip} ${truncate(terminalSafe(row.label), labelWidth)}`);
  }
  lines.push(...legendLines(layout, paint));
  lines.push('The axis is broken: gaps are compressed; other rows grow with log2 of size.');
  return `${lines.join('\n')}\n`;
}

function headline(layout: IovaMapLayout): string {
  const windows = layout.windowGeometry !== null && layout.windowGeometry.size > 0n ? `, ${layout.windowGeometry.count} windows of ${readableSize(layout.windowGeometry.size)}` : '';
  return `${layout.model} IOMMU, aperture ${formatRange(layout.aperture)} (${readableSize(layout.aperture.size)})${windows}`;
}

function budgetLine(layout: IovaMapLayout): string {
  const { mappings, bytesMapped, left } = layout.budget;
  const clustered = layout.clustered ? ' (clustered)' : '';
  return `${mappings} mapping${mappings === 1 ? '' : 's'}${clustered}, ${readableSize(bytesMapped)} mapped, ${left === null ? 'no mapping limit' : `${left} left`}; MSI ${layout.msiModel}`;
}

/** The strip characters (inclusive) a row covers: its share of the axis, at least one character. */
function stripSpan(row: MapRow, total: number): [number, number] {
  if (total <= 0) return [0, 0];
  const from = Math.min(STRIP - 1, Math.floor((row.offset / total) * STRIP));
  const to = Math.min(STRIP - 1, Math.max(from, Math.ceil(((row.offset + row.height) / total) * STRIP) - 1));
  return [from, to];
}

/** `legend: █ mapped  M MSI doorbell ...`, wrapped at 80 columns; only the kinds the strip shows. */
function legendLines(layout: IovaMapLayout, paint: (text: string, kind: LegendKind) => string): string[] {
  const shown = new Set(layout.rows.map((row) => row.kind));
  const entries = layout.legend.filter((entry) => shown.has(entry.kind as MapRow['kind']));
  const lines: string[] = [];
  let line = 'legend:';
  let width = displayWidth(line);
  for (const entry of entries) {
    const words = entry.kind === 'free' || entry.kind === 'unusable' ? `${entry.words} (gap)` : entry.words;
    const plain = ` ${entry.char} ${words}`;
    if (width + displayWidth(plain) + 1 > TEXT_COLUMNS) {
      lines.push(line.trimEnd());
      line = '       ';
      width = displayWidth(line);
    }
    line += ` ${paint(entry.char, entry.kind)} ${words} `;
    width += displayWidth(plain) + 1;
  }
  lines.push(line.trimEnd());
  return lines;
}
