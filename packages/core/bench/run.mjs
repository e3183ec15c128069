// Core benchmarks: the allocator and the range set at 1k and 1M live ranges (per-operation time
// should grow logarithmically: the 1M/1k ratio target is <= 2), and planWindows for 256 windows
// (target < 1 ms). Run with `pnpm bench` (after `pnpm build`). Figures are medians of 5 runs.
import { IovaAllocator, IovaRangeSet, planWindows } from '@ioas/core';

const PAGE = 0x1000n;
const SIZES = [1_000, 1_000_000];
const OPS = 200_000;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
}

/** Runs `body(ops)` five times and returns the median nanoseconds per operation. */
function measure(body, ops) {
  body(Math.min(ops, 20_000)); // warm-up: let the JIT settle
  const samples = [];
  for (let run = 0; run < 5; run++) {
    const start = process.hrtime.bigint();
    body(ops);
    samples.push(Number(process.hrtime.bigint() - start) / ops);
  }
  return median(samples);
}

/** A deterministic pseudo-random sequence (xorshift32), so every run does the same work. */
function random(seed) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

function allocatorWith(live) {
  // 2*live pages, every other one allocated: `live` one-page free extents and `live` allocations.
  const allocator = new IovaAllocator([{ start: 0n, last: BigInt(2 * live) * PAGE - 1n }], PAGE);
  for (let page = 0; page < 2 * live; page += 2) allocator.reserve({ start: BigInt(page) * PAGE, last: BigInt(page + 1) * PAGE - 1n });
  return allocator;
}

function rangeSetWith(live) {
  const set = new IovaRangeSet();
  for (let page = 0; page < 2 * live; page += 2) set.add({ start: BigInt(page) * PAGE, last: BigInt(page + 1) * PAGE - 1n });
  return set;
}

const rows = [];
const results = {};
for (const live of SIZES) {
  const allocator = allocatorWith(live);
  const allocate = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      const [range] = allocator.allocate({ size: PAGE, contiguous: true });
      allocator.release(range);
    }
  }, OPS);
  const set = rangeSetWith(live);
  const next = random(live);
  const mutate = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      // Fill a random gap (merging two neighbours into one range), then cut it out again (a split).
      const gap = (BigInt(Math.floor(next() * (live - 1))) * 2n + 1n) * PAGE;
      const range = { start: gap, last: gap + PAGE - 1n };
      set.add(range);
      set.remove(range);
    }
  }, OPS);
  const query = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      const page = BigInt(Math.floor(next() * 2 * live)) * PAGE;
      set.covers({ start: page, last: page + PAGE - 1n });
    }
  }, OPS);
  results[live] = { allocate, mutate, query };
  rows.push([`${live.toLocaleString('en')} live`, allocate, mutate, query]);
}

console.log('operation times in ns/op (ops/s in brackets), median of 5 runs of 200k ops\n');
const format = (ns) => `${ns.toFixed(0).padStart(6)} ns (${Math.round(1e9 / ns).toLocaleString('en').padStart(10)}/s)`;
console.log(`${'live ranges'.padEnd(14)}${'allocate+release'.padEnd(30)}${'range-set add+remove'.padEnd(30)}range-set covers`);
for (const [label, ...times] of rows) console.log(`${label.padEnd(14)}${times.map((ns) => format(ns).padEnd(30)).join('')}`);
const [small, large] = SIZES.map((size) => results[size]);
const ratios = Object.keys(small).map((name) => [name, large[name] / small[name]]);
console.log(`\nratio of per-operation time at 1M to 1k (target <= 2): ${ratios.map(([name, ratio]) => `${name} ${ratio.toFixed(2)}`).join(', ')}`);

const MiB = 1n << 20n;
const spec = { memory: [{ iova: 0n, size: 253n * 4n * MiB, pageSize: 4n * MiB }], msiBanks: 3 };
const planned = planWindows(spec);
if (planned.windowCount !== 256) throw new Error(`expected a 256-window plan, got ${planned.windowCount}`);
const planNs = measure((ops) => {
  for (let index = 0; index < ops; index++) planWindows(spec);
}, 2_000);
console.log(`planWindows, 256 windows: ${(planNs / 1e6).toFixed(3)} ms per plan (target < 1 ms)`);
