/**
 * The differential's vocabulary: random map/unmap/allow sequences (the same seed gives the same
 * sequence everywhere) and one side of the comparison, a container through backend-smmu's handle
 * on one machine; and the attach/detach family, the second edu joining and leaving a live
 * container at the raw VFIO and iommufd level. differential.test.ts runs them on the real kernel
 * and the simulator; the trace test records a few map/unmap sequences on the real kernel for replay.
 */
import { errnoName, IoasError, type BackendHandleV1 } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, IommufdContext, VfioContainer, VfioGroup, VfioIoctls, vfioUapi, type DmaMemory, type IommufdDevice } from '@ioas/vfio';
import { interfaceOf, lane, type Machine } from './targets.js';

const PAGE = 0x1000n;
/** The mapping budget (type1 dma_entry_limit) each run sets, so that ENOSPC is reached. */
const BUDGET = 6;

/** Where the rules are on a lane's machine: the MSI window (start, end) and the aperture's top. */
export function edgesOf(name: 'x86' | 'arm64' | 'iommufd'): { msi: bigint; msiEnd: bigint; top: bigint } {
  const x86 = name !== 'arm64';
  return { msi: x86 ? 0xfee0_0000n : 0x800_0000n, msiEnd: x86 ? 0xfef0_0000n : 0x810_0000n, top: x86 ? 1n << 39n : 1n << 48n };
}

/** One step of a sequence. */
export type Operation =
  | { kind: 'map'; iova: bigint; pages: number; vaddrPage: number; read: boolean; write: boolean }
  | { kind: 'unmap'; iova: bigint; pages: number }
  /** iommufd only: IOMMU_IOAS_ALLOW_IOVAS with these ranges (start, last inclusive). */
  | { kind: 'allow'; ranges: { start: bigint; last: bigint }[] };

/** xorshift32: the same seed gives the same sequence everywhere. */
export function generator(seed: number) {
  let state = seed * 2654435761 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  return { next, int: (low: number, high: number) => low + Math.floor(next() * (high - low + 1)) };
}

/** IOVAs near what matters: low memory, both edges of the MSI window, the aperture top, misaligned. */
function interestingIova(random: ReturnType<typeof generator>, msi: bigint, msiEnd: bigint, top: bigint): bigint {
  switch (random.int(0, 5)) {
    case 0:
    case 1:
      return BigInt(random.int(0, 24)) * PAGE;
    case 2:
      return msi + BigInt(random.int(-3, 2)) * PAGE;
    case 3:
      return msiEnd + BigInt(random.int(-2, 3)) * PAGE;
    case 4:
      return top + BigInt(random.int(-3, 2)) * PAGE;
    default:
      return BigInt(random.int(0, 24)) * PAGE + 0x800n;
  }
}

/** The sequence of `seed`: 4 to 16 operations around the MSI window `msi..msiEnd` and the aperture top. */
export function sequence(seed: number, msi: bigint, msiEnd: bigint, top: bigint, allowLists: boolean): Operation[] {
  const random = generator(seed);
  const operations: Operation[] = [];
  const length = random.int(4, 16);
  for (let step = 0; step < length; step++) {
    const iova = interestingIova(random, msi, msiEnd, top);
    const pages = random.int(1, 4);
    if (allowLists && random.next() < 0.15) {
      // Allow-lists: empty (allow all), one or two ranges, some of one byte (start == last), some
      // overlapping each other, some over the MSI window.
      const ranges: { start: bigint; last: bigint }[] = [];
      const count = random.int(0, 2);
      for (let index = 0; index < count; index++) {
        const start = index === 0 ? iova : interestingIova(random, msi, msiEnd, top);
        ranges.push({ start, last: random.next() < 0.1 ? start : start + BigInt(random.int(1, 64)) * PAGE - 1n });
      }
      operations.push({ kind: 'allow', ranges });
    } else if (random.next() < 0.65) {
      const access = random.int(0, 3);
      operations.push({ kind: 'map', iova, pages, vaddrPage: random.int(0, 12), read: access !== 1, write: access !== 2 });
    } else {
      operations.push({ kind: 'unmap', iova, pages });
    }
  }
  return operations;
}

/** One side of the comparison: a container through backend-smmu's handle on one machine. */
export class Side {
  private readonly memory: DmaMemory;
  constructor(private readonly machine: Machine) {
    this.memory = allocateDmaMemory(machine.syscalls, 16n * PAGE);
  }

  async run(operations: readonly Operation[]): Promise<string[]> {
    const limitFile = '/sys/module/vfio_iommu_type1/parameters/dma_entry_limit';
    const saved = this.machine.syscalls.readFile(limitFile);
    this.machine.syscalls.writeFile(limitFile, String(BUDGET));
    let handle: BackendHandleV1;
    try {
      handle = await smmu({ syscalls: this.machine.syscalls, interface: interfaceOf(lane!) }).open({ groups: [], devices: [this.machine.edu] });
    } finally {
      this.machine.syscalls.writeFile(limitFile, saved);
    }
    const results: string[] = [];
    try {
      for (const operation of operations) {
        const size = operation.kind === 'allow' ? 0n : BigInt(operation.pages) * PAGE;
        try {
          if (operation.kind === 'map') {
            handle.doMap({
              iova: { start: operation.iova, last: operation.iova + size - 1n },
              memory: { address: this.memory.address + BigInt(operation.vaddrPage) * PAGE, length: size },
              access: { read: operation.read, write: operation.write },
            });
            results.push('ok');
          } else if (operation.kind === 'allow') {
            handle.doSetAllowedRanges!(operation.ranges);
            results.push('allowed');
          } else {
            results.push(`ok ${handle.doUnmap({ start: operation.iova, last: operation.iova + size - 1n })}`);
          }
        } catch (error) {
          if (!IoasError.isInstance(error) || error.errno === undefined) throw error;
          results.push(errnoName(error.errno));
        }
      }
    } finally {
      handle.doClose();
    }
    return results;
  }
}

