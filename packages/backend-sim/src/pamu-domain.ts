import { ERRNO, hex, PAMU_PAGE_SIZE, PAMU_VFIO_MAX_WINDOWS, U64_MAX } from '@ioas/core';
import { KernelError, KernelOops } from './kernel-error.js';
import type { DmaDomain, Translation } from './paged-domain.js';
import type { SimDevice, Simulator } from './simulator.js';

/**
 * PAMU attribute ids of `vfio_pamu_attr` (docs/kernel-rules.md#pamu-structs): the kernel's own copy,
 * with the names and values of `@ioas/backend-pamu`'s `pamuUapi.PAMU_ATTRIBUTE`.
 */
export const PAMU_ATTRIBUTE = {
  /** The aperture: start and last IOVA. */
  GEOMETRY: 0,
  /** The window count. */
  WINDOWS: 1,
  /** The stash target: cpu and cache level (`VFIO_ATTR_PAMU_STASH`). */
  PAMU_STASH: 2,
} as const;

const PAGE = 0x1000n;

interface DmaWindow {
  readonly kind: 'dma';
  readonly vaddr: bigint;
  readonly read: boolean;
  readonly write: boolean;
}
interface MsiWindow {
  readonly kind: 'msi';
  readonly bank: number;
  /** The bank's MSIIR page, mapped at the window's start with size 0x1000. */
  readonly page: bigint;
}

/**
 * A DMA range the simulated SDK kernel backend records (vfio_iommu_fsl_pamu.c keeps these in a
 * list). The SDK's own record of what it mapped is `@ioas/backend-pamu`'s `PamuDmaRange`.
 */
export interface SimPamuDmaRange {
  /** First IOVA of the recorded range. */
  iova: bigint;
  /** Bytes recorded (mapped or not: see the silent cases of MAP_DMA). */
  size: bigint;
  /** Process virtual address of the memory. */
  vaddr: bigint;
  /** READ was given. */
  read: boolean;
  /** WRITE was given. */
  write: boolean;
}

/**
 * The PAMU "type 2" VFIO backend of the NXP SDK kernels and the PAMU domain under it, with the
 * vendor driver's behaviour reproduced exactly, including its silent failures
 * (docs/kernel-rules.md#pamu-attributes-fail-silently and the PAMU rules after it): SET_ATTR,
 * MAP_MSI_BANK and UNMAP_MSI_BANK return 0 even when the domain refused; MAP_DMA maps only whole windows and drops the rest without a word; a window
 * size of zero divides by zero in the kernel (here: a recorded {@link KernelOops}); a LIODN that
 * joins a translating domain stays disabled until the next successful MAP_DMA ({@link PamuDomain.attach}).
 */
export class PamuDomain implements DmaDomain {
  /** The VFIO backend's own copy of the geometry: saved before the domain accepts it, 0-0 at start. */
  private backendStart = 0n;
  private backendEnd = 0n;
  /** The VFIO backend's window size, computed from its own copy. */
  private backendWindowSize = 0n;
  /** The domain's geometry: 0 to 64 GiB by default (GET_ATTR(GEOMETRY) before any SET). */
  private geometryStart: bigint;
  private geometryEnd: bigint;
  private geometrySet = false;
  /** 0 until WINDOWS is set; GET_ATTR then answers the hardware maximum. */
  private windowCount = 0;
  private windows: (DmaWindow | MsiWindow | undefined)[] = [];
  private stash = { cpu: 0, cache: 0 };
  /**
   * The domain's DMA state (`dma_domain->enabled`): set by every successful MAP_DMA, cleared when the
   * last DMA range goes. Each change enables or disables every attached LIODN with it.
   */
  private enabled = false;
  /**
   * The attached devices (`dma_domain->devices`: one entry per LIODN; here per device, as each
   * device of a group has its controller's LIODN). A device's `domain` says its LIODN's state: this
   * domain while the LIODN is enabled or the whole domain is disabled (which faults every access
   * itself), undefined while the LIODN was left disabled in a translating domain
   * (docs/kernel-rules.md#attaching-to-a-live-container).
   */
  private readonly liodns = new Set<SimDevice>();
  /** The DMA ranges the SDK backend records, in IOVA order (whole and partial windows alike). */
  readonly dmaRanges: SimPamuDmaRange[] = [];
  private readonly msiBanks: { bank: number; iova: bigint; window: number }[] = [];

  constructor(private readonly simulator: Simulator) {
    const platform = simulator.platform;
    this.geometryStart = platform.aperture.start;
    this.geometryEnd = platform.aperture.last;
    simulator.pamuDomains.add(this);
  }

