// Every quirk of the SDK PAMU driver in docs/kernel-rules.md#pamu-sdk-driver, each with the defence that
// stops it. The simulator's P4080 reproduces the driver's silent failures, so each test here fails
// without its defence: the request would reach the "kernel", which would answer 0 and do something
// else (or divide by zero).
import { Container, ERRNO, IoasError, type IoasErrorCode } from '@ioas/core';
import { caught } from '@ioas/conformance';
import { describe, expect, it } from 'vitest';
import { pamuOnSim, type LoggedIoctl } from './__fixtures__/pamu-on-sim.js';
import { PamuContainer } from './pamu-container.js';
import { PamuIoctls } from './pamu-ioctls.js';
import { definePamuProfile, PAMU_PROFILES } from './profiles.js';
import { PAMU_ATTRIBUTE } from './uapi.js';

const MiB = 1n << 20n;
const WINDOW = 64n * MiB;
/** The seed geometry: 512 MiB at 0 in 8 windows of 64 MiB. */
const APERTURE = { start: 0n, last: 512n * MiB - 1n };

function open(options: Parameters<typeof pamuOnSim>[0] = {}) {
  const env = pamuOnSim(options);
  const container = PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, options.littleEndian ?? false), [env.edu.group!]);
  return { ...env, container };
}

function configured(options: Parameters<typeof pamuOnSim>[0] = {}) {
  const env = open(options);
  env.container.configure(APERTURE, 8);
  return env;
}

function hugepages(env: ReturnType<typeof open>, length: bigint, pageSize = WINDOW) {
  const region = env.simulator.memory.allocate(length, pageSize);
  return { vaddr: region.address, contiguousPageSize: pageSize };
}

/** Runs `run`, expects `code`, and checks that not one ioctl reached the kernel. */
function refusedBeforeTheKernel(env: ReturnType<typeof open>, code: IoasErrorCode, run: () => unknown): IoasError {
  const before = env.log.length;
  const error = caught(run);
  expect(error.code, error.message).toBe(code);
  expect(env.names(before)).toEqual([]);
  expect(env.simulator.oopses).toEqual([]);
  return error;
}

/** Makes SET_ATTR of one attribute return 0 without reaching the domain: a silent refusal. */
const swallowSetAttr = (attribute: number) => (call: LoggedIoctl) => (call.name === 'VFIO_IOMMU_PAMU_SET_ATTR' && call.attribute === attribute ? 0 : undefined);

