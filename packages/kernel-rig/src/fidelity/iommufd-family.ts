/**
 * The iommufd family: /dev/iommu and the edu's vfio cdev on the 6.12 kernel. IOMMU_IOAS_ALLOC,
 * IOAS_MAP with and without FIXED_IOVA (user_va from a 2 MiB-aligned mapping, so that the low bits
 * the kernel chooses IOVAs from are the same on every side; sub-page offsets and lengths;
 * addresses no process maps), IOAS_UNMAP (whole areas, runs of adjacent ones, ranges that cut one,
 * all), IOAS_COPY (into the same or another IOAS, FIXED or not, WRITEABLE from a read-only
 * source), ALLOW_IOVAS before and after attach, IOVA_RANGES (num 0, then the count it said, the
 * ranges read back), IOMMU_OPTION (RLIMIT_MODE and HUGE_PAGES), IOMMU_DESTROY of every kind of
 * object in use and not, VFIO_DEVICE_BIND_IOMMUFD (twice, from a second cdev fd, with fds that are
 * not iommufd, with the group open), ATTACH/DETACH_IOMMUFD_PT (IOAS, HWPT, device, freed ids,
 * replacing one IOAS by another), IOMMU_VFIO_IOAS, the VFIO compat calls /dev/iommu answers, and
 * the cdev and /dev/iommu closed in either order.
 *
 * The generator keeps a belief of the kernel's state (objects and their ids, each IOAS's areas,
 * allow-list, alignment and domain; drivers/iommu/iommufd as read for issue 12) only to aim about
 * two calls in three at success, and one argument at a time at an edge; what each call answers is
 * the kernel's to say.
 */
import type { Step, StepValue } from './steps.js';
import { generator } from '../differential.js';

type Random = ReturnType<typeof generator>;

const PAGE = 0x1000n;
const U64 = (1n << 64n) - 1n;
/** Pages of the mapping user_va points into (aligned to 2 MiB: 512 pages). */
const RAM_PAGES = 32;
/** Whether the guest kernel has CONFIG_TRANSPARENT_HUGEPAGE: the kernel-chosen IOVA's alignment is capped at 2 MiB with it, a page without (iopt_alloc_iova). */
const THP = false;
const MAX_ALIGNMENT = THP ? 0x20_0000n : PAGE;
/** The VT-d MSI window every device of the rig reserves once attached, and the aperture's end (aw-bits 39). */
const MSI = { start: 0xfee0_0000n, last: 0xfeef_ffffn } as const;
const TOP = 1n << 39n;
/** Where FIXED maps go: slots of 16 KiB from 1 MiB. */
const BASE = 0x10_0000n;
const SLOTS = 40;

const MAP_FLAGS = { FIXED: 1, WRITEABLE: 2, READABLE: 4 } as const;
const OPTION = { RLIMIT_MODE: 0, HUGE_PAGES: 1, SET: 0, GET: 1 } as const;
const SIZE = { IOMMU_DESTROY: 8, IOMMU_IOAS_ALLOC: 12, IOMMU_IOAS_ALLOW_IOVAS: 24, IOMMU_IOAS_COPY: 40, IOMMU_IOAS_IOVA_RANGES: 32, IOMMU_IOAS_MAP: 40, IOMMU_IOAS_UNMAP: 24, IOMMU_OPTION: 24 } as const;

/** Where a user_va points: into `ram` (always mapped), into `gone` (munmapped), or a literal address no process maps. */
interface Uptr {
  readonly space: 'ram' | 'gone' | 'literal';
  /** The offset in the mapping, or the address. */
  readonly at: bigint;
}

interface Area {
  iova: bigint;
  length: bigint;
  uptr: Uptr;
  /** The iopt_pages were mapped WRITEABLE (a copy asking for WRITEABLE needs it: EPERM). */
  pagesWritable: boolean;
}

interface Range {
  start: bigint;
  last: bigint;
}

interface Ioas {
  readonly id: number;
  areas: Area[];
  allowed: Range[];
  hugeOff: boolean;
}

type Outcome = { ok: true; value?: bigint } | { ok: false; errno: string };
const OK: Outcome = { ok: true };
const fail = (errno: string): Outcome => ({ ok: false, errno });

function pick<T>(random: Random, values: readonly T[]): T {
  return values[random.int(0, values.length - 1)]!;
}

function roundupPow2(value: bigint): bigint {
  let power = 1n;
  while (power < value) power <<= 1n;
  return power;
}

function lowBit(value: bigint): bigint {
  return value & -value;
}

function alignUp(value: bigint, align: bigint): bigint {
  return (value + align - 1n) & ~(align - 1n);
}

function overlaps(a: Range, b: Range): boolean {
  return a.start <= b.last && b.start <= a.last;
}

const areaRange = (area: Area): Range => ({ start: area.iova, last: area.iova + area.length - 1n });

/** The low bits of a user_va the kernel sees: a mapping's start is 2 MiB aligned. */
function uptrLow(uptr: Uptr): bigint {
  return uptr.space === 'literal' ? uptr.at : uptr.at % 0x20_0000n === 0n ? 0x20_0000n : uptr.at % 0x20_0000n;
}

/** Whether pinning [uptr, uptr + length) fails: memory no process maps, or past the end of `ram`. */
function unpinnable(uptr: Uptr, length: bigint): boolean {
  return uptr.space !== 'ram' || uptr.at + length > BigInt(RAM_PAGES) * PAGE;
}

/** What the generator believes the kernel holds: one iommufd context, its objects, one cdev. */
class Belief {
  /** Object ids of the context: lowest free from 1 (xa_alloc, XA_FLAGS_ALLOC1). */
  readonly objects = new Map<number, 'ioas' | 'device' | 'hwpt'>();
  readonly ioas = new Map<number, Ioas>();
  /** The cdev fd is open, bound (its device object id), attached (the IOAS and the auto HWPT). */
  cdevOpen = false;
  device: number | undefined;
  attached: { ioas: number; hwpt: number } | undefined;
  /** /dev/iommu's fd is open (the context lives on while a device is bound to it). */
  ctxOpen = false;
  rlimitMm = false;
  vfioIoas: number | undefined;
  groupOpen = false;

