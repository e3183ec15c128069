// The map/unmap hot paths (numbers, page-keyed table, no bigint) against the checked paths they
// short-cut. Each test drives two identical machines through the raw syscall face with the same
// random ioctls; on one a fault injection that never matches stays pending, which sends every call
// down the checked path. Return values, the bytes written back, the mappings, the pinned count and
// translations must agree after every call.
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SimIommufdContext } from './iommufd.js';
import { PagedDomain } from './paged-domain.js';
import { simSyscalls, type SimSyscalls } from './sim-syscalls.js';
import { createSimulator, type Simulator, type SimulatorOptions } from './simulator.js';
import { SimVfioContainer } from './vfio-container.js';

const X86 = (nr: number) => 0x3b00 + nr;
const PAGE = 0x1000;
const BASE = 0x1_0000_0000;
const TWO_53 = 2 ** 53;

/** mulberry32: a failure replays from its seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Machine {
  simulator: Simulator;
  sys: SimSyscalls;
  fd: number;
  memory: bigint;
}

function twins(options: SimulatorOptions, open: (simulator: Simulator, sys: SimSyscalls) => number, littleEndian = true): [Machine, Machine] {
  const make = (checked: boolean): Machine => {
    const simulator = createSimulator(options);
    const sys = simSyscalls(simulator, { littleEndian });
    const fd = open(simulator, sys);
    const memory = sys.mmap(0x40_000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    if (checked) simulator.injectFault({ ioctl: 'NEVER_CALLED', errno: ERRNO.EIO });
    return { simulator, sys, fd, memory };
  };
  return [make(false), make(true)];
}

function openType1(type: number, little = true) {
  return (simulator: Simulator, sys: SimSyscalls): number => {
    const edu = simulator.devices().find((device) => device.edu)!;
    const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
    const group = sys.open(`/dev/vfio/${edu.group}`, SYSCALL_FLAGS.O_RDWR);
    const fd = new Uint8Array(4);
    new DataView(fd.buffer).setInt32(0, container, little);
    expect(sys.ioctl(group, X86(104), fd)).toBe(0);
    expect(sys.ioctl(container, X86(102), type)).toBe(0);
    return container;
  };
}

/** An iommufd with IOAS 1 (and, with `attach`, the edu device attached to it). */
function openIommufd(attach: boolean) {
  return (simulator: Simulator, sys: SimSyscalls): number => {
    const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
    const alloc = new Uint8Array(12);
    new DataView(alloc.buffer).setUint32(0, 12, true);
    expect(sys.ioctl(iommufd, X86(0x81), alloc)).toBe(0);
    if (attach) {
      const device = sys.open('/dev/vfio/devices/vfio0', SYSCALL_FLAGS.O_RDWR);
      const bind = new DataView(new ArrayBuffer(16));
      bind.setUint32(0, 16, true);
      bind.setInt32(8, iommufd, true);
      expect(sys.ioctl(device, X86(118), new Uint8Array(bind.buffer))).toBe(0);
      const attachArgs = new DataView(new ArrayBuffer(12));
      attachArgs.setUint32(0, 12, true);
      attachArgs.setUint32(8, 1, true);
      expect(sys.ioctl(device, X86(119), new Uint8Array(attachArgs.buffer))).toBe(0);
    }
    return iommufd;
  };
}

/** The domain behind a machine's container or IOAS 1. */
function domainOf(machine: Machine): PagedDomain {
  for (const object of machine.simulator.kernelObjects) {
    if (object instanceof SimVfioContainer && object.paged !== undefined) return object.paged;
    if (object instanceof SimIommufdContext) return object.ioas(1, 'test').areas;
  }
  throw new Error('no domain');
}

