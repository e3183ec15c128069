import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { Container, ERRNO, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { allocateDmaMemory, VfioDevice, vfioUapi } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { type1ByHand } from './__fixtures__/type1-by-hand.mjs';
import { isJournal } from './journal.js';
import { readTrace, readTraceFile } from './read-trace.js';
import { recordSyscalls, type RecordingSyscalls } from './recorder.js';
import type { TraceCall } from './trace-format.js';
import type { TraceWriterKind } from './trace-sink.js';

const directory = mkdtempSync(join(tmpdir(), 'ioas-trace-test-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));
let files = 0;
const tracePath = () => join(directory, `trace-${++files}.jsonl`);

/** The sim face, noting every host address it hands out (mmaps, program buffers). */
function watchedSim(): { syscalls: Syscalls; addresses: bigint[] } {
  const sim = simSyscalls(createSimulator({ platform: 'x86-vtd' }));
  const addresses: bigint[] = [];
  const syscalls: Syscalls = Object.create(sim) as Syscalls;
  Object.assign(syscalls, {
    mmap: (...args: Parameters<Syscalls['mmap']>) => {
      const address = sim.mmap(...args);
      if (address > 0n) addresses.push(address);
      return address;
    },
    addressOf: (buffer: Uint8Array) => {
      const address = sim.addressOf(buffer);
      addresses.push(address);
      return address;
    },
  });
  return { syscalls, addresses };
}

/** Runs the container workload of `iface` on a recorded sim; returns the trace text and what the sim gave out. */
async function recordWorkload(iface: 'type1' | 'iommufd', writer: TraceWriterKind = 'mmap') {
  const { syscalls, addresses } = watchedSim();
  const path = tracePath();
  const recorded = recordSyscalls(syscalls, { path, label: `workload ${iface}`, writer });
  const container = await Container.open({ backend: smmu({ syscalls: recorded, interface: iface, arch: 'generic' }), groups: [3] });
  const memory = allocateDmaMemory(recorded, 0x2000n);
  // Guest memory contents must never reach the trace.
  recorded.memory(memory.address, 16).set(new TextEncoder().encode('SECRET-GUEST-RAM'));
  const mapping = container.map({ memory, iova: 0x10_0000n });
  container.unmap(mapping);
  // fd 3 is the container (type1) or the iommufd: an ioctl no kernel knows, refused with ENOTTY.
  expect(recorded.ioctl(3, 0x3b00 | 0x99, new Uint8Array([1, 2, 3, 4]))).toBe(-ERRNO.ENOTTY);
  memory.free();
  container.close();
  // A failing open and a thrown file helper, recorded and answered unchanged.
  expect(recorded.open('/dev/vfio/99', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.ENOENT);
  let thrown: unknown;
  try {
    recorded.readFile('/sys/no/such/file');
  } catch (error) {
    thrown = error;
  }
  expect((thrown as { code?: string }).code).toBe('ENOENT');
  const calls = recorded.calls;
  recorded.stop();
  const text = readFileSync(path, 'utf8');
  return { text, trace: readTrace(text), addresses, calls, recorded, thrown };
}

const ioctls = (calls: readonly TraceCall[]) => calls.filter((call): call is Extract<TraceCall, { call: 'ioctl' }> => call.call === 'ioctl');

describe('recording a container workload on the simulator', () => {
  for (const iface of ['type1', 'iommufd'] as const) {
    it(`records ${iface}: names, decoded fields, symbolic pointers, errnos, no raw addresses or memory`, async () => {
      const { text, trace, addresses, calls } = await recordWorkload(iface);
      expect(trace.header).toMatchObject({ type: 'header', format: 'ioas-trace', version: 1, kernel: 'sim', syscalls: 'sim', label: `workload ${iface}`, endian: 'little' });
      expect(trace.header.ioas).toBe(JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version);
      expect(trace.calls.length).toBe(calls);
      expect(trace.calls.map((call) => call.n)).toEqual(trace.calls.map((_, index) => index + 1));
      // The file is cut to its lines on close.
      expect(text.endsWith('\n') && !text.includes('\0')).toBe(true);

      const mmap = trace.calls.find((call) => call.call === 'mmap');
      expect(mmap).toMatchObject({ length: '0x2000', fd: -1, result: { buffer: 1, offset: '0x0' } });
      const names = ioctls(trace.calls).map((call) => call.ioctl);
      if (iface === 'type1') {
        expect(names).toEqual(expect.arrayContaining(['VFIO_GET_API_VERSION', 'VFIO_GROUP_SET_CONTAINER', 'VFIO_SET_IOMMU', 'VFIO_IOMMU_GET_INFO', 'VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_UNMAP_DMA']));
        const open = trace.calls.find((call) => call.call === 'open' && call.path === '/dev/vfio/vfio') as Extract<TraceCall, { call: 'open' }>;
        const setContainer = ioctls(trace.calls).find((call) => call.ioctl === 'VFIO_GROUP_SET_CONTAINER')!;
        expect(setContainer.in).toEqual({ fd: open.result });
        const map = ioctls(trace.calls).find((call) => call.ioctl === 'VFIO_IOMMU_MAP_DMA');
        expect(map).toMatchObject({ in: { argsz: 32, flags: 3, vaddr: { buffer: 1, offset: '0x0' }, iova: '0x100000', size: '0x2000' }, result: 0 });
        expect(ioctls(trace.calls).find((call) => call.ioctl === 'VFIO_IOMMU_UNMAP_DMA')).toMatchObject({ in: { iova: '0x100000', size: '0x2000' }, out: { size: '0x2000' }, result: 0 });
        const info = ioctls(trace.calls).filter((call) => call.ioctl === 'VFIO_IOMMU_GET_INFO');
        expect(info[0]!.out?.argsz).toBe(info[1]!.in?.argsz);
        expect(info[1]!.tailOut).toMatch(/^[0-9a-f]+$/);
      } else {
        expect(names).toEqual(expect.arrayContaining(['IOMMU_IOAS_ALLOC', 'VFIO_DEVICE_BIND_IOMMUFD', 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', 'IOMMU_IOAS_IOVA_RANGES', 'IOMMU_IOAS_MAP', 'IOMMU_IOAS_UNMAP']));
        const iommufd = trace.calls.find((call) => call.call === 'open' && call.path === '/dev/iommu') as Extract<TraceCall, { call: 'open' }>;
        expect(ioctls(trace.calls).find((call) => call.ioctl === 'VFIO_DEVICE_BIND_IOMMUFD')?.in?.iommufd).toBe(iommufd.result);
        const ranges = ioctls(trace.calls).find((call) => call.ioctl === 'IOMMU_IOAS_IOVA_RANGES')!;
        // The array behind allowed_iovas is argument data: recorded decoded, not as an address.
        expect(ranges.out?.allowed_iovas).toEqual([
          { start: '0x0', last: '0xfedfffff' },
          { start: '0xfef00000', last: '0x7fffffffff' },
        ]);
        const map = ioctls(trace.calls).find((call) => call.ioctl === 'IOMMU_IOAS_MAP');
        expect(map).toMatchObject({ in: { user_va: { buffer: 1, offset: '0x0' }, length: '0x2000', iova: '0x100000' }, out: { iova: '0x100000' }, result: 0 });
      }
      const unknown = ioctls(trace.calls).find((call) => call.ioctl === 'nr 0x99');
      expect(unknown).toMatchObject({ fd: 3, request: 0x3b99, tailIn: '01020304', tailOut: '01020304', errno: 'ENOTTY' });
      expect(unknown!.result).toBeUndefined();
      expect(trace.calls.find((call) => call.call === 'munmap')).toMatchObject({ address: { buffer: 1, offset: '0x0' }, length: '0x2000' });
      expect(trace.calls.find((call) => call.call === 'open' && call.path === '/dev/vfio/99')).toMatchObject({ errno: 'ENOENT' });
      expect(trace.calls.find((call) => call.call === 'readFile' && call.path === '/sys/no/such/file')).toMatchObject({ errno: 'ENOENT' });

      expect(addresses.length).toBeGreaterThan(0);
      for (const address of addresses) expect(text).not.toContain(address.toString(16));
      expect(text).not.toContain('SECRET');
    });
  }

  it('rethrows the very error a file helper threw', async () => {
    const { thrown } = await recordWorkload('type1');
    expect(thrown).toBeInstanceOf(Error);
  });

  it('writes the same trace through the file mapping and through writeSync', async () => {
    const mapped = await recordWorkload('iommufd', 'mmap');
    const written = await recordWorkload('iommufd', 'write');
    expect(mapped.recorded.writer).toBe('mmap');
    expect(written.recorded.writer).toBe('write');
    expect(written.text).toBe(mapped.text);
  });
});

/** A type1v2 container opened by hand on `syscalls`; `pair(iova)` maps and unmaps one page, both succeeding. */
function type1(syscalls: Syscalls) {
  const { pair } = type1ByHand(syscalls);
  return (iova: bigint) => expect(pair(iova)).toEqual([0, 0]);
}

describe('the trace file', () => {
  it('moves its mapping window along a trace longer than one chunk, and is cut to the lines on close', () => {
    const path = tracePath();
    const recorded = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path });
    const pair = type1(recorded);
    const pairs = 15_000; // ~5.6 MB of lines: past the 4 MiB first window
    for (let index = 0; index < pairs; index++) pair(0x1_0000_0000n + BigInt(index) * 0x1000n);
    recorded.stop();
    const text = readFileSync(path, 'utf8');
    expect(statSync(path).size).toBeGreaterThan(4 << 20);
    const trace = readTrace(text);
    expect(trace.calls.length).toBe(recorded.calls);
    const last = ioctls(trace.calls).at(-1)!;
    expect(last).toMatchObject({ ioctl: 'VFIO_IOMMU_UNMAP_DMA', in: { iova: `0x${(0x1_0000_0000n + BigInt(pairs - 1) * 0x1000n).toString(16)}` }, result: 0 });
  });

  it('records a kernel errno on the hot path with the struct that caused it', () => {
    const path = tracePath();
    const recorded = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path });
    const pair = type1(recorded);
    pair(0x10_0000n);
    // An IOVA inside x86's MSI window (0xfee00000): the kernel refuses the map.
    expect(() => pair(0xfee0_0000n)).toThrow();
    recorded.stop();
    const map = ioctls(readTrace(readFileSync(path, 'utf8')).calls).filter((call) => call.ioctl === 'VFIO_IOMMU_MAP_DMA').at(-1)!;
    expect(map).toMatchObject({ in: { iova: '0xfee00000', size: '0x1000', vaddr: { buffer: 1, offset: '0x0' } } });
    expect(map.errno).toMatch(/^E[A-Z]+$/);
    expect(map.result).toBeUndefined();
  });

  it('passes calls through unrecorded once closed', () => {
    const path = tracePath();
    const recorded: RecordingSyscalls = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path });
    expect(recorded.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR)).toBe(3);
    recorded.stop();
    expect(recorded.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR)).toBe(4);
    expect(recorded.calls).toBe(1);
    expect(readTrace(readFileSync(path, 'utf8')).calls).toHaveLength(1);
  });
});

