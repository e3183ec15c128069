/**
 * The recorder's journal: what the trace file holds while a recording runs, rendered to the JSON
 * Lines trace (trace-format.ts) by `stop()`, or by a reader after the recorder died.
 *
 * Why: a JSON line costs what it writes. A recorded MAP_DMA line is 187 bytes of text, formatted,
 * and each byte lands on a fresh page-cache page (about 3 ns a byte on a VM whose free pages go back
 * to the host); together 4-5x the simulator's own ioctl. The journal keeps the ioctls of the hot
 * path as binary records of the words that changed since that request's last call: a map/unmap
 * loop writes about 8 bytes a call, formatted by nothing. Everything else (opens, mmaps, sysfs
 * reads, ioctls with arrays or strings, the first pointer into a program buffer) stays a JSON line,
 * written as in the trace.
 *
 * Layout, after the header line (the trace header with `format` {@link JOURNAL_FORMAT}):
 *
 * - `{"n":...}\n`: a call, exactly as in the trace.
 * - `{"slot":k,"request":r}\n`: from here on, binary records of slot k are calls of request r, whose
 *   struct is a whole number of 4-byte words.
 * - A call record, in two halves, each one's first byte stored last, so that a half is there whole
 *   or not at all (a recorder killed inside a call leaves that call in flight, as in a trace):
 *   - before the call: `0x01`, or `0x05` when the fd is the slot's last call's; the slot (u8); after
 *     `0x01`, the fd (zigzag varint); a bitmask of the struct's words, low bit first; each word
 *     (not a pointer's) whose bytes differ from the slot's last call's, as the bytes; then each
 *     pointer whose mask bit (its first word's) is set, because its value or the recorder's region
 *     table changed: its region's number (varint) and offset (varint), or 0 and its 8 raw bytes when
 *     no region holds it. A pointer whose bit is clear names what it named in the slot's last call.
 *   - after it: `0x06` (result 0, the call changed no word), `0x02` (result 0) or `0x03` and the
 *     result (zigzag varint), then a mask and the words the call changed; or `0x04` and the code of
 *     the error the face threw (u8 length, ASCII).
 * - A NUL byte where an item would start: the end (the mapped file is sized ahead in chunks).
 *
 * Call numbers are implied: a record is the call after the one before it.
 */
import { closeSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { errnoName, IoasError } from '@ioas/core';
import { ioctlEmitter, ioctlSpec, type FastPointers, type IoctlEmitter } from './ioctl-codec.js';
import { bytesOf, LineWriter, putBytes, putHex64 } from './line-writer.js';
import { putPointer, type RegionNames } from './region-names.js';
import { TRACE_FORMAT } from './trace-format.js';

/** The header's `format` while the file is a journal. */
export const JOURNAL_FORMAT = 'ioas-trace-journal';

const CALL = 0x01;
const DONE = 0x02;
const RESULT = 0x03;
const THREW = 0x04;
const CALL_SAME_FD = 0x05;
const DONE_UNCHANGED = 0x06;
const OPEN_BRACE = 0x7b;
const NEWLINE = 0x0a;
const TWO32 = 0x1_0000_0000;
/** Slots a journal gives out; requests past them are written as JSON lines. */
export const SLOTS = 255;

/** A request the journal writes as binary records: its struct's layout, and its last call's bytes. */
export interface HotShape {
  readonly slot: number;
  readonly request: number;
  /** The struct's length: a multiple of 4. */
  readonly sizeof: number;
  readonly words: number;
  readonly maskBytes: number;
  /** 1 for the words of pointer fields, which are written as region and offset instead. */
  readonly pointerWord: Uint8Array;
  /** Byte offsets of the pointer fields, in field order (the order the emitter writes them). */
  readonly pointers: readonly number[];
  readonly little: boolean;
  /** The most bytes each half takes. */
  readonly firstMax: number;
  readonly secondMax: number;
  /** Each word's value after the slot's last call (the recorder's and the renderer's copy alike). */
  readonly last: Int32Array;
  /** The argument's bytes as host-order words: a view of it (kept for the next call), or a copy when it is not 4-byte aligned. */
  wordsOf(argument: Uint8Array): Int32Array<ArrayBufferLike>;
  /**
   * Writes the first half of a call record at `at` (room for `firstMax` bytes); returns the next
   * position, or -1, having written and changed nothing, when a pointer names a program buffer no
   * line has numbered yet (a JSON line must announce it). `words` is {@link wordsOf} the argument.
   */
  readonly start: (buffer: Uint8Array, view: DataView, at: number, argument: Uint8Array, words: Int32Array<ArrayBufferLike>, fd: number, regions: RegionNames) => number;
  /**
   * Writes the second half of a call that returned `result` (room for `secondMax` bytes): the words
   * of the fields the kernel may write, when they changed (no other field is in a trace's `out`, and
   * the next call's first half records whatever else changed); returns the next position.
   */
  readonly end: (buffer: Uint8Array, view: DataView, at: number, words: Int32Array<ArrayBufferLike>, result: number) => number;
}

/** The host's byte order: how an Int32Array view reads an argument's words. */
const HOST_LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The layout of `request` for binary records, or undefined when its calls stay JSON lines: what the
 * generated emitters do not cover (trace-format.ts), a struct not made of 4-byte words, or one whose
 * pointers the kernel writes.
 */
export function hotShape(request: number, slot: number, little: boolean): HotShape | undefined {
  const spec = ioctlSpec(request);
  if (spec === undefined || ioctlEmitter(request, little) === undefined) return undefined;
  if (spec.sizeof === 0 || spec.sizeof % 4 !== 0 || spec.sizeof > 256) return undefined;
  const pointers = spec.fields.filter((field) => field.kind === 'pointer');
  if (pointers.some((field) => field.out || field.offset % 4 !== 0 || field.size !== 8)) return undefined;
  const words = spec.sizeof / 4;
  const pointerWord = new Uint8Array(words);
  for (const field of pointers) pointerWord[field.offset / 4] = pointerWord[field.offset / 4 + 1] = 1;
  const maskBytes = Math.ceil(words / 8);
  const outWord = new Uint8Array(words);
  for (const field of spec.fields) {
    if (!field.out || field.kind === 'pointer') continue;
    for (let word = field.offset >> 2; word < (field.offset + field.size + 3) >> 2; word++) outWord[word] = 1;
  }
  const pointerOffsets = pointers.map((field) => field.offset);
  const last = new Int32Array(words);
  const { start, end } = compile(slot, words, pointerWord, outWord, pointerOffsets, little, last);
  let viewed: Uint8Array | undefined;
  let view: Int32Array<ArrayBufferLike> = new Int32Array(words);
  const copy = new Int32Array(words);
  const copyBytes = new Uint8Array(copy.buffer);
  return {
    slot,
    request: request >>> 0,
    sizeof: spec.sizeof,
    words,
    maskBytes,
    pointerWord,
    pointers: pointers.map((field) => field.offset),
    little,
    firstMax: 2 + 5 + maskBytes + spec.sizeof + pointers.length * 18,
    secondMax: 1 + 5 + maskBytes + spec.sizeof + 2 + 255,
    last,
    wordsOf(argument: Uint8Array): Int32Array<ArrayBufferLike> {
      if (argument === viewed) return view;
      if ((argument.byteOffset & 3) === 0) {
        viewed = argument;
        view = new Int32Array(argument.buffer, argument.byteOffset, words);
        return view;
      }
      copyBytes.set(argument);
      return copy;
    },
    start,
    end,
  };
}

/** JS source reading the 4 bytes at `at` of the argument as an unsigned word in `little` order. */
function wordCode(at: number, little: boolean): string {
  const byte = (index: number) => `a[${at + index}]`;
  return little ? `((${byte(0)}|${byte(1)}<<8|${byte(2)}<<16|${byte(3)}<<24)>>>0)` : `((${byte(0)}<<24|${byte(1)}<<16|${byte(2)}<<8|${byte(3)})>>>0)`;
}

/**
 * JS source of a mask and the words it marks: each word of the argument (but a pointer's) that
 * differs from `L`, recorded there; `flags` adds the pointers' bits (in their first word's place).
 */
function changedWordsCode(words: number, compared: (word: number) => boolean, flags: string): string {
  const masks = Math.ceil(words / 8);
  let code = `const m=p;p+=${masks};`;
  for (let mask = 0; mask < masks; mask++) code += `let k${mask}=0;`;
  for (let word = 0; word < words; word++) {
    if (!compared(word)) continue;
    // Host order in and out: the record holds the argument's bytes as they are.
    code += `{const x=W[${word}];if(x!==L[${word}]){L[${word}]=x;k${word >> 3}|=${1 << (word & 7)};v.setInt32(p,x,${HOST_LITTLE});p+=4;}}\n`;
  }
  code += flags;
  for (let mask = 0; mask < masks; mask++) code += `b[m+${mask}]=k${mask};`;
  return `${code}\n`;
}

/**
 * The two halves of a call record as straight-line code, generated from the layout alone (slot,
 * word count, pointer offsets: no caller input reaches the source), as the JSON emitters are.
 *
 * State between calls: `L` the words, `P` each pointer's last value (high, low), `S` the region
 * table's generation when the pointers were last named, and the fd. A pointer is named again (a
 * region lookup) only when its value or the table changed.
 */
function compile(
  slot: number,
  words: number,
  pointerWord: Uint8Array,
  outWord: Uint8Array,
  pointers: readonly number[],
  little: boolean,
  last: Int32Array,
): Pick<HotShape, 'start' | 'end'> {
  const varint = (value: string) => `if(${value}<128)b[p++]=${value};else p=V(b,p,${value});`;
  const pointerLast = new Float64Array(2 * pointers.length).fill(Number.NaN);
  const state = new Float64Array([-1, Number.NaN]);
  const ids = new Float64Array(pointers.length);
  const offsets = new Float64Array(pointers.length);
  let resolve = '';
  let commit = '';
  let flags = '';
  let put = '';
  pointers.forEach((offset, index) => {
    resolve += `const h${index}=${wordCode(little ? offset + 4 : offset, little)},l${index}=${wordCode(little ? offset : offset + 4, little)};let c${index}=0;`;
    resolve += `if(h${index}!==P[${2 * index}]||l${index}!==P[${2 * index + 1}]||g!==S[0]){const r=regions.known(h${index},l${index});if(r===null)return -1;c${index}=1;if(r===undefined)I[${index}]=0;else{I[${index}]=r.id;O[${index}]=h${index}*${TWO32}+l${index}-r.start;}}\n`;
    commit += `P[${2 * index}]=h${index};P[${2 * index + 1}]=l${index};`;
    const word = offset / 4;
    flags += `k${word >> 3}|=c${index}<<${word & 7};`;
    let raw = '';
    for (let byte = 0; byte < 8; byte++) raw += `b[p+${byte}]=a[${offset + byte}];`;
    put += `if(c${index}===1){const i=I[${index}];if(i!==0){${varint('i')}const o=O[${index}];${varint('o')}}else{b[p++]=0;${raw}p+=8;}}\n`;
  });
  const start =
    `const g=regions.generation;${resolve}${commit}S[0]=g;\n` +
    `const t=p;b[p+1]=${slot};p+=2;let tag=${CALL_SAME_FD};if(fd!==S[1]){S[1]=fd;tag=${CALL};const z=((fd<<1)^(fd>>31))>>>0;${varint('z')}}\n` +
    changedWordsCode(words, (word) => pointerWord[word] === 0, flags) +
    put +
    `b[t]=tag;return p;`;
  const none = Array.from({ length: Math.ceil(words / 8) }, (_, mask) => `k${mask}`).join('|');
  const end =
    `const t=p;p+=1;if(result!==0){const z=((result<<1)^(result>>31))>>>0;${varint('z')}}\n` +
    changedWordsCode(words, (word) => outWord[word] === 1, '') +
    `if(result===0){if((${none})===0){b[t]=${DONE_UNCHANGED};return t+1;}b[t]=${DONE};}else b[t]=${RESULT};return p;`;
  // Generated from the layout tables only: no caller input reaches the source.
  const make = new Function('V', 'L', 'P', 'S', 'I', 'O', `return [function(b,v,p,a,W,fd,regions){\n${start}\n},function(b,v,p,W,result){\n${end}\n}];`) as (
    ...helpers: unknown[]
  ) => [HotShape['start'], HotShape['end']];
  const [startFunction, endFunction] = make(putVarint, last, pointerLast, state, ids, offsets);
  return { start: startFunction, end: endFunction };
}

/** The line that gives `shape` its slot. */
export function slotLine(shape: HotShape): string {
  return `{"slot":${shape.slot},"request":${shape.request}}\n`;
}

function putVarint(buffer: Uint8Array, at: number, value: number): number {
  while (value >= 128) {
    buffer[at++] = (value % 128) | 128;
    value = Math.floor(value / 128);
  }
  buffer[at++] = value;
  return at;
}

function unzigzag(value: number): number {
  return (value >>> 1) ^ -(value & 1);
}

/** Writes the second half of a call record whose call threw an error with `code`; returns the next position. */
export function putCallThrew(buffer: Uint8Array, at: number, code: string): number {
  const length = Math.min(code.length, 255);
  buffer[at + 1] = length;
  for (let index = 0; index < length; index++) buffer[at + 2 + index] = code.charCodeAt(index) & 0x7f;
  buffer[at] = THREW;
  return at + 2 + length;
}

// --- rendering ----------------------------------------------------------------------------------

const RESULT_ZERO = bytesOf(',"result":0}\n');
const RESULT_KEY = bytesOf(',"result":');
const ERRNO_KEY = bytesOf(',"errno":');
const END = bytesOf('}\n');
const SLOT_PREFIX = bytesOf('{"slot":');
const N_PREFIX = bytesOf('{"n":');

function corrupt(offset: number, what: string): never {
  throw new IoasError('invalid-argument', `trace journal byte ${offset}: ${what}`);
}

/** Thrown by a read past the bytes at hand: the item is not all there yet. */
const SHORT = Symbol('short');

interface RenderSlot {
  readonly shape: HotShape;
  readonly emitter: IoctlEmitter;
  /** The struct as the renderer rebuilds it. */
  readonly argument: Uint8Array;
  readonly argumentView: DataView;
  /** The fd of the slot's last call. */
  fd: number | undefined;
  /** Its pointers as last named: region (0: raw) and offset. */
  readonly pointers: RecordedPointers;
}

/** A slot's pointers as last named, handed to its emitter in field order. */
class RecordedPointers implements FastPointers {
  readonly ids: number[];
  readonly offsets: number[];
  next = 0;

  constructor(count: number) {
    this.ids = new Array<number>(count).fill(-1);
    this.offsets = new Array<number>(count).fill(0);
  }

  put(buffer: Uint8Array, at: number, high: number, low: number): number {
    const index = this.next++;
    const id = this.ids[index]!;
    return id === 0 ? putHex64(buffer, at, high, low) : putPointer(buffer, at, id, this.offsets[index]!);
  }
}

/** Turns journal bytes into trace lines: fed the file in order, in pieces of any size. */
class JournalRenderer {
  private little = true;
  private header = false;
  private n = 0;
  private readonly slots = new Map<number, RenderSlot>();
  /** True once the journal ended (a NUL, a call in flight, or an unterminated line). */
  ended = false;
  /** Where the record {@link measure} last read ends its first half; -1 when that half ran short. */
  private firstEnd = -1;
  /** The file offset of the bytes {@link render} was given, for errors. */
  private offset = 0;

  constructor(private readonly out: LineWriter) {}

  /**
   * Renders the whole items in `bytes[start, end)`; returns where the first incomplete one starts
   * (`end` when none). `offset` is `bytes[0]`'s offset in the file, for errors. With `final`, the
   * bytes are all there are: an incomplete item is the call in flight, or the end.
   */
  render(bytes: Uint8Array, start: number, end: number, offset: number, final: boolean): number {
    this.offset = offset;
    let at = start;
    while (at < end && !this.ended) {
      const next = this.item(bytes, at, end, offset, final);
      if (next < 0) return at;
      at = next;
    }
    return at;
  }

  /** Renders the item at `at`; returns the position after it, or -1 when it is not all there (and not final). */
  private item(bytes: Uint8Array, at: number, end: number, offset: number, final: boolean): number {
    const first = bytes[at]!;
    if (!this.header) return this.headerLine(bytes, at, end, offset, final);
    if (first === 0) {
      this.ended = true;
      return end;
    }
    if (first === OPEN_BRACE) return this.line(bytes, at, end, offset, final);
    if (first === CALL || first === CALL_SAME_FD) {
      let length: number;
      try {
        length = this.measure(bytes, at, end, offset);
      } catch (error) {
        if (error !== SHORT) throw error;
        if (!final) return -1;
        // A whole first half (its tag is stored last) without its outcome: the call in flight.
        if (this.firstEnd >= 0) this.call(bytes, at, false);
        this.ended = true;
        return end;
      }
      return this.call(bytes, at, true) === at + length ? at + length : corrupt(offset + at, 'a call record misread');
    }
    return corrupt(offset + at, `0x${first.toString(16)} starts no item (a JSON line, a call record or the NUL end)`);
  }

  private headerLine(bytes: Uint8Array, at: number, end: number, offset: number, final: boolean): number {
    const newline = bytes.indexOf(NEWLINE, at);
    if (newline < 0 || newline >= end) return final ? corrupt(offset + at, 'the header line is cut short') : -1;
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + at, newline - at).toString('utf8')) as Record<string, unknown>;
    } catch {
      return corrupt(offset + at, 'the header line is not JSON');
    }
    if (header.format !== JOURNAL_FORMAT) corrupt(offset + at, `not a trace journal (format ${JSON.stringify(header.format)})`);
    this.little = header.endian !== 'big';
    this.out.json(`${JSON.stringify({ ...header, format: TRACE_FORMAT })}\n`);
    this.header = true;
    return newline + 1;
  }

  private line(bytes: Uint8Array, at: number, end: number, offset: number, final: boolean): number {
    const newline = bytes.indexOf(NEWLINE, at);
    const stop = newline < 0 || newline >= end ? -1 : newline + 1;
    if (stop < 0 && !final) return -1;
    const last = stop < 0 ? end : stop;
    if (startsWith(bytes, at, last, SLOT_PREFIX)) {
      if (stop < 0) {
        this.ended = true;
        return end;
      }
      this.declare(bytes, at, newline, offset);
      return stop;
    }
    if (startsWith(bytes, at, last, N_PREFIX)) {
      let n = 0;
      for (let index = at + N_PREFIX.length; index < last && bytes[index]! >= 48 && bytes[index]! <= 57; index++) n = n * 10 + bytes[index]! - 48;
      this.n = n;
    }
    this.out.ensure(last - at);
    this.out.position = putBytes(this.out.buffer, this.out.position, bytes.subarray(at, last));
    if (stop < 0) this.ended = true;
    return last;
  }

  private declare(bytes: Uint8Array, at: number, newline: number, offset: number): void {
    const text = Buffer.from(bytes.buffer, bytes.byteOffset + at, newline - at).toString('latin1');
    const match = /^\{"slot":(\d+),"request":(\d+)\}$/.exec(text);
    if (match === null) corrupt(offset + at, `a slot line that is not {"slot":k,"request":r}: ${text.slice(0, 80)}`);
    const slot = Number(match[1]);
    const request = Number(match[2]);
    const shape = hotShape(request, slot, this.little);
    const emitter = ioctlEmitter(request, this.little);
    if (shape === undefined || emitter === undefined) return corrupt(offset + at, `request ${request} has no binary records in this version`);
    if (this.slots.has(slot)) corrupt(offset + at, `slot ${slot} given twice`);
    const argument = new Uint8Array(shape.sizeof);
    this.slots.set(slot, { shape, emitter, argument, argumentView: new DataView(argument.buffer), fd: undefined, pointers: new RecordedPointers(shape.pointers.length) });
  }

  /** The length of the call record at `at`, or SHORT thrown when it runs past `end`. */
  private measure(bytes: Uint8Array, at: number, end: number, offset: number): number {
    const start = at;
    this.firstEnd = -1;
    const byte = (): number => {
      if (at >= end) throw SHORT;
      return bytes[at++]!;
    };
    const varint = (): number => {
      let value = 0;
      let scale = 1;
      for (;;) {
        const next = byte();
        value += (next & 127) * scale;
        if (next < 128) return value;
        scale *= 128;
      }
    };
    /** Skips a mask's words; returns the mask bits of the pointers, in pointer order. */
    const words = (shape: HotShape): number[] => {
      const maskAt = at;
      at += shape.maskBytes;
      if (at > end) throw SHORT;
      let count = 0;
      for (let word = 0; word < shape.words; word++) if (shape.pointerWord[word] === 0 && (bytes[maskAt + (word >> 3)]! & (1 << (word & 7))) !== 0) count++;
      at += 4 * count;
      if (at > end) throw SHORT;
      return shape.pointers.map((pointer) => bytes[maskAt + (pointer >> 5)]! & (1 << ((pointer >> 2) & 7)));
    };
    const tag = byte();
    const slot = this.slots.get(byte());
    if (slot === undefined) corrupt(offset + start, `slot ${bytes[start + 1]} has no slot line before it`);
    if (tag === CALL) varint();
    for (const changed of words(slot.shape)) {
      if (changed === 0) continue;
      if (varint() === 0) at += 8;
      else varint();
    }
    if (at > end) throw SHORT;
    this.firstEnd = at;
    const outcome = byte();
    if (outcome === 0) throw SHORT;
    if (outcome === DONE_UNCHANGED) return at - start;
    if (outcome === THREW) {
      const length = byte();
      at += length;
      if (at > end) throw SHORT;
      return at - start;
    }
    if (outcome === RESULT) varint();
    else if (outcome !== DONE) corrupt(offset + at - 1, `0x${outcome.toString(16)} is no call outcome`);
    if (words(slot.shape).some((changed) => changed !== 0)) corrupt(offset + start, 'a call outcome changes a pointer');
    return at - start;
  }

  /** Renders the call record at `at` (whole when `whole`, else its first half only); returns the position after it. */
  private call(bytes: Uint8Array, at: number, whole: boolean): number {
    const tag = bytes[at]!;
    const slot = this.slots.get(bytes[at + 1]!)!;
    const { shape, emitter, argument, argumentView, pointers } = slot;
    const out = this.out;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    at += 2;
    if (tag === CALL) {
      let encoded: number;
      [encoded, at] = readVarint(bytes, at);
      slot.fd = unzigzag(encoded);
    } else if (slot.fd === undefined) corrupt(this.offset + at - 2, `a call of slot ${shape.slot} with the fd of a call before it, and none before it`);
    const maskAt = at;
    at = applyWords(bytes, view, at, shape, argumentView);
    for (let index = 0; index < shape.pointers.length; index++) {
      const pointer = shape.pointers[index]!;
      if ((bytes[maskAt + (pointer >> 5)]! & (1 << ((pointer >> 2) & 7))) === 0) {
        if (pointers.ids[index] === -1) corrupt(this.offset + maskAt, `a call of slot ${shape.slot} with the pointer of a call before it, and none before it`);
        continue;
      }
      let id: number;
      [id, at] = readVarint(bytes, at);
      let pointerOffset = 0;
      if (id === 0) {
        argument.set(bytes.subarray(at, at + 8), pointer);
        at += 8;
      } else [pointerOffset, at] = readVarint(bytes, at);
      pointers.ids[index] = id;
      pointers.offsets[index] = pointerOffset;
    }
    pointers.next = 0;
    out.ensure(emitter.startMax);
    out.position = emitter.start(out.buffer, out.view, out.position, argument, ++this.n, slot.fd!, pointers);
    if (!whole) return at;
    const outcome = bytes[at++]!;
    if (outcome === DONE_UNCHANGED) {
      out.ensure(emitter.endMax + RESULT_ZERO.length);
      out.position = emitter.end(out.buffer, out.view, out.position, argument, pointers);
      out.bytes(RESULT_ZERO);
      return at;
    }
    if (outcome === THREW) {
      const length = bytes[at++]!;
      const code = Buffer.from(bytes.buffer, bytes.byteOffset + at, length).toString('latin1');
      out.bytes(ERRNO_KEY);
      out.string(code);
      out.bytes(END);
      return at + length;
    }
    let result = 0;
    if (outcome === RESULT) {
      let encoded: number;
      [encoded, at] = readVarint(bytes, at);
      result = unzigzag(encoded);
    }
    at = applyWords(bytes, view, at, shape, argumentView);
    out.ensure(emitter.endMax + RESULT_ZERO.length);
    out.position = emitter.end(out.buffer, out.view, out.position, argument, pointers);
    if (result === 0) out.bytes(RESULT_ZERO);
    else {
      if (result < 0) {
        out.bytes(ERRNO_KEY);
        out.string(errnoName(-result));
      } else {
        out.bytes(RESULT_KEY);
        out.uint(result);
      }
      out.bytes(END);
    }
    return at;
  }
}

