import { Container, IoasError } from '@ioas/core';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { describe, expect, it } from 'vitest';
import { allocateDmaMemory } from '@ioas/vfio';
import { smmu } from './smmu-backend.js';

const onSim = (platform: 'x86-vtd' | 'arm-smmuv3', options: Parameters<typeof createSimulator>[0] extends infer T ? Partial<T> : never = {}) => {
  const simulator = createSimulator({ platform, ...options });
  const syscalls = simSyscalls(simulator);
  return { simulator, syscalls };
};

describe('smmu backend specifics (over the simulator syscall face)', () => {
  it('chooses iommufd automatically when /dev/iommu and the cdev exist, type1 when asked', async () => {
    const { syscalls } = onSim('x86-vtd');
    const auto = await Container.open({ backend: smmu({ syscalls, arch: 'generic' }), groups: [3] });
    expect(auto.capabilities.windows).toBe('kernel-allow-list');
    auto.close();
    const type1 = await Container.open({ backend: smmu({ syscalls, interface: 'type1', arch: 'generic' }), groups: [3] });
    expect(type1.capabilities).toMatchObject({ windows: 'sdk', mappingBudget: 65535, msi: 'fixed' });
    type1.close();
    await expect(smmu({ syscalls, interface: 'type1' }).probe()).resolves.toMatchObject({ available: true });
    expect(() => smmu({ syscalls, interface: 'bogus' as never })).toThrow(/auto, type1 or iommufd/);
  });

  it('reports the kernel-managed MSI window on arm64 and the fixed range on x86', async () => {
    const arm = onSim('arm-smmuv3');
    const container = await Container.open({ backend: smmu({ syscalls: arm.syscalls, interface: 'type1' }), groups: [4] });
    expect(container.capabilities.msi).toBe('kernel-managed');
    expect(container.msi.plan().doorbells[0]!.iova).toEqual({ start: 0x8000000n, last: 0x80fffffn });
    container.close();
  });

  it('names the driver that makes a group non-viable, and leaks nothing', async () => {
    const { syscalls, simulator } = onSim('x86-vtd');
    simulator.bind('0000:00:1f.0', null);
    simulator.bind('0000:00:1f.0', 'vfio-pci'); // the rest of the group stays on ahci and i801_smbus
    const error = await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [7] }).catch((caught: unknown) => caught);
    expect(IoasError.isInstance(error) && error.code).toBe('not-viable');
    expect((error as Error).message).toMatch(/group 7 is not viable: 0000:00:1f.2 is bound to ahci, 0000:00:1f.3 is bound to i801_smbus/);
    expect(simulator.openHandles()).toBe(0);
  });

  it('hands out device fds of open containers on both interfaces', async () => {
    for (const kernelInterface of ['type1', 'iommufd'] as const) {
      const { syscalls, simulator } = onSim('x86-vtd');
      const backend = smmu({ syscalls, interface: kernelInterface });
      const container = await Container.open({ backend, groups: [3] });
      const device = backend.openDevice('0000:00:03.0');
      expect(device.info().numRegions).toBe(9);
      expect(() => backend.openDevice('0000:00:02.0')).toThrow(/no open smmu container/);
      device.close();
      container.close();
      expect(simulator.openHandles()).toBe(0);
    }
  });

  it('explains a missing /dev/vfio in probe()', async () => {
    const { syscalls } = onSim('x86-vtd');
    const missing = Object.assign(Object.create(syscalls) as typeof syscalls, { exists: (path: string) => !path.startsWith('/dev/') && syscalls.exists(path) });
    await expect(smmu({ syscalls: missing }).probe()).resolves.toEqual({ available: false, reason: expect.stringMatching(/\/dev\/vfio\/vfio is missing/) });
  });
});

