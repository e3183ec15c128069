import { ERRNO, hex, IoasError, type IovaRange, normalizeRanges } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import { checkOptions, simulatorOptionsSchema } from './options.js';
import type { DmaDomain } from './paged-domain.js';
import { PLATFORMS, type DeviceSpec, type PlatformName, type PlatformPreset, type ReservedRegionSpec, type SimKernel } from './platforms.js';
import type { DeviceIrqs, EduRegisters } from './sim-device.js';
import { SimMemory } from './sim-memory.js';

/** Options of {@link createSimulator}. */
export interface SimulatorOptions {
  /** A preset name or a whole preset. */
  readonly platform: PlatformName | PlatformPreset;
  /** vfio_iommu_type1's `dma_entry_limit` (default 65535, U16_MAX: docs/kernel-rules.md#the-mapping-budget). */
  readonly dmaEntryLimit?: number;
  /** RLIMIT_MEMLOCK in bytes (default: unlimited, as for a process with CAP_IPC_LOCK). */
  readonly memlockLimit?: bigint;
  /** vfio_iommu_type1 / iommufd `allow_unsafe_interrupts` (matters only without interrupt remapping). */
  readonly allowUnsafeInterrupts?: boolean;
  /** The PAMU type number the SDK kernel uses: 2 (3.x SDKs) or 7 (4.x SDKs); default 7. */
  readonly pamuType?: 2 | 7;
  /** Devices to bind to vfio-pci at start (default: the preset's test device). */
  readonly vfio?: readonly string[];
  /**
   * Model an IOMMU with hardware dirty bits (VT-d SSADS, SMMUv3 HTTU), which QEMU's emulated ones
   * lack: iommufd then reports IOMMU_HW_CAP_DIRTY_TRACKING and tracks dirty pages precisely.
   * Default: the preset's `hardwareDirty` (false on every preset). Paged platforms only.
   */
  readonly hardwareDirty?: boolean;
  /**
   * The Linux version whose vfio-pci device answers to give where 6.1 and 6.12 differ
   * ({@link SimKernel}). Default: the preset's `kernel` ('6.1' on x86-vtd and arm-smmuv3, the
   * kernel of the rig's lanes they stand for), else '6.12'.
   */
  readonly kernel?: SimKernel;
}

/** An IOMMU fault, as the kernel logs a DMAR fault or an SMMU event 0x10. */
export interface SimFault {
  /** The device's PCI address. */
  readonly device: string;
  /** The IOVA it accessed. */
  readonly iova: bigint;
  /** What it tried. */
  readonly access: 'read' | 'write';
  /** `unmapped`: no translation; `permission`: mapped without that access; `blocked`: not attached to any domain. */
  readonly reason: 'unmapped' | 'permission' | 'blocked';
  /** The line the kernel would log. */
  readonly log: string;
}

/** An MSI delivered to a handler (or eventfd). */
export interface SimInterrupt {
  /** The device's PCI address. */
  readonly device: string;
  /** The MSI vector. */
  readonly vector: number;
}

/** Makes a simulated ioctl fail with `errno`: the next matching call, or the one after `skip` matches. */
export interface FaultInjection {
  /**
   * Kernel name of the ioctl (`VFIO_IOMMU_MAP_DMA`, `IOMMU_IOAS_MAP`...), or `*` for any ioctl;
   * `close` fails the syscall face's next close() (the file is released all the same, as on Linux).
   */
  readonly ioctl: string;
  /** The errno to fail with. */
  readonly errno: number;
  /** Matching calls to let through first (default 0). */
  readonly skip?: number;
}

/** Bound of the number part of the pinned-bytes count: sums with one more count stay exact or visibly past it. */
const EXACT_COUNT = 2 ** 52;

/** Drivers that do not claim DMA ownership, so a group holding only these stays viable (6.1). */
const NON_DMA_OWNERS = new Set(['vfio-pci', 'pci-stub', 'pcieport']);

/** An MSI vector's handler: called on delivery, like an eventfd becoming readable. */
export type MsiHandler = (vector: number) => void;

