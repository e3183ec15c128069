// Apply a PAMU window plan: a 256 MiB guest on 64 MiB hugepages with the P4080's three MSI banks,
// planned by core and applied by @ioas/backend-pamu in one call (all or nothing).
//
//   node examples/pamu-window-plan.mjs            on a simulated P4080 (the simulator's syscall face)
//   node examples/pamu-window-plan.mjs --group 0  on a real P4080 running an NXP SDK kernel (root)
//   add --picture FILE.svg (or .html) to draw the domain's IOVA space as it ends up
import { parseArgs } from 'node:util';
import { applyWindowPlan, pamu } from '@ioas/backend-pamu';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { Container, formatWindowPlan, hex, planWindows } from '@ioas/core';
import { allocateDmaMemory, libcSyscalls } from '@ioas/vfio';
import { drawPicture } from './draw-picture.mjs';

const { values } = parseArgs({ options: { group: { type: 'string' }, profile: { type: 'string', default: 'sdk-4.x' }, picture: { type: 'string' } } });
const MiB = 1n << 20n;

// The only difference between the simulator and the board: which system calls the backend makes.
const machine = values.group === undefined ? createSimulator({ platform: 'p4080' }) : undefined;
const syscalls = machine === undefined ? libcSyscalls() : simSyscalls(machine);
const group = values.group === undefined ? 0 : Number(values.group);
// PAMU boards are big-endian; the simulated P4080 is too, whatever this host is.
const backend = pamu({ profile: values.profile, syscalls, ...(machine === undefined ? {} : { littleEndian: false }) });

const plan = planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 });
console.log(formatWindowPlan(plan));

const container = await Container.open({ backend, groups: [group] });
try {
  // 64 MiB hugepages (MAP_HUGETLB): physically contiguous, which each PAMU window needs.
  const ram = allocateDmaMemory(syscalls, 256n * MiB, 64n * MiB);
  const { mappings, msi } = applyWindowPlan(container, plan, [ram]);
  for (const mapping of mappings) console.log(`guest RAM mapped at ${hex(mapping.iova.start)}-${hex(mapping.iova.last)}`);
  for (const bank of backend.containerOf(group).msiBanks()) console.log(`MSI bank ${bank.bank} in the window at ${hex(bank.iova)}: devices write to ${hex(bank.deviceAddress ?? 0n)}`);
  console.log(`${msi.doorbells.length} MSI banks mapped; translation on: ${backend.containerOf(group).translating}`);
  if (values.picture !== undefined) drawPicture(values.picture, container.snapshot("seed 000's 256 MiB guest on a P4080 (PAMU)"));
} finally {
  container.close();
}