/** Status of every call of the current test: each test checks that it reached successes and several errnos. */
let statuses: Set<number>;
let fastAdds: { mock: { results: { value: unknown }[] } };
let fastRemoves: { mock: { results: { value: unknown }[] } };
beforeEach(() => {
  statuses = new Set();
  fastAdds = vi.spyOn(PagedDomain.prototype, 'addPagesIfFree');
  fastRemoves = vi.spyOn(PagedDomain.prototype, 'removePages');
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** The test reached successes, several errnos, and the hot paths' own successes. */
function expectCoverage(errnos: number[], adds = true): void {
  expect(statuses.has(0)).toBe(true);
  for (const errno of errnos) expect([errno, statuses.has(-errno)]).toEqual([errno, true]);
  // With RLIMIT_MEMLOCK set every map takes the checked path.
  if (adds) expect(fastAdds.mock.results.filter((result) => result.value === true).length).toBeGreaterThan(100);
  expect(fastRemoves.mock.results.filter((result) => result.value === true).length).toBeGreaterThan(20);
}

/** Issues the same ioctl on both machines (the struct built per machine by `build`) and compares everything observable. */
function both(machines: [Machine, Machine], request: number, build: (machine: Machine) => Uint8Array, probes: number[]): void {
  const results = machines.map((machine) => {
    const bytes = build(machine);
    const status = machine.sys.ioctl(machine.fd, request, bytes);
    return { status, bytes: [...bytes] };
  });
  expect(results[0]).toEqual(results[1]);
  statuses.add(results[0]!.status);
  const [fast, checked] = machines;
  expect(fast.simulator.liveMappings()).toBe(checked.simulator.liveMappings());
  expect(fast.simulator.lockedBytes).toBe(checked.simulator.lockedBytes);
  const fastDomain = domainOf(fast);
  const checkedDomain = domainOf(checked);
  expect(fastDomain.count).toBe(checkedDomain.count);
  for (const probe of probes) {
    const iova = BigInt(probe);
    expect(fastDomain.translate(iova, true)).toEqual(checkedDomain.translate(iova, true));
    expect(fastDomain.find(iova)).toEqual(checkedDomain.find(iova));
  }
}

/** An IOVA, size or address: mostly page multiples near `base`, sometimes misaligned, zero or past 2^53. */
function pick(next: () => number, base: number, pages: number): bigint {
  const roll = next();
  if (roll < 0.02) return BigInt(TWO_53) + BigInt(Math.floor(next() * 4)) * 0x1000n;
  if (roll < 0.04) return 0n;
  const value = base + Math.floor(next() * pages) * PAGE;
  return BigInt(roll < 0.1 ? value + 1 + Math.floor(next() * 0xffe) : value);
}

function type1Struct(map: boolean, flags: number, vaddr: bigint, iova: bigint, size: bigint, little = true): Uint8Array {
  const bytes = new Uint8Array(map ? 32 : 24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, bytes.length, little);
  view.setUint32(4, flags, little);
  if (map) view.setBigUint64(8, vaddr, little);
  view.setBigUint64(map ? 16 : 8, iova, little);
  view.setBigUint64(map ? 24 : 16, size, little);
  return bytes;
}

describe('type1 MAP_DMA / UNMAP_DMA hot paths agree with the checked paths', () => {
  it.each([
    ['x86-vtd', 3, {}],
    ['arm-smmuv3', 1, {}],
    ['x86-vtd', 3, { dmaEntryLimit: 12 }],
    ['x86-vtd', 1, { memlockLimit: 0x8000n }],
  ] as const)('%s, type %i, %o', (platform, type, extra) => {
    const machines = twins({ platform, ...extra }, openType1(type));
    const next = random(type * 31 + Object.keys(extra).length);
    // Plain IOVA space, the edges of a reserved window, the top of the aperture.
    const bases = platform === 'x86-vtd' ? [BASE, 0xfee0_0000 - 16 * PAGE, 0xfef0_0000 - 16 * PAGE, 0x80_0000_0000 - 16 * PAGE] : [BASE, 0x800_0000 - 16 * PAGE, 0x810_0000 - 16 * PAGE, 2 ** 48 - 16 * PAGE];
    const probes = bases.flatMap((base) => [base + 8, base + 15 * PAGE + 8, base + 16 * PAGE + 8]);
    for (let step = 0; step < 4000; step++) {
      const mapping = next() < 0.6;
      const base = bases[Math.floor(next() * bases.length)]!;
      if (mapping) {
        const flags = next() < 0.9 ? 1 + Math.floor(next() * 3) : [0, 4, 5, 8][Math.floor(next() * 4)]!;
        const iova = pick(next, base, 32);
        const size = next() < 0.9 ? BigInt(PAGE * (1 + Math.floor(next() * 3))) : pick(next, 0, 4);
        const offset = next() < 0.9 ? BigInt(Math.floor(next() * 60) * PAGE) : pick(next, 0, 80);
        both(machines, X86(113), (machine) => type1Struct(true, flags, machine.memory + offset, iova, size), probes);
      } else {
        const all = next() < 0.01;
        const iova = all ? 0n : pick(next, base, 32);
        const size = all ? 0n : next() < 0.9 ? BigInt(PAGE * (1 + Math.floor(next() * 3))) : pick(next, 0, 8);
        both(machines, X86(114), () => type1Struct(false, all ? 2 : 0, 0n, iova, size), probes);
      }
    }
    expect(domainOf(machines[0]).all()).toEqual(domainOf(machines[1]).all());
    expectCoverage([ERRNO.EINVAL, ERRNO.EEXIST, ERRNO.EFAULT, ...('dmaEntryLimit' in extra ? [ERRNO.ENOSPC] : []), ...('memlockLimit' in extra ? [ERRNO.ENOMEM] : [])], !('memlockLimit' in extra));
  }, 60_000); // thousands of steps on two machines: seconds alone, more when the whole suite shares two cores
});

describe('big-endian structs', () => {
  it('decodes and writes back type1 structs in the process byte order on the hot path too', () => {
    const machines = twins({ platform: 'x86-vtd' }, openType1(3, false), false);
    const probes = [BASE + 8, BASE + PAGE + 8, BASE + 2 * PAGE + 8];
    const iova = BigInt(BASE);
    both(machines, X86(113), (machine) => type1Struct(true, 3, machine.memory + 0x3000n, iova, 0x2000n, false), probes);
    expect(domainOf(machines[0]).find(iova + 0x1234n)?.vaddr).toBe(machines[0].memory + 0x3000n);
    expect(domainOf(machines[0]).translate(iova + 0x1234n, true)).toEqual({ kind: 'memory', vaddr: machines[0].memory + 0x4234n, writable: true });
    both(machines, X86(113), (machine) => type1Struct(true, 3, machine.memory, iova + 0x1000n, 0x1000n, false), probes); // EEXIST
    both(machines, X86(114), () => type1Struct(false, 0, 0n, iova, 0x2000n, false), probes);
    expect(statuses).toEqual(new Set([0, -ERRNO.EEXIST]));
    expect(fastAdds.mock.results.map((result) => result.value)).toEqual([true, false]);
    expect(domainOf(machines[0]).count).toBe(0);
  });
});

function iommufdMap(flags: number, vaddr: bigint, length: bigint, iova: bigint, size = 40): Uint8Array {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, size, true);
  view.setUint32(4, flags, true);
  view.setUint32(8, 1, true);
  view.setBigUint64(16, vaddr, true);
  view.setBigUint64(24, length, true);
  view.setBigUint64(32, iova, true);
  return bytes;
}

function iommufdUnmap(iova: bigint, length: bigint, ioas = 1): Uint8Array {
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 24, true);
  view.setUint32(4, ioas, true);
  view.setBigUint64(8, iova, true);
  view.setBigUint64(16, length, true);
  return bytes;
}

