/**
 * One function per PAMU container ioctl, with the profile's request numbers and structs encoded in
 * the byte order given (the host's by default: PAMU boards are big-endian, and every field of these
 * structs is host-endian: docs/kernel-rules.md#host-byte-order-and-natural-alignment).
 */
import { endianness } from 'node:os';
import type { Syscalls } from '@ioas/core';
import { VfioIoctls, vfioUapi, type IoctlStruct } from '@ioas/vfio';
import type { PamuProfile } from './profiles.js';
import { PAMU_ATTRIBUTE, vfio_pamu_attr, vfio_pamu_msi_bank_map, vfio_pamu_msi_bank_unmap, type PamuIoctlName } from './uapi.js';

/** An aperture as `vfio_pamu_attr` carries it: `end` is the last mappable IOVA (inclusive). */
export interface PamuAperture {
  /** First IOVA (`aperture_start`). */
  readonly start: bigint;
  /** Last IOVA, inclusive (`aperture_end`). */
  readonly end: bigint;
}

/** The stash attribute: the `reg` of a device-tree cpu node and a cache level (1 L1, 2 L2, 3 L3, 4 DSP L2). */
export interface PamuStash {
  /** The `reg` of a device-tree cpu node (ignored for L3). */
  readonly cpu: number;
  /** 1 L1, 2 L2, 3 L3, 4 DSP L2. */
  readonly cache: number;
}

/**
 * The ioctls of a PAMU container, encoded for one profile: the PAMU-only ones (attributes, MSI
 * banks) built on {@link VfioIoctls}' call, struct and type-1 map/unmap helpers, with the profile's
 * request numbers and byte order.
 */
export class PamuIoctls {
  /** The generic VFIO ioctls, with the profile's numbers: MAP_DMA and UNMAP_DMA go through them too. */
  readonly vfio: VfioIoctls;
  /** Struct byte order. */
  readonly little: boolean;
  /** The system calls. */
  readonly syscalls: Syscalls;
  private readonly attr: IoctlStruct;

  constructor(
    syscalls: Syscalls,
    /** The profile whose numbers are sent. */
    readonly profile: PamuProfile,
    littleEndian: boolean = endianness() === 'LE',
  ) {
    this.syscalls = syscalls;
    this.little = littleEndian;
    const { ioctls } = profile;
    this.vfio = new VfioIoctls({
      syscalls,
      arch: profile.arch,
      littleEndian,
      backend: 'pamu',
      numbers: {
        VFIO_GET_API_VERSION: ioctls.VFIO_GET_API_VERSION,
        VFIO_CHECK_EXTENSION: ioctls.VFIO_CHECK_EXTENSION,
        VFIO_SET_IOMMU: ioctls.VFIO_SET_IOMMU,
        VFIO_GROUP_GET_STATUS: ioctls.VFIO_GROUP_GET_STATUS,
        VFIO_GROUP_SET_CONTAINER: ioctls.VFIO_GROUP_SET_CONTAINER,
        VFIO_GROUP_UNSET_CONTAINER: ioctls.VFIO_GROUP_UNSET_CONTAINER,
        VFIO_GROUP_GET_DEVICE_FD: ioctls.VFIO_GROUP_GET_DEVICE_FD,
        VFIO_DEVICE_GET_INFO: ioctls.VFIO_DEVICE_GET_INFO,
        VFIO_DEVICE_GET_REGION_INFO: ioctls.VFIO_DEVICE_GET_REGION_INFO,
        VFIO_DEVICE_GET_IRQ_INFO: ioctls.VFIO_DEVICE_GET_IRQ_INFO,
        VFIO_DEVICE_SET_IRQS: ioctls.VFIO_DEVICE_SET_IRQS,
        VFIO_DEVICE_RESET: ioctls.VFIO_DEVICE_RESET,
        VFIO_IOMMU_MAP_DMA: ioctls.VFIO_IOMMU_MAP_DMA,
        VFIO_IOMMU_UNMAP_DMA: ioctls.VFIO_IOMMU_UNMAP_DMA,
      },
    });
    this.attr = this.vfio.struct(vfio_pamu_attr.sizeof);
  }

  /** A PAMU ioctl by the profile's number, through {@link VfioIoctls.request} (errors name the ioctl, backend `pamu`). */
  private call(name: PamuIoctlName, fd: number, argument: number | Uint8Array, what: string): number {
    return this.vfio.request(this.profile.ioctls[name], name, fd, argument, what);
  }

  /** Resets the attribute buffer: argsz 32, the attribute id, and the union filled with `fill`. */
  private attrBuffer(attribute: number, fill: number): DataView {
    const { bytes, view } = this.attr;
    bytes.fill(fill, 4);
    view.setUint32(vfio_pamu_attr.argsz, vfio_pamu_attr.sizeof, this.little);
    view.setUint32(vfio_pamu_attr.flags, 0, this.little);
    view.setUint32(vfio_pamu_attr.attribute, attribute, this.little);
    view.setUint32(12, 0, this.little);
    return view;
  }

