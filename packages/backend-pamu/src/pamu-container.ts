/**
 * A PAMU VFIO container with every rule of the SDK driver checked before the ioctl and every
 * SET_ATTR read back, because the driver hides its failures: SET_ATTR, MAP_MSI_BANK and
 * UNMAP_MSI_BANK return 0 when the domain refused; MAP_DMA maps only whole windows and drops the
 * rest without a word; a window size of zero divides by zero in the kernel
 * (docs/kernel-rules.md#pamu-sdk-driver). Each defence below names the rule it enforces.
 */
import { checkWindowGeometry, ERRNO, IoasError, hex, intersectRange, isPowerOfTwo, rangeSize, subtractRange, U64_MAX, type IoasErrorCode, type IovaRange } from '@ioas/core';
import { abandon, asIoasError, releaseContainer, VfioContainer, VfioDevice, VfioGroup, vfioUapi } from '@ioas/vfio';
import type { PamuAperture, PamuIoctls, PamuStash } from './pamu-ioctls.js';
import { describeProfile, PAMU_PROFILES, type PamuProfile } from './profiles.js';
import { PAMU_MSI_PAGE_SIZE, PAMU_STASH_CACHE } from './uapi.js';

/** A DMA range the container mapped: whole windows of physically contiguous memory. */
export interface PamuDmaRange {
  /** First IOVA: a window base. */
  readonly iova: bigint;
  /** Bytes: whole windows. */
  readonly size: bigint;
  /** Process virtual address of the memory behind it. */
  readonly vaddr: bigint;
  /** The device may read. */
  readonly read: boolean;
  /** The device may write. */
  readonly write: boolean;
}

/** An MSI bank mapped into a window. */
export interface PamuMsiBankMapping {
  /** The bank's index (probe order). */
  readonly bank: number;
  /** The IOVA given to MAP_MSI_BANK: always the window's base (UNMAP needs exactly it back). */
  readonly iova: bigint;
  /** The window holding it. */
  readonly window: number;
  /**
   * Where the device's MSI write lands once the kernel has rewritten it: `window base + (MSIIR &
   * 0xfff)` (docs/kernel-rules.md#pamu-msi-bank-map), when the profile knows the bank's MSIIR.
   */
  readonly deviceAddress: bigint | undefined;
}

/** What to map: host memory whose physically contiguous page size is known. */
export interface PamuDmaRequest {
  /** Where: a window base inside the aperture. */
  readonly iova: bigint;
  /** Process virtual address of the memory: aligned to the window size. */
  readonly vaddr: bigint;
  /** Bytes: a whole number of windows. */
  readonly size: bigint;
  /** Size of the physically contiguous, naturally aligned pages behind `vaddr` (the hugepage size). */
  readonly contiguousPageSize: bigint | undefined;
  /** The device may read. */
  readonly read: boolean;
  /** The device may write. */
  readonly write: boolean;
}

/** The container's window configuration. */
export interface PamuWindowState {
  /** The domain's aperture (the 64 GiB default until a geometry is set). */
  readonly aperture: IovaRange;
  /** Windows set through VFIO; `undefined` until {@link PamuContainer.configure} succeeds. */
  readonly count: number | undefined;
  /** Aperture size / count; `0n` until configured (the SDK driver divides by it). */
  readonly size: bigint;
  /** Most windows this container accepts: the profile's limit and the hardware's, whichever is lower. */
  readonly maxCount: number;
}

function fail(code: IoasErrorCode, operation: string, message: string, extra: { ioctl?: string; errno?: number; cause?: unknown } = {}): IoasError {
  return new IoasError(code, `pamu ${operation}: ${message}`, { backend: 'pamu', operation, ...extra });
}

/** A byte that differs from the low byte of `value`: a GET_ATTR buffer filled with it cannot pass for `value`. */
function sentinelFor(value: bigint | number): number {
  return (Number(BigInt(value) & 0xffn) ^ 0xff) & 0xff;
}

/** The other type numbers SDK kernels used for PAMU: a PAMU backend answers 0 for them
 * (docs/kernel-rules.md#pamu-iommu-type-numbers). */
const PAMU_TYPE_NUMBERS = [...new Set(Object.values(PAMU_PROFILES).map((profile) => profile.iommuType))];

/**
 * An open PAMU container: one PAMU domain shared by its groups
 * (docs/kernel-rules.md#pamu-call-order, step 1). Synchronous, like the
 * ioctls under it. Every method validates first and sends nothing when a rule would be broken.
 */
export class PamuContainer {
  /** MSI banks the kernel probed (GET_MSI_BANK_COUNT: 3 on P4080). */
  readonly msiBankCount: number;
  private readonly maxCount: number;
  private aperture: PamuAperture;
  private count: number | undefined;
  private windowSize = 0n;
  private lastGood: { aperture: PamuAperture; count: number } | undefined;
  private everSetWindows = false;
  private stashValue: PamuStash | undefined;
  private readonly dma: PamuDmaRange[] = [];
  private readonly banks: PamuMsiBankMapping[] = [];
  /** Device fds handed out by openDevice(), for detach's in-use check. */
  private readonly handedOut: { readonly group: number; readonly device: VfioDevice }[] = [];
  private enabled = false;
  private closed = false;

