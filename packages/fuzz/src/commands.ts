// The calls: generated as data (fast-check), resolved against the model's state when they run
// (selectors pick a live mapping, an allocation, a usable range's edge...), with hostile values
// mixed in. Each resolves to a call on the container and what the model says it must do.
import fc from 'fast-check';
import { check, fail, Model, ok, type Expectation, type MemoryArgs, type ModelMapping } from './model.js';
import { hex, show, size, U64_MAX, type Range } from './ranges.js';
import { poolUnits, type Opened } from './targets.js';

// ---- selectors -----------------------------------------------------------------------------

const BASES = ['usable', 'usableEnd', 'mapping', 'mappingEnd', 'allocation', 'reserved', 'reservedEnd', 'window', 'doorbell', 'zero', 'top', 'apertureEnd'] as const;
type Base = (typeof BASES)[number];

/** An IOVA near an interesting place: base, plus `units` mapping units, plus a sub-unit offset. */
export interface IovaSel {
  readonly base: Base;
  readonly index: number;
  readonly units: number;
  readonly sub: 0 | 1 | 2;
}

export interface LenSel {
  readonly units: number;
  readonly sub: 0 | 1 | 2;
}

export interface MemSel {
  readonly offset: number;
  readonly sub: 0 | 1 | 2;
  readonly len: LenSel;
  readonly cps: 'unit' | 'omit' | 'half' | 'double';
}

type Wrap = 'plain' | 'frozen' | 'nullProto' | 'numbers' | 'extraMemoryKey';

const iovaSel: fc.Arbitrary<IovaSel> = fc.record({
  base: fc.constantFrom(...BASES),
  index: fc.nat(7),
  units: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 0, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: -4, max: 12 }) }),
  sub: fc.constantFrom<0 | 1 | 2>(0, 0, 0, 0, 0, 0, 1, 2),
});
const lenSel: fc.Arbitrary<LenSel> = fc.record({
  units: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 12 }) }),
  sub: fc.constantFrom<0 | 1 | 2>(0, 0, 0, 0, 0, 0, 1, 2),
});
const memSel: fc.Arbitrary<MemSel> = fc.record({
  offset: fc.nat(20),
  sub: fc.constantFrom<0 | 1 | 2>(0, 0, 0, 0, 0, 0, 0, 1, 2),
  len: lenSel,
  cps: fc.constantFrom<MemSel['cps']>('unit', 'unit', 'unit', 'unit', 'omit', 'half', 'double'),
});
/** Region lengths: mostly small, sometimes long enough to reach across a 1 MiB MSI window. */
const regionSel: fc.Arbitrary<MemSel> = fc.record({
  offset: fc.nat(20),
  sub: fc.constantFrom<0 | 1 | 2>(0, 0, 0, 0, 0, 0, 0, 1, 2),
  len: fc.oneof(lenSel, fc.record({ units: fc.integer({ min: 200, max: 1000 }), sub: fc.constant<0>(0) })),
  cps: fc.constantFrom<MemSel['cps']>('unit', 'unit', 'unit', 'unit', 'omit', 'half', 'double'),
});
const access = fc.constantFrom({ read: true, write: true }, { read: true, write: true }, { read: true, write: false }, { read: false, write: true });
const wrap = fc.constantFrom<Wrap>('plain', 'plain', 'plain', 'plain', 'frozen', 'nullProto', 'numbers', 'extraMemoryKey');
const rangeForm = fc.constantFrom('startSize' as const, 'startLast' as const);

export type Command =
  | { readonly kind: 'map'; readonly auto: boolean; readonly iova: IovaSel; readonly memory: MemSel; readonly access: { read: boolean; write: boolean }; readonly wrap: Wrap }
  | { readonly kind: 'mapRegion'; readonly iova: IovaSel; readonly memory: MemSel; readonly access: { read: boolean; write: boolean }; readonly wrap: Wrap }
  | { readonly kind: 'unmap'; readonly how: 'whole' | 'object' | 'span' | 'cut' | 'any'; readonly index: number; readonly other: number; readonly iova: IovaSel; readonly len: LenSel; readonly form: 'iovaSize' | 'startSize' | 'startLast'; readonly wrap: Wrap }
  | { readonly kind: 'allocate'; readonly size: LenSel; readonly align: 'none' | 'unit' | 'x2' | 'x16'; readonly limit: IovaSel | undefined; readonly contiguous: boolean | undefined; readonly wrap: Wrap }
  | { readonly kind: 'release'; readonly index: number; readonly shift: -1 | 0 | 1; readonly form: 'startSize' | 'startLast'; readonly wrap: Wrap }
  | { readonly kind: 'createWindow'; readonly start: IovaSel; readonly len: LenSel; readonly form: 'startSize' | 'startLast' }
  | { readonly kind: 'removeWindow'; readonly index: number; readonly shift: -1 | 0 | 1; readonly asWindow: boolean }
  | { readonly kind: 'findMapping'; readonly iova: IovaSel; readonly asNumber: boolean }
  | { readonly kind: 'query' }
  | { readonly kind: 'msiPlan'; readonly iova: IovaSel | undefined }
  | { readonly kind: 'msiMap'; readonly how: 'none' | 'plan' | 'planAt' | 'edited'; readonly iova: IovaSel; readonly edit: number }
  | { readonly kind: 'msiUnmap' }
  | { readonly kind: 'setGeometry'; readonly sizeLog: number; readonly startMul: number; readonly countLog: number; readonly bad: number }
  | { readonly kind: 'hostile'; readonly which: number; readonly value: number }
  | { readonly kind: 'close'; readonly really: number };

