import { BTreeMap, ERRNO } from '@ioas/core';
import { KernelError } from './kernel-error.js';

const PAGE = 0x1000n;

/** A region of simulated process memory backed by simulated physical pages. */
export interface SimRegion {
  /** Process virtual address of the first byte. */
  readonly address: bigint;
  /** Bytes. */
  readonly length: bigint;
  /** Size of the pages backing it: 4 KiB pages are scattered in physical memory; hugepages are contiguous. */
  readonly pageSize: bigint;
}

interface RegionState extends SimRegion {
  /** First physical address of each page (for scattered 4 KiB pages: a permutation of a frame block). */
  readonly physicalBase: bigint;
  /** For 4 KiB pages: frames of the block, a power of two; page i lives in frame (i * MULTIPLIER) mod blockFrames. */
  readonly blockFrames: bigint;
  /** Bytes written so far, per 4 KiB page; untouched pages read as zeros. */
  readonly pages: Map<bigint, Uint8Array>;
  /** Dense regions and registered caller buffers: the bytes live in this buffer (undefined once a registered one is collected). */
  readonly buffer?: Uint8Array | undefined;
  /** A registered caller buffer, held weakly: the region lives as long as the buffer does. */
  readonly registered?: WeakRef<Uint8Array>;
}

/** 2^53: numbers below it are exact integers. */
const EXACT = 1n << 53n;

/** Odd, so that multiplying page numbers by it modulo a power of two is a bijection (scattered but distinct frames). */
const MULTIPLIER = 0x9e3779b1n;

/**
 * Simulated host memory: what the process sees (virtual addresses, bytes) and what the IOMMU sees
 * (physical addresses). Deterministic: the same allocations give the same addresses.
 */
export class SimMemory {
  private readonly regions = new BTreeMap<RegionState>();
  private nextVirtual = 0x7f00_0000_0000n;
  private nextPhysical = 0x1_0000_0000n;
  private buffers = new WeakMap<Uint8Array, bigint>();
  /**
   * Drops the region of a registered buffer once the garbage collector takes the buffer, as a
   * process's memory goes with the object that owned it: an SDK that hands the kernel a fresh
   * buffer per call (a dirty bitmap per read) must not grow this map forever. Addresses are never
   * reused, so a late callback cannot drop a newer region.
   */
  private readonly collected = new FinalizationRegistry<bigint>((address) => {
    if (this.regions.get(address)?.registered?.deref() === undefined) this.free(address);
  });
  /** The region {@link isMappedNumber} found last, as numbers: [start, end); empty when end <= start. */
  private cachedStart = 0;
  private cachedEnd = 0;

  /**
   * Allocates `length` bytes backed by pages of `pageSize` (4 KiB, or a hugepage size such as 2 MiB,
   * 64 MiB or 1 GiB). Hugepages are physically contiguous and naturally aligned, in physical and in
   * virtual address space, as hugetlbfs gives them. With `dense`, the bytes live in one buffer that
   * {@link view} can hand out (what mmap gives a process); otherwise pages are created as written.
   */
  allocate(length: bigint, pageSize: bigint = PAGE, dense = false): SimRegion {
    if (pageSize < PAGE || (pageSize & (pageSize - 1n)) !== 0n) throw new RangeError(`page size ${pageSize} is not a power of two >= 4 KiB`);
    if (length <= 0n || length % pageSize !== 0n) throw new RangeError(`length ${length} is not a positive multiple of the page size ${pageSize}`);
    const address = alignUp(this.nextVirtual, pageSize);
    this.nextVirtual = address + length + pageSize; // leave an unmapped guard gap after each region
    const buffer = dense ? new Uint8Array(Number(length)) : undefined;
    this.regions.set(address, this.layout(address, length, pageSize, buffer));
    return { address, length, pageSize };
  }

  /** Makes a caller's buffer addressable (the syscall face's `addressOf`); returns its address. */
  register(buffer: Uint8Array): bigint {
    const known = this.buffers.get(buffer);
    if (known !== undefined && this.regions.get(known)?.buffer === buffer) return known;
    const length = BigInt(Math.max(buffer.byteLength, 1));
    const address = alignUp(this.nextVirtual, PAGE);
    this.nextVirtual = address + alignUp(length, PAGE) + PAGE;
    const registered = new WeakRef(buffer);
    const state = this.layout(address, length, PAGE, undefined);
    this.regions.set(address, {
      ...state,
      registered,
      get buffer() {
        return registered.deref();
      },
    });
    this.buffers.set(buffer, address);
    this.collected.register(buffer, address);
    return address;
  }

  /** A live view of the bytes of a dense region (see {@link allocate}); throws EFAULT otherwise. */
  view(address: bigint, length: number): Uint8Array {
    const region = this.state(address);
    if (region?.buffer === undefined || address + BigInt(length) > region.address + region.length) {
      throw new KernelError(ERRNO.EFAULT, 'memory', `no mapped buffer at ${address.toString(16)}+${length.toString(16)}`);
    }
    const offset = Number(address - region.address);
    return region.buffer.subarray(offset, offset + length);
  }

