// The fault sweep (issue 13, "What to build" 3): every syscall of every multi-step operation of the
// smmu backend fails in turn, over the simulator's syscall face. After each fault the error is a
// typed IoasError, and nothing changed: the container's record, the simulated kernel's table, the
// IOMMU's translation, and the process's open fds. A close() that meets a fault still releases
// every fd and reports what failed, once.
import { Container, ERRNO, errnoName, hex, IoasError } from '@ioas/core';
import { createSimulator, Hwpt, Ioas, PagedDomain, simSyscalls, type SimDevice, type Simulator } from '@ioas/backend-sim';
import { FaultySyscalls } from '@ioas/backend-sim/testing';
import { allocateDmaMemory, type VfioDevice } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { smmu, type SmmuBackend } from './smmu-backend.js';

type Platform = 'x86-vtd' | 'arm-smmuv3';
type KernelInterface = 'type1' | 'iommufd';

interface Machine {
  simulator: Simulator;
  face: FaultySyscalls;
  device: SimDevice;
  group: number;
}

function machine(platform: Platform, hardwareDirty = false): Machine {
  const simulator = createSimulator({ platform, hardwareDirty });
  const face = new FaultySyscalls(simSyscalls(simulator));
  const device = simulator.devices().find((candidate) => candidate.edu)!;
  return { simulator, face, device, group: device.group! };
}

const json = (value: unknown): string => JSON.stringify(value, (_, field: unknown) => (typeof field === 'bigint' ? `0x${field.toString(16)}` : field));

/**
 * A dirty-tracking domain's state (an iommufd HWPT with dirty bits): whether tracking is on, and
 * which 4 KiB pages from the first probe's page to 1 MiB past the last are dirty.
 */
function dirtyBits(domain: unknown, probes: readonly bigint[]): string {
  const hwpt = domain instanceof Hwpt ? domain : undefined;
  if (hwpt?.dirty === undefined || probes.length === 0) return 'none';
  const runs: number[][] = [];
  const first = Number(probes.reduce((a, b) => (a < b ? a : b)) / 0x1000n);
  const last = Number(probes.reduce((a, b) => (a > b ? a : b)) / 0x1000n) + 256;
  hwpt.dirty.forEachRun(first, last, (start, end) => runs.push([start, end]));
  return json({ tracking: hwpt.tracking, runs });
}

/**
 * Everything a fault could leave changed, as comparable text: the container's record and stats,
 * the kernel's side (open fds of this process, open kernel objects and groups, live mappings and
 * pinned bytes, the device's domain with its table and allow-list), and the IOMMU's translation
 * of the probe addresses.
 */
function world(m: Machine, probes: readonly bigint[], container: Container | undefined) {
  const domain = m.device.domain;
  // iommufd devices sit on a HWPT (the automatic one or the dirty-tracking one): its IOAS holds the table.
  const ioas = domain instanceof Hwpt ? domain.ioas : domain instanceof Ioas ? domain : undefined;
  const table = domain instanceof PagedDomain ? domain.all() : ioas?.areas.all();
  return {
    fds: m.face.inner.openFiles,
    kernel: json({
      handles: m.simulator.openHandles(),
      liveMappings: m.simulator.liveMappings(),
      locked: m.simulator.lockedBytes,
      groups: m.simulator.groups().map((group) => [group.id, group.opened, group.owner !== undefined, group.openDevices]),
      msiVectors: m.device.msiVectors,
      domain: domain === undefined ? 'none' : domain.constructor.name,
      table,
      allowed: ioas?.allowed,
    }),
    translation: json(probes.map((iova) => (domain === undefined ? 'blocked' : domain.translate(iova, true)))),
    dirtyBits: dirtyBits(domain, probes),
    record:
      container === undefined || container.isClosed
        ? 'closed'
        : json({ mappings: container.mappings().map((mapping) => [mapping.iova, mapping.memory.address, mapping.access]), stats: container.stats(), windows: container.windows(), tracking: container.dirty.tracking }),
    domainObject: domain,
  };
}

