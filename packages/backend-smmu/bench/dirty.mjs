// backend-smmu dirty-tracking benchmark (issue 17): reading and scanning the dirty bitmap of a
// 64 GiB range at 4 KiB pages (16M pages, 2 MiB of bitmap) through the SDK, against the bare
// GET_BITMAP ioctl of the same bytes into a preallocated 2 MiB buffer, both over the simulator's
// syscall face (x86-vtd) in this process. Goal: the SDK costs at most 2x the bare ioctl, on each
// interface, and nothing allocates per page.
//
// - SDK: Container over backend-smmu; one op is `container.dirty.read({ iova, pageSize: 4 KiB,
//   into })` of the whole 64 GiB mapping, reading into the bitmap of the round before as a
//   pre-copy loop does, and a scan of the DirtyBitmap it returns (`count()`, then `forEachRun()`
//   summing the runs' pages), both checked against the pages the device dirtied.
// - Bare: the ioctl functions of @ioas/vfio called directly (VfioContainer.dirtyBitmap,
//   IommufdContext.dirtyBitmap) into one 2 MiB buffer allocated before timing; no scan. It does not
//   even zero its buffer between reads (iommufd only sets bits, so a real caller must; here each
//   read sets the same bits): the strictest baseline.
// - type1 (VFIO_IOMMU_DIRTY_PAGES GET_BITMAP): pessimistic, every mapped page reads dirty: an
//   all-ones bitmap, one run. iommufd (IOMMU_HWPT_GET_DIRTY_BITMAP with NO_CLEAR, simulator option
//   hardwareDirty: an IOMMU with dirty bits): precise; before timing the device writes one byte into
//   each page of 8,192 runs of 1-7 pages at pseudo-random places (about 32k dirty pages, 8k runs),
//   and every read sees that same set (NO_CLEAR on both sides: `clear: false` for the SDK).
// - The guest RAM is 64 GiB of sparse simulated memory at 4 KiB pages (pages exist once written),
//   mapped at IOVA 64 GiB as one mapping.
// - 9 interleaved rounds per variant (the one that starts alternates; OPS ops a round); the figure is the
//   median of the per-round ratios SDK / bare. Time is CPU time (process.cpuUsage: this process,
//   every thread, V8's GC helpers included): the simulated kernel runs in this process, so the
//   whole cost of both is CPU here, and time spent waiting for other tenants of the shared cores is
//   left out. A minor GC before each timed loop keeps one variant's garbage off the other's clock
//   (scripts/bench-compare.mjs); the SDK's own garbage (its bitmap) stays on its clock.
// - Where the time goes, as further interleaved comparisons against the same bare ioctl (5 rounds
//   each): the bare ioctl into a freshly allocated 2 MiB buffer each time (what allocating a bitmap
//   per read costs: fresh pages fault in as the kernel writes them, and the dead ones load the GC),
//   the SDK read and scan without `into` (a new bitmap per read), the SDK read (with `into`)
//   without the scan, the scan alone (a DirtyBitmap over bytes already read), and the bare ioctl
//   plus the scan into one reused buffer.
// - Allocation: V8 heap plus ArrayBuffer backing stores allocated per op, over 4 ops during which
//   no GC runs (v8.GCProfiler says so; else the measurement is retried; the median of 3), bare and
//   SDK: what the SDK allocates per page of the range (a per-page object would be >= 8 bytes a
//   page; the goal is 0), with `into` and, beyond the 2 MiB bitmap itself, without. Heap retained
//   across all the timed rounds too.
//
// Run with `pnpm --filter @ioas/backend-smmu bench` (after run.mjs) or `node bench/dirty.mjs` in
// packages/backend-smmu, after `pnpm build` (it restarts itself with node --expose-gc, which the
// minor GCs and the heap figures need). About half a minute on a 2-core VM.
import { spawnSync } from 'node:child_process';

if (typeof globalThis.gc !== 'function') {
  const { status } = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(status ?? 1);
}

const { GCProfiler } = await import('node:v8');
const { Container, DirtyBitmap } = await import('@ioas/core');
const { createSimulator, simSyscalls } = await import('@ioas/backend-sim');
const { IommufdContext, Sysfs, VfioContainer, VfioGroup, VfioIoctls, vfioUapi } = await import('@ioas/vfio');
const { smmu } = await import('@ioas/backend-smmu');
const { compareRounds, heapBytes, random } = await import('../../../scripts/bench-compare.mjs');

