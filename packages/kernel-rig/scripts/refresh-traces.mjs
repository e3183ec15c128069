// Checks in the traces and golden transcripts the last `pnpm test:kernel` recorded on each lane
// (src/trace.test.ts and src/fidelity/fidelity.test.ts leave them in the results share):
// packages/trace replays the traces, and src/fidelity/transcripts.test.ts the transcripts, on the
// matching preset in `pnpm test`, on any machine. Run after the lanes:
//   node packages/kernel-rig/scripts/refresh-traces.mjs
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cache = process.env.IOAS_RIG_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ioas-rig');

/** Copies each lane's result files named like `pattern` into `target`, `keep` choosing the bytes kept; returns how many. */
function checkIn(what, pattern, target, keep = (bytes) => bytes) {
  mkdirSync(target, { recursive: true });
  let copied = 0;
  for (const lane of ['x86', 'arm64', 'iommufd']) {
    const results = join(cache, 'results', lane);
    const files = existsSync(results) ? readdirSync(results).filter((file) => pattern.test(file)) : [];
    if (files.length === 0) console.warn(`lane ${lane}: no ${what} in ${results} (run \`pnpm test:kernel\` first)`);
    for (const file of files) {
      const bytes = keep(readFileSync(join(results, file)));
      writeFileSync(join(target, file), bytes);
      console.log(`${lane}: ${file} (${(bytes.length / 1024).toFixed(1)} KiB)`);
      copied++;
    }
  }
  console.log(`${copied} ${what}s in ${target}`);
  return copied;
}

// The guest writes traces onto a 9p share, where a mapped file's closing truncate does not reach the
// host: a trace recorded with `format: 'lines'` keeps NUL bytes after its last line (the reader's
// end), so cut there. (stop() renders a journal into a new file and renames it over the old one,
// which does reach the host whole.)
const traces = checkIn('trace', /^trace-.*\.jsonl$/, fileURLToPath(new URL('../../trace/src/__fixtures__/traces/', import.meta.url)), (bytes) => {
  const end = bytes.indexOf(0);
  return end < 0 ? bytes : bytes.subarray(0, end);
});
// The fidelity differential's golden transcripts (src/fidelity/fidelity.test.ts writes them; the
// simulator replays them in src/fidelity/transcripts.test.ts).
const transcripts = checkIn('transcript', /^transcript-.*\.json$/, fileURLToPath(new URL('../fixtures/transcripts/', import.meta.url)));
process.exit(traces === 0 || transcripts === 0 ? 1 : 0);
