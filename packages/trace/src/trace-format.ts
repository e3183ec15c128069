/**
 * The trace format (version 1): JSON Lines, one object a line. The first line is a
 * {@link TraceHeader}; every other line is one {@link TraceCall}, numbered from 1 in call order.
 *
 * - 64-bit values (addresses, sizes, IOVAs, offsets) are lowercase hex strings (`"0x1000"`); small
 *   integers (fds, flags, counts, u32 and u16 struct fields) are JSON numbers.
 * - Host memory is never recorded as an address: a pointer is `{ "buffer": k, "offset": "0x..." }`,
 *   the k-th region the trace knows (the k-th successful mmap, or a buffer the program passed by
 *   pointer inside an ioctl struct), so a replay can re-create it. Memory contents are never recorded.
 * - An ioctl is named as in the kernel header (`VFIO_IOMMU_MAP_DMA`), with its struct decoded field by
 *   field going in (`in`) and coming out (`out`), and any bytes past the fixed struct (a capability
 *   chain, an array the kernel filled) as hex in `tailIn` / `tailOut`.
 * - A call that failed has `errno` (the name, `"EINVAL"`) instead of a successful `result`.
 *
 * Additions within version 1 (optional fields and wider field values: a reader of the above still
 * reads every line that does not use them):
 *
 * - **Regions.** Region numbers are given in order of first appearance. A successful `mmap` line's
 *   `result` introduces the next number; a `munmap` of a whole region retires it (its addresses may
 *   come back in a later mmap, under a new number). A pointer inside an ioctl struct that falls in
 *   a program buffer (a `Uint8Array` whose address the program took with `Syscalls.addressOf`)
 *   introduces that buffer under the next number, announced in the line's `buffers` as
 *   {@link TraceBuffer} (number and length) so a replay can make one of that size.
 * - **Unnamed pointers.** A pointer that falls in no region the trace knows (a bad address on
 *   purpose, memory obtained outside the `Syscalls` face) is recorded as its hex value: the only
 *   place a raw address appears, and only when nothing else is true to the run.
 * - **Argument data behind pointers** (`IOMMU_IOAS_ALLOW_IOVAS` / `IOMMU_IOAS_IOVA_RANGES`
 *   `allowed_iovas`) is part of the argument, not guest memory: recorded as the array
 *   `[{ "start": "0x..", "last": "0x.." }]` ({@link TraceIovaRange}) of `num_iovas` elements in
 *   `in`, and of the elements the kernel wrote (min of the capacity and the `num_iovas` it returned)
 *   in `out`. When the array cannot be read (a pointer into no known buffer) the field is the
 *   pointer instead.
 * - **File descriptors** are recorded as this run's numbers: the `fd` of each call, the `result` of
 *   `open`, `eventfd` and `VFIO_GROUP_GET_DEVICE_FD`, and the struct fields the codec marks as fds
 *   (`VFIO_GROUP_SET_CONTAINER`'s `in.fd`, `VFIO_DEVICE_BIND_IOMMUFD`'s `in.iommufd`,
 *   `VFIO_DEVICE_SET_IRQS`'s `in.data` eventfds, an array of numbers, -1 for none). A replay
 *   translates them (`ioctlSpec(...).fields[i].kind === 'fd'`).
 * - **`in`, `out`, tails.** `in` holds every struct field that lies wholly inside the buffer passed,
 *   in the header's names; the buffer is those fields, then (SET_IRQS with DATA_EVENTFD) the `data`
 *   fds, then `tailIn`: so its length is implied, except for a string argument without its NUL,
 *   where the ioctl line says `length`. `out` holds the fields the kernel may write (the codec's
 *   `out` marks: UNMAP_DMA's `size`, IOAS_MAP's `iova`, GET_INFO's whole struct...), recorded after
 *   the call whether it succeeded or not (IOMMU_IOAS_IOVA_RANGES writes `num_iovas` with
 *   EMSGSIZE); `tailOut` the bytes past the fixed struct when the kernel writes there. An ioctl the
 *   codec has no layout for is all tail: `tailIn` going in, `tailOut` coming out. An ioctl passed
 *   an integer has `value` and no `in`.
 * - **Unknown ioctls** are named `nr 0x..`: the command number when the ioctl type is VFIO's ';'
 *   (`nr 0x75`), else the whole request.
 * - **Byte order.** The header's `endian` says which byte order the structs were decoded in (PAMU
 *   boards are big-endian); absent means the recording host's, which `arch` implies.
 * - **Files on disk.** Every line ends with `\n`. The recorder writes into a file mapping sized
 *   ahead in chunks and truncates it on close; a file whose recorder died is followed by NUL bytes,
 *   which a reader takes as the end of the trace. An ioctl line is written in two steps (the
 *   argument before the call, the outcome after), so a recorder killed inside a call leaves that
 *   call as a last line without its newline: the call in flight.
 * - **Journals.** By default the recorder's file is a journal until `stop()` renders it (journal.ts:
 *   the same header with `format` `ioas-trace-journal`, the same JSON lines for most calls, binary
 *   records for the ioctls of the hot path). A file whose recorder died before `stop()` is a
 *   journal; `readTrace` of its bytes, `readTraceFile` and `renderJournal` render it to exactly
 *   the lines `stop()` would have written, the call in flight included.
 * - **Thrown errors.** A file helper that throws (`readFile`...) is recorded with `errno` set to the
 *   error's `code` (`"ENOENT"`), or `"THROWN"` when it has none, and the same error is rethrown.
 */

