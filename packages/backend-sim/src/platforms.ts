import type { IovaRange, MsiModel, ReservedKind } from '@ioas/core';

/** The platform presets: what Linux 6.1 guests on QEMU reported, and the P4080 of the PAMU SDK. */
export type PlatformName = 'p4080' | 'arm-smmuv3' | 'x86-vtd';

/** A reserved region as sysfs prints it. */
export interface ReservedRegionSpec extends IovaRange {
  /** The kind sysfs prints. */
  readonly kind: ReservedKind;
}

/** A PCI device of a preset. */
export interface DeviceSpec {
  /** PCI address, the name sysfs and VFIO use: `0000:00:03.0`. */
  readonly address: string;
  /** PCI vendor id. */
  readonly vendor: number;
  /** PCI device id. */
  readonly device: number;
  /** Driver bound at boot (`null`: none). */
  readonly driver: string | null;
  /** IOMMU group at boot; undefined when the group appears only once a driver binds (arm64 6.1). */
  readonly group?: number;
  /** Reserved regions of this device besides the platform's. */
  readonly reserved?: readonly ReservedRegionSpec[];
  /** True for QEMU's `edu` teaching device (BAR0 registers with a DMA engine and MSI). */
  readonly edu?: boolean;
  /**
   * The input range of the IOMMU in front of this device when it is not the platform's (a device
   * behind a second SMMU): a domain for its group translates only this range, and cannot take
   * devices behind the platform's IOMMU (docs/kernel-rules.md#one-domain-per-iommu-instance).
   * Default: the platform's {@link PlatformPreset.aperture}.
   */
  readonly aperture?: IovaRange;
  /**
   * Set when the device is in the preset though the rig's guests have not shown it (yet): what it
   * stands for and what is assumed. The presets-from-kernel test compares every device the rig's
   * captured sysfs trees hold, and lets only such a device be missing from them.
   */
  readonly modelled?: string;
}

/**
 * The Linux version whose vfio-pci device answers the simulator gives, where 6.1 and 6.12 differ:
 * VFIO_DEVICE_GET_INFO's reply length (6.1 copies 16 or 20 bytes, 6.12 `min(argsz, 24)`:
 * drivers/vfio/pci/vfio_pci_core.c `vfio_pci_ioctl_get_info()`) and a REQ or ERR eventfd below -1
 * (6.1 ignores it, 6.12 answers EINVAL: drivers/vfio/pci/vfio_pci_intrs.c
 * `vfio_pci_set_ctx_trigger_single()`). Those are the two kernels the rig's lanes boot.
 */
export type SimKernel = '6.1' | '6.12';

