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