/** A kernel object that holds mappings (a container, an iommufd context). */
export interface KernelObject {
  /** Mappings it holds. */
  readonly mappingCount: number;
}

/** A PAMU domain, as MSI address lookup sees it. */
export interface MsiWindowHolder {
  /** The device-visible doorbell for a bank's MSIIR, when a window holds its page. */
  msiAddressFor(msiir: bigint): bigint | undefined;
}

/** A simulated PCI device that can do DMA through the IOMMU and raise MSIs. */
export class SimDevice {
  /** PCI address. */
  readonly address: string;
  /** PCI vendor id. */
  readonly vendor: number;
  /** PCI device id. */
  readonly deviceId: number;
  /** True for QEMU's edu device. */
  readonly edu: boolean;
  /** Its reserved regions: the platform's and its own. */
  readonly reserved: readonly ReservedRegionSpec[];
  /**
   * The input range of the IOMMU in front of it: what a domain for it translates. Devices whose
   * ranges differ sit behind different IOMMUs and never share a domain
   * (docs/kernel-rules.md#one-domain-per-iommu-instance).
   */
  readonly aperture: IovaRange;
  /** The bound driver, or null. */
  driver: string | null;
  /** Its IOMMU group (none until a driver binds, on arm64 6.1). */
  group: number | undefined;
  /** The domain the device translates through (type1 container, IOAS, PAMU domain); undefined: DMA blocked. */
  domain: DmaDomain | undefined;
  /**
   * The iommufd context the device's cdev is bound to (VFIO_DEVICE_BIND_IOMMUFD), if any: a device
   * cdev opens once (6.12 drivers/vfio/vfio_main.c, vfio_df_open()), and while it is bound its
   * group's `/dev/vfio/N` cannot be opened (drivers/vfio/group.c, vfio_group_fops_open()).
   */
  boundTo: object | undefined;
  /**
   * Its sysfs `driver_override` (drivers/pci/pci-sysfs.c driver_override_store()): the driver
   * drivers_probe binds it to; undefined reads `(null)`. One per device, whichever process wrote it.
   */
  driverOverride: string | undefined = undefined;
  /**
   * vfio device fds open on it, from every process (struct vfio_device `open_count`): only the last
   * close turns it off (6.1 drivers/vfio/vfio_main.c vfio_device_fops_release(), 6.12 vfio_df_close()).
   */
  openCount = 0;
  /**
   * PCI config space as vfio-pci exposes it (256 bytes; made at the first access): the device's, so
   * one for every process (drivers/vfio/pci/vfio_pci_config.c, struct vfio_pci_core_device `vconfig`).
   */
  configSpace: Uint8Array | undefined = undefined;
  /**
   * The edu's BAR0 registers and DMA buffer (made at the first access): the hardware's, so one for every process.
   * @internal
   */
  eduRegisters: EduRegisters | undefined = undefined;
  /**
   * vfio-pci's interrupt state while the device is open (struct vfio_pci_core_device: `irq_type`,
   * the triggers, `virq_disabled`); undefined once the last close turned the device off.
   * @internal
   */
  irqs: DeviceIrqs | undefined = undefined;
  /** Handlers of enabled MSI vectors, and the address the kernel programmed into the device. */
  private msiHandlers: (MsiHandler | undefined)[] = [];
  private msiAddress: bigint | undefined;

  constructor(
    private readonly simulator: Simulator,
    spec: DeviceSpec,
  ) {
    this.address = spec.address;
    this.vendor = spec.vendor;
    this.deviceId = spec.device;
    this.edu = spec.edu === true;
    this.reserved = [...simulator.platform.reserved, ...(spec.reserved ?? [])];
    this.aperture = spec.aperture ?? simulator.platform.aperture;
    this.driver = spec.driver;
    this.group = spec.group;
  }

  /**
   * The firmware asks for a 1:1 mapping of one of its regions (a `direct` reserved region, such as a
   * non-USB, non-graphics RMRR): the kernel will not let it into a VFIO container or an iommufd
   * (docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned).
   */
  get requiresDirect(): boolean {
    return this.reserved.some((region) => region.kind === 'direct');
  }

