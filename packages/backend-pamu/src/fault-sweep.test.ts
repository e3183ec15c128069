// The fault sweep (issue 13, "What to build" 3) for the windowed backend: every syscall of every
// multi-step PAMU operation fails in turn (open, setGeometry, applyWindowPlan, mapRegion, msi.map,
// createWindow... see OPERATIONS), over the simulator's P4080 syscall face. After each fault the
// error is a typed IoasError and nothing changed: the container's record, the PAMU domain in the
// simulated kernel, the IOMMU's translation, and the process's open fds.
import { Container, ERRNO, errnoName, IoasError, planWindows, type HostMemory } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { eduDevice, FaultySyscalls } from '@ioas/backend-sim/testing';
import { describe, expect, it } from 'vitest';
import { applyWindowPlan } from './apply-plan.js';
import { pamu } from './pamu-backend.js';
import { PAMU_PROFILES } from './profiles.js';

const MiB = 1n << 20n;
const WINDOW = 64n * MiB;
const SEED = { memory: [{ iova: 0n, size: 256n * MiB, pageSize: WINDOW }], msiBanks: 3 };

interface Machine {
  readonly simulator: Simulator;
  readonly face: FaultySyscalls;
  readonly group: number;
  readonly ram: HostMemory;
}

function machine(): Machine {
  const simulator = createSimulator({ platform: 'p4080', pamuType: 7 });
  const face = new FaultySyscalls(simSyscalls(simulator));
  const region = simulator.memory.allocate(512n * MiB, WINDOW);
  return { simulator, face, group: eduDevice(simulator).group!, ram: { address: region.address, length: region.length, contiguousPageSize: WINDOW } };
}

const json = (value: unknown): string =>
  JSON.stringify(value, (key, field: unknown) => (key === 'simulator' ? undefined : typeof field === 'bigint' ? `0x${field.toString(16)}` : field));

/** Probe IOVAs: the start, middle and end of each window of a 512 MiB aperture, and past it. */
const PROBES = Array.from({ length: 9 }, (_, window) => [BigInt(window) * WINDOW, BigInt(window) * WINDOW + WINDOW / 2n, BigInt(window + 1) * WINDOW - 8n]).flat();

/** The PAMU domain's fields, as the simulated kernel holds them (private in TypeScript, plain at run time). */
interface DomainFields {
  geometryStart: bigint;
  geometryEnd: bigint;
  windowCount: number;
  windows: unknown[];
  dmaRanges: unknown[];
  msiBanks: unknown[];
  enabled: boolean;
}

/** Everything a fault could leave changed, as comparable text. */
function world(m: Machine, container: Container | undefined) {
  const domain = eduDevice(m.simulator).domain as unknown as (DomainFields & { translate(iova: bigint, write: boolean): unknown }) | undefined;
  const open = container !== undefined && !container.isClosed;
  const geometry = open ? container.geometry() : undefined;
  return {
    fds: m.face.inner.openFiles,
    kernel: json({
      handles: m.simulator.openHandles(),
      liveMappings: m.simulator.liveMappings(),
      locked: m.simulator.lockedBytes,
      // The windows in use (a refused first configuration may leave a count of disabled ones).
      windows: domain?.windows.flatMap((window, index) => (window === null || window === undefined ? [] : [[index, window]])),
      dmaRanges: domain?.dmaRanges,
      msiBanks: domain?.msiBanks,
      enabled: domain?.enabled,
    }),
    translation: json(PROBES.map((iova) => (domain === undefined ? 'blocked' : domain.translate(iova, true)))),
    record: open ? json({ mappings: container.mappings(), stats: container.stats(), windows: container.windows(), msi: container.msi.mapped() }) : 'closed',
    kernelGeometry: json(domain === undefined ? 'none' : { start: domain.geometryStart, last: domain.geometryEnd, windows: domain.windowCount }),
    recordGeometry: json(geometry === undefined ? 'none' : { start: geometry.aperture.start, last: geometry.aperture.last, windows: geometry.windows?.size ? geometry.windows.count : 0 }),
  };
}

/**
 * The record says what the domain holds: the same aperture, and the same windows when the record
 * has any (a record with its windows unconfigured refuses every map, whatever count the domain was
 * left with after a refused first configuration; the kernel comparison checks no window is on).
 */
function geometryAgrees(record: string, kernel: string): boolean {
  if (record === 'closed' || record === kernel) return true;
  const [mine, theirs] = [JSON.parse(record), JSON.parse(kernel)] as { start: string; last: string; windows: number }[];
  return mine!.start === theirs!.start && mine!.last === theirs!.last && (mine!.windows === 0 || mine!.windows === theirs!.windows);
}

interface Operation {
  readonly name: string;
  /**
   * The operation configures the domain for the first time: the SDK driver cannot unset a geometry
   * or windows once set, so after a fault the domain's geometry may be the new one; the record must
   * then say the same (and nothing may be mapped), rather than both being as before.
   */
  readonly firstConfiguration?: boolean;
  /** Opens and prepares without faults; returns the container the operation works on. */
  setup(m: Machine): Promise<Container | undefined>;
  run(m: Machine, container: Container | undefined): Promise<unknown> | unknown;
}

const open = (m: Machine) => Container.open({ backend: pamu({ profile: PAMU_PROFILES['sdk-4.x'], syscalls: m.face, littleEndian: false }), groups: [m.group] });
const configured = async (m: Machine) => {
  const container = await open(m);
  container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
  return container;
};

