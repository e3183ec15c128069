// `pnpm demo`: the window planner on the seed example (a 256 MiB guest on 64 MiB hugepages with
// 3 MSI banks, from the 2013 "type 2" thread), printed as the table the thread drew.
// When @ioas/backend-sim lands, the demo applies the plan on a simulated P4080.
import { formatWindowPlan, planWindows } from '@ioas/core';

const MiB = 1024n * 1024n;
const plan = planWindows({
  memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }],
  msiBanks: 3,
});
console.log('PAMU window plan for a 256 MiB guest backed by 64 MiB hugepages, 3 MSI banks\n');
console.log(formatWindowPlan(plan));