// --- the attach/detach family ------------------------------------------------------------------
// Hot-plug at the kernel's own interface, below the SDK: a second group joins the live type1
// container (VFIO_GROUP_SET_CONTAINER) and leaves it (UNSET_CONTAINER), or a second device's cdev
// binds and attaches to the live IOAS (VFIO_DEVICE_ATTACH_IOMMUFD_PT) and detaches, interleaved
// with maps and unmaps. After every change of members, what GET_INFO or IOAS_IOVA_RANGES answers is
// part of the result, so that the usable space the two sides derive is compared too.

/** Which edu: 0 is the first (in the container from the start), 1 the second (hot-plugged). */
export type Member = 0 | 1;

/** One step of a hot-plug sequence. */
export type HotPlugOperation =
  /** Maps, unmaps and (iommufd) allow-lists, as in the map/unmap family. */
  | Operation
  /** type1: VFIO_GROUP_SET_CONTAINER; iommufd: open the cdev and BIND if not bound, then ATTACH_PT. */
  | { kind: 'attach'; member: Member }
  /** type1: VFIO_GROUP_UNSET_CONTAINER; iommufd: VFIO_DEVICE_DETACH_IOMMUFD_PT. */
  | { kind: 'detach'; member: Member }
  /** type1: VFIO_GROUP_GET_DEVICE_FD (a device fd holds the group in its container). */
  | { kind: 'open-device'; member: Member }
  /** Closes the member's newest device fd (iommufd: its cdev, which unbinds it); `none` when none is open. */
  | { kind: 'close-device'; member: Member }
  /** type1 only: VFIO_SET_IOMMU(TYPE1v2) again (needed after the last group left). */
  | { kind: 'set-iommu' };

/** The hot-plug sequence of `seed`: 4 to 14 steps mixing members' comings and goings with maps and unmaps. */
export function hotPlugSequence(seed: number, msi: bigint, msiEnd: bigint, top: bigint, kernelInterface: 'type1' | 'iommufd'): HotPlugOperation[] {
  const random = generator(seed ^ 0x5eed_4097);
  const operations: HotPlugOperation[] = [];
  const length = random.int(4, 14);
  const mapped: { iova: bigint; pages: number }[] = [];
  for (let step = 0; step < length; step++) {
    // The second edu comes and goes more often than the first, which holds the container.
    const member = (random.next() < 0.7 ? 1 : 0) as Member;
    const roll = random.next();
    const iova = interestingIova(random, msi, msiEnd, top);
    const pages = random.int(1, 4);
    if (roll < 0.16) operations.push({ kind: 'attach', member });
    else if (roll < 0.28) operations.push({ kind: 'detach', member });
    else if (roll < 0.35) operations.push({ kind: kernelInterface === 'type1' ? 'open-device' : 'attach', member });
    else if (roll < 0.41) operations.push({ kind: 'close-device', member });
    else if (roll < 0.47) operations.push(kernelInterface === 'type1' ? { kind: 'set-iommu' } : { kind: 'allow', ranges: random.next() < 0.5 ? [] : [{ start: iova, last: iova + BigInt(random.int(1, 64)) * PAGE - 1n }] });
    else if (roll < 0.77) {
      operations.push({ kind: 'map', iova, pages, vaddrPage: random.int(0, 12), read: true, write: random.next() < 0.8 });
      mapped.push({ iova, pages });
    } else if (mapped.length > 0 && random.next() < 0.5) {
      // Half the unmaps take back exactly what an earlier step mapped (if it did).
      operations.push({ kind: 'unmap', ...mapped[random.int(0, mapped.length - 1)]! });
    } else {
      operations.push({ kind: 'unmap', iova, pages });
    }
  }
  return operations;
}

/** Ranges as text: `0x0-0xfedfffff,0xfef00000-0x7fffffffff`. */
function rangesText(ranges: readonly { start: bigint; last: bigint }[] | undefined): string {
  return ranges === undefined ? 'none' : ranges.map((range) => `0x${range.start.toString(16)}-0x${range.last.toString(16)}`).join(',') || 'empty';
}

/** The errno name of a kernel refusal; anything else is rethrown. */
function refusal(error: unknown): string {
  if (!IoasError.isInstance(error) || error.errno === undefined) throw error;
  return errnoName(error.errno);
}

/** `ok`, or the errno name of the kernel's refusal. */
function outcome(step: () => unknown): string {
  try {
    step();
    return 'ok';
  } catch (error) {
    return refusal(error);
  }
}

/**
 * One side of the attach/detach comparison: the raw VFIO and iommufd objects of @ioas/vfio on one
 * machine (below backend-smmu, which would refuse some of these steps itself), with both edus.
 * The second edu is bound to vfio-pci for the side's life: {@link HotPlugSide.release} unbinds it.
 */
export class HotPlugSide {
  private readonly memory: DmaMemory;
  private readonly ioctls: VfioIoctls;
  private readonly members: readonly [string, string];

  constructor(
    private readonly machine: Machine,
    private readonly kernelInterface: 'type1' | 'iommufd',
  ) {
    this.ioctls = new VfioIoctls({ syscalls: machine.syscalls });
    this.members = [machine.edu, machine.edu2];
    machine.sysfs.bindVfio(machine.edu2);
    this.memory = allocateDmaMemory(machine.syscalls, 16n * PAGE);
  }

  /** Gives the second edu back (unbound, as the guest boots) and frees the memory. */
  release(): void {
    this.memory.free();
    this.machine.sysfs.unbindVfio(this.machine.edu2);
  }

  async run(operations: readonly HotPlugOperation[]): Promise<string[]> {
    return this.kernelInterface === 'type1' ? this.runType1(operations) : this.runIommufd(operations);
  }

  private mapOf(operation: Extract<HotPlugOperation, { kind: 'map' }>): { vaddr: bigint; size: bigint } {
    return { vaddr: this.memory.address + BigInt(operation.vaddrPage) * PAGE, size: BigInt(operation.pages) * PAGE };
  }