/** The format name in every header. */
export const TRACE_FORMAT = 'ioas-trace';

/** The format version this package writes and reads. */
export const TRACE_VERSION = 1;

/** The first line of a trace. */
export interface TraceHeader {
  /** Always `header`. */
  readonly type: 'header';
  /** Always {@link TRACE_FORMAT}. */
  readonly format: typeof TRACE_FORMAT;
  /** Always {@link TRACE_VERSION}. */
  readonly version: typeof TRACE_VERSION;
  /** The kernel release (`uname -r`; `sim` on the simulator). */
  readonly kernel: string;
  /** The machine (`x86_64`, `aarch64`, `ppc64`...). */
  readonly arch: string;
  /** The ioas version that recorded it. */
  readonly ioas: string;
  /** The syscall face recorded: `libc` or `sim`. */
  readonly syscalls: string;
  /** What the caller said the run was, when it said. */
  readonly label?: string;
  /** The byte order the ioctl structs were decoded in; absent: the recording host's. */
  readonly endian?: 'little' | 'big';
  /** Recorded on a simulator's face: its preset (`arm-smmuv3`...), which a replay then uses. */
  readonly platform?: string;
}

/** Host memory named symbolically: region `buffer` of the trace, `offset` bytes in. */
export interface TracePointer {
  /** The region's number in the trace (1, 2...). */
  readonly buffer: number;
  /** Bytes into the region, as hex. */
  readonly offset: string;
}

/** One element of an `allowed_iovas` array (`struct iommu_iova_range`): both ends inclusive, as hex. */
export interface TraceIovaRange {
  /** The first IOVA, as hex. */
  readonly start: string;
  /** The last IOVA, as hex. */
  readonly last: string;
}

/** A program buffer an ioctl's pointer names for the first time: region `buffer`, `length` bytes long. */
export interface TraceBuffer {
  /** The region's number. */
  readonly buffer: number;
  /** Its length in bytes, as hex. */
  readonly length: string;
}

/**
 * A decoded struct field: a number (u8, u16, u32, fd), a hex string (u64, an unnamed pointer, bytes
 * of an odd-width field), a pointer into a known region, an array of fds (`data` of
 * VFIO_DEVICE_SET_IRQS), or an array of IOVA ranges (`allowed_iovas`).
 */
export type TraceField = number | string | TracePointer | readonly number[] | readonly TraceIovaRange[];

/** What every call line has. */
export interface TraceCallBase {
  /** The call's number, from 1. */
  readonly n: number;
  /** The errno name when the call failed; absent when it succeeded. */
  readonly errno?: string;
}

/** open(2). */
export interface OpenCall extends TraceCallBase {
  /** Always `open`. */
  readonly call: 'open';
  /** The path opened. */
  readonly path: string;
  /** The open flags. */
  readonly flags: number;
  /** The new fd. */
  readonly result?: number;
}

/** close(2). */
export interface CloseCall extends TraceCallBase {
  /** Always `close`. */
  readonly call: 'close';
  /** The fd closed. */
  readonly fd: number;
}

