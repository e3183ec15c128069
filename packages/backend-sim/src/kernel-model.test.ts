// The simulated kernel's own rules, each checked against the fact sheet line it encodes.
import { ERRNO } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { IOAS_MAP_FLAGS, SimIommufdContext } from './iommufd.js';
import { KernelError, KernelOops } from './kernel-error.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import { errnoOf } from './__fixtures__/iommufd-by-hand.js';
import { createSimulator } from './simulator.js';
import { VFIO_EXTENSION, SimVfioContainer } from './vfio-container.js';


function type1(platform: 'x86-vtd' | 'arm-smmuv3' = 'x86-vtd', dmaEntryLimit?: number) {
  const simulator = createSimulator({ platform, ...(dmaEntryLimit === undefined ? {} : { dmaEntryLimit }) });
  const edu = simulator.devices().find((device) => device.edu)!;
  const container = new SimVfioContainer(simulator);
  container.addGroup(simulator.group(edu.group!)!);
  container.setIommu(VFIO_EXTENSION.TYPE1v2_IOMMU);
  const memory = simulator.memory.allocate(0x10_0000n);
  return { simulator, edu, container, memory };
}

describe('VFIO container and type1v2 (kernel-rules.md#vfio-container-and-group)', () => {
  it('answers CHECK_EXTENSION as 6.1 did: UPDATE_VADDR only after SET_IOMMU, DMA_CC neither before nor after on these presets (kernel-rules.md#extensions-before-and-after-the-iommu-is-set)', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const container = new SimVfioContainer(simulator);
    expect([1, 3, 8, 9, 10, 4].map((extension) => container.checkExtension(extension))).toEqual([1, 1, 0, 1, 0, 0]);
    expect(errnoOf(() => container.setIommu(3))).toBe(ERRNO.EINVAL); // no group yet
    container.addGroup(simulator.group(3)!);
    expect(errnoOf(() => container.setIommu(VFIO_EXTENSION.SPAPR_TCE_IOMMU))).toBe(ERRNO.ENODEV);
    expect(errnoOf(() => container.info())).toBe(ERRNO.EINVAL); // before SET_IOMMU
    expect(errnoOf(() => container.map(0n, 0n, 0x1000n, true, true))).toBe(ERRNO.EINVAL);
    container.setIommu(3);
    expect(errnoOf(() => container.setIommu(3))).toBe(ERRNO.EINVAL); // already set
    expect(container.checkExtension(VFIO_EXTENSION.UPDATE_VADDR)).toBe(1);
    // No ECAP.SC on the q35 VT-d: no cache coherency enforced (vfio_domains_have_enforce_cache_coherency()).
    expect(container.checkExtension(VFIO_EXTENSION.DMA_CC_IOMMU)).toBe(0);
  });

  it('reports the IOVA ranges, page sizes and DMA_AVAIL observed on the q35 and virt guests (kernel-rules.md#the-iova-range-capability)', () => {
    expect(type1('x86-vtd').container.info()).toMatchObject({
      ioPageSizes: 0x40201000n,
      dmaAvailable: 65535,
      ranges: [
        { start: 0n, last: 0xfedfffffn },
        { start: 0xfef00000n, last: 0x7fffffffffn },
      ],
    });
    expect(type1('arm-smmuv3').container.info().ranges).toEqual([
      { start: 0n, last: 0x7ffffffn },
      { start: 0x8100000n, last: 0xffffffffffffn },
    ]);
  });

  it('checks MAP_DMA in the kernel order (kernel-rules.md#map-checks-in-kernel-order)', () => {
    const { container, memory, simulator } = type1('x86-vtd', 2);
    const vaddr = memory.address;
    expect(errnoOf(() => container.map(vaddr, 0x100000n, 0x2000n, false, false))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => container.map(vaddr, 0x100800n, 0x1000n, true, true))).toBe(ERRNO.EINVAL); // misaligned
    expect(errnoOf(() => container.map(vaddr, 0x100000n, 0n, true, true))).toBe(ERRNO.EINVAL);
    container.map(vaddr, 0x100000n, 0x2000n, true, true);
    // An identical re-map is EEXIST (observed errno 17), before the range check.
    expect(errnoOf(() => container.map(vaddr, 0x100000n, 0x2000n, true, true))).toBe(ERRNO.EEXIST);
    container.map(vaddr, 0x200000n, 0x1000n, true, true);
    expect(container.info().dmaAvailable).toBe(0);
    // Budget exhausted comes before the range check: ENOSPC even for an IOVA in the MSI hole.
    expect(errnoOf(() => container.map(vaddr, 0xfee00000n, 0x1000n, true, true))).toBe(ERRNO.ENOSPC);
    container.unmap(0x200000n, 0x1000n, false);
    expect(errnoOf(() => container.map(vaddr, 0xfee00000n, 0x1000n, true, true))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => container.map(0x1000n, 0x300000n, 0x1000n, true, true))).toBe(ERRNO.EFAULT);
    expect(simulator.lockedBytes).toBe(0x2000n);
  });

  it('refuses bisecting unmaps, reports unmapped bytes, and unmaps all with FLAG_ALL (kernel-rules.md#no-bisecting-unmaps-in-type1v2)', () => {
    const { container, memory } = type1();
    container.map(memory.address, 0x100000n, 0x2000n, true, true);
    container.map(memory.address + 0x2000n, 0x104000n, 0x1000n, true, true);
    expect(errnoOf(() => container.unmap(0x101000n, 0x1000n, false))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => container.unmap(0x100000n, 0x1000n, false))).toBe(ERRNO.EINVAL);
    expect(container.unmap(0x300000n, 0x1000n, false)).toBe(0n);
    expect(errnoOf(() => container.unmap(0x1000n, 0x1000n, true))).toBe(ERRNO.EINVAL);
    expect(container.unmap(0x100000n, 0x5000n, false)).toBe(0x3000n);
    container.map(memory.address, 0x100000n, 0x2000n, true, true);
    expect(container.unmap(0n, 0n, true)).toBe(0x2000n);
  });

  it('enforces viability and one container per group (kernel-rules.md#attaching-a-group-to-a-container)', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const container = new SimVfioContainer(simulator);
    // The LPC/SATA group has devices bound to lpc_ich, ahci and i801_smbus: not viable.
    const lpc = simulator.group(simulator.device('0000:00:1f.0').group!)!;
    expect(lpc.viable).toBe(false);
    expect(errnoOf(() => container.addGroup(lpc))).toBe(ERRNO.EPERM);
    container.addGroup(simulator.group(3)!);
    expect(errnoOf(() => new SimVfioContainer(simulator).addGroup(simulator.group(3)!))).toBe(ERRNO.EINVAL);
  });

  it('drops every mapping when the last group leaves (kernel-rules.md#detaching-a-group)', () => {
    const { container, memory, simulator, edu } = type1();
    container.map(memory.address, 0x100000n, 0x1000n, true, true);
    container.removeGroup(simulator.group(edu.group!)!);
    expect(container.iommuType).toBeNull();
    expect(simulator.liveMappings()).toBe(0);
    expect(edu.dmaWrite(0x100000n, new Uint8Array(4))).toBe(false);
    expect(simulator.faults.at(-1)?.reason).toBe('blocked');
  });

  it('refuses pinning past RLIMIT_MEMLOCK with ENOMEM (kernel-rules.md#pinning-and-rlimit-memlock)', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3', memlockLimit: 0x1000n });
    const container = new SimVfioContainer(simulator);
    container.addGroup(simulator.vfioGroups()[0]!);
    container.setIommu(3);
    const memory = simulator.memory.allocate(0x2000n);
    expect(errnoOf(() => container.map(memory.address, 0n, 0x2000n, true, true))).toBe(ERRNO.ENOMEM);
    container.map(memory.address, 0n, 0x1000n, true, true);
  });
});

