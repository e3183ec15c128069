// Shared by the SDK-vs-baseline benchmarks (packages/*/bench/run.mjs).

function median(values) {
  return [...values].sort((a, b) => a - b)[values.length >> 1];
}

/** ns per iteration of `body(ops)`. */
function time(body, ops) {
  const start = process.hrtime.bigint();
  body(ops);
  return Number(process.hrtime.bigint() - start) / ops;
}

/**
 * Runs both loops in turn, 7 rounds of `ops` iterations after a warm-up, so that the machine's
 * drift (these are noisy VMs) hits both alike; returns the median ns per iteration of each and the
 * median of the per-round ratios candidate / baseline.
 */
export function compare(baseline, candidate, ops) {
  baseline(5_000);
  candidate(5_000);
  const rounds = [];
  for (let round = 0; round < 7; round++) rounds.push([time(baseline, ops), time(candidate, ops)]);
  return { baseline: median(rounds.map(([b]) => b)), candidate: median(rounds.map(([, c]) => c)), ratio: median(rounds.map(([b, c]) => c / b)) };
}

/** CPU time of this process (user + system, every thread) in nanoseconds. */
function cpuNow() {
  const { user, system } = process.cpuUsage();
  return (user + system) * 1000;
}

/** Wall-clock time in nanoseconds. */
function wallNow() {
  return Number(process.hrtime.bigint());
}

/**
 * Like {@link compare}, with a choice of clock and every round reported.
 *
 * - `clock: 'cpu'` (default) reads `process.cpuUsage()`: the CPU this process used, on every
 *   thread (V8's GC helpers included), and not the time it waited while other tenants of a shared
 *   machine ran. Meaningful when both loops do all their work in this process (the simulator); not
 *   for a loop that waits on a device or another process. `clock: 'wall'` reads `hrtime`.
 * - The two loops alternate which goes first from round to round, and, when the process runs with
 *   `--expose-gc`, a minor GC empties the young generation before each timed loop, so that neither
 *   pays for the other's garbage.
 *
 * Returns ns per iteration (medians over rounds), the median of the per-round ratios candidate /
 * baseline, and the per-round ratios.
 */
export function compareRounds(baseline, candidate, { ops, rounds = 7, warmup = 5_000, clock = 'cpu' }) {
  if (rounds < 1) throw new RangeError('compareRounds: at least one round');
  const now = clock === 'cpu' ? cpuNow : clock === 'wall' ? wallNow : undefined;
  if (now === undefined) throw new RangeError(`compareRounds: clock is 'cpu' or 'wall', not ${clock}`);
  const settle = typeof globalThis.gc === 'function' ? () => globalThis.gc({ type: 'minor' }) : () => {};
  const timed = (body) => {
    settle();
    const start = now();
    body(ops);
    return (now() - start) / ops;
  };
  baseline(warmup);
  candidate(warmup);
  const baselines = [];
  const candidates = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      baselines.push(timed(baseline));
      candidates.push(timed(candidate));
    } else {
      candidates.push(timed(candidate));
      baselines.push(timed(baseline));
    }
  }
  const ratios = baselines.map((time, round) => candidates[round] / time);
  return { baseline: median(baselines), candidate: median(candidates), ratio: median(ratios), ratios, clock };
}

/**
 * V8 heap plus ArrayBuffer backing stores (typed arrays live outside the heap), after full GCs
 * (run node with --expose-gc). V8 frees the backing stores of dead ArrayBuffers on a background
 * thread after the GC: wait until the figure stops moving.
 */
export async function heapBytes() {
  let last = -1;
  for (let attempt = 0; attempt < 50; attempt++) {
    globalThis.gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    if (heapUsed + arrayBuffers === last) break;
    last = heapUsed + arrayBuffers;
  }
  return last;
}

/** A deterministic pseudo-random sequence (xorshift32) in [0, 1), so that every run does the same work. */
export function random(seed) {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}
