import { assertRanges, subtractRanges, type IovaRange } from './iova-range.js';

/** A 64-bit value as users may write it: a bigint, or a safe non-negative integer number. */
export type U64Input = bigint | number;

/**
 * Whether the IOMMU translates through page tables (any granule-aligned IOVA inside the usable
 * ranges: ARM SMMU, Intel VT-d, AMD-Vi) or through a few large windows (an aperture cut into a
 * power-of-two number of equal windows, each mapping one physically contiguous chunk: Freescale PAMU).
 */
export type IommuModel = 'paged' | 'windowed';

/**
 * How {@link Container.createWindow} is realised:
 * - `hardware`: windows are the IOMMU's own (PAMU sub-windows); a created window must cover whole
 *   hardware windows.
 * - `kernel-allow-list`: the kernel is told (iommufd `IOMMU_IOAS_ALLOW_IOVAS`): its own IOVA choices
 *   stay inside them and a device whose reserved regions cut into them cannot attach (EADDRINUSE).
 *   Maps at a fixed IOVA are not checked against them (drivers/iommu/iommufd/io_pagetable.c,
 *   `iopt_check_iova`), so core refuses maps outside them itself, as on type1.
 * - `sdk`: the kernel has no such notion (VFIO type1); the SDK refuses maps outside the windows.
 */
export type WindowMode = 'hardware' | 'kernel-allow-list' | 'sdk';

/**
 * How device MSI writes reach the interrupt controller:
 * - `explicit`: userspace must map each MSI bank into a window before enabling MSI (PAMU).
 * - `kernel-managed`: the kernel maps doorbells into a software MSI window it reserves (ARM SMMU:
 *   0x8000000-0x80fffff); userspace keeps that window clear.
 * - `fixed`: a hardware MSI range that is never translated (x86: 0xfee00000-0xfeefffff).
 * - `none`: the device cannot raise MSIs through this IOMMU.
 */
export type MsiModel = 'explicit' | 'kernel-managed' | 'fixed' | 'none';

/** What a backend declares it can do; core branches on this data, never on the backend's name. */
export interface Capabilities {
  /** Paged (page tables) or windowed (PAMU). */
  readonly model: IommuModel;
  /** How `createWindow()` is realised. */
  readonly windows: WindowMode;
  /** Who maps MSI doorbells, and where. */
  readonly msi: MsiModel;
  /** True when an unmap may cut a mapping (PAMU trims and splits); false for type1v2 and iommufd. */
  readonly partialUnmap: boolean;
  /**
   * Most mappings the container can hold at once, counting those that already exist when it opens
   * (type1: `dma_entry_limit`, 65535 by default); `null` when there is no count limit (iommufd).
   */
  readonly mappingBudget: number | null;
  /** True when the geometry can be changed with {@link Container.setGeometry} (windowed IOMMUs). */
  readonly settableGeometry: boolean;
  /**
   * True when groups or devices can join and leave the open container ({@link Container.attach},
   * {@link Container.detach}); absent or false when its members are fixed at open.
   */
  readonly hotPlug?: boolean;
  /**
   * Dirty-page tracking for live migration ({@link Container.dirty}): what the kernel under the
   * backend offers, or why it offers none. Absent means none (a backend that predates it).
   */
  readonly dirtyTracking?: DirtyTracking;
}

/**
 * Whether a container can report the pages devices wrote by DMA (live migration), and how.
 * docs/kernel-rules.md#dirty-page-tracking
 */
