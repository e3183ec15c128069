// One simulated machine, several processes: each simSyscalls(simulator) is a process with its own
// file descriptor table, and what Linux keeps per machine (a device's driver and driver_override,
// a group's one open file, a device's open count and registers) is the simulator's, seen alike by
// every process. The kernel's places: drivers/pci/pci-sysfs.c driver_override_store() (struct
// pci_dev), vfio_group_fops_open() (6.1 drivers/vfio/vfio_main.c, 6.12 drivers/vfio/group.c:
// `group->opened_file`, `group->cdev_device_open_cnt`), 6.12 drivers/vfio/vfio_main.c vfio_df_open()
// (`device->open_count`).
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import type { SimKernel } from './platforms.js';
import { simSyscalls, type SimSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';

const req = (nr: number) => 0x3b00 + nr;
const VFIO_SET_IOMMU = req(102);
const VFIO_GROUP_SET_CONTAINER = req(104);
const VFIO_GROUP_GET_DEVICE_FD = req(106);
const VFIO_DEVICE_BIND_IOMMUFD = req(118);
const O_RDWR = SYSCALL_FLAGS.O_RDWR;
/** The x86 preset's second edu: unbound at start, alone in group 6. */
const SECOND_EDU = '0000:00:10.0';
const DEVICES = '/sys/bus/pci/devices';
/** The edu's BAR0 (region 0) DMA source address register. */
const EDU_DMA_SOURCE = 0x80n;

function twoProcesses(kernel?: SimKernel) {
  const simulator = createSimulator({ platform: 'x86-vtd', ...(kernel === undefined ? {} : { kernel }) });
  return { simulator, a: simSyscalls(simulator), b: simSyscalls(simulator) };
}

/** Binds a device to vfio-pci the way the SDK's setup does: driver_override, then drivers_probe. */
function bindToVfio(sys: SimSyscalls, address: string): void {
  sys.writeFile(`${DEVICES}/${address}/driver_override`, 'vfio-pci\n');
  sys.writeFile('/sys/bus/pci/drivers_probe', address);
}

/** The group set in a fresh type1v2 container and a device fd from it, in process `sys`. */
function openDevice(sys: SimSyscalls, group: number, address: string) {
  const container = sys.open('/dev/vfio/vfio', O_RDWR);
  const groupFd = sys.open(`/dev/vfio/${group}`, O_RDWR);
  expect(groupFd).toBeGreaterThan(0);
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  expect(sys.ioctl(groupFd, VFIO_GROUP_SET_CONTAINER, fd)).toBe(0);
  expect(sys.ioctl(container, VFIO_SET_IOMMU, 3)).toBe(0);
  const device = sys.ioctl(groupFd, VFIO_GROUP_GET_DEVICE_FD, new TextEncoder().encode(`${address}\0`));
  expect(device).toBeGreaterThan(0);
  return { container, group: groupFd, device };
}

/** VFIO_DEVICE_BIND_IOMMUFD of a device cdev to an iommufd, in process `sys`: its return value. */
function bindCdev(sys: SimSyscalls, cdev: number, iommufd: number): number {
  const bind = new Uint8Array(16);
  const view = new DataView(bind.buffer);
  view.setUint32(0, 16, true);
  view.setInt32(8, iommufd, true);
  return sys.ioctl(cdev, VFIO_DEVICE_BIND_IOMMUFD, bind);
}

function u64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

describe('driver_override and driver bindings are the machine\'s (struct pci_dev)', () => {
  it('a driver_override one process writes, another reads; clearing it shows in both', () => {
    const { a, b } = twoProcesses();
    const path = `${DEVICES}/${SECOND_EDU}/driver_override`;
    expect(b.readFile(path)).toBe('(null)\n');
    a.writeFile(path, 'vfio-pci\n');
    expect(b.readFile(path)).toBe('vfio-pci\n');
    expect(a.readFile(path)).toBe('vfio-pci\n');
    b.writeFile(path, '\n');
    expect(a.readFile(path)).toBe('(null)\n');
  });

  it('drivers_probe in one process binds by the driver_override another wrote', () => {
    const { simulator, a, b } = twoProcesses();
    a.writeFile(`${DEVICES}/${SECOND_EDU}/driver_override`, 'vfio-pci\n');
    b.writeFile('/sys/bus/pci/drivers_probe', SECOND_EDU);
    expect(simulator.device(SECOND_EDU).driver).toBe('vfio-pci');
    expect(a.readLink(`${DEVICES}/${SECOND_EDU}/driver`)).toBe('../../../bus/pci/drivers/vfio-pci');
  });

  it('a device one process binds to vfio-pci is bound for another: its driver link, /dev/vfio/N, its cdev; an unbind shows alike', () => {
    const { a, b } = twoProcesses();
    expect(b.exists(`${DEVICES}/${SECOND_EDU}/driver`)).toBe(false);
    expect(b.open('/dev/vfio/6', O_RDWR)).toBe(-ERRNO.ENOENT);
    bindToVfio(a, SECOND_EDU);
    expect(b.readLink(`${DEVICES}/${SECOND_EDU}/driver`)).toBe('../../../bus/pci/drivers/vfio-pci');
    expect(b.readDir('/dev/vfio')).toContain('6');
    expect(b.readDir(`${DEVICES}/${SECOND_EDU}/vfio-dev`)).toEqual(['vfio1']);
    const group = b.open('/dev/vfio/6', O_RDWR);
    expect(group).toBeGreaterThan(0);
    expect(b.close(group)).toBe(0);
    b.writeFile(`${DEVICES}/${SECOND_EDU}/driver/unbind`, SECOND_EDU);
    expect(a.exists(`${DEVICES}/${SECOND_EDU}/driver`)).toBe(false);
    expect(a.readDir('/dev/vfio')).not.toContain('6');
  });

  it('a device with a device fd open in one process cannot be unbound from another (EBUSY)', () => {
    const { a, b } = twoProcesses();
    const opened = openDevice(a, 3, '0000:00:03.0');
    expect(() => b.writeFile(`${DEVICES}/0000:00:03.0/driver/unbind`, '0000:00:03.0')).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(a.close(opened.device)).toBe(0);
    b.writeFile(`${DEVICES}/0000:00:03.0/driver/unbind`, '0000:00:03.0');
    expect(a.exists(`${DEVICES}/0000:00:03.0/driver`)).toBe(false);
  });
});

describe('a group has one open file on the machine (vfio_group_fops_open(): group->opened_file)', () => {
  for (const kernel of ['6.1', '6.12'] as const) {
    it(`${kernel}: a group open in one process is EBUSY for another until its file is released`, () => {
      const { a, b } = twoProcesses(kernel);
      const group = a.open('/dev/vfio/3', O_RDWR);
      expect(group).toBeGreaterThan(0);
      expect(b.open('/dev/vfio/3', O_RDWR)).toBe(-ERRNO.EBUSY);
      expect(a.close(group)).toBe(0);
      const again = b.open('/dev/vfio/3', O_RDWR);
      expect(again).toBeGreaterThan(0);
      expect(a.open('/dev/vfio/3', O_RDWR)).toBe(-ERRNO.EBUSY);
    });

    it(`${kernel}: a device fd keeps the group file of its process open after the group fd is closed: still EBUSY for another`, () => {
      const { a, b } = twoProcesses(kernel);
      const opened = openDevice(a, 3, '0000:00:03.0');
      expect(a.close(opened.group)).toBe(0);
      expect(b.open('/dev/vfio/3', O_RDWR)).toBe(-ERRNO.EBUSY);
      expect(a.close(opened.device)).toBe(0);
      expect(b.open('/dev/vfio/3', O_RDWR)).toBeGreaterThan(0);
    });
  }

  it('6.12: a device cdev bound to an iommufd in one process makes its group EBUSY for another (cdev_device_open_cnt)', () => {
    const { a, b } = twoProcesses('6.12');
    const cdev = a.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(bindCdev(a, cdev, a.open('/dev/iommu', O_RDWR))).toBe(0);
    expect(b.open('/dev/vfio/3', O_RDWR)).toBe(-ERRNO.EBUSY);
    expect(a.close(cdev)).toBe(0);
    expect(b.open('/dev/vfio/3', O_RDWR)).toBeGreaterThan(0);
  });

  it('6.12: binding a device cdev while another process has its group open is EBUSY (device_cdev.c vfio_device_block_group())', () => {
    const { a, b } = twoProcesses('6.12');
    const group = a.open('/dev/vfio/3', O_RDWR);
    const cdev = b.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(bindCdev(b, cdev, b.open('/dev/iommu', O_RDWR))).toBe(-ERRNO.EBUSY);
    expect(a.close(group)).toBe(0);
    expect(bindCdev(b, cdev, b.open('/dev/iommu', O_RDWR))).toBe(0);
  });

  it('6.12: a device cdev bound in one process cannot be bound in another (vfio_df_open(): open_count, cdev path)', () => {
    const { a, b } = twoProcesses('6.12');
    const first = a.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(bindCdev(a, first, a.open('/dev/iommu', O_RDWR))).toBe(0);
    const second = b.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(bindCdev(b, second, b.open('/dev/iommu', O_RDWR))).toBe(-ERRNO.EINVAL);
    expect(a.close(first)).toBe(0);
    expect(bindCdev(b, second, b.open('/dev/iommu', O_RDWR))).toBe(0);
  });
});

describe('a device\'s open count and registers are the machine\'s', () => {
  it('6.12: another process opening and closing the cdev does not turn the device off under the one that has it open', () => {
    const { simulator, a, b } = twoProcesses('6.12');
    const edu = simulator.device('0000:00:03.0');
    const cdev = a.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(bindCdev(a, cdev, a.open('/dev/iommu', O_RDWR))).toBe(0);
    // Bus master on, through config space (offset 4, PCI_COMMAND).
    expect(a.pwrite(cdev, new Uint8Array([0x04, 0x00]), (7n << 40n) + 4n)).toBe(2);
    const other = b.open('/dev/vfio/devices/vfio0', O_RDWR);
    expect(other).toBeGreaterThan(0);
    expect(edu.openCount).toBe(2);
    expect(b.close(other)).toBe(0);
    expect(edu.openCount).toBe(1);
    const command = new Uint8Array(2);
    expect(a.pread(cdev, command, (7n << 40n) + 4n)).toBe(2);
    expect(command[0]! & 0x04).toBe(0x04);
    // The last close, in the process that has it, turns it off (vfio_pci_core_disable()).
    expect(a.close(cdev)).toBe(0);
    expect(edu.openCount).toBe(0);
    expect(edu.configSpace![4]! & 0x04).toBe(0);
  });

  it('the edu\'s registers are the device\'s: a DMA address one process wrote, the next process to open it reads', () => {
    const { a, b } = twoProcesses();
    const first = openDevice(a, 3, '0000:00:03.0');
    expect(a.pwrite(first.device, u64(0x1234_5000n), EDU_DMA_SOURCE)).toBe(8);
    expect(a.close(first.device)).toBe(0);
    expect(a.close(first.group)).toBe(0);
    const second = openDevice(b, 3, '0000:00:03.0');
    const read = new Uint8Array(8);
    expect(b.pread(second.device, read, EDU_DMA_SOURCE)).toBe(8);
    expect(new DataView(read.buffer).getBigUint64(0, true)).toBe(0x1234_5000n);
  });
});