export function commandArbitrary(windowed: boolean): fc.Arbitrary<Command> {
  const weight = (paged: number, win: number): number => (windowed ? win : paged);
  return fc.oneof(
    { weight: 14, arbitrary: fc.record({ kind: fc.constant('map' as const), auto: fc.boolean(), iova: iovaSel, memory: fc.oneof({ weight: 6, arbitrary: memSel }, { weight: 1, arbitrary: regionSel }), access, wrap }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('mapRegion' as const), iova: iovaSel, memory: regionSel, access, wrap }) },
    {
      weight: 9,
      arbitrary: fc.record({
        kind: fc.constant('unmap' as const),
        how: fc.constantFrom('whole' as const, 'whole' as const, 'object' as const, 'span' as const, 'cut' as const, 'any' as const),
        index: fc.nat(15),
        other: fc.nat(15),
        iova: iovaSel,
        len: lenSel,
        form: fc.constantFrom('iovaSize' as const, 'iovaSize' as const, 'startSize' as const, 'startLast' as const),
        wrap,
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant('allocate' as const),
        size: lenSel,
        align: fc.constantFrom('none' as const, 'none' as const, 'unit' as const, 'x2' as const, 'x16' as const),
        limit: fc.option(iovaSel, { nil: undefined, freq: 2 }),
        contiguous: fc.constantFrom(undefined, true, false),
        wrap,
      }),
    },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('release' as const), index: fc.nat(7), shift: fc.constantFrom<-1 | 0 | 1>(0, 0, 0, -1, 1), form: rangeForm, wrap }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('createWindow' as const), start: iovaSel, len: lenSel, form: rangeForm }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('removeWindow' as const), index: fc.nat(3), shift: fc.constantFrom<-1 | 0 | 1>(0, 0, 0, -1, 1), asWindow: fc.boolean() }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('findMapping' as const), iova: iovaSel, asNumber: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('query' as const) }) },
    { weight: weight(1, 2), arbitrary: fc.record({ kind: fc.constant('msiPlan' as const), iova: fc.option(iovaSel, { nil: undefined }) }) },
    {
      weight: weight(1, 3),
      arbitrary: fc.record({ kind: fc.constant('msiMap' as const), how: fc.constantFrom('none' as const, 'plan' as const, 'planAt' as const, 'edited' as const), iova: iovaSel, edit: fc.nat(9) }),
    },
    { weight: weight(1, 2), arbitrary: fc.record({ kind: fc.constant('msiUnmap' as const) }) },
    {
      weight: weight(1, 3),
      arbitrary: fc.record({ kind: fc.constant('setGeometry' as const), sizeLog: fc.integer({ min: 20, max: 30 }), startMul: fc.nat(2), countLog: fc.integer({ min: 0, max: 8 }), bad: fc.nat(15) }),
    },
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('hostile' as const), which: fc.nat(), value: fc.nat() }) },
    // Closes one sequence in three or so, somewhere along it; every call after it must fail with `closed`.
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('close' as const), really: fc.nat(3) }) },
  );
}

// ---- hostile values ------------------------------------------------------------------------

/** Values that are never a valid 64-bit unsigned integer input. */
export const BAD_U64: readonly unknown[] = [
  -1,
  -1n,
  -0x1000n,
  1.5,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  2 ** 53,
  2 ** 64,
  1n << 64n,
  (1n << 64n) + 0x1000n,
  1n << 70n,
  '4096',
  '0x1000',
  null,
  {},
  [],
  true,
  Object.freeze({ valueOf: () => 4096n }),
  Object.create(null) as object,
];

// ---- resolving and running -----------------------------------------------------------------

export interface Call {
  /** What is called, for messages. */
  readonly what: string;
  readonly run: () => unknown;
  readonly expect: Expectation;
  /** Set when the call is a known bug's case on this target (see fuzz.test.ts). */
  readonly knownBug?: string;
}