/** Everything the simulator needs to know about a platform. */
export interface PlatformPreset {
  /** The preset's name. */
  readonly name: PlatformName;
  /** Paged (page tables) or windowed (PAMU). */
  readonly model: 'paged' | 'windowed';
  /**
   * Paged: the IOMMU's input address range (39-bit on QEMU's VT-d, 48-bit on the SMMUv3 domain).
   * Windowed: the PAMU domain's default geometry, 0 to 64 GiB.
   */
  readonly aperture: IovaRange;
  /** type1 `iova_pgsizes`: 4 KiB | 2 MiB | 1 GiB on both QEMU guests; 4 KiB pages for PAMU. */
  readonly ioPageSizes: bigint;
  /** The platform's MSI model. */
  readonly msi: MsiModel;
  /** Reserved regions every device has (the MSI windows). */
  readonly reserved: readonly ReservedRegionSpec[];
  /** Kernel-managed MSI: the doorbell page (GIC ITS translater) the kernel maps into the SW MSI window. */
  readonly swMsiDoorbell?: {
    /** The SW MSI window (`0x8000000-0x80fffff`). */
    readonly window: IovaRange;
    /** The doorbell's physical address. */
    readonly physical: bigint;
  };
  /** Fixed MSI: the hardware range device MSI writes go to, never translated (interrupt remapping). */
  readonly hwMsi?: IovaRange;
  /** PAMU: the MSIIR physical address of each MSI bank, in probe order, and the hardware window maximum. */
  readonly pamu?: {
    /** MSIIR physical address of each bank, in probe order. */
    readonly msiir: readonly bigint[];
    /** The hardware window maximum, 2^(1+MWCE). */
    readonly maxWindows: number;
  };
  /** Its PCI devices. */
  readonly devices: readonly DeviceSpec[];
  /** Devices bound to vfio-pci when the simulator starts (the test target). */
  readonly vfioAtStart: readonly string[];
  /** Whether the platform has interrupt remapping / MSI isolation (else SET_IOMMU gives EPERM). */
  readonly interruptRemapping: boolean;
  /**
   * The sysfs directory the PCI devices live in (`/sys/bus/pci/devices/X` links to `DIR/X`): the
   * links a device directory holds (`iommu_group`, `driver`) are relative to it, so their `../`
   * count depends on its depth (docs/kernel-rules.md#sysfs-device-links).
   */
  readonly pciDevicesDirectory: string;
  /**
   * The IOMMU keeps dirty bits iommufd can use: VT-d second-stage access/dirty bits (ECAP.SLADS,
   * with scalable mode), SMMUv3 hardware dirty-state update (IDR0.HTTU = access and dirty, with a
   * coherent walk). With it the 6.12 kernel reports IOMMU_HW_CAP_DIRTY_TRACKING and allocates
   * HWPTs with IOMMU_HWPT_ALLOC_DIRTY_TRACKING; without it both refuse (EOPNOTSUPP). Default false;
   * false on every preset: QEMU's intel-iommu and smmuv3 emulate neither
   * (docs/kernel-rules.md#dirty-page-tracking). The simulator option `hardwareDirty` overrides it.
   */
  readonly hardwareDirty?: boolean;
  /**
   * VT-d: the capability and extended capability registers (`/sys/class/iommu/dmarN/intel-iommu/cap`,
   * `ecap`), which IOMMU_GET_HW_INFO returns in `struct iommu_hw_info_vtd`. Default 0 and 0.
   */
  readonly vtdRegisters?: {
    /** CAP_REG. */
    readonly cap: bigint;
    /** ECAP_REG. */
    readonly ecap: bigint;
  };
  /**
   * The kernel whose device answers the preset models (see {@link SimKernel}); the simulator option
   * `kernel` overrides it. Default '6.12'. x86-vtd and arm-smmuv3 name '6.1', the kernel of the
   * rig's x86 and arm64 lanes, which they were read from; the 6.12 iommufd lane runs on x86-vtd
   * with `kernel: '6.12'`.
   */
  readonly kernel?: SimKernel;
}

const EDU = { vendor: 0x1234, device: 0x11e8, edu: true } as const;

/*
 * The devices the presets hold for hot-plug (attach and detach on a live container). None is bound
 * to vfio-pci at start: a test binds it (`simulator.bind(address, 'vfio-pci')`) when it wants it.
 */

/**
 * A 16 MiB RMRR at 992 MiB (0x3e000000-0x3effffff), reported `direct`: under 1 GiB, so any guest of
 * 1 GiB or more whose RAM a VMM maps 1:1 from IOVA 0 covers it. RMRRs of USB and graphics devices
 * are reported `direct-relaxable` and conflict with nothing (docs/kernel-rules.md#reserved-region-types).
 */
const RMRR_X86 = { start: 0x3e00_0000n, last: 0x3eff_ffffn, kind: 'direct' } as const;

const RMRR_DEVICE_X86 =
  'a device with firmware-owned memory (an RMRR in the DMAR table), which QEMU cannot give a guest; an edu stands in for it, in group 8 (after the captured groups, though its devfn comes before that of the LPC group). ' +
  'The kernel never lets such a device into a VFIO container or an iommufd (docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned): ' +
  'core refuses a mapping in its region first, and the kernel refuses the rest';

const SECOND_EDU_ARM64 = 'the second edu the rig gives its virt guest at 00:10.0; its group number appears when it is bound, as the first edu\'s does';

/**
 * A second SMMUv3 with stage 2 only and a 32-bit output size (IDR5.OAS): its domains translate
 * `(1 << smmu->ias) - 1`, 32 bits, where the platform's stage-1 domains translate 48
 * (docs/kernel-rules.md#one-domain-per-iommu-instance).
 */
const SECOND_SMMU_APERTURE = { start: 0n, last: 0xffff_ffffn } as const;

