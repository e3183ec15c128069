/**
 * The ioctl codec: the one place that knows every VFIO and iommufd ioctl's argument, field by
 * field. The recorder decodes with it (the struct going in, before the call; the fields the kernel
 * writes, after), the replay encodes with it (a recorded call back into an argument for this
 * process) and compares with it (a replayed call against the recorded one).
 *
 * Names, struct sizes and field offsets come from @ioas/vfio's uapi tables (`VFIO_NR`, `IOMMUFD_NR`,
 * the `vfio_*` and `iommu_*` layouts); a field's width is the next field's offset minus its own
 * (`sizeof` for the last). What the tables cannot say is written here, per ioctl: which fields the
 * kernel writes back, which are host pointers, which are file descriptors, what follows the struct.
 *
 * There is one decoder: it writes JSON straight into a {@link LineWriter} (what the recorder's hot
 * path needs), and {@link decodeIoctl} parses what it wrote, so the trace and the objects cannot
 * disagree.
 */
import { endianness } from 'node:os';
import { IoasError } from '@ioas/core';
import { IOC_NONE_POWERPC, iommufdUapi, vfioUapi } from '@ioas/vfio';
import { bytesOf, HEX_DIGITS, LineWriter, putInt, putUint } from './line-writer.js';
import type { IoctlCall, TraceField, TraceIovaRange, TracePointer } from './trace-format.js';

/**
 * How a field is recorded.
 *
 * - `u8`, `u16`, `u32`: a JSON number. `u64`: a hex string.
 * - `fd`: a file descriptor (`__s32`), a JSON number: a replay translates it to its own fd.
 * - `pointer`: a host address (`__u64`): a {@link TracePointer} into a region the trace knows, or a
 *   hex string when it falls in none.
 * - `iova-ranges`: a host address of an array of `struct iommu_iova_range` that is part of the
 *   argument (its length in another field): recorded as the array, `[{ "start", "last" }]`.
 * - `string`: a NUL-terminated string argument (a device name), as a JSON string (latin1).
 * - `bytes`: a field of another width, as hex of its bytes.
 */
export type IoctlFieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'fd' | 'pointer' | 'iova-ranges' | 'string' | 'bytes';

/** One field of an ioctl's argument struct. */
export interface IoctlField {
  /** The field's name in the kernel header. */
  readonly name: string;
  /** Byte offset in the struct. */
  readonly offset: number;
  /** Width in bytes. */
  readonly size: number;
  /** How it is recorded. */
  readonly kind: IoctlFieldKind;
  /** True when the kernel may write it: it is recorded again, in `out`, after the call. */
  readonly out: boolean;
  /** For `iova-ranges`: the field holding the element count. */
  readonly count?: string;
}

/**
 * What an ioctl's argument is.
 *
 * - `value`: an integer passed by value (`VFIO_SET_IOMMU`'s type).
 * - `struct`: a pointer to a struct ({@link IoctlSpec.fields}), maybe followed by more bytes.
 * - `string`: a pointer to a NUL-terminated string (`VFIO_GROUP_GET_DEVICE_FD`).
 * - `raw`: a pointer to bytes this codec has no layout for, recorded as hex.
 */
export type IoctlArgumentKind = 'value' | 'struct' | 'string' | 'raw';

/**
 * What follows the fixed struct.
 *
 * - `bytes`: hex in `tailIn` (and `tailOut` when {@link IoctlSpec.tailOut}).
 * - `irq-data`: VFIO_DEVICE_SET_IRQS's `data[]`: with `VFIO_IRQ_SET_DATA_EVENTFD`, `count` eventfds,
 *   recorded as `in.data` (an array of fds); anything else as hex in `tailIn`.
 */
export type IoctlTailKind = 'bytes' | 'irq-data';

/** Everything the codec knows of one ioctl. */
export interface IoctlSpec {
  /** The kernel name (`VFIO_IOMMU_MAP_DMA`). */
  readonly name: string;
  /** The command number (`VFIO_BASE + 13`); the request is `_IO(';', nr)`. */
  readonly nr: number;
  /** The struct's name in the kernel header, for `struct` arguments. */
  readonly struct?: string;
  /** What the argument is. */
  readonly argument: IoctlArgumentKind;
  /** The fixed struct's size (`sizeof`); 0 when there is none. */
  readonly sizeof: number;
  /** The struct's fields in offset order (empty unless `struct` or `string`). */
  readonly fields: readonly IoctlField[];
  /** What follows the fixed struct. */
  readonly tail: IoctlTailKind;
  /** True when the kernel writes past the fixed struct (capability chains): recorded in `tailOut`. */
  readonly tailOut: boolean;
  /** True when a successful call returns a new file descriptor (`VFIO_GROUP_GET_DEVICE_FD`). */
  readonly returnsFd: boolean;
}

type Layout = { readonly sizeof: number } & Readonly<Record<string, number>>;

interface StructOptions {
  /** Fields the kernel writes back. `'*'`: every field. */
  readonly out?: readonly string[] | '*';
  /** Field kinds other than the width's. */
  readonly kinds?: Readonly<Record<string, IoctlFieldKind>>;
  /** For `iova-ranges` fields: the count field. */
  readonly counts?: Readonly<Record<string, string>>;
  /**
   * A field followed by padding the table leaves out: `{ cap_offset: 'pad' }` splits the 8 bytes the
   * offsets give `cap_offset` into `__u32 cap_offset; __u32 pad;`, as the header declares them.
   */
  readonly split?: Readonly<Record<string, string>>;
  readonly tail?: IoctlTailKind;
  readonly tailOut?: boolean;
}

const NOT_FIELDS = new Set(['sizeof', 'minsz']);

function kindOfWidth(size: number): IoctlFieldKind {
  return size === 1 ? 'u8' : size === 2 ? 'u16' : size === 4 ? 'u32' : size === 8 ? 'u64' : 'bytes';
}

