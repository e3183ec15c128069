// Replaying recorded runs on the simulator: a faithful recording replays with no divergence; one
// answer edited by hand is found, at its call and field; fds and regions are translated, never
// compared as numbers; bad traces are refused naming the call.
import { applyWindowPlan, pamu } from '@ioas/backend-pamu';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { Container, ERRNO, IoasError, planWindows, SYSCALL_FLAGS } from '@ioas/core';
import { readFileSync } from 'node:fs';
import { allocateDmaMemory } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { editCall, eduDriver, findCall, ioasMap, mapDma, recordRun, removeRecordings, request, scratchPath, traceLines, traceText, type RecordedRun } from './__fixtures__/replay-runs.js';
import { readTrace } from './read-trace.js';
import { recordSyscalls } from './recorder.js';
import { describeTraceValue, replayTrace, type ReplayableTrace } from './replay.js';
import { choosePlatform, platformOfArch } from './replay-platform.js';

afterAll(removeRecordings);

const replay = (text: string, options: Parameters<typeof replayTrace>[1] = {}) => replayTrace(readTrace(text), options);

/** A type1 run on x86-vtd: maps, a map the kernel refuses (EEXIST), an open that fails, a close of a closed fd, unmaps. */
const type1 = await recordRun('x86-vtd', 'type1', ({ syscalls, container, opened }) => {
  const memory = allocateDmaMemory(syscalls, 0x4000n);
  const first = container.map({ memory, iova: 0x10_0000n });
  const second = container.map({ memory, iova: 0x20_0000n });
  // Core refuses an overlapping map itself; this asks the kernel, which says EEXIST.
  expect(syscalls.ioctl(opened.get('/dev/vfio/vfio')!, request('VFIO_IOMMU_MAP_DMA'), mapDma(memory.address, 0x10_0000n, 0x4000n))).toBe(-ERRNO.EEXIST);
  expect(syscalls.open('/dev/vfio/42', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.ENOENT);
  expect(syscalls.close(999)).toBe(-ERRNO.EBADF);
  container.unmap(first);
  container.unmap(second);
  memory.free();
});

/** An iommufd run on x86-vtd: a window (ALLOW_IOVAS), maps, a refused fixed-IOVA map, an unmap. */
const iommufd = await recordRun('x86-vtd', 'iommufd', ({ syscalls, container, opened }) => {
  container.createWindow({ start: 0x10_0000n, size: 0x100_0000n });
  const memory = allocateDmaMemory(syscalls, 0x4000n);
  const first = container.map({ memory, iova: 0x10_0000n });
  container.map({ memory, iova: 0x20_0000n });
  expect(syscalls.ioctl(opened.get('/dev/iommu')!, request('IOMMU_IOAS_MAP'), ioasMap(1, memory.address, 0x10_0000n, 0x4000n))).toBe(-ERRNO.EEXIST);
  container.unmap(first);
});

const eduType1 = await recordRun('x86-vtd', 'type1', (context) => void expect(eduDriver(context)).toBeGreaterThan(0n));
const eduIommufd = await recordRun('x86-vtd', 'iommufd', (context) => void expect(eduDriver(context)).toBeGreaterThan(0n));

/** The call number of the first call `match` finds. */
const callNumber = (run: RecordedRun, match: (call: Record<string, unknown>) => boolean) => findCall(run.text, match).n as number;

describe('a faithful recording replays with no divergence', () => {
  it.each([
    ['type1 container', type1],
    ['iommufd container', iommufd],
    ['edu driver on type1', eduType1],
    ['edu driver on iommufd', eduIommufd],
  ])('%s on x86-vtd', (_name, run) => {
    const calls = traceLines(run.text).length - 1;
    const report = replay(run.text);
    expect(report).toMatchObject({ ok: true, calls, replayed: calls, platform: 'x86-vtd', platformSource: 'header', recordedOn: 'sim' });
    expect(report.divergence).toBeUndefined();
  });

  it('compares the failures too: the kernel EEXIST, ENOENT and EBADF are in the trace and replay alike', () => {
    expect(findCall(type1.text, (call) => call.ioctl === 'VFIO_IOMMU_MAP_DMA' && call.errno !== undefined).errno).toBe('EEXIST');
    expect(findCall(type1.text, (call) => call.call === 'open' && call.errno !== undefined).errno).toBe('ENOENT');
    expect(findCall(type1.text, (call) => call.call === 'close' && call.errno !== undefined)).toMatchObject({ fd: 999, errno: 'EBADF' });
    expect(findCall(iommufd.text, (call) => call.ioctl === 'IOMMU_IOAS_MAP' && call.errno !== undefined).errno).toBe('EEXIST');
    expect(findCall(iommufd.text, (call) => call.ioctl === 'IOMMU_IOAS_ALLOW_IOVAS').in).toMatchObject({ allowed_iovas: [{ start: '0x100000', last: '0x10fffff' }] });
  });

  it('lists what it did not replay or compare: the eventfd read, the bytes of pread/pwrite', () => {
    const report = replay(eduType1.text);
    const read = callNumber(eduType1, (call) => call.call === 'read');
    expect(report.notReplayed).toEqual([
      expect.objectContaining({ call: 'pread', reason: expect.stringContaining('byte count compared'), first: callNumber(eduType1, (call) => call.call === 'pread') }),
      expect.objectContaining({ call: 'pwrite', reason: expect.stringContaining('byte count compared') }),
      { call: 'read', reason: expect.stringContaining('interrupt counts'), count: 1, first: read },
    ]);
    // A type1 run with no device I/O leaves nothing out.
    expect(replay(type1.text).notReplayed).toEqual([]);
  });

  it('translates fds and regions: every fd +100 and every region +10 in the trace still agrees', () => {
    for (const run of [eduType1, eduIommufd, iommufd]) {
      const shifted = traceText(traceLines(run.text).map((line, index) => (index === 0 ? line : shift(line))));
      expect(shifted).not.toBe(run.text);
      expect(replay(shifted)).toMatchObject({ ok: true });
    }
  });

  it('re-creates a mapped device region (BAR) as anonymous memory, and says so', () => {
    const lines = traceLines(eduType1.text);
    const deviceFd = findCall(eduType1.text, (call) => call.ioctl === 'VFIO_GROUP_GET_DEVICE_FD').result as number;
    const at = lines.findIndex((line) => line.ioctl === 'VFIO_GROUP_GET_DEVICE_FD') + 1;
    const bar = [
      { n: 0, call: 'mmap', length: '0x100000', prot: 3, flags: SYSCALL_FLAGS.MAP_SHARED, fd: deviceFd, offset: '0x0', result: { buffer: 99, offset: '0x0' } },
      { n: 0, call: 'munmap', address: { buffer: 99, offset: '0x0' }, length: '0x100000' },
    ];
    lines.splice(at, 0, ...bar);
    const text = traceText(lines.map((line, index) => (index === 0 ? line : { ...line, n: index })));
    const report = replay(text);
    expect(report.ok).toBe(true);
    expect(report.notReplayed).toContainEqual({ call: 'mmap', reason: expect.stringContaining('MMIO'), count: 1, first: at });
  });

  it('compares readDir as a set: the order of entries is the file system’s', () => {
    const n = callNumber(type1, (call) => call.call === 'readDir');
    const reversed = editCall(type1.text, n, (call) => ({ ...call, result: [...(call.result as string[]), 'zzz'].reverse().filter((entry) => entry !== 'zzz') }));
    expect(replay(reversed).ok).toBe(true);
    expect(replay(editCall(type1.text, n, (call) => ({ ...call, result: ['0000:00:03.0', '0000:00:03.1'] }))).divergence).toMatchObject({ n, call: 'readDir' });
  });
});

describe('an answer edited by hand is found at its call', () => {
  it('an EEXIST changed to EINVAL', () => {
    const n = callNumber(type1, (call) => call.errno === 'EEXIST');
    const report = replay(editCall(type1.text, n, (call) => ({ ...call, errno: 'EINVAL' })));
    expect(report).toMatchObject({ ok: false, replayed: n, divergence: { n, call: 'ioctl', ioctl: 'VFIO_IOMMU_MAP_DMA', differences: [{ field: 'result', recorded: 'EINVAL', replayed: 'EEXIST' }] } });
    expect(report.divergence!.description).toMatch(/^VFIO_IOMMU_MAP_DMA on fd \d+$/);
  });

  it('a successful map made to fail', () => {
    const n = callNumber(iommufd, (call) => call.ioctl === 'IOMMU_IOAS_MAP' && call.errno === undefined);
    const report = replay(editCall(iommufd.text, n, ({ result: _result, ...call }) => ({ ...call, errno: 'ENOSPC' })));
    expect(report.divergence).toMatchObject({ n, ioctl: 'IOMMU_IOAS_MAP', differences: [{ field: 'result', recorded: 'ENOSPC', replayed: 0 }] });
  });

  it('a field the kernel wrote back: the bytes UNMAP_DMA says it unmapped', () => {
    const n = callNumber(type1, (call) => call.ioctl === 'VFIO_IOMMU_UNMAP_DMA');
    const report = replay(editCall(type1.text, n, (call) => ({ ...call, out: { size: '0x2000' } })));
    expect(report.divergence).toMatchObject({ n, ioctl: 'VFIO_IOMMU_UNMAP_DMA', differences: [{ field: 'out.size', recorded: '0x2000', replayed: '0x4000' }] });
  });

  it('every field that differs is listed, not only the first', () => {
    const n = callNumber(iommufd, (call) => call.ioctl === 'IOMMU_IOAS_IOVA_RANGES');
    const report = replay(editCall(iommufd.text, n, (call) => ({ ...call, out: { ...(call.out as object), num_iovas: 3, out_iova_alignment: '0x2000' } })));
    expect(report.divergence!.differences.map((difference) => difference.field)).toEqual(['out.num_iovas', 'out.out_iova_alignment']);
  });

  it('a sysfs file the preset does not have', () => {
    const n = callNumber(type1, (call) => call.call === 'readFile');
    const report = replay(editCall(type1.text, n, (call) => ({ ...call, result: '0x00000000fee00000 0x00000000feefffff msi\n0x0000000000000000 0x0000000000ffffff direct-relaxable\n' })));
    expect(report.divergence).toMatchObject({ n, call: 'readFile', differences: [{ field: 'result', replayed: '0x00000000fee00000 0x00000000feefffff msi\n' }] });
  });

  it('a failed open that the simulator allows', () => {
    const n = callNumber(type1, (call) => call.call === 'open' && call.errno === 'ENOENT');
    const report = replay(editCall(type1.text, n, (call) => ({ ...call, path: '/dev/vfio/3' })));
    // /dev/vfio/3 is open already in the run: the simulator says EBUSY, the recording ENOENT.
    expect(report.divergence).toMatchObject({ n, call: 'open', differences: [{ field: 'result', recorded: 'ENOENT', replayed: 'EBUSY' }] });
  });

  it('the preset must match the recorded machine: an arm-smmuv3 run parts from x86-vtd', async () => {
    const arm = await recordRun('arm-smmuv3', 'type1', ({ syscalls, container }) => {
      container.map({ memory: allocateDmaMemory(syscalls, 0x1000n), iova: 0x1000n });
    });
    expect(replay(arm.text, { platform: 'arm-smmuv3' })).toMatchObject({ ok: true, platform: 'arm-smmuv3', platformSource: 'option' });
    // Recorded on the simulator, the trace names its preset: no option needed, whatever this host's arch.
    expect(replay(arm.text)).toMatchObject({ ok: true, platform: 'arm-smmuv3', platformSource: 'header' });
    const wrong = replay(arm.text, { platform: 'x86-vtd' });
    expect(wrong.ok).toBe(false);
    expect(wrong.divergence!.n).toBeLessThan(5);
  });

  it('a P4080 window plan (PAMU, big-endian) replays, its MSI bank numbers not taken for fds', async () => {
    const path = scratchPath('p4080.trace');
    const syscalls = recordSyscalls(simSyscalls(createSimulator({ platform: 'p4080' })), { path, littleEndian: false });
    const container = await Container.open({ backend: pamu({ profile: 'sdk-4.x', syscalls, littleEndian: false }), groups: [0] });
    const MiB = 1n << 20n;
    applyWindowPlan(container, planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 }), [allocateDmaMemory(syscalls, 256n * MiB, 64n * MiB)]);
    container.close();
    syscalls.stop();
    const text = readFileSync(path, 'utf8');
    // PAMU_MAP_MSI_BANK shares its number with VFIO_DEVICE_BIND_IOMMUFD: the bank index sits where the codec expects an fd.
    expect(traceLines(text).filter((line) => line.ioctl === 'VFIO_DEVICE_BIND_IOMMUFD').map((line) => (line.in as { iommufd: number }).iommufd)).toEqual([0, 1, 2]);
    expect(replay(text, { platform: 'p4080' })).toMatchObject({ ok: true, platform: 'p4080', notReplayed: [] });
  });

  it('a call the simulator throws on is the divergence, not a crash of the replay', () => {
    const n = callNumber(type1, (call) => call.call === 'mmap');
    const report = replay(editCall(type1.text, n, (call) => ({ ...call, length: '0x1800' })));
    expect(report.divergence).toMatchObject({ n, call: 'mmap', differences: [{ field: 'result', recorded: { buffer: 1, offset: '0x0' }, replayed: expect.stringMatching(/^the simulator threw RangeError: /) }] });
  });

  it('replays on a machine the caller gives', () => {
    const machine = createSimulator({ platform: 'x86-vtd' });
    expect(replay(type1.text, { machine })).toMatchObject({ ok: true, platformSource: 'machine' });
    expect(machine.interrupts).toEqual([]);
    expect(() => replay(type1.text, { machine, platform: 'p4080' })).toThrow(/p4080 and a x86-vtd machine/);
  });
});