  /**
   * GET_ATTR(GEOMETRY). The union is filled with `sentinel` first: for an unknown attribute or a
   * domain error the kernel returns 0 and copies the struct back unchanged
   * (docs/kernel-rules.md#pamu-attributes-fail-silently), so only a value
   * that differs from the sentinel is an answer.
   */
  getGeometry(fd: number, sentinel = 0): PamuAperture {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.GEOMETRY, sentinel);
    this.call('VFIO_IOMMU_PAMU_GET_ATTR', fd, this.attr.bytes, 'reading the PAMU geometry');
    return { start: view.getBigUint64(vfio_pamu_attr.aperture_start, this.little), end: view.getBigUint64(vfio_pamu_attr.aperture_end, this.little) };
  }

  /** GET_ATTR(WINDOWS): the count set, or the hardware maximum before any SET
   * (docs/kernel-rules.md#pamu-default-geometry). */
  getWindows(fd: number, sentinel = 0): number {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.WINDOWS, sentinel);
    this.call('VFIO_IOMMU_PAMU_GET_ATTR', fd, this.attr.bytes, 'reading the PAMU window count');
    return view.getUint32(vfio_pamu_attr.windows, this.little);
  }

  /** GET_ATTR(PAMU_STASH). */
  getStash(fd: number, sentinel = 0): PamuStash {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.PAMU_STASH, sentinel);
    this.call('VFIO_IOMMU_PAMU_GET_ATTR', fd, this.attr.bytes, 'reading the PAMU stash attribute');
    return { cpu: view.getUint32(vfio_pamu_attr.stash_cpu, this.little), cache: view.getUint32(vfio_pamu_attr.stash_cache, this.little) };
  }

  /** SET_ATTR(GEOMETRY): returns 0 whatever the domain did
   * (docs/kernel-rules.md#pamu-attributes-fail-silently); read it back. */
  setGeometry(fd: number, aperture: PamuAperture): void {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.GEOMETRY, 0);
    view.setBigUint64(vfio_pamu_attr.aperture_start, aperture.start, this.little);
    view.setBigUint64(vfio_pamu_attr.aperture_end, aperture.end, this.little);
    this.call('VFIO_IOMMU_PAMU_SET_ATTR', fd, this.attr.bytes, 'setting the PAMU geometry');
  }

  /** SET_ATTR(WINDOWS). Never call it with 0: the kernel divides by the count first
   * (docs/kernel-rules.md#pamu-window-count-divides-first). */
  setWindows(fd: number, count: number): void {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.WINDOWS, 0);
    view.setUint32(vfio_pamu_attr.windows, count, this.little);
    this.call('VFIO_IOMMU_PAMU_SET_ATTR', fd, this.attr.bytes, `setting ${count} PAMU windows`);
  }

  /** SET_ATTR(PAMU_STASH). */
  setStash(fd: number, stash: PamuStash): void {
    const view = this.attrBuffer(PAMU_ATTRIBUTE.PAMU_STASH, 0);
    view.setUint32(vfio_pamu_attr.stash_cpu, stash.cpu, this.little);
    view.setUint32(vfio_pamu_attr.stash_cache, stash.cache, this.little);
    this.call('VFIO_IOMMU_PAMU_SET_ATTR', fd, this.attr.bytes, `setting the PAMU stash to cpu ${stash.cpu}, cache ${stash.cache}`);
  }

  /** GET_MSI_BANK_COUNT: the count is the ioctl's return value; it takes no argument
   * (docs/kernel-rules.md#pamu-msi-bank-count). */
  msiBankCount(fd: number): number {
    return this.call('VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT', fd, 0, 'counting the MSI banks');
  }

  /** MAP_MSI_BANK with READ|WRITE (the code needs one of them: docs/kernel-rules.md#pamu-structs);
   * returns 0 whatever happened. */
  mapMsiBank(fd: number, bank: number, iova: bigint): void {
    const { bytes, view } = this.vfio.struct(vfio_pamu_msi_bank_map.sizeof);
    view.setUint32(vfio_pamu_msi_bank_map.flags, vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE, this.little);
    view.setUint32(vfio_pamu_msi_bank_map.msi_bank_index, bank, this.little);
    view.setBigUint64(vfio_pamu_msi_bank_map.iova, iova, this.little);
    this.call('VFIO_IOMMU_PAMU_MAP_MSI_BANK', fd, bytes, `mapping MSI bank ${bank}`);
  }

  /** UNMAP_MSI_BANK: `iova` must be exactly the one given to MAP (docs/kernel-rules.md#pamu-msi-bank-unmap). */
  unmapMsiBank(fd: number, iova: bigint): void {
    const { bytes, view } = this.vfio.struct(vfio_pamu_msi_bank_unmap.sizeof);
    view.setBigUint64(vfio_pamu_msi_bank_unmap.iova, iova, this.little);
    this.call('VFIO_IOMMU_PAMU_UNMAP_MSI_BANK', fd, bytes, 'unmapping an MSI bank');
  }

  /** MAP_DMA with the type-1 struct; only READ and WRITE flags (0x4 is MMIO in the SDK header, rejected). */
  mapDma(fd: number, vaddr: bigint, iova: bigint, size: bigint, read: boolean, write: boolean): void {
    this.vfio.iommuMapDma(fd, vaddr, iova, size, (read ? vfioUapi.VFIO_DMA_MAP_FLAG_READ : 0) | (write ? vfioUapi.VFIO_DMA_MAP_FLAG_WRITE : 0));
  }

  /** UNMAP_DMA with flags 0; the PAMU backend does not write `size` back
   * (docs/kernel-rules.md#pamu-unmap-dma), so nothing is returned. */
  unmapDma(fd: number, iova: bigint, size: bigint): void {
    this.vfio.iommuUnmapDma(fd, iova, size, 0);
  }
}
