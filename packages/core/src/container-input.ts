import { IoasError } from './errors.js';
import { hex } from './format.js';
import { type IovaRange, U64_MAX } from './iova-range.js';
import type { Access, HostMemory, Mapping, U64Input } from './types.js';
import type { Backend } from './spi.js';

/** Options of {@link Container.open}. */
export interface ContainerOpenOptions {
  /** The backend that talks to the kernel (`smmu()`, `pamu()`) or stands in for it (`sim()`). */
  readonly backend: Backend;
  /** IOMMU group numbers, for group-based backends (VFIO type1, PAMU). */
  readonly groups?: readonly number[];
  /** Device names such as `0000:00:03.0`, for device-based backends (iommufd). */
  readonly devices?: readonly string[];
}

/** Input of {@link Container.attach} and {@link Container.detach}: at least one group or device. */
export interface MembersInput {
  /** IOMMU group numbers (type1, PAMU; on iommufd, every device of the group bound to vfio-pci). */
  readonly groups?: readonly number[];
  /** Device names such as `0000:00:04.0` (on type1 and PAMU, the device brings its whole group). */
  readonly devices?: readonly string[];
}

/** A range as users write it: a start and a size, or a start and an inclusive last address. */
export type RangeInput =
  | {
      /** First address. */
      readonly start: U64Input;
      /** Bytes in the range (positive). */
      readonly size: U64Input;
    }
  | {
      /** First address. */
      readonly start: U64Input;
      /** Last address, inclusive (so a range can end at 2^64-1). */
      readonly last: U64Input;
    };

/** Input of {@link Container.map}. */
export interface MapInput {
  /** Where to map; omitted: the container allocates a free, suitably aligned IOVA range. */
  readonly iova?: U64Input;
/** The host memory to map (what `allocateDmaMemory()` returns fits as it is). */
  readonly memory: {
    /** Process virtual address of the first byte (MAP_DMA's `vaddr`, IOAS_MAP's `user_va`). */
    readonly address: U64Input;
    /** Bytes to map: a multiple of the granule (the window size on a windowed IOMMU). */
    readonly length: U64Input;
    /** Size of the physically contiguous pages behind it (the hugepage size); windowed IOMMUs need it. */
    readonly contiguousPageSize?: U64Input;
  };
  /** Default: read and write. */
  readonly access?: Access;
}

/** Input of {@link Container.mapRegion}. */
export interface MapRegionInput extends MapInput {
  readonly iova: U64Input;
}

/** Result of {@link Container.mapRegion}. */
export interface MapRegionResult {
  /** The mappings made, in IOVA order. */
  readonly mappings: readonly Mapping[];
  /** Parts of the region not mapped because they are reserved or outside the usable ranges. */
  readonly skipped: readonly IovaRange[];
}

/** Input of {@link Container.allocate}. */
export interface AllocateInput {
  /** Bytes to allocate (a multiple of the mapping granule). */
  readonly size: U64Input;
  /** Power-of-two alignment of every returned range (default: the mapping granule). */
  readonly align?: U64Input;
  /** Highest address any returned range may reach, inclusive (`0xffffffffn`: below 4 GiB). */
  readonly limit?: U64Input;
  /** Require a single range (default false: several ranges may sum to `size`). */
  readonly contiguous?: boolean;
}

/** Input of {@link Container.setGeometry}. */
export interface SetGeometryInput {
/** The whole translatable range: a power of two of at least 4 KiB, aligned to its size. */
  readonly aperture: {
    /** First IOVA of the aperture. */
    readonly start: U64Input;
    /** Bytes in the aperture. */
    readonly size: U64Input;
  };
  /** Windows to cut the aperture into: a power of two up to `geometry().windows.maxCount`. */
  readonly windowCount: number;
}

/** What {@link Container.unmap} accepts: a mapping, `{ iova, size }`, or a range. */
export type UnmapInput =
  | Mapping
  | {
      /** First IOVA to unmap. */
      readonly iova: U64Input;
      /** Bytes to unmap. */
      readonly size: U64Input;
    }
  | RangeInput;

/** True for a {@link Mapping} given back to `unmap` (rather than `{ iova, size }` or a range). */
export function isMapping(input: unknown): input is Mapping {
  return typeof input === 'object' && input !== null && 'iova' in input && typeof (input as { iova: unknown }).iova === 'object';
}

/** Host memory as the record keeps it: without an absent `contiguousPageSize` key. */
export function toHostMemory(memory: { address: bigint; length: bigint; contiguousPageSize?: bigint | undefined }): HostMemory {
  return memory.contiguousPageSize === undefined
    ? { address: memory.address, length: memory.length }
    : { address: memory.address, length: memory.length, contiguousPageSize: memory.contiguousPageSize };
}

/** The last address of `length` bytes at `start`; throws `invalid-argument` past 2^64-1. */
export function checkedLast(start: bigint, length: bigint): bigint {
  const last = start + length - 1n;
  if (last > U64_MAX) throw new IoasError('invalid-argument', `${hex(length)} bytes at IOVA ${hex(start)} wrap past 2^64-1`);
  return last;
}

const ACCESS: readonly Access[] = [
  Object.freeze({ read: false, write: false }),
  Object.freeze({ read: true, write: false }),
  Object.freeze({ read: false, write: true }),
  Object.freeze({ read: true, write: true }),
];

/** The access object for `read` and `write`: one frozen object each, shared by every mapping. */
export function accessOf(read: boolean, write: boolean): Access {
  return ACCESS[(read ? 1 : 0) | (write ? 2 : 0)]!;
}

/** Read and write, the default access. */
export const READ_WRITE: Access = accessOf(true, true);
