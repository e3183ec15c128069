// VFIO_GROUP_SET_CONTAINER with a /dev/iommu fd (the iommufd VFIO compat path of 6.12) and with
// an fd that is neither a container nor an iommufd (issue 12). The kernel is the authority:
// 6.12 drivers/vfio/group.c vfio_group_ioctl_set_container(), vfio_group_ioctl_unset_container(),
// vfio_group_ioctl_get_status(), vfio_df_group_open(); drivers/vfio/iommufd.c
// vfio_iommufd_compat_attach_ioas(); drivers/iommu/iommufd/vfio_compat.c
// iommufd_vfio_compat_ioas_create(); 6.1 drivers/vfio/vfio_main.c vfio_group_ioctl_set_container().
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { simSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';

const GET_STATUS = 0x3b67;
const SET_CONTAINER = 0x3b68;
const UNSET_CONTAINER = 0x3b69;
const GET_DEVICE_FD = 0x3b6a;
const SET_IOMMU = 0x3b66;
const MAP_DMA = 0x3b71;
const IOMMU_IOAS_ALLOC = 0x3b81;
const IOMMU_DESTROY = 0x3b80;
const IOMMU_VFIO_IOAS = 0x3b88;
const CONTAINER_SET = 0x2;
const rdwr = SYSCALL_FLAGS.O_RDWR;

function machine(kernel: '6.1' | '6.12') {
  const simulator = createSimulator({ platform: 'x86-vtd', kernel });
  const sys = simSyscalls(simulator, { littleEndian: true });
  const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!;
  const group = sys.open(`/dev/vfio/${edu.group}`, rdwr);
  const setContainer = (fd: number): number => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setInt32(0, fd, true);
    return sys.ioctl(group, SET_CONTAINER, bytes);
  };
  const status = (): number => {
    const bytes = new Uint8Array(8);
    new DataView(bytes.buffer).setUint32(0, 8, true);
    expect(sys.ioctl(group, GET_STATUS, bytes)).toBe(0);
    return new DataView(bytes.buffer).getUint32(4, true);
  };
  const deviceFd = (): number => sys.ioctl(group, GET_DEVICE_FD, new TextEncoder().encode(`${edu.address}\0`));
  const compatId = (iommufd: number): number => {
    const bytes = new Uint8Array(12);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 12, true);
    view.setUint16(8, 0, true); // IOMMU_VFIO_IOAS_GET
    const answer = sys.ioctl(iommufd, IOMMU_VFIO_IOAS, bytes);
    return answer < 0 ? answer : view.getUint32(4, true);
  };
  return { simulator, sys, edu, group, setContainer, status, deviceFd, compatId };
}

describe('VFIO_GROUP_SET_CONTAINER with an fd that is not a container', () => {
  it('an eventfd: EBADFD on 6.12 (the fd is not recognised), EINVAL on 6.1 (only containers)', () => {
    for (const [kernel, answer] of [['6.12', -ERRNO.EBADFD], ['6.1', -ERRNO.EINVAL]] as const) {
      const { sys, setContainer, status } = machine(kernel);
      expect(setContainer(sys.eventfd(0, 0)), kernel).toBe(answer);
      expect(status() & CONTAINER_SET).toBe(0);
    }
    // 6.1 knows only containers: a /dev/iommu fd (the simulator offers one on 6.1) is EINVAL there too.
    const { sys, setContainer, status } = machine('6.1');
    expect(setContainer(sys.open('/dev/iommu', rdwr))).toBe(-ERRNO.EINVAL);
    expect(status() & CONTAINER_SET).toBe(0);
  });

  it('a closed fd is EBADF before anything else; a group already holding one is EINVAL before EBADFD (6.12 vfio_group_has_iommu())', () => {
    const { sys, setContainer } = machine('6.12');
    expect(setContainer(999)).toBe(-ERRNO.EBADF);
    expect(setContainer(sys.open('/dev/iommu', rdwr))).toBe(0);
    expect(setContainer(sys.eventfd(0, 0))).toBe(-ERRNO.EINVAL);
    expect(setContainer(sys.open('/dev/vfio/vfio', rdwr))).toBe(-ERRNO.EINVAL);
    expect(setContainer(sys.open('/dev/iommu', rdwr))).toBe(-ERRNO.EINVAL);
  });
});

