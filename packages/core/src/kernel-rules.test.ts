// Every citation of a kernel rule resolves inside the repository: each `kernel-rules.md#anchor`
// names a heading of docs/kernel-rules.md, and nothing points at notes that live outside the
// repository (the fact sheets the rules were first gathered in).
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const rulesPath = join(root, 'docs', 'kernel-rules.md');
const self = fileURLToPath(import.meta.url);

const skippedDirectories = new Set(['node_modules', 'dist', '.git', '.turbo', 'coverage']);
const scannedExtensions = /\.(?:[cm]?[jt]s|tsx|md|sh|c|h|json|ya?ml)$/;

/** Scripts without an extension (`.ci/run`, `bin/` entries): text with no NUL byte. */
function isExtensionlessText(path: string, name: string): boolean {
  return !name.slice(1).includes('.') && !readFileSync(path).includes(0);
}

/** Every text file of the repository that may carry a citation: source, scripts, docs. */
function scannedFiles(directory = root): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(directory, { withFileTypes: true })) {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) {
      if (skippedDirectories.has(entry.name) || relative(root, path) === join('docs', 'api')) continue;
      files.push(...scannedFiles(path));
    } else if (entry.isFile() && (scannedExtensions.test(entry.name) || isExtensionlessText(path, entry.name)) && !entry.name.startsWith('.vitest-result') && path !== self) {
      files.push(path);
    }
  }
  return files;
}

/** GitHub's heading slug: lowercase, punctuation dropped, spaces to `-`, repeats numbered. */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading === null) continue;
    const base = heading[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    slugs.add(count === 0 ? base : `${base}-${count}`);
  }
  return slugs;
}

const outsideReferences = [
  'shared/facts',
  'vfio-type1.md',
  'iommufd.md',
  'pamu-sdk-abi.md',
  'sysfs-and-platforms.md',
  'real-kernel-rig.md',
  'toolchain.md',
  '§',
];

describe('kernel rule citations', () => {
  const files = scannedFiles();
  const rules = readFileSync(rulesPath, 'utf8');
  const anchors = headingSlugs(rules);

  it('finds the rules and the files that cite them', () => {
    expect(anchors.size).toBeGreaterThan(50);
    expect(files.length).toBeGreaterThan(50);
  });

  it('resolves every docs/kernel-rules.md#anchor to a heading', () => {
    const unresolved: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const citations = [...text.matchAll(/kernel-rules\.md#([\w-]+)/g)].map((match) => match[1]!);
      // The rules link to each other with bare `(#anchor)` links.
      if (file === rulesPath) citations.push(...[...text.matchAll(/\]\(#([\w-]+)\)/g)].map((match) => match[1]!));
      for (const anchor of citations) {
        if (!anchors.has(anchor)) unresolved.push(`${relative(root, file)}: #${anchor}`);
      }
    }
    expect(unresolved, 'citations of headings that docs/kernel-rules.md does not have').toEqual([]);
  });

  it('points nowhere outside the repository', () => {
    const outside: string[] = [];
    for (const file of files) {
      const lines = readFileSync(file, 'utf8').split('\n');
      lines.forEach((line, index) => {
        const found = outsideReferences.filter((reference) => line.includes(reference));
        if (found.length > 0) outside.push(`${relative(root, file)}:${index + 1}: ${found.join(', ')}`);
      });
    }
    expect(outside, 'references to notes outside the repository: cite docs/kernel-rules.md#<anchor> or the kernel file').toEqual([]);
  });
});