  /** Device writes `bytes` at `iova`. Returns false, records a fault and leaves memory untouched when any page does not translate. */
  dmaWrite(iova: bigint, bytes: Uint8Array): boolean {
    const targets = this.translateAll(iova, bytes.length, true);
    if (targets === undefined) return false;
    let offset = 0;
    for (const { vaddr, length } of targets) {
      this.simulator.memory.write(vaddr, bytes.subarray(offset, offset + length));
      offset += length;
    }
    // The IOMMU sets the dirty bit of each leaf written through, when its page table records them.
    if (bytes.length > 0) this.domain?.recordWrite?.(iova, bytes.length);
    return true;
  }

  /** Device reads `length` bytes at `iova`; undefined (and a fault recorded) when any page does not translate. */
  dmaRead(iova: bigint, length: number): Uint8Array | undefined {
    const targets = this.translateAll(iova, length, false);
    if (targets === undefined) return undefined;
    const result = new Uint8Array(length);
    let offset = 0;
    for (const { vaddr, length: count } of targets) {
      result.set(this.simulator.memory.read(vaddr, count), offset);
      offset += count;
    }
    return result;
  }

  /**
   * Enables MSI vectors as VFIO_DEVICE_SET_IRQS does: the kernel picks the doorbell address for the
   * platform (x86: the fixed 0xfee00000 range; ARM: a page it maps into the SW MSI window; PAMU: the
   * window holding the bank's MSIIR page) and programs it into the device. Throws EINVAL when PAMU
   * has no window for any bank (docs/kernel-rules.md#pamu-msi-bank-map).
   */
  enableMsi(handlers: readonly (MsiHandler | undefined)[]): void {
    const platform = this.simulator.platform;
    let address: bigint | undefined;
    if (platform.hwMsi !== undefined) {
      address = platform.hwMsi.start;
    } else if (platform.swMsiDoorbell !== undefined) {
      address = this.domain?.mapSoftwareMsi?.(platform.swMsiDoorbell.physical);
      // Without a domain the kernel still programs an address; the write will fault.
      address ??= platform.swMsiDoorbell.window.start;
    } else if (platform.pamu !== undefined) {
      address = this.simulator.pamuMsiAddress(this);
      if (address === undefined) {
        throw new KernelError(ERRNO.EINVAL, 'VFIO_DEVICE_SET_IRQS', 'no PAMU window holds an MSI bank: map the banks before enabling MSI');
      }
    }
    this.msiAddress = address;
    this.msiHandlers = [...handlers];
  }

  /** Disables every MSI vector. */
  disableMsi(): void {
    this.msiHandlers = [];
    this.msiAddress = undefined;
  }

  /** Number of enabled MSI vectors. */
  get msiVectors(): number {
    return this.msiHandlers.length;
  }

  /** The device raises MSI `vector`: a write to its doorbell address, through the IOMMU. Returns whether it was delivered. */
  raiseMsi(vector: number): boolean {
    const address = this.msiAddress;
    if (address === undefined || vector >= this.msiHandlers.length) return false;
    const platform = this.simulator.platform;
    let delivered = false;
    if (platform.hwMsi !== undefined && address >= platform.hwMsi.start && address <= platform.hwMsi.last) {
      // x86: the MSI range is never translated; interrupt remapping delivers it.
      delivered = true;
    } else {
      const translation = this.domain?.translate(address, true);
      if (translation === undefined) {
        this.simulator.recordFault(this, address, 'write', 'blocked');
      } else if (translation.kind === 'doorbell' && this.simulator.isDoorbell(translation.physical)) {
        delivered = true;
      } else {
        this.simulator.recordFault(this, address, 'write', translation.kind === 'fault' ? translation.reason : 'unmapped');
      }
    }
    if (delivered) {
      this.simulator.interrupts.push({ device: this.address, vector });
      this.msiHandlers[vector]?.(vector);
    }
    return delivered;
  }

