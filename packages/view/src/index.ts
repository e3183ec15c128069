/**
 * @ioas/view: the IOVA space as a picture. Renders a container snapshot (`container.snapshot()`
 * from `@ioas/core`) as SVG, HTML or 80-column text, as people draw it on whiteboards: the
 * aperture, the windows, the reserved holes, what is mapped where and where the MSI doorbells sit.
 * No browser or DOM needed.
 *
 * @packageDocumentation
 */
export { REGION_KINDS, type KindStyle, type LegendKind, type RegionKind } from './kinds.js';
export {
  layoutIovaMap,
  type AllocatedUse,
  type DoorbellUse,
  type IovaMapLayout,
  type LegendEntry,
  type MapRange,
  type MappedUse,
  type MappingDetail,
  type MapRow,
  type ReservedRegion,
  type SpacePart,
  type UnusableReason,
  type UsePart,
  type WindowPart,
} from './layout.js';
export { DEFAULT_MAX_ROWS, IOVA_MAP_FORMATS, type IovaMapFormat, type LayoutOptions, type RenderOptions } from './options.js';
export { renderIovaMap } from './render.js';
