// Hot-plug on the simulator's Backend face, through Container: devices joining and leaving a live
// container with their DMA checked byte by byte, conflicts refused by core before the kernel or by
// the kernel typed, and a fault at every kernel call of attach and detach leaving nothing behind
// (docs/kernel-rules.md#attaching-to-a-live-container, docs/kernel-rules.md#detaching-from-a-live-container).
import { Container, ERRNO, IoasError, type MembersInput } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { sim } from './sim-backend.js';
import { createSimulator, type SimDevice, type Simulator } from './simulator.js';
import type { PlatformName } from './platforms.js';
import { caught } from '@ioas/conformance';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

/** Everything attach and detach must leave as it was when they fail. */
function observable(container: Container, simulator: Simulator) {
  return {
    members: container.members(),
    geometry: container.geometry(),
    reserved: container.reserved(),
    usable: container.usable(),
    mappings: container.mappings(),
    stats: container.stats(),
    handles: simulator.openHandles(),
    opened: simulator.groups().filter((group) => group.opened).map((group) => group.id),
    bound: simulator.devices().filter((device) => device.boundTo !== undefined).map((device) => device.address),
    attached: simulator.devices().filter((device) => device.domain !== undefined).map((device) => device.address),
  };
}

type Mode = 'type1' | 'iommufd' | 'pamu';

/** A container on `platform` holding its first edu (by group, or on iommufd by device). */
async function setup(platform: PlatformName, mode: Mode) {
  const simulator = createSimulator({ platform });
  const backend = sim({ simulator, ...(mode === 'iommufd' ? { interface: 'iommufd' as const } : {}) });
  const first = simulator.devices().find((device) => device.edu)!;
  const membersOf = (device: SimDevice): MembersInput => (mode === 'iommufd' ? { devices: [device.address] } : { groups: [device.group!] });
  const container = await Container.open({ backend, ...membersOf(first) });
  // The windows on PAMU: 512 MiB in 8 windows of 64 MiB; a paged container maps 2 MiB pages.
  const windowed = container.capabilities.model === 'windowed';
  if (windowed) container.setGeometry({ aperture: { start: 0n, size: 512n * MiB }, windowCount: 8 });
  const unit = windowed ? 64n * MiB : 2n * MiB;
  const memory = (length = unit) => {
    const region = simulator.memory.allocate(length, unit);
    return { address: region.address, length, contiguousPageSize: unit };
  };
  const bind = (address: string): SimDevice => simulator.bind(address, 'vfio-pci');
  return { simulator, backend, container, first, membersOf, memory, unit, bind };
}

const SECOND: Record<PlatformName, string> = { 'x86-vtd': '0000:00:10.0', 'arm-smmuv3': '0000:00:10.0', p4080: '0001:01:00.0' };

/** Device `device` DMAs `text` into the mapping at `offset`, and reads it back; the bytes land in host memory. */
function dmaThrough(simulator: Simulator, device: SimDevice, mapping: { iova: { start: bigint }; memory: { address: bigint } }, offset: bigint, text: string): void {
  const bytes = new TextEncoder().encode(text);
  expect(device.dmaWrite(mapping.iova.start + offset, bytes)).toBe(true);
  expect(simulator.memory.read(mapping.memory.address + offset, bytes.length)).toEqual(bytes);
  expect(device.dmaRead(mapping.iova.start + offset, bytes.length)).toEqual(bytes);
}