/** The fields of a uapi layout table: offset order, widths from the next offset (or `sizeof`). */
function fieldsOf(layout: Layout, options: StructOptions): IoctlField[] {
  const entries = Object.entries(layout)
    .filter(([name]) => !NOT_FIELDS.has(name))
    .sort((a, b) => a[1] - b[1]);
  const out = options.out ?? [];
  const fields: IoctlField[] = [];
  const add = (name: string, offset: number, size: number) => {
    const count = options.counts?.[name];
    fields.push({
      name,
      offset,
      size,
      kind: options.kinds?.[name] ?? kindOfWidth(size),
      out: out === '*' || out.includes(name),
      ...(count === undefined ? {} : { count }),
    });
  };
  entries.forEach(([name, offset], index) => {
    const end = index + 1 < entries.length ? entries[index + 1]![1] : layout.sizeof;
    // A field at sizeof is a flexible array member (`data[]`): the tail, not a fixed field.
    if (end <= offset) return;
    const pad = options.split?.[name];
    if (pad !== undefined) {
      const half = (end - offset) / 2;
      add(name, offset, half);
      add(pad, offset + half, half);
    } else add(name, offset, end - offset);
  });
  return fields;
}

function struct(name: string, nr: number, structName: string, layout: Layout, options: StructOptions = {}): IoctlSpec {
  return {
    name,
    nr,
    struct: structName,
    argument: 'struct',
    sizeof: layout.sizeof,
    fields: fieldsOf(layout, options),
    tail: options.tail ?? 'bytes',
    tailOut: options.tailOut ?? false,
    returnsFd: false,
  };
}

function byValue(name: string, nr: number): IoctlSpec {
  return { name, nr, argument: 'value', sizeof: 0, fields: [], tail: 'bytes', tailOut: false, returnsFd: false };
}

const V = vfioUapi;
const I = iommufdUapi;
const VNR = V.VFIO_NR;
const INR = I.IOMMUFD_NR;

/**
 * VFIO_GROUP_SET_CONTAINER takes `__s32 *`: the container fd (`int fd` in vfio_group_ioctl_set_container).
 * The uapi tables have no struct for a lone int; this is that int, not a copy of a table.
 */
const groupSetContainerArgument = { sizeof: 4, fd: 0 } as const;

const SPECS: readonly IoctlSpec[] = [
  byValue('VFIO_GET_API_VERSION', VNR.VFIO_GET_API_VERSION),
  byValue('VFIO_CHECK_EXTENSION', VNR.VFIO_CHECK_EXTENSION),
  byValue('VFIO_SET_IOMMU', VNR.VFIO_SET_IOMMU),
  struct('VFIO_GROUP_GET_STATUS', VNR.VFIO_GROUP_GET_STATUS, 'vfio_group_status', V.vfio_group_status, { out: ['flags'] }),
  struct('VFIO_GROUP_SET_CONTAINER', VNR.VFIO_GROUP_SET_CONTAINER, '__s32', groupSetContainerArgument, { kinds: { fd: 'fd' } }),
  byValue('VFIO_GROUP_UNSET_CONTAINER', VNR.VFIO_GROUP_UNSET_CONTAINER),
  {
    name: 'VFIO_GROUP_GET_DEVICE_FD',
    nr: VNR.VFIO_GROUP_GET_DEVICE_FD,
    argument: 'string',
    sizeof: 0,
    fields: [{ name: 'name', offset: 0, size: 0, kind: 'string', out: false }],
    tail: 'bytes',
    tailOut: false,
    returnsFd: true,
  },
  struct('VFIO_DEVICE_GET_INFO', VNR.VFIO_DEVICE_GET_INFO, 'vfio_device_info', V.vfio_device_info, { out: '*', tailOut: true }),
  struct('VFIO_DEVICE_GET_REGION_INFO', VNR.VFIO_DEVICE_GET_REGION_INFO, 'vfio_region_info', V.vfio_region_info, {
    out: ['argsz', 'flags', 'cap_offset', 'size', 'offset'],
    tailOut: true,
  }),
  struct('VFIO_DEVICE_GET_IRQ_INFO', VNR.VFIO_DEVICE_GET_IRQ_INFO, 'vfio_irq_info', V.vfio_irq_info, { out: ['flags', 'count'] }),
  struct('VFIO_DEVICE_SET_IRQS', VNR.VFIO_DEVICE_SET_IRQS, 'vfio_irq_set', V.vfio_irq_set, { tail: 'irq-data' }),
  byValue('VFIO_DEVICE_RESET', VNR.VFIO_DEVICE_RESET),
  struct('VFIO_IOMMU_GET_INFO', VNR.VFIO_IOMMU_GET_INFO, 'vfio_iommu_type1_info', V.vfio_iommu_type1_info, { out: '*', split: { cap_offset: 'pad' }, tailOut: true }),
  struct('VFIO_IOMMU_MAP_DMA', VNR.VFIO_IOMMU_MAP_DMA, 'vfio_iommu_type1_dma_map', V.vfio_iommu_type1_dma_map, { kinds: { vaddr: 'pointer' } }),
  struct('VFIO_IOMMU_UNMAP_DMA', VNR.VFIO_IOMMU_UNMAP_DMA, 'vfio_iommu_type1_dma_unmap', V.vfio_iommu_type1_dma_unmap, { out: ['size'] }),
  // START / STOP / GET_BITMAP: with GET_BITMAP the data[] tail is a vfio_iommu_type1_dirty_bitmap_get (its bitmap pointer raw).
  struct('VFIO_IOMMU_DIRTY_PAGES', VNR.VFIO_IOMMU_DIRTY_PAGES, 'vfio_iommu_type1_dirty_bitmap', V.vfio_iommu_type1_dirty_bitmap),
  struct('VFIO_DEVICE_BIND_IOMMUFD', VNR.VFIO_DEVICE_BIND_IOMMUFD, 'vfio_device_bind_iommufd', V.vfio_device_bind_iommufd, {
    kinds: { iommufd: 'fd' },
    out: ['out_devid'],
  }),
  struct('VFIO_DEVICE_ATTACH_IOMMUFD_PT', VNR.VFIO_DEVICE_ATTACH_IOMMUFD_PT, 'vfio_device_attach_iommufd_pt', V.vfio_device_attach_iommufd_pt, { out: ['pt_id'] }),
  struct('VFIO_DEVICE_DETACH_IOMMUFD_PT', VNR.VFIO_DEVICE_DETACH_IOMMUFD_PT, 'vfio_device_detach_iommufd_pt', V.vfio_device_detach_iommufd_pt),
  struct('IOMMU_DESTROY', INR.IOMMU_DESTROY, 'iommu_destroy', I.iommu_destroy),
  struct('IOMMU_IOAS_ALLOC', INR.IOMMU_IOAS_ALLOC, 'iommu_ioas_alloc', I.iommu_ioas_alloc, { out: ['out_ioas_id'] }),
  struct('IOMMU_IOAS_ALLOW_IOVAS', INR.IOMMU_IOAS_ALLOW_IOVAS, 'iommu_ioas_allow_iovas', I.iommu_ioas_allow_iovas, {
    kinds: { allowed_iovas: 'iova-ranges' },
    counts: { allowed_iovas: 'num_iovas' },
  }),
  struct('IOMMU_IOAS_COPY', INR.IOMMU_IOAS_COPY, 'iommu_ioas_copy', I.iommu_ioas_copy, { out: ['dst_iova'] }),
  struct('IOMMU_IOAS_IOVA_RANGES', INR.IOMMU_IOAS_IOVA_RANGES, 'iommu_ioas_iova_ranges', I.iommu_ioas_iova_ranges, {
    kinds: { allowed_iovas: 'iova-ranges' },
    counts: { allowed_iovas: 'num_iovas' },
    out: ['num_iovas', 'allowed_iovas', 'out_iova_alignment'],
  }),
  struct('IOMMU_IOAS_MAP', INR.IOMMU_IOAS_MAP, 'iommu_ioas_map', I.iommu_ioas_map, { kinds: { user_va: 'pointer' }, out: ['iova'] }),
  struct('IOMMU_IOAS_UNMAP', INR.IOMMU_IOAS_UNMAP, 'iommu_ioas_unmap', I.iommu_ioas_unmap, { out: ['length'] }),
  struct('IOMMU_OPTION', INR.IOMMU_OPTION, 'iommu_option', I.iommu_option, { out: ['val64'] }),
  struct('IOMMU_HWPT_ALLOC', INR.IOMMU_HWPT_ALLOC, 'iommu_hwpt_alloc', I.iommu_hwpt_alloc, { kinds: { data_uptr: 'pointer' }, out: ['out_hwpt_id'] }),
  struct('IOMMU_GET_HW_INFO', INR.IOMMU_GET_HW_INFO, 'iommu_hw_info', I.iommu_hw_info, {
    kinds: { data_uptr: 'pointer' },
    out: ['data_len', 'out_data_type', 'out_max_pasid_log2', 'out_capabilities'],
  }),
  struct('IOMMU_HWPT_SET_DIRTY_TRACKING', INR.IOMMU_HWPT_SET_DIRTY_TRACKING, 'iommu_hwpt_set_dirty_tracking', I.iommu_hwpt_set_dirty_tracking),
  // The bitmap the kernel writes lies behind `data`, outside the struct: the struct itself is all input.
  struct('IOMMU_HWPT_GET_DIRTY_BITMAP', INR.IOMMU_HWPT_GET_DIRTY_BITMAP, 'iommu_hwpt_get_dirty_bitmap', I.iommu_hwpt_get_dirty_bitmap, { kinds: { data: 'pointer' } }),
  // struct iommu_vfio_ioas has no layout table in @ioas/vfio's uapi (the SDK never calls it): raw bytes.
  { name: 'IOMMU_VFIO_IOAS', nr: INR.IOMMU_VFIO_IOAS, argument: 'raw', sizeof: 0, fields: [], tail: 'bytes', tailOut: true, returnsFd: false },
];