describe('bad traces are refused, naming the call', () => {
  const trace = readTrace(type1.text);
  const mapCall = trace.calls.find((call) => call.call === 'ioctl' && call.ioctl === 'VFIO_IOMMU_MAP_DMA' && call.errno === undefined)!;
  const withCall = (n: number, call: unknown): ReplayableTrace => ({ ...trace, calls: trace.calls.map((each) => (each.n === n ? call : each)) as ReplayableTrace['calls'] });
  const refused = (bad: ReplayableTrace, message: RegExp) => {
    let thrown: unknown;
    try {
      replayTrace(bad);
    } catch (error) {
      thrown = error;
    }
    expect(IoasError.isInstance(thrown)).toBe(true);
    expect(thrown).toMatchObject({ code: 'invalid-argument', message: expect.stringMatching(message) });
  };

  it('an unknown call', () => refused(withCall(3, { n: 3, call: 'fork' }), /^trace call 3: unknown call "fork"$/));

  it('a pointer into a region that does not exist', () => {
    const bad = { ...mapCall, in: { ...(mapCall as { in: object }).in, vaddr: { buffer: 7, offset: '0x0' } } };
    refused(withCall(mapCall.n, bad), new RegExp(`^trace call ${mapCall.n}: a pointer into region 7, which no mmap`));
  });

  it('an fd never opened', () => refused(withCall(mapCall.n, { ...mapCall, fd: 77 }), new RegExp(`^trace call ${mapCall.n}: fd 77 was never opened`)));

  it('a malformed value', () => {
    const mmap = trace.calls.find((call) => call.call === 'mmap')!;
    refused(withCall(mmap.n, { ...mmap, length: 16384 }), new RegExp(`^trace call ${mmap.n}: length must be a hex string`));
  });

  it('a call without its answer: the last one was in flight and is listed; any other is refused', () => {
    const ioctls = trace.calls.filter((call) => call.call === 'ioctl');
    const last = { ...ioctls.at(-1)!, n: trace.calls.length + 1 } as Record<string, unknown>;
    delete last.result;
    const inFlight = { ...trace, calls: [...trace.calls, last] } as ReplayableTrace;
    expect(replayTrace(inFlight)).toMatchObject({ ok: true, replayed: trace.calls.length + 1, notReplayed: [{ call: 'ioctl', reason: expect.stringContaining('in flight'), count: 1, first: trace.calls.length + 1 }] });
    const { result: _result, ...middle } = mapCall as Extract<typeof mapCall, { call: 'ioctl' }>;
    refused(withCall(mapCall.n, middle), new RegExp(`^trace call ${mapCall.n}: the ioctl has neither a result nor an errno`));
  });

  it('calls out of order', () => refused({ ...trace, calls: [trace.calls[1]!, trace.calls[0]!] }, /^trace call 1: the call is numbered 2/));

  it('an arch no preset matches, unless a platform is named', () => {
    // A libc recording names no preset: only its architecture tells.
    const { platform: _named, ...recorded } = trace.header;
    const libc = { ...recorded, syscalls: 'libc', arch: 'riscv64' };
    expect(() => replayTrace({ ...trace, header: libc })).toThrow(/"riscv64", which no simulated platform matches/);
    expect(replayTrace({ ...trace, header: libc }, { platform: 'x86-vtd' }).ok).toBe(true);
  });
});

