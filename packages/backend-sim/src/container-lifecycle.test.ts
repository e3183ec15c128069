// The VFIO container and group through their lifecycle, and type1 past plain map/unmap, in raw
// ioctls: each rule as the kernel's function answers it (docs/kernel-rules.md "VFIO container and
// group" and the type1 sections), as the container fidelity family holds them to the real kernels.
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import type { SimKernel } from './platforms.js';
import { type1ByHand, type1MapStruct } from './__fixtures__/type1-by-hand.js';
import { simSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';

const NR = { API: 100, CHECK: 101, SET_IOMMU: 102, STATUS: 103, SET_CONTAINER: 104, UNSET: 105, DEVICE_FD: 106, INFO: 112, MAP: 113, UNMAP: 114, DIRTY: 117 } as const;
const REQ = (nr: number) => 0x3b00 + nr;
const PAGE = 0x1000n;

function setup(options: { platform?: 'x86-vtd' | 'arm-smmuv3'; kernel?: SimKernel; type?: number | null } = {}) {
  const opened = type1ByHand({ platform: options.platform ?? 'x86-vtd', kernel: options.kernel, type: options.type === undefined ? 3 : options.type });
  const ram = opened.simulator.memory.allocate(16n * PAGE, PAGE, true).address;
  return { ...opened, ram };
}

function fdArg(fd: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setInt32(0, fd, true);
  return bytes;
}

const map = type1MapStruct;

function unmap(flags: number, iova: bigint, size: bigint): { bytes: Uint8Array; size: () => bigint } {
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 24, true);
  view.setUint32(4, flags, true);
  view.setBigUint64(8, iova, true);
  view.setBigUint64(16, size, true);
  return { bytes, size: () => view.getBigUint64(16, true) };
}

function status(sys: ReturnType<typeof simSyscalls>, group: number): number {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setUint32(0, 8, true);
  expect(sys.ioctl(group, REQ(NR.STATUS), bytes)).toBe(0);
  return new DataView(bytes.buffer).getUint32(4, true);
}

const name = (text: string) => new TextEncoder().encode(`${text}\0`);

describe('VFIO_CHECK_EXTENSION after SET_IOMMU (vfio_iommu_type1.c vfio_iommu_type1_check_extension())', () => {
  it.each(['x86-vtd', 'arm-smmuv3'] as const)('%s: DMA_CC_IOMMU is 0 (no domain enforces cache coherency), UPDATE_VADDR 1', (platform) => {
    const { sys, container } = setup({ platform });
    // vfio_domains_have_enforce_cache_coherency(): QEMU's VT-d has no ECAP.SC, SMMUv3 no such op.
    expect(sys.ioctl(container, REQ(NR.CHECK), 4)).toBe(0);
    expect(sys.ioctl(container, REQ(NR.CHECK), 10)).toBe(1);
  });
});

