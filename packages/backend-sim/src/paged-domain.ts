import { BTreeMap, type IovaRange } from '@ioas/core';

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
}

const PAGE = 0x1000n;

/**
 * The page-table side of a paged IOMMU domain (ARM SMMU, VT-d): the live mappings, kept in a B+tree
 * so that lookups stay logarithmic with a million mappings, plus the MSI doorbell pages the kernel
 * maps into the software MSI window itself (iommu_dma_get_msi_page in drivers/iommu/dma-iommu.c).
 */
export class PagedDomain implements DmaDomain {
  private readonly mappings = new BTreeMap<PagedMapping>();
  /** Doorbell pages the kernel mapped: IOVA page -> physical page. */
  private readonly msiPages = new Map<bigint, bigint>();

  constructor(private readonly softwareMsiWindow: IovaRange | undefined) {}

  /** Mappings held. */
  get count(): number {
    return this.mappings.size;
  }

  /** The mapping containing `iova`, if any. */
  find(iova: bigint): PagedMapping | undefined {
    const entry = this.mappings.floor(iova);
    return entry !== undefined && entry.value.last >= iova ? entry.value : undefined;
  }

  /** True when any mapping shares an address with [start, last]. */
  overlaps(start: bigint, last: bigint): boolean {
    const entry = this.mappings.floor(last);
    return entry !== undefined && entry.value.last >= start;
  }

  /** Mappings that share an address with [start, last], in order. */
  overlapping(start: bigint, last: bigint): PagedMapping[] {
    const result: PagedMapping[] = [];
    const before = this.mappings.floor(start);
    const from = before !== undefined && before.value.last >= start ? before.key : start;
    this.mappings.forEachFrom(from, (key, mapping) => {
      if (key > last) return false;
      result.push(mapping);
      return true;
    });
    return result;
  }

  /** Adds a mapping (the caller has checked overlaps). */
  add(mapping: PagedMapping): void {
    this.mappings.set(mapping.start, mapping);
  }

  /** Removes a mapping. */
  remove(mapping: PagedMapping): void {
    this.mappings.delete(mapping.start);
  }

  /** Removes every mapping. */
  clear(): void {
    this.mappings.clear();
    this.msiPages.clear();
  }

  /** Every mapping, in IOVA order. */
  all(): PagedMapping[] {
    return [...this.mappings.values()];
  }

  translate(iova: bigint, write: boolean): Translation {
    const doorbell = this.msiPages.get(iova - (iova % PAGE));
    if (doorbell !== undefined) return { kind: 'doorbell', physical: doorbell + (iova % PAGE) };
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
}