function resolveIova(model: Model, opened: Opened, sel: IovaSel): bigint {
  const unit = model.granule;
  const pick = <T>(list: readonly T[]): T | undefined => (list.length === 0 ? undefined : list[sel.index % list.length]);
  let base: bigint;
  switch (sel.base) {
    case 'usable':
      base = pick(model.usable())?.start ?? 0n;
      break;
    case 'usableEnd':
      base = (pick(model.usable())?.last ?? -1n) + 1n;
      break;
    case 'mapping':
      base = pick(model.mappings)?.start ?? 0n;
      break;
    case 'mappingEnd':
      base = (pick(model.mappings)?.last ?? -1n) + 1n;
      break;
    case 'allocation':
      base = pick(model.allocations)?.start ?? 0n;
      break;
    case 'reserved':
      base = pick(model.blocking)?.start ?? 0n;
      break;
    case 'reservedEnd':
      base = (pick(model.blocking)?.last ?? -1n) + 1n;
      break;
    case 'window':
      base = pick(model.windows)?.start ?? 0n;
      break;
    case 'doorbell':
      base = pick(model.doorbells)?.iova.start ?? 0n;
      break;
    case 'zero':
      base = 0n;
      break;
    case 'top':
      base = 1n << 64n;
      break;
    case 'apertureEnd':
      base = model.aperture.last + 1n;
      break;
  }
  return base + BigInt(sel.units) * unit + subOffset(sel.sub, unit);
}

function subOffset(sub: 0 | 1 | 2, unit: bigint): bigint {
  return sub === 0 ? 0n : sub === 1 ? (unit > 0x1000n ? 0x1000n : 0n) : 0x800n;
}

function resolveLength(model: Model, sel: LenSel): bigint {
  return BigInt(sel.units) * model.granule + subOffset(sel.sub, model.granule);
}

function resolveMemory(model: Model, opened: Opened, sel: MemSel): MemoryArgs {
  const unit = model.granule;
  const base = opened.pool(unit);
  // Stay inside the pool: offset + length never passes its end (a region too long is cut to fit).
  const pool = poolUnits(unit);
  const offset = BigInt(sel.offset);
  const units = BigInt(sel.len.units) + offset + 1n > pool ? pool - offset - 1n : BigInt(sel.len.units);
  const length = resolveLength(model, { units: Number(units), sub: sel.len.sub });
  const cps = sel.cps === 'unit' ? (model.windowed ? unit : undefined) : sel.cps === 'omit' ? undefined : sel.cps === 'half' ? unit / 2n : unit * 2n;
  return { address: base + offset * unit + subOffset(sel.sub, unit), length, contiguousPageSize: cps };
}

/** Rewrites a valid input object as the wrap says; every form is valid and must give the same answer. */
function wrapInput(input: Record<string, unknown>, how: Wrap): unknown {
  switch (how) {
    case 'plain':
      return input;
    case 'frozen':
      return deepFreeze(input);
    case 'nullProto':
      return nullProto(input);
    case 'numbers':
      return toNumbers(input);
    case 'extraMemoryKey':
      // Host memory drops extra keys (an allocation result passes as it is); elsewhere: plain.
      return 'memory' in input ? { ...input, memory: { ...(input.memory as object), bytes: new Uint8Array(1), free: () => undefined } } : input;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
    Object.freeze(value);
  }
  return value;
}

function nullProto(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const result = Object.create(null) as Record<string, unknown>;
  for (const [key, inner] of Object.entries(value)) result[key] = nullProto(inner);
  return result;
}

function toNumbers(value: unknown): unknown {
  if (typeof value === 'bigint') return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= 0n ? Number(value) : value;
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map(toNumbers);
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, toNumbers(inner)]));
}

const memoryInput = (memory: MemoryArgs): Record<string, bigint> =>
  memory.contiguousPageSize === undefined ? { address: memory.address, length: memory.length } : { address: memory.address, length: memory.length, contiguousPageSize: memory.contiguousPageSize };

const rangeInput = (range: Range, form: 'startSize' | 'startLast'): Record<string, bigint> =>
  form === 'startSize' ? { start: range.start, size: size(range) } : { start: range.start, last: range.last };

/** True when a mapping the SDK returned is the one the model records, field by field. */
export function matchesMapping(
  mapping: { iova: Range; memory: { address: bigint; length: bigint; contiguousPageSize?: bigint }; access: { read: boolean; write: boolean } },
  expected: ModelMapping,
): boolean {
  return (
    mapping.iova.start === expected.start &&
    mapping.iova.last === expected.last &&
    mapping.memory.address === expected.address &&
    mapping.memory.length === expected.length &&
    mapping.memory.contiguousPageSize === expected.contiguousPageSize &&
    mapping.access.read === expected.read &&
    mapping.access.write === expected.write
  );
}