describe.each([
  ['x86-vtd', 'type1'],
  ['arm-smmuv3', 'type1'],
  ['x86-vtd', 'iommufd'],
  ['arm-smmuv3', 'iommufd'],
  ['p4080', 'pamu'],
] as const)('%s (%s): a second device on a live container', (platform, mode) => {
  it('joins with the mappings live, both devices DMA through the shared mapping, the first leaves and the second keeps it', async () => {
    const { simulator, container, first, membersOf, memory, bind } = await setup(platform, mode);
    expect(container.capabilities.hotPlug).toBe(true);
    const mapping = container.map({ memory: memory() });
    const geometry = container.geometry();
    const second = bind(SECOND[platform]);
    const joined = container.attach(membersOf(second));
    expect(joined.devices).toEqual([second.address]);
    expect(container.members().devices).toEqual([first.address, second.address].sort());
    expect(container.mappings()).toEqual([mapping]);
    // The second edu sits behind the same IOMMU, with the same regions: nothing else changes.
    expect(container.geometry()).toEqual(geometry);
    dmaThrough(simulator, first, mapping, 0x100n, 'from the first edu');
    dmaThrough(simulator, second, mapping, 0x200n, 'from the second edu');
    expect(second.dmaRead(mapping.iova.start + 0x100n, 18)).toEqual(new TextEncoder().encode('from the first edu'));
    const left = container.detach(membersOf(first));
    expect(left.devices).toEqual([first.address]);
    expect(container.members().devices).toEqual([second.address]);
    expect(container.mappings()).toEqual([mapping]);
    expect(container.reserved().every((range) => range.origin === undefined || range.origin.endsWith(`/${second.group}/reserved_regions`))).toBe(true);
    dmaThrough(simulator, second, mapping, 0x300n, 'after the first left');
    expect(first.dmaWrite(mapping.iova.start + 0x400n, new Uint8Array([1]))).toBe(false);
    expect(simulator.faults.at(-1)).toMatchObject({ device: first.address, reason: 'blocked' });
    // The group file of a group that left is closed: only the container and the second remain.
    if (mode !== 'iommufd') expect(simulator.group(first.group!)!.opened).toBe(false);
    else expect(first.boundTo).toBeUndefined();
    expect(container.unmap(mapping)).toBe(mapping.memory.length);
    container.close();
    expect(simulator.openHandles()).toBe(0);
  });

  it('leaves nothing behind when any kernel call of attach or detach fails, and the container stays usable', async () => {
    const { simulator, container, first, membersOf, memory, bind } = await setup(platform, mode);
    container.map({ memory: memory() });
    const second = bind(SECOND[platform]);
    for (const [operation, run] of [
      ['attach', () => container.attach(membersOf(second))],
      ['detach', () => container.detach(membersOf(first))],
    ] as const) {
      const before = observable(container, simulator);
      let failures = 0;
      for (let step = 0; ; step++) {
        expect(step, `${operation} still fails with no fault left to inject`).toBeLessThan(32);
        simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO, skip: step });
        try {
          run();
        } catch (error) {
          expect(IoasError.isInstance(error) && [error.code, error.errno], String(error)).toEqual(['kernel', ERRNO.EIO]);
          expect(observable(container, simulator), `after ${operation} failed at kernel call ${step + 1}`).toEqual(before);
          failures++;
          continue;
        }
        simulator.clearInjectedFaults();
        break;
      }
      // Each kernel call failed once: at least the join (or leave) and the re-read after it.
      expect(failures).toBeGreaterThanOrEqual(2);
      const mapping = container.map({ memory: memory() });
      expect(container.unmap(mapping)).toBe(mapping.memory.length);
    }
    expect(container.members().devices).toEqual([second.address]);
  });
});

