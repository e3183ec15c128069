// The dirty-tracking ioctls byte for byte: what each puts in its struct (sizes and offsets from the
// golden-tested tables), what it reads back, and how it fails. A recording Syscalls stands in for
// the kernel: these tests need no simulator.
import { ERRNO, IoasError, type Syscalls } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { IommufdContext } from './iommufd-context.js';
import { VfioIoctls } from './ioctl.js';
import { parseType1Info } from './type1-info.js';
import {
  IOMMU_HW_CAP_DIRTY_TRACKING,
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
  IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR,
  IOMMUFD_NR,
  iommu_hw_info,
  iommu_hwpt_alloc,
  iommu_hwpt_get_dirty_bitmap,
  iommu_hwpt_set_dirty_tracking,
} from './uapi/iommufd.js';
import { ioctlNumber } from './uapi/ioctl-number.js';
import {
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_INFO_CAPS,
  VFIO_IOMMU_INFO_PGSIZES,
  VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
  VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
  VFIO_NR,
  vfio_bitmap,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_unmap,
} from './uapi/vfio.js';
import { VfioContainer } from './vfio-container.js';

const BITMAP_ADDRESS = 0x7f12_3456_7000n;

/** A Syscalls that records each ioctl's request and bytes (a copy) and answers with `reply`. */
function recording(reply: (request: number, bytes: Uint8Array) => number = () => 0) {
  const calls: { fd: number; request: number; bytes: Uint8Array }[] = [];
  const syscalls = {
    ioctl(fd: number, request: number, argument: number | Uint8Array) {
      const bytes = typeof argument === 'number' ? new Uint8Array(0) : argument;
      calls.push({ fd, request, bytes: bytes.slice() });
      return reply(request, bytes);
    },
    addressOf: () => BITMAP_ADDRESS,
  } as unknown as Syscalls;
  return { calls, ioctls: new VfioIoctls({ syscalls, arch: 'generic', littleEndian: true, backend: 'smmu' }) };
}

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