/** Checks a returned mapping against the model's record of it. */
function sameMapping(actual: unknown, expected: ModelMapping, what: string): void {
  const mapping = actual as Parameters<typeof matchesMapping>[0];
  check(
    matchesMapping(mapping, expected),
    `${what}: got ${describeMapping(mapping)}, model has ${show(expected)} at ${hex(expected.address)}+${hex(expected.length)} cps ${String(expected.contiguousPageSize)} r${expected.read} w${expected.write}`,
  );
}

function describeMapping(mapping: { iova: Range; memory: { address: bigint; length: bigint; contiguousPageSize?: bigint }; access: { read: boolean; write: boolean } } | undefined): string {
  if (mapping === undefined) return 'undefined';
  return `${show(mapping.iova)} at ${hex(mapping.memory.address)}+${hex(mapping.memory.length)} cps ${String(mapping.memory.contiguousPageSize)} r${mapping.access.read} w${mapping.access.write}`;
}

export function resolve(command: Command, model: Model, opened: Opened): Call {
  const call = resolveOpen(command, model, opened);
  if (!model.closed) return call;
  // Closed: input that does not parse is still invalid-argument (parsing comes first); anything else is `closed`.
  if (command.kind === 'close') return call;
  const codes = call.expect.kind === 'fail' && call.expect.codes.includes('invalid-argument') ? ['invalid-argument', 'closed'] : ['closed'];
  return { ...call, expect: fail(...codes) };
}