  private get maxWindows(): number {
    return this.simulator.platform.pamu?.maxWindows ?? 256;
  }

  /** VFIO_IOMMU_PAMU_GET_ATTR: returns the values the ioctl copies back (unknown attributes: unchanged). */
  getAttr(attribute: number):
    | {
        /** aperture_start. */
        start: bigint;
        /** aperture_end (inclusive). */
        end: bigint;
      }
    | {
        /** The window count. */
        windows: number;
      }
    | {
        /** The stash cpu. */
        cpu: number;
        /** The stash cache level. */
        cache: number;
      }
    | undefined {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_GET_ATTR');
    if (attribute === PAMU_ATTRIBUTE.GEOMETRY) return { start: this.geometryStart, end: this.geometryEnd };
    if (attribute === PAMU_ATTRIBUTE.WINDOWS) return { windows: this.windowCount === 0 ? this.maxWindows : this.windowCount };
    if (attribute === PAMU_ATTRIBUTE.PAMU_STASH) return { ...this.stash };
    return undefined;
  }

  /** VFIO_IOMMU_PAMU_SET_ATTR(GEOMETRY): always "succeeds"; the domain may silently refuse. */
  setGeometry(start: bigint, end: bigint): void {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_SET_ATTR');
    // The backend saves its copy before asking the domain
    // (docs/kernel-rules.md#pamu-geometry-saved-before-the-domain-answers).
    this.backendStart = start;
    this.backendEnd = end;
    const size = end - start + 1n;
    if (this.enabled) return; // hidden EBUSY
    if (size < PAMU_PAGE_SIZE || (size & (size - 1n)) !== 0n || start % size !== 0n) return; // hidden EINVAL
    this.geometryStart = start;
    this.geometryEnd = end;
    this.geometrySet = true;
  }

  /** VFIO_IOMMU_PAMU_SET_ATTR(WINDOWS): always "succeeds"; a count of 0 divides by zero in the kernel. */
  setWindows(count: number): void {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_SET_ATTR');
    if (count > PAMU_VFIO_MAX_WINDOWS) return; // the VFIO layer refuses (hidden EINVAL), nothing changes
    if (count === 0) this.oops('SET_ATTR(WINDOWS) with count 0: the backend divides the aperture by zero');
    // The window size is computed from the backend's copy first, even if the domain then refuses.
    this.backendWindowSize = (this.backendEnd - this.backendStart + 1n) / BigInt(count);
    if (!this.geometrySet || this.enabled) return; // hidden EINVAL / EBUSY
    if ((count & (count - 1)) !== 0 || count > this.maxWindows) return; // hidden EINVAL
    this.windowCount = count;
    this.windows = new Array(count).fill(undefined);
    this.msiBanks.length = 0;
  }

  /** VFIO_IOMMU_PAMU_SET_ATTR(STASH): silently refused for bad pairs or before windows are set. */
  setStash(cpu: number, cache: number): void {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_SET_ATTR');
    // cache 1 = L1, 2 = L2, 3 = L3, 4 = DSP_L2 in SDK kernels; P4080 has 8 cores.
    if (this.windowCount === 0 || cache < 1 || cache > 4 || (cache !== 3 && cpu >= 8)) return;
    this.stash = { cpu, cache };
  }

  /** VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT. */
  msiBankCount(): number {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT');
    return this.simulator.platform.pamu?.msiir.length ?? 0;
  }

  /** VFIO_IOMMU_PAMU_MAP_MSI_BANK: always "succeeds"; maps the bank's page at the start of the window holding `iova`. */
  mapMsiBank(bank: number, iova: bigint, read: boolean, write: boolean): void {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_MAP_MSI_BANK');
    if (!read && !write) return; // hidden EINVAL
    if (this.backendWindowSize === 0n) this.oops('MAP_MSI_BANK with a window size of 0: windows were never configured after a geometry');
    const msiir = this.simulator.platform.pamu?.msiir[bank];
    if (msiir === undefined) return; // hidden ENODEV
    if (this.windowCount === 0) return; // hidden ENODEV
    // The IOVA is truncated to its window; it need not be aligned.
    const window = Number((iova - this.backendStart) / this.backendWindowSize);
    if (iova < this.backendStart || window >= this.windowCount) return; // hidden EINVAL
    if (this.windows[window] !== undefined) return; // hidden EBUSY
    this.windows[window] = { kind: 'msi', bank, page: msiir - (msiir % PAGE) };
    this.msiBanks.push({ bank, iova, window });
  }