  private constructor(
    /** The profile's ioctls. */
    readonly ioctls: PamuIoctls,
    private readonly container: VfioContainer,
    private readonly groups: VfioGroup[],
  ) {
    const fd = container.fd;
    const profile = ioctls.profile;
    // After SET_IOMMU the PAMU backend answers GET_MSI_BANK_COUNT with the count as the return
    // value. On sPAPR (mainline POWER, the same type numbers) +17 is REGISTER_MEMORY and fails
    // without an argument, so a failure here means the kernel is not the one the profile describes.
    try {
      this.msiBankCount = ioctls.msiBankCount(fd);
    } catch (error) {
      throw fail(
        'abi-mismatch',
        'open',
        `GET_MSI_BANK_COUNT failed after SET_IOMMU(${profile.iommuType}): the container's IOMMU backend is not PAMU (sPAPR TCE, mainline's meaning of types 2 and 7, answers ${hex(BigInt(profile.ioctls.VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT))} as REGISTER_MEMORY)`,
        { cause: error },
      );
    }
    // GET_ATTR(WINDOWS) before any SET answers the hardware maximum, 2^(1+MWCE)
    // (docs/kernel-rules.md#pamu-default-geometry).
    const hardware = ioctls.getWindows(fd, 0);
    if (hardware === 0 || !isPowerOfTwo(BigInt(hardware))) {
      throw fail('abi-mismatch', 'open', `GET_ATTR(WINDOWS) answered ${hardware}, not a power-of-two hardware window maximum: the domain did not answer`);
    }
    this.maxCount = Math.min(hardware, profile.maxWindows);
    this.aperture = ioctls.getGeometry(fd, 0);
  }

  /**
   * Opens `/dev/vfio/vfio`, checks the kernel against the profile, adds the groups and selects the
   * PAMU backend, in the order USDPAA uses (docs/kernel-rules.md#pamu-call-order): GET_API_VERSION, CHECK_EXTENSION(profile type),
   * GROUP_SET_CONTAINER for each group, SET_IOMMU(profile type). On any failure every fd opened is
   * closed.
   *
   * @param describeGroup - Says why a group is not viable (which driver holds a member).
   * @throws {IoasError} `abi-mismatch` when CHECK_EXTENSION or GET_MSI_BANK_COUNT does not fit the
   *   profile; `not-viable` for a non-viable group; `kernel` for a failed ioctl.
   */
  static open(ioctls: PamuIoctls, groupIds: readonly number[], describeGroup: (group: number) => string = () => ''): PamuContainer {
    const container = VfioContainer.open(ioctls.vfio);
    const groups: VfioGroup[] = [];
    try {
      checkProfile(container, ioctls.profile);
      // The same group twice is EINVAL in GROUP_SET_CONTAINER (docs/kernel-rules.md#pamu-call-order):
      // add each once.
      for (const id of [...new Set(groupIds)]) {
        const group = VfioGroup.open(ioctls.vfio, id);
        groups.push(group);
        if (!group.status().viable) {
          const why = describeGroup(id);
          throw fail('not-viable', 'open', `IOMMU group ${id} is not viable: ${why || 'a member is bound to a driver that owns DMA'}; bind every member to vfio-pci`);
        }
        group.setContainer(container);
      }
      container.setIommu(ioctls.profile.iommuType);
      return new PamuContainer(ioctls, container, groups);
    } catch (error) {
      abandon(() => releaseContainer(groups, container, 'closing the PAMU container', 'pamu'), error, 'pamu');
    }
  }

  /** The container's file descriptor (`/dev/vfio/vfio`), for tools that call {@link PamuIoctls} directly. */
  get fd(): number {
    return this.container.fd;
  }

  /** The window configuration as this container knows it (the kernel's answers prove little:
   * docs/kernel-rules.md#pamu-attributes-fail-silently). */
  windows(): PamuWindowState {
    return { aperture: { start: this.aperture.start, last: this.aperture.end }, count: this.count, size: this.windowSize, maxCount: this.maxCount };
  }

  /** The DMA ranges mapped, in IOVA order. */
  dmaRanges(): readonly PamuDmaRange[] {
    return [...this.dma];
  }

  /** The MSI banks mapped. */
  msiBanks(): readonly PamuMsiBankMapping[] {
    return [...this.banks];
  }

  /**
   * Whether the PAMU translates: on from the first successful MAP_DMA, off again when the last DMA
   * range is unmapped, which also stops the MSI windows (docs/kernel-rules.md#pamu-unmap-dma). While false, a device's MSI
   * through a mapped bank is not delivered.
   */
  get translating(): boolean {
    return this.enabled;
  }

  /** The stash attribute last set and confirmed, if any. */
  stash(): PamuStash | undefined {
    return this.stashValue;
  }

  /** The bank's MSIIR page and where a device's MSI lands once the bank is mapped at `windowBase`. */
  msiDoorbell(bank: number):
    | {
        /** The 4 KiB page the kernel maps at a window's start. */
        page: bigint;
        /** The bank's MSIIR register (physical address). */
        msiir: bigint;
      }
    | undefined {
    const msiir = this.ioctls.profile.msi.msiir[bank];
    if (msiir === undefined || bank >= this.msiBankCount) return undefined;
    return { page: msiir - (msiir % PAMU_MSI_PAGE_SIZE), msiir };
  }