function resolveOpen(command: Command, model: Model, opened: Opened): Call {
  const container = opened.container;
  switch (command.kind) {
    case 'map': {
      const memory = resolveMemory(model, opened, command.memory);
      const iova = command.auto ? undefined : resolveIova(model, opened, command.iova);
      const input: Record<string, unknown> = { ...(iova === undefined ? {} : { iova }), memory: memoryInput(memory), access: command.access };
      // A numbers-wrapped input keeps bigints that are not safe integers; an out-of-range bigint stays as it is.
      const given = wrapInput(input, command.wrap);
      return {
        what: `map(${fmt(given)})`,
        run: () => container.map(given as never),
        expect: model.expectMap(iova, memory, command.access.read, command.access.write, (made, result) => sameMapping(result, made, 'map result')),
      };
    }
    case 'mapRegion': {
      const memory = resolveMemory(model, opened, command.memory);
      const iova = resolveIova(model, opened, command.iova);
      const given = wrapInput({ iova, memory: memoryInput(memory), access: command.access }, command.wrap);
      return {
        what: `mapRegion(${fmt(given)})`,
        run: () => container.mapRegion(given as never),
        expect: model.expectMapRegion(iova, memory, command.access.read, command.access.write, (pieces, skipped, result) => {
          const actual = result as { mappings: { iova: Range }[]; skipped: Range[] };
          check(actual.mappings.length === pieces.length && actual.mappings.every((mapping, index) => mapping.iova.start === pieces[index]!.start && mapping.iova.last === pieces[index]!.last), `mapRegion made ${actual.mappings.map((mapping) => show(mapping.iova)).join(', ')}, model ${pieces.map(show).join(', ')}`);
          check(actual.skipped.length === skipped.length && actual.skipped.every((range, index) => range.start === skipped[index]!.start && range.last === skipped[index]!.last), `mapRegion skipped ${actual.skipped.map(show).join(', ')}, model ${skipped.map(show).join(', ')}`);
        }),
      };
    }
    case 'unmap': {
      const mappings = model.mappings;
      const pick = (index: number) => (mappings.length === 0 ? undefined : mappings[index % mappings.length]);
      let range: Range;
      let given: unknown;
      const first = pick(command.index);
      if ((command.how === 'whole' || command.how === 'object') && first !== undefined) {
        range = { start: first.start, last: first.last };
        if (command.how === 'object') {
          // The Mapping object itself, as container.mappings() hands it out.
          given = model.closed ? { iova: range, memory: { address: first.address, length: first.length }, access: { read: first.read, write: first.write } } : (container.mappings().find((mapping) => mapping.iova.start === first.start) ?? range);
        }
      } else if (command.how === 'span' && first !== undefined) {
        const second = pick(command.other)!;
        const [a, b] = first.start <= second.start ? [first, second] : [second, first];
        range = { start: a.start, last: b.last };
      } else if (command.how === 'cut' && first !== undefined) {
        const unit = model.granule;
        const start = first.start + BigInt(command.iova.units) * unit + subOffset(command.iova.sub, unit);
        range = { start, last: start + resolveLength(model, command.len) - 1n };
      } else {
        const start = resolveIova(model, opened, command.iova);
        range = { start, last: start + resolveLength(model, command.len) - 1n };
      }
      if (given === undefined) {
        const input = command.form === 'iovaSize' ? { iova: range.start, size: size(range) } : rangeInput(range, command.form);
        given = wrapInput(input, command.wrap);
      }
      const valid = range.start >= 0n && range.last <= U64_MAX && range.last >= range.start;
      if (!valid) return { what: `unmap(${fmt(given)})`, run: () => container.unmap(given as never), expect: fail('invalid-argument') };
      // A cut inside a window (PAMU) must be refused: issue 13's bug on the simulator's p4080 face.
      return { what: `unmap(${fmt(given)})`, run: () => container.unmap(given as never), expect: model.expectUnmap(range, () => undefined).expectation };
    }
    case 'allocate': {
      const wanted = resolveLength(model, command.size);
      const unit = model.granule;
      const align = command.align === 'none' ? undefined : command.align === 'unit' ? unit : command.align === 'x2' ? unit * 2n : unit * 16n;
      const limit = command.limit === undefined ? undefined : resolveIova(model, opened, command.limit) - 1n;
      const input: Record<string, unknown> = { size: wanted };
      if (align !== undefined) input.align = align;
      if (limit !== undefined) input.limit = limit;
      if (command.contiguous !== undefined) input.contiguous = command.contiguous;
      const given = wrapInput(input, command.wrap);
      return {
        what: `allocate(${fmt(given)})`,
        run: () => container.allocate(given as never),
        expect: model.expectAllocate({ size: wanted, align, limit, contiguous: command.contiguous }),
      };
    }
    case 'release': {
      const allocation = model.allocations.length === 0 ? { start: 0n, last: model.granule - 1n } : model.allocations[command.index % model.allocations.length]!;
      const shift = BigInt(command.shift) * model.granule;
      const range = { start: allocation.start + shift, last: allocation.last + shift };
      const given = wrapInput(rangeInput(range, command.form), command.wrap);
      return {
        what: `release(${fmt(given)})`,
        run: () => container.release(given as never),
        expect: range.start < 0n ? fail('invalid-argument') : model.expectRelease(range),
      };
    }
    case 'createWindow': {
      const start = resolveIova(model, opened, command.start);
      const range = { start, last: start + resolveLength(model, command.len) * 4n - 1n };
      const given = rangeInput(range, command.form);
      const valid = range.start >= 0n && range.last <= U64_MAX;
      return { what: `createWindow(${fmt(given)})`, run: () => container.createWindow(given as never), expect: valid ? model.expectCreateWindow(range) : fail('invalid-argument') };
    }
    case 'removeWindow': {
      const window = model.windows.length === 0 ? { start: 0n, last: model.granule - 1n } : model.windows[command.index % model.windows.length]!;
      const shift = BigInt(command.shift) * model.granule;
      const range = { start: window.start + shift, last: window.last + shift };
      const given = command.asWindow ? { range } : { start: range.start, last: range.last };
      return { what: `removeWindow(${fmt(given)})`, run: () => container.removeWindow(given as never), expect: range.start < 0n ? fail('invalid-argument') : model.expectRemoveWindow(range) };
    }
    case 'findMapping': {
      const iova = resolveIova(model, opened, command.iova);
      const given = command.asNumber && iova >= 0n && iova <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(iova) : iova;
      const inRange = iova >= 0n && iova <= U64_MAX;
      return {
        what: `findMapping(${fmt(given)})`,
        run: () => container.findMapping(given),
        expect: !inRange
          ? fail('invalid-argument')
          : ok((result) => {
              const expected = model.findMapping(iova);
              if (expected === undefined) check(result === undefined, `findMapping(${hex(iova)}) found ${describeMapping(result as never)}, model: nothing`);
              else sameMapping(result, expected, `findMapping(${hex(iova)})`);
            }),
      };
    }
    case 'query':
      return {
        what: 'mappings(), stats(), usable(), windows(), geometry()',
        run: () => [container.mappings(), container.stats(), container.usable(), container.windows(), container.geometry()],
        expect: ok(() => undefined),
      };
    case 'msiPlan': {
      const iova = command.iova === undefined ? undefined : resolveIova(model, opened, command.iova);
      const given = iova === undefined ? undefined : { iova };
      return { what: `msi.plan(${fmt(given)})`, run: () => container.msi.plan(given as never), expect: expectPlan(model, iova) };
    }
    case 'msiMap':
      return resolveMsiMap(command, model, opened);
    case 'msiUnmap':
      return {
        what: 'msi.unmap()',
        run: () => container.msi.unmap(),
        expect: ok(() => {
          model.doorbells = [];
        }),
      };
    case 'setGeometry': {
      const apertureSize = 1n << BigInt(command.sizeLog);
      let start = apertureSize * BigInt(command.startMul);
      let count: number = 2 ** command.countLog;
      let sizeGiven: bigint = apertureSize;
      // One in four is off: a start off the aperture's alignment, a count that is no power of two
      // or too large, a size that is no power of two, windows below 4 KiB.
      switch (command.bad) {
        case 1:
          start += 0x1000n;
          break;
        case 2:
          count = 3;
          break;
        case 3:
          count = 512;
          break;
        case 4:
          sizeGiven = apertureSize + 0x1000n;
          break;
        case 5:
          sizeGiven = 0x2000n;
          count = 4;
          start = 0n;
          break;
      }
      const given = { aperture: { start, size: sizeGiven }, windowCount: count };
      return {
        what: `setGeometry(${fmt(given)})`,
        run: () => container.setGeometry(given),
        expect: model.expectSetGeometry(start, sizeGiven, count, () => {
          model.readGeometry(container.geometry());
          const geometry = container.geometry();
          check(geometry.aperture.start === start && geometry.aperture.last === start + sizeGiven - 1n, `setGeometry: the geometry reads ${show(geometry.aperture)}`);
          check(geometry.windows?.count === count && geometry.windows.size === sizeGiven / BigInt(count), `setGeometry: ${String(geometry.windows?.count)} windows of ${String(geometry.windows?.size)}`);
        }),
      };
    }
    case 'hostile':
      return hostile(command.which, command.value, model, opened);
    case 'close':
      if (command.really !== 0) return { what: 'isClosed', run: () => container.isClosed, expect: ok((result) => check(result === model.closed, `isClosed ${String(result)}, model ${model.closed}`)) };
      return {
        what: 'close()',
        run: () => container.close(),
        expect: ok(() => {
          model.closed = true;
          model.mappings = [];
          model.allocations = [];
          model.doorbells = [];
        }),
      };
  }
}

