/**
 * The dirty-pages family: type1's dirty tracking through VFIO_IOMMU_DIRTY_PAGES (START, STOP and
 * GET_BITMAP, each twice and out of order, with bad flags and argsz) and VFIO_IOMMU_UNMAP_DMA with
 * VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, over mappings at any page of a low IOVA window, so that a
 * mapping's first bit lands anywhere in a bitmap word. Bitmaps are user memory pre-filled with a
 * pattern (a `poke`) and read back after the call (a `peek`), so that what the kernel writes, what
 * it ORs in and what it leaves shows bit by bit; ranges that start in a gap, span several mappings,
 * cut one, a page size other than the smallest, a bitmap too small, an argsz too small, a dangling
 * bitmap pointer (EFAULT), and tracking off or a v1 container (EACCES).
 *
 * vfio-pci pins no pages (its group never sets `pinned_page_dirty_scope`), so every page of every
 * mapping a range covers is reported dirty, on every read; what differs between reads is the bits
 * around them (whole words written, the previous word ORed in) and what a read at a shift leaves
 * in the kernel's own bitmap for the next one. The generator keeps what it expects of the state
 * only to aim two calls in three at success; what they answer is the kernel's.
 */
import type { Step, StepValue } from './steps.js';
import { generator } from '../differential.js';

const PAGE = 0x1000n;
/** The IOVA window the family maps in: low memory, clear of every lane's MSI window and reserved ranges. */
const BASE = 0x10_0000n;
/** Pages of the window. */
const WINDOW = 256;
/** Pages of the memory mappings are made from. */
const RAM = 80;
const DIRTY = { START: 1, STOP: 2, GET_BITMAP: 4 } as const;
const UNMAP_FLAGS = { DIRTY_BITMAP: 1, ALL: 2, VADDR: 4 } as const;
const MASK64 = (1n << 64n) - 1n;

type Random = ReturnType<typeof generator>;

function pick<T>(random: Random, values: readonly T[]): T {
  return values[random.int(0, values.length - 1)]!;
}

function ioctl(fd: string, name: string, fields?: Record<string, StepValue>, extra: Partial<Extract<Step, { op: 'ioctl' }>> = {}): Step {
  return { op: 'ioctl', fd, ioctl: name, ...(fields === undefined ? {} : { fields }), ...extra };
}

/** DIRTY_BITMAP_BYTES(pages): whole u64 words. */
function bitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/** A mapping the generator expects, in pages from BASE. */
interface Mapping {
  readonly first: number;
  readonly pages: number;
}

/** A range of the window in pages from BASE (negative: below BASE, where nothing is mapped). */
interface Range {
  readonly first: number;
  readonly pages: number;
  /** The mappings it covers whole. */
  readonly covers: Mapping[];
}

/**
 * Sequence 1, written by hand (so that every lane's transcript holds the kernel's answers to it):
 * GET_BITMAP before START, STOP before START, START twice, bad flags and argsz; two mappings read
 * at bits 7 and 22 of a word holding a pattern (the pattern's word ORed in, whole); the read's
 * carried bits shown by a read at bit 0; a dangling bitmap at a shift (EFAULT), whose shift the
 * unmap's bitmap then shows; UNMAP with the bitmap and ALL; STOP, then an unmap with the bitmap
 * (EINVAL); START again, with fresh bitmaps.
 */
