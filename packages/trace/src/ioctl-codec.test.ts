import { IOC_NONE_POWERPC, iommufdUapi, ioctlNumber, vfioUapi } from '@ioas/vfio';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Syscalls } from '@ioas/core';
import { dmaMapStruct } from './__fixtures__/type1-by-hand.mjs';
import { compareIoctl, decodeIoctl, encodeIoctl, IOCTL_SPECS, ioctlEmitter, ioctlName, ioctlSpec, writeIoctlIn, writeIoctlOut, type ComparedIoctl, type IoctlEmitter, type IoctlSpec, type PointerNames } from './ioctl-codec.js';
import { LineWriter } from './line-writer.js';
import { RegionNames } from './region-names.js';
import type { TracePointer } from './trace-format.js';

/** Region 1: 64 KiB at a made-up host address; region 2 holds the program's `allowed_iovas` array. */
const REGION = 0x7f12_3456_0000n;
const REGION_LENGTH = 0x1_0000n;
const ARRAY = 0x5555_0000_0000n;

function pointerNames(array: Uint8Array): PointerNames {
  return {
    name(address) {
      if (address >= REGION && address < REGION + REGION_LENGTH) return { buffer: 1, offset: `0x${(address - REGION).toString(16)}` };
      if (address >= ARRAY && address < ARRAY + BigInt(array.byteLength)) return { buffer: 2, offset: `0x${(address - ARRAY).toString(16)}` };
      return undefined;
    },
    read(address, length) {
      const at = Number(address - ARRAY);
      return address >= ARRAY && at + length <= array.byteLength ? array.subarray(at, at + length) : undefined;
    },
  };
}

const identity = {
  pointer: (pointer: TracePointer) => (pointer.buffer === 1 ? REGION : ARRAY) + BigInt(pointer.offset),
  fd: (fd: number) => fd,
  addressOf: () => ARRAY,
};

/** Random argument bytes for a spec: its struct (or part of it), then maybe a tail; pointers aimed at the regions. */
function argumentFor(spec: IoctlSpec, little: boolean) {
  return fc
    .record({
      body: fc.uint8Array({ minLength: spec.sizeof + 64, maxLength: spec.sizeof + 64 }),
      length: fc.oneof({ weight: 4, arbitrary: fc.constant(spec.sizeof) }, fc.integer({ min: 0, max: spec.sizeof + 40 })),
      pointerInRegion: fc.boolean(),
      offset: fc.integer({ min: 0, max: 0xfff0 }),
      count: fc.integer({ min: 0, max: 3 }),
      eventfds: fc.boolean(),
      ranges: fc.uint8Array({ minLength: 64, maxLength: 64 }),
    })
    .map(({ body, length, pointerInRegion, offset, count, eventfds, ranges }) => {
      const bytes = body.subarray(0, length);
      const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
      for (const field of spec.fields) {
        if (field.kind === 'pointer') view.setBigUint64(field.offset, pointerInRegion ? REGION + BigInt(offset) : BigInt(offset), little);
        if (field.kind === 'iova-ranges') view.setBigUint64(field.offset, ARRAY, little);
        if (field.count !== undefined) view.setUint32(spec.fields.find((candidate) => candidate.name === field.count)!.offset, count, little);
      }
      if (spec.name === 'VFIO_DEVICE_SET_IRQS') {
        const flags = view.getUint32(4, little);
        view.setUint32(4, eventfds ? flags | vfioUapi.VFIO_IRQ_SET_DATA_EVENTFD : flags & ~vfioUapi.VFIO_IRQ_SET_DATA_EVENTFD, little);
        view.setUint32(16, count, little);
      }
      return { bytes, ranges };
    });
}

