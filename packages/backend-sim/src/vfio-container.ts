import { ERRNO, hex, type IovaRange, rangeSize, U64_MAX } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import { PagedDomain, type PagedMapping } from './paged-domain.js';
import { PamuDomain } from './pamu-domain.js';
import type { ReservedRegionSpec } from './platforms.js';
import type { SimGroup, Simulator } from './simulator.js';
import { updateUserBitmap, type UserBitmap } from './user-bitmap.js';

/** VFIO IOMMU types and extensions (include/uapi/linux/vfio.h, 6.1). */
export const VFIO_EXTENSION = {
  /** VFIO type1 (v1 semantics: unmaps may cut mappings). */
  TYPE1_IOMMU: 1,
  /** sPAPR TCE (IBM POWER); also the PAMU type in 3.x SDK kernels. */
  SPAPR_TCE_IOMMU: 2,
  /** VFIO type1v2: whole-mapping unmaps, what the SDK uses. */
  TYPE1v2_IOMMU: 3,
  /** DMA cache coherency (answers after SET_IOMMU). */
  DMA_CC_IOMMU: 4,
  /** sPAPR EEH error recovery. */
  EEH: 5,
  /** type1 nesting. */
  TYPE1_NESTING_IOMMU: 6,
  /** sPAPR TCE v2; also the PAMU type in 4.x SDK kernels. */
  SPAPR_TCE_v2_IOMMU: 7,
  /** No IOMMU (unsafe mode). */
  NOIOMMU_IOMMU: 8,
  /** UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_ALL. */
  UNMAP_ALL: 9,
  /** MAP/UNMAP with the VADDR flags (live update). */
  UPDATE_VADDR: 10,
} as const;

const PAGE = 0x1000n;
const PAGE_BYTES = 4096;

/** VFIO_IOMMU_DIRTY_PAGES flags (include/uapi/linux/vfio.h). */
export const DIRTY_PAGES_FLAGS = {
  /** VFIO_IOMMU_DIRTY_PAGES_FLAG_START. */
  START: 0x1,
  /** VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP. */
  STOP: 0x2,
  /** VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP. */
  GET_BITMAP: 0x4,
} as const;
/** DIRTY_BITMAP_PAGES_MAX: INT_MAX bits, what bitmap_set() takes (vfio_iommu_type1.c). */
const DIRTY_BITMAP_PAGES_MAX = 0x7fff_ffffn;
/** DIRTY_BITMAP_SIZE_MAX: DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX), 256 MiB. */
export const DIRTY_BITMAP_SIZE_MAX = 0x1000_0000n;
/** DIRTY_BITMAP_BYTES(n): whole u64 words. */
const dirtyBitmapBytes = (pages: bigint): bigint => ((pages + 63n) / 64n) * 8n;

/** verify_bitmap_size(): EINVAL for no pages, a size of 0, above DIRTY_BITMAP_SIZE_MAX, or too small. */
function verifyBitmapSize(pages: bigint, size: bigint, ioctl: string): void {
  if (pages === 0n || size === 0n || size > DIRTY_BITMAP_SIZE_MAX || size < dirtyBitmapBytes(pages)) {
    throw new KernelError(ERRNO.EINVAL, ioctl, `a bitmap of ${hex(size)} bytes cannot hold ${pages} pages (or is 0, or above ${hex(DIRTY_BITMAP_SIZE_MAX)})`);
  }
}

/** __ffs(): the lowest set bit's index (64 for 0, which the kernel leaves undefined; every caller then fails). */
function lowestBit(value: bigint): bigint {
  if (value === 0n) return 64n;
  let bit = 0n;
  while (((value >> bit) & 1n) === 0n) bit++;
  return bit;
}

/**
 * The highest address a user pointer may reach (TASK_SIZE_MAX): 47-bit user space on x86-64,
 * 48-bit on arm64 (Debian's VA_BITS=48). access_ok() checks only this, not that the memory exists.
 */
function taskSizeMax(simulator: Simulator): bigint {
  return simulator.platform.name === 'arm-smmuv3' ? 1n << 48n : (1n << 47n) - PAGE;
}

/** access_ok(pointer, size). */
export function accessOk(simulator: Simulator, pointer: bigint, size: bigint): boolean {
  const max = taskSizeMax(simulator);
  return size <= max && pointer <= max - size;
}

/** What the GET_BITMAP of VFIO_IOMMU_DIRTY_PAGES carries (`struct vfio_iommu_type1_dirty_bitmap_get`). */
export interface Type1DirtyRange {
  /** `iova`. */
  readonly iova: bigint;
  /** `size`. */
  readonly size: bigint;
  /** `bitmap.pgsize`. */
  readonly pgsize: bigint;
  /** `bitmap.size`, in bytes. */
  readonly bitmapSize: bigint;
  /** `bitmap.data`, the user pointer. */
  readonly data: bigint;
  /** The process's memory behind `data`, as far as it goes (up to `bitmapSize` bytes). */
  bitmap(): UserBitmap;
}

/** VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP's `struct vfio_bitmap`, and the memory behind it. */
export interface Type1UnmapBitmap {
  /** `pgsize`. */
  readonly pgsize: bigint;
  /** `size`, in bytes. */
  readonly size: bigint;
  /** `data`, the user pointer. */
  readonly data: bigint;
  /** The process's memory behind `data`, as far as it goes. */
  bitmap(): UserBitmap;
}

/** A type1 IOMMU domain (`struct vfio_domain`): its IOMMU's aperture, and the groups attached to it. */
interface Type1Domain {
  /** What the domain translates (`domain->geometry`). */
  readonly aperture: IovaRange;
  /** The groups attached to it. */
  readonly groups: Set<SimGroup>;
}

/**
 * vfio_iommu_aper_resize(), on a list of inclusive ranges in order: an empty list becomes the
 * aperture; otherwise ranges before `start` go, the one holding it starts there, and so at the end.
 * Kept as the kernel writes it, boundary quirks included (a range starting exactly at `last` goes).
 */
