// What the simulator's faces refuse, as the kernel (or the real backend in front of it) refuses it:
// issue 13's "accepted when it must be refused" and "trace left after a fault" items.
import { Container, ERRNO, IoasError, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { sim } from './sim-backend.js';
import { simSyscalls, type SimSyscalls } from './sim-syscalls.js';
import { createSimulator, type Simulator } from './simulator.js';
import { SimVfioContainer } from './vfio-container.js';
import { PAMU_ATTRIBUTE } from './pamu-domain.js';
import { PLATFORMS } from './platforms.js';

/** A generic (x86-64, arm64) VFIO/iommufd request number. */
const NR = (nr: number) => 0x3b00 + nr;

/** Opens `/dev/iommu` and the device's cdev, and binds the cdev to it: the BIND_IOMMUFD answer. */
function bindCdev(sys: SimSyscalls, cdev: string): { answer: number; iommufd: number; device: number } {
  const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
  const device = sys.open(cdev, SYSCALL_FLAGS.O_RDWR);
  const bind = new Uint8Array(16);
  const view = new DataView(bind.buffer);
  view.setUint32(0, 16, true);
  view.setInt32(8, iommufd, true);
  return { answer: sys.ioctl(device, NR(118), bind), iommufd, device };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return undefined;
}

const MiB = 0x10_0000n;

describe('the p4080 Backend face refuses what backend-pamu refuses', () => {
  it('refuses an unmap that does not cover whole windows, before touching the domain (backend-pamu: misaligned)', async () => {
    const backend = sim({ platform: 'p4080' });
    const simulator = backend.simulator;
    const group = simulator.vfioGroups()[0]!;
    const device = group.devices.find((candidate) => candidate.driver === 'vfio-pci')!;
    using container = await Container.open({ backend, groups: [group.id] });
    container.setGeometry({ aperture: { start: 0n, size: 1024n * MiB }, windowCount: 16 });
    const memory = simulator.memory.allocate(64n * MiB, 64n * MiB);
    container.map({ iova: 0n, memory: { address: memory.address, length: 64n * MiB, contiguousPageSize: 64n * MiB } });
    const error = (() => {
      try {
        container.unmap({ iova: 0x1000n, size: 0x1000n });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('misaligned');
    // The record and the hardware still agree: the window is mapped, DMA goes through.
    expect(container.mappings().map((mapping) => mapping.iova)).toEqual([{ start: 0n, last: 64n * MiB - 1n }]);
    expect(device.dmaWrite(0x1000n, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(simulator.faults).toEqual([]);
    void ERRNO;
  });
});

describe('a device another container holds (drivers/vfio/device_cdev.c, vfio_df_ioctl_bind_iommufd)', () => {
  it('the iommufd Backend face refuses a second container on the same device, and the first keeps it', async () => {
    const backend = sim({ platform: 'arm-smmuv3', interface: 'iommufd' });
    const simulator = backend.simulator;
    const edu = simulator.devices().find((device) => device.edu)!;
    using first = await Container.open({ backend, devices: [edu.address] });
    const memory = simulator.memory.allocate(0x1_0000n);
    first.map({ iova: 0x10_0000n, memory: { address: memory.address, length: 0x1_0000n } });
    const error = await rejection(Container.open({ backend, devices: [edu.address] }));
    // vfio_df_open(): a device cdev opens once (open_count != 0 && !df->group: EINVAL).
    expect(IoasError.isInstance(error) && [error.code, error.errno]).toEqual(['kernel', ERRNO.EINVAL]);
    expect(first.mappings()).toHaveLength(1);
    expect(edu.dmaWrite(0x10_0000n, new Uint8Array([7]))).toBe(true);
    expect(simulator.faults).toEqual([]);
  });

  it('the type1 Backend face refuses a group whose device is bound through its cdev (vfio_group_fops_open: EBUSY)', async () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3' });
    const edu = simulator.devices().find((device) => device.edu)!;
    using first = await Container.open({ backend: sim({ simulator, interface: 'iommufd' }), devices: [edu.address] });
    const error = await rejection(Container.open({ backend: sim({ simulator }), groups: [edu.group!] }));
    expect(IoasError.isInstance(error) && [error.code, error.errno]).toEqual(['kernel', ERRNO.EBUSY]);
    expect(edu.domain).toBeDefined();
    void first;
  });

  it('refuses a device whose group another iommufd owns (iommu_device_claim_dma_owner: EPERM), on both faces', async () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    // The LPC bridge's group, with the SATA and SMBus controllers, all moved to vfio-pci.
    const members = simulator.group(simulator.device('0000:00:1f.0').group!)!.devices.map((device) => device.address);
    for (const address of members) {
      simulator.bind(address, null);
      simulator.bind(address, 'vfio-pci');
    }
    const backend = sim({ simulator, interface: 'iommufd' });
    using first = await Container.open({ backend, devices: [members[0]!] });
    const error = await rejection(Container.open({ backend, devices: [members[1]!] }));
    expect(IoasError.isInstance(error) && [error.code, error.errno]).toEqual(['kernel', ERRNO.EPERM]);
    expect(simulator.device(members[1]!).boundTo).toBeUndefined();
    const sys = simSyscalls(simulator);
    const cdev = (address: string) => `/dev/vfio/devices/vfio${simulator.devices().filter((device) => device.driver === 'vfio-pci').findIndex((device) => device.address === address)}`;
    expect(bindCdev(sys, cdev(members[2]!)).answer).toBe(-ERRNO.EPERM);
    first.close();
    // One iommufd may bind every device of a group (the owner count goes up).
    const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
    for (const address of members) {
      const device = sys.open(cdev(address), SYSCALL_FLAGS.O_RDWR);
      const bind = new Uint8Array(16);
      new DataView(bind.buffer).setUint32(0, 16, true);
      new DataView(bind.buffer).setInt32(8, iommufd, true);
      expect(sys.ioctl(device, NR(118), bind)).toBe(0);
    }
  });

  it('the syscall face refuses a second BIND_IOMMUFD of a device from another process (EINVAL) and its group open (EBUSY)', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3' });
    const edu = simulator.devices().find((device) => device.edu)!;
    const one = simSyscalls(simulator);
    const two = simSyscalls(simulator);
    expect(bindCdev(one, '/dev/vfio/devices/vfio0').answer).toBe(0);
    expect(bindCdev(two, '/dev/vfio/devices/vfio0').answer).toBe(-ERRNO.EINVAL);
    // A second cdev file of the same process, bound to another iommufd, is refused the same way.
    expect(bindCdev(one, '/dev/vfio/devices/vfio0').answer).toBe(-ERRNO.EINVAL);
    expect(two.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.EBUSY);
  });
});

describe('a group with no member bound to vfio-pci has no /dev/vfio/N (drivers/vfio/group.c)', () => {
  for (const kernelInterface of ['type1', 'iommufd'] as const) {
    it(`the ${kernelInterface} Backend face refuses to open it, naming the group and why`, async () => {
      const backend = sim({ platform: 'x86-vtd', interface: kernelInterface });
      const simulator = backend.simulator;
      // Group 0 holds the host bridge, bound to no driver: viable, but no vfio driver created its file.
      expect(simulator.group(0)!.devices.every((device) => device.driver === null)).toBe(true);
      const before = simulator.openHandles();
      const error = await rejection(Container.open({ backend, groups: [0] }));
      expect(IoasError.isInstance(error) && { code: error.code, errno: error.errno, backend: error.backend }).toEqual({ code: 'not-found', errno: ERRNO.ENOENT, backend: 'sim' });
      expect((error as Error).message).toMatch(/IOMMU group 0 has no member bound to vfio-pci, so \/dev\/vfio\/0 does not exist/);
      expect(simulator.openHandles()).toBe(before);
    });
  }

  for (const kernelInterface of ['type1', 'iommufd'] as const) {
    it(`the ${kernelInterface} Backend face refuses a device not bound to vfio-pci (no cdev, no group file)`, async () => {
      const backend = sim({ platform: 'x86-vtd', interface: kernelInterface });
      const error = await rejection(Container.open({ backend, devices: ['0000:00:00.0'] }));
      expect(IoasError.isInstance(error) && [error.code, error.errno]).toEqual(['not-found', ERRNO.ENOENT]);
      expect(backend.simulator.openHandles()).toBe(0);
    });
  }

  it('the syscall face answers ENOENT on open of /dev/vfio/N', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator);
    expect(sys.open('/dev/vfio/0', SYSCALL_FLAGS.O_RDWR)).toBe(-ERRNO.ENOENT);
    expect(sys.exists('/dev/vfio/0')).toBe(false);
    // Once a member binds to vfio-pci the file appears.
    simulator.bind('0000:00:00.0', 'vfio-pci');
    expect(sys.open('/dev/vfio/0', SYSCALL_FLAGS.O_RDWR)).toBeGreaterThan(0);
  });
});

describe('close() on the syscall face returns -errno and never throws (a release cannot fail)', () => {
  it('answers EBADF for an fd that is not open, whatever the value', () => {
    const sys = simSyscalls(createSimulator({ platform: 'x86-vtd' }));
    for (const fd of [12345, -1, 0, 3, Number.NaN, 1.5]) expect(sys.close(fd)).toBe(-ERRNO.EBADF);
    const eventfd = sys.eventfd(0, 0);
    expect(sys.close(eventfd)).toBe(0);
    expect(sys.close(eventfd)).toBe(-ERRNO.EBADF);
  });

  it('releases a bound, attached device cdev and its iommufd while an ioctl fault is pending, leaving the fault pending', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3' });
    const edu = simulator.devices().find((device) => device.edu)!;
    const sys = simSyscalls(simulator);
    const { answer, iommufd, device } = bindCdev(sys, '/dev/vfio/devices/vfio0');
    expect(answer).toBe(0);
    const alloc = new Uint8Array(12);
    new DataView(alloc.buffer).setUint32(0, 12, true);
    expect(sys.ioctl(iommufd, NR(0x81), alloc)).toBe(0);
    const attach = new Uint8Array(12);
    const attachView = new DataView(attach.buffer);
    attachView.setUint32(0, 12, true);
    attachView.setUint32(8, new DataView(alloc.buffer).getUint32(8, true), true);
    expect(sys.ioctl(device, NR(119), attach)).toBe(0);
    expect(edu.domain).toBeDefined();
    simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO });
    expect(sys.close(device)).toBe(0);
    expect(edu.domain).toBeUndefined();
    expect(edu.boundTo).toBeUndefined();
    expect(sys.close(iommufd)).toBe(0);
    expect(sys.openFiles).toBe(0);
    expect(simulator.openHandles()).toBe(0);
    // The release paths are not ioctls: the injected fault still waits for the next ioctl.
    expect(simulator.injecting).toBe(true);
  });

  it('fails a close() with an injected errno that names it, still releasing the file (as Linux does)', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator);
    const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
    simulator.injectFault({ ioctl: 'close', errno: ERRNO.EIO });
    expect(sys.close(container)).toBe(-ERRNO.EIO);
    expect(sys.openFiles).toBe(0);
    expect(simulator.openHandles()).toBe(0);
    expect(sys.close(container)).toBe(-ERRNO.EBADF);
  });

  it('the iommufd Backend face closes while an ioctl fault is pending', async () => {
    const backend = sim({ platform: 'arm-smmuv3', interface: 'iommufd' });
    const simulator = backend.simulator;
    const edu = simulator.devices().find((device) => device.edu)!;
    const container = await Container.open({ backend, devices: [edu.address] });
    simulator.injectFault({ ioctl: '*', errno: ERRNO.EIO });
    expect(() => container.close()).not.toThrow();
    expect(simulator.openHandles()).toBe(0);
    expect(edu.boundTo).toBeUndefined();
  });
});

