// Traces recorded on real kernels by the rig (packages/kernel-rig/src/trace.test.ts; refreshed with
// `node packages/kernel-rig/scripts/refresh-traces.mjs`), replayed on the matching preset on any
// machine: a change that makes the simulator answer one of those calls differently fails here,
// where QEMU cannot run as well as where it can.
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { PlatformName } from '@ioas/backend-sim';
import { describe, expect, it } from 'vitest';
import { readTraceFile } from './read-trace.js';
import { replayTrace } from './replay.js';

const directory = fileURLToPath(new URL('./__fixtures__/traces/', import.meta.url));
/** Each lane, the kernel it boots and the preset that stands for its machine (kernel-rig's targets.ts). */
const LANES: Record<string, { kernel: RegExp; platform: PlatformName }> = {
  x86: { kernel: /^6\.1\./, platform: 'x86-vtd' },
  arm64: { kernel: /^6\.1\./, platform: 'arm-smmuv3' },
  iommufd: { kernel: /^6\.12\./, platform: 'x86-vtd' },
};
const traces = readdirSync(directory).filter((file) => file.endsWith('.jsonl'));

describe('traces recorded on real kernels replay on their presets', () => {
  it('holds an edu driver trace and a differential trace from every lane', () => {
    for (const lane of Object.keys(LANES)) {
      for (const run of ['edu', 'differential']) expect(traces, `run the lanes, then node packages/kernel-rig/scripts/refresh-traces.mjs`).toContain(`trace-${lane}-${run}.jsonl`);
    }
  });

  it.each(traces)('%s: every call answered as the kernel did', (file) => {
    const lane = /^trace-(\w+)-/.exec(file)![1]!;
    const { kernel, platform } = LANES[lane]!;
    const trace = readTraceFile(`${directory}${file}`);
    expect(trace.header.syscalls).toBe('libc');
    expect(trace.header.kernel).toMatch(kernel);
    const report = replayTrace(trace, { platform });
    expect(report.divergence).toBeUndefined();
    expect(report).toMatchObject({ ok: true, replayed: trace.calls.length });
    expect(report.replayed).toBeGreaterThan(20);
  });
});
