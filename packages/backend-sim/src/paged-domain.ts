import { BTreeMap, PageRangeMap, type IovaRange } from '@ioas/core';

/** One IOMMU mapping of a paged domain: IOVA range to process memory. */
export interface PagedMapping {
  /** First IOVA. */
  readonly start: bigint;
  /** Last IOVA, inclusive. */
  readonly last: bigint;
  /** Process virtual address of the first byte. */
  readonly vaddr: bigint;
  /** The device may read. */
  readonly read: boolean;
  /** The device may write. */
  readonly write: boolean;
}

/** The result of translating a device access through an IOMMU domain. */
export type Translation =
  | {
      /** Lands in process memory. */
      readonly kind: 'memory';
      /** The process virtual address reached. */
      readonly vaddr: bigint;
      /** Whether a write is allowed there. */
      readonly writable: boolean;
    }
  | {
      /** Reaches an MSI doorbell. */
      readonly kind: 'doorbell';
      /** The doorbell's physical address. */
      readonly physical: bigint;
    }
  | {
      /** The IOMMU faults. */
      readonly kind: 'fault';
      /** Nothing mapped there, or mapped without this access. */
      readonly reason: 'unmapped' | 'permission';
    };

/** Anything a device can be attached to for DMA: a type1 domain, an iommufd IOAS, a PAMU domain. */
export interface DmaDomain {
  /** Translates one access of `length` bytes (within one page) at `iova`. */
  translate(iova: bigint, write: boolean): Translation;
  /**
   * Kernel-managed MSI (ARM SW_MSI): maps the doorbell page into the domain's software MSI window
   * and returns the IOVA the device must write to; undefined when this domain has no such window.
   */
  mapSoftwareMsi?(doorbell: bigint): bigint | undefined;
  /**
   * A device wrote `length` bytes at `iova`, every byte of which translated to writable memory: a
   * page table that records dirty bits (an iommufd HWPT allocated with dirty tracking) sets them.
   * Absent on domains that record none (type1, PAMU, an automatic iommufd domain).
   */
  recordWrite?(iova: bigint, length: number): void;
}

const PAGE = 0x1000n;
/** The shift from an IOVA to its page number. */
const PAGE_SHIFT = 12n;
/** Numbers are exact integers below this. */
const EXACT = 2 ** 53;
/** `flags` bits of a page-keyed mapping. */
const READ = 1;
const WRITE = 2;

function flagsOf(read: boolean, write: boolean): number {
  return (read ? READ : 0) | (write ? WRITE : 0);
}

/** True when a mapping can live in the page-keyed table: whole 4 KiB pages, vaddr an exact number. */
function pageShaped(mapping: PagedMapping): boolean {
  return mapping.start % PAGE === 0n && (mapping.last + 1n) % PAGE === 0n && mapping.vaddr < BigInt(EXACT);
}

/**
 * The page-table side of a paged IOMMU domain (ARM SMMU, VT-d): the live mappings, plus the MSI
 * doorbell pages the kernel maps into the software MSI window itself (iommu_dma_get_msi_page in
 * drivers/iommu/dma-iommu.c).
 *
 * Mappings of whole 4 KiB pages (every type1 mapping: its granule is at least 4 KiB; every iommufd
 * area once a device is attached) with a virtual address below 2^53 (every user address) live in
 * core's `PageRangeMap` keyed by page number: no object or bigint per mapping (30-40 bytes each at
 * a million), and number-based methods (`overlapsPages`, `addPages`, `removePages`) for the
 * map/unmap hot paths, which allocate nothing. Anything else (the byte-granular areas iommufd
 * allows on an IOAS with no device attached, a vaddr at or above 2^53) lives in a B+tree of
 * {@link PagedMapping} objects by byte address; every query consults both, so behaviour is the
 * same whichever table holds a mapping. {@link PagedMapping} objects are built on the way out, on
 * the cold paths (`find` for DMA translation, `overlapping`, `all`).
 */
export class PagedDomain implements DmaDomain {
  /** Page-shaped mappings: [first page, last page] -> vaddr, flags READ | WRITE. */
  private readonly pages = new PageRangeMap();
  /** Every other mapping, by first IOVA. */
  private readonly others = new BTreeMap<PagedMapping>();
  /** Doorbell pages the kernel mapped: IOVA page -> physical page. */
  private readonly msiPages = new Map<bigint, bigint>();

  constructor(private readonly softwareMsiWindow: IovaRange | undefined) {}

  /** Mappings held. */
  get count(): number {
    return this.pages.size + this.others.size;
  }

  /** The mapping containing `iova`, if any. */
  find(iova: bigint): PagedMapping | undefined {
    const pages = this.pages;
    const page = Number(iova >> PAGE_SHIFT);
    if (pages.floor(page) && pages.foundLast >= page) return this.foundMapping();
    if (this.others.size === 0) return undefined;
    const entry = this.others.floor(iova);
    return entry !== undefined && entry.value.last >= iova ? entry.value : undefined;
  }

  /** True when any mapping shares an address with [start, last]. */
  overlaps(start: bigint, last: bigint): boolean {
    if (this.pages.overlaps(Number(start >> PAGE_SHIFT), Number(last >> PAGE_SHIFT))) return true;
    return this.others.size > 0 && this.othersOverlap(start, last);
  }

  /**
   * True when any mapping shares an address with pages `[first, last]` (page numbers, so the bytes
   * `[first * 4096, last * 4096 + 4095]`). Allocates nothing while every mapping is page-shaped.
   */
  overlapsPages(first: number, last: number): boolean {
    if (this.pages.overlaps(first, last)) return true;
    return this.others.size > 0 && this.othersOverlap(BigInt(first) << PAGE_SHIFT, (BigInt(last + 1) << PAGE_SHIFT) - 1n);
  }