describe('sysfs and groups (kernel-rules.md#sysfs-reserved-regions-and-groups)', () => {
  it('prints reserved_regions as the kernel does, merged per type', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    expect(simulator.group(simulator.device('0000:00:1f.0').group!)!.reservedRegionsFile).toBe(
      '0x0000000000000000 0x0000000000ffffff direct-relaxable\n0x00000000fee00000 0x00000000feefffff msi\n',
    );
    expect(simulator.group(3)!.reservedRegionsFile).toBe('0x00000000fee00000 0x00000000feefffff msi\n');
  });

  it('creates an arm64 device group only when a driver binds it (kernel-rules.md#groups-appear-on-bind-on-arm64)', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3', vfio: [] });
    const edu = simulator.device('0000:00:02.0');
    expect(edu.group).toBeUndefined();
    simulator.bind(edu.address, 'vfio-pci');
    expect(edu.group).toBe(4);
    expect(simulator.group(4)!.reservedRegionsFile).toBe('0x0000000008000000 0x00000000080fffff msi\n');
  });
});

describe('PAMU SDK type-2 backend (kernel-rules.md#pamu-sdk-driver)', () => {
  function pamu() {
    const simulator = createSimulator({ platform: 'p4080' });
    const container = new SimVfioContainer(simulator);
    expect(container.checkExtension(7)).toBe(1);
    expect(container.checkExtension(VFIO_EXTENSION.TYPE1v2_IOMMU)).toBe(0);
    container.addGroup(simulator.group(0)!);
    container.setIommu(7);
    return { simulator, container, domain: container.pamu! };
  }
  const MiB = 1n << 20n;

  it('reports the 64 GiB default geometry and the hardware window maximum before any SET (kernel-rules.md#pamu-default-geometry)', () => {
    const { domain, container } = pamu();
    expect(domain.getAttr(PAMU_ATTRIBUTE.GEOMETRY)).toEqual({ start: 0n, end: (1n << 36n) - 1n });
    expect(domain.getAttr(PAMU_ATTRIBUTE.WINDOWS)).toEqual({ windows: 256 });
    expect(domain.msiBankCount()).toBe(3);
    expect(errnoOf(() => container.info())).toBe(ERRNO.ENOTTY);
  });

  it('accepts bad attributes silently, and the read-back shows it (kernel-rules.md#pamu-attributes-fail-silently)', () => {
    const { domain } = pamu();
    domain.setGeometry(0n, 384n * MiB - 1n); // not a power of two: hidden EINVAL
    expect(domain.getAttr(PAMU_ATTRIBUTE.GEOMETRY)).toEqual({ start: 0n, end: (1n << 36n) - 1n });
    domain.setGeometry(0n, 512n * MiB - 1n);
    domain.setWindows(6); // not a power of two
    expect(domain.getAttr(PAMU_ATTRIBUTE.WINDOWS)).toEqual({ windows: 256 });
    domain.setWindows(8);
    expect(domain.getAttr(PAMU_ATTRIBUTE.WINDOWS)).toEqual({ windows: 8 });
  });

  it('divides by zero on a window count of 0 or a map before windows exist (kernel-rules.md#pamu-window-count-divides-first)', () => {
    const { domain, simulator, container } = pamu();
    const memory = simulator.memory.allocate(64n * MiB, 64n * MiB);
    expect(() => container.map(memory.address, 0n, 64n * MiB, true, true)).toThrow(KernelOops);
    domain.setGeometry(0n, 512n * MiB - 1n);
    expect(() => domain.setWindows(0)).toThrow(KernelOops);
    expect(simulator.oopses).toHaveLength(2);
  });

  it('maps whole windows only, silently dropping the rest, and needs contiguous memory (kernel-rules.md#pamu-maps-whole-windows-only)', () => {
    const { domain, simulator, container } = pamu();
    domain.setGeometry(0n, 512n * MiB - 1n);
    domain.setWindows(8);
    const huge = simulator.memory.allocate(128n * MiB, 64n * MiB);
    const small = simulator.memory.allocate(64n * MiB);
    expect(errnoOf(() => container.map(small.address, 0n, 64n * MiB, true, true))).toBe(ERRNO.EFAULT);
    // 96 MiB: one window mapped, 32 MiB dropped, the whole range recorded, return 0.
    container.map(huge.address, 0n, 96n * MiB, true, true);
    expect(domain.dmaRanges).toEqual([{ iova: 0n, size: 96n * MiB, vaddr: huge.address, read: true, write: true }]);
    expect(domain.translate(0x100n, true).kind).toBe('memory');
    expect(domain.translate(64n * MiB + 0x100n, true)).toEqual({ kind: 'fault', reason: 'unmapped' });
    expect(errnoOf(() => container.map(huge.address, 64n * MiB, 64n * MiB, true, true))).toBe(ERRNO.EBUSY); // recorded overlap
    // A map smaller than a window maps nothing and still answers 0.
    container.map(huge.address, 256n * MiB, 0x1000n, true, true);
    expect(domain.translate(256n * MiB, false)).toEqual({ kind: 'fault', reason: 'unmapped' });
    // Not on a window boundary.
    expect(errnoOf(() => container.map(huge.address, 320n * MiB + 0x1000n, 64n * MiB, true, true))).toBe(ERRNO.EINVAL);
  });

  it('maps MSI banks at the start of the window holding the IOVA and routes the device doorbell (kernel-rules.md#pamu-msi-bank-map)', () => {
    const { domain, simulator, container } = pamu();
    const edu = simulator.devices().find((device) => device.edu)!;
    domain.setGeometry(0n, 512n * MiB - 1n);
    domain.setWindows(8);
    domain.mapMsiBank(0, 0x1000_0123n, true, true); // unaligned: truncated to window 4
    domain.mapMsiBank(1, 0x1000_0000n, true, true); // window in use: hidden EBUSY
    domain.mapMsiBank(7, 0x1400_0000n, true, true); // no such bank: hidden ENODEV
    expect(domain.msiAddressFor(0xf_fe04_4140n)).toBe(0x1000_0140n);
    expect(domain.msiAddressFor(0xf_fe04_5140n)).toBeUndefined();
    // No DMA range yet: translation is off and MSI faults.
    let delivered = 0;
    edu.enableMsi([() => delivered++]);
    expect(edu.raiseMsi(0)).toBe(false);
    const ram = simulator.memory.allocate(64n * MiB, 64n * MiB);
    container.map(ram.address, 0n, 64n * MiB, true, true);
    expect(edu.raiseMsi(0)).toBe(true);
    expect(delivered).toBe(1);
    // Unmap needs the exact IOVA given at map time, not the window base.
    domain.unmapMsiBank(0x1000_0000n);
    expect(domain.msiAddressFor(0xf_fe04_4140n)).toBe(0x1000_0140n);
    domain.unmapMsiBank(0x1000_0123n);
    expect(domain.msiAddressFor(0xf_fe04_4140n)).toBeUndefined();
    // The last DMA range gone turns the domain off.
    container.unmap(0n, 64n * MiB, false);
    expect(domain.translate(0n, false).kind).toBe('fault');
  });
});