  private runType1(operations: readonly HotPlugOperation[]): string[] {
    const container = VfioContainer.open(this.ioctls);
    const groups: VfioGroup[] = [];
    const devices: [number[], number[]] = [[], []];
    const results: string[] = [];
    const info = (): string => {
      try {
        const answer = container.info();
        return `pgsizes 0x${answer.ioPageSizes?.toString(16)} ranges ${rangesText(answer.ranges)} avail ${answer.dmaAvailable}`;
      } catch (error) {
        return `GET_INFO ${refusal(error)}`;
      }
    };
    try {
      for (const address of this.members) groups.push(VfioGroup.open(this.ioctls, this.machine.sysfs.deviceGroup(address)!));
      groups[0]!.setContainer(container);
      container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
      for (const operation of operations) {
        try {
          switch (operation.kind) {
            case 'map': {
              const { vaddr, size } = this.mapOf(operation);
              container.mapDma(vaddr, operation.iova, size, (operation.read ? vfioUapi.VFIO_DMA_MAP_FLAG_READ : 0) | (operation.write ? vfioUapi.VFIO_DMA_MAP_FLAG_WRITE : 0));
              results.push('ok');
              break;
            }
            case 'unmap':
              results.push(`ok ${container.unmapDma(operation.iova, BigInt(operation.pages) * PAGE)}`);
              break;
            // Raw ioctls, not VfioGroup.setContainer: the wrapper's bookkeeping is not the point here.
            case 'attach':
              results.push(`${outcome(() => this.ioctls.groupSetContainer(groups[operation.member]!.fd, container.fd))} | ${info()}`);
              break;
            case 'detach':
              results.push(`${outcome(() => this.ioctls.groupUnsetContainer(groups[operation.member]!.fd))} | ${info()}`);
              break;
            case 'set-iommu':
              results.push(`${outcome(() => container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU))} | ${info()}`);
              break;
            case 'open-device':
              devices[operation.member].push(groups[operation.member]!.deviceFd(this.members[operation.member]));
              results.push('ok');
              break;
            case 'close-device': {
              const fd = devices[operation.member].pop();
              if (fd !== undefined) this.ioctls.closeFile(fd, `closing ${this.members[operation.member]}`);
              results.push(fd === undefined ? 'none' : `ok | ${info()}`);
              break;
            }
            case 'allow':
              throw new Error('allow-lists are iommufd only');
          }
        } catch (error) {
          results.push(refusal(error));
        }
      }
    } finally {
      // Device fds first: each holds its group's file (and the group in the container) open.
      for (const fd of devices.flat()) this.ioctls.closeFile(fd, 'closing a device fd');
      for (const group of groups) group.close();
      container.close();
    }
    return results;
  }

  private runIommufd(operations: readonly HotPlugOperation[]): string[] {
    const context = IommufdContext.open(this.ioctls);
    const devices: (IommufdDevice | undefined)[] = [undefined, undefined];
    const results: string[] = [];
    const ranges = (): string => {
      try {
        const answer = context.iovaRanges(ioas);
        return `ranges ${rangesText(answer.ranges)} align 0x${answer.alignment.toString(16)}`;
      } catch (error) {
        return `IOVA_RANGES ${refusal(error)}`;
      }
    };
    const bind = (member: Member): IommufdDevice => {
      const address = this.members[member];
      const cdev = this.machine.sysfs.deviceCdev(address);
      if (cdev === undefined) throw new Error(`${address} has no VFIO cdev: is it bound to vfio-pci?`);
      return context.bindDevice(`/dev/vfio/devices/${cdev}`, address);
    };
    let ioas = 0;
    try {
      ioas = context.allocateIoas();
      devices[0] = bind(0);
      devices[0].attach(ioas);
      for (const operation of operations) {
        try {
          switch (operation.kind) {
            case 'map': {
              const { vaddr, size } = this.mapOf(operation);
              context.map(ioas, vaddr, size, operation.iova, { read: operation.read, write: operation.write });
              results.push('ok');
              break;
            }
            case 'unmap':
              results.push(`ok ${context.unmap(ioas, operation.iova, BigInt(operation.pages) * PAGE)}`);
              break;
            case 'allow':
              context.allowIovas(ioas, operation.ranges);
              results.push(`allowed | ${ranges()}`);
              break;
            case 'attach': {
              const bound = devices[operation.member] === undefined ? outcome(() => (devices[operation.member] = bind(operation.member))) : 'bound';
              const attached = devices[operation.member] === undefined ? '-' : outcome(() => devices[operation.member]!.attach(ioas));
              results.push(`${bound}, ${attached} | ${ranges()}`);
              break;
            }
            case 'detach': {
              const device = devices[operation.member];
              results.push(device === undefined ? 'none' : `${outcome(() => device.detach())} | ${ranges()}`);
              break;
            }
            case 'close-device': {
              const device = devices[operation.member];
              devices[operation.member] = undefined;
              device?.close();
              results.push(device === undefined ? 'none' : `ok | ${ranges()}`);
              break;
            }
            case 'open-device':
            case 'set-iommu':
              throw new Error(`${operation.kind} is type1 only`);
          }
        } catch (error) {
          results.push(refusal(error));
        }
      }
    } finally {
      for (const device of devices) device?.close();
      context.close();
    }
    return results;
  }
}

// --- the dirty family --------------------------------------------------------------------------
// Dirty-page tracking at the kernel's own interface, through the Syscalls seam with raw structs:
// type1's VFIO_IOMMU_DIRTY_PAGES (START, STOP, GET_BITMAP) and UNMAP_DMA with GET_DIRTY_BITMAP,
// with GET_INFO's bytes (the MIGRATION capability); iommufd's GET_HW_INFO, HWPT_ALLOC with and
// without the dirty flag, device attach to a HWPT, SET_DIRTY_TRACKING, GET_DIRTY_BITMAP, DESTROY.
// Each step's answer is its return or errno, the bytes the kernel wrote back into the struct
// (pointer fields aside: they differ between machines, and are only checked to be unchanged), and
// every byte of the bitmap or data buffer, which starts filled with a pattern and has a guard after
// it: what the kernel leaves alone is compared too. The request numbers and layouts are spelled
// out here from include/uapi/linux/vfio.h and iommufd.h (6.1 and 6.12), independently of @ioas/vfio.

