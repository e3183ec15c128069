// Simulator benchmark: VFIO type1v2 MAP_DMA + UNMAP_DMA on the simulated kernel with 1k and 1M live
// mappings: operations per second, the per-operation time ratio 1M/1k (target <= 2), and heap bytes
// per live mapping (target <= 160). Goal: >= 1,000,000 map+unmap operations per second at 1M live.
// Run with `pnpm bench` (node --expose-gc). Medians of 5 runs.
import { createSimulator, VfioContainer } from '@ioas/backend-sim';

const PAGE = 0x1000n;
/** Above the x86 MSI window, so that a million mappings fit in one IOVA range. */
const BASE = 0x1_0000_0000n;
const SIZES = [1_000, 1_000_000];
const OPS = 200_000;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

function heapUsed() {
  globalThis.gc();
  globalThis.gc();
  return process.memoryUsage().heapUsed;
}

const results = [];
for (const live of SIZES) {
  const simulator = createSimulator({ platform: 'x86-vtd', dmaEntryLimit: live + 16 });
  const container = new VfioContainer(simulator);
  container.addGroup(simulator.group(3));
  container.setIommu(3);
  const memory = simulator.memory.allocate(PAGE);
  const before = heapUsed();
  // Live mappings on every other page: the gaps between them are where the benchmark maps.
  for (let index = 0; index < live; index++) container.map(memory.address, BASE + BigInt(index) * 2n * PAGE, PAGE, true, true);
  const perMapping = (heapUsed() - before) / live;
  const gaps = Array.from({ length: 4096 }, (_, index) => BASE + (BigInt(Math.floor(((index * 2654435761) % 2 ** 32) / 2 ** 32 * live)) * 2n + 1n) * PAGE);
  const run = (ops) => {
    for (let index = 0; index < ops; index++) {
      const iova = gaps[index & 4095];
      container.map(memory.address, iova, PAGE, true, true);
      container.unmap(iova, PAGE, false);
    }
  };
  run(20_000);
  const samples = [];
  for (let sample = 0; sample < 5; sample++) {
    const start = process.hrtime.bigint();
    run(OPS);
    samples.push(Number(process.hrtime.bigint() - start) / (OPS * 2));
  }
  results.push({ live, ns: median(samples), perMapping });
}

console.log('simulated VFIO type1v2 MAP_DMA and UNMAP_DMA of 4 KiB at random gaps, median of 5 runs of 200k pairs\n');
for (const { live, ns, perMapping } of results) {
  console.log(`${live.toLocaleString('en').padStart(9)} live: ${ns.toFixed(0).padStart(5)} ns/op  ${Math.round(1e9 / ns).toLocaleString('en').padStart(10)} ops/s  ${perMapping.toFixed(0)} heap bytes per live mapping`);
}
const [small, large] = results;
console.log(`\nratio of per-operation time 1M/1k: ${(large.ns / small.ns).toFixed(2)} (target <= 2)`);
console.log(`heap per live mapping at 1M: ${large.perMapping.toFixed(0)} bytes (target <= 160)`);
console.log(`throughput at 1M live: ${Math.round(1e9 / large.ns).toLocaleString('en')} ops/s (goal >= 1,000,000)`);
