/**
 * Writes a host's sysfs, /dev and /proc files into a directory, from a capture of a real machine's
 * IOMMU groups (the shape the real-kernel rig records in packages/kernel-rig/fixtures) plus the
 * host facts a capture does not hold. Tools given the directory as their root (`Sysfs`'s `root`,
 * `diagnoseHost`'s `root`, `ioas --sysfs-root`) then read it as they would read `/`.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** One device of a capture. */
export interface CapturedDevice {
  readonly address: string;
  readonly vendor: number;
  readonly device: number;
  readonly driver: string | null;
  readonly group?: number;
  /** The VFIO cdev name (`vfio0`), when the kernel has CONFIG_VFIO_DEVICE_CDEV and vfio-pci is bound. */
  readonly cdev?: string;
}

/** A capture of a machine's IOMMU groups, as sysfs showed them. */
export interface SysfsCapture {
  readonly kernel: string;
  readonly groups: readonly { readonly group: number; readonly reservedRegions: string; readonly devices: readonly CapturedDevice[] }[];
}

/** Host facts beyond the groups. Everything is absent unless given. */
export interface HostFacts {
  /** Names under /sys/module (`vfio`, `vfio_pci`, `vfio_iommu_type1`, `iommufd`). */
  readonly modules?: readonly string[];
  /** Device nodes to create (`/dev/vfio/vfio`, `/dev/iommu`); `/dev/vfio/<N>` is added for every group with a vfio-pci member when `/dev/vfio/vfio` is listed. */
  readonly dev?: readonly string[];
  /** RLIMIT_MEMLOCK soft and hard limit, in bytes, or `unlimited`. */
  readonly memlock?: bigint | 'unlimited';
  /** The process's effective capabilities, as /proc/self/status prints CapEff (hex). */
  readonly capEff?: string;
  /** /proc/interrupts. */
  readonly interrupts?: string;
  /** vfio_iommu_type1's allow_unsafe_interrupts. */
  readonly allowUnsafeInterrupts?: boolean;
  /** Hugepage pools by size in KiB: `{ 2048: { total: 64, free: 64 } }`. */
  readonly hugepages?: Readonly<Record<number, { readonly total: number; readonly free: number }>>;
}

/** A host where VFIO works: the modules loaded, the container node, 64 MiB of memlock, interrupt remapping, 16 free 2 MiB hugepages. */
export const HEALTHY_HOST: HostFacts = {
  modules: ['vfio', 'vfio_pci', 'vfio_iommu_type1'],
  dev: ['/dev/vfio/vfio'],
  memlock: 64n << 20n,
  capEff: '0',
  interrupts: ' 24: 0 IR-PCI-MSI 49152-edge vfio-msi[0]\n',
  hugepages: { 2048: { total: 16, free: 16 } },
};

function write(root: string, path: string, content: string): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  writeFileSync(full, content);
}

function link(root: string, path: string, target: string): void {
  const full = join(root, path);
  mkdirSync(dirname(full), { recursive: true });
  symlinkSync(target, full);
}

/** Writes the tree; `root` must be an empty or missing directory. */
export function writeHostTree(root: string, capture: SysfsCapture, host: HostFacts = {}): void {
  const drivers = new Set<string>();
  for (const { group, reservedRegions, devices } of capture.groups) {
    write(root, `/sys/kernel/iommu_groups/${group}/reserved_regions`, reservedRegions);
    write(root, `/sys/kernel/iommu_groups/${group}/type`, 'DMA\n');
    mkdirSync(join(root, `/sys/kernel/iommu_groups/${group}/devices`), { recursive: true });
    for (const device of devices) {
      const base = `/sys/bus/pci/devices/${device.address}`;
      link(root, `/sys/kernel/iommu_groups/${group}/devices/${device.address}`, `../../../../bus/pci/devices/${device.address}`);
      write(root, `${base}/vendor`, `0x${device.vendor.toString(16).padStart(4, '0')}\n`);
      write(root, `${base}/device`, `0x${device.device.toString(16).padStart(4, '0')}\n`);
      write(root, `${base}/driver_override`, '(null)\n');
      link(root, `${base}/iommu_group`, `../../../../kernel/iommu_groups/${group}`);
      if (device.driver !== null) {
        drivers.add(device.driver);
        link(root, `${base}/driver`, `../../../../bus/pci/drivers/${device.driver}`);
      }
      if (device.cdev !== undefined) write(root, `${base}/vfio-dev/${device.cdev}/dev`, '511:0\n');
    }
  }
  for (const driver of drivers) {
    write(root, `/sys/bus/pci/drivers/${driver}/bind`, '');
    write(root, `/sys/bus/pci/drivers/${driver}/unbind`, '');
  }
  write(root, '/sys/bus/pci/drivers_probe', '');
  for (const module of host.modules ?? []) mkdirSync(join(root, `/sys/module/${module}`), { recursive: true });
  if (host.allowUnsafeInterrupts !== undefined) write(root, '/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts', host.allowUnsafeInterrupts ? 'Y\n' : 'N\n');
  const dev = new Set(host.dev ?? []);
  if (dev.has('/dev/vfio/vfio')) {
    for (const { group, devices } of capture.groups) if (devices.some((device) => device.driver === 'vfio-pci')) dev.add(`/dev/vfio/${group}`);
  }
  for (const node of dev) write(root, node, '');
  if (host.memlock !== undefined) {
    const value = host.memlock === 'unlimited' ? 'unlimited' : String(host.memlock);
    write(root, '/proc/self/limits', `Limit                     Soft Limit           Hard Limit           Units     \nMax locked memory         ${value.padEnd(20)} ${value.padEnd(20)} bytes     \n`);
  }
  if (host.capEff !== undefined) write(root, '/proc/self/status', `Name:\tnode\nCapEff:\t${host.capEff}\n`);
  if (host.interrupts !== undefined) write(root, '/proc/interrupts', host.interrupts);
  for (const [size, pool] of Object.entries(host.hugepages ?? {})) {
    write(root, `/sys/kernel/mm/hugepages/hugepages-${size}kB/nr_hugepages`, `${pool.total}\n`);
    write(root, `/sys/kernel/mm/hugepages/hugepages-${size}kB/free_hugepages`, `${pool.free}\n`);
  }
}