describe('VFIO_SET_IOMMU types (container.c vfio_ioctl_set_iommu(), vfio_iommu_type1_open())', () => {
  it('VFIO_UNMAP_ALL (9) is EINVAL: type1 answers the extension but opens no such type', () => {
    const { sys, container } = setup({ type: null });
    expect(sys.ioctl(container, REQ(NR.SET_IOMMU), 9)).toBe(-ERRNO.EINVAL);
    for (const type of [0, 2, 4, 5, 7, 8, 10, 42]) expect(sys.ioctl(container, REQ(NR.SET_IOMMU), type)).toBe(-ERRNO.ENODEV);
    expect(sys.ioctl(container, REQ(NR.SET_IOMMU), 3)).toBe(0);
  });

  it('TYPE1_NESTING (6) on VT-d is EINVAL (iommu_enable_nesting(): no enable_nesting op), and changes nothing', () => {
    const { sys, container } = setup({ type: null });
    expect(sys.ioctl(container, REQ(NR.SET_IOMMU), 6)).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, REQ(NR.SET_IOMMU), 1)).toBe(0);
  });

  it('TYPE1_NESTING on SMMUv3 with 6.1 is a v2 container (arm_smmu_enable_nesting() on an unfinalised domain); 6.12 EPERM', () => {
    const { sys, container, ram } = setup({ platform: 'arm-smmuv3', kernel: '6.1', type: 6 });
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, 2n * PAGE))).toBe(0);
    // v2: no bisecting unmap, and dirty tracking allowed.
    expect(sys.ioctl(container, REQ(NR.UNMAP), unmap(0, 0x10_0000n, PAGE).bytes)).toBe(-ERRNO.EINVAL);
    const dirty = new Uint8Array(8);
    new DataView(dirty.buffer).setUint32(0, 8, true);
    new DataView(dirty.buffer).setUint32(4, 1, true);
    expect(sys.ioctl(container, REQ(NR.DIRTY), dirty)).toBe(0);
    const later = setup({ platform: 'arm-smmuv3', kernel: '6.12', type: null });
    expect(later.sys.ioctl(later.container, REQ(NR.SET_IOMMU), 6)).toBe(-ERRNO.EPERM);
  });
});

describe('type1 v1 unmaps (vfio_iommu_type1.c vfio_dma_do_unmap(): `!iommu->v2 && iova > dma->iova` stops the walk)', () => {
  it('a range whose first mapping starts before it unmaps nothing, even mappings wholly inside it', () => {
    const { sys, container, ram } = setup({ type: 1 });
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, 2n * PAGE))).toBe(0);
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_4000n, PAGE))).toBe(0);
    const inside = unmap(0, 0x10_1000n, 8n * PAGE);
    expect(sys.ioctl(container, REQ(NR.UNMAP), inside.bytes)).toBe(0);
    expect(inside.size()).toBe(0n);
    // Both are still there: a map over either is EEXIST.
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_4000n, PAGE))).toBe(-ERRNO.EEXIST);
    const whole = unmap(0, 0x10_0000n, PAGE);
    expect(sys.ioctl(container, REQ(NR.UNMAP), whole.bytes)).toBe(0);
    expect(whole.size()).toBe(2n * PAGE); // covering the first byte takes the whole mapping
  });
});