const PAGE = 0x1000n;
/** The guest RAM: 64 GiB at IOVA 64 GiB (inside x86-vtd's 39-bit aperture, clear of the MSI window). */
const BASE = 0x10_0000_0000n;
const SIZE = 0x10_0000_0000n;
const PAGES = Number(SIZE / PAGE);
const BITMAP_BYTES = PAGES / 8;
const RANGE = { start: BASE, last: BASE + SIZE - 1n };
/**
 * Ops (reads) per variant per round: a round of tens of milliseconds on each interface (a type1
 * read of this simulator is tens of microseconds, an iommufd one milliseconds); the variants that
 * read into a fresh buffer, milliseconds each on both, take FRESH_OPS.
 */
const OPS = { type1: 1500, iommufd: 60 };
const FRESH_OPS = 30;
const ROUNDS = 9;
/** Rounds of the where-the-time-goes comparisons. */
const BREAKDOWN_ROUNDS = 5;
const GOAL = 2;
/** iommufd's dirty pattern: this many runs of 1..MAX_RUN pages at pseudo-random places. */
const DIRTY_RUNS = 8_192;
const MAX_RUN = 7;
const ONE_BYTE = new Uint8Array([0x5a]);

/** A simulated x86-vtd host with 64 GiB of sparse RAM and its first edu device (on vfio-pci). */
function machine(hardwareDirty) {
  const simulator = createSimulator({ platform: 'x86-vtd', hardwareDirty });
  const syscalls = simSyscalls(simulator);
  const ram = simulator.memory.allocate(SIZE, PAGE, false);
  const edu = simulator.devices().find((device) => device.edu);
  return { simulator, syscalls, ram, edu };
}

/** iommufd's dirty pages (page numbers in the range, sorted, distinct) and their runs. */
function dirtyPattern() {
  const next = random(17);
  const set = new Set();
  for (let run = 0; run < DIRTY_RUNS; run++) {
    const first = Math.floor(next() * PAGES);
    const length = 1 + Math.floor(next() * MAX_RUN);
    for (let page = first; page < Math.min(first + length, PAGES); page++) set.add(page);
  }
  const pages = [...set].sort((a, b) => a - b);
  let runs = 0;
  for (let index = 0; index < pages.length; index++) if (index === 0 || pages[index - 1] !== pages[index] - 1) runs++;
  return { pages, count: pages.length, runs };
}

/** The device writes one byte into each page of the pattern (the IOMMU sets their dirty bits). */
function deviceWrites(host, pattern) {
  const device = host.simulator.device(host.edu.address);
  for (const page of pattern.pages) if (!device.dmaWrite(BASE + BigInt(page) * PAGE, ONE_BYTE)) throw new Error(`DMA to page ${page} faulted`);
}

/** What a read of the range must show: type1 every page, iommufd the pattern. */
function expectation(kernelInterface, pattern) {
  return kernelInterface === 'type1' ? { count: PAGES, runs: 1 } : { count: pattern.count, runs: pattern.runs };
}

/** Scans a bitmap as a migration would (count, then every run) and checks it against `expected`. */
let scannedPages = 0;
let scannedRuns = 0;
const visitRun = (first, count) => {
  scannedPages += count;
  scannedRuns++;
};
function scan(bitmap, expected) {
  const count = bitmap.count();
  scannedPages = 0;
  scannedRuns = 0;
  bitmap.forEachRun(visitRun);
  if (count !== expected.count || scannedPages !== expected.count || scannedRuns !== expected.runs) {
    throw new Error(`bitmap: ${count} dirty pages, ${scannedPages} in ${scannedRuns} runs; expected ${expected.count} in ${expected.runs}`);
  }
}

/**
 * The baseline: the ioctl of @ioas/vfio on a container (type1) or HWPT (iommufd) set up by hand,
 * tracking on, the range mapped; `read(target)` is one GET_BITMAP of the range into `target`.
 */
