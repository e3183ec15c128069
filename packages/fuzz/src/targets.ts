// The targets the fuzz test drives: each opens a fresh simulated machine and a container on it, and
// says how to look inside the simulated kernel (its table of mappings, its IOMMU's translation).
import { pamu } from '@ioas/backend-pamu';
import { createSimulator, Hwpt, Ioas, PagedDomain, PamuDomain, sim, simSyscalls, type SimDevice, type Simulator, type Translation } from '@ioas/backend-sim';
import { eduDevice } from '@ioas/backend-sim/testing';
import { smmu } from '@ioas/backend-smmu';
import { Container, type Backend } from '@ioas/core';

/** The mapping budget (type1's dma_entry_limit) the type1 targets open with: small, so that sequences reach it. */
export const TYPE1_BUDGET = 4;

/** One mapping as the simulated kernel holds it. */
export interface KernelMapping {
  readonly start: bigint;
  readonly last: bigint;
  readonly vaddr: bigint;
  readonly read: boolean;
  readonly write: boolean;
}

/** A container open on a fresh simulated machine. */
export interface Opened {
  readonly container: Container;
  readonly simulator: Simulator;
  /** The device whose DMA goes through the container's domain. */
  readonly device: SimDevice;
  /** Opens another container with the same backend on the same machine. */
  openAnother(options: { groups?: unknown; devices?: unknown } | null): Promise<Container>;
  /** The mapping budget the target was opened with (`null`: no count limit). */
  readonly budget: number | null;
  /** Base of `units` host memory units of `unit` bytes, each one physically contiguous chunk. */
  pool(unit: bigint): bigint;
  /** The simulated kernel's table of mappings for this container, in IOVA order. */
  kernelTable(): KernelMapping[];
  /** What the IOMMU does with a device access at `iova`. */
  translate(iova: bigint, write: boolean): Translation;
}

export interface Target {
  readonly name: string;
  /** A windowed IOMMU (PAMU): setGeometry and MSI banks are generated more often. */
  readonly windowed: boolean;
  open(): Promise<Opened>;
}

/**
 * Host memory units in a pool of `unit`-byte units: enough for every offset plus length the
 * commands use (regions of up to 1,100 small units reach across a 1 MiB MSI window).
 */
export function poolUnits(unit: bigint): bigint {
  return unit <= 0x10000n ? 1100n : 40n;
}

function opened(container: Container, simulator: Simulator, device: SimDevice, budget: number | null, backend: Backend): Opened {
  const pools = new Map<bigint, bigint>();
  return {
    container,
    openAnother: (options) => Container.open(options === null ? (null as never) : ({ backend, ...options } as never)),
    simulator,
    device,
    budget,
    pool(unit) {
      let base = pools.get(unit);
      if (base === undefined) {
        base = simulator.memory.allocate(poolUnits(unit) * unit, unit).address;
        pools.set(unit, base);
      }
      return base;
    },
    kernelTable() {
      const domain = device.domain;
      if (domain === undefined) return [];
      if (domain instanceof PamuDomain) {
        return domain.dmaRanges.map((range) => ({ start: range.iova, last: range.iova + range.size - 1n, vaddr: range.vaddr, read: range.read, write: range.write }));
      }
      if (domain instanceof Ioas) return domain.areas.all();
      // A device on an iommufd HWPT (a dirty-tracking one) translates through the HWPT's IOAS.
      if (domain instanceof Hwpt) return domain.ioas.areas.all();
      if (domain instanceof PagedDomain) return domain.all();
      throw new Error(`unknown domain ${String(domain)}`);
    },
    translate(iova, write) {
      const domain = device.domain;
      return domain === undefined ? { kind: 'fault', reason: 'unmapped' } : domain.translate(iova, write);
    },
  };
}

function simTarget(platform: 'p4080' | 'arm-smmuv3' | 'x86-vtd', kernelInterface: 'type1' | 'iommufd'): Target {
  const name = platform === 'p4080' ? 'sim p4080' : `sim ${platform} ${kernelInterface}`;
  return {
    name,
    windowed: platform === 'p4080',
    async open() {
      const budget = platform !== 'p4080' && kernelInterface === 'type1' ? TYPE1_BUDGET : null;
      const backend = sim({ platform, ...(budget === null ? {} : { dmaEntryLimit: budget }), ...(kernelInterface === 'iommufd' ? { interface: 'iommufd' } : {}) });
      const simulator = backend.simulator;
      const edu = eduDevice(simulator);
      const container = kernelInterface === 'iommufd' ? await Container.open({ backend, devices: [edu.address] }) : await Container.open({ backend, groups: [edu.group!] });
      return opened(container, simulator, edu, budget, backend);
    },
  };
}

function smmuTarget(platform: 'arm-smmuv3' | 'x86-vtd', kernelInterface: 'type1' | 'iommufd'): Target {
  return {
    name: `smmu ${platform} ${kernelInterface}`,
    windowed: false,
    async open() {
      const simulator = createSimulator({ platform });
      const syscalls = simSyscalls(simulator);
      const backend = smmu({ syscalls, interface: kernelInterface, arch: 'generic', littleEndian: true });
      const edu = eduDevice(simulator);
      let container: Container;
      let budget: number | null = null;
      if (kernelInterface === 'type1') {
        // As root would: dma_entry_limit is read when SET_IOMMU runs (docs/kernel-rules.md#the-mapping-budget).
        syscalls.writeFile('/sys/module/vfio_iommu_type1/parameters/dma_entry_limit', String(TYPE1_BUDGET));
        budget = TYPE1_BUDGET;
        container = await Container.open({ backend, groups: [edu.group!] });
      } else {
        container = await Container.open({ backend, devices: [edu.address] });
      }
      return opened(container, simulator, edu, budget, backend);
    },
  };
}

function pamuTarget(): Target {
  return {
    name: 'pamu sdk-4.x',
    windowed: true,
    async open() {
      const simulator = createSimulator({ platform: 'p4080', pamuType: 7 });
      const backend = pamu({ profile: 'sdk-4.x', syscalls: simSyscalls(simulator), littleEndian: false });
      const edu = eduDevice(simulator);
      const container = await Container.open({ backend, groups: [edu.group!] });
      return opened(container, simulator, edu, null, backend);
    },
  };
}

export const TARGETS: readonly Target[] = [
  simTarget('p4080', 'type1'),
  simTarget('arm-smmuv3', 'type1'),
  simTarget('x86-vtd', 'type1'),
  simTarget('arm-smmuv3', 'iommufd'),
  simTarget('x86-vtd', 'iommufd'),
  smmuTarget('arm-smmuv3', 'type1'),
  smmuTarget('x86-vtd', 'type1'),
  smmuTarget('arm-smmuv3', 'iommufd'),
  smmuTarget('x86-vtd', 'iommufd'),
  pamuTarget(),
];