describe('ABI profiles (kernel-rules.md#pamu-iommu-type-numbers)', () => {
  it('carries the PowerPC ioctl values and type numbers of the SDK kernels', () => {
    const values = PAMU_PROFILES['sdk-4.x'].ioctls;
    expect([values.VFIO_CHECK_EXTENSION, values.VFIO_SET_IOMMU, values.VFIO_IOMMU_MAP_DMA, values.VFIO_IOMMU_UNMAP_DMA]).toEqual([0x20003b65, 0x20003b66, 0x20003b71, 0x20003b72]);
    expect([
      values.VFIO_IOMMU_PAMU_GET_ATTR,
      values.VFIO_IOMMU_PAMU_SET_ATTR,
      values.VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT,
      values.VFIO_IOMMU_PAMU_MAP_MSI_BANK,
      values.VFIO_IOMMU_PAMU_UNMAP_MSI_BANK,
    ]).toEqual([0x20003b73, 0x20003b74, 0x20003b75, 0x20003b76, 0x20003b77]);
    expect(Object.values(PAMU_PROFILES).map((profile) => [profile.name, profile.iommuType])).toEqual([
      ['sdk-3.8', 2],
      ['sdk-3.12', 2],
      ['sdk-4.x', 7],
    ]);
  });

  it('refuses a kernel whose CHECK_EXTENSION does not fit the profile, naming both, and leaks nothing', () => {
    const env = pamuOnSim({ pamuType: 7, profile: 'sdk-3.8' });
    const error = caught(() => PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, false), [0]));
    expect(error.code).toBe('abi-mismatch');
    expect(error.message).toMatch(/sdk-3.8 \(IOMMU type 2.*expects CHECK_EXTENSION\(2\) = 1/);
    expect(error.message).toMatch(/CHECK_EXTENSION\(7\) = 1.*fits the sdk-4.x profile/);
    expect(env.names()).not.toContain('VFIO_SET_IOMMU');
    expect(env.raw.openFiles).toBe(0);
  });

  it('refuses sPAPR TCE, which answers 1 for both PAMU type numbers (mainline POWER)', () => {
    const env = pamuOnSim();
    // A mainline POWER host: sPAPR TCE answers CHECK_EXTENSION 1 for types 2 and 7 and for EEH.
    env.setHook((call, argument) => (call.name === 'VFIO_CHECK_EXTENSION' ? ([2, 5, 7].includes(Number(argument)) ? 1 : 0) : undefined));
    const error = caught(() => PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, false), [0]));
    expect(error.code).toBe('abi-mismatch');
    expect(error.message).toMatch(/sPAPR TCE/);
    expect(env.names()).not.toContain('VFIO_SET_IOMMU');
    expect(env.raw.openFiles).toBe(0);
  });

  it('refuses a container whose backend does not answer GET_MSI_BANK_COUNT after SET_IOMMU', () => {
    const env = pamuOnSim();
    env.setHook((call) => (call.name === 'VFIO_IOMMU_PAMU_GET_MSI_BANK_COUNT' ? -ERRNO.EFAULT : undefined));
    const error = caught(() => PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, false), [0]));
    expect(error.code).toBe('abi-mismatch');
    expect(error.message).toMatch(/not PAMU/);
    expect(env.raw.openFiles).toBe(0);
  });

  it('uses the profile encoding: asm-generic numbers are not VFIO ioctls on PowerPC', () => {
    const env = pamuOnSim({ profile: definePamuProfile({ name: 'generic-encoding', arch: 'generic' }) });
    const error = caught(() => PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, false), [0]));
    // GET_API_VERSION's number without the direction bit is no request the container knows, and
    // with no IOMMU driver set it answers EINVAL itself (vfio_fops_unl_ioctl(): `ret = -EINVAL`).
    expect(error.errnoName).toBe('EINVAL');
    expect(env.raw.openFiles).toBe(0);
  });

  it('encodes structs in the byte order it is given (big-endian on PAMU boards)', () => {
    const env = configured();
    const set = env.log.filter((call) => call.name === 'VFIO_IOMMU_PAMU_SET_ATTR' && call.attribute === PAMU_ATTRIBUTE.WINDOWS).at(-1)!;
    expect([...set.bytes!.subarray(0, 4)]).toEqual([0, 0, 0, 32]);
    expect([...set.bytes!.subarray(16, 20)]).toEqual([0, 0, 0, 8]);
    // Little-endian structs on the big-endian board: the kernel reads nonsense and the open fails.
    const wrong = pamuOnSim();
    expect(() => PamuContainer.open(new PamuIoctls(wrong.syscalls, wrong.profile, true), [0])).toThrow(IoasError);
    expect(wrong.raw.openFiles).toBe(0);
  });

  it('validates profiles of your own', () => {
    expect(definePamuProfile({ base: 'sdk-3.8', name: 'mine', iommuType: 9 })).toMatchObject({ iommuType: 9, arch: 'powerpc' });
    expect(() => definePamuProfile({ name: 'bad', ioctls: { VFIO_IOMMU_GET_INFO: 1 } as never })).toThrow(/not an ioctl this backend sends/);
    expect(() => definePamuProfile({ name: 'bad', maxWindows: 3 })).toThrow(/power of two/);
  });
});

