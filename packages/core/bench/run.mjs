// Core benchmarks: the allocator and the range set at 1k and 1M live ranges (per-operation time
// should grow logarithmically: the 1M/1k ratio target is <= 2), non-contiguous and best-fit
// allocation across 10,000 holes (target <= 50 us; best fit unchanged), and planWindows for 256
// windows (target < 1 ms). Run with `pnpm bench` (after `pnpm build`). Figures are medians of 5 runs.
import { IovaAllocator, IovaRangeSet, planWindows } from '@ioas/core';
import { random } from '../../../scripts/bench-compare.mjs';

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

/** Visits gaps (odd pages) in a random order or in address order, wrapping around. */
function gaps(live, pattern) {
  const next = random(live);
  let cursor = 0;
  return pattern === 'random'
    ? () => (BigInt(Math.floor(next() * (live - 1))) * 2n + 1n) * PAGE
    : () => {
        cursor = cursor + 1 < live - 1 ? cursor + 1 : 0;
        return (BigInt(cursor) * 2n + 1n) * PAGE;
      };
}

const results = {};
for (const live of SIZES) {
  const allocator = allocatorWith(live);
  const row = {};
  // Best fit always finds the same smallest extent: a fixed path through the tree.
  row['allocate+release'] = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      const [range] = allocator.allocate({ size: PAGE, contiguous: true });
      allocator.release(range);
    }
  }, OPS);
  const set = rangeSetWith(live);
  for (const pattern of ['in-order', 'random']) {
    const gap = gaps(live, pattern);
    row[`set add+remove ${pattern}`] = measure((ops) => {
      for (let index = 0; index < ops; index++) {
        // Fill a gap (merging two neighbours into one range), then cut it out again (a split).
        const start = gap();
        const range = { start, last: start + PAGE - 1n };
        set.add(range);
        set.remove(range);
      }
    }, OPS);
    row[`set covers ${pattern}`] = measure((ops) => {
      for (let index = 0; index < ops; index++) {
        const start = gap() - PAGE;
        set.covers({ start, last: start + PAGE - 1n });
      }
    }, OPS);
  }
  results[live] = row;
}

console.log('ns per operation (operations per second), median of 5 runs of 200k operations\n');
const names = Object.keys(results[SIZES[0]]);
const format = (ns) => `${ns.toFixed(0)} ns (${Math.round(1e9 / ns).toLocaleString('en')}/s)`;
const table = [['operation', ...SIZES.map((size) => `${size.toLocaleString('en')} live`), '1M/1k']];
for (const name of names) {
  const [small, large] = SIZES.map((size) => results[size][name]);
  table.push([name, format(small), format(large), (large / small).toFixed(2)]);
}
const widths = table[0].map((_, column) => Math.max(...table.map((row) => row[column].length)));
for (const row of table) console.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  '));
console.log(`
Target: 1M/1k <= 2 (logarithmic scaling). In-order access shows the algorithm; random access over
1M ranges (tens of MB of nodes) adds the machine's memory latency at each tree level.`);

// Non-contiguous allocation (P4 of issue 14): no free extent holds the request, so it is split over
// the largest holes, and the last piece goes to the smallest hole that holds the rest. 10,000 holes,
// each between two allocated pages: all of one page, or of 1-8 pages (deterministic sizes).
const HOLES = 10_000;
function allocatorWithHoles(holes, sizes) {
  const next = random(holes);
  const taken = [];
  let page = 0;
  for (let hole = 0; hole < holes; hole++) {
    page += sizes === 'one page' ? 1 : 1 + Math.floor(next() * 8);
    taken.push(page);
    page += 1;
  }
  const allocator = new IovaAllocator([{ start: 0n, last: BigInt(page) * PAGE - 1n }], PAGE);
  for (const at of taken) allocator.reserve({ start: BigInt(at) * PAGE, last: BigInt(at + 1) * PAGE - 1n });
  return allocator;
}
const holeRows = [];
for (const [sizes, pages] of [
  ['one page', 3n],
  ['1-8 pages', 20n],
]) {
  const allocator = allocatorWithHoles(HOLES, sizes);
  const size = pages * PAGE;
  const pieces = allocator.allocate({ size });
  for (const piece of pieces) allocator.release(piece);
  const split = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      for (const piece of allocator.allocate({ size })) allocator.release(piece);
    }
  }, 20_000);
  const bestFit = measure((ops) => {
    for (let index = 0; index < ops; index++) {
      const [range] = allocator.allocate({ size: PAGE, contiguous: true });
      allocator.release(range);
    }
  }, OPS);
  holeRows.push({ sizes, pages, pieces: pieces.length, split, bestFit });
}
console.log(`\nacross ${HOLES.toLocaleString('en')} holes, allocate + release (median of 5 runs):`);
for (const { sizes, pages, pieces, split, bestFit } of holeRows) {
  console.log(`  holes of ${sizes}: non-contiguous ${pages} pages (${pieces} pieces) ${(split / 1000).toFixed(1)} us (goal <= 50 us); best fit, 1 page ${(bestFit / 1000).toFixed(1)} us (goal: unchanged, 2.8-3.9 us)`);
}

const MiB = 1n << 20n;
const spec = { memory: [{ iova: 0n, size: 253n * 4n * MiB, pageSize: 4n * MiB }], msiBanks: 3 };
const planned = planWindows(spec);
if (planned.windowCount !== 256) throw new Error(`expected a 256-window plan, got ${planned.windowCount}`);
const planNs = measure((ops) => {
  for (let index = 0; index < ops; index++) planWindows(spec);
}, 2_000);
console.log(`planWindows, 256 windows: ${(planNs / 1e6).toFixed(3)} ms per plan (target < 1 ms)`);
