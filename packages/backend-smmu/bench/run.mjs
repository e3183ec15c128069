// backend-smmu benchmark (issue 14, P1): MAP_DMA + UNMAP_DMA of 4 KiB through the SDK (Container
// over backend-smmu, type1v2) against the ioctl functions called directly with their preallocated
// buffers (VfioIoctls), both over the simulator's syscall face in this process, with 0, 1k, 100k
// and 1M live mappings. The ratio SDK / bare is the SDK's own cost per call (target <= 1.35 at each
// size); the SDK's bookkeeping per live mapping at 1M is the memory (V8 heap and ArrayBuffers: the
// record is typed arrays) of the SDK variant minus that of the bare one, both holding the same 1M
// mappings (target <= 150 bytes).
//
// - Both variants hold `live` mappings of 4 KiB on every other page from 4 GiB, filled before
//   timing (the SDK's through Container.map, one mapping a call: mapRegion would merge them).
// - Each measured pair maps and unmaps one page in a gap, at IOVAs from a deterministic
//   pseudo-random sequence that both variants follow, in the same order.
// - 9 rounds per size, the two variants alternating (the one that starts alternates too); the
//   figure is the median of the per-round ratios. Time is CPU time (process.cpuUsage: this
//   process, every thread): the simulated kernel runs in this process, so both variants' whole cost
//   is CPU here, and the time this process waits while other tenants of the shared cores run is
//   left out. A minor GC before each timed loop keeps one variant's garbage off the other's clock.
// - The SDK's request objects are built before timing, as the bare loop's IOVAs are: the figure is
//   the SDK's cost, not the cost of building arguments.
//
// Run with `pnpm --filter @ioas/backend-smmu bench` after `pnpm build` (it restarts itself with
// node --expose-gc, which the heap figures need). About a minute and a half on a 2-core VM.
import { spawnSync } from 'node:child_process';

if (typeof globalThis.gc !== 'function') {
  const { status } = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(status ?? 1);
}

const { Container } = await import('@ioas/core');
const { createSimulator, simSyscalls } = await import('@ioas/backend-sim');
const { allocateDmaMemory, VfioContainer, VfioGroup, VfioIoctls, vfioUapi } = await import('@ioas/vfio');
const { smmu } = await import('@ioas/backend-smmu');
const { compareRounds, heapBytes, random } = await import('../../../scripts/bench-compare.mjs');

const PAGE = 0x1000n;
/** Above x86's MSI window: 2M pages from here stay in one usable range (below 2^39). */
const BASE = 0x1_0000_0000n;
const SIZES = [0, 1_000, 100_000, 1_000_000];
/** Map+unmap pairs per variant per round. */
const OPS = 20_000;
const ROUNDS = 9;
const TARGET = 1.35;
const MEMORY_TARGET = 150;
const FLAGS = vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE;

/** The simulated host for one variant: room for `live` mappings and the measured one. */
function simulatedHost(live) {
  const simulator = createSimulator({ platform: 'x86-vtd', dmaEntryLimit: live + 1024 });
  const syscalls = simSyscalls(simulator);
  return { simulator, syscalls, memory: allocateDmaMemory(syscalls, PAGE) };
}

const liveIova = (index) => BASE + BigInt(index) * 2n * PAGE;

/** The baseline: a type1v2 container driven through the ioctl functions alone. */
function bareVariant(live) {
  const { simulator, syscalls, memory } = simulatedHost(live);
  const ioctls = new VfioIoctls({ syscalls });
  const container = VfioContainer.open(ioctls);
  const group = VfioGroup.open(ioctls, 3);
  group.setContainer(container);
  container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
  const fd = container.fd;
  const address = memory.address;
  for (let index = 0; index < live; index++) ioctls.iommuMapDma(fd, address, liveIova(index), PAGE, FLAGS);
  return {
    simulator,
    loop: (iovas) => (ops) => {
      for (let index = 0; index < ops; index++) {
        const iova = iovas[index];
        ioctls.iommuMapDma(fd, address, iova, PAGE, FLAGS);
        ioctls.iommuUnmapDma(fd, iova, PAGE, 0);
      }
    },
    close: () => {
      group.close();
      container.close();
    },
  };
}