describe('geometry and windows (kernel-rules.md#pamu-aperture-geometry)', () => {
  it('sets them in the driver order, each read back: geometry, windows, then the stash', () => {
    const env = open({ stash: { cpu: 1, cache: 2 } });
    const from = env.log.length;
    env.container.configure(APERTURE, 8);
    env.container.setStash({ cpu: 1, cache: 2 });
    expect(env.names(from)).toEqual([
      'VFIO_IOMMU_PAMU_SET_ATTR(GEOMETRY)',
      'VFIO_IOMMU_PAMU_GET_ATTR(GEOMETRY)',
      'VFIO_IOMMU_PAMU_GET_ATTR(WINDOWS)',
      'VFIO_IOMMU_PAMU_SET_ATTR(WINDOWS)',
      'VFIO_IOMMU_PAMU_GET_ATTR(WINDOWS)',
      'VFIO_IOMMU_PAMU_SET_ATTR(PAMU_STASH)',
      'VFIO_IOMMU_PAMU_GET_ATTR(PAMU_STASH)',
    ]);
    expect(env.container.windows()).toEqual({ aperture: APERTURE, count: 8, size: WINDOW, maxCount: 256 });
    expect(env.container.stash()).toEqual({ cpu: 1, cache: 2 });
  });

  it('never sends a window count of 0 (the kernel divides by it) or one the domain would drop', () => {
    const env = open();
    for (const count of [0, 3, 512, 1.5]) refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.configure(APERTURE, count));
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.configure({ start: 0n, last: 0x2fff_ffffn }, 8));
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.configure({ start: 0n, last: 0x7ffn }, 1));
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.configure({ start: 0x1000_0000n, last: 0x2fff_ffffn }, 8));
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.configure({ start: 0n, last: 0xffffn }, 32));
  });

  it('reports no window size until a geometry is set through VFIO, and maps nothing before (no divide by zero)', () => {
    const env = open();
    expect(env.container.windows()).toEqual({ aperture: { start: 0n, last: (1n << 36n) - 1n }, count: undefined, size: 0n, maxCount: 256 });
    const memory = hugepages(env, WINDOW);
    refusedBeforeTheKernel(env, 'not-ready', () => env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...memory }));
    refusedBeforeTheKernel(env, 'not-ready', () => env.container.mapMsiBank(0, 0n));
  });

  it('detects a silently refused geometry by reading it back', () => {
    const env = open();
    env.setHook(swallowSetAttr(PAMU_ATTRIBUTE.GEOMETRY));
    const error = caught(() => env.container.configure(APERTURE, 8));
    expect(error.code).toBe('kernel');
    expect(error.message).toMatch(/SET_ATTR\(GEOMETRY\) returned 0 but GET_ATTR reads back 0x0-0xfffffffff/);
    expect(env.container.windows().size).toBe(0n);
  });

  it('does not take an unchanged GET_ATTR buffer for an answer', () => {
    const env = open();
    // GET_ATTR of an attribute the domain cannot answer returns 0 and copies the struct back as sent.
    env.setHook((call) => (call.name === 'VFIO_IOMMU_PAMU_GET_ATTR' && call.attribute === PAMU_ATTRIBUTE.WINDOWS ? 0 : swallowSetAttr(PAMU_ATTRIBUTE.WINDOWS)(call)));
    const error = caught(() => env.container.configure(APERTURE, 8));
    expect(error.message).toMatch(/SET_ATTR\(WINDOWS\)/);
    expect(env.container.windows().count).toBeUndefined();
  });

  it('proves a window count equal to the hardware maximum, which GET_ATTR answers before any SET', () => {
    const env = open();
    env.setHook(swallowSetAttr(PAMU_ATTRIBUTE.WINDOWS));
    // 256 windows: a refused SET would read back 256 anyway; another count is set first to prove it.
    const error = caught(() => env.container.configure({ start: 0n, last: (1n << 36n) - 1n }, 256));
    expect(error.message).toMatch(/silently refused 1 windows/);
    env.setHook(undefined);
    env.container.configure({ start: 0n, last: (1n << 36n) - 1n }, 256);
    expect(env.container.windows()).toMatchObject({ count: 256, size: 256n * MiB });
  });

  it('puts the last good configuration back after a refusal, since the driver kept the refused one', () => {
    const env = configured();
    // The domain refuses a geometry that the SDK backend has already saved (kernel-rules.md#pamu-geometry-saved-before-the-domain-answers): here an aperture the
    // domain will not take reaches the kernel, as a hardware limit the SDK cannot know would.
    env.setHook((call, argument) => {
      if (call.name !== 'VFIO_IOMMU_PAMU_SET_ATTR' || call.attribute !== PAMU_ATTRIBUTE.GEOMETRY) return undefined;
      const view = new DataView((argument as Uint8Array).buffer);
      if (view.getBigUint64(16, false) !== 0x1000_0000n) return undefined;
      view.setBigUint64(24, 0x3fff_ffffn, false); // 0x30000000 bytes: not a power of two
      return undefined;
    });
    expect(caught(() => env.container.configure({ start: 0x1000_0000n, last: 0x1fff_ffffn }, 4)).code).toBe('kernel');
    env.setHook(undefined);
    expect(env.container.windows()).toEqual({ aperture: APERTURE, count: 8, size: WINDOW, maxCount: 256 });
    // Without the resync the driver's copy would start at 0x10000000 and this map would miss its window.
    const memory = hugepages(env, WINDOW);
    env.container.mapDma({ iova: WINDOW, size: WINDOW, read: true, write: true, ...memory });
    env.simulator.memory.write(memory.vaddr + 0x10n, new Uint8Array([1, 2, 3]));
    expect([...env.edu.dmaRead(WINDOW + 0x10n, 3)!]).toEqual([1, 2, 3]);
  });

  it('refuses to change the geometry once anything is mapped (hidden EBUSY; WINDOWS discards every window)', () => {
    const env = configured();
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) });
    refusedBeforeTheKernel(env, 'in-use', () => env.container.configure(APERTURE, 4));
  });

  it('validates the stash and reads it back', () => {
    const env = open();
    refusedBeforeTheKernel(env, 'not-ready', () => env.container.setStash({ cpu: 0, cache: 1 }));
    env.container.configure(APERTURE, 8);
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.setStash({ cpu: 0, cache: 5 }));
    env.container.setStash({ cpu: 2, cache: 1 });
    // cpu 9 does not exist on a P4080: the domain refuses, SET_ATTR returns 0, GET_ATTR tells.
    expect(caught(() => env.container.setStash({ cpu: 9, cache: 1 })).message).toMatch(/PAMU_STASH.*cpu 2, cache 1/);
    expect(env.container.stash()).toEqual({ cpu: 2, cache: 1 });
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) });
    refusedBeforeTheKernel(env, 'in-use', () => env.container.setStash({ cpu: 1, cache: 1 }));
  });
});

