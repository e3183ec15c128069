// backend-smmu benchmark: MAP_DMA + UNMAP_DMA of 4 KiB through the SDK (Container.map/unmap over
// backend-smmu) against a loop calling the ioctl functions directly with their preallocated
// buffers, both over the simulator's syscall face in this process. The ratio is the SDK's own
// overhead per call (target <= 1.10). Medians of 7 interleaved rounds.
import { Container } from '@ioas/core';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { allocateDmaMemory, VfioContainer, VfioGroup, VfioIoctls, vfioUapi } from '@ioas/vfio';
import { smmu } from '@ioas/backend-smmu';
import { compare } from '../../../scripts/bench-compare.mjs';

const PAGE = 0x1000n;
const OPS = 100_000;
const IOVA = 0x1_0000_0000n;

// Baseline: the ioctl functions, straight.
const directSim = createSimulator({ platform: 'x86-vtd' });
const directSyscalls = simSyscalls(directSim);
const ioctls = new VfioIoctls({ syscalls: directSyscalls });
const container = VfioContainer.open(ioctls);
const group = VfioGroup.open(ioctls, 3);
group.setContainer(container);
container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
const directMemory = allocateDmaMemory(directSyscalls, PAGE);
const flags = vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE;
const directLoop = (ops) => {
  for (let index = 0; index < ops; index++) {
    ioctls.iommuMapDma(container.fd, directMemory.address, IOVA, PAGE, flags);
    ioctls.iommuUnmapDma(container.fd, IOVA, PAGE, 0);
  }
};

// The SDK: Container over backend-smmu, type1v2.
const sdkSim = createSimulator({ platform: 'x86-vtd' });
const sdkSyscalls = simSyscalls(sdkSim);
const sdk = await Container.open({ backend: smmu({ syscalls: sdkSyscalls, interface: 'type1' }), groups: [3] });
const memory = allocateDmaMemory(sdkSyscalls, PAGE);
const request = { iova: IOVA, memory: { address: memory.address, length: PAGE } };
const range = { iova: IOVA, size: PAGE };
const sdkLoop = (ops) => {
  for (let index = 0; index < ops; index++) {
    sdk.map(request);
    sdk.unmap(range);
  }
};

const { baseline: direct, candidate: through, ratio } = compare(directLoop, sdkLoop, OPS);
console.log('map+unmap of 4 KiB over the simulator syscall face (x86-vtd, type1v2), median of 7 interleaved rounds of 100k pairs\n');
console.log(`ioctl functions, preallocated buffers: ${direct.toFixed(0).padStart(6)} ns per map+unmap`);
console.log(`SDK (Container over backend-smmu):     ${through.toFixed(0).padStart(6)} ns per map+unmap`);
console.log(`\nratio SDK / direct: ${ratio.toFixed(2)} (target <= 1.10); SDK overhead ${(through - direct).toFixed(0)} ns per pair`);
