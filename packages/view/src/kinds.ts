/**
 * The kinds of region the map draws, and how each looks: one colour, one glyph for the terminal,
 * the words a legend uses. One table, so that the SVG, the HTML table, the text strip and the
 * legend can never disagree about what a colour means.
 */

/**
 * What a row of the map mainly is, which picks its colour. When several things hold at once the
 * strongest wins, in this order: `msi-doorbell` > `mapped` > `allocated` > `reserved-*` >
 * `window-disabled` > `unusable` > `free`.
 *
 * - `msi-doorbell`: an MSI doorbell sits here (device MSI writes land in it).
 * - `mapped`: a live DMA mapping (or a cluster of them, when there are more than the map can show).
 * - `allocated`: handed out by `allocate()` and not mapped.
 * - `reserved-msi`, `reserved-direct`, `reserved-direct-relaxable`, `reserved`: a reserved range of
 *   that sysfs type (`reserved` is the type sysfs calls plain `reserved`).
 * - `window-disabled`: a hardware window of a windowed IOMMU that nothing enables.
 * - `unusable`: inside the aperture but in no usable range and not reserved.
 * - `free`: usable and unused.
 */
export type RegionKind =
  | 'msi-doorbell'
  | 'mapped'
  | 'allocated'
  | 'reserved-msi'
  | 'reserved-direct'
  | 'reserved-direct-relaxable'
  | 'reserved'
  | 'window-disabled'
  | 'unusable'
  | 'free';

/**
 * Everything a legend can show: the {@link RegionKind}s and `window`, the colour of the narrow
 * strip that marks an enabled window (never a row's main kind: a window is drawn beside what it
 * holds).
 */
export type LegendKind = RegionKind | 'window';

/** How one {@link LegendKind} is drawn. */
export interface KindStyle {
  /** Fill colour, `#rrggbb`. */
  readonly colour: string;
  /** Overlay pattern that tells kinds apart without colour: reserved ranges are hatched, disabled windows cross-hatched. */
  readonly pattern: 'hatch' | 'cross' | 'none';
  /** The character the text format marks the strip with. */
  readonly char: string;
  /** ANSI SGR parameters the text format colours that character with when `colour` is on. */
  readonly ansi: string;
  /** What the legend says. */
  readonly words: string;
}

/**
 * Every kind with its colour, pattern, terminal character and words. The palette is Okabe and Ito's
 * (safe for the common colour-vision deficiencies), with patterns on top of colour for reserved
 * ranges and disabled windows so that the picture reads in greyscale too.
 */
export const REGION_KINDS: Readonly<Record<LegendKind, KindStyle>> = deepFreeze({
  'msi-doorbell': { colour: '#d55e00', pattern: 'none', char: 'M', ansi: '1;31', words: 'MSI doorbell' },
  mapped: { colour: '#0072b2', pattern: 'none', char: '█', ansi: '34', words: 'mapped' },
  allocated: { colour: '#56b4e9', pattern: 'none', char: '▓', ansi: '36', words: 'allocated, not mapped' },
  'reserved-msi': { colour: '#cc79a7', pattern: 'hatch', char: '▒', ansi: '35', words: 'reserved: MSI window' },
  'reserved-direct': { colour: '#e69f00', pattern: 'hatch', char: 'D', ansi: '33', words: 'reserved: direct-mapped' },
  'reserved-direct-relaxable': { colour: '#f0e442', pattern: 'hatch', char: 'd', ansi: '93', words: 'reserved: direct-mapped, relaxable' },
  reserved: { colour: '#882255', pattern: 'hatch', char: 'R', ansi: '35', words: 'reserved' },
  'window-disabled': { colour: '#999999', pattern: 'cross', char: '×', ansi: '90', words: 'window disabled' },
  unusable: { colour: '#c4c4c4', pattern: 'none', char: '·', ansi: '90', words: 'unusable: no usable range' },
  free: { colour: '#f2f2f2', pattern: 'none', char: '░', ansi: '2', words: 'free' },
  window: { colour: '#009e73', pattern: 'none', char: 'W', ansi: '32', words: 'window enabled' },
});

/** The table frozen all the way down: it is shared by every caller, so one must not recolour another's map. */
function deepFreeze<T extends Record<string, object>>(table: T): Readonly<T> {
  for (const value of Object.values(table)) Object.freeze(value);
  return Object.freeze(table);
}

/** Legend order: the order of {@link REGION_KINDS}, strongest first. */
export const LEGEND_ORDER: readonly LegendKind[] = Object.keys(REGION_KINDS) as LegendKind[];
