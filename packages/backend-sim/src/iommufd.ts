import { ERRNO, hex, intersectRange, type IovaRange, normalizeRanges, rangeSize, rangesOverlap, subtractRanges, U64_MAX } from '@ioas/core';
import { DirtyPages } from './dirty-pages.js';
import { KernelError } from './kernel-error.js';
import { PagedDomain, type PagedMapping, type Translation, type DmaDomain } from './paged-domain.js';
import type { SimDevice, Simulator } from './simulator.js';
import type { UserBitmap } from './user-bitmap.js';

const PAGE = 0x1000n;
/** HPAGE_SIZE on x86-64: a PMD, 2 MiB. */
const HPAGE_SIZE = 0x20_0000n;
const PAGE_BYTES = 4096;

/** iommufd IOAS_MAP flags (include/uapi/linux/iommufd.h; docs/kernel-rules.md#ioas-map). */
export const IOAS_MAP_FLAGS = {
  /** Map at the IOVA given (else the kernel chooses). */
  FIXED_IOVA: 0x1,
  /** The device may write. */
  WRITEABLE: 0x2,
  /** The device may read. */
  READABLE: 0x4,
} as const;

/** IOMMU_HWPT_ALLOC flags (enum iommufd_hwpt_alloc_flags, 6.12). */
export const HWPT_ALLOC_FLAGS = {
  /** The HWPT may be a nesting parent. */
  NEST_PARENT: 0x1,
  /** The domain tracks dirty pages (dirty_ops). */
  DIRTY_TRACKING: 0x2,
  /** `fault_id` names a fault queue. */
  FAULT_ID_VALID: 0x4,
} as const;

/** IOMMU_HWPT_SET_DIRTY_TRACKING's IOMMU_HWPT_DIRTY_TRACKING_ENABLE. */
export const HWPT_DIRTY_TRACKING_ENABLE = 0x1;
/** IOMMU_HWPT_GET_DIRTY_BITMAP's IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR. */
export const HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 0x1;
/** IOMMU_GET_HW_INFO's IOMMU_HW_CAP_DIRTY_TRACKING in `out_capabilities`. */
export const HW_CAP_DIRTY_TRACKING = 0x1n;

/** What IOMMU_GET_HW_INFO answers for a device. */
export interface SimHwInfo {
  /** `out_data_type`: IOMMU_HW_INFO_TYPE_NONE (0, SMMUv3 in 6.12) or IOMMU_HW_INFO_TYPE_INTEL_VTD (1). */
  readonly type: number;
  /** VT-d: `struct iommu_hw_info_vtd` { flags, __reserved, cap_reg, ecap_reg }. */
  readonly vtd?: {
    /** IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 (1), always set by the 6.12 driver. */
    readonly flags: number;
    /** CAP_REG. */
    readonly cap: bigint;
    /** ECAP_REG. */
    readonly ecap: bigint;
  };
  /** `out_capabilities`. */
  readonly capabilities: bigint;
}

/** ECAP.SLADS: second-stage access/dirty support (drivers/iommu/intel/iommu.h, ecap_slads()). */
const ECAP_SLADS = 1n << 45n;

/** IOMMU_OPTION's option ids and ops (include/uapi/linux/iommufd.h, 6.12). */
const OPTION = { RLIMIT_MODE: 0, HUGE_PAGES: 1, SET: 0, GET: 1 } as const;

/** IOMMU_VFIO_IOAS's ops (enum iommufd_vfio_ioas_op). */
const VFIO_IOAS_OP = { GET: 0, SET: 1, CLEAR: 2 } as const;

/** The VFIO extensions iommufd's compat layer knows (include/uapi/linux/vfio.h). */
const COMPAT_EXTENSION = { TYPE1: 1, TYPE1v2: 3, DMA_CC: 4, UNMAP_ALL: 9 } as const;

/** Every IOAS_MAP flag the kernel knows. */
const MAP_KNOWN = IOAS_MAP_FLAGS.FIXED_IOVA | IOAS_MAP_FLAGS.WRITEABLE | IOAS_MAP_FLAGS.READABLE;

/** An IOAS's usable ranges and the IOVA alignment maps need (IOMMU_IOAS_IOVA_RANGES). */
export interface IoasRanges {
  /** The usable ranges, in order. */
  ranges: IovaRange[];
  /** `out_iova_alignment`. */
  alignment: bigint;
}

/**
 * An iommufd IOAS: an IO address space with its areas (mappings), its allow-list, and the devices
 * attached to it. Rules from docs/kernel-rules.md#iommufd (6.12 source).
 */
export class Ioas implements DmaDomain {
  /** The mapped areas. */
  readonly areas: PagedDomain;
  /** The allow-list (IOAS_ALLOW_IOVAS); empty allows everything. */
  allowed: IovaRange[] = [];
  /** The devices attached (changed through {@link SimIommufdContext.attach} and `detach`). */
  readonly devices = new Set<SimDevice>();
  /**
   * The IOMMU domains in its io_pagetable: the automatic domains of its devices and the HWPTs
   * allocated on it, each reserving what lies outside its aperture for as long as it lives
   * (io_pagetable.c, iopt_table_add_domain()).
   */
  readonly domains = new Set<Hwpt>();
  /** Domains among {@link domains} that keep dirty bits: an unmap drops the bits of what it unmapped. */
  dirtyDomains = 0;
  /**
   * IOMMU_OPTION_HUGE_PAGES: false once set to 0 (`iopt->disable_large_pages`), which raises the
   * IOVA alignment to PAGE_SIZE even with no domain (6.12 io_pagetable.c,
   * iopt_calculate_iova_alignment()).
   */
  hugePages = true;
  /**
   * Starts of areas that map without WRITEABLE pages first mapped with it (an IOMMU_IOAS_COPY
   * without WRITEABLE of a writable area): a later WRITEABLE copy of them is allowed, as the kernel
   * checks `pages->writable`, the property of the original map (io_pagetable.c, iopt_insert_area()).
   * Every other area's pages are writable exactly when it maps WRITEABLE.
   * @internal
   */
  readonly writablePages = new Set<bigint>();
  /** {@link reserved} as page numbers for the map hot path: [first, last] pairs; rebuilt when devices come or go. */
  private holes: Float64Array | undefined;

  constructor(
    /** The IOAS object id. */
    readonly id: number,
    private readonly simulator: Simulator,
  ) {
    this.areas = new PagedDomain(simulator.platform.swMsiDoorbell?.window);
  }

  /**
   * Reserved IOVA: every non-relaxable reserved region of each attached device, and what lies
   * outside the aperture of each domain (docs/kernel-rules.md#attaching-to-a-live-container).
   */
  reserved(): IovaRange[] {
    const reserved: IovaRange[] = [];
    for (const device of this.devices) {
      for (const region of device.reserved) if (region.kind !== 'direct-relaxable') reserved.push(region);
    }
    for (const domain of this.domains) reserved.push(...outsideAperture(domain.aperture));
    return normalizeRanges(reserved);
  }

  /** IOAS_IOVA_RANGES: the complement of the reserved set, and the IOVA alignment. */
  ranges(): IoasRanges {
    return {
      ranges: subtractRanges([{ start: 0n, last: U64_MAX }], this.reserved()),
      alignment: this.alignment,
    };
  }

  /**
   * `iopt->iova_alignment`: 1 byte on a fresh IOAS; the domains' page (4 KiB, never above
   * PAGE_SIZE) once a domain is in the io_pagetable, and PAGE_SIZE too while HUGE_PAGES is 0 (6.12
   * io_pagetable.c, iopt_table_add_domain(), iopt_calculate_iova_alignment()).
   */
  get alignment(): bigint {
    return this.domains.size > 0 || !this.hugePages ? PAGE : 1n;
  }

  /** Whether the pages behind `area` were mapped WRITEABLE (`pages->writable`). */
  pagesWritable(area: PagedMapping): boolean {
    return area.write || this.writablePages.has(area.start);
  }

  translate(iova: bigint, write: boolean): Translation {
    return this.areas.translate(iova, write);
  }

  /**
   * True when pages `[first, last]` touch a reserved range (what {@link reserved} holds, as page
   * numbers: a page touches a hole when any of its bytes does).
   * @internal
   */
  reservedPages(first: number, last: number): boolean {
    let holes = this.holes;
    if (holes === undefined) {
      const reserved = this.reserved();
      holes = new Float64Array(reserved.length * 2);
      reserved.forEach((hole, index) => {
        holes![index * 2] = Number(hole.start / PAGE);
        holes![index * 2 + 1] = Number(hole.last / PAGE);
      });
      this.holes = holes;
    }
    for (let index = 0; index < holes.length; index += 2) if (holes[index]! <= last && holes[index + 1]! >= first) return true;
    return false;
  }

  /**
   * Drops what was derived from the attached devices: the context calls it when they change.
   * @internal
   */
  devicesChanged(): void {
    this.holes = undefined;
  }

  mapSoftwareMsi(doorbell: bigint): bigint | undefined {
    return this.areas.mapSoftwareMsi(doorbell);
  }

  /**
   * An area of pages `[first, last]` is gone: its page-table entries, dirty bits included, go with
   * it in every domain (iommufd has no unmap that reports them).
   * @internal
   */
  forgetDirty(first: number, last: number): void {
    for (const domain of this.domains) domain.dirty?.clear(first, last);
  }
}

