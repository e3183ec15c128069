/**
 * The options of {@link renderIovaMap} and {@link layoutIovaMap}, and their checks: options come
 * from dashboards' config files as often as from code, so a wrong one says what is allowed.
 */
import { IoasError } from '@ioas/core';
import type { layoutIovaMap } from './layout.js';
import type { renderIovaMap } from './render.js';

/** The formats {@link renderIovaMap} writes, in the order its errors list them. */
export const IOVA_MAP_FORMATS = ['svg', 'html', 'text'] as const;

/**
 * What {@link renderIovaMap} writes: `svg` (a self-contained SVG image), `html` (a complete HTML5
 * document: the SVG, a summary and a table of the rows) or `text` (80 columns, for terminals and logs).
 */
export type IovaMapFormat = (typeof IOVA_MAP_FORMATS)[number];

/** Options of {@link layoutIovaMap}. */
export interface LayoutOptions {
  /**
   * The most rows the map may have (default {@link DEFAULT_MAX_ROWS}, 16 to 100000). Past it,
   * neighbouring mappings (and allocations) are drawn as clusters, split at the largest holes
   * between them. Reserved ranges, doorbells and windows are never clustered.
   */
  readonly maxRows?: number;
}

/** Options of {@link renderIovaMap}. */
export interface RenderOptions extends LayoutOptions {
  /** The output format. */
  readonly format: IovaMapFormat;
  /** `text` only: colour the strip with ANSI escapes (default `false`); the other formats ignore it. */
  readonly colour?: boolean;
  /**
   * `svg` and `html`: the prefix of every `id` in the SVG and of its CSS selectors (default
   * `ioas-map`), so that two maps on one page do not share patterns or styles. A letter, then
   * letters, digits, `-` or `_`; at most 64 characters.
   */
  readonly idPrefix?: string;
}

/** The default of {@link LayoutOptions.maxRows}. */
export const DEFAULT_MAX_ROWS = 400;

const MIN_ROWS = 16;
const MAX_ROWS = 100_000;
const ID_PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const LAYOUT_KEYS = ['maxRows'] as const;
const RENDER_KEYS = ['format', 'maxRows', 'colour', 'idPrefix'] as const;

/** Render options checked, with their defaults filled in. */
export interface CheckedRenderOptions {
  readonly format: IovaMapFormat;
  readonly maxRows: number;
  readonly colour: boolean;
  readonly idPrefix: string;
}

const formatList = IOVA_MAP_FORMATS.map((name) => `'${name}'`).join(', ');

/** Checks {@link RenderOptions} and fills in the defaults. @throws {IoasError} `invalid-argument` saying what is allowed. */
export function checkRenderOptions(value: unknown): CheckedRenderOptions {
  const operation = 'renderIovaMap';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new IoasError('invalid-argument', `${operation}: options must be an object such as { format: 'svg' }; the formats are ${formatList}`, { operation });
  }
  const options = value as Record<string, unknown>;
  rejectUnknownKeys(options, RENDER_KEYS, operation);
  const format = options['format'];
  if (!(IOVA_MAP_FORMATS as readonly unknown[]).includes(format)) {
    const got = format === undefined ? 'no format was given' : `${describe(format)} is not one`;
    throw new IoasError('invalid-argument', `${operation}: options.format must be one of ${formatList}; ${got}`, { operation });
  }
  const colour = options['colour'] ?? false;
  if (typeof colour !== 'boolean') throw new IoasError('invalid-argument', `${operation}: options.colour must be true or false, not ${describe(colour)}`, { operation });
  const idPrefix = options['idPrefix'] ?? 'ioas-map';
  if (typeof idPrefix !== 'string' || !ID_PREFIX.test(idPrefix)) {
    throw new IoasError('invalid-argument', `${operation}: options.idPrefix must be a letter followed by up to 63 letters, digits, '-' or '_', not ${describe(idPrefix)}`, { operation });
  }
  return { format: format as IovaMapFormat, maxRows: checkMaxRows(options['maxRows'], operation), colour, idPrefix };
}

/** Checks {@link LayoutOptions} and returns `maxRows`. @throws {IoasError} `invalid-argument` saying what is allowed. */
export function checkLayoutOptions(value: unknown): number {
  const operation = 'layoutIovaMap';
  if (value === undefined) return DEFAULT_MAX_ROWS;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new IoasError('invalid-argument', `${operation}: options must be an object such as { maxRows: 400 }, not ${describe(value)}`, { operation });
  }
  const options = value as Record<string, unknown>;
  rejectUnknownKeys(options, LAYOUT_KEYS, operation);
  return checkMaxRows(options['maxRows'], operation);
}

function checkMaxRows(value: unknown, operation: string): number {
  if (value === undefined) return DEFAULT_MAX_ROWS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < MIN_ROWS || value > MAX_ROWS) {
    throw new IoasError('invalid-argument', `${operation}: options.maxRows must be an integer from ${MIN_ROWS} to ${MAX_ROWS}, not ${describe(value)}`, { operation });
  }
  return value;
}

function rejectUnknownKeys(options: Record<string, unknown>, known: readonly string[], operation: string): void {
  const unknown = Object.keys(options).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new IoasError('invalid-argument', `${operation}: unknown option${unknown.length === 1 ? '' : 's'} ${unknown.map((key) => `'${key}'`).join(', ')}; the options are ${known.map((key) => `'${key}'`).join(', ')}`, { operation });
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : String(value);
}
