// In-guest benchmark (real kernel, same boot): map+unmap of 4 KiB through the SDK (Container over
// backend-smmu, type1v2) against the same loop in C compiled against the system headers. Under TCG
// absolute times mean nothing, and the ratio is inflated (TCG slows the SDK's JavaScript far more
// than the kernel's short ioctl path: docs/performance.md says why), so it is a regression alarm,
// not a target: a jump between runs of a lane means something changed. The SDK's own cost is
// measured against the bare ioctls by packages/backend-smmu/bench. Run by the rig after the tests:
// node packages/kernel-rig/bench/map-unmap.mjs
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Container } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, libcSyscalls, Sysfs } from '@ioas/vfio';

const PAIRS = Number(process.env.IOAS_BENCH_PAIRS ?? 20000);
const syscalls = libcSyscalls();
const edu = readFileSync('/tmp/results/edu-address', 'utf8').trim();
const group = new Sysfs(syscalls).deviceGroup(edu);

function median(values) {
  return [...values].sort((a, b) => a - b)[values.length >> 1];
}

let c;
try {
  execFileSync('cc', ['-O2', '-o', '/tmp/map-unmap', new URL('./map-unmap.c', import.meta.url).pathname], { stdio: 'pipe' });
  c = median([0, 1, 2].map(() => Number(execFileSync('/tmp/map-unmap', [String(group), String(PAIRS)], { encoding: 'utf8' }))));
} catch (error) {
  console.log(`C baseline unavailable here (${error.message.split('\n')[0]}): no compiler in this guest's userland`);
}

const container = await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [group] });
const memory = allocateDmaMemory(syscalls, 0x1000n);
const request = { iova: 0x100000n, memory: { address: memory.address, length: 0x1000n } };
const range = { iova: 0x100000n, size: 0x1000n };
const loop = (pairs) => {
  const start = process.hrtime.bigint();
  for (let index = 0; index < pairs; index++) {
    container.map(request);
    container.unmap(range);
  }
  return Number(process.hrtime.bigint() - start) / pairs;
};
loop(2000);
const sdk = median([0, 1, 2].map(() => loop(PAIRS)));
container.close();
console.log(`map+unmap of 4 KiB on the real kernel (${process.env.IOAS_REAL_KERNEL}), ${PAIRS} pairs, median of 3:`);
if (c !== undefined) console.log(`  C loop:                 ${c.toFixed(0)} ns per pair`);
console.log(`  SDK (Container, smmu):  ${sdk.toFixed(0)} ns per pair`);
if (c !== undefined) console.log(`  ratio SDK / C: ${(sdk / c).toFixed(2)} (a regression alarm under TCG, not a target; earlier figures in docs/performance.md)`);