function bareHost(kernelInterface, pattern) {
  const host = machine(kernelInterface === 'iommufd');
  const ioctls = new VfioIoctls({ syscalls: host.syscalls });
  let read;
  if (kernelInterface === 'type1') {
    const container = VfioContainer.open(ioctls);
    const group = VfioGroup.open(ioctls, host.edu.group);
    group.setContainer(container);
    container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
    ioctls.iommuMapDma(container.fd, host.ram.address, BASE, SIZE, vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE);
    container.startDirtyLogging();
    read = (target) => container.dirtyBitmap(BASE, SIZE, PAGE, target);
  } else {
    const context = IommufdContext.open(ioctls);
    const cdev = new Sysfs(host.syscalls).deviceCdev(host.edu.address);
    const device = context.bindDevice(`/dev/vfio/devices/${cdev}`, host.edu.address);
    const ioas = context.allocateIoas();
    const hwpt = context.allocateHwpt(device.deviceId, ioas, { dirtyTracking: true });
    context.setDirtyTracking(hwpt, true);
    device.attach(hwpt);
    context.map(ioas, host.ram.address, SIZE, BASE, { read: true, write: true });
    deviceWrites(host, pattern);
    read = (target) => context.dirtyBitmap(hwpt, BASE, SIZE, PAGE, target, false);
  }
  const expected = expectation(kernelInterface, pattern);
  const bytes = new Uint8Array(BITMAP_BYTES);
  const target = { bytes, length: BITMAP_BYTES };
  read(target);
  scan(new DirtyBitmap(RANGE, PAGE, bytes), expected);
  // A word the kernel must set on every read: the first dirty page's.
  const words = new Uint32Array(bytes.buffer);
  const probe = kernelInterface === 'type1' ? 0 : pattern.pages[0] >>> 5;
  const probeWord = words[probe];
  return {
    host,
    bytes,
    expected,
    op: () => {
      read(target);
      if (words[probe] !== probeWord) throw new Error('the bare read wrote another word');
    },
    /** The same ioctl into a fresh 2 MiB buffer. */
    freshOp: () => {
      const fresh = new Uint8Array(BITMAP_BYTES);
      read({ bytes: fresh, length: BITMAP_BYTES });
      if (new Uint32Array(fresh.buffer)[probe] !== probeWord) throw new Error('the fresh read wrote another word');
    },
  };
}

/** The SDK: Container over backend-smmu, the range mapped, tracking started. */
async function sdkHost(kernelInterface, pattern) {
  const host = machine(kernelInterface === 'iommufd');
  const backend = smmu({ syscalls: host.syscalls, interface: kernelInterface });
  const container = await Container.open(kernelInterface === 'type1' ? { backend, groups: [host.edu.group] } : { backend, devices: [host.edu.address] });
  const capability = container.dirty.capability;
  const precision = kernelInterface === 'type1' ? 'pessimistic' : 'precise';
  if (!capability.supported || capability.precision !== precision) throw new Error(`${kernelInterface}: dirty tracking ${JSON.stringify(capability, (_, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))}`);
  container.map({ iova: BASE, memory: { address: host.ram.address, length: SIZE } });
  container.dirty.start();
  if (kernelInterface === 'iommufd') deviceWrites(host, pattern);
  const expected = expectation(kernelInterface, pattern);
  const input = kernelInterface === 'type1' ? { iova: { start: BASE, size: SIZE }, pageSize: PAGE } : { iova: { start: BASE, size: SIZE }, pageSize: PAGE, clear: false };
  // The bitmap each read refills: the one the read before returned.
  let bitmap = container.dirty.read(input);
  const reuse = { ...input, into: bitmap };
  return {
    host,
    container,
    /** Read into the last bitmap, and scan. */
    op: () => {
      bitmap = container.dirty.read(reuse);
      scan(bitmap, expected);
    },
    /** Read into a new bitmap, and scan. */
    freshOp: () => {
      scan(container.dirty.read(input), expected);
    },
    /** Read only. */
    readOp: () => {
      bitmap = container.dirty.read(reuse);
      if (bitmap.pages !== PAGES) throw new Error('wrong bitmap');
    },
  };
}

const loop = (op) => (ops) => {
  for (let index = 0; index < ops; index++) op();
};

/**
 * V8 heap plus ArrayBuffer bytes `op` allocates per call: the median of 3 measurements of 4 calls
 * during which no GC runs (retried when one does). After the full GCs, one call first: they may
 * flush the bytecode of functions not run lately (V8's code aging), and compiling it again is not
 * the op's allocation.
 */
async function allocatedPerOp(op, count = 4) {
  const figures = [];
  for (let attempt = 0; attempt < 20 && figures.length < 3; attempt++) {
    await heapBytes();
    op();
    const profiler = new GCProfiler();
    profiler.start();
    const before = process.memoryUsage();
    for (let index = 0; index < count; index++) op();
    const after = process.memoryUsage();
    const { statistics } = profiler.stop();
    if (statistics.length === 0) figures.push((after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers) / count);
  }
  if (figures.length < 3) throw new Error('a GC ran during the allocation measurements');
  return figures.sort((a, b) => a - b)[1];
}