describe('iommufd IOAS_MAP / IOAS_UNMAP hot paths agree with the checked paths', () => {
  // Without a device the IOAS takes byte-granular areas: they live in the domain's other table.
  // A long randomized comparison (3 s alone, 7 s beside a busy machine): a timeout, not a speed bound.
  it.each([true, false])('device attached: %s', (attach) => {
    const machines = twins({ platform: 'x86-vtd' }, openIommufd(attach));
    const next = random(attach ? 7 : 8);
    // Reserved ranges (the MSI window on x86) sit in the way of some maps.
    const near = 0xfee0_0000 - 16 * PAGE;
    const probes = [near + 8, near + 15 * PAGE, near + 16 * PAGE, near + 3 * PAGE + 100];
    for (let step = 0; step < 3000; step++) {
      const roll = next();
      if (roll < 0.6) {
        const flags = next() < 0.85 ? 1 | (2 * (1 + Math.floor(next() * 3))) : [0, 2, 4, 6, 8, 9][Math.floor(next() * 6)]!;
        const iova = pick(next, near, 24);
        const length = next() < 0.85 ? BigInt(PAGE * (1 + Math.floor(next() * 3))) : pick(next, 0, 3);
        // Whole pages past the 64 mapped ones fault once a domain pins them (no domain: a lazy map, no fault).
        const offset = BigInt(next() < 0.8 ? Math.floor(next() * 66) * PAGE : Math.floor(next() * 70 * PAGE));
        const size = next() < 0.97 ? 40 : 48;
        both(machines, X86(0x85), (machine) => iommufdMap(flags, machine.memory + offset, length, iova, size), probes);
      } else if (roll < 0.97) {
        const iova = pick(next, near, 24);
        const length = next() < 0.85 ? BigInt(PAGE * (1 + Math.floor(next() * 3))) : pick(next, 0, 3);
        const ioas = next() < 0.98 ? 1 : 2;
        both(machines, X86(0x86), () => iommufdUnmap(iova, length, ioas), probes);
      } else {
        both(machines, X86(0x86), () => iommufdUnmap(0n, 0xffff_ffff_ffff_ffffn), probes);
      }
    }
    expect(domainOf(machines[0]).all()).toEqual(domainOf(machines[1]).all());
    expectCoverage([ERRNO.EINVAL, ERRNO.EEXIST, ...(attach ? [ERRNO.EFAULT] : []), ERRNO.ENOENT, ERRNO.EOPNOTSUPP]);
  }, 60_000);
});

