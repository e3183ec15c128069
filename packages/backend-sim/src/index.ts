/**
 * @ioas/backend-sim: a deterministic model of the Linux VFIO / iommufd kernel side and of IOMMU
 * hardware (Freescale PAMU, ARM SMMUv3, Intel VT-d), with devices that do DMA and raise MSIs.
 * Its `Backend` face stands in for a real backend in tests.
 *
 * @packageDocumentation
 */
export { DirtyPages } from './dirty-pages.js';
export {
  HW_CAP_DIRTY_TRACKING,
  HWPT_ALLOC_FLAGS,
  HWPT_DIRTY_TRACKING_ENABLE,
  HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  Hwpt,
  IOAS_MAP_FLAGS,
  SimIommufdContext,
  Ioas,
  type IoasRanges,
  type SimHwInfo,
} from './iommufd.js';
export { KernelError, KernelOops } from './kernel-error.js';
export { PagedDomain, type DmaDomain, type PagedMapping, type Translation } from './paged-domain.js';
export { PamuDomain, type SimPamuDmaRange } from './pamu-domain.js';
export { PLATFORMS, type DeviceSpec, type PlatformName, type PlatformPreset, type ReservedRegionSpec, type SimKernel } from './platforms.js';
export {
  runScenario,
  scenarioSchema,
  validateScenario,
  type RunScenarioOptions,
  type Scenario,
  type ScenarioAction,
  type ScenarioEvent,
  type ScenarioIssue,
  type ScenarioResult,
  type ScenarioStep,
  type ScenarioValidation,
} from './scenario.js';
export { sim, type SimBackend, type SimBackendOptions } from './sim-backend.js';
export { SimMemory, type SimRegion } from './sim-memory.js';
export {
  createSimulator,
  SimDevice,
  SimGroup,
  Simulator,
  type FaultInjection,
  type KernelObject,
  type MsiWindowHolder,
  type MsiHandler,
  type SimFault,
  type SimInterrupt,
  type SimulatorOptions,
} from './simulator.js';
export { UserBitmap } from './user-bitmap.js';
export {
  DIRTY_BITMAP_SIZE_MAX,
  DIRTY_PAGES_FLAGS,
  VFIO_EXTENSION,
  SimVfioContainer,
  type SimType1Info,
  type Type1DirtyRange,
  type Type1UnmapBitmap,
} from './vfio-container.js';
export { simSyscalls, type SimSyscalls, type SimSyscallsOptions } from './sim-syscalls.js';
