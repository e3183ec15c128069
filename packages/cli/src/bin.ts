#!/usr/bin/env node
import { createInterface } from 'node:readline';
import { describeError, main } from './cli.js';
import type { Io } from './output.js';

const debug = process.env.IOAS_DEBUG !== undefined && process.env.IOAS_DEBUG !== '' && process.env.IOAS_DEBUG !== '0';

/** The last resort for what escapes main(): one line, the stack only with IOAS_DEBUG=1, exit 1. */
function fatal(error: unknown): void {
  process.stderr.write(`ioas: ${describeError(error)}\n`);
  if (debug && error instanceof Error && error.stack !== undefined) process.stderr.write(`${error.stack}\n`);
  process.exit(1);
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);
// A reader that went away (`ioas groups | head -1`) is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => (error.code === 'EPIPE' ? process.exit(process.exitCode ?? 0) : fatal(error)));
}

let lines: AsyncIterator<string> | undefined;
const io: Io = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  readLine: async (prompt) => {
    process.stderr.write(prompt);
    lines ??= createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
    const next = await lines.next();
    return next.done ? undefined : next.value;
  },
};

process.exitCode = await main(process.argv.slice(2), io);
// A confirmation prompt leaves stdin open; nothing else is pending once main() has returned.
process.stdin.destroy();