const OPERATIONS: readonly Operation[] = [
  { name: 'Container.open', setup: async () => undefined, run: (m) => open(m) },
  { name: 'setGeometry (first)', firstConfiguration: true, setup: open, run: (_m, c) => c!.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 }) },
  { name: 'setGeometry (again)', setup: configured, run: (_m, c) => c!.setGeometry({ aperture: { start: 0n, size: 1024n * MiB }, windowCount: 16 }) },
  { name: 'applyWindowPlan (seed)', firstConfiguration: true, setup: open, run: (m, c) => applyWindowPlan(c!, planWindows(SEED), [{ ...m.ram, length: 256n * MiB }]) },
  { name: 'mapRegion (4 windows)', setup: configured, run: (m, c) => c!.mapRegion({ iova: 0n, memory: { ...m.ram, length: 256n * MiB } }) },
  { name: 'msi.map (3 banks)', setup: configured, run: (_m, c) => c!.msi.map() },
  {
    name: 'unmap of two mappings',
    setup: async (m) => {
      const c = await configured(m);
      c.map({ iova: 0n, memory: { ...m.ram, length: WINDOW } });
      c.map({ iova: WINDOW, memory: { ...m.ram, address: m.ram.address + WINDOW, length: WINDOW } });
      return c;
    },
    run: (_m, c) => c!.unmap({ iova: 0n, size: 2n * WINDOW }),
  },
  {
    name: 'close with DMA and MSI banks mapped',
    setup: async (m) => {
      const c = await configured(m);
      c.map({ iova: 0n, memory: { ...m.ram, length: WINDOW } });
      c.msi.map();
      return c;
    },
    run: (_m, c) => c!.close(),
  },
];

describe('fault sweep: every syscall of every multi-step PAMU operation fails in turn', () => {
  it('leaves a typed error and no trace: record, PAMU domain, translation and fds as before', async () => {
    const problems: string[] = [];
    let faultPoints = 0;
    for (const operation of OPERATIONS) {
      // A clean run counts the operation's syscalls.
      const clean = machine();
      const cleanContainer = await operation.setup(clean);
      const before = clean.face.calls;
      await operation.run(clean, cleanContainer);
      const calls = clean.face.calls - before;
      expect(calls, operation.name).toBeGreaterThan(0);
      for (let k = 1; k <= calls; k++) {
        for (const errno of [ERRNO.EIO, ERRNO.ENOENT]) {
          faultPoints++;
          const m = machine();
          const container = await operation.setup(m);
          const start = world(m, container);
          m.face.arm(k, errno);
          let thrown: unknown;
          try {
            await operation.run(m, container);
          } catch (error) {
            thrown = error;
          }
          m.face.disarm();
          const where = `${operation.name}: ${m.face.failed ?? `call ${k}`} failing with ${errnoName(errno)}`;
          if (m.face.failed === undefined) continue; // the operation took another path and made fewer calls
          if (operation.name.startsWith('close')) {
            // A close that meets a fault still releases everything and reports it, once.
            const after = world(m, container);
            if (after.fds !== start.fds - (start.fds - world(m, undefined).fds)) problems.push(`${where}: fds ${start.fds} -> ${after.fds}`);
            if (thrown !== undefined && !IoasError.isInstance(thrown)) problems.push(`${where}: raw ${String(thrown)}`);
            const fresh = machine();
            if (m.face.inner.openFiles !== fresh.face.inner.openFiles) problems.push(`${where}: ${m.face.inner.openFiles - fresh.face.inner.openFiles} fds left open after close`);
            continue;
          }
          if (thrown === undefined) {
            problems.push(`${where}: the operation succeeded although a syscall failed`);
            continue;
          }
          if (!IoasError.isInstance(thrown)) {
            problems.push(`${where}: raw ${String(thrown)}`);
            continue;
          }
          if (thrown.code === 'backend-contract') problems.push(`${where}: blamed on the backend: ${thrown.message}`);
          const after = world(m, container);
          const geometry = operation.firstConfiguration === true ? [] : (['kernelGeometry', 'recordGeometry'] as const);
          for (const key of ['fds', 'kernel', 'translation', 'record', ...geometry] as const) {
            if (after[key] !== start[key]) problems.push(`${where}: ${key} changed:\n  before ${String(start[key]).slice(0, 400)}\n  after  ${String(after[key]).slice(0, 400)}`);
          }
          if (!geometryAgrees(after.recordGeometry, after.kernelGeometry)) problems.push(`${where}: the record's geometry ${after.recordGeometry} is not the domain's ${after.kernelGeometry}`);
        }
      }
    }
    console.log(`PAMU fault sweep: ${OPERATIONS.length} operations, ${faultPoints} fault points, ${problems.length} problems`);
    if (process.env.SWEEP_DEBUG) for (const problem of problems) console.log(problem);
    expect(problems).toEqual([]);
  }, 120_000);
});

describe('an open that fails, then meets a failing close', () => {
  it('still releases every fd and reports the open failure, not the close', async () => {
    const m = machine();
    m.simulator.injectFault({ ioctl: 'VFIO_SET_IOMMU', errno: ERRNO.EPERM });
    // The open makes its calls, SET_IOMMU fails; the next call after it is a close: fail that too.
    const closeFails = new Proxy(m.face, {
      get(target, property, receiver) {
        if (property === 'close') {
          let failed = false;
          return (fd: number) => {
            const status = target.close(fd);
            if (failed) return status;
            failed = true;
            return -ERRNO.EIO;
          };
        }
        const value = Reflect.get(target, property, receiver) as unknown;
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    const before = m.face.inner.openFiles;
    await expect(Container.open({ backend: pamu({ profile: PAMU_PROFILES['sdk-4.x'], syscalls: closeFails, littleEndian: false }), groups: [m.group] })).rejects.toMatchObject({
      code: 'kernel',
      errno: ERRNO.EPERM,
    });
    expect(m.face.inner.openFiles).toBe(before);
  });
});
