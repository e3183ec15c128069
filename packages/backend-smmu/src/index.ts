/**
 * @ioas/backend-smmu: the ioas backend for paged IOMMUs through VFIO type1v2 or iommufd.
 *
 * @packageDocumentation
 */
export { smmu, type SmmuBackend, type SmmuInterface, type SmmuOptions } from './smmu-backend.js';