describe('platforms and values', () => {
  it('infers the preset from the arch', () => {
    expect(['x86_64', 'aarch64', 'arm64', 'ppc64', 'ppc', 'powerpc', 'riscv64'].map(platformOfArch)).toEqual(['x86-vtd', 'arm-smmuv3', 'arm-smmuv3', 'p4080', 'p4080', 'p4080', undefined]);
    expect(choosePlatform({ arch: 'aarch64' })).toEqual({ platform: 'arm-smmuv3', source: 'arch' });
    expect(choosePlatform({ arch: 'aarch64' }, 'x86-vtd')).toEqual({ platform: 'x86-vtd', source: 'option' });
    expect(choosePlatform({ arch: 'x86_64', platform: 'p4080' })).toEqual({ platform: 'p4080', source: 'header' });
    expect(choosePlatform({ arch: 'x86_64', platform: 'z80' })).toEqual({ platform: 'x86-vtd', source: 'arch' });
    expect(() => choosePlatform({ arch: 'x86_64' }, 'vax')).toThrow(/unknown platform "vax"/);
  });

  it('describes values for people', () => {
    expect([describeTraceValue(undefined), describeTraceValue('EINVAL'), describeTraceValue(3), describeTraceValue({ buffer: 2, offset: '0x10' }), describeTraceValue([{ start: '0x0', last: '0xfff' }])]).toEqual([
      '(nothing)',
      'EINVAL',
      '3',
      'region 2 + 0x10',
      '[{"start":"0x0","last":"0xfff"}]',
    ]);
  });
});

