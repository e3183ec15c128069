import { alignUp, ERRNO, hex, type IovaRange, normalizeRanges, rangeSize, rangesOverlap, subtractRanges, U64_MAX } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import { PagedDomain, type Translation, type DmaDomain } from './paged-domain.js';
import type { SimDevice, Simulator } from './simulator.js';

const PAGE = 0x1000n;
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
   * The IOMMU domains attached to it (the automatic domains of its devices), each reserving what
   * lies outside its aperture for as long as it lives (io_pagetable.c, iopt_table_add_domain()).
   */
  readonly domains = new Set<{
    /** What the domain translates. */
    readonly aperture: IovaRange;
  }>();
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
      // Once a device is attached the alignment is the page size (never above PAGE_SIZE).
      alignment: this.devices.size > 0 ? PAGE : 1n,
    };
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
}

/**
 * An automatic paging domain (an `IOMMUFD_OBJ_HWPT_PAGING` with `auto_domain` set): what attaching a
 * device to an IOAS creates, or reuses when the IOAS already has one, and destroys when its last
 * device leaves (6.12 drivers/iommu/iommufd/device.c, iommufd_device_auto_get_domain();
 * iommufd_private.h, iommufd_hw_pagetable_put(); docs/kernel-rules.md#attaching-and-detaching-a-device).
 */
class AutoDomain {
  readonly devices = new Set<SimDevice>();
  constructor(
    readonly id: number,
    readonly ioas: Ioas,
    /** What the domain translates: the aperture of the IOMMU of the device it was made for. */
    readonly aperture: IovaRange,
  ) {}

  /** The IOMMU driver attaches a device to it only when it sits behind the same IOMMU (docs/kernel-rules.md#one-domain-per-iommu-instance). */
  takes(device: SimDevice): boolean {
    return device.aperture.start === this.aperture.start && device.aperture.last === this.aperture.last;
  }
}

/** The IOVA outside an aperture: what a domain reserves in the IOAS it joins. */
function outsideAperture(aperture: IovaRange): IovaRange[] {
  const outside: IovaRange[] = [];
  if (aperture.start > 0n) outside.push({ start: 0n, last: aperture.start - 1n });
  if (aperture.last < U64_MAX) outside.push({ start: aperture.last + 1n, last: U64_MAX });
  return outside;
}

/** A device bound to the context: where it is attached, if anywhere. */
interface Binding {
  readonly device: SimDevice;
  domain: AutoDomain | undefined;
}

/**
 * One `/dev/iommu` file as the simulated kernel keeps it: its objects (IOAS, bound devices,
 * automatic domains) by id. The SDK's handle on one is `@ioas/vfio`'s `IommufdContext`.
 */
export class SimIommufdContext {
  private readonly objects = new Map<number, Ioas | Binding | AutoDomain>();

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
    if (object instanceof Ioas) {
      if (object.devices.size > 0) throw new KernelError(ERRNO.EBUSY, ioctl, `IOAS ${id} has attached devices`);
      this.unmapAll(object);
    }
    // A bound device is destroyed by closing its fd; a domain lives while devices use it (the
    // users refcount: iommufd_object_remove() answers EBUSY).
    if (!(object instanceof Ioas)) throw new KernelError(ERRNO.EBUSY, ioctl, `object ${id} is in use`);
    this.objects.delete(id);
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

