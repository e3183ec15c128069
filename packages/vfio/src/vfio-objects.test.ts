// The objects over the simulator's syscall face (which speaks the real ioctl bytes), and the libc
// syscalls on this machine for what needs no VFIO device.
import { execFileSync } from 'node:child_process';
import { ERRNO, IoasError, SYSCALL_FLAGS } from '@ioas/core';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { describe, expect, it } from 'vitest';
import { allocateDmaMemory } from './dma-memory.js';
import { IommufdContext } from './iommufd-context.js';
import { VfioIoctls } from './ioctl.js';
import { libcSyscalls } from './libc-syscalls.js';
import { Sysfs } from './sysfs.js';
import { VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE, VFIO_PCI_BAR0_REGION_INDEX, VFIO_TYPE1v2_IOMMU } from './uapi/vfio.js';
import { VfioContainer } from './vfio-container.js';
import { VfioDevice } from './vfio-device.js';
import { VfioGroup } from './vfio-group.js';

function onSim(platform: 'x86-vtd' | 'arm-smmuv3' = 'x86-vtd') {
  const simulator = createSimulator({ platform });
  const syscalls = simSyscalls(simulator);
  return { simulator, syscalls, ioctls: new VfioIoctls({ syscalls, littleEndian: true, arch: 'generic' }), sysfs: new Sysfs(syscalls) };
}