describe('type1 dirty-page logging: VFIO_IOMMU_DIRTY_PAGES and the dirty unmap', () => {
  it('START and STOP send the 8-byte header with one flag (the kernel refuses two: __ffs != __fls)', () => {
    const { calls, ioctls } = recording();
    ioctls.iommuDirtyPages(5, VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    ioctls.iommuDirtyPages(5, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
    expect(calls.map((call) => call.request)).toEqual([0x3b75, 0x3b75]);
    expect(ioctlNumber(VFIO_NR.VFIO_IOMMU_DIRTY_PAGES)).toBe(0x3b75);
    for (const [index, flag] of [VFIO_IOMMU_DIRTY_PAGES_FLAG_START, VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP].entries()) {
      const bytes = calls[index]!.bytes;
      expect(bytes.length).toBe(vfio_iommu_type1_dirty_bitmap.sizeof);
      expect(view(bytes).getUint32(vfio_iommu_type1_dirty_bitmap.argsz, true)).toBe(8);
      expect(view(bytes).getUint32(vfio_iommu_type1_dirty_bitmap.flags, true)).toBe(flag);
    }
  });

  it('GET_BITMAP: argsz counts the _get struct and not the bitmap; vfio_bitmap carries pgsize, size and the pointer', () => {
    const { calls, ioctls } = recording();
    const bytes = new Uint8Array(64);
    ioctls.iommuDirtyPagesGetBitmap(5, 0x1_0000_0000n, 0x20_0000n, 0x1000n, { bytes, length: 64 });
    const call = calls[0]!;
    expect(call).toMatchObject({ fd: 5, request: 0x3b75 });
    const data = view(call.bytes);
    const get = vfio_iommu_type1_dirty_bitmap.data;
    expect(call.bytes.length).toBe(8 + 40);
    expect(data.getUint32(0, true)).toBe(vfio_iommu_type1_dirty_bitmap.sizeof + vfio_iommu_type1_dirty_bitmap_get.sizeof);
    expect(data.getUint32(4, true)).toBe(VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP);
    expect(data.getBigUint64(get + vfio_iommu_type1_dirty_bitmap_get.iova, true)).toBe(0x1_0000_0000n);
    expect(data.getBigUint64(get + vfio_iommu_type1_dirty_bitmap_get.size, true)).toBe(0x20_0000n);
    const bitmap = get + vfio_iommu_type1_dirty_bitmap_get.bitmap;
    expect(data.getBigUint64(bitmap + vfio_bitmap.pgsize, true)).toBe(0x1000n);
    expect(data.getBigUint64(bitmap + vfio_bitmap.size, true)).toBe(64n);
    expect(data.getBigUint64(bitmap + vfio_bitmap.data, true)).toBe(BITMAP_ADDRESS);
  });

  it('the dirty unmap puts a vfio_bitmap in data[] (argsz 48) and returns the size the kernel wrote back', () => {
    const { calls, ioctls } = recording((_, bytes) => {
      view(bytes).setBigUint64(vfio_iommu_type1_dma_unmap.size, 0x3000n, true);
      return 0;
    });
    const container = Object.assign(Object.create(VfioContainer.prototype) as VfioContainer, { ioctls, fd: 7 });
    expect(container.unmapDmaDirty(0x40_0000n, 0x3000n, 0x1000n, { bytes: new Uint8Array(16), offset: 8, length: 8 })).toBe(0x3000n);
    const data = view(calls[0]!.bytes);
    expect(calls[0]!.request).toBe(0x3b72);
    expect(calls[0]!.bytes.length).toBe(48);
    expect(data.getUint32(0, true)).toBe(48);
    expect(data.getUint32(4, true)).toBe(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP);
    expect(data.getBigUint64(vfio_iommu_type1_dma_unmap.iova, true)).toBe(0x40_0000n);
    expect(data.getBigUint64(vfio_iommu_type1_dma_unmap.data + vfio_bitmap.pgsize, true)).toBe(0x1000n);
    expect(data.getBigUint64(vfio_iommu_type1_dma_unmap.data + vfio_bitmap.size, true)).toBe(8n);
    // The offset moves the pointer: a range's bits can start at a u64 word of a larger bitmap.
    expect(data.getBigUint64(vfio_iommu_type1_dma_unmap.data + vfio_bitmap.data, true)).toBe(BITMAP_ADDRESS + 8n);
  });

  it('refuses a bitmap target that does not fit its buffer or starts off a u64 boundary, before the kernel sees it', () => {
    const { calls, ioctls } = recording();
    expect(() => ioctls.iommuDirtyPagesGetBitmap(5, 0n, 0x1000n, 0x1000n, { bytes: new Uint8Array(8), offset: 4, length: 8 })).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(() => ioctls.iommuDirtyPagesGetBitmap(5, 0n, 0x1000n, 0x1000n, { bytes: new Uint8Array(8), offset: 8, length: 8 })).toThrow(expect.objectContaining({ code: 'invalid-argument' }));
    expect(calls).toEqual([]);
  });

  it('types the kernel refusal: EINVAL from GET_BITMAP is a kernel error naming the ioctl', () => {
    const { ioctls } = recording(() => -ERRNO.EINVAL);
    let error: unknown;
    try {
      ioctls.iommuDirtyPagesGetBitmap(5, 0n, 0x1000n, 0x1000n, { bytes: new Uint8Array(8), length: 8 });
    } catch (caught) {
      error = caught;
    }
    expect(IoasError.isInstance(error) && error).toMatchObject({ code: 'kernel', errno: ERRNO.EINVAL, ioctl: 'VFIO_IOMMU_DIRTY_PAGES', backend: 'smmu' });
    expect((error as Error).message).toMatch(/reading the dirty bitmap of 0x1000 bytes at IOVA 0x0/);
  });
});

describe('VFIO_IOMMU_GET_INFO: the MIGRATION capability', () => {
  /** A GET_INFO reply with caps at the given offsets, unpadded as 6.1 writes them. */
  function reply(migrationAt: number, rangeAt: number, migration: { pageSizes: bigint; max: bigint }) {
    const bytes = new Uint8Array(rangeAt + 32);
    const data = new DataView(bytes.buffer);
    data.setUint32(0, bytes.length, true);
    data.setUint32(4, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS, true);
    data.setBigUint64(8, 0x40201000n, true);
    data.setUint32(16, migrationAt, true);
    data.setUint16(migrationAt, VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, true);
    data.setUint16(migrationAt + 2, 1, true);
    data.setUint32(migrationAt + 4, rangeAt, true);
    data.setBigUint64(migrationAt + 16, migration.pageSizes, true);
    data.setBigUint64(migrationAt + 24, migration.max, true);
    data.setUint16(rangeAt, VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, true);
    data.setUint16(rangeAt + 2, 1, true);
    data.setUint32(rangeAt + 8, 1, true);
    data.setBigUint64(rangeAt + 16, 0n, true);
    data.setBigUint64(rangeAt + 24, 0xffff_ffffn, true);
    return data;
  }

  it('returns pgsize_bitmap and max_dirty_bitmap_size, wherever the chain puts the cap (6.1 does not pad: a 4-byte aligned u64)', () => {
    for (const migrationAt of [24, 28]) {
      const info = parseType1Info(reply(migrationAt, migrationAt + 32, { pageSizes: 0x1000n, max: 0x1000_0000n }), true);
      expect(info.migration).toEqual({ flags: 0, pageSizes: 0x1000n, maxBitmapBytes: 0x1000_0000n });
      expect(info.ranges).toEqual([{ start: 0n, last: 0xffff_ffffn }]);
    }
  });

  it('is undefined without the cap, and a cap running past the buffer is an ABI mismatch', () => {
    const bare = new DataView(new Uint8Array(24).buffer);
    bare.setUint32(0, 24, true);
    bare.setUint32(4, VFIO_IOMMU_INFO_PGSIZES, true);
    expect(parseType1Info(bare, true).migration).toBeUndefined();
    const short = reply(24, 56, { pageSizes: 0x1000n, max: 1n });
    expect(() => parseType1Info(new DataView(short.buffer, 0, 40), true)).toThrow(expect.objectContaining({ code: 'abi-mismatch' }));
  });
});

describe('iommufd dirty tracking: GET_HW_INFO, HWPT_ALLOC, SET_DIRTY_TRACKING, GET_DIRTY_BITMAP', () => {
  const context = (ioctls: VfioIoctls) => Object.assign(Object.create(IommufdContext.prototype) as IommufdContext, { ioctls, fd: 3 });

  it('GET_HW_INFO asks for no driver data and reads out_capabilities at its 6.12 offset', () => {
    const { calls, ioctls } = recording((_, bytes) => {
      view(bytes).setUint32(iommu_hw_info.out_data_type, IOMMU_HW_INFO_TYPE_INTEL_VTD, true);
      view(bytes).setBigUint64(iommu_hw_info.out_capabilities, BigInt(IOMMU_HW_CAP_DIRTY_TRACKING), true);
      return 0;
    });
    expect(context(ioctls).hwInfo(9)).toEqual({ dataType: IOMMU_HW_INFO_TYPE_INTEL_VTD, capabilities: 1n, maxPasidLog2: 0 });
    const call = calls[0]!;
    expect(call.request).toBe(ioctlNumber(IOMMUFD_NR.IOMMU_GET_HW_INFO));
    expect(call.request).toBe(0x3b8a);
    expect(call.bytes.length).toBe(40);
    const data = view(call.bytes);
    expect(data.getUint32(iommu_hw_info.size, true)).toBe(40);
    expect(data.getUint32(iommu_hw_info.flags, true)).toBe(0);
    expect(data.getUint32(iommu_hw_info.dev_id, true)).toBe(9);
    expect(data.getUint32(iommu_hw_info.data_len, true)).toBe(0);
    expect(data.getBigUint64(iommu_hw_info.data_uptr, true)).toBe(0n);
  });

  it('HWPT_ALLOC sends the dirty-tracking flag, the device and the IOAS, data type NONE, and returns out_hwpt_id', () => {
    const { calls, ioctls } = recording((_, bytes) => {
      view(bytes).setUint32(iommu_hwpt_alloc.out_hwpt_id, 12, true);
      return 0;
    });
    expect(context(ioctls).allocateHwpt(4, 2, { dirtyTracking: true })).toBe(12);
    const data = view(calls[0]!.bytes);
    expect(calls[0]!.request).toBe(0x3b89);
    expect(calls[0]!.bytes.length).toBe(48);
    expect(data.getUint32(iommu_hwpt_alloc.size, true)).toBe(48);
    expect(data.getUint32(iommu_hwpt_alloc.flags, true)).toBe(IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
    expect(data.getUint32(iommu_hwpt_alloc.dev_id, true)).toBe(4);
    expect(data.getUint32(iommu_hwpt_alloc.pt_id, true)).toBe(2);
    expect(data.getUint32(iommu_hwpt_alloc.data_type, true)).toBe(0);
    expect(data.getUint32(iommu_hwpt_alloc.data_len, true)).toBe(0);
  });

  it('SET_DIRTY_TRACKING: ENABLE or 0, the HWPT id; GET_DIRTY_BITMAP: the range, page size, pointer, and NO_CLEAR when asked', () => {
    const { calls, ioctls } = recording();
    const iommufd = context(ioctls);
    iommufd.setDirtyTracking(12, true);
    iommufd.setDirtyTracking(12, false);
    const bitmap = { bytes: new Uint8Array(24), offset: 16, length: 8 };
    iommufd.dirtyBitmap(12, 0x8000_0000n, 0x40_0000n, 0x1000n, bitmap);
    iommufd.dirtyBitmap(12, 0x8000_0000n, 0x40_0000n, 0x20_0000n, bitmap, false);
    expect(calls.map((call) => call.request)).toEqual([0x3b8b, 0x3b8b, 0x3b8c, 0x3b8c]);
    expect(calls.map((call) => view(call.bytes).getUint32(iommu_hwpt_set_dirty_tracking.flags, true)).slice(0, 2)).toEqual([IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0]);
    expect(view(calls[0]!.bytes).getUint32(iommu_hwpt_set_dirty_tracking.hwpt_id, true)).toBe(12);
    expect(calls[0]!.bytes.length).toBe(16);
    const [clearing, keeping] = [view(calls[2]!.bytes), view(calls[3]!.bytes)];
    expect(calls[2]!.bytes.length).toBe(48);
    expect(clearing.getUint32(iommu_hwpt_get_dirty_bitmap.size, true)).toBe(48);
    expect(clearing.getUint32(iommu_hwpt_get_dirty_bitmap.hwpt_id, true)).toBe(12);
    expect(clearing.getUint32(iommu_hwpt_get_dirty_bitmap.flags, true)).toBe(0);
    expect(keeping.getUint32(iommu_hwpt_get_dirty_bitmap.flags, true)).toBe(IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR);
    expect(clearing.getBigUint64(iommu_hwpt_get_dirty_bitmap.iova, true)).toBe(0x8000_0000n);
    expect(clearing.getBigUint64(iommu_hwpt_get_dirty_bitmap.length, true)).toBe(0x40_0000n);
    expect(clearing.getBigUint64(iommu_hwpt_get_dirty_bitmap.page_size, true)).toBe(0x1000n);
    expect(keeping.getBigUint64(iommu_hwpt_get_dirty_bitmap.page_size, true)).toBe(0x20_0000n);
    expect(clearing.getBigUint64(iommu_hwpt_get_dirty_bitmap.data, true)).toBe(BITMAP_ADDRESS + 16n);
  });

  it('types failures: EOPNOTSUPP from HWPT_ALLOC names the ioctl and the device', () => {
    const { ioctls } = recording(() => -ERRNO.EOPNOTSUPP);
    let error: unknown;
    try {
      context(ioctls).allocateHwpt(4, 2, { dirtyTracking: true });
    } catch (caught) {
      error = caught;
    }
    expect(IoasError.isInstance(error) && error).toMatchObject({ code: 'kernel', errno: ERRNO.EOPNOTSUPP, ioctl: 'IOMMU_HWPT_ALLOC' });
    expect((error as Error).message).toMatch(/allocating a hardware page table on IOAS 2 for device 4/);
  });
});