export function dirtyHandSequence(): Step[] {
  const get = (iova: bigint, size: bigint, extra: { pgsize?: bigint; bytes?: bigint; argsz?: number; bitmap?: string } = {}): Step =>
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.GET_BITMAP, ...(extra.argsz === undefined ? {} : { argsz: extra.argsz }) }, { words: [iova, size, extra.pgsize ?? PAGE, extra.bytes ?? 8n, { mapping: extra.bitmap ?? 'bm' }] });
  const peek: Step = { op: 'peek', mapping: 'bm', offset: 0, length: 16 };
  return [
    { op: 'mmap', pages: 4, as: 'ram' },
    { op: 'mmap', pages: 1, as: 'bm' },
    { op: 'mmap', pages: 1, as: 'gone' },
    { op: 'open', path: '/dev/vfio/vfio', as: 'container' },
    { op: 'open', path: '/dev/vfio/{group}', as: 'group' },
    ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'container' } }),
    ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: 3 }),
    ioctl('container', 'VFIO_IOMMU_MAP_DMA', { flags: 3, vaddr: { mapping: 'ram' }, iova: 0x13_1000n, size: 0x2000n }),
    ioctl('container', 'VFIO_IOMMU_MAP_DMA', { flags: 3, vaddr: { mapping: 'ram', offset: 0x2000n }, iova: 0x14_0000n, size: 0x1000n }),
    get(0x13_1000n, 0x2000n),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.STOP }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START | DIRTY.STOP }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START, argsz: 4 }),
    { op: 'poke', mapping: 'bm', words: [0x8000_0000_0000_0001n, 0xa5a5_a5a5_a5a5_a5a5n] },
    // From 0x12a000: the 2-page mapping at bit 7, the 1-page one at bit 22.
    get(0x12_a000n, 0x1_7000n),
    peek,
    get(0x12_a000n, 0x1_7000n, { pgsize: 0x2000n }),
    get(0x12_a000n, 0x1_7000n, { bytes: 0n }),
    get(0x13_2000n, 0x1000n),
    get(0x12_a000n, 0x1_7000n, { argsz: 47 }),
    { op: 'poke', mapping: 'bm', words: [0n, 0n] },
    get(0x13_1000n, 0x2000n),
    peek,
    { op: 'munmap', mapping: 'gone' },
    get(0x12_a000n, 0x9000n, { bitmap: 'gone' }),
    { op: 'poke', mapping: 'bm', words: [0x5555_5555_5555_5555n, 0x5555_5555_5555_5555n] },
    ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.DIRTY_BITMAP, iova: 0x13_1000n, size: 0x2000n }, { words: [PAGE, 8n, { mapping: 'bm' }] }),
    peek,
    ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.DIRTY_BITMAP | UNMAP_FLAGS.ALL, iova: 0n, size: 0n }, { words: [PAGE, 8n, { mapping: 'bm' }] }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.STOP }),
    ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.DIRTY_BITMAP, iova: 0x14_0000n, size: 0x1000n }, { words: [PAGE, 8n, { mapping: 'bm' }] }),
    ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START }),
    { op: 'poke', mapping: 'bm', words: [0xa5a5_a5a5_a5a5_a5a5n, 0n] },
    get(0x12_a000n, 0x1_7000n),
    peek,
    { op: 'close', fd: 'group' },
    { op: 'close', fd: 'container' },
  ];
}

