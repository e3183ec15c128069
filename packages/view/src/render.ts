/**
 * The entry point: a snapshot in, a picture out, in the format asked for.
 */
import type { ContainerSnapshot } from '@ioas/core';
import { layoutSnapshot } from './layout.js';
import { checkRenderOptions, type RenderOptions } from './options.js';
import { readSnapshot } from './read-snapshot.js';
import { renderHtml } from './render-html.js';
import { renderSvg } from './render-svg.js';
import { renderText } from './render-text.js';

/**
 * Draws a container's IOVA space: the aperture as a broken axis of rows (every region at a
 * readable size, gaps compressed and labelled with their size), a colour per kind, a legend and
 * hover text with each range's exact bounds and source. Needs no browser or DOM.
 *
 * - `svg`: a self-contained SVG image (no scripts, no external resources), the same bytes for the
 *   same snapshot.
 * - `html`: a complete HTML5 page with a summary, the SVG inline and a table of the rows.
 * - `text`: lines of at most 80 columns, with ANSI colours when `colour` is `true`.
 *
 * @param snapshot From `container.snapshot()`, or JSON parsed from a file: checked with core's
 *   `parseSnapshot` first.
 * @example
 * ```ts
 * const svg = renderIovaMap(container.snapshot(), { format: 'svg' });
 * process.stdout.write(renderIovaMap(container.snapshot(), { format: 'text', colour: true }));
 * ```
 * @throws {IoasError} `invalid-argument` for a malformed snapshot (the message names the field),
 *   an unknown format (the message lists the formats) or another bad option; `unsupported` for a
 *   snapshot of another format version.
 */
export function renderIovaMap(snapshot: ContainerSnapshot, options: RenderOptions): string {
  const parsed = readSnapshot(snapshot, 'renderIovaMap');
  const checked = checkRenderOptions(options);
  const layout = layoutSnapshot(parsed, checked.maxRows);
  switch (checked.format) {
    case 'svg':
      return `${renderSvg(layout, checked.idPrefix)}\n`;
    case 'html':
      return renderHtml(layout, checked.idPrefix);
    case 'text':
      return renderText(layout, checked.colour);
  }
}