describe('MSI banks (kernel-rules.md#pamu-msi-bank-map)', () => {
  it('counts the banks from the ioctl return value and knows their MSIIR pages', () => {
    const env = open();
    expect(env.container.msiBankCount).toBe(3);
    expect(env.container.msiDoorbell(0)).toEqual({ page: 0xf_fe04_4000n, msiir: 0xf_fe04_4140n });
    expect(env.container.msiDoorbell(3)).toBeUndefined();
  });

  it('checks every reason MAP_MSI_BANK would silently do nothing', () => {
    const env = configured();
    refusedBeforeTheKernel(env, 'not-found', () => env.container.mapMsiBank(3, 4n * WINDOW));
    // The driver truncates the IOVA to its window; UNMAP would then need this exact value back.
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.mapMsiBank(0, 4n * WINDOW + 0x140n));
    refusedBeforeTheKernel(env, 'out-of-range', () => env.container.mapMsiBank(0, 8n * WINDOW));
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) });
    refusedBeforeTheKernel(env, 'overlap', () => env.container.mapMsiBank(0, 0n));
    const bank = env.container.mapMsiBank(0, 4n * WINDOW);
    expect(bank).toEqual({ bank: 0, iova: 4n * WINDOW, window: 4, deviceAddress: 4n * WINDOW + 0x140n });
    refusedBeforeTheKernel(env, 'in-use', () => env.container.mapMsiBank(0, 5n * WINDOW));
    refusedBeforeTheKernel(env, 'overlap', () => env.container.mapMsiBank(1, 4n * WINDOW));
  });

  it('unmaps a bank with exactly the IOVA it was mapped at, freeing its window', () => {
    const env = configured();
    env.container.mapMsiBank(1, 5n * WINDOW);
    refusedBeforeTheKernel(env, 'overlap', () => env.container.mapDma({ iova: 5n * WINDOW, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) }));
    env.container.unmapMsiBank(1);
    const unmap = env.log.filter((call) => call.name === 'VFIO_IOMMU_PAMU_UNMAP_MSI_BANK').at(-1)!;
    expect(new DataView(unmap.bytes!.buffer).getBigUint64(8, false)).toBe(5n * WINDOW);
    env.container.mapDma({ iova: 5n * WINDOW, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) });
    refusedBeforeTheKernel(env, 'not-found', () => env.container.unmapMsiBank(1));
  });

  it('says when translation, and with it MSI, is off: after the last DMA range is unmapped', () => {
    const env = configured();
    env.container.mapMsiBank(0, 4n * WINDOW);
    let delivered = 0;
    const memory = hugepages(env, WINDOW);
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...memory });
    env.edu.enableMsi([() => delivered++]);
    expect(env.container.translating).toBe(true);
    expect(env.edu.raiseMsi(0)).toBe(true);
    env.container.unmapDma(0n, WINDOW);
    expect(env.container.translating).toBe(false);
    expect(env.edu.raiseMsi(0)).toBe(false);
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...memory });
    expect(env.edu.raiseMsi(0)).toBe(true);
    expect(delivered).toBe(2);
  });
});