describe('the edu driver flow', () => {
  it('records eventfds as fds in SET_IRQS, and region reads and writes without their bytes', async () => {
    const path = tracePath();
    const recorded = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, label: 'edu' });
    const backend = smmu({ syscalls: recorded, arch: 'generic', littleEndian: true, interface: 'type1' });
    const container = await Container.open({ backend, devices: ['0000:00:03.0'] });
    const device = backend.openDevice('0000:00:03.0');
    device.enableBusMaster();
    const [eventfd] = device.enableMsi(1);
    const memory = allocateDmaMemory(recorded, 0x2000n);
    const mapping = container.map({ memory, iova: 0x10_0000n });
    recorded.memory(memory.address, 8).set(new TextEncoder().encode('EDU-DATA'));
    // edu: DMA 8 bytes from the mapping into the device's buffer, raising an MSI (QEMU docs/specs/edu.rst).
    device.write64(0, 0x80n, mapping.iova.start);
    device.write64(0, 0x88n, 0x40000n);
    device.write64(0, 0x90n, 8n);
    device.write64(0, 0x98n, 1n | 4n);
    expect(VfioDevice.readEventfd(device.ioctls, eventfd!)).toBeGreaterThan(0n);
    device.disableIrqs();
    container.unmap(mapping);
    memory.free();
    device.close();
    container.close();
    recorded.stop();

    const text = readFileSync(path, 'utf8');
    const trace = readTrace(text);
    const created = trace.calls.find((call) => call.call === 'eventfd') as Extract<TraceCall, { call: 'eventfd' }>;
    const [enable, disable] = ioctls(trace.calls).filter((call) => call.ioctl === 'VFIO_DEVICE_SET_IRQS');
    expect(enable?.in).toMatchObject({ index: vfioUapi.VFIO_PCI_MSI_IRQ_INDEX, count: 1, data: [created.result] });
    expect(disable?.in).toMatchObject({ count: 0 });
    const accesses = trace.calls.filter((call) => call.call === 'pwrite' || call.call === 'pread');
    expect(accesses.length).toBeGreaterThan(4);
    for (const access of accesses) expect(Object.keys(access).sort()).toEqual(['call', 'fd', 'length', 'n', 'offset', 'result']);
    expect(trace.calls.find((call) => call.call === 'read')).toMatchObject({ fd: created.result, length: 8, result: 8 });
    expect(text).not.toContain('EDU-DATA');
  });
});

