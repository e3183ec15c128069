/**
 * The backend SPI (service provider interface), version 1: types only. A backend is a factory with
 * `probe()` and `open()`; `open()` returns a handle whose `do`-prefixed methods core calls after it
 * has validated the request. Users call {@link Container}, never these methods.
 *
 * Optional methods exist exactly when the handle's declared {@link Capabilities} say so; core checks
 * this when it opens the handle and refuses a handle that breaks it.
 */
import type { IovaRange } from './iova-range.js';
import type { Access, Capabilities, Geometry, HostMemory, MsiDoorbell, ReservedRange } from './types.js';

/** The SPI version this core implements. */
export const SPECIFICATION_VERSION = 'v1';

/** Why a backend can or cannot run here. */
export type ProbeResult =
  | {
      /** It can. */
      readonly available: true;
      /** What it would use (`VFIO type1v2 (/dev/vfio/vfio)`). */
      readonly detail?: string;
    }
  | {
      /** It cannot. */
      readonly available: false;
      /** Why, and what to do about it. */
      readonly reason: string;
    };

/** What to put in a new container. */
export interface OpenRequest {
  /** IOMMU group numbers (`/dev/vfio/<N>`), for group-based backends. */
  readonly groups: readonly number[];
  /** Device names (PCI addresses such as `0000:00:03.0`), for device-based backends (iommufd). */
  readonly devices: readonly string[];
}

/** A backend: what a user passes to {@link Container.open}. */
export interface BackendV1 {
  /** The SPI version the backend implements: core refuses another. */
  readonly specificationVersion: typeof SPECIFICATION_VERSION;
  /** Short name used in errors and logs, such as `'sim'`, `'smmu'`, `'pamu'`. */
  readonly name: string;
  /** Says whether the backend can run on this host; never throws for an expected absence. */
  probe(): Promise<ProbeResult>;
  /** Opens a container (an IOMMU context holding the given groups or devices). */
  open(request: OpenRequest): Promise<BackendHandleV1>;
}

/**
 * Groups and devices, resolved: a group with every member the container holds or would hold of it,
 * a device with its group. What {@link BackendHandleV1.doResolveMembers} answers and
 * {@link BackendHandleV1.doAttach} / {@link BackendHandleV1.doDetach} take.
 */
export interface Members {
  /** IOMMU group numbers, ascending. */
  readonly groups: readonly number[];
  /** Device names (PCI addresses), sorted. */
  readonly devices: readonly string[];
}

/**
 * What newcomers would bring to the container, read before they attach (sysfs, the platform), so
 * that core can refuse a conflict before the kernel sees it.
 */
export interface AttachPreview {
  /** Their reserved ranges, with kind and source; undefined when the backend cannot tell beforehand. */
  readonly reserved: readonly ReservedRange[] | undefined;
  /** The IOVA ranges their IOMMU can translate, when the backend can tell beforehand. */
  readonly ranges?: readonly IovaRange[];
}

/** A validated map request: `iova` and `memory.length` have the same size and pass every core check. */
export interface MapCall {
  /** Where to map. */
  readonly iova: IovaRange;
  /** What to map there. */
  readonly memory: HostMemory;
  /** The device's access rights. */
  readonly access: Access;
}

/** A validated geometry request for a windowed IOMMU. */
export interface GeometryCall {
  /** The new aperture (validated: a power of two, aligned to its size). */
  readonly aperture: IovaRange;
  /** The new window count (validated: a power of two up to the maximum). */
  readonly windowCount: number;
}

/**
 * A validated dirty-bitmap read: `iova` is whole pages of `pageSize`, a size the capability offers,
 * cuts no mapping, and its bitmap fits the capability's largest.
 */
export interface DirtyReadCall {
  /** The IOVA range the bitmap covers. */
  readonly iova: IovaRange;
  /** The page size one bit stands for. */
  readonly pageSize: bigint;
  /**
   * Where the kernel writes the bits, in its layout (bit n of the little-endian u64 word n / 64 is
   * page n): at least `ceil(pages / 64) * 8` bytes, 8-byte aligned; zeroed unless {@link zeroed}
   * says otherwise.
   */
  readonly bitmap: Uint8Array;
  /**
   * False only for a read into a reused bitmap (`read({ into })`) whose range the mappings cover
   * with no gap: the bytes are an earlier read's. A backend whose kernel writes every word of each
   * mapping's bits (type1's update_user_bitmap()) can leave them, sparing a pass over the bitmap;
   * one whose kernel ORs bits in (iommufd) zeroes them first. True for every dirty unmap.
   */
  readonly zeroed: boolean;
  /** Clear the dirty bits read (always true unless the capability says `readWithoutClear`). */
  readonly clear: boolean;
}