  alloc(kind: 'ioas' | 'device' | 'hwpt'): number {
    let id = 1;
    while (this.objects.has(id)) id++;
    this.objects.set(id, kind);
    return id;
  }

  free(id: number): void {
    this.objects.delete(id);
    if (this.ioas.delete(id) && this.vfioIoas === id) this.vfioIoas = undefined;
  }

  ioasIds(): number[] {
    return [...this.ioas.keys()];
  }

  /** An id that names nothing now (or, sometimes, something of another kind). */
  badId(random: Random, otherKinds = true): number {
    const others = otherKinds ? [...this.objects].filter(([, kind]) => kind !== 'ioas').map(([id]) => id) : [];
    if (others.length > 0 && random.next() < 0.4) return pick(random, others);
    let id = 1;
    while (this.objects.has(id)) id++;
    return pick(random, [id, id, 0, 999]);
  }

  isAttached(ioas: Ioas): boolean {
    return this.attached?.ioas === ioas.id;
  }

  alignment(ioas: Ioas): bigint {
    return this.isAttached(ioas) || ioas.hugeOff ? PAGE : 1n;
  }

  reserved(ioas: Ioas): Range[] {
    return this.isAttached(ioas) ? [MSI, { start: TOP, last: U64 }] : [];
  }

  /** iopt_alloc_iova (io_pagetable.c): the lowest fit at or above 4 KiB inside the allowed spans. */
  allocIova(ioas: Ioas, uptr: bigint, length: bigint): Outcome {
    if (length === 0n || length >= U64 / 2n) return fail('EOVERFLOW');
    const pageOffset = uptr % PAGE;
    let align = uptr === 0n ? roundupPow2(length) : [roundupPow2(length), lowBit(uptr)].reduce((a, b) => (a < b ? a : b));
    if (align >= MAX_ALIGNMENT) align = MAX_ALIGNMENT;
    if (align < this.alignment(ioas)) return fail('EINVAL');
    const used = [...this.reserved(ioas), ...ioas.areas.map(areaRange)].sort((a, b) => (a.start < b.start ? -1 : 1));
    const spans: Range[] = [];
    if (ioas.allowed.length === 0) spans.push({ start: PAGE, last: U64 - PAGE });
    else {
      for (const range of [...ioas.allowed].sort((a, b) => (a.start < b.start ? -1 : 1))) {
        const previous = spans.at(-1);
        if (previous !== undefined && range.start <= previous.last + 1n) previous.last = range.last > previous.last ? range.last : previous.last;
        else spans.push({ ...range });
      }
      for (const span of spans) {
        if (span.start < PAGE) span.start = PAGE;
        if (span.last > U64 - PAGE) span.last = U64 - PAGE;
      }
    }
    const fits = (start: bigint, last: bigint): bigint | undefined => {
      const aligned = alignUp(start, align) | pageOffset;
      return aligned < last && last - aligned >= length - 1n ? aligned : undefined;
    };
    for (const span of spans) {
      if (span.start > span.last) continue;
      const from = fits(span.start, span.last);
      if (from === undefined) continue;
      // The holes of reserved ranges and areas inside [from, span.last], ascending.
      let cursor = from;
      for (const range of [...used, { start: span.last + 1n, last: span.last + 1n }]) {
        if (range.last < cursor) continue;
        if (range.start > cursor) {
          const hole = fits(cursor, (range.start - 1n < span.last ? range.start - 1n : span.last));
          if (hole !== undefined) return { ok: true, value: hole };
        }
        if (range.last + 1n > cursor) cursor = range.last + 1n;
        if (cursor > span.last) break;
      }
    }
    return fail('ENOSPC');
  }

  /** iopt_check_iova: a FIXED IOVA. */
  checkIova(ioas: Ioas, iova: bigint, length: bigint): Outcome {
    if ((iova & (this.alignment(ioas) - 1n)) !== 0n) return fail('EINVAL');
    if (iova + length - 1n > U64) return fail('EOVERFLOW');
    const range = { start: iova, last: iova + length - 1n };
    if (this.reserved(ioas).some((reserved) => overlaps(reserved, range))) return fail('EINVAL');
    if (ioas.areas.some((area) => overlaps(areaRange(area), range))) return fail('EEXIST');
    return OK;
  }

  /** IOMMU_IOAS_MAP (iommufd_ioas_map, iopt_map_user_pages), the state changed on success. */
  map(flags: number, reserved: number, ioasId: number, uptr: Uptr, length: bigint, iova: bigint): Outcome {
    if ((flags & ~7) !== 0 || reserved !== 0) return fail('EOPNOTSUPP');
    if (iova >= U64 || length >= U64) return fail('EOVERFLOW');
    if ((flags & (MAP_FLAGS.READABLE | MAP_FLAGS.WRITEABLE)) === 0) return fail('EINVAL');
    const ioas = this.ioas.get(ioasId);
    if (ioas === undefined) return fail('ENOENT');
    if (length === 0n || length > U64 - PAGE) return fail('EINVAL');
    if (uptr.space === 'literal' && uptr.at + length > U64) return fail('EOVERFLOW');
    const align = this.alignment(ioas);
    if ((length & (align - 1n)) !== 0n) return fail('EINVAL');
    let at = iova;
    if ((flags & MAP_FLAGS.FIXED) !== 0) {
      const checked = this.checkIova(ioas, iova, length);
      if (!checked.ok) return checked;
    } else {
      const chosen = this.allocIova(ioas, uptrLow(uptr), length);
      if (!chosen.ok) return chosen;
      at = chosen.value!;
    }
    if (((uptrLow(uptr) % PAGE) & (align - 1n)) !== 0n) return fail('EINVAL');
    if (this.isAttached(ioas) && unpinnable(uptr, length)) return fail('EFAULT');
    ioas.areas.push({ iova: at, length, uptr, pagesWritable: (flags & MAP_FLAGS.WRITEABLE) !== 0 });
    return { ok: true, value: at };
  }