/** The PAMU domain's own answers (GET_ATTR), as the hardware holds them. */
function domainGeometry(simulator: Simulator): { start: bigint; end: bigint; windows: number } {
  const container = [...simulator.kernelObjects].find((object): object is SimVfioContainer => object instanceof SimVfioContainer)!;
  const geometry = container.pamu!.getAttr(PAMU_ATTRIBUTE.GEOMETRY) as { start: bigint; end: bigint };
  const windows = (container.pamu!.getAttr(PAMU_ATTRIBUTE.WINDOWS) as { windows: number }).windows;
  return { ...geometry, windows };
}

describe('a fault inside setGeometry on the p4080 Backend face leaves the domain as the record says', () => {
  // The four ioctls of doSetGeometry, in order: SET_ATTR(GEOMETRY), GET_ATTR(GEOMETRY),
  // SET_ATTR(WINDOWS), GET_ATTR(WINDOWS).
  const steps = [
    { ioctl: 'VFIO_IOMMU_PAMU_SET_ATTR', skip: 0 },
    { ioctl: 'VFIO_IOMMU_PAMU_GET_ATTR', skip: 0 },
    { ioctl: 'VFIO_IOMMU_PAMU_SET_ATTR', skip: 1 },
    { ioctl: 'VFIO_IOMMU_PAMU_GET_ATTR', skip: 1 },
  ];
  it('says rollback-failed when putting the old geometry back fails too', async () => {
    const backend = sim({ platform: 'p4080' });
    const simulator = backend.simulator;
    using container = await Container.open({ backend, groups: [simulator.vfioGroups()[0]!.id] });
    container.setGeometry({ aperture: { start: 0n, size: 1024n * MiB }, windowCount: 16 });
    simulator.injectFault({ ioctl: 'VFIO_IOMMU_PAMU_GET_ATTR', errno: ERRNO.EIO });
    simulator.injectFault({ ioctl: 'VFIO_IOMMU_PAMU_SET_ATTR', errno: ERRNO.EIO, skip: 1 });
    expect(() => container.setGeometry({ aperture: { start: 0n, size: 2048n * MiB }, windowCount: 8 })).toThrow(expect.objectContaining({ code: 'rollback-failed' }));
  });

  for (const configured of [true, false]) {
    for (const step of steps) {
      it(`${configured ? 'after a geometry was set' : 'before any geometry'}: ${step.ioctl} (skip ${step.skip}) failing`, async () => {
        const backend = sim({ platform: 'p4080' });
        const simulator = backend.simulator;
        const group = simulator.vfioGroups()[0]!;
        const device = group.devices.find((candidate) => candidate.driver === 'vfio-pci')!;
        using container = await Container.open({ backend, groups: [group.id] });
        if (configured) container.setGeometry({ aperture: { start: 0n, size: 1024n * MiB }, windowCount: 16 });
        const before = container.geometry();
        simulator.injectFault({ ioctl: step.ioctl, errno: ERRNO.EIO, skip: step.skip });
        expect(() => container.setGeometry({ aperture: { start: 0n, size: 2048n * MiB }, windowCount: 8 })).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EIO }));
        expect(simulator.injecting).toBe(false);
        // The record kept the old geometry; the domain answers the same.
        expect(container.geometry()).toEqual(before);
        const domain = domainGeometry(simulator);
        expect({ start: domain.start, last: domain.end, windows: domain.windows }).toEqual({ start: before.aperture.start, last: before.aperture.last, windows: before.windows!.count });
        if (configured) {
          // A map the record accepts translates: DMA lands, no fault.
          const memory = simulator.memory.allocate(64n * MiB, 64n * MiB);
          container.map({ iova: 64n * MiB, memory: { address: memory.address, length: 64n * MiB, contiguousPageSize: 64n * MiB } });
          expect(device.dmaWrite(64n * MiB + 0x10n, new Uint8Array([5]))).toBe(true);
          expect(simulator.faults).toEqual([]);
        }
        if (configured) container.unmap({ iova: 64n * MiB, size: 64n * MiB });
        // And the next setGeometry works as if nothing had happened.
        container.setGeometry({ aperture: { start: 0n, size: 2048n * MiB }, windowCount: 8 });
        expect(domainGeometry(simulator)).toEqual({ start: 0n, end: 2048n * MiB - 1n, windows: 8 });
      });
    }
  }
});