describe('VFIO objects over the simulator syscall face', () => {
  it('follows the minimal call order and reads the capability chain (kernel-rules.md#the-type1-call-order)', () => {
    const { ioctls, sysfs, simulator } = onSim('arm-smmuv3');
    const edu = simulator.devices().find((device) => device.edu)!;
    const groupId = sysfs.deviceGroup(edu.address)!;
    expect(sysfs.reservedRegions(groupId)).toEqual([{ start: 0x8000000n, last: 0x80fffffn, kind: 'msi', source: 'sysfs', origin: `/sys/kernel/iommu_groups/${groupId}/reserved_regions` }]);
    const container = VfioContainer.open(ioctls);
    expect(container.checkExtension(VFIO_TYPE1v2_IOMMU)).toBe(true);
    const group = VfioGroup.open(ioctls, groupId);
    expect(group.status()).toEqual({ viable: true, containerSet: false });
    group.setContainer(container);
    container.setIommu(VFIO_TYPE1v2_IOMMU);
    expect(container.info()).toEqual({
      ioPageSizes: 0x40201000n,
      dmaAvailable: 65535,
      ranges: [
        { start: 0n, last: 0x7ffffffn },
        { start: 0x8100000n, last: 0xffffffffffffn },
      ],
      // vfio_iommu_migration_build_caps(): the smallest IO page size only, DIRTY_BITMAP_SIZE_MAX.
      migration: { flags: 0, pageSizes: 0x1000n, maxBitmapBytes: 0x1000_0000n },
    });
    const memory = allocateDmaMemory(ioctls.syscalls, 0x200000n, 0x200000n);
    container.mapDma(memory.address, 0x200000n, 0x200000n, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    expect(container.info().dmaAvailable).toBe(65534);
    expect(() => container.mapDma(memory.address, 0x200000n, 0x200000n, 3)).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EEXIST, ioctl: 'VFIO_IOMMU_MAP_DMA' }));
    // Device DMA lands in the memory's live view.
    expect(edu.dmaWrite(0x200010n, new Uint8Array([9, 8, 7]))).toBe(true);
    expect([...memory.bytes.subarray(0x10, 0x13)]).toEqual([9, 8, 7]);
    expect(container.unmapDma(0x200000n, 0x200000n)).toBe(0x200000n);
    const device = new VfioDevice(ioctls, group.deviceFd(edu.address), edu.address);
    expect(device.info()).toEqual({ flags: 0x2, numRegions: 9, numIrqs: 5 });
    expect(device.region(VFIO_PCI_BAR0_REGION_INDEX)).toMatchObject({ size: 0x100000n, flags: 0x7 });
    expect(device.read32(VFIO_PCI_BAR0_REGION_INDEX, 0n)).toBe(0x010000ed);
    device.enableBusMaster();
    const [eventfd] = device.enableMsi(1);
    device.write32(VFIO_PCI_BAR0_REGION_INDEX, 0x60n, 1); // edu: raise an interrupt
    expect(VfioDevice.readEventfd(ioctls, eventfd!)).toBe(1n);
    expect(VfioDevice.readEventfd(ioctls, eventfd!)).toBe(0n);
    expect(() => device.reset()).toThrow(expect.objectContaining({ code: 'unsupported' }));
    device.disableIrqs();
    device.close();
    group.close();
    container.close();
    memory.free();
    expect(simulator.openHandles()).toBe(0);
  });

  it('unmaps the regions it mapped when it closes: a mapping would keep the device, and its group, busy', () => {
    const { simulator, syscalls: sim } = onSim();
    // The simulator cannot map a BAR (MMIO is not memory to it): stand an anonymous mapping in for
    // one, and watch what the device does with it.
    const calls: string[] = [];
    const syscalls = new Proxy(sim, {
      get(target, key) {
        if (key === 'mmap') {
          return (length: bigint, prot: number, flags: number, fd: number, offset: bigint) => {
            if (fd < 0) return target.mmap(length, prot, flags, fd, offset);
            calls.push(`mmap fd ${fd} offset 0x${offset.toString(16)}`);
            return target.mmap(length, prot, SYSCALL_FLAGS.MAP_PRIVATE | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
          };
        }
        if (key === 'munmap') {
          return (address: bigint, length: bigint) => {
            calls.push(`munmap 0x${length.toString(16)} bytes`);
            return target.munmap(address, length);
          };
        }
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const ioctls = new VfioIoctls({ syscalls, littleEndian: true, arch: 'generic' });
    const edu = simulator.devices().find((device) => device.edu)!;
    const container = VfioContainer.open(ioctls);
    const group = VfioGroup.open(ioctls, edu.group!);
    group.setContainer(container);
    container.setIommu(VFIO_TYPE1v2_IOMMU);
    const device = new VfioDevice(ioctls, group.deviceFd(edu.address), edu.address);
    device.mmap(VFIO_PCI_BAR0_REGION_INDEX);
    expect(calls).toEqual([`mmap fd ${device.fd} offset 0x0`]);
    device.close();
    expect(calls).toEqual([`mmap fd ${device.fd} offset 0x0`, 'munmap 0x100000 bytes']);
    device.close();
    expect(calls).toHaveLength(2);
    group.close();
    container.close();
  });

  it('disables only the IRQ index it enabled: the kernel answers EINVAL to disabling one that is not on (vfio_pci_intrs.c vfio_pci_set_msi_trigger)', () => {
    const { ioctls, simulator } = onSim();
    const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!;
    const container = VfioContainer.open(ioctls);
    const group = VfioGroup.open(ioctls, edu.group!);
    group.setContainer(container);
    container.setIommu(VFIO_TYPE1v2_IOMMU);
    const device = new VfioDevice(ioctls, group.deviceFd(edu.address), edu.address);
    const calls: number[] = [];
    const setIrqs = ioctls.deviceSetIrqs.bind(ioctls);
    ioctls.deviceSetIrqs = (fd, flags, index, start, fds) => {
      calls.push(flags);
      setIrqs(fd, flags, index, start, fds);
    };
    // Nothing enabled: nothing asked of the kernel (which would refuse with EINVAL).
    device.disableIrqs();
    expect(calls).toEqual([]);
    // 0 vectors (the kernel's ERANGE) is refused before any eventfd is made.
    const open = simulator.openHandles();
    expect(() => device.enableMsi(0)).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(simulator.openHandles()).toBe(open);
    device.enableMsi(1);
    expect(edu.msiVectors).toBe(1);
    device.disableIrqs();
    expect(edu.msiVectors).toBe(0);
    device.disableIrqs(); // twice: the second is a no-op, not EINVAL
    expect(calls).toEqual([0x24, 0x21]);
    device.close();
    group.close();
    container.close();
  });

  it('takes a second group into a live container and out again (docs/kernel-rules.md#detaching-a-group)', () => {
    const { ioctls, simulator } = onSim();
    const edu = simulator.devices().find((device) => device.edu)!;
    simulator.bind('0000:00:04.0', null);
    const other = simulator.bind('0000:00:04.0', 'vfio-pci');
    const container = VfioContainer.open(ioctls);
    const first = VfioGroup.open(ioctls, edu.group!);
    first.setContainer(container);
    container.setIommu(VFIO_TYPE1v2_IOMMU);
    const memory = allocateDmaMemory(ioctls.syscalls, 0x1000n);
    container.mapDma(memory.address, 0x1_0000_0000n, 0x1000n, VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    // The container has its IOMMU: the second group is attached to it at once, the mapping kept.
    const second = VfioGroup.open(ioctls, other.group!);
    expect(second.status()).toEqual({ viable: true, containerSet: false });
    second.setContainer(container);
    expect(second.inContainer).toBe(true);
    expect(second.status()).toEqual({ viable: true, containerSet: true });
    expect(container.info().dmaAvailable).toBe(65534);
    expect(other.dmaWrite(0x1_0000_0000n, new Uint8Array([4, 5]))).toBe(true);
    expect([...memory.bytes.subarray(0, 2)]).toEqual([4, 5]);
    // A device fd of the group keeps it in: EBUSY until it closes.
    const device = new VfioDevice(ioctls, second.deviceFd(other.address), other.address);
    expect(() => second.unsetContainer()).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EBUSY, ioctl: 'VFIO_GROUP_UNSET_CONTAINER' }));
    expect(second.inContainer).toBe(true);
    device.close();
    second.unsetContainer();
    expect(second.inContainer).toBe(false);
    expect(second.status()).toEqual({ viable: true, containerSet: false });
    expect(other.dmaWrite(0x1_0000_0000n, new Uint8Array([6]))).toBe(false);
    // Out of every container, UNSET is EINVAL; the mapping stays with the group left.
    expect(() => second.unsetContainer()).toThrow(expect.objectContaining({ errno: ERRNO.EINVAL }));
    expect(edu.dmaWrite(0x1_0000_0000n, new Uint8Array([7]))).toBe(true);
    expect(container.info().dmaAvailable).toBe(65534);
    second.close();
    first.close();
    container.close();
    memory.free();
    expect(simulator.openHandles()).toBe(0);
  });

  it('drives an IOAS through the cdev: ranges two-step, allow-list, fixed and kernel-chosen maps, copy', () => {
    const { ioctls, sysfs, simulator } = onSim();
    const edu = simulator.devices().find((device) => device.edu)!;
    const context = IommufdContext.open(ioctls);
    const ioas = context.allocateIoas();
    expect(context.iovaRanges(ioas)).toEqual({ ranges: [{ start: 0n, last: (1n << 64n) - 1n }], alignment: 1n });
    const device = context.bindDevice(`/dev/vfio/devices/${sysfs.deviceCdev(edu.address)}`, edu.address);
    device.attach(ioas);
    expect(context.iovaRanges(ioas).ranges).toHaveLength(2);
    context.allowIovas(ioas, [{ start: 0x100000n, last: 0x1fffffn }]);
    const memory = allocateDmaMemory(ioctls.syscalls, 0x4000n);
    expect(context.map(ioas, memory.address, 0x2000n, undefined, { read: true, write: true })).toBe(0x100000n);
    expect(context.map(ioas, memory.address + 0x2000n, 0x2000n, 0x300000n, { read: true, write: false })).toBe(0x300000n);
    const second = context.allocateIoas();
    expect(context.copy(second, ioas, 0x2000n, 0x100000n, 0x500000n, { read: true, write: true })).toBe(0x500000n);
    expect(() => context.unmap(ioas, 0x100000n, 0x1000n)).toThrow(expect.objectContaining({ errno: ERRNO.ENOENT }));
    expect(context.unmap(ioas, 0x100000n, 0x2000n)).toBe(0x2000n);
    expect(() => context.destroy(ioas)).toThrow(expect.objectContaining({ errno: ERRNO.EBUSY }));
    device.detach();
    device.close();
    context.close();
    expect(simulator.openHandles()).toBe(0);
  });

  it('detaches a device from its IOAS and attaches it again while bound, the mappings kept', () => {
    const { ioctls, sysfs, simulator } = onSim('arm-smmuv3');
    const edu = simulator.devices().find((device) => device.edu)!;
    const context = IommufdContext.open(ioctls);
    const ioas = context.allocateIoas();
    const device = context.bindDevice(`/dev/vfio/devices/${sysfs.deviceCdev(edu.address)}`, edu.address);
    const domain = device.attach(ioas);
    const attached = context.iovaRanges(ioas);
    const memory = allocateDmaMemory(ioctls.syscalls, 0x1000n);
    context.map(ioas, memory.address, 0x1000n, 0x1_0000_0000n, { read: true, write: true });
    device.detach();
    // Detached, the device blocks DMA and no longer narrows the IOAS's ranges.
    expect(edu.dmaWrite(0x1_0000_0000n, new Uint8Array([1]))).toBe(false);
    expect(context.iovaRanges(ioas).ranges).toEqual([{ start: 0n, last: (1n << 64n) - 1n }]);
    expect(device.attach(ioas)).toBe(domain);
    expect(context.iovaRanges(ioas)).toEqual(attached);
    expect(edu.dmaWrite(0x1_0000_0000n, new Uint8Array([2]))).toBe(true);
    expect(memory.bytes[0]).toBe(2);
    device.close();
    context.close();
    expect(simulator.openHandles()).toBe(0);
  });

  it('binds a device to vfio-pci through driver_override and back', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3', vfio: [] });
    const sysfs = new Sysfs(simSyscalls(simulator));
    expect(sysfs.deviceGroup('0000:00:02.0')).toBeUndefined();
    sysfs.bindVfio('0000:00:02.0');
    expect(sysfs.device('0000:00:02.0')).toEqual({ address: '0000:00:02.0', vendor: 0x1234, device: 0x11e8, driver: 'vfio-pci', group: 4 });
    expect(sysfs.groups()).toEqual([0, 1, 2, 3, 4]);
    sysfs.unbindVfio('0000:00:02.0');
    expect(sysfs.deviceDriver('0000:00:02.0')).toBeNull();
  });
});

