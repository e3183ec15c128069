// Closing the VFIO objects when close(2) fails: Linux releases the fd anyway (only EBADF means it
// was not open), so every object releases all it holds, reports the failure once, typed, and a
// second close does nothing.
import { ERRNO, IoasError, type Syscalls } from '@ioas/core';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { describe, expect, it } from 'vitest';
import { IommufdContext } from './iommufd-context.js';
import { VfioIoctls } from './ioctl.js';
import { Sysfs } from './sysfs.js';
import { VFIO_TYPE1v2_IOMMU } from './uapi/vfio.js';
import { VfioContainer } from './vfio-container.js';
import { VfioDevice } from './vfio-device.js';
import { VfioGroup } from './vfio-group.js';

function failingCloses() {
  const simulator = createSimulator({ platform: 'x86-vtd' });
  const inner = simSyscalls(simulator);
  const state = { failing: false, throwing: false };
  const syscalls: Syscalls = Object.assign(Object.create(inner) as Syscalls, {
    close: (fd: number) => {
      const status = inner.close(fd);
      if (state.throwing) throw new Error('the syscall face threw');
      return state.failing ? -ERRNO.EIO : status;
    },
  });
  const ioctls = new VfioIoctls({ syscalls, littleEndian: true, arch: 'generic', backend: 'smmu' });
  const edu = simulator.devices().find((device) => device.edu)!;
  return { simulator, inner, state, ioctls, sysfs: new Sysfs(syscalls), edu };
}

const thrown = (call: () => void): unknown => {
  try {
    call();
  } catch (error) {
    return error;
  }
  return undefined;
};

describe('closing when close(2) fails', () => {
  it('releases the device fd and its eventfds, throws the first failure once, typed', () => {
    const { inner, state, ioctls, sysfs, edu, simulator } = failingCloses();
    const container = VfioContainer.open(ioctls);
    const group = VfioGroup.open(ioctls, sysfs.deviceGroup(edu.address)!);
    group.setContainer(container);
    container.setIommu(VFIO_TYPE1v2_IOMMU);
    const device = new VfioDevice(ioctls, group.deviceFd(edu.address), edu.address);
    device.enableMsi(1);
    expect(inner.openFiles).toBe(4);
    state.failing = true;
    const error = thrown(() => device.close());
    expect(IoasError.isInstance(error) && error).toMatchObject({ code: 'kernel', errno: ERRNO.EIO, ioctl: 'close', backend: 'smmu' });
    expect((error as Error).message).toMatch(/closing an MSI eventfd of 0000:00:03.0/);
    expect(inner.openFiles).toBe(2);
    expect(thrown(() => device.close())).toBeUndefined();
    expect(IoasError.isInstance(thrown(() => group.close()))).toBe(true);
    expect(thrown(() => group.close())).toBeUndefined();
    expect((thrown(() => container.close()) as IoasError).message).toMatch(/closing the VFIO container \(\/dev\/vfio\/vfio\): close failed with EIO/);
    expect(thrown(() => container.close())).toBeUndefined();
    expect(inner.openFiles).toBe(0);
    expect(simulator.openHandles()).toBe(0);
  });

  it('types a close that throws, and reports a failed bind rather than the close after it', () => {
    const { inner, state, ioctls } = failingCloses();
    const context = IommufdContext.open(ioctls);
    state.throwing = true;
    const error = thrown(() => context.close());
    expect(IoasError.isInstance(error) && error).toMatchObject({ code: 'kernel', errno: ERRNO.EIO, ioctl: 'close' });
    expect(inner.openFiles).toBe(0);
    const second = IommufdContext.open(ioctls);
    // No such cdev: the open fails before anything is bound.
    expect(thrown(() => second.bindDevice('/dev/vfio/devices/vfio9', '0000:00:09.0'))).toMatchObject({ code: 'kernel', errno: ERRNO.ENOENT, ioctl: 'open' });
    // A bind that fails (an fd that is no iommufd) closes the cdev, and reports the bind.
    const unbound = Object.assign(Object.create(second) as IommufdContext, { fd: 999 });
    expect(thrown(() => unbound.bindDevice('/dev/vfio/devices/vfio0', '0000:00:03.0'))).toMatchObject({ code: 'kernel', ioctl: 'VFIO_DEVICE_BIND_IOMMUFD' });
    expect(inner.openFiles).toBe(1);
    state.throwing = false;
    second.close();
    expect(inner.openFiles).toBe(0);
  });
});