export type DirtyTracking =
  | {
      /** Tracking exists. */
      readonly supported: true;
      /**
       * Bitmap of the page sizes a read may use (bit n set: 2^n-byte pages). VFIO type1 takes only
       * its smallest IO page size (vfio_iommu_type1_dirty_pages()); iommufd any power of two from
       * the IOMMU's smallest page up.
       */
      readonly pageSizes: bigint;
      /** Largest bitmap one read may return, in bytes (type1: 256 MiB); null when unbounded (iommufd). */
      readonly maxBitmapBytes: bigint | null;
      /**
       * `precise`: the IOMMU's dirty bits say which pages devices wrote (iommufd on an IOMMU with
       * hardware dirty tracking). `pessimistic`: every mapped page reads dirty every time (VFIO
       * type1 with devices that pin no pages, such as vfio-pci: update_user_bitmap()).
       */
      readonly precision: 'precise' | 'pessimistic';
      /** True when a read can leave the dirty bits set (iommufd's GET_DIRTY_BITMAP_NO_CLEAR). */
      readonly readWithoutClear: boolean;
    }
  | {
      /** No tracking. */
      readonly supported: false;
      /** Why, in words: what the kernel or the hardware lacks. */
      readonly reason: string;
    };

/** Geometry of a windowed IOMMU's aperture. */
export interface WindowGeometry {
  /** Current number of windows the aperture is cut into (a power of two). */
  readonly count: number;
  /**
   * Size of each window: the aperture size divided by `count`. `0n` while the windows are not
   * configured yet (PAMU's SDK driver computes it only from a geometry set through VFIO), in which
   * case nothing can be mapped until {@link Container.setGeometry} runs.
   */
  readonly size: bigint;
  /** Most windows the hardware and the kernel allow (256 for PAMU through VFIO). */
  readonly maxCount: number;
}

/** The IOVA space an IOMMU offers. */
export interface Geometry {
  /** The whole translatable range (type1's IOVA_RANGE hull, the PAMU aperture). */
  readonly aperture: IovaRange;
  /**
   * Bitmap of supported IO page sizes (type1's `iova_pgsizes`): bit n set means 2^n-byte pages. The
   * lowest set bit is the mapping granule (never below the host page size, by the kernel's rule).
   */
  readonly ioPageSizes: bigint;
  /**
   * Usable ranges as the kernel reports them (type1 IOVA_RANGE cap, iommufd IOAS_IOVA_RANGES):
   * the aperture minus the holes the kernel reserves. Absent when the kernel reports none.
   */
  readonly ranges?: readonly IovaRange[];
  /** Windowed IOMMUs only. */
  readonly windows?: WindowGeometry;
}

/** The smallest IO page size in a geometry: every IOVA, address and size must be a multiple of it. */
export function granuleOf(geometry: Geometry): bigint {
  const pageSizes = geometry.ioPageSizes;
  if (pageSizes <= 0n) return 4096n;
  return pageSizes & -pageSizes;
}

/**
 * Kinds of reserved region, named as sysfs `reserved_regions` prints them (kernel `enum
 * iommu_resv_type`, see drivers/iommu/iommu.c `iommu_group_resv_type_string`):
 * - `direct`: identity-mapped for a device (RMRR); never mappable.
 * - `direct-relaxable`: identity map the device may lose; type1 and iommufd ignore it, so it stays
 *   mappable, and core only reports it.
 * - `reserved`: never mappable (AMD's HyperTransport range).
 * - `msi`: an MSI range (x86 hardware range, or ARM's software MSI window); never mappable.
 */
export type ReservedKind = 'msi' | 'direct' | 'direct-relaxable' | 'reserved';

/** Where the SDK learned of a reserved range. */
export type ReservedSource = 'sysfs' | 'kernel-ranges' | 'platform' | 'backend' | 'user';

/** A reserved IOVA range with its kind and where it came from. */
export interface ReservedRange extends IovaRange {
  /** What the kernel reserves it for; every kind but `direct-relaxable` blocks maps. */
  readonly kind: ReservedKind;
  /** Where the SDK learned of it. */
  readonly source: ReservedSource;
  /** Optional detail: the IOMMU group or device it was read for, the sysfs path... */
  readonly origin?: string;
}

/** True for the kinds that the kernel refuses to map (every kind but `direct-relaxable`). */
export function isBlockingReserved(kind: ReservedKind): boolean {
  return kind !== 'direct-relaxable';
}