  /** Mappings that share an address with [start, last], in order. */
  overlapping(start: bigint, last: bigint): PagedMapping[] {
    const result: PagedMapping[] = [];
    const lastPage = Number(last >> PAGE_SHIFT);
    this.pages.forEachFrom(
      Number(start >> PAGE_SHIFT),
      (first, final, vaddr, flags) => {
        if (first > lastPage) return false;
        result.push(mappingOf(first, final, vaddr, flags));
        return true;
      },
      true,
    );
    if (this.others.size === 0) return result;
    const others: PagedMapping[] = [];
    const before = this.others.floor(start);
    const from = before !== undefined && before.value.last >= start ? before.key : start;
    this.others.forEachFrom(from, (key, mapping) => {
      if (key > last) return false;
      others.push(mapping);
      return true;
    });
    return merge(result, others);
  }

  /** Adds a mapping (the caller has checked overlaps). */
  add(mapping: PagedMapping): void {
    if (pageShaped(mapping)) {
      this.pages.set(Number(mapping.start >> PAGE_SHIFT), Number(mapping.last >> PAGE_SHIFT), Number(mapping.vaddr), flagsOf(mapping.read, mapping.write));
    } else {
      this.others.set(mapping.start, mapping);
    }
  }

  /**
   * Adds a mapping of pages `[first, last]` at `vaddr` (a number below 2^53); the caller has
   * checked overlaps. Allocates nothing (but a new tree node now and then).
   */
  addPages(first: number, last: number, vaddr: number, read: boolean, write: boolean): void {
    this.pages.set(first, last, vaddr, flagsOf(read, write));
  }

  /**
   * {@link overlapsPages} and {@link addPages} in one step (one tree descent): adds the mapping and
   * returns true when nothing overlaps pages `[first, last]`; returns false and adds nothing
   * otherwise. Allocates nothing.
   */
  addPagesIfFree(first: number, last: number, vaddr: number, read: boolean, write: boolean): boolean {
    if (this.others.size > 0 && this.othersOverlap(BigInt(first) << PAGE_SHIFT, (BigInt(last + 1) << PAGE_SHIFT) - 1n)) return false;
    return this.pages.setIfFree(first, last, vaddr, flagsOf(read, write));
  }

  /** Removes a mapping. */
  remove(mapping: PagedMapping): void {
    if (pageShaped(mapping)) this.pages.delete(Number(mapping.start >> PAGE_SHIFT));
    else this.others.delete(mapping.start);
  }

  /**
   * Removes the mapping of exactly pages `[first, last]`; false (and nothing removed) when no
   * mapping starts at `first` and ends at `last`. Allocates nothing.
   */
  removePages(first: number, last: number): boolean {
    return this.pages.deleteExact(first, last);
  }

  /** Removes every mapping. */
  clear(): void {
    this.pages.clear();
    this.others.clear();
    this.msiPages.clear();
  }

  /** Every mapping, in IOVA order. */
  all(): PagedMapping[] {
    const result: PagedMapping[] = [];
    this.pages.forEachFrom(0, (first, last, vaddr, flags) => {
      result.push(mappingOf(first, last, vaddr, flags));
    });
    return this.others.size === 0 ? result : merge(result, [...this.others.values()]);
  }

  translate(iova: bigint, write: boolean): Translation {
    if (this.msiPages.size > 0) {
      const doorbell = this.msiPages.get(iova - (iova % PAGE));
      if (doorbell !== undefined) return { kind: 'doorbell', physical: doorbell + (iova % PAGE) };
    }
    const mapping = this.find(iova);
    if (mapping === undefined) return { kind: 'fault', reason: 'unmapped' };
    if (write ? !mapping.write : !mapping.read) return { kind: 'fault', reason: 'permission' };
    return { kind: 'memory', vaddr: mapping.vaddr + (iova - mapping.start), writable: mapping.write };
  }

  mapSoftwareMsi(doorbell: bigint): bigint | undefined {
    const window = this.softwareMsiWindow;
    if (window === undefined) return undefined;
    const page = doorbell - (doorbell % PAGE);
    for (const [iova, physical] of this.msiPages) if (physical === page) return iova + (doorbell % PAGE);
    // The kernel hands out doorbell pages from the bottom of the window (iommu_dma_get_msi_page).
    const iova = window.start + BigInt(this.msiPages.size) * PAGE;
    this.msiPages.set(iova, page);
    return iova + (doorbell % PAGE);
  }

  private foundMapping(): PagedMapping {
    const pages = this.pages;
    return mappingOf(pages.foundStart, pages.foundLast, pages.foundValue, pages.foundFlags);
  }

  private othersOverlap(start: bigint, last: bigint): boolean {
    const entry = this.others.floor(last);
    return entry !== undefined && entry.value.last >= start;
  }
}

function mappingOf(first: number, last: number, vaddr: number, flags: number): PagedMapping {
  return {
    start: BigInt(first) << PAGE_SHIFT,
    last: (BigInt(last + 1) << PAGE_SHIFT) - 1n,
    vaddr: BigInt(vaddr),
    read: (flags & READ) !== 0,
    write: (flags & WRITE) !== 0,
  };
}

/** Two lists of disjoint mappings, each in IOVA order, as one list in IOVA order. */
function merge(a: PagedMapping[], b: PagedMapping[]): PagedMapping[] {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const result: PagedMapping[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) result.push(a[i]!.start < b[j]!.start ? a[i++]! : b[j++]!);
  while (i < a.length) result.push(a[i++]!);
  while (j < b.length) result.push(b[j++]!);
  return result;
}
