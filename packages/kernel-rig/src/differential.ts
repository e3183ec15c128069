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