describe('conflicts: refused before the kernel where sysfs tells, by the kernel typed where only it knows', () => {
  it.each(['type1', 'iommufd'] as const)('x86 (%s): the RMRR device is refused by core while guest RAM covers its direct region, then by the kernel', async (mode) => {
    const { simulator, container, membersOf, bind } = await setup('x86-vtd', mode);
    // 1 GiB of guest RAM mapped 1:1 from IOVA 0 covers the RMRR at 992 MiB.
    const ram = simulator.memory.allocate(GiB, 2n * MiB);
    const mapping = container.map({ iova: 0n, memory: { address: ram.address, length: GiB } });
    const rmrr = bind('0000:00:11.0');
    const before = observable(container, simulator);
    const refused = caught(() => container.attach(membersOf(rmrr)));
    expect(refused.code).toBe('reserved');
    expect(refused.message).toContain('mapping 0x0');
    expect(refused.message).toContain('direct region 0x3e000000');
    expect(refused.message).toContain('/sys/kernel/iommu_groups/8/reserved_regions');
    expect(observable(container, simulator)).toEqual(before);
    // Without the mapping core lets it through, and the kernel refuses the device itself: 6.1 at
    // the DMA claim of VFIO_GROUP_SET_CONTAINER (EPERM), 6.12 at VFIO_DEVICE_BIND_IOMMUFD (EINVAL).
    container.unmap(mapping);
    const after = observable(container, simulator);
    const kernel = caught(() => container.attach(membersOf(rmrr)));
    expect([kernel.code, kernel.errno, kernel.ioctl]).toEqual(mode === 'type1' ? ['kernel', ERRNO.EPERM, 'VFIO_GROUP_SET_CONTAINER'] : ['kernel', ERRNO.EINVAL, 'VFIO_DEVICE_BIND_IOMMUFD']);
    expect(observable(container, simulator)).toEqual(after);
  });

  it.each(['type1', 'iommufd'] as const)('arm64 (%s): the device behind the 32-bit SMMU is refused by the kernel while RAM above 4 GiB is mapped, then joins and shrinks the usable ranges', async (mode) => {
    const { simulator, container, first, membersOf, memory, bind } = await setup('arm-smmuv3', mode);
    const high = container.map({ iova: 0x1_0000_0000n, memory: memory() });
    const narrow = bind('0001:00:01.0');
    const before = observable(container, simulator);
    // sysfs shows only the SW MSI window for it; its aperture only the kernel knows.
    const refused = caught(() => container.attach(membersOf(narrow)));
    expect([refused.code, refused.errno, refused.ioctl]).toEqual(mode === 'type1' ? ['kernel', ERRNO.EINVAL, 'VFIO_GROUP_SET_CONTAINER'] : ['kernel', ERRNO.EADDRINUSE, 'VFIO_DEVICE_ATTACH_IOMMUFD_PT']);
    expect(observable(container, simulator)).toEqual(before);
    container.unmap(high);
    const low = container.map({ iova: 0x4000_0000n, memory: memory() });
    const usable = container.usable();
    container.attach(membersOf(narrow));
    expect(container.usable()).toEqual([
      { start: 0n, last: 0x7ff_ffffn },
      { start: 0x810_0000n, last: 0xffff_ffffn },
    ]);
    expect(caught(() => container.map({ iova: 0x1_0000_0000n, memory: memory() })).code).toBe('out-of-range');
    dmaThrough(simulator, narrow, low, 0x10n, 'behind the second SMMU');
    dmaThrough(simulator, first, low, 0x40n, 'behind the first SMMU');
    // Its domain goes with it: what it could not translate is usable again.
    container.detach(membersOf(narrow));
    expect(container.usable()).toEqual(usable);
    container.map({ iova: 0x1_0000_0000n, memory: memory() });
  });

  it("p4080: the second controller's group brings no reserved region and keeps the geometry; the MSI banks mapped before serve it too", async () => {
    const { container, first, membersOf, memory, bind } = await setup('p4080', 'pamu');
    container.map({ memory: memory() });
    container.msi.map();
    const geometry = container.geometry();
    const second = bind('0001:01:00.0');
    container.attach(membersOf(second));
    expect(container.geometry()).toEqual(geometry);
    expect(container.reserved()).toEqual([]);
    const delivered: string[] = [];
    for (const device of [first, second]) {
      device.enableMsi([() => delivered.push(device.address)]);
      expect(device.raiseMsi(0)).toBe(true);
    }
    expect(delivered).toEqual([first.address, second.address]);
  });
});

describe('what attach and detach refuse', () => {
  it('names groups and devices that do not exist, or have no IOMMU group or VFIO node yet', async () => {
    const arm = await setup('arm-smmuv3', 'type1');
    expect(caught(() => arm.container.attach({ groups: [99] })).code).toBe('not-found');
    expect(caught(() => arm.container.attach({ devices: ['0000:09:00.0'] })).code).toBe('not-found');
    // The second edu has no group until a driver binds it (arm64), and group 0 no vfio-pci member.
    expect(caught(() => arm.container.attach({ devices: ['0000:00:10.0'] })).code).toBe('backend-unavailable');
    expect(caught(() => arm.container.attach({ groups: [0] })).code).toBe('not-found');
    const iommufd = await setup('x86-vtd', 'iommufd');
    expect(caught(() => iommufd.container.attach({ devices: ['0000:00:10.0'] })).code).toBe('not-found'); // not bound: no cdev
    expect(iommufd.simulator.openHandles()).toBe(1);
  });

  it('refuses to detach a group while a device fd of it is open (VFIO_GROUP_UNSET_CONTAINER would be EBUSY), changing nothing', async () => {
    const { simulator, container, first, membersOf, bind } = await setup('x86-vtd', 'type1');
    container.attach(membersOf(bind('0000:00:10.0')));
    const group = simulator.group(first.group!)!;
    group.openDevices = 1; // a device fd obtained from the group, as the syscall face counts them
    const before = observable(container, simulator);
    expect(caught(() => container.detach(membersOf(first))).code).toBe('in-use');
    expect(observable(container, simulator)).toEqual(before);
    group.openDevices = 0;
    container.detach(membersOf(first));
  });
});
