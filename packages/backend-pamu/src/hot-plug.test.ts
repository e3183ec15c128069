// Hot-plug on PAMU (issue 16): another device's LIODN group joins the live PAMU domain and leaves
// it, over the simulated P4080 (sdk-4.x, big-endian structs, PowerPC ioctl numbers). The domain's
// geometry and windows are the container's, not the newcomer's: it DMAs through the windows already
// mapped, its MSIs reach the banks already mapped, and detaching the first group leaves both to it.
import { Container, ERRNO, errnoName, IoasError, type HostMemory } from '@ioas/core';
import { createSimulator, simSyscalls, type SimDevice, type Simulator } from '@ioas/backend-sim';
import { FaultySyscalls } from '@ioas/backend-sim/testing';
import { describe, expect, it } from 'vitest';
import { instrument, P4080_FIRST, P4080_SECOND } from './__fixtures__/pamu-on-sim.js';
import { pamu, type PamuBackend } from './pamu-backend.js';
import { PAMU_PROFILES } from './profiles.js';

const MiB = 1n << 20n;
const WINDOW = 64n * MiB;
/** The seed geometry: 512 MiB at 0 in 8 windows of 64 MiB. */
const GEOMETRY = { aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 };
const FIRST = P4080_FIRST;
/** The P4080's second device, in LIODN group 1, not bound to vfio-pci at start. */
const SECOND = P4080_SECOND;
const PROFILE = PAMU_PROFILES['sdk-4.x'];

interface Machine {
  readonly simulator: Simulator;
  readonly face: FaultySyscalls;
  readonly backend: PamuBackend;
  readonly ram: HostMemory;
  readonly log: ReturnType<typeof instrument>;
  readonly first: SimDevice;
  readonly second: SimDevice;
}

function machine(): Machine {
  const simulator = createSimulator({ platform: 'p4080', pamuType: 7 });
  simulator.bind(SECOND, 'vfio-pci');
  const face = new FaultySyscalls(simSyscalls(simulator));
  const log = instrument(face as never, PROFILE);
  const backend = pamu({ profile: PROFILE, syscalls: log.syscalls, littleEndian: false });
  const region = simulator.memory.allocate(4n * WINDOW, WINDOW);
  return { simulator, face, backend, log, ram: { address: region.address, length: region.length, contiguousPageSize: WINDOW }, first: simulator.device(FIRST), second: simulator.device(SECOND) };
}

/** Group 0 open, the seed geometry set, two windows of RAM mapped at 0 and the three MSI banks mapped. */
async function live(m: Machine) {
  const container = await Container.open({ backend: m.backend, groups: [0] });
  container.setGeometry(GEOMETRY);
  const mapping = container.map({ iova: 0n, memory: { ...m.ram, length: 2n * WINDOW } });
  container.msi.map();
  return { container, mapping };
}

/** A device writes `text` at `iova` and reads it back; the bytes are checked in host memory at `offset`. */
function dmaWorks(m: Machine, device: SimDevice, iova: bigint, text: string): void {
  const bytes = new TextEncoder().encode(text);
  expect(device.dmaWrite(iova, bytes), `${device.address} writes at ${iova.toString(16)}`).toBe(true);
  expect(m.simulator.memory.read(m.ram.address + iova, bytes.length), 'what landed in host memory').toEqual(bytes);
  expect(device.dmaRead(iova, bytes.length), `${device.address} reads back`).toEqual(bytes);
}

/** A window holding neither DMA nor an MSI bank (the highest), for a map after the attach. */
function freeWindow(m: Machine, container: Container): bigint {
  const pamuContainer = m.backend.containerOf(container.members().groups[0]!);
  const used = new Set(pamuContainer.msiBanks().map((bank) => bank.window));
  for (const range of pamuContainer.dmaRanges()) for (let at = range.iova; at < range.iova + range.size; at += WINDOW) used.add(Number(at / WINDOW));
  for (let window = 7; window >= 0; window--) if (!used.has(window)) return BigInt(window) * WINDOW;
  throw new Error('no free window');
}

function faultsOf(m: Machine, device: SimDevice): number {
  return m.simulator.faults.filter((fault) => fault.device === device.address).length;
}

