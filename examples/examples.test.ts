// Every example, run as a user runs it (node examples/<name>.mjs), on the simulator.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

function run(name: string, args: string[] = []) {
  const result = spawnSync(process.execPath, [fileURLToPath(new URL(`./${name}`, import.meta.url)), ...args], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/**
 * Runs an example a guide in docs/ shows: the guide's first js block must be the file exactly, the
 * example must exit 0, and the guide's 'It prints:' block must be what it printed. Returns that.
 */
function runGuideExample(guideName: string, name: string): string {
  const guide = readFileSync(new URL(`../docs/${guideName}`, import.meta.url), 'utf8');
  expect(/```js\n([\s\S]*?)```/.exec(guide)![1]).toBe(readFileSync(new URL(`./${name}`, import.meta.url), 'utf8'));
  const { status, stdout, stderr } = run(name);
  expect(status, stderr).toBe(0);
  expect(guide).toContain('It prints:\n\n```\n' + stdout + '```');
  return stdout;
}

describe('examples, on the simulator', () => {
  it('pamu-window-plan.mjs applies the seed plan', () => {
    const { status, stdout, stderr } = run('pamu-window-plan.mjs');
    expect(status, stderr).toBe(0);
    expect(stdout).toContain('Total aperture: 512 MiB at 0x00000000, 8 windows of 64 MiB');
    expect(stdout).toContain('guest RAM mapped at 0x0-0xfffffff');
    expect(stdout).toContain('MSI bank 2 in the window at 0x18000000: devices write to 0x18000140');
    expect(stdout).toContain('3 MSI banks mapped; translation on: true');
  });

  it('hot-plug.mjs, shown exactly in docs/hot-plug.md, attaches and detaches on a live container', () => {
    const stdout = runGuideExample('hot-plug.md', 'hot-plug.mjs');
    expect(stdout).toContain('attached 0000:00:10.0 in IOMMU group 6');
    expect(stdout).toContain('the first device reads from the NIC');
    expect(stdout).toMatch(/^reserved - attach: IOMMU group 8 with device 0000:00:11.0 would reserve direct region 0x3e000000-0x3effffff .* but mapping 0x0-0x3fffffff lies in it/m);
    expect(stdout).toContain('NIC DMA lands - first device DMA faults');
  });

  it('migration-rehearsal.mjs, shown exactly in docs/migration.md, pre-copies until the dirty set stops shrinking, and every page written is copied after its last write', () => {
    const stdout = runGuideExample('migration.md', 'migration-rehearsal.mjs');
    expect(stdout).toContain('"precision":"precise"');
    expect(stdout).toContain('round 1: copied all 16384 pages');
    expect(stdout).toMatch(/^round 2: \d+ dirty pages in \d+ runs, copied$/m);
    expect(stdout).toMatch(/^stop-and-copy: \d+ pages; \d+ pages copied in all for 16384 of RAM$/m);
    expect(stdout).toContain('destination equals the guest RAM: every page written was copied after its last write');
  });

  it('smmu-guest-ram.mjs maps guest RAM around the MSI window', () => {
    const arm = run('smmu-guest-ram.mjs');
    expect(arm.status, arm.stderr).toBe(0);
    expect(arm.stdout).toContain('reserved 0x8000000-0x80fffff msi');
    expect(arm.stdout).toContain('mapped  0x0-0x7ffffff (128 MiB)');
    expect(arm.stdout).toContain('mapped  0x8100000-0xfffffff (127 MiB)');
    expect(arm.stdout).toContain('skipped 0x8000000-0x80fffff (reserved)');
    expect(arm.stdout).toContain('2 mappings, 255 MiB of 256 MiB mapped');
  });

  it('iova-map.mjs draws the container: text within 80 columns, and an HTML page', () => {
    const directory = mkdtempSync(join(tmpdir(), 'ioas-example-'));
    try {
      const html = join(directory, 'map.html');
      const { status, stdout, stderr } = run('iova-map.mjs', ['--html', html]);
      expect(status, stderr).toBe(0);
      expect(stdout).toContain('my guest');
      expect(stdout).toMatch(/^0x000008000000 +1 MiB .*MSI doorbell 0 \(kernel\)/m);
      for (const line of stdout.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
      expect(stdout).toContain(`wrote ${html}`);
      expect(readFileSync(html, 'utf8')).toMatch(/<svg [\s\S]*data-kind="msi-doorbell"/);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("the guides' pictures in docs/pictures are what the examples draw (never drawn by hand)", async () => {
    const { DOCS_PICTURES, drawDocsPictures } = (await import(new URL('../scripts/docs-pictures.mjs', import.meta.url).href)) as {
      DOCS_PICTURES: { file: string }[];
      drawDocsPictures: (directory: string) => void;
    };
    const directory = mkdtempSync(join(tmpdir(), 'ioas-pictures-'));
    try {
      drawDocsPictures(directory);
      for (const { file } of DOCS_PICTURES) {
        const drawn = readFileSync(join(directory, file), 'utf8');
        expect(drawn).toMatch(/^<svg /);
        const committed = readFileSync(new URL(`../docs/pictures/${file}`, import.meta.url), 'utf8');
        expect(committed, `docs/pictures/${file} is stale: run \`node scripts/docs-pictures.mjs\``).toBe(drawn);
      }
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('field-trace.mjs records a run; ioas replay agrees with it, and names the call of an edited answer', () => {
    const directory = mkdtempSync(join(tmpdir(), 'ioas-trace-'));
    try {
      const trace = join(directory, 'field.jsonl');
      const recorded = run('field-trace.mjs', ['--trace', trace]);
      expect(recorded.status, recorded.stderr).toBe(0);
      expect(recorded.stdout).toMatch(/^\d+ calls recorded in .*field\.jsonl; replay them with: ioas replay /m);
      const ioas = (args: string[]) => spawnSync(process.execPath, [fileURLToPath(new URL('../packages/cli/dist/bin.js', import.meta.url)), ...args], { encoding: 'utf8' });
      // The trace names the simulator it was recorded on: no --platform needed.
      const agreed = ioas(['replay', trace]);
      expect(agreed.status, agreed.stderr).toBe(0);
      expect(agreed.stdout).toMatch(/^\d+ calls replayed, all agree with the simulator \(platform arm-smmuv3\)/);
      // The kernel's answer to the map (iommufd's IOAS_MAP: the simulator offers /dev/iommu), edited:
      // the replay stops at that call.
      const lines = readFileSync(trace, 'utf8').split('\n');
      const index = lines.findIndex((line) => line.includes('"ioctl":"IOMMU_IOAS_MAP"') && line.endsWith('"result":0}'));
      expect(index).toBeGreaterThan(0);
      const call = (JSON.parse(lines[index]!) as { n: number }).n;
      lines[index] = lines[index]!.replace('"result":0}', '"errno":"ENOSPC"}');
      writeFileSync(trace, lines.join('\n'));
      const diverged = ioas(['replay', trace]);
      expect(diverged.status).toBe(1);
      expect(diverged.stdout).toContain(`call ${call} (IOMMU_IOAS_MAP`);
      expect(diverged.stdout).toMatch(/said ENOSPC, the simulator said 0/);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('edu-driver.mjs does a DMA round trip and receives MSIs', () => {
    const { status, stdout, stderr } = run('edu-driver.mjs');
    expect(status, stderr).toBe(0);
    expect(stdout).toContain('0000:00:03.0: edu version 1.0 (id 0x10000ed)');
    expect(stdout).toContain('"copied by the edu device, through the IOMMU, twice"');
    expect(stdout).toMatch(/MSIs received on the eventfd: [12]\n/);
  });
});

describe('the backend-swap testing guide', () => {
  it('shows conformance-on-sim.test.ts exactly (which runs as a test file of its own)', async () => {
    const { readFileSync } = await import('node:fs');
    const guide = readFileSync(new URL('../docs/testing.md', import.meta.url), 'utf8');
    expect(/```ts\n([\s\S]*?)```/.exec(guide)![1]).toBe(readFileSync(new URL('./conformance-on-sim.test.ts', import.meta.url), 'utf8'));
  });
});

describe('the quick start guide', () => {
  it('shows first-container.mjs exactly, and it runs', async () => {
    const { readFileSync } = await import('node:fs');
    const guide = readFileSync(new URL('../docs/quick-start.md', import.meta.url), 'utf8');
    const snippet = /```js\n([\s\S]*?)```/.exec(guide)![1];
    expect(snippet).toBe(readFileSync(new URL('./first-container.mjs', import.meta.url), 'utf8'));
    const { status, stdout, stderr } = run('first-container.mjs');
    expect(status, stderr).toBe(0);
    expect(stdout).toBe(
      [
        'reserved 0x8000000-0x80fffff msi',
        'usable 0x0-0x7ffffff, 0x8100000-0xffffffffffff',
        'mapped 0x0-0x1fffff',
        'hello',
        'reserved - map: failed to map 0x1000 bytes at IOVA 0x8000000: the range overlaps the MSI window 0x8000000-0x80fffff (from sysfs, /sys/kernel/iommu_groups/4/reserved_regions)',
        '',
      ].join('\n'),
    );
  });
});
