// The sysfs reader on a captured tree (a temp dir standing in for /), and its typed errors.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ERRNO, IoasError, type Syscalls } from '@ioas/core';
import { afterEach, describe, expect, it } from 'vitest';
import { libcSyscalls } from './libc-syscalls.js';
import { parseReservedRegions, pciId, Sysfs } from './sysfs.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

interface DeviceSpec {
  address: string;
  group: number;
  /** The driver the `driver` link names; its target directory is never created. */
  driver?: string;
  vendor?: string;
}

/**
 * A captured sysfs tree whose links dangle, as a copy of /sys keeps them: `iommu_groups/N/devices/X`
 * and every `driver` link point at directories the capture does not hold.
 */
function capturedTree(devices: readonly DeviceSpec[]): string {
  const root = mkdtempSync(join(tmpdir(), 'ioas-sysfs-'));
  roots.push(root);
  for (const device of devices) {
    const groupDir = join(root, 'sys/kernel/iommu_groups', String(device.group));
    mkdirSync(join(groupDir, 'devices'), { recursive: true });
    writeFileSync(join(groupDir, 'reserved_regions'), '0x00000000fee00000 0x00000000feefffff msi\n');
    symlinkSync(`../../../../devices/pci0000:00/${device.address}`, join(groupDir, 'devices', device.address));
    const deviceDir = join(root, 'sys/bus/pci/devices', device.address);
    mkdirSync(deviceDir, { recursive: true });
    writeFileSync(join(deviceDir, 'vendor'), `${device.vendor ?? '0x1af4'}\n`);
    writeFileSync(join(deviceDir, 'device'), '0x1000\n');
    symlinkSync(`../../../../../devices/kernel/iommu_groups/${device.group}`, join(deviceDir, 'iommu_group'));
    if (device.driver !== undefined) symlinkSync(`../../../../bus/pci/drivers/${device.driver}`, join(deviceDir, 'driver'));
  }
  return root;
}

const caught = (call: () => unknown): IoasError => {
  try {
    call();
  } catch (error) {
    if (IoasError.isInstance(error)) return error;
    throw new Error(`expected an IoasError, got ${String(error)}`);
  }
  throw new Error('expected a throw');
};

describe('Sysfs on a captured tree', () => {
  it('reads dangling driver and iommu_group links instead of following them', () => {
    const root = capturedTree([
      { address: '0000:00:03.0', group: 3, driver: 'vfio-pci' },
      { address: '0000:00:05.0', group: 5, driver: 'virtio-pci' },
      { address: '0000:00:06.0', group: 6 },
    ]);
    const sysfs = new Sysfs(libcSyscalls(), root);
    expect(sysfs.groups()).toEqual([3, 5, 6]);
    expect(sysfs.deviceDriver('0000:00:03.0')).toBe('vfio-pci');
    expect(sysfs.deviceGroup('0000:00:03.0')).toBe(3);
    expect(sysfs.deviceDriver('0000:00:06.0')).toBeNull();
    expect(sysfs.describeGroup(3)).toMatchObject({ viable: true, vfio: true, devices: [{ address: '0000:00:03.0', driver: 'vfio-pci', group: 3, vendor: 0x1af4 }] });
    // A virtio device makes its group non-viable even when the driver's directory is not captured.
    expect(sysfs.describeGroup(5)).toMatchObject({ viable: false, vfio: false, blockers: [{ address: '0000:00:05.0', driver: 'virtio-pci' }] });
    expect(sysfs.describeGroup(6)).toMatchObject({ viable: true, vfio: false, blockers: [] });
    expect(sysfs.hasDevice('0000:00:03.0')).toBe(true);
    expect(sysfs.hasDevice('0000:00:09.0')).toBe(false);
  });

  it('types every read failure: not-found for a missing group or device, abi-mismatch for content that does not parse', () => {
    const root = capturedTree([{ address: '0000:00:03.0', group: 3, driver: 'vfio-pci', vendor: 'garbage' }]);
    const sysfs = new Sysfs(libcSyscalls(), root);
    const missingGroup = caught(() => sysfs.groupDevices(99));
    expect(missingGroup.code).toBe('not-found');
    expect(missingGroup.message).toMatch(/listing the devices of IOMMU group 99: .*iommu_groups\/99\/devices does not exist/);
    expect(caught(() => sysfs.reservedRegions(99)).code).toBe('not-found');
    expect(caught(() => sysfs.device('0000:00:09.0')).code).toBe('not-found');
    const vendor = caught(() => sysfs.device('0000:00:03.0'));
    expect(vendor.code).toBe('abi-mismatch');
    expect(vendor.message).toMatch(/vendor id of 0000:00:03.0: .* holds "garbage"/);
    writeFileSync(join(root, 'sys/kernel/iommu_groups/3/reserved_regions'), 'nonsense\n');
    expect(caught(() => sysfs.reservedRegions(3)).code).toBe('abi-mismatch');
    // A driver entry that is a directory rather than a link (a capture that followed links).
    mkdirSync(join(root, 'sys/bus/pci/devices/0000:00:07.0/driver'), { recursive: true });
    expect(caught(() => sysfs.deviceDriver('0000:00:07.0')).code).toBe('abi-mismatch');
  });

  it('reports other failures as kernel errors with the errno and the call', () => {
    const failing: Syscalls = Object.assign(Object.create(libcSyscalls()) as Syscalls, {
      readDir: (path: string) => {
        throw Object.assign(new Error(`EACCES: permission denied, scandir '${path}'`), { code: 'EACCES', errno: -ERRNO.EACCES });
      },
      readLink: (path: string) => {
        throw Object.assign(new Error(`EIO: ${path}`), { code: 'EIO' });
      },
    });
    const sysfs = new Sysfs(failing, '/nonexistent-root');
    const listing = caught(() => sysfs.groupDevices(3));
    expect(listing).toMatchObject({ code: 'kernel', errno: ERRNO.EACCES, ioctl: 'readdir' });
    expect(listing.message).toMatch(/listing the devices of IOMMU group 3 \(.*\): readdir failed with EACCES/);
    expect(caught(() => sysfs.deviceDriver('0000:00:03.0'))).toMatchObject({ code: 'kernel', errno: ERRNO.EIO, ioctl: 'readlink' });
  });
});

describe('what sysfs could say wrong', () => {
  it('refuses a reserved region that ends before it starts (the kernel never prints one)', () => {
    expect(() => parseReservedRegions('0x00000000feefffff 0x00000000fee00000 msi\n', 'group 3')).toThrow(
      expect.objectContaining({ code: 'abi-mismatch', message: 'group 3 lists 0xfeefffff 0xfee00000 msi, a range that ends before it starts' }),
    );
    expect(parseReservedRegions('0x00000000fee00000 0x00000000feefffff msi\n', 'group 3')).toHaveLength(1);
  });

  it('prints ids that are not 16-bit numbers as ????', () => {
    expect(pciId({ vendor: 0x1234, device: 0x11e8 })).toBe('1234:11e8');
    expect(pciId({ vendor: Number.NaN, device: 0x10000 })).toBe('????:????');
  });
});