function expectPlan(model: Model, iova: bigint | undefined): Expectation {
  if (iova !== undefined && (iova < 0n || iova > U64_MAX)) return fail('invalid-argument');
  if (model.msiModel === 'none') return ok((result) => check((result as { doorbells: unknown[] }).doorbells.length === 0, 'msi.plan: doorbells where there are none'));
  if (!model.explicitMsi) {
    if (iova !== undefined) return fail('unsupported');
    return ok((result) => {
      const plan = result as { model: string; doorbells: { iova: Range; mappedBy: string }[] };
      check(plan.model === model.msiModel, 'msi.plan: another model');
      check(plan.doorbells.every((doorbell) => model.blocking.some((blocked) => blocked.start === doorbell.iova.start && blocked.last === doorbell.iova.last)), 'msi.plan: a doorbell outside the reserved MSI ranges');
    });
  }
  if (model.doorbells.length > 0) {
    return ok((result) => checkDoorbells(result, model.doorbells.map((doorbell) => doorbell.iova), 'msi.plan (mapped)'));
  }
  const slots = model.planSlots(iova);
  if (typeof slots === 'string') return fail(slots);
  return ok((result) => checkDoorbells(result, slots, 'msi.plan'));
}

function checkDoorbells(result: unknown, slots: readonly Range[], what: string): void {
  const plan = result as { doorbells: { index: number; iova: Range }[] };
  check(
    plan.doorbells.length === slots.length && plan.doorbells.every((doorbell, index) => doorbell.iova.start === slots[index]!.start && doorbell.iova.last === slots[index]!.last),
    `${what}: ${plan.doorbells.map((doorbell) => show(doorbell.iova)).join(', ')}, model ${slots.map(show).join(', ')}`,
  );
}

