// `pnpm test`: every package's vitest suite through turbo, then one closing line
// `N passed, N failed, N skipped` summed from the JSON report each package writes
// (turbo prefixes every line of package output, so the per-package summaries are hard to read).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const packagesDir = join(root, 'packages');
const reports = readdirSync(packagesDir).map((name) => ({ name, file: join(packagesDir, name, '.vitest-result.json') }));
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
  const manifest = JSON.parse(readFileSync(join(packagesDir, report.name, 'package.json'), 'utf8'));
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
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(turbo.status !== 0 || failed > 0 ? 1 : 0);
