// iommufd (6.12) dirty tracking through raw ioctls: IOMMU_GET_HW_INFO, IOMMU_HWPT_ALLOC,
// attaching a device to a HWPT, IOMMU_HWPT_SET_DIRTY_TRACKING, IOMMU_HWPT_GET_DIRTY_BITMAP and
// IOMMU_DESTROY of a HWPT; the presets' answers are those of the 6.12 iommufd lane
// (packages/kernel-rig/scripts/probe-dirty.mjs: no dirty tracking on QEMU's VT-d).
import { ERRNO, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { simSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';

const IO = (nr: number) => 0x3b00 + nr;
const NR = { DESTROY: 0x80, IOAS_ALLOC: 0x81, IOAS_MAP: 0x85, IOAS_UNMAP: 0x86, HWPT_ALLOC: 0x89, GET_HW_INFO: 0x8a, SET_DIRTY: 0x8b, GET_DIRTY: 0x8c } as const;
const PAGE = 0x1000n;

function struct(size: number, fill?: (view: DataView) => void): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, size, true);
  fill?.(view);
  return { bytes, view };
}

function setup(platform: 'x86-vtd' | 'arm-smmuv3', hardwareDirty: boolean) {
  const simulator = createSimulator({ platform, hardwareDirty });
  const sys = simSyscalls(simulator);
  const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
  const alloc = struct(12);
  expect(sys.ioctl(iommufd, IO(NR.IOAS_ALLOC), alloc.bytes)).toBe(0);
  const ioas = alloc.view.getUint32(8, true);
  const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!;
  const device = sys.open('/dev/vfio/devices/vfio0', SYSCALL_FLAGS.O_RDWR);
  const bind = struct(16, (view) => view.setInt32(8, iommufd, true));
  expect(sys.ioctl(device, IO(118), bind.bytes)).toBe(0);
  const deviceId = bind.view.getUint32(12, true);
  const attach = (ptId: number): [number, number] => {
    const request = struct(12, (view) => view.setUint32(8, ptId, true));
    return [sys.ioctl(device, IO(119), request.bytes), request.view.getUint32(8, true)];
  };
  const memory = sys.mmap(0x40_0000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
  const map = (iova: bigint, length: bigint, offset = 0n): number =>
    sys.ioctl(
      iommufd,
      IO(NR.IOAS_MAP),
      struct(40, (view) => {
        view.setUint32(4, 0x1 | 0x2 | 0x4, true);
        view.setUint32(8, ioas, true);
        view.setBigUint64(16, memory + offset, true);
        view.setBigUint64(24, length, true);
        view.setBigUint64(32, iova, true);
      }).bytes,
    );
  const unmap = (iova: bigint, length: bigint): number =>
    sys.ioctl(
      iommufd,
      IO(NR.IOAS_UNMAP),
      struct(24, (view) => {
        view.setUint32(4, ioas, true);
        view.setBigUint64(8, iova, true);
        view.setBigUint64(16, length, true);
      }).bytes,
    );
  const hwptAlloc = (flags: number, fields: { dev?: number; pt?: number; size?: number; reserved?: number; dataType?: number; dataLength?: number } = {}): [number, number] => {
    const request = struct(48, (view) => {
      view.setUint32(0, fields.size ?? 48, true);
      view.setUint32(4, flags, true);
      view.setUint32(8, fields.dev ?? deviceId, true);
      view.setUint32(12, fields.pt ?? ioas, true);
      view.setUint32(20, fields.reserved ?? 0, true);
      if ((fields.size ?? 48) >= 32) {
        view.setUint32(24, fields.dataType ?? 0, true);
        view.setUint32(28, fields.dataLength ?? 0, true);
      }
    });
    return [sys.ioctl(iommufd, IO(NR.HWPT_ALLOC), request.bytes), request.view.getUint32(16, true)];
  };
  const setDirty = (hwpt: number, flags: number): number => sys.ioctl(iommufd, IO(NR.SET_DIRTY), struct(16, (view) => (view.setUint32(4, flags, true), view.setUint32(8, hwpt, true))).bytes);
  const getDirty = (hwpt: number, iova: bigint, length: bigint, options: { pageSize?: bigint; flags?: number; bitmap?: Uint8Array; data?: bigint; reserved?: number } = {}): number =>
    sys.ioctl(
      iommufd,
      IO(NR.GET_DIRTY),
      struct(48, (view) => {
        view.setUint32(4, hwpt, true);
        view.setUint32(8, options.flags ?? 0, true);
        view.setUint32(12, options.reserved ?? 0, true);
        view.setBigUint64(16, iova, true);
        view.setBigUint64(24, length, true);
        view.setBigUint64(32, options.pageSize ?? PAGE, true);
        view.setBigUint64(40, options.data ?? sys.addressOf(options.bitmap ?? new Uint8Array(8)), true);
      }).bytes,
    );
  const destroy = (id: number): number => sys.ioctl(iommufd, IO(NR.DESTROY), struct(8, (view) => view.setUint32(4, id, true)).bytes);
  const hwInfo = (options: { flags?: number; size?: number; dataLength?: number; reserved?: number } = {}) => {
    const data = new Uint8Array(64).fill(0xee);
    const request = struct(options.size ?? 40, (view) => {
      view.setUint32(4, options.flags ?? 0, true);
      view.setUint32(8, deviceId, true);
      view.setUint32(12, options.dataLength ?? 32, true);
      view.setBigUint64(16, sys.addressOf(data), true);
      if (options.reserved !== undefined) view.setUint8(29, options.reserved);
    });
    const result = sys.ioctl(iommufd, IO(NR.GET_HW_INFO), request.bytes);
    return { result, view: request.view, data };
  };
  return { simulator, sys, iommufd, ioas, deviceId, edu, attach, map, unmap, hwptAlloc, setDirty, getDirty, destroy, hwInfo };
}

const byte0 = (bitmap: Uint8Array): number => bitmap[0]!;

describe('iommufd dirty tracking on the presets (no hardware dirty bits)', () => {
  it("answers as the 6.12 iommufd lane did: HW_INFO without the capability, DIRTY_TRACKING EOPNOTSUPP, a plain HWPT attachable", () => {
    const { hwInfo, hwptAlloc, setDirty, attach, ioas } = setup('x86-vtd', false);
    expect(ioas).toBe(1);
    const info = hwInfo();
    expect(info.result).toBe(0);
    expect(info.view.getUint32(12, true)).toBe(24); // data_len
    expect(info.view.getUint32(24, true)).toBe(1); // IOMMU_HW_INFO_TYPE_INTEL_VTD
    expect(info.view.getUint8(28)).toBe(0);
    expect(info.view.getBigUint64(32, true)).toBe(0n);
    // The lane's bytes: flags 1, cap d2008c22260286, ecap f00f4a; the rest of data_len zeroed.
    expect(Buffer.from(info.data.subarray(0, 32)).toString('hex')).toBe('0100000000000000860226228c00d2004a0ff00000000000' + '0'.repeat(16));
    expect(info.data[32]).toBe(0xee);
    expect(hwptAlloc(2)).toEqual([-ERRNO.EOPNOTSUPP, 0]);
    const [result, plain] = hwptAlloc(0);
    expect([result, plain]).toEqual([0, 3]);
    expect(setDirty(plain, 1)).toBe(-ERRNO.EOPNOTSUPP);
    expect(attach(plain)).toEqual([0, 3]);
  });

  it('answers HW_INFO on SMMUv3 with no data (no hw_info in the 6.12 driver)', () => {
    const { hwInfo } = setup('arm-smmuv3', false);
    const info = hwInfo();
    expect(info.result).toBe(0);
    expect([info.view.getUint32(12, true), info.view.getUint32(24, true)]).toEqual([0, 0]);
    expect(info.data.subarray(0, 32).every((byte) => byte === 0)).toBe(true); // cleared to data_len
    expect(hwInfo({ flags: 1 }).result).toBe(-ERRNO.EOPNOTSUPP);
    expect(hwInfo({ reserved: 1 }).result).toBe(-ERRNO.EOPNOTSUPP);
    // A 32-byte struct: no out_capabilities written back.
    const short = hwInfo({ size: 32 });
    expect(short.result).toBe(0);
  });
});

describe('iommufd dirty tracking with hardware dirty bits', () => {
  for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
    it(`${platform}: reports the capability, allocates a dirty HWPT, moves the device onto it and tracks exactly what it wrote`, () => {
      const { simulator, hwInfo, hwptAlloc, setDirty, getDirty, attach, map, edu, ioas } = setup(platform, true);
      expect(hwInfo().view.getBigUint64(32, true)).toBe(1n);
      if (platform === 'x86-vtd') expect((new DataView(hwInfo().data.buffer).getBigUint64(16, true) >> 45n) & 1n).toBe(1n); // ECAP.SLADS
      expect(attach(ioas)).toEqual([0, 3]); // the automatic domain
      expect(map(0x10_0000n, 0x10_0000n)).toBe(0); // 256 pages
      const [result, hwpt] = hwptAlloc(2);
      expect([result, hwpt]).toEqual([0, 4]);
      // Replacing the automatic domain: the device's pt_id is the HWPT; the automatic one is gone.
      expect(attach(hwpt)).toEqual([0, hwpt]);
      expect(simulator.device(edu.address).domain).toBeDefined();
      expect(setDirty(hwpt, 1)).toBe(0);
      const device = simulator.device(edu.address);
      expect(device.dmaWrite(0x10_1000n, new Uint8Array(16))).toBe(true); // page 1
      expect(device.dmaWrite(0x10_3ff8n, new Uint8Array(16))).toBe(true); // pages 3 and 4
      device.dmaRead(0x10_8000n, 16); // reads dirty nothing
      const bitmap = new Uint8Array(32);
      expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { bitmap, flags: 1 })).toBe(0); // NO_CLEAR
      expect(byte0(bitmap)).toBe(0b11010);
      // ORed into the bitmap: bits the process set stay.
      bitmap.fill(0);
      bitmap[31] = 0x80;
      expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { bitmap })).toBe(0);
      expect([byte0(bitmap), bitmap[31]]).toEqual([0b11010, 0x80]);
      // Cleared by that read.
      bitmap.fill(0);
      expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { bitmap })).toBe(0);
      expect(bitmap.every((byte) => byte === 0)).toBe(true);
      // At 16 KiB pages a bit stands for four pages; a range may start inside an area.
      expect(device.dmaWrite(0x10_5000n, new Uint8Array(1))).toBe(true);
      bitmap.fill(0);
      expect(getDirty(hwpt, 0x10_4000n, 0x8000n, { bitmap, pageSize: 0x4000n })).toBe(0);
      expect(byte0(bitmap)).toBe(0b1);
    });
  }

  it('VT-d records only while tracking is enabled, and refuses a read while disabled; SMMUv3 records always', () => {
    for (const platform of ['x86-vtd', 'arm-smmuv3'] as const) {
      const { simulator, hwptAlloc, setDirty, getDirty, attach, map, edu } = setup(platform, true);
      expect(map(0x10_0000n, 0x4000n)).toBe(0);
      const [, hwpt] = hwptAlloc(2);
      expect(attach(hwpt)[0]).toBe(0);
      const device = simulator.device(edu.address);
      expect(device.dmaWrite(0x10_0000n, new Uint8Array(1))).toBe(true);
      const bitmap = new Uint8Array(8);
      if (platform === 'x86-vtd') {
        expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap })).toBe(-ERRNO.EINVAL);
      } else {
        expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, flags: 1 })).toBe(0);
        expect(byte0(bitmap)).toBe(1);
      }
      // Enabling clears whatever was recorded.
      expect(setDirty(hwpt, 1)).toBe(0);
      bitmap.fill(0);
      expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap })).toBe(0);
      expect(byte0(bitmap)).toBe(0);
      expect(device.dmaWrite(0x10_2000n, new Uint8Array(1))).toBe(true);
      expect(setDirty(hwpt, 0)).toBe(0);
      expect(device.dmaWrite(0x10_3000n, new Uint8Array(1))).toBe(true);
      if (platform === 'arm-smmuv3') {
        expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap })).toBe(0);
        expect(byte0(bitmap)).toBe(0b1100);
      }
    }
  });

  it('checks GET_DIRTY_BITMAP in the kernel order', () => {
    const { hwptAlloc, setDirty, getDirty, attach, map, ioas, deviceId } = setup('x86-vtd', true);
    expect(map(0x10_0000n, 0x4000n)).toBe(0);
    expect(map(0x20_0000n, 0x4000n, 0x4000n)).toBe(0);
    const [, plain] = hwptAlloc(0);
    const [, hwpt] = hwptAlloc(2);
    expect(attach(hwpt)[0]).toBe(0);
    expect(setDirty(hwpt, 1)).toBe(0);
    const bitmap = new Uint8Array(8);
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, flags: 2 })).toBe(-ERRNO.EOPNOTSUPP);
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, reserved: 1 })).toBe(-ERRNO.EOPNOTSUPP);
    expect(getDirty(ioas, 0x10_0000n, 0x4000n, { bitmap })).toBe(-ERRNO.ENOENT); // not a HWPT
    expect(getDirty(deviceId, 0x10_0000n, 0x4000n, { bitmap })).toBe(-ERRNO.ENOENT);
    expect(getDirty(hwpt, 0x10_0000n, 0n, { bitmap })).toBe(-ERRNO.EINVAL);
    expect(getDirty(hwpt, 0xffff_ffff_ffff_f000n, 0x2000n, { bitmap })).toBe(-ERRNO.EOVERFLOW);
    expect(getDirty(hwpt, 0x10_0800n, 0x1000n, { bitmap })).toBe(-ERRNO.EINVAL); // below the IOAS alignment
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, pageSize: 0n })).toBe(-ERRNO.EINVAL);
    expect(getDirty(hwpt, 0x10_1000n, 0x4000n, { bitmap, pageSize: 0x2000n })).toBe(-ERRNO.EINVAL);
    expect(getDirty(plain, 0x10_0000n, 0x4000n, { bitmap })).toBe(-ERRNO.EOPNOTSUPP); // no dirty_ops
    // No EFAULT for a bitmap the kernel cannot pin: 6.12 pins it only to set a bit (see below).
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { data: 0x1000n })).toBe(0);
    expect(getDirty(hwpt, 0x10_0000n, 0x11_0000n, { bitmap })).toBe(-ERRNO.EINVAL); // a gap, though 272 pages need 40 bytes
    expect(getDirty(hwpt, 0x10_0000n, 0x11_0000n, { bitmap: new Uint8Array(40) })).toBe(-ERRNO.EINVAL); // a gap
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap })).toBe(0);
    expect(getDirty(hwpt, 0x10_1000n, 0x2000n, { bitmap })).toBe(0); // inside one area: fine
    // A page size below 4 KiB is accepted: several bits per dirty page.
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, pageSize: 0x800n })).toBe(0);
  });

  it('answers 0 for a bitmap it cannot pin, dropping those bits and clearing them all the same (6.12 iova_bitmap_set())', () => {
    const { simulator, hwptAlloc, setDirty, getDirty, attach, map, edu } = setup('arm-smmuv3', true);
    expect(map(0x10_0000n, 0x10_0000n)).toBe(0); // 256 pages: 32 bytes of bitmap
    const [, hwpt] = hwptAlloc(2);
    expect(attach(hwpt)[0]).toBe(0);
    expect(setDirty(hwpt, 1)).toBe(0);
    const device = simulator.device(edu.address);
    const dirtyPages = () => {
      const bitmap = new Uint8Array(32);
      expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { bitmap, flags: 1 })).toBe(0);
      return [byte0(bitmap), bitmap[16]];
    };
    expect(device.dmaWrite(0x10_1000n, new Uint8Array(1))).toBe(true); // page 1: bitmap byte 0
    expect(device.dmaWrite(0x18_0000n, new Uint8Array(1))).toBe(true); // page 128: bitmap byte 16
    // Nothing mapped at the pointer, NO_CLEAR: 0, and the bits stay.
    expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { data: 0x1000n, flags: 1 })).toBe(0);
    expect(dirtyPages()).toEqual([0b10, 1]);
    // A bitmap of 16 bytes where 32 are needed: the first page's bit lands, page 128's is lost, and both are cleared.
    const short = new Uint8Array(16);
    expect(getDirty(hwpt, 0x10_0000n, 0x10_0000n, { bitmap: short })).toBe(0);
    expect(byte0(short)).toBe(0b10);
    expect(dirtyPages()).toEqual([0, 0]);
  });

  it('refuses a range over a hole only after reading (and, without NO_CLEAR, clearing) the areas before it', () => {
    const { simulator, hwptAlloc, setDirty, getDirty, attach, map, edu } = setup('x86-vtd', true);
    expect(map(0x10_0000n, 0x4000n)).toBe(0);
    expect(map(0x10_8000n, 0x4000n, 0x8000n)).toBe(0); // a 16 KiB hole at 0x10_4000
    const [, hwpt] = hwptAlloc(2);
    expect(attach(hwpt)[0]).toBe(0);
    expect(setDirty(hwpt, 1)).toBe(0);
    const device = simulator.device(edu.address);
    expect(device.dmaWrite(0x10_2000n, new Uint8Array(1))).toBe(true); // page 2, before the hole
    expect(device.dmaWrite(0x10_9000n, new Uint8Array(1))).toBe(true); // page 9, after it
    const bitmap = new Uint8Array(8);
    expect(getDirty(hwpt, 0x10_0000n, 0xc000n, { bitmap, flags: 1 })).toBe(-ERRNO.EINVAL);
    expect(byte0(bitmap)).toBe(0b100); // the first area's bit, none past the hole
    bitmap.fill(0);
    expect(getDirty(hwpt, 0x10_0000n, 0xc000n, { bitmap })).toBe(-ERRNO.EINVAL);
    expect(byte0(bitmap)).toBe(0b100);
    // That refused read cleared page 2; page 9, past the hole, was never read.
    bitmap.fill(0);
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap, flags: 1 })).toBe(0);
    expect(getDirty(hwpt, 0x10_8000n, 0x4000n, { bitmap: bitmap.subarray(0, 8), flags: 1 })).toBe(0);
    expect(byte0(bitmap)).toBe(0b10);
  });

  it('drops the dirty bits of what an unmap removes (a new mapping there is clean)', () => {
    const { simulator, hwptAlloc, setDirty, getDirty, attach, map, unmap, edu } = setup('arm-smmuv3', true);
    expect(map(0x10_0000n, 0x4000n)).toBe(0);
    const [, hwpt] = hwptAlloc(2);
    expect(attach(hwpt)[0]).toBe(0);
    expect(setDirty(hwpt, 1)).toBe(0);
    expect(simulator.device(edu.address).dmaWrite(0x10_0000n, new Uint8Array(1))).toBe(true);
    expect(unmap(0x10_0000n, 0x4000n)).toBe(0);
    expect(map(0x10_0000n, 0x4000n)).toBe(0);
    const bitmap = new Uint8Array(8);
    expect(getDirty(hwpt, 0x10_0000n, 0x4000n, { bitmap })).toBe(0);
    expect(byte0(bitmap)).toBe(0);
  });

  it('checks HWPT_ALLOC in the kernel order, and destroys a HWPT only when no device uses it', () => {
    const { hwptAlloc, attach, destroy, ioas, deviceId, map } = setup('arm-smmuv3', true);
    expect(hwptAlloc(0, { reserved: 1 })[0]).toBe(-ERRNO.EOPNOTSUPP);
    expect(hwptAlloc(0, { dataType: 1 })[0]).toBe(-ERRNO.EINVAL);
    expect(hwptAlloc(0, { dataLength: 4 })[0]).toBe(-ERRNO.EINVAL);
    expect(hwptAlloc(0, { dev: 99 })[0]).toBe(-ERRNO.ENOENT);
    expect(hwptAlloc(0, { pt: 99 })[0]).toBe(-ERRNO.EINVAL);
    expect(hwptAlloc(0, { pt: deviceId })[0]).toBe(-ERRNO.EINVAL);
    expect(hwptAlloc(4)[0]).toBe(-ERRNO.EOPNOTSUPP); // FAULT_ID_VALID on a paging HWPT
    expect(hwptAlloc(1)[0]).toBe(-ERRNO.EOPNOTSUPP); // NEST_PARENT
    expect(hwptAlloc(8)[0]).toBe(-ERRNO.EOPNOTSUPP);
    expect(hwptAlloc(0, { dataType: 1, dataLength: 4 })[0]).toBe(-ERRNO.EOPNOTSUPP);
    expect(hwptAlloc(0, { size: 20 })[0]).toBe(-ERRNO.EINVAL); // below the 24-byte minimum
    const [ok, hwpt] = hwptAlloc(2, { size: 24 });
    expect(ok).toBe(0);
    expect(hwptAlloc(0, { pt: hwpt })[0]).toBe(-ERRNO.EOPNOTSUPP); // nested, no data
    expect(hwptAlloc(0, { pt: hwpt, dataType: 1, dataLength: 4 })[0]).toBe(-ERRNO.EINVAL); // not a nesting parent
    // An IOAS with a HWPT on it cannot be destroyed; a HWPT with a device attached neither.
    expect(destroy(ioas)).toBe(-ERRNO.EBUSY);
    expect(attach(hwpt)).toEqual([0, hwpt]);
    expect(destroy(hwpt)).toBe(-ERRNO.EBUSY);
    // Back to the IOAS: a new automatic domain; the HWPT stays, unused, until destroyed.
    expect(attach(ioas)[0]).toBe(0);
    expect(destroy(hwpt)).toBe(0);
    expect(destroy(hwpt)).toBe(-ERRNO.ENOENT);
    expect(map(0x10_0000n, 0x1000n)).toBe(0);
  });

  it('allocates no dirty HWPT for a stage-2-only SMMUv3, and none on an IOAS holding an unaligned area', () => {
    const simulator = createSimulator({ platform: 'arm-smmuv3', hardwareDirty: true, vfio: ['0000:00:02.0', '0001:00:01.0'] });
    const sys = simSyscalls(simulator);
    const iommufd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
    const alloc = struct(12);
    expect(sys.ioctl(iommufd, IO(NR.IOAS_ALLOC), alloc.bytes)).toBe(0);
    const ioas = alloc.view.getUint32(8, true);
    const device = sys.open('/dev/vfio/devices/vfio1', SYSCALL_FLAGS.O_RDWR);
    const bind = struct(16, (view) => view.setInt32(8, iommufd, true));
    expect(sys.ioctl(device, IO(118), bind.bytes)).toBe(0);
    const deviceId = bind.view.getUint32(12, true);
    const hwpt = (flags: number) =>
      sys.ioctl(
        iommufd,
        IO(NR.HWPT_ALLOC),
        struct(48, (view) => {
          view.setUint32(4, flags, true);
          view.setUint32(8, deviceId, true);
          view.setUint32(12, ioas, true);
        }).bytes,
      );
    expect(hwpt(2)).toBe(-ERRNO.EOPNOTSUPP);
    const memory = sys.mmap(0x2000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const map = struct(40, (view) => {
      view.setUint32(4, 0x1 | 0x2 | 0x4, true);
      view.setUint32(8, ioas, true);
      view.setBigUint64(16, memory, true);
      view.setBigUint64(24, 0x800n, true);
      view.setBigUint64(32, 0x1000n, true);
    });
    expect(sys.ioctl(iommufd, IO(NR.IOAS_MAP), map.bytes)).toBe(0); // byte-granular: no domain yet
    expect(hwpt(0)).toBe(-ERRNO.EADDRINUSE);
  });
});
