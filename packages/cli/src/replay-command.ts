/**
 * `ioas replay TRACE`: a trace recorded with @ioas/trace replayed on the simulator, call by call,
 * each answer compared with the recorded one (replayTrace), and optionally written as a scenario
 * (traceToScenario). Exit 0 when every call agrees, 1 at the first divergence (printed: the call,
 * each field, what the kernel said, what the simulator said), 2 for a trace that cannot be read or
 * replayed as written (its line or call named), as for the other commands' bad input.
 */
import type { PlatformName } from '@ioas/backend-sim';
import { IoasError } from '@ioas/core';
import { describeTraceValue, readTrace, replayTrace, traceToScenario, type ReplayableTrace, type ReplayReport } from '@ioas/trace';
import { writeFileSync } from 'node:fs';
import { Option, type Command } from 'commander';
import { colours, json, table, type Io } from './output.js';
import { InputError, readBoundedBytes } from './read-bounded.js';

/**
 * The most a trace file may hold: 256 MiB, about two million calls. A trace is read whole, as a
 * string (V8 caps strings near 512 MiB), so a bound is needed anyway; this one says so clearly.
 */
export const TRACE_LIMIT = 256 << 20;

/** What the command needs from the program that registers it (cli.ts keeps its error classes to itself). */
export interface ReplayCommandContext {
  /** Where output goes. */
  readonly io: Io;
  /** Prints a line of results. */
  readonly out: (text: string) => void;
  /** The run's exit status, set to 1 when the replay diverges. */
  readonly state: { exitCode: number };
  /** Bad input (exit 2): an unreadable or malformed trace. */
  readonly usage: (message: string) => Error;
  /** A failure (exit 1) with its message formatted. */
  readonly failure: (message: string) => Error;
  /** One line for any thrown value. */
  readonly describeError: (error: unknown) => string;
  /** The `--json` option, as every command has it. */
  readonly jsonOption: () => Option;
}

/** Who said the recorded answers: the kernel for a libc recording, else the face it was recorded on. */
function recordedBy(report: ReplayReport): string {
  return report.recordedOn === 'libc' ? 'the kernel' : `the recording (${report.recordedOn})`;
}

/** The report as people read it. */
export function formatReplayReport(report: ReplayReport, io: Io): string {
  const colour = colours(io);
  const lines: string[] = [];
  const why = {
    arch: "inferred from the trace's arch; --platform names another",
    header: 'the simulator the trace was recorded on; --platform names another',
    option: 'named with --platform',
    machine: "the caller's simulator",
  }[report.platformSource];
  if (report.divergence === undefined) {
    lines.push(colour.green(`${report.replayed} calls replayed, all agree with the simulator (platform ${report.platform})`));
  } else {
    const divergence = report.divergence;
    lines.push(colour.red(`call ${divergence.n} (${divergence.description}) diverges: ${report.replayed - 1} calls agreed before it (platform ${report.platform})`));
    for (const difference of divergence.differences) {
      lines.push(`  ${difference.field}: ${recordedBy(report)} said ${describeTraceValue(difference.recorded)}, the simulator said ${describeTraceValue(difference.replayed)}`);
    }
    if (report.replayed < report.calls) lines.push(colour.dim(`the replay stopped there: ${report.calls - report.replayed} calls after it were not replayed`));
  }
  lines.push(colour.dim(`platform ${report.platform}: ${why}`));
  if (report.notReplayed.length > 0) {
    lines.push('not replayed, or not compared in full:');
    lines.push(table(report.notReplayed.map((entry) => [`  ${entry.call}`, `${entry.count} call${entry.count === 1 ? '' : 's'}`, `(first: call ${entry.first})`, entry.reason])));
  }
  return lines.join('\n');
}

/** Registers `ioas replay` on the program. */
export function registerReplayCommand(program: Command, context: ReplayCommandContext): Command {
  const { io, out, state, usage, failure, describeError } = context;
  return program
    .command('replay')
    .description('replay a trace recorded with @ioas/trace on the simulator and compare every answer: the first call where the simulator and the kernel part ways')
    .argument('<trace>', "a trace file (JSON Lines, as recordSyscalls writes it), or the journal a recorder that died before stop() left")
    .addOption(new Option('--platform <name>', "the simulated platform (default: the one the trace's arch implies)").choices(['p4080', 'arm-smmuv3', 'x86-vtd']))
    .addOption(context.jsonOption())
    .option('--to-scenario <file>', "also write the trace's maps, unmaps and windows as a scenario (YAML) that ioas sim runs")
    .action((file: string, options: { platform?: PlatformName; json?: boolean; toScenario?: string }) => {
      let bytes: Uint8Array;
      try {
        // Bounded: /dev/zero or a huge file is refused, not read forever.
        bytes = readBoundedBytes(file, TRACE_LIMIT);
      } catch (error) {
        throw usage(error instanceof InputError ? error.message : `cannot read ${file}: ${describeError(error)}`);
      }
      let trace: ReplayableTrace;
      try {
        trace = readTrace(bytes);
      } catch (error) {
        // A malformed or truncated trace: readTrace names the line.
        throw usage(`${file} is not a trace: ${IoasError.isInstance(error) ? error.message : describeError(error)}`);
      }
      /** A trace that cannot be replayed or converted as written is bad input; anything else is a failure. */
      const refused = (error: unknown, what: string): Error =>
        IoasError.isInstance(error) && error.code === 'invalid-argument' ? usage(`${file}: ${error.message}`) : failure(`${what}: ${describeError(error)}`);
      if (options.toScenario !== undefined) {
        let scenario: string;
        try {
          scenario = traceToScenario(trace, options.platform === undefined ? {} : { platform: options.platform });
        } catch (error) {
          throw refused(error, `cannot write a scenario from ${file}`);
        }
        try {
          writeFileSync(options.toScenario, scenario);
        } catch (error) {
          throw failure(`cannot write ${options.toScenario}: ${describeError(error)}`);
        }
      }
      let report: ReplayReport;
      try {
        report = replayTrace(trace, options.platform === undefined ? {} : { platform: options.platform });
      } catch (error) {
        throw refused(error, `cannot replay ${file}`);
      }
      if (options.json) out(json(report));
      else {
        out(formatReplayReport(report, io));
        if (options.toScenario !== undefined) out(`scenario written to ${options.toScenario} (run: ioas sim ${options.toScenario})`);
      }
      if (!report.ok) state.exitCode = 1;
    });
}