function apertureResize(list: { start: bigint; last: bigint }[], start: bigint, last: bigint): void {
  if (list.length === 0) {
    list.push({ start, last });
    return;
  }
  while (list.length > 0) {
    const node = list[0]!;
    if (start < node.start) break;
    if (start < node.last) {
      node.start = start;
      break;
    }
    list.shift();
  }
  for (let index = 0; index < list.length; ) {
    const node = list[index]!;
    if (last > node.last) {
      index++;
    } else if (last > node.start) {
      node.last = last;
      index++;
    } else {
      list.splice(index, 1);
    }
  }
}

/**
 * vfio_iommu_resv_exclude(): cuts every reserved region but direct-relaxable ones out of the list.
 * False when nothing is left, which the kernel answers with EINVAL.
 */
function excludeReserved(list: { start: bigint; last: bigint }[], reserved: readonly ReservedRegionSpec[]): boolean {
  for (const region of reserved) {
    if (region.kind === 'direct-relaxable') continue;
    const kept: { start: bigint; last: bigint }[] = [];
    for (const node of list) {
      if (region.start > node.last || region.last < node.start) {
        kept.push(node);
        continue;
      }
      if (region.start > node.start) kept.push({ start: node.start, last: region.start - 1n });
      if (region.last < node.last) kept.push({ start: region.last + 1n, last: node.last });
    }
    list.splice(0, list.length, ...kept);
  }
  return list.length > 0;
}

/**
 * What the simulated kernel's VFIO_IOMMU_GET_INFO reports for a type1 container (the SDK's decoded
 * reply is `@ioas/vfio`'s `Type1Info`).
 */
export interface SimType1Info {
  /** `iova_pgsizes`: bit n set for 2^n-byte IO pages. */
  readonly ioPageSizes: bigint;
  /** The IOVA_RANGE capability: usable ranges. */
  readonly ranges: readonly IovaRange[];
  /** The DMA_AVAIL capability: mappings left. */
  readonly dmaAvailable: number;
  /** The MIGRATION capability: dirty-page tracking limits. */
  readonly migration: {
    /** Dirty-tracking page sizes. */
    readonly pageSizes: bigint;
    /** Largest dirty bitmap, in bytes. */
    readonly maxDirtyBitmapSize: bigint;
  };
}

/**
 * A VFIO container (`/dev/vfio/vfio`) with the type1 IOMMU backend (paged platforms) or the PAMU
 * SDK backend (windowed platforms). Semantics and errnos follow
 * docs/kernel-rules.md#vfio-container-and-group and the type1 sections after it (Linux 6.1) and
 * docs/kernel-rules.md#pamu-sdk-driver; checks run in the kernel's order. The kernel's side of the file;
 * the SDK's handle on one is `@ioas/vfio`'s `VfioContainer`.
 */
export class SimVfioContainer {
  /** The groups in the container. */
  readonly groups = new Set<SimGroup>();
  /** The type SET_IOMMU selected, or null before. */
  iommuType: number | null = null;
  /** type1: the page table. */
  paged: PagedDomain | undefined;
  /** PAMU: the windowed domain. */
  pamu: PamuDomain | undefined;
  /**
   * type1: the IOMMU domains (`struct vfio_domain`), one per IOMMU instance the groups sit behind,
   * each with its groups. They all hold the container's mappings (a new domain gets them replayed),
   * so devices translate through {@link paged} whichever domain their group is in.
   */
  private domains: Type1Domain[] = [];
  /**
   * type1: the IOVA list (`iommu->iova_list`), kept as the kernel keeps it: shrunk by each group
   * that attaches, recomputed from its hull by each that leaves (docs/kernel-rules.md#attaching-to-a-live-container,
   * docs/kernel-rules.md#detaching-from-a-live-container). It is the IOVA_RANGE capability, and every MAP_DMA checks it.
   */
  private iovaList: IovaRange[] = [];
  /** The same as page numbers for the hot path: per range, the first and last whole page inside it. */
  private rangePages: Float64Array | undefined;
  /** The granule in bytes as a number (type1, from SET_IOMMU). */
  private granuleBytes = 0;
  /** dma_entry_limit as read at SET_IOMMU. */
  private dmaLimit = 0;
  /** type1: VFIO_IOMMU_DIRTY_PAGES START is in force (`iommu->dirty_page_tracking`). */
  dirtyTracking = false;
  /**
   * type1: v2 unmap semantics (`iommu->v2`): VFIO_TYPE1v2_IOMMU, and VFIO_TYPE1_NESTING_IOMMU, which
   * is v2 with nesting (vfio_iommu_type1_open()).
   */
  private v2 = false;
  /**
   * type1: the first IOVA of each vfio_dma whose vaddr an UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR
   * invalidated (`dma->vaddr_invalid`; its size is `iommu->vaddr_invalid_count`). The mapping stays
   * in the IOMMU and keeps its pages until a MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR gives it a vaddr
   * again or it is unmapped (docs/kernel-rules.md#invalidating-a-vaddr).
   */
  private readonly invalidVaddrs = new Set<bigint>();
  /**
   * The container's fd was closed while groups were still in it: each group holds a reference on
   * the container (vfio_container_attach_group(): vfio_container_get()), so it lives on, IOMMU and
   * mappings included, until the last group leaves (docs/kernel-rules.md#closing-the-container-fd).
   */
  private fileClosed = false;
  /**
   * type1, while tracking: per vfio_dma (by first IOVA), its `dma->bitmap` from bit `nbits` up,
   * where a read at a shift leaves carried bits (see {@link updateUserBitmap}); absent when 0.
   */
  private readonly dirtyTails = new Map<bigint, bigint>();

  constructor(private readonly simulator: Simulator) {
    simulator.kernelObjects.add(this);
  }

  /** Live mappings (type1 entries, or PAMU recorded DMA ranges). */
  get mappingCount(): number {
    return this.paged?.count ?? this.pamu?.dmaRanges.length ?? 0;
  }

  private get windowed(): boolean {
    return this.simulator.platform.model === 'windowed';
  }