/** What a scenario's setup leaves open for the operation. */
interface Ctx {
  readonly container?: Container;
  readonly backend?: SmmuBackend;
  readonly device?: VfioDevice;
}

interface Scenario {
  readonly name: string;
  readonly platform: Platform;
  readonly kernel: KernelInterface;
  /** Open and prepare (no faults); returns the container the operation works on, if any. */
  setup(m: Machine): Promise<Ctx>;
  /** The operation under test. */
  run(m: Machine, ctx: Ctx): Promise<Container | undefined | void>;
  /** IOVAs whose translation is compared. */
  readonly probes: readonly bigint[];
  /** The operation is close: after a fault, everything must be released rather than as before. */
  readonly closing?: boolean;
  /** A fault may leave dirty bits read and cleared, reported as `rollback-failed` (iommufd's multi-run read). */
  readonly mayLoseDirtyBits?: boolean;
  /** The IOMMU keeps dirty bits (the simulator's `hardwareDirty`): iommufd can track. */
  readonly hardwareDirty?: boolean;
}

const MiB = 0x10_0000n;
/** Where maps go that need no particular place: above 4 GiB, inside both presets' ranges. */
const HIGH = 0x1_0000_0000n;
/** The reserved MSI range of each preset, and a 4 MiB region around it. */
const HOLE: Record<Platform, { start: bigint; last: bigint }> = {
  'x86-vtd': { start: 0xfee0_0000n, last: 0xfeef_ffffn },
  'arm-smmuv3': { start: 0x800_0000n, last: 0x80f_ffffn },
};

const open = (m: Machine, kernel: KernelInterface, backend = smmu({ syscalls: m.face, interface: kernel })) => Container.open({ backend, groups: [m.group] });
const memory = (m: Machine, length: bigint) => ({ address: allocateDmaMemory(m.face, length).address, length });