/** A call line with every fd +100 and every region number +10: the numbers a different process would see. */
function shift(line: Record<string, unknown>): Record<string, unknown> {
  const fd = (value: unknown) => (typeof value === 'number' && value >= 0 ? value + 100 : value);
  const region = (value: unknown) => (typeof value === 'object' && value !== null && 'buffer' in value ? { ...value, buffer: (value as { buffer: number }).buffer + 10 } : value);
  const out: Record<string, unknown> = { ...line };
  if ('fd' in out) out.fd = fd(out.fd);
  if ((out.call === 'open' || out.call === 'eventfd' || out.ioctl === 'VFIO_GROUP_GET_DEVICE_FD') && out.errno === undefined) out.result = fd(out.result);
  if (out.call === 'mmap' && out.result !== undefined) out.result = region(out.result);
  if (out.call === 'munmap') out.address = region(out.address);
  if (Array.isArray(out.buffers)) out.buffers = (out.buffers as unknown[]).map(region);
  const fields = (group: unknown) => {
    if (typeof group !== 'object' || group === null) return group;
    const copy: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(group)) {
      if (name === 'data' && Array.isArray(value)) copy[name] = value.map(fd);
      else if ((name === 'fd' && out.ioctl === 'VFIO_GROUP_SET_CONTAINER') || (name === 'iommufd' && out.ioctl === 'VFIO_DEVICE_BIND_IOMMUFD')) copy[name] = fd(value);
      else copy[name] = region(value);
    }
    return copy;
  };
  if (out.in !== undefined) out.in = fields(out.in);
  if (out.out !== undefined) out.out = fields(out.out);
  return out;
}
