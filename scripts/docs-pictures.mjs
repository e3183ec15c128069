// The guides' pictures, drawn by the examples on the simulator (never by hand): the docs build runs
// this before TypeDoc, and examples.test.ts checks that docs/pictures holds what it draws.
//
//   node scripts/docs-pictures.mjs [DIR]     (default: docs/pictures)
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** Each picture: its file name, and the example (with arguments) that draws it. */
export const DOCS_PICTURES = [
  { file: 'p4080-seed-000.svg', example: 'pamu-window-plan.mjs', args: [] },
  { file: 'arm-smmuv3-guest-ram.svg', example: 'smmu-guest-ram.mjs', args: [] },
  { file: 'x86-vtd-guest-ram.svg', example: 'smmu-guest-ram.mjs', args: ['--platform', 'x86-vtd'] },
];

/** Draws every picture into `directory`; throws naming the example that failed. */
export function drawDocsPictures(directory) {
  mkdirSync(directory, { recursive: true });
  for (const picture of DOCS_PICTURES) {
    const run = spawnSync(process.execPath, [join(root, 'examples', picture.example), ...picture.args, '--picture', join(directory, picture.file)], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`examples/${picture.example} ${picture.args.join(' ')} failed (exit ${run.status}) drawing ${picture.file}:\n${run.stderr}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const directory = process.argv[2] ?? join(root, 'docs', 'pictures');
  drawDocsPictures(directory);
  console.log(`drew ${DOCS_PICTURES.length} pictures into ${directory}`);
}