  /**
   * VFIO_CHECK_EXTENSION: 1 or 0, never an error (6.1 drivers/vfio/container.c
   * vfio_container_ioctl_check_extension(), then vfio_iommu_type1.c
   * vfio_iommu_type1_check_extension(): docs/kernel-rules.md#extensions-before-and-after-the-iommu-is-set).
   */
  checkExtension(extension: number): number {
    this.simulator.checkInjected('VFIO_CHECK_EXTENSION');
    if (this.windowed) {
      // The SDK PAMU backend answers 1 only for its own type number
      // (docs/kernel-rules.md#pamu-iommu-type-numbers).
      return extension === this.simulator.pamuType ? 1 : 0;
    }
    const { TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU, UNMAP_ALL, UPDATE_VADDR, DMA_CC_IOMMU } = VFIO_EXTENSION;
    const always: number[] = [TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU, UNMAP_ALL];
    if (always.includes(extension)) return 1;
    // Both need the container's vfio_iommu (`iommu &&`), so they answer 0 until SET_IOMMU is done.
    if (this.iommuType === null) return 0;
    // UPDATE_VADDR: 1 with no emulated (mdev) group, which the simulator never has.
    if (extension === UPDATE_VADDR) return 1;
    // DMA_CC_IOMMU: vfio_domains_have_enforce_cache_coherency(), which needs every domain's
    // `enforce_cache_coherency`: VT-d sets it only when every IOMMU has ECAP.SC (snoop control,
    // bit 7; drivers/iommu/intel/iommu.c intel_iommu_enforce_cache_coherency()), which QEMU's does
    // not report; SMMUv3 has no such op. 0 on every preset.
    if (extension === DMA_CC_IOMMU) return this.enforcesCacheCoherency ? 1 : 0;
    return 0;
  }

  /** Whether the platform's IOMMU domains enforce cache coherency (VT-d ECAP.SC; never on SMMUv3). */
  private get enforcesCacheCoherency(): boolean {
    const ecap = this.simulator.platform.vtdRegisters?.ecap;
    return ecap !== undefined && (ecap & 0x80n) !== 0n;
  }

  /**
   * VFIO_SET_IOMMU (6.1 drivers/vfio/container.c vfio_ioctl_set_iommu(), 6.12 the same): EINVAL with
   * no group or a type already set; a type no driver's CHECK_EXTENSION answers is ENODEV; type1
   * answers VFIO_UNMAP_ALL too, but vfio_iommu_type1_open() refuses it (EINVAL); NESTING is v2 with
   * iommu_enable_nesting() on each new domain, which the platform decides (see
   * `nestingRefusal()`). docs/kernel-rules.md#setting-the-iommu-type.
   */
  setIommu(type: number): void {
    const ioctl = 'VFIO_SET_IOMMU';
    this.simulator.checkInjected(ioctl);
    if (this.groups.size === 0) throw new KernelError(ERRNO.EINVAL, ioctl, 'no group in the container yet');
    if (this.iommuType !== null) throw new KernelError(ERRNO.EINVAL, ioctl, 'an IOMMU type is already set');
    const { TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU, UNMAP_ALL } = VFIO_EXTENSION;
    if (!this.windowed && type === UNMAP_ALL) throw new KernelError(ERRNO.EINVAL, ioctl, 'type1 answers CHECK_EXTENSION(VFIO_UNMAP_ALL) but is no IOMMU type of that number');
    const accepted: number[] = this.windowed ? [this.simulator.pamuType] : [TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU];
    if (!accepted.includes(type)) throw new KernelError(ERRNO.ENODEV, ioctl, `no IOMMU backend accepts type ${type}`);
    if (type === TYPE1_NESTING_IOMMU) {
      const refusal = this.nestingRefusal();
      if (refusal !== undefined) throw new KernelError(refusal.errno, ioctl, refusal.why);
    }
    if (!this.simulator.platform.interruptRemapping && !this.simulator.allowUnsafeInterrupts) {
      throw new KernelError(ERRNO.EPERM, ioctl, 'no interrupt remapping; set vfio_iommu_type1.allow_unsafe_interrupts=1');
    }
    if (this.windowed) {
      this.iommuType = type;
      this.pamu = new PamuDomain(this.simulator);
      for (const group of this.groups) this.attachDevices(group);
      return;
    }
    this.paged = new PagedDomain(this.simulator.platform.swMsiDoorbell?.window);
    // The groups attach one by one, as any later group does (6.1 drivers/vfio/container.c,
    // __vfio_container_attach_groups(): the container's group list, newest first).
    try {
      for (const group of [...this.groups].reverse()) this.attachType1(group, ioctl);
    } catch (error) {
      for (const group of this.groups) for (const device of group.devices) device.domain = undefined;
      this.paged = undefined;
      this.domains = [];
      this.setIovaList([]);
      throw error;
    }
    this.iommuType = type;
    this.v2 = type !== TYPE1_IOMMU;
    this.dmaLimit = this.simulator.dmaEntryLimit;
    this.granuleBytes = Number(this.granule);
  }

  /**
   * iommu_enable_nesting() on a new type1 domain (vfio_iommu_type1_attach_group(), before the
   * attach): VT-d has no enable_nesting op (drivers/iommu/iommu.c iommu_enable_nesting(): EINVAL).
   * SMMUv3 on 6.1 allocates the domain unfinalised, so arm_smmu_enable_nesting() sets the nested
   * stage, and arm_smmu_domain_finalise() falls back to stage 1 on an SMMU without stage 2 (QEMU's):
   * the container works as a v2 one. 6.12 allocates the domain for the device, finalised, and
   * arm_smmu_enable_nesting() refuses it (EPERM).
   */
  private nestingRefusal(): { errno: number; why: string } | undefined {
    if (this.simulator.platform.name !== 'arm-smmuv3') return { errno: ERRNO.EINVAL, why: 'the IOMMU driver has no enable_nesting' };
    if (this.simulator.kernel !== '6.1') return { errno: ERRNO.EPERM, why: 'the SMMUv3 domain is finalised when it is allocated: nesting cannot be enabled' };
    return undefined;
  }

