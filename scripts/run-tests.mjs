// `pnpm test`: every package's vitest suite through turbo, then one closing line
// `N passed, N failed, N skipped` summed from the JSON report each package writes
// (turbo prefixes every line of package output, so the per-package summaries are hard to read).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const packagesDir = join(root, 'packages');
// Every workspace package: packages/* and examples/.
const reports = [...readdirSync(packagesDir).map((name) => join(packagesDir, name)), join(root, 'examples')].map((dir) => ({ dir, file: join(dir, '.vitest-result.json') }));
// A report left from an earlier run must not be counted as this run's.
for (const report of reports) rmSync(report.file, { force: true });

// --continue: one package failing must not stop the others (their counts belong in the summary).
const turbo = spawnSync('pnpm', ['exec', 'turbo', 'run', 'test', '--continue', ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, TURBO_TELEMETRY_DISABLED: '1' },
});

let passed = 0;
let failed = 0;
let skipped = 0;
for (const report of reports) {
  const manifest = JSON.parse(readFileSync(join(report.dir, 'package.json'), 'utf8'));
  if (!manifest.scripts?.test) continue;
  if (!existsSync(report.file)) {
    console.error(`no test report from ${manifest.name}: its test run crashed or did not start`);
    failed += 1;
    continue;
  }
  const result = JSON.parse(readFileSync(report.file, 'utf8'));
  passed += result.numPassedTests;
  failed += result.numFailedTests;
  skipped += result.numPendingTests + (result.numTodoTests ?? 0);
  // A suite that fails to load (syntax error, failed import) counts no test but fails the file.
  failed += result.testResults.filter((file) => file.status === 'failed' && file.assertionResults.length === 0).length;
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
