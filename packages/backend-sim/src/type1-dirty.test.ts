// VFIO type1 dirty-page tracking through raw ioctls: VFIO_IOMMU_DIRTY_PAGES and UNMAP_DMA with
// VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP, checks in vfio_iommu_type1_dirty_pages()'s order, the
// bitmap words update_user_bitmap() writes, and the answers the 6.12 x86 lane gave
// (packages/kernel-rig/scripts/probe-dirty.mjs).
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { type1ByHand, type1MapStruct } from './__fixtures__/type1-by-hand.js';

const IO = (nr: number) => 0x3b00 + nr;
const DIRTY_PAGES = IO(117);
const UNMAP = IO(114);
const MAP = IO(113);
const START = 1;
const STOP = 2;
const GET = 4;

function setup(type = 3, platform: 'x86-vtd' | 'arm-smmuv3' = 'x86-vtd') {
  const { simulator, sys, edu, container, group } = type1ByHand({ platform, type });
  const memory = sys.mmap(0x100_0000n, 3, SYSCALL_FLAGS.MAP_PRIVATE | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
  const map = (iova: bigint, size: bigint, offset = 0n, flags = 3): number => sys.ioctl(container, MAP, type1MapStruct(flags, memory + offset, iova, size));
  /** DIRTY_PAGES with `flags`; GET_BITMAP of [iova, iova + size) at `pgsize` into `bitmap`. */
  const dirty = (flags: number, get?: { iova: bigint; size: bigint; pgsize?: bigint; bitmap?: Uint8Array; bitmapSize?: bigint; data?: bigint; argsz?: number }): number => {
    const bytes = new Uint8Array(48);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, get?.argsz ?? (get === undefined ? 8 : 48), true);
    view.setUint32(4, flags, true);
    if (get !== undefined) {
      view.setBigUint64(8, get.iova, true);
      view.setBigUint64(16, get.size, true);
      view.setBigUint64(24, get.pgsize ?? 0x1000n, true);
      view.setBigUint64(32, get.bitmapSize ?? BigInt(get.bitmap?.length ?? 8), true);
      view.setBigUint64(40, get.data ?? sys.addressOf(get.bitmap ?? new Uint8Array(8)), true);
    }
    return sys.ioctl(container, DIRTY_PAGES, bytes);
  };
  /** UNMAP_DMA with GET_DIRTY_BITMAP; returns [result, size written back]. */
  const unmapDirty = (iova: bigint, size: bigint, bitmap: Uint8Array, options: { pgsize?: bigint; flags?: number; argsz?: number } = {}): [number, bigint] => {
    const bytes = new Uint8Array(48);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, options.argsz ?? 48, true);
    view.setUint32(4, options.flags ?? 1, true);
    view.setBigUint64(8, iova, true);
    view.setBigUint64(16, size, true);
    view.setBigUint64(24, options.pgsize ?? 0x1000n, true);
    view.setBigUint64(32, BigInt(bitmap.length), true);
    view.setBigUint64(40, sys.addressOf(bitmap), true);
    return [sys.ioctl(container, UNMAP, bytes), view.getBigUint64(16, true)];
  };
  return { simulator, sys, edu, container, map, dirty, unmapDirty, memory };
}

const words = (bytes: Uint8Array): bigint[] => Array.from({ length: bytes.length / 8 }, (_, index) => new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(index * 8, true));
const IOVA = 0x10_0000n;

