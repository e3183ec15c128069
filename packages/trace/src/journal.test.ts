import { closeSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { ERRNO, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { ioctlNumber, vfioUapi } from '@ioas/vfio';
import { afterAll, describe, expect, it } from 'vitest';
import { eduDriver, recordRun, removeRecordings, scratchPath } from './__fixtures__/replay-runs.js';
import { dmaMapStruct, type1ByHand } from './__fixtures__/type1-by-hand.mjs';
import { isJournal, renderJournal, renderJournalFile } from './journal.js';
import { readTrace } from './read-trace.js';
import { recordSyscalls, type TraceFileFormat } from './recorder.js';

afterAll(removeRecordings);

const MAP_DMA = ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA);
const UNMAP_DMA = ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_UNMAP_DMA);
const PAGE = 0x1000n;

/**
 * Runs `body` twice on fresh x86-vtd simulators, recorded as a journal and as lines; returns both
 * files after stop(), and the journal as it was before stop() rendered it.
 */
function recordBoth(body: (syscalls: Syscalls) => void): { lines: string; journal: string; raw: Uint8Array } {
  const files = {} as Record<TraceFileFormat, string>;
  let raw = new Uint8Array(0);
  for (const format of ['lines', 'journal'] as const) {
    const path = scratchPath(`both-${format}-${Math.random().toString(36).slice(2)}.trace`);
    const recorder = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, label: 'both', format });
    expect(recorder.format).toBe(format);
    try {
      body(recorder);
    } finally {
      if (format === 'journal') {
        copyFileSync(path, `${path}.journal`);
        raw = readFileSync(`${path}.journal`);
      }
      recorder.stop();
    }
    files[format] = readFileSync(path, 'utf8');
  }
  return { lines: files.lines, journal: files.journal, raw };
}

describe('the journal renders to the very bytes the lines format writes', () => {
  for (const [platform, iface] of [
    ['x86-vtd', 'type1'],
    ['x86-vtd', 'iommufd'],
    ['arm-smmuv3', 'iommufd'],
  ] as const) {
    it(`the edu driver flow, ${platform} ${iface}`, async () => {
      const [lines, journal] = await Promise.all((['lines', 'journal'] as const).map((format) => recordRun(platform, iface, (context) => void eduDriver(context), format)));
      expect(journal!.text).toBe(lines!.text);
      expect(readTrace(journal!.text).calls.length).toBeGreaterThan(20);
    });
  }

  it('a type1 loop with kernel errnos, a thrown call, fds that change, unnamed pointers, and regions replaced under the same address', () => {
    const { lines, journal, raw } = recordBoth((syscalls) => {
      const { pair, map } = type1ByHand(syscalls);
      for (let index = 0; index < 50; index++) expect(pair(0x1_0000_0000n + BigInt(index) * PAGE)).toEqual([0, 0]);
      // The same IOVA twice: EEXIST on the hot path, then a result with the out words unchanged.
      expect(map(0x10_0000n)).toBe(0);
      expect(map(0x10_0000n)).toBe(-ERRNO.EEXIST);
      // A pointer into no region (written raw), then one into a region again.
      const container = 3;
      const stray = dmaMapStruct(0xdead_0000_0000n, 0x20_0000n);
      expect(syscalls.ioctl(container, MAP_DMA, stray)).toBeLessThan(0);
      expect(syscalls.ioctl(container, MAP_DMA, stray)).toBeLessThan(0);
      // A program buffer's address: named (and announced) by a JSON line, then by binary records.
      const buffer = new Uint8Array(8192);
      const named = dmaMapStruct(syscalls.addressOf(buffer), 0x30_0000n);
      expect(syscalls.ioctl(container, MAP_DMA, named)).toBeLessThanOrEqual(0);
      expect(syscalls.ioctl(container, MAP_DMA, named)).toBeLessThanOrEqual(0);
      // A region unmapped and another mapped in its place: the same pointer names the new one.
      const first = syscalls.mmap(PAGE, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
      const again = dmaMapStruct(first, 0x40_0000n);
      expect(syscalls.ioctl(container, MAP_DMA, again)).toBe(0);
      syscalls.munmap(first, PAGE);
      const second = syscalls.mmap(PAGE, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
      new DataView(again.buffer).setBigUint64(8, second, true);
      new DataView(again.buffer).setBigUint64(16, 0x50_0000n, true);
      syscalls.ioctl(container, MAP_DMA, again);
      // Another fd (a second container): the fd goes in again, then is left out while it stays.
      const other = syscalls.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
      expect(syscalls.ioctl(other, MAP_DMA, again)).toBeLessThan(0);
      expect(syscalls.ioctl(other, MAP_DMA, again)).toBeLessThan(0);
      expect(syscalls.ioctl(container, MAP_DMA, again)).toBeLessThan(0);
      // A bad fd, negative.
      expect(syscalls.ioctl(-1, UNMAP_DMA, new Uint8Array(vfioUapi.vfio_iommu_type1_dma_unmap.sizeof))).toBeLessThan(0);
    });
    expect(isJournal(raw)).toBe(true);
    expect(journal).toBe(lines);
    // The hot path wrote binary records: far fewer bytes than the lines (the rest of the file is NULs sized ahead).
    expect(raw.findLastIndex((byte) => byte !== 0)).toBeLessThan(lines.length / 3);
  });

  it('a call the face threw from, on the hot path', () => {
    const throwing = (syscalls: Syscalls): Syscalls => {
      const face = Object.create(syscalls) as Syscalls;
      face.ioctl = (fd, request, argument) => {
        if (typeof argument !== 'number' && argument.byteLength === 32 && new DataView(argument.buffer, argument.byteOffset).getBigUint64(16, true) === 0xbad000n) {
          throw Object.assign(new Error('the face failed'), { code: 'EIO' });
        }
        return syscalls.ioctl(fd, request, argument);
      };
      return face;
    };
    const files = (['lines', 'journal'] as const).map((format) => {
      const path = scratchPath(`threw-${format}.trace`);
      const recorder = recordSyscalls(throwing(simSyscalls(createSimulator({ platform: 'x86-vtd' }))), { path, format });
      const { pair } = type1ByHand(recorder);
      pair(0x1_0000_0000n);
      expect(() => pair(0xbad000n)).toThrow('the face failed');
      pair(0x1_0000_1000n);
      recorder.stop();
      return readFileSync(path, 'utf8');
    });
    expect(files[1]).toBe(files[0]);
    expect(files[0]).toContain('"errno":"EIO"');
  });

  it('big-endian structs (a P4080 recording on a little-endian host)', () => {
    const files = (['lines', 'journal'] as const).map((format) => {
      const path = scratchPath(`be-${format}.trace`);
      const recorder = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, format, littleEndian: false });
      const map = dmaMapStruct(0x1234_5678_9000n, 0x10_0000n, PAGE, false);
      for (let index = 0; index < 5; index++) {
        new DataView(map.buffer).setBigUint64(16, 0x10_0000n + BigInt(index) * PAGE, false);
        recorder.ioctl(3, MAP_DMA, map);
      }
      recorder.stop();
      return readFileSync(path, 'utf8');
    });
    expect(files[1]).toBe(files[0]);
    expect(files[0]).toContain('"iova":"0x104000"');
  });

  it('renders the same whatever piece of the file a read ends in', () => {
    const { lines, raw } = recordBoth((syscalls) => {
      const { pair } = type1ByHand(syscalls);
      for (let index = 0; index < 200; index++) pair(0x1_0000_0000n + BigInt(index % 7) * PAGE);
      syscalls.readDir('/sys/kernel/iommu_groups');
    });
    for (const chunk of [1, 7, 64, 4096]) {
      const path = scratchPath(`chunk-${chunk}.trace`);
      writeFileSync(path, raw);
      renderJournalFile(path, chunk);
      expect(readFileSync(path, 'utf8')).toBe(lines);
    }
    expect(Buffer.from(renderJournal(raw)).toString('utf8')).toBe(lines);
  });
});