  private translateAll(iova: bigint, length: number, write: boolean): { vaddr: bigint; length: number }[] | undefined {
    const domain = this.domain;
    const targets: { vaddr: bigint; length: number }[] = [];
    let done = 0;
    while (done < length) {
      const at = iova + BigInt(done);
      const count = Math.min(length - done, Number(0x1000n - (at % 0x1000n)));
      const translation = domain?.translate(at, write);
      if (translation === undefined || translation.kind !== 'memory') {
        const reason = translation === undefined ? 'blocked' : translation.kind === 'fault' ? translation.reason : 'permission';
        this.simulator.recordFault(this, at, write ? 'write' : 'read', reason);
        return undefined;
      }
      if (!this.simulator.memory.isMapped(translation.vaddr, BigInt(count))) {
        this.simulator.recordFault(this, at, write ? 'write' : 'read', 'unmapped');
        return undefined;
      }
      targets.push({ vaddr: translation.vaddr, length: count });
      done += count;
    }
    return targets;
  }
}

/** A simulated IOMMU group. */
export class SimGroup {
  /** The VFIO container or iommufd context that owns it, if any. */
  owner: object | undefined;
  /** The group's `/dev/vfio/N` is open (6.1 allows one open at a time). */
  opened = false;
  /** Device fds obtained from this group that are still open. */
  openDevices = 0;

  /**
   * A member's cdev is bound to an iommufd (the group's `cdev_device_open_cnt` is not 0): opening
   * `/dev/vfio/N` is then EBUSY (6.12 drivers/vfio/group.c, vfio_group_fops_open()).
   */
  get cdevBound(): boolean {
    return this.devices.some((device) => device.boundTo !== undefined);
  }

  constructor(
    /** The group number. */
    readonly id: number,
    private readonly simulator: Simulator,
  ) {}

  /** Member devices, in address order. */
  get devices(): SimDevice[] {
    return this.simulator.devices().filter((device) => device.group === this.id);
  }

  /**
   * VFIO_GROUP_FLAGS_VIABLE: no member is bound to a driver that owns DMA (vfio-pci, pci-stub and
   * pcieport do not; unbound devices do not): docs/kernel-rules.md#group-viability.
   */
  get viable(): boolean {
    return this.devices.every((device) => device.driver === null || NON_DMA_OWNERS.has(device.driver));
  }

  /**
   * The group's reserved regions as sysfs lists them: sorted by start, overlapping or adjacent
   * regions of the same type merged, different types listed separately (iommu.c
   * iommu_get_group_resv_regions / iommu_insert_resv_region).
   */
  get reserved(): ReservedRegionSpec[] {
    const byKind = new Map<string, IovaRange[]>();
    for (const device of this.devices) {
      for (const region of device.reserved) {
        const list = byKind.get(region.kind) ?? [];
        list.push(region);
        byKind.set(region.kind, list);
      }
    }
    const merged: ReservedRegionSpec[] = [];
    for (const [kind, ranges] of byKind) {
      for (const range of normalizeRanges(ranges)) merged.push({ ...range, kind: kind as ReservedRegionSpec['kind'] });
    }
    return merged.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  }

  /**
   * The input range of the IOMMU the group sits behind (its devices share one: an IOMMU group never
   * spans two IOMMUs); the platform's aperture for a group with no device.
   */
  get aperture(): IovaRange {
    return this.devices[0]?.aperture ?? this.simulator.platform.aperture;
  }

  /** A member needs a direct mapping: the kernel will not hand the group's DMA to VFIO or iommufd. */
  get requiresDirect(): boolean {
    return this.devices.some((device) => device.requiresDirect);
  }

  /** The `reserved_regions` file: `0x%016llx 0x%016llx %s\n` per region (iommu.c). */
  get reservedRegionsFile(): string {
    const pad = (value: bigint) => `0x${value.toString(16).padStart(16, '0')}`;
    return this.reserved.map((region) => `${pad(region.start)} ${pad(region.last)} ${region.kind}\n`).join('');
  }
}

/**
 * The simulated kernel and hardware: memory, devices, IOMMU groups, and what tests look at (faults,
 * interrupts delivered, kernel oopses). One instance is one machine; nothing is global.
 */