function startsWith(bytes: Uint8Array, at: number, end: number, prefix: Uint8Array): boolean {
  if (end - at < prefix.length) return false;
  for (let index = 0; index < prefix.length; index++) if (bytes[at + index] !== prefix[index]) return false;
  return true;
}

function popcount(value: number): number {
  let count = 0;
  for (; value !== 0; value &= value - 1) count++;
  return count;
}

function readVarint(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (;;) {
    const next = bytes[at++]!;
    value += (next & 127) * scale;
    if (next < 128) return [value, at];
    scale *= 128;
  }
}

/** Applies a mask and its words (as {@link putChangedWords} wrote them) to `shape.last` and the rebuilt struct; returns the next position. */
function applyWords(bytes: Uint8Array, view: DataView, at: number, shape: HotShape, argument: DataView): number {
  const maskAt = at;
  at += shape.maskBytes;
  for (let word = 0; word < shape.words; word++) {
    if (shape.pointerWord[word] === 1 || (bytes[maskAt + (word >> 3)]! & (1 << (word & 7))) === 0) continue;
    const value = view.getInt32(at, true);
    at += 4;
    shape.last[word] = value;
    argument.setInt32(word * 4, value, true);
  }
  return at;
}

/** True when `bytes` begins with a journal's header line. */
export function isJournal(bytes: Uint8Array): boolean {
  const newline = bytes.indexOf(NEWLINE);
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, newline < 0 ? Math.min(bytes.byteLength, 4096) : newline).toString('latin1');
  return head.includes(`"format":"${JOURNAL_FORMAT}"`);
}