describe('ioctlName', () => {
  it('names every VFIO_NR and IOMMUFD_NR ioctl in both encodings', () => {
    for (const [name, nr] of Object.entries({ ...vfioUapi.VFIO_NR, ...iommufdUapi.IOMMUFD_NR })) {
      expect(ioctlName(ioctlNumber(nr, 'generic'))).toBe(name);
      expect(ioctlName(ioctlNumber(nr, 'powerpc'))).toBe(name);
      expect(ioctlSpec(name)?.nr).toBe(nr);
    }
  });

  it('names an unknown one by its number', () => {
    expect(ioctlName(0x3b00 | 0x7f)).toBe('nr 0x7f'); // between VFIO's last (VFIO_DEVICE_DETACH_IOMMUFD_PT) and iommufd's first
    expect(ioctlName((IOC_NONE_POWERPC | 0x3b00 | 0x99) >>> 0)).toBe('nr 0x99');
    expect(ioctlName(0x8008_5401)).toBe('nr 0x80085401'); // another type, with size bits
  });
});

describe('the specs', () => {
  it('take sizes and offsets from the uapi tables, every byte of each struct covered once', () => {
    const tables: Record<string, Record<string, number>> = { ...vfioUapi, ...iommufdUapi } as unknown as Record<string, Record<string, number>>;
    for (const spec of IOCTL_SPECS.filter((candidate) => candidate.argument === 'struct' && candidate.struct !== '__s32')) {
      const table = tables[spec.struct!]!;
      expect(spec.sizeof, spec.name).toBe(table.sizeof);
      let end = 0;
      for (const field of spec.fields) {
        expect(field.offset, `${spec.name}.${field.name}`).toBe(end);
        if (field.name !== 'pad') expect(table[field.name], `${spec.name}.${field.name}`).toBe(field.offset);
        end += field.size;
      }
      expect(end, spec.name).toBe(spec.sizeof);
    }
  });

  it('mark the file descriptors and host pointers', () => {
    const marked = (kind: string) => IOCTL_SPECS.flatMap((spec) => spec.fields.filter((field) => field.kind === kind).map((field) => `${spec.name}.${field.name}`));
    expect(marked('fd')).toEqual(['VFIO_GROUP_SET_CONTAINER.fd', 'VFIO_DEVICE_BIND_IOMMUFD.iommufd']);
    expect(marked('pointer')).toEqual(['VFIO_IOMMU_MAP_DMA.vaddr', 'IOMMU_IOAS_MAP.user_va', 'IOMMU_HWPT_ALLOC.data_uptr', 'IOMMU_GET_HW_INFO.data_uptr', 'IOMMU_HWPT_GET_DIRTY_BITMAP.data']);
    expect(marked('iova-ranges')).toEqual(['IOMMU_IOAS_ALLOW_IOVAS.allowed_iovas', 'IOMMU_IOAS_IOVA_RANGES.allowed_iovas']);
    expect(ioctlSpec('VFIO_DEVICE_SET_IRQS')?.tail).toBe('irq-data');
    expect(ioctlSpec('VFIO_GROUP_GET_DEVICE_FD')?.returnsFd).toBe(true);
  });
});