const RAW: IoctlSpec = { name: '', nr: -1, argument: 'raw', sizeof: 0, fields: [], tail: 'bytes', tailOut: true, returnsFd: false };

const byNr = new Map<number, IoctlSpec>(SPECS.map((spec) => [spec.nr, spec]));
const byName = new Map<string, IoctlSpec>(SPECS.map((spec) => [spec.name, spec]));

/** Every ioctl the codec knows, in `nr` order. */
export const IOCTL_SPECS: readonly IoctlSpec[] = [...SPECS].sort((a, b) => a.nr - b.nr);

/** `VFIO_TYPE` (';') in bits 8-15: VFIO and iommufd share it. */
const TYPE_BITS = vfioUapi.VFIO_TYPE << 8;

/** The `nr` of a `_IO(';', nr)` request in the generic or the powerpc encoding, or -1. */
function nrOf(request: number): number {
  const base = (request >>> 0) & ~IOC_NONE_POWERPC;
  return (base & 0xffff_ff00) === TYPE_BITS ? base & 0xff : -1;
}

/**
 * The spec of a request number (generic or powerpc encoding) or of a kernel name, or undefined for
 * one this codec does not know.
 */
export function ioctlSpec(request: number | string): IoctlSpec | undefined {
  return typeof request === 'string' ? byName.get(request) : byNr.get(nrOf(request));
}

/**
 * The kernel name of an ioctl request, in the generic or the powerpc (`_IOC_NONE` = 0x20000000)
 * encoding: `VFIO_IOMMU_MAP_DMA`, `IOMMU_IOAS_MAP`... For one this codec does not know: `nr 0x..`,
 * the command number when the type is VFIO's ';' (`nr 0x75`), else the whole request.
 */
export function ioctlName(request: number): string {
  const nr = nrOf(request);
  const spec = byNr.get(nr);
  if (spec !== undefined) return spec.name;
  return `nr 0x${(nr >= 0 ? nr : request >>> 0).toString(16)}`;
}

// --- decoding ----------------------------------------------------------------------------------

/**
 * Names host addresses for the trace (the recorder's regions: its mmaps and the program's buffers),
 * and reads argument data behind them (the `allowed_iovas` arrays).
 */
export interface PointerNames {
  /** The region `address` falls in, as a pointer; undefined when it is in none (recorded as hex). */
  name(address: bigint): TracePointer | undefined;
  /** `length` bytes at `address` when they lie in a known region; undefined otherwise. */
  read?(address: bigint, length: number): Uint8Array | undefined;
}

/** How to decode. */
export interface DecodeOptions {
  /** Struct byte order; default: this host's. */
  readonly littleEndian?: boolean;
  /** Names pointers; without it every pointer is hex and arrays behind pointers are not read. */
  readonly pointers?: PointerNames;
}