const started = process.hrtime.bigint();
const pattern = dirtyPattern();
const results = [];
for (const kernelInterface of ['type1', 'iommufd']) {
  const bare = bareHost(kernelInterface, pattern);
  const sdk = await sdkHost(kernelInterface, pattern);
  sdk.op();
  // The scan alone: a DirtyBitmap over the bytes the bare read leaves (count() caches, so a new one each time).
  const scanOp = () => scan(new DirtyBitmap(RANGE, PAGE, bare.bytes), bare.expected);
  // What an SDK reading into one reused bitmap could cost at best.
  const readAndScan = () => {
    bare.op();
    scanOp();
  };
  const heapBefore = await heapBytes();
  const ops = OPS[kernelInterface];
  const main = compareRounds(loop(bare.op), loop(sdk.op), { ops, rounds: ROUNDS, warmup: ops });
  const heapRetained = (await heapBytes()) - heapBefore;
  const breakdown = [
    ['bare ioctl into a fresh 2 MiB buffer', compareRounds(loop(bare.op), loop(bare.freshOp), { ops: FRESH_OPS, rounds: BREAKDOWN_ROUNDS, warmup: 4 })],
    ['SDK read + scan, a new bitmap per read', compareRounds(loop(bare.op), loop(sdk.freshOp), { ops: FRESH_OPS, rounds: BREAKDOWN_ROUNDS, warmup: 4 })],
    ['SDK read into the last bitmap, no scan', compareRounds(loop(bare.op), loop(sdk.readOp), { ops, rounds: BREAKDOWN_ROUNDS, warmup: 4 })],
    ['scan alone (count + forEachRun)', compareRounds(loop(bare.op), loop(scanOp), { ops, rounds: BREAKDOWN_ROUNDS, warmup: 4 })],
    ['bare ioctl + scan, one reused buffer', compareRounds(loop(bare.op), loop(readAndScan), { ops, rounds: BREAKDOWN_ROUNDS, warmup: 4 })],
  ];
  const allocation = { bare: await allocatedPerOp(bare.op), sdk: await allocatedPerOp(sdk.op), fresh: await allocatedPerOp(sdk.freshOp) };
  results.push({ kernelInterface, ops, expected: bare.expected, main, breakdown, allocation, heapRetained });
  sdk.container.close();
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

const verdict = (ok) => (ok ? 'met' : 'missed');
const ms = (ns) => `${(ns / 1e6).toFixed(3)} ms`;
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
console.log(`dirty bitmap of 64 GiB at 4 KiB pages (${PAGES.toLocaleString('en')} pages, ${kib(BITMAP_BYTES)} of bitmap) over the simulator syscall face (x86-vtd)`);
console.log('SDK = container.dirty.read({ ..., into: the last bitmap }) over backend-smmu + count() + forEachRun(); bare = the GET_BITMAP ioctl (@ioas/vfio) into a preallocated buffer');
console.log(`CPU time per op (process.cpuUsage), ${ROUNDS} interleaved rounds; goal SDK / bare <= ${GOAL} on each interface\n`);
for (const { kernelInterface, ops, expected, main, breakdown, allocation, heapRetained } of results) {
  const title =
    kernelInterface === 'type1'
      ? 'type1 (VFIO_IOMMU_DIRTY_PAGES GET_BITMAP, pessimistic: all pages dirty, 1 run)'
      : `iommufd (IOMMU_HWPT_GET_DIRTY_BITMAP NO_CLEAR, hardwareDirty: ${expected.count.toLocaleString('en')} dirty pages in ${expected.runs.toLocaleString('en')} runs)`;
  console.log(title);
  console.log(`  bare ${ms(main.baseline)}/op, SDK ${ms(main.candidate)}/op`);
  console.log(
    `  SDK / bare: ${main.ratio.toFixed(2)} (median of ${ROUNDS} rounds of ${ops} ops; rounds ${Math.min(...main.ratios).toFixed(2)}-${Math.max(...main.ratios).toFixed(2)})  (goal <= ${GOAL}: ${verdict(main.ratio <= GOAL)})`,
  );
  console.log(`  where the time goes (each / bare, ${BREAKDOWN_ROUNDS} interleaved rounds):`);
  for (const [what, result] of breakdown) console.log(`    ${what.padEnd(38)} ${ms(result.candidate).padStart(10)}/op  ${result.ratio.toFixed(2)}`);
  const perPage = (allocation.sdk - allocation.bare) / PAGES;
  const freshPerPage = (allocation.fresh - allocation.bare - BITMAP_BYTES) / PAGES;
  console.log(
    `  allocated per op (heap + ArrayBuffers, no GC during 4 ops): bare ${Math.round(allocation.bare).toLocaleString('en')} bytes, SDK ${Math.round(allocation.sdk).toLocaleString('en')} bytes = ${perPage.toFixed(5)} bytes per page more  (goal: nothing per page: ${verdict(perPage < 0.01)})`,
  );
  console.log(`    without into: ${Math.round(allocation.fresh).toLocaleString('en')} bytes, the ${kib(BITMAP_BYTES)} bitmap and ${freshPerPage.toFixed(5)} bytes per page more`);
  console.log(`  heap retained across the ${ROUNDS} rounds (${(ROUNDS * ops + ops).toLocaleString('en')} ops a variant): ${Math.round(heapRetained).toLocaleString('en')} bytes\n`);
}
console.log(`(${seconds.toFixed(0)} s)`);