/** `_IO(';', nr)` (the rig's lanes are x86-64 and arm64). */
const IO = (nr: number): number => (0x3b << 8) | nr;
const REQUEST = {
  VFIO_IOMMU_GET_INFO: IO(100 + 12),
  VFIO_IOMMU_MAP_DMA: IO(100 + 13),
  VFIO_IOMMU_UNMAP_DMA: IO(100 + 14),
  VFIO_IOMMU_DIRTY_PAGES: IO(100 + 17),
  IOMMU_DESTROY: IO(0x80),
  IOMMU_IOAS_MAP: IO(0x85),
  IOMMU_IOAS_UNMAP: IO(0x86),
  IOMMU_HWPT_ALLOC: IO(0x89),
  IOMMU_GET_HW_INFO: IO(0x8a),
  IOMMU_HWPT_SET_DIRTY_TRACKING: IO(0x8b),
  IOMMU_HWPT_GET_DIRTY_BITMAP: IO(0x8c),
} as const;
/** VFIO_IOMMU_DIRTY_PAGES flags; VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, _ALL, _VADDR. */
export const DIRTY = { START: 1, STOP: 2, GET_BITMAP: 4, UNMAP_GET_DIRTY_BITMAP: 1, UNMAP_ALL: 2, UNMAP_VADDR: 4 } as const;
/** IOMMU_HWPT_ALLOC_NEST_PARENT, _DIRTY_TRACKING, IOMMU_HWPT_FAULT_ID_VALID; SET_DIRTY_TRACKING ENABLE; GET_DIRTY_BITMAP NO_CLEAR. */
export const HWPT = { NEST_PARENT: 1, DIRTY_TRACKING: 2, FAULT_ID_VALID: 4, ENABLE: 1, NO_CLEAR: 1 } as const;
/** Where the family's mappings go: 192 pages from 1 MiB, so that bitmaps span several u64 words. */
const DIRTY_BASE = 0x10_0000n;
const DIRTY_WINDOW = 192;
/** Pages of host memory each side maps from. */
const DIRTY_MEMORY_PAGES = 256;

/** A buffer the kernel writes through a pointer: its length as declared, its fill, a guard after. */
export interface DirtyBuffer {
  /** Bytes declared to the kernel (type1's bitmap.size; iommufd's are implied by the struct). */
  readonly bytes: number;
  /** The byte every position starts as (0x00 as the SDK has it, or a pattern). */
  readonly fill: number;
}

/** What a step names as its object on iommufd: the IOAS, a HWPT this sequence allocated, the HWPT attach answered, the device, or a raw id. */
export type DirtyTarget = { kind: 'ioas' } | { kind: 'hwpt'; index: number } | { kind: 'auto' } | { kind: 'device' } | { kind: 'id'; id: number };

/** One step of a dirty sequence. `size` / `argsz` are the struct's first word as passed. */
export type DirtyOperation =
  | { kind: 'map'; iova: bigint; pages: number; vaddrPage: number; write: boolean }
  | { kind: 'unmap'; iova: bigint; pages: number }
  /** type1: VFIO_IOMMU_DIRTY_PAGES without a payload (START, STOP, or a wrong flag combination). */
  | { kind: 'dirty-pages'; flags: number; argsz: number }
  /** type1: VFIO_IOMMU_DIRTY_PAGES with a vfio_iommu_type1_dirty_bitmap_get payload. */
  | { kind: 'get-bitmap'; flags: number; argsz: number; iova: bigint; size: bigint; pgsize: bigint; bitmap: DirtyBuffer }
  /** type1: VFIO_IOMMU_UNMAP_DMA with a vfio_bitmap after the struct. */
  | { kind: 'unmap-bitmap'; flags: number; argsz: number; iova: bigint; size: bigint; pgsize: bigint; bitmap: DirtyBuffer }
  /** type1: VFIO_IOMMU_GET_INFO into 256 bytes: every byte, capabilities included. */
  | { kind: 'info' }
  /** iommufd: IOMMU_GET_HW_INFO with a data buffer of `dataLen` bytes. */
  | { kind: 'hw-info'; size: number; flags: number; reserved: number; device: DirtyTarget; dataLen: number; fill: number; tail: number }
  /** iommufd: IOMMU_HWPT_ALLOC. */
  | { kind: 'hwpt-alloc'; size: number; flags: number; reserved: number; device: DirtyTarget; pt: DirtyTarget; dataType: number; dataLen: number; tail: number }
  /** iommufd: VFIO_DEVICE_ATTACH_IOMMUFD_PT of the edu to `pt`. */
  | { kind: 'attach'; pt: DirtyTarget }
  /** iommufd: IOMMU_HWPT_SET_DIRTY_TRACKING. */
  | { kind: 'set-dirty'; size: number; flags: number; reserved: number; hwpt: DirtyTarget }
  /** iommufd: IOMMU_HWPT_GET_DIRTY_BITMAP. */
  | { kind: 'hwpt-bitmap'; size: number; flags: number; reserved: number; hwpt: DirtyTarget; iova: bigint; length: bigint; pageSize: bigint; bitmap: DirtyBuffer }
  /** iommufd: IOMMU_DESTROY. */
  | { kind: 'destroy'; target: DirtyTarget };

/** type1's bitmap bytes for `pages` bits (DIRTY_BITMAP_BYTES: whole u64 words). */
export function bitmapBytes(pages: bigint): number {
  return Number(((pages + 63n) / 64n) * 8n);
}

/**
 * The dirty sequence of `seed`: 4 to 14 steps. The generator keeps a model of what it mapped and
 * whether it started tracking, so that about half the dirty steps are valid (ranges covering whole
 * mappings, the offered page size, a bitmap of the right size) and the rest break one rule each.
 */