/** The trace a journal holds (a recorder's file that `stop()` did not render): JSON Lines, as `stop()` writes them. */
export function renderJournal(bytes: Uint8Array): Uint8Array {
  const out = new LineWriter(new Uint8Array(Math.max(4096, 16 * bytes.byteLength)), (writer, need) => {
    const grown = new Uint8Array(Math.max(2 * writer.buffer.byteLength, writer.position + need));
    grown.set(writer.buffer.subarray(0, writer.position));
    writer.reset(grown, writer.position);
  });
  const renderer = new JournalRenderer(out);
  renderer.render(bytes, 0, bytes.byteLength, 0, true);
  return out.buffer.subarray(0, out.position);
}

/** Read and write size of {@link renderJournalFile} (tests pass smaller ones, to cut items at every byte). */
const CHUNK = 4 << 20;

/**
 * Renders the journal at `path` into the trace, in place: written beside it (`path.rendering`),
 * then renamed over it, so a failure (a damaged journal, a full disk) throws and leaves the
 * journal as it was.
 */
export function renderJournalFile(path: string, chunk = CHUNK): void {
  const temporary = `${path}.rendering`;
  const input = openSync(path, 'r');
  let output: number | undefined;
  try {
    output = openSync(temporary, 'w');
    const fd = output;
    const flush = (writer: LineWriter): void => {
      let done = 0;
      while (done < writer.position) done += writeSync(fd, writer.buffer, done, writer.position - done);
      writer.position = 0;
    };
    const out = new LineWriter(new Uint8Array(chunk), (writer, need) => {
      flush(writer);
      if (need > writer.buffer.byteLength) writer.reset(new Uint8Array(need), 0);
    });
    const renderer = new JournalRenderer(out);
    let bytes = new Uint8Array(chunk);
    let held = 0;
    let offset = 0;
    let final = false;
    while (!final && !renderer.ended) {
      const read = readSync(input, bytes, held, bytes.byteLength - held, null);
      final = read === 0;
      held += read;
      const used = renderer.render(bytes, 0, held, offset, final);
      if (used === 0 && held === bytes.byteLength) {
        // One item longer than the buffer: make room for it.
        const grown = new Uint8Array(2 * bytes.byteLength);
        grown.set(bytes);
        bytes = grown;
        continue;
      }
      bytes.copyWithin(0, used, held);
      held -= used;
      offset += used;
    }
    flush(out);
    closeSync(output);
    output = undefined;
    renameSync(temporary, path);
  } catch (error) {
    if (output !== undefined) closeSync(output);
    rmSync(temporary, { force: true });
    throw error;
  } finally {
    closeSync(input);
  }
}