describe('iommufd (kernel-rules.md#iommufd)', () => {
  function context(platform: 'x86-vtd' | 'arm-smmuv3' = 'x86-vtd') {
    const simulator = createSimulator({ platform });
    const edu = simulator.devices().find((device) => device.edu)!;
    const iommufd = new SimIommufdContext(simulator);
    const ioas = iommufd.allocateIoas(0);
    return { simulator, edu, iommufd, ioas, memory: simulator.memory.allocate(0x10_0000n) };
  }
  const RW = IOAS_MAP_FLAGS.READABLE | IOAS_MAP_FLAGS.WRITEABLE;

  it('reports one full range before attach and the platform ranges after, with the EMSGSIZE-era values (kernel-rules.md#iova-ranges-two-step-query)', () => {
    const { iommufd, ioas, edu } = context();
    expect(iommufd.iovaRanges(ioas)).toEqual({ ranges: [{ start: 0n, last: (1n << 64n) - 1n }], alignment: 1n });
    const device = iommufd.bind(edu);
    iommufd.attach(device, ioas);
    expect(iommufd.iovaRanges(ioas)).toEqual({
      ranges: [
        { start: 0n, last: 0xfedfffffn },
        { start: 0xfef00000n, last: 0x7fffffffffn },
      ],
      alignment: 0x1000n,
    });
  });

  it('maps fixed and kernel-chosen IOVAs, refuses reserved and overlapping ranges (kernel-rules.md#ioas-map)', () => {
    const { iommufd, ioas, edu, memory } = context();
    iommufd.attach(iommufd.bind(edu), ioas);
    expect(errnoOf(() => iommufd.map(ioas, 0x100, memory.address, 0x1000n, 0n))).toBe(ERRNO.EOPNOTSUPP);
    expect(errnoOf(() => iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA, memory.address, 0x1000n, 0n))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x1000n, 0xfee00000n))).toBe(ERRNO.EINVAL);
    expect(iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x2000n, 0x100000n)).toBe(0x100000n);
    expect(errnoOf(() => iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x1000n, 0x101000n))).toBe(ERRNO.EEXIST);
    // iopt_alloc_iova() never chooses IOVA 0: its search starts at PAGE_SIZE.
    expect(iommufd.map(ioas, RW, memory.address, 0x1000n, 0n)).toBe(0x1000n);
  });

  it('unmaps whole areas only: splitting or nothing there is ENOENT; unmap-all always succeeds (kernel-rules.md#ioas-unmap)', () => {
    const { iommufd, ioas, edu, memory } = context();
    iommufd.attach(iommufd.bind(edu), ioas);
    iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x2000n, 0x100000n);
    expect(errnoOf(() => iommufd.unmap(ioas, 0x100000n, 0x1000n))).toBe(ERRNO.ENOENT);
    expect(errnoOf(() => iommufd.unmap(ioas, 0x200000n, 0x1000n))).toBe(ERRNO.ENOENT);
    expect(errnoOf(() => iommufd.unmap(ioas, 0x100000n, 0n))).toBe(ERRNO.EINVAL);
    expect(iommufd.unmap(ioas, 0x0n, 0x400000n)).toBe(0x2000n);
    expect(iommufd.unmap(ioas, 0n, (1n << 64n) - 1n)).toBe(0n);
  });

  it('allows IOVAs only outside reserved regions, and refuses attaches that would cut them (kernel-rules.md#allow-list)', () => {
    const { iommufd, ioas, edu, memory } = context();
    expect(errnoOf(() => iommufd.allowIovas(ioas, [{ start: 0x1000n, last: 0x1000n }]))).toBe(ERRNO.EINVAL);
    iommufd.allowIovas(ioas, [{ start: 0xfe000000n, last: 0xffffffffn }]);
    const device = iommufd.bind(edu);
    expect(errnoOf(() => iommufd.attach(device, ioas))).toBe(ERRNO.EADDRINUSE);
    iommufd.allowIovas(ioas, []);
    iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x1000n, 0xfee00000n);
    expect(errnoOf(() => iommufd.attach(device, ioas))).toBe(ERRNO.EADDRINUSE);
    iommufd.unmap(ioas, 0xfee00000n, 0x1000n);
    iommufd.attach(device, ioas);
    expect(errnoOf(() => iommufd.allowIovas(ioas, [{ start: 0xfe000000n, last: 0xffffffffn }]))).toBe(ERRNO.EADDRINUSE);
    expect(errnoOf(() => iommufd.destroy(ioas))).toBe(ERRNO.EBUSY);
    expect(errnoOf(() => iommufd.bind(edu))).toBe(ERRNO.EINVAL);
  });

  it('keeps its own IOVA choices inside the allow-list but does not check fixed-IOVA maps against it (io_pagetable.c)', () => {
    const { iommufd, ioas, edu, memory } = context();
    iommufd.attach(iommufd.bind(edu), ioas);
    iommufd.allowIovas(ioas, [{ start: 0x4000_0000n, last: 0x4fff_ffffn }]);
    // iopt_check_iova (FIXED_IOVA) looks at reserved regions and areas only.
    expect(iommufd.map(ioas, IOAS_MAP_FLAGS.FIXED_IOVA | RW, memory.address, 0x1000n, 0x100000n)).toBe(0x100000n);
    // iopt_alloc_iova walks the allowed spans.
    const chosen = iommufd.map(ioas, RW, memory.address, 0x1000n, 0n);
    expect(chosen >= 0x4000_0000n && chosen <= 0x4fff_f000n).toBe(true);
  });
});

