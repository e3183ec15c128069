/**
 * @ioas/backend-sim: a deterministic model of the Linux VFIO / iommufd kernel side and of IOMMU
 * hardware (Freescale PAMU, ARM SMMUv3, Intel VT-d), with devices that do DMA and raise MSIs.
 * Its `Backend` face stands in for a real backend in tests.
 *
 * @packageDocumentation
 */
export { IOAS_MAP_FLAGS, SimIommufdContext, Ioas, type IoasRanges } from './iommufd.js';
export { KernelError, KernelOops } from './kernel-error.js';
export { PagedDomain, type DmaDomain, type PagedMapping, type Translation } from './paged-domain.js';
export { PamuDomain, type SimPamuDmaRange } from './pamu-domain.js';
export { PLATFORMS, type DeviceSpec, type PlatformName, type PlatformPreset, type ReservedRegionSpec } from './platforms.js';
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
export { VFIO_EXTENSION, SimVfioContainer, type SimType1Info } from './vfio-container.js';
export { simSyscalls, type SimSyscalls, type SimSyscallsOptions } from './sim-syscalls.js';
