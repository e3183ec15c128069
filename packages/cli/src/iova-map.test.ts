// `ioas map`, `ioas plan --svg` and the pictures' failure paths, through the built binary.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HEALTHY_HOST, writeHostTree, type SysfsCapture } from '@ioas/vfio/testing';
import { afterAll, describe, expect, it } from 'vitest';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const examples = fileURLToPath(new URL('../examples/', import.meta.url));
const directory = mkdtempSync(join(tmpdir(), 'ioas-map-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

function ioas(args: string[]) {
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('ioas map', () => {
  it('draws the arm-smmuv3 example as HTML: the MSI hole between the mappings, and the free space', () => {
    const file = join(directory, 'map.html');
    const run = ioas(['map', '--platform', 'arm-smmuv3', '--html', file]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe(`wrote ${file} (HTML, arm-smmuv3 (type1) after the scenario)\n`);
    const html = readFileSync(file, 'utf8');
    expect(html).toMatch(/^<!doctype html>/i);
    const kinds = [...html.matchAll(/<g [^>]*class="region"[^>]*data-kind="([^"]+)"[^>]*data-start="([^"]+)"/g)].map((match) => `${match[1]}@${match[2]}`);
    expect(kinds).toEqual(expect.arrayContaining(['mapped@0x0', 'msi-doorbell@0x8000000', 'mapped@0x8100000']));
    expect(kinds.indexOf('msi-doorbell@0x8000000')).toBeGreaterThan(kinds.indexOf('mapped@0x0'));
    expect(kinds.indexOf('mapped@0x8100000')).toBeGreaterThan(kinds.indexOf('msi-doorbell@0x8000000'));
    expect(html).toMatch(/class="gap-label"[^>]*>[^<]*TiB/);
  });

  it('prints an 80-column picture on the terminal, the snapshot as JSON, and reads the JSON back', () => {
    const text = ioas(['map', '--platform', 'x86-vtd']);
    expect(text.status, text.stderr).toBe(0);
    for (const line of text.stdout.trimEnd().split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(text.stdout).toMatch(/^0x00fee00000 +1 MiB .* MSI doorbell 0 \(hardware\)/m);
    const json = ioas(['map', '--platform', 'x86-vtd', '--json']);
    expect(json.status).toBe(0);
    const snapshot = JSON.parse(json.stdout) as { version: number; reserved: { start: string; kind: string }[] };
    expect(snapshot.version).toBe(1);
    expect(snapshot.reserved).toEqual([expect.objectContaining({ start: '0xfee00000', kind: 'msi' })]);
    const saved = join(directory, 'x86.json');
    writeFileSync(saved, json.stdout);
    const again = ioas(['map', '--snapshot', saved]);
    expect(again).toMatchObject({ status: 0, stdout: text.stdout });
  });

  it('draws a scenario file, and still draws the container when a step goes wrong (exit 1)', () => {
    const scenario = join(directory, 'wrong.yaml');
    writeFileSync(scenario, 'platform: arm-smmuv3\nsteps:\n  - map: { iova: 0x100000, size: 2M }\n  - map: { iova: 0x8000000, size: 4K }\n');
    const svg = join(directory, 'wrong.svg');
    const run = ioas(['map', '--scenario', scenario, '--svg', svg]);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('step 2 (map) ended with reserved, which the scenario did not expect');
    expect(readFileSync(svg, 'utf8')).toMatch(/data-kind="mapped"[^>]*data-start="0x100000"/);
    expect(ioas(['map', '--scenario', join(examples, 'p4080.yaml'), '--platform', 'p4080'])).toMatchObject({ status: 0 });
  });

  it("draws a host group's reserved and usable ranges from sysfs", () => {
    const root = mkdtempSync(join(directory, 'sysfs-'));
    const capture = JSON.parse(readFileSync(new URL('../../kernel-rig/fixtures/sysfs-x86.json', import.meta.url), 'utf8')) as SysfsCapture;
    writeHostTree(root, capture, HEALTHY_HOST);
    const run = ioas(['map', '--group', '3', '--aperture-bits', '39', '--json', '--sysfs-root', root]);
    expect(run.status, run.stderr).toBe(0);
    const snapshot = JSON.parse(run.stdout) as { title: string; aperture: unknown; usable: unknown[]; reserved: { kind: string }[] };
    expect(snapshot.title).toBe('IOMMU group 3 (host, 39-bit aperture)');
    expect(snapshot.aperture).toEqual({ start: '0x0', last: '0x7fffffffff' });
    expect(snapshot.reserved.map((region) => region.kind)).toContain('msi');
    expect(snapshot.usable.length).toBeGreaterThan(1);
    expect(ioas(['map', '--group', '99', '--sysfs-root', root])).toMatchObject({ status: 1, stderr: expect.stringContaining('no IOMMU group 99') });
  });

  it('refuses bad input clearly and writes nothing', () => {
    const bad = join(directory, 'bad.json');
    const cases: [string[], number, RegExp, (() => void)?][] = [
      [['map'], 2, /give one source: --platform and\/or --scenario/],
      [['map', '--platform', 'arm-smmuv3', '--group', '3'], 2, /give one source.*not several/],
      [['map', '--platform', 'sparc'], 2, /argument 'sparc' is invalid/],
      [['map', '--platform', 'arm-smmuv3', '--json', '--svg', join(directory, 'x.svg')], 2, /cannot be combined/],
      [['map', '--snapshot', bad], 2, /bad\.json is not JSON/, () => writeFileSync(bad, '{"version": 1,')],
      [['map', '--snapshot', bad], 2, /bad\.json: parseSnapshot: not a container snapshot: .*aperture/, () => writeFileSync(bad, JSON.stringify({ version: 1, title: 't' }))],
      [['map', '--snapshot', bad], 2, /version 7 is not 1/, () => writeFileSync(bad, JSON.stringify({ version: 7 }))],
      [['map', '--snapshot', directory], 2, /is a directory/],
      [['map', '--snapshot', join(directory, 'missing.json')], 2, /cannot read .*missing\.json/],
      [['map', '--platform', 'arm-smmuv3', '--svg', join(directory, 'no', 'such', 'dir.svg')], 1, /cannot write .*dir\.svg: its directory does not exist \(ENOENT\)/],
      [['map', '--platform', 'arm-smmuv3', '--html', directory], 1, /cannot write .*: it is a directory \(EISDIR\)/],
    ];
    for (const [args, status, stderr, prepare] of cases) {
      prepare?.();
      const run = ioas(args);
      expect(run.status, `${args.join(' ')}: ${run.stderr}`).toBe(status);
      expect(run.stderr, args.join(' ')).toMatch(stderr);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
    expect(existsSync(join(directory, 'x.svg'))).toBe(false);
  });

  it('refuses a file it may not write (as a user other than root would meet it)', () => {
    if (process.getuid?.() === 0) return; // root writes anywhere: the ENOENT and EISDIR rows above cover the path
    const locked = join(directory, 'locked');
    mkdirSync(locked);
    chmodSync(locked, 0o500);
    expect(ioas(['map', '--platform', 'x86-vtd', '--svg', join(locked, 'a.svg')])).toMatchObject({ status: 1, stderr: expect.stringContaining('permission denied (EACCES)') });
  });
});

describe('ioas plan --svg / --html', () => {
  it("draws seed 000's plan and still prints the plan", () => {
    const svg = join(directory, 'plan.svg');
    const html = join(directory, 'plan.html');
    const run = ioas(['plan', '--memory', '256M', '--page', '64M', '--msi-banks', '3', '--svg', svg, '--html', html]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('8 windows of 64 MiB');
    expect(run.stdout).toContain(`wrote ${svg} (SVG, window plan: 8 windows of 64 MiB)`);
    const picture = readFileSync(svg, 'utf8');
    expect(picture).toMatch(/^<svg /);
    expect([...picture.matchAll(/class="region" data-kind="msi-doorbell"/g)]).toHaveLength(3);
    expect(picture).toMatch(/data-kind="window-disabled"[^>]*data-start="0x1c000000"/);
    expect(readFileSync(html, 'utf8')).toContain(picture.slice(0, 40));
    const json = ioas(['plan', '--memory', '256M', '--page', '64M', '--msi-banks', '3', '--json', '--svg', svg]);
    expect(JSON.parse(json.stdout)).toMatchObject({ windowCount: 8 });
  });
});
