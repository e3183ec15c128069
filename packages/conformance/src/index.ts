/**
 * @ioas/conformance: the behaviour every ioas backend must show, as one vitest suite taking a
 * target (a way to open containers, host memory, and optionally a device, fault injection and
 * kernel-state inspection). Tests gate themselves on the backend's declared capabilities.
 *
 * @packageDocumentation
 */
export { conformanceSuite, type ConformanceDevice, type ConformanceOptions, type ConformanceTarget } from './conformance-suite.js';