/** An open container as a backend sees it. Every method may throw an {@link IoasError}. */
export interface BackendHandleV1 {
  /** What the handle can do: fixed for the handle's life. */
  readonly capabilities: Capabilities;

  /** Current geometry. Core calls it at open and after every geometry change. */
  doGetGeometry(): Geometry;
  /** Reserved ranges of every group or device in the container, as the kernel reports them now. */
  doGetReserved(): readonly ReservedRange[];
  /** Maps host memory at a fixed IOVA; one call is one mapping. Leaves nothing behind on failure. */
  doMap(call: MapCall): void;
  /**
   * Unmaps every mapping inside `range` (core passes only ranges covering whole mappings unless
   * `partialUnmap`); returns the bytes the kernel reports unmapped.
   */
  doUnmap(range: IovaRange): bigint;
  /** Releases everything: mappings, MSI doorbells, file descriptors. Must not throw on a second call. */
  doClose(): void;

  /** Present exactly when `capabilities.settableGeometry`. */
  doSetGeometry?(call: GeometryCall): void;
  /** Present exactly when `capabilities.windows === 'kernel-allow-list'`; replaces the whole list. */
  doSetAllowedRanges?(ranges: readonly IovaRange[]): void;
  /** Present exactly when `capabilities.msi === 'explicit'`. */
  doListMsiDoorbells?(): readonly MsiDoorbell[];
  /** Present exactly when `capabilities.msi === 'explicit'`: maps doorbell `index` at `iova`. */
  doMapMsiDoorbell?(index: number, iova: bigint): void;
  /** Present exactly when `capabilities.msi === 'explicit'`: undoes {@link doMapMsiDoorbell}. */
  doUnmapMsiDoorbell?(index: number, iova: bigint): void;

  /** Present exactly when `capabilities.hotPlug`: the groups and devices in the container now. */
  doMembers?(): Members;
  /**
   * Present exactly when `capabilities.hotPlug`: what a request names, resolved as the backend
   * attaches and detaches (type1 and PAMU: whole groups, so a device brings its group's other
   * members; iommufd: devices, so a group means its devices bound to vfio-pci). Throws `not-found`
   * for a group or device that does not exist. Changes nothing.
   */
  doResolveMembers?(request: OpenRequest): Members;
  /** Present exactly when `capabilities.hotPlug`: what `members` would bring (changes nothing). */
  doPreviewAttach?(members: Members): AttachPreview;
  /**
   * Present exactly when `capabilities.hotPlug`: attaches `members` (resolved, none in the
   * container yet) to the live container, its mappings kept. All or nothing: on failure nothing
   * stays attached or open. Core re-reads the geometry and reserved ranges after it.
   */
  doAttach?(members: Members): void;
  /**
   * Present exactly when `capabilities.hotPlug`: detaches `members` (resolved, all in the container,
   * at least one device left behind). Mappings stay. Throws `in-use` while a device fd the backend
   * handed out for one of them is open. Core re-reads the geometry and reserved ranges after it.
   */
  doDetach?(members: Members): void;

  /**
   * Present exactly when `capabilities.dirtyTracking.supported`: starts dirty tracking (type1:
   * VFIO_IOMMU_DIRTY_PAGES START; iommufd: a dirty-tracking HWPT, enabled). All or nothing.
   */
  doDirtyStart?(): void;
  /** Present exactly when `capabilities.dirtyTracking.supported`: stops it. */
  doDirtyStop?(): void;
  /** Present exactly when `capabilities.dirtyTracking.supported`: writes the dirty bits of `call.iova`. */
  doDirtyRead?(call: DirtyReadCall): void;
  /**
   * Present exactly when `capabilities.dirtyTracking.supported`: unmaps `call.iova` (whole mappings,
   * as {@link doUnmap}) and writes the dirty bits of what it unmapped into `call.bitmap`; returns
   * the bytes unmapped. `call.clear` is true.
   */
  doDirtyUnmap?(call: DirtyReadCall): bigint;
}

/** The current backend interface. */
export type Backend = BackendV1;
/** The current handle interface. */
export type BackendHandle = BackendHandleV1;