/** Options of an `out` decoding. */
export interface DecodeOutOptions extends DecodeOptions {
  /** The `in` decoding of the same call: it bounds the arrays the kernel wrote (`num_iovas` going in). */
  readonly before?: IoctlDecoding;
}

/** An ioctl decoded: the fields of a trace `ioctl` line that describe its argument. */
export interface IoctlDecoding {
  /** The kernel name, or `nr 0x..`. */
  readonly ioctl: string;
  /** The integer argument, for an argument passed by value (decoding `in`). */
  readonly value?: number;
  /** The argument's byte length, when the fields and tail do not imply it (decoding `in`). */
  readonly length?: number;
  /** The struct going in (decoding `in`). */
  readonly in?: Readonly<Record<string, TraceField>>;
  /** Bytes past the decoded fields going in, as hex (decoding `in`). */
  readonly tailIn?: string;
  /** The fields the kernel may write (decoding `out`). */
  readonly out?: Readonly<Record<string, TraceField>>;
  /** Bytes past the fixed struct coming out, as hex (decoding `out`). */
  readonly tailOut?: string;
}

/**
 * Where the codec's streaming writer finds pointers and argument arrays. The recorder implements it
 * on numbers (no bigint on the hot path); {@link decodeIoctl} adapts a {@link PointerNames} to it.
 */
export interface StreamPointers {
  /** Writes the pointer `high * 2^32 + low` as a TracePointer, or as hex when it names nothing. */
  writePointer(writer: LineWriter, high: number, low: number): void;
  /** `length` bytes at the address, or undefined. */
  read(high: number, low: number, length: number): Uint8Array | undefined;
}

const hostLittle = endianness() === 'LE';
const TWO32 = 0x1_0000_0000;

function u16(bytes: Uint8Array, at: number, little: boolean): number {
  return little ? bytes[at]! | (bytes[at + 1]! << 8) : (bytes[at]! << 8) | bytes[at + 1]!;
}