export function dirtySequence(seed: number, kernelInterface: 'type1' | 'iommufd'): DirtyOperation[] {
  const random = generator(seed ^ 0x0d1e_7b17);
  const chance = (p: number) => random.next() < p;
  const pick = <T>(items: readonly T[]): T => items[random.int(0, items.length - 1)]!;
  const operations: DirtyOperation[] = [];
  /** Mappings the generator made (page index, pages), sorted; some may have failed. */
  const mapped: { page: number; pages: number }[] = [];
  let hwpts = 0;
  /** type1: whether the generator has asked for START (and not STOP since). */
  let started = false;
  const free = (page: number, pages: number) => page + pages <= DIRTY_WINDOW && mapped.every((m) => page + pages <= m.page || m.page + m.pages <= page);
  const fill = () => (chance(0.6) ? 0 : pick([0xff, 0x5a]));
  /** A range: most cover whole mappings (one, or a run of them, holes around allowed); the rest bisect one, or miss. */
  const range = (): { iova: bigint; size: bigint } => {
    const sorted = [...mapped].sort((a, b) => a.page - b.page);
    if (sorted.length > 0 && chance(0.7)) {
      const first = random.int(0, sorted.length - 1);
      const last = random.int(first, Math.min(sorted.length - 1, first + 2));
      let start = sorted[first]!.page;
      let end = sorted[last]!.page + sorted[last]!.pages;
      // Into the holes on either side, never into a neighbour.
      if (chance(0.3)) start = Math.max(first === 0 ? 0 : sorted[first - 1]!.page + sorted[first - 1]!.pages, start - random.int(1, 3));
      if (chance(0.3)) end = Math.min(last === sorted.length - 1 ? DIRTY_WINDOW : sorted[last + 1]!.page, end + random.int(1, 70));
      if (chance(0.25)) {
        // One rule broken: a bisected end, an unaligned start, an empty or wrapping range.
        switch (random.int(0, 4)) {
          case 0:
            if (end - start > 1) start += 1;
            break;
          case 1:
            if (end - start > 1) end -= 1;
            break;
          case 2:
            return { iova: DIRTY_BASE + BigInt(start) * PAGE + 0x800n, size: BigInt(end - start) * PAGE };
          case 3:
            return { iova: DIRTY_BASE + BigInt(start) * PAGE, size: 0n };
          default:
            return { iova: (1n << 64n) - PAGE, size: 2n * PAGE };
        }
      }
      return { iova: DIRTY_BASE + BigInt(start) * PAGE, size: BigInt(end - start) * PAGE };
    }
    const page = random.int(0, DIRTY_WINDOW - 1);
    return { iova: DIRTY_BASE + BigInt(page) * PAGE, size: BigInt(random.int(1, 80)) * PAGE };
  };
  /** A bitmap for `size` bytes of IOVA at `pgsize`: mostly the right size; sometimes a word short, larger, empty or over the kernel's largest. */
  const bitmapFor = (size: bigint, pgsize: bigint): DirtyBuffer => {
    const pages = pgsize > 0n ? size / pgsize : size / PAGE;
    const right = bitmapBytes(pages);
    const roll = random.next();
    const bytes = roll < 0.8 ? right : roll < 0.88 ? Math.max(0, right - 8) : roll < 0.96 ? right + 8 * random.int(1, 4) : roll < 0.98 ? 0 : 0x1000_0008;
    return { bytes, fill: fill() };
  };
  const pgsize = () => (chance(0.85) ? PAGE : pick([0x2000n, 0x800n, 0x10000n, 0x3000n]));
  /** HWPT allocations the generator expects to succeed (a plain HWPT for the device over the IOAS). */
  const likely: number[] = [];
  const target = (): DirtyTarget => {
    const roll = random.next();
    if (roll < 0.45 && likely.length > 0) return { kind: 'hwpt', index: pick(likely) };
    if (roll < 0.55 && hwpts > 0) return { kind: 'hwpt', index: random.int(0, hwpts - 1) };
    if (roll < 0.75) return { kind: 'auto' };
    if (roll < 0.8) return { kind: 'ioas' };
    if (roll < 0.9) return { kind: 'device' };
    return { kind: 'id', id: pick([0, 99, 0xffff_ffff]) };
  };
  const length = random.int(4, 14);
  // Most type1 sequences start tracking first; the rest read before START. Most iommufd sequences
  // attach the device to the IOAS first (its automatic HWPT is then a target) and allocate a HWPT.
  if (kernelInterface === 'type1' && chance(0.65)) {
    operations.push({ kind: 'dirty-pages', flags: DIRTY.START, argsz: 8 });
    started = true;
  }
  if (kernelInterface === 'iommufd' && chance(0.7)) operations.push({ kind: 'attach', pt: { kind: 'ioas' } });
  if (kernelInterface === 'iommufd' && chance(0.5)) {
    operations.push({ kind: 'hwpt-alloc', size: 48, tail: 0, flags: chance(0.7) ? 0 : HWPT.DIRTY_TRACKING, reserved: 0, device: { kind: 'device' }, pt: { kind: 'ioas' }, dataType: 0, dataLen: 0 });
    if ((operations.at(-1) as { flags: number }).flags === 0) likely.push(hwpts);
    hwpts += 1;
  }
  for (let step = operations.length; step < length; step++) {
    const roll = random.next();
    if (roll < 0.25 || mapped.length === 0) {
      // Maps: most in free space, 1 to 6 pages, a few long ones spanning u64 words of the bitmap.
      const pages = chance(0.15) ? random.int(60, 70) : random.int(1, 6);
      let page = random.int(0, DIRTY_WINDOW - pages);
      for (let tries = 0; tries < 8 && !free(page, pages) && chance(0.9); tries++) page = random.int(0, DIRTY_WINDOW - pages);
      if (free(page, pages)) mapped.push({ page, pages });
      operations.push({ kind: 'map', iova: DIRTY_BASE + BigInt(page) * PAGE, pages, vaddrPage: random.int(0, DIRTY_MEMORY_PAGES - pages), write: chance(0.85) });
    } else if (roll < 0.32) {
      const index = random.int(0, mapped.length - 1);
      const { page, pages } = mapped[index]!;
      mapped.splice(index, 1);
      operations.push({ kind: 'unmap', iova: DIRTY_BASE + BigInt(page) * PAGE, pages });
    } else if (kernelInterface === 'type1') {
      if (roll < 0.45) {
        // START mostly (and early), STOP, or a flag combination the kernel refuses; a short argsz.
        const flags: number = chance(started ? 0.2 : 0.7) ? DIRTY.START : chance(0.45) ? DIRTY.STOP : pick([0, 3, 5, 6, 7, 8, 0x10]);
        const argsz = chance(0.92) ? 8 : pick([0, 4, 7]);
        if (argsz === 8 && (flags === DIRTY.START || flags === DIRTY.STOP)) started = flags === DIRTY.START;
        operations.push({ kind: 'dirty-pages', flags, argsz });
      } else if (roll < 0.8) {
        const { iova, size } = range();
        const size2 = pgsize();
        operations.push({ kind: 'get-bitmap', flags: chance(0.95) ? DIRTY.GET_BITMAP : DIRTY.GET_BITMAP | DIRTY.START, argsz: chance(0.9) ? 48 : pick([8, 40, 47, 64]), iova, size, pgsize: size2, bitmap: bitmapFor(size, size2) });
      } else if (roll < 0.95) {
        const { iova, size } = range();
        const size2 = pgsize();
        const flags = chance(0.85) ? DIRTY.UNMAP_GET_DIRTY_BITMAP : chance(0.5) ? DIRTY.UNMAP_GET_DIRTY_BITMAP | pick([DIRTY.UNMAP_ALL, DIRTY.UNMAP_VADDR]) : 0;
        const start = Number((iova - DIRTY_BASE) / PAGE);
        const end = start + Number(size / PAGE);
        for (let index = mapped.length - 1; index >= 0; index--) if (mapped[index]!.page >= start && mapped[index]!.page + mapped[index]!.pages <= end) mapped.splice(index, 1);
        operations.push({ kind: 'unmap-bitmap', flags, argsz: chance(0.9) ? 48 : pick([24, 40, 47, 56]), iova, size, pgsize: size2, bitmap: bitmapFor(size, size2) });
      } else {
        operations.push({ kind: 'info' });
      }
    } else {
      // iommufd: a struct `size` mostly exact; sometimes under the kernel's minimum, or longer with a zero or non-zero tail.
      const size = (exact: number, minimum: number): { size: number; tail: number } => {
        const r = random.next();
        return r < 0.88 ? { size: exact, tail: 0 } : r < 0.92 ? { size: minimum - 1, tail: 0 } : r < 0.96 ? { size: exact + 8, tail: 0 } : { size: exact + 8, tail: 1 };
      };
      if (roll < 0.4) {
        operations.push({ kind: 'attach', pt: chance(0.5) ? { kind: 'ioas' } : target() });
      } else if (roll < 0.5) {
        const { size: bytes, tail } = size(40, 32);
        operations.push({ kind: 'hw-info', size: bytes, tail, flags: chance(0.93) ? 0 : 1, reserved: chance(0.95) ? 0 : 1, device: chance(0.85) ? { kind: 'device' } : target(), dataLen: pick([0, 8, 24, 64]), fill: pick([0, 0x5a]) });
      } else if (roll < 0.65) {
        const { size: bytes, tail } = size(48, 24);
        const flags = chance(0.45) ? 0 : chance(0.6) ? HWPT.DIRTY_TRACKING : pick([HWPT.NEST_PARENT, HWPT.FAULT_ID_VALID, 8, HWPT.NEST_PARENT | HWPT.DIRTY_TRACKING]);
        const dataType = chance(0.92) ? 0 : 1;
        const device: DirtyTarget = chance(0.9) ? { kind: 'device' } : target();
        const pt: DirtyTarget = chance(0.8) ? { kind: 'ioas' } : target();
        const operation: Extract<DirtyOperation, { kind: 'hwpt-alloc' }> = { kind: 'hwpt-alloc', size: bytes, tail, flags, reserved: chance(0.95) ? 0 : 1, device, pt, dataType, dataLen: chance(0.9) ? (dataType === 0 ? 0 : 24) : 8 };
        if (flags === 0 && bytes === 48 && tail === 0 && operation.reserved === 0 && operation.device.kind === 'device' && operation.pt.kind === 'ioas' && dataType === 0 && operation.dataLen === 0) likely.push(hwpts);
        operations.push(operation);
        hwpts += 1;
      } else if (roll < 0.78) {
        const { size: bytes } = size(16, 16);
        operations.push({ kind: 'set-dirty', size: bytes, flags: chance(0.6) ? HWPT.ENABLE : chance(0.75) ? 0 : 2, reserved: chance(0.95) ? 0 : 1, hwpt: target() });
      } else if (roll < 0.95) {
        const { size: bytes } = size(48, 48);
        const { iova, size: length2 } = range();
        const pageSize = chance(0.8) ? PAGE : pick([0n, 0x800n, 0x2000n, 0x3000n]);
        operations.push({ kind: 'hwpt-bitmap', size: bytes, flags: chance(0.8) ? 0 : pick([HWPT.NO_CLEAR, 2]), reserved: chance(0.95) ? 0 : 1, hwpt: target(), iova, length: length2, pageSize, bitmap: { bytes: Math.min(4096, bitmapBytes(length2 / (pageSize === 0n ? PAGE : pageSize)) || 8), fill: fill() } });
      } else {
        operations.push({ kind: 'destroy', target: target() });
      }
    }
  }
  return operations;
}

