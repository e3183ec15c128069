/**
 * `ioas map` and the pictures other commands write (`ioas plan --svg`, `ioas demo`): a snapshot of
 * an IOVA space rendered by @ioas/view to SVG or HTML files, JSON, or the terminal.
 */
import { writeFileSync } from 'node:fs';
import { parseSnapshot, snapshotRange, snapshotReserved, SNAPSHOT_VERSION, usableRanges, U64_MAX, type ContainerSnapshot, type ReservedRange } from '@ioas/core';
import { renderIovaMap } from '@ioas/view';
import { json } from './output.js';
import { readBounded } from './read-bounded.js';

/** The most a snapshot file may hold: a million mappings take about 120 MiB of JSON. */
export const SNAPSHOT_LIMIT = 256 << 20;

/** Where a picture goes: files, JSON on standard output, or (neither) text on the terminal. */
export interface MapOutput {
  /** Write an SVG picture here. */
  readonly svg?: string;
  /** Write a self-contained HTML page here. */
  readonly html?: string;
  /** Print the snapshot as JSON (what `--snapshot FILE` reads back). */
  readonly json?: boolean;
}

/** A file the command could not write: exit 1, with the path and the reason. */
export class WriteError extends Error {}

/**
 * Renders `snapshot` to what `output` asks for and returns what to print: the JSON, the terminal
 * picture, or one line per file written. Nothing is written unless every picture rendered.
 */
export function emitIovaMap(snapshot: ContainerSnapshot, output: MapOutput, colour: boolean): string {
  const files: { path: string; format: 'svg' | 'html' }[] = [];
  if (output.svg !== undefined) files.push({ path: output.svg, format: 'svg' });
  if (output.html !== undefined) files.push({ path: output.html, format: 'html' });
  const rendered = files.map((file) => ({ ...file, text: renderIovaMap(snapshot, { format: file.format }) }));
  const lines: string[] = [];
  for (const file of rendered) {
    writePicture(file.path, file.text);
    lines.push(`wrote ${file.path} (${file.format.toUpperCase()}, ${snapshot.title})`);
  }
  if (output.json === true) return json(snapshot);
  if (files.length > 0) return lines.join('\n');
  return renderIovaMap(snapshot, { format: 'text', colour });
}

/** Writes one picture, turning the file system's refusal into a {@link WriteError} naming the path. */
export function writePicture(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (error) {
    const { code } = error as { code?: unknown };
    const reason = code === 'ENOENT' ? 'its directory does not exist' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (error as Error).message;
    throw new WriteError(`cannot write ${path}: ${reason}${typeof code === 'string' ? ` (${code})` : ''}`, { cause: error });
  }
}

/** A snapshot file that is not JSON. */
export class SnapshotSyntaxError extends Error {}

/**
 * Reads a snapshot saved with `ioas map --json` (or `JSON.stringify(container.snapshot())`).
 *
 * @throws {InputError} for a file that is too large or a directory; {@link SnapshotSyntaxError} for
 *   text that is not JSON; the `IoasError` of {@link parseSnapshot} for JSON that is not a snapshot.
 */
export function readSnapshot(path: string): ContainerSnapshot {
  const text = readBounded(path, SNAPSHOT_LIMIT);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SnapshotSyntaxError(`${path} is not JSON: ${(error as Error).message}`);
  }
  return parseSnapshot(value);
}

/** The aperture of an IOMMU with `bits` input address bits: from 0 to 2^bits - 1. */
export function apertureOfBits(bits: number): { start: bigint; last: bigint } {
  return { start: 0n, last: bits === 64 ? U64_MAX : (1n << BigInt(bits)) - 1n };
}

/**
 * What a host's IOMMU group leaves of an aperture of `apertureBits`: its reserved regions (from
 * sysfs) and the usable ranges between them. Nothing is mapped: no container is opened.
 */
export function hostGroupSnapshot(group: number, reserved: readonly ReservedRange[], apertureBits: number): ContainerSnapshot {
  const aperture = apertureOfBits(apertureBits);
  return {
    version: SNAPSHOT_VERSION,
    title: `IOMMU group ${group} (host, ${apertureBits}-bit aperture)`,
    model: 'paged',
    aperture: snapshotRange(aperture),
    ioPageSizes: '0x1000',
    kernelRanges: null,
    windowGeometry: null,
    windows: [],
    reserved: reserved.map(snapshotReserved),
    usable: usableRanges([aperture], reserved).map(snapshotRange),
    mappings: [],
    allocations: [],
    msi: { model: 'none', doorbells: [] },
    budget: { mappings: 0, bytesMapped: '0x0', left: null },
  };
}
