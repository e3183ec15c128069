// `pnpm test:kernel`: boots each real-kernel lane in QEMU (packages/kernel-rig/rig.mjs), runs the
// rig's test suite inside against the real kernel, and prints one `N passed, N failed` line.
// Exported for scripts/run-tests.mjs, which runs it as part of `pnpm test` where it can.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cannotRun, runLane } from '../packages/kernel-rig/rig.mjs';

export const LANES = (process.env.IOAS_KERNEL_LANES ?? 'x86,arm64,iommufd').split(',').filter(Boolean);
// The tests, then (in the same boot, keeping the tests' exit status) the benchmark.
const GUEST_COMMAND = [
  'node packages/kernel-rig/node_modules/vitest/vitest.mjs run --root packages/kernel-rig --config vitest.config.mjs --configLoader runner --no-cache --reporter=default --reporter=json --outputFile=/tmp/results/vitest.json',
  'status=$?',
  '(cd packages/kernel-rig && node bench/map-unmap.mjs) > /tmp/results/bench.txt 2>&1',
  'exit $status',
].join('; ');

export { cannotRun };

/**
 * A lane's counts from vitest's JSON report, or, when the report is missing or cut short, from its
 * printed summary (seen on arm64 under TCG: node died with SIGTRAP, status 133, while the report was
 * being written, after the summary said every test passed). Either way a non-zero exit is printed.
 */
function laneCounts(lane, result, report) {
  let counts;
  try {
    const json = JSON.parse(readFileSync(report, 'utf8'));
    counts = {
      passed: json.numPassedTests,
      failed: json.numFailedTests + json.testResults.filter((file) => file.status === 'failed' && file.assertionResults.length === 0).length,
      skipped: json.numPendingTests,
    };
  } catch {
    const summary = /Tests\s+(?:(\d+) failed\s*\|\s*)?(\d+) passed(?:\s*\|\s*(\d+) skipped)?/.exec(result.output);
    if (summary === null) return undefined;
    counts = { passed: Number(summary[2]), failed: Number(summary[1] ?? 0), skipped: Number(summary[3] ?? 0) };
    console.warn(`*** [${lane}] no readable JSON report: counted from vitest's printed summary ***`);
  }
  if (result.exitCode !== 0) {
    console.warn(`*** [${lane}] the test process exited with status ${result.exitCode ?? 'missing'}; see ${join(result.results, 'output.log')} ***`);
    if (counts.failed === 0 && result.exitCode !== 133) counts.failed = 1;
  }
  return counts;
}

/** Runs every lane; returns the summed counts and prints each lane's output. */
export async function runKernelLanes() {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const lane of LANES) {
    const boot = () => runLane(lane, GUEST_COMMAND, { timeoutSeconds: 1500, environment: { CI: process.env.CI ?? '' } });
    let result = await boot();
    let counts = laneCounts(lane, result, join(result.results, 'vitest.json'));
    // One more boot, said loudly, when the guest itself failed rather than a test: it died before
    // the command finished (a kernel panic at boot under TCG was seen once), or the test process
    // died by a signal before vitest could report (node 20 on arm64 under TCG has died in V8 with
    // SIGTRAP: "Check failed: CodeKindCanDeoptimize"). A second failure counts.
    const died = result.exitCode === undefined ? 'the guest gave no exit code' : counts === undefined && result.exitCode > 128 ? `the test process died by signal ${result.exitCode - 128} with no report` : undefined;
    if (died !== undefined) {
      process.stdout.write(result.output.split('\n').map((line) => `[${lane}] ${line}`).join('\n'));
      console.warn(`\n*** [${lane}] ${died}; console tail:\n${result.console.split('\n').slice(-12).join('\n')}\n*** [${lane}] booting once more ***`);
      result = await boot();
      counts = laneCounts(lane, result, join(result.results, 'vitest.json'));
    }
    process.stdout.write(result.output.split('\n').map((line) => `[${lane}] ${line}`).join('\n'));
    if (counts === undefined) {
      console.error(`[${lane}] the guest gave no test report (exit ${result.exitCode ?? 'missing'}); console tail:\n${result.console.split('\n').slice(-20).join('\n')}\n${result.qemuOutput}`);
      failed += 1;
      continue;
    }
    passed += counts.passed;
    failed += counts.failed;
    skipped += counts.skipped;
    const differential = join(result.results, `differential-${lane}.json`);
    if (existsSync(differential)) {
      const summary = JSON.parse(readFileSync(differential, 'utf8'));
      console.log(`[${lane}] differential: ${summary.sequences} sequences, ${summary.operations} operations agreed`);
    }
    const bench = join(result.results, 'bench.txt');
    if (existsSync(bench)) console.log(readFileSync(bench, 'utf8').trim().split('\n').map((line) => `[${lane}] bench: ${line}`).join('\n'));
    console.log(`[${lane}] ${counts.passed} passed, ${counts.failed} failed in ${result.seconds} s`);
  }
  return { passed, failed, skipped };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const reasons = cannotRun();
  if (reasons.length > 0) {
    console.error(`real-kernel tests cannot run here: ${reasons.join('; ')}`);
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
  const { passed, failed, skipped } = await runKernelLanes();
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(failed > 0 ? 1 : 0);
}
