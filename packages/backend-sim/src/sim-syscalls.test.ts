// The syscall face spoken in raw bytes, as a libc caller would: the numbers and layouts of
// docs/kernel-rules.md (type1, iommufd, the PAMU SDK driver), and the values the 6.1 guests reported.
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { simSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';

const X86 = (nr: number) => 0x3b00 + nr;
const PPC = (nr: number) => (0x2000_3b00 + nr) >>> 0;

function struct(size: number, little = true, fill?: (view: DataView) => void): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, size, little);
  fill?.(view);
  return { bytes, view };
}

function type1Setup(platform: 'x86-vtd' | 'arm-smmuv3' = 'x86-vtd') {
  const simulator = createSimulator({ platform });
  const sys = simSyscalls(simulator);
  const edu = simulator.devices().find((device) => device.edu)!;
  const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR | SYSCALL_FLAGS.O_CLOEXEC);
  const group = sys.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR);
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  expect(sys.ioctl(group, X86(104), fd)).toBe(0); // GROUP_SET_CONTAINER
  expect(sys.ioctl(container, X86(102), 3)).toBe(0); // SET_IOMMU(TYPE1v2)
  return { simulator, sys, edu, container, group };
}

describe('VFIO container and group through raw ioctls (kernel-rules.md#the-type1-call-order)', () => {
  it('answers API version, extensions and group status', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator);
    const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
    expect(sys.ioctl(container, X86(100), 0)).toBe(0);
    expect(sys.ioctl(container, X86(101), 3)).toBe(1);
    expect(sys.ioctl(container, X86(101), 10)).toBe(0); // UPDATE_VADDR before SET_IOMMU
    expect(sys.ioctl(container, X86(112), struct(24).bytes)).toBe(-ERRNO.EINVAL); // GET_INFO before SET_IOMMU
    expect(sys.ioctl(container, X86(102), 3)).toBe(-ERRNO.EINVAL); // no group yet
    const group = sys.open('/dev/vfio/3', SYSCALL_FLAGS.O_RDWR);
    expect(sys.open('/dev/vfio/3', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.EBUSY);
    expect(sys.open('/dev/vfio/4', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.ENOENT); // no vfio-pci member
    const status = struct(8);
    expect(sys.ioctl(group, X86(103), status.bytes)).toBe(0);
    expect(status.view.getUint32(4, true)).toBe(0x1);
    expect(sys.ioctl(group, X86(103), struct(4).bytes)).toBe(-ERRNO.EINVAL);
    const bad = new Uint8Array(4);
    new DataView(bad.buffer).setInt32(0, 999, true);
    expect(sys.ioctl(group, X86(104), bad)).toBe(-ERRNO.EBADF);
    expect(sys.ioctl(group, X86(106), new TextEncoder().encode('0000:00:03.0\0'))).toBe(-ERRNO.EINVAL); // no container yet
  });

  it('reports GET_INFO with the 6.1 two-pass argsz protocol and the observed cap offsets (kernel-rules.md#the-argsz-growth-protocol)', () => {
    const { sys, container } = type1Setup();
    const first = struct(24);
    expect(sys.ioctl(container, X86(112), first.bytes)).toBe(0);
    expect(first.view.getUint32(0, true)).toBe(116);
    expect(first.view.getUint32(4, true)).toBe(0x3);
    expect(first.view.getUint32(16, true)).toBe(0);
    const second = struct(116);
    expect(sys.ioctl(container, X86(112), second.bytes)).toBe(0);
    const view = second.view;
    expect(view.getBigUint64(8, true)).toBe(0x40201000n);
    expect(view.getUint32(16, true)).toBe(24);
    // MIGRATION @24 -> DMA_AVAIL @56 -> IOVA_RANGE @68, as observed on the q35 guest.
    expect([view.getUint16(24, true), view.getUint32(28, true)]).toEqual([2, 56]);
    expect([view.getUint16(56, true), view.getUint32(60, true), view.getUint32(64, true)]).toEqual([3, 68, 65535]);
    expect([view.getUint16(68, true), view.getUint32(72, true), view.getUint32(76, true)]).toEqual([1, 0, 2]);
    expect([view.getBigUint64(84, true), view.getBigUint64(92, true), view.getBigUint64(100, true), view.getBigUint64(108, true)]).toEqual([
      0n,
      0xfedfffffn,
      0xfef00000n,
      0x7fffffffffn,
    ]);
  });

  it('maps, refuses a second identical map with EEXIST, and writes the unmapped size back (observed)', () => {
    const { sys, container, simulator } = type1Setup();
    const vaddr = sys.mmap(0x2000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = struct(32, true, (view) => {
      view.setUint32(4, 3, true);
      view.setBigUint64(8, vaddr, true);
      view.setBigUint64(16, 0x100000n, true);
      view.setBigUint64(24, 0x2000n, true);
    });
    expect(sys.ioctl(container, X86(113), map.bytes)).toBe(0);
    expect(sys.ioctl(container, X86(113), map.bytes)).toBe(-ERRNO.EEXIST);
    map.view.setUint32(0, 31, true);
    expect(sys.ioctl(container, X86(113), map.bytes)).toBe(-ERRNO.EINVAL); // argsz < 32
    const unmap = struct(24, true, (view) => {
      view.setBigUint64(8, 0x100000n, true);
      view.setBigUint64(16, 0x2000n, true);
    });
    expect(sys.ioctl(container, X86(114), unmap.bytes)).toBe(0);
    expect(unmap.view.getBigUint64(16, true)).toBe(0x2000n);
    expect(simulator.liveMappings()).toBe(0);
  });

  it('gives a device fd with the edu figures, MSI through an eventfd, and DMA through BAR0', () => {
    const { sys, container, group, edu, simulator } = type1Setup();
    expect(sys.ioctl(group, X86(106), new TextEncoder().encode('0000:00:09.0\0'))).toBe(-ERRNO.ENODEV);
    const device = sys.ioctl(group, X86(106), new TextEncoder().encode(`${edu.address}\0`));
    expect(device).toBeGreaterThan(0);
    const info = struct(20);
    expect(sys.ioctl(device, X86(107), info.bytes)).toBe(0);
    expect([info.view.getUint32(4, true), info.view.getUint32(8, true), info.view.getUint32(12, true)]).toEqual([0x2, 9, 5]);
    const region = struct(32);
    expect(sys.ioctl(device, X86(108), region.bytes)).toBe(0);
    expect([region.view.getUint32(4, true), region.view.getBigUint64(16, true)]).toEqual([0x7, 0x100000n]);
    const irq = struct(16, true, (view) => view.setUint32(8, 1, true));
    expect(sys.ioctl(device, X86(109), irq.bytes)).toBe(0);
    expect([irq.view.getUint32(4, true), irq.view.getUint32(12, true)]).toEqual([0x9, 1]);
    // Bus master on (command register bits 1 and 2), then MSI on an eventfd.
    const config = BigInt(7) << 40n;
    expect(sys.pwrite(device, new Uint8Array([0x06, 0x00]), config + 4n)).toBe(2);
    const eventfd = sys.eventfd(0, SYSCALL_FLAGS.EFD_NONBLOCK | SYSCALL_FLAGS.EFD_CLOEXEC);
    const irqs = struct(24, true, (view) => {
      view.setUint32(4, 0x4 | 0x20, true);
      view.setUint32(8, 1, true);
      view.setUint32(16, 1, true);
      view.setInt32(20, eventfd, true);
    });
    expect(sys.ioctl(device, X86(110), irqs.bytes)).toBe(0);
    // Map a buffer, put bytes in the edu buffer and DMA them to RAM with an interrupt when done.
    const vaddr = sys.mmap(0x1000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = struct(32, true, (view) => {
      view.setUint32(4, 3, true);
      view.setBigUint64(8, vaddr, true);
      view.setBigUint64(16, 0x200000n, true);
      view.setBigUint64(24, 0x1000n, true);
    });
    expect(sys.ioctl(container, X86(113), map.bytes)).toBe(0);
    const write64 = (offset: number, value: bigint) => {
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, value, true);
      expect(sys.pwrite(device, bytes, BigInt(offset))).toBe(8);
    };
    const host = sys.memory(vaddr, 0x1000);
    host.set([1, 2, 3, 4], 0x10);
    write64(0x80, 0x200010n); // RAM -> device buffer
    write64(0x88, 0x40000n);
    write64(0x90, 4n);
    write64(0x98, 1n);
    write64(0x80, 0x40000n); // device buffer -> RAM, interrupt when done
    write64(0x88, 0x200800n);
    write64(0x90, 4n);
    write64(0x98, 1n | 2n | 4n);
    expect([...host.subarray(0x800, 0x804)]).toEqual([1, 2, 3, 4]);
    const counter = new Uint8Array(8);
    expect(sys.read(eventfd, counter)).toBe(8);
    expect(new DataView(counter.buffer).getBigUint64(0, true)).toBe(1n);
    expect(sys.read(eventfd, counter)).toBe(-ERRNO.EAGAIN);
    // DMA to an unmapped IOVA faults and leaves memory untouched.
    write64(0x88, 0x300000n);
    write64(0x98, 1n | 2n);
    expect(simulator.faults.at(-1)).toMatchObject({ iova: 0x300000n, access: 'write', reason: 'unmapped' });
    const id = new Uint8Array(4);
    expect(sys.pread(device, id, 0n)).toBe(4);
    expect(new DataView(id.buffer).getUint32(0, true)).toBe(0x010000ed);
    expect(sys.ioctl(group, X86(105), 0)).toBe(-ERRNO.EBUSY); // device fd still open
    expect(sys.close(device)).toBe(0);
    expect(sys.ioctl(group, X86(105), 0)).toBe(0);
    for (const fd of [eventfd, group, container]) expect(sys.close(fd)).toBe(0);
    expect(sys.openFiles).toBe(0);
    expect(simulator.openHandles()).toBe(0);
  });
});

describe('iommufd and the VFIO cdev through raw ioctls (kernel-rules.md#iommufd)', () => {
  it('binds, attaches, reads ranges with the EMSGSIZE two-step, maps and unmaps', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator);
    const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
    const alloc = struct(12);
    expect(sys.ioctl(iommufd, X86(0x81), alloc.bytes)).toBe(0);
    const ioas = alloc.view.getUint32(8, true);
    expect(sys.readDir('/sys/bus/pci/devices/0000:00:03.0/vfio-dev')).toEqual(['vfio0']);
    const device = sys.open('/dev/vfio/devices/vfio0', SYSCALL_FLAGS.O_RDWR);
    expect(sys.ioctl(device, X86(107), struct(20).bytes)).toBe(-ERRNO.EINVAL); // before bind
    const bind = struct(16, true, (view) => view.setInt32(8, iommufd, true));
    expect(sys.ioctl(device, X86(118), bind.bytes)).toBe(0);
    expect(sys.open('/dev/vfio/3', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.EBUSY);
    const attach = struct(12, true, (view) => view.setUint32(8, ioas, true));
    expect(sys.ioctl(device, X86(119), attach.bytes)).toBe(0);
    const ranges = struct(32, true, (view) => view.setUint32(4, ioas, true));
    expect(sys.ioctl(iommufd, X86(0x84), ranges.bytes)).toBe(-ERRNO.EMSGSIZE);
    expect(ranges.view.getUint32(8, true)).toBe(2);
    const slots = new Uint8Array(32);
    ranges.view.setBigUint64(16, sys.addressOf(slots), true);
    expect(sys.ioctl(iommufd, X86(0x84), ranges.bytes)).toBe(0);
    expect(ranges.view.getBigUint64(24, true)).toBe(0x1000n);
    const slotView = new DataView(slots.buffer);
    expect([slotView.getBigUint64(0, true), slotView.getBigUint64(8, true), slotView.getBigUint64(16, true), slotView.getBigUint64(24, true)]).toEqual([
      0n,
      0xfedfffffn,
      0xfef00000n,
      0x7fffffffffn,
    ]);
    const vaddr = sys.mmap(0x2000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = struct(40, true, (view) => {
      view.setUint32(4, 0x2 | 0x4, true); // kernel-chosen IOVA
      view.setUint32(8, ioas, true);
      view.setBigUint64(16, vaddr, true);
      view.setBigUint64(24, 0x2000n, true);
    });
    expect(sys.ioctl(iommufd, X86(0x85), map.bytes)).toBe(0);
    const iova = map.view.getBigUint64(32, true);
    const unmap = struct(24, true, (view) => {
      view.setUint32(4, ioas, true);
      view.setBigUint64(8, iova, true);
      view.setBigUint64(16, 0x1000n, true);
    });
    expect(sys.ioctl(iommufd, X86(0x86), unmap.bytes)).toBe(-ERRNO.ENOENT); // would split the area
    unmap.view.setBigUint64(16, 0x2000n, true);
    expect(sys.ioctl(iommufd, X86(0x86), unmap.bytes)).toBe(0);
    expect(unmap.view.getBigUint64(16, true)).toBe(0x2000n);
    const option = struct(24, true, (view) => {
      view.setUint32(4, 2, true);
      view.setUint16(8, 1, true);
    });
    expect(sys.ioctl(iommufd, X86(0x87), option.bytes)).toBe(-ERRNO.EOPNOTSUPP); // SW_MSI_START: not merged
    const oversized = struct(48, true, (view) => view.setUint32(40, 1, true));
    expect(sys.ioctl(iommufd, X86(0x81), oversized.bytes)).toBe(-ERRNO.E2BIG);
    for (const fd of [device, iommufd]) expect(sys.close(fd)).toBe(0);
    expect(simulator.openHandles()).toBe(0);
  });
});

describe('PAMU type 2 through raw ioctls: PowerPC numbers, big-endian structs (kernel-rules.md#pamu-ioctls)', () => {
  it('takes the PowerPC encoding only, and reproduces the silent SET_ATTR', () => {
    const simulator = createSimulator({ platform: 'p4080' });
    const sys = simSyscalls(simulator);
    const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
    // An x86 number on PowerPC is no request the container knows: EINVAL while no IOMMU driver is set
    // (container.c vfio_fops_unl_ioctl(): `ret = -EINVAL`), ENOTTY from the driver after.
    expect(sys.ioctl(container, X86(101), 7)).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, PPC(101), 7)).toBe(1);
    expect(sys.ioctl(container, PPC(101), 2)).toBe(0);
    const group = sys.open('/dev/vfio/0', SYSCALL_FLAGS.O_RDWR);
    const fd = new Uint8Array(4);
    new DataView(fd.buffer).setInt32(0, container, false);
    expect(sys.ioctl(group, PPC(104), fd)).toBe(0);
    expect(sys.ioctl(container, PPC(102), 7)).toBe(0);
    expect(sys.ioctl(container, PPC(112), struct(24, false).bytes)).toBe(-ERRNO.ENOTTY); // no GET_INFO
    expect(sys.ioctl(container, PPC(117), 0)).toBe(3); // MSI bank count as the return value
    const attr = (attribute: number, fill: (view: DataView) => void) =>
      struct(32, false, (view) => {
        view.setUint32(8, attribute, false);
        fill(view);
      });
    const badGeometry = attr(0, (view) => {
      view.setBigUint64(16, 0n, false);
      view.setBigUint64(24, 0x17ffffffn, false); // 384 MiB: not a power of two
    });
    expect(sys.ioctl(container, PPC(116), badGeometry.bytes)).toBe(0); // "success"
    const readBack = attr(0, () => undefined);
    expect(sys.ioctl(container, PPC(115), readBack.bytes)).toBe(0);
    expect(readBack.view.getBigUint64(24, false)).toBe((1n << 36n) - 1n); // the domain kept its default
    expect(sys.ioctl(container, PPC(116), struct(16, false).bytes)).toBe(-ERRNO.EINVAL); // argsz < 32
  });
});