describe('decode then encode', () => {
  for (const little of [true, false]) {
    for (const spec of IOCTL_SPECS.filter((candidate) => candidate.argument === 'struct' || candidate.argument === 'raw')) {
      it(`gives back the bytes of ${spec.name} (${little ? 'little' : 'big'}-endian)`, () => {
        const request = ioctlNumber(spec.nr);
        fc.assert(
          fc.property(argumentFor(spec, little), ({ bytes, ranges }) => {
            const decoded = decodeIoctl(request, bytes, 'in', { littleEndian: little, pointers: pointerNames(ranges) });
            expect(decoded.ioctl).toBe(spec.name);
            // Nothing of the recording process's address space leaks: pointers into regions are named.
            expect(JSON.stringify(decoded)).not.toContain(REGION.toString(16));
            expect(JSON.stringify(decoded)).not.toContain(ARRAY.toString(16));
            const sides: Uint8Array[] = [];
            const encoded = encodeIoctl({ request, ...decoded }, { ...identity, littleEndian: little, addressOf: (side) => (sides.push(side), ARRAY) });
            expect(encoded.argument).toEqual(bytes);
            // The allowed_iovas array is rebuilt from the trace, not pointed at the recording's memory.
            // Only the num_iovas elements are argument data; the rest of the program's buffer is not.
            const elements = typeof decoded.in?.num_iovas === 'number' ? decoded.in.num_iovas * 16 : 0;
            for (const side of sides) expect(side.subarray(0, elements)).toEqual(ranges.subarray(0, elements));
            expect(encoded.keep).toEqual(sides);
          }),
          { numRuns: 200 },
        );
      });
    }
  }

  it('gives back a device name, with or without its NUL and bytes after it', () => {
    const request = ioctlNumber(vfioUapi.VFIO_NR.VFIO_GROUP_GET_DEVICE_FD);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
        const decoded = decodeIoctl(request, bytes, 'in');
        expect(encodeIoctl({ request, ...decoded }, identity).argument).toEqual(bytes);
      }),
    );
    expect(decodeIoctl(request, new TextEncoder().encode('0000:00:03.0\0'), 'in')).toEqual({ ioctl: 'VFIO_GROUP_GET_DEVICE_FD', in: { name: '0000:00:03.0' } });
  });

  it('passes integer arguments by value', () => {
    const request = ioctlNumber(vfioUapi.VFIO_NR.VFIO_SET_IOMMU);
    const decoded = decodeIoctl(request, vfioUapi.VFIO_TYPE1v2_IOMMU, 'in');
    expect(decoded).toEqual({ ioctl: 'VFIO_SET_IOMMU', value: 3 });
    expect(encodeIoctl({ request, ...decoded }, identity)).toEqual({ argument: 3, keep: [] });
  });

  it('translates recorded fds and pointers to the replay’s', () => {
    const little = true;
    const irqs = new Uint8Array(28);
    const view = new DataView(irqs.buffer);
    view.setUint32(0, 28, little);
    view.setUint32(4, vfioUapi.VFIO_IRQ_SET_DATA_EVENTFD | vfioUapi.VFIO_IRQ_SET_ACTION_TRIGGER, little);
    view.setUint32(8, vfioUapi.VFIO_PCI_MSI_IRQ_INDEX, little);
    view.setUint32(16, 2, little);
    view.setInt32(20, 7, little);
    view.setInt32(24, -1, little);
    const request = ioctlNumber(vfioUapi.VFIO_NR.VFIO_DEVICE_SET_IRQS);
    const decoded = decodeIoctl(request, irqs, 'in', { littleEndian: little });
    expect(decoded.in).toEqual({ argsz: 28, flags: 0x24, index: 1, start: 0, count: 2, data: [7, -1] });
    const encoded = encodeIoctl({ request, ...decoded }, { ...identity, littleEndian: little, fd: (fd) => fd + 100 });
    const out = new DataView((encoded.argument as Uint8Array).buffer);
    expect([out.getInt32(20, little), out.getInt32(24, little)]).toEqual([107, -1]);

    const map = decodeIoctl(ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA), dmaMapStruct(REGION + 0x2000n, 0x10_0000n, 0x1000n, little), 'in', { littleEndian: little, pointers: pointerNames(new Uint8Array()) });
    expect(map.in?.vaddr).toEqual({ buffer: 1, offset: '0x2000' });
    const replayed = encodeIoctl({ request: ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA), ...map }, { ...identity, littleEndian: little, pointer: (pointer) => 0x1000_0000n + BigInt(pointer.offset) });
    expect(new DataView((replayed.argument as Uint8Array).buffer).getBigUint64(8, little)).toBe(0x1000_2000n);
  });
});

