/**
 * The recorder's table of host memory regions: its mmaps and the program's buffers (what
 * `addressOf` was asked about), so that every pointer in the trace is "region k, offset o" and never
 * an address of the recording process. Addresses are numbers on the hot path (no bigint): user
 * addresses stay below 2^53 on every host ioas runs on; one above falls back to hex.
 */
import type { Syscalls } from '@ioas/core';
import { POINTER_MAX, type FastPointers, type StreamPointers } from './ioctl-codec.js';
import { bytesOf, putBytes, putHex64, putUint, type LineWriter } from './line-writer.js';

interface Region {
  readonly start: number;
  readonly end: number;
  /** The region's number in the trace; 0 for a program buffer no line has named yet. */
  id: number;
  /** The program buffer, for reading argument arrays; held weakly so the table keeps nothing alive. */
  readonly buffer: WeakRef<Uint8Array> | undefined;
}

const TWO32 = 0x1_0000_0000;
/** Above this high word an address is past 2^53: not exact as a number. */
const HIGH_LIMIT = 0x20_0000;
const POINTER = bytesOf('{"buffer":');
const OFFSET = bytesOf(',"offset":');
const BUFFERS = bytesOf(',"buffers":[');
const LENGTH = bytesOf(',"length":');

/** Writes `{"buffer":id,"offset":"0x..."}` at `at` (room for POINTER_MAX bytes); returns the next position. */
export function putPointer(buffer: Uint8Array, at: number, id: number, offset: number): number {
  at = putBytes(buffer, at, POINTER);
  at = putUint(buffer, at, id);
  at = putBytes(buffer, at, OFFSET);
  const offsetHigh = Math.floor(offset / TWO32);
  at = putHex64(buffer, at, offsetHigh, offset - offsetHigh * TWO32);
  buffer[at] = 125;
  return at + 1;
}

/** Regions sorted by start, with the last hit cached (map/unmap loops hit one region over and over). */
export class RegionNames implements StreamPointers, FastPointers {
  private regions: Region[] = [];
  private last: Region | undefined;
  private nextId = 1;
  /** Program buffers numbered while writing the current line: announced in its `buffers`. */
  private announced: Region[] = [];
  private sweepAt = 64;
  /** Changes whenever what an address names may have changed (a region added, retired or numbered). */
  generation = 0;

  constructor(private readonly syscalls: Syscalls) {}

  /** A successful mmap: the next region number. */
  addMapping(address: bigint, length: bigint): number {
    const start = Number(address);
    const region: Region = { start, end: start + Number(length), id: this.nextId++, buffer: undefined };
    this.insert(region);
    return region.id;
  }

  /** A program buffer whose address the program took: numbered when a pointer first names it. */
  addBuffer(address: bigint, buffer: Uint8Array): void {
    const start = Number(address);
    if (!Number.isSafeInteger(start)) return;
    const existing = this.find(start);
    if (existing !== undefined && existing.start === start && existing.buffer?.deref() === buffer) return;
    this.insert({ start, end: start + Math.max(buffer.byteLength, 1), id: 0, buffer: new WeakRef(buffer) });
  }

  /** A successful munmap: a region unmapped whole is retired (its addresses may come back). */
  remove(address: bigint, length: bigint): void {
    const start = Number(address);
    const region = this.find(start);
    if (region !== undefined && region.start === start && region.end <= start + Number(length)) this.delete(region);
  }

  /** Writes `address` as a pointer (numbering a program buffer on first use), or hex when it is in no region. */
  writePointer(writer: LineWriter, high: number, low: number): void {
    writer.ensure(POINTER_MAX);
    writer.position = this.put(writer.buffer, writer.position, high, low);
  }

  /** {@link writePointer} straight into a buffer with room for {@link POINTER_MAX} bytes; returns the next position. */
  put(buffer: Uint8Array, at: number, high: number, low: number): number {
    const region = high < HIGH_LIMIT ? this.find(high * TWO32 + low) : undefined;
    if (region === undefined) return putHex64(buffer, at, high, low);
    if (region.id === 0) {
      region.id = this.nextId++;
      this.announced.push(region);
      this.generation++;
    }
    return putPointer(buffer, at, region.id, high * TWO32 + low - region.start);
  }

  /**
   * The region holding an address, for the journal's binary records: undefined when none does (the
   * address is written raw), null when it is a program buffer no line has numbered yet (a JSON line
   * must number and announce it).
   */
  known(high: number, low: number): { readonly id: number; readonly start: number } | undefined | null {
    if (high >= HIGH_LIMIT) return undefined;
    const region = this.find(high * TWO32 + low);
    if (region === undefined) return undefined;
    return region.id === 0 ? null : region;
  }

  /** True when the current line numbered a program buffer it must announce. */
  get announcing(): boolean {
    return this.announced.length > 0;
  }

  /** Writes a bigint address as {@link writePointer} does. */
  writeAddress(writer: LineWriter, address: bigint): void {
    this.writePointer(writer, Number((address >> 32n) & 0xffff_ffffn), Number(address & 0xffff_ffffn));
  }

  /** `length` bytes at the address when they lie inside one region. */
  read(high: number, low: number, length: number): Uint8Array | undefined {
    if (high >= HIGH_LIMIT) return undefined;
    const address = high * TWO32 + low;
    const region = this.find(address);
    if (region === undefined || address + length > region.end) return undefined;
    if (region.buffer === undefined) return this.syscalls.memory(BigInt(address), length);
    const buffer = region.buffer.deref();
    const at = address - region.start;
    return buffer === undefined ? undefined : buffer.subarray(at, at + length);
  }

  /** Writes `,"buffers":[...]` for the program buffers this line numbered, if any. */
  writeAnnounced(writer: LineWriter): void {
    if (this.announced.length === 0) return;
    writer.bytes(BUFFERS);
    this.announced.forEach((region, index) => {
      if (index > 0) writer.byte(44);
      writer.bytes(POINTER);
      writer.uint(region.id);
      writer.bytes(LENGTH);
      writer.hexNumber(region.end - region.start);
      writer.byte(125);
    });
    writer.byte(93);
    this.announced = [];
  }

  private find(address: number): Region | undefined {
    const last = this.last;
    if (last !== undefined && address >= last.start && address < last.end) return last;
    const regions = this.regions;
    let low = 0;
    let high = regions.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const region = regions[middle]!;
      if (address < region.start) high = middle - 1;
      else if (address >= region.end) low = middle + 1;
      else {
        // A program buffer that was collected leaves a stale entry: its address names nothing now.
        if (region.buffer !== undefined && region.buffer.deref() === undefined) return undefined;
        this.last = region;
        return region;
      }
    }
    return undefined;
  }

  private insert(region: Region): void {
    // Whatever the new region overlaps is gone (freed behind the recorder's back, or collected).
    this.regions = this.regions.filter((other) => other.end <= region.start || other.start >= region.end);
    let at = this.regions.length;
    while (at > 0 && this.regions[at - 1]!.start > region.start) at--;
    this.regions.splice(at, 0, region);
    this.last = undefined;
    this.generation++;
    if (this.regions.length >= this.sweepAt) {
      this.regions = this.regions.filter((other) => other.buffer === undefined || other.buffer.deref() !== undefined);
      this.sweepAt = Math.max(64, 2 * this.regions.length);
    }
  }

  private delete(region: Region): void {
    this.regions = this.regions.filter((other) => other !== region);
    this.last = undefined;
    this.generation++;
  }
}