function u32(bytes: Uint8Array, at: number, little: boolean): number {
  return little
    ? (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
    : ((bytes[at]! << 24) | (bytes[at + 1]! << 16) | (bytes[at + 2]! << 8) | bytes[at + 3]!) >>> 0;
}

function high32(bytes: Uint8Array, at: number, little: boolean): number {
  return u32(bytes, little ? at + 4 : at, little);
}

function low32(bytes: Uint8Array, at: number, little: boolean): number {
  return u32(bytes, little ? at : at + 4, little);
}

/** Pre-encoded `"name":` and `,"name":` of every field. */
interface Keys {
  readonly first: Uint8Array;
  readonly next: Uint8Array;
}

const keyCache = new Map<string, Keys>();
function keysOf(name: string): Keys {
  let keys = keyCache.get(name);
  if (keys === undefined) {
    keys = { first: bytesOf(`"${name}":`), next: bytesOf(`,"${name}":`) };
    keyCache.set(name, keys);
  }
  return keys;
}

interface CompiledField extends IoctlField {
  readonly keys: Keys;
  readonly countField: IoctlField | undefined;
}

interface Compiled {
  readonly spec: IoctlSpec;
  readonly fields: readonly CompiledField[];
  readonly outFields: readonly CompiledField[];
  readonly countField: IoctlField | undefined;
  readonly flagsField: IoctlField | undefined;
}

const compiledCache = new Map<IoctlSpec, Compiled>();
function compiled(spec: IoctlSpec): Compiled {
  let result = compiledCache.get(spec);
  if (result === undefined) {
    const fields = spec.fields.map((field) => ({
      ...field,
      keys: keysOf(field.name),
      countField: field.count === undefined ? undefined : spec.fields.find((candidate) => candidate.name === field.count),
    }));
    result = {
      spec,
      fields,
      outFields: fields.filter((field) => field.out),
      countField: spec.fields.find((field) => field.name === 'count'),
      flagsField: spec.fields.find((field) => field.name === 'flags'),
    };
    compiledCache.set(spec, result);
  }
  return result;
}

const K = {
  in: bytesOf(',"in":{'),
  out: bytesOf(',"out":{'),
  tailIn: bytesOf(',"tailIn":'),
  tailOut: bytesOf(',"tailOut":'),
  value: bytesOf(',"value":'),
  length: bytesOf(',"length":'),
  data: bytesOf(',"data":['),
  start: bytesOf('{"start":'),
  last: bytesOf(',"last":'),
};

/** The spec an argument is decoded with: by value needs a number, the others bytes. */
function specForArgument(request: number, argument: number | Uint8Array): IoctlSpec {
  const spec = byNr.get(nrOf(request));
  if (spec === undefined) return RAW;
  if (typeof argument === 'number') return spec;
  return spec.argument === 'value' ? RAW : spec;
}

function writeField(writer: LineWriter, field: CompiledField, bytes: Uint8Array, little: boolean, pointers: StreamPointers | undefined, elements: number): void {
  const at = field.offset;
  switch (field.kind) {
    case 'u8':
      writer.uint(bytes[at]!);
      return;
    case 'u16':
      writer.uint(u16(bytes, at, little));
      return;
    case 'u32':
      writer.uint(u32(bytes, at, little));
      return;
    case 'fd':
      writer.int(u32(bytes, at, little) | 0);
      return;
    case 'u64':
      writer.hex64(high32(bytes, at, little), low32(bytes, at, little));
      return;
    case 'pointer':
      if (pointers === undefined) writer.hex64(high32(bytes, at, little), low32(bytes, at, little));
      else pointers.writePointer(writer, high32(bytes, at, little), low32(bytes, at, little));
      return;
    case 'iova-ranges': {
      const high = high32(bytes, at, little);
      const low = low32(bytes, at, little);
      const size = iommufdUapi.iommu_iova_range.sizeof;
      const array = elements === 0 ? new Uint8Array(0) : pointers?.read(high, low, elements * size);
      if (array === undefined) {
        if (pointers === undefined) writer.hex64(high, low);
        else pointers.writePointer(writer, high, low);
        return;
      }
      writer.byte(91);
      for (let index = 0; index < elements; index++) {
        const base = index * size;
        if (index > 0) writer.byte(44);
        writer.bytes(K.start);
        const start = base + iommufdUapi.iommu_iova_range.start;
        writer.hex64(high32(array, start, little), low32(array, start, little));
        writer.bytes(K.last);
        const last = base + iommufdUapi.iommu_iova_range.last;
        writer.hex64(high32(array, last, little), low32(array, last, little));
        writer.byte(125);
      }
      writer.byte(93);
      return;
    }
    case 'string':
    case 'bytes':
      writer.hexBytes(bytes, at, at + field.size);
      return;
  }
}


/**
 * Writes the argument going in: `,"value":n`, or `,"in":{...}` with `,"tailIn":"..."` and
 * `,"length":n` as needed. Returns the `num_iovas`-style element count the out decoding needs (or 0).
 */
export function writeIoctlIn(writer: LineWriter, request: number, argument: number | Uint8Array, little: boolean, pointers: StreamPointers | undefined): number {
  if (typeof argument === 'number') {
    writer.bytes(K.value);
    writer.int(argument);
    return 0;
  }
  const spec = specForArgument(request, argument);
  const length = argument.byteLength;
  if (spec.argument === 'string') {
    const end = argument.indexOf(0);
    writer.bytes(K.in);
    writer.bytes(keysOf('name').first);
    // latin1 maps every byte to one code unit and back (Buffer's, not TextDecoder's windows-1252).
    writer.string(Buffer.from(argument.buffer, argument.byteOffset, end < 0 ? length : end).toString('latin1'));
    writer.byte(125);
    if (end < 0) {
      writer.bytes(K.length);
      writer.uint(length);
    } else if (end + 1 < length) {
      writer.bytes(K.tailIn);
      writer.hexBytes(argument, end + 1, length);
    }
    return 0;
  }
  const { fields, countField, flagsField } = compiled(spec);
  let decodedEnd = 0;
  let elements = 0;
  if (fields.length > 0) {
    writer.bytes(K.in);
    let first = true;
    for (const field of fields) {
      if (field.offset + field.size > length) break;
      writer.bytes(first ? field.keys.first : field.keys.next);
      first = false;
      let count = 0;
      if (field.countField !== undefined) {
        count = u32(argument, field.countField.offset, little);
        elements = count;
      }
      writeField(writer, field, argument, little, pointers, count);
      decodedEnd = field.offset + field.size;
    }
    if (spec.tail === 'irq-data' && decodedEnd === spec.sizeof && countField !== undefined && flagsField !== undefined) {
      const flags = u32(argument, flagsField.offset, little);
      const count = u32(argument, countField.offset, little);
      if ((flags & vfioUapi.VFIO_IRQ_SET_DATA_EVENTFD) !== 0 && length - decodedEnd >= count * 4) {
        writer.bytes(K.data);
        for (let index = 0; index < count; index++) {
          if (index > 0) writer.byte(44);
          writer.int(u32(argument, decodedEnd + index * 4, little) | 0);
        }
        writer.byte(93);
        decodedEnd += count * 4;
      }
    }
    writer.byte(125);
  }
  if (decodedEnd < length) {
    writer.bytes(K.tailIn);
    writer.hexBytes(argument, decodedEnd, length);
  }
  return elements;
}

/**
 * Writes what the kernel may have written: `,"out":{...}` and `,"tailOut":"..."`. `elements` is
 * what {@link writeIoctlIn} returned (the array capacity going in).
 */
export function writeIoctlOut(writer: LineWriter, request: number, argument: number | Uint8Array, little: boolean, pointers: StreamPointers | undefined, elements: number): void {
  if (typeof argument === 'number') return;
  const spec = specForArgument(request, argument);
  if (spec.argument === 'string') return;
  const { outFields } = compiled(spec);
  const length = argument.byteLength;
  let first = true;
  for (const field of outFields) {
    if (field.offset + field.size > length) break;
    if (first) writer.bytes(K.out);
    writer.bytes(first ? field.keys.first : field.keys.next);
    first = false;
    // The kernel fills min(capacity, total) elements of an array it writes.
    const count = field.countField === undefined ? 0 : Math.min(elements, u32(argument, field.countField.offset, little));
    writeField(writer, field, argument, little, pointers, count);
  }
  if (!first) writer.byte(125);
  const fixed = spec.argument === 'raw' ? 0 : spec.sizeof;
  if (spec.tailOut && fixed < length) {
    writer.bytes(K.tailOut);
    writer.hexBytes(argument, fixed, length);
  }
}

/** Adapts a public {@link PointerNames} to the streaming writer. */
function streamPointers(names: PointerNames | undefined): StreamPointers | undefined {
  if (names === undefined) return undefined;
  const address = (high: number, low: number) => (BigInt(high) << 32n) | BigInt(low);
  return {
    writePointer(writer, high, low) {
      const pointer = names.name(address(high, low));
      if (pointer === undefined) writer.hex64(high, low);
      else writer.json(JSON.stringify({ buffer: pointer.buffer, offset: pointer.offset }));
    },
    read: (high, low, length) => names.read?.(address(high, low), length),
  };
}

function scratchWriter(): LineWriter {
  return new LineWriter(new Uint8Array(1024), (writer, need) => {
    const grown = new Uint8Array(Math.max(2 * writer.buffer.byteLength, writer.position + need));
    grown.set(writer.buffer.subarray(0, writer.position));
    writer.reset(grown, writer.position);
  });
}

function parseWritten(writer: LineWriter): Record<string, unknown> {
  return JSON.parse(`{"_":0${new TextDecoder().decode(writer.buffer.subarray(0, writer.position))}}`) as Record<string, unknown>;
}

/**
 * Decodes an ioctl's argument: `'in'` before the call (the argument as the program passed it),
 * `'out'` after it (the fields the kernel may write, and what it wrote past the struct).
 */
export function decodeIoctl(request: number, argument: number | Uint8Array, direction: 'in' | 'out', options: DecodeOutOptions = {}): IoctlDecoding {
  const little = options.littleEndian ?? hostLittle;
  const pointers = streamPointers(options.pointers);
  const writer = scratchWriter();
  if (direction === 'in') writeIoctlIn(writer, request, argument, little, pointers);
  else {
    let elements = 0;
    if (typeof argument !== 'number') {
      const counted = compiled(specForArgument(request, argument)).fields.find((field) => field.countField !== undefined);
      if (counted !== undefined) {
        // The capacity going in bounds what the kernel wrote; without the `in` decoding, trust the count.
        const going = options.before?.in?.[counted.count!];
        elements = typeof going === 'number' ? going : counted.countField!.offset + 4 <= argument.byteLength ? u32(argument, counted.countField!.offset, little) : 0;
      }
    }
    writeIoctlOut(writer, request, argument, little, pointers, elements);
  }
  const { _: _unused, ...fields } = parseWritten(writer);
  void _unused;
  return { ioctl: ioctlName(request), ...fields } as IoctlDecoding;
}

// --- the recorder's hot path: generated emitters ------------------------------------------------

/** The most bytes {@link FastPointers.put} writes. */
export const POINTER_MAX = 64;

/** Writes pointers straight into a buffer (the recorder's regions). */
export interface FastPointers {
  /** Writes the pointer `high * 2^32 + low` at `at` (a TracePointer, or hex); returns the next position. */
  put(buffer: Uint8Array, at: number, high: number, low: number): number;
}

/**
 * One request's line, as straight-line code: the recorder's hot path. For a struct argument of
 * exactly `sizeof` bytes (what every caller passes), it writes what {@link writeIoctlIn} and
 * {@link writeIoctlOut} would, with one capacity check per part instead of one per piece.
 */
export interface IoctlEmitter {
  /** The argument length it handles. */
  readonly sizeof: number;
  /** The most bytes `start` writes. */
  readonly startMax: number;
  /** The most bytes `end` writes. */
  readonly endMax: number;
  /** Writes `{"n":n,"call":"ioctl","fd":fd,"ioctl":"NAME","request":R,"in":{...}`; returns the next position. */
  start(buffer: Uint8Array, view: DataView, at: number, argument: Uint8Array, n: number, fd: number, pointers: FastPointers): number;
  /** Writes `,"out":{...}` (nothing when the kernel writes no field); returns the next position. */
  end(buffer: Uint8Array, view: DataView, at: number, argument: Uint8Array, pointers: FastPointers): number;
}

const emitterCache = new Map<string, IoctlEmitter | null>();

/** JS source storing constant bytes at `p`, four at a time, then advancing `p`. */
function constantCode(text: string): string {
  const bytes = bytesOf(text);
  let code = '';
  let index = 0;
  // Little-endian stores place the bytes in order on any host.
  for (; index + 4 <= bytes.length; index += 4) code += `v.setUint32(p+${index},${(bytes[index]! | (bytes[index + 1]! << 8) | (bytes[index + 2]! << 16) | (bytes[index + 3]! << 24)) >>> 0},true);`;
  for (; index < bytes.length; index++) code += `b[p+${index}]=${bytes[index]!};`;
  return `${code}p+=${bytes.length};\n`;
}

function readCode(size: number, at: number, little: boolean): string {
  const byte = (index: number) => `a[${at + index}]`;
  if (size === 1) return byte(0);
  if (size === 2) return little ? `(${byte(0)}|${byte(1)}<<8)` : `(${byte(0)}<<8|${byte(1)})`;
  return little ? `((${byte(0)}|${byte(1)}<<8|${byte(2)}<<16|${byte(3)}<<24)>>>0)` : `((${byte(0)}<<24|${byte(1)}<<16|${byte(2)}<<8|${byte(3)})>>>0)`;
}

/** Inline decimal of a u32 expression (no call: the helpers were not inlined, and calls were a third of a line). */
function uintCode(value: string): string {
  return `{let x=${value};if(x<10)b[p++]=48+x;else{const d=x<100?2:x<1000?3:x<10000?4:x<100000?5:x<1e6?6:x<1e7?7:x<1e8?8:x<1e9?9:10;let c=p+d;p=c;do{const q=(x/10)>>>0;b[--c]=48+x-q*10;x=q;}while(x!==0);}}\n`;
}

/** Inline `"0x..."` of a 64-bit value given as two u32 expressions. */
function hexCode(high: string, low: string): string {
  const digits = (word: string) => `for(let s=((35-Math.clz32(${word}))>>2)*4-4;s>=0;s-=4)b[p++]=H[(${word}>>>s)&15];`;
  return `{const h=${high},l=${low};b[p]=34;b[p+1]=48;b[p+2]=120;p+=3;if(h!==0){${digits('h')}for(let s=28;s>=0;s-=4)b[p++]=H[(l>>>s)&15];}else if(l===0)b[p++]=48;else{${digits('l')}}b[p++]=34;}\n`;
}

function fieldCode(field: IoctlField, little: boolean): { code: string; max: number } {
  const high = readCode(4, little ? field.offset + 4 : field.offset, little);
  const low = readCode(4, little ? field.offset : field.offset + 4, little);
  switch (field.kind) {
    case 'u8':
    case 'u16':
    case 'u32':
      return { code: uintCode(readCode(field.size, field.offset, little)), max: 10 };
    case 'fd':
      return { code: `p=putInt(b,p,${readCode(4, field.offset, little)}|0);\n`, max: 11 };
    case 'u64':
      return { code: hexCode(high, low), max: 20 };
    case 'pointer':
      return { code: `p=ptr.put(b,p,${high},${low});\n`, max: POINTER_MAX };
    default:
      throw new Error(`no emitter for ${field.kind}`);
  }
}

function fieldsCode(fields: readonly IoctlField[], opening: string, little: boolean): { code: string; max: number } {
  let code = '';
  let max = 0;
  fields.forEach((field, index) => {
    const key = `${index === 0 ? opening : ','}"${field.name}":`;
    const value = fieldCode(field, little);
    code += constantCode(key) + value.code;
    max += bytesOf(key).length + value.max;
  });
  if (fields.length > 0) {
    code += constantCode('}');
    max += 1;
  }
  return { code, max };
}

/**
 * The generated emitter of a request's line for `little`-endian structs, or undefined for an ioctl
 * it does not cover (by value, strings, raw bytes, arrays behind pointers, SET_IRQS's decoded
 * `data`: the general writer's).
 * The code is generated from the spec tables alone (numbers and field offsets, no caller input),
 * once per request: straight-line stores are what get a line under the cost of the ioctl itself.
 */
export function ioctlEmitter(request: number, little: boolean): IoctlEmitter | undefined {
  const key = `${request >>> 0}:${little ? 'le' : 'be'}`;
  const cached = emitterCache.get(key);
  if (cached !== undefined) return cached ?? undefined;
  const spec = byNr.get(nrOf(request));
  let emitter: IoctlEmitter | null = null;
  if (spec !== undefined && spec.argument === 'struct' && spec.tail === 'bytes' && spec.fields.every((field) => ['u8', 'u16', 'u32', 'fd', 'u64', 'pointer'].includes(field.kind))) {
    const prefix = `,"ioctl":${JSON.stringify(spec.name)},"request":${request >>> 0}`;
    const fields = fieldsCode(spec.fields, ',"in":{', little);
    const outs = fieldsCode(
      spec.fields.filter((field) => field.out),
      ',"out":{',
      little,
    );
    const start =
      constantCode('{"n":') + 'p=putUint(b,p,n);\n' + constantCode(',"call":"ioctl","fd":') + 'p=putInt(b,p,fd);\n' + constantCode(prefix) + fields.code + 'return p;';
    const end = outs.code + 'return p;';
    // Generated from the spec tables only: no caller input reaches the source.
    const make = new Function('putUint', 'putInt', 'H', `return [function(b,v,p,a,n,fd,ptr){\n${start}\n},function(b,v,p,a,ptr){\n${end}\n}];`) as (
      ...helpers: unknown[]
    ) => [IoctlEmitter['start'], IoctlEmitter['end']];
    const [startFunction, endFunction] = make(putUint, putInt, HEX_DIGITS);
    emitter = {
      sizeof: spec.sizeof,
      startMax: bytesOf('{"n":,"call":"ioctl","fd":').length + 16 + 17 + bytesOf(prefix).length + fields.max,
      endMax: outs.max,
      start: startFunction,
      end: endFunction,
    };
  }
  emitterCache.set(key, emitter);
  return emitter ?? undefined;
}

// --- encoding ----------------------------------------------------------------------------------

/** How a replay turns recorded pointers and fds into its own. */
export interface EncodeOptions {
  /** Struct byte order; default: this host's. */
  readonly littleEndian?: boolean;
  /** The address, in this process, of a recorded region pointer. */
  pointer(pointer: TracePointer): bigint;
  /** This process's fd for a recorded (non-negative) fd. */
  fd(recorded: number): number;
  /** The address of a side buffer the encoding made (an `allowed_iovas` array): `syscalls.addressOf`. */
  addressOf(buffer: Uint8Array): bigint;
}

/** A recorded ioctl turned back into an argument. */
export interface EncodedIoctl {
  /** The third argument of `Syscalls.ioctl`. */
  readonly argument: number | Uint8Array;
  /** Buffers the argument points into (`allowed_iovas` arrays): keep them alive until the call returns, and read them after. */
  readonly keep: readonly Uint8Array[];
}

/** The ioctl-line fields {@link encodeIoctl} reads. */
export type RecordedIoctl = Pick<IoctlCall, 'request' | 'value' | 'in' | 'tailIn' | 'length'>;

function hexToBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length >> 1);
  for (let index = 0; index < bytes.length; index++) bytes[index] = parseInt(text.slice(2 * index, 2 * index + 2), 16);
  return bytes;
}

