/**
 * @ioas/cli: the `ioas` command, and its entry points for embedding (`main`, `buildProgram`).
 *
 * @packageDocumentation
 */
export { buildProgram, describeError, hostSyscalls, main, type RunState } from './cli.js';
export { runDemo, type DemoSummary, type IovaRangeWithKind } from './demo.js';
export type { Io, OutputStream } from './output.js';
export { loadScenario, type LoadedScenario, type ScenarioProblem } from './scenario-file.js';
