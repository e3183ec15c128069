// `pnpm test`: every package's vitest suite through turbo, then one closing line
// `N passed, N failed, N skipped` summed from the JSON report each package writes
// (turbo prefixes every line of package output, so the per-package summaries are hard to read).
// After the docs are built, the browser checks (@ioas/browser-check, headless Chromium) run and
// are counted in the same line.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const packagesDir = join(root, 'packages');
// Every workspace package: packages/* and examples/.
const reports = [...readdirSync(packagesDir).map((name) => join(packagesDir, name)), join(root, 'examples')].map((dir) => ({ dir, file: join(dir, '.vitest-result.json') }));
// The browser checks run after the docs, not in turbo's test phase (their script is `test:browser`);
// their report is counted once, below, and never in the turbo loop.
const browserDir = join(packagesDir, 'browser-check');
const browserReport = join(browserDir, '.vitest-result.json');
// A report left from an earlier run must not be counted as this run's.
for (const report of reports) rmSync(report.file, { force: true });
rmSync(browserReport, { force: true });

// --continue: one package failing must not stop the others (their counts belong in the summary).
const turbo = spawnSync('pnpm', ['exec', 'turbo', 'run', 'test', '--continue', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
});

let passed = 0;
let failed = 0;
let skipped = 0;
/** Adds one package's vitest JSON report to the totals; a missing report is one failure. Returns its failures. */
function count(file, name) {
  if (!existsSync(file)) {
    console.error(`no test report from ${name}: its test run crashed or did not start`);
    failed += 1;
    return 1;
  }
  const result = JSON.parse(readFileSync(file, 'utf8'));
  // A suite that fails to load (syntax error, failed import) counts no test but fails the file.
  const unloaded = result.testResults.filter((suite) => suite.status === 'failed' && suite.assertionResults.length === 0).length;
  passed += result.numPassedTests;
  failed += result.numFailedTests + unloaded;
  skipped += result.numPendingTests + (result.numTodoTests ?? 0);
  return result.numFailedTests + unloaded;
}
for (const report of reports) {
  if (report.dir === browserDir) continue;
  const manifest = JSON.parse(readFileSync(join(report.dir, 'package.json'), 'utf8'));
  if (!manifest.scripts?.test) continue;
  count(report.file, manifest.name);
}
// The reference must build with no warning (every export documented, every link valid): a
// warning fails `pnpm run docs`, and counts here as one failed test.
const docs = spawnSync('pnpm', ['run', 'docs'], { cwd: root, stdio: 'inherit', env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } });
if (docs.status === 0) {
  passed += 1;
} else {
  console.error('*** pnpm run docs failed: TypeDoc warned (an undocumented export? a broken link?); see above ***');
  failed += 1;
}
// The browser checks: the IOVA map pictures and the docs site just built, in headless Chromium.
// Skipped loudly (by the suite) where Chromium cannot run; CI=true makes that a failure.
rmSync(browserReport, { force: true });
// Its workspace dependencies (@ioas/view, core, backend-sim) built, whatever --filter turbo had.
spawnSync('pnpm', ['exec', 'turbo', 'run', 'build', '--filter=@ioas/browser-check^...', '--output-logs=errors-only'], { cwd: root, stdio: 'inherit', env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } });
const browser = spawnSync('pnpm', ['--filter', '@ioas/browser-check', 'test:browser'], { cwd: root, stdio: 'inherit', env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' } });
if (count(browserReport, '@ioas/browser-check (test:browser)') === 0 && browser.status !== 0 && existsSync(browserReport)) {
  // vitest failed with no failed test in its report (an unhandled error, say): still a failure.
  console.error(`*** the browser checks exited with status ${browser.status} but reported no failed test; see above ***`);
  failed += 1;
}
// The real-kernel lanes (QEMU guests): run wherever they can (root on Debian); skip loudly
// elsewhere; CI sets IOAS_REQUIRE_KERNEL=1 so that a machine that cannot run them fails.
const { cannotRun, runKernelLanes } = await import('./run-kernel-tests.mjs');
const reasons = process.env.IOAS_SKIP_KERNEL === '1' ? ['IOAS_SKIP_KERNEL=1'] : cannotRun();
if (reasons.length === 0) {
  const kernel = await runKernelLanes();
  passed += kernel.passed;
  failed += kernel.failed;
  skipped += kernel.skipped;
} else if (process.env.IOAS_REQUIRE_KERNEL === '1') {
  console.error(`*** the real-kernel tests are required here (IOAS_REQUIRE_KERNEL=1) but cannot run: ${reasons.join('; ')} ***`);
  failed += 1;
} else {
  console.warn(`\n*** SKIPPING the real-kernel tests (QEMU guests): ${reasons.join('; ')}. Run \`pnpm test:kernel\` as root on Debian. ***\n`);
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(turbo.status !== 0 || failed > 0 ? 1 : 0);
