import { ERRNO, hex, IoasError, type ReservedKind, type ReservedRange, type Syscalls } from '@ioas/core';
import { errnoOf } from './release.js';

/**
 * The typed error for a failed sysfs read: `not-found` when the path does not exist (ENOENT,
 * ENOTDIR: no such group or device), else `kernel` with the errno and the call's name.
 */
function sysfsFailure(error: unknown, call: string, path: string, what: string): IoasError {
  if (IoasError.isInstance(error)) return error;
  const errno = errnoOf(error);
  if (errno === ERRNO.ENOENT || errno === ERRNO.ENOTDIR) return new IoasError('not-found', `${what}: ${path} does not exist`, { errno, ioctl: call, cause: error });
  return IoasError.fromErrno(errno, call, `${what} (${path})`, { cause: error });
}

/** One line of `reserved_regions` the kernel may print: `0x%016llx 0x%016llx %s`. */
const RESERVED_LINE = /^0x([0-9a-f]{16}) 0x([0-9a-f]{16}) (\S+)$/;
const KNOWN_KINDS = new Set<string>(['msi', 'direct', 'direct-relaxable', 'reserved']);

/**
 * Parses `/sys/kernel/iommu_groups/N/reserved_regions` (docs/kernel-rules.md#reserved-regions-file-format):
 * one region per line, inclusive end. An unknown type string is kept as `reserved`, the
 * conservative reading (never mapped), with the original string in `origin`.
 */
export function parseReservedRegions(text: string, origin: string): ReservedRange[] {
  if (typeof text !== 'string' || typeof origin !== 'string') {
    const kind = (value: unknown): string => (value === null ? 'null' : typeof value);
    throw new IoasError('invalid-argument', `parseReservedRegions: the text and its origin must be strings, not ${kind(text)} and ${kind(origin)}`);
  }
  const regions: ReservedRange[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const match = RESERVED_LINE.exec(line.trim());
    if (match === null) throw new IoasError('abi-mismatch', `${origin}: cannot parse reserved region line "${line}"`);
    const kind = match[3]!;
    const known = KNOWN_KINDS.has(kind);
    const start = BigInt(`0x${match[1]}`);
    const last = BigInt(`0x${match[2]}`);
    // The kernel prints each region's start and inclusive end (iommu_group_show_resv_regions());
    // an end below the start is no region at all.
    if (last < start) throw new IoasError('abi-mismatch', `${origin} lists ${hex(start)} ${hex(last)} ${kind}, a range that ends before it starts`);
    regions.push({
      start,
      last,
      kind: (known ? kind : 'reserved') as ReservedKind,
      source: 'sysfs',
      origin: known ? origin : `${origin} (type "${kind}")`,
    });
  }
  return regions;
}

/** A PCI device as sysfs describes it. */
export interface PciDeviceInfo {
  /** PCI address (`0000:00:03.0`), the name sysfs and VFIO use. */
  readonly address: string;
  /** PCI vendor id. */
  readonly vendor: number;
  /** PCI device id. */
  readonly device: number;
  /** The bound driver's name, or null. */
  readonly driver: string | null;
  /** The IOMMU group number, or undefined when the device has none. */
  readonly group: number | undefined;
}

/** Drivers that leave a group viable: they set `driver_managed_dma` (docs/kernel-rules.md#group-viability). */
export const DMA_SAFE_DRIVERS: readonly string[] = ['vfio-pci', 'pci-stub', 'pcieport'];

/** A device and the driver bound to it. */
export interface DriverBinding {
  /** PCI address. */
  readonly address: string;
  /** The bound driver's name. */
  readonly driver: string;
}

/** `1234:11e8`: a device's vendor and device ids as lspci prints them. */
export function pciId(device: { readonly vendor: number; readonly device: number }): string {
  const id = (value: number): string => (Number.isInteger(value) && value >= 0 && value <= 0xffff ? value.toString(16).padStart(4, '0') : '????');
  return `${id(device.vendor)}:${id(device.device)}`;
}

/** What makes a group non-viable, for messages: `0000:00:1f.2 is bound to ahci, ...`. */
export function describeBlockers(blockers: readonly DriverBinding[]): string {
  return blockers.map(({ address, driver }) => `${address} is bound to ${driver}`).join(', ');
}