/** Bytes as hex, runs of one byte shortened (`(00*24)`), so that reports stay readable. */
export function hexRuns(bytes: Uint8Array): string {
  const parts: string[] = [];
  for (let index = 0; index < bytes.length; ) {
    let end = index + 1;
    while (end < bytes.length && bytes[end] === bytes[index]) end++;
    const byte = bytes[index]!.toString(16).padStart(2, '0');
    parts.push(end - index > 2 ? `(${byte}*${end - index})` : byte.repeat(end - index));
    index = end;
  }
  return parts.join('');
}

/**
 * One side of the dirty comparison: raw ioctls through the machine's Syscalls on a fresh container
 * (type1: the first edu's group, TYPE1v2) or iommufd context (an IOAS, the first edu bound).
 */
export class DirtySide {
  private readonly memory: DmaMemory;
  private readonly ioctls: VfioIoctls;
  /** One off-heap arena for every bitmap and data buffer (small typed arrays may move in V8's heap). */
  private readonly arena = new Uint8Array(16384);

  constructor(
    private readonly machine: Machine,
    private readonly kernelInterface: 'type1' | 'iommufd',
  ) {
    this.ioctls = new VfioIoctls({ syscalls: machine.syscalls });
    this.memory = allocateDmaMemory(machine.syscalls, BigInt(DIRTY_MEMORY_PAGES) * PAGE);
  }

  release(): void {
    this.memory.free();
  }