  /**
   * VFIO_GROUP_SET_CONTAINER, after the group fd checks: the group's DMA is claimed for the
   * container, and when the container's IOMMU is set the group attaches to it at once, with the
   * kernel's checks against the live mappings (docs/kernel-rules.md#attaching-a-group-to-a-container,
   * docs/kernel-rules.md#attaching-to-a-live-container). On failure nothing changes.
   */
  addGroup(group: SimGroup): void {
    const ioctl = 'VFIO_GROUP_SET_CONTAINER';
    this.simulator.checkInjected(ioctl);
    if (group.owner !== undefined) throw new KernelError(ERRNO.EINVAL, ioctl, `group ${group.id} is already in a container`);
    // iommu_group_claim_dma_owner(): a driver that owns DMA (EPERM), then the blocking domain, which
    // 6.1's VT-d driver refuses for a device whose RMRR is not relaxable
    // (docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned).
    if (!group.viable) throw new KernelError(ERRNO.EPERM, ioctl, `group ${group.id} is not viable: a member is bound to a driver that owns DMA`);
    if (group.requiresDirect) {
      throw new KernelError(ERRNO.EPERM, ioctl, `group ${group.id} has a device with a direct (RMRR) region: it is ineligible for IOMMU domain attach`);
    }
    if (this.iommuType !== null) {
      if (this.pamu !== undefined) this.attachDevices(group);
      else this.attachType1(group, ioctl);
    }
    this.groups.add(group);
    group.owner = this;
  }

  /**
   * VFIO_GROUP_UNSET_CONTAINER: EINVAL for a group in no container or another, EBUSY while a device
   * fd of the group is open (docs/kernel-rules.md#detaching-from-a-live-container); then as {@link removeGroup}.
   */
  unsetGroup(group: SimGroup): void {
    const ioctl = 'VFIO_GROUP_UNSET_CONTAINER';
    this.simulator.checkInjected(ioctl);
    if (group.owner !== this || !this.groups.has(group)) throw new KernelError(ERRNO.EINVAL, ioctl, `group ${group.id} is not in this container`);
    if (group.openDevices > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `a device fd of group ${group.id} is open`);
    this.removeGroup(group);
  }

  /**
   * A group leaving (UNSET_CONTAINER, or its file's release, which cannot fail): detached from its
   * domain, its devices' DMA blocked; the container's mappings stay for the groups left, and the
   * last group out takes the IOMMU and every mapping with it
   * (docs/kernel-rules.md#detaching-from-a-live-container).
   */
  removeGroup(group: SimGroup): void {
    if (!this.groups.has(group)) throw new KernelError(ERRNO.EINVAL, 'VFIO_GROUP_UNSET_CONTAINER', `group ${group.id} is not in this container`);
    if (this.paged !== undefined) this.detachType1(group);
    this.groups.delete(group);
    group.owner = undefined;
    // PAMU: the domain drops the LIODN from its list (detach_device(): pamu_disable_liodn()).
    for (const device of group.devices) this.pamu?.detach(device);
    for (const device of group.devices) device.domain = undefined;
    // vfio_group_detach_container(): the last group out deprivileges the container, and frees it
    // when its fd is closed already (the group held the last reference).
    if (this.groups.size === 0) {
      this.reset();
      if (this.fileClosed) this.simulator.kernelObjects.delete(this);
    }
  }

