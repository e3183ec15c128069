/**
 * Scenarios: a list of steps run on a simulated machine through the public API (geometry, maps,
 * windows, MSI doorbells) and through its test device (DMA, MSI), with a trace of what happened.
 * What `ioas sim` runs. Each step may say what it expects (an error code, a fault, a lost MSI); a
 * step whose outcome differs stops the run.
 */
import { Container, IoasError, formatRange, formatSize, hex, parseSize, parseSizeAt, type ContainerSnapshot, type IoasErrorCode, type Mapping } from '@ioas/core';
import { z } from 'zod';
import { KernelError } from './kernel-error.js';
import type { PlatformName } from './platforms.js';
import { sim } from './sim-backend.js';
import type { SimDevice, SimFault } from './simulator.js';
import { eduDevice } from './testing.js';

const size = z.union([z.string(), z.number(), z.bigint()]).transform((value, context) => {
  try {
    return parseSize(value);
  } catch (error) {
    context.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});
const sizeAt = z.string().transform((value, context) => {
  try {
    return parseSizeAt(value);
  } catch (error) {
    context.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});
const access = z.enum(['r', 'w', 'rw']);
const pciAddress = z.string().regex(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/, 'a PCI address such as 0000:00:10.0');

/** The name of a scenario step's action. */
export type ScenarioAction = 'geometry' | 'map' | 'map-region' | 'unmap' | 'window' | 'msi-map' | 'attach' | 'detach' | 'dma-write' | 'dma-read' | 'msi';

const ACTIONS = {
  geometry: z.object({ aperture: sizeAt, windows: z.number().int().positive() }).strict(),
  map: z.object({ iova: size.optional(), size, page: size.optional(), access: access.optional() }).strict(),
  'map-region': z.object({ iova: size, size, page: size.optional() }).strict(),
  unmap: z.object({ iova: size, size }).strict(),
  window: z.object({ iova: size, size }).strict(),
  'msi-map': z.object({ iova: size.optional() }).strict().nullable(),
  attach: z.object({ device: pciAddress }).strict(),
  detach: z.object({ device: pciAddress }).strict(),
  'dma-write': z.object({ iova: size, data: z.string().min(1), device: pciAddress.optional() }).strict(),
  'dma-read': z.object({ iova: size, length: z.number().int().positive().max(4096), device: pciAddress.optional() }).strict(),
  msi: z.object({}).strict().nullable(),
} as const satisfies Record<ScenarioAction, z.ZodType>;
const ACTION_NAMES = Object.keys(ACTIONS) as ScenarioAction[];
const DEVICE_ACTIONS: readonly ScenarioAction[] = ['dma-write', 'dma-read', 'msi'];

const stepSchema = z
  .object({ ...Object.fromEntries(ACTION_NAMES.map((name) => [name, ACTIONS[name].optional()])), expect: z.string().optional() })
  .strict()
  .superRefine((step, context) => {
    const present = ACTION_NAMES.filter((name) => (step as Record<string, unknown>)[name] !== undefined);
    if (present.length !== 1) {
      context.addIssue({ code: 'custom', message: `a step has exactly one action (${ACTION_NAMES.join(', ')}); this one has ${present.length === 0 ? 'none' : present.join(' and ')}` });
      return;
    }
    const expected = step.expect;
    if (expected === undefined) return;
    const allowed = present[0] === 'msi' ? ['delivered', 'lost'] : DEVICE_ACTIONS.includes(present[0]!) ? ['ok', 'fault'] : ['ok', ...IOAS_ERROR_CODES];
    if (!allowed.includes(expected)) context.addIssue({ code: 'custom', path: ['expect'], message: `expect for ${present[0]} is one of: ${allowed.join(', ')}` });
  });

const IOAS_ERROR_CODES: readonly IoasErrorCode[] = [
  'invalid-argument',
  'unsupported',
  'misaligned',
  'out-of-range',
  'reserved',
  'overlap',
  'bisect',
  'not-found',
  'budget-exhausted',
  'no-space',
  'in-use',
  'not-ready',
  'closed',
  'kernel',
  'inconsistent',
];

/** A scenario, validated. */
export interface Scenario {
  /** The simulated platform (default `p4080`). */
  readonly platform?: PlatformName | undefined;
  /** The kernel interface on paged platforms (default `type1`). */
  readonly interface?: 'type1' | 'iommufd' | undefined;
  /** The steps, in order. */
  readonly steps: readonly ScenarioStep[];
}

/**
 * One step: exactly one action key (its arguments validated, sizes parsed to bigints) and,
 * optionally, the outcome it expects: `ok`, an error code, `fault` (DMA) or `delivered`/`lost` (MSI).
 */
export type ScenarioStep = {
  /** The outcome the step expects (default `ok`, `delivered` for `msi`). */
  readonly expect?: string | undefined;
} & { readonly [Action in ScenarioAction]?: unknown };

/** The scenario file's schema (zod): platform, kernel interface, steps. */
export const scenarioSchema: z.ZodType<Scenario, unknown> = z
  .object({
    platform: z.enum(['p4080', 'arm-smmuv3', 'x86-vtd']).optional(),
    interface: z.enum(['type1', 'iommufd']).optional(),
    steps: z.array(stepSchema).min(1, 'a scenario needs at least one step'),
  })
  .strict();

/** One problem in a scenario file: where (a path of keys and indexes) and what. */
export interface ScenarioIssue {
  /** Keys and array indexes from the document's root (`['steps', 1, 'map', 'size']`). */
  readonly path: readonly (string | number)[];
  /** What is wrong. */
  readonly message: string;
}

/** The result of {@link validateScenario}. */
export type ScenarioValidation =
  | {
      /** Valid. */
      ok: true;
      /** The scenario, sizes parsed. */
      scenario: Scenario;
    }
  | {
      /** Not valid. */
      ok: false;
      /** Every problem found. */
      issues: ScenarioIssue[];
    };

/** Validates a scenario (parsed from YAML or JSON); never throws. */
export function validateScenario(input: unknown): ScenarioValidation {
  const result = scenarioSchema.safeParse(input);
  if (result.success) return { ok: true, scenario: result.data };
  return { ok: false, issues: result.error.issues.map((issue) => ({ path: issue.path.filter((key): key is string | number => typeof key !== 'symbol'), message: issue.message })) };
}

/** What one step did. */
export interface ScenarioEvent {
  /** The step's index (0-based). */
  readonly step: number;
  /** The step's action. */
  readonly action: ScenarioAction;
  /** `ok`, `error` (an IoasError: see `code`), `fault` (device DMA faulted), `delivered` / `lost` (MSI). */
  readonly outcome: 'ok' | 'error' | 'fault' | 'delivered' | 'lost';
  /** For `error`: the IoasError code. */
  readonly code?: IoasErrorCode;
  /** True when the outcome is what the step expected. */
  readonly expected: boolean;
  /** What happened, for people (the error message, the fault's log line...). */
  readonly detail: string;
}

/** The trace of a run. */
export interface ScenarioResult {
  /** The platform it ran on. */
  readonly platform: PlatformName;
  /** The kernel interface it used. */
  readonly interface: 'type1' | 'iommufd' | 'pamu';
  /** What each step did, up to the last one run. */
  readonly events: readonly ScenarioEvent[];
  /** False when a step's outcome was not the one expected; the run stopped there. */
  readonly ok: boolean;
  /** Every IOMMU fault. */
  readonly faults: readonly SimFault[];
  /** MSIs delivered. */
  readonly interrupts: number;
  /** Mappings live at the end. */
  readonly mappings: number;
  /** Bytes mapped at the end. */
  readonly bytesMapped: bigint;
  /** The container at the end, when {@link RunScenarioOptions.snapshot} asked for it. */
  readonly snapshot?: ContainerSnapshot;
}

/** Options of {@link runScenario}. */
export interface RunScenarioOptions {
  /** Overrides the scenario's platform (default `p4080`). */
  readonly platform?: PlatformName;
  /** Called before each step: for progress bars. */
  readonly onStep?: (index: number, total: number, action: ScenarioAction) => void;
  /** Also return the container's snapshot at the end (for `ioas map`). */
  readonly snapshot?: boolean;
}

const text = new TextEncoder();

/** Runs a validated scenario on a fresh simulated machine with its edu device. */
export async function runScenario(scenario: Scenario, options: RunScenarioOptions = {}): Promise<ScenarioResult> {
  const platform = options.platform ?? scenario.platform ?? 'p4080';
  const windowed = platform === 'p4080';
  if (windowed && scenario.interface === 'iommufd') throw new IoasError('invalid-argument', 'scenario: the p4080 speaks the PAMU VFIO backend only, not iommufd');
  const kernelInterface = windowed ? 'pamu' : (scenario.interface ?? 'type1');
  const backend = sim({ platform, ...(kernelInterface === 'iommufd' ? { interface: 'iommufd' as const } : {}) });
  const machine = backend.simulator;
  const device = eduDevice(machine);
  const container = kernelInterface === 'iommufd' ? await Container.open({ backend, devices: [device.address] }) : await Container.open({ backend, groups: [device.group!] });
  const events: ScenarioEvent[] = [];
  /** The device a DMA step names (default: the edu the container opened with). */
  const deviceAt = (address: string | undefined): SimDevice => {
    if (address === undefined) return device;
    const found = machine.devices().find((candidate) => candidate.address === address);
    if (found === undefined) throw new IoasError('not-found', `there is no PCI device ${address} on the ${platform} (devices: ${machine.devices().map((candidate) => candidate.address).join(', ')})`);
    return found;
  };
  let msiEnabled = false;
  let ok = true;
  /** The default backing page of a map: one window where each needs one contiguous chunk, else 4 KiB. */
  const unitPage = (): bigint => {
    const windowSize = windowed ? (container.geometry().windows?.size ?? 0n) : 0n;
    return windowSize > 0n ? windowSize : 0x1000n;
  };
  try {
    for (const [index, step] of scenario.steps.entries()) {
      const action = ACTION_NAMES.find((name) => (step as Record<string, unknown>)[name] !== undefined)!;
      options.onStep?.(index, scenario.steps.length, action);
      const args = (step as Record<string, unknown>)[action] as Record<string, unknown> | null;
      let event: Omit<ScenarioEvent, 'expected' | 'step' | 'action'>;
      try {
        event = perform(action, args ?? {});
      } catch (error) {
        if (!IoasError.isInstance(error)) throw error;
        event = { outcome: 'error', code: error.code, detail: error.message };
      }
      const wanted = step.expect ?? (action === 'msi' ? 'delivered' : 'ok');
      const got = event.outcome === 'error' ? event.code! : event.outcome;
      events.push({ step: index, action, ...event, expected: got === wanted });
      if (got !== wanted) {
        ok = false;
        break;
      }
    }
    const stats = container.stats();
    const result: ScenarioResult = { platform, interface: kernelInterface, events, ok, faults: [...machine.faults], interrupts: machine.interrupts.length, mappings: stats.mappings, bytesMapped: stats.bytesMapped };
    return options.snapshot === true ? { ...result, snapshot: container.snapshot(`${platform} (${kernelInterface}) after the scenario`) } : result;
  } finally {
    container.close();
  }

  function perform(action: ScenarioAction, args: Record<string, unknown>): Omit<ScenarioEvent, 'expected' | 'step' | 'action'> {
    switch (action) {
      case 'geometry': {
        const { aperture, windows } = args as { aperture: { size: bigint; iova: bigint }; windows: number };
        const geometry = container.setGeometry({ aperture: { start: aperture.iova, size: aperture.size }, windowCount: windows });
        return { outcome: 'ok', detail: `aperture ${formatRange(geometry.aperture)}: ${geometry.windows?.count} windows of ${formatSize(geometry.windows?.size ?? 0n)}` };
      }
      case 'map':
      case 'map-region': {
        const { iova, size: length, page, access: rights } = args as { iova?: bigint; size: bigint; page?: bigint; access?: 'r' | 'w' | 'rw' };
        const pageSize = page ?? unitPage();
        const region = machine.memory.allocate(length, pageSize);
        const memory = pageSize > 0x1000n ? { address: region.address, length, contiguousPageSize: pageSize } : { address: region.address, length };
        const accessRights = { read: (rights ?? 'rw').includes('r'), write: (rights ?? 'rw').includes('w') };
        if (action === 'map') {
          const mapping: Mapping = container.map({ ...(iova === undefined ? {} : { iova }), memory, access: accessRights });
          return { outcome: 'ok', detail: `mapped ${formatRange(mapping.iova)} (${formatSize(length)}, ${rights ?? 'rw'}) from host ${hex(region.address)}` };
        }
        const result = container.mapRegion({ iova: iova!, memory, access: accessRights });
        const skipped = result.skipped.map((hole) => formatRange(hole)).join(', ');
        return { outcome: 'ok', detail: `mapped ${formatSize(length)} at ${hex(iova!)} in ${result.mappings.length} mappings${skipped === '' ? '' : `, skipping ${skipped}`}` };
      }
      case 'unmap': {
        const { iova, size: length } = args as { iova: bigint; size: bigint };
        const bytes = container.unmap({ start: iova, size: length });
        return { outcome: 'ok', detail: `unmapped ${formatSize(bytes)} in ${formatRange({ start: iova, last: iova + length - 1n })}` };
      }
      case 'window': {
        const { iova, size: length } = args as { iova: bigint; size: bigint };
        const window = container.createWindow({ start: iova, size: length });
        return { outcome: 'ok', detail: `window ${formatRange(window.range)}; usable now ${container.usable().map(formatRange).join(', ')}` };
      }
      case 'msi-map': {
        const { iova } = args as { iova?: bigint };
        const plan = container.msi.map(container.msi.plan(iova === undefined ? undefined : { iova }));
        const where = plan.doorbells.map((doorbell) => `${doorbell.index}@${hex(doorbell.iova.start)}`).join(', ');
        return { outcome: 'ok', detail: `MSI (${plan.model}): ${where || 'nothing to map'}` };
      }
      case 'attach':
      case 'detach': {
        const { device: address } = args as { device: string };
        const target = deviceAt(address);
        // A hot-plugged device is bound to vfio-pci first, as a VMM's host agent would.
        if (action === 'attach' && target.driver !== 'vfio-pci') machine.bind(address, 'vfio-pci');
        const request = kernelInterface === 'iommufd' || target.group === undefined ? { devices: [address] } : { groups: [target.group] };
        const members = action === 'attach' ? container.attach(request) : container.detach(request);
        return { outcome: 'ok', detail: `${action === 'attach' ? 'attached' : 'detached'} ${members.devices.join(', ')}; usable now ${container.usable().map(formatRange).join(', ')}` };
      }
      case 'dma-write': {
        const { iova, data, device: address } = args as { iova: bigint; data: string; device?: string };
        const device = deviceAt(address);
        const landed = device.dmaWrite(iova, text.encode(data));
        return landed ? { outcome: 'ok', detail: `device wrote ${data.length} bytes at ${hex(iova)}` } : { outcome: 'fault', detail: machine.faults.at(-1)?.log ?? `fault at ${hex(iova)}` };
      }
      case 'dma-read': {
        const { iova, length, device: address } = args as { iova: bigint; length: number; device?: string };
        const bytes = deviceAt(address).dmaRead(iova, length);
        if (bytes === undefined) return { outcome: 'fault', detail: machine.faults.at(-1)?.log ?? `fault at ${hex(iova)}` };
        return { outcome: 'ok', detail: `device read ${length} bytes at ${hex(iova)}: ${JSON.stringify(new TextDecoder().decode(bytes))}` };
      }
      case 'msi': {
        if (!msiEnabled) {
          try {
            device.enableMsi([() => undefined]);
          } catch (error) {
            // The kernel refuses to program an MSI address (PAMU: no window holds an MSI bank).
            if (error instanceof KernelError) return { outcome: 'lost', detail: `enabling MSI failed (${error.ioctl}): ${error.message}` };
            throw error;
          }
          msiEnabled = true;
        }
        const delivered = device.raiseMsi(0);
        return delivered ? { outcome: 'delivered', detail: 'device MSI delivered' } : { outcome: 'lost', detail: machine.faults.at(-1)?.log ?? 'device MSI not delivered' };
      }
    }
  }
}
