// Traces recorded on real kernels by the rig (packages/kernel-rig/src/trace.test.ts; refreshed with
// `node packages/kernel-rig/scripts/refresh-traces.mjs`), replayed on the matching preset on any
// machine: a change that makes the simulator answer one of those calls differently fails here,
// where QEMU cannot run as well as where it can.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PlatformName, SimKernel } from '@ioas/backend-sim';
import { describe, expect, it } from 'vitest';
import { readTraceFile } from './read-trace.js';
import { replayTrace } from './replay.js';
import { kernelOfRelease } from './replay-platform.js';

const directory = fileURLToPath(new URL('./__fixtures__/traces/', import.meta.url));
/** Each lane, the kernel it boots and the preset that stands for its machine (kernel-rig's targets.ts). */
const LANES: Record<string, { kernel: RegExp; profile: SimKernel; platform: PlatformName }> = {
  x86: { kernel: /^6\.1\./, profile: '6.1', platform: 'x86-vtd' },
  arm64: { kernel: /^6\.1\./, profile: '6.1', platform: 'arm-smmuv3' },
  iommufd: { kernel: /^6\.12\./, profile: '6.12', platform: 'x86-vtd' },
};
const traces = readdirSync(directory).filter((file) => file.endsWith('.jsonl'));

describe('the kernel profile a recorded release replays on', () => {
  it('is 6.12 from 6.12 on, 6.1 before it, and the preset\'s for a simulator recording', () => {
    expect(['6.12.118-1~deb12u1', '6.13.0', '7.0.1', '6.1.0-57-amd64', '6.6.30', '5.15.0'].map(kernelOfRelease)).toEqual(['6.12', '6.12', '6.12', '6.1', '6.1', '6.1']);
    expect(kernelOfRelease('sim')).toBeUndefined();
  });
});

describe('traces recorded on real kernels replay on their presets', () => {
  it('holds an edu driver trace and a differential trace from every lane', () => {
    for (const lane of Object.keys(LANES)) {
      for (const run of ['edu', 'differential']) expect(traces, `run the lanes, then node packages/kernel-rig/scripts/refresh-traces.mjs`).toContain(`trace-${lane}-${run}.jsonl`);
    }
  });

  it.each(traces)('%s: every call answered as the kernel did', (file) => {
    const lane = /^trace-(\w+)-/.exec(file)![1]!;
    const { kernel, profile, platform } = LANES[lane]!;
    const trace = readTraceFile(`${directory}${file}`);
    expect(trace.header.syscalls).toBe('libc');
    expect(trace.header.kernel).toMatch(kernel);
    const report = replayTrace(trace, { platform });
    expect(report.divergence).toBeUndefined();
    // Replayed on the recorded kernel's profile, where 6.1 and 6.12 answer differently.
    expect(report).toMatchObject({ ok: true, replayed: trace.calls.length, kernel: profile });
    expect(report.replayed).toBeGreaterThan(20);
  });
});
