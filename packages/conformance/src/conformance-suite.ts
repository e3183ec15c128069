import type { GroupContext } from './context.js';
import { groups } from './groups/index.js';
import { CONFORMANCE_GROUPS, type ConformanceGroup, type ConformanceOptions, type ConformanceRunner, type ConformanceTarget } from './types.js';

/**
 * The behaviour every ioas backend must show, declared with the test runner's own functions: one
 * `describe` block titled `ioas conformance: <name>`, holding one block per
 * {@link ConformanceGroup}. Tests that need a capability run only when the backend declares it;
 * tests that need a device, fault injection or kernel-state inspection run only when the target
 * provides them.
 *
 * ```ts
 * import * as vitest from 'vitest';
 * import { conformanceSuite } from '@ioas/conformance';
 *
 * conformanceSuite(vitest, 'my backend', target, { skip: ['rollback'] });
 * ```
 *
 * @param runner The runner's `describe`, `it` and `expect` (vitest's module namespace fits).
 * @param name Names the suite's outer block.
 * @param target The platform under test.
 * @param options Groups to skip.
 */
export function conformanceSuite(runner: ConformanceRunner, name: string, target: ConformanceTarget, options: ConformanceOptions = {}): void {
  const { describe } = runner;
  const skipped = new Set<ConformanceGroup>(options.skip ?? []);
  const context: GroupContext = { runner, target, enabled: (group) => !skipped.has(group) };

  describe(`ioas conformance: ${name}`, () => {
    for (const group of CONFORMANCE_GROUPS) {
      const body = (): void => groups[group](context);
      if (context.enabled(group)) describe(group, body);
      else describe.skip(group, body);
    }
  });
}
