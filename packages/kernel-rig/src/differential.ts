/**
 * The differential's vocabulary: random map/unmap/allow sequences (the same seed gives the same
 * sequence everywhere) and one side of the comparison, a container through backend-smmu's handle
 * on one machine. differential.test.ts runs them on the real kernel and the simulator; the trace
 * test records a few on the real kernel for replay.
 */
import { errnoName, IoasError, type BackendHandleV1 } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { allocateDmaMemory, type DmaMemory } from '@ioas/vfio';
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