describe('hot-plug: a LIODN group joins and leaves the live PAMU domain', () => {
  it('attaches group 1 to a translating domain: geometry and windows unchanged, DMA and MSI from both devices', async () => {
    const m = machine();
    const { container, mapping } = await live(m);
    const geometry = container.geometry();
    const windows = container.windows();
    const banks = m.backend.containerOf(0).msiBanks();
    const from = m.log.log.length;
    expect(container.attach({ devices: [SECOND] })).toEqual({ groups: [1], devices: [SECOND] });
    // GROUP_SET_CONTAINER, then the map that makes the driver enable every LIODN again (the new one
    // was left disabled by pamu_set_liodn()), in a free window, undone at once.
    expect(m.log.names(from)).toEqual(['VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER', 'VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_UNMAP_DMA']);
    expect(container.members()).toEqual({ groups: [0, 1], devices: [FIRST, SECOND] });
    expect(container.geometry()).toEqual(geometry);
    expect(container.windows()).toEqual(windows);
    expect(container.mappings()).toEqual([mapping]);
    expect(m.backend.containerOf(1)).toBe(m.backend.containerOf(0));
    expect(m.backend.containerOf(1).msiBanks()).toEqual(banks);
    expect(m.backend.containerOf(1).dmaRanges()).toEqual([{ iova: 0n, size: 2n * WINDOW, vaddr: m.ram.address, read: true, write: true }]);
    dmaWorks(m, m.first, 0x100n, 'from the first device');
    dmaWorks(m, m.second, WINDOW + 0x200n, 'from the newcomer, in the second window');
    // The newcomer's MSI reaches a bank mapped before it came: no bank of its own.
    let interrupts = 0;
    m.second.enableMsi([() => interrupts++]);
    expect(m.second.raiseMsi(0)).toBe(true);
    expect(interrupts).toBe(1);
    expect(m.simulator.oopses).toEqual([]);
    container.close();
  });

  it("needs its re-enabling map: without it the newcomer's LIODN stays disabled until the next MAP_DMA", async () => {
    // pamu_set_liodn() disables a joining LIODN and only configure_domain_dma_state(), sent by the
    // SDK backend after a successful MAP_DMA, enables it (docs/kernel-rules.md#attaching-to-a-live-container).
    // With the backend's map the newcomer DMAs at once.
    const m = machine();
    const { container } = await live(m);
    container.attach({ groups: [1] });
    dmaWorks(m, m.second, 0x100n, 'at once, thanks to the map');
    container.close();
    // The same attach with that MAP_DMA and its UNMAP_DMA answered without reaching the kernel: a
    // bare GROUP_SET_CONTAINER, as any caller without the workaround sends.
    const bare = machine();
    const { container: plain } = await live(bare);
    bare.log.setHook((call) => (call.name === 'VFIO_IOMMU_MAP_DMA' || call.name === 'VFIO_IOMMU_UNMAP_DMA' ? 0 : undefined));
    const from = bare.log.log.length;
    plain.attach({ groups: [1] });
    bare.log.setHook(undefined);
    expect(bare.log.names(from)).toEqual(['VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER', 'VFIO_IOMMU_MAP_DMA', 'VFIO_IOMMU_UNMAP_DMA']);
    expect(plain.members().groups).toEqual([0, 1]);
    const faults = faultsOf(bare, bare.second);
    expect(bare.second.dmaWrite(0x100n, new Uint8Array([1])), 'the newcomer, its LIODN disabled').toBe(false);
    expect(bare.second.dmaRead(WINDOW, 1)).toBeUndefined();
    expect(faultsOf(bare, bare.second)).toBe(faults + 2);
    expect(bare.simulator.faults.at(-1)).toMatchObject({ device: SECOND, reason: 'blocked' });
    dmaWorks(bare, bare.first, 0x200n, 'the first device still translates');
    // The next MAP_DMA that reaches the kernel enables every LIODN of the domain, the newcomer's too.
    const spare = bare.simulator.memory.allocate(WINDOW, WINDOW);
    plain.map({ iova: freeWindow(bare, plain), memory: { address: spare.address, length: WINDOW, contiguousPageSize: WINDOW } });
    dmaWorks(bare, bare.second, 0x300n, 'after the next map');
    plain.close();
  });

  it('detaches group 0: mappings stay, the newcomer keeps DMAing, the device that left faults', async () => {
    const m = machine();
    const { container, mapping } = await live(m);
    container.attach({ groups: [1] });
    const from = m.log.log.length;
    expect(container.detach({ groups: [0] })).toEqual({ groups: [0], devices: [FIRST] });
    expect(m.log.names(from)).toEqual(['VFIO_GROUP_UNSET_CONTAINER']);
    expect(container.members()).toEqual({ groups: [1], devices: [SECOND] });
    expect(container.mappings()).toEqual([mapping]);
    expect(() => m.backend.containerOf(0)).toThrow(/group 0 is in no open pamu container/);
    dmaWorks(m, m.second, 0x300n, 'from the newcomer, alone');
    const faults = faultsOf(m, m.first);
    expect(m.first.dmaWrite(0x400n, new Uint8Array([1]))).toBe(false);
    expect(faultsOf(m, m.first)).toBe(faults + 1);
    // The last group cannot leave: core refuses before the backend.
    const before = m.log.log.length;
    expect(() => container.detach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'in-use' }));
    expect(m.log.names(before)).toEqual([]);
    // Group 0 can come back, and the container still maps and unmaps for both.
    container.attach({ groups: [0] });
    dmaWorks(m, m.first, 0x500n, 'from the first device, back');
    const iova = freeWindow(m, container);
    const more = container.map({ iova, memory: { ...m.ram, address: m.ram.address + 2n * WINDOW, length: WINDOW } });
    const bytes = new TextEncoder().encode('through a window mapped after the attach');
    expect(m.second.dmaWrite(iova + 0x10n, bytes)).toBe(true);
    expect(m.simulator.memory.read(m.ram.address + 2n * WINDOW + 0x10n, bytes.length)).toEqual(bytes);
    expect(container.unmap(more)).toBe(WINDOW);
    container.close();
    expect(m.simulator.openHandles()).toBe(0);
  });

  it('refuses to detach a group while a device fd handed out for it is open, and detaches once it is closed', async () => {
    const m = machine();
    const { container } = await live(m);
    container.attach({ groups: [1] });
    const device = m.backend.openDevice(SECOND);
    const from = m.log.log.length;
    const files = m.face.inner.openFiles;
    expect(() => container.detach({ devices: [SECOND] })).toThrow(expect.objectContaining({ code: 'in-use', message: expect.stringContaining(`device fd of ${SECOND} is still open`) }));
    expect(m.log.names(from)).toEqual([]);
    expect(m.face.inner.openFiles).toBe(files);
    expect(container.members().groups).toEqual([0, 1]);
    device.close();
    container.detach({ devices: [SECOND] });
    expect(container.members().groups).toEqual([0]);
    container.close();
    expect(m.face.inner.openFiles).toBe(0);
  });

  it('attaches without a re-enabling map while nothing is mapped, and before the geometry is set', async () => {
    const m = machine();
    using container = await Container.open({ backend: m.backend, groups: [0] });
    let from = m.log.log.length;
    container.attach({ groups: [1] });
    expect(m.log.names(from)).toEqual(['VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER']);
    // The geometry and windows set after the attach are the domain's: they apply to both.
    container.setGeometry(GEOMETRY);
    const mapping = container.map({ iova: 0n, memory: { ...m.ram, length: WINDOW } });
    dmaWorks(m, m.first, 0x10n, 'first');
    dmaWorks(m, m.second, 0x20n, 'second');
    container.unmap(mapping);
    // Configured but not translating: still no re-enabling map (the next MAP_DMA enables every LIODN).
    container.detach({ groups: [1] });
    from = m.log.log.length;
    container.attach({ groups: [1] });
    expect(m.log.names(from)).toEqual(['VFIO_GROUP_GET_STATUS', 'VFIO_GROUP_SET_CONTAINER']);
    container.map({ iova: WINDOW, memory: { ...m.ram, address: m.ram.address + WINDOW, length: WINDOW } });
    dmaWorks(m, m.second, WINDOW + 0x30n, 'second, after the next map');
  });

  it('refuses, before the kernel, to attach to a translating domain with no free window for the re-enabling map', async () => {
    const m = machine();
    const { container } = await live(m);
    // Windows 0-1 hold RAM and three hold MSI banks: fill the other three.
    const ranges = m.backend.containerOf(0).dmaRanges().length;
    const used = new Set<number>();
    for (const range of m.backend.containerOf(0).dmaRanges()) for (let at = range.iova; at < range.iova + range.size; at += WINDOW) used.add(Number(at / WINDOW));
    for (const bank of m.backend.containerOf(0).msiBanks()) used.add(bank.window);
    for (let window = 0; window < 8; window++) {
      if (!used.has(window)) {
        const spare = m.simulator.memory.allocate(WINDOW, WINDOW);
        container.map({ iova: BigInt(window) * WINDOW, memory: { address: spare.address, length: WINDOW, contiguousPageSize: WINDOW } });
      }
    }
    expect(m.backend.containerOf(0).dmaRanges().length).toBeGreaterThan(ranges);
    const from = m.log.log.length;
    const files = m.face.inner.openFiles;
    const error = (() => {
      try {
        container.attach({ groups: [1] });
      } catch (caught) {
        return caught as IoasError;
      }
      throw new Error('attach succeeded');
    })();
    expect(error.code).toBe('no-space');
    expect(error.message).toMatch(/all 8 windows hold DMA or an MSI bank/);
    expect(m.log.names(from)).toEqual([]);
    expect(m.face.inner.openFiles).toBe(files);
    expect(container.members().groups).toEqual([0]);
    container.close();
  });

  it('refuses a group whose member is bound to a DMA-owning driver, leaving no fd open', async () => {
    const m = machine();
    const { container } = await live(m);
    m.simulator.bind(SECOND, null);
    m.simulator.bind(SECOND, 'e1000e');
    const files = m.face.inner.openFiles;
    expect(() => container.attach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'not-viable', message: expect.stringMatching(/IOMMU group 1 has no \/dev\/vfio\/1: .*e1000e/) }));
    expect(m.face.inner.openFiles).toBe(files);
    expect(container.members().groups).toEqual([0]);
    container.close();
  });
});