  /** VFIO_IOMMU_PAMU_UNMAP_MSI_BANK: finds the bank mapped with exactly this IOVA (not the window base). */
  unmapMsiBank(iova: bigint): void {
    this.simulator.checkInjected('VFIO_IOMMU_PAMU_UNMAP_MSI_BANK');
    const index = this.msiBanks.findIndex((entry) => entry.iova === iova);
    if (index < 0) return; // hidden EINVAL
    const [entry] = this.msiBanks.splice(index, 1);
    this.windows[entry!.window] = undefined;
  }

  /** VFIO_IOMMU_MAP_DMA on the PAMU backend, checks in the driver's order (docs/kernel-rules.md#pamu-map-dma-checks). */
  map(vaddr: bigint, iova: bigint, size: bigint, read: boolean, write: boolean): void {
    const ioctl = 'VFIO_IOMMU_MAP_DMA';
    this.simulator.checkInjected(ioctl);
    if (!read && !write) throw new KernelError(ERRNO.EINVAL, ioctl, 'neither READ nor WRITE');
    if (iova + size - 1n > U64_MAX || vaddr + size - 1n > U64_MAX || size === 0n) throw new KernelError(ERRNO.EINVAL, ioctl, 'range wraps');
    if (size < PAGE) throw new KernelError(ERRNO.EINVAL, ioctl, `size ${hex(size)} is below PAGE_SIZE`);
    if (this.dmaRanges.some((range) => iova < range.iova + range.size && range.iova < iova + size)) {
      throw new KernelError(ERRNO.EBUSY, ioctl, `${hex(iova)}+${hex(size)} overlaps a recorded DMA range`);
    }
    this.simulator.pin(size, ioctl);
    const windowSize = this.backendWindowSize;
    if (windowSize === 0n) {
      this.simulator.unpin(size);
      this.oops('MAP_DMA with a window size of 0: the backend divides the size by zero');
    }
    const enabled: number[] = [];
    try {
      const whole = size / windowSize;
      for (let step = 0n; step < whole; step++) {
        const windowIova = iova + step * windowSize;
        if ((windowIova - this.backendStart) % windowSize !== 0n) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(windowIova)} is not on a window boundary`);
        const windowVaddr = vaddr + step * windowSize;
        if (!this.simulator.memory.isPhysicallyContiguous(windowVaddr, windowSize)) {
          throw new KernelError(ERRNO.EFAULT, ioctl, `the ${hex(windowSize)} bytes at ${hex(windowVaddr)} are not one physically contiguous chunk`);
        }
        if (this.windowCount === 0) throw new KernelError(ERRNO.ENODEV, ioctl, 'windows were never configured');
        const index = Number((windowIova - this.backendStart) / windowSize);
        if (windowIova < this.backendStart || index >= this.windowCount) throw new KernelError(ERRNO.EINVAL, ioctl, `${hex(windowIova)} is past the aperture`);
        if (this.windows[index] !== undefined) throw new KernelError(ERRNO.EBUSY, ioctl, `window ${index} is already in use`);
        this.windows[index] = { kind: 'dma', vaddr: windowVaddr, read, write };
        enabled.push(index);
      }
    } catch (error) {
      for (const index of enabled) this.windows[index] = undefined;
      this.simulator.unpin(size);
      throw error;
    }
    // A size below one window maps nothing, and a remainder past the last whole window is dropped,
    // but the whole range is recorded and translation turned on
    // (docs/kernel-rules.md#pamu-maps-whole-windows-only).
    this.dmaRanges.push({ iova, size, vaddr, read, write });
    this.dmaRanges.sort((a, b) => (a.iova < b.iova ? -1 : 1));
    // vfio_enable_iommu_domain() after every successful map: configure_domain_dma_state(enable)
    // enables every LIODN of the domain, newcomers left disabled by their attach included.
    this.setDmaState(true);
  }

  /** VFIO_IOMMU_UNMAP_DMA on the PAMU backend: trims or splits recorded ranges; `size` is not written back. */
  unmap(iova: bigint, size: bigint): void {
    this.simulator.checkInjected('VFIO_IOMMU_UNMAP_DMA');
    const end = iova + size;
    const kept: SimPamuDmaRange[] = [];
    for (const range of this.dmaRanges) {
      const rangeEnd = range.iova + range.size;
      if (rangeEnd <= iova || range.iova >= end) {
        kept.push(range);
        continue;
      }
      const cutStart = range.iova > iova ? range.iova : iova;
      const cutEnd = rangeEnd < end ? rangeEnd : end;
      this.simulator.unpin(cutEnd - cutStart);
      this.disableWindows(cutStart, cutEnd);
      if (range.iova < cutStart) kept.push({ ...range, size: cutStart - range.iova });
      if (rangeEnd > cutEnd) kept.push({ ...range, iova: cutEnd, vaddr: range.vaddr + (cutEnd - range.iova), size: rangeEnd - cutEnd });
    }
    this.dmaRanges.splice(0, this.dmaRanges.length, ...kept);
    // When no DMA range is left the whole domain is turned off, MSI windows included.
    if (this.dmaRanges.length === 0) this.setDmaState(false);
  }

  /**
   * A device's LIODN joins the domain (`handle_attach_device()`): `pamu_set_liodn()` gives it the
   * domain's geometry and windows but starts with `pamu_disable_liodn()`, and nothing in the attach
   * enables it again; only the next successful MAP_DMA does, for every LIODN of the domain
   * (docs/kernel-rules.md#attaching-to-a-live-container). While the domain is not enabled that
   * changes nothing (every LIODN waits for the first map, and the domain faults every access
   * itself): the device translates through the domain. While the domain translates, the newcomer's
   * DMA is blocked until that map: its accesses and MSI writes fault with reason `blocked`, as a
   * LIODN in no domain does (the PAMU sees the same invalid PAACE). One difference from the kernel
   * remains: enabling MSI on it meanwhile answers EINVAL (no domain to find the bank windows in),
   * where the kernel programs the doorbell and only its writes fault.
   */
  attach(device: SimDevice): void {
    this.liodns.add(device);
    device.domain = this.enabled ? undefined : this;
  }

  /** A device's LIODN leaves the domain (`detach_device()`: `pamu_disable_liodn()`): its DMA is blocked. */
  detach(device: SimDevice): void {
    if (!this.liodns.delete(device)) return;
    device.domain = undefined;
  }

  /** Container close: unmaps and unpins all DMA, disables the MSI windows. */
  release(): void {
    for (const range of this.dmaRanges) this.simulator.unpin(range.size);
    this.dmaRanges.length = 0;
    this.msiBanks.length = 0;
    this.windows = new Array(this.windowCount).fill(undefined);
    this.enabled = false;
    for (const device of this.liodns) if (device.domain === this) device.domain = undefined;
    this.liodns.clear();
    this.simulator.pamuDomains.delete(this);
  }

  /** The domain's window size (from the domain's geometry, which the hardware uses). */
  private get domainWindowSize(): bigint {
    return this.windowCount === 0 ? 0n : (this.geometryEnd - this.geometryStart + 1n) / BigInt(this.windowCount);
  }

  translate(iova: bigint, write: boolean): Translation {
    const windowSize = this.domainWindowSize;
    if (!this.enabled || windowSize === 0n || iova < this.geometryStart || iova > this.geometryEnd) return { kind: 'fault', reason: 'unmapped' };
    const index = Number((iova - this.geometryStart) / windowSize);
    const offset = (iova - this.geometryStart) % windowSize;
    const window = this.windows[index];
    if (window === undefined) return { kind: 'fault', reason: 'unmapped' };
    if (window.kind === 'msi') return offset < PAGE ? { kind: 'doorbell', physical: window.page + offset } : { kind: 'fault', reason: 'unmapped' };
    if (write ? !window.write : !window.read) return { kind: 'fault', reason: 'permission' };
    return { kind: 'memory', vaddr: window.vaddr + offset, writable: window.write };
  }

  /** The device-visible doorbell for a bank's MSIIR: window base + (MSIIR & 0xfff), when a window holds its page. */
  msiAddressFor(msiir: bigint): bigint | undefined {
    const windowSize = this.domainWindowSize;
    const page = msiir - (msiir % PAGE);
    const index = this.windows.findIndex((window) => window?.kind === 'msi' && window.page === page);
    return index < 0 ? undefined : this.geometryStart + BigInt(index) * windowSize + (msiir % PAGE);
  }

  /**
   * DOMAIN_ATTR_FSL_PAMU_ENABLE (`configure_domain_dma_state()`): the domain's state, and every
   * attached LIODN's with it. A disabled domain faults every access itself, so its devices keep
   * translating through it; an enabled one lets them all through to the windows.
   */
  private setDmaState(enable: boolean): void {
    this.enabled = enable;
    for (const device of this.liodns) device.domain = this;
  }

  private disableWindows(start: bigint, end: bigint): void {
    const windowSize = this.backendWindowSize;
    if (windowSize === 0n) return;
    for (let index = 0; index < this.windowCount; index++) {
      const base = this.backendStart + BigInt(index) * windowSize;
      if (base < end && base + windowSize > start && this.windows[index]?.kind === 'dma') this.windows[index] = undefined;
    }
  }

  private oops(what: string): never {
    this.simulator.oopses.push(what);
    throw new KernelOops(`kernel oops (divide error) in vfio_iommu_fsl_pamu: ${what}`);
  }
}