describe('updating a vaddr (vfio_dma_do_map() and vfio_dma_do_unmap() with the VADDR flags)', () => {
  it('MAP_DMA with VADDR alone: ENOENT where nothing is mapped, EINVAL on a valid vaddr or another size', () => {
    const { sys, container, ram } = setup();
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_0000n, PAGE))).toBe(-ERRNO.ENOENT);
    expect(sys.ioctl(container, REQ(NR.MAP), map(4 | 1, ram, 0x10_0000n, PAGE))).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_0800n, PAGE))).toBe(-ERRNO.EINVAL); // unaligned before the lookup
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, 2n * PAGE))).toBe(0);
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_0000n, 2n * PAGE))).toBe(-ERRNO.EINVAL); // vaddr valid
  });

  it('UNMAP_DMA with VADDR invalidates and keeps the mappings; again is EINVAL and undoes its marks; MAP VADDR revalidates', () => {
    const { sys, container, ram } = setup();
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, 2n * PAGE))).toBe(0);
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_4000n, PAGE))).toBe(0);
    const first = unmap(4, 0x10_4000n, PAGE);
    expect(sys.ioctl(container, REQ(NR.UNMAP), first.bytes)).toBe(0);
    expect(first.size()).toBe(PAGE);
    // ALL|VADDR meets the invalid one after marking the first: EINVAL, size untouched, first mark undone.
    const all = unmap(2 | 4, 0n, 0n);
    expect(sys.ioctl(container, REQ(NR.UNMAP), all.bytes)).toBe(-ERRNO.EINVAL);
    expect(all.size()).toBe(0n);
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_0000n, 2n * PAGE))).toBe(-ERRNO.EINVAL); // still valid
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_4000n, 2n * PAGE))).toBe(-ERRNO.EINVAL); // another size
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_4000n, PAGE))).toBe(-ERRNO.EEXIST); // still mapped
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram + 4n * PAGE, 0x10_4000n, PAGE))).toBe(0);
    const again = unmap(2 | 4, 0n, 0n);
    expect(sys.ioctl(container, REQ(NR.UNMAP), again.bytes)).toBe(0);
    expect(again.size()).toBe(3n * PAGE);
    // A plain unmap of an invalidated mapping works.
    const plain = unmap(2, 0n, 0n);
    expect(sys.ioctl(container, REQ(NR.UNMAP), plain.bytes)).toBe(0);
    expect(plain.size()).toBe(3n * PAGE);
  });

  it('a group cannot join the live container while a vaddr is invalid (vfio_iommu_type1_attach_group(): EBUSY)', () => {
    const { simulator, sys, container, ram } = setup();
    const second = simulator.bind('0000:00:10.0', 'vfio-pci');
    const group = sys.open(`/dev/vfio/${second.group}`, SYSCALL_FLAGS.O_RDWR);
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, PAGE))).toBe(0);
    expect(sys.ioctl(container, REQ(NR.UNMAP), unmap(4, 0x10_0000n, PAGE).bytes)).toBe(0);
    expect(sys.ioctl(group, REQ(NR.SET_CONTAINER), fdArg(container))).toBe(-ERRNO.EBUSY);
    expect(status(sys, group)).toBe(1);
    expect(sys.ioctl(container, REQ(NR.MAP), map(4, ram, 0x10_0000n, PAGE))).toBe(0);
    expect(sys.ioctl(group, REQ(NR.SET_CONTAINER), fdArg(container))).toBe(0);
  });
});

describe('closing the container fd while a group is in it (container.c vfio_fops_release(): only a put)', () => {
  it('keeps the container, its IOMMU and mappings until the last group leaves', () => {
    const { simulator, sys, container, group, edu, ram } = setup();
    expect(sys.ioctl(container, REQ(NR.MAP), map(3, ram, 0x10_0000n, PAGE))).toBe(0);
    const objects = simulator.kernelObjects.size;
    expect(sys.close(container)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(objects);
    expect(status(sys, group)).toBe(3);
    simulator.memory.write(ram, new Uint8Array([0x5a]));
    expect(edu.dmaRead(0x10_0000n, 1)).toEqual(new Uint8Array([0x5a])); // still translated
    const device = sys.ioctl(group, REQ(NR.DEVICE_FD), name(edu.address));
    expect(device).toBeGreaterThan(0);
    expect(sys.ioctl(group, REQ(NR.UNSET), 0)).toBe(-ERRNO.EBUSY);
    expect(sys.close(device)).toBe(0);
    expect(sys.ioctl(group, REQ(NR.UNSET), 0)).toBe(0);
    expect(status(sys, group)).toBe(1);
    expect(simulator.kernelObjects.size).toBe(objects - 1);
  });

  it('without a group it goes at once', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator);
    const before = simulator.kernelObjects.size;
    const container = sys.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
    expect(simulator.kernelObjects.size).toBe(before + 1);
    expect(sys.close(container)).toBe(0);
    expect(simulator.kernelObjects.size).toBe(before);
  });
});