describe('DMA (kernel-rules.md#pamu-maps-whole-windows-only)', () => {
  it('never sends a size the driver would silently shorten: below a window, or with a remainder', () => {
    const env = configured();
    const memory = hugepages(env, 2n * WINDOW);
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.mapDma({ iova: 0n, size: 0x1000n, read: true, write: true, ...memory }));
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.mapDma({ iova: 0n, size: WINDOW + WINDOW / 2n, read: true, write: true, ...memory }));
    expect(env.simulator.liveMappings()).toBe(0);
  });

  it('never sends an IOVA off a window boundary, outside the aperture, or over an MSI window', () => {
    const env = configured();
    const memory = hugepages(env, WINDOW);
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.mapDma({ iova: 0x1000n, size: WINDOW, read: true, write: true, ...memory }));
    refusedBeforeTheKernel(env, 'out-of-range', () => env.container.mapDma({ iova: 8n * WINDOW, size: WINDOW, read: true, write: true, ...memory }));
    refusedBeforeTheKernel(env, 'out-of-range', () => env.container.mapDma({ iova: 7n * WINDOW, size: 2n * WINDOW, read: true, write: true, ...hugepages(env, 2n * WINDOW) }));
    env.container.mapMsiBank(2, 6n * WINDOW);
    refusedBeforeTheKernel(env, 'overlap', () => env.container.mapDma({ iova: 6n * WINDOW, size: WINDOW, read: true, write: true, ...memory }));
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.mapDma({ iova: 0n, size: WINDOW, read: false, write: false, ...memory }));
  });

  it('refuses memory it cannot prove contiguous and naturally aligned, before the kernel sees it', () => {
    const env = configured();
    const small = env.simulator.memory.allocate(WINDOW, 0x20_0000n);
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, vaddr: small.address, contiguousPageSize: undefined }));
    refusedBeforeTheKernel(env, 'invalid-argument', () => env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, vaddr: small.address, contiguousPageSize: 0x20_0000n }));
    // Inside one 256 MiB hugepage at an offset of 32 MiB: contiguous, so the driver maps it, but the
    // window's physical base is not aligned to 64 MiB, which PAMU needs and the driver never checks.
    const big = env.simulator.memory.allocate(256n * MiB, 256n * MiB);
    const error = refusedBeforeTheKernel(env, 'misaligned', () =>
      env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, vaddr: big.address + 32n * MiB, contiguousPageSize: 256n * MiB }),
    );
    expect(error.message).toMatch(/naturally aligned/);
  });

  it('refuses unmaps that do not cover whole windows, counts the bytes itself, and skips empty ones', () => {
    const env = configured();
    const memory = hugepages(env, 2n * WINDOW);
    env.container.mapDma({ iova: 0n, size: 2n * WINDOW, read: true, write: true, ...memory });
    refusedBeforeTheKernel(env, 'misaligned', () => env.container.unmapDma(0n, 0x1000n));
    const before = env.log.length;
    expect(env.container.unmapDma(4n * WINDOW, WINDOW)).toBe(0n);
    expect(env.names(before)).toEqual([]);
    // The driver does not write the size back; the record says one window went.
    expect(env.container.unmapDma(WINDOW, WINDOW)).toBe(WINDOW);
    expect(env.container.dmaRanges()).toEqual([{ iova: 0n, size: WINDOW, vaddr: memory.vaddr, read: true, write: true }]);
    env.simulator.memory.write(memory.vaddr, new Uint8Array([7]));
    expect(env.edu.dmaRead(0n, 1)).toEqual(new Uint8Array([7]));
    expect(env.edu.dmaRead(WINDOW, 1)).toBeUndefined();
  });

  it('passes the kernel errors it cannot predict through, typed, and records nothing', () => {
    const env = configured({ memlockLimit: WINDOW });
    const error = caught(() => env.container.mapDma({ iova: 0n, size: 2n * WINDOW, read: true, write: true, ...hugepages(env, 2n * WINDOW) }));
    expect([error.code, error.errnoName, error.ioctl]).toEqual(['kernel', 'ENOMEM', 'VFIO_IOMMU_MAP_DMA']);
    expect(env.container.dmaRanges()).toEqual([]);
    expect(env.container.translating).toBe(false);
  });
});

