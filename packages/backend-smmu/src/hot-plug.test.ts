// Hot-plug (issue 16) on backend-smmu, over the simulator's syscall face (the real ioctl bytes):
// a second device joins a live container (type1: its group; iommufd: its cdev), both DMA through
// the mappings already there, the first leaves, and every kernel call of attach and detach fails
// in turn without leaving a trace. The presets' conflict devices show both refusals: core's, from
// sysfs, before the kernel (x86's RMRR-style direct region), and the kernel's, typed, where the
// conflict shows only after the attach (arm64's second SMMU, which translates 32 bits).
import { Container, ERRNO, errnoName, IoasError, type Members } from '@ioas/core';
import { createSimulator, simSyscalls, type SimDevice, type Simulator } from '@ioas/backend-sim';
import { FaultySyscalls } from '@ioas/backend-sim/testing';
import { caught as failure } from '@ioas/conformance';
import { allocateDmaMemory } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { smmu, type SmmuBackend } from './smmu-backend.js';

type Platform = 'x86-vtd' | 'arm-smmuv3';
type KernelInterface = 'type1' | 'iommufd';

const PLATFORMS: readonly Platform[] = ['x86-vtd', 'arm-smmuv3'];
const INTERFACES: readonly KernelInterface[] = ['type1', 'iommufd'];
/** Each preset's second edu device: present, not bound to vfio-pci at start. */
const SECOND = '0000:00:10.0';
/** Where the guest memory goes: above 4 GiB, inside both presets' ranges. */
const HIGH = 0x1_0000_0000n;
const PAGE = 0x1000n;

interface Machine {
  readonly simulator: Simulator;
  readonly face: FaultySyscalls;
  readonly backend: SmmuBackend;
  readonly first: SimDevice;
  readonly second: SimDevice;
}

/** A simulated machine with the second edu bound to vfio-pci (its group appears then on arm64). */
function machine(platform: Platform, kernel: KernelInterface): Machine {
  const simulator = createSimulator({ platform });
  const face = new FaultySyscalls(simSyscalls(simulator));
  face.recording = true; // its log counts the calls
  const first = simulator.devices().find((device) => device.edu)!;
  const second = simulator.bind(SECOND, 'vfio-pci');
  return { simulator, face, backend: smmu({ syscalls: face, interface: kernel }), first, second };
}

/** What attach and detach name on each interface: the group on type1, the device on iommufd. */
const request = (kernel: KernelInterface, device: SimDevice) => (kernel === 'type1' ? { groups: [device.group!] } : { devices: [device.address] });
const membersOf = (...devices: SimDevice[]): Members => ({
  groups: devices.map((device) => device.group!).sort((a, b) => a - b),
  devices: devices.map((device) => device.address).sort(),
});
const origins = (container: Container) => new Set(container.reserved().map((region) => region.origin));
const groupOrigin = (device: SimDevice) => `/sys/kernel/iommu_groups/${device.group}/reserved_regions`;
const bytes = (seed: number, length = 16) => Uint8Array.from({ length }, (_, index) => (seed + index * 7) & 0xff);

async function openWithMapping(m: Machine, kernel: KernelInterface) {
  const container = await Container.open({ backend: m.backend, ...request(kernel, m.first) });
  const memory = allocateDmaMemory(m.face, 4n * PAGE);
  container.map({ iova: HIGH, memory: { address: memory.address, length: 4n * PAGE } });
  return { container, memory };
}