describe('PagedDomain', () => {
  const PAGE_N = 0x1000n;

  it('keeps page-shaped and byte-granular mappings in one order, and vaddrs past 2^53 exact', () => {
    const domain = new PagedDomain(undefined);
    const huge = (1n << 60n) + 0x123n;
    domain.add({ start: 0x1000n, last: 0x2fffn, vaddr: 0x7f00_0000_0000n, read: true, write: false });
    domain.add({ start: 0x3001n, last: 0x3ffen, vaddr: 0x7f00_0001_0000n, read: true, write: true }); // byte-granular
    domain.add({ start: 0x4000n, last: 0x4fffn, vaddr: huge, read: false, write: true }); // vaddr past 2^53
    domain.addPages(6, 7, 0x7f00_0002_0000, true, true);
    expect(domain.count).toBe(4);
    expect(domain.all().map((mapping) => mapping.start)).toEqual([0x1000n, 0x3001n, 0x4000n, 0x6000n]);
    expect(domain.find(0x4800n)).toEqual({ start: 0x4000n, last: 0x4fffn, vaddr: huge, read: false, write: true });
    expect(domain.translate(0x4800n, true)).toEqual({ kind: 'memory', vaddr: huge + 0x800n, writable: true });
    expect(domain.translate(0x4800n, false)).toEqual({ kind: 'fault', reason: 'permission' });
    expect(domain.translate(0x3000n, false)).toEqual({ kind: 'fault', reason: 'unmapped' });
    expect(domain.translate(0x7fffn, false)).toEqual({ kind: 'memory', vaddr: 0x7f00_0002_1fffn, writable: true });
    expect(domain.overlaps(0x2fffn, 0x3000n)).toBe(true);
    expect(domain.overlaps(0x3fffn, 0x3fffn)).toBe(false);
    expect(domain.overlapsPages(3, 3)).toBe(true); // the byte-granular area is in page 3
    expect(domain.overlapsPages(5, 5)).toBe(false);
    expect(domain.overlapping(0x2000n, 0x6000n).map((mapping) => mapping.start)).toEqual([0x1000n, 0x3001n, 0x4000n, 0x6000n]);
    expect(domain.addPagesIfFree(3, 3, 0x1000, true, true)).toBe(false); // the byte-granular area
    expect(domain.addPagesIfFree(2, 2, 0x1000, true, true)).toBe(false);
    expect(domain.addPagesIfFree(5, 5, 0x7f00_0003_0000, true, false)).toBe(true);
    expect(domain.find(0x5fffn)).toEqual({ start: 0x5000n, last: 0x5fffn, vaddr: 0x7f00_0003_0000n, read: true, write: false });
    expect(domain.removePages(5, 5)).toBe(true);
    expect(domain.removePages(6, 6)).toBe(false); // not exactly a mapping
    expect(domain.removePages(6, 7)).toBe(true);
    for (const mapping of domain.all()) domain.remove(mapping);
    expect(domain.count).toBe(0);
    expect(domain.find(0x1000n)).toBeUndefined();
    expect(domain.overlapping(0n, 0xffff_ffff_ffff_ffffn)).toEqual([]);
    domain.add({ start: 0xffff_ffff_ffff_f000n, last: 0xffff_ffff_ffff_ffffn, vaddr: 0x1000n, read: true, write: true });
    expect(domain.find(0xffff_ffff_ffff_ffffn)?.start).toBe(0xffff_ffff_ffff_f000n);
    expect(domain.overlaps(0n, PAGE_N)).toBe(false);
  });

  it('counts pinned bytes exactly across the number and bigint paths', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    expect(simulator.tryPin(0x1000)).toBe(true);
    simulator.pin(1n << 60n, 'test');
    expect(simulator.lockedBytes).toBe((1n << 60n) + 0x1000n);
    simulator.unpinNumber(0x1000);
    simulator.unpin(1n << 60n);
    expect(simulator.lockedBytes).toBe(0n);
    expect(simulator.tryPin(2 ** 52 + 1)).toBe(false); // past the exact part: the bigint path takes it
    simulator.lockedBytes = 5n;
    expect(simulator.lockedBytes).toBe(5n);
    const limited = createSimulator({ platform: 'x86-vtd', memlockLimit: 0x10000n });
    expect(limited.tryPin(0x1000)).toBe(false); // RLIMIT_MEMLOCK: always the checked path
  });
});
