/**
 * @ioas/cli: the `ioas` command, and its entry points for embedding (`main`, `buildProgram`).
 *
 * @packageDocumentation
 */
export { buildProgram, main } from './cli.js';
export { runDemo, type DemoSummary } from './demo.js';
export type { Io } from './output.js';
export { loadScenario, type ScenarioProblem } from './scenario-file.js';