/** The SDK: Container over backend-smmu (type1), its mapping budget the simulator's dma_entry_limit. */
async function sdkVariant(live) {
  const { simulator, syscalls, memory } = simulatedHost(live);
  const container = await Container.open({ backend: smmu({ syscalls, interface: 'type1' }), groups: [3] });
  if (container.capabilities.mappingBudget !== live + 1024) throw new Error(`mapping budget ${container.capabilities.mappingBudget}, expected ${live + 1024}`);
  const hostMemory = { address: memory.address, length: PAGE };
  for (let index = 0; index < live; index++) container.map({ iova: liveIova(index), memory: hostMemory });
  return {
    simulator,
    loop: (iovas) => {
      const maps = iovas.map((iova) => ({ iova, memory: hostMemory }));
      const unmaps = iovas.map((iova) => ({ iova, size: PAGE }));
      return (ops) => {
        for (let index = 0; index < ops; index++) {
          container.map(maps[index]);
          container.unmap(unmaps[index]);
        }
      };
    },
    close: () => container.close(),
  };
}

const started = process.hrtime.bigint();
const rows = [];
let bookkeeping;
for (const live of SIZES) {
  const before = await heapBytes();
  const bare = bareVariant(live);
  const withBare = await heapBytes();
  const sdk = await sdkVariant(live);
  const withBoth = await heapBytes();
  if (live === 1_000_000) bookkeeping = (withBoth - withBare - (withBare - before)) / live;
  // The measured pairs: gaps between live mappings (odd pages), the same sequence for both.
  const next = random(live + 1);
  const span = Math.max(live, 1_000);
  const iovas = Array.from({ length: OPS }, () => BASE + (BigInt(Math.floor(next() * span)) * 2n + 1n) * PAGE);
  const result = compareRounds(bare.loop(iovas), sdk.loop(iovas), { ops: OPS, rounds: ROUNDS, warmup: OPS });
  for (const variant of [bare, sdk]) {
    const mapped = variant.simulator.liveMappings();
    if (mapped !== live) throw new Error(`${mapped} live mappings after the rounds, expected ${live}`);
  }
  rows.push({ live, ...result });
  bare.close();
  sdk.close();
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

console.log(`map+unmap of 4 KiB at random free IOVAs over the simulator syscall face (x86-vtd, type1v2)`);
console.log(`SDK = Container over backend-smmu; bare = VfioIoctls with preallocated buffers`);
console.log(`CPU time per pair (process.cpuUsage), ${ROUNDS} interleaved rounds of ${OPS.toLocaleString('en')} pairs per size\n`);
const table = [['live mappings', 'bare ns/pair', 'SDK ns/pair', 'SDK - bare', 'SDK / bare (median of rounds)', 'rounds min-max', 'target']];
for (const { live, baseline, candidate, ratio, ratios } of rows) {
  table.push([
    live.toLocaleString('en'),
    baseline.toFixed(0),
    candidate.toFixed(0),
    `${(candidate - baseline).toFixed(0)} ns`,
    `${ratio.toFixed(2)}${ratio <= TARGET ? '' : ' (missed)'}`,
    `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`,
    `<= ${TARGET}`,
  ]);
}
const widths = table[0].map((_, column) => Math.max(...table.map((row) => row[column].length)));
for (const row of table) console.log(row.map((cell, column) => (column === 0 ? cell.padStart(widths[column]) : cell.padEnd(widths[column]))).join('  '));
console.log(
  `\nSDK bookkeeping per live mapping at 1M (heap and ArrayBuffers with the SDK's container minus the bare variant's, both holding 1M mappings): ` +
    `${bookkeeping.toFixed(0)} bytes (target <= ${MEMORY_TARGET}${bookkeeping <= MEMORY_TARGET ? '' : ', missed'})`,
);
console.log(`(${seconds.toFixed(0)} s)`);