describe('smmu backend: what open asks the kernel', () => {
  /** The simulator's syscall face, counting ioctls by their number (type ';' and nr: the low 16 bits on every encoding). */
  const counting = (platform: 'x86-vtd' | 'arm-smmuv3') => {
    const { simulator, syscalls } = onSim(platform);
    const counts = new Map<number, number>();
    const proxy = Object.assign(Object.create(syscalls) as typeof syscalls, {
      ioctl: (fd: number, request: number, argument: number | Uint8Array) => {
        counts.set(request & 0xffff, (counts.get(request & 0xffff) ?? 0) + 1);
        return syscalls.ioctl(fd, request, argument);
      },
    });
    const count = (nr: number) => counts.get((0x3b << 8) | nr) ?? 0;
    return { simulator, syscalls: proxy, counts, count, reset: () => counts.clear() };
  };
  const VFIO_IOMMU_GET_INFO = 100 + 12;
  const IOMMU_IOAS_IOVA_RANGES = 0x84;

  it('reads VFIO_IOMMU_GET_INFO once per type1 container (the two-step argsz protocol: 2 ioctls), not once per question', async () => {
    for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
      const { syscalls, count } = counting(platform);
      const container = await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [platform === 'x86-vtd' ? 3 : 4] });
      expect(count(VFIO_IOMMU_GET_INFO)).toBe(2);
      // What the SDK reports is what the kernel said at open.
      expect(container.capabilities.mappingBudget).toBe(65535);
      expect(container.geometry().ranges?.length).toBeGreaterThan(0);
      expect(container.reserved().length).toBeGreaterThan(0);
      const memory = allocateDmaMemory(syscalls, 0x1000n);
      container.map({ iova: 0x1_0000_0000n, memory: { address: memory.address, length: 0x1000n } });
      container.unmap({ iova: 0x1_0000_0000n, size: 0x1000n });
      expect(count(VFIO_IOMMU_GET_INFO)).toBe(2);
      container.close();
    }
  });

  it('on iommufd, close detaches a device fd the caller still holds (its DMA stops with the container), and not one it closed', async () => {
    const VFIO_DEVICE_DETACH_IOMMUFD_PT = 100 + 20;
    for (const closeDeviceFirst of [false, true]) {
      const { syscalls, count } = counting('x86-vtd');
      const backend = smmu({ syscalls, interface: 'iommufd' });
      const container = await Container.open({ backend, groups: [3] });
      const device = backend.openDevice('0000:00:03.0');
      if (closeDeviceFirst) device.close();
      container.close();
      expect(count(VFIO_DEVICE_DETACH_IOMMUFD_PT)).toBe(closeDeviceFirst ? 0 : 1);
      device.close();
    }
  });

  it('reads IOMMU_IOAS_IOVA_RANGES once per iommufd container', async () => {
    const { syscalls, count } = counting('x86-vtd');
    const container = await Container.open({ backend: smmu({ syscalls, interface: 'iommufd' }), groups: [3] });
    expect(count(IOMMU_IOAS_IOVA_RANGES)).toBe(1);
    container.close();
  });
});