describe('libc syscalls on this machine', () => {
  it('reports errno as -errno, maps memory with a live view, and passes eventfd counters', () => {
    const syscalls = libcSyscalls();
    expect(syscalls.open('/nonexistent/ioas', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.ENOENT);
    const memory = allocateDmaMemory(syscalls, 0x2000n);
    memory.bytes[5] = 42;
    expect(syscalls.memory(memory.address, 8)[5]).toBe(42);
    memory.free();
    const eventfd = syscalls.eventfd(0, SYSCALL_FLAGS.EFD_NONBLOCK | SYSCALL_FLAGS.EFD_CLOEXEC);
    const ioctls = new VfioIoctls({ syscalls });
    expect(VfioDevice.readEventfd(ioctls, eventfd)).toBe(0n);
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 3n, ioctls.little);
    expect(syscalls.write(eventfd, one)).toBe(8);
    expect(VfioDevice.readEventfd(ioctls, eventfd)).toBe(3n);
    expect(syscalls.close(eventfd)).toBe(0);
    expect(syscalls.close(eventfd)).toBe(-ERRNO.EBADF);
    // /dev/vfio does not exist on these machines (docs/kernel-rules.md#the-rig-runs-without-kvm): a clear kernel error.
    expect(() => VfioContainer.open(ioctls)).toThrow(IoasError);
    // A huge page request that the machine has no hugepages for fails with a typed error naming it.
    expect(() => allocateDmaMemory(syscalls, 0x40000000n, 0x40000000n)).toThrow(/hugepages/);
  });

  it('loads koffi only when a libc call is made: importing core, the simulator and vfio loads no native code', () => {
    const script = `
      const loaded = () => process.report.getReport().sharedObjects.some((path) => path.includes('koffi'));
      await import('@ioas/core'); await import('@ioas/backend-sim'); const vfio = await import('@ioas/vfio');
      const before = loaded();
      vfio.libcSyscalls().open('/nonexistent', 0);
      console.log(JSON.stringify({ before, after: loaded() }));`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', cwd: import.meta.dirname });
    expect(JSON.parse(output)).toEqual({ before: false, after: true });
  });
});

describe('VfioIoctls request numbers', () => {
  it('computes them from the architecture and lets a profile name its own', () => {
    const calls: number[] = [];
    const syscalls = { ioctl: (_fd: number, request: number) => (calls.push(request), 0) } as unknown as ConstructorParameters<typeof VfioIoctls>[0]['syscalls'];
    const powerpc = new VfioIoctls({ syscalls, arch: 'powerpc' });
    expect(powerpc.number('VFIO_CHECK_EXTENSION')).toBe(0x20003b65);
    const custom = new VfioIoctls({ syscalls, arch: 'generic', numbers: { VFIO_SET_IOMMU: 0x20003b66 } });
    expect(custom.number('VFIO_SET_IOMMU')).toBe(0x20003b66);
    expect(custom.number('VFIO_CHECK_EXTENSION')).toBe(0x3b65);
    custom.setIommu(3, 2);
    expect(calls).toEqual([0x20003b66]);
  });
});
