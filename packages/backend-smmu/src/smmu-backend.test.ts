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
    const error = await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [6] }).catch((caught: unknown) => caught);
    expect(IoasError.isInstance(error) && error.code).toBe('not-viable');
    expect((error as Error).message).toMatch(/group 6 is not viable: 0000:00:1f.2 is bound to ahci, 0000:00:1f.3 is bound to i801_smbus/);
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

  it('reads IOMMU_IOAS_IOVA_RANGES once per iommufd container', async () => {
    const { syscalls, count } = counting('x86-vtd');
    const container = await Container.open({ backend: smmu({ syscalls, interface: 'iommufd' }), groups: [3] });
    expect(count(IOMMU_IOAS_IOVA_RANGES)).toBe(1);
    container.close();
  });
});
