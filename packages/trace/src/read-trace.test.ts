import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { IoasError, SYSCALL_FLAGS } from '@ioas/core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type1ByHand } from './__fixtures__/type1-by-hand.mjs';
import { readTrace, readTraceFile } from './read-trace.js';
import { recordSyscalls } from './recorder.js';

const directory = mkdtempSync(join(tmpdir(), 'ioas-trace-read-'));
afterAll(() => rmSync(directory, { recursive: true, force: true }));

/** A short real trace: open, a map and unmap by hand, a failing open. */
function recorded(): string {
  const path = join(directory, 'small.jsonl');
  const syscalls = recordSyscalls(simSyscalls(createSimulator({ platform: 'x86-vtd' })), { path, label: 'small' });
  type1ByHand(syscalls).map(0x10_0000n);
  syscalls.open('/dev/vfio/42', SYSCALL_FLAGS.O_RDWR);
  syscalls.stop();
  return readFileSync(path, 'utf8');
}

const text = recorded();
const lines = text.split('\n').slice(0, -1);

function failure(run: () => unknown): IoasError {
  try {
    run();
  } catch (error) {
    if (IoasError.isInstance(error)) return error;
    throw error;
  }
  throw new Error('expected an IoasError');
}

const withLine = (index: number, line: string) => [...lines.slice(0, index), line, ...lines.slice(index + 1)].join('\n') + '\n';

describe('readTrace', () => {
  it('reads what the recorder wrote', () => {
    const trace = readTrace(text);
    expect(trace.header).toMatchObject({ format: 'ioas-trace', version: 1, label: 'small' });
    expect(trace.calls.map((call) => call.call)).toEqual(['mmap', 'open', 'open', 'ioctl', 'ioctl', 'ioctl', 'open']);
    expect(trace.calls[5]).toMatchObject({ ioctl: 'VFIO_IOMMU_MAP_DMA', in: { vaddr: { buffer: 1, offset: '0x0' } } });
    expect(trace.calls[6]).toMatchObject({ errno: 'ENOENT' });
    expect(trace.truncated).toBeUndefined();
  });

  it('takes NUL bytes at the end as the end (a recorder that died before cutting its file)', () => {
    expect(readTrace(text + '\0'.repeat(4096))).toEqual(readTrace(text));
  });

  it('keeps fields a later version-1 writer adds', () => {
    const trace = readTrace(withLine(2, lines[2]!.replace('}', ',"future":"yes"}')));
    expect((trace.calls[1] as unknown as Record<string, unknown>).future).toBe('yes');
  });

  it('reads a file', () => {
    const path = join(directory, 'copy.jsonl');
    writeFileSync(path, text);
    expect(readTraceFile(path)).toEqual(readTrace(text));
    expect(failure(() => readTraceFile(join(directory, 'none.jsonl'))).message).toMatch(/cannot read trace .*none\.jsonl: ENOENT/);
  });
});

describe('readTrace refuses, naming the line and the field', () => {
  const cases: [string, string, RegExp][] = [
    ['an empty trace', '', /^trace line 1: missing header/],
    ['a trace without its header', lines.slice(1).join('\n') + '\n', /^trace line 1: missing header/],
    ['a foreign header', withLine(0, '{"type":"header","format":"strace","version":1}'), /^trace line 1: format: not an ioas trace/],
    ['another version', withLine(0, lines[0]!.replace('"version":1', '"version":2')), /^trace line 1: version: 2 is not a version this reader knows/],
    ['a header missing a field', withLine(0, lines[0]!.replace(/"kernel":"[^"]*",/, '')), /^trace line 1: kernel: /],
    ['a line that is not JSON', withLine(3, '{"n":3,'), /^trace line 4: not JSON/],
    ['an empty line', withLine(2, ''), /^trace line 3: empty line/],
    ['a second header', withLine(2, lines[0]!), /^trace line 3: type: a second header/],
    ['an unknown call', withLine(2, '{"n":2,"call":"fork"}'), /^trace line 3: call: "fork" is not a call/],
    ['a call without its name', withLine(2, '{"n":2}'), /^trace line 3: call: missing/],
    ['a number that does not increase', withLine(3, lines[3]!.replace('"n":3', '"n":2')), /^trace line 4: n: 2 does not follow 2/],
    ['a wrong field type', withLine(2, lines[2]!.replace(/"flags":\d+/, '"flags":"2"')), /^trace line 3: flags: /],
    ['an address that is not hex', withLine(6, lines[6]!.replace('"iova":"0x100000"', '"iova":"1048576"')), /^trace line 7: in\.iova: /],
    ['a pointer with a bad offset', withLine(6, lines[6]!.replace('"offset":"0x0"', '"offset":"0X0"')), /^trace line 7: in\.vaddr/],
    ['a field the struct does not have', withLine(6, lines[6]!.replace('"argsz":32', '"argsz":32,"vaddress":"0x0"')), /^trace line 7: in\.vaddress: not a field of vfio_iommu_type1_dma_map/],
    ['a u32 out of range', withLine(6, lines[6]!.replace('"argsz":32', '"argsz":4294967296')), /^trace line 7: in\.argsz: .*\(a u32 field\)/],
    ['a name that is not the request’s', withLine(6, lines[6]!.replace('VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_UNMAP_DMA')), /^trace line 7: ioctl: "VFIO_IOMMU_UNMAP_DMA" is not the name of request 15217/],
    ['a tail that is not hex bytes', withLine(6, lines[6]!.replace('"result":0', '"tailIn":"abc","result":0')), /^trace line 7: tailIn: must be hex bytes/],
    ['a truncated last line', text.slice(0, -25), /^trace line 8: truncated/],
  ];
  for (const [what, input, message] of cases) {
    it(what, () => {
      const error = failure(() => readTrace(input));
      expect(error.code).toBe('invalid-argument');
      expect(error.message).toMatch(message);
    });
  }

  it('names the line of a problem after trailing NULs are cut', () => {
    expect(failure(() => readTrace(text.slice(0, -25) + '\0\0\0')).message).toMatch(/^trace line 8: truncated/);
  });
});

describe('a trace cut anywhere (a crash at any byte)', () => {
  it('reads every complete line with allowTruncated, and names the cut line without it', () => {
    const header = lines[0]!.length + 1;
    fc.assert(
      fc.property(fc.integer({ min: header, max: text.length }), (cut) => {
        const prefix = text.slice(0, cut) + '\0'.repeat(64);
        const complete = text.slice(0, cut).split('\n').length - 2;
        const partial = text.slice(0, cut).split('\n').at(-1)!;
        const trace = readTrace(prefix, { allowTruncated: true });
        // A cut that leaves complete JSON (at a line's end, before its newline) keeps that line.
        let whole = false;
        try {
          JSON.parse(partial);
          whole = true;
        } catch {
          // Cut inside the line.
        }
        expect(trace.calls.length).toBe(complete + (whole ? 1 : 0));
        expect(trace.truncated).toBe(partial === '' || whole ? undefined : partial);
        if (partial !== '' && !whole) expect(() => readTrace(prefix)).toThrow(/truncated/);
      }),
      { numRuns: 300 },
    );
  });
});