describe('decoding out', () => {
  it('records the fields the kernel writes, and the arrays it fills up to the capacity', () => {
    const little = true;
    const request = ioctlNumber(iommufdUapi.IOMMUFD_NR.IOMMU_IOAS_IOVA_RANGES);
    const array = new Uint8Array(2 * 16);
    const query = new Uint8Array(32);
    const view = new DataView(query.buffer);
    view.setUint32(0, 32, little);
    view.setUint32(4, 2, little);
    view.setUint32(8, 2, little);
    view.setBigUint64(16, ARRAY, little);
    const before = decodeIoctl(request, query, 'in', { littleEndian: little, pointers: pointerNames(array) });
    expect(before.in?.allowed_iovas).toEqual([
      { start: '0x0', last: '0x0' },
      { start: '0x0', last: '0x0' },
    ]);
    // The kernel has three ranges: it fills the two slots, says 3, answers EMSGSIZE.
    const arrayView = new DataView(array.buffer);
    arrayView.setBigUint64(0, 0n, little);
    arrayView.setBigUint64(8, 0xfedf_ffffn, little);
    arrayView.setBigUint64(16, 0xfef0_0000n, little);
    arrayView.setBigUint64(24, 0xffff_ffff_ffffn, little);
    view.setUint32(8, 3, little);
    view.setBigUint64(24, 0x1000n, little);
    const after = decodeIoctl(request, query, 'out', { littleEndian: little, pointers: pointerNames(array), before });
    expect(after).toEqual({
      ioctl: 'IOMMU_IOAS_IOVA_RANGES',
      out: {
        num_iovas: 3,
        allowed_iovas: [
          { start: '0x0', last: '0xfedfffff' },
          { start: '0xfef00000', last: '0xffffffffffff' },
        ],
        out_iova_alignment: '0x1000',
      },
    });
  });

  it('keeps a capability chain as tailOut and nothing for write-only structs', () => {
    const info = new Uint8Array(40).fill(0xab);
    expect(decodeIoctl(ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_GET_INFO), info, 'out').tailOut).toBe('ab'.repeat(16));
    expect(decodeIoctl(ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA), dmaMapStruct(REGION), 'out')).toEqual({ ioctl: 'VFIO_IOMMU_MAP_DMA' });
    expect(decodeIoctl(ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_UNMAP_DMA), dmaMapStruct(REGION).subarray(0, 24), 'out').out).toEqual({ size: '0x100000' });
  });
});