function isPointer(value: unknown): value is TracePointer {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && 'buffer' in value;
}

function bad(what: string): never {
  throw new IoasError('invalid-argument', what);
}

/**
 * Turns a recorded ioctl back into an argument for this process: the same bytes, with recorded fds
 * and pointers translated through `options`, and `allowed_iovas` arrays rebuilt in side buffers.
 */
export function encodeIoctl(call: RecordedIoctl, options: EncodeOptions): EncodedIoctl {
  if (call.value !== undefined) return { argument: call.value, keep: [] };
  const little = options.littleEndian ?? hostLittle;
  const spec = byNr.get(nrOf(call.request)) ?? RAW;
  const given = call.in ?? {};
  const tail = call.tailIn === undefined ? new Uint8Array(0) : hexToBytes(call.tailIn);
  const keep: Uint8Array[] = [];
  if (spec.argument === 'string') {
    const name = given.name;
    if (typeof name !== 'string') bad(`${spec.name}: in.name must be a string`);
    const text = Buffer.from(name, 'latin1');
    const bytes = new Uint8Array(call.length ?? text.length + 1 + tail.length);
    bytes.set(text.subarray(0, bytes.length));
    if (call.length === undefined) bytes.set(tail, text.length + 1);
    return { argument: bytes, keep };
  }
  const fields = spec.argument === 'struct' ? spec.fields : [];
  let fixedEnd = 0;
  for (const field of fields) {
    if (!(field.name in given)) break;
    fixedEnd = field.offset + field.size;
  }
  const data = given.data;
  const dataFds = spec.tail === 'irq-data' && Array.isArray(data) ? (data as readonly unknown[]) : [];
  const bytes = new Uint8Array(call.length ?? fixedEnd + 4 * dataFds.length + tail.length);
  const view = new DataView(bytes.buffer);
  const setU64 = (at: number, value: bigint) => view.setBigUint64(at, BigInt.asUintN(64, value), little);
  for (const field of fields) {
    if (field.offset + field.size > fixedEnd) break;
    const value = given[field.name];
    const at = field.offset;
    const where = `${spec.name}: in.${field.name}`;
    switch (field.kind) {
      case 'u8':
      case 'u16':
      case 'u32':
        if (typeof value !== 'number') bad(`${where} must be a number`);
        if (field.kind === 'u8') view.setUint8(at, value);
        else if (field.kind === 'u16') view.setUint16(at, value, little);
        else view.setUint32(at, value, little);
        break;
      case 'fd':
        if (typeof value !== 'number') bad(`${where} must be a number`);
        view.setInt32(at, value < 0 ? value : options.fd(value), little);
        break;
      case 'u64':
        if (typeof value !== 'string') bad(`${where} must be a hex string`);
        setU64(at, BigInt(value));
        break;
      case 'pointer':
        if (isPointer(value)) setU64(at, options.pointer(value));
        else if (typeof value === 'string') setU64(at, BigInt(value));
        else bad(`${where} must be a pointer or a hex string`);
        break;
      case 'iova-ranges': {
        if (Array.isArray(value)) {
          const size = iommufdUapi.iommu_iova_range.sizeof;
          // At least one element, so that the address is a real buffer even for an empty list.
          const array = new Uint8Array(Math.max(1, value.length) * size);
          const arrayView = new DataView(array.buffer);
          (value as readonly TraceIovaRange[]).forEach((range, index) => {
            arrayView.setBigUint64(index * size + iommufdUapi.iommu_iova_range.start, BigInt(range.start), little);
            arrayView.setBigUint64(index * size + iommufdUapi.iommu_iova_range.last, BigInt(range.last), little);
          });
          keep.push(array);
          setU64(at, options.addressOf(array));
        } else if (isPointer(value)) setU64(at, options.pointer(value));
        else if (typeof value === 'string') setU64(at, BigInt(value));
        else bad(`${where} must be an array of ranges, a pointer or a hex string`);
        break;
      }
      case 'string':
      case 'bytes':
        if (typeof value !== 'string') bad(`${where} must be hex`);
        bytes.set(hexToBytes(value).subarray(0, field.size), at);
        break;
    }
  }
  dataFds.forEach((fd, index) => {
    if (typeof fd !== 'number') bad(`${spec.name}: in.data[${index}] must be an fd`);
    view.setInt32(fixedEnd + 4 * index, fd < 0 ? fd : options.fd(fd), little);
  });
  const tailAt = fixedEnd + 4 * dataFds.length;
  bytes.set(tail.subarray(0, Math.max(0, bytes.length - tailAt)), Math.min(tailAt, bytes.length));
  return { argument: bytes, keep };
}