function scenarios(): Scenario[] {
  const all: Scenario[] = [];
  for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
    for (const kernel of ['type1', 'iommufd'] as const) {
      const hole = HOLE[platform];
      const region = { start: hole.start - 2n * MiB, last: hole.last + 2n * MiB };
      const regionProbes = [region.start, hole.start - 0x1000n, hole.start, hole.last + 1n, region.last - 0xfffn];
      const multi = [0, 1, 2].map((index) => HIGH + 0x1000_0000n + BigInt(index) * 0x1_0000n);
      const base = { platform, kernel };
      all.push({
        ...base,
        name: `open ${kernel} ${platform}`,
        setup: async () => ({}),
        run: (m) => open(m, kernel),
        probes: [HIGH, hole.start],
      });
      all.push({
        ...base,
        name: `close ${kernel} ${platform}`,
        setup: async (m) => {
          const container = await open(m, kernel);
          container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
          container.map({ iova: HIGH + MiB, memory: memory(m, 0x2000n) });
          return { container };
        },
        run: async (_, { container }) => container!.close(),
        probes: [HIGH, HIGH + MiB, HIGH + MiB + 0x1000n],
        closing: true,
      });
      if (kernel === 'iommufd') {
        all.push({
          ...base,
          name: `close with a device fd still open (DETACH) ${kernel} ${platform}`,
          setup: async (m) => {
            const backend = smmu({ syscalls: m.face, interface: kernel });
            const container = await open(m, kernel, backend);
            container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
            return { container, backend, device: backend.openDevice(m.device.address) };
          },
          run: async (_, { container }) => container!.close(),
          probes: [HIGH],
          closing: true,
        });
      }
      all.push({
        ...base,
        name: `mapRegion over the reserved hole ${kernel} ${platform}`,
        setup: async (m) => {
          const container = await open(m, kernel);
          container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
          return { container };
        },
        run: async (m, { container }) => void container!.mapRegion({ iova: region.start, memory: memory(m, region.last - region.start + 1n) }),
        probes: [HIGH, ...regionProbes],
      });
      all.push({
        ...base,
        name: `unmap of 3 mappings ${kernel} ${platform}`,
        setup: async (m) => {
          const container = await open(m, kernel);
          container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
          for (const iova of multi) container.map({ iova, memory: memory(m, 0x1_0000n) });
          return { container };
        },
        run: async (_, { container }) => void container!.unmap({ iova: multi[0]!, size: 0x3_0000n }),
        probes: [HIGH, ...multi, multi[2]! + 0xf000n],
      });
      all.push({
        ...base,
        name: `device fd: enable MSI (eventfd, SET_IRQS) ${kernel} ${platform}`,
        setup: async (m) => {
          const backend = smmu({ syscalls: m.face, interface: kernel });
          const container = await open(m, kernel, backend);
          return { container, backend, device: backend.openDevice(m.device.address) };
        },
        run: async (_, { device }) => void device!.enableMsi(1),
        probes: [HIGH],
      });
      // Dirty tracking: two mappings with a hole between them (two runs on iommufd), a device write in each.
      const tracked = async (m: Machine, start: boolean): Promise<Ctx> => {
        const container = await open(m, kernel);
        container.map({ iova: HIGH, memory: memory(m, 0x4000n) });
        container.map({ iova: HIGH + 0x10000n, memory: memory(m, 0x2000n) });
        if (start) {
          container.dirty.start();
          m.device.dmaWrite(HIGH + 0x1000n, new Uint8Array([1]));
          m.device.dmaWrite(HIGH + 0x11000n, new Uint8Array([2]));
        }
        return { container };
      };
      const trackedProbes = [HIGH, HIGH + 0x3000n, HIGH + 0x10000n, HIGH + 0x11000n];
      const dirtyBase = { ...base, hardwareDirty: true };
      if (kernel === 'iommufd') {
        all.push({
          ...dirtyBase,
          name: `open with the dirty HWPT at open ${kernel} ${platform}`,
          setup: async () => ({}),
          run: (m) => open(m, kernel, smmu({ syscalls: m.face, interface: kernel, dirtyHwpt: 'at-open' })),
          probes: [HIGH, hole.start],
        });
      }
      all.push({ ...dirtyBase, name: `dirty.start ${kernel} ${platform}`, setup: (m) => tracked(m, false), run: async (_, { container }) => container!.dirty.start(), probes: trackedProbes });
      all.push({ ...dirtyBase, name: `dirty.stop ${kernel} ${platform}`, setup: (m) => tracked(m, true), run: async (_, { container }) => container!.dirty.stop(), probes: trackedProbes });
      all.push({
        ...dirtyBase,
        name: `dirty.read over a hole ${kernel} ${platform}`,
        setup: (m) => tracked(m, true),
        run: async (_, { container }) => void container!.dirty.read({ iova: { start: HIGH, last: HIGH + 0x11fffn } }),
        probes: trackedProbes,
        // iommufd reads the two runs without clearing first, then clearing: a fault at the second
        // clearing call leaves the first run's bits read and gone, and says so (rollback-failed).
        ...(kernel === 'iommufd' ? { mayLoseDirtyBits: true } : {}),
      });
      all.push({
        ...dirtyBase,
        name: `dirty.unmap of 2 mappings ${kernel} ${platform}`,
        setup: (m) => tracked(m, true),
        run: async (_, { container }) => void container!.dirty.unmap({ iova: HIGH, size: 0x12000n }),
        probes: trackedProbes,
      });
      if (kernel === 'iommufd') {
        all.push({
          ...base,
          name: `createWindow (ALLOW_IOVAS) ${kernel} ${platform}`,
          setup: async (m) => {
            const container = await open(m, kernel);
            container.map({ iova: HIGH, memory: memory(m, 0x1000n) });
            return { container };
          },
          run: async (_, { container }) => void container!.createWindow({ start: HIGH, size: 0x1000_0000n }),
          probes: [HIGH, HIGH + 0x1000_0000n],
        });
      }
    }
  }
  return all;
}

interface Outcome {
  faultPoints: number;
  absorbed: string[];
  untyped: string[];
  stateChanges: string[];
  fdLeaks: string[];
  notReleased: string[];
  /** Faults after which a multi-run clearing read reported bits read and lost (rollback-failed). */
  lostDirtyBits: string[];
  calls: Map<string, number>;
}

