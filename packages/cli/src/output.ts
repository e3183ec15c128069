/**
 * Output: aligned tables, colour when the stream is a terminal, JSON with 64-bit values as hex
 * strings (`"0x10000000"`: JSON numbers cannot hold them), and a progress bar.
 */
import { hex } from '@ioas/core';

/** A writable stream, as much of one as the command needs. */
export interface OutputStream {
  /** Writes text. */
  write(text: string): unknown;
  /** True when it is a terminal (colour and progress bars then). */
  readonly isTTY?: boolean;
}

/** Where the command writes, and what it knows of the terminal. */
export interface Io {
  /** Where results go. */
  readonly stdout: OutputStream;
  /** Where errors and prompts go. */
  readonly stderr: OutputStream;
  /** Reads one line of confirmation; undefined at end of input. */
  readonly readLine: (prompt: string) => Promise<string | undefined>;
  /** The environment (`NO_COLOR`, `FORCE_COLOR`). */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** True when output gets ANSI colours: a terminal with NO_COLOR unset, or FORCE_COLOR set (not `0`). */
export function colourEnabled(io: Io): boolean {
  return io.env.FORCE_COLOR !== undefined ? io.env.FORCE_COLOR !== '0' : io.stdout.isTTY === true && io.env.NO_COLOR === undefined;
}

/** Colours for a stream: ANSI when it is a terminal and NO_COLOR is unset, or when FORCE_COLOR is set. */
export function colours(io: Io) {
  const on = colourEnabled(io);
  const wrap = (code: string) => (text: string) => (on ? `\u001b[${code}m${text}\u001b[0m` : text);
  return { bold: wrap('1'), dim: wrap('2'), red: wrap('31'), green: wrap('32'), yellow: wrap('33'), cyan: wrap('36') };
}

/** The visible width of a string (ANSI colour codes take none). */
function width(text: string): number {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '').length;
}

/** Rows as an aligned table: the first row is the header; columns separated by two spaces. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, width(cell))));
  return rows
    .map((row) =>
      row
        .map((cell, index) => (index === row.length - 1 ? cell : cell + ' '.repeat(widths[index]! - width(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** JSON with every bigint as a hex string, two-space indented, with a final newline. */
export function json(value: unknown): string {
  return `${JSON.stringify(value, (_key, item: unknown) => (typeof item === 'bigint' ? hex(item) : item), 2)}\n`;
}

/** A progress bar redrawn in place on a terminal; nothing at all elsewhere. */
export function progressBar(io: Io, label: string): { update(done: number, total: number, what: string): void; done(): void } {
  if (io.stdout.isTTY !== true) return { update: () => undefined, done: () => undefined };
  let drawn = false;
  return {
    update(done, total, what) {
      const cells = 24;
      const filled = total === 0 ? cells : Math.round((done / total) * cells);
      io.stdout.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(cells - filled)}] ${done}/${total} ${what}\u001b[K`);
      drawn = true;
    },
    done() {
      if (drawn) io.stdout.write('\r\u001b[K');
    },
  };
}