/** The steps of sequence `seed` (type1 only: iommufd's dirty tracking is another family's); sequence 1 is {@link dirtyHandSequence}. */
export function dirtySequence(seed: number): Step[] {
  if (seed === 1) return dirtyHandSequence();
  const random = generator(seed + 0xd1_27e5);
  const steps: Step[] = [
    { op: 'mmap', pages: RAM, as: 'ram' },
    { op: 'mmap', pages: 2, as: 'bm' },
    { op: 'mmap', pages: 1, as: 'gone' },
  ];
  // Mostly v2; a v1 container (type 1) has no dirty tracking: EACCES.
  const v2 = random.next() < 0.88;
  const version = v2 ? 3 : 1;
  steps.push({ op: 'open', path: '/dev/vfio/vfio', as: 'container' });
  steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'group' });
  if (random.next() < 0.3) steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'container' } }));
  steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: version }));

  let mapped: Mapping[] = [];
  let tracking = false;
  let gone = false;
  /** Whether `bm` holds a pattern already (a read may then keep the previous read's bits). */
  let poked = false;

  const sorted = () => [...mapped].sort((a, b) => a.first - b.first);
  const free = (first: number, pages: number) => first >= 0 && first + pages <= WINDOW && mapped.every((m) => first + pages <= m.first || m.first + m.pages <= first);
  const sizes = [1, 1, 2, 3, 4, 5, 7, 8, 16, 63, 64, 65, 70];

  const map = (): void => {
    const pages = pick(random, sizes);
    let first = random.int(0, WINDOW - pages);
    for (let attempt = 0; attempt < 8 && !free(first, pages); attempt++) first = random.int(0, WINDOW - pages);
    const ok = free(first, pages);
    const vaddr = { mapping: 'ram', offset: BigInt(random.int(0, RAM - pages)) * PAGE };
    steps.push(ioctl('container', 'VFIO_IOMMU_MAP_DMA', { flags: 3, vaddr, iova: BASE + BigInt(first) * PAGE, size: BigInt(pages) * PAGE }));
    if (ok) mapped.push({ first, pages });
  };

  // A few mappings first, sometimes tracking at once.
  for (let count = random.int(1, 3); count > 0; count--) map();
  if (v2 && random.next() < 0.5) {
    steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START }));
    tracking = true;
  }

  /** A range of whole mappings (a run of them in IOVA order), often with gaps before and after. */
  const wholeRange = (): Range => {
    const list = sorted();
    if (list.length === 0 || random.next() < 0.08) {
      // Nothing mapped in it: below the window, or a free stretch.
      const pages = random.int(1, 40);
      let first = random.int(-64, WINDOW - pages);
      for (let attempt = 0; attempt < 8 && !(first < 0 ? first + pages <= 0 || free(0, first + pages) : free(first, pages)); attempt++) first = random.int(-64, WINDOW - pages);
      return { first, pages, covers: [] };
    }
    const from = random.int(0, list.length - 1);
    const to = random.next() < 0.6 ? from : random.int(from, list.length - 1);
    const before = from === 0 ? list[from]!.first + 64 : list[from]!.first - (list[from - 1]!.first + list[from - 1]!.pages);
    const after = (to === list.length - 1 ? WINDOW + 64 : list[to + 1]!.first) - (list[to]!.first + list[to]!.pages);
    const lead = random.next() < 0.55 ? random.int(0, Math.min(before, 130)) : 0;
    const trail = random.next() < 0.35 ? random.int(0, Math.min(after, 70)) : 0;
    const first = list[from]!.first - lead;
    const last = list[to]!.first + list[to]!.pages + trail;
    return { first, pages: last - first, covers: list.slice(from, to + 1) };
  };

  /** A range that cuts a mapping at its start or its end (EINVAL), when one has two pages or more. */
  const cuttingRange = (): Range | undefined => {
    const candidates = mapped.filter((m) => m.pages > 1);
    if (candidates.length === 0) return undefined;
    const m = pick(random, candidates);
    const cut = random.int(1, m.pages - 1);
    return random.next() < 0.5 ? { first: m.first + cut, pages: m.pages - cut, covers: [] } : { first: m.first, pages: cut, covers: [] };
  };

  const iovaOf = (first: number): bigint => (BASE + BigInt(first) * PAGE) & MASK64;

  /** Pokes a pattern over the bitmap's words (and the one after), sometimes keeping what is there. */
  const prefill = (bytes: number, offset: number): void => {
    if (poked && random.next() < 0.25) return;
    const words = bytes / 8 + 1;
    const kind = random.int(0, 5);
    const word = (): bigint => {
      switch (kind) {
        case 0:
          return 0n;
        case 1:
          return MASK64;
        case 2:
          return 0xa5a5_a5a5_a5a5_a5a5n;
        case 3:
          return 0x8000_0000_0000_0001n;
        default:
          return (BigInt(random.int(0, 0xffff_ffff)) << 32n) | BigInt(random.int(0, 0xffff_ffff));
      }
    };
    steps.push({ op: 'poke', mapping: 'bm', offset, words: Array.from({ length: words }, word) });
    poked = true;
  };

  /** Where the bitmap is: `bm` at an offset, or the dangling `gone` (munmapped first). */
  const bitmapPointer = (dangling: boolean): { pointer: StepValue; offset: number } => {
    if (dangling) {
      if (!gone) {
        steps.push({ op: 'munmap', mapping: 'gone' });
        gone = true;
      }
      return { pointer: { mapping: 'gone' }, offset: 0 };
    }
    const offset = random.next() < 0.8 ? 0 : pick(random, [8, 0x800, 0x1000 - 64]);
    return { pointer: { mapping: 'bm', offset: BigInt(offset) }, offset };
  };

  /** Tracking on first, most times, when it is off: a read or an unmap with a bitmap needs it. */
  const startFirst = (): void => {
    if (v2 && !tracking && random.next() < 0.6) {
      steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.START }));
      tracking = true;
    }
  };

  const getBitmap = (): void => {
    startFirst();
    // What to get wrong, if anything: most calls get nothing wrong.
    const fault = random.next() < 0.7 ? 'none' : pick(random, ['cut', 'pgsize', 'small', 'argsz', 'iova', 'size', 'zero', 'wrap', 'dangling', 'huge']);
    const range = fault === 'cut' ? (cuttingRange() ?? wholeRange()) : wholeRange();
    let iova = iovaOf(range.first);
    let size = BigInt(range.pages) * PAGE;
    let pgsize = PAGE;
    let bytes = bitmapBytes(range.pages) + (random.next() < 0.2 ? pick(random, [8, 64]) : 0);
    let argsz: number | undefined;
    if (fault === 'pgsize') pgsize = pick(random, [0x2000n, 0x200000n, 0x800n, 0n, 0x3000n]);
    if (fault === 'small') bytes = pick(random, [0, bitmapBytes(range.pages) - 8, 4]);
    if (fault === 'argsz') argsz = pick(random, [8, 16, 47, 40, 7, 4]);
    if (fault === 'iova') iova += 0x800n;
    if (fault === 'size') size += pick(random, [0x800n, 1n]);
    if (fault === 'zero') size = 0n;
    if (fault === 'wrap') iova = MASK64 + 1n - PAGE;
    if (fault === 'huge') size = 1n << 44n;
    const { pointer, offset } = bitmapPointer(fault === 'dangling');
    if (fault !== 'dangling') prefill(Math.max(bytes, 8), offset);
    steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.GET_BITMAP, ...(argsz === undefined ? {} : { argsz }) }, { words: [iova, size, pgsize, BigInt(bytes), pointer] }));
    if (fault !== 'dangling') steps.push({ op: 'peek', mapping: 'bm', offset, length: Math.max(bytes, 8) + 8 });
  };

  const unmapWithBitmap = (): void => {
    startFirst();
    const fault = random.next() < 0.75 ? 'none' : pick(random, ['cut', 'pgsize', 'small', 'argsz', 'all', 'vaddr', 'dangling']);
    const range = fault === 'cut' ? (cuttingRange() ?? wholeRange()) : wholeRange();
    const pages = range.pages;
    let flags: number = UNMAP_FLAGS.DIRTY_BITMAP;
    let pgsize = PAGE;
    let bytes = bitmapBytes(pages);
    let argsz: number | undefined;
    if (fault === 'pgsize') pgsize = pick(random, [0x2000n, 0x800n, 0n]);
    if (fault === 'small') bytes = pick(random, [0, bitmapBytes(pages) - 8]);
    if (fault === 'argsz') argsz = pick(random, [24, 47, 32]);
    if (fault === 'all') flags |= UNMAP_FLAGS.ALL;
    if (fault === 'vaddr') flags |= UNMAP_FLAGS.VADDR;
    const { pointer, offset } = bitmapPointer(fault === 'dangling');
    if (fault !== 'dangling') prefill(Math.max(bytes, 8), offset);
    steps.push(
      ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags, iova: fault === 'all' ? 0n : iovaOf(range.first), size: fault === 'all' ? 0n : BigInt(pages) * PAGE, ...(argsz === undefined ? {} : { argsz }) }, { words: [pgsize, BigInt(bytes), pointer] }),
    );
    if (fault !== 'dangling') steps.push({ op: 'peek', mapping: 'bm', offset, length: Math.max(bytes, 8) + 8 });
    if (fault === 'none' && tracking && v2) mapped = mapped.filter((m) => !range.covers.includes(m));
  };

  const length = random.int(8, 22);
  for (let step = 0; step < length; step++) {
    const roll = random.next();
    if (!v2 && roll < 0.6) {
      // A v1 container: mostly plain maps and unmaps, and the dirty ioctls' EACCES and EINVAL now and then.
      if (random.next() < 0.75 || mapped.length === 0) map();
      else {
        const m = mapped.splice(random.int(0, mapped.length - 1), 1)[0]!;
        steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { iova: iovaOf(m.first), size: BigInt(m.pages) * PAGE }));
      }
    } else if (roll < 0.16) {
      map();
    } else if (roll < 0.24) {
      // A plain unmap of whole mappings (tracking or not), or of everything.
      if (mapped.length > 0 && random.next() < 0.85) {
        const m = mapped.splice(random.int(0, mapped.length - 1), 1)[0]!;
        steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { iova: iovaOf(m.first), size: BigInt(m.pages) * PAGE }));
      } else {
        steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.ALL, iova: 0n, size: 0n }));
        mapped = [];
      }
    } else if (roll < 0.36) {
      // START (again, sometimes) and STOP (without START, sometimes); now and then bad flags or argsz.
      const choice = random.next();
      if (choice < 0.8) {
        const flags: number = tracking ? (random.next() < 0.7 ? DIRTY.STOP : DIRTY.START) : random.next() < 0.8 ? DIRTY.START : DIRTY.STOP;
        steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags }));
        if (v2) tracking = flags === DIRTY.START;
      } else {
        steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: pick(random, [0, 3, 5, 6, 7, 8, 0x80000000]) }));
      }
      if (choice >= 0.95) steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: pick(random, [1, 2]), argsz: pick(random, [4, 7, 0]) }));
    } else if (roll < 0.72) {
      getBitmap();
    } else if (roll < 0.88) {
      unmapWithBitmap();
    } else if (roll < 0.92) {
      steps.push(ioctl('container', 'VFIO_IOMMU_GET_INFO', { argsz: 4096 }));
    } else if (roll < 0.97) {
      steps.push({ op: 'peek', mapping: 'bm', offset: 0, length: 64 });
    } else {
      // The group leaves (the container's IOMMU, its mappings and its tracking go with it) and comes back.
      steps.push(ioctl('group', 'VFIO_GROUP_UNSET_CONTAINER', undefined, { value: 0 }));
      steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'container' } }));
      steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: version }));
      mapped = [];
      tracking = false;
    }
  }
  // The epilogue: a last read of everything while tracking, then the fds closed.
  if (tracking && random.next() < 0.5) {
    prefill(bitmapBytes(WINDOW), 0);
    steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: DIRTY.GET_BITMAP }, { words: [BASE, BigInt(WINDOW) * PAGE, PAGE, BigInt(bitmapBytes(WINDOW)), { mapping: 'bm' }] }));
    steps.push({ op: 'peek', mapping: 'bm', offset: 0, length: bitmapBytes(WINDOW) + 8 });
  }
  steps.push({ op: 'close', fd: 'group' });
  steps.push({ op: 'close', fd: 'container' });
  return steps;
}