describe('lifecycle (kernel-rules.md#pamu-container-close)', () => {
  it('tears down in the driver order and leaves nothing open', () => {
    const env = configured();
    env.container.mapMsiBank(0, 4n * WINDOW);
    env.container.mapDma({ iova: 0n, size: WINDOW, read: true, write: true, ...hugepages(env, WINDOW) });
    const from = env.log.length;
    env.container.close();
    env.container.close();
    expect(env.names(from)).toEqual(['VFIO_IOMMU_UNMAP_DMA', 'VFIO_IOMMU_PAMU_UNMAP_MSI_BANK']);
    expect([env.simulator.liveMappings(), env.raw.openFiles]).toEqual([0, 0]);
    expect(caught(() => env.container.mapMsiBank(0, 0n)).code).toBe('closed');
  });

  it('adds each group once (the same group twice is EINVAL in GROUP_SET_CONTAINER)', () => {
    const env = pamuOnSim();
    const container = PamuContainer.open(new PamuIoctls(env.syscalls, env.profile, false), [0, 0]);
    expect(env.names().filter((name) => name === 'VFIO_GROUP_SET_CONTAINER')).toHaveLength(1);
    expect(container.groupIds()).toEqual([0]);
    container.close();
    expect(env.raw.openFiles).toBe(0);
  });

  it('opens by device through sysfs, and says why a device without a VFIO group cannot be opened', async () => {
    const env = pamuOnSim();
    const container = await Container.open({ backend: env.backend, devices: [env.edu.address] });
    expect(env.backend.containerOf(0).groupIds()).toEqual([0]);
    container.close();
    env.simulator.bind(env.edu.address, null);
    const error = (await Container.open({ backend: env.backend, devices: [env.edu.address] }).catch((caughtError: unknown) => caughtError)) as IoasError;
    expect([error.code, error.errnoName]).toEqual(['kernel', 'ENOENT']);
    expect(error.message).toMatch(/\/dev\/vfio\/0/);
    expect(env.raw.openFiles).toBe(0);
  });
});
