// `ioas replay`: runs recorded on the simulator with @ioas/trace, replayed through main() as a user
// runs the command: exit 0 when every call agrees, 1 at a divergence (printed field by field), 2 for a
// trace that cannot be read (its line named); --json and --to-scenario.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSimulator, runScenario, simSyscalls } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { Container, ERRNO, type Syscalls } from '@ioas/core';
import { recordSyscalls } from '@ioas/trace';
import { allocateDmaMemory, VfioDevice } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from './cli.js';
import type { Io } from './output.js';
import { loadScenario } from './scenario-file.js';

const scratch = mkdtempSync(join(tmpdir(), 'ioas-replay-cli-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `ioas ARGS` in this process; returns the exit status and what it printed. */
async function ioas(args: string[]) {
  let stdout = '';
  let stderr = '';
  const io: Io = { stdout: { write: (text: string) => (stdout += text) }, stderr: { write: (text: string) => (stderr += text) }, readLine: async () => undefined, env: { NO_COLOR: '1' } };
  const status = await main(args, io);
  return { status, stdout, stderr };
}

/**
 * Records, on a simulated x86 VT-d machine and its type1 container, the edu driver's flow of
 * examples/edu-driver.mjs (MSI on an eventfd, a DMA through a mapping) plus a map the kernel refuses
 * with EEXIST. Returns the trace file.
 */
async function recordEduRun(name: string, { journalCopy }: { journalCopy?: string } = {}): Promise<string> {
  const path = join(scratch, name);
  const recorder = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, label: 'edu driver' });
  let containerFd = -1;
  const syscalls = Object.create(recorder) as Syscalls;
  syscalls.open = (file, flags) => {
    const fd = recorder.open(file, flags);
    if (file === '/dev/vfio/vfio') containerFd = fd;
    return fd;
  };
  const backend = smmu({ syscalls, interface: 'type1', arch: 'generic', littleEndian: true });
  const container = await Container.open({ backend, devices: ['0000:00:03.0'] });
  const device = backend.openDevice('0000:00:03.0');
  try {
    device.read32(0, 0x00n);
    device.enableBusMaster();
    const [eventfd] = device.enableMsi(1);
    const memory = allocateDmaMemory(syscalls, 0x2000n);
    const mapping = container.map({ memory, iova: 0x10_0000n });
    container.map({ memory, iova: 0x20_0000n, access: { read: true, write: false } });
    // Core refuses an overlapping map itself: this one goes to the kernel, which says EEXIST.
    const overlap = new Uint8Array(32);
    const view = new DataView(overlap.buffer);
    view.setUint32(0, 32, true);
    view.setUint32(4, 3, true);
    view.setBigUint64(8, memory.address, true);
    view.setBigUint64(16, 0x10_0000n, true);
    view.setBigUint64(24, 0x1000n, true);
    expect(syscalls.ioctl(containerFd, 0x3b71, overlap)).toBe(-ERRNO.EEXIST);
    device.write64(0, 0x80n, mapping.iova.start);
    device.write64(0, 0x88n, 0x40000n);
    device.write64(0, 0x90n, 16n);
    device.write64(0, 0x98n, 1n | 4n);
    device.write32(0, 0x64n, device.read32(0, 0x24n));
    expect(VfioDevice.readEventfd(device.ioctls, eventfd!)).toBe(1n);
    device.disableIrqs();
    container.unmap(mapping);
  } finally {
    device.close();
    container.close();
    // The file as a recorder that died here would leave it: a journal, never rendered.
    if (journalCopy !== undefined) copyFileSync(path, join(scratch, journalCopy));
    recorder.stop();
  }
  return path;
}

const trace = await recordEduRun('edu.trace');
const text = readFileSync(trace, 'utf8');
const lines = text.split('\n').filter((line) => line !== '');
const callCount = lines.length - 1;
const eexist = lines.findIndex((line) => line.includes('"errno":"EEXIST"'));

/** A trace file holding `content`. */
function file(name: string, content: string): string {
  const path = join(scratch, name);
  writeFileSync(path, content);
  return path;
}