describe('sysfs (kernel-rules.md#reserved-regions-file-format)', () => {
  it('lists groups, reserved regions, links, and binds through driver_override', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3', vfio: [] });
    const sys = simSyscalls(simulator);
    expect(sys.readDir('/sys/kernel/iommu_groups')).toEqual(['0', '1', '2', '3']);
    expect(sys.exists('/sys/bus/pci/devices/0000:00:02.0/iommu_group')).toBe(false);
    sys.writeFile('/sys/bus/pci/devices/0000:00:02.0/driver_override', 'vfio-pci\n');
    sys.writeFile('/sys/bus/pci/drivers_probe', '0000:00:02.0');
    // virt's host bridge is a platform device: five levels up to /sys, as the rig's arm64 guest answered (kernel-rules.md#sysfs-device-links).
    expect(sys.readLink('/sys/bus/pci/devices/0000:00:02.0/iommu_group')).toBe('../../../../../kernel/iommu_groups/4');
    expect(sys.readLink('/sys/bus/pci/devices/0000:00:02.0/driver').endsWith('/vfio-pci')).toBe(true);
    expect(sys.readFile('/sys/kernel/iommu_groups/4/reserved_regions')).toBe('0x0000000008000000 0x00000000080fffff msi\n');
    expect(sys.readDir('/sys/kernel/iommu_groups/4/devices')).toEqual(['0000:00:02.0']);
    expect(sys.readFile('/sys/bus/pci/devices/0000:00:02.0/vendor')).toBe('0x1234\n');
    expect(sys.readDir('/dev/vfio')).toEqual(['vfio', '4', 'devices']);
    sys.writeFile('/sys/bus/pci/devices/0000:00:02.0/driver/unbind', '0000:00:02.0');
    expect(simulator.device('0000:00:02.0').driver).toBeNull();
    sys.writeFile('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit', '100');
    expect(sys.readFile('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit')).toBe('100\n');
    expect(() => sys.readFile('/sys/kernel/iommu_groups/9/reserved_regions')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});

describe('a file stays alive while another file holds a reference on it', () => {
  it('keeps a closed group fd in its container, with its mappings, until the last device fd from it closes (kernel-rules.md#detaching-a-group)', () => {
    const { simulator, sys, edu, container, group } = type1Setup();
    const vaddr = sys.mmap(0x1000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = struct(32, true, (view) => {
      view.setUint32(4, 3, true);
      view.setBigUint64(8, vaddr, true);
      view.setBigUint64(16, 0x100000n, true);
      view.setBigUint64(24, 0x1000n, true);
    });
    expect(sys.ioctl(container, X86(113), map.bytes)).toBe(0);
    const device = sys.ioctl(group, X86(106), new TextEncoder().encode(`${edu.address}\0`)); // GROUP_GET_DEVICE_FD
    expect(device).toBeGreaterThan(0);
    // The device fd holds the group file: closing the group fd does not release it.
    expect(sys.close(group)).toBe(0);
    expect(edu.domain).toBeDefined();
    expect(edu.dmaWrite(0x100000n, new Uint8Array([7]))).toBe(true);
    expect(simulator.liveMappings()).toBe(1);
    expect(sys.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.EBUSY);
    // The last device fd closing releases the group file: out of the container, the last group out.
    expect(sys.close(device)).toBe(0);
    expect(edu.domain).toBeUndefined();
    expect(simulator.liveMappings()).toBe(0);
    const again = sys.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR);
    expect(again).toBeGreaterThan(0);
    expect(sys.close(again)).toBe(0);
    expect(sys.close(container)).toBe(0);
    expect(simulator.openHandles()).toBe(0);
  });
});
