/**
 * @ioas/backend-pamu: the ioas backend for the Freescale/NXP PAMU through the SDK kernels' VFIO
 * "type 2" backend, with ABI profiles, every silent failure of the driver defended against, and
 * window plans applied all or nothing.
 *
 * @packageDocumentation
 */
export { applyWindowPlan, type AppliedWindowPlan } from './apply-plan.js';
export { pamu, type PamuBackend, type PamuOptions } from './pamu-backend.js';
export { PamuContainer, type PamuDmaRange, type PamuDmaRequest, type PamuMsiBankMapping, type PamuWindowState } from './pamu-container.js';
export { PamuIoctls, type PamuAperture, type PamuStash } from './pamu-ioctls.js';
export {
  definePamuProfile,
  describeProfile,
  P4080_MSI,
  P4080_MSI_OLD_DTS,
  PAMU_GENERIC_IOCTLS,
  PAMU_PROFILES,
  type PamuMsiFacts,
  type PamuProfile,
  type PamuProfileInput,
  type PamuProfileIoctl,
  type PamuProfileName,
} from './profiles.js';
export * as pamuUapi from './uapi.js';