describe('smmu backend: typed failures at open, and a close that releases everything', () => {
  const failure = async (promise: Promise<unknown>): Promise<IoasError> => {
    const caught = await promise.then(
      () => undefined,
      (error: unknown) => error,
    );
    if (!IoasError.isInstance(caught)) throw new Error(`expected an IoasError, got ${String(caught)}`);
    return caught;
  };

  it('refuses a group or device that does not exist with not-found, on both interfaces', async () => {
    for (const kernelInterface of ['type1', 'iommufd'] as const) {
      const { syscalls, simulator } = onSim('x86-vtd');
      const group = await failure(Container.open({ backend: smmu({ syscalls, interface: kernelInterface }), groups: [99] }));
      expect(group).toMatchObject({ code: 'not-found', backend: 'smmu', operation: 'open' });
      expect(group.message).toMatch(/no IOMMU group 99 \(\/sys\/kernel\/iommu_groups\/99 does not exist\)/);
      const device = await failure(Container.open({ backend: smmu({ syscalls, interface: kernelInterface }), devices: ['0000:00:1d.7'] }));
      expect(device).toMatchObject({ code: 'not-found' });
      expect(device.message).toMatch(/no PCI device 0000:00:1d.7/);
      expect(syscalls.openFiles).toBe(0);
      expect(simulator.openHandles()).toBe(0);
    }
  });

  it('refuses a group with no member bound to vfio-pci before opening anything', async () => {
    for (const kernelInterface of ['type1', 'iommufd'] as const) {
      const { syscalls, simulator } = onSim('x86-vtd');
      const error = await failure(Container.open({ backend: smmu({ syscalls, interface: kernelInterface }), groups: [4] }));
      expect(error.code).toBe('not-found');
      expect(error.message).toMatch(/IOMMU group 4 has no member bound to vfio-pci.*bind 0000:00:04.0 to vfio-pci/);
      expect(simulator.openHandles()).toBe(0);
    }
  });

  it('types sysfs read failures during open: kernel with errno and the call, saying what was read', async () => {
    const { syscalls } = onSim('x86-vtd');
    const failing = Object.assign(Object.create(syscalls) as typeof syscalls, {
      readFile: (path: string) => {
        throw Object.assign(new Error(`EACCES: permission denied, open '${path}'`), { code: 'EACCES', errno: -13 });
      },
    });
    const error = await failure(Container.open({ backend: smmu({ syscalls: failing, interface: 'type1' }), groups: [3] }));
    expect(error).toMatchObject({ code: 'kernel', errno: 13, ioctl: 'read', operation: 'open' });
    expect(error.message).toMatch(/reading the reserved regions of IOMMU group 3 \(\/sys\/kernel\/iommu_groups\/3\/reserved_regions\): read failed with EACCES/);
    expect(syscalls.openFiles).toBe(0);
  });

  it('on type1, a failure after SET_IOMMU closes the container and the group: the group opens again (no EBUSY)', async () => {
    const { syscalls, simulator } = onSim('x86-vtd');
    let listings = 0;
    const failing = Object.assign(Object.create(syscalls) as typeof syscalls, {
      // The second listing of the group's devices is the one after SET_IOMMU.
      readDir: (path: string) => {
        if (path.endsWith('/devices') && ++listings === 2) throw Object.assign(new Error(`EIO: ${path}`), { code: 'EIO', errno: -5 });
        return syscalls.readDir(path);
      },
    });
    const error = await failure(Container.open({ backend: smmu({ syscalls: failing, interface: 'type1' }), groups: [3] }));
    expect(error).toMatchObject({ code: 'kernel', errno: 5, ioctl: 'readdir' });
    expect(syscalls.openFiles).toBe(0);
    expect(simulator.openHandles()).toBe(0);
    (await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [3] })).close();
  });

  it('close() releases every fd when close(2) fails, reports it once, and a second close does nothing', async () => {
    for (const kernelInterface of ['type1', 'iommufd'] as const) {
      const { syscalls, simulator } = onSim('x86-vtd');
      let failing = false;
      const faulty = Object.assign(Object.create(syscalls) as typeof syscalls, {
        close: (fd: number) => {
          const status = syscalls.close(fd);
          return failing ? -5 : status; // EIO; Linux releases the fd anyway
        },
      });
      const container = await Container.open({ backend: smmu({ syscalls: faulty, interface: kernelInterface }), groups: [3] });
      const memory = allocateDmaMemory(syscalls, 0x1000n);
      container.map({ iova: 0x1_0000_0000n, memory: { address: memory.address, length: 0x1000n } });
      failing = true;
      let error: unknown;
      try {
        container.close();
      } catch (caught) {
        error = caught;
      }
      expect(IoasError.isInstance(error) && error).toMatchObject({ code: 'kernel', errno: 5, ioctl: 'close', operation: 'close' });
      expect((error as Error).message).toMatch(/2 steps failed \(every fd was released\)/);
      expect(syscalls.openFiles).toBe(0);
      expect(simulator.openHandles()).toBe(0);
      expect(simulator.liveMappings()).toBe(0);
      expect(() => container.close()).not.toThrow();
      failing = false;
      (await Container.open({ backend: smmu({ syscalls, interface: kernelInterface }), groups: [3] })).close();
    }
  });
});