export class Simulator {
  /** The preset the machine follows. */
  readonly platform: PlatformPreset;
  /** Host memory: process virtual addresses over simulated physical pages. */
  readonly memory = new SimMemory();
  /** IOMMU faults, in order, with the line the kernel would log. */
  readonly faults: SimFault[] = [];
  /** MSIs delivered, in order. */
  readonly interrupts: SimInterrupt[] = [];
  /** Requests that would have crashed the real kernel (see {@link KernelOops}). */
  readonly oopses: string[] = [];
  /** `/sys/module/vfio_iommu_type1/parameters/dma_entry_limit`: root may change it; read at SET_IOMMU. */
  dmaEntryLimit: number;
  /** RLIMIT_MEMLOCK in bytes; undefined: unlimited. */
  readonly memlockLimit: bigint | undefined;
  /** `allow_unsafe_interrupts`. */
  readonly allowUnsafeInterrupts: boolean;
  /** The PAMU type number the simulated SDK kernel answers to. */
  readonly pamuType: 2 | 7;
  /** The IOMMU has hardware dirty bits iommufd can use (option `hardwareDirty`, else the preset's). */
  readonly hardwareDirty: boolean;
  /** The kernel whose device answers the machine gives (option `kernel`, else the preset's, else '6.12'). */
  readonly kernel: SimKernel;
  /**
   * Bytes pinned: `lockedLarge + lockedSmall`. The map/unmap hot paths count in the number, which
   * stays exact (below 2^52 in magnitude); {@link pin} and {@link unpin} count in the bigint.
   */
  private lockedLarge = 0n;
  private lockedSmall = 0;
  private readonly deviceMap = new Map<string, SimDevice>();
  private readonly groupMap = new Map<number, SimGroup>();
  private readonly injections: { ioctl: string; errno: number; skip: number }[] = [];
  /** Open kernel objects (containers, iommufd contexts), for leak checks: see {@link liveMappings}. */
  readonly kernelObjects = new Set<KernelObject>();
  /** PAMU domains that can hold MSI bank windows, for MSI address lookup. */
  readonly pamuDomains = new Set<MsiWindowHolder>();

  constructor(options: SimulatorOptions) {
    checkOptions(simulatorOptionsSchema, options, 'createSimulator()');
    this.platform = typeof options.platform === 'string' ? PLATFORMS[options.platform] : options.platform;
    this.dmaEntryLimit = options.dmaEntryLimit ?? 65535;
    this.memlockLimit = options.memlockLimit;
    this.allowUnsafeInterrupts = options.allowUnsafeInterrupts ?? false;
    this.pamuType = options.pamuType ?? 7;
    this.hardwareDirty = options.hardwareDirty ?? this.platform.hardwareDirty ?? false;
    this.kernel = options.kernel ?? this.platform.kernel ?? '6.12';
    if (this.hardwareDirty && this.platform.model === 'windowed') {
      const option = options.hardwareDirty === undefined ? 'platform.hardwareDirty' : 'hardwareDirty';
      throw new IoasError('invalid-argument', `createSimulator(): invalid options: ${option}: the PAMU grants windows and keeps no dirty bits; hardware dirty tracking is for paged IOMMUs (VT-d, SMMUv3)`, {
        operation: 'createSimulator()',
      });
    }
    for (const spec of this.platform.devices) {
      const device = new SimDevice(this, spec);
      this.deviceMap.set(device.address, device);
      if (device.group !== undefined) this.ensureGroup(device.group);
    }
    const option = options.vfio === undefined ? 'platform.vfioAtStart' : 'vfio';
    for (const address of options.vfio ?? this.platform.vfioAtStart) {
      try {
        this.bind(address, 'vfio-pci');
      } catch (error) {
        if (!(error instanceof KernelError)) throw error;
        throw new IoasError('invalid-argument', `createSimulator(): invalid options: ${option}: cannot bind ${address} to vfio-pci at start: ${error.message}`, {
          operation: 'createSimulator()',
          cause: error,
        });
      }
    }
  }

  /** Bytes pinned for DMA, counted against RLIMIT_MEMLOCK. */
  get lockedBytes(): bigint {
    return this.lockedLarge + BigInt(this.lockedSmall);
  }