  /** Places a region in simulated physical memory: hugepages contiguous, 4 KiB pages scattered. */
  private layout(address: bigint, length: bigint, pageSize: bigint, buffer: Uint8Array | undefined): RegionState {
    let physicalBase: bigint;
    let blockFrames = 0n;
    if (pageSize > PAGE) {
      physicalBase = alignUp(this.nextPhysical, pageSize);
      this.nextPhysical = physicalBase + alignUp(length, pageSize);
    } else {
      const frames = alignUp(length, PAGE) / PAGE;
      blockFrames = 1n;
      while (blockFrames < frames * 4n) blockFrames <<= 1n;
      physicalBase = alignUp(this.nextPhysical, PAGE);
      this.nextPhysical = physicalBase + blockFrames * PAGE;
    }
    return buffer === undefined
      ? { address, length, pageSize, physicalBase, blockFrames, pages: new Map() }
      : { address, length, pageSize, physicalBase, blockFrames, pages: new Map(), buffer };
  }

  /** Frees a region returned by {@link allocate} or {@link register}; returns false when unknown. */
  free(address: bigint): boolean {
    this.cachedStart = this.cachedEnd = 0;
    return this.regions.delete(address);
  }

  /** The region containing `address`, or undefined. */
  region(address: bigint): SimRegion | undefined {
    return this.state(address);
  }

  /** True when [address, address + length) lies in one region. */
  isMapped(address: bigint, length: bigint): boolean {
    const region = this.state(address);
    return region !== undefined && address + length <= region.address + region.length;
  }

  /**
   * {@link isMapped} for the map hot paths, with integers below 2^53: the region found last is
   * kept as numbers, so that maps of the same buffer (the common case) allocate nothing.
   */
  isMappedNumber(address: number, length: number): boolean {
    if (length > 0 && address >= this.cachedStart && address + length <= this.cachedEnd) return true;
    if (length <= 0) return this.isMapped(BigInt(address), BigInt(length));
    const region = this.state(BigInt(address));
    if (region === undefined) return false;
    const end = region.address + region.length;
    if (end <= EXACT) {
      this.cachedStart = Number(region.address);
      this.cachedEnd = Number(end);
    }
    return BigInt(address) + BigInt(length) <= end;
  }

  /** The physical address behind a virtual one, or undefined when unmapped. */
  physical(address: bigint): bigint | undefined {
    const region = this.state(address);
    if (region === undefined) return undefined;
    const offset = address - region.address;
    if (region.pageSize > PAGE) return region.physicalBase + offset;
    const page = offset / PAGE;
    const frame = (page * MULTIPLIER) % region.blockFrames;
    return region.physicalBase + frame * PAGE + (offset % PAGE);
  }

  /**
   * True when [address, address + length) is backed by one physically contiguous run of memory
   * (what each PAMU window needs).
   */
  isPhysicallyContiguous(address: bigint, length: bigint): boolean {
    if (!this.isMapped(address, length)) return false;
    const first = this.physical(address);
    if (first === undefined) return false;
    for (let offset = alignUp(address, PAGE) - address; offset < length; offset += PAGE) {
      if (this.physical(address + offset) !== first + offset) return false;
    }
    return true;
  }

  /** Reads bytes; throws EFAULT when any byte is unmapped. */
  read(address: bigint, length: number): Uint8Array {
    const result = new Uint8Array(length);
    this.copy(address, length, (region, offset, page, pageOffset, count, done) => {
      if (region.buffer !== undefined) {
        result.set(region.buffer.subarray(Number(offset), Number(offset) + count), done);
      } else {
        const bytes = region.pages.get(page);
        if (bytes !== undefined) result.set(bytes.subarray(pageOffset, pageOffset + count), done);
      }
    });
    return result;
  }

  /** Writes bytes; throws EFAULT when any byte is unmapped. */
  write(address: bigint, data: Uint8Array): void {
    this.copy(address, data.length, (region, offset, page, pageOffset, count, done) => {
      const chunk = data.subarray(done, done + count);
      if (region.buffer !== undefined) {
        region.buffer.set(chunk, Number(offset));
      } else {
        let bytes = region.pages.get(page);
        if (bytes === undefined) {
          bytes = new Uint8Array(Number(PAGE));
          region.pages.set(page, bytes);
        }
        bytes.set(chunk, pageOffset);
      }
    });
  }

  private copy(
    address: bigint,
    length: number,
    step: (region: RegionState, offset: bigint, page: bigint, pageOffset: number, count: number, done: number) => void,
  ): void {
    if (!this.isMapped(address, BigInt(length))) throw new KernelError(ERRNO.EFAULT, 'memory', `bad address ${address.toString(16)}`);
    const region = this.state(address)!;
    let done = 0;
    while (done < length) {
      const offset = address - region.address + BigInt(done);
      const page = offset / PAGE;
      const pageOffset = Number(offset % PAGE);
      const count = Math.min(length - done, Number(PAGE) - pageOffset);
      step(region, offset, page, pageOffset, count, done);
      done += count;
    }
  }

  private state(address: bigint): RegionState | undefined {
    const entry = this.regions.floor(address);
    if (entry === undefined) return undefined;
    const region = entry.value;
    if (address >= region.address + region.length) return undefined;
    // A registered buffer the collector took before its callback ran: nothing is there.
    if (region.registered !== undefined && region.registered.deref() === undefined) return undefined;
    return region;
  }
}

function alignUp(value: bigint, align: bigint): bigint {
  const remainder = value % align;
  return remainder === 0n ? value : value + align - remainder;
}