describe('ioas replay', () => {
  it('replays the journal a recorder that died before stop() left, as the trace stop() would have written', async () => {
    await recordEduRun('edu-again.trace', { journalCopy: 'edu-died.journal' });
    const journal = join(scratch, 'edu-died.journal');
    expect(readFileSync(journal, 'latin1')).toMatch(/^\{"type":"header","format":"ioas-trace-journal"/);
    const run = await ioas(['replay', journal]);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    expect(run.stdout.split('\n')[0]).toBe(`${callCount} calls replayed, all agree with the simulator (platform x86-vtd)`);
  });

  it('exit 0 when every call agrees, with what was not replayed and why', async () => {
    const run = await ioas(['replay', trace]);
    expect(run).toMatchObject({ status: 0, stderr: '' });
    const output = run.stdout.split('\n');
    expect(output[0]).toBe(`${callCount} calls replayed, all agree with the simulator (platform x86-vtd)`);
    expect(output[1]).toBe("platform x86-vtd: the simulator the trace was recorded on; --platform names another");
    expect(output[2]).toBe('not replayed, or not compared in full:');
    expect(run.stdout).toMatch(/^ {2}read +1 call +\(first: call \d+\) +eventfd reads and writes carry interrupt counts/m);
    expect(run.stdout).toMatch(/^ {2}pwrite +\d+ calls +\(first: call \d+\) +replayed and its byte count compared/m);
  });

  it('exit 1 at the first divergence, each field with what each side said', async () => {
    const edited = file('edited.trace', text.replace('"errno":"EEXIST"', '"errno":"EINVAL"'));
    const run = await ioas(['replay', edited]);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe('');
    const output = run.stdout.split('\n');
    expect(output[0]).toMatch(new RegExp(`^call ${eexist} \\(VFIO_IOMMU_MAP_DMA on fd \\d+\\) diverges: ${eexist - 1} calls agreed before it \\(platform x86-vtd\\)$`));
    expect(output[1]).toBe('  result: the recording (sim) said EINVAL, the simulator said EEXIST');
    expect(output[2]).toBe(`the replay stopped there: ${callCount - eexist} calls after it were not replayed`);
  });

  it('a changed result names the field; a libc trace says "the kernel"', async () => {
    const unmap = lines.findIndex((line) => line.includes('"VFIO_IOMMU_UNMAP_DMA"'));
    const edited = lines.map((line, index) => (index === 0 ? line.replace('"syscalls":"sim"', '"syscalls":"libc"') : index === unmap ? line.replace('"out":{"size":"0x2000"}', '"out":{"size":"0x1000"}') : line));
    expect(edited[unmap]).toContain('"out":{"size":"0x1000"}');
    const run = await ioas(['replay', file('changed.trace', `${edited.join('\n')}\n`)]);
    expect(run.status).toBe(1);
    expect(run.stdout).toContain(`call ${unmap} (VFIO_IOMMU_UNMAP_DMA on fd`);
    expect(run.stdout).toContain('  out.size: the kernel said 0x1000, the simulator said 0x2000');
  });

  it('--json prints the report', async () => {
    const agreeing = JSON.parse((await ioas(['replay', trace, '--json'])).stdout) as Record<string, unknown>;
    expect(agreeing).toMatchObject({ ok: true, calls: callCount, replayed: callCount, platform: 'x86-vtd', platformSource: 'header', recordedOn: 'sim' });
    const run = await ioas(['replay', file('edited-json.trace', text.replace('"errno":"EEXIST"', '"errno":"EINVAL"')), '--json']);
    expect(run.status).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({
      ok: false,
      replayed: eexist,
      divergence: { n: eexist, call: 'ioctl', ioctl: 'VFIO_IOMMU_MAP_DMA', differences: [{ field: 'result', recorded: 'EINVAL', replayed: 'EEXIST' }] },
    });
  });

  it('--platform replays on another preset: this trace then parts from it', async () => {
    const run = await ioas(['replay', trace, '--platform', 'arm-smmuv3']);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/^call \d+ \(.*\) diverges: .*\(platform arm-smmuv3\)$/m);
    expect(run.stdout).toContain('platform arm-smmuv3: named with --platform');
    expect((await ioas(['replay', trace, '--platform', 'vax'])).status).toBe(2);
  });

  it('--to-scenario writes a scenario that validates and runs', async () => {
    const out = join(scratch, 'scenario.yaml');
    const run = await ioas(['replay', trace, '--to-scenario', out]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`scenario written to ${out} (run: ioas sim ${out})`);
    const loaded = loadScenario(readFileSync(out, 'utf8'));
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    expect(loaded.scenario).toMatchObject({ platform: 'x86-vtd', interface: 'type1' });
    const result = await runScenario(loaded.scenario, { snapshot: true });
    expect(result.ok).toBe(true);
    // The run left the read-only map at 0x200000; the other was unmapped.
    expect(result.snapshot!.mappings.map(({ iova, access }) => ({ iova, access }))).toEqual([{ iova: { start: '0x200000', last: '0x201fff' }, access: { read: true, write: false } }]);
    expect((await ioas(['sim', out])).status).toBe(0);
    expect(await ioas(['replay', trace, '--to-scenario', join(scratch, 'no', 'such', 'dir.yaml')])).toMatchObject({ status: 1, stderr: expect.stringMatching(/^ioas: cannot write .*dir\.yaml: .*ENOENT/) });
  });

  it('exit 2 for a malformed or truncated trace, naming the line', async () => {
    const malformed = [...lines];
    malformed[5] = malformed[5]!.slice(0, 20);
    malformed[6] = '{"n": 6, "call": ';
    const bad = await ioas(['replay', file('malformed.trace', `${malformed.join('\n')}\n`)]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^ioas: .*malformed\.trace is not a trace: .*line 6\b/);
    expect(bad.stderr).toContain('(run with --help for usage)');
    const truncated = await ioas(['replay', file('truncated.trace', lines.slice(0, 8).join('\n').slice(0, -30))]);
    expect(truncated.status).toBe(2);
    expect(truncated.stderr).toMatch(/truncated\.trace is not a trace: .*line 8\b/);
  });

  it('exit 2 for a trace that cannot be replayed as written, naming the call', async () => {
    const map = lines.findIndex((line) => line.includes('"VFIO_IOMMU_MAP_DMA"'));
    const badFd = lines.map((line, index) => (index === map ? line.replace(/"fd":\d+/, '"fd":77') : line));
    const run = await ioas(['replay', file('bad-fd.trace', `${badFd.join('\n')}\n`)]);
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(new RegExp(`^ioas: .*bad-fd\\.trace: trace call ${map}: fd 77 was never opened`));
  });

  it('exit 2 for a file that cannot be read', async () => {
    expect(await ioas(['replay', join(scratch, 'missing.trace')])).toMatchObject({ status: 2, stderr: expect.stringMatching(/^ioas: cannot read .*missing\.trace: .*ENOENT/) });
    expect(await ioas(['replay', scratch])).toMatchObject({ status: 2, stderr: expect.stringContaining('is a directory') });
  });
});