// --- comparing ---------------------------------------------------------------------------------

/** The first place a replayed ioctl parts from the recorded one. */
export interface IoctlDifference {
  /** What differs: `ioctl`, `errno`, `result`, `in.flags`, `out.size`, `tailOut`... */
  readonly field: string;
  /** The recorded value (undefined when absent). */
  readonly recorded: unknown;
  /** The replayed value (undefined when absent). */
  readonly replayed: unknown;
}

/** How recorded fds and regions correspond to the replay's. */
export interface CompareOptions {
  /** The replay's fd for a recorded fd; default: the same number. */
  fd?(recorded: number): number | undefined;
  /** The replay's region number for a recorded one; default: the same number. */
  buffer?(recorded: number): number | undefined;
}

/** The ioctl-line fields {@link compareIoctl} reads. */
export type ComparedIoctl = Pick<IoctlCall, 'ioctl' | 'request' | 'value' | 'in' | 'out' | 'tailIn' | 'tailOut' | 'result' | 'errno'>;

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameField(kind: IoctlFieldKind | undefined, recorded: TraceField | undefined, replayed: TraceField | undefined, options: CompareOptions): boolean {
  if (recorded === undefined || replayed === undefined) return recorded === replayed;
  const fd = (value: unknown) => (typeof value === 'number' && value >= 0 ? (options.fd?.(value) ?? value) : value);
  if (kind === 'fd') return fd(recorded) === replayed;
  if (kind === 'pointer' || kind === 'iova-ranges') {
    // Raw addresses of two processes are not comparable: only regions and arrays are.
    if (typeof recorded === 'string' || typeof replayed === 'string') return true;
    if (isPointer(recorded) && isPointer(replayed)) return (options.buffer?.(recorded.buffer) ?? recorded.buffer) === replayed.buffer && recorded.offset === replayed.offset;
  }
  if (Array.isArray(recorded) && Array.isArray(replayed) && kind === undefined) {
    // `data`: eventfds, -1 for none.
    return recorded.length === replayed.length && recorded.every((value, index) => fd(value) === replayed[index]);
  }
  return sameJson(recorded, replayed);
}

