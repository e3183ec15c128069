/**
 * The simulated machine's sysfs and `/dev` tree, as the SDK's discovery reads it: IOMMU groups and
 * their reserved regions, PCI devices (ids, driver links, driver_override, unbind, drivers_probe),
 * vfio_iommu_type1's module parameters, `/dev/vfio` and `/dev/vfio/devices`. Errors are Node-style
 * (`code` ENOENT, EINVAL...), as node:fs throws them.
 */
import { errnoName } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import type { SimDevice, Simulator } from './simulator.js';

/** readFile(2) of a sysfs attribute. */
export function readFile(simulator: Simulator, path: string): string {
  const group = /^\/sys\/kernel\/iommu_groups\/(\d+)\/(reserved_regions|type)$/.exec(path);
  if (group !== null) {
    const found = simulator.group(Number(group[1]));
    if (found === undefined) throw fsError('ENOENT', path);
    return group[2] === 'type' ? 'DMA\n' : found.reservedRegionsFile;
  }
  const device = /^\/sys\/bus\/pci\/devices\/([^/]+)\/(vendor|device|driver_override)$/.exec(path);
  if (device !== null) {
    const found = findDevice(simulator, device[1]!, path);
    if (device[2] === 'vendor') return `0x${found.vendor.toString(16).padStart(4, '0')}\n`;
    if (device[2] === 'device') return `0x${found.deviceId.toString(16).padStart(4, '0')}\n`;
    return `${found.driverOverride ?? '(null)'}\n`;
  }
  const parameter = /^\/sys\/module\/vfio_iommu_type1\/parameters\/(dma_entry_limit|allow_unsafe_interrupts)$/.exec(path);
  if (parameter !== null) {
    return parameter[1] === 'dma_entry_limit' ? `${simulator.dmaEntryLimit}\n` : `${simulator.allowUnsafeInterrupts ? 'Y' : 'N'}\n`;
  }
  throw fsError(exists(simulator, path) ? 'EISDIR' : 'ENOENT', path);
}

/** writeFile(2) of a sysfs attribute: driver_override, driver/unbind, drivers_probe, dma_entry_limit. */
export function writeFile(simulator: Simulator, path: string, data: string): void {
  const value = data.replace(/\n$/, '');
  const override = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(path);
  if (override !== null) {
    const device = findDevice(simulator, override[1]!, path);
    // driver_override_store() (drivers/pci/pci-sysfs.c): an empty string clears it. The device's
    // own attribute, so every process reads what any wrote.
    device.driverOverride = value === '' ? undefined : value;
    return;
  }
  const unbind = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver\/unbind$/.exec(path);
  if (unbind !== null) {
    const device = findDevice(simulator, unbind[1]!, path);
    if (device.driver === null || value !== device.address) throw fsError('ENODEV', path);
    kernelCall(path, () => simulator.bind(device.address, null));
    return;
  }
  if (path === '/sys/bus/pci/drivers_probe') {
    const device = findDevice(simulator, value, path);
    const driver = device.driverOverride;
    if (device.driver === null && driver !== undefined) kernelCall(path, () => simulator.bind(device.address, driver));
    return;
  }
  if (path === '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit') {
    const limit = Number(value);
    if (!Number.isInteger(limit) || limit < 0 || limit > 0xffff_ffff) throw fsError('EINVAL', path);
    simulator.dmaEntryLimit = limit;
    return;
  }
  throw fsError(exists(simulator, path) ? 'EACCES' : 'ENOENT', path);
}

/** readlink(2) of a device's iommu_group or driver link. */
export function readLink(simulator: Simulator, path: string): string {
  const link = /^\/sys\/bus\/pci\/devices\/([^/]+)\/(iommu_group|driver)$/.exec(path);
  if (link !== null) {
    const device = findDevice(simulator, link[1]!, path);
    // Relative to the device's real directory (DIR/X), up to /sys (docs/kernel-rules.md#sysfs-device-links).
    const up = '../'.repeat(simulator.platform.pciDevicesDirectory.split('/').length - 1);
    if (link[2] === 'iommu_group') {
      if (device.group === undefined) throw fsError('ENOENT', path);
      return `${up}kernel/iommu_groups/${device.group}`;
    }
    if (device.driver === null) throw fsError('ENOENT', path);
    return `${up}bus/pci/drivers/${device.driver}`;
  }
  throw fsError(exists(simulator, path) ? 'EINVAL' : 'ENOENT', path);
}