  /** IOMMU_IOAS_UNMAP (iommufd_ioas_unmap, iopt_unmap_iova_range): areas go one by one, ascending, until one is cut. */
  unmap(ioasId: number, iova: bigint, length: bigint): Outcome {
    const ioas = this.ioas.get(ioasId);
    if (ioas === undefined) return fail('ENOENT');
    const all = iova === 0n && length === U64;
    if (!all) {
      if (iova >= U64 || length >= U64) return fail('EOVERFLOW');
      if (length === 0n) return fail('EINVAL');
      if (iova + length - 1n > U64) return fail('EOVERFLOW');
    }
    const range = all ? { start: 0n, last: U64 } : { start: iova, last: iova + length - 1n };
    let unmapped = 0n;
    for (const area of [...ioas.areas].sort((a, b) => (a.iova < b.iova ? -1 : 1))) {
      const own = areaRange(area);
      if (!overlaps(own, range)) continue;
      if (own.start < range.start || own.last > range.last) return fail('ENOENT');
      ioas.areas.splice(ioas.areas.indexOf(area), 1);
      unmapped += area.length;
    }
    if (!all && unmapped === 0n) return fail('ENOENT');
    return { ok: true, value: unmapped };
  }

  /** IOMMU_IOAS_COPY (iommufd_ioas_copy): checks in the kernel's order; atomic. */
  copy(flags: number, dstId: number, srcId: number, length: bigint, dstIova: bigint, srcIova: bigint): Outcome {
    if ((flags & ~7) !== 0) return fail('EOPNOTSUPP');
    if (length >= U64 || srcIova >= U64 || dstIova >= U64) return fail('EOVERFLOW');
    if ((flags & (MAP_FLAGS.READABLE | MAP_FLAGS.WRITEABLE)) === 0) return fail('EINVAL');
    const src = this.ioas.get(srcId);
    if (src === undefined) return fail('ENOENT');
    if (length === 0n) return fail('EINVAL');
    if (srcIova + length - 1n > U64) return fail('EOVERFLOW');
    // iopt_get_pages: contiguous areas from the one holding src_iova to the end of the range.
    const last = srcIova + length - 1n;
    const pieces: { area: Area; from: bigint; length: bigint }[] = [];
    let cursor = srcIova;
    while (cursor <= last) {
      const area = src.areas.find((candidate) => candidate.iova <= cursor && cursor <= candidate.iova + candidate.length - 1n);
      if (area === undefined) return fail('ENOENT');
      const end = area.iova + area.length - 1n < last ? area.iova + area.length - 1n : last;
      pieces.push({ area, from: cursor, length: end - cursor + 1n });
      cursor = end + 1n;
    }
    const dst = this.ioas.get(dstId);
    if (dst === undefined) return fail('ENOENT');
    const align = this.alignment(dst);
    if ((length & (align - 1n)) !== 0n) return fail('EINVAL');
    const first = pieces[0]!;
    const firstUptr = { ...first.area.uptr, at: first.area.uptr.at + (first.from - first.area.iova) };
    let at = dstIova;
    if ((flags & MAP_FLAGS.FIXED) !== 0) {
      const checked = this.checkIova(dst, dstIova, length);
      if (!checked.ok) return checked;
    } else {
      const chosen = this.allocIova(dst, uptrLow(firstUptr), length);
      if (!chosen.ok) return chosen;
      at = chosen.value!;
    }
    const areas: Area[] = [];
    let next = at;
    for (const piece of pieces) {
      if ((flags & MAP_FLAGS.WRITEABLE) !== 0 && !piece.area.pagesWritable) return fail('EPERM');
      const uptr = { ...piece.area.uptr, at: piece.area.uptr.at + (piece.from - piece.area.iova) };
      if (((uptrLow(uptr) % PAGE) & (align - 1n)) !== 0n) return fail('EINVAL');
      areas.push({ iova: next, length: piece.length, uptr, pagesWritable: piece.area.pagesWritable });
      next += piece.length;
    }
    if (this.isAttached(dst) && areas.some((area) => unpinnable(area.uptr, area.length))) return fail('EFAULT');
    dst.areas.push(...areas);
    return { ok: true, value: at };
  }

  /** ALLOW_IOVAS (iommufd_ioas_allow_iovas, iopt_set_allow_iova). */
  allow(ioasId: number, reservedField: number, ranges: Range[]): Outcome {
    if (reservedField !== 0) return fail('EOPNOTSUPP');
    const ioas = this.ioas.get(ioasId);
    if (ioas === undefined) return fail('ENOENT');
    for (let index = 0; index < ranges.length; index++) {
      const range = ranges[index]!;
      if (range.start >= range.last) return fail('EINVAL');
      if (ranges.slice(0, index).some((earlier) => overlaps(earlier, range))) return fail('EINVAL');
    }
    if (ranges.some((range) => this.reserved(ioas).some((reserved) => overlaps(reserved, range)))) return fail('EADDRINUSE');
    ioas.allowed = ranges.map((range) => ({ ...range }));
    return OK;
  }

  /** Whether an attach of the device to `ioas` succeeds (iommufd_hwpt_paging_alloc, iopt_table_add_domain). */
  attachable(ioas: Ioas): boolean {
    const outside = (range: Range) => overlaps(range, MSI) || range.last >= TOP;
    return (
      ioas.areas.every((area) => area.iova % PAGE === 0n && area.length % PAGE === 0n && uptrLow(area.uptr) % PAGE === 0n && !unpinnable(area.uptr, area.length) && !outside(areaRange(area))) &&
      ioas.allowed.every((range) => !outside(range))
    );
  }

  /** VFIO_DEVICE_ATTACH_IOMMUFD_PT on a bound device (iommufd_device_change_pt). */
  attach(pt: number): Outcome {
    const kind = this.objects.get(pt);
    if (kind === undefined) return fail('ENOENT');
    if (kind === 'device') return fail('EINVAL');
    if (kind === 'hwpt') return this.attached?.hwpt === pt ? { ok: true, value: BigInt(pt) } : fail('EINVAL');
    if (this.attached?.ioas === pt) return { ok: true, value: BigInt(this.attached.hwpt) };
    if (!this.attachable(this.ioas.get(pt)!)) return fail('EADDRINUSE');
    const hwpt = this.alloc('hwpt');
    if (this.attached !== undefined) this.objects.delete(this.attached.hwpt);
    this.attached = { ioas: pt, hwpt };
    return { ok: true, value: BigInt(hwpt) };
  }

