// A recorded run turned into a scenario: it validates, and runScenario builds the same mappings
// (and windows) the recorded container had at the end; what a scenario cannot say is a comment.
import { runScenario, validateScenario, type Scenario } from '@ioas/backend-sim';
import { ERRNO, IoasError } from '@ioas/core';
import { allocateDmaMemory } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { editCall, findCall, ioasMap, mapDma, recordRun, removeRecordings, request, type RecordedRun } from './__fixtures__/replay-runs.js';
import { readTrace } from './read-trace.js';
import { traceToScenario } from './to-scenario.js';

afterAll(removeRecordings);

const type1 = await recordRun('x86-vtd', 'type1', ({ syscalls, container, opened }) => {
  const memory = allocateDmaMemory(syscalls, 0x10_0000n);
  const first = container.map({ memory, iova: 0x10_0000n });
  container.map({ memory, iova: 0x40_0000n, access: { read: true, write: false } });
  container.map({ memory: { address: memory.address, length: 0x2000n }, iova: 0x100_0000n, access: { read: false, write: true } });
  expect(syscalls.ioctl(opened.get('/dev/vfio/vfio')!, request('VFIO_IOMMU_MAP_DMA'), mapDma(memory.address, 0x10_0000n, 0x1000n))).toBe(-ERRNO.EEXIST);
  container.unmap(first);
  // The IOVA the SDK chooses: a map without one.
  container.map({ memory: { address: memory.address, length: 0x4000n } });
});

const iommufd = await recordRun('arm-smmuv3', 'iommufd', ({ syscalls, container, opened }) => {
  container.createWindow({ start: 0x1000_0000n, size: 0x100_0000n });
  container.createWindow({ start: 0x2000_0000n, size: 0x10_0000n });
  const memory = allocateDmaMemory(syscalls, 0x10_0000n);
  const first = container.map({ memory, iova: 0x1000_0000n });
  container.map({ memory: { address: memory.address, length: 0x8000n }, iova: 0x2000_0000n });
  container.map({ memory: { address: memory.address, length: 0x4000n } });
  expect(syscalls.ioctl(opened.get('/dev/iommu')!, request('IOMMU_IOAS_MAP'), ioasMap(1, memory.address, 0x2000_0000n, 0x1000n))).toBe(-ERRNO.EEXIST);
  container.unmap(first);
});

/** The scenario's text, validated. */
function scenarioOf(run: RecordedRun, options: Parameters<typeof traceToScenario>[1] = {}): { text: string; scenario: Scenario } {
  const text = traceToScenario(readTrace(run.text), options);
  const validation = validateScenario(parse(text));
  if (!validation.ok) throw new Error(`invalid scenario:\n${text}\n${JSON.stringify(validation.issues)}`);
  return { text, scenario: validation.scenario };
}

/** What a snapshot says of the IOVA space that a scenario can reproduce: mapped ranges with access, and windows. */
const space = (snapshot: RecordedRun['snapshot']) => ({ mappings: snapshot.mappings.map(({ iova, access }) => ({ iova, access })), windows: snapshot.windows });

describe('traceToScenario', () => {
  it.each([
    ['type1 on x86-vtd', type1, 'x86-vtd', 'type1'],
    ['iommufd on arm-smmuv3', iommufd, 'arm-smmuv3', 'iommufd'],
  ] as const)('%s: validates and runs to the same mappings', async (_name, run, platform, kernelInterface) => {
    const { scenario } = scenarioOf(run, { platform });
    expect(scenario).toMatchObject({ platform, interface: kernelInterface });
    const result = await runScenario(scenario, { snapshot: true });
    expect(result.ok).toBe(true);
    expect(space(result.snapshot!)).toEqual(space(run.snapshot));
    expect(run.snapshot.mappings.length).toBeGreaterThan(1);
  });

  it('writes maps, unmaps and windows as steps, the IOVA the kernel used, and failed calls as comments', () => {
    const { text } = scenarioOf(type1);
    const failed = findCall(type1.text, (call) => call.errno === 'EEXIST').n as number;
    expect(text).toMatch(/^platform: x86-vtd\ninterface: type1\nsteps:\n/m);
    expect(text).toMatch(/^ {2}- map: \{ iova: 0x100000, size: 0x100000, access: rw \} +# call \d+$/m);
    expect(text).toMatch(/^ {2}- map: \{ iova: 0x400000, size: 0x100000, access: r \}/m);
    expect(text).toMatch(/^ {2}- map: \{ iova: 0x1000000, size: 0x2000, access: w \}/m);
    expect(text).toMatch(/^ {2}- unmap: \{ iova: 0x100000, size: 0x100000 \}/m);
    expect(text).toContain(`  # call ${failed}: VFIO_IOMMU_MAP_DMA failed with EEXIST (core refuses`);
    const windows = scenarioOf(iommufd, { platform: 'arm-smmuv3' }).text;
    expect(windows).toMatch(/^ {2}- window: \{ iova: 0x10000000, size: 0x1000000 \}/m);
    expect(windows).toMatch(/^ {2}- window: \{ iova: 0x20000000, size: 0x100000 \}/m);
    expect(windows.match(/- window:/g)).toHaveLength(2);
  });

  it('an edited trace gives another scenario (the test can fail)', async () => {
    const n = findCall(type1.text, (call) => call.ioctl === 'VFIO_IOMMU_UNMAP_DMA').n as number;
    const edited = editCall(type1.text, n, ({ result: _result, ...call }) => ({ ...call, errno: 'EINVAL' }));
    const result = await runScenario(scenarioOf({ ...type1, text: edited }).scenario, { snapshot: true });
    expect(space(result.snapshot!)).not.toEqual(space(type1.snapshot));
  });

  it('refuses what it cannot write', () => {
    const trace = readTrace(type1.text);
    expect(() => traceToScenario(trace, { platform: 'p4080' })).toThrow(expect.objectContaining({ code: 'unsupported' }));
    const noMaps = { ...trace, calls: trace.calls.filter((call) => call.call !== 'ioctl' || !/MAP_DMA/.test(call.ioctl)) };
    expect(() => traceToScenario(noMaps)).toThrow(expect.objectContaining({ code: 'not-found' }));
    const badMap = { ...trace, calls: trace.calls.map((call) => (call.call === 'ioctl' && call.ioctl === 'VFIO_IOMMU_MAP_DMA' ? { ...call, in: { ...call.in, iova: 4096 } } : call)) };
    let thrown: unknown;
    try {
      traceToScenario(badMap);
    } catch (error) {
      thrown = error;
    }
    expect(IoasError.isInstance(thrown) && thrown.code === 'invalid-argument' && /^trace call \d+: VFIO_IOMMU_MAP_DMA in\.iova must be a hex string/.test(thrown.message)).toBe(true);
  });

  it('keeps a label that holds anything on its comment line', () => {
    const trace = readTrace(type1.text);
    const text = traceToScenario({ ...trace, header: { ...trace.header, label: 'two\nlines: [x]' } });
    expect(text.split('\n')[0]).toBe('# Written by ioas replay --to-scenario from the trace "two lines: [x]" (recorded on sim, kernel sim, x86_64).');
    expect(validateScenario(parse(text)).ok).toBe(true);
  });
});
