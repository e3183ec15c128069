/**
 * Snapshots for the tests, produced by the simulator (never written by hand, so that they stay
 * what a real container reports): the three example scenarios of packages/cli/examples, as
 * objects (`yaml` is not a dependency here), and containers opened directly for the rest.
 */
import { runScenario, sim, validateScenario } from '@ioas/backend-sim';
import { eduDevice } from '@ioas/backend-sim/testing';
import { Container, type ContainerSnapshot } from '@ioas/core';

/** packages/cli/examples/*.yaml, step for step. */
export const EXAMPLE_SCENARIOS = {
  p4080: {
    platform: 'p4080',
    steps: [
      { geometry: { aperture: '512M@0', windows: 8 } },
      { map: { iova: 0, size: '256M', page: '64M' } },
      { 'msi-map': { iova: 0x10000000 } },
      { 'dma-write': { iova: 0xc001000, data: 'written by the device through window 3' } },
      { 'dma-read': { iova: 0xc001000, length: 38 } },
      { msi: {} },
      { 'dma-write': { iova: 0x1c000000, data: 'window 7 is disabled' }, expect: 'fault' },
      { map: { iova: 0x1c000000, size: '4K', page: '4K' }, expect: 'misaligned' },
    ],
  },
  'arm-smmuv3': {
    platform: 'arm-smmuv3',
    steps: [
      { 'map-region': { iova: 0, size: '256M', page: '2M' } },
      { map: { iova: 0x8000000, size: '4K' }, expect: 'reserved' },
      { 'dma-write': { iova: 0x1000, data: 'hello from the device' } },
      { 'dma-read': { iova: 0x1000, length: 21 } },
      { 'dma-write': { iova: 0x40000000, data: 'nobody mapped this' }, expect: 'fault' },
      { msi: {} },
    ],
  },
  'x86-vtd': {
    platform: 'x86-vtd',
    steps: [
      { map: { iova: 0, size: '2M', page: '2M' } },
      { map: { iova: 0xfee00000, size: '4K' }, expect: 'reserved' },
      { map: { iova: 0x100000, size: '4K' }, expect: 'overlap' },
      { 'dma-write': { iova: 0x2000, data: 'DMA through VT-d' } },
      { 'dma-read': { iova: 0x2000, length: 16 } },
      { msi: {} },
    ],
  },
} as const;

/** A platform of the examples. */
export type ExamplePlatform = keyof typeof EXAMPLE_SCENARIOS;

/** The snapshot at the end of a scenario given as plain objects (what a YAML file parses to). */
export async function scenarioSnapshot(input: unknown): Promise<ContainerSnapshot> {
  const validation = validateScenario(input);
  if (!validation.ok) throw new Error(`bad test scenario: ${JSON.stringify(validation.issues)}`);
  const result = await runScenario(validation.scenario, { snapshot: true });
  if (!result.ok || result.snapshot === undefined) throw new Error(`test scenario failed: ${JSON.stringify(result.events.at(-1))}`);
  return result.snapshot;
}

/** The snapshot of one example scenario. */
export function exampleSnapshot(platform: ExamplePlatform): Promise<ContainerSnapshot> {
  return scenarioSnapshot(EXAMPLE_SCENARIOS[platform]);
}

const MiB = 1n << 20n;

/**
 * A paged container with SDK windows and an allocation: an SMMUv3 container with two windows
 * (1 GiB at 1 GiB, 2 MiB at 4 GiB), 64 MiB mapped in the first and 2 MiB allocated, not mapped.
 */
export async function windowsSnapshot(title?: string): Promise<ContainerSnapshot> {
  const backend = sim({ platform: 'arm-smmuv3' });
  const device = eduDevice(backend.simulator);
  const container = await Container.open({ backend, groups: [device.group!] });
  try {
    container.createWindow({ start: 0x40000000n, size: 1024n * MiB });
    container.createWindow({ start: 0x100000000n, size: 2n * MiB });
    const memory = backend.simulator.memory.allocate(64n * MiB, 2n * MiB);
    container.map({ iova: 0x40000000n, memory: { address: memory.address, length: 64n * MiB } });
    container.allocate({ size: 2n * MiB, limit: 0x7fffffffn, contiguous: true });
    return container.snapshot(title);
  } finally {
    container.close();
  }
}

/** An x86 container on the LPC group, whose first 16 MiB the kernel reserves (direct-relaxable, for the floppy). */
export async function directRelaxableSnapshot(): Promise<ContainerSnapshot> {
  const backend = sim({ platform: 'x86-vtd' });
  for (const address of ['0000:00:1f.0', '0000:00:1f.2', '0000:00:1f.3']) {
    backend.simulator.bind(address, null);
    backend.simulator.bind(address, 'vfio-pci');
  }
  const container = await Container.open({ backend, groups: [7] });
  try {
    return container.snapshot('x86 LPC group');
  } finally {
    container.close();
  }
}

/**
 * A hand-made snapshot with `count` 4 KiB mappings, 4 KiB apart, in groups of `group` separated by
 * 1 GiB holes, and an MSI window in the first hole: the million-mapping case.
 */
export function manyMappingsSnapshot(count: number, group: number): { snapshot: ContainerSnapshot; holes: { start: bigint; last: bigint }[] } {
  const GiB = 1n << 30n;
  const mappings: ContainerSnapshot['mappings'][number][] = [];
  const holes: { start: bigint; last: bigint }[] = [];
  let iova = 0x100000000n;
  for (let index = 0; index < count; index++) {
    if (index > 0 && index % group === 0) {
      // The mapping before ended at iova - 4 KiB - 1: the hole runs from iova - 4 KiB for 1 GiB + 4 KiB.
      holes.push({ start: iova - 0x1000n, last: iova + GiB - 1n });
      iova += GiB;
    }
    mappings.push({ iova: { start: `0x${iova.toString(16)}`, last: `0x${(iova + 0xfffn).toString(16)}` }, address: `0x${(0x7f0000000000n + BigInt(index) * 0x1000n).toString(16)}`, access: { read: true, write: true } });
    iova += 0x2000n;
  }
  const msi = holes[0] === undefined ? undefined : { start: holes[0].start + 0x10000000n, last: holes[0].start + 0x100fffffn };
  const snapshot: ContainerSnapshot = {
    version: 1,
    title: `${count} mappings`,
    model: 'paged',
    aperture: { start: '0x0', last: '0xffffffffffff' },
    ioPageSizes: '0x40201000',
    kernelRanges: null,
    windowGeometry: null,
    windows: [],
    reserved: msi === undefined ? [] : [{ start: `0x${msi.start.toString(16)}`, last: `0x${msi.last.toString(16)}`, kind: 'msi', source: 'sysfs', origin: '/sys/kernel/iommu_groups/4/reserved_regions' }],
    usable:
      msi === undefined
        ? [{ start: '0x0', last: '0xffffffffffff' }]
        : [
            { start: '0x0', last: `0x${(msi.start - 1n).toString(16)}` },
            { start: `0x${(msi.last + 1n).toString(16)}`, last: '0xffffffffffff' },
          ],
    mappings,
    allocations: [],
    msi: { model: 'kernel-managed', doorbells: [] },
    budget: { mappings: count, bytesMapped: `0x${(BigInt(count) * 0x1000n).toString(16)}`, left: null },
  };
  return { snapshot, holes };
}
