import { ERRNO, hex, type IovaRange, rangeSize, U64_MAX } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import { PagedDomain, type PagedMapping } from './paged-domain.js';
import { PamuDomain } from './pamu-domain.js';
import type { ReservedRegionSpec } from './platforms.js';
import type { SimGroup, Simulator } from './simulator.js';

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

  /** VFIO_CHECK_EXTENSION: 1 or 0, never an error. */
  checkExtension(extension: number): number {
    this.simulator.checkInjected('VFIO_CHECK_EXTENSION');
    if (this.windowed) {
      // The SDK PAMU backend answers 1 only for its own type number
      // (docs/kernel-rules.md#pamu-iommu-type-numbers).
      return extension === this.simulator.pamuType ? 1 : 0;
    }
    const { TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU, UNMAP_ALL, UPDATE_VADDR, DMA_CC_IOMMU } = VFIO_EXTENSION;
    const always: number[] = [TYPE1_IOMMU, TYPE1v2_IOMMU, TYPE1_NESTING_IOMMU, UNMAP_ALL];
    // UPDATE_VADDR and DMA_CC_IOMMU answer 0 until SET_IOMMU is done (observed on 6.1).
    const afterSet: number[] = [UPDATE_VADDR, DMA_CC_IOMMU];
    if (always.includes(extension)) return 1;
    return this.iommuType !== null && afterSet.includes(extension) ? 1 : 0;
  }

  /** VFIO_SET_IOMMU. */
  setIommu(type: number): void {
    const ioctl = 'VFIO_SET_IOMMU';
    this.simulator.checkInjected(ioctl);
    if (this.groups.size === 0) throw new KernelError(ERRNO.EINVAL, ioctl, 'no group in the container yet');
    if (this.iommuType !== null) throw new KernelError(ERRNO.EINVAL, ioctl, 'an IOMMU type is already set');
    const accepted: number[] = this.windowed ? [this.simulator.pamuType] : [VFIO_EXTENSION.TYPE1_IOMMU, VFIO_EXTENSION.TYPE1v2_IOMMU];
    if (!accepted.includes(type)) throw new KernelError(ERRNO.ENODEV, ioctl, `no IOMMU backend accepts type ${type}`);
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
    this.dmaLimit = this.simulator.dmaEntryLimit;
    this.granuleBytes = Number(this.granule);
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
    // vfio_group_detach_container(): the last group out deprivileges the container.
    if (this.groups.size === 0) this.reset();
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
      migration: { pageSizes: PAGE, maxDirtyBitmapSize: 0x1000_0000n },
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
      size % granule === 0
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
    return size;
  }

  /** VFIO_IOMMU_UNMAP_DMA with type1/type1v2 semantics
   * (docs/kernel-rules.md#no-bisecting-unmaps-in-type1v2); returns the bytes unmapped. */
  unmap(iova: bigint, size: bigint, all: boolean): bigint {
    const ioctl = 'VFIO_IOMMU_UNMAP_DMA';
    if (this.iommuType === null) throw new KernelError(ERRNO.EINVAL, ioctl, 'SET_IOMMU has not been done');
    if (this.pamu !== undefined) {
      if (all) throw new KernelError(ERRNO.EINVAL, ioctl, 'the PAMU backend takes no unmap flags');
      this.pamu.unmap(iova, size);
      return size;
    }
    this.simulator.checkInjected(ioctl);
    const domain = this.paged!;
    const granule = this.granule;
    if (all) {
      if (iova !== 0n || size !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'UNMAP_ALL needs iova and size 0');
      return this.removeAll();
    }
    if (iova % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} is not aligned to ${hex(granule)}`);
    if (size === 0n || size % granule !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `size ${hex(size)} is not a non-zero multiple of ${hex(granule)}`);
    const last = iova + size - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EINVAL, ioctl, 'range wraps');
    const affected = domain.overlapping(iova, last);
    if (this.iommuType === VFIO_EXTENSION.TYPE1v2_IOMMU) {
      // type1v2 refuses to bisect a mapping at either end.
      const first = affected[0];
      const final = affected[affected.length - 1];
      if (first !== undefined && first.start < iova) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)} is inside the mapping at ${hex(first.start)}`);
      if (final !== undefined && final.last > last) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(last)} is inside the mapping ending at ${hex(final.last)}`);
      return this.removeMappings(affected);
    }
    // type1 (v1): a range starting inside a mapping unmaps nothing from it; covering a mapping's
    // first byte removes the whole mapping.
    return this.removeMappings(affected.filter((mapping) => mapping.start >= iova));
  }

  /** Closing the container: every mapping dropped, every group released. */
  close(): void {
    for (const group of [...this.groups]) this.removeGroup(group);
    this.reset();
    this.simulator.kernelObjects.delete(this);
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

  private removeMappings(mappings: PagedMapping[]): bigint {
    let bytes = 0n;
    for (const mapping of mappings) {
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
    this.pamu?.release();
    this.paged = undefined;
    this.pamu = undefined;
    this.iommuType = null;
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