// --- the fault sweep --------------------------------------------------------------------------

const json = (value: unknown): string => JSON.stringify(value, (_key, field: unknown) => (typeof field === 'bigint' ? `0x${field.toString(16)}` : field));

/** Probe IOVAs: the start, middle and end of each window of the 512 MiB aperture. */
const PROBES = Array.from({ length: 8 }, (_, window) => [BigInt(window) * WINDOW, BigInt(window) * WINDOW + WINDOW / 2n, BigInt(window + 1) * WINDOW - 8n]).flat();

/** The PAMU domain's fields as the simulated kernel holds them (private in TypeScript, plain at run time). */
interface DomainFields {
  geometryStart: bigint;
  geometryEnd: bigint;
  windowCount: number;
  windows: unknown[];
  dmaRanges: unknown[];
  msiBanks: unknown[];
  enabled: boolean;
  translate(iova: bigint, write: boolean): unknown;
}

/** Everything attach or detach could leave changed, as comparable text. */
function world(m: Machine, container: Container) {
  const domain = (m.first.domain ?? m.second.domain) as unknown as DomainFields | undefined;
  return {
    fds: m.face.inner.openFiles,
    kernel: json({
      handles: m.simulator.openHandles(),
      groups: m.simulator.groups().map((group) => ({ id: group.id, opened: group.opened, owned: group.owner !== undefined })),
      liveMappings: m.simulator.liveMappings(),
      locked: m.simulator.lockedBytes,
      geometry: domain === undefined ? 'none' : [domain.geometryStart, domain.geometryEnd, domain.windowCount],
      windows: domain?.windows.flatMap((window, index) => (window === undefined || window === null ? [] : [[index, window]])),
      dmaRanges: domain?.dmaRanges,
      msiBanks: domain?.msiBanks,
      enabled: domain?.enabled,
    }),
    // Which device reaches which window, and where: the domain each device translates through.
    translation: json([m.first, m.second].map((device) => PROBES.map((iova) => (device.domain === undefined ? 'blocked' : device.domain.translate(iova, true))))),
    record: container.isClosed
      ? 'closed'
      : json({ members: container.members(), mappings: container.mappings(), stats: container.stats(), geometry: container.geometry(), windows: container.windows(), msi: container.msi.mapped(), pamu: m.backend.containerOf(container.members().groups[0]!).dmaRanges() }),
  };
}