  /** VFIO_IOMMU_GET_INFO (type1 only: the PAMU backend answers ENOTTY). */
  info(): SimType1Info {
    const ioctl = 'VFIO_IOMMU_GET_INFO';
    this.simulator.checkInjected(ioctl);
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.paged === undefined) throw new KernelError(ERRNO.ENOTTY, ioctl, 'the PAMU backend has no GET_INFO');
    return {
      ioPageSizes: this.simulator.platform.ioPageSizes,
      ranges: this.iovaRanges(),
      dmaAvailable: this.dmaLimit - this.paged.count,
      // vfio_iommu_migration_build_caps(): flags 0, the smallest IO page size only, DIRTY_BITMAP_SIZE_MAX.
      migration: { pageSizes: this.granule, maxDirtyBitmapSize: DIRTY_BITMAP_SIZE_MAX },
    };
  }

  /**
   * The IOVA_RANGE capability: the intersection of every attached domain's aperture minus every
   * reserved region except direct-relaxable, as the kernel's IOVA list holds it
   * (docs/kernel-rules.md#the-iova-range-capability).
   */
  iovaRanges(): IovaRange[] {
    return this.iovaList;
  }

  /** VFIO_IOMMU_MAP_DMA with type1 semantics, checks in the kernel's order (docs/kernel-rules.md#map-checks-in-kernel-order). */
  map(vaddr: bigint, iova: bigint, size: bigint, read: boolean, write: boolean): void {
    const ioctl = 'VFIO_IOMMU_MAP_DMA';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) return this.pamu.map(vaddr, iova, size, read, write);
    this.simulator.checkInjected(ioctl);
    const domain = this.paged!;
    const granule = this.granule;
    if (!read && !write) throw new KernelError(ERRNO.EINVAL, ioctl, 'neither READ nor WRITE');
    if (size === 0n || iova % granule !== 0n || vaddr % granule !== 0n || size % granule !== 0n) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)}, vaddr ${hex(vaddr)} and size ${hex(size)} must be non-zero multiples of ${hex(granule)}`);
    }
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, 'range wraps');
    const last = iova + size - 1n;
    if (domain.overlaps(iova, last)) throw new KernelError(ERRNO.EEXIST, ioctl, `${hex(iova)}-${hex(last)} overlaps an existing mapping`);
    if (this.dmaLimit - domain.count <= 0) throw new KernelError(ERRNO.ENOSPC, ioctl, `dma_entry_limit ${this.dmaLimit} reached`);
    if (!this.insideOneRange(iova, last)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)}-${hex(last)} is not inside one IOVA range`);
    }
    this.simulator.pin(size, ioctl);
    if (!this.simulator.memory.isMapped(vaddr, size)) {
      this.simulator.unpin(size);
      throw new KernelError(ERRNO.EFAULT, ioctl, `vaddr ${hex(vaddr)}+${hex(size)} is not mapped`);
    }
    domain.add({ start: iova, last, vaddr, read, write });
    // vfio_dma_do_map(): while tracking, the new vfio_dma gets a bitmap, which more than
    // DIRTY_BITMAP_PAGES_MAX pages cannot have: the dma is removed again and the map is EINVAL.
    if (this.dirtyTracking && size / granule > DIRTY_BITMAP_PAGES_MAX) {
      domain.remove({ start: iova, last, vaddr, read, write });
      this.simulator.unpin(size);
      throw new KernelError(ERRNO.EINVAL, ioctl, `dirty tracking is on, and a mapping of ${size / granule} pages is above DIRTY_BITMAP_PAGES_MAX`);
    }
  }

  /**
   * {@link map} for the syscall face's hot path, with integers below 2^53: the common case (a
   * paged container, no pending fault injection, granule-aligned, free, inside one IOVA range,
   * under the entry limit, no RLIMIT_MEMLOCK, mapped memory) without a bigint or an allocation;
   * anything else goes through {@link map}, so that every check, errno and message is the same.
   */
  mapNumbers(vaddr: number, iova: number, size: number, read: boolean, write: boolean): void {
    const domain = this.paged;
    const granule = this.granuleBytes;
    const simulator = this.simulator;
    if (
      domain !== undefined &&
      !simulator.injecting &&
      (read || write) &&
      size > 0 &&
      granule >= PAGE_BYTES &&
      iova % granule === 0 &&
      vaddr % granule === 0 &&
      size % granule === 0 &&
      (!this.dirtyTracking || size / granule <= 0x7fff_ffff)
    ) {
      // Multiples of 4 KiB below 2^54 are exact, and so are their quotients.
      const first = iova / PAGE_BYTES;
      const last = (iova + size) / PAGE_BYTES - 1;
      if (this.dmaLimit - domain.count > 0 && this.insidePages(first, last) && simulator.memory.isMappedNumber(vaddr, size) && simulator.tryPin(size)) {
        // The overlap check and the insert in one descent; an overlap undoes the pin and takes
        // the checked path, which answers EEXIST.
        if (domain.addPagesIfFree(first, last, vaddr, read, write)) return;
        simulator.unpinNumber(size);
      }
    }
    this.map(BigInt(vaddr), BigInt(iova), BigInt(size), read, write);
  }

  /**
   * {@link unmap} (without UNMAP_ALL) for the syscall face's hot path, with integers below 2^53:
   * when the range is exactly one mapping of a paged container and no fault injection is pending,
   * removes it and returns the bytes unmapped, allocating nothing; otherwise returns -1 having
   * changed nothing, and the caller takes {@link unmap}.
   */
  unmapNumbers(iova: number, size: number): number {
    const domain = this.paged;
    const granule = this.granuleBytes;
    if (domain === undefined || this.simulator.injecting || size <= 0 || granule < PAGE_BYTES || iova % granule !== 0 || size % granule !== 0) return -1;
    if (!domain.removePages(iova / PAGE_BYTES, (iova + size) / PAGE_BYTES - 1)) return -1;
    this.simulator.unpinNumber(size);
    if (this.dirtyTails.size !== 0) this.dirtyTails.delete(BigInt(iova));
    if (this.invalidVaddrs.size !== 0) this.invalidVaddrs.delete(BigInt(iova));
    return size;
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA with type1/type1v2 semantics, checks in the order of vfio_dma_do_unmap()
   * (6.1 drivers/vfio/vfio_iommu_type1.c; 6.12 the same): returns the bytes unmapped
   * (docs/kernel-rules.md#no-bisecting-unmaps-in-type1v2, docs/kernel-rules.md#type1-v1-unmaps).
   * With `dirty` (VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, checked by {@link unmapWithDirtyBitmap})
   * each mapping removed writes its dirty bits first. With `invalidateVaddr`
   * (VFIO_DMA_UNMAP_FLAG_VADDR) the mappings are not removed but their vaddrs invalidated, and a
   * mapping whose vaddr is invalid already undoes the call's marks: EINVAL
   * (docs/kernel-rules.md#invalidating-a-vaddr).
   */
  unmap(iova: bigint, size: bigint, all: boolean, dirty?: Type1UnmapBitmap, invalidateVaddr = false): bigint {
    const ioctl = 'VFIO_IOMMU_UNMAP_DMA';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) {
      if (all || invalidateVaddr) throw new KernelError(ERRNO.EINVAL, ioctl, 'the PAMU backend takes no unmap flags');
      this.pamu.unmap(iova, size);
      return size;
    }
    this.simulator.checkInjected(ioctl);
    const domain = this.paged!;
    const granule = this.granule;
    if (iova % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} is not aligned to ${hex(granule)}`);
    if (all) {
      if (iova !== 0n || size !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'UNMAP_ALL needs iova and size 0');
      return invalidateVaddr ? this.invalidate(domain.all()) : this.removeAll();
    }
    if (size === 0n || size % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `size ${hex(size)} is not a non-zero multiple of ${hex(granule)}`);
    const last = iova + size - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, 'range wraps');
    // vfio_dma_do_unmap(): with the bitmap flag, tracking must be on and the page size the smallest.
    if (dirty !== undefined && (!this.dirtyTracking || dirty.pgsize !== granule)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, this.dirtyTracking ? `dirty bitmaps use ${hex(granule)}-byte pages only, not ${hex(dirty.pgsize)}` : 'dirty tracking is not on (VFIO_IOMMU_DIRTY_PAGES START)');
    }
    const affected = domain.overlapping(iova, last);
    if (this.v2) {
      // type1v2 refuses to bisect a mapping at either end.
      const first = affected[0];
      const final = affected[affected.length - 1];
      if (first !== undefined && first.start < iova) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)} is inside the mapping at ${hex(first.start)}`);
      if (final !== undefined && final.last > last) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(last)} is inside the mapping ending at ${hex(final.last)}`);
    } else if (affected.length > 0 && affected[0]!.start < iova) {
      // type1 (v1): the walk stops at the first mapping that starts before iova (`!iommu->v2 &&
      // iova > dma->iova`), and only the first overlapping one can: nothing at all is unmapped,
      // even the mappings wholly inside the range after it. Otherwise every mapping whose first
      // byte is in the range goes whole, past the range's end too.
      return 0n;
    }
    if (invalidateVaddr) return this.invalidate(affected);
    return this.removeMappings(affected, dirty === undefined ? undefined : { base: iova, bitmap: dirty.bitmap() });
  }

  /** UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR's walk: each mapping's vaddr invalidated; one invalid already undoes them all (EINVAL). */
  private invalidate(mappings: readonly PagedMapping[]): bigint {
    let bytes = 0n;
    const marked: bigint[] = [];
    for (const mapping of mappings) {
      if (this.invalidVaddrs.has(mapping.start)) {
        for (const start of marked) this.invalidVaddrs.delete(start);
        throw new KernelError(ERRNO.EINVAL, 'VFIO_IOMMU_UNMAP_DMA', `the vaddr of the mapping at ${hex(mapping.start)} is invalid already`);
      }
      this.invalidVaddrs.add(mapping.start);
      marked.push(mapping.start);
      bytes += rangeSize(mapping);
    }
    return bytes;
  }

  /**
   * VFIO_IOMMU_MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR alone (vfio_dma_do_map(), 6.1 and 6.12): size 0
   * or size, iova or vaddr unaligned EINVAL, a wrap EINVAL; no mapping overlapping the range
   * ENOENT; one whose vaddr is valid, or that is not exactly the range, EINVAL; otherwise the
   * mapping's vaddr is valid again. The new vaddr is not pinned nor checked: the IOMMU keeps the
   * pages it had (docs/kernel-rules.md#remapping-a-vaddr).
   */
  remapVaddr(vaddr: bigint, iova: bigint, size: bigint): void {
    const ioctl = 'VFIO_IOMMU_MAP_DMA';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) throw new KernelError(ERRNO.EINVAL, ioctl, 'the PAMU backend takes no VADDR flag');
    this.simulator.checkInjected(ioctl);
    const granule = this.granule;
    if (size === 0n || iova % granule !== 0n || vaddr % granule !== 0n || size % granule !== 0n) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)}, vaddr ${hex(vaddr)} and size ${hex(size)} must be non-zero multiples of ${hex(granule)}`);
    }
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, 'range wraps');
    const last = iova + size - 1n;
    const overlapping = this.paged!.overlapping(iova, last);
    if (overlapping.length === 0) throw new KernelError(ERRNO.ENOENT, ioctl, `nothing is mapped at ${hex(iova)}-${hex(last)}`);
    const dma = overlapping[0]!;
    if (overlapping.length > 1 || !this.invalidVaddrs.has(dma.start) || dma.start !== iova || dma.last !== last) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)}-${hex(last)} is not exactly one mapping whose vaddr was invalidated`);
    }
    this.invalidVaddrs.delete(dma.start);
  }

  /**
   * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP's checks in vfio_iommu_type1_unmap_dma() (the flag with
   * ALL or VADDR, and argsz, are the syscall face's): a pointer outside user space, then
   * verify_bitmap_size() of the unmap's `size >> __ffs(pgsize)` pages, EINVAL each; then
   * {@link unmap} with the bitmap (tracking off or another page size EINVAL, before the bisect
   * checks). Returns the bytes unmapped.
   */
  unmapWithDirtyBitmap(iova: bigint, size: bigint, dirty: Type1UnmapBitmap): bigint {
    const ioctl = 'VFIO_IOMMU_UNMAP_DMA';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) throw new KernelError(ERRNO.EINVAL, ioctl, 'the PAMU backend takes no unmap flags');
    if (!accessOk(this.simulator, dirty.data, dirty.size)) throw new KernelError(ERRNO.EINVAL, ioctl, `bitmap ${hex(dirty.data)}+${hex(dirty.size)} is not in user space`);
    verifyBitmapSize(size >> lowestBit(dirty.pgsize), dirty.size, ioctl);
    return this.unmap(iova, size, false, dirty);
  }

  /**
   * VFIO_IOMMU_DIRTY_PAGES (type1 only; the PAMU SDK backend has no such ioctl: ENOTTY), as
   * vfio_iommu_type1_dirty_pages() checks it (6.1 and 6.12 are the same): a v1 container
   * (VFIO_TYPE1_IOMMU) is EACCES before the argument is read; `argsz` below 8 or an unknown flag
   * EINVAL; no flag or more than one EINVAL. START gives every vfio_dma a bitmap at the smallest IO
   * page size (EINVAL, and none, when one has more than DIRTY_BITMAP_PAGES_MAX pages) and is 0 when
   * tracking is on already; STOP drops them and is 0 when it is off. GET_BITMAP: `argsz - 8` below
   * 32 EINVAL; then EINVAL for `iova + size` wrapping, a bitmap pointer outside user space
   * (access_ok()), verify_bitmap_size() of `size >> __ffs(pgsize)` pages, a pgsize other than the
   * smallest IO page size, an unaligned iova, a size of 0 or unaligned, tracking off; then
   * vfio_iova_dirty_bitmap(). `header` and `range` read the argument (EFAULT when they cannot).
   */
  dirtyPages(header: () => { argsz: number; flags: number }, range: () => Type1DirtyRange): void {
    const ioctl = 'VFIO_IOMMU_DIRTY_PAGES';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) throw new KernelError(ERRNO.ENOTTY, ioctl, 'the PAMU SDK backend has no dirty-page ioctl');
    this.simulator.checkInjected(ioctl);
    if (!this.v2) throw new KernelError(ERRNO.EACCES, ioctl, 'dirty tracking needs a type1v2 (or nesting) container');
    const { argsz, flags } = header();
    const { START, STOP, GET_BITMAP } = DIRTY_PAGES_FLAGS;
    if (argsz < 8 || (flags & ~(START | STOP | GET_BITMAP)) !== 0) throw new KernelError(ERRNO.EINVAL, ioctl, `argsz ${argsz} below 8 or unknown flags ${hex(flags)}`);
    if (flags === 0 || (flags & (flags - 1)) !== 0) throw new KernelError(ERRNO.EINVAL, ioctl, `exactly one of START, STOP, GET_BITMAP, not ${hex(flags)}`);
    const granule = this.granule;
    if (flags === START) {
      if (this.dirtyTracking) return;
      // vfio_dma_bitmap_alloc_all(): a dma above DIRTY_BITMAP_PAGES_MAX fails it, and frees the others.
      for (const dma of this.paged!.all()) {
        if (rangeSize(dma) / granule > DIRTY_BITMAP_PAGES_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, `the mapping at ${hex(dma.start)} has more than DIRTY_BITMAP_PAGES_MAX pages`);
      }
      this.dirtyTracking = true;
      this.dirtyTails.clear();
      return;
    }
    if (flags === STOP) {
      this.dirtyTracking = false;
      this.dirtyTails.clear();
      return;
    }
    if (argsz - 8 < 40) throw new KernelError(ERRNO.EINVAL, ioctl, `argsz ${argsz} leaves no room for struct vfio_iommu_type1_dirty_bitmap_get`);
    const request = range();
    const { iova, size, pgsize, bitmapSize, data } = request;
    if (iova + size > U64_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, 'iova + size wraps');
    if (!accessOk(this.simulator, data, bitmapSize)) throw new KernelError(ERRNO.EINVAL, ioctl, `bitmap ${hex(data)}+${hex(bitmapSize)} is not in user space`);
    verifyBitmapSize(size >> lowestBit(pgsize), bitmapSize, ioctl);
    if (pgsize !== granule) throw new KernelError(ERRNO.EINVAL, ioctl, `dirty bitmaps use ${hex(granule)}-byte pages only, not ${hex(pgsize)}`);
    if (iova % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} is not aligned to ${hex(granule)}`);
    if (size === 0n || size % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `size ${hex(size)} is not a non-zero multiple of ${hex(granule)}`);
    if (!this.dirtyTracking) throw new KernelError(ERRNO.EINVAL, ioctl, 'dirty tracking is not on (VFIO_IOMMU_DIRTY_PAGES START)');
    // vfio_iova_dirty_bitmap(): the range must not bisect a vfio_dma at either end; gaps are fine.
    const domain = this.paged!;
    const last = iova + size - 1n;
    const first = domain.find(iova);
    if (first !== undefined && first.start !== iova) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)} is inside the mapping at ${hex(first.start)}`);
    const final = domain.find(last);
    if (final !== undefined && final.last !== last) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(last)} is inside the mapping ending at ${hex(final.last)}`);
    const affected = domain.overlapping(iova, last);
    if (affected.length === 0) return;
    const bitmap = request.bitmap();
    for (const dma of affected) this.writeDirtyBits(bitmap, dma, iova);
  }

  /**
   * update_user_bitmap() for one vfio_dma at `base`: every page dirty when a group that pins no
   * pages is in the container (`num_non_pinned_groups`: every vfio-pci group; the simulator has no
   * mdev) and the dma is mapped into an IOMMU domain (`iommu_mapped`: always here, as a container
   * holds mappings only while a group gives it a domain). Keeps dma->bitmap's new tail, also when
   * the copy faults: update_user_bitmap() has set and shifted dma->bitmap by then, and an EFAULT
   * returns before vfio_iova_dirty_bitmap()'s bitmap_clear() (6.1 and 6.12
   * drivers/vfio/vfio_iommu_type1.c), so a dangling bitmap read at a shift changes what the next
   * read of the dma shows.
   */
  private writeDirtyBits(bitmap: UserBitmap, dma: PagedMapping, base: bigint): void {
    const pgshift = lowestBit(this.granule);
    const nbits = Number(rangeSize(dma) >> pgshift);
    const bitOffset = Number((dma.start - base) >> pgshift);
    const keep = (tail: bigint): void => {
      if (tail === 0n) this.dirtyTails.delete(dma.start);
      else this.dirtyTails.set(dma.start, tail);
    };
    keep(updateUserBitmap(bitmap, nbits, bitOffset, this.groups.size > 0, this.dirtyTails.get(dma.start) ?? 0n, keep));
  }

  /** Closing the container: every mapping dropped, every group released. */
  close(): void {
    for (const group of [...this.groups]) this.removeGroup(group);
    this.reset();
    this.simulator.kernelObjects.delete(this);
  }

  /**
   * The release of the container's fd (6.1 drivers/vfio/container.c vfio_fops_release(): only
   * vfio_container_put()). Each group in the container holds a reference on it, so while one is
   * left nothing changes: the IOMMU, the mappings and the groups' CONTAINER_SET stay, GET_DEVICE_FD
   * and UNSET_CONTAINER still work, and the last group to leave frees it
   * (docs/kernel-rules.md#closing-the-container-fd). With no group it goes at once.
   */
  closeFile(): void {
    if (this.groups.size === 0) {
      this.close();
      return;
    }
    this.fileClosed = true;
  }

  /** {@link insideOneRange} for pages `[first, last]`. */
  private insidePages(first: number, last: number): boolean {
    let pages = this.rangePages;
    if (pages === undefined) {
      const ranges = this.iovaRanges();
      pages = new Float64Array(ranges.length * 2);
      ranges.forEach((range, index) => {
        // The first page that starts inside the range and the last page that ends inside it.
        pages![index * 2] = Number((range.start + PAGE - 1n) / PAGE);
        pages![index * 2 + 1] = Number((range.last + 1n) / PAGE) - 1;
      });
      this.rangePages = pages;
    }
    for (let index = 0; index < pages.length; index += 2) if (first >= pages[index]! && last <= pages[index + 1]!) return true;
    return false;
  }

  private insideOneRange(start: bigint, last: bigint): boolean {
    for (const range of this.iovaRanges()) if (start >= range.start && last <= range.last) return true;
    return false;
  }

  private get granule(): bigint {
    const sizes = this.simulator.platform.ioPageSizes;
    return sizes & -sizes;
  }

  private attachDevices(group: SimGroup): void {
    // PAMU: each LIODN joins the domain's list, disabled until the next successful MAP_DMA when the
    // domain already translates (docs/kernel-rules.md#attaching-to-a-live-container).
    if (this.pamu !== undefined) {
      for (const device of group.devices) this.pamu.attach(device);
      return;
    }
    for (const device of group.devices) device.domain = this.paged;
  }

  private removeMappings(mappings: PagedMapping[], dirty?: { base: bigint; bitmap: UserBitmap }): bigint {
    let bytes = 0n;
    for (const mapping of mappings) {
      // update_user_bitmap() before the dma goes; an EFAULT stops the unmap there, the mappings
      // before it gone (vfio_dma_do_unmap()).
      if (dirty !== undefined) this.writeDirtyBits(dirty.bitmap, mapping, dirty.base);
      if (this.dirtyTails.size !== 0) this.dirtyTails.delete(mapping.start);
      if (this.invalidVaddrs.size !== 0) this.invalidVaddrs.delete(mapping.start);
      this.paged!.remove(mapping);
      const size = rangeSize(mapping);
      this.simulator.unpin(size);
      bytes += size;
    }
    return bytes;
  }

  private removeAll(): bigint {
    return this.removeMappings(this.paged!.all());
  }

  private reset(): void {
    if (this.paged !== undefined) this.removeAll();
    // The container's vfio_iommu is released with its last group: tracking goes with it.
    this.dirtyTracking = false;
    this.dirtyTails.clear();
    this.pamu?.release();
    this.paged = undefined;
    this.pamu = undefined;
    this.iommuType = null;
    this.v2 = false;
    this.invalidVaddrs.clear();
    this.domains = [];
    this.setIovaList([]);
  }

  private setIovaList(list: IovaRange[]): void {
    this.iovaList = list;
    this.rangePages = undefined;
  }

  /**
   * vfio_iommu_type1_attach_group() for a group joining a container whose IOMMU is set (or being
   * set), in the kernel's order: the new domain's aperture must hold every mapping
   * (vfio_iommu_aper_conflict), no mapping may sit in the group's reserved regions but relaxable
   * ones (vfio_iommu_resv_conflict), and the IOVA list must keep a range once both are cut out
   * (vfio_iommu_aper_resize, vfio_iommu_resv_exclude): EINVAL each. Then the group joins a domain
   * of its IOMMU, or a new one gets the mappings replayed (vfio_iommu_replay). Nothing changes on
   * failure (docs/kernel-rules.md#attaching-to-a-live-container).
   */
  private attachType1(group: SimGroup, ioctl: string): void {
    // Attaching could need pinning: refused while a vaddr is invalid (`iommu->vaddr_invalid_count`).
    if (this.invalidVaddrs.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `${this.invalidVaddrs.size} mapping(s) have no valid vaddr (UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR): remap them first`);
    const domain = this.paged!;
    const aperture = group.aperture;
    if (this.apertureConflict(domain, aperture)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `group ${group.id}'s IOMMU translates only ${hex(aperture.start)}-${hex(aperture.last)}, and a mapping lies outside it`);
    }
    const reserved = group.reserved.filter((region) => region.kind !== 'direct-relaxable');
    for (const region of reserved) {
      if (domain.overlaps(region.start, region.last)) {
        throw new KernelError(ERRNO.EINVAL, ioctl, `a mapping overlaps group ${group.id}'s ${region.kind} region ${hex(region.start)}-${hex(region.last)}`);
      }
    }
    const list = this.iovaList.map((range) => ({ ...range }));
    apertureResize(list, aperture.start, aperture.last);
    if (!excludeReserved(list, reserved)) throw new KernelError(ERRNO.EINVAL, ioctl, `group ${group.id} would leave no usable IOVA range`);
    // A domain of the same IOMMU takes the group (iommu_attach_group() on it succeeds); another
    // IOMMU's refuses, and the group keeps a domain of its own.
    let shared = this.domains.find((candidate) => candidate.aperture.start === aperture.start && candidate.aperture.last === aperture.last);
    if (shared === undefined) {
      shared = { aperture, groups: new Set() };
      this.domains.push(shared);
    }
    shared.groups.add(group);
    this.setIovaList(list);
    this.attachDevices(group);
  }

  /**
   * vfio_iommu_type1_detach_group(): the group leaves its domain; a domain left empty is freed (the
   * last one unmaps every mapping) and the aperture grows back to what the domains left allow
   * (vfio_iommu_aper_expand); the reserved regions are recomputed over the IOVA list's hull
   * (vfio_iommu_resv_refresh), which keeps the old list when it fails
   * (docs/kernel-rules.md#detaching-from-a-live-container).
   */
  private detachType1(group: SimGroup): void {
    const list = this.iovaList.map((range) => ({ ...range }));
    const index = this.domains.findIndex((candidate) => candidate.groups.has(group));
    const domain = this.domains[index];
    if (domain !== undefined) {
      domain.groups.delete(group);
      if (domain.groups.size === 0) {
        if (this.domains.length === 1) this.removeAll();
        this.domains.splice(index, 1);
        this.apertureExpand(list);
      }
    }
    if (list.length === 0) return;
    const start = list[0]!.start;
    const last = list[list.length - 1]!.last;
    const refreshed: IovaRange[] = [];
    apertureResize(refreshed, start, last);
    const reserved = this.domains.flatMap((candidate) => [...candidate.groups].flatMap((member) => member.reserved));
    if (excludeReserved(refreshed, reserved)) this.setIovaList(refreshed);
  }

  /** vfio_iommu_aper_conflict(): the new aperture misses the IOVA list, or leaves a mapping of it outside. */
  private apertureConflict(domain: PagedDomain, aperture: IovaRange): boolean {
    const list = this.iovaList;
    if (list.length === 0) return false;
    const first = list[0]!;
    const final = list[list.length - 1]!;
    if (aperture.start > final.last || aperture.last < first.start) return true;
    if (aperture.start > first.start && domain.overlaps(first.start, aperture.start - 1n)) return true;
    return aperture.last < final.last && domain.overlaps(aperture.last + 1n, final.last);
  }

  /** vfio_iommu_aper_expand(): the list's ends move out to the intersection of the domains' apertures. */
  private apertureExpand(list: { start: bigint; last: bigint }[]): void {
    if (list.length === 0) return;
    let start = 0n;
    let last = U64_MAX;
    for (const domain of this.domains) {
      if (domain.aperture.start > start) start = domain.aperture.start;
      if (domain.aperture.last < last) last = domain.aperture.last;
    }
    list[0]!.start = start;
    list[list.length - 1]!.last = last;
  }
}