  async run(operations: readonly DirtyOperation[]): Promise<string[]> {
    return this.kernelInterface === 'type1' ? this.runType1(operations) : this.runIommufd(operations);
  }

  private get syscalls() {
    return this.machine.syscalls;
  }

  /** ioctl with a struct; `ok N` or the errno name. */
  private call(fd: number, request: number, bytes: Uint8Array): string {
    const result = this.syscalls.ioctl(fd, request, bytes);
    return result < 0 ? errnoName(-result) : `ok ${result}`;
  }

  /**
   * A buffer of `declared` bytes in the arena, filled, with 16 guard bytes after it; returns its
   * address and a reader of every byte (declared and guard). Declared sizes beyond the arena (the
   * kernel's largest plus one) get the arena's room: the kernel must refuse them before writing.
   */
  private buffer(declared: number, fill: number): { address: bigint; read: () => string } {
    const room = Math.min(declared, this.arena.length - 16);
    const view = this.arena.subarray(0, room + 16);
    view.fill(fill, 0, room);
    view.fill(0xee, room);
    const address = this.syscalls.addressOf(this.arena);
    return { address, read: () => `${hexRuns(view.subarray(0, room))}|${hexRuns(view.subarray(room))}` };
  }

  /**
   * A struct of `size` bytes (at least `layout`, so that every field can be set). `written` gives the
   * bytes as the kernel left them, each pointer field (offset, value passed) zeroed when unchanged
   * and named when the kernel changed it.
   */
  private struct(size: number, layout: number): { bytes: Uint8Array; view: DataView; written: (pointers?: readonly (readonly [number, bigint])[]) => string } {
    const bytes = new Uint8Array(Math.max(size, layout, 8));
    const view = new DataView(bytes.buffer);
    return {
      bytes,
      view,
      written: (pointers = []) => {
        const copy = bytes.slice();
        let changed = '';
        for (const [offset, value] of pointers) {
          if (view.getBigUint64(offset, true) === value) copy.fill(0, offset, offset + 8);
          else changed += ` (pointer at ${offset} changed)`;
        }
        return hexRuns(copy) + changed;
      },
    };
  }

  private runType1(operations: readonly DirtyOperation[]): string[] {
    const container = VfioContainer.open(this.ioctls);
    const group = VfioGroup.open(this.ioctls, this.machine.sysfs.deviceGroup(this.machine.edu)!);
    const results: string[] = [];
    try {
      group.setContainer(container);
      container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
      for (const operation of operations) results.push(this.type1Step(container.fd, operation));
    } finally {
      group.close();
      container.close();
    }
    return results;
  }

  private type1Step(fd: number, operation: DirtyOperation): string {
    switch (operation.kind) {
      case 'map': {
        const map = this.struct(32, 32);
        map.view.setUint32(0, 32, true);
        map.view.setUint32(4, 1 | (operation.write ? 2 : 0), true);
        map.view.setBigUint64(8, this.memory.address + BigInt(operation.vaddrPage) * PAGE, true);
        map.view.setBigUint64(16, operation.iova, true);
        map.view.setBigUint64(24, BigInt(operation.pages) * PAGE, true);
        return this.call(fd, REQUEST.VFIO_IOMMU_MAP_DMA, map.bytes);
      }
      case 'unmap': {
        const unmap = this.struct(24, 24);
        unmap.view.setUint32(0, 24, true);
        unmap.view.setBigUint64(8, operation.iova, true);
        unmap.view.setBigUint64(16, BigInt(operation.pages) * PAGE, true);
        return `${this.call(fd, REQUEST.VFIO_IOMMU_UNMAP_DMA, unmap.bytes)} | ${unmap.written()}`;
      }
      case 'dirty-pages': {
        const dirty = this.struct(8, 8);
        dirty.view.setUint32(0, operation.argsz, true);
        dirty.view.setUint32(4, operation.flags, true);
        return `${this.call(fd, REQUEST.VFIO_IOMMU_DIRTY_PAGES, dirty.bytes)} | ${dirty.written()}`;
      }
      case 'get-bitmap': {
        const bitmap = this.buffer(operation.bitmap.bytes, operation.bitmap.fill);
        const dirty = this.struct(operation.argsz, 48);
        dirty.view.setUint32(0, operation.argsz, true);
        dirty.view.setUint32(4, operation.flags, true);
        dirty.view.setBigUint64(8, operation.iova, true);
        dirty.view.setBigUint64(16, operation.size, true);
        dirty.view.setBigUint64(24, operation.pgsize, true);
        dirty.view.setBigUint64(32, BigInt(operation.bitmap.bytes), true);
        dirty.view.setBigUint64(40, bitmap.address, true);
        return `${this.call(fd, REQUEST.VFIO_IOMMU_DIRTY_PAGES, dirty.bytes)} | ${dirty.written([[40, bitmap.address]])} | ${bitmap.read()}`;
      }
      case 'unmap-bitmap': {
        const bitmap = this.buffer(operation.bitmap.bytes, operation.bitmap.fill);
        const unmap = this.struct(operation.argsz, 48);
        unmap.view.setUint32(0, operation.argsz, true);
        unmap.view.setUint32(4, operation.flags, true);
        unmap.view.setBigUint64(8, operation.iova, true);
        unmap.view.setBigUint64(16, operation.size, true);
        unmap.view.setBigUint64(24, operation.pgsize, true);
        unmap.view.setBigUint64(32, BigInt(operation.bitmap.bytes), true);
        unmap.view.setBigUint64(40, bitmap.address, true);
        return `${this.call(fd, REQUEST.VFIO_IOMMU_UNMAP_DMA, unmap.bytes)} | ${unmap.written([[40, bitmap.address]])} | ${bitmap.read()}`;
      }
      case 'info': {
        const info = this.struct(256, 256);
        info.view.setUint32(0, 256, true);
        return `${this.call(fd, REQUEST.VFIO_IOMMU_GET_INFO, info.bytes)} | ${info.written()}`;
      }
      default:
        throw new Error(`${operation.kind} is iommufd only`);
    }
  }