describe('VFIO_GROUP_SET_CONTAINER with a /dev/iommu fd on 6.12 (the iommufd VFIO compat path)', () => {
  it('creates the compat IOAS at the lowest free id when there is none; keeps one that exists (iommufd_vfio_compat_ioas_create())', () => {
    const { sys, setContainer, status, compatId } = machine('6.12');
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(compatId(iommufd)).toBe(-ERRNO.ENODEV);
    const alloc = new Uint8Array(12);
    new DataView(alloc.buffer).setUint32(0, 12, true);
    expect(sys.ioctl(iommufd, IOMMU_IOAS_ALLOC, alloc)).toBe(0); // IOAS 1, not the compat one
    expect(setContainer(iommufd)).toBe(0);
    expect(compatId(iommufd)).toBe(2);
    expect(status() & CONTAINER_SET).toBe(CONTAINER_SET);

    // A compat IOAS set beforehand is kept.
    const second = machine('6.12');
    const fd = second.sys.open('/dev/iommu', rdwr);
    expect(second.sys.ioctl(fd, IOMMU_IOAS_ALLOC, alloc)).toBe(0);
    const set = new Uint8Array(12);
    const view = new DataView(set.buffer);
    view.setUint32(0, 12, true);
    view.setUint32(4, 1, true);
    view.setUint16(8, 1, true); // IOMMU_VFIO_IOAS_SET
    expect(second.sys.ioctl(fd, IOMMU_VFIO_IOAS, set)).toBe(0);
    expect(second.setContainer(fd)).toBe(0);
    expect(second.compatId(fd)).toBe(1);
  });

  it('GET_DEVICE_FD binds the device and attaches it to the compat IOAS: a MAP_DMA on /dev/iommu maps for it; closing the device fd unbinds', () => {
    const { sys, edu, setContainer, deviceFd } = machine('6.12');
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(setContainer(iommufd)).toBe(0);
    expect(sys.ioctl(iommufd, SET_IOMMU, 3)).toBe(0); // VFIO_TYPE1v2_IOMMU on the compat IOAS
    const device = deviceFd();
    expect(device).toBeGreaterThanOrEqual(0);
    expect(edu.boundTo).toBeDefined();
    const memory = sys.mmap(0x1000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = new Uint8Array(32);
    const view = new DataView(map.buffer);
    view.setUint32(0, 32, true);
    view.setUint32(4, 3, true);
    view.setBigUint64(8, memory, true);
    view.setBigUint64(16, 0x10_0000n, true);
    view.setBigUint64(24, 0x1000n, true);
    expect(sys.ioctl(iommufd, MAP_DMA, map)).toBe(0);
    expect(edu.dmaWrite(0x10_0000n, new Uint8Array([0xab]))).toBe(true);
    expect(edu.dmaRead(0x10_0000n, 1)).toEqual(new Uint8Array([0xab]));
    // The compat IOAS has the device attached: IOMMU_DESTROY of it is EBUSY.
    const destroy = new Uint8Array(8);
    new DataView(destroy.buffer).setUint32(0, 8, true);
    new DataView(destroy.buffer).setUint32(4, 1, true);
    expect(sys.ioctl(iommufd, IOMMU_DESTROY, destroy)).toBe(-ERRNO.EBUSY);
    expect(sys.close(device)).toBe(0);
    expect(edu.boundTo).toBeUndefined();
    expect(edu.domain).toBeUndefined();
    expect(sys.ioctl(iommufd, IOMMU_DESTROY, destroy)).toBe(0);
  });

  it('GET_DEVICE_FD after the compat IOAS was destroyed: ENODEV, and the device is not left bound (vfio_iommufd_compat_attach_ioas())', () => {
    const { sys, edu, setContainer, deviceFd } = machine('6.12');
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(setContainer(iommufd)).toBe(0);
    const destroy = new Uint8Array(8);
    new DataView(destroy.buffer).setUint32(0, 8, true);
    new DataView(destroy.buffer).setUint32(4, 1, true);
    expect(sys.ioctl(iommufd, IOMMU_DESTROY, destroy)).toBe(0);
    expect(deviceFd()).toBe(-ERRNO.ENODEV);
    expect(edu.boundTo).toBeUndefined();
  });

  it('UNSET_CONTAINER drops the iommufd even with a device open (no EBUSY as for a container); the device stays bound until its fd closes', () => {
    const { sys, edu, group, setContainer, status, deviceFd } = machine('6.12');
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(setContainer(iommufd)).toBe(0);
    const device = deviceFd();
    expect(device).toBeGreaterThanOrEqual(0);
    expect(sys.ioctl(group, UNSET_CONTAINER, 0)).toBe(0);
    // Neither CONTAINER_SET nor VIABLE: the bound device keeps the group's DMA claimed
    // (vfio_group_ioctl_get_status(): iommu_group_dma_owner_claimed()).
    expect(status()).toBe(0);
    expect(edu.boundTo).toBeDefined();
    // Out of the container: a second UNSET is EINVAL, GET_DEVICE_FD is EINVAL (vfio_df_group_open()).
    expect(sys.ioctl(group, UNSET_CONTAINER, 0)).toBe(-ERRNO.EINVAL);
    expect(deviceFd()).toBe(-ERRNO.EINVAL);
    // A type1 container cannot claim the group's DMA while the device is bound: EPERM.
    expect(setContainer(sys.open('/dev/vfio/vfio', rdwr))).toBe(-ERRNO.EPERM);
    expect(sys.close(device)).toBe(0);
    expect(edu.boundTo).toBeUndefined();
    expect(status()).toBe(1); // VIABLE again
  });

  it('the group holds the iommufd context: closing the /dev/iommu fd leaves it alive, UNSET_CONTAINER then releases it (iommufd_ctx_get()/iommufd_ctx_put())', () => {
    const { simulator, sys, group, setContainer } = machine('6.12');
    const before = simulator.kernelObjects.size;
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(setContainer(iommufd)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(before + 1);
    expect(sys.close(iommufd)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(before + 1);
    expect(sys.ioctl(group, UNSET_CONTAINER, 0)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(before);
  });

  it('closing the group fd puts the iommufd (vfio_group_fops_release())', () => {
    const { simulator, sys, group, setContainer } = machine('6.12');
    const before = simulator.kernelObjects.size;
    const iommufd = sys.open('/dev/iommu', rdwr);
    expect(setContainer(iommufd)).toBe(0);
    expect(sys.close(iommufd)).toBe(0);
    expect(sys.close(group)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(before);
  });
});