it('refuses a format it does not know, before it creates the file', () => {
  const path = scratchPath('no-such-format.trace');
  expect(() => recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, format: 'yaml' as TraceFileFormat })).toThrow(
    /^recordSyscalls: format is 'journal' or 'lines', not "yaml"$/,
  );
  expect(existsSync(path)).toBe(false);
});

describe('a damaged journal', () => {
  const journal = () =>
    recordBoth((syscalls) => {
      const { pair } = type1ByHand(syscalls);
      for (let index = 0; index < 3; index++) pair(0x1_0000_0000n + BigInt(index) * PAGE);
    });

  /** Where the first binary record starts: after the line that gives it its slot. */
  const firstRecord = (raw: Uint8Array) => raw.indexOf(0x0a, Buffer.from(raw).indexOf('{"slot":1,')) + 1;

  it('is an error at the byte where it stops making sense', () => {
    const { raw } = journal();
    const record = firstRecord(raw);
    expect(raw[record]).toBe(0x01);
    const damaged = Uint8Array.from(raw);
    damaged[record] = 0x7f;
    expect(() => renderJournal(damaged)).toThrow(new RegExp(`^trace journal byte ${record}: 0x7f starts no item`));
    const slotless = Uint8Array.from(raw);
    slotless[record + 1] = 200;
    expect(() => renderJournal(slotless)).toThrow(new RegExp(`^trace journal byte ${record}: slot 200 has no slot line before it`));
    expect(() => renderJournal(raw.subarray(0, 20))).toThrow(/^trace journal byte 0: the header line is cut short/);
    expect(() => readTrace(damaged)).toThrow(/trace journal byte/);
  });

  it('makes stop() throw, leaving the journal as it was and no half-written trace', () => {
    const path = scratchPath('damaged-before-stop.trace');
    const recorder = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path });
    const { pair } = type1ByHand(recorder);
    pair(0x1_0000_0000n);
    // A stray byte where the first binary record starts (the file and the recorder's mapping share pages).
    const record = firstRecord(readFileSync(path));
    const fd = openSync(path, 'r+');
    writeSync(fd, Uint8Array.of(0x7f), 0, 1, record);
    closeSync(fd);
    expect(() => recorder.stop()).toThrow(new RegExp(`^trace journal byte ${record}: 0x7f starts no item`));
    expect(isJournal(readFileSync(path))).toBe(true);
    expect(existsSync(`${path}.rendering`)).toBe(false);
    expect(() => readTrace(readFileSync(path))).toThrow(/trace journal byte/);
  });

  it('ends at the NULs a dead recorder leaves, with the call in flight as the last, unterminated line', () => {
    const { raw, lines } = journal();
    // Cut the last call record between its halves: its outcome (one byte: 0 and nothing changed) is missing.
    let outcome = raw.byteLength - 1;
    while (raw[outcome] === 0) outcome--;
    expect(raw[outcome]).toBe(0x06);
    const inFlight = new Uint8Array(outcome + 4096);
    inFlight.set(raw.subarray(0, outcome));
    const text = Buffer.from(renderJournal(inFlight)).toString('utf8');
    const whole = lines.split('\n').filter((line) => line !== '');
    expect(text).toBe(`${whole.slice(0, -1).join('\n')}\n${whole.at(-1)!.replace(/,"out":\{[^}]*\}/, '').replace(/,"result":0\}$/, '')}`);
    expect(readTrace(inFlight, { allowTruncated: true }).calls.length).toBe(whole.length - 2);
  });
});