describe('compareIoctl', () => {
  const recorded: ComparedIoctl = {
    ioctl: 'VFIO_DEVICE_BIND_IOMMUFD',
    request: ioctlNumber(vfioUapi.VFIO_NR.VFIO_DEVICE_BIND_IOMMUFD),
    in: { argsz: 16, flags: 0, iommufd: 4, out_devid: 0 },
    out: { out_devid: 1 },
    result: 0,
  };

  it('compares fds through the mapping, not raw', () => {
    const replayed = { ...recorded, in: { ...recorded.in, iommufd: 9 } };
    expect(compareIoctl(recorded, replayed)).toEqual({ field: 'in.iommufd', recorded: 4, replayed: 9 });
    expect(compareIoctl(recorded, replayed, { fd: (fd) => fd + 5 })).toBeUndefined();
  });

  it('names the first difference', () => {
    expect(compareIoctl(recorded, { ...recorded, out: { out_devid: 2 } })).toEqual({ field: 'out.out_devid', recorded: 1, replayed: 2 });
    expect(compareIoctl(recorded, { ...recorded, result: -1, errno: 'EINVAL' })).toEqual({ field: 'errno', recorded: undefined, replayed: 'EINVAL' });
    expect(compareIoctl(recorded, { ...recorded, ioctl: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT' })?.field).toBe('ioctl');
  });

  it('compares pointers by region, and a new fd only by being one', () => {
    const map: ComparedIoctl = {
      ioctl: 'VFIO_IOMMU_MAP_DMA',
      request: ioctlNumber(vfioUapi.VFIO_NR.VFIO_IOMMU_MAP_DMA),
      in: { argsz: 32, flags: 3, vaddr: { buffer: 2, offset: '0x0' }, iova: '0x0', size: '0x1000' },
      result: 0,
    };
    expect(compareIoctl(map, { ...map, in: { ...map.in, vaddr: { buffer: 3, offset: '0x0' } } })?.field).toBe('in.vaddr');
    expect(compareIoctl(map, { ...map, in: { ...map.in, vaddr: { buffer: 3, offset: '0x0' } } }, { buffer: (buffer) => buffer + 1 })).toBeUndefined();
    const open: ComparedIoctl = { ioctl: 'VFIO_GROUP_GET_DEVICE_FD', request: ioctlNumber(vfioUapi.VFIO_NR.VFIO_GROUP_GET_DEVICE_FD), in: { name: 'x' }, result: 7 };
    expect(compareIoctl(open, { ...open, result: 12 })).toBeUndefined();
    const { result: _result, ...failed } = open;
    expect(compareIoctl(open, { ...failed, errno: 'ENODEV' })?.field).toBe('errno');
  });
});

describe('the generated emitters (the recorder’s hot path)', () => {
  const names = new RegionNames({ memory: () => new Uint8Array(0) } as unknown as Syscalls);
  names.addMapping(REGION, REGION_LENGTH);
  const general = (request: number, bytes: Uint8Array, little: boolean, n: number, fd: number) => {
    const writer = new LineWriter(new Uint8Array(4096), () => {
      throw new Error('full');
    });
    writer.json(`{"n":${n},"call":"ioctl","fd":${fd},"ioctl":${JSON.stringify(ioctlName(request))},"request":${request}`);
    const elements = writeIoctlIn(writer, request, bytes, little, names);
    writeIoctlOut(writer, request, bytes, little, names, elements);
    return new TextDecoder().decode(writer.buffer.subarray(0, writer.position));
  };
  const emitted = (emitter: IoctlEmitter, bytes: Uint8Array, n: number, fd: number) => {
    const buffer = new Uint8Array(4096);
    const view = new DataView(buffer.buffer);
    let at = emitter.start(buffer, view, 0, bytes, n, fd, names);
    expect(at).toBeLessThanOrEqual(emitter.startMax);
    const start = at;
    at = emitter.end(buffer, view, at, bytes, names);
    expect(at - start).toBeLessThanOrEqual(emitter.endMax);
    return new TextDecoder().decode(buffer.subarray(0, at));
  };

  it('cover the fixed-size structs and nothing else', () => {
    const covered = IOCTL_SPECS.filter((spec) => ioctlEmitter(ioctlNumber(spec.nr), true) !== undefined).map((spec) => spec.name);
    expect(covered).toContain('VFIO_IOMMU_MAP_DMA');
    expect(covered).toContain('IOMMU_IOAS_UNMAP');
    expect(covered).not.toContain('IOMMU_IOAS_IOVA_RANGES');
    expect(covered).not.toContain('VFIO_SET_IOMMU');
    expect(covered).not.toContain('VFIO_GROUP_GET_DEVICE_FD');
    expect(covered).not.toContain('VFIO_DEVICE_SET_IRQS');
  });

  for (const little of [true, false]) {
    it(`write what the general writer writes (${little ? 'little' : 'big'}-endian)`, () => {
      for (const spec of IOCTL_SPECS) {
        const request = ioctlNumber(spec.nr, spec.nr % 2 === 0 ? 'generic' : 'powerpc');
        const emitter = ioctlEmitter(request, little);
        if (emitter === undefined) continue;
        fc.assert(
          fc.property(
            argumentFor(spec, little).map(({ bytes }) => bytes),
            fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
            fc.integer({ min: -1, max: 0x7fff_ffff }),
            fc.uint8Array({ minLength: spec.sizeof, maxLength: spec.sizeof }),
            (partial, n, fd, noise) => {
              // Exact size only: fill what the generator cut short.
              const bytes = noise.slice();
              bytes.set(partial.subarray(0, spec.sizeof));
              const line = emitted(emitter, bytes, n, fd);
              expect(line).toBe(general(request, bytes, little, n, fd));
              JSON.parse(`${line}}`);
            },
          ),
          { numRuns: 300 },
        );
      }
    });
  }
});