describe('sim() and createSimulator() type what they are given (invalid-argument naming the option)', () => {
  const caught = (run: () => unknown): unknown => {
    try {
      run();
    } catch (error) {
      return error;
    }
    return undefined;
  };
  const preset = PLATFORMS['x86-vtd'];
  const simulatorCases: [unknown, RegExp][] = [
    [undefined, /options/],
    [null, /options/],
    ['x86-vtd', /options/],
    [{}, /platform/],
    [{ platform: 'nope' }, /platform/],
    [{ platform: 5 }, /platform/],
    [{ platform: {} }, /platform/],
    [{ platform: { ...preset, aperture: null } }, /platform\.aperture/],
    [{ platform: { ...preset, devices: 'edu' } }, /platform\.devices/],
    [{ platform: 'x86-vtd', dmaEntryLimit: -1 }, /dmaEntryLimit/],
    [{ platform: 'x86-vtd', dmaEntryLimit: '5' }, /dmaEntryLimit/],
    [{ platform: 'x86-vtd', dmaEntryLimit: 1.5 }, /dmaEntryLimit/],
    [{ platform: 'x86-vtd', memlockLimit: -1n }, /memlockLimit/],
    [{ platform: 'x86-vtd', memlockLimit: 'lots' }, /memlockLimit/],
    [{ platform: 'x86-vtd', allowUnsafeInterrupts: 'yes' }, /allowUnsafeInterrupts/],
    [{ platform: 'p4080', pamuType: 3 }, /pamuType/],
    [{ platform: 'x86-vtd', vfio: 'abc' }, /vfio/],
    [{ platform: 'x86-vtd', vfio: [5] }, /vfio/],
    [{ platform: 'x86-vtd', vfio: ['0000:99:00.0'] }, /vfio/],
    [{ platform: 'x86-vtd', colour: 'red' }, /colour/],
  ];
  const label = (options: unknown): string => (JSON.stringify(options, (_, value) => (typeof value === 'bigint' ? `${value}n` : value)) ?? String(options)).slice(0, 80);
  it.each(simulatorCases.map(([options, names]) => [label(options), options, names] as const))('createSimulator(%s)', (_, options, names) => {
    const error = caught(() => createSimulator(options as never));
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('invalid-argument');
    expect((error as Error).message).toMatch(/^createSimulator\(\)/);
    expect((error as Error).message).toMatch(names);
  });

  const backendCases: [unknown, RegExp][] = [
    ...simulatorCases.filter(([options]) => !(typeof options === 'object' && options !== null && Object.keys(options).length === 0)),
    [{ platform: 'x86-vtd', interface: 'vfio' }, /interface/],
    [{ simulator: {} }, /simulator/],
    [{ simulator: null }, /simulator/],
    [{ platform: 'p4080', interface: 'iommufd' }, /iommufd/],
  ];
  it.each(backendCases.map(([options, names]) => [label(options), options, names] as const))('sim(%s)', (_, options, names) => {
    const error = caught(() => sim(options as never));
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('invalid-argument');
    expect((error as Error).message).toMatch(/^sim\(\)/);
    expect((error as Error).message).toMatch(names);
  });

  it('still takes every valid form, presets and simulators as they are', () => {
    expect(createSimulator({ platform: preset }).platform).toBe(preset);
    expect(createSimulator({ platform: 'arm-smmuv3', vfio: [], memlockLimit: 0x1000n, dmaEntryLimit: 0, allowUnsafeInterrupts: true }).memlockLimit).toBe(0x1000n);
    const simulator = createSimulator({ platform: 'p4080', pamuType: 2 });
    expect(sim({ simulator }).simulator).toBe(simulator);
    expect(sim({ simulator, platform: 'p4080' }).simulator).toBe(simulator);
    expect(sim({ platform: 'x86-vtd', interface: 'iommufd', dmaEntryLimit: 10 }).simulator.dmaEntryLimit).toBe(10);
  });
});