describe('type1 VFIO_IOMMU_DIRTY_PAGES (vfio_iommu_type1_dirty_pages)', () => {
  it("answers the 6.12 x86 lane's probe: pessimistic bits, START and STOP idempotent, unmap with bitmap", () => {
    const { simulator, map, dirty, unmapDirty, edu } = setup();
    expect(map(IOVA, 0x4000n)).toBe(0);
    expect(map(0x20_0000n, 0x1000n, 0x4000n, 1)).toBe(0);
    let bitmap = new Uint8Array(8);
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap })).toBe(-ERRNO.EINVAL); // before START
    expect(dirty(START)).toBe(0);
    expect(dirty(START)).toBe(0);
    bitmap = new Uint8Array(8);
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap })).toBe(0);
    expect([...bitmap]).toEqual([0x0f, 0, 0, 0, 0, 0, 0, 0]); // no DMA yet: every page dirty
    expect(simulator.device(edu.address).dmaWrite(IOVA + 0x1000n, new Uint8Array(2048).fill(7))).toBe(true);
    for (let round = 0; round < 2; round++) {
      bitmap = new Uint8Array(8);
      expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap })).toBe(0);
      expect(bitmap[0]).toBe(0x0f);
    }
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, pgsize: 0x2000n, bitmap: new Uint8Array(8) })).toBe(-ERRNO.EINVAL);
    expect(dirty(GET, { iova: IOVA + 0x1000n, size: 0x1000n, bitmap: new Uint8Array(8) })).toBe(-ERRNO.EINVAL); // bisects
    bitmap = new Uint8Array(8);
    expect(unmapDirty(IOVA, 0x4000n, bitmap)).toEqual([0, 0x4000n]);
    expect(bitmap[0]).toBe(0x0f);
    expect(dirty(STOP)).toBe(0);
    expect(dirty(STOP)).toBe(0);
    expect(dirty(START | STOP)).toBe(-ERRNO.EINVAL);
    expect(dirty(0)).toBe(-ERRNO.EINVAL);
  });

  it('refuses a v1 container with EACCES before reading the argument', () => {
    const { sys, container } = setup(1);
    expect(sys.ioctl(container, DIRTY_PAGES, new Uint8Array(2))).toBe(-ERRNO.EACCES);
  });

  it('checks the header, then GET_BITMAP in the kernel order, all EINVAL', () => {
    const { map, dirty } = setup();
    expect(map(IOVA, 0x4000n)).toBe(0);
    expect(dirty(START, { iova: 0n, size: 0n, argsz: 7 })).toBe(-ERRNO.EINVAL);
    expect(dirty(8)).toBe(-ERRNO.EINVAL); // unknown flag
    expect(dirty(START)).toBe(0);
    const bitmap = new Uint8Array(8);
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap, argsz: 47 })).toBe(-ERRNO.EINVAL);
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap, argsz: 48 })).toBe(0);
    expect(dirty(GET, { iova: 0xffff_ffff_ffff_f000n, size: 0x2000n, bitmap })).toBe(-ERRNO.EINVAL); // wraps
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, data: 0xffff_8000_0000_0000n })).toBe(-ERRNO.EINVAL); // not user space
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap, bitmapSize: 0n })).toBe(-ERRNO.EINVAL);
    expect(dirty(GET, { iova: IOVA, size: 0x41000n, bitmap })).toBe(-ERRNO.EINVAL); // 65 pages need 16 bytes
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, bitmap, bitmapSize: 0x1000_0008n })).toBe(-ERRNO.EINVAL); // above 256 MiB
    expect(dirty(GET, { iova: IOVA + 0x800n, size: 0x4000n, bitmap })).toBe(-ERRNO.EINVAL); // unaligned iova
    expect(dirty(GET, { iova: IOVA, size: 0x4800n, bitmap })).toBe(-ERRNO.EINVAL); // unaligned size
    expect(dirty(GET, { iova: IOVA, size: 0x4000n - 1n, bitmap })).toBe(-ERRNO.EINVAL);
    // A pointer in user space where nothing is mapped: access_ok() passes, the copy faults.
    expect(dirty(GET, { iova: IOVA, size: 0x4000n, data: 0x1000n })).toBe(-ERRNO.EFAULT);
    // Nothing mapped in the range: 0, nothing written.
    const untouched = new Uint8Array(8).fill(0xaa);
    expect(dirty(GET, { iova: 0x800_0000n, size: 0x4000n, bitmap: untouched })).toBe(0);
    expect(untouched.every((byte) => byte === 0xaa)).toBe(true);
  });

  it('writes whole words per mapping: gaps between words untouched, a shared word ORed', () => {
    const { map, dirty } = setup();
    // Pages 0-3 and 10-11 of the range share word 0; pages 200-201 sit in word 3.
    expect(map(IOVA, 0x4000n)).toBe(0);
    expect(map(IOVA + 0xa000n, 0x2000n, 0x4000n)).toBe(0);
    expect(map(IOVA + 200n * 0x1000n, 0x2000n, 0x6000n)).toBe(0);
    expect(dirty(START)).toBe(0);
    const bitmap = new Uint8Array(40);
    const view = new DataView(bitmap.buffer);
    // Word 0: the first mapping starts at its bit 0 (no shift), so the word is written whole and
    // the process's bit 63 goes; the second ORs the word it shares (bitmap_or of the whole word).
    view.setBigUint64(0, 0x8000_0000_0000_0000n, true);
    view.setBigUint64(8, 0x1234n, true); // words 1, 2 and 4 hold no mapping: left alone
    view.setBigUint64(16, 0x5678n, true);
    view.setBigUint64(32, 0x9abcn, true);
    view.setBigUint64(24, 0xffff_0000_0000_0000n, true); // word 3: the mapping at a shift ORs it
    expect(dirty(GET, { iova: IOVA, size: 256n * 0x1000n, bitmap: bitmap.subarray(0, 32) })).toBe(0);
    expect(words(bitmap)).toEqual([0xc0fn, 0x1234n, 0x5678n, 0xffff_0000_0000_0300n, 0x9abcn]);
  });

  it('carries bits past a mapping on repeated reads at a shift, as dma->bitmap keeps them', () => {
    const { map, dirty } = setup();
    expect(map(IOVA + 0xa000n, 0xa000n)).toBe(0); // pages 10-19 of a range from IOVA
    expect(dirty(START)).toBe(0);
    const read = (): bigint => {
      const bitmap = new Uint8Array(8);
      expect(dirty(GET, { iova: IOVA, size: 0x40000n, bitmap })).toBe(0);
      return words(bitmap)[0]!;
    };
    expect(read()).toBe(0xffc00n);
    expect(read()).toBe(0x3ffffc00n);
    expect(read()).toBe(0xfffffffc00n);
    // STOP frees the bitmaps; START again begins clean.
    expect(dirty(STOP)).toBe(0);
    expect(dirty(START)).toBe(0);
    expect(read()).toBe(0xffc00n);
  });

  it('gives mappings made while tracking a bitmap', () => {
    const { map, dirty } = setup();
    expect(dirty(START)).toBe(0);
    expect(map(IOVA, 0x2000n)).toBe(0);
    const bitmap = new Uint8Array(8);
    expect(dirty(GET, { iova: IOVA, size: 0x2000n, bitmap })).toBe(0);
    expect(bitmap[0]).toBe(0x3);
  });

  it('checks UNMAP_DMA with GET_DIRTY_BITMAP in the kernel order', () => {
    const { map, dirty, unmapDirty, simulator } = setup();
    expect(map(IOVA, 0x4000n)).toBe(0);
    const bitmap = new Uint8Array(8);
    expect(unmapDirty(IOVA, 0x4000n, bitmap)).toEqual([-ERRNO.EINVAL, 0x4000n]); // not tracking
    expect(dirty(START)).toBe(0);
    expect(unmapDirty(0n, 0n, bitmap, { flags: 1 | 2 })[0]).toBe(-ERRNO.EINVAL); // with ALL
    expect(unmapDirty(IOVA, 0x4000n, bitmap, { argsz: 47 })[0]).toBe(-ERRNO.EINVAL);
    expect(unmapDirty(IOVA, 0x4000n, bitmap, { pgsize: 0x2000n })[0]).toBe(-ERRNO.EINVAL);
    expect(unmapDirty(IOVA, 0x2000n, bitmap)[0]).toBe(-ERRNO.EINVAL); // bisects
    expect(unmapDirty(IOVA, 0x41000n, bitmap)[0]).toBe(-ERRNO.EINVAL); // 65 pages, 8 bytes
    expect(simulator.liveMappings()).toBe(1);
    expect(unmapDirty(IOVA, 0x4000n, bitmap)).toEqual([0, 0x4000n]);
    expect(bitmap[0]).toBe(0x0f);
    expect(simulator.liveMappings()).toBe(0);
  });

  it('reports MIGRATION in GET_INFO as the kernel builds it', () => {
    const { sys, container } = setup(3, 'arm-smmuv3');
    const info = new Uint8Array(256);
    const view = new DataView(info.buffer);
    view.setUint32(0, 256, true);
    expect(sys.ioctl(container, IO(112), info)).toBe(0);
    const at = view.getUint32(16, true);
    expect([view.getUint16(at, true), view.getUint16(at + 2, true), view.getUint32(at + 8, true)]).toEqual([2, 1, 0]);
    expect([view.getBigUint64(at + 16, true), view.getBigUint64(at + 24, true)]).toEqual([0x1000n, 0x1000_0000n]);
  });
});
