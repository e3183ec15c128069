// Map a guest's RAM 1:1 (IOVA = guest physical address) on a paged IOMMU, around the reserved
// holes: on ARM SMMUv3 the kernel's software MSI window at 0x8000000-0x80fffff sits inside the
// first 256 MiB, so the RAM facing it stays unmapped (a VMM places no RAM there, or moves its RAM).
// On x86 the hole is the MSI range 0xfee00000-0xfeefffff, just below 4 GiB: give --size 4352 or
// more there (on hardware: the simulator backs every byte of DMA memory with a real buffer).
//
//   node examples/smmu-guest-ram.mjs                  a simulated ARM SMMUv3 (the syscall face)
//   node examples/smmu-guest-ram.mjs --group 12       real hardware, VFIO group 12 (root)
//   add --platform x86-vtd for a simulated VT-d; --picture FILE.svg (or .html) to draw the IOVA space
import { parseArgs } from 'node:util';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { Container, formatRange, formatSize } from '@ioas/core';
import { allocateDmaMemory, libcSyscalls } from '@ioas/vfio';
import { drawPicture } from './draw-picture.mjs';

const { values } = parseArgs({ options: { group: { type: 'string' }, platform: { type: 'string', default: 'arm-smmuv3' }, size: { type: 'string', default: '256' }, picture: { type: 'string' } } });
const MiB = 1n << 20n;
const machine = values.group === undefined ? createSimulator({ platform: values.platform }) : undefined;
const syscalls = machine === undefined ? libcSyscalls() : simSyscalls(machine);
const group = values.group === undefined ? (values.platform === 'x86-vtd' ? 3 : 4) : Number(values.group);
const backend = smmu({ syscalls, ...(machine === undefined ? {} : { arch: 'generic', littleEndian: true }) });

const container = await Container.open({ backend, groups: [group] });
try {
  console.log(`IOMMU: ${container.capabilities.model}, MSI ${container.capabilities.msi}`);
  for (const region of container.reserved()) console.log(`reserved ${formatRange(region)} ${region.kind}`);
  const size = BigInt(values.size) * MiB;
  // Guest RAM on 2 MiB hugepages, so the IOMMU can use 2 MiB pages too.
  const ram = allocateDmaMemory(syscalls, size, 2n * MiB);
  const { mappings, skipped } = container.mapRegion({ iova: 0n, memory: ram });
  for (const mapping of mappings) console.log(`mapped  ${formatRange(mapping.iova)} (${formatSize(mapping.memory.length)})`);
  for (const hole of skipped) console.log(`skipped ${formatRange(hole)} (reserved)`);
  console.log(`${mappings.length} mappings, ${formatSize(container.stats().bytesMapped)} of ${formatSize(size)} mapped`);
  const where = values.group === undefined ? `a simulated ${values.platform === 'x86-vtd' ? 'Intel VT-d' : 'ARM SMMUv3'}` : `group ${group}`;
  if (values.picture !== undefined) drawPicture(values.picture, container.snapshot(`${formatSize(size)} of guest RAM on ${where} (type1v2)`));
} finally {
  container.close();
}