  detach(): void {
    if (this.attached !== undefined) this.objects.delete(this.attached.hwpt);
    this.attached = undefined;
  }

  /** IOMMU_DESTROY (iommufd_object_remove): only an object nothing else holds. */
  destroy(id: number): Outcome {
    const kind = this.objects.get(id);
    if (kind === undefined) return fail('ENOENT');
    if (kind !== 'ioas' || this.attached?.ioas === id) return fail('EBUSY');
    this.free(id);
    return OK;
  }

  /** The cdev's fd closed: the device unbound (vfio_df_unbind_iommufd), its HWPT gone; the context too if its fd is closed. */
  closeCdev(): void {
    if (this.device !== undefined) {
      this.detach();
      this.objects.delete(this.device);
      this.device = undefined;
      if (!this.ctxOpen) this.forget();
    }
    this.cdevOpen = false;
  }

  closeCtx(): void {
    this.ctxOpen = false;
    if (this.device === undefined) this.forget();
  }

  /** The context released: every object gone. */
  forget(): void {
    this.objects.clear();
    this.ioas.clear();
    this.vfioIoas = undefined;
    this.rlimitMm = false;
  }
}

function ioctl(fd: string, name: string, fields?: Record<string, StepValue>, extra: Partial<Extract<Step, { op: 'ioctl' }>> = {}): Step {
  return { op: 'ioctl', fd, ioctl: name, ...(fields === undefined ? {} : { fields }), ...extra };
}

/** An iommufd ioctl with its `size` (the struct's, unless a mutation says otherwise). */
function iommu(name: keyof typeof SIZE, fields: Record<string, StepValue>, size: { size?: number; tail?: bigint } = {}): Step {
  return ioctl('iommufd', name, { size: size.size ?? SIZE[name], ...fields }, size.tail === undefined ? {} : { words: [size.tail] });
}

/** A `size` mutation, one in ten calls: larger with a zero tail (accepted), larger with a nonzero one (E2BIG), shorter (EINVAL). */
function sizeVariant(random: Random, name: keyof typeof SIZE): { size: { size?: number; tail?: bigint }; error?: string } {
  if (random.next() >= 0.1) return { size: {} };
  switch (random.int(0, 3)) {
    case 0:
    case 1:
      return { size: { size: SIZE[name] + 8, tail: 0n } };
    case 2:
      return { size: { size: SIZE[name] + 8, tail: 1n }, error: 'E2BIG' };
    default:
      return { size: { size: pick(random, [SIZE[name] - 4, 0]) }, error: 'EINVAL' };
  }
}

function user(uptr: Uptr): StepValue {
  return uptr.space === 'literal' ? uptr.at : { mapping: uptr.space, offset: uptr.at };
}

/** The IOMMU_VFIO_IOAS struct: u32 size, u32 ioas_id, u16 op, u16 __reserved (little-endian). */
function vfioIoas(ioasId: number, op: number, reserved = 0): Step {
  const bytes = [12, 0, 0, 0, ioasId & 0xff, (ioasId >>> 8) & 0xff, (ioasId >>> 16) & 0xff, (ioasId >>> 24) & 0xff, op & 0xff, (op >>> 8) & 0xff, reserved & 0xff, 0];
  return ioctl('iommufd', 'IOMMU_VFIO_IOAS', undefined, { bytes });
}