/** ioctl(2), its argument decoded by the ioctl codec. */
export interface IoctlCall extends TraceCallBase {
  /** Always `ioctl`. */
  readonly call: 'ioctl';
  /** The fd the ioctl went to. */
  readonly fd: number;
  /** The kernel's name, or `nr 0x..` for one this version does not know. */
  readonly ioctl: string;
  /** The request number as passed. */
  readonly request: number;
  /** The integer argument, for ioctls that take one by value. */
  readonly value?: number;
  /** The argument buffer's byte length, only when `in` and `tailIn` do not imply it. */
  readonly length?: number;
  /** Program buffers this call's pointers name for the first time. */
  readonly buffers?: readonly TraceBuffer[];
  /** The struct going in, field by field. */
  readonly in?: Readonly<Record<string, TraceField>>;
  /** The struct coming out: the fields the kernel may write. */
  readonly out?: Readonly<Record<string, TraceField>>;
  /** Bytes past the fixed struct going in, as hex. */
  readonly tailIn?: string;
  /** Bytes past the fixed struct coming out (capability chains, arrays), as hex. */
  readonly tailOut?: string;
  /** The ioctl's non-negative result. */
  readonly result?: number;
}

/** mmap(2). */
export interface MmapCall extends TraceCallBase {
  /** Always `mmap`. */
  readonly call: 'mmap';
  /** Bytes, as hex. */
  readonly length: string;
  /** `PROT_*`. */
  readonly prot: number;
  /** `MAP_*`. */
  readonly flags: number;
  /** The fd mapped; -1 for anonymous memory. */
  readonly fd: number;
  /** The file offset, as hex. */
  readonly offset: string;
  /** The new region, at offset 0. */
  readonly result?: TracePointer;
}

/** munmap(2). */
export interface MunmapCall extends TraceCallBase {
  /** Always `munmap`. */
  readonly call: 'munmap';
  /** Where: a region pointer, or hex for an address the trace cannot name. */
  readonly address: TracePointer | string;
  /** Bytes, as hex. */
  readonly length: string;
}

/** pread(2) or pwrite(2) on a device fd: length and offset only, never the bytes. */
export interface PositionalIoCall extends TraceCallBase {
  /** `pread` or `pwrite`. */
  readonly call: 'pread' | 'pwrite';
  /** The fd. */
  readonly fd: number;
  /** Bytes asked for. */
  readonly length: number;
  /** The file offset, as hex. */
  readonly offset: string;
  /** Bytes read or written. */
  readonly result?: number;
}

/** eventfd(2). */
export interface EventfdCall extends TraceCallBase {
  /** Always `eventfd`. */
  readonly call: 'eventfd';
  /** The initial count. */
  readonly initial: number;
  /** `EFD_*`. */
  readonly flags: number;
  /** The new fd. */
  readonly result?: number;
}

/** read(2) or write(2) (eventfds): length only, never the bytes. */
export interface StreamIoCall extends TraceCallBase {
  /** `read` or `write`. */
  readonly call: 'read' | 'write';
  /** The fd. */
  readonly fd: number;
  /** Bytes asked for. */
  readonly length: number;
  /** Bytes read or written. */
  readonly result?: number;
}

/** A sysfs file read. */
export interface ReadFileCall extends TraceCallBase {
  /** Always `readFile`. */
  readonly call: 'readFile';
  /** The path read. */
  readonly path: string;
  /** Its text. */
  readonly result?: string;
}

/** A sysfs file written. */
export interface WriteFileCall extends TraceCallBase {
  /** Always `writeFile`. */
  readonly call: 'writeFile';
  /** The path written. */
  readonly path: string;
  /** The text written. */
  readonly data: string;
}

/** readlink(2). */
export interface ReadLinkCall extends TraceCallBase {
  /** Always `readLink`. */
  readonly call: 'readLink';
  /** The symlink. */
  readonly path: string;
  /** Its target. */
  readonly result?: string;
}

/** A directory listing. */
export interface ReadDirCall extends TraceCallBase {
  /** Always `readDir`. */
  readonly call: 'readDir';
  /** The directory. */
  readonly path: string;
  /** Its entries. */
  readonly result?: readonly string[];
}

/** A path existence check. */
export interface ExistsCall extends TraceCallBase {
  /** Always `exists`. */
  readonly call: 'exists';
  /** The path. */
  readonly path: string;
  /** Whether it exists. */
  readonly result: boolean;
}

/** One recorded call. */
export type TraceCall =
  | OpenCall
  | CloseCall
  | IoctlCall
  | MmapCall
  | MunmapCall
  | PositionalIoCall
  | EventfdCall
  | StreamIoCall
  | ReadFileCall
  | WriteFileCall
  | ReadLinkCall
  | ReadDirCall
  | ExistsCall;

/** The names of the calls a trace records. */
export type TraceCallName = TraceCall['call'];