const SECOND_SMMU_DEVICE =
  'a device behind a second PCIe root complex whose SMMUv3 translates 32 bits (stage 2 only, IDR5.OAS 32 bits); QEMU\'s virt has one SMMU, so ' +
  'an edu on segment 1 stands in for it. Guest RAM above 4 GiB lies outside what it can translate';

const SECOND_CONTROLLER_P4080 =
  'a device behind the P4080\'s second PCIe controller: every device behind a controller shares its LIODN group (docs/kernel-rules.md#pamu-groups-and-liodns); ' +
  'not read on a board';

/**
 * The presets. Sources: reserved regions and type1 results observed on 6.1.0-56 guests
 * (docs/kernel-rules.md#platform-reserved-layouts, docs/kernel-rules.md#the-iova-range-capability),
 * the edu device and groups appearing on bind on arm64 (docs/kernel-rules.md#edu-registers,
 * docs/kernel-rules.md#groups-appear-on-bind-on-arm64), PAMU geometry, 256 windows and the P4080
 * MSI banks (docs/kernel-rules.md#pamu-aperture-geometry, docs/kernel-rules.md#pamu-window-count,
 * docs/kernel-rules.md#p4080-msi-banks).
 */
export const PLATFORMS: Readonly<Record<PlatformName, PlatformPreset>> = {
  'x86-vtd': {
    name: 'x86-vtd',
    model: 'paged',
    // QEMU's intel-iommu defaults to a 39-bit address width.
    aperture: { start: 0n, last: 0x7f_ffff_ffffn },
    ioPageSizes: 0x4020_1000n,
    msi: 'fixed',
    reserved: [{ start: 0xfee0_0000n, last: 0xfeef_ffffn, kind: 'msi' }],
    hwMsi: { start: 0xfee0_0000n, last: 0xfeef_ffffn },
    // Addresses, IDs and groups as the rig's q35 guest showed them (packages/kernel-rig/fixtures/
    // sysfs-x86.json); drivers as a full Debian guest binds them (the rig's minimal guest binds none).
    devices: [
      { address: '0000:00:00.0', vendor: 0x8086, device: 0x29c0, driver: null, group: 0 },
      { address: '0000:00:01.0', vendor: 0x1234, device: 0x1111, driver: 'bochs-drm', group: 1 },
      { address: '0000:00:02.0', vendor: 0x8086, device: 0x10d3, driver: 'e1000e', group: 2 },
      { address: '0000:00:03.0', ...EDU, driver: null, group: 3 },
      { address: '0000:00:04.0', vendor: 0x1af4, device: 0x1009, driver: 'virtio-pci', group: 4 },
      { address: '0000:00:05.0', vendor: 0x1af4, device: 0x1009, driver: 'virtio-pci', group: 5 },
      // Hot-plug: the rig's second edu (-device edu,addr=0x10), unbound at start.
      { address: '0000:00:10.0', ...EDU, driver: null, group: 6 },
      // Hot-plug conflicts: a device with an RMRR-style direct region where a VMM maps guest RAM.
      { address: '0000:00:11.0', ...EDU, driver: null, group: 8, reserved: [RMRR_X86], modelled: RMRR_DEVICE_X86 },
      // The LPC/SATA/SMBus group also gets the floppy workaround's first 16 MiB, relaxable.
      ...(['0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3'] as const).map((address, index) => ({
        address,
        vendor: 0x8086,
        device: [0x2918, 0x2922, 0x2930][index]!,
        driver: ['lpc_ich', 'ahci', 'i801_smbus'][index]!,
        // 7 since the rig's guest has the second edu: groups are numbered in probe (devfn) order.
        group: 7,
        reserved: [{ start: 0n, last: 0xff_ffffn, kind: 'direct-relaxable' as const }],
      })),
    ],
    vfioAtStart: ['0000:00:03.0'],
    interruptRemapping: true,
    // q35's host bridge: /sys/devices/pci0000:00 (read on the rig's x86 guest).
    pciDevicesDirectory: '/sys/devices/pci0000:00',
    // QEMU's intel-iommu: ECAP.SLADS (bit 45) is 0, so no dirty tracking.
    hardwareDirty: false,
    // As the 6.12 iommufd lane's guest (QEMU 7.2, legacy mode as the rig boots it) read them (packages/kernel-rig/scripts/probe-dirty.mjs).
    vtdRegisters: { cap: 0x00d2_008c_2226_0286n, ecap: 0x0000_0000_00f0_0f4an },
    // The rig's x86 lane boots 6.1 (the 6.12 iommufd lane passes kernel: '6.12').
    kernel: '6.1',
  },
  'arm-smmuv3': {
    name: 'arm-smmuv3',
    model: 'paged',
    aperture: { start: 0n, last: 0xffff_ffff_ffffn },
    ioPageSizes: 0x4020_1000n,
    msi: 'kernel-managed',
    // MSI_IOVA_BASE 0x8000000 / MSI_IOVA_LENGTH 0x100000 (drivers/iommu/arm/arm-smmu-v3).
    reserved: [{ start: 0x800_0000n, last: 0x80f_ffffn, kind: 'msi' }],
    // The GICv3 ITS of QEMU virt: GITS_TRANSLATER sits at 0x8090040, in the page 0x8090000.
    swMsiDoorbell: { window: { start: 0x800_0000n, last: 0x80f_ffffn }, physical: 0x809_0040n },
    // As the rig's virt + smmuv3 guest showed them (packages/kernel-rig/fixtures/sysfs-arm64.json):
    // the NIC and three 9p devices have groups; edu gets one only when vfio-pci binds it.
    devices: [
      { address: '0000:00:01.0', vendor: 0x1af4, device: 0x1000, driver: 'virtio-pci', group: 0 },
      { address: '0000:00:02.0', ...EDU, driver: null },
      { address: '0000:00:03.0', vendor: 0x1af4, device: 0x1009, driver: 'virtio-pci', group: 1 },
      { address: '0000:00:04.0', vendor: 0x1af4, device: 0x1009, driver: 'virtio-pci', group: 2 },
      { address: '0000:00:05.0', vendor: 0x1af4, device: 0x1009, driver: 'virtio-pci', group: 3 },
      // Hot-plug: a second edu (-device edu,addr=0x10); its group, too, appears when it is bound.
      { address: '0000:00:10.0', ...EDU, driver: null, modelled: SECOND_EDU_ARM64 },
      // Hot-plug conflicts: an edu behind a second SMMUv3 whose domains translate 32 bits only.
      { address: '0001:00:01.0', ...EDU, driver: null, aperture: SECOND_SMMU_APERTURE, modelled: SECOND_SMMU_DEVICE },
    ],
    vfioAtStart: ['0000:00:02.0'],
    interruptRemapping: true,
    // virt's generic ECAM host bridge is a platform device: /sys/devices/platform/4010000000.pcie.
    pciDevicesDirectory: '/sys/devices/platform/4010000000.pcie/pci0000:00',
    // QEMU's smmuv3 implements no HTTU: no dirty-state update, so no dirty tracking.
    hardwareDirty: false,
    // The rig's arm64 lane boots 6.1.
    kernel: '6.1',
  },
  p4080: {
    name: 'p4080',
    model: 'windowed',
    aperture: { start: 0n, last: (1n << 36n) - 1n },
    ioPageSizes: 0x1000n,
    msi: 'explicit',
    reserved: [],
    // msi@41600, msi@41800, msi@41a00 under CCSR 0xf_fe00_0000 (current DTS: MSIIR at +0x140).
    pamu: { msiir: [0xf_fe04_4140n, 0xf_fe04_5140n, 0xf_fe04_6140n], maxWindows: 256 },
    // Every device behind a PCIe controller with BRR1 < 0x204 shares its controller's LIODN group.
    devices: [
      { address: '0000:01:00.0', ...EDU, driver: null, group: 0 },
      // Hot-plug: a device behind the second PCIe controller, in that controller's LIODN group.
      { address: '0001:01:00.0', ...EDU, driver: null, group: 1, modelled: SECOND_CONTROLLER_P4080 },
    ],
    vfioAtStart: ['0000:01:00.0'],
    interruptRemapping: true,
    // The P4080's PCIe controllers are platform devices too (fsl_pci); not read on a board here.
    pciDevicesDirectory: '/sys/devices/platform/ffe200000.pcie/pci0000:01',
    // The PAMU grants windows; it keeps no dirty state.
    hardwareDirty: false,
  },
};