describe('iommufd objects (kernel-rules.md#attaching-and-detaching-a-device)', () => {
  it('attaching to an IOAS makes its automatic domain and answers its id; the last detach destroys it', () => {
    // x86-vtd with the host bridge (no driver) and edu bound to vfio-pci: two devices, two groups.
    const simulator = createSimulator({ platform: 'x86-vtd', vfio: ['0000:00:00.0', '0000:00:03.0'] });
    const [bridge, edu] = ['0000:00:00.0', '0000:00:03.0'].map((address) => simulator.devices().find((device) => device.address === address)!);
    const context = new SimIommufdContext(simulator);
    const ioas = context.allocateIoas(0);
    const first = context.bind(edu!);
    expect([ioas, first]).toEqual([1, 2]);
    // The kernel writes the domain's id back into pt_id: the rig's 6.12 guest answered 3 here.
    expect(context.attach(first, ioas)).toBe(3);
    // A second device in the same IOAS shares the automatic domain; attaching by the domain's id works too.
    const second = context.bind(bridge!);
    expect(second).toBe(4);
    expect(context.attach(second, ioas)).toBe(3);
    expect(context.attach(second, 3)).toBe(3);
    // Objects of the wrong kind, unknown ids, and objects in use.
    expect(errnoOf(() => context.attach(second, first))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => context.attach(second, 99))).toBe(ERRNO.ENOENT);
    expect(errnoOf(() => context.destroy(3))).toBe(ERRNO.EBUSY);
    expect(errnoOf(() => context.destroy(first))).toBe(ERRNO.EBUSY);
    expect(errnoOf(() => context.destroy(ioas))).toBe(ERRNO.EBUSY);
    // Moving one device to another IOAS: a new domain there; the old one stays for the other device.
    const other = context.allocateIoas(0);
    expect(other).toBe(5);
    expect(context.attach(second, other)).toBe(6);
    context.detach(first);
    // Domain 3 is gone with its last device: its id is the lowest free one again (xa_alloc).
    expect(errnoOf(() => context.destroy(3))).toBe(ERRNO.ENOENT);
    expect(context.allocateIoas(0)).toBe(3);
    context.destroy(ioas);
    context.close();
  });
});