  /** IOMMU_IOAS_ALLOW_IOVAS: replaces the whole allow-list. */
  allowIovas(id: number, ranges: readonly IovaRange[]): void {
    const ioctl = 'IOMMU_IOAS_ALLOW_IOVAS';
    this.simulator.checkInjected(ioctl);
    const ioas = this.ioas(id, ioctl);
    const sorted = [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1));
    for (let index = 0; index < sorted.length; index++) {
      const range = sorted[index]!;
      if (range.start >= range.last) throw new KernelError(ERRNO.EINVAL, ioctl, `range ${hex(range.start)}-${hex(range.last)} needs start < last`);
      if (index > 0 && sorted[index - 1]!.last >= range.start) throw new KernelError(ERRNO.EINVAL, ioctl, 'allowed ranges overlap');
    }
    const reserved = ioas.reserved();
    for (const range of sorted) {
      if (reserved.some((hole) => rangesOverlap(hole, range))) {
        throw new KernelError(ERRNO.EADDRINUSE, ioctl, `range ${hex(range.start)}-${hex(range.last)} intersects a reserved region`);
      }
    }
    ioas.allowed = sorted;
  }

  /** IOMMU_IOAS_MAP: returns the IOVA (chosen by the kernel without FIXED_IOVA). */
  map(id: number, flags: number, vaddr: bigint, length: bigint, iova: bigint): bigint {
    const ioctl = 'IOMMU_IOAS_MAP';
    this.simulator.checkInjected(ioctl);
    if ((flags & ~MAP_KNOWN) !== 0) throw new KernelError(ERRNO.EOPNOTSUPP, ioctl, `unknown flags ${hex(flags)}`);
    const ioas = this.ioas(id, ioctl);
    if (iova >= U64_MAX || length >= U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova or length >= ULONG_MAX');
    const read = (flags & IOAS_MAP_FLAGS.READABLE) !== 0;
    const write = (flags & IOAS_MAP_FLAGS.WRITEABLE) !== 0;
    if (!read && !write) throw new KernelError(ERRNO.EINVAL, ioctl, 'neither READABLE nor WRITEABLE');
    if (length === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'length is 0');
    if (vaddr + length - 1n > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'user range wraps');
    const { alignment } = ioas.ranges();
    const reserved = ioas.reserved();
    let start: bigint;
    if ((flags & IOAS_MAP_FLAGS.FIXED_IOVA) !== 0) {
      if (iova + length - 1n > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'range wraps');
      if (iova % alignment !== 0n || length % alignment !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `iova and length must be multiples of ${hex(alignment)}`);
      const range = { start: iova, last: iova + length - 1n };
      if (reserved.some((hole) => rangesOverlap(hole, range))) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(range.start)}-${hex(range.last)} hits a reserved region`);
      if (ioas.areas.overlaps(range.start, range.last)) throw new KernelError(ERRNO.EEXIST, ioctl, `${hex(range.start)}-${hex(range.last)} overlaps an existing area`);
      start = iova;
    } else {
      start = this.chooseIova(ioas, length, alignment, reserved);
    }
    this.simulator.pin(length, ioctl);
    if (!this.simulator.memory.isMapped(vaddr, length)) {
      this.simulator.unpin(length);
      throw new KernelError(ERRNO.EFAULT, ioctl, `user_va ${hex(vaddr)}+${hex(length)} is not mapped`);
    }
    ioas.areas.add({ start, last: start + length - 1n, vaddr, read, write });
    return start;
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
    if (!(read || write) || length <= 0 || iova % PAGE_BYTES !== 0 || length % PAGE_BYTES !== 0) return -1;
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
    this.simulator.unpinNumber(length);
    return length;
  }

  /** IOMMU_IOAS_UNMAP: returns the bytes unmapped. */
  unmap(id: number, iova: bigint, length: bigint): bigint {
    const ioctl = 'IOMMU_IOAS_UNMAP';
    this.simulator.checkInjected(ioctl);
    const ioas = this.ioas(id, ioctl);
    if (iova === 0n && length === U64_MAX) return this.unmapAll(ioas);
    if (length === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'length is 0');
    if (iova >= U64_MAX || length >= U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'iova or length >= ULONG_MAX');
    const last = iova + length - 1n;
    if (last > U64_MAX) throw new KernelError(ERRNO.EOVERFLOW, ioctl, 'range wraps');
    const affected = ioas.areas.overlapping(iova, last);
    if (affected.length === 0) throw new KernelError(ERRNO.ENOENT, ioctl, `nothing is mapped in ${hex(iova)}-${hex(last)}`);
    if (affected.some((area) => area.start < iova || area.last > last)) {
      throw new KernelError(ERRNO.ENOENT, ioctl, `${hex(iova)}-${hex(last)} would split an area`);
    }
    let bytes = 0n;
    for (const area of affected) {
      ioas.areas.remove(area);
      const size = rangeSize(area);
      this.simulator.unpin(size);
      bytes += size;
    }
    return bytes;
  }

  /** VFIO_DEVICE_BIND_IOMMUFD: returns the device id. */
  bind(device: SimDevice): number {
    const ioctl = 'VFIO_DEVICE_BIND_IOMMUFD';
    this.simulator.checkInjected(ioctl);
    // 6.12 drivers/vfio/device_cdev.c, vfio_df_ioctl_bind_iommufd(): the group is blocked first
    // (vfio_device_block_group(): EBUSY while /dev/vfio/N is open), then the device is opened,
    // which a cdev may do only once, whichever iommufd asks (vfio_main.c, vfio_df_open(): EINVAL;
    // docs/kernel-rules.md#a-device-binds-once).
    const group = device.group === undefined ? undefined : this.simulator.group(device.group);
    if (group?.opened) throw new KernelError(ERRNO.EBUSY, ioctl, `group ${group.id} is open through /dev/vfio/${group.id}`);
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
    if (binding === undefined || binding instanceof Ioas || binding instanceof AutoDomain) return;
    this.release(binding);
    this.objects.delete(deviceId);
    if (binding.device.boundTo === this) binding.device.boundTo = undefined;
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
    if (!(target instanceof Ioas) && !(target instanceof AutoDomain)) throw new KernelError(ERRNO.EINVAL, ioctl, `object ${ptId} is a device, not an IOAS or a page table`);
    const device = binding.device;
    const ioas = target instanceof Ioas ? target : target.ioas;
    // iommufd_device_auto_get_domain(): the IOAS's automatic domains in turn; one of another IOMMU
    // answers EINVAL and is skipped.
    let domain = target instanceof AutoDomain ? target : [...this.objects.values()].find((object): object is AutoDomain => object instanceof AutoDomain && object.ioas === ioas && object.takes(device));
    if (domain !== undefined && domain === binding.domain) return domain.id;
    this.enforceReserved(ioas, device.reserved.filter((region) => region.kind !== 'direct-relaxable'), ioctl, `${device.address}'s reserved region`);
    if (domain !== undefined && !domain.takes(device)) {
      throw new KernelError(ERRNO.EINVAL, ioctl, `domain ${domain.id} belongs to another IOMMU than ${device.address}'s`);
    }
    if (domain === undefined) {
      // iopt_table_add_domain(): the first domain raises the IOAS's alignment from 1 byte to its
      // page (iopt_check_iova_alignment()), so every area must start, end and sit in its memory on
      // page boundaries; then what it cannot translate is reserved.
      if (ioas.domains.size === 0) {
        const unaligned = ioas.areas.all().find((area) => area.start % PAGE !== 0n || (area.last + 1n) % PAGE !== 0n || area.vaddr % PAGE !== 0n);
        if (unaligned !== undefined) {
          throw new KernelError(ERRNO.EADDRINUSE, ioctl, `area ${hex(unaligned.start)}-${hex(unaligned.last)} (user_va ${hex(unaligned.vaddr)}) is not page-aligned, as the first domain needs`);
        }
      }
      this.enforceReserved(ioas, outsideAperture(device.aperture), ioctl, `the IOVA ${device.address}'s IOMMU cannot translate,`);
      domain = new AutoDomain(this.freeId(), ioas, device.aperture);
      this.objects.set(domain.id, domain);
      ioas.domains.add(domain);
    }
    this.release(binding);
    binding.domain = domain;
    domain.devices.add(device);
    ioas.devices.add(device);
    ioas.devicesChanged();
    device.domain = ioas;
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
    if (domain.devices.size === 0) {
      this.objects.delete(domain.id);
      domain.ioas.domains.delete(domain);
    }
    domain.ioas.devicesChanged();
    binding.domain = undefined;
    binding.device.domain = undefined;
  }

  /** Closing `/dev/iommu`: every device unbound, every IOAS destroyed. */
  close(): void {
    for (const [id, object] of this.objects) if (!(object instanceof Ioas) && !(object instanceof AutoDomain)) this.unbind(id);
    for (const object of this.objects.values()) if (object instanceof Ioas) this.unmapAll(object);
    this.objects.clear();
    this.simulator.kernelObjects.delete(this);
  }

  private binding(deviceId: number, ioctl: string): Binding {
    const object = this.objects.get(deviceId);
    if (object === undefined || object instanceof Ioas || object instanceof AutoDomain) throw new KernelError(ERRNO.ENOENT, ioctl, `no bound device ${deviceId}`);
    return object;
  }

  private unmapAll(ioas: Ioas): bigint {
    let bytes = 0n;
    for (const area of ioas.areas.all()) {
      ioas.areas.remove(area);
      const size = rangeSize(area);
      this.simulator.unpin(size);
      bytes += size;
    }
    return bytes;
  }

  /** The lowest free, non-reserved IOVA for `length` bytes, inside the allow-list when there is one. */
  private chooseIova(ioas: Ioas, length: bigint, alignment: bigint, reserved: IovaRange[]): bigint {
    const base = ioas.allowed.length > 0 ? ioas.allowed : [{ start: 0n, last: U64_MAX }];
    const used = [...reserved, ...ioas.areas.all()];
    const align = alignment > PAGE ? alignment : PAGE;
    for (const free of subtractRanges(base, used)) {
      const start = alignUp(free.start, align);
      if (start + length - 1n <= free.last) return start;
    }
    throw new KernelError(ERRNO.ENOSPC, 'IOMMU_IOAS_MAP', `no free IOVA range of ${hex(length)} bytes`);
  }
}