/** An IOMMU group as sysfs describes it: its devices, reserved regions, and whether VFIO can use it. */
export interface GroupInfo {
  /** The group number (`/dev/vfio/<group>`). */
  readonly group: number;
  /** Its member devices. */
  readonly devices: readonly PciDeviceInfo[];
  /** Its reserved regions, from `reserved_regions`. */
  readonly reserved: readonly ReservedRange[];
  /**
   * What VFIO_GROUP_FLAGS_VIABLE will say: every member unbound or bound to a driver that does not
   * own DMA (vfio-pci, pci-stub, pcieport). Otherwise GROUP_SET_CONTAINER fails with EPERM.
   */
  readonly viable: boolean;
  /** The members that make the group non-viable, with their drivers. */
  readonly blockers: readonly DriverBinding[];
  /** True when a member is bound to vfio-pci (then `/dev/vfio/<group>` exists). */
  readonly vfio: boolean;
}

/**
 * The sysfs side of VFIO: IOMMU groups and their devices, reserved regions, drivers, and binding
 * to vfio-pci. `root` prefixes every path, so that a captured tree can stand in for `/`.
 */
export class Sysfs {
  constructor(
    private readonly syscalls: Syscalls,
    private readonly root = '',
  ) {}

  private path(path: string): string {
    return `${this.root}${path}`;
  }

  /** Reads a sysfs file; a failure is a typed error saying what was read. */
  private readFile(path: string, what: string): string {
    const full = this.path(path);
    try {
      return this.syscalls.readFile(full);
    } catch (error) {
      throw sysfsFailure(error, 'read', full, what);
    }
  }

  /** Lists a sysfs directory; a failure is a typed error saying what was listed. */
  private readDir(path: string, what: string): string[] {
    const full = this.path(path);
    try {
      return this.syscalls.readDir(full);
    } catch (error) {
      throw sysfsFailure(error, 'readdir', full, what);
    }
  }