interface Step {
  readonly name: string;
  /** Opens and prepares without faults. */
  setup(m: Machine): Promise<Container>;
  run(container: Container): unknown;
}

const STEPS: readonly Step[] = [
  { name: 'attach group 1 to a translating domain', setup: async (m) => (await live(m)).container, run: (c) => c.attach({ groups: [1] }) },
  { name: 'attach by device to a translating domain', setup: async (m) => (await live(m)).container, run: (c) => c.attach({ devices: [SECOND] }) },
  {
    name: 'attach before anything is mapped',
    setup: async (m) => {
      const container = await Container.open({ backend: m.backend, groups: [0] });
      container.setGeometry(GEOMETRY);
      return container;
    },
    run: (c) => c.attach({ groups: [1] }),
  },
  {
    name: 'detach group 0 from a translating domain',
    setup: async (m) => {
      const { container } = await live(m);
      container.attach({ groups: [1] });
      return container;
    },
    run: (c) => c.detach({ groups: [0] }),
  },
];

describe('fault sweep: every syscall of attach and detach fails in turn', () => {
  it('leaves a typed error and no trace (record, domain, translation, fds), and the container usable', async () => {
    const problems: string[] = [];
    let points = 0;
    for (const step of STEPS) {
      const clean = machine();
      const cleanContainer = await step.setup(clean);
      const start = clean.face.calls;
      step.run(cleanContainer);
      const calls = clean.face.calls - start;
      const done = world(clean, cleanContainer);
      expect(calls, step.name).toBeGreaterThan(0);
      for (let k = 1; k <= calls; k++) {
        for (const errno of [ERRNO.EIO, ERRNO.ENOENT]) {
          const m = machine();
          const container = await step.setup(m);
          const before = world(m, container);
          m.face.arm(k, errno);
          let thrown: unknown;
          try {
            step.run(container);
          } catch (error) {
            thrown = error;
          }
          m.face.disarm();
          if (m.face.failed === undefined) continue;
          points++;
          const where = `${step.name}: ${m.face.failed} failing with ${errnoName(errno)}`;
          const after = world(m, container);
          if (thrown === undefined) {
            // Only a close(2) after UNSET_CONTAINER may fail without failing the detach: the
            // group is out and Linux released the fd. Then the state is the detached one.
            if (m.face.failed !== 'close' || !step.name.startsWith('detach')) problems.push(`${where}: succeeded although a syscall failed`);
            for (const key of ['fds', 'kernel', 'translation', 'record'] as const) if (after[key] !== done[key]) problems.push(`${where}: ${key} is not the detached state`);
          } else {
            if (!IoasError.isInstance(thrown)) problems.push(`${where}: raw ${String(thrown)}`);
            else if (thrown.code === 'backend-contract' || thrown.code === 'rollback-failed') problems.push(`${where}: ${thrown.code}: ${thrown.message}`);
            for (const key of ['fds', 'kernel', 'translation', 'record'] as const) {
              if (after[key] !== before[key]) problems.push(`${where}: ${key} changed:\n  before ${before[key].toString().slice(0, 600)}\n  after  ${after[key].toString().slice(0, 600)}`);
            }
          }
          // Still usable: the same operation succeeds now, and both members map and DMA.
          try {
            if (thrown !== undefined) step.run(container);
            const spare = m.simulator.memory.allocate(WINDOW, WINDOW);
            const iova = freeWindow(m, container);
            const mapping = container.map({ iova, memory: { address: spare.address, length: WINDOW, contiguousPageSize: WINDOW } });
            for (const device of [m.first, m.second].filter((candidate) => container.members().devices.includes(candidate.address))) {
              if (!device.dmaWrite(iova + 0x40n, new Uint8Array([0xa5]))) problems.push(`${where}: ${device.address} cannot DMA afterwards`);
            }
            container.unmap(mapping);
            container.close();
            if (m.face.inner.openFiles !== 0) problems.push(`${where}: ${m.face.inner.openFiles} fds open after close`);
          } catch (error) {
            problems.push(`${where}: not usable afterwards: ${(error as Error).message}`);
          }
        }
      }
      cleanContainer.close();
    }
    console.log(`PAMU hot-plug fault sweep: ${STEPS.length} operations, ${points} fault points, ${problems.length} problems`);
    expect(problems).toEqual([]);
  }, 120_000);
});