describe('GET_DEVICE_FD names (vfio_pci_core.c vfio_pci_core_match(), vfio_main.c vfio_device_get_from_name())', () => {
  it('trailing spaces match, extra words are EINVAL, another device or a longer word ENODEV', () => {
    const { sys, group, edu } = setup();
    const address = edu.address;
    const fd = sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address}   `));
    expect(fd).toBeGreaterThan(0);
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address} x`))).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address} \t`))).toBe(-ERRNO.EINVAL); // only ' ' is skipped
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address} vf_token=2ab74924-c335-45f4-9b16-8569e5b08258`))).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address}x`))).toBe(-ERRNO.ENODEV);
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(address.slice(0, -2)))).toBe(-ERRNO.ENODEV);
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(''))).toBe(-ERRNO.ENODEV);
    // strndup_user(arg, PAGE_SIZE): no NUL in the first 4096 bytes.
    expect(sys.ioctl(group, REQ(NR.DEVICE_FD), name(`${address}${' '.repeat(4100)}`))).toBe(-ERRNO.EINVAL);
  });
});

describe('VFIO_IOMMU_GET_INFO bytes (vfio_iommu_type1_get_info(), vfio_main.c vfio_info_cap_add())', () => {
  function info(kernel: SimKernel, argsz: number): DataView {
    const { sys, container } = setup({ kernel });
    const bytes = new Uint8Array(Math.max(argsz, 24)).fill(0xa5);
    new DataView(bytes.buffer).setUint32(0, argsz, true);
    expect(sys.ioctl(container, REQ(NR.INFO), bytes)).toBe(0);
    return new DataView(bytes.buffer);
  }

  it('6.1: packed chain (116 bytes with two ranges), and bytes 20-23 never written', () => {
    const small = info('6.1', 24);
    expect(small.getUint32(0, true)).toBe(116);
    expect(small.getUint32(16, true)).toBe(0);
    expect(small.getUint32(20, true)).toBe(0xa5a5_a5a5);
    const whole = info('6.1', 4096);
    expect(whole.getUint32(0, true)).toBe(4096);
    expect(whole.getUint32(16, true)).toBe(24);
    expect(whole.getUint32(20, true)).toBe(0xa5a5_a5a5);
    expect(whole.getUint32(56 + 4, true)).toBe(68); // DMA_AVAIL's next: IOVA_RANGE at 68
    expect(whole.getUint8(116)).toBe(0xa5);
  });

  it('6.12: each capability 8-aligned (DMA_AVAIL 16 bytes, 120 in all), the header min(argsz, 24) of a zeroed struct', () => {
    const small = info('6.12', 24);
    expect(small.getUint32(0, true)).toBe(120);
    expect(small.getUint32(16, true)).toBe(0);
    expect(small.getUint32(20, true)).toBe(0);
    const short = info('6.12', 18);
    expect(short.getUint16(16, true)).toBe(0);
    expect(short.getUint16(18, true)).toBe(0xa5a5);
    const whole = info('6.12', 4096);
    expect(whole.getUint32(16, true)).toBe(24);
    expect(whole.getUint32(20, true)).toBe(0);
    expect(whole.getUint32(56 + 4, true)).toBe(72);
    expect(whole.getUint32(68, true)).toBe(0); // DMA_AVAIL's padding
    expect(whole.getUint16(72, true)).toBe(1); // IOVA_RANGE
    expect(whole.getUint8(120)).toBe(0xa5);
  });
});

describe('requests the container does not know (container.c vfio_fops_unl_ioctl(), vfio_iommu_type1_ioctl())', () => {
  it('are EINVAL before SET_IOMMU, whatever their type or size bits, and ENOTTY after', () => {
    const { sys, container } = setup({ type: null });
    const sized = (0x8000_0000 | (4 << 16) | 0x3b00 | NR.API) >>> 0; // _IOR(';', 100, u32)
    const foreign = 0x7801; // _IO('x', 1)
    expect(sys.ioctl(container, sized, new Uint8Array(4))).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, foreign, 0)).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, REQ(150), 0)).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(container, REQ(NR.SET_IOMMU), 3)).toBe(0);
    expect(sys.ioctl(container, sized, new Uint8Array(4))).toBe(-ERRNO.ENOTTY);
    expect(sys.ioctl(container, foreign, 0)).toBe(-ERRNO.ENOTTY);
    expect(sys.ioctl(container, REQ(150), 0)).toBe(-ERRNO.ENOTTY);
  });
});
