import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { IoasError, type Container } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { CONFORMANCE_GROUPS, conformanceSuite, type ConformanceRunner, type ConformanceTarget } from './index.js';

/** A runner that records what the suite declares (and the assertions its tests make) instead of running it. */
function recorder() {
  const path: string[] = [];
  const blocks: { title: string; skipped: boolean }[] = [];
  const tests = new Map<string, () => Promise<void>>();
  const assertions: unknown[] = [];
  const block = (skipped: boolean) => (title: string, body: () => void) => {
    blocks.push({ title: [...path, title].join(' > '), skipped });
    path.push(title);
    body();
    path.pop();
  };
  const runner: ConformanceRunner = {
    describe: Object.assign(block(false), { skip: block(true) }),
    it: (title, body) => void tests.set([...path, title].join(' > '), body),
    expect: (actual) => {
      assertions.push(actual);
      return expect(actual);
    },
  };
  return { runner, blocks, tests, assertions };
}

const noTarget = {} as ConformanceTarget;

describe('conformanceSuite', () => {
  it('declares its eleven groups in order, one block each, inside one block named after the target', () => {
    const { runner, blocks, tests } = recorder();
    conformanceSuite(runner, 'fake', noTarget);
    expect(blocks).toEqual([{ title: 'ioas conformance: fake', skipped: false }, ...CONFORMANCE_GROUPS.map((group) => ({ title: `ioas conformance: fake > ${group}`, skipped: false }))]);
    const perGroup = Object.fromEntries(CONFORMANCE_GROUPS.map((group) => [group, [...tests.keys()].filter((title) => title.startsWith(`ioas conformance: fake > ${group} > `)).length]));
    expect(perGroup).toEqual({ geometry: 2, map: 3, errors: 5, allocate: 2, windows: 1, msi: 2, dma: 2, lifecycle: 1, rollback: 1, hotPlug: 5, dirty: 4 });
  });

  it('declares the groups named in `skip` with describe.skip, and only those', () => {
    const { runner, blocks } = recorder();
    conformanceSuite(runner, 'fake', noTarget, { skip: ['rollback', 'dma'] });
    expect(blocks.filter((block) => block.skipped).map((block) => block.title)).toEqual(['ioas conformance: fake > dma', 'ioas conformance: fake > rollback']);
  });

  it('asserts with the runner’s expect', async () => {
    const { runner, tests, assertions } = recorder();
    const container = {
      capabilities: { settableGeometry: false },
      setGeometry: () => {
        throw new IoasError('unsupported', 'setGeometry: not settable');
      },
      [Symbol.dispose]: () => undefined,
    } as unknown as Container;
    conformanceSuite(runner, 'fake', { ...noTarget, open: async () => container });
    await tests.get('ioas conformance: fake > geometry > refuses setGeometry unless the backend declares a settable geometry')!();
    expect(assertions).toEqual(['unsupported']);
  });

  it('does not import a test runner', () => {
    const sources = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.test.ts') ? [] : [join(dir, entry.name)]));
    const src = new URL('.', import.meta.url).pathname;
    for (const file of sources(src)) expect(readFileSync(file, 'utf8'), file).not.toMatch(/^import\b.*from '(vitest|@jest\/globals|node:test)'/m);
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(manifest.dependencies).not.toHaveProperty('vitest');
    expect(manifest.peerDependencies ?? {}).not.toHaveProperty('vitest');
  });
});
