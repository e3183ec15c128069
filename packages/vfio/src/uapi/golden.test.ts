// Golden tests: a C program, generated from the TypeScript tables and compiled at test time against
// the real kernel headers, prints every number, size and offset we use; the tables must match it
// exactly. VFIO against the system's /usr/include/linux/vfio.h (6.1); iommufd and the VFIO cdev
// structs against Linux 6.12 headers fetched by scripts/fetch-linux-headers.sh (bookworm's 6.1
// headers have no iommufd.h). Without a C compiler or those headers the test fails in CI and skips
// loudly elsewhere.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as iommufd from './iommufd.js';
import { ioctlNumber } from './ioctl-number.js';
import * as vfio from './vfio.js';

const compiler = ['cc', 'gcc'].find((name) => spawnSync(name, ['--version']).status === 0);
const headers612 = process.env.IOAS_LINUX_HEADERS ?? join(import.meta.dirname, '../../.headers/usr/include');
const inCi = process.env.CI === 'true' || process.env.CI === '1';

/** Fails in CI, skips with a loud reason elsewhere. */
function requirement(ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (inCi) throw new Error(`golden test cannot run in CI: ${reason}`);
  console.warn(`\n*** SKIPPING golden ABI test: ${reason} ***\n`);
  return false;
}

type Table = Record<string, number>;

/** Expected values and the C expressions that must print them. */
function expectations(module: Record<string, unknown>, nrTable: Record<string, number>, structs: (name: string) => boolean): [string, string, number][] {
  const rows: [string, string, number][] = [];
  for (const [name, nr] of Object.entries(nrTable)) rows.push([name, name, ioctlNumber(nr, 'generic')]);
  for (const [name, value] of Object.entries(module)) {
    if (typeof value === 'number' && /^(VFIO|IOMMU)_/.test(name) && !['VFIO_TYPE', 'VFIO_BASE'].includes(name)) rows.push([name, name, value]);
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && /^(vfio|iommu)_/.test(name) && structs(name)) {
      for (const [field, offset] of Object.entries(value as Table)) {
        if (field === 'minsz') continue;
        rows.push([`${name}.${field}`, field === 'sizeof' ? `sizeof(struct ${name})` : `offsetof(struct ${name}, ${field})`, offset]);
      }
    }
  }
  return rows;
}

function compileAndRun(rows: [string, string, number][], includes: string[], extraFlags: string[]): Map<string, number> {
  const directory = mkdtempSync(join(tmpdir(), 'ioas-golden-'));
  const source = [
    '#include <stdio.h>',
    '#include <stddef.h>',
    ...includes.map((header) => `#include <${header}>`),
    'int main(void) {',
    ...rows.map(([label, expression]) => `  printf("%s %llu\\n", "${label}", (unsigned long long)(${expression}));`),
    '  return 0;',
    '}',
  ].join('\n');
  writeFileSync(join(directory, 'golden.c'), source);
  execFileSync(compiler!, [...extraFlags, '-o', join(directory, 'golden'), join(directory, 'golden.c')], { stdio: 'pipe' });
  const output = execFileSync(join(directory, 'golden'), { encoding: 'utf8' });
  return new Map(output.trim().split('\n').map((line) => {
    const [label, value] = line.split(' ');
    return [label!, Number(value)];
  }));
}

const cdevStructs = new Set(['vfio_device_bind_iommufd', 'vfio_device_attach_iommufd_pt', 'vfio_device_detach_iommufd_pt']);
const cdevNumbers = ['VFIO_DEVICE_BIND_IOMMUFD', 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', 'VFIO_DEVICE_DETACH_IOMMUFD_PT'];

describe('golden ABI: TypeScript layouts against the C compiler', () => {
  it('matches linux/vfio.h of this system (6.1) for every VFIO number, size and offset', () => {
    if (!requirement(compiler !== undefined, 'no C compiler (cc/gcc) on this machine')) return;
    if (!requirement(existsSync('/usr/include/linux/vfio.h'), '/usr/include/linux/vfio.h is missing (install linux-libc-dev)')) return;
    const numbers = Object.fromEntries(Object.entries(vfio.VFIO_NR).filter(([name]) => !cdevNumbers.includes(name)));
    const rows = expectations(vfio, numbers, (name) => !cdevStructs.has(name));
    const actual = compileAndRun(rows, ['linux/vfio.h'], []);
    expect(rows.length).toBeGreaterThan(80);
    for (const [label, , value] of rows) expect(actual.get(label), label).toBe(value);
  });

  it('matches Linux 6.12 linux/iommufd.h and the VFIO cdev structs', () => {
    if (!requirement(compiler !== undefined, 'no C compiler (cc/gcc) on this machine')) return;
    if (!requirement(existsSync(join(headers612, 'linux/iommufd.h')), `no 6.12 headers in ${headers612}: run packages/vfio/scripts/fetch-linux-headers.sh`)) return;
    const cdev = Object.fromEntries(Object.entries(vfio.VFIO_NR).filter(([name]) => cdevNumbers.includes(name)));
    const rows = [
      ...expectations(iommufd, iommufd.IOMMUFD_NR, () => true),
      ...expectations({ ...Object.fromEntries([...cdevStructs].map((name) => [name, (vfio as Record<string, unknown>)[name]])) }, cdev, () => true),
    ];
    // -I directories come before the system's, so <linux/...> resolves to the 6.12 headers.
    const actual = compileAndRun(rows, ['linux/vfio.h', 'linux/iommufd.h'], ['-I', headers612]);
    expect(rows.length).toBeGreaterThan(50);
    for (const [label, , value] of rows) expect(actual.get(label), label).toBe(value);
  });

  it('encodes PowerPC ioctl numbers with the _IOC_NONE bit (kernel-rules.md#ioctl-numbers-and-the-powerpc-direction-bit)', () => {
    expect(ioctlNumber(vfio.VFIO_NR.VFIO_IOMMU_MAP_DMA, 'powerpc')).toBe(0x2000_3b71);
    expect(ioctlNumber(vfio.VFIO_NR.VFIO_IOMMU_MAP_DMA)).toBe(0x3b71);
  });
});
