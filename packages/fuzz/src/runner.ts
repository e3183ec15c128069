// Runs one call sequence on a fresh container and checks, after every call, the answer, core's
// record, the simulated kernel's table and the IOMMU's translation against the reference model.
import { IoasError } from '@ioas/core';
import { matchesMapping, resolve, type Command } from './commands.js';
import { check, Disagreement, Model } from './model.js';
import { hex, show, type Range } from './ranges.js';
import type { Opened, Target } from './targets.js';

export interface Counts {
  calls: number;
  successes: number;
  refusals: Record<string, number>;
  /** Calls left out because they are a known bug's case on this target. */
  knownBugSkipped: number;
  sequences: number;
}

export const newCounts = (): Counts => ({ calls: 0, successes: 0, refusals: {}, knownBugSkipped: 0, sequences: 0 });

export interface RunOptions {
  /** Leave out the calls of a known bug (the main property); run them (the `it.fails` case). */
  readonly skipKnownBugs: boolean;
}

export async function runSequence(target: Target, commands: readonly Command[], counts: Counts, options: RunOptions): Promise<void> {
  const opened = await target.open();
  const model = new Model(opened.container, opened.budget);
  const log: string[] = [`open ${target.name}`];
  const fail = (message: string): never => {
    throw new Disagreement(`${target.name}: ${message}\ncalls so far:\n  ${log.slice(-25).join('\n  ')}`);
  };
  counts.sequences++;
  try {
    checkState(model, opened, 0);
  } catch (error) {
    fail(`after open: ${String(error)}`);
  }
  let step = 0;
  for (const command of commands) {
    step++;
    const call = resolve(command, model, opened);
    const knownBug = call.knownBug;
    if (knownBug !== undefined && options.skipKnownBugs) {
      counts.knownBugSkipped++;
      continue;
    }
    counts.calls++;
    let result: unknown;
    let error: unknown;
    let threw = false;
    try {
      result = call.run();
    } catch (caught) {
      threw = true;
      error = caught;
    }
    const expected = call.expect.kind === 'fail' ? `must fail with ${call.expect.codes.join(' or ')}` : 'must succeed';
    if (threw) {
      if (!IoasError.isInstance(error)) {
        log.push(`${call.what} -> RAW ${String(error)}`);
        fail(`raw throw (not an IoasError) from ${call.what}: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
      }
      const { code, message } = error as IoasError;
      log.push(`${call.what} -> ${code}`);
      if (call.expect.kind === 'ok') fail(`${call.what} failed with ${code} (${message}); the model says it ${expected}`);
      if (call.expect.kind === 'fail' && !call.expect.codes.includes(code)) fail(`${call.what} failed with ${code} (${message}); the model says it ${expected}`);
      counts.refusals[code] = (counts.refusals[code] ?? 0) + 1;
    } else {
      log.push(`${call.what} -> ok`);
      if (call.expect.kind === 'fail') fail(`${call.what} succeeded; the model says it ${expected}`);
      try {
        if (call.expect.kind === 'ok') call.expect.ok(result);
      } catch (caught) {
        fail(`${call.what}: ${caught instanceof Error ? caught.message : String(caught)}`);
      }
      counts.successes++;
    }
    try {
      checkState(model, opened, step);
    } catch (caught) {
      fail(`after ${call.what}: ${caught instanceof Error ? caught.message : String(caught)}`);
    }
  }
  try {
    opened.container.close();
  } catch (caught) {
    fail(`close() threw ${String(caught)}`);
  }
  if (opened.simulator.liveMappings() !== 0) fail(`after close the kernel still holds ${opened.simulator.liveMappings()} mappings`);
}

const same = (a: readonly Range[], b: readonly Range[]): boolean => a.length === b.length && a.every((range, index) => range.start === b[index]!.start && range.last === b[index]!.last);

/** Core's record, the kernel's table and the translation, each against the model. */
export function checkState(model: Model, opened: Opened, step: number): void {
  const container = opened.container;
  if (model.closed) {
    check(container.isClosed, 'the container does not say it is closed');
    check(opened.kernelTable().length === 0, `after close the kernel's table holds ${opened.kernelTable().length} mappings`);
    check(opened.simulator.liveMappings() === 0, `after close the simulator counts ${opened.simulator.liveMappings()} live mappings`);
    return;
  }
  const mappings = container.mappings();
  const describe = (list: readonly Range[]): string => list.map(show).join(', ') || 'none';
  check(
    mappings.length === model.mappings.length && mappings.every((mapping, index) => matchesMapping(mapping, model.mappings[index]!)),
    `core's record ${mappings.map((mapping) => `${show(mapping.iova)}@${hex(mapping.memory.address)}+${hex(mapping.memory.length)} cps ${String(mapping.memory.contiguousPageSize)} r${mapping.access.read} w${mapping.access.write}`).join(', ') || 'none'} differs from the model ${model.mappings.map((mapping) => `${show(mapping)}@${hex(mapping.address)}+${hex(mapping.length)} cps ${String(mapping.contiguousPageSize)} r${mapping.read} w${mapping.write}`).join(', ') || 'none'}`,
  );
  const stats = container.stats();
  const bytes = model.mappings.reduce((sum, mapping) => sum + mapping.length, 0n);
  check(stats.mappings === model.mappings.length, `stats().mappings ${stats.mappings}, model ${model.mappings.length}`);
  check(stats.bytesMapped === bytes, `stats().bytesMapped ${stats.bytesMapped}, model ${bytes}`);
  check(stats.mappingBudgetLeft === model.budgetLeft(), `stats().mappingBudgetLeft ${String(stats.mappingBudgetLeft)}, model ${String(model.budgetLeft())}`);
  check(stats.windows === model.windows.length, `stats().windows ${stats.windows}, model ${model.windows.length}`);
  check(stats.allocations === model.allocations.length, `stats().allocations ${stats.allocations}, model ${model.allocations.length}`);
  check(stats.msiDoorbellsMapped === model.doorbells.length, `stats().msiDoorbellsMapped ${stats.msiDoorbellsMapped}, model ${model.doorbells.length}`);
  const usable = container.usable();
  const expectedUsable = model.usable();
  check(same(usable, expectedUsable), `usable() ${describe(usable)}, model ${describe(expectedUsable)}`);
  const windows = container.windows().map((window) => window.range);
  check(same(windows, model.windows), `windows() ${describe(windows)}, model ${describe(model.windows)}`);
  const doorbells = container.msi.mapped().map((doorbell) => doorbell.iova);
  check(same(doorbells, model.doorbells.map((doorbell) => doorbell.iova)), `msi.mapped() ${describe(doorbells)}, model ${describe(model.doorbells.map((doorbell) => doorbell.iova))}`);

  // The simulated kernel's table.
  const table = opened.kernelTable();
  check(
    table.length === model.mappings.length &&
      table.every((entry, index) => {
        const expected = model.mappings[index]!;
        return entry.start === expected.start && entry.last === expected.last && entry.vaddr === expected.address && entry.read === expected.read && entry.write === expected.write;
      }),
    `the kernel's table ${table.map((entry) => `${show(entry)}@${hex(entry.vaddr)}`).join(', ') || 'none'} differs from the model ${model.mappings.map((mapping) => `${show(mapping)}@${hex(mapping.address)}`).join(', ') || 'none'}`,
  );
  check(opened.simulator.liveMappings() === model.mappings.length, `the simulator counts ${opened.simulator.liveMappings()} live mappings, model ${model.mappings.length}`);

  // The IOMMU's translation at a few IOVAs: inside mappings, at their edges, in the gaps.
  const probes: bigint[] = [];
  const count = model.mappings.length;
  for (const index of count === 0 ? [] : [step % count, (step * 7 + 3) % count, count - 1]) {
    const mapping = model.mappings[index]!;
    probes.push(mapping.start, mapping.last, mapping.start - 1n, mapping.last + 1n, mapping.start + (mapping.last - mapping.start) / 2n);
  }
  for (const doorbell of model.doorbells) probes.push(doorbell.iova.start, doorbell.iova.start + 0x40n, doorbell.iova.start + 0x1000n);
  const free = model.free();
  if (free.length > 0) probes.push(free[step % free.length]!.start);
  // A real device access at two probes: a write of one byte lands in host memory at the model's
  // address (or faults and changes nothing), and a read gives it back.
  for (const iova of probes.slice(0, 2)) {
    if (iova < 0n || iova >= 1n << 64n) continue;
    const mapping = model.findMapping(iova);
    const value = new Uint8Array([(step * 31 + 7) & 0xff]);
    const wrote = opened.device.dmaWrite(iova, value);
    if (mapping !== undefined && mapping.write) {
      check(wrote, `device DMA write at ${hex(iova)} faulted; the model maps it writable`);
      const landed = opened.simulator.memory.read(mapping.address + (iova - mapping.start), 1)[0];
      check(landed === value[0], `device DMA write at ${hex(iova)} did not land at ${hex(mapping.address + (iova - mapping.start))}`);
      if (mapping.read) check(opened.device.dmaRead(iova, 1)?.[0] === value[0], `device DMA read at ${hex(iova)} does not give back what was written`);
    } else {
      check(!wrote, `device DMA write at ${hex(iova)} succeeded; the model maps nothing writable there`);
    }
  }
  for (const iova of probes) {
    if (iova < 0n || iova >= 1n << 64n) continue;
    for (const write of [false, true]) {
      const actual = opened.translate(iova, write);
      const mapping = model.findMapping(iova);
      const doorbell = model.doorbells.find((candidate) => candidate.iova.start <= iova && iova <= candidate.iova.last);
      const where = `${write ? 'write' : 'read'} at ${hex(iova)}`;
      if (mapping !== undefined) {
        const allowed = write ? mapping.write : mapping.read;
        if (allowed) {
          check(actual.kind === 'memory' && actual.vaddr === mapping.address + (iova - mapping.start), `device ${where}: ${JSON.stringify(actual, big)}, model: memory at ${hex(mapping.address + (iova - mapping.start))}`);
        } else {
          check(actual.kind === 'fault' && actual.reason === 'permission', `device ${where}: ${JSON.stringify(actual, big)}, model: a permission fault`);
        }
      } else if (doorbell !== undefined && iova - doorbell.iova.start < 0x1000n && model.mappings.length > 0) {
        // The PAMU domain translates (doorbells included) only while a DMA range is mapped.
        check(actual.kind === 'doorbell', `device ${where}: ${JSON.stringify(actual, big)}, model: MSI bank ${doorbell.index}`);
      } else {
        check(actual.kind === 'fault', `device ${where}: ${JSON.stringify(actual, big)}, model: a fault (nothing mapped)`);
      }
    }
  }
}

const big = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? hex(value) : value);
