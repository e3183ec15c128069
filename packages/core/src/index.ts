/**
 * @ioas/core: one API for IOMMU containers and IOAS objects, whatever the IOMMU underneath
 * (windowed like Freescale PAMU, paged like ARM SMMU, Intel VT-d, AMD-Vi), and the SPI every
 * backend implements. Pure TypeScript: no native code is loaded by importing it.
 *
 * @packageDocumentation
 */
export { BTreeMap, type Entry, type KeyBits } from './btree.js';
export {
  Container,
  type AllocateInput,
  type ContainerDirty,
  type ContainerMsi,
  type DirtyReadInput,
  type DirtyUnmapResult,
  type ContainerOpenOptions,
  type MapInput,
  type MapRegionInput,
  type MembersInput,
  type MapRegionResult,
  type RangeInput,
  type SetGeometryInput,
  type UnmapInput,
} from './container.js';
export { DirtyBitmap, dirtyBitmapBytes } from './dirty-bitmap.js';
export { ERRNO, errnoName, type ErrnoName } from './errno.js';
export { IoasError, type IoasErrorCode, type IoasErrorDetails } from './errors.js';
export { hex } from './format.js';
export { IovaAllocator, type AllocationRequest } from './iova-allocator.js';
export {
  alignDown,
  alignRangeInward,
  alignUp,
  compareBigint,
  compareRanges,
  formatRange,
  intersectRange,
  intersectRanges,
  iovaRange,
  isPowerOfTwo,
  normalizeRanges,
  rangeContains,
  rangeContainsRange,
  rangeOfSize,
  rangesCover,
  rangeSize,
  rangesOverlap,
  splitRange,
  subtractRange,
  subtractRanges,
  U64_MAX,
  unionRanges,
  type IovaRange,
} from './iova-range.js';
export { IovaRangeSet } from './iova-range-set.js';
export { PageRangeMap } from './page-range-map.js';
export {
  parseSnapshot,
  planSnapshot,
  SNAPSHOT_VERSION,
  snapshotHex,
  snapshotRange,
  snapshotReserved,
  type ContainerSnapshot,
  type SnapshotDoorbell,
  type SnapshotHex,
  type SnapshotMapping,
  type SnapshotRange,
  type SnapshotReserved,
} from './snapshot.js';
export {
  BINARY_UNITS,
  DEFAULT_WINDOW_PLAN_LIMITS,
  formatSize,
  parseSize,
  parseSizeAt,
  formatWindowPlan,
  planWindows,
  type PlannedWindow,
  type WindowPlan,
  type WindowPlanLimits,
  type WindowPlanSegment,
  type WindowPlanSpec,
} from './plan-windows.js';
export {
  checkWindowGeometry,
  PAMU_CAPABILITIES,
  PAMU_PAGE_SIZE,
  PAMU_VFIO_MAX_WINDOWS,
  type WindowGeometryLimits,
  type WindowGeometryProblems,
  type WindowGeometryRequest,
} from './window-geometry.js';
export { planRegionMappings, type RegionPiece, type RegionPlan } from './plan-region.js';
export {
  SPECIFICATION_VERSION,
  type Backend,
  type BackendHandle,
  type BackendHandleV1,
  type BackendV1,
  type AttachPreview,
  type DirtyReadCall,
  type GeometryCall,
  type MapCall,
  type Members,
  type OpenRequest,
  type ProbeResult,
} from './spi.js';
export {
  granuleOf,
  isBlockingReserved,
  usableRanges,
  type Access,
  type Capabilities,
  type ContainerStats,
  type DirtyTracking,
  type Geometry,
  type HostMemory,
  type IommuModel,
  type Mapping,
  type MsiDoorbell,
  type MsiDoorbellPlacement,
  type MsiModel,
  type MsiPlan,
  type ReservedKind,
  type ReservedRange,
  type ReservedSource,
  type U64Input,
  type Window,
  type WindowGeometry,
  type WindowMode,
} from './types.js';
export { size64, u64 } from './schemas.js';
export { SYSCALL_FLAGS, type Syscalls } from './syscalls.js';