async function sweep(scenario: Scenario, errnos: readonly number[], outcome: Outcome): Promise<void> {
  // The clean run: how many syscalls the operation makes, and the world after it.
  const clean = machine(scenario.platform, scenario.hardwareDirty);
  const cleanCtx = await scenario.setup(clean);
  const start = clean.face.calls;
  clean.face.recording = true;
  const opened = await scenario.run(clean, cleanCtx);
  clean.face.recording = false;
  const count = clean.face.calls - start;
  const cleanAfter = world(clean, scenario.probes, opened ?? cleanCtx.container);
  // The kernel once the caller has closed the device fd it holds, too.
  cleanCtx.device?.close();
  const cleanReleased = world(clean, scenario.probes, opened ?? cleanCtx.container);
  for (const label of clean.face.log) {
    const kind = label.split(' ')[0]!;
    outcome.calls.set(kind, (outcome.calls.get(kind) ?? 0) + 1);
  }
  if (opened instanceof Container) opened.close();
  expect(count, scenario.name).toBeGreaterThan(0);

  for (const errno of errnos) {
    for (let k = 1; k <= count; k++) {
      const m = machine(scenario.platform, scenario.hardwareDirty);
      const ctx = await scenario.setup(m);
      const container = ctx.container;
      const before = world(m, scenario.probes, container);
      m.face.arm(k, errno);
      let error: unknown;
      let result: Container | undefined | void;
      try {
        result = await scenario.run(m, ctx);
      } catch (caught) {
        error = caught;
      }
      m.face.disarm();
      outcome.faultPoints++;
      const where = `${scenario.name}: ${m.face.failed ?? `call ${k}`} failing with ${errnoName(errno)}`;
      const after = world(m, scenario.probes, result instanceof Container ? result : container);
      if (error === undefined) {
        // The fault was absorbed (a retried or optional call): then the result is the clean one's.
        outcome.absorbed.push(where);
        const { domainObject: _a, fds: fdsAfter, ...rest } = after;
        const { domainObject: _b, fds: fdsClean, ...restClean } = cleanAfter;
        if (json(rest) !== json(restClean)) outcome.stateChanges.push(`${where}: succeeded with another result than the clean run`);
        if (fdsAfter !== fdsClean) outcome.fdLeaks.push(`${where}: ${fdsAfter} fds open, the clean run has ${fdsClean}`);
        if (result instanceof Container) result.close();
        ctx.device?.close();
        continue;
      }
      if (!IoasError.isInstance(error)) outcome.untyped.push(`${where}: ${String(error)}`);
      else if (error.code === 'backend-contract') outcome.untyped.push(`${where}: blamed on the backend (backend-contract): ${error.message}`);
      else if (error.code === 'kernel' && (error.errno === undefined || error.ioctl === undefined)) outcome.untyped.push(`${where}: a kernel error without errno and ioctl: ${error.message}`);
      if (scenario.closing) {
        // A failed close still releases everything, reports once, and a second close does nothing.
        if (after.fds !== cleanAfter.fds) outcome.fdLeaks.push(`${where}: ${after.fds} fds left open, a clean close leaves ${cleanAfter.fds} (the caller's device fds)`);
        if (ctx.device !== undefined && after.kernel !== cleanAfter.kernel) {
          // The caller's device would not detach: bound, it keeps the iommufd context and stays
          // attached until the caller closes it (iommufd_ctx_from_fd() holds the file). Its DMA
          // must stop with the close all the same, and the rest go with the caller's close.
          const reaches = scenario.probes.filter((iova) => m.device.domain?.translate(iova, true).kind === 'memory');
          if (reaches.length > 0) outcome.notReleased.push(`${where}: the caller's device still reaches memory at ${reaches.map(hex).join(', ')} after the close`);
          ctx.device.close();
          if (world(m, scenario.probes, container).kernel !== cleanReleased.kernel) outcome.notReleased.push(`${where}: kernel state differs from a clean close once the caller closes its device`);
        } else if (after.kernel !== cleanAfter.kernel || after.translation !== cleanAfter.translation) outcome.notReleased.push(`${where}: kernel state differs from a clean close`);
        try {
          container!.close();
        } catch (second) {
          outcome.notReleased.push(`${where}: a second close threw ${String(second)}`);
        }
      } else {
        if (after.fds !== before.fds) outcome.fdLeaks.push(`${where}: ${before.fds} fds before, ${after.fds} after`);
        const lostBits = scenario.mayLoseDirtyBits === true && IoasError.isInstance(error) && error.code === 'rollback-failed';
        if (lostBits) outcome.lostDirtyBits.push(`${where}: ${(error as Error).message}`);
        for (const field of lostBits ? (['record', 'kernel', 'translation'] as const) : (['record', 'kernel', 'translation', 'dirtyBits'] as const)) {
          if (after[field] !== before[field]) outcome.stateChanges.push(`${where}: ${field} changed\n  before ${before[field]}\n  after  ${after[field]}`);
        }
        if (after.domainObject !== before.domainObject) outcome.stateChanges.push(`${where}: the device moved to another domain`);
      }
      // The group is usable again: no EBUSY left behind.
      ctx.device?.close();
      container?.close();
      try {
        (await open(m, scenario.kernel)).close();
      } catch (reopen) {
        outcome.notReleased.push(`${where}: the group cannot be opened again: ${String(reopen)}`);
      }
      if (m.face.inner.openFiles !== 0) outcome.fdLeaks.push(`${where}: ${m.face.inner.openFiles} fds open after closing everything`);
    }
  }
}