  /**
   * Sets the aperture and the window count, in the driver's order (geometry, then windows, then the
   * stash again if one was set: docs/kernel-rules.md#pamu-call-order), reading each back with GET_ATTR. Allowed only while nothing is
   * mapped: the domain refuses changes once enabled (hidden EBUSY) and WINDOWS discards all window
   * state (docs/kernel-rules.md#pamu-window-count).
   *
   * If the domain silently refuses, the SDK backend has already overwritten its own copy of the
   * geometry and window size (docs/kernel-rules.md#pamu-geometry-saved-before-the-domain-answers),
   * so the last good configuration is sent again before the error
   * is thrown: the container is left as it was.
   *
   * @throws {IoasError} `invalid-argument` (not a power of two, below 4 KiB, count 0 or above the
   *   maximum), `misaligned` (start not aligned to the size), `in-use` (something mapped), `kernel`
   *   (the domain refused: the read-back differs), `rollback-failed`.
   */
  configure(aperture: IovaRange, count: number): void {
    const operation = 'configure';
    this.assertOpen(operation);
    // docs/kernel-rules.md#pamu-aperture-geometry, docs/kernel-rules.md#pamu-window-count: the
    // geometry rules, shared with Container.setGeometry and planWindows. A count of 0
    // divides by zero in the kernel, above 256 the VFIO layer refuses, above the hardware maximum
    // the domain: all hidden, so all checked before anything is sent.
    const problems = checkWindowGeometry({ start: aperture.start, size: rangeSize(aperture), windowCount: count }, { maxWindows: this.maxCount });
    if (problems !== undefined) throw fail(problems.code, operation, problems.message);
    if (this.enabled || this.dma.length > 0 || this.banks.length > 0) {
      throw fail('in-use', operation, 'the geometry and windows can change only while nothing is mapped (the domain refuses once enabled, and WINDOWS discards every window); unmap DMA and MSI banks first');
    }
    const wanted: PamuAperture = { start: aperture.start, end: aperture.last };
    try {
      this.apply(wanted, count);
    } catch (error) {
      this.resync(operation, error);
      throw error;
    }
    this.lastGood = { aperture: wanted, count };
  }

  /**
   * Sets the stash attribute (the PAMU-only hint to stash DMA writes in a CPU's cache), after the
   * windows and before DMA (docs/kernel-rules.md#pamu-stash), and reads it back.
   *
   * @throws {IoasError} `invalid-argument` (cache not 1-4, cpu not a u32), `not-ready` (windows not
   *   set), `in-use` (DMA already mapped), `kernel` (the domain refused: a cpu that does not exist, say).
   */
  setStash(stash: PamuStash): void {
    const operation = 'setStash';
    this.assertOpen(operation);
    const caches = Object.values(PAMU_STASH_CACHE) as number[];
    if (!caches.includes(stash.cache)) throw fail('invalid-argument', operation, `cache ${stash.cache} must be 1 (L1), 2 (L2), 3 (L3) or 4 (DSP L2, SDK kernels)`);
    if (!Number.isInteger(stash.cpu) || stash.cpu < 0 || stash.cpu > 0xffff_ffff) throw fail('invalid-argument', operation, `cpu ${stash.cpu} must be the reg of a device-tree cpu node (a u32)`);
    // With windows never set the domain refuses (hidden EINVAL); once enabled, EBUSY
    // (docs/kernel-rules.md#pamu-stash).
    if (this.count === undefined) throw fail('not-ready', operation, 'set the geometry and windows first (the driver order: geometry, windows, stash)');
    if (this.enabled) throw fail('in-use', operation, 'the stash can change only before the first DMA mapping');
    const previous = this.stashValue;
    try {
      this.applyStash(stash);
    } catch (error) {
      if (previous !== undefined) {
        try {
          this.applyStash(previous);
        } catch (undo) {
          throw fail('rollback-failed', operation, `the stash was refused and restoring ${JSON.stringify(previous)} failed too: ${(undo as Error).message}`, { cause: error });
        }
      }
      throw error;
    }
    this.stashValue = { cpu: stash.cpu, cache: stash.cache };
  }

  /**
   * Maps MSI bank `bank` into the window whose base is `iova` (docs/kernel-rules.md#pamu-call-order,
   * step 6; before the device enables MSI). MAP_MSI_BANK returns 0 even when it did nothing, so every reason it would refuse is checked
   * here first: windows configured, a known bank, a window base inside the aperture (the driver
   * truncates any IOVA to its window, which would make UNMAP miss it), a free window.
   *
   * @throws {IoasError} `not-ready` (windows not configured), `in-use` (the bank is mapped), `not-found` (no such bank), `misaligned`, `out-of-range`, `overlap`.
   */
  mapMsiBank(bank: number, iova: bigint): PamuMsiBankMapping {
    const operation = 'mapMsiBank';
    this.assertOpen(operation);
    const windowSize = this.requireWindows(operation);
    if (!Number.isInteger(bank) || bank < 0 || bank >= this.msiBankCount) {
      throw fail('not-found', operation, `MSI bank ${bank} does not exist: the kernel has ${this.msiBankCount} bank${this.msiBankCount === 1 ? '' : 's'}`);
    }
    if (this.banks.some((mapped) => mapped.bank === bank)) throw fail('in-use', operation, `MSI bank ${bank} is already mapped; unmap it first`);
    const what = (): string => `MSI bank ${bank} at IOVA ${hex(iova)}`;
    const window = this.windowIndex(operation, iova, windowSize, what);
    this.assertWindowFree(operation, window, what);
    this.ioctls.mapMsiBank(this.container.fd, bank, iova);
    const doorbell = this.msiDoorbell(bank);
    const mapping: PamuMsiBankMapping = { bank, iova, window, deviceAddress: doorbell === undefined ? undefined : iova + (doorbell.msiir % PAMU_MSI_PAGE_SIZE) };
    this.banks.push(mapping);
    return mapping;
  }