/**
 * What the reserved ranges leave usable of `ranges` (the aperture, or the kernel's usable ranges):
 * every blocking kind is cut out; `direct-relaxable` stays, as type1 and iommufd ignore it
 * (docs/kernel-rules.md#reserved-region-types).
 */
export function usableRanges(ranges: readonly IovaRange[], reserved: readonly ReservedRange[]): IovaRange[] {
  assertRanges('usableRanges: ranges', ranges);
  assertRanges('usableRanges: reserved', reserved);
  return subtractRanges(
    ranges,
    reserved.filter((region) => isBlockingReserved(region.kind)),
  );
}

/** Host memory to map: a process virtual address and a length, both in bytes. */
export interface HostMemory {
  /** Process virtual address (the `vaddr` of MAP_DMA, the `user_va` of IOAS_MAP). */
  readonly address: bigint;
  /** Bytes. */
  readonly length: bigint;
  /**
   * Size of the physically contiguous, naturally aligned pages backing this memory (a hugepage size
   * such as 0x200000 or 0x4000000), when known. Windowed IOMMUs need each window backed by one such
   * chunk and refuse memory whose contiguity cannot be proven.
   */
  readonly contiguousPageSize?: bigint;
}

/** Access the device gets through a mapping. */
export interface Access {
  /** The device may read (DMA from memory). */
  readonly read: boolean;
  /** The device may write (DMA to memory). */
  readonly write: boolean;
}

/** A live mapping in a container's record. */
export interface Mapping {
  /** The IOVA range the device uses. */
  readonly iova: IovaRange;
  /** The host memory behind it. */
  readonly memory: HostMemory;
  /** The device's rights. */
  readonly access: Access;
}

/** A window created with {@link Container.createWindow}. */
export interface Window {
  /** The IOVA range the window makes usable. */
  readonly range: IovaRange;
}

/** One MSI doorbell a backend knows of. */
export interface MsiDoorbell {
  /** Index of the MSI bank (explicit model) or 0. */
  readonly index: number;
  /** Bytes the doorbell occupies in IOVA space once mapped (4 KiB for a PAMU MSI bank page). */
  readonly size: bigint;
  /** Physical address of the doorbell page, when the backend knows it. */
  readonly physicalAddress?: bigint;
}

/** Counters of a container. */
export interface ContainerStats {
  /** Live mappings. */
  readonly mappings: number;
  /** Bytes in the live mappings. */
  readonly bytesMapped: bigint;
  /** Mappings that can still be made; `null` when the backend has no count limit. */
  readonly mappingBudgetLeft: number | null;
  /** Windows created with `createWindow()`. */
  readonly windows: number;
  /** IOVA ranges handed out by `allocate()` and not released. */
  readonly allocations: number;
  /** MSI doorbells this container mapped (explicit model). */
  readonly msiDoorbellsMapped: number;
}

/** Where an MSI doorbell sits in IOVA space and who maps it. */
export interface MsiDoorbellPlacement {
  /** Doorbell (bank) index; for kernel-managed and fixed windows, the window's position in the list. */
  readonly index: number;
  /** The IOVA range device MSI writes go to (a whole window on a windowed IOMMU). */
  readonly iova: IovaRange;
  /** `sdk`: this container maps it (explicit model); `kernel`: the kernel maps doorbells there; `hardware`: never translated. */
  readonly mappedBy: 'sdk' | 'kernel' | 'hardware';
}

/**
 * The one answer to "make MSI work": where device MSI writes must go, whatever the platform's model.
 * For `explicit`, the doorbells are mapped by {@link Container.msi}'s `map()`; otherwise they are
 * reported, and core keeps them clear of DMA mappings.
 */
export interface MsiPlan {
  /** The platform's MSI model (the container's `capabilities.msi`). */
  readonly model: MsiModel;
  /** Where each doorbell is, or will be once mapped. */
  readonly doorbells: readonly MsiDoorbellPlacement[];
}