  /** Sets the pinned count (tests that start from a given figure). */
  set lockedBytes(bytes: bigint) {
    this.lockedLarge = bytes;
    this.lockedSmall = 0;
  }

  /** Every device, in address order. */
  devices(): SimDevice[] {
    return [...this.deviceMap.values()].sort((a, b) => a.address.localeCompare(b.address));
  }

  /** The device at a PCI address; throws ENODEV when there is none. */
  device(address: string): SimDevice {
    const device = this.deviceMap.get(address);
    if (device === undefined) throw new KernelError(ERRNO.ENODEV, 'device', `no device ${address}`);
    return device;
  }

  /** Every IOMMU group, by number. */
  groups(): SimGroup[] {
    return [...this.groupMap.values()].sort((a, b) => a.id - b.id);
  }

  /** A group by number, or undefined. */
  group(id: number): SimGroup | undefined {
    return this.groupMap.get(id);
  }

  /** Groups whose every member is bound to vfio-pci or unbound, with at least one vfio-pci member. */
  vfioGroups(): SimGroup[] {
    return this.groups().filter((group) => group.viable && group.devices.some((device) => device.driver === 'vfio-pci'));
  }

  /**
   * Binds a device to `driver` (or unbinds it with `null`), as driver_override + drivers_probe do.
   * On platforms whose groups appear only when a driver binds (arm64 6.1), the group is created then.
   */
  bind(address: string, driver: string | null): SimDevice {
    const device = this.device(address);
    if (device.driver !== null && driver !== null && device.driver !== driver) {
      throw new KernelError(ERRNO.EBUSY, 'bind', `${address} is bound to ${device.driver}; unbind it first`);
    }
    if (driver === null && device.group !== undefined && this.group(device.group)?.openDevices) {
      throw new KernelError(ERRNO.EBUSY, 'unbind', `${address} has an open VFIO device fd`);
    }
    device.driver = driver;
    if (driver !== null && device.group === undefined) {
      let id = 0;
      while (this.groupMap.has(id)) id++;
      device.group = id;
      this.ensureGroup(id);
    }
    return device;
  }

  /** Mappings held by every open container and IOAS: what a leak check compares before and after. */
  liveMappings(): number {
    let count = 0;
    for (const object of this.kernelObjects) count += object.mappingCount;
    return count;
  }

  /** Open kernel objects plus open group files: what a leak check of file descriptors compares. */
  openHandles(): number {
    return this.kernelObjects.size + this.groups().filter((group) => group.opened).length;
  }

  /** Makes the next matching ioctl fail with `errno` (after `skip` matching calls). */
  injectFault(injection: FaultInjection): void {
    this.injections.push({ ioctl: injection.ioctl, errno: injection.errno, skip: injection.skip ?? 0 });
  }

  /** Removes every pending fault injection. */
  clearInjectedFaults(): void {
    this.injections.length = 0;
  }

  /** True while a fault injection is pending (the ioctl hot paths leave such calls to the checked path). */
  get injecting(): boolean {
    return this.injections.length > 0;
  }

  /**
   * Called at the entry of every simulated ioctl: throws an injected failure when one matches.
   * `close` (the syscall face's close()) matches only an injection naming it, not `*`.
   */
  checkInjected(ioctl: string): void {
    if (this.injections.length === 0) return;
    const index = this.injections.findIndex((injection) => injection.ioctl === ioctl || (injection.ioctl === '*' && ioctl !== 'close'));
    if (index < 0) return;
    const injection = this.injections[index]!;
    if (injection.skip > 0) {
      injection.skip--;
      return;
    }
    this.injections.splice(index, 1);
    throw new KernelError(injection.errno, ioctl, 'injected failure');
  }

  /** Pins `bytes` for DMA, refusing with ENOMEM past RLIMIT_MEMLOCK (vfio_lock_acct / iommufd accounting). */
  pin(bytes: bigint, ioctl: string): void {
    if (this.memlockLimit !== undefined && this.lockedBytes + bytes > this.memlockLimit) {
      throw new KernelError(ERRNO.ENOMEM, ioctl, `pinning ${hex(bytes)} bytes would exceed RLIMIT_MEMLOCK ${hex(this.memlockLimit)} (${hex(this.lockedBytes)} locked)`);
    }
    this.lockedLarge += bytes;
  }

