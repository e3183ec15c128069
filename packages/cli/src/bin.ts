#!/usr/bin/env node
import { createInterface } from 'node:readline';
import { main } from './cli.js';
import type { Io } from './output.js';

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