function compareFields(
  prefix: string,
  spec: IoctlSpec | undefined,
  recorded: Readonly<Record<string, TraceField>> | undefined,
  replayed: Readonly<Record<string, TraceField>> | undefined,
  options: CompareOptions,
): IoctlDifference | undefined {
  const names = [...new Set([...(spec?.fields.map((field) => field.name) ?? []), ...Object.keys(recorded ?? {}), ...Object.keys(replayed ?? {})])];
  for (const name of names) {
    const kind = spec?.fields.find((field) => field.name === name)?.kind;
    const a = recorded?.[name];
    const b = replayed?.[name];
    if (!sameField(kind, a, b, options)) return { field: `${prefix}.${name}`, recorded: a, replayed: b };
  }
  return undefined;
}

/**
 * The first difference between a recorded ioctl and its replay (both decoded, the replay with its
 * own regions named in the same order), or undefined when they agree. Order: `ioctl`, `value`,
 * `in.*`, `tailIn`, `errno`, `result`, `out.*`, `tailOut`. File descriptors are compared through
 * `options.fd`, region pointers through `options.buffer`; raw (unnamed) addresses are not
 * compared; a result that is a new fd only has to be one on both sides.
 */
export function compareIoctl(recorded: ComparedIoctl, replayed: ComparedIoctl, options: CompareOptions = {}): IoctlDifference | undefined {
  const spec = byNr.get(nrOf(recorded.request));
  if (recorded.ioctl !== replayed.ioctl) return { field: 'ioctl', recorded: recorded.ioctl, replayed: replayed.ioctl };
  if (recorded.value !== replayed.value) return { field: 'value', recorded: recorded.value, replayed: replayed.value };
  const inDifference = compareFields('in', spec, recorded.in, replayed.in, options);
  if (inDifference !== undefined) return inDifference;
  if (recorded.tailIn !== replayed.tailIn) return { field: 'tailIn', recorded: recorded.tailIn, replayed: replayed.tailIn };
  if (recorded.errno !== replayed.errno) return { field: 'errno', recorded: recorded.errno, replayed: replayed.errno };
  const fdResult = spec?.returnsFd === true && recorded.result !== undefined && replayed.result !== undefined && recorded.result >= 0 && replayed.result >= 0;
  if (!fdResult && recorded.result !== replayed.result) return { field: 'result', recorded: recorded.result, replayed: replayed.result };
  const outDifference = compareFields('out', spec, recorded.out, replayed.out, options);
  if (outDifference !== undefined) return outDifference;
  if (recorded.tailOut !== replayed.tailOut) return { field: 'tailOut', recorded: recorded.tailOut, replayed: replayed.tailOut };
  return undefined;
}