function resolveMsiMap(command: Extract<Command, { kind: 'msiMap' }>, model: Model, opened: Opened): Call {
  const container = opened.container;
  if (!model.explicitMsi) {
    // Reports the plan and changes nothing.
    return { what: 'msi.map()', run: () => container.msi.map(), expect: expectPlan(model, undefined) };
  }
  if (command.how === 'none') return { what: 'msi.map()', run: () => container.msi.map(), expect: model.expectMsiMap(undefined) };
  // A plan built by the test: the model's own slots, at a chosen IOVA, or edited.
  const unit = model.granule;
  const at = command.how === 'plan' ? undefined : resolveIova(model, opened, command.iova);
  const base = at !== undefined && at >= 0n && at <= U64_MAX - 4n * unit ? at : 0n;
  let doorbells: { index: number; iova: Range; mappedBy: string }[] = [0, 1, 2].map((index) => ({ index, iova: { start: base + BigInt(index) * unit, last: base + BigInt(index + 1) * unit - 1n }, mappedBy: 'sdk' }));
  if (command.how === 'plan') {
    const slots = model.planSlots(undefined);
    if (typeof slots === 'string') return { what: 'msi.map()', run: () => container.msi.map(), expect: model.expectMsiMap(undefined) };
    doorbells = slots.map((iova, index) => ({ index, iova, mappedBy: 'sdk' }));
  }
  let planModel = 'explicit';
  let numbers = false;
  if (command.how === 'edited') {
    switch (command.edit) {
      case 0: // a duplicate bank
        doorbells = [doorbells[0]!, { ...doorbells[1]!, index: 0 }];
        break;
      case 1: // an unknown bank
        doorbells = [{ ...doorbells[0]!, index: 7 }];
        break;
      case 2: // a slot of two windows
        doorbells = [{ ...doorbells[0]!, iova: { start: doorbells[0]!.iova.start, last: doorbells[0]!.iova.last + unit } }];
        break;
      case 3: // two banks in one window
        doorbells = [doorbells[0]!, { ...doorbells[1]!, iova: doorbells[0]!.iova }];
        break;
      case 4: // a slot of half a window
        doorbells = [{ ...doorbells[0]!, iova: { start: doorbells[0]!.iova.start, last: doorbells[0]!.iova.start + unit / 2n - 1n } }];
        break;
      case 5: // off a window boundary by a page (a whole window's size)
        doorbells = doorbells.map((doorbell) => ({ ...doorbell, iova: { start: doorbell.iova.start + 0x1000n, last: doorbell.iova.last + 0x1000n } }));
        break;
      case 6: // another model
        planModel = 'fixed';
        break;
      case 7: // numbers for bigints (valid)
        numbers = true;
        break;
      case 8: // no doorbell at all (valid: maps nothing)
        doorbells = [];
        break;
      default: // one bank only, the last
        doorbells = [{ ...doorbells[2]! }];
        break;
    }
  }
  const plan = { model: planModel, doorbells };
  const given = numbers ? toNumbers(plan) : plan;
  const overflow = doorbells.some((doorbell) => doorbell.iova.last > U64_MAX);
  return {
    what: `msi.map(${fmt(given)})`,
    run: () => container.msi.map(given as never),
    expect: overflow ? fail('invalid-argument') : model.expectMsiMap(plan),
  };
}

// ---- hostile calls: always invalid-argument, nothing changes -------------------------------

