/**
 * @ioas/conformance: the behaviour every ioas backend must show, as one suite declared with the
 * test runner's functions (vitest's, or any runner with `describe`, `describe.skip`, `it` and an
 * `expect` with vitest's matchers) and taking a target (a way to open containers, host memory, and
 * optionally a device, fault injection and kernel-state inspection). Tests gate themselves on the
 * backend's declared capabilities.
 *
 * @packageDocumentation
 */
export { conformanceSuite } from './conformance-suite.js';
export { caught } from './context.js';
export {
  CONFORMANCE_GROUPS,
  type ConformanceAssertion,
  type ConformanceDescribe,
  type ConformanceDevice,
  type ConformanceExpect,
  type ConformanceGroup,
  type ConformanceIt,
  type ConformanceOptions,
  type ConformanceRunner,
  type ConformanceTarget,
  type ConflictingMember,
  type HotPlugMember,
  type HotPlugTarget,
} from './types.js';
