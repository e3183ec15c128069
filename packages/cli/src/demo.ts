/**
 * `ioas demo` (and `pnpm demo`): the SDK's two IOMMU models on the simulator, through the real
 * backends over the simulator's syscall face, so the same code runs on hardware with the default
 * syscalls.
 * 1. A Freescale P4080 (PAMU, windowed) through @ioas/backend-pamu: the seed example's window plan
 *    (a 256 MiB guest on 64 MiB hugepages, 3 MSI banks) applied, a device DMA landing in guest RAM,
 *    an MSI delivered through a mapped bank.
 * 2. An ARM SMMUv3 (paged) through @ioas/backend-smmu: the kernel's software MSI window reported
 *    and kept clear, a mapping, and a device DMA to an unmapped IOVA faulting.
 */
import { applyWindowPlan, pamu } from '@ioas/backend-pamu';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { eduDevice } from '@ioas/backend-sim/testing';
import { smmu } from '@ioas/backend-smmu';
import { Container, formatRange, formatSize, formatWindowPlan, hex, IoasError, planWindows, type ContainerSnapshot, type IovaRange } from '@ioas/core';

const MiB = 1n << 20n;

/** A reserved range and its kind. */
export interface IovaRangeWithKind extends IovaRange {
  /** The reserved kind (`msi`...). */
  readonly kind: string;
}

/** What the demo found, for `--json`. */
export interface DemoSummary {
  /** The P4080 part. */
  readonly pamu: {
    /** The seed plan. */
    readonly plan: ReturnType<typeof planWindows>;
    /** The device's DMA landed in guest RAM. */
    readonly dmaLanded: boolean;
    /** The device's MSI was delivered through bank 0. */
    readonly msiDelivered: boolean;
    /** Where the device writes its MSIs, per bank. */
    readonly msiDoorbells: readonly bigint[];
  };
  /** The SMMUv3 part. */
  readonly smmu: {
    /** The reserved regions. */
    readonly reserved: readonly IovaRangeWithKind[];
    /** The IOVA range the container allocated for the mapping. */
    readonly mapped: IovaRange;
    /** Why the map into the MSI window was refused. */
    readonly refused: string;
    /** The DMA to an unmapped IOVA faulted. */
    readonly faulted: boolean;
    /** Host memory stayed untouched by it. */
    readonly memoryUntouched: boolean;
  };
}

/** Runs the demo, writing its narrative through `say` and handing each container's snapshot to `picture` before it closes. */
export async function runDemo(say: (line: string) => void, picture: (name: string, snapshot: ContainerSnapshot) => void = () => undefined): Promise<DemoSummary> {
  const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

  say('== Freescale P4080 (PAMU, windowed), through @ioas/backend-pamu ==\n');
  const p4080 = createSimulator({ platform: 'p4080' });
  const edu = eduDevice(p4080);
  const pamuBackend = pamu({ profile: 'sdk-4.x', syscalls: simSyscalls(p4080), littleEndian: false });
  const guest = { iova: 0n, size: 256n * MiB, pageSize: 64n * MiB };
  const plan = planWindows({ memory: [guest], msiBanks: 3 });
  say(`${formatWindowPlan(plan)}\n`);
  let pamuSummary: DemoSummary['pamu'];
  {
    const container = await Container.open({ backend: pamuBackend, groups: [edu.group!] });
    try {
      // Guest RAM on 64 MiB hugepages: physically contiguous, one per window.
      const ram = p4080.memory.allocate(guest.size, guest.pageSize);
      const applied = applyWindowPlan(container, plan, [{ address: ram.address, length: guest.size, contiguousPageSize: guest.pageSize }]);
      say(`mapped guest RAM: ${applied.mappings.map((mapping) => formatRange(mapping.iova)).join(', ')} (${formatSize(guest.size)} in ${plan.windows.filter((window) => window.kind === 'dma').length} windows of ${formatSize(plan.windowSize)})`);
      const banks = pamuBackend.containerOf(edu.group!).msiBanks();
      for (const bank of banks) say(`mapped MSI bank ${bank.bank} into the window at ${hex(bank.iova)}; the device writes its MSIs to ${hex(bank.deviceAddress ?? 0n)}`);
      const message = 'written by the device through window 3';
      edu.dmaWrite(0x0c00_1000n, new TextEncoder().encode(message));
      const landed = decode(p4080.memory.read(ram.address + 0x0c00_1000n, message.length));
      say(`device DMA to IOVA 0xc001000 landed in guest RAM: "${landed}"`);
      let delivered = 0;
      edu.enableMsi([() => delivered++]);
      edu.raiseMsi(0);
      say(`device MSI delivered: ${delivered === 1 ? 'yes' : 'no'}`);
      say(`stats: ${JSON.stringify(container.stats(), (_, value: unknown) => (typeof value === 'bigint' ? hex(value) : value))}`);
      picture('p4080', container.snapshot("seed 000's 256 MiB guest on a simulated P4080 (PAMU)"));
      say('');
      pamuSummary = { plan, dmaLanded: landed === message, msiDelivered: delivered === 1, msiDoorbells: banks.map((bank) => bank.deviceAddress ?? 0n) };
    } finally {
      container.close();
    }
  }

  say('== ARM SMMUv3 (paged, VFIO type1v2), through @ioas/backend-smmu ==\n');
  const arm = createSimulator({ platform: 'arm-smmuv3' });
  const armEdu = eduDevice(arm);
  const smmuBackend = smmu({ syscalls: simSyscalls(arm), interface: 'type1', arch: 'generic', littleEndian: true });
  const container = await Container.open({ backend: smmuBackend, groups: [armEdu.group!] });
  try {
    const reserved = container.reserved();
    for (const region of reserved) say(`reserved: ${formatRange(region)} ${region.kind} (from ${region.source})`);
    say(`usable:   ${container.usable().map(formatRange).join(', ')}`);
    const [doorbells] = container.msi.plan().doorbells;
    say(`MSI: ${container.capabilities.msi}; the kernel maps doorbells in ${formatRange(doorbells!.iova)}`);
    const buffer = arm.memory.allocate(2n * MiB, 2n * MiB);
    const mapping = container.map({ memory: { address: buffer.address, length: buffer.length } });
    say(`mapped 2 MiB at IOVA ${formatRange(mapping.iova)} (allocated, 2 MiB aligned)`);
    let refused = '';
    try {
      container.map({ iova: 0x800_0000n, memory: { address: buffer.address, length: 0x1000n } });
    } catch (error) {
      if (!IoasError.isInstance(error)) throw error;
      refused = error.message;
      say(`refused before the kernel saw it: ${refused}`);
    }
    const before = arm.memory.read(buffer.address, 8);
    const ok = armEdu.dmaWrite(0x4000_0000n, new Uint8Array(8).fill(0xff));
    say(`device DMA to unmapped IOVA 0x40000000: ${ok ? 'landed?!' : 'faulted'}; kernel log: ${arm.faults.at(-1)?.log ?? 'none'}`);
    const untouched = arm.memory.read(buffer.address, 8).every((byte, index) => byte === before[index]);
    say(`memory untouched: ${untouched}`);
    picture('arm-smmuv3', container.snapshot('a simulated ARM SMMUv3 container (type1v2) with its MSI window'));
    return {
      pamu: pamuSummary,
      smmu: {
        reserved: reserved.map((region) => ({ start: region.start, last: region.last, kind: region.kind })),
        mapped: { start: mapping.iova.start, last: mapping.iova.last },
        refused,
        faulted: !ok,
        memoryUntouched: untouched,
      },
    };
  } finally {
    container.close();
  }
}