describe('smmu hot-plug over the simulator: attach and detach on a live container', () => {
  for (const platform of PLATFORMS) {
    for (const kernel of INTERFACES) {
      it(`${platform}, ${kernel}: the second device joins with a mapping live, both DMA through it, the first leaves`, async () => {
        const m = machine(platform, kernel);
        const { container, memory } = await openWithMapping(m, kernel);
        expect(container.capabilities.hotPlug).toBe(true);
        expect(container.members()).toEqual(membersOf(m.first));
        expect(origins(container).has(groupOrigin(m.second))).toBe(false);
        // The kernel's usable ranges: GET_INFO on type1, IOAS_IOVA_RANGES on iommufd.
        const rangesRead = `ioctl ${kernel === 'type1' ? 'VFIO_IOMMU_GET_INFO' : 'IOMMU_IOAS_IOVA_RANGES'}`;
        const reads = () => m.face.log.filter((call) => call === rangesRead).length;
        const readsBefore = reads();

        // Attach with the mapping live: the kernel's ranges and the reserved regions are read again.
        expect(container.attach(request(kernel, m.second))).toEqual(membersOf(m.second));
        expect(container.members()).toEqual(membersOf(m.first, m.second));
        expect(reads()).toBeGreaterThan(readsBefore);
        expect(origins(container).has(groupOrigin(m.second))).toBe(true);
        expect(container.geometry().ranges!.length).toBeGreaterThan(0);
        expect(container.mappings()).toHaveLength(1);

        // DMA from both devices through the shared mapping, bytes checked in host memory.
        const fromFirst = bytes(1);
        expect(m.first.dmaWrite(HIGH + 0x10n, fromFirst)).toBe(true);
        expect([...memory.bytes.subarray(0x10, 0x20)]).toEqual([...fromFirst]);
        expect([...m.second.dmaRead(HIGH + 0x10n, 16)!]).toEqual([...fromFirst]);
        const fromSecond = bytes(2);
        expect(m.second.dmaWrite(HIGH + PAGE + 0x20n, fromSecond)).toBe(true);
        expect([...memory.bytes.subarray(0x1020, 0x1030)]).toEqual([...fromSecond]);
        expect([...m.first.dmaRead(HIGH + PAGE + 0x20n, 16)!]).toEqual([...fromSecond]);

        // A device fd handed out for the first device blocks its detach, and says why.
        const device = m.backend.openDevice(m.first.address);
        const refused = failure(() => container.detach(request(kernel, m.first)));
        expect(refused).toMatchObject({ code: 'in-use', backend: 'smmu', operation: 'detach' });
        expect(refused.message).toMatch(new RegExp(`device fd of ${m.first.address} that openDevice\\(\\) handed out is still open: close it first`));
        expect(container.members()).toEqual(membersOf(m.first, m.second));
        expect(m.first.dmaRead(HIGH, 4)).toBeDefined();
        device.close();

        // The first leaves: the mapping stays, the second still reaches it, the first is blocked.
        const readsBeforeDetach = reads();
        expect(container.detach(request(kernel, m.first))).toEqual(membersOf(m.first));
        expect(container.members()).toEqual(membersOf(m.second));
        expect(reads()).toBeGreaterThan(readsBeforeDetach);
        expect(origins(container).has(groupOrigin(m.first))).toBe(m.first.group === m.second.group);
        expect(container.mappings()).toHaveLength(1);
        const after = bytes(3);
        expect(m.second.dmaWrite(HIGH + 2n * PAGE, after)).toBe(true);
        expect([...memory.bytes.subarray(0x2000, 0x2010)]).toEqual([...after]);
        expect(m.first.dmaWrite(HIGH, after)).toBe(false);

        // Map and unmap go on, with the budget the handle had.
        const more = allocateDmaMemory(m.face, PAGE);
        container.map({ iova: HIGH + 0x10_0000n, memory: { address: more.address, length: PAGE } });
        expect(m.second.dmaWrite(HIGH + 0x10_0000n, after)).toBe(true);
        expect([...more.bytes.subarray(0, 16)]).toEqual([...after]);
        expect(container.stats().mappingBudgetLeft).toBe(kernel === 'type1' ? 65535 - 2 : null);
        expect(container.unmap({ iova: HIGH + 0x10_0000n, size: PAGE })).toBe(PAGE);

        // The last member does not leave: close() does that.
        const last = failure(() => container.detach(request(kernel, m.second)));
        expect(last).toMatchObject({ code: 'in-use', operation: 'detach' });
        expect(last.message).toMatch(/would leave the container with no device; close\(\) the container instead/);

        // The first can come back.
        container.attach(request(kernel, m.first));
        expect(container.members()).toEqual(membersOf(m.first, m.second));
        expect(m.first.dmaRead(HIGH + 2n * PAGE, 16)).toEqual(after);
        container.close();
        expect(m.simulator.openHandles()).toBe(0);
        expect(m.face.inner.openFiles).toBe(0);
      });

      it(`${platform}, ${kernel}: refuses unknown groups and devices (not-found), a member twice (in-use), and a group with nothing bound to vfio-pci`, async () => {
        const m = machine(platform, kernel);
        const { container } = await openWithMapping(m, kernel);
        const files = m.face.inner.openFiles;
        expect(failure(() => container.attach({ groups: [99] }))).toMatchObject({ code: 'not-found', message: expect.stringMatching(/no IOMMU group 99 \(\/sys\/kernel\/iommu_groups\/99 does not exist\)/) });
        expect(failure(() => container.attach({ devices: ['0000:00:1d.7'] }))).toMatchObject({ code: 'not-found', message: expect.stringMatching(/no PCI device 0000:00:1d.7/) });
        expect(failure(() => container.detach({ groups: [99] }))).toMatchObject({ code: 'not-found' });
        expect(failure(() => container.attach(request(kernel, m.first)))).toMatchObject({ code: 'in-use', message: expect.stringMatching(/already in this container/) });
        expect(failure(() => container.detach(request(kernel, m.second)))).toMatchObject({ code: 'not-found', message: expect.stringMatching(/not in this container/) });
        m.simulator.bind(SECOND, null);
        if (m.second.group !== undefined) {
          expect(failure(() => container.attach({ groups: [m.second.group!] }))).toMatchObject({
            code: 'not-found',
            message: expect.stringMatching(new RegExp(`IOMMU group ${m.second.group} has no member bound to vfio-pci`)),
          });
        }
        expect(container.members()).toEqual(membersOf(m.first));
        expect(m.face.inner.openFiles).toBe(files);
        container.close();
        expect(m.face.inner.openFiles).toBe(0);
      });
    }
  }

  for (const kernel of INTERFACES) {
    it(`x86-vtd, ${kernel}: a device with an RMRR-style direct region is refused before the kernel when a mapping lies in it, and by the kernel otherwise, nothing changed`, async () => {
      const m = machine('x86-vtd', kernel);
      const rmrr = m.simulator.bind('0000:00:11.0', 'vfio-pci');
      const container = await Container.open({ backend: m.backend, ...request(kernel, m.first) });
      // A guest's RAM mapped 1:1 from IOVA 0 covers 992 MiB, where the region lies.
      const memory = allocateDmaMemory(m.face, 0x10_0000n);
      container.map({ iova: 0x3e00_0000n, memory: { address: memory.address, length: 0x10_0000n } });
      const before = json({ members: container.members(), geometry: container.geometry(), reserved: container.reserved(), mappings: container.mappings() });
      const files = m.face.inner.openFiles;
      const kernelCalls = m.face.log.length;
      const refused = failure(() => container.attach(request(kernel, rmrr)));
      expect(refused).toMatchObject({ code: 'reserved', backend: 'smmu', operation: 'attach' });
      expect(refused.message).toMatch(new RegExp(`would reserve direct region 0x3e000000-0x3effffff \\(from sysfs, /sys/kernel/iommu_groups/${rmrr.group}/reserved_regions.*mapping 0x3e000000`));
      // Core refused it from sysfs: no file opened, no ioctl made.
      expect(m.face.log.slice(kernelCalls).filter((call) => call.startsWith('ioctl') || call.startsWith('open'))).toEqual([]);
      expect(json({ members: container.members(), geometry: container.geometry(), reserved: container.reserved(), mappings: container.mappings() })).toBe(before);
      // Without the mapping, the kernel refuses the device anyway: it never leaves its identity mapping.
      container.unmap({ iova: 0x3e00_0000n, size: 0x10_0000n });
      const kernelRefusal = failure(() => container.attach(request(kernel, rmrr)));
      expect(kernelRefusal).toMatchObject(
        kernel === 'type1' ? { code: 'kernel', errno: ERRNO.EPERM, ioctl: 'VFIO_GROUP_SET_CONTAINER' } : { code: 'kernel', errno: ERRNO.EINVAL, ioctl: 'VFIO_DEVICE_BIND_IOMMUFD' },
      );
      expect(container.members()).toEqual(membersOf(m.first));
      expect(m.face.inner.openFiles).toBe(files);
      expect(m.simulator.group(rmrr.group!)!.opened).toBe(false);
      container.close();
      expect(m.face.inner.openFiles).toBe(0);
    });

    it(`arm-smmuv3, ${kernel}: a device behind a second, 32-bit SMMU: the kernel refuses it while a mapping lies above 4 GiB; below, it joins and the usable space shrinks, and grows back when it leaves`, async () => {
      const m = machine('arm-smmuv3', kernel);
      const narrow = m.simulator.bind('0001:00:01.0', 'vfio-pci');
      const { container } = await openWithMapping(m, kernel);
      const wide = container.geometry();
      expect(wide.aperture.last).toBe(0xffff_ffff_ffffn);
      const files = m.face.inner.openFiles;
      const before = json({ members: container.members(), geometry: container.geometry(), reserved: container.reserved(), usable: container.usable(), mappings: container.mappings() });
      // The aperture shows only after the attach: the kernel's refusal comes back typed.
      const refused = failure(() => container.attach(request(kernel, narrow)));
      expect(refused).toMatchObject(
        kernel === 'type1'
          ? { code: 'kernel', errno: ERRNO.EINVAL, ioctl: 'VFIO_GROUP_SET_CONTAINER', operation: 'attach' }
          : { code: 'kernel', errno: ERRNO.EADDRINUSE, ioctl: 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', operation: 'attach' },
      );
      expect(json({ members: container.members(), geometry: container.geometry(), reserved: container.reserved(), usable: container.usable(), mappings: container.mappings() })).toBe(before);
      expect(m.face.inner.openFiles).toBe(files);
      expect(m.simulator.group(narrow.group!)!.opened).toBe(false);

      // With guest RAM below 4 GiB only, it joins; both devices reach it, and nothing above 4 GiB maps.
      container.unmap({ iova: HIGH, size: 4n * PAGE });
      const low = allocateDmaMemory(m.face, PAGE);
      container.map({ iova: 0x4000_0000n, memory: { address: low.address, length: PAGE } });
      container.attach(request(kernel, narrow));
      expect(container.geometry().aperture.last).toBe(0xffff_ffffn);
      expect(container.usable().every((range) => range.last <= 0xffff_ffffn)).toBe(true);
      for (const [device, seed] of [[m.first, 5], [narrow, 6]] as const) {
        expect(device.dmaWrite(0x4000_0000n + BigInt(seed), bytes(seed))).toBe(true);
        expect([...low.bytes.subarray(seed, seed + 16)]).toEqual([...bytes(seed)]);
      }
      const spare = allocateDmaMemory(m.face, PAGE);
      expect(failure(() => container.map({ iova: HIGH, memory: { address: spare.address, length: PAGE } })).code).toBe('out-of-range');
      // It leaves: the usable space is 48 bits again.
      container.detach(request(kernel, narrow));
      expect(container.geometry()).toEqual(wide);
      container.map({ iova: HIGH, memory: { address: spare.address, length: PAGE } });
      container.close();
      expect(m.face.inner.openFiles).toBe(0);
      expect(m.simulator.openHandles()).toBe(0);
    });
  }

  it('iommufd: a group means its devices bound to vfio-pci, and a device handed out and closed leaves at detach with nothing left to ask', async () => {
    const m = machine('x86-vtd', 'iommufd');
    const { container } = await openWithMapping(m, 'iommufd');
    expect(container.attach({ groups: [m.second.group!] })).toEqual(membersOf(m.second));
    const device = m.backend.openDevice(m.second.address);
    device.close(); // unbinds the cdev: the device leaves the IOAS now
    expect(m.second.dmaRead(HIGH, 4)).toBeUndefined();
    expect(container.members()).toEqual(membersOf(m.first, m.second));
    expect(container.detach({ devices: [m.second.address] })).toEqual(membersOf(m.second));
    expect(container.members()).toEqual(membersOf(m.first));
    container.attach({ devices: [m.second.address] });
    expect(m.second.dmaRead(HIGH, 4)).toBeDefined();
    container.close();
    expect(m.face.inner.openFiles).toBe(0);
  });

  it('type1: a device brings its whole group', async () => {
    const m = machine('x86-vtd', 'type1');
    const { container } = await openWithMapping(m, 'type1');
    expect(container.attach({ devices: [m.second.address] })).toEqual(membersOf(m.second));
    expect(container.members().groups).toEqual([m.first.group!, m.second.group!].sort((a, b) => a - b));
    container.close();
  });
});

/** The container's record: members, geometry, reserved ranges, mappings and stats. */
function record(container: Container): string {
  return json({
    members: container.members(),
    geometry: container.geometry(),
    reserved: container.reserved(),
    mappings: container.mappings().map((mapping) => [mapping.iova, mapping.memory.address, mapping.access]),
    stats: container.stats(),
  });
}

/** The kernel's side: open objects and groups, mappings and pinned bytes, and what each device translates. */
function kernelState(m: Machine, probes: readonly bigint[]): string {
  return json({
    handles: m.simulator.openHandles(),
    liveMappings: m.simulator.liveMappings(),
    locked: m.simulator.lockedBytes,
    groups: m.simulator.groups().map((group) => [group.id, group.opened, group.owner !== undefined, group.openDevices]),
    translation: [m.first, m.second].map((device) => [device.domain?.constructor.name ?? 'blocked', probes.map((iova) => device.domain?.translate(iova, true) ?? 'blocked')]),
  });
}

const json = (value: unknown): string => JSON.stringify(value, (_, field: unknown) => (typeof field === 'bigint' ? `0x${field.toString(16)}` : field));
const MiB = 0x10_0000n;

interface SweepCase {
  readonly name: string;
  readonly platform: Platform;
  readonly kernel: KernelInterface;
  /** Opens the container, maps, and (for detach) attaches the second device: no faults. */
  setup(m: Machine): Promise<Container>;
  /** The operation under test. */
  run(m: Machine, container: Container): unknown;
  /** The devices that must reach the mappings after a failed run (nothing changed). */
  attachedBefore(m: Machine): SimDevice[];
}

function sweepCases(): SweepCase[] {
  const cases: SweepCase[] = [];
  const setup = async (m: Machine, kernel: KernelInterface, attachSecond: boolean) => {
    const container = await Container.open({ backend: m.backend, ...request(kernel, m.first) });
    container.map({ iova: HIGH, memory: { address: allocateDmaMemory(m.face, PAGE).address, length: PAGE } });
    container.map({ iova: HIGH + MiB, memory: { address: allocateDmaMemory(m.face, 2n * PAGE).address, length: 2n * PAGE } });
    if (attachSecond) container.attach(request(kernel, m.second));
    return container;
  };
  for (const platform of PLATFORMS) {
    for (const kernel of INTERFACES) {
      cases.push({
        name: `attach ${kernel} ${platform}`,
        platform,
        kernel,
        setup: (m) => setup(m, kernel, false),
        run: (m, container) => container.attach(request(kernel, m.second)),
        attachedBefore: (m) => [m.first],
      });
      cases.push({
        name: `detach ${kernel} ${platform}`,
        platform,
        kernel,
        setup: (m) => setup(m, kernel, true),
        run: (m, container) => container.detach(request(kernel, m.first)),
        attachedBefore: (m) => [m.first, m.second],
      });
    }
  }
  return cases;
}

describe('fault sweep: every call of attach and detach fails in turn', () => {
  it('leaves a typed error and nothing changed (members, geometry, mappings, kernel, fds); the container still maps, unmaps and retries', async () => {
    const errnos = [ERRNO.EIO, ERRNO.ENOENT];
    const probes = [HIGH, HIGH + MiB, HIGH + MiB + PAGE];
    const problems: string[] = [];
    const report: string[] = [];
    let faultPoints = 0;
    let absorbed = 0;
    for (const scenario of sweepCases()) {
      // The clean run: how many calls the operation makes, and what it leaves.
      const clean = machine(scenario.platform, scenario.kernel);
      const cleanContainer = await scenario.setup(clean);
      const start = clean.face.calls;
      const logStart = clean.face.log.length;
      scenario.run(clean, cleanContainer);
      const count = clean.face.calls - start;
      const cleanAfter = { record: record(cleanContainer), kernel: kernelState(clean, probes), fds: clean.face.inner.openFiles };
      report.push(`${scenario.name}: ${count} calls (${clean.face.log.slice(logStart).join(', ')})`);
      cleanContainer.close();
      expect(count, scenario.name).toBeGreaterThan(0);

      for (const errno of errnos) {
        for (let k = 1; k <= count; k++) {
          const m = machine(scenario.platform, scenario.kernel);
          const container = await scenario.setup(m);
          const before = { record: record(container), kernel: kernelState(m, probes), fds: m.face.inner.openFiles };
          m.face.arm(k, errno);
          let error: unknown;
          try {
            scenario.run(m, container);
          } catch (caught) {
            error = caught;
          }
          m.face.disarm();
          faultPoints++;
          const where = `${scenario.name}: ${m.face.failed ?? `call ${k}`} failing with ${errnoName(errno)}`;
          const after = { record: record(container), kernel: kernelState(m, probes), fds: m.face.inner.openFiles };
          if (error === undefined) {
            // Absorbed (a close(2) whose fd is released anyway): then the result is the clean run's.
            absorbed++;
            report.push(`absorbed: ${where}`);
            for (const field of ['record', 'kernel', 'fds'] as const) if (after[field] !== cleanAfter[field]) problems.push(`${where}: absorbed, but ${field} differs from the clean run`);
            container.close();
            continue;
          }
          if (!IoasError.isInstance(error)) problems.push(`${where}: untyped ${String(error)}`);
          else if (['backend-contract', 'rollback-failed'].includes(error.code)) problems.push(`${where}: ${error.code}: ${error.message}`);
          else if (error.code === 'kernel' && (error.errno === undefined || error.ioctl === undefined)) problems.push(`${where}: a kernel error without errno and ioctl: ${error.message}`);
          for (const field of ['record', 'kernel', 'fds'] as const) {
            if (after[field] !== before[field]) problems.push(`${where}: ${field} changed\n  before ${before[field]}\n  after  ${after[field]}`);
          }
          // The container still maps and unmaps, the devices it held still reach its mappings, and
          // the operation succeeds when tried again.
          try {
            const memory = allocateDmaMemory(m.face, PAGE);
            container.map({ iova: HIGH + 16n * MiB, memory: { address: memory.address, length: PAGE } });
            for (const device of scenario.attachedBefore(m)) {
              if (!device.dmaWrite(HIGH + 16n * MiB, bytes(k))) problems.push(`${where}: ${device.address} no longer reaches the mappings`);
              else if (json([...memory.bytes.subarray(0, 16)]) !== json([...bytes(k)])) problems.push(`${where}: ${device.address}'s DMA did not land`);
            }
            container.unmap({ iova: HIGH + 16n * MiB, size: PAGE });
            scenario.run(m, container);
          } catch (later) {
            problems.push(`${where}: afterwards: ${String(later)}`);
          }
          container.close();
          if (m.face.inner.openFiles !== 0) problems.push(`${where}: ${m.face.inner.openFiles} fds open after close`);
          if (m.simulator.openHandles() !== 0) problems.push(`${where}: ${m.simulator.openHandles()} kernel objects open after close`);
        }
      }
    }
    console.log([`hot-plug fault sweep: ${faultPoints} fault points (${errnos.map(errnoName).join(', ')} at each call), ${absorbed} absorbed`, ...report.map((line) => `  ${line}`)].join('\n'));
    expect(problems).toEqual([]);
    expect(faultPoints).toBeGreaterThan(50);
  }, 120_000);
});