  /** Unpins `bytes` (the counterpart of {@link Simulator.pin}). */
  unpin(bytes: bigint): void {
    this.lockedLarge -= bytes;
  }

  /**
   * The map hot path's {@link pin}: pins `bytes` (an integer below 2^53) and returns true; pins
   * nothing and returns false when RLIMIT_MEMLOCK is set (the caller then takes the checked path,
   * which refuses with the kernel's errno) or the count would leave exact numbers.
   */
  tryPin(bytes: number): boolean {
    if (this.memlockLimit !== undefined) return false;
    const small = this.lockedSmall + bytes;
    if (small > EXACT_COUNT) return false;
    this.lockedSmall = small;
    return true;
  }

  /** The unmap hot path's {@link unpin}: `bytes` is an integer below 2^53. */
  unpinNumber(bytes: number): void {
    const small = this.lockedSmall - bytes;
    if (small < -EXACT_COUNT) this.lockedLarge -= BigInt(bytes);
    else this.lockedSmall = small;
  }

  /** True when `physical` is an MSI doorbell of this platform (ITS translater or a PAMU MSIIR). */
  isDoorbell(physical: bigint): boolean {
    const platform = this.platform;
    if (platform.swMsiDoorbell !== undefined && physical === platform.swMsiDoorbell.physical) return true;
    return platform.pamu?.msiir.includes(physical) ?? false;
  }

  /** PAMU: the MSI address the SDK kernel programs: the window holding a bank's MSIIR page, plus its page offset. */
  pamuMsiAddress(device: SimDevice): bigint | undefined {
    for (const domain of this.pamuDomains) {
      if (device.domain !== (domain as unknown)) continue;
      for (const msiir of this.platform.pamu?.msiir ?? []) {
        const address = domain.msiAddressFor(msiir);
        if (address !== undefined) return address;
      }
    }
    return undefined;
  }

  /** Records an IOMMU fault with the log line the platform's driver prints. */
  recordFault(device: SimDevice, iova: bigint, access: 'read' | 'write', reason: SimFault['reason']): void {
    const bdf = device.address.slice(5);
    let log: string;
    if (this.platform.name === 'x86-vtd') {
      const why = reason === 'permission' ? `PTE ${access === 'write' ? 'Write' : 'Read'} access is not set` : 'PTE Read access is not set';
      log = `DMAR: [DMA ${access === 'write' ? 'Write' : 'Read'} NO_PASID] Request device [${bdf}] fault addr ${hex(iova)} [fault reason 0x05] ${why}`;
    } else if (this.platform.name === 'arm-smmuv3') {
      log = `arm-smmu-v3 9050000.smmuv3: event 0x10 received: ${device.address} iova ${hex(iova)} (${reason})`;
    } else {
      log = `fsl-pamu: access violation for ${device.address} at ${hex(iova)} (${reason})`;
    }
    this.faults.push({ device: device.address, iova, access, reason, log });
  }

  private ensureGroup(id: number): void {
    if (!this.groupMap.has(id)) this.groupMap.set(id, new SimGroup(id, this));
  }
}

/**
 * Creates a simulated machine (memory, IOMMU, devices, the kernel objects) and nothing more. For a
 * test that drives the simulated kernel itself: through {@link simSyscalls} under a real backend
 * (`smmu()`, `pamu()`), or its objects directly. A user of `Container` who only wants a backend to
 * test against wants {@link sim} instead, which creates one of these (or takes yours as
 * `simulator`) and puts a `Backend` in front of it.
 *
 * @throws {IoasError} `invalid-argument` naming the option at fault (an unknown platform, a preset
 *   missing a field, a limit that is not a u32 or u64, a `vfio` device the preset lacks or that
 *   another driver holds, an unknown key).
 */
export function createSimulator(options: SimulatorOptions): Simulator {
  return new Simulator(options);
}