/** readdir(3) of a sysfs or `/dev/vfio` directory. */
export function readDir(simulator: Simulator, path: string): string[] {
  const trimmed = path.replace(/\/$/, '');
  if (trimmed === '/sys/kernel/iommu_groups') return simulator.groups().map((group) => String(group.id));
  const members = /^\/sys\/kernel\/iommu_groups\/(\d+)\/devices$/.exec(trimmed);
  if (members !== null) {
    const group = simulator.group(Number(members[1]));
    if (group === undefined) throw fsError('ENOENT', path);
    return group.devices.map((device) => device.address);
  }
  if (trimmed === '/sys/bus/pci/devices') return simulator.devices().map((device) => device.address);
  const cdev = /^\/sys\/bus\/pci\/devices\/([^/]+)\/vfio-dev$/.exec(trimmed);
  if (cdev !== null) {
    const index = vfioDevices(simulator).indexOf(findDevice(simulator, cdev[1]!, path));
    if (index < 0) throw fsError('ENOENT', path);
    return [`vfio${index}`];
  }
  if (trimmed === '/dev/vfio') {
    const groups = simulator.groups().filter((group) => group.devices.some((device) => device.driver === 'vfio-pci'));
    return ['vfio', ...groups.map((group) => String(group.id)), ...(vfioDevices(simulator).length > 0 ? ['devices'] : [])];
  }
  if (trimmed === '/dev/vfio/devices') return vfioDevices(simulator).map((_, index) => `vfio${index}`);
  throw fsError('ENOENT', path);
}

/** Whether a sysfs or `/dev` path exists. */
export function exists(simulator: Simulator, path: string): boolean {
  const trimmed = path.replace(/\/$/, '');
  if (['/dev/vfio', '/dev/vfio/vfio', '/dev/iommu', '/sys/kernel/iommu_groups', '/sys/bus/pci/devices', '/sys/bus/pci/drivers_probe'].includes(trimmed)) return true;
  try {
    if (/^\/sys\/kernel\/iommu_groups\/\d+(\/(reserved_regions|type|devices))?$/.test(trimmed)) {
      return simulator.group(Number(trimmed.split('/')[4])) !== undefined;
    }
    const device = /^\/sys\/bus\/pci\/devices\/([^/]+)(\/.*)?$/.exec(trimmed);
    if (device !== null) {
      const found = findDevice(simulator, device[1]!, path);
      const rest = device[2] ?? '';
      if (rest === '/iommu_group') return found.group !== undefined;
      if (rest === '/driver' || rest === '/driver/unbind') return found.driver !== null;
      if (rest === '/vfio-dev') return found.driver === 'vfio-pci';
      return ['', '/vendor', '/device', '/driver_override'].includes(rest);
    }
    if (/^\/dev\/vfio\/\d+$/.test(trimmed)) return readDir(simulator, '/dev/vfio').includes(trimmed.slice(10));
    if (/^\/dev\/vfio\/devices\/vfio\d+$/.test(trimmed)) return Number(trimmed.slice(22)) < vfioDevices(simulator).length;
    if (/^\/sys\/module\/vfio_iommu_type1\/parameters\/(dma_entry_limit|allow_unsafe_interrupts)$/.test(trimmed)) return true;
  } catch {
    return false;
  }
  return false;
}

/** Devices bound to vfio-pci, in address order: `/dev/vfio/devices/vfioN` is the Nth. */
export function vfioDevices(simulator: Simulator): SimDevice[] {
  return simulator.devices().filter((device) => device.driver === 'vfio-pci');
}

function findDevice(simulator: Simulator, address: string, path: string): SimDevice {
  try {
    return simulator.device(address);
  } catch {
    throw fsError('ENOENT', path);
  }
}

function kernelCall(path: string, call: () => unknown): void {
  try {
    call();
  } catch (error) {
    if (error instanceof KernelError) throw fsError(errnoName(error.errno), path);
    throw error;
  }
}

function fsError(code: string, path: string): Error {
  return Object.assign(new Error(`${code}: ${path}`), { code, path });
}
