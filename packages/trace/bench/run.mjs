// Recorder benchmark (issue 19): the cost of recording an ioctl, as the ratio of VFIO type1v2
// MAP_DMA + UNMAP_DMA pairs through a recording syscall face to the same pairs through the bare
// simulator face (goal <= 1.5x per ioctl).
//
// - Both faces are simulated x86-vtd machines in this process with the same live mappings (1k),
//   driven by the same loop: the real request numbers and structs, the buffer from the face's own
//   mmap (so the recorder names `vaddr` as region 1, as it would in a real run).
// - The recorder writes its journal (the default format: binary records of the words that changed)
//   into its file mapping (libc mmap through koffi), every call durable when it returns. For
//   comparison: the `lines` format (a JSON line per call as it happens) into the same mapping, and
//   the journal through the `write` fallback (one writeSync per call).
// - stop() renders the journal to JSON Lines once, at the end: its CPU time per recorded call is
//   printed too, beside the hot path's figure, not hidden in it.
// - Time is CPU time (process.cpuUsage: this process, every thread, kernel time included, so the
//   page faults of a growing trace file count): rounds alternate which face goes first, a minor GC
//   empties the young generation before each timed loop (scripts/bench-compare.mjs), and the figure
//   is the median of the per-round ratios.
//
// Run with `pnpm --filter @ioas/trace bench` after `pnpm build` (about 15 s; writes ~250 MB of trace
// under the OS temp directory and removes it).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (typeof globalThis.gc !== 'function') {
  const { status } = spawnSync(process.execPath, ['--expose-gc', ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(status ?? 1);
}

const { createSimulator, simSyscalls } = await import('@ioas/backend-sim');
const { SYSCALL_FLAGS } = await import('@ioas/core');
const { ioctlNumber, vfioUapi } = await import('@ioas/vfio');
const { recordSyscalls } = await import('@ioas/trace');
const { compareRounds, random } = await import('../../../scripts/bench-compare.mjs');

const PAGE = 0x1000n;
const BASE = 0x1_0000_0000n;
const LIVE = 1_000;
/** Map+unmap pairs per face per round. */
const PAIRS = 30_000;
const ROUNDS = 11;
const GOAL = 1.5;

const { VFIO_NR, vfio_iommu_type1_dma_map: MAP, vfio_iommu_type1_dma_unmap: UNMAP } = vfioUapi;
const MAP_DMA = ioctlNumber(VFIO_NR.VFIO_IOMMU_MAP_DMA);
const UNMAP_DMA = ioctlNumber(VFIO_NR.VFIO_IOMMU_UNMAP_DMA);

function check(status, what) {
  if (status < 0) throw new Error(`${what} failed: errno ${-status}`);
  return status;
}

/** A type1v2 container with LIVE mappings on `syscalls`; returns the measured loop. */
function host(wrap) {
  const syscalls = wrap(simSyscalls(createSimulator({ platform: 'x86-vtd', dmaEntryLimit: LIVE + 1024 })));
  const address = syscalls.mmap(PAGE, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
  const container = check(syscalls.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR), 'open /dev/vfio/vfio');
  const group = check(syscalls.open('/dev/vfio/3', SYSCALL_FLAGS.O_RDWR), 'open /dev/vfio/3');
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  check(syscalls.ioctl(group, ioctlNumber(VFIO_NR.VFIO_GROUP_SET_CONTAINER), fd), 'VFIO_GROUP_SET_CONTAINER');
  check(syscalls.ioctl(container, ioctlNumber(VFIO_NR.VFIO_SET_IOMMU), vfioUapi.VFIO_TYPE1v2_IOMMU), 'VFIO_SET_IOMMU');
  const map = new Uint8Array(MAP.sizeof);
  const mapView = new DataView(map.buffer);
  mapView.setUint32(MAP.argsz, MAP.sizeof, true);
  mapView.setUint32(MAP.flags, vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE, true);
  mapView.setBigUint64(MAP.vaddr, address, true);
  mapView.setBigUint64(MAP.size, PAGE, true);
  const unmap = new Uint8Array(UNMAP.sizeof);
  const unmapView = new DataView(unmap.buffer);
  unmapView.setUint32(UNMAP.argsz, UNMAP.sizeof, true);
  for (let index = 0; index < LIVE; index++) {
    mapView.setBigUint64(MAP.iova, BASE + BigInt(index) * 2n * PAGE, true);
    check(syscalls.ioctl(container, MAP_DMA, map), 'VFIO_IOMMU_MAP_DMA');
  }
  // Free gaps (odd pages) in a deterministic pseudo-random order.
  const next = random(7);
  const iovas = Array.from({ length: PAIRS }, () => BASE + (BigInt(Math.floor(next() * LIVE)) * 2n + 1n) * PAGE);
  return {
    syscalls,
    loop(pairs) {
      for (let index = 0; index < pairs; index++) {
        const iova = iovas[index % PAIRS];
        mapView.setBigUint64(MAP.iova, iova, true);
        if (syscalls.ioctl(container, MAP_DMA, map) !== 0) throw new Error('MAP_DMA failed');
        unmapView.setBigUint64(UNMAP.iova, iova, true);
        unmapView.setBigUint64(UNMAP.size, PAGE, true);
        if (syscalls.ioctl(container, UNMAP_DMA, unmap) !== 0 || unmapView.getBigUint64(UNMAP.size, true) !== PAGE) throw new Error('UNMAP_DMA failed');
      }
    },
  };
}

/** Bytes of the file up to its last non-NUL byte (a journal's mapping is sized ahead in chunks). */
function usedBytes(path) {
  const bytes = readFileSync(path);
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  return end;
}

/** CPU nanoseconds of `body()`. */
function cpuTime(body) {
  const start = process.cpuUsage();
  body();
  const { user, system } = process.cpuUsage(start);
  return (user + system) * 1000;
}

const directory = mkdtempSync(join(tmpdir(), 'ioas-trace-bench-'));
try {
  const started = process.hrtime.bigint();
  const bare = host((syscalls) => syscalls);
  const journal = host((syscalls) => recordSyscalls(syscalls, { path: join(directory, 'journal'), label: 'bench' }));
  const lines = host((syscalls) => recordSyscalls(syscalls, { path: join(directory, 'lines.jsonl'), label: 'bench', format: 'lines' }));
  const written = host((syscalls) => recordSyscalls(syscalls, { path: join(directory, 'write'), label: 'bench', writer: 'write' }));
  if (journal.syscalls.writer !== 'mmap') throw new Error(`the recorder fell back to ${journal.syscalls.writer}: libc did not load`);

  const options = { ops: PAIRS, rounds: ROUNDS, warmup: PAIRS };
  const journalResult = compareRounds(bare.loop, journal.loop, options);
  const linesResult = compareRounds(bare.loop, lines.loop, { ...options, rounds: 5 });
  const writeResult = compareRounds(bare.loop, written.loop, { ...options, rounds: 5 });

  const calls = journal.syscalls.calls;
  copyFileSync(join(directory, 'journal'), join(directory, 'journal.copy'));
  const journalBytes = usedBytes(join(directory, 'journal.copy'));
  const renderNs = cpuTime(() => journal.syscalls.stop());
  lines.syscalls.stop();
  written.syscalls.stop();
  const lineBytes = statSync(join(directory, 'lines.jsonl')).size / (lines.syscalls.calls + 1);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;

  const perIoctl = (ns) => `${(ns / 2).toFixed(0).padStart(5)} ns/ioctl`;
  const rounds = (result) => `rounds ${Math.min(...result.ratios).toFixed(2)}-${Math.max(...result.ratios).toFixed(2)}`;
  console.log('recording VFIO type1v2 MAP_DMA / UNMAP_DMA of 4 KiB at random free gaps (x86-vtd simulator, 1k live mappings)');
  console.log(`CPU time (process.cpuUsage), ${ROUNDS} interleaved rounds of ${PAIRS.toLocaleString('en')} map+unmap pairs per face\n`);
  console.log(`bare simulator face:             ${perIoctl(journalResult.baseline)}`);
  console.log(
    `recorded, journal (mmap):        ${perIoctl(journalResult.candidate)}  (${(journalResult.candidate / 2 - journalResult.baseline / 2).toFixed(0)} ns/ioctl of recording, ${(journalBytes / calls).toFixed(1)} bytes/call)`,
  );
  console.log(`  then stop() renders it:        ${(renderNs / calls).toFixed(0).padStart(5)} ns/call, once, at the end (${calls.toLocaleString('en')} calls)`);
  console.log(`recorded, lines (mmap):          ${perIoctl(linesResult.candidate)}  (ratio ${linesResult.ratio.toFixed(2)}, ${rounds(linesResult)}; ${lineBytes.toFixed(0)} bytes/line)`);
  console.log(`recorded, journal (writeSync):   ${perIoctl(writeResult.candidate)}  (fallback; ratio ${writeResult.ratio.toFixed(2)}, ${rounds(writeResult)})`);
  console.log('');
  console.log(
    `recorded/bare per ioctl (journal, mmap): ${journalResult.ratio.toFixed(2)}x (median of ${ROUNDS} interleaved rounds; ${rounds(journalResult)})  (goal <= ${GOAL}x: ${journalResult.ratio <= GOAL ? 'met' : 'missed'})`,
  );
  console.log(`(${seconds.toFixed(0)} s; per-round ratios ${journalResult.ratios.map((r) => r.toFixed(2)).join(' ')})`);
} finally {
  rmSync(directory, { recursive: true, force: true });
}