describe('fault sweep: every syscall of every multi-step smmu operation fails in turn', () => {
  it('leaves a typed error and no trace: record, kernel table, translation and fds as before', async () => {
    const errnos = [ERRNO.EIO, ERRNO.ENOENT];
    const outcome: Outcome = { faultPoints: 0, absorbed: [], untyped: [], stateChanges: [], fdLeaks: [], notReleased: [], lostDirtyBits: [], calls: new Map() };
    const perScenario: string[] = [];
    for (const scenario of scenarios()) {
      const before = outcome.faultPoints;
      await sweep(scenario, errnos, outcome);
      perScenario.push(`${scenario.name}: ${(outcome.faultPoints - before) / errnos.length} calls`);
    }
    console.log(
      [
        `fault sweep: ${scenarios().length} operations, ${outcome.faultPoints} fault points (${errnos.map(errnoName).join(', ')} at each call)`,
        ...perScenario.map((line) => `  ${line}`),
        `  calls by kind: ${[...outcome.calls].map(([kind, n]) => `${kind} ${n}`).join(', ')}`,
        `  absorbed ${outcome.absorbed.length}, untyped ${outcome.untyped.length}, state changes ${outcome.stateChanges.length}, fd leaks ${outcome.fdLeaks.length}, not released ${outcome.notReleased.length}`,
        `  dirty bits read and lost, said as rollback-failed: ${outcome.lostDirtyBits.length}`,
        ...outcome.lostDirtyBits.map((line) => `    ${line}`),
      ].join('\n'),
    );
    // Only a clearing read of several runs that fails in its clearing pass, after the first run, may
    // lose bits: one fault point per run after the first, per errno, per iommufd scenario.
    // Here two runs: the second clearing call (IOMMU_HWPT_GET_DIRTY_BITMAP, nr 140), 2 presets x 2 errnos.
    for (const line of outcome.lostDirtyBits) expect(line).toMatch(/^dirty\.read over a hole iommufd [a-z0-9-]+: ioctl nr 140 failing with [A-Z]+: .*were read and cleared: treat those pages as dirty$/);
    expect(outcome.lostDirtyBits).toHaveLength(4);
    expect(outcome.untyped).toEqual([]);
    expect(outcome.stateChanges).toEqual([]);
    expect(outcome.fdLeaks).toEqual([]);
    expect(outcome.notReleased).toEqual([]);
    expect(outcome.faultPoints).toBeGreaterThan(100);
  }, 60_000);
});