describe('crash safety', () => {
  const child = fileURLToPath(new URL('./__fixtures__/record-then-die.mjs', import.meta.url));
  const run = (mode: string, path: string, format: string) => spawnSync(process.execPath, [child, mode, path, format], { encoding: 'utf8', timeout: 60_000 });

  for (const format of ['journal', 'lines'] as const) {
    for (const writer of ['mmap', 'write']) {
      it(`keeps every call of a recorder killed with SIGKILL after its calls returned (${format}, ${writer})`, () => {
        const path = tracePath();
        const result = run(`after-${writer}`, path, format);
        expect(result.signal).toBe('SIGKILL');
        const reported = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as { calls: number; writer: string };
        expect(reported.writer).toBe(writer);
        const bytes = readFileSync(path);
        // The mapped file was never cut to size: NUL bytes follow the last call.
        if (writer === 'mmap') expect(bytes.at(-1)).toBe(0);
        // The journal stays a journal: stop() never ran to render it.
        expect(isJournal(bytes)).toBe(format === 'journal');
        const trace = readTrace(bytes);
        expect(trace.calls.length).toBe(reported.calls);
        expect(ioctls(trace.calls).at(-1)).toMatchObject({ ioctl: 'VFIO_IOMMU_UNMAP_DMA', out: { size: '0x1000' }, result: 0 });
        expect(readTraceFile(path)).toEqual(trace);
      });
    }

    it(`leaves the call in flight as an unterminated last line (${format})`, () => {
      const path = tracePath();
      const result = run('during', path, format);
      expect(result.signal).toBe('SIGKILL');
      const bytes = readFileSync(path);
      expect(() => readTrace(bytes)).toThrow(/truncated/);
      const trace = readTrace(bytes, { allowTruncated: true });
      expect(trace.truncated).toMatch(/^\{"n":\d+,"call":"ioctl","fd":3,"ioctl":"VFIO_IOMMU_MAP_DMA","request":\d+,"in":\{"argsz":32,"flags":3,"vaddr":\{"buffer":1,"offset":"0x0"\},"iova":"0xdead000","size":"0x1000"\}$/);
      expect(trace.calls.at(-1)!.n).toBe(Number(/^\{"n":(\d+)/.exec(trace.truncated!)![1]) - 1);
    });
  }

  it('says what to do with a journal passed as text', () => {
    const path = tracePath();
    run('after-mmap', path, 'journal');
    expect(() => readTrace(readFileSync(path, 'latin1'))).toThrow(/^trace line 1: a recorder journal .* pass its bytes, or read it with readTraceFile\(\)/);
  });
});