  /**
   * Unmaps MSI bank `bank`, passing back exactly the IOVA it was mapped at (the driver matches on
   * it; any other value is a hidden EINVAL: docs/kernel-rules.md#pamu-msi-bank-unmap).
   *
   * @throws {IoasError} `not-found` when the bank is not mapped.
   */
  unmapMsiBank(bank: number): void {
    const operation = 'unmapMsiBank';
    this.assertOpen(operation);
    const index = this.banks.findIndex((mapped) => mapped.bank === bank);
    if (index < 0) throw fail('not-found', operation, `MSI bank ${bank} is not mapped`);
    this.ioctls.unmapMsiBank(this.container.fd, this.banks[index]!.iova);
    this.banks.splice(index, 1);
  }

  /**
   * Maps whole windows of physically contiguous memory
   * (docs/kernel-rules.md#pamu-window-size-and-contiguous-memory,
   * docs/kernel-rules.md#pamu-maps-whole-windows-only). Checked first, because the
   * driver does not refuse them: a size below one window (maps nothing, returns 0), a size that is
   * not a multiple of the window (the remainder is dropped), windows never configured (division by
   * zero), memory whose contiguity is unknown (EFAULT at best), memory not aligned to the window in
   * its hugepage (the hardware keeps `paddr >> 12` and the code never checks natural alignment).
   *
   * @throws {IoasError} `not-ready` (windows not configured), `invalid-argument`, `misaligned`, `out-of-range`, `overlap`,
   *   `kernel` (EFAULT, ENOMEM for RLIMIT_MEMLOCK...).
   */
  mapDma(request: PamuDmaRequest): void {
    const operation = 'mapDma';
    this.assertOpen(operation);
    const { iova, vaddr, size, contiguousPageSize } = request;
    const windowSize = this.requireWindows(operation);
    if (!request.read && !request.write) throw fail('invalid-argument', operation, 'a mapping needs read or write access');
    if (size < windowSize || size % windowSize !== 0n) {
      throw fail(
        'misaligned',
        operation,
        `${hex(size)} bytes is not a whole number of ${hex(windowSize)}-byte windows: the SDK driver would map ${size < windowSize ? 'nothing' : `only ${hex((size / windowSize) * windowSize)} bytes`} and still return 0`,
      );
    }
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX) throw fail('invalid-argument', operation, `${hex(size)} bytes at IOVA ${hex(iova)} from ${hex(vaddr)} wrap past 2^64-1`);
    // Messages are built only when something is refused: this is the hot path.
    const what = (): string => `${hex(size)} bytes at IOVA ${hex(iova)}`;
    const first = this.windowIndex(operation, iova, windowSize, what);
    const windows = Number(size / windowSize);
    if (first + windows > (this.count ?? 0)) throw fail('out-of-range', operation, `${hex(size)} bytes at IOVA ${hex(iova)} run past the aperture's last window`);
    if (contiguousPageSize === undefined || !isPowerOfTwo(contiguousPageSize) || contiguousPageSize < windowSize) {
      throw fail(
        'invalid-argument',
        operation,
        `each ${hex(windowSize)}-byte window needs one physically contiguous chunk: back the memory with hugepages of at least ${hex(windowSize)} and say so in contiguousPageSize (given: ${contiguousPageSize === undefined ? 'nothing' : hex(contiguousPageSize)})`,
      );
    }
    if (vaddr % windowSize !== 0n) {
      throw fail('misaligned', operation, `host address ${hex(vaddr)} is not aligned to the window size ${hex(windowSize)}: the window's physical address would not be naturally aligned, which PAMU needs and the driver does not check`);
    }
    for (let window = first; window < first + windows; window++) this.assertWindowFree(operation, window, what);
    try {
      this.ioctls.mapDma(this.container.fd, vaddr, iova, size, request.read, request.write);
    } catch (error) {
      // EBUSY is the PAMU driver's word for an overlap (type1 says EEXIST); the checks above make it unexpected.
      if (IoasError.isInstance(error) && error.errno === ERRNO.EBUSY) throw fail('overlap', operation, `the kernel says ${hex(iova)}+${hex(size)} is busy: ${error.message}`, { ioctl: error.ioctl ?? 'VFIO_IOMMU_MAP_DMA', errno: ERRNO.EBUSY, cause: error });
      throw error;
    }
    const range: PamuDmaRange = { iova, size, vaddr, read: request.read, write: request.write };
    const at = this.dma.findIndex((other) => other.iova > iova);
    this.dma.splice(at < 0 ? this.dma.length : at, 0, range);
    this.enabled = true;
  }

  /**
   * Unmaps `[iova, iova + size)`, which must cover whole windows: the driver disables every window
   * the range touches while keeping the rest of a cut range recorded (docs/kernel-rules.md#pamu-unmap-dma), so a cut inside a window
   * would leave memory recorded but not mapped. Returns the bytes unmapped, counted from the
   * container's record: the driver does not write `size` back. Sends nothing when nothing is
   * mapped there.
   *
   * @throws {IoasError} `misaligned`, `not-ready` (windows not configured).
   */
  unmapDma(iova: bigint, size: bigint): bigint {
    const operation = 'unmapDma';
    this.assertOpen(operation);
    const windowSize = this.requireWindows(operation);
    if (size === 0n || iova + size - 1n > U64_MAX) throw fail('invalid-argument', operation, `${hex(size)} bytes at IOVA ${hex(iova)}: an empty range, or one past 2^64-1`);
    if ((iova - this.aperture.start) % windowSize !== 0n || size % windowSize !== 0n || iova < this.aperture.start) {
      throw fail('misaligned', operation, `${hex(size)} bytes at IOVA ${hex(iova)} do not cover whole ${hex(windowSize)}-byte windows: the driver would disable the windows it touches and keep the rest recorded`);
    }
    const cut = { start: iova, last: iova + size - 1n };
    let removed = 0n;
    const kept: PamuDmaRange[] = [];
    for (const range of this.dma) {
      const recorded = { start: range.iova, last: range.iova + range.size - 1n };
      const overlap = intersectRange(recorded, cut);
      if (overlap === undefined) {
        kept.push(range);
        continue;
      }
      removed += rangeSize(overlap);
      // What is left of a cut range stays recorded, trimmed or split, as the driver keeps it.
      for (const rest of subtractRange(recorded, overlap)) kept.push({ ...range, iova: rest.start, vaddr: range.vaddr + (rest.start - range.iova), size: rangeSize(rest) });
    }
    if (removed === 0n) return 0n;
    this.ioctls.unmapDma(this.container.fd, iova, size);
    kept.sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
    this.dma.splice(0, this.dma.length, ...kept);
    // When no DMA range is left, the whole domain is turned off, MSI windows included
    // (docs/kernel-rules.md#pamu-unmap-dma).
    if (this.dma.length === 0) this.enabled = false;
    return removed;
  }

  /**
   * A device fd for `address`, a member of one of the container's groups; the caller closes it.
   * While it is open, {@link PamuContainer.detachGroups} refuses to take its group out.
   */
  openDevice(group: number, address: string): VfioDevice {
    this.assertOpen('openDevice');
    const member = this.groups.find((candidate) => candidate.id === group);
    if (member === undefined) throw fail('not-found', 'openDevice', `IOMMU group ${group} is not in this container`);
    const device = new VfioDevice(this.ioctls.vfio, member.deviceFd(address), address);
    this.pruneDevices();
    this.handedOut.push({ group, device });
    return device;
  }

  /** The group numbers in the container. */
  groupIds(): readonly number[] {
    return this.groups.map((group) => group.id);
  }

  /**
   * Adds groups to the live container (hot-plug): GROUP_SET_CONTAINER into the container whose
   * IOMMU is set, so each group's LIODNs join the one PAMU domain. The domain's geometry, window
   * count, stash and windows (DMA and MSI banks alike) are unchanged and apply to the newcomers:
   * `handle_attach_device()` programs each new LIODN with the domain's geometry and every enabled
   * window (`pamu_set_liodn()`, `map_liodn()`), so a newcomer's MSIs reach the banks already mapped
   * and it needs no bank of its own.
   *
   * But `pamu_set_liodn()` starts by disabling the LIODN, and nothing in the attach enables it: the
   * SDK driver enables LIODNs only from DOMAIN_ATTR_FSL_PAMU_ENABLE, which the VFIO backend sends
   * at the end of a successful MAP_DMA. So when the domain already translates, a newcomer would
   * fault every DMA until the next map. This method makes that map itself: it maps the first
   * window of the first DMA range a second time, read-only, into a free window, and unmaps it
   * again (a MAP_DMA smaller than a window would not do: its UNMAP_DMA loops in the driver, see
   * below). The alias shows the devices, for a moment, memory they can already read.
   *
   * All or nothing: on any failure every group opened here is taken out again
   * (UNSET_CONTAINER) and its fd closed, and the alias window is unmapped.
   *
   * Why not a one-page MAP_DMA: `__vfio_dma_map()` maps `size / window size` = 0 windows and still
   * enables the domain, but `__vfio_dma_do_unmap()` then loops `while (size) { ...; size -=
   * page_size; }` on an unsigned size smaller than the window size, which never reaches 0.
   *
   * @param describeGroup - Says why a group is not viable (which driver holds a member).
   * @throws {IoasError} `in-use` (a group is already in), `no-space` (the domain translates and no
   *   window is free for the re-enabling map), `not-viable`, `kernel`,
   *   `rollback-failed` (the alias window could not be unmapped).
   */
  attachGroups(ids: readonly number[], describeGroup: (group: number) => string = () => ''): void {
    const operation = 'attach';
    this.assertOpen(operation);
    const wanted = [...new Set(ids)];
    const already = wanted.filter((id) => this.groups.some((group) => group.id === id));
    if (already.length > 0) throw fail('in-use', operation, `IOMMU group ${already.join(', ')} is already in this container`);
    if (wanted.length === 0) return;
    // Decided before anything is sent: where the re-enabling map goes, if the domain translates.
    const alias = this.enabled ? this.aliasWindow(operation) : undefined;
    const added: VfioGroup[] = [];
    try {
      for (const id of wanted) {
        let group: VfioGroup;
        try {
          group = VfioGroup.open(this.ioctls.vfio, id);
        } catch (error) {
          // /dev/vfio/N exists only once a member is bound to vfio-pci.
          if (IoasError.isInstance(error) && error.errno === ERRNO.ENOENT) {
            const why = describeGroup(id);
            throw fail('not-viable', operation, `IOMMU group ${id} has no /dev/vfio/${id}: ${why || 'no member is bound to vfio-pci'}; bind every member to vfio-pci`, { errno: ERRNO.ENOENT, cause: error });
          }
          throw error;
        }
        added.push(group);
        if (!group.status().viable) {
          const why = describeGroup(id);
          throw fail('not-viable', operation, `IOMMU group ${id} is not viable: ${why || 'a member is bound to a driver that owns DMA'}; bind every member to vfio-pci`);
        }
        group.setContainer(this.container);
      }
      if (alias !== undefined) this.reenable(operation, alias);
    } catch (error) {
      this.releaseGroups(added);
      throw asIoasError(error, operation, 'pamu');
    }
    this.groups.push(...added);
  }

  /**
   * Takes groups out of the live container: VFIO_GROUP_UNSET_CONTAINER, then the group fd is
   * closed. The SDK driver disables the leaving LIODNs (`fsl_pamu_detach_device()` ->
   * `remove_device_ref()`: `pamu_disable_liodn()`), so their DMA faults; the domain, its windows
   * and every mapping stay for the groups left. Refused while a device fd handed out by
   * {@link PamuContainer.openDevice} for a member is open (the kernel too refuses UNSET_CONTAINER
   * then, EBUSY: the fd holds the container), and refused when no group would be left (the last
   * group out frees the domain and every mapping: close the container instead).
   *
   * All or nothing: if UNSET_CONTAINER fails for one group, the groups already taken out are put
   * back ({@link PamuContainer.attachGroups}'s way). A close(2) that reports an error after
   * UNSET_CONTAINER succeeded is not a failure: the group is out and Linux released the fd.
   *
   * @throws {IoasError} `not-found` (a group not in the container), `in-use`, `kernel`,
   *   `rollback-failed`.
   */
  detachGroups(ids: readonly number[]): void {
    const operation = 'detach';
    this.assertOpen(operation);
    const wanted = [...new Set(ids)];
    const absent = wanted.filter((id) => !this.groups.some((group) => group.id === id));
    if (absent.length > 0) throw fail('not-found', operation, `IOMMU group ${absent.join(', ')} is not in this container (groups: ${this.groupIds().join(', ')})`);
    if (wanted.length === 0) return;
    if (wanted.length >= this.groups.length) {
      throw fail('in-use', operation, 'the last group cannot leave: the driver would free the PAMU domain and every mapping with it; close the container instead');
    }
    this.pruneDevices();
    const open = this.handedOut.filter((entry) => wanted.includes(entry.group));
    if (open.length > 0) {
      throw fail('in-use', operation, `device fd${open.length === 1 ? '' : 's'} of ${open.map((entry) => entry.device.name).join(', ')} ${open.length === 1 ? 'is' : 'are'} still open; close ${open.length === 1 ? 'it' : 'them'} first (the kernel refuses UNSET_CONTAINER while one is)`);
    }
    const leaving = this.groups.filter((group) => wanted.includes(group.id));
    const out: VfioGroup[] = [];
    try {
      for (const group of leaving) {
        group.unsetContainer();
        out.push(group);
      }
    } catch (error) {
      this.putBack(operation, out, error);
      throw asIoasError(error, operation, 'pamu');
    }
    for (const group of leaving) {
      try {
        group.close();
      } catch {
        // Linux released the fd, and the group is already out: the detach is done.
      }
    }
    this.groups.splice(0, this.groups.length, ...this.groups.filter((group) => !leaving.includes(group)));
  }

  /**
   * Tears down in the order of docs/kernel-rules.md#pamu-call-order, step 8 (DMA, then MSI banks), then closes the groups and the
   * container, which undoes anything left. Never throws; safe to call twice.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const fd = this.container.fd;
    for (const range of this.dma) {
      try {
        this.ioctls.unmapDma(fd, range.iova, range.size);
      } catch {
        // Closing the container below unmaps and unpins everything anyway
        // (docs/kernel-rules.md#pamu-container-close).
      }
    }
    for (const bank of this.banks) {
      try {
        this.ioctls.unmapMsiBank(fd, bank.iova);
      } catch {
        // As above: close disables the MSI windows.
      }
    }
    this.dma.length = 0;
    this.banks.length = 0;
    this.enabled = false;
    // Every fd is released even when one close(2) fails; what failed is reported once.
    releaseContainer(this.groups, this.container, 'closing the PAMU container', 'pamu');
  }

  /** True once {@link PamuContainer.close} ran. */
  get isClosed(): boolean {
    return this.closed;
  }

  // --- internals -------------------------------------------------------------------------------

  /** Forgets handed-out device fds the caller has closed. */
  private pruneDevices(): void {
    const open = this.handedOut.filter((entry) => !entry.device.isClosed);
    this.handedOut.splice(0, this.handedOut.length, ...open);
  }

  /**
   * Where the re-enabling map of {@link PamuContainer.attachGroups} goes: the highest free window
   * (no DMA, no MSI bank), backed by the first window of the first DMA range (one physically
   * contiguous, window-aligned chunk, as every mapped window is).
   */
  private aliasWindow(operation: string): { iova: bigint; vaddr: bigint } {
    const source = this.dma[0];
    const count = this.count ?? 0;
    const busy = (window: number): boolean => {
      const base = this.aperture.start + BigInt(window) * this.windowSize;
      return this.banks.some((bank) => bank.window === window) || this.dma.some((range) => range.iova <= base && base < range.iova + range.size);
    };
    let free = -1;
    for (let window = count - 1; window >= 0 && free < 0; window--) if (!busy(window)) free = window;
    if (source === undefined || free < 0) {
      throw fail(
        'no-space',
        operation,
        `the domain translates, and the SDK driver leaves a joining LIODN disabled until the next MAP_DMA enables the domain again; the backend makes that map in a free window, but all ${count} windows hold DMA or an MSI bank: unmap a window first, or attach before mapping`,
      );
    }
    return { iova: this.aperture.start + BigInt(free) * this.windowSize, vaddr: source.vaddr };
  }

  /**
   * The re-enabling map: MAP_DMA of the alias window (the driver enables every LIODN of the domain
   * after it), then UNMAP_DMA. When the unmap fails it is tried once more; if the alias still
   * stays, the record keeps it (close() unmaps it, nothing maps over it) and `rollback-failed` says so.
   */
  private reenable(operation: string, alias: { iova: bigint; vaddr: bigint }): void {
    const fd = this.container.fd;
    this.ioctls.mapDma(fd, alias.vaddr, alias.iova, this.windowSize, true, false);
    try {
      this.ioctls.unmapDma(fd, alias.iova, this.windowSize);
    } catch (error) {
      try {
        this.ioctls.unmapDma(fd, alias.iova, this.windowSize);
      } catch (again) {
        const at = this.dma.findIndex((other) => other.iova > alias.iova);
        this.dma.splice(at < 0 ? this.dma.length : at, 0, { iova: alias.iova, size: this.windowSize, vaddr: alias.vaddr, read: true, write: false });
        throw fail(
          'rollback-failed',
          operation,
          `unmapping the window the re-enabling map used (${hex(alias.iova)}, a read-only alias of ${hex(alias.vaddr)}) failed twice (${(error as Error).message}; ${(again as Error).message}): it stays mapped and recorded; close the container`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /** Takes groups opened by a failed attach out again and closes them: every fd, whatever fails. */
  private releaseGroups(groups: readonly VfioGroup[]): void {
    for (const group of groups) {
      try {
        if (group.inContainer) group.unsetContainer();
      } catch {
        // Closing the group fd below takes it out of the container anyway.
      }
      try {
        group.close();
      } catch {
        // Linux released the fd; the attach's own failure is the one to report.
      }
    }
  }

  /**
   * After a failed detach: SET_CONTAINER again for the groups already taken out, and the
   * re-enabling map if the domain translates. Throws `rollback-failed` (those groups closed and
   * forgotten) when that fails too.
   */
  private putBack(operation: string, groups: readonly VfioGroup[], cause: unknown): void {
    if (groups.length === 0) return;
    const ids = groups.map((group) => group.id);
    try {
      const alias = this.enabled ? this.aliasWindow(operation) : undefined;
      for (const group of groups) group.setContainer(this.container);
      if (alias !== undefined) this.reenable(operation, alias);
    } catch (error) {
      this.releaseGroups(groups);
      this.groups.splice(0, this.groups.length, ...this.groups.filter((group) => !groups.includes(group)));
      throw fail('rollback-failed', operation, `detaching failed (${(cause as Error).message}) and putting IOMMU group ${ids.join(', ')} back failed too (${(error as Error).message}): ${ids.length === 1 ? 'it is' : 'they are'} out of the container now`, { cause });
    }
  }

  private assertOpen(operation: string): void {
    if (this.closed) throw new IoasError('closed', `pamu ${operation}: the container is closed`, { backend: 'pamu', operation });
  }

  private requireWindows(operation: string): bigint {
    if (this.count === undefined || this.windowSize === 0n) {
      throw fail('not-ready', operation, 'the windows are not configured: set the geometry and window count first (the SDK driver computes the window size only from a geometry set through VFIO and would divide by zero)');
    }
    return this.windowSize;
  }

  /** The window whose base is `iova`; refuses an IOVA that is not a window base or lies outside the aperture. */
  private windowIndex(operation: string, iova: bigint, windowSize: bigint, what: () => string): number {
    if (iova < this.aperture.start || iova > this.aperture.end) {
      throw fail('out-of-range', operation, `${what()} is outside the aperture ${hex(this.aperture.start)}-${hex(this.aperture.end)}`);
    }
    if ((iova - this.aperture.start) % windowSize !== 0n) throw fail('misaligned', operation, `${what()} is not on a ${hex(windowSize)}-byte window boundary`);
    return Number((iova - this.aperture.start) / windowSize);
  }

  private assertWindowFree(operation: string, window: number, what: () => string): void {
    const base = this.aperture.start + BigInt(window) * this.windowSize;
    const bank = this.banks.find((mapped) => mapped.window === window);
    if (bank !== undefined) throw fail('overlap', operation, `${what()}: window ${window} (${hex(base)}) holds MSI bank ${bank.bank}`);
    if (this.dma.some((range) => range.iova <= base && base < range.iova + range.size)) throw fail('overlap', operation, `${what()}: window ${window} (${hex(base)}) is already mapped`);
  }

  /** SET_ATTR(GEOMETRY) then SET_ATTR(WINDOWS), each confirmed, then the stash again. */
  private apply(aperture: PamuAperture, count: number): void {
    const { ioctls } = this;
    const fd = this.container.fd;
    // Until confirmed, the window size is unknown: nothing may be mapped with a stale one.
    this.count = undefined;
    this.windowSize = 0n;
    ioctls.setGeometry(fd, aperture);
    const geometry = ioctls.getGeometry(fd, sentinelFor(aperture.start));
    if (geometry.start !== aperture.start || geometry.end !== aperture.end) {
      throw this.refused('GEOMETRY', `the aperture ${hex(aperture.start)}-${hex(aperture.end)}`, `${hex(geometry.start)}-${hex(geometry.end)}`);
    }
    this.aperture = geometry;
    // GET_ATTR(WINDOWS) answers the hardware maximum until a SET succeeds: when that is the count
    // wanted, a refused SET would read back as a success. Set another count first to prove it.
    if (!this.everSetWindows && count === ioctls.getWindows(fd, 0)) {
      const other = count === 1 ? 2 : 1;
      if (checkWindowGeometry({ start: aperture.start, size: aperture.end - aperture.start + 1n, windowCount: other }, { maxWindows: this.maxCount }) === undefined) this.setWindowsConfirmed(other);
    }
    this.setWindowsConfirmed(count);
    this.count = count;
    this.windowSize = (aperture.end - aperture.start + 1n) / BigInt(count);
    if (this.stashValue !== undefined) this.applyStash(this.stashValue);
  }

  private setWindowsConfirmed(count: number): void {
    const fd = this.container.fd;
    this.ioctls.setWindows(fd, count);
    const answer = this.ioctls.getWindows(fd, sentinelFor(count));
    if (answer !== count) throw this.refused('WINDOWS', `${count} windows`, String(answer));
    this.everSetWindows = true;
  }

  private applyStash(stash: PamuStash): void {
    const fd = this.container.fd;
    this.ioctls.setStash(fd, stash);
    const answer = this.ioctls.getStash(fd, sentinelFor(stash.cpu));
    if (answer.cpu !== stash.cpu || answer.cache !== stash.cache) {
      throw this.refused('PAMU_STASH', `cpu ${stash.cpu}, cache ${stash.cache}`, `cpu ${answer.cpu}, cache ${answer.cache}`);
    }
  }

  private refused(attribute: string, sent: string, readBack: string): IoasError {
    return new IoasError(
      'kernel',
      `pamu: SET_ATTR(${attribute}) returned 0 but GET_ATTR reads back ${readBack}: the PAMU domain silently refused ${sent} (the SDK driver hides EINVAL and EBUSY from the domain)`,
      { backend: 'pamu', operation: 'configure', ioctl: 'VFIO_IOMMU_PAMU_SET_ATTR' },
    );
  }

  /**
   * After a refused configuration: the SDK backend saved the refused geometry and window size
   * before asking the domain (docs/kernel-rules.md#pamu-geometry-saved-before-the-domain-answers).
   * Send the last good configuration again so that its copy and the
   * domain agree; with none, the container stays unconfigured (nothing can be mapped until a
   * configuration succeeds, and the next one sends the geometry first).
   */
  private resync(operation: string, cause: unknown): void {
    const good = this.lastGood;
    if (good === undefined) {
      // A first configuration cannot be undone (the driver has no "unset"): the windows stay
      // unconfigured in this record (nothing can be mapped; the next configure overwrites them),
      // and the aperture is what the domain holds now, read back, so that the record says the truth.
      try {
        this.aperture = this.ioctls.getGeometry(this.container.fd, sentinelFor(this.aperture.start));
      } catch {
        // The domain cannot be read either: the configure error already says what failed.
      }
      return;
    }
    try {
      this.apply(good.aperture, good.count);
    } catch (error) {
      this.count = undefined;
      this.windowSize = 0n;
      throw fail('rollback-failed', operation, `the domain refused the new configuration (${(cause as Error).message}) and restoring ${good.count} windows over ${hex(good.aperture.start)}-${hex(good.aperture.end)} failed too: ${(error as Error).message}; close the container`, {
        cause,
      });
    }
  }
}

/**
 * CHECK_EXTENSION against the profile (docs/kernel-rules.md#pamu-iommu-type-numbers): the PAMU backend answers 1 for its own type only. The
 * SDK kernels used 2 or 7, and mainline's sPAPR TCE answers 1 for both (and for EEH), so: the
 * profile's type must answer 1 and the other PAMU type numbers 0.
 */
function checkProfile(container: VfioContainer, profile: PamuProfile): void {
  const answers = new Map<number, boolean>();
  for (const type of new Set([profile.iommuType, ...PAMU_TYPE_NUMBERS, vfioUapi.VFIO_EEH])) answers.set(type, container.checkExtension(type));
  const said = [...answers].map(([type, yes]) => `CHECK_EXTENSION(${type}) = ${yes ? 1 : 0}`).join(', ');
  const others = PAMU_TYPE_NUMBERS.filter((type) => type !== profile.iommuType && answers.get(type) === true);
  if (answers.get(profile.iommuType) !== true) {
    const match = Object.values(PAMU_PROFILES).find((candidate) => others.length === 1 && candidate.iommuType === others[0]);
    throw new IoasError(
      'abi-mismatch',
      `pamu open: the profile ${describeProfile(profile)} expects CHECK_EXTENSION(${profile.iommuType}) = 1, but the kernel answers ${said}${match === undefined ? '' : `; that fits the ${match.name} profile (${match.description})`}`,
      { backend: 'pamu', operation: 'open', ioctl: 'VFIO_CHECK_EXTENSION' },
    );
  }
  if (others.length > 0 || answers.get(vfioUapi.VFIO_EEH) === true) {
    throw new IoasError(
      'abi-mismatch',
      `pamu open: the kernel answers ${said}; the PAMU backend of profile ${profile.name} answers 1 for type ${profile.iommuType} only, so this is another IOMMU backend with the same number (mainline's sPAPR TCE uses 2 and 7 on IBM POWER); refusing to select it`,
      { backend: 'pamu', operation: 'open', ioctl: 'VFIO_CHECK_EXTENSION' },
    );
  }
}
