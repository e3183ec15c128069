// backend-pamu benchmark: MAP_DMA + UNMAP_DMA of one 64 KiB window through the SDK (Container over
// backend-pamu, every rule checked first) against the profile's ioctl functions called directly,
// both over the simulator's P4080 syscall face in this process. The ratio is the SDK's own cost per
// map+unmap on a windowed IOMMU. Small windows (an aperture of 512 KiB in 8) keep the simulated
// kernel's page-by-page contiguity check from dominating both sides. Medians of 7 interleaved rounds.
import { Container } from '@ioas/core';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { pamu, PamuContainer, PamuIoctls, PAMU_PROFILES } from '@ioas/backend-pamu';
import { compare } from '../../../scripts/bench-compare.mjs';

const KiB = 1n << 10n;
const WINDOW = 64n * KiB;
const APERTURE = { start: 0n, last: 512n * KiB - 1n };
const OPS = 50_000;

// Baseline: the ioctl functions, straight, on a container configured once.
const directSim = createSimulator({ platform: 'p4080' });
const directIoctls = new PamuIoctls(simSyscalls(directSim), PAMU_PROFILES['sdk-4.x'], false);
const configured = PamuContainer.open(directIoctls, [0]);
configured.configure(APERTURE, 8);
const directMemory = directSim.memory.allocate(WINDOW, WINDOW);
const fd = configured.fd;
const directLoop = (ops) => {
  for (let index = 0; index < ops; index++) {
    directIoctls.mapDma(fd, directMemory.address, WINDOW, WINDOW, true, true);
    directIoctls.unmapDma(fd, WINDOW, WINDOW);
  }
};

// The SDK: Container over backend-pamu.
const sdkSim = createSimulator({ platform: 'p4080' });
const sdk = await Container.open({ backend: pamu({ profile: 'sdk-4.x', syscalls: simSyscalls(sdkSim), littleEndian: false }), groups: [0] });
sdk.setGeometry({ aperture: { start: 0n, size: 512n * KiB }, windowCount: 8 });
const memory = sdkSim.memory.allocate(WINDOW, WINDOW);
const request = { iova: WINDOW, memory: { address: memory.address, length: WINDOW, contiguousPageSize: WINDOW } };
const range = { iova: WINDOW, size: WINDOW };
const sdkLoop = (ops) => {
  for (let index = 0; index < ops; index++) {
    sdk.map(request);
    sdk.unmap(range);
  }
};

const { baseline: direct, candidate: through, ratio } = compare(directLoop, sdkLoop, OPS);
console.log('map+unmap of one 64 KiB window over the simulated P4080 syscall face (sdk-4.x), median of 7 interleaved rounds of 50k pairs\n');
console.log(`ioctl functions, preallocated buffers: ${direct.toFixed(0).padStart(6)} ns per map+unmap`);
console.log(`SDK (Container over backend-pamu):     ${through.toFixed(0).padStart(6)} ns per map+unmap`);
console.log(`\nratio SDK / direct: ${ratio.toFixed(2)}; SDK overhead ${(through - direct).toFixed(0)} ns per pair`);
sdk.close();
configured.close();
