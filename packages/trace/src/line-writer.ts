/**
 * A JSON Lines writer that puts bytes straight into a byte buffer (the recorder's shared file
 * mapping, or a scratch buffer): no intermediate strings for the numbers, hex values and constant
 * keys of the hot path, so that recording an ioctl allocates nothing. Internal: the codec writes
 * decoded structs through it, and `decodeIoctl` parses what it wrote, so there is one decoder, not
 * two that could drift apart.
 *
 * The `put*` functions write at a position and return the next one, with no capacity check: the
 * codec's generated emitters check once per line for the most a line can take, then call these.
 */

/** The ASCII codes of `0123456789abcdef`. */
export const HEX_DIGITS = new Uint8Array([48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102]);
const HEX = HEX_DIGITS;
const encoder = new TextEncoder();
const TWO32 = 0x1_0000_0000;

/** ASCII/UTF-8 bytes of a constant piece of JSON, encoded once. */
export function bytesOf(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Writes a non-negative safe integer in decimal at `at`; returns the next position (at most 16 bytes). */
export function putUint(buffer: Uint8Array, at: number, value: number): number {
  if (value >= TWO32) {
    const text = String(value);
    for (let index = 0; index < text.length; index++) buffer[at++] = text.charCodeAt(index);
    return at;
  }
  const digits = value < 10 ? 1 : value < 100 ? 2 : value < 1000 ? 3 : value < 10000 ? 4 : value < 100000 ? 5 : value < 1e6 ? 6 : value < 1e7 ? 7 : value < 1e8 ? 8 : value < 1e9 ? 9 : 10;
  const end = at + digits;
  let cursor = end;
  let rest = value;
  do {
    const next = (rest / 10) >>> 0;
    buffer[--cursor] = 48 + rest - next * 10;
    rest = next;
  } while (rest !== 0);
  return end;
}

/** Writes a safe integer in decimal; returns the next position (at most 17 bytes). */
export function putInt(buffer: Uint8Array, at: number, value: number): number {
  if (value >= 0) return putUint(buffer, at, value);
  buffer[at] = 45;
  return putUint(buffer, at + 1, -value);
}

/** Writes `"0x..."`, the 64-bit `high * 2^32 + low` in lowercase hex, quoted; returns the next position (at most 20 bytes). */
export function putHex64(buffer: Uint8Array, at: number, high: number, low: number): number {
  buffer[at++] = 34;
  buffer[at++] = 48;
  buffer[at++] = 120;
  if (high !== 0) {
    for (let shift = ((35 - Math.clz32(high)) >> 2) * 4 - 4; shift >= 0; shift -= 4) buffer[at++] = HEX[(high >>> shift) & 15]!;
    for (let shift = 28; shift >= 0; shift -= 4) buffer[at++] = HEX[(low >>> shift) & 15]!;
  } else if (low === 0) buffer[at++] = 48;
  else for (let shift = ((35 - Math.clz32(low)) >> 2) * 4 - 4; shift >= 0; shift -= 4) buffer[at++] = HEX[(low >>> shift) & 15]!;
  buffer[at++] = 34;
  return at;
}

/** Writes constant bytes; returns the next position. */
export function putBytes(buffer: Uint8Array, at: number, bytes: Uint8Array): number {
  const length = bytes.length;
  // A loop beats TypedArray.set for the short keys written most.
  if (length < 48) for (let index = 0; index < length; index++) buffer[at++] = bytes[index]!;
  else {
    buffer.set(bytes, at);
    at += length;
  }
  return at;
}

/** Called when `need` more bytes do not fit: must make `buffer`, `position` and `limit` fit them. */
export type GrowLine = (writer: LineWriter, need: number) => void;

/** Writes JSON pieces at `position` in `buffer`, growing through `grow` when full. */
export class LineWriter {
  /** Where the bytes go. */
  buffer: Uint8Array;
  /** The next byte to write. */
  position = 0;
  /** A DataView of `buffer`, for the generated emitters' 4-byte stores. */
  view: DataView;
  /** One past the last byte that may be written. */
  limit: number;

  constructor(
    buffer: Uint8Array,
    private readonly grow: GrowLine,
  ) {
    this.buffer = buffer;
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    this.limit = buffer.byteLength;
  }

  /** Switches to another buffer (a grown one, a moved window), writing next at `position`. */
  reset(buffer: Uint8Array, position: number): void {
    this.buffer = buffer;
    this.view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    this.limit = buffer.byteLength;
    this.position = position;
  }

  /** Makes room for `need` bytes. */
  ensure(need: number): void {
    if (this.position + need > this.limit) this.grow(this, need);
  }

  /** Constant bytes (pre-encoded keys and punctuation). */
  bytes(bytes: Uint8Array): void {
    if (this.position + bytes.length > this.limit) this.grow(this, bytes.length);
    this.position = putBytes(this.buffer, this.position, bytes);
  }

  /** One ASCII byte. */
  byte(value: number): void {
    if (this.position + 1 > this.limit) this.grow(this, 1);
    this.buffer[this.position++] = value;
  }

  /** A non-negative safe integer in decimal. */
  uint(value: number): void {
    if (this.position + 16 > this.limit) this.grow(this, 16);
    this.position = putUint(this.buffer, this.position, value);
  }

  /** A safe integer in decimal. */
  int(value: number): void {
    if (this.position + 17 > this.limit) this.grow(this, 17);
    this.position = putInt(this.buffer, this.position, value);
  }

  /** `"0x..."`: the 64-bit value `high * 2^32 + low` (both unsigned 32-bit) in lowercase hex, quoted. */
  hex64(high: number, low: number): void {
    if (this.position + 20 > this.limit) this.grow(this, 20);
    this.position = putHex64(this.buffer, this.position, high, low);
  }

  /** `"0x..."` of a non-negative safe integer. */
  hexNumber(value: number): void {
    const high = Math.floor(value / TWO32);
    this.hex64(high, value - high * TWO32);
  }

  /** `"0x..."` of a non-negative bigint below 2^64. */
  hexBigint(value: bigint): void {
    this.hex64(Number((value >> 32n) & 0xffff_ffffn), Number(value & 0xffff_ffffn));
  }

  /** `"..."`: bytes as two lowercase hex digits each, quoted (capability chains, raw structs). */
  hexBytes(bytes: Uint8Array, start: number, end: number): void {
    this.ensure(2 * (end - start) + 2);
    const buffer = this.buffer;
    let at = this.position;
    buffer[at++] = 34;
    for (let index = start; index < end; index++) {
      const value = bytes[index]!;
      buffer[at++] = HEX[value >>> 4]!;
      buffer[at++] = HEX[value & 15]!;
    }
    buffer[at++] = 34;
    this.position = at;
  }

  /** A JSON string literal (paths, sysfs text): rare calls, so JSON.stringify does the escaping. */
  string(value: string): void {
    this.json(JSON.stringify(value));
  }

  /** Any JSON text, UTF-8 encoded. */
  json(text: string): void {
    // UTF-16 code units encode to at most 3 UTF-8 bytes each.
    this.ensure(3 * text.length);
    const { written } = encoder.encodeInto(text, this.buffer.subarray(this.position, this.limit));
    this.position += written;
  }
}