function hostile(which: number, value: number, model: Model, opened: Opened): Call {
  const container = opened.container;
  const unit = model.granule;
  const memory = { address: opened.pool(unit), length: unit, ...(model.windowed ? { contiguousPageSize: unit } : {}) };
  const bad = BAD_U64[value % BAD_U64.length];
  const cases: [string, () => unknown][] = [
    ['map({ iova: BAD, memory })', () => container.map({ iova: bad, memory } as never)],
    ['map({ memory: { address: BAD, length } })', () => container.map({ memory: { address: bad, length: unit } } as never)],
    ['map({ memory: { address, length: BAD } })', () => container.map({ memory: { address: memory.address, length: bad } } as never)],
    ['map({ memory: { address, length: 0n } })', () => container.map({ iova: 0n, memory: { address: memory.address, length: value % 2 === 0 ? 0n : 0 } } as never)],
    ['map({ memory: { ..., contiguousPageSize: BAD } })', () => container.map({ memory: { ...memory, contiguousPageSize: value % 3 === 0 ? 0n : bad } } as never)],
    ['map({ access: BAD })', () => container.map({ iova: 0n, memory, access: [null, {}, { read: false, write: false }, { read: 'yes', write: true }, { read: true, write: true, execute: true }, 'rw', 1][value % 7] } as never)],
    ['map({ ..., extra key })', () => container.map({ iova: 0n, memory, flags: 1 } as never)],
    ['map(BAD)', () => container.map([null, undefined, 'x', 42, [], Object.freeze({})][value % 6] as never)],
    ['mapRegion without iova', () => container.mapRegion({ memory } as never)],
    ['mapRegion({ iova: BAD })', () => container.mapRegion({ iova: bad, memory } as never)],
    ['mapRegion wrapping past 2^64', () => container.mapRegion({ iova: U64_MAX - unit + 1n, memory: { ...memory, length: 2n * unit } } as never)],
    ['unmap({ iova: BAD, size })', () => container.unmap({ iova: bad, size: unit } as never)],
    ['unmap({ iova, size: BAD })', () => container.unmap({ iova: 0n, size: value % 4 === 0 ? 0n : bad } as never)],
    ['unmap wrapping past 2^64', () => container.unmap({ iova: U64_MAX - 0xfffn, size: 0x2000n })],
    ['unmap({ start, last < start })', () => container.unmap({ start: 0x2000n, last: 0x1000n })],
    ['unmap(BAD)', () => container.unmap([null, undefined, 'x', 42, {}, { iova: 0n }][value % 6] as never)],
    ['unmap({ iova, size, extra })', () => container.unmap({ iova: 0n, size: unit, all: true } as never)],
    ['unmap({ start, size, last })', () => container.unmap({ start: 0n, size: unit, last: unit - 1n } as never)],
    ['allocate({ size: BAD })', () => container.allocate({ size: value % 4 === 0 ? 0n : bad } as never)],
    ['allocate({ align: BAD })', () => container.allocate({ size: unit, align: [3n, 0n, 6n * unit, bad][value % 4] } as never)],
    ['allocate({ limit: BAD })', () => container.allocate({ size: unit, limit: bad } as never)],
    ['allocate({ contiguous: BAD })', () => container.allocate({ size: unit, contiguous: ['yes', 1, null][value % 3] } as never)],
    ['allocate(BAD)', () => container.allocate([null, undefined, 4096n, 'x', { size: unit, extra: 1 }][value % 5] as never)],
    ['release(BAD)', () => container.release([null, undefined, 5, 'x', {}, { start: bad, size: unit }][value % 6] as never)],
    ['createWindow(BAD)', () => container.createWindow([null, undefined, 5, { start: 0n, size: 0n }, { start: bad, size: unit }, { start: 0n, last: bad }][value % 6] as never)],
    ['removeWindow(BAD)', () => container.removeWindow([5, null, 'x', { range: null }, { range: { start: bad, size: unit } }][value % 5] as never)],
    ['findMapping(BAD)', () => container.findMapping([...BAD_U64, 'abc', undefined][value % (BAD_U64.length + 2)] as never)],
    ['msi.plan(BAD)', () => container.msi.plan(['x', 42, { iova: bad }, { iova: 0n, extra: 1 }][value % 4] as never)],
    [
      'msi.map(BAD plan)',
      () =>
        container.msi.map(
          [
            null,
            'x',
            { model: 'explicit', doorbells: null },
            { model: 'explicit', doorbells: [{ index: 0, iova: { start: 0n }, mappedBy: 'sdk' }] },
            { model: 'bogus', doorbells: [] },
            { model: 'explicit', doorbells: [{ index: -1, iova: { start: 0n, last: unit - 1n }, mappedBy: 'sdk' }] },
            { model: 'explicit', doorbells: [{ index: 1.5, iova: { start: 0n, last: unit - 1n }, mappedBy: 'sdk' }] },
            { model: 'explicit', doorbells: [{ index: 0, iova: { start: unit, last: 0n }, mappedBy: 'sdk' }] },
            { model: 'explicit', doorbells: [], extra: 1 },
            { model: 'explicit', doorbells: [{ index: 0, iova: { start: bad, last: unit - 1n }, mappedBy: 'sdk' }] },
            { model: 'explicit', doorbells: [{ index: 0, iova: { start: 0n, last: unit - 1n }, mappedBy: 'someone' }] },
          ][value % 11] as never,
        ),
    ],
    [
      'setGeometry(BAD)',
      () =>
        container.setGeometry(
          [
            null,
            { aperture: null, windowCount: 4 },
            { aperture: { start: 0n, size: 0n }, windowCount: 4 },
            { aperture: { start: 0n, size: 1n << 30n }, windowCount: [1.5, Number.NaN, '4', 0, -1, 4n][value % 6] },
            { aperture: { start: bad, size: 1n << 30n }, windowCount: 4 },
            { aperture: { start: 0n, size: 1n << 30n }, windowCount: 4, extra: 1 },
          ][value % 6] as never,
        ),
    ],
  ];
  const [what, run] = cases[which % cases.length]!;
  return { what: `${what} with ${fmt(bad)}`, run, expect: fail('invalid-argument') };
}

// ---- formatting ----------------------------------------------------------------------------

export function fmt(value: unknown): string {
  if (typeof value === 'bigint') return value < 0n || value > 0xffffn ? `${hex(value)}n` : `${value}n`;
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  if (typeof value === 'function') return 'fn';
  if (value instanceof Uint8Array) return 'Uint8Array';
  if (Array.isArray(value)) return `[${value.map(fmt).join(', ')}]`;
  if (typeof value === 'object') {
    const prefix = Object.getPrototypeOf(value) === null ? '[null-proto] ' : Object.isFrozen(value) && Object.keys(value).length > 0 ? '[frozen] ' : '';
    return `${prefix}{ ${Object.entries(value).map(([key, inner]) => `${key}: ${fmt(inner)}`).join(', ')} }`;
  }
  return String(value);
}

