/**
 * The `ioas` command: argument parsing and formatting over the libraries. Every fact printed comes
 * from a library call tested on its own (Sysfs.describeGroups, usableRanges, planWindows,
 * diagnoseHost, Sysfs.bindVfio, runScenario, the backends in the demo).
 *
 * Exit status: 0 success, 1 failure (a check failed, the kernel or a file said no), 2 bad usage
 * (unknown option, malformed value, invalid scenario file).
 */
import { runScenario, type PlatformName, type ScenarioResult } from '@ioas/backend-sim';
import { formatRange, formatSize, formatWindowPlan, hex, IoasError, parseSize, parseSizeAt, planSnapshot, planWindows, rangeSize, usableRanges, type ContainerSnapshot, type ReservedRange, type Syscalls } from '@ioas/core';
import { describeBlockers, diagnoseHost, libcSyscalls, pciId, Sysfs, type GroupInfo, type HostCheck } from '@ioas/vfio';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { runDemo } from './demo.js';
import { apertureOfBits, emitIovaMap, hostGroupSnapshot, readSnapshot, SnapshotSyntaxError, WriteError, type MapOutput } from './iova-map.js';
import { colourEnabled, colours, json, progressBar, table, type Io } from './output.js';
import { HOST_FILE_LIMIT, InputError, readBounded, SCENARIO_LIMIT } from './read-bounded.js';
import { loadScenario } from './scenario-file.js';
import { registerReplayCommand } from './replay-command.js';

/** Bad usage: exit 2. */
class UsageError extends Error {}

/** A failure with its message already formatted: exit 1. */
class Failure extends Error {}

/** The largest IOMMU group number: the kernel numbers groups with an int from an IDA. */
const MAX_GROUP = 0x7fff_ffff;

/**
 * One line saying what went wrong, for any thrown value: the typed code of an IoasError, the path
 * and errno of a failed file system call, the message of anything else. Never a stack.
 */
export function describeError(error: unknown): string {
  if (IoasError.isInstance(error)) {
    // A sysfs read that failed carries the file system's error as its cause: say what it was when the
    // message does not (a directory where a file belongs, a file past the size bound).
    const cause = (error as { cause?: unknown }).cause;
    const code = (cause as { code?: unknown } | undefined)?.code;
    const detail = cause instanceof InputError ? cause.message.replace(`${cause.path} `, '') : typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && !error.message.includes(code) ? describeError(cause).replace(/^cannot \w+ \S+: /, '') : '';
    return oneLine(`${error.code}: ${flattenIssues(error.message)}${detail === '' ? '' : ` (${detail})`}`);
  }
  if (error instanceof InputError || error instanceof Failure || error instanceof UsageError) return oneLine(error.message);
  if (error instanceof Error) {
    const { code, syscall, path } = error as { code?: unknown; syscall?: unknown; path?: unknown };
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && typeof syscall === 'string') {
      const what = /^E[A-Z0-9]+: ([^,]+)/.exec(error.message)?.[1] ?? code;
      return oneLine(`cannot ${syscall}${typeof path === 'string' ? ` ${path}` : ''}: ${what} (${code})`);
    }
    return oneLine(error.message === '' ? error.name : `${error.name === 'Error' ? '' : `${error.name}: `}${error.message}`);
  }
  return oneLine(String(error));
}

/**
 * A validation message listing its issues on lines of their own (`invalid input`, `✖ must be
 * positive`, `  → at memory[0].pageSize`) as one line: `invalid input: must be positive (at memory[0].pageSize)`.
 */
function flattenIssues(message: string): string {
  const [head = '', ...rest] = message.split('\n');
  const issues: string[] = [];
  for (const line of rest) {
    const text = line.trim();
    if (text === '') continue;
    const at = /^→\s*(at .*)$/.exec(text);
    if (at !== null && issues.length > 0) issues[issues.length - 1] += ` (${at[1]})`;
    else issues.push(text.replace(/^✖\s*/, ''));
  }
  return issues.length === 0 ? head : `${head}: ${issues.join('; ')}`;
}

function oneLine(text: string): string {
  const [first = ''] = text.split('\n');
  return first.length > 500 ? `${first.slice(0, 500)}...` : first;
}