/**
 * A paging HWPT (`IOMMUFD_OBJ_HWPT_PAGING`): an IOMMU domain over an IOAS. Either automatic
 * (`auto_domain`): what attaching a device to an IOAS creates, or reuses when the IOAS already has
 * one, and destroys when its last device leaves (6.12 drivers/iommu/iommufd/device.c,
 * iommufd_device_auto_get_domain(); iommufd_private.h, iommufd_hw_pagetable_put();
 * docs/kernel-rules.md#attaching-and-detaching-a-device); or allocated by IOMMU_HWPT_ALLOC, which
 * lives until IOMMU_DESTROY, attached or not, and which automatic selection never picks.
 *
 * Devices attached to it translate through it. One allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING
 * has dirty_ops and keeps a dirty bit per IO page ({@link dirty}), set by device writes: on VT-d
 * only while tracking is enabled (second-stage A/D with SSADE in the PASID entry,
 * intel_iommu_set_dirty_tracking()); on SMMUv3 always (HTTU with DBM on every writable entry; its
 * set_dirty_tracking() does nothing, arm-smmu-v3.c).
 */
export class Hwpt implements DmaDomain {
  /** The devices attached to it. */
  readonly devices = new Set<SimDevice>();
  /** The dirty bits (dirty_ops), when allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING. */
  readonly dirty: DirtyPages | undefined;
  /** IOMMU_HWPT_SET_DIRTY_TRACKING's last state (VT-d: dmar_domain->dirty_tracking). */
  tracking = false;
  constructor(
    /** The HWPT object id. */
    readonly id: number,
    /** The IOAS whose mappings it holds. */
    readonly ioas: Ioas,
    /** What the domain translates: the aperture of the IOMMU of the device it was made for. */
    readonly aperture: IovaRange,
    /** An automatic domain. */
    readonly auto: boolean,
    dirtyTracking: boolean,
    /** The hardware sets dirty bits whether tracking is enabled or not (SMMUv3 HTTU). */
    private readonly recordsAlways: boolean,
  ) {
    this.dirty = dirtyTracking ? new DirtyPages() : undefined;
  }

  /** The IOMMU driver attaches a device to it only when it sits behind the same IOMMU (docs/kernel-rules.md#one-domain-per-iommu-instance). */
  takes(device: SimDevice): boolean {
    return device.aperture.start === this.aperture.start && device.aperture.last === this.aperture.last;
  }

  translate(iova: bigint, write: boolean): Translation {
    return this.ioas.translate(iova, write);
  }

  mapSoftwareMsi(doorbell: bigint): bigint | undefined {
    return this.ioas.mapSoftwareMsi(doorbell);
  }

  recordWrite(iova: bigint, length: number): void {
    const dirty = this.dirty;
    if (dirty === undefined || !(this.recordsAlways || this.tracking)) return;
    dirty.set(Number(iova / PAGE), Number((iova + BigInt(length) - 1n) / PAGE));
  }
}

/** The IOVA outside an aperture: what a domain reserves in the IOAS it joins. */
function outsideAperture(aperture: IovaRange): IovaRange[] {
  const outside: IovaRange[] = [];
  if (aperture.start > 0n) outside.push({ start: 0n, last: aperture.start - 1n });
  if (aperture.last < U64_MAX) outside.push({ start: aperture.last + 1n, last: U64_MAX });
  return outside;
}

/** __ffs(): the lowest set bit (64 for 0). */
function lowestBit(value: bigint): bigint {
  if (value === 0n) return 64n;
  let bit = 0n;
  while (((value >> bit) & 1n) === 0n) bit++;
  return bit;
}

/** A device bound to the context: where it is attached, if anywhere. */
interface Binding {
  readonly device: SimDevice;
  domain: Hwpt | undefined;
}

/**
 * One `/dev/iommu` file as the simulated kernel keeps it: its objects (IOAS, bound devices,
 * automatic domains) by id. The SDK's handle on one is `@ioas/vfio`'s `IommufdContext`.
 */
export class SimIommufdContext {
  private readonly objects = new Map<number, Ioas | Binding | Hwpt>();
  /**
   * CONFIG_TRANSPARENT_HUGEPAGE of the simulated kernel: the largest alignment the kernel gives an
   * IOVA it chooses is then HPAGE_SIZE (2 MiB), else PAGE_SIZE (6.12 io_pagetable.c,
   * iopt_alloc_iova()). Off by default, as in the rig's 6.12 guest: x86_64_defconfig and
   * kvm_guest.config do not set it, mm/Kconfig gives it no default and nothing selects it.
   */
  transparentHugepages = false;
  /**
   * IOMMU_OPTION_RLIMIT_MODE: `ictx->account_mode` is IOPT_PAGES_ACCOUNT_MM after SET 1 (GET then
   * answers 1), IOPT_PAGES_ACCOUNT_USER after SET 0; a new context's is neither (GET answers 0).
   */
  private accountMm = false;
  /** The `/dev/iommu` fd is open ({@link releaseFile}). */
  private fileOpen = true;
  /** Released: {@link close} ran. */
  private released = false;
  /** `ictx->vfio_ioas`: the IOAS the VFIO compat ioctls on `/dev/iommu` act on. */
  private compat: Ioas | undefined;
  /**
   * References VFIO groups hold on the context: a group given this fd as its container
   * (6.12 drivers/vfio/group.c, vfio_group_ioctl_set_container(): iommufd_ctx_from_file() takes
   * one, dropped by UNSET_CONTAINER or the group file's release). While one is held, closing the
   * `/dev/iommu` fd does not release the context ({@link hold}, {@link drop}).
   */
  private groupHolds = 0;

  constructor(private readonly simulator: Simulator) {
    simulator.kernelObjects.add(this);
  }

  /** Live areas over every IOAS of this context. */
  get mappingCount(): number {
    let count = 0;
    for (const object of this.objects.values()) if (object instanceof Ioas) count += object.areas.count;
    return count;
  }

  /** IOMMU_IOAS_ALLOC. */
  allocateIoas(flags: number): number {
    const ioctl = 'IOMMU_IOAS_ALLOC';
    this.simulator.checkInjected(ioctl);
    if (flags !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, 'flags must be 0');
    const id = this.freeId();
    this.objects.set(id, new Ioas(id, this.simulator));
    return id;
  }

  /**
   * The id a new object gets: the lowest free one from 1, as `xa_alloc()` on the context's
   * `XA_FLAGS_ALLOC1` xarray gives it, so ids of destroyed objects come back (6.12
   * drivers/iommu/iommufd/main.c, _iommufd_object_alloc(), iommufd_fops_open()).
   */
  private freeId(): number {
    let id = 1;
    while (this.objects.has(id)) id++;
    return id;
  }

  /** IOMMU_DESTROY. */
  destroy(id: number): void {
    const ioctl = 'IOMMU_DESTROY';
    this.simulator.checkInjected(ioctl);
    const object = this.objects.get(id);
    if (object === undefined) throw new KernelError(ERRNO.ENOENT, ioctl, `no object ${id}`);
    // An object another holds a reference on is EBUSY (iommufd_object_remove(): the users
    // refcount): an IOAS with a device or a HWPT on it, a HWPT with a device attached (an automatic
    // domain always has one), a bound device (destroyed by closing its fd).
    if (object instanceof Ioas) {
      if (object.devices.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `IOAS ${id} has attached devices`);
      if (object.domains.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `IOAS ${id} has a HWPT allocated on it`);
      this.unmapAll(object);
      this.objects.delete(id);
      // Destroying the compat IOAS forgets it (6.12 main.c, iommufd_object_remove()).
      if (this.compat === object) this.compat = undefined;
      return;
    }
    if (object instanceof Hwpt) {
      if (object.devices.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `HWPT ${id} has a device attached`);
      this.removeHwpt(object);
      return;
    }
    throw new KernelError(ERRNO.EBUSY, ioctl, `object ${id} is in use`);
  }

  /** The IOAS with this id, or ENOENT naming `ioctl`. */
  ioas(id: number, ioctl: string): Ioas {
    const object = this.objects.get(id);
    if (!(object instanceof Ioas)) throw new KernelError(ERRNO.ENOENT, ioctl, `no IOAS ${id}`);
    return object;
  }

  /** IOMMU_IOAS_IOVA_RANGES (the caller handles the EMSGSIZE two-step). */
  iovaRanges(id: number): IoasRanges {
    this.simulator.checkInjected('IOMMU_IOAS_IOVA_RANGES');
    return this.ioas(id, 'IOMMU_IOAS_IOVA_RANGES').ranges();
  }

  /** IOMMU_IOAS_ALLOW_IOVAS: replaces the whole allow-list ({@link allowIovasFrom}). */
  allowIovas(id: number, ranges: readonly IovaRange[]): void {
    this.allowIovasFrom(id, ranges.length, (index) => ranges[index]!);
  }