  private runIommufd(operations: readonly DirtyOperation[]): string[] {
    const context = IommufdContext.open(this.ioctls);
    const results: string[] = [];
    let device: IommufdDevice | undefined;
    try {
      const ioas = context.allocateIoas();
      const cdev = this.machine.sysfs.deviceCdev(this.machine.edu);
      if (cdev === undefined) throw new Error(`${this.machine.edu} has no VFIO cdev`);
      device = context.bindDevice(`/dev/vfio/devices/${cdev}`, this.machine.edu);
      const bound = device;
      /** The HWPT ids this sequence's allocations answered (0 for a refusal), and the one attach answered. */
      const hwpts: number[] = [];
      let auto = 0;
      const id = (target: DirtyTarget): number => {
        switch (target.kind) {
          case 'ioas':
            return ioas;
          case 'hwpt':
            return hwpts[target.index] ?? 0;
          case 'auto':
            return auto;
          case 'device':
            return bound.deviceId;
          default:
            return target.id;
        }
      };
      for (const operation of operations) {
        switch (operation.kind) {
          case 'map': {
            const map = this.struct(40, 40);
            map.view.setUint32(0, 40, true);
            // FIXED_IOVA | WRITEABLE | READABLE
            map.view.setUint32(4, 1 | (operation.write ? 2 : 0) | 4, true);
            map.view.setUint32(8, ioas, true);
            const va = this.memory.address + BigInt(operation.vaddrPage) * PAGE;
            map.view.setBigUint64(16, va, true);
            map.view.setBigUint64(24, BigInt(operation.pages) * PAGE, true);
            map.view.setBigUint64(32, operation.iova, true);
            results.push(`${this.call(context.fd, REQUEST.IOMMU_IOAS_MAP, map.bytes)} | ${map.written([[16, va]])}`);
            break;
          }
          case 'unmap': {
            const unmap = this.struct(24, 24);
            unmap.view.setUint32(0, 24, true);
            unmap.view.setUint32(4, ioas, true);
            unmap.view.setBigUint64(8, operation.iova, true);
            unmap.view.setBigUint64(16, BigInt(operation.pages) * PAGE, true);
            results.push(`${this.call(context.fd, REQUEST.IOMMU_IOAS_UNMAP, unmap.bytes)} | ${unmap.written()}`);
            break;
          }
          case 'attach': {
            try {
              const answered = bound.attach(id(operation.pt));
              if (operation.pt.kind === 'ioas') auto = answered;
              results.push(`ok pt ${answered}`);
            } catch (error) {
              results.push(refusal(error));
            }
            break;
          }
          case 'hw-info': {
            const data = this.buffer(operation.dataLen, operation.fill);
            const info = this.struct(operation.size, 40);
            info.view.setUint32(0, operation.size, true);
            info.view.setUint32(4, operation.flags, true);
            info.view.setUint32(8, id(operation.device), true);
            info.view.setUint32(12, operation.dataLen, true);
            info.view.setBigUint64(16, data.address, true);
            info.bytes[29] = operation.reserved;
            if (operation.tail !== 0) info.bytes[info.bytes.length - 1] = operation.tail;
            results.push(`${this.call(context.fd, REQUEST.IOMMU_GET_HW_INFO, info.bytes)} | ${info.written([[16, data.address]])} | ${data.read()}`);
            break;
          }
          case 'hwpt-alloc': {
            const alloc = this.struct(operation.size, 48);
            alloc.view.setUint32(0, operation.size, true);
            alloc.view.setUint32(4, operation.flags, true);
            alloc.view.setUint32(8, id(operation.device), true);
            alloc.view.setUint32(12, id(operation.pt), true);
            alloc.view.setUint32(20, operation.reserved, true);
            alloc.view.setUint32(24, operation.dataType, true);
            alloc.view.setUint32(28, operation.dataLen, true);
            // No data is ever valid here: data_uptr points at zeroes the kernel may read.
            const data = operation.dataLen === 0 ? 0n : this.buffer(operation.dataLen, 0).address;
            alloc.view.setBigUint64(32, data, true);
            if (operation.tail !== 0) alloc.bytes[alloc.bytes.length - 1] = operation.tail;
            const answer = this.call(context.fd, REQUEST.IOMMU_HWPT_ALLOC, alloc.bytes);
            hwpts.push(answer.startsWith('ok') ? alloc.view.getUint32(16, true) : 0);
            results.push(`${answer} | ${alloc.written([[32, data]])}`);
            break;
          }
          case 'set-dirty': {
            const set = this.struct(operation.size, 16);
            set.view.setUint32(0, operation.size, true);
            set.view.setUint32(4, operation.flags, true);
            set.view.setUint32(8, id(operation.hwpt), true);
            set.view.setUint32(12, operation.reserved, true);
            results.push(`${this.call(context.fd, REQUEST.IOMMU_HWPT_SET_DIRTY_TRACKING, set.bytes)} | ${set.written()}`);
            break;
          }
          case 'hwpt-bitmap': {
            const bitmap = this.buffer(operation.bitmap.bytes, operation.bitmap.fill);
            const get = this.struct(operation.size, 48);
            get.view.setUint32(0, operation.size, true);
            get.view.setUint32(4, id(operation.hwpt), true);
            get.view.setUint32(8, operation.flags, true);
            get.view.setUint32(12, operation.reserved, true);
            get.view.setBigUint64(16, operation.iova, true);
            get.view.setBigUint64(24, operation.length, true);
            get.view.setBigUint64(32, operation.pageSize, true);
            get.view.setBigUint64(40, bitmap.address, true);
            results.push(`${this.call(context.fd, REQUEST.IOMMU_HWPT_GET_DIRTY_BITMAP, get.bytes)} | ${get.written([[40, bitmap.address]])} | ${bitmap.read()}`);
            break;
          }
          case 'destroy': {
            const destroy = this.struct(8, 8);
            destroy.view.setUint32(0, 8, true);
            destroy.view.setUint32(4, id(operation.target), true);
            results.push(`${this.call(context.fd, REQUEST.IOMMU_DESTROY, destroy.bytes)} | ${destroy.written()}`);
            break;
          }
          default:
            throw new Error(`${operation.kind} is type1 only`);
        }
      }
    } finally {
      device?.close();
      context.close();
    }
    return results;
  }
}
