/**
 * Clustering sorted ranges (mappings, allocations) down to a row budget: a million 4 KiB mappings
 * cannot be a million rows, but where the big holes between them are is exactly what a reader wants
 * to see, so the clusters are cut at the largest holes.
 */

/** Consecutive ranges `first` to `end - 1` (indexes into the sorted input) drawn as one. */
export interface Cluster {
  /** The first byte of the first range. */
  readonly start: bigint;
  /** The furthest last byte of any range in the cluster. */
  readonly last: bigint;
  /** Index of the cluster's first range. */
  readonly first: number;
  /** Index after the cluster's last range. */
  readonly end: number;
}

/**
 * A hole that holds a structure boundary (a reserved range, a window, a doorbell, a usable edge)
 * is split before any plain hole, so that a cluster never straddles the structure the map is
 * there to show while the budget allows. Added to the hole's size, it outranks every 64-bit size.
 */
const STRUCTURAL = 2 ** 70;

/**
 * Groups `starts[i]..lasts[i]` (sorted by start) into at most `budget` clusters, splitting at the
 * `budget - 1` largest holes between neighbours; holes that contain one of `cuts` (sorted) first.
 * Linear apart from one numeric sort of the hole sizes, so a million ranges take well under a second.
 */
export function clusterRanges(starts: readonly bigint[], lasts: readonly bigint[], budget: number, cuts: readonly bigint[]): Cluster[] {
  const count = starts.length;
  if (count === 0) return [];
  if (count <= budget) return starts.map((start, index) => ({ start, last: lasts[index]!, first: index, end: index + 1 }));
  const splits = Math.max(0, budget - 1);
  const scores = new Float64Array(count - 1);
  // Measure each hole from the furthest end reached so far, so that overlapping input (which a
  // valid snapshot never has) gives zero-sized holes instead of negative ones.
  let reach = lasts[0]!;
  let cut = 0;
  for (let index = 0; index < count - 1; index++) {
    if (lasts[index]! > reach) reach = lasts[index]!;
    const next = starts[index + 1]!;
    const hole = next > reach + 1n ? next - reach - 1n : 0n;
    while (cut < cuts.length && cuts[cut]! <= reach) cut++;
    const structural = cut < cuts.length && cuts[cut]! <= next;
    scores[index] = (structural ? STRUCTURAL : 0) + Number(hole);
  }
  const split = new Uint8Array(count - 1);
  if (splits > 0) {
    const sorted = scores.slice().sort();
    const threshold = sorted[sorted.length - splits]!;
    let above = 0;
    let tied = 0;
    for (const score of scores) {
      if (score > threshold) above++;
      else if (score === threshold) tied++;
    }
    // Among equal holes (a million 4 KiB mappings 4 KiB apart), split at evenly spaced ones, so
    // that the clusters come out of similar sizes rather than a run of single mappings and one
    // giant; by position, so that the result does not depend on the sort.
    const ties = splits - above;
    let seen = 0;
    let next = 0;
    // The k-th chosen tie sits (k + 1) / (ties + 1) of the way along them: `ties` cuts into `ties + 1` equal parts.
    const pick = (k: number) => Math.floor(((k + 1) * (tied + 1)) / (ties + 1)) - 1;
    for (let index = 0; index < scores.length; index++) {
      const score = scores[index]!;
      if (score > threshold) split[index] = 1;
      else if (score === threshold) {
        if (next < ties && seen === pick(next)) {
          split[index] = 1;
          next++;
        }
        seen++;
      }
    }
  }
  const clusters: Cluster[] = [];
  let first = 0;
  let last = lasts[0]!;
  for (let index = 0; index < count; index++) {
    if (lasts[index]! > last) last = lasts[index]!;
    if (index === count - 1 || split[index] === 1) {
      clusters.push({ start: starts[first]!, last, first, end: index + 1 });
      first = index + 1;
      if (first < count) last = lasts[first]!;
    }
  }
  return clusters;
}