  /**
   * The target of a sysfs link, read with readlink(2) and never followed: in a captured tree (or a
   * container's partial /sys) the target may be absent, and the link still says what it points at.
   * Undefined when there is no link (ENOENT).
   */
  private readLink(path: string, what: string): string | undefined {
    const full = this.path(path);
    let target: string;
    try {
      target = this.syscalls.readLink(full);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === ERRNO.ENOENT) return undefined;
      if (errno === ERRNO.EINVAL) throw new IoasError('abi-mismatch', `${what}: ${full} is not a symbolic link`, { cause: error });
      throw sysfsFailure(error, 'readlink', full, what);
    }
    if (typeof target !== 'string' || target === '') throw new IoasError('abi-mismatch', `${what}: ${full} points nowhere`);
    return target;
  }

  /** The last component of a link's target (`../../../../bus/pci/drivers/vfio-pci` gives `vfio-pci`). */
  private linkName(path: string, what: string): string | undefined {
    const target = this.readLink(path, what);
    if (target === undefined) return undefined;
    const name = target.replace(/\/+$/, '').split('/').pop();
    if (name === undefined || name === '' || name === '.' || name === '..') throw new IoasError('abi-mismatch', `${what}: ${this.path(path)} points at "${target}", which names nothing`);
    return name;
  }

  /** Every IOMMU group number, ascending; empty when the IOMMU is off. */
  groups(): number[] {
    const path = '/sys/kernel/iommu_groups';
    if (!this.syscalls.exists(this.path(path))) return [];
    return this.readDir(path, 'listing the IOMMU groups')
      .filter((name) => /^\d+$/.test(name))
      .map(Number)
      .filter((group) => Number.isSafeInteger(group))
      .sort((a, b) => a - b);
  }

  /** The device names in a group (what VFIO_GROUP_GET_DEVICE_FD accepts). */
  groupDevices(group: number): string[] {
    return this.readDir(`/sys/kernel/iommu_groups/${group}/devices`, `listing the devices of IOMMU group ${group}`).sort();
  }

  /** A group's reserved regions. */
  reservedRegions(group: number): ReservedRange[] {
    const path = `/sys/kernel/iommu_groups/${group}/reserved_regions`;
    return parseReservedRegions(this.readFile(path, `reading the reserved regions of IOMMU group ${group}`), path);
  }

  /** The IOMMU group of a device: the basename of its `iommu_group` link (read, not followed). */
  deviceGroup(address: string): number | undefined {
    const path = `/sys/bus/pci/devices/${address}/iommu_group`;
    const name = this.linkName(path, `reading the IOMMU group of ${address}`);
    if (name === undefined) return undefined;
    const group = /^\d+$/.test(name) ? Number(name) : Number.NaN;
    if (!Number.isSafeInteger(group)) throw new IoasError('abi-mismatch', `reading the IOMMU group of ${address}: ${this.path(path)} points at "${name}", not a group number`);
    return group;
  }

  /** The driver bound to a device, or null: the basename of its `driver` link (read, not followed). */
  deviceDriver(address: string): string | null {
    return this.linkName(`/sys/bus/pci/devices/${address}/driver`, `reading the driver of ${address}`) ?? null;
  }

  /** Vendor, device, driver and group of a PCI device. */
  device(address: string): PciDeviceInfo {
    const read = (file: string): number => {
      const path = `/sys/bus/pci/devices/${address}/${file}`;
      const text = this.readFile(path, `reading the ${file} id of ${address}`).trim();
      if (!/^(0x)?[0-9a-f]{1,4}$/i.test(text)) throw new IoasError('abi-mismatch', `reading the ${file} id of ${address}: ${this.path(path)} holds "${text.slice(0, 40)}", not a 16-bit hex id`);
      return Number.parseInt(text, 16);
    };
    return { address, vendor: read('vendor'), device: read('device'), driver: this.deviceDriver(address), group: this.deviceGroup(address) };
  }

  /** Members bound to a driver that owns DMA: each makes the group non-viable (docs/kernel-rules.md#group-viability). */
  groupBlockers(group: number): DriverBinding[] {
    const blockers: DriverBinding[] = [];
    for (const address of this.groupDevices(group)) {
      const driver = this.deviceDriver(address);
      if (driver !== null && !DMA_SAFE_DRIVERS.includes(driver)) blockers.push({ address, driver });
    }
    return blockers;
  }

  /** A group with its devices (vendor, device, driver), reserved regions and viability. */
  describeGroup(group: number): GroupInfo {
    const devices = this.groupDevices(group).map((address) => this.device(address));
    const blockers = this.groupBlockers(group);
    return { group, devices, reserved: this.reservedRegions(group), viable: blockers.length === 0, blockers, vfio: devices.some((device) => device.driver === 'vfio-pci') };
  }

  /** Every IOMMU group, described. */
  describeGroups(): GroupInfo[] {
    return this.groups().map((group) => this.describeGroup(group));
  }

  /** True when `/sys/bus/pci/devices/<address>` exists. */
  hasDevice(address: string): boolean {
    const path = `/sys/bus/pci/devices/${address}`;
    // In sysfs this is itself a link (to /sys/devices/...): a dangling one still names a device.
    if (this.syscalls.exists(this.path(path))) return true;
    try {
      this.syscalls.readLink(this.path(path));
      return true;
    } catch {
      return false;
    }
  }

  /** The VFIO cdev of a device bound to vfio-pci (`vfioN`, Linux 6.6+), or undefined. */
  deviceCdev(address: string): string | undefined {
    const path = `/sys/bus/pci/devices/${address}/vfio-dev`;
    if (!this.syscalls.exists(this.path(path))) return undefined;
    return this.readDir(path, `listing the VFIO cdev of ${address}`).find((entry) => /^vfio\d+$/.test(entry));
  }

  /**
   * Binds a device to vfio-pci the per-device way: driver_override, unbind the current driver,
   * drivers_probe (docs/kernel-rules.md#binding-with-driver-override).
   */
  bindVfio(address: string): void {
    this.bind(address, 'vfio-pci');
  }

  /** Gives a device back to its default driver: clear driver_override, unbind, probe. */
  unbindVfio(address: string): void {
    this.bind(address, '');
  }

  private bind(address: string, driver: string): void {
    const device = `/sys/bus/pci/devices/${address}`;
    this.syscalls.writeFile(this.path(`${device}/driver_override`), `${driver}\n`);
    if (this.deviceDriver(address) !== null) this.syscalls.writeFile(this.path(`${device}/driver/unbind`), address);
    this.syscalls.writeFile(this.path('/sys/bus/pci/drivers_probe'), address);
  }
}