/** The steps of sequence `seed` (the iommufd lane only). */
export function iommufdSequence(seed: number): Step[] {
  const random = generator(seed + 0x10_3fd);
  const belief = new Belief();
  const steps: Step[] = [
    { op: 'mmap', pages: RAM_PAGES, as: 'ram', align: 512 },
    { op: 'mmap', pages: 1, as: 'ranges' },
  ];
  const gone = random.next() < 0.05;
  if (gone) steps.push({ op: 'mmap', pages: 4, as: 'gone', align: 512 }, { op: 'munmap', mapping: 'gone' });
  steps.push({ op: 'open', path: '/dev/iommu', as: 'iommufd' });
  belief.ctxOpen = true;

  // A second context now and then: ids of the first mean nothing there, and it cannot bind the device twice.
  const second = random.next() < 0.15;
  if (second) steps.push({ op: 'open', path: '/dev/iommu', as: 'iommufd2' });

  const ioasAlloc = (flags = 0): void => {
    const variant = sizeVariant(random, 'IOMMU_IOAS_ALLOC');
    steps.push(iommu('IOMMU_IOAS_ALLOC', { flags }, variant.size));
    if (flags === 0 && variant.error === undefined) {
      const id = belief.alloc('ioas');
      belief.ioas.set(id, { id, areas: [], allowed: [], hugeOff: false });
    }
  };
  const rlimit = (op: number, value: bigint, objectId = 0): void => {
    steps.push(iommu('IOMMU_OPTION', { option_id: OPTION.RLIMIT_MODE, op, object_id: objectId, val64: value }));
    if (op === OPTION.SET && objectId === 0 && belief.objects.size === 0 && (value === 0n || value === 1n)) belief.rlimitMm = value === 1n;
  };

  // The accounting mode can be set only while the context holds no object.
  if (random.next() < 0.15) {
    rlimit(OPTION.SET, pick(random, [0n, 1n, 1n, 2n]));
    rlimit(OPTION.GET, 0n);
  }
  ioasAlloc();
  if (random.next() < 0.5) ioasAlloc();

  const bind = (fields: Record<string, StepValue> = {}, fd = 'device'): void => {
    steps.push(ioctl(fd, 'VFIO_DEVICE_BIND_IOMMUFD', { iommufd: { fd: 'iommufd' }, ...fields }));
  };
  const bindCleanly = (): void => {
    bind();
    if (belief.cdevOpen && belief.device === undefined && !belief.groupOpen && belief.ctxOpen) belief.device = belief.alloc('device');
  };
  const openCdev = (): void => {
    steps.push({ op: 'open', path: '/dev/vfio/devices/{cdev}', as: 'device' });
    belief.cdevOpen = !belief.groupOpen;
  };
  openCdev();
  // The group open blocks a bind (vfio_device_block_group: EBUSY), and a bound cdev blocks the group's open.
  if (random.next() < 0.1) {
    steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'group' });
    belief.groupOpen = true;
    // The group's block comes before the fd is looked at: EBUSY even for a closed fd.
    bind(random.next() < 0.4 ? { iommufd: { fd: 'closed' } } : {});
    steps.push({ op: 'close', fd: 'group' });
    belief.groupOpen = false;
  }
  bindCleanly();

  const attachStep = (pt: number, fields: Record<string, StepValue> = {}): void => {
    steps.push(ioctl('device', 'VFIO_DEVICE_ATTACH_IOMMUFD_PT', { pt_id: pt, ...fields }));
    if (Object.keys(fields).length === 0 && belief.device !== undefined && belief.cdevOpen) belief.attach(pt);
  };
  if (random.next() < 0.4) attachStep(pick(random, belief.ioasIds()));

  const someIoas = (): Ioas | undefined => {
    const all = [...belief.ioas.values()];
    if (all.length === 0) return undefined;
    const attached = all.find((ioas) => belief.isAttached(ioas));
    return attached !== undefined && random.next() < 0.4 ? attached : pick(random, all);
  };
  const withAreas = (): Ioas | undefined => {
    const all = [...belief.ioas.values()].filter((ioas) => ioas.areas.length > 0);
    return all.length === 0 ? undefined : pick(random, all);
  };
  /** A free FIXED IOVA for `length` in `ioas`: after an area (adjacent) or in a free slot. */
  const freeIova = (ioas: Ioas, length: bigint): bigint | undefined => {
    const candidates = [...ioas.areas.map((area) => area.iova + area.length), ...Array.from({ length: 6 }, () => BASE + BigInt(random.int(0, SLOTS - 1)) * 4n * PAGE)];
    const order = random.next() < 0.35 ? candidates : candidates.slice(ioas.areas.length);
    for (const iova of order) if (belief.checkIova(ioas, iova, length).ok) return iova;
    return undefined;
  };

  const map = (): void => {
    const ioas = someIoas();
    if (ioas === undefined) return ioasAlloc();
    const pages = random.int(1, 4);
    let length = BigInt(pages) * PAGE;
    let offset = BigInt(random.int(0, RAM_PAGES - pages)) * PAGE;
    // Sub-page offsets and lengths where the IOAS takes them (alignment 1: no domain, huge pages on).
    if (belief.alignment(ioas) === 1n && random.next() < 0.25) {
      offset += pick(random, [0x10n, 0x800n, 0x100n]);
      if (random.next() < 0.5) length = pick(random, pages > 1 ? [0x800n, 0x10n, 0x1800n] : [0x800n, 0x10n]);
    }
    let uptr: Uptr = { space: 'ram', at: offset };
    let flags = random.next() < 0.7 ? MAP_FLAGS.READABLE | MAP_FLAGS.WRITEABLE : pick(random, [MAP_FLAGS.READABLE, MAP_FLAGS.READABLE, MAP_FLAGS.WRITEABLE]);
    let iova = 0n;
    if (random.next() < 0.55) {
      const free = freeIova(ioas, length);
      if (free !== undefined) {
        flags |= MAP_FLAGS.FIXED;
        iova = free;
      }
    }
    let ioasId = ioas.id;
    let reserved = 0;
    let variant: ReturnType<typeof sizeVariant> = { size: {} };
    if (random.next() < 0.35) {
      // One argument at an edge.
      switch (random.int(0, 13)) {
        case 0:
          if (ioas.areas.length > 0) {
            const area = pick(random, ioas.areas);
            flags |= MAP_FLAGS.FIXED;
            iova = area.iova + (area.length > PAGE ? PAGE : 0n);
          }
          break;
        case 1:
          flags |= MAP_FLAGS.FIXED;
          iova = pick(random, [MSI.start, MSI.last + 1n - PAGE, MSI.start - PAGE, TOP - PAGE, TOP, 1n << 48n]);
          break;
        case 2:
          flags |= MAP_FLAGS.FIXED;
          iova = BASE + BigInt(random.int(0, SLOTS - 1)) * 4n * PAGE + pick(random, [0x800n, 0x10n]);
          break;
        case 3:
          flags |= pick(random, [8, 0x100, 0x8000_0000]);
          break;
        case 4:
          reserved = pick(random, [1, 0x8000_0000]);
          break;
        case 5:
          flags &= MAP_FLAGS.FIXED;
          break;
        case 6:
          ioasId = belief.badId(random);
          break;
        case 7:
          length = pick(random, [0n, U64, U64 - 1n, U64 - PAGE + 1n, 1n << 63n]);
          // A huge length never FIXED: a lazy map of it would succeed, and an attach then pin on past the mapping.
          if (length === 1n << 63n) flags &= ~MAP_FLAGS.FIXED;
          break;
        case 8:
          iova = pick(random, [U64, U64 - PAGE + 1n]);
          flags |= MAP_FLAGS.FIXED;
          break;
        case 9:
          uptr = gone && random.next() < 0.5 ? { space: 'gone', at: BigInt(random.int(0, 3)) * PAGE } : { space: 'literal', at: pick(random, [0x1000n, 0x2000n, 0x10000n, 0x20_0000n]) };
          break;
        case 10:
          uptr = { space: 'literal', at: U64 - PAGE + 1n };
          break;
        case 11:
          uptr = { space: 'ram', at: offset + pick(random, [0x10n, 0x800n]) };
          break;
        default:
          variant = pick(random, [{ size: { size: SIZE.IOMMU_IOAS_MAP + 8, tail: 0n } }, { size: { size: SIZE.IOMMU_IOAS_MAP + 8, tail: 5n }, error: 'E2BIG' }, { size: { size: SIZE.IOMMU_IOAS_MAP - 4 }, error: 'EINVAL' }]);
      }
    }
    steps.push(iommu('IOMMU_IOAS_MAP', { flags, ioas_id: ioasId, __reserved: reserved, user_va: user(uptr), length, iova }, variant.size));
    if (variant.error === undefined) belief.map(flags, reserved, ioasId, uptr, length, iova);
  };

  const unmap = (): void => {
    const ioas = withAreas() ?? someIoas();
    if (ioas === undefined) return ioasAlloc();
    const sorted = [...ioas.areas].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    let iova = 0n;
    let length = U64;
    let ioasId = ioas.id;
    const roll = random.next();
    if (sorted.length > 0 && roll < 0.5) {
      const area = pick(random, sorted);
      iova = area.iova;
      length = area.length;
    } else if (sorted.length > 1 && roll < 0.65) {
      // Several areas: a run, gaps between them included.
      const from = random.int(0, sorted.length - 2);
      const to = random.int(from + 1, sorted.length - 1);
      iova = sorted[from]!.iova;
      length = sorted[to]!.iova + sorted[to]!.length - iova;
    } else if (roll < 0.75) {
      // Everything (iova 0, length ~0): 0 even when empty.
    } else if (sorted.length > 0 && roll < 0.88) {
      // A range that cuts an area, or takes one whole and cuts the next: ENOENT, the whole ones before the cut gone.
      const index = random.int(0, sorted.length - 1);
      const area = sorted[index]!;
      if (random.next() < 0.5 || index === sorted.length - 1) {
        iova = area.length > PAGE ? area.iova + PAGE : area.iova;
        length = area.length > PAGE ? PAGE : area.length + PAGE;
      } else {
        iova = area.iova;
        length = sorted[index + 1]!.iova - area.iova + PAGE / 2n;
      }
    } else {
      switch (random.int(0, 5)) {
        case 0:
          iova = BASE + BigInt(SLOTS + random.int(0, 8)) * 4n * PAGE;
          length = PAGE;
          break;
        case 1:
          iova = sorted[0]?.iova ?? BASE;
          length = 0n;
          break;
        case 2:
          iova = pick(random, [U64, 1n]);
          length = pick(random, [U64, PAGE, 0n]);
          break;
        case 3:
          iova = U64 - PAGE + 1n;
          length = 2n * PAGE;
          break;
        case 4:
          ioasId = belief.badId(random);
          break;
        default:
          // Sizes: short (EINVAL), longer with a zero tail (the struct's own answer).
          steps.push(iommu('IOMMU_IOAS_UNMAP', { ioas_id: ioasId, iova: sorted[0]?.iova ?? BASE, length: sorted[0]?.length ?? PAGE }, pick(random, [{ size: 20 }, { size: 32, tail: 0n }])));
          return;
      }
    }
    const variant = sizeVariant(random, 'IOMMU_IOAS_UNMAP');
    steps.push(iommu('IOMMU_IOAS_UNMAP', { ioas_id: ioasId, iova, length }, variant.size));
    if (variant.error === undefined) belief.unmap(ioasId, iova, length);
  };

  const copy = (): void => {
    const src = withAreas();
    if (src === undefined) return map();
    const sorted = [...src.areas].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    // Now and then a read-only source copied WRITEABLE: EPERM (iopt_insert_area).
    const readOnly = sorted.filter((candidate) => !candidate.pagesWritable);
    const denied = readOnly.length > 0 && random.next() < 0.12;
    const index = denied ? sorted.indexOf(pick(random, readOnly)) : random.int(0, sorted.length - 1);
    const area = sorted[index]!;
    let srcIova = area.iova;
    let length = area.length;
    const roll = random.next();
    if (roll < 0.3 && area.length > PAGE && area.iova % PAGE === 0n) {
      const pages = Number(area.length / PAGE);
      const first = random.int(0, pages - 1);
      srcIova = area.iova + BigInt(first) * PAGE;
      length = BigInt(random.int(1, pages - first)) * PAGE;
    } else if (roll < 0.45 && index + 1 < sorted.length && sorted[index + 1]!.iova === area.iova + area.length) {
      length = area.length + sorted[index + 1]!.length;
    }
    const writable = sorted.slice(index).every((candidate) => candidate.pagesWritable || candidate.iova > srcIova + length - 1n);
    let flags = denied || (writable && random.next() < 0.7) ? MAP_FLAGS.READABLE | MAP_FLAGS.WRITEABLE : MAP_FLAGS.READABLE;
    const others = [...belief.ioas.values()].filter((ioas) => ioas !== src);
    const dst = others.length > 0 && random.next() < 0.65 ? pick(random, others) : src;
    let dstIova = 0n;
    if (random.next() < 0.5) {
      const free = freeIova(dst, length);
      if (free !== undefined) {
        flags |= MAP_FLAGS.FIXED;
        dstIova = free;
      }
    }
    let srcId = src.id;
    let dstId = dst.id;
    if (random.next() < 0.35) {
      switch (random.int(0, 9)) {
        case 0:
          flags |= MAP_FLAGS.WRITEABLE;
          break;
        case 1:
          length += pick(random, [PAGE, 0x10_0000n]);
          break;
        case 2:
          if (dst.areas.length > 0) {
            flags |= MAP_FLAGS.FIXED;
            dstIova = pick(random, dst.areas).iova;
          }
          break;
        case 3:
          srcId = belief.badId(random);
          break;
        case 4:
          dstId = belief.badId(random);
          if (random.next() < 0.5) flags = 0;
          break;
        case 5:
          flags |= pick(random, [8, 0x10]);
          break;
        case 6:
          flags &= MAP_FLAGS.FIXED;
          break;
        case 7:
          length = pick(random, [0n, U64]);
          break;
        case 8:
          srcIova = pick(random, [U64, U64 - PAGE + 1n, srcIova + 0x800n]);
          break;
        default:
          flags |= MAP_FLAGS.FIXED;
          dstIova = pick(random, [MSI.start, TOP, 0x800n + BASE]);
      }
    }
    steps.push(iommu('IOMMU_IOAS_COPY', { flags, dst_ioas_id: dstId, src_ioas_id: srcId, length, dst_iova: dstIova, src_iova: srcIova }));
    belief.copy(flags, dstId, srcId, length, dstIova, srcIova);
  };

  const allow = (): void => {
    const ioas = someIoas();
    if (ioas === undefined) return ioasAlloc();
    const good: Range[][] = [
      [{ start: PAGE, last: MSI.start - 1n }],
      [{ start: BASE, last: 0x1fff_ffffn }],
      [
        { start: 0n, last: MSI.start - 1n },
        { start: MSI.last + 1n, last: TOP - 1n },
      ],
      [{ start: 0x4000_0000n, last: 0x7fff_ffffn }, { start: BASE, last: BASE + 0x3f_ffffn }],
      [],
    ];
    const edges: Range[][] = [
      [{ start: 0n, last: U64 }],
      [MSI],
      [{ start: BASE, last: BASE }],
      [
        { start: BASE, last: BASE + 0xffffn },
        { start: BASE + 0x8000n, last: BASE + 0x1_ffffn },
      ],
      [{ start: BASE + PAGE, last: BASE }],
      [{ start: TOP - PAGE, last: TOP + PAGE }],
    ];
    const ranges = random.next() < 0.7 ? pick(random, good) : pick(random, edges);
    let ioasId = ioas.id;
    let reserved = 0;
    const roll = random.next();
    if (roll < 0.06) ioasId = belief.badId(random);
    else if (roll < 0.1) reserved = 1;
    if (ranges.length > 0) steps.push({ op: 'poke', mapping: 'ranges', words: ranges.flatMap((range) => [range.start, range.last]) });
    steps.push(iommu('IOMMU_IOAS_ALLOW_IOVAS', { ioas_id: ioasId, num_iovas: ranges.length, __reserved: reserved, allowed_iovas: { mapping: 'ranges' } }));
    belief.allow(ioasId, reserved, ranges);
  };

  const iovaRanges = (): void => {
    const ioas = someIoas();
    if (ioas === undefined) return ioasAlloc();
    const expected = belief.isAttached(ioas) ? 2 : 1;
    const roll = random.next();
    if (roll < 0.12) {
      steps.push(iommu('IOMMU_IOAS_IOVA_RANGES', { ioas_id: random.next() < 0.5 ? belief.badId(random) : ioas.id, num_iovas: 0, __reserved: random.next() < 0.5 ? 1 : 0, allowed_iovas: { mapping: 'ranges' } }));
      return;
    }
    // The count first (num 0: EMSGSIZE, the struct written back), then the ranges.
    if (roll < 0.8) steps.push(iommu('IOMMU_IOAS_IOVA_RANGES', { ioas_id: ioas.id, num_iovas: 0, allowed_iovas: 0n }));
    const num = roll < 0.9 ? expected : pick(random, [expected + 2, 1]);
    steps.push(iommu('IOMMU_IOAS_IOVA_RANGES', { ioas_id: ioas.id, num_iovas: num, allowed_iovas: { mapping: 'ranges' } }));
    steps.push({ op: 'peek', mapping: 'ranges', length: 16 * num });
  };

  const option = (): void => {
    const ioas = someIoas();
    const roll = random.next();
    if (roll < 0.2 || ioas === undefined) {
      if (random.next() < 0.6) rlimit(OPTION.GET, 0n);
      else if (random.next() < 0.5) rlimit(OPTION.SET, pick(random, [0n, 1n]));
      else rlimit(pick(random, [OPTION.GET, 2]), 0n, pick(random, [1, 0]));
      return;
    }
    let optionId: number = OPTION.HUGE_PAGES;
    let op: number = random.next() < 0.5 ? OPTION.GET : OPTION.SET;
    let value = op === OPTION.SET ? pick(random, [0n, 1n, 1n, 0n]) : 0n;
    let objectId = ioas.id;
    let reserved = 0;
    if (random.next() < 0.3) {
      switch (random.int(0, 4)) {
        case 0:
          optionId = pick(random, [2, 0xffff_ffff]);
          break;
        case 1:
          op = 2;
          if (random.next() < 0.5) objectId = belief.badId(random);
          break;
        case 2:
          op = OPTION.SET;
          value = pick(random, [2n, U64]);
          break;
        case 3:
          objectId = belief.badId(random);
          break;
        default:
          reserved = 1;
      }
    }
    steps.push(iommu('IOMMU_OPTION', { option_id: optionId, op, __reserved: reserved, object_id: objectId, val64: value }));
    // The belief follows a SET that the kernel takes (iommufd_ioas_option_huge_pages, iopt_disable_large_pages).
    if (optionId === OPTION.HUGE_PAGES && op === OPTION.SET && reserved === 0 && objectId === ioas.id) {
      if (value === 1n) ioas.hugeOff = false;
      else if (value === 0n && !ioas.hugeOff) {
        const refused = belief.isAttached(ioas) ? ioas.areas.length > 0 : ioas.areas.some((area) => area.iova % PAGE !== 0n || area.length % PAGE !== 0n || uptrLow(area.uptr) % PAGE !== 0n);
        if (!refused) ioas.hugeOff = true;
      }
    }
  };

  const attachment = (): void => {
    if (!belief.cdevOpen) return;
    const roll = random.next();
    const ids = belief.ioasIds();
    if (roll < 0.55 && ids.length > 0) {
      // An IOAS (a new auto HWPT, or a replace of the current one), its areas made to fit first if they would not.
      const target = belief.ioas.get(pick(random, ids))!;
      if (!belief.attachable(target) && random.next() < 0.6) {
        for (const area of [...target.areas]) {
          if (belief.attachable({ ...target, areas: [area], allowed: [] })) continue;
          steps.push(iommu('IOMMU_IOAS_UNMAP', { ioas_id: target.id, iova: area.iova, length: area.length }));
          belief.unmap(target.id, area.iova, area.length);
        }
        if (!belief.attachable(target)) {
          steps.push(iommu('IOMMU_IOAS_ALLOW_IOVAS', { ioas_id: target.id, num_iovas: 0, allowed_iovas: 0n }));
          belief.allow(target.id, 0, []);
        }
      }
      attachStep(target.id);
    } else if (roll < 0.7) {
      steps.push(ioctl('device', 'VFIO_DEVICE_DETACH_IOMMUFD_PT', random.next() < 0.85 ? {} : pick(random, [{ flags: 1 }, { argsz: 4 }])));
      if (belief.device !== undefined) belief.detach();
      if (belief.device !== undefined && random.next() < 0.3) steps.push(ioctl('device', 'VFIO_DEVICE_DETACH_IOMMUFD_PT'));
    } else if (roll < 0.8 && belief.attached !== undefined) {
      attachStep(belief.attached.hwpt);
    } else {
      const pt = pick(random, [belief.device ?? 0, belief.badId(random, false), belief.badId(random)]);
      if (random.next() < 0.3 && ids.length > 0) attachStep(pick(random, ids), pick(random, [{ flags: 1 }, { argsz: 8 }]));
      else attachStep(pt);
    }
  };

  const cdev = (): void => {
    const roll = random.next();
    if (belief.device !== undefined && roll < 0.35) {
      // Bound already: twice is EINVAL, from this fd or from a second one.
      if (random.next() < 0.5) bind(random.next() < 0.7 ? {} : { flags: 1 });
      else {
        steps.push({ op: 'open', path: '/dev/vfio/devices/{cdev}', as: 'device2' });
        bind({ iommufd: { fd: second && random.next() < 0.5 ? 'iommufd2' : 'iommufd' } }, 'device2');
        steps.push({ op: 'close', fd: 'device2' });
      }
    } else if (belief.device !== undefined && roll < 0.45) {
      steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'group' });
      steps.push({ op: 'close', fd: 'group' });
    } else if (belief.ctxOpen) {
      // The cdev closed (the device unbound, its HWPT gone) and opened again; a bad bind or two first.
      if (belief.cdevOpen) steps.push({ op: 'close', fd: 'device' });
      belief.closeCdev();
      openCdev();
      if (random.next() < 0.5) {
        const bad = pick(random, [{ iommufd: { fd: 'closed' } }, { iommufd: { fd: 'ranges-eventfd' } }, { iommufd: -1 }, { argsz: 12 }, { flags: 1 }]);
        if ('iommufd' in bad && typeof bad.iommufd === 'object' && bad.iommufd.fd === 'ranges-eventfd') steps.push({ op: 'eventfd', as: 'ranges-eventfd' });
        bind(bad);
      }
      bindCleanly();
    }
  };

  const destroy = (): void => {
    const ids = [...belief.objects.keys()];
    const id = ids.length > 0 && random.next() < 0.75 ? pick(random, ids) : belief.badId(random, false);
    // Most of the time an IOAS that can go; else whatever the pick was.
    const free = belief.ioasIds().filter((candidate) => belief.attached?.ioas !== candidate);
    const target = free.length > 1 && random.next() < 0.5 ? pick(random, free) : id;
    const variant = sizeVariant(random, 'IOMMU_DESTROY');
    steps.push(iommu('IOMMU_DESTROY', { id: target }, variant.size));
    if (variant.error === undefined) belief.destroy(target);
    if (belief.ioas.size === 0) ioasAlloc();
  };

  const compat = (): void => {
    const roll = random.next();
    if (roll < 0.45) {
      const ids = belief.ioasIds();
      const op = pick(random, [0, 1, 1, 2, 0, 3]);
      const id = op === 1 && ids.length > 0 && random.next() < 0.8 ? pick(random, ids) : belief.badId(random);
      const reserved = random.next() < 0.08 ? 1 : 0;
      steps.push(vfioIoas(op === 0 ? 0 : id, op, reserved));
      if (reserved === 0 && op === 1 && belief.ioas.has(id)) belief.vfioIoas = id;
      if (reserved === 0 && op === 2) belief.vfioIoas = undefined;
    } else if (roll < 0.7) {
      steps.push(ioctl('iommufd', 'VFIO_GET_API_VERSION', undefined, { value: 0 }));
    } else if (roll < 0.9) {
      steps.push(ioctl('iommufd', 'VFIO_CHECK_EXTENSION', undefined, { value: pick(random, [1, 3, 4, 5, 8, 9, 0]) }));
    } else {
      // An iommufd request on the device's fd, a VFIO one on the context's.
      steps.push(random.next() < 0.5 ? ioctl('device', 'IOMMU_IOAS_ALLOC', { size: SIZE.IOMMU_IOAS_ALLOC }) : ioctl('iommufd', 'VFIO_DEVICE_GET_INFO', { argsz: 24 }));
    }
  };

  const length = random.int(12, 30);
  for (let step = 0; step < length; step++) {
    const roll = random.next();
    if (roll < 0.26) map();
    else if (roll < 0.41) unmap();
    else if (roll < 0.51) copy();
    else if (roll < 0.57) allow();
    else if (roll < 0.65) iovaRanges();
    else if (roll < 0.72) option();
    else if (roll < 0.84) attachment();
    else if (roll < 0.88) cdev();
    else if (roll < 0.93) destroy();
    else if (roll < 0.96) ioasAlloc(random.next() < 0.25 ? pick(random, [1, 0x8000_0000]) : 0);
    else compat();
  }

  // The end: the cdev and the context closed in an order the sequence picks.
  const ending = random.next();
  if (ending < 0.3 && belief.cdevOpen && belief.device !== undefined) {
    // The context's fd closed first: the bound device keeps it alive, its ids still work on the cdev.
    steps.push({ op: 'close', fd: 'iommufd' });
    belief.closeCtx();
    steps.push(iommu('IOMMU_IOAS_ALLOC', {}));
    const ids = belief.ioasIds();
    if (ids.length > 0) attachStep(pick(random, ids));
    steps.push(ioctl('device', 'VFIO_DEVICE_DETACH_IOMMUFD_PT'));
    steps.push({ op: 'close', fd: 'device' });
  } else if (ending < 0.55) {
    // Everything destroyed by id: the device and an attached IOAS refuse (EBUSY), the rest goes.
    for (const id of [...belief.objects.keys()].sort((a, b) => a - b)) {
      steps.push(iommu('IOMMU_DESTROY', { id }));
      belief.destroy(id);
    }
    if (belief.cdevOpen) steps.push(ioctl('device', 'VFIO_DEVICE_DETACH_IOMMUFD_PT'));
    belief.detach();
    for (const id of belief.ioasIds()) {
      steps.push(iommu('IOMMU_DESTROY', { id }));
      belief.destroy(id);
    }
    steps.push({ op: 'close', fd: 'device' }, { op: 'close', fd: 'iommufd' });
  } else {
    for (const id of belief.ioasIds()) if (random.next() < 0.5) steps.push(iommu('IOMMU_IOAS_UNMAP', { ioas_id: id, iova: 0n, length: U64 }));
    steps.push({ op: 'close', fd: 'device' }, { op: 'close', fd: 'iommufd' });
  }
  if (second) steps.push({ op: 'close', fd: 'iommufd2' });
  return steps;
}