/** The libc syscalls, each sysfs and /proc file read with a size bound (16 MiB). */
export function hostSyscalls(): Syscalls {
  return { ...libcSyscalls(), readFile: (path) => readBounded(path, HOST_FILE_LIMIT) };
}

const PCI_ADDRESS = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

/** A value as typed, quoted when it is empty or holds spaces or control characters. */
function shown(value: string): string {
  return /^[\x21-\x7e]+$/.test(value) ? value : JSON.stringify(value);
}

function sizeOption(value: string): bigint {
  try {
    return parseSize(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function countOption(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`${shown(value)} is not a whole number`);
  const count = Number(value);
  if (!Number.isSafeInteger(count)) throw new InvalidArgumentError(`${shown(value)} is too large`);
  return count;
}

/** `--aperture-bits`: the IOMMU input address width, 12 to 64. */
function apertureBitsOption(prefix = ''): Option {
  return new Option('--aperture-bits <n>', `${prefix}the IOMMU input address width: the kernel reports it once a container is open (39 on many VT-d parts)`).default(64).argParser((value: string) => {
    const bits = countOption(value);
    if (bits < 12 || bits > 64) throw new InvalidArgumentError('--aperture-bits must be between 12 and 64');
    return bits;
  });
}

function pciAddress(value: string): string {
  const address = value.toLowerCase();
  if (!PCI_ADDRESS.test(address)) throw new UsageError(`${shown(value)} is not a PCI address: write domain:bus:slot.function, such as 0000:00:03.0 (lspci -D lists them)`);
  return address;
}

/** An IOMMU group number, exactly: decimal digits, at most {@link MAX_GROUP}; anything else is refused. */
function groupNumber(value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${shown(value)} is not an IOMMU group number (the N of /dev/vfio/N)`);
  if (BigInt(value) > BigInt(MAX_GROUP)) throw new UsageError(`${value} is not an IOMMU group number: groups are numbered 0 to ${MAX_GROUP}`);
  return Number(value);
}

const reservedJson = (regions: readonly ReservedRange[]) => regions.map((region) => ({ start: region.start, last: region.last, size: rangeSize(region), kind: region.kind }));

/** What a run decided besides output: the exit status of a command that ran to its end. */
export interface RunState {
  /** 0, or 1 when a command finished but found a failure (a doctor check failed). */
  exitCode: number;
}

/** Builds the program; `syscalls` reads sysfs (libc by default); `state` collects the exit status. */
export function buildProgram(io: Io, syscalls: () => Syscalls = hostSyscalls, state: RunState = { exitCode: 0 }): Command {
  const colour = colours(io);
  const out = (text: string): void => void io.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  const program = new Command('ioas');
  program
    .description('Inspect IOMMU groups and host readiness for VFIO, plan windowed IOMMUs, bind devices, and run scenarios on the simulator.')
    .version('0.0.0', '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
      // `ioas: unknown option '--x'`, as every other failure begins.
      outputError: (text, write) => write(text.replace(/^error: /, 'ioas: ')),
    })
    .exitOverride();
  const sysfsRoot = () => new Option('--sysfs-root <dir>', 'read sysfs, /dev and /proc under DIR (a captured tree) instead of /').default('');
  const jsonOption = () => new Option('--json', 'machine-readable output (64-bit values as hex strings)');
  const sysfsOf = (root: string) => new Sysfs(syscalls(), root);

  /** A group's reserved regions, checked: exit 1 for a group that is absent or unreadable. */
  const reservedOf = (sysfs: Sysfs, group: number, root: string): ReservedRange[] => {
    const known = sysfs.groups();
    if (!known.includes(group)) {
      throw new Failure(`no IOMMU group ${group} in ${root}/sys/kernel/iommu_groups (${known.length === 0 ? 'there are none: is the IOMMU on?' : `groups: ${known.join(', ')}`})`);
    }
    try {
      return sysfs.reservedRegions(group);
    } catch (error) {
      throw new Failure(`group ${group}: ${describeError(error)}`, { cause: error });
    }
  };

  /** Runs a scenario file (default: the platform's built-in example) on the simulator, with a progress bar. */
  const runScenarioFile = async (file: string | undefined, platform: PlatformName | undefined, snapshot: boolean) => {
    const path = file ?? new URL(`../examples/${platform ?? 'p4080'}.yaml`, import.meta.url);
    let text: string;
    try {
      // Bounded: /dev/zero or a huge file is refused, not read forever.
      text = readBounded(path, SCENARIO_LIMIT);
    } catch (error) {
      throw new UsageError(error instanceof InputError ? error.message : `cannot read ${String(file)}: ${describeError(error)}`);
    }
    const loaded = loadScenario(text);
    if (!loaded.ok) {
      const name = file ?? `${platform ?? 'p4080'}.yaml`;
      throw new UsageError(`${name} is not a valid scenario:\n${loaded.problems.map((problem) => `  ${name}:${problem.line}:${problem.column}: ${problem.path === '' ? '' : `${problem.path}: `}${problem.message}`).join('\n')}`);
    }
    const bar = progressBar(io, 'scenario');
    const result = await runScenario(loaded.scenario, { ...(platform === undefined ? {} : { platform }), snapshot, onStep: (index, total, action) => bar.update(index, total, action) });
    bar.done();
    return result;
  };

  /** Exit 1 when a scenario stopped at a step whose outcome it did not expect. */
  const failIfUnexpected = (result: ScenarioResult) => {
    if (result.ok) return;
    const last = result.events.at(-1)!;
    throw new Failure(`step ${last.step + 1} (${last.action}) ended with ${last.outcome === 'error' ? last.code : last.outcome}, which the scenario did not expect`);
  };

  /** Renders a snapshot as the picture options ask, turning a file that cannot be written into exit 1. */
  const drawMap = (snapshot: ContainerSnapshot, output: MapOutput, print = true) => {
    try {
      const text = emitIovaMap(snapshot, output, colourEnabled(io));
      if (print) out(text);
    } catch (error) {
      if (error instanceof WriteError) throw new Failure(error.message, { cause: error });
      throw error;
    }
  };
  const svgOption = () => new Option('--svg <file>', 'write the IOVA space as an SVG picture');
  const htmlOption = () => new Option('--html <file>', 'write the IOVA space as a self-contained HTML page');

  program
    .command('groups')
    .description('every IOMMU group: its devices (PCI address, vendor:device, driver), viability, reserved regions')
    .addOption(jsonOption())
    .addOption(sysfsRoot())
    .action((options: { json?: boolean; sysfsRoot: string }) => {
      const sysfs = sysfsOf(options.sysfsRoot);
      // One group that cannot be read is reported on its line and on stderr; the others still print.
      const results = sysfs.groups().map((group): { group: number; info?: GroupInfo; error?: string; thrown?: unknown } => {
        try {
          return { group, info: sysfs.describeGroup(group) };
        } catch (error) {
          return { group, error: describeError(error), thrown: error };
        }
      });
      const failed = results.filter((result) => result.error !== undefined);
      const report = () => {
        for (const result of failed) {
          io.stderr.write(`ioas: group ${result.group}: ${result.error}\n`);
          if (result.thrown !== undefined && debug(io)) io.stderr.write(`${stackOf(result.thrown)}\n`);
        }
        if (failed.length > 0) state.exitCode = 1;
      };
      if (options.json) {
        out(
          json({
            groups: results.map(({ group, info, error }) =>
              info === undefined
                ? { group, error }
                : {
                    group: info.group,
                    viable: info.viable,
                    vfio: info.vfio,
                    devices: info.devices.map((device) => ({ address: device.address, vendor: hex(device.vendor), device: hex(device.device), driver: device.driver })),
                    blockers: info.blockers,
                    reserved: reservedJson(info.reserved),
                  },
            ),
          }),
        );
        return report();
      }
      if (results.length === 0) throw new Failure(`no IOMMU groups in ${options.sysfsRoot}/sys/kernel/iommu_groups: the IOMMU is off or absent (ioas doctor says how to turn it on)`);
      const rows: string[][] = [['group', 'viable', 'device', 'id', 'driver', 'reserved'].map(colour.bold)];
      for (const { group: number, info: group } of results) {
        if (group === undefined) {
          rows.push([String(number), colour.red('?'), colour.red('(cannot be read: see below)'), '', '', '']);
          continue;
        }
        const lines = Math.max(group.devices.length, group.reserved.length, 1);
        for (let line = 0; line < lines; line++) {
          const device = group.devices[line];
          const region = group.reserved[line];
          rows.push([
            line === 0 ? String(group.group) : '',
            line === 0 ? (group.viable ? colour.green('yes') : colour.red('no')) : '',
            device?.address ?? '',
            device === undefined ? '' : pciId(device),
            device === undefined ? '' : device.driver === 'vfio-pci' ? colour.cyan('vfio-pci') : (device.driver ?? '-'),
            region === undefined ? '' : `${formatRange(region)} ${region.kind}`,
          ]);
        }
      }
      out(table(rows));
      const blocked = results.flatMap(({ info }) => (info === undefined || info.viable ? [] : [info]));
      if (blocked.length > 0) {
        out(`\n${blocked.map((group) => `group ${group.group} is not viable: ${describeBlockers(group.blockers)}`).join('\n')}`);
      }
      report();
    });

  program
    .command('reserved')
    .description("a group's reserved regions, typed (msi, direct, direct-relaxable, reserved)")
    .argument('<group>', 'IOMMU group number')
    .addOption(jsonOption())
    .addOption(sysfsRoot())
    .action((groupText: string, options: { json?: boolean; sysfsRoot: string }) => {
      const group = groupNumber(groupText);
      const reserved = reservedOf(sysfsOf(options.sysfsRoot), group, options.sysfsRoot);
      if (options.json) return out(json({ group, reserved: reservedJson(reserved) }));
      if (reserved.length === 0) return out(`group ${group} has no reserved regions`);
      out(table([['start', 'last', 'size', 'kind'].map(colour.bold), ...reserved.map((region) => [hex(region.start), hex(region.last), formatSize(rangeSize(region)), region.kind])]));
    });

  program
    .command('ranges')
    .description('the usable IOVA ranges a group\'s reserved regions leave (direct-relaxable stays usable, as type1 and iommufd treat it)')
    .argument('<group>', 'IOMMU group number')
    .addOption(apertureBitsOption())
    .addOption(jsonOption())
    .addOption(sysfsRoot())
    .action((groupText: string, options: { json?: boolean; sysfsRoot: string; apertureBits: number }) => {
      const group = groupNumber(groupText);
      const reserved = reservedOf(sysfsOf(options.sysfsRoot), group, options.sysfsRoot);
      const aperture = apertureOfBits(options.apertureBits);
      const usable = usableRanges([aperture], reserved);
      if (options.json) return out(json({ group, aperture, reserved: reservedJson(reserved), usable: usable.map((range) => ({ ...range, size: rangeSize(range) })) }));
      out(`${colour.bold('reserved')}\n${reserved.length === 0 ? '(none)' : table(reserved.map((region) => [formatRange(region), region.kind]))}\n`);
      out(`${colour.bold(`usable in ${formatRange(aperture)}`)} (${options.apertureBits}-bit aperture)\n${table(usable.map((range) => [formatRange(range), formatSize(rangeSize(range))]))}`);
    });

  program
    .command('plan')
    .description('plan a windowed IOMMU (PAMU) for a guest: aperture, window size and count, what each window holds')
    .requiredOption('--memory <size[@iova]>', 'guest RAM at an IOVA (default 0), such as 256M@0; repeat for more segments', (value: string, list: string[]) => [...list, value], [] as string[])
    .requiredOption('--page <size>', 'the hugepage size backing guest RAM (each window needs one physically contiguous chunk)', sizeOption)
    .requiredOption('--msi-banks <n>', 'MSI banks that need a window each (P4080: 3)', countOption)
    .option('--max-windows <n>', 'most windows (PAMU through VFIO: 256)', countOption)
    .addOption(svgOption())
    .addOption(htmlOption())
    .addOption(jsonOption())
    .action((options: { memory: string[]; page: bigint; msiBanks: number; maxWindows?: number; json?: boolean; svg?: string; html?: string }) => {
      const memory = options.memory.map((text) => {
        try {
          const { size, iova } = parseSizeAt(text);
          return { iova, size, pageSize: options.page };
        } catch (error) {
          throw new UsageError(`--memory ${(error as Error).message}`);
        }
      });
      let plan;
      try {
        plan = planWindows({ memory, msiBanks: options.msiBanks, ...(options.maxWindows === undefined ? {} : { limits: { maxWindows: options.maxWindows } }) });
      } catch (error) {
        if (IoasError.isInstance(error) && error.code === 'invalid-argument') throw new UsageError(flattenIssues(error.message));
        throw error;
      }
      out(options.json ? json(plan) : formatWindowPlan(plan));
      if (options.svg !== undefined || options.html !== undefined) {
        // With --json, standard output holds the plan's JSON alone.
        drawMap(planSnapshot(plan), { ...(options.svg === undefined ? {} : { svg: options.svg }), ...(options.html === undefined ? {} : { html: options.html }) }, options.json !== true);
      }
    });

  program
    .command('doctor')
    .description('why VFIO will or will not work on this host, each check with its fix')
    .argument('[pci-address]', 'also check this device: its group, binding and /dev/vfio node')
    .option('--memlock <size>', 'check RLIMIT_MEMLOCK against the bytes you will map', sizeOption)
    .addOption(jsonOption())
    .addOption(sysfsRoot())
    .action((address: string | undefined, options: { memlock?: bigint; json?: boolean; sysfsRoot: string }) => {
      const checks: HostCheck[] = diagnoseHost({
        syscalls: syscalls(),
        root: options.sysfsRoot,
        ...(address === undefined ? {} : { device: pciAddress(address) }),
        ...(options.memlock === undefined ? {} : { memlock: options.memlock }),
      });
      const failed = checks.filter((check) => check.status === 'fail').length;
      if (options.json) {
        out(json({ ok: failed === 0, checks }));
      } else {
        const mark = { pass: colour.green('ok'), warn: colour.yellow('warn'), fail: colour.red('FAIL'), skip: colour.dim('skip') } as const;
        const rows: string[][] = [];
        for (const check of checks) {
          rows.push([mark[check.status], check.title, check.detail]);
          if (check.fix !== undefined && (check.status === 'fail' || check.status === 'warn')) rows.push(['', '', colour.dim(`fix: ${check.fix}`)]);
        }
        out(table(rows));
        out(failed === 0 ? `\n${colour.green('VFIO should work here')}${checks.some((check) => check.status === 'warn') ? ' (see the warnings)' : ''}` : `\n${colour.red(`${failed} check${failed === 1 ? '' : 's'} failed`)}: VFIO will not work until fixed`);
      }
      if (failed > 0) state.exitCode = 1;
    });

  const bindCommand = (name: 'bind' | 'unbind') =>
    program
      .command(name)
      .description(name === 'bind' ? 'bind a PCI device to vfio-pci through driver_override' : 'give a PCI device back to its default driver (clear driver_override, unbind, probe)')
      .argument('<pci-address>', 'the device, such as 0000:00:03.0')
      .option('-y, --yes', 'do not ask for confirmation')
      .addOption(jsonOption())
      .addOption(sysfsRoot())
      .action(async (addressText: string, options: { yes?: boolean; json?: boolean; sysfsRoot: string }) => {
        const address = pciAddress(addressText);
        const sysfs = sysfsOf(options.sysfsRoot);
        if (!sysfs.hasDevice(address)) throw new Failure(`no PCI device ${address} in ${options.sysfsRoot}/sys/bus/pci/devices`);
        const before = sysfs.device(address);
        const id = pciId(before);
        if (name === 'unbind' && before.driver !== 'vfio-pci') {
          if (options.json) return out(json({ address, group: before.group ?? null, before: before.driver, after: before.driver, changed: false }));
          return out(`${address} (${id}) is not bound to vfio-pci (${before.driver ?? 'no driver'}): nothing to do`);
        }
        if (name === 'bind' && before.driver === 'vfio-pci') {
          if (options.json) return out(json({ address, group: before.group ?? null, before: before.driver, after: before.driver, changed: false }));
          return out(`${address} (${id}) is already bound to vfio-pci`);
        }
        const what = name === 'bind' ? `bind ${address} (${id}, now ${before.driver ?? 'no driver'}) to vfio-pci` : `give ${address} (${id}) back from vfio-pci to its default driver`;
        if (!options.yes) {
          const answer = await io.readLine(`${what}? [y/N] `);
          if (answer === undefined || !/^y(es)?$/i.test(answer.trim())) throw new Failure(`not confirmed: nothing changed (use --yes to skip the question)`);
        }
        try {
          if (name === 'bind') sysfs.bindVfio(address);
          else sysfs.unbindVfio(address);
        } catch (error) {
          const code = (error as { code?: string }).code;
          throw new Failure(`could not ${what}: ${code === 'EACCES' || code === 'EPERM' ? 'permission denied (binding needs root)' : (error as Error).message}`);
        }
        const after = sysfs.device(address);
        const others = after.group === undefined ? [] : sysfs.groupBlockers(after.group).filter((blocker) => blocker.address !== address);
        if (options.json) return out(json({ address, group: after.group ?? null, before: before.driver, after: after.driver, changed: true, blockers: others }));
        out(`${name === 'bind' ? 'bound' : 'unbound'}: ${address} driver ${before.driver ?? '-'} -> ${after.driver ?? '-'}${after.group === undefined ? '' : `, IOMMU group ${after.group}`}`);
        if (name === 'bind' && others.length > 0) {
          out(colour.yellow(`group ${after.group} is still not viable: ${describeBlockers(others)}; bind those too`));
        }
      });
  bindCommand('bind');
  bindCommand('unbind');

  program
    .command('sim')
    .description('run a scenario on the simulator and print the trace: windows, mappings, faults, interrupts')
    .argument('[scenario]', 'a scenario file (YAML); default: the built-in example for the platform')
    .addOption(new Option('--platform <name>', 'the simulated platform (overrides the file)').choices(['p4080', 'arm-smmuv3', 'x86-vtd']))
    .addOption(jsonOption())
    .action(async (file: string | undefined, options: { platform?: PlatformName; json?: boolean }) => {
      const result = await runScenarioFile(file, options.platform, false);
      if (options.json) {
        out(json(result));
      } else {
        out(colour.bold(`scenario on ${result.platform} (${result.interface})`));
        const outcome = { ok: colour.green('ok'), delivered: colour.green('delivered'), error: colour.yellow('error'), fault: colour.yellow('fault'), lost: colour.yellow('lost') } as const;
        out(table(result.events.map((event) => [String(event.step + 1), event.action, event.expected ? outcome[event.outcome] : colour.red(`${event.outcome} (unexpected)`), event.outcome === 'error' ? `${event.code}: ${event.detail}` : event.detail])));
        out(`\n${result.mappings} mappings (${formatSize(result.bytesMapped)}), ${result.faults.length} IOMMU faults, ${result.interrupts} interrupts delivered`);
      }
      failIfUnexpected(result);
    });

  program
    .command('map')
    .description('draw the IOVA space (aperture, windows, reserved holes, mappings, MSI doorbells): a simulated container after a scenario, a host group, or a saved snapshot')
    .addOption(new Option('--platform <name>', 'a simulated platform, after its built-in scenario (or --scenario)').choices(['p4080', 'arm-smmuv3', 'x86-vtd']))
    .option('--scenario <file>', 'run this scenario file (YAML) on the simulator and draw the container at its end')
    .option('--group <n>', "a host IOMMU group: its reserved regions and the usable ranges they leave")
    .addOption(apertureBitsOption('with --group: '))
    .option('--snapshot <file>', 'a snapshot saved with --json (or JSON.stringify(container.snapshot()))')
    .addOption(svgOption())
    .addOption(htmlOption())
    .addOption(new Option('--json', 'print the snapshot as JSON (what --snapshot reads back)'))
    .addOption(sysfsRoot())
    .action(async (options: { platform?: PlatformName; scenario?: string; group?: string; apertureBits: number; snapshot?: string; svg?: string; html?: string; json?: boolean; sysfsRoot: string }) => {
      const sources = [options.platform !== undefined || options.scenario !== undefined, options.group !== undefined, options.snapshot !== undefined].filter(Boolean).length;
      if (sources !== 1) throw new UsageError(`give one source: --platform and/or --scenario (the simulator), --group (a host group) or --snapshot (a saved snapshot)${sources > 1 ? '; not several' : ''}`);
      if (options.json === true && (options.svg !== undefined || options.html !== undefined)) throw new UsageError('--json prints the snapshot; it cannot be combined with --svg or --html');
      const output: MapOutput = { ...(options.svg === undefined ? {} : { svg: options.svg }), ...(options.html === undefined ? {} : { html: options.html }), ...(options.json === true ? { json: true } : {}) };
      if (options.group !== undefined) {
        const group = groupNumber(options.group);
        return drawMap(hostGroupSnapshot(group, reservedOf(sysfsOf(options.sysfsRoot), group, options.sysfsRoot), options.apertureBits), output);
      }
      if (options.snapshot !== undefined) {
        let snapshot: ContainerSnapshot;
        try {
          snapshot = readSnapshot(options.snapshot);
        } catch (error) {
          if (error instanceof InputError || error instanceof SnapshotSyntaxError) throw new UsageError(error.message);
          if (IoasError.isInstance(error)) throw new UsageError(`${options.snapshot}: ${flattenIssues(error.message)}`);
          throw new UsageError(`cannot read ${options.snapshot}: ${describeError(error)}`);
        }
        return drawMap(snapshot, output);
      }
      const result = await runScenarioFile(options.scenario, options.platform, true);
      // The picture shows the container as the scenario left it, even where a step went wrong.
      drawMap(result.snapshot!, output);
      failIfUnexpected(result);
    });

  program
    .command('demo')
    .description('the SDK on the simulator: a P4080 window plan with DMA and MSI, an SMMUv3 MSI window and a fault')
    .option('--out <dir>', 'write the two pictures (HTML) here (default: a new directory under the system temporary directory)')
    .addOption(jsonOption())
    .action(async (options: { json?: boolean; out?: string }) => {
      const pictures: { name: string; snapshot: ContainerSnapshot }[] = [];
      const summary = await runDemo(options.json ? () => undefined : out, (name, snapshot) => pictures.push({ name, snapshot }));
      let directory: string;
      try {
        directory = options.out ?? mkdtempSync(join(tmpdir(), 'ioas-demo-'));
        mkdirSync(directory, { recursive: true });
      } catch (error) {
        throw new Failure(`cannot create ${options.out ?? 'a temporary directory'} for the pictures: ${describeError(error)}`, { cause: error });
      }
      const paths = pictures.map(({ name, snapshot }) => {
        const path = join(directory, `${name}.html`);
        drawMap(snapshot, { html: path }, false);
        return path;
      });
      if (options.json) return out(json({ ...summary, pictures: paths }));
      out(`\nthe IOVA space of each container, drawn by @ioas/view (open in a browser):\n${paths.map((path) => `  ${path}`).join('\n')}`);
    });

  registerReplayCommand(program, { io, out, state, usage: (message) => new UsageError(message), failure: (message) => new Failure(message), describeError, jsonOption });

  return program;
}

/** Runs the command line; resolves to the exit status. */
export async function main(argv: readonly string[], io: Io, syscalls?: () => Syscalls): Promise<number> {
  const state: RunState = { exitCode: 0 };
  const program = buildProgram(io, syscalls, state);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every parsing error (unknown option, missing argument, a value the
      // option's parser refused) is bad usage.
      return error.exitCode === 0 ? 0 : 2;
    }
    if (error instanceof UsageError) {
      io.stderr.write(`ioas: ${error.message}\n(run with --help for usage)\n`);
      return 2;
    }
    // An operational failure (exit 1): a typed error, a file system call that failed, or anything
    // unexpected, each on one line; IOAS_DEBUG=1 adds the stack.
    io.stderr.write(`ioas: ${describeError(error)}\n`);
    if (debug(io)) io.stderr.write(`${stackOf(error)}\n`);
    return 1;
  }
}

function debug(io: Io): boolean {
  const value = io.env.IOAS_DEBUG;
  return value !== undefined && value !== '' && value !== '0';
}

/** The stack of an error and of each cause, for IOAS_DEBUG=1. */
function stackOf(error: unknown): string {
  const stacks: string[] = [];
  for (let current: unknown = error, depth = 0; current !== undefined && depth < 8; depth++) {
    stacks.push(current instanceof Error ? (current.stack ?? `${current.name}: ${current.message}`) : String(current));
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) stacks.push('caused by:');
  }
  return stacks.join('\n');
}