  /**
   * IOMMU_IOAS_ALLOW_IOVAS with its `count` entries read one at a time by `entry` (which throws
   * EFAULT for one it cannot read), in the kernel's order (6.12 ioas.c, iommufd_ioas_allow_iovas(),
   * iommufd_ioas_load_iovas(); io_pagetable.c, iopt_set_allow_iova()): the IOAS (ENOENT) before any
   * entry is read; then each entry in turn: unreadable EFAULT, `start >= last` EINVAL, overlapping
   * an earlier one EINVAL; then any range touching a reserved range EADDRINUSE. The old list stays
   * on any failure; 0 entries clear it. Areas are not checked.
   */
  allowIovasFrom(id: number, count: number, entry: (index: number) => IovaRange): void {
    const ioctl = 'IOMMU_IOAS_ALLOW_IOVAS';
    this.simulator.checkInjected(ioctl);
    const ioas = this.ioas(id, ioctl);
    const loaded: IovaRange[] = [];
    for (let index = 0; index < count; index++) {
      const range = entry(index);
      if (range.start >= range.last) throw new KernelError(ERRNO.EINVAL, ioctl, `range ${hex(range.start)}-${hex(range.last)} needs start < last`);
      // `loaded` stays sorted: the first range ending at or after this start is the only one that can overlap it.
      let low = 0;
      let high = loaded.length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (loaded[middle]!.last < range.start) low = middle + 1;
        else high = middle;
      }
      if (low < loaded.length && loaded[low]!.start <= range.last) throw new KernelError(ERRNO.EINVAL, ioctl, 'allowed ranges overlap');
      loaded.splice(low, 0, { start: range.start, last: range.last });
    }
    const reserved = ioas.reserved();
    for (const range of loaded) {
      if (reserved.some((hole) => rangesOverlap(hole, range))) {
        throw new KernelError(ERRNO.EADDRINUSE, ioctl, `range ${hex(range.start)}-${hex(range.last)} intersects a reserved region`);
      }
    }
    ioas.allowed = loaded;
  }

  /**
   * IOMMU_IOAS_MAP: returns the IOVA (chosen by the kernel without FIXED_IOVA). In the kernel's
   * order (6.12 ioas.c, iommufd_ioas_map(); io_pagetable.c, iopt_map_user_pages()): an unknown flag
   * EOPNOTSUPP; `iova` or `length` ULONG_MAX EOVERFLOW (FIXED or not); neither READABLE nor
   * WRITEABLE EINVAL; then the IOAS (ENOENT); the user range (pages.c, iopt_alloc_pages(): length 0
   * or above SIZE_MAX - PAGE_SIZE EINVAL, `user_va + length` past 2^64 EOVERFLOW); the area's place
   * (`placeArea()`); then, only when the IOAS has a domain, the pages are pinned: memory not
   * mapped EFAULT. With no domain the kernel keeps a lazy reference and touches no memory
   * (pages.c, iopt_area_fill_domains()): the pin, and its EFAULT, come at the first attach.
   */
  map(id: number, flags: number, vaddr: bigint, length: bigint, iova: bigint): bigint {
    const ioctl = 'IOMMU_IOAS_MAP';
    this.simulator.checkInjected(ioctl);
    if ((flags & ~MAP_KNOWN) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown flags ${hex(flags)}`);
    if (iova >= U64_MAX || length >= U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova or length >= ULONG_MAX');
    const read = (flags & IOAS_MAP_FLAGS.READABLE) !== 0;
    const write = (flags & IOAS_MAP_FLAGS.WRITEABLE) !== 0;
    if (!read && !write) throw new KernelError(ERRNO.EINVAL, ioctl, 'neither READABLE nor WRITEABLE');
    const ioas = this.ioas(id, ioctl);
    return this.mapArea(ioas, (flags & IOAS_MAP_FLAGS.FIXED_IOVA) !== 0, iova, vaddr, length, read, write, ioctl);
  }

  /**
   * iopt_map_user_pages() (6.12 io_pagetable.c), shared by IOMMU_IOAS_MAP and the VFIO compat
   * MAP_DMA: the user range (pages.c, iopt_alloc_pages(): length 0 or above SIZE_MAX - PAGE_SIZE
   * EINVAL, `user_va + length` past 2^64 EOVERFLOW); the area's place (`placeArea()`); its page
   * offset ({@link insertCheck}); then the pin, only when the IOAS has a domain (EFAULT).
   */
  private mapArea(ioas: Ioas, fixed: boolean, iova: bigint, vaddr: bigint, length: bigint, read: boolean, write: boolean, ioctl: string): bigint {
    if (length === 0n || length > U64_MAX - PAGE) throw new KernelError(ERRNO.EINVAL, ioctl, `length ${hex(length)} is 0 or above SIZE_MAX - PAGE_SIZE`);
    if (vaddr + length > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'user_va + length wraps');
    const start = this.placeArea(ioas, fixed, iova, length, vaddr, ioctl);
    this.insertCheck(ioas, [{ vaddr, writable: write }], write, ioctl);
    if (ioas.domains.size > 0 && !this.simulator.memory.isMapped(vaddr, length)) {
      throw new KernelError(ERRNO.EFAULT, ioctl, `user_va ${hex(vaddr)}+${hex(length)} is not mapped`);
    }
    this.simulator.pin(length, ioctl);
    ioas.areas.add({ start, last: start + length - 1n, vaddr, read, write });
    return start;
  }

  /**
   * Where a new area of `length` bytes goes (6.12 io_pagetable.c, iopt_alloc_area_pages()): a
   * length not a multiple of the IOAS's alignment EINVAL; with FIXED_IOVA at `iova`
   * (iopt_check_iova(): misaligned EINVAL, wrapping EOVERFLOW, on a reserved range EINVAL, on an
   * area EEXIST; the allow-list does not apply), else where the kernel chooses ({@link allocateIova}).
   */
  private placeArea(ioas: Ioas, fixed: boolean, iova: bigint, length: bigint, uptr: bigint, ioctl: string): bigint {
    const alignment = ioas.alignment;
    if (length % alignment !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `length ${hex(length)} is not a multiple of ${hex(alignment)}`);
    if (!fixed) return this.allocateIova(ioas, uptr, length, ioctl);
    if (iova % alignment !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} is not a multiple of ${hex(alignment)}`);
    const last = iova + length - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova + length - 1 wraps');
    if (ioas.reserved().some((hole) => hole.start <= last && iova <= hole.last)) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(iova)}-${hex(last)} hits a reserved region`);
    if (ioas.areas.overlaps(iova, last)) throw new KernelError(ERRNO.EEXIST, ioctl, `${hex(iova)}-${hex(last)} overlaps an existing area`);
    return iova;
  }

  /**
   * iopt_insert_area() for each piece of a new area (6.12 io_pagetable.c), in turn: WRITEABLE over
   * pages first mapped without it EPERM (only a COPY can ask that); the user address's offset in its
   * page not a multiple of the IOAS's alignment EINVAL (with a domain, a `user_va` not page-aligned
   * is EINVAL even when `iova` and `length` are).
   */
  private insertCheck(ioas: Ioas, pieces: readonly { vaddr: bigint; writable: boolean }[], write: boolean, ioctl: string): void {
    const alignment = ioas.alignment;
    for (const piece of pieces) {
      if (write && !piece.writable) throw new KernelError(ERRNO.EPERM, ioctl, `WRITEABLE over pages at user_va ${hex(piece.vaddr)} mapped without WRITEABLE`);
      if ((piece.vaddr % PAGE) % alignment !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `user_va ${hex(piece.vaddr)} has a page offset not a multiple of ${hex(alignment)}`);
    }
  }

  /**
   * {@link map} for the syscall face's hot path, with integers below 2^53: a FIXED_IOVA map of
   * whole pages into a free, unreserved range of mapped memory, with no fault injection pending and
   * no RLIMIT_MEMLOCK, without a bigint or an allocation. Returns the IOVA; -1 when the call is not
   * that common case, having changed nothing (the caller then takes {@link map}, so that every
   * check, errno and message is the same).
   */
  mapNumbers(id: number, flags: number, vaddr: number, length: number, iova: number): number {
    const simulator = this.simulator;
    if (simulator.injecting || (flags & ~MAP_KNOWN) !== 0 || (flags & IOAS_MAP_FLAGS.FIXED_IOVA) === 0) return -1;
    const read = (flags & IOAS_MAP_FLAGS.READABLE) !== 0;
    const write = (flags & IOAS_MAP_FLAGS.WRITEABLE) !== 0;
    if (!(read || write) || length <= 0 || iova % PAGE_BYTES !== 0 || length % PAGE_BYTES !== 0 || vaddr % PAGE_BYTES !== 0) return -1;
    const ioas = this.objects.get(id);
    if (!(ioas instanceof Ioas)) return -1;
    // Multiples of 4 KiB below 2^54 are exact, and so are their quotients.
    const first = iova / PAGE_BYTES;
    const last = (iova + length) / PAGE_BYTES - 1;
    if (ioas.reservedPages(first, last) || !simulator.memory.isMappedNumber(vaddr, length) || !simulator.tryPin(length)) return -1;
    // The overlap check and the insert in one descent; an overlap undoes the pin.
    if (ioas.areas.addPagesIfFree(first, last, vaddr, read, write)) return iova;
    simulator.unpinNumber(length);
    return -1;
  }

  /**
   * {@link unmap} for the syscall face's hot path, with integers below 2^53: when the range is
   * exactly one area and no fault injection is pending, removes it and returns the bytes unmapped,
   * allocating nothing; otherwise returns -1 having changed nothing (the caller takes {@link unmap}).
   */
  unmapNumbers(id: number, iova: number, length: number): number {
    if (this.simulator.injecting || length <= 0 || iova % PAGE_BYTES !== 0 || length % PAGE_BYTES !== 0) return -1;
    const ioas = this.objects.get(id);
    if (!(ioas instanceof Ioas) || !ioas.areas.removePages(iova / PAGE_BYTES, (iova + length) / PAGE_BYTES - 1)) return -1;
    if (ioas.writablePages.size > 0) ioas.writablePages.delete(BigInt(iova));
    this.simulator.unpinNumber(length);
    if (ioas.dirtyDomains !== 0) ioas.forgetDirty(iova / PAGE_BYTES, (iova + length) / PAGE_BYTES - 1);
    return length;
  }

  /**
   * IOMMU_IOAS_UNMAP: returns the bytes unmapped. In the kernel's order (6.12 ioas.c,
   * iommufd_ioas_unmap(); io_pagetable.c, iopt_unmap_iova(), iopt_unmap_iova_range()): the IOAS
   * (ENOENT); `iova` 0 with `length` U64_MAX unmaps everything (0 bytes is success); `iova` or
   * `length` ULONG_MAX EOVERFLOW; `length` 0 EINVAL; wrapping EOVERFLOW; then the areas in the range
   * in IOVA order, each removed at once, until one sticks out of the range: ENOENT, with the areas
   * before it gone (not atomic). Nothing in the range: ENOENT.
   */
  unmap(id: number, iova: bigint, length: bigint): bigint {
    const ioctl = 'IOMMU_IOAS_UNMAP';
    this.simulator.checkInjected(ioctl);
    const ioas = this.ioas(id, ioctl);
    if (iova === 0n && length === U64_MAX) return this.unmapAll(ioas);
    if (iova >= U64_MAX || length >= U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova or length >= ULONG_MAX');
    if (length === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'length is 0');
    const last = iova + length - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'range wraps');
    let bytes = 0n;
    for (const area of ioas.areas.overlapping(iova, last)) {
      if (area.start < iova || area.last > last) {
        throw new KernelError(ERRNO.ENOENT, ioctl, `${hex(area.start)}-${hex(area.last)} sticks out of ${hex(iova)}-${hex(last)}${bytes > 0n ? ` (${hex(bytes)} bytes before it are unmapped)` : ''}`);
      }
      bytes += this.removeArea(ioas, area);
    }
    if (bytes === 0n) throw new KernelError(ERRNO.ENOENT, ioctl, `nothing is mapped in ${hex(iova)}-${hex(last)}`);
    return bytes;
  }

  /** Takes an area out of its IOAS: its pin, its dirty bits; returns its size. */
  private removeArea(ioas: Ioas, area: PagedMapping): bigint {
    ioas.areas.remove(area);
    ioas.writablePages.delete(area.start);
    if (ioas.dirtyDomains !== 0) ioas.forgetDirty(Number(area.start / PAGE), Number(area.last / PAGE));
    const size = rangeSize(area);
    this.simulator.unpin(size);
    return size;
  }

  /**
   * IOMMU_IOAS_COPY: maps into `dstId` the pages behind `[srcIova, srcIova + length)` of `srcId`;
   * returns the destination IOVA (chosen by the kernel without FIXED_IOVA). In the kernel's order
   * (6.12 ioas.c, iommufd_ioas_copy(); io_pagetable.c, iopt_get_pages(), iopt_map_pages()): an
   * unknown flag EOPNOTSUPP; `length`, `src_iova` or `dst_iova` ULONG_MAX EOVERFLOW; neither
   * READABLE nor WRITEABLE EINVAL; the source IOAS (ENOENT); `length` 0 EINVAL; the source range
   * wrapping EOVERFLOW, or not covered by contiguous areas from its first byte ENOENT (it may start
   * or end inside an area); only then the destination IOAS (ENOENT); the place for the whole length
   * (`placeArea()`: one hole for all of it, chosen from the user address of the first byte);
   * each piece (one per source area) WRITEABLE over pages mapped without it EPERM, or misaligned in
   * its page EINVAL; memory not mapped EFAULT only when the destination has a domain and the pages
   * were never pinned (the source has none). All or nothing: one area per piece, so an unmap of the
   * destination goes by the source's areas.
   */
  copy(dstId: number, srcId: number, flags: number, length: bigint, srcIova: bigint, dstIova: bigint): bigint {
    const ioctl = 'IOMMU_IOAS_COPY';
    this.simulator.checkInjected(ioctl);
    if ((flags & ~MAP_KNOWN) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown flags ${hex(flags)}`);
    if (length >= U64_MAX || srcIova >= U64_MAX || dstIova >= U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'length, src_iova or dst_iova >= ULONG_MAX');
    const read = (flags & IOAS_MAP_FLAGS.READABLE) !== 0;
    const write = (flags & IOAS_MAP_FLAGS.WRITEABLE) !== 0;
    if (!read && !write) throw new KernelError(ERRNO.EINVAL, ioctl, 'neither READABLE nor WRITEABLE');
    const source = this.ioas(srcId, ioctl);
    if (length === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'length is 0');
    const sourceLast = srcIova + length - 1n;
    if (sourceLast > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'src_iova + length - 1 wraps');
    const pieces: { vaddr: bigint; length: bigint; writable: boolean }[] = [];
    let cursor = srcIova;
    for (const area of source.areas.overlapping(srcIova, sourceLast)) {
      if (area.start > cursor) break;
      const last = area.last < sourceLast ? area.last : sourceLast;
      pieces.push({ vaddr: area.vaddr + (cursor - area.start), length: last - cursor + 1n, writable: source.pagesWritable(area) });
      cursor = last + 1n;
      if (last === sourceLast) break;
    }
    if (pieces.length === 0 || cursor <= sourceLast) throw new KernelError(ERRNO.ENOENT, ioctl, `${hex(cursor)} in ${hex(srcIova)}-${hex(sourceLast)} is not mapped: contiguous areas must cover the source`);
    const destination = this.ioas(dstId, ioctl);
    const start = this.placeArea(destination, (flags & IOAS_MAP_FLAGS.FIXED_IOVA) !== 0, dstIova, length, pieces[0]!.vaddr, ioctl);
    this.insertCheck(destination, pieces, write, ioctl);
    if (destination.domains.size > 0 && source.domains.size === 0) {
      for (const piece of pieces) {
        if (!this.simulator.memory.isMapped(piece.vaddr, piece.length)) throw new KernelError(ERRNO.EFAULT, ioctl, `user_va ${hex(piece.vaddr)}+${hex(piece.length)} is not mapped`);
      }
    }
    this.simulator.pin(length, ioctl);
    let iova = start;
    for (const piece of pieces) {
      destination.areas.add({ start: iova, last: iova + piece.length - 1n, vaddr: piece.vaddr, read, write });
      if (!write && piece.writable) destination.writablePages.add(iova);
      iova += piece.length;
    }
    return start;
  }

  /**
   * IOMMU_OPTION: returns `val64` as the kernel writes it back (the value read, or the one set). In
   * the kernel's order (6.12 main.c, iommufd_option(); ioas.c, iommufd_option_rlimit_mode(),
   * iommufd_ioas_option()): `__reserved` EOPNOTSUPP; an unknown option EOPNOTSUPP.
   * RLIMIT_MODE (0): `object_id` not 0 EOPNOTSUPP; GET answers 1 after SET 1, else 0; SET needs
   * CAP_SYS_RESOURCE (EPERM: the simulated process has it unless `memlockLimit` models an
   * unprivileged one), then any object in the context EBUSY, a value other than 0 or 1 EINVAL;
   * another op EOPNOTSUPP. HUGE_PAGES (1): the IOAS `object_id` first (ENOENT, whatever the op);
   * GET answers 1 unless disabled; SET 0 (`disableLargePages()`), SET 1 enables, another value
   * EINVAL; another op EOPNOTSUPP.
   */
  option(optionId: number, operation: number, reserved: number, objectId: number, value: bigint): bigint {
    const ioctl = 'IOMMU_OPTION';
    this.simulator.checkInjected(ioctl);
    if (reserved !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, '__reserved must be 0');
    if (optionId === OPTION.RLIMIT_MODE) {
      if (objectId !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, 'RLIMIT_MODE takes object_id 0');
      if (operation === OPTION.GET) return this.accountMm ? 1n : 0n;
      if (operation !== OPTION.SET) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown op ${operation}`);
      if (this.simulator.memlockLimit !== undefined) throw new KernelError(ERRNO.EPERM, ioctl, 'RLIMIT_MODE needs CAP_SYS_RESOURCE, which a process under RLIMIT_MEMLOCK is modelled without');
      if (this.objects.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, 'the context has objects');
      if (value > 1n) throw new KernelError(ERRNO.EINVAL, ioctl, `RLIMIT_MODE ${value} is neither 0 nor 1`);
      this.accountMm = value === 1n;
      return value;
    }
    if (optionId !== OPTION.HUGE_PAGES) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown option ${optionId}`);
    const ioas = this.ioas(objectId, ioctl);
    if (operation === OPTION.GET) return ioas.hugePages ? 1n : 0n;
    if (operation !== OPTION.SET) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown op ${operation}`);
    if (value === 0n) this.disableLargePages(ioas, ioctl);
    else if (value === 1n) ioas.hugePages = true;
    else throw new KernelError(ERRNO.EINVAL, ioctl, `HUGE_PAGES ${value} is neither 0 nor 1`);
    return value;
  }

  /**
   * HUGE_PAGES SET 0 (6.12 io_pagetable.c, iopt_disable_large_pages()): nothing when disabled
   * already; a domain and an area both present EINVAL; with no domain the alignment rises to
   * PAGE_SIZE, so every area must be page-aligned in IOVA, length and user memory, else EADDRINUSE
   * (iopt_calculate_iova_alignment(), iopt_check_iova_alignment()), and nothing changes.
   */
  private disableLargePages(ioas: Ioas, ioctl: string): void {
    if (!ioas.hugePages) return;
    if (ioas.domains.size > 0 && ioas.areas.count > 0) throw new KernelError(ERRNO.EINVAL, ioctl, 'the IOAS has a domain with pages mapped in it');
    if (ioas.alignment < PAGE) {
      const unaligned = ioas.areas.all().find((area) => area.start % PAGE !== 0n || (area.last + 1n) % PAGE !== 0n || area.vaddr % PAGE !== 0n);
      if (unaligned !== undefined) throw new KernelError(ERRNO.EADDRINUSE, ioctl, `area ${hex(unaligned.start)}-${hex(unaligned.last)} (user_va ${hex(unaligned.vaddr)}) is not page-aligned`);
    }
    ioas.hugePages = false;
  }

  /**
   * IOMMU_VFIO_IOAS (6.12 vfio_compat.c, iommufd_vfio_ioas()): `__reserved` EOPNOTSUPP; GET answers
   * the compat IOAS's id (none: ENODEV); SET makes `ioasId` the compat IOAS (ENOENT when it is not
   * an IOAS; no reference is held: destroying it clears it); CLEAR forgets it; another op
   * EOPNOTSUPP. Returns the id GET writes back, else undefined (nothing is written back).
   */
  vfioIoas(operation: number, reserved: number, ioasId: number): number | undefined {
    const ioctl = 'IOMMU_VFIO_IOAS';
    this.simulator.checkInjected(ioctl);
    if (reserved !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, '__reserved must be 0');
    switch (operation) {
      case VFIO_IOAS_OP.GET:
        return this.compatIoas(ioctl).id;
      case VFIO_IOAS_OP.SET:
        this.compat = this.ioas(ioasId, ioctl);
        return undefined;
      case VFIO_IOAS_OP.CLEAR:
        this.compat = undefined;
        return undefined;
      default:
        throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown op ${operation}`);
    }
  }

  /** get_compat_ioas() (6.12 vfio_compat.c): the compat IOAS, or ENODEV. */
  private compatIoas(ioctl: string): Ioas {
    if (this.compat === undefined) throw new KernelError(ERRNO.ENODEV, ioctl, 'no compat IOAS (IOMMU_VFIO_IOAS SET, or a group given this iommufd as its container)');
    return this.compat;
  }

  /**
   * VFIO_CHECK_EXTENSION on `/dev/iommu` (6.12 vfio_compat.c, iommufd_vfio_check_extension()):
   * TYPE1, TYPE1v2 and UNMAP_ALL 1; NOIOMMU 0 (no CONFIG_VFIO_NOIOMMU); DMA_CC_IOMMU ENODEV without a
   * compat IOAS, else 1 unless a domain on it does not enforce cache coherency (VT-d without
   * ECAP.SC, SMMUv3: every preset); anything else 0.
   */
  compatCheckExtension(extension: number): number {
    const ioctl = 'VFIO_CHECK_EXTENSION';
    this.simulator.checkInjected(ioctl);
    if (extension === COMPAT_EXTENSION.TYPE1 || extension === COMPAT_EXTENSION.TYPE1v2 || extension === COMPAT_EXTENSION.UNMAP_ALL) return 1;
    if (extension !== COMPAT_EXTENSION.DMA_CC) return 0;
    const ioas = this.compatIoas(ioctl);
    const ecap = this.simulator.platform.vtdRegisters?.ecap;
    const enforces = ecap !== undefined && (ecap & 0x80n) !== 0n;
    return ioas.domains.size === 0 || enforces ? 1 : 0;
  }

  /**
   * VFIO_IOMMU_GET_INFO on `/dev/iommu` (6.12 vfio_compat.c, iommufd_vfio_iommu_get_info()), after
   * the handler's argsz check: no compat IOAS ENODEV; else `iova_pgsizes` (iommufd_get_pagesizes():
   * the domains' page sizes ANDed, all of them with no domain, below PAGE_SIZE folded into it, at
   * least the IOAS's alignment) and the usable ranges (the holes of the reserved ranges only, not
   * the allow-list) for the DMA_AVAIL and IOVA_RANGE capabilities.
   * @internal
   */
  compatInfo(): { pageSizes: bigint; ranges: IovaRange[] } {
    const ioctl = 'VFIO_IOMMU_GET_INFO';
    this.simulator.checkInjected(ioctl);
    const ioas = this.compatIoas(ioctl);
    let pageSizes = ioas.domains.size > 0 ? this.simulator.platform.ioPageSizes : U64_MAX;
    if ((pageSizes & (PAGE - 1n)) !== 0n) pageSizes = (pageSizes & ~(PAGE - 1n) & U64_MAX) | PAGE;
    if (pageSizes < ioas.alignment) pageSizes = ioas.alignment;
    return { pageSizes, ranges: ioas.ranges().ranges };
  }

  /**
   * VFIO_SET_IOMMU on `/dev/iommu` (6.12 vfio_compat.c, iommufd_vfio_set_iommu()): a type other
   * than TYPE1 or TYPE1v2 EINVAL; no compat IOAS ENODEV; TYPE1 disables large pages on it (as
   * HUGE_PAGES 0, with its EINVAL and EADDRINUSE), so that unmaps may cut areas.
   */
  compatSetIommu(type: number): void {
    const ioctl = 'VFIO_SET_IOMMU';
    this.simulator.checkInjected(ioctl);
    if (type !== COMPAT_EXTENSION.TYPE1 && type !== COMPAT_EXTENSION.TYPE1v2) throw new KernelError(ERRNO.EINVAL, ioctl, `type ${type} is neither TYPE1 nor TYPE1v2`);
    const ioas = this.compatIoas(ioctl);
    if (type === COMPAT_EXTENSION.TYPE1) this.disableLargePages(ioas, ioctl);
  }

  /**
   * VFIO_IOMMU_MAP_DMA on `/dev/iommu` after the handler's argsz and flags checks (6.12
   * vfio_compat.c, iommufd_vfio_map_dma()): no compat IOAS ENODEV; then a map at `iova` exactly as
   * IOMMU_IOAS_MAP with FIXED_IOVA (`mapArea()`), with no READ or WRITE allowed.
   */
  compatMap(read: boolean, write: boolean, vaddr: bigint, iova: bigint, size: bigint): void {
    const ioctl = 'VFIO_IOMMU_MAP_DMA';
    this.simulator.checkInjected(ioctl);
    this.mapArea(this.compatIoas(ioctl), true, iova, vaddr, size, read, write, ioctl);
  }

  /**
   * VFIO_IOMMU_UNMAP_DMA on `/dev/iommu` after the handler's argsz and flags checks (6.12
   * vfio_compat.c, iommufd_vfio_unmap_dma()): no compat IOAS ENODEV; ALL with an iova or size EINVAL,
   * else everything unmapped; otherwise, with large pages disabled (TYPE1), the areas are first cut
   * at `iova + size - 1` and `iova - 1` (iopt_cut_iova(): EINVAL at a cut off the alignment), then
   * the range is unmapped as IOMMU_IOAS_UNMAP does, except that nothing there is success. Returns
   * the bytes unmapped, which the kernel writes back into `size` whatever iopt_unmap_iova() answered,
   * with its error, if any (size 0, wrapping, an area cut); the errors before it are thrown (nothing
   * is written back).
   * @internal
   */
  compatUnmap(all: boolean, iova: bigint, size: bigint): { bytes: bigint; error: KernelError | undefined } {
    const ioctl = 'VFIO_IOMMU_UNMAP_DMA';
    this.simulator.checkInjected(ioctl);
    const ioas = this.compatIoas(ioctl);
    if (all) {
      if (iova !== 0n || size !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'VFIO_DMA_UNMAP_FLAG_ALL takes iova and size 0');
      return { bytes: this.unmapAll(ioas), error: undefined };
    }
    if (!ioas.hugePages) {
      const cuts = [(iova + size - 1n) & U64_MAX, ...(iova !== 0n ? [iova - 1n] : [])];
      for (const cut of cuts) this.splitArea(ioas, cut, ioctl);
    }
    // iopt_unmap_iova()'s errors come back with `size` written back (0).
    if (size === 0n) return { bytes: 0n, error: new KernelError(ERRNO.EINVAL, ioctl, 'size is 0') };
    const last = iova + size - 1n;
    if (last > U64_MAX) return { bytes: 0n, error: new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova + size - 1 wraps') };
    let bytes = 0n;
    for (const area of ioas.areas.overlapping(iova, last)) {
      if (area.start < iova || area.last > last) return { bytes, error: new KernelError(ERRNO.ENOENT, ioctl, `${hex(area.start)}-${hex(area.last)} sticks out of ${hex(iova)}-${hex(last)}`) };
      bytes += this.removeArea(ioas, area);
    }
    return { bytes, error: undefined };
  }

  /**
   * iopt_area_split() (6.12 io_pagetable.c): the area holding byte `iova` becomes two, the first
   * ending at `iova`; nothing when `iova` is its first or last byte or no area holds it; EINVAL when
   * `iova + 1` or its place in the user memory is off the IOAS's alignment.
   */
  private splitArea(ioas: Ioas, iova: bigint, ioctl: string): void {
    const area = ioas.areas.find(iova);
    if (area === undefined || iova === area.start || iova === area.last) return;
    const alignment = ioas.alignment;
    const newStart = iova + 1n;
    if (newStart % alignment !== 0n || (area.vaddr + (newStart - area.start)) % alignment !== 0n) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `cannot cut area ${hex(area.start)}-${hex(area.last)} after ${hex(iova)}: off the alignment ${hex(alignment)}`);
    }
    const writablePages = ioas.writablePages.delete(area.start);
    ioas.areas.remove(area);
    ioas.areas.add({ ...area, last: iova });
    ioas.areas.add({ ...area, start: newStart, vaddr: area.vaddr + (newStart - area.start) });
    if (writablePages) {
      ioas.writablePages.add(area.start);
      ioas.writablePages.add(newStart);
    }
  }

  /**
   * A VFIO group takes a reference on the context (6.12 drivers/vfio/group.c,
   * vfio_group_ioctl_set_container(): iommufd_ctx_from_file()), and creates the compat IOAS when
   * there is none (drivers/iommu/iommufd/vfio_compat.c, iommufd_vfio_compat_ioas_create(): a new
   * IOAS at the lowest free id becomes `ictx->vfio_ioas`; an existing one is kept).
   */
  holdForGroup(): void {
    if (this.compat === undefined) {
      const id = this.freeId();
      const ioas = new Ioas(id, this.simulator);
      this.objects.set(id, ioas);
      this.compat = ioas;
    }
    this.groupHolds++;
  }

  /** The group drops its reference (vfio_group_ioctl_unset_container(), vfio_group_fops_release(): iommufd_ctx_put()). */
  dropForGroup(): void {
    this.groupHolds--;
    if (!this.fileOpen && !this.released && !this.hasBindings() && this.groupHolds === 0) this.close();
  }

  /**
   * A device opened through a group whose container is this context (6.12 drivers/vfio/group.c,
   * vfio_df_group_open(): vfio_df_open() binds it, drivers/vfio/iommufd.c vfio_df_iommufd_bind(),
   * then vfio_iommufd_compat_attach_ioas() attaches it to the compat IOAS: none ENODEV
   * (vfio_compat.c, iommufd_vfio_compat_ioas_get_id()), and a failed attach unbinds it again).
   * The group path takes no vfio_device_block_group(). Returns the device id.
   */
  bindFromGroup(device: SimDevice): number {
    const id = this.bind(device, true);
    try {
      if (this.compat === undefined) throw new KernelError(ERRNO.ENODEV, 'VFIO_GROUP_GET_DEVICE_FD', 'no compat IOAS (it was destroyed)');
      this.attach(id, this.compat.id);
    } catch (error) {
      this.unbind(id);
      throw error;
    }
    return id;
  }

  /** VFIO_DEVICE_BIND_IOMMUFD: returns the device id. */
  bind(device: SimDevice, viaGroup = false): number {
    const ioctl = 'VFIO_DEVICE_BIND_IOMMUFD';
    this.simulator.checkInjected(ioctl);
    // 6.12 drivers/vfio/device_cdev.c, vfio_df_ioctl_bind_iommufd(): the group is blocked first
    // (vfio_device_block_group(): EBUSY while /dev/vfio/N is open), then the device is opened,
    // which a cdev may do only once, whichever iommufd asks (vfio_main.c, vfio_df_open(): EINVAL;
    // docs/kernel-rules.md#a-device-binds-once).
    const group = device.group === undefined ? undefined : this.simulator.group(device.group);
    if (!viaGroup && group?.opened) throw new KernelError(ERRNO.EBUSY, ioctl, `group ${group.id} is open through /dev/vfio/${group.id}`);
    if (device.boundTo !== undefined) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `${device.address} is already bound to ${device.boundTo === this ? 'this' : 'another'} iommufd (a device cdev opens once)`);
    }
    // The first open binds to iommufd (6.12 drivers/iommu/iommufd/device.c, iommufd_device_bind()):
    // MSI isolation first, then the group's DMA ownership, which another iommufd or a kernel
    // driver may hold (drivers/iommu/iommu.c, iommu_device_claim_dma_owner(): EPERM).
    if (!this.simulator.platform.interruptRemapping && !this.simulator.allowUnsafeInterrupts) {
      throw new KernelError(ERRNO.EPERM, ioctl, 'no MSI isolation; set iommufd.allow_unsafe_interrupts=1');
    }
    if (group !== undefined && !group.viable) throw new KernelError(ERRNO.EPERM, ioctl, `another driver owns DMA in group ${group.id}`);
    if (group !== undefined && group.devices.some((member) => member.boundTo !== undefined && member.boundTo !== this)) {
      throw new KernelError(ERRNO.EPERM, ioctl, `another iommufd owns DMA in group ${group.id}`);
    }
    // The first claim of the group's DMA puts it in the blocking domain, which a device needing a
    // direct mapping refuses: EINVAL (6.12 drivers/iommu/iommu.c, __iommu_device_set_domain();
    // docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned).
    const claimed = group !== undefined && group.devices.some((member) => member.boundTo === this);
    if (!claimed && (group?.requiresDirect ?? device.requiresDirect)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `${device.address}'s group has a device with a direct (RMRR) region: it cannot leave its identity mapping`);
    }
    const id = this.freeId();
    this.objects.set(id, { device, domain: undefined });
    device.boundTo = this;
    return id;
  }

  /**
   * Closing the device fd unbinds it. A release, not an ioctl: it cannot fail and no injected fault
   * applies (6.12 drivers/vfio/device_cdev.c, vfio_df_unbind_iommufd(), from the file's release).
   */
  unbind(deviceId: number): void {
    const binding = this.objects.get(deviceId);
    if (binding === undefined || binding instanceof Ioas || binding instanceof Hwpt) return;
    this.release(binding);
    this.objects.delete(deviceId);
    if (binding.device.boundTo === this) binding.device.boundTo = undefined;
    // The last device gone from a context whose fd is closed releases it (iommufd_fops_release()).
    if (!this.fileOpen && !this.released && !this.hasBindings() && this.groupHolds === 0) this.close();
  }

  /**
   * VFIO_DEVICE_ATTACH_IOMMUFD_PT (an attach while attached is an atomic replace). `ptId` names an
   * IOAS (the device goes into an automatic domain of it that its IOMMU takes, or a new one) or a
   * domain; the domain's id is what the kernel writes back into `pt_id`, and what this returns. Any
   * other object is EINVAL, an unknown id ENOENT (6.12 drivers/iommu/iommufd/device.c,
   * iommufd_device_change_pt()). The device's reserved regions, and a new domain's outside, must
   * hold no area and cut no allowed range, and the first domain needs every area page-aligned in IOVA,
   * length and user_va: EADDRINUSE (io_pagetable.c, iopt_table_enforce_dev_resv_regions(),
   * iopt_table_add_domain() and iopt_check_iova_alignment();
   * docs/kernel-rules.md#attaching-to-a-live-container). Nothing changes on failure.
   */
  attach(deviceId: number, ptId: number): number {
    const ioctl = 'VFIO_DEVICE_ATTACH_IOMMUFD_PT';
    this.simulator.checkInjected(ioctl);
    const binding = this.binding(deviceId, ioctl);
    const target = this.objects.get(ptId);
    if (target === undefined) throw new KernelError(ERRNO.ENOENT, ioctl, `no object ${ptId}`);
    if (!(target instanceof Ioas) && !(target instanceof Hwpt)) throw new KernelError(ERRNO.EINVAL, ioctl, `object ${ptId} is a device, not an IOAS or a page table`);
    const device = binding.device;
    const ioas = target instanceof Ioas ? target : target.ioas;
    // iommufd_device_auto_get_domain(): the IOAS's automatic domains in turn; one of another IOMMU
    // answers EINVAL and is skipped.
    // Automatic selection never picks a HWPT allocated by IOMMU_HWPT_ALLOC.
    let domain = target instanceof Hwpt ? target : [...this.objects.values()].find((object): object is Hwpt => object instanceof Hwpt && object.auto && object.ioas === ioas && object.takes(device));
    if (domain !== undefined && domain === binding.domain) return domain.id;
    const reserveRegions = () => this.enforceReserved(ioas, device.reserved.filter((region) => region.kind !== 'direct-relaxable'), ioctl, `${device.address}'s reserved region`);
    // A device already attached is replaced (iommufd_device_replace()): a new automatic domain is
    // added to the IOAS first and its reserved regions come after (iommufd_hwpt_paging_alloc() with
    // immediate_attach false, then iommufd_group_do_replace_reserved_iova()); a first attach
    // reserves them first (iommufd_hw_pagetable_attach() before iopt_table_add_domain(),
    // hw_pagetable.c). The order decides between EADDRINUSE and EFAULT.
    const replacing = binding.domain !== undefined;
    if (domain !== undefined || !replacing) reserveRegions();
    if (domain !== undefined && !domain.takes(device)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `domain ${domain.id} belongs to another IOMMU than ${device.address}'s`);
    }
    if (domain === undefined) {
      // iopt_table_add_domain(): the first domain raises the IOAS's alignment from 1 byte to its
      // page (iopt_check_iova_alignment()), so every area must start, end and sit in its memory on
      // page boundaries; then what it cannot translate is reserved.
      this.checkAlignmentForDomain(ioas, ioctl);
      this.enforceReserved(ioas, outsideAperture(device.aperture), ioctl, `the IOVA ${device.address}'s IOMMU cannot translate,`);
      this.pinForFirstDomain(ioas, ioctl);
      if (replacing) reserveRegions();
      domain = new Hwpt(this.freeId(), ioas, device.aperture, true, false, false);
      this.objects.set(domain.id, domain);
      ioas.domains.add(domain);
    }
    this.release(binding);
    binding.domain = domain;
    domain.devices.add(device);
    ioas.devices.add(device);
    ioas.devicesChanged();
    device.domain = domain;
    return domain.id;
  }

  /**
   * VFIO_DEVICE_DETACH_IOMMUFD_PT: the device then blocks all DMA; its reserved regions are released,
   * and its domain, when it was the last device in it, with what the domain reserved
   * (docs/kernel-rules.md#detaching-from-a-live-container).
   */
  detach(deviceId: number): void {
    const ioctl = 'VFIO_DEVICE_DETACH_IOMMUFD_PT';
    this.simulator.checkInjected(ioctl);
    this.release(this.binding(deviceId, ioctl));
  }

  /**
   * A domain joining an IOAS raises its alignment to the domain's page (4 KiB) unless it is there
   * already (a domain in it, or HUGE_PAGES 0): every area must then start, end and sit in its user
   * memory on page boundaries, else EADDRINUSE (6.12 io_pagetable.c, iopt_table_add_domain(),
   * iopt_check_iova_alignment()).
   */
  private checkAlignmentForDomain(ioas: Ioas, ioctl: string): void {
    if (ioas.alignment >= PAGE) return;
    const unaligned = ioas.areas.all().find((area) => area.start % PAGE !== 0n || (area.last + 1n) % PAGE !== 0n || area.vaddr % PAGE !== 0n);
    if (unaligned !== undefined) {
      throw new KernelError(ERRNO.EADDRINUSE, ioctl, `area ${hex(unaligned.start)}-${hex(unaligned.last)} (user_va ${hex(unaligned.vaddr)}) is not page-aligned, as a domain needs`);
    }
  }

  /**
   * The first domain of an IOAS pins the memory of every area, mapped lazily until then: memory not
   * mapped EFAULT, and the domain does not join (6.12 io_pagetable.c, iopt_table_add_domain(),
   * iopt_fill_domain(); a later domain copies from the first and touches no user memory).
   */
  private pinForFirstDomain(ioas: Ioas, ioctl: string): void {
    if (ioas.domains.size > 0) return;
    for (const area of ioas.areas.all()) {
      if (!this.simulator.memory.isMapped(area.vaddr, rangeSize(area))) {
        throw new KernelError(ERRNO.EFAULT, ioctl, `the memory of area ${hex(area.start)}-${hex(area.last)} (user_va ${hex(area.vaddr)}) is not mapped, and a domain pins it`);
      }
    }
  }

  /** iopt_reserve_iova() for each of `ranges`: EADDRINUSE when an area or an allowed range is there. */
  private enforceReserved(ioas: Ioas, ranges: readonly IovaRange[], ioctl: string, what: string): void {
    for (const range of ranges) {
      if (ioas.areas.overlaps(range.start, range.last)) throw new KernelError(ERRNO.EADDRINUSE, ioctl, `a mapping sits in ${what} ${hex(range.start)}-${hex(range.last)}`);
      if (ioas.allowed.some((allowed) => rangesOverlap(allowed, range))) throw new KernelError(ERRNO.EADDRINUSE, ioctl, `${what} ${hex(range.start)}-${hex(range.last)} cuts an allowed range`);
    }
  }

  /** Takes a bound device out of its domain (destroyed when it was the last): DMA is then blocked. */
  private release(binding: Binding): void {
    const domain = binding.domain;
    if (domain === undefined) return;
    domain.devices.delete(binding.device);
    domain.ioas.devices.delete(binding.device);
    // An automatic domain goes with its last device; an allocated HWPT stays until IOMMU_DESTROY.
    if (domain.auto && domain.devices.size === 0) this.removeHwpt(domain);
    domain.ioas.devicesChanged();
    binding.domain = undefined;
    binding.device.domain = undefined;
  }

  /** Takes a HWPT out of the context and its IOAS's io_pagetable (iopt_table_remove_domain()). */
  private removeHwpt(hwpt: Hwpt): void {
    this.objects.delete(hwpt.id);
    if (hwpt.ioas.domains.delete(hwpt) && hwpt.dirty !== undefined) hwpt.ioas.dirtyDomains--;
    hwpt.ioas.devicesChanged();
  }

  /** The paging HWPT `id`, or ENOENT (iommufd_get_hwpt_paging()). */
  hwpt(id: number, ioctl: string): Hwpt {
    const object = this.objects.get(id);
    if (!(object instanceof Hwpt)) throw new KernelError(ERRNO.ENOENT, ioctl, `no HWPT ${id}`);
    return object;
  }

  /** The HWPT a bound device is attached to, if any. */
  attachedTo(deviceId: number): Hwpt | undefined {
    const object = this.objects.get(deviceId);
    return object === undefined || object instanceof Ioas || object instanceof Hwpt ? undefined : object.domain;
  }

  /** `device_iommu_capable(dev, IOMMU_CAP_DIRTY_TRACKING)`: VT-d ssads_supported(), SMMUv3 arm_smmu_dbm_capable(). */
  private dirtyCapable(): boolean {
    return this.simulator.hardwareDirty;
  }

  /**
   * IOMMU_GET_HW_INFO (6.12 drivers/iommu/iommufd/device.c, iommufd_get_hw_info()): `flags` or a
   * `__reserved` byte not 0 EOPNOTSUPP, an unknown device ENOENT. VT-d answers
   * IOMMU_HW_INFO_TYPE_INTEL_VTD with `struct iommu_hw_info_vtd` (flags
   * IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 always, CAP_REG, ECAP_REG: intel_iommu_hw_info()); the
   * 6.12 SMMUv3 driver has no hw_info: IOMMU_HW_INFO_TYPE_NONE, no data. `out_capabilities` has
   * IOMMU_HW_CAP_DIRTY_TRACKING exactly when the IOMMU can track dirty pages.
   */
  hwInfo(deviceId: number, flags: number, reservedBytes: number): SimHwInfo {
    const ioctl = 'IOMMU_GET_HW_INFO';
    this.simulator.checkInjected(ioctl);
    if (flags !== 0 || reservedBytes !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, 'flags and __reserved must be 0');
    this.binding(deviceId, ioctl);
    const capabilities = this.dirtyCapable() ? HW_CAP_DIRTY_TRACKING : 0n;
    const platform = this.simulator.platform;
    if (platform.name !== 'x86-vtd') return { type: 0, capabilities };
    const registers = platform.vtdRegisters ?? { cap: 0n, ecap: 0n };
    // hardwareDirty models a VT-d with second-stage A/D: ECAP.SLADS set.
    const ecap = this.simulator.hardwareDirty ? registers.ecap | ECAP_SLADS : registers.ecap;
    return { type: 1, vtd: { flags: 1, cap: registers.cap, ecap }, capabilities };
  }

  /**
   * IOMMU_HWPT_ALLOC (6.12 hw_pagetable.c, iommufd_hwpt_alloc(), iommufd_hwpt_paging_alloc(), and
   * the drivers' domain_alloc_user()), in order: `__reserved` not 0 EOPNOTSUPP; `data_type` NONE
   * with a `data_len`, or another type without one, EINVAL; an unknown device ENOENT; an unknown
   * `pt_id` EINVAL. On an IOAS: a flag other than NEST_PARENT or DIRTY_TRACKING EOPNOTSUPP
   * (FAULT_ID_VALID included), DIRTY_TRACKING on an IOMMU without dirty bits EOPNOTSUPP, then the
   * driver: NEST_PARENT EOPNOTSUPP (VT-d without ECAP.NEST, as QEMU's; the 6.12 SMMUv3 driver takes
   * DIRTY_TRACKING only), driver data EOPNOTSUPP, DIRTY_TRACKING on a stage-2-only SMMUv3
   * EOPNOTSUPP; then the domain joins the io_pagetable as a first automatic domain does (every
   * area page-aligned, nothing outside its aperture: EADDRINUSE). On a paging HWPT (a nested
   * domain): a flag other than FAULT_ID_VALID, or no data, EOPNOTSUPP, else EINVAL (no HWPT here
   * is a nesting parent). Anything else EINVAL. Returns `out_hwpt_id`.
   */
  allocateHwpt(deviceId: number, ptId: number, flags: number, dataType: number, dataLength: number, reserved: number): number {
    const ioctl = 'IOMMU_HWPT_ALLOC';
    this.simulator.checkInjected(ioctl);
    if (reserved !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, '__reserved must be 0');
    if ((dataType === 0) !== (dataLength === 0)) throw new KernelError(ERRNO.EINVAL, ioctl, `data_type ${dataType} with data_len ${dataLength}`);
    const device = this.binding(deviceId, ioctl).device;
    const target = this.objects.get(ptId);
    if (target === undefined) throw new KernelError(ERRNO.EINVAL, ioctl, `no object ${ptId}`);
    const { NEST_PARENT, DIRTY_TRACKING, FAULT_ID_VALID } = HWPT_ALLOC_FLAGS;
    if (target instanceof Hwpt) {
      if ((flags & ~FAULT_ID_VALID) !== 0 || dataLength === 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, 'a nested HWPT takes driver data and FAULT_ID_VALID only');
      throw new KernelError(ERRNO.EINVAL, ioctl, `HWPT ${ptId} is not a nesting parent`);
    }
    if (!(target instanceof Ioas)) throw new KernelError(ERRNO.EINVAL, ioctl, `object ${ptId} is neither an IOAS nor a HWPT`);
    if ((flags & ~(NEST_PARENT | DIRTY_TRACKING)) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `flags ${hex(flags)} are not for a paging HWPT`);
    const dirty = (flags & DIRTY_TRACKING) !== 0;
    if (dirty && !this.dirtyCapable()) {
      throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `${device.address}'s IOMMU has no hardware dirty tracking (IOMMU_CAP_DIRTY_TRACKING)`);
    }
    if ((flags & NEST_PARENT) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, "the IOMMU driver cannot make a nesting parent");
    if (dataLength !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, 'the IOMMU driver takes no data for a paging domain');
    const platform = this.simulator.platform;
    const stage2Only = platform.name === 'arm-smmuv3' && !(device.aperture.start === platform.aperture.start && device.aperture.last === platform.aperture.last);
    if (dirty && stage2Only) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `${device.address}'s SMMUv3 translates stage 2 only, which tracks no dirty state (arm_smmu_domain_finalise())`);
    const ioas = target;
    this.checkAlignmentForDomain(ioas, ioctl);
    this.enforceReserved(ioas, outsideAperture(device.aperture), ioctl, `the IOVA ${device.address}'s IOMMU cannot translate,`);
    this.pinForFirstDomain(ioas, ioctl);
    const hwpt = new Hwpt(this.freeId(), ioas, device.aperture, false, dirty, platform.name === 'arm-smmuv3');
    this.objects.set(hwpt.id, hwpt);
    ioas.domains.add(hwpt);
    if (dirty) ioas.dirtyDomains++;
    ioas.devicesChanged();
    return hwpt.id;
  }

  /**
   * IOMMU_HWPT_INVALIDATE (6.12 hw_pagetable.c, iommufd_hwpt_invalidate()): `__reserved` EOPNOTSUPP;
   * entries asked for with no `data_uptr`, an `entry_len` of 0 or above PAGE_SIZE, or more than
   * 2^19 of them EINVAL; then `hwpt_id` must be a nested HWPT, which no simulated IOMMU makes
   * (IOMMU_HWPT_ALLOC refuses NEST_PARENT): ENOENT. The caller writes `entry_num` 0 back whatever
   * the answer.
   */
  invalidateHwpt(hwptId: number, reserved: number, dataUptr: bigint, entryLength: number, entryCount: number): never {
    const ioctl = 'IOMMU_HWPT_INVALIDATE';
    this.simulator.checkInjected(ioctl);
    if (reserved !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, '__reserved must be 0');
    if (entryCount !== 0 && (dataUptr === 0n || entryLength === 0 || entryLength > PAGE_BYTES || entryCount > 1 << 19)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `${entryCount} entries of ${entryLength} bytes at ${hex(dataUptr)}`);
    }
    throw new KernelError(ERRNO.ENOENT, ioctl, `object ${hwptId} is not a nested HWPT`);
  }

  /**
   * IOMMU_HWPT_SET_DIRTY_TRACKING (6.12 hw_pagetable.c, iommufd_hwpt_set_dirty_tracking();
   * io_pagetable.c, iopt_set_dirty_tracking()): a flag other than ENABLE EOPNOTSUPP; not a paging
   * HWPT ENOENT; a HWPT without dirty_ops EOPNOTSUPP. Enabling first clears every dirty bit
   * (iopt_clear_dirty_data(): a clean snapshot), even when tracking is on already.
   */
  setDirtyTracking(hwptId: number, flags: number): void {
    const ioctl = 'IOMMU_HWPT_SET_DIRTY_TRACKING';
    this.simulator.checkInjected(ioctl);
    if ((flags & ~HWPT_DIRTY_TRACKING_ENABLE) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown flags ${hex(flags)}`);
    const hwpt = this.hwpt(hwptId, ioctl);
    if (hwpt.dirty === undefined) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `HWPT ${hwptId} was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING`);
    const enable = (flags & HWPT_DIRTY_TRACKING_ENABLE) !== 0;
    if (enable) hwpt.dirty.clearAll();
    hwpt.tracking = enable;
  }

  /**
   * IOMMU_HWPT_GET_DIRTY_BITMAP (6.12 hw_pagetable.c, iommufd_hwpt_get_dirty_bitmap();
   * io_pagetable.c, iommufd_check_iova_range(), iopt_read_and_clear_dirty_data(),
   * iommu_read_and_clear_dirty()), in order: a flag other than NO_CLEAR or `__reserved` not 0
   * EOPNOTSUPP; not a paging HWPT ENOENT; `length` 0 EINVAL; `iova + length - 1` wrapping
   * EOVERFLOW; iova or end not aligned to the io_pagetable's alignment (its domains' page) EINVAL;
   * `page_size` 0 EINVAL; iova or end not aligned to `page_size` EINVAL; no dirty_ops EOPNOTSUPP;
   * VT-d with tracking disabled EINVAL at the first area (intel_iommu_read_and_clear_dirty()); the
   * range not wholly covered by contiguous areas EINVAL after the areas before the hole are read
   * (gaps are refused, a range may start or end inside an area). Each dirty IO page read sets its
   * bits, ORed into the bitmap (bits already set stay; nothing is cleared in it):
   * bit `(page - iova) >> __ffs(page_size)` up to its last byte's, so a bit at a large page size
   * stands for any dirty IO page inside it, and several bits for one page at a size below 4 KiB.
   * Without NO_CLEAR the dirty bits read are cleared. The bitmap is pinned only when a bit is to be
   * set (iova_bitmap.c, iova_bitmap_set()): bits whose words are not in the process's memory are
   * dropped with no error, and cleared all the same (docs/kernel-rules.md#reading-an-iommufd-dirty-bitmap).
   */
  dirtyBitmap(hwptId: number, flags: number, reserved: number, iova: bigint, length: bigint, pageSize: bigint, bitmap: () => UserBitmap): void {
    const ioctl = 'IOMMU_HWPT_GET_DIRTY_BITMAP';
    this.simulator.checkInjected(ioctl);
    if ((flags & ~HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0 || reserved !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown flags ${hex(flags)} or __reserved not 0`);
    const hwpt = this.hwpt(hwptId, ioctl);
    if (length === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'length is 0');
    const last = iova + length - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova + length - 1 wraps');
    const end = (last + 1n) & U64_MAX;
    const alignment = hwpt.ioas.ranges().alignment;
    if ((iova & (alignment - 1n)) !== 0n || (end & (alignment - 1n)) !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} or length ${hex(length)} not aligned to ${hex(alignment)}`);
    if (pageSize === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'page_size is 0');
    if ((iova & (pageSize - 1n)) !== 0n || (end & (pageSize - 1n)) !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova ${hex(iova)} or length ${hex(length)} not aligned to page_size ${hex(pageSize)}`);
    const dirty = hwpt.dirty;
    if (dirty === undefined) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `HWPT ${hwptId} was not allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING`);
    const pgshift = lowestBit(pageSize);
    const user = bitmap();
    // __iommu_read_and_clear_dirty(): the contiguous areas from `iova`, each read (and cleared)
    // in turn; a hole is EINVAL only once the areas before it are read, so their bits are in the
    // bitmap and, without NO_CLEAR, gone from the page table.
    let cursor = iova;
    for (const area of hwpt.ioas.areas.overlapping(iova, last)) {
      if (area.start > cursor) break;
      // intel_iommu_read_and_clear_dirty(), at the first area.
      if (this.simulator.platform.name === 'x86-vtd' && !hwpt.tracking) throw new KernelError(ERRNO.EINVAL, ioctl, 'dirty tracking is disabled on this VT-d domain');
      const pieceLast = area.last < last ? area.last : last;
      const firstPage = Number(cursor / PAGE);
      const lastPage = Number(pieceLast / PAGE);
      dirty.forEachRun(firstPage, lastPage, (from, to) => {
        user.setBitsWherePinned(Number((BigInt(from) * PAGE - iova) >> pgshift), Number((BigInt(to + 1) * PAGE - 1n - iova) >> pgshift));
      });
      if ((flags & HWPT_GET_DIRTY_BITMAP_NO_CLEAR) === 0) dirty.clear(firstPage, lastPage);
      cursor = area.last + 1n;
      if (cursor > last) return;
    }
    throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(cursor)} in ${hex(iova)}-${hex(last)} is not mapped: the range must be covered by areas`);
  }

  /**
   * The last close of the `/dev/iommu` fd. A bound device holds a reference on the file
   * (main.c, iommufd_ctx_from_fd(); device.c, iommufd_device_bind(): iommufd_ctx_get()), so while
   * one is bound nothing happens: the context and its objects live on for the device's cdev (ATTACH,
   * DETACH keep working) and are released with the last unbind (iommufd_fops_release()). With none
   * bound it is {@link close} at once. The syscall face's close of the fd should call this.
   */
  releaseFile(): void {
    this.fileOpen = false;
    if (!this.hasBindings() && this.groupHolds === 0) this.close();
  }

  private hasBindings(): boolean {
    for (const object of this.objects.values()) if (!(object instanceof Ioas) && !(object instanceof Hwpt)) return true;
    return false;
  }

  /** Closing `/dev/iommu`: every device unbound, every IOAS destroyed. */
  close(): void {
    this.released = true;
    for (const [id, object] of this.objects) if (!(object instanceof Ioas) && !(object instanceof Hwpt)) this.unbind(id);
    for (const object of this.objects.values()) if (object instanceof Ioas) this.unmapAll(object);
    this.objects.clear();
    this.compat = undefined;
    this.simulator.kernelObjects.delete(this);
  }

  private binding(deviceId: number, ioctl: string): Binding {
    const object = this.objects.get(deviceId);
    if (object === undefined || object instanceof Ioas || object instanceof Hwpt) throw new KernelError(ERRNO.ENOENT, ioctl, `no bound device ${deviceId}`);
    return object;
  }

  private unmapAll(ioas: Ioas): bigint {
    let bytes = 0n;
    for (const area of ioas.areas.all()) bytes += this.removeArea(ioas, area);
    return bytes;
  }

  /**
   * The IOVA the kernel chooses for `length` bytes of user memory at `uptr` (6.12 io_pagetable.c,
   * iopt_alloc_iova(), __alloc_iova_check_range()): `length` from ULONG_MAX / 2 EOVERFLOW; the
   * alignment is `roundup_pow_of_two(length)`, lowered to the lowest set bit of `uptr`, capped at
   * HPAGE_SIZE with CONFIG_TRANSPARENT_HUGEPAGE (else PAGE_SIZE: {@link SimIommufdContext.transparentHugepages}),
   * and below the IOAS's alignment EINVAL. The candidates keep the page offset of `uptr`
   * (`ALIGN_UP(start, align) | page_offset`); each allowed span (the whole space without an
   * allow-list), clipped to [PAGE_SIZE, ULONG_MAX - PAGE_SIZE], must hold the length from its
   * aligned start, then the lowest hole of reserved ranges and areas in it that does wins. A
   * candidate needs `start < last` (a 1-byte hole never fits). So IOVA 0 is never chosen. None: ENOSPC.
   */
  private allocateIova(ioas: Ioas, uptr: bigint, length: bigint, ioctl: string): bigint {
    if (length === 0n || length >= U64_MAX / 2n) throw new KernelError(ERRNO.EOVERFLOW, ioctl, `length ${hex(length)} >= ULONG_MAX / 2`);
    const pageOffset = uptr % PAGE;
    let align = 1n;
    while (align < length) align <<= 1n;
    if (uptr !== 0n) {
      const low = 1n << lowestBit(uptr);
      if (low < align) align = low;
    }
    const maximum = this.transparentHugepages ? HPAGE_SIZE : PAGE;
    if (align >= maximum) align = maximum;
    if (align < ioas.alignment) throw new KernelError(ERRNO.EINVAL, ioctl, `the IOVA alignment ${hex(align)} of a ${hex(length)}-byte map at ${hex(uptr)} is below the IOAS's ${hex(ioas.alignment)}`);
    const fit = (start: bigint, last: bigint): bigint | undefined => {
      if (start + align - 1n > U64_MAX) return undefined;
      const aligned = ((start + align - 1n) & ~(align - 1n)) | pageOffset;
      return aligned >= last || last - aligned < length - 1n ? undefined : aligned;
    };
    const window = { start: PAGE, last: U64_MAX - PAGE };
    const spans = ioas.allowed.length === 0 ? [window] : normalizeRanges(ioas.allowed).flatMap((range) => intersectRange(range, window) ?? []);
    const used = [...ioas.reserved(), ...ioas.areas.all()];
    for (const span of spans) {
      const start = fit(span.start, span.last);
      if (start === undefined) continue;
      for (const hole of subtractRanges([{ start, last: span.last }], used)) {
        const chosen = fit(hole.start, hole.last);
        if (chosen !== undefined) return chosen;
      }
    }
    throw new KernelError(ERRNO.ENOSPC, ioctl, `no free IOVA range of ${hex(length)} bytes`);
  }
}
