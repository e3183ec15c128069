import { Container } from '@ioas/core';
import { sim } from '@ioas/backend-sim';

// A simulated Intel VT-d machine whose IOMMU keeps dirty bits in its page tables (VT-d's SSADS),
// through iommufd: tracking is precise. (QEMU's emulated IOMMUs keep none, and VFIO type1 reports
// every mapped page dirty: docs/kernel-rules.md#dirty-page-tracking.)
const backend = sim({ platform: 'x86-vtd', interface: 'iommufd', hardwareDirty: true });
const machine = backend.simulator;
const container = await Container.open({ backend, devices: ['0000:00:03.0'] });
const nic = machine.device('0000:00:03.0');
console.log('tracking:', JSON.stringify(container.dirty.capability, (_, value) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value)));

// The guest's 64 MiB of RAM, mapped at IOVA 0, and the destination host's copy of it.
const PAGE = 4096;
const PAGES = 16384;
const ram = machine.memory.allocate(BigInt(PAGES * PAGE), 4096n, true);
container.map({ iova: 0n, memory: { address: ram.address, length: ram.length } });
const guest = machine.memory.view(ram.address, PAGES * PAGE);
const destination = new Uint8Array(PAGES * PAGE);
const all = { iova: { start: 0n, size: ram.length } };

// The device writes at a steady rate, one write for every 32 pages the migration copies: mostly
// into a 2 MiB receive ring, one write in eight anywhere. Clocks say when each page was last
// written and last copied.
let seed = 2026;
// The generator's high bits (its low bits repeat with short periods).
const random = (n) => Math.floor(((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * n);
const clock = { now: 1, written: new Uint32Array(PAGES), copied: new Uint32Array(PAGES) };
let owed = 0;
function deviceRuns(pagesCopied) {
  for (owed += pagesCopied / 32; owed >= 1; owed--) {
    const page = random(8) === 0 ? random(PAGES) : 1024 + random(512);
    const offset = random(PAGE - 8);
    if (!nic.dmaWrite(BigInt(page * PAGE + offset), new Uint8Array([random(256), random(256), 0xd1, 0x47, random(256)]))) throw new Error('DMA faulted');
    clock.written[page] = clock.now++;
  }
}

// Copies pages to the destination 256 at a time, the device running in between.
function copy(first, count, deviceRunning) {
  for (let chunk = first; chunk < first + count; chunk += 256) {
    const end = Math.min(chunk + 256, first + count);
    destination.set(guest.subarray(chunk * PAGE, end * PAGE), chunk * PAGE);
    clock.copied.fill(clock.now++, chunk, end);
    if (deviceRunning) deviceRuns(end - chunk);
  }
  return count;
}

// Pre-copy: everything once, then what the bitmap says, until the dirty set stops shrinking. Each
// round reads into the bitmap of the round before (its pages are copied by then): no new bitmap.
container.dirty.start();
let copied = copy(0, PAGES, true);
console.log(`round 1: copied all ${copied} pages`);
let previous = Infinity;
let pending;
let dirty;
for (let round = 2; ; round++) {
  dirty = container.dirty.read(dirty === undefined ? all : { ...all, into: dirty });
  if (dirty.count() === 0 || dirty.count() >= previous) {
    pending = dirty;
    console.log(`round ${round}: ${dirty.count()} dirty pages${dirty.count() === 0 ? '' : `, not fewer than ${previous}`}: stop the guest`);
    break;
  }
  let pages = 0;
  dirty.forEachRun((first, count) => (pages += copy(first, count, true)));
  copied += pages;
  console.log(`round ${round}: ${dirty.count()} dirty pages in ${[...dirty.runs()].length} runs, copied`);
  previous = dirty.count();
}

// Stop-and-copy: the guest and its device are paused; what the last read found, and what was
// written since, is copied with nothing running.
const last = container.dirty.read(all);
last.merge(pending);
last.forEachRun((first, count) => (copied += copy(first, count, false)));
container.dirty.stop();
console.log(`stop-and-copy: ${last.count()} pages; ${copied} pages copied in all for ${PAGES} of RAM`);

// Every page the device wrote was copied after its last write, and the copy equals the guest's RAM.
const stale = clock.written.findIndex((written, page) => written > 0 && written >= clock.copied[page]);
const equal = Buffer.compare(Buffer.from(guest), Buffer.from(destination)) === 0;
console.log(stale < 0 && equal ? 'destination equals the guest RAM: every page written was copied after its last write' : `page ${stale} is stale`);
container.close();
if (stale >= 0 || !equal) process.exit(1);
