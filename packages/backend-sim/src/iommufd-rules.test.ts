// The iommufd rules corrected for issue 12, one test per rule, each naming the 6.12 kernel function
// that decides it (drivers/iommu/iommufd/). Every test here failed on the simulator before.
import { ERRNO, SYSCALL_FLAGS, U64_MAX } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { Hwpt, IOAS_MAP_FLAGS, SimIommufdContext } from './iommufd.js';
import { errnoOf, iommufdByHand } from './__fixtures__/iommufd-by-hand.js';
import { KernelError } from './kernel-error.js';
import { simSyscalls } from './sim-syscalls.js';
import { createSimulator } from './simulator.js';


const { FIXED_IOVA, READABLE, WRITEABLE } = IOAS_MAP_FLAGS;
const RW = READABLE | WRITEABLE;
const FIXED_RW = FIXED_IOVA | RW;
const PAGE = 0x1000n;
const SET = 0;
const GET = 1;

/** An x86 VT-d simulator (aperture 0..2^39-1, MSI window 0xfee00000), an iommufd with one IOAS, 1 MiB of memory (2 MiB-aligned) and an address nothing is mapped at. */
function setup(options: { memlockLimit?: bigint } = {}) {
  const simulator = createSimulator({ platform: 'x86-vtd', ...options });
  const edu = simulator.devices().find((device) => device.edu)!;
  const iommufd = new SimIommufdContext(simulator);
  const ioas = iommufd.allocateIoas(0);
  const region = simulator.memory.allocate(0x40_0000n);
  const memory = (region.address + 0x1f_ffffn) & ~0x1f_ffffn;
  const gone = simulator.memory.allocate(0x10000n).address;
  simulator.memory.free(gone);
  const attach = (id = ioas): number => iommufd.attach(iommufd.bind(edu), id);
  return { simulator, edu, iommufd, ioas, memory, gone, attach };
}

describe('IOMMU_IOAS_MAP with no domain is lazy (pages.c, iopt_area_fill_domains())', () => {
  it('maps memory that is not there, and the first domain faults on it at attach (io_pagetable.c, iopt_table_add_domain() -> iopt_fill_domain())', () => {
    const { iommufd, ioas, gone, attach, simulator } = setup();
    expect(iommufd.map(ioas, FIXED_RW, gone, 0x2000n, 0x10_0000n)).toBe(0x10_0000n);
    expect(iommufd.map(ioas, RW, gone, 0x1000n, 0n)).toBe(0x1000n);
    expect(errnoOf(() => attach())).toBe(ERRNO.EFAULT);
    // The failed attach left no domain: the IOAS is still lazy.
    expect(iommufd.iovaRanges(ioas).alignment).toBe(1n);
    expect(simulator.devices().find((device) => device.edu)!.domain).toBeUndefined();
  });

  it('faults at MAP once a domain is there', () => {
    const { iommufd, ioas, gone, attach } = setup();
    attach();
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, gone, 0x2000n, 0x10_0000n))).toBe(ERRNO.EFAULT);
  });

  it('faults at IOMMU_HWPT_ALLOC too, which adds the first domain the same way', () => {
    const { iommufd, ioas, gone, edu } = setup();
    iommufd.map(ioas, FIXED_RW, gone, 0x1000n, 0x10_0000n);
    const device = iommufd.bind(edu);
    expect(errnoOf(() => iommufd.allocateHwpt(device, ioas, 0, 0, 0, 0))).toBe(ERRNO.EFAULT);
  });
});

describe('the IOVA the kernel chooses (io_pagetable.c, iopt_alloc_iova())', () => {
  it('is never 0: the search starts at PAGE_SIZE', () => {
    const { iommufd, ioas, memory } = setup();
    expect(iommufd.map(ioas, RW, memory, 0x1000n, 0n)).toBe(0x1000n);
    expect(iommufd.map(ioas, RW, memory, 0x1000n, 0n)).toBe(0x2000n);
  });

  it("keeps the user address's page offset, and aligns to the length and the address's low bits", () => {
    const { iommufd, ioas, memory } = setup();
    expect(iommufd.map(ioas, RW, memory + 0x10n, 0x1000n, 0n)).toBe(0x1010n);
    // Alignment min(roundup_pow_of_two(0x3000) = 0x4000, lowest bit of the address 0x800) = 0x800,
    // page offset 0x800: the first candidate past the area at 0x1010-0x200f is 0x2800.
    expect(iommufd.map(ioas, RW, memory + 0x800n, 0x3000n, 0n)).toBe(0x2800n);
  });

  it('caps the alignment at HPAGE_SIZE with CONFIG_TRANSPARENT_HUGEPAGE, at PAGE_SIZE without (the rig)', () => {
    const without = setup();
    expect(without.iommufd.map(without.ioas, RW, without.memory, 0x2000n, 0n)).toBe(0x1000n);
    const thp = setup();
    thp.iommufd.transparentHugepages = true;
    expect(thp.iommufd.map(thp.ioas, RW, thp.memory, 0x2000n, 0n)).toBe(0x2000n);
    expect(thp.iommufd.map(thp.ioas, RW, thp.memory, 0x20_0000n, 0n)).toBe(0x20_0000n);
  });

  it('refuses an alignment below the IOAS\'s: a page offset with a domain is EINVAL', () => {
    const { iommufd, ioas, memory, attach } = setup();
    attach();
    expect(errnoOf(() => iommufd.map(ioas, RW, memory + 0x10n, 0x1000n, 0n))).toBe(ERRNO.EINVAL);
  });

  it('is EOVERFLOW for a length from ULONG_MAX / 2', () => {
    const { iommufd, ioas, memory } = setup();
    expect(errnoOf(() => iommufd.map(ioas, RW, memory, 1n << 63n, 0n))).toBe(ERRNO.EOVERFLOW);
  });

  it('clips the allowed spans to [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] and needs start < last (a 1-byte hole never fits)', () => {
    const { iommufd, ioas, memory } = setup();
    iommufd.allowIovas(ioas, [{ start: 0n, last: 0xfffn }]);
    expect(errnoOf(() => iommufd.map(ioas, RW, memory, 0x1000n, 0n))).toBe(ERRNO.ENOSPC);
    iommufd.allowIovas(ioas, [{ start: 0x1000n, last: 0x1001n }]);
    iommufd.map(ioas, FIXED_RW, memory, 1n, 0x1000n);
    expect(errnoOf(() => iommufd.map(ioas, RW, memory, 1n, 0n))).toBe(ERRNO.ENOSPC);
  });

  it('takes the lowest hole that holds the whole length', () => {
    const { iommufd, ioas, memory } = setup();
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x2000n);
    expect(iommufd.map(ioas, RW, memory, 0x2000n, 0n)).toBe(0x3000n);
    expect(iommufd.map(ioas, RW, memory, 0x1000n, 0n)).toBe(0x1000n);
  });
});

describe('IOMMU_IOAS_MAP checks in the kernel\'s order (ioas.c, iommufd_ioas_map(); pages.c, iopt_alloc_pages(); io_pagetable.c, iopt_insert_area())', () => {
  it('answers EINVAL or EOVERFLOW before looking the IOAS up', () => {
    const { iommufd, memory } = setup();
    expect(errnoOf(() => iommufd.map(99, FIXED_IOVA, memory, 0x1000n, 0x1000n))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.map(99, FIXED_RW, memory, 0x1000n, U64_MAX))).toBe(ERRNO.EOVERFLOW);
    expect(errnoOf(() => iommufd.map(99, RW, memory, 0x1000n, U64_MAX))).toBe(ERRNO.EOVERFLOW);
  });

  it('refuses user_va + length reaching 2^64 (EOVERFLOW) and lengths above SIZE_MAX - PAGE_SIZE (EINVAL)', () => {
    const { iommufd, ioas } = setup();
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, U64_MAX - 0xfffn, 0x1000n, 0x1000n))).toBe(ERRNO.EOVERFLOW);
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, 0x1000n, U64_MAX - 0x800n, 0x1000n))).toBe(ERRNO.EINVAL);
  });

  it('refuses a user_va with a page offset once a domain is there, even at an aligned iova and length', () => {
    const { iommufd, ioas, memory, attach } = setup();
    attach();
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, memory + 0x10n, 0x1000n, 0x10_0000n))).toBe(ERRNO.EINVAL);
    expect(iommufd.map(ioas, FIXED_RW, memory + 0x1000n, 0x1000n, 0x10_0000n)).toBe(0x10_0000n);
  });

  it('checks the alignment of a FIXED iova before its wrap', () => {
    const { iommufd, ioas, memory, attach } = setup();
    attach();
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, memory, 0x2000n, U64_MAX - 0x10n))).toBe(ERRNO.EINVAL);
  });
});

describe('IOMMU_IOAS_UNMAP (io_pagetable.c, iopt_unmap_iova_range())', () => {
  it('is not atomic: the whole areas before the one cut are gone when it answers ENOENT', () => {
    const { iommufd, ioas, memory } = setup();
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    iommufd.map(ioas, FIXED_RW, memory, 0x2000n, 0x10_1000n);
    expect(errnoOf(() => iommufd.unmap(ioas, 0x10_0000n, 0x2000n))).toBe(ERRNO.ENOENT);
    expect(iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n)).toBe(0x10_0000n);
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_1000n))).toBe(ERRNO.EEXIST);
    expect(iommufd.unmap(ioas, 0n, U64_MAX)).toBe(0x3000n);
  });

  it('answers EOVERFLOW for iova ULONG_MAX before EINVAL for length 0 (ioas.c, iommufd_ioas_unmap())', () => {
    const { iommufd, ioas } = setup();
    expect(errnoOf(() => iommufd.unmap(ioas, U64_MAX, 0n))).toBe(ERRNO.EOVERFLOW);
  });
});

describe('IOMMU_IOAS_COPY (ioas.c, iommufd_ioas_copy(); io_pagetable.c, iopt_get_pages(), iopt_map_pages())', () => {
  function copySetup() {
    const base = setup();
    const other = base.iommufd.allocateIoas(0);
    return { ...base, other };
  }

  it('refuses WRITEABLE over pages mapped without it (EPERM), but not over pages first mapped writable', () => {
    const { iommufd, ioas, other, memory } = copySetup();
    iommufd.map(ioas, FIXED_IOVA | READABLE, memory, 0x1000n, 0x10_0000n);
    expect(errnoOf(() => iommufd.copy(other, ioas, FIXED_RW, 0x1000n, 0x10_0000n, 0x10_0000n))).toBe(ERRNO.EPERM);
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x20_0000n);
    // A read-only copy of writable pages keeps them writable: copying it again WRITEABLE is allowed.
    iommufd.copy(other, ioas, FIXED_IOVA | READABLE, 0x1000n, 0x20_0000n, 0x30_0000n);
    expect(iommufd.copy(ioas, other, FIXED_RW, 0x1000n, 0x30_0000n, 0x40_0000n)).toBe(0x40_0000n);
  });

  it('checks flags, overflow, R/W and the whole source before looking the destination up', () => {
    const { iommufd, ioas, memory } = copySetup();
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    expect(errnoOf(() => iommufd.copy(99, ioas, 0x8 | RW, 0x1000n, 0x10_0000n, 0n))).toBe(ERRNO.EOPNOTSUPP);
    expect(errnoOf(() => iommufd.copy(99, ioas, RW, 0x1000n, U64_MAX, 0n))).toBe(ERRNO.EOVERFLOW);
    expect(errnoOf(() => iommufd.copy(99, ioas, FIXED_IOVA, 0x1000n, 0x10_0000n, 0n))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.copy(99, ioas, RW, 0n, 0x10_0000n, 0n))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.copy(99, ioas, RW, 0x10n, U64_MAX - 1n, 0n))).toBe(ERRNO.EOVERFLOW);
    expect(errnoOf(() => iommufd.copy(99, ioas, RW, 0x2000n, 0x10_0000n, 0n))).toBe(ERRNO.ENOENT);
    expect(errnoOf(() => iommufd.copy(99, ioas, RW, 0x1000n, 0x10_0000n, 0n))).toBe(ERRNO.ENOENT);
  });

  it('finds one hole for the whole length, from the user address of the first byte, and keeps the source areas as pieces', () => {
    const { iommufd, ioas, other, memory } = copySetup();
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    iommufd.map(ioas, FIXED_RW, memory + 0x8000n, 0x1000n, 0x10_1000n);
    iommufd.map(other, FIXED_RW, memory, 0x1000n, 0x2000n);
    // The old simulator put the first piece at 0x1000 and the second FIXED at 0x2000: EEXIST.
    expect(iommufd.copy(other, ioas, RW, 0x2000n, 0x10_0000n, 0n)).toBe(0x3000n);
    // One destination area per source area: unmapping the first page alone succeeds.
    expect(iommufd.unmap(other, 0x3000n, 0x1000n)).toBe(0x1000n);
  });

  it('is atomic: a destination overlap anywhere in the length adds nothing', () => {
    const { iommufd, ioas, other, memory } = copySetup();
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    iommufd.map(ioas, FIXED_RW, memory + 0x1000n, 0x1000n, 0x10_1000n);
    iommufd.map(other, FIXED_RW, memory, 0x1000n, 0x51_000n);
    expect(errnoOf(() => iommufd.copy(other, ioas, FIXED_RW, 0x2000n, 0x10_0000n, 0x50_000n))).toBe(ERRNO.EEXIST);
    expect(iommufd.unmap(other, 0n, U64_MAX)).toBe(0x1000n);
  });

  it('maps copies of lazily mapped memory lazily, and faults only into a domain when the pages were never pinned', () => {
    const { iommufd, ioas, other, gone, edu } = copySetup();
    iommufd.map(ioas, FIXED_RW, gone, 0x1000n, 0x10_0000n);
    const third = iommufd.allocateIoas(0);
    expect(iommufd.copy(third, ioas, FIXED_RW, 0x1000n, 0x10_0000n, 0x10_0000n)).toBe(0x10_0000n);
    iommufd.attach(iommufd.bind(edu), other);
    expect(errnoOf(() => iommufd.copy(other, ioas, FIXED_RW, 0x1000n, 0x10_0000n, 0x10_0000n))).toBe(ERRNO.EFAULT);
  });
});

describe('IOMMU_OPTION (main.c, iommufd_option(); ioas.c)', () => {
  it('sets RLIMIT_MODE as root on an empty context, and GET reflects it (iommufd_option_rlimit_mode())', () => {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const iommufd = new SimIommufdContext(simulator);
    expect(iommufd.option(0, GET, 0, 0, 0n)).toBe(0n);
    expect(iommufd.option(0, SET, 0, 0, 1n)).toBe(1n);
    expect(iommufd.option(0, GET, 0, 0, 7n)).toBe(1n);
    expect(errnoOf(() => iommufd.option(0, SET, 0, 0, 2n))).toBe(ERRNO.EINVAL);
    expect(iommufd.option(0, SET, 0, 0, 0n)).toBe(0n);
    expect(iommufd.option(0, GET, 0, 0, 0n)).toBe(0n);
    expect(errnoOf(() => iommufd.option(0, SET, 0, 1, 0n))).toBe(ERRNO.EOPNOTSUPP);
    iommufd.allocateIoas(0);
    expect(errnoOf(() => iommufd.option(0, SET, 0, 0, 1n))).toBe(ERRNO.EBUSY);
    expect(errnoOf(() => iommufd.option(0, 2, 0, 0, 1n))).toBe(ERRNO.EOPNOTSUPP);
  });

  it('refuses RLIMIT_MODE SET without CAP_SYS_RESOURCE, modelled by memlockLimit', () => {
    const iommufd = new SimIommufdContext(createSimulator({ platform: 'x86-vtd', memlockLimit: 0x10000n }));
    expect(errnoOf(() => iommufd.option(0, SET, 0, 0, 1n))).toBe(ERRNO.EPERM);
  });

  it('looks the HUGE_PAGES IOAS up before the op (iommufd_ioas_option())', () => {
    const { iommufd } = setup();
    expect(errnoOf(() => iommufd.option(1, 2, 0, 99, 0n))).toBe(ERRNO.ENOENT);
  });

  it('keeps HUGE_PAGES per IOAS: SET 0 raises the alignment to PAGE_SIZE with no domain (iopt_disable_large_pages(), iopt_calculate_iova_alignment())', () => {
    const { iommufd, ioas, memory } = setup();
    expect(iommufd.option(1, GET, 0, ioas, 0n)).toBe(1n);
    expect(iommufd.option(1, SET, 0, ioas, 0n)).toBe(0n);
    expect(iommufd.option(1, GET, 0, ioas, 1n)).toBe(0n);
    expect(iommufd.iovaRanges(ioas).alignment).toBe(PAGE);
    expect(errnoOf(() => iommufd.map(ioas, FIXED_RW, memory, 0x800n, 0x10_0000n))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.map(ioas, RW, memory + 0x10n, 0x1000n, 0n))).toBe(ERRNO.EINVAL);
    expect(iommufd.option(1, SET, 0, ioas, 1n)).toBe(1n);
    expect(iommufd.iovaRanges(ioas).alignment).toBe(1n);
    expect(errnoOf(() => iommufd.option(1, SET, 0, ioas, 2n))).toBe(ERRNO.EINVAL);
  });

  it('refuses HUGE_PAGES 0 over a sub-page area (EADDRINUSE) and over a domain with areas (EINVAL)', () => {
    const { iommufd, ioas, memory, attach } = setup();
    iommufd.map(ioas, FIXED_RW, memory, 0x800n, 0x10_0000n);
    expect(errnoOf(() => iommufd.option(1, SET, 0, ioas, 0n))).toBe(ERRNO.EADDRINUSE);
    expect(iommufd.option(1, GET, 0, ioas, 0n)).toBe(1n);
    iommufd.unmap(ioas, 0n, U64_MAX);
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    attach();
    expect(errnoOf(() => iommufd.option(1, SET, 0, ioas, 0n))).toBe(ERRNO.EINVAL);
    iommufd.unmap(ioas, 0n, U64_MAX);
    expect(iommufd.option(1, SET, 0, ioas, 0n)).toBe(0n);
  });
});

describe('IOMMU_IOAS_ALLOW_IOVAS (ioas.c, iommufd_ioas_allow_iovas(), iommufd_ioas_load_iovas())', () => {
  it('looks the IOAS up before reading any entry, and reads the entries one at a time', () => {
    const { iommufd, ioas } = setup();
    const fault = (): never => {
      throw new KernelError(ERRNO.EFAULT, 'test', 'unreadable');
    };
    expect(errnoOf(() => iommufd.allowIovasFrom(99, 4, fault))).toBe(ERRNO.ENOENT);
    const entries = [{ start: 0x2000n, last: 0x1000n }];
    expect(errnoOf(() => iommufd.allowIovasFrom(ioas, 0x1_0000_0000 - 1, (index) => entries[index] ?? fault()))).toBe(ERRNO.EINVAL);
    expect(errnoOf(() => iommufd.allowIovasFrom(ioas, 0x1_0000_0000 - 1, (index) => [{ start: 0x1000n, last: 0x2000n }][index] ?? fault()))).toBe(ERRNO.EFAULT);
  });
});

describe('the /dev/iommu ioctl handlers (sim-iommufd.ts) decode and leave the order to the context', () => {
  /** A process with /dev/iommu open, IOAS 1 allocated, and 64 KiB mapped. */
  function open() {
    const simulator = createSimulator({ platform: 'x86-vtd' });
    const sys = simSyscalls(simulator, { littleEndian: true });
    const fd = sys.open('/dev/iommu', SYSCALL_FLAGS.O_RDWR);
    const memory = sys.mmap(0x10000n, 3, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
    const struct = (size: number, fill: (view: DataView) => void): Uint8Array => {
      const bytes = new Uint8Array(size);
      const view = new DataView(bytes.buffer);
      view.setUint32(0, size, true);
      fill(view);
      return bytes;
    };
    return { simulator, sys, fd, memory, struct };
  }
  const option = (id: number, op: number, object: number, value: bigint) => (view: DataView) => {
    view.setUint32(4, id, true);
    view.setUint16(8, op, true);
    view.setUint32(12, object, true);
    view.setBigUint64(16, value, true);
  };

  it('IOMMU_OPTION: RLIMIT_MODE SET as root is 0 on an empty context, and only val64 is written back', () => {
    const { sys, fd, struct } = open();
    const set = struct(24, option(0, SET, 0, 1n));
    expect(sys.ioctl(fd, 0x3b87, set)).toBe(0);
    const get = struct(24, option(0, GET, 0, 9n));
    expect(sys.ioctl(fd, 0x3b87, get)).toBe(0);
    expect(new DataView(get.buffer).getBigUint64(16, true)).toBe(1n);
    // HUGE_PAGES: the IOAS is looked up before the op is checked.
    expect(sys.ioctl(fd, 0x3b87, struct(24, option(1, 2, 99, 0n)))).toBe(-ERRNO.ENOENT);
  });

  it('IOMMU_IOAS_COPY: the flags are checked before either IOAS is looked up', () => {
    const { sys, fd, struct } = open();
    const copy = struct(40, (view) => {
      view.setUint32(4, 0x8 | RW, true);
      view.setUint32(8, 99, true);
      view.setUint32(12, 98, true);
      view.setBigUint64(16, 0x1000n, true);
    });
    expect(sys.ioctl(fd, 0x3b83, copy)).toBe(-ERRNO.EOPNOTSUPP);
  });

  it('IOMMU_IOAS_COPY: writes back dst_iova, chosen for the whole length', () => {
    const { sys, fd, memory, struct } = open();
    expect(sys.ioctl(fd, 0x3b81, struct(12, () => {}))).toBe(0); // IOAS 1
    expect(sys.ioctl(fd, 0x3b81, struct(12, () => {}))).toBe(0); // IOAS 2
    const map = (iova: bigint, vaddr: bigint) =>
      struct(40, (view) => {
        view.setUint32(4, FIXED_RW, true);
        view.setUint32(8, 1, true);
        view.setBigUint64(16, vaddr, true);
        view.setBigUint64(24, 0x1000n, true);
        view.setBigUint64(32, iova, true);
      });
    expect(sys.ioctl(fd, 0x3b85, map(0x10_0000n, memory))).toBe(0);
    expect(sys.ioctl(fd, 0x3b85, map(0x10_1000n, memory + 0x8000n))).toBe(0);
    const copy = struct(40, (view) => {
      view.setUint32(4, RW, true);
      view.setUint32(8, 2, true);
      view.setUint32(12, 1, true);
      view.setBigUint64(16, 0x2000n, true);
      view.setBigUint64(32, 0x10_0000n, true);
    });
    expect(sys.ioctl(fd, 0x3b83, copy)).toBe(0);
    expect(new DataView(copy.buffer).getBigUint64(24, true)).toBe(0x1000n);
  });

  it('IOMMU_IOAS_ALLOW_IOVAS: an unknown IOAS is ENOENT whatever the pointer, and a huge num_iovas is walked to its first fault', () => {
    const { simulator, sys, fd, memory, struct } = open();
    expect(sys.ioctl(fd, 0x3b81, struct(12, () => {}))).toBe(0);
    const allow = (ioas: number, count: number, pointer: bigint) =>
      struct(24, (view) => {
        view.setUint32(4, ioas, true);
        view.setUint32(8, count, true);
        view.setBigUint64(16, pointer, true);
      });
    expect(sys.ioctl(fd, 0x3b82, allow(99, 1, 0xdead_0000n))).toBe(-ERRNO.ENOENT);
    // Entries past the 64 KiB mapped: the kernel reads them one by one; the first unreadable is EFAULT.
    expect(sys.ioctl(fd, 0x3b82, allow(1, 0xffff_ffff, memory + 0xfff0n))).toBe(-ERRNO.EINVAL); // entry 0 is {0, 0}: start >= last
    simulator.memory.write(memory + 0xfff8n, new Uint8Array([0, 0x10, 0, 0, 0, 0, 0, 0])); // entry 0 becomes {0, 0x1000}
    expect(sys.ioctl(fd, 0x3b82, allow(1, 0xffff_ffff, memory + 0xfff0n))).toBe(-ERRNO.EFAULT);
  });
});

describe('IOMMU_VFIO_IOAS and the VFIO compat ioctls on /dev/iommu (vfio_compat.c)', () => {
  function open() {
    const { simulator, sys, fd, memory } = iommufdByHand();
    const vfioIoas = (op: number, id = 0, reserved = 0): { status: number; id: number } => {
      const bytes = new Uint8Array(12);
      const view = new DataView(bytes.buffer);
      view.setUint32(0, 12, true);
      view.setUint32(4, id, true);
      view.setUint16(8, op, true);
      view.setUint16(10, reserved, true);
      const status = sys.ioctl(fd, 0x3b88, bytes);
      return { status, id: view.getUint32(4, true) };
    };
    const dma = (request: number, flags: number, iova: bigint, size: bigint, vaddr = memory): { status: number; size: bigint } => {
      const map = request === 0x3b71;
      const bytes = new Uint8Array(map ? 32 : 24);
      const view = new DataView(bytes.buffer);
      view.setUint32(0, bytes.length, true);
      view.setUint32(4, flags, true);
      if (map) {
        view.setBigUint64(8, vaddr, true);
        view.setBigUint64(16, iova, true);
        view.setBigUint64(24, size, true);
      } else {
        view.setBigUint64(8, iova, true);
        view.setBigUint64(16, size, true);
      }
      const status = sys.ioctl(fd, request, bytes);
      return { status, size: view.getBigUint64(map ? 24 : 16, true) };
    };
    return { simulator, sys, fd, memory, vfioIoas, dma };
  }

  it('IOMMU_VFIO_IOAS: GET is ENODEV until SET, SET of an unknown id ENOENT, CLEAR forgets, DESTROY of the compat IOAS forgets it (iommufd_vfio_ioas())', () => {
    const { sys, fd, vfioIoas } = open();
    expect(vfioIoas(0).status).toBe(-ERRNO.ENODEV);
    expect(vfioIoas(1, 7).status).toBe(-ERRNO.ENOENT);
    expect(vfioIoas(1, 1).status).toBe(0);
    expect(vfioIoas(0)).toEqual({ status: 0, id: 1 });
    expect(vfioIoas(3).status).toBe(-ERRNO.EOPNOTSUPP);
    expect(vfioIoas(0, 0, 1).status).toBe(-ERRNO.EOPNOTSUPP);
    expect(vfioIoas(2).status).toBe(0);
    expect(vfioIoas(0).status).toBe(-ERRNO.ENODEV);
    expect(vfioIoas(1, 1).status).toBe(0);
    const destroy = new Uint8Array(8);
    new DataView(destroy.buffer).setUint32(0, 8, true);
    new DataView(destroy.buffer).setUint32(4, 1, true);
    expect(sys.ioctl(fd, 0x3b80, destroy)).toBe(0);
    expect(vfioIoas(0).status).toBe(-ERRNO.ENODEV);
  });

  it('answers VFIO_GET_API_VERSION 0 and CHECK_EXTENSION as iommufd_vfio_check_extension() does; other VFIO requests ENOTTY', () => {
    const { sys, fd, vfioIoas } = open();
    expect(sys.ioctl(fd, 0x3b64, 0)).toBe(0);
    expect([1, 3, 9, 8, 5, 6, 10, 0].map((extension) => sys.ioctl(fd, 0x3b65, extension))).toEqual([1, 1, 1, 0, 0, 0, 0, 0]);
    expect(sys.ioctl(fd, 0x3b65, 4)).toBe(-ERRNO.ENODEV); // DMA_CC_IOMMU needs the compat IOAS
    vfioIoas(1, 1);
    expect(sys.ioctl(fd, 0x3b65, 4)).toBe(1); // no domain in it yet
    expect(sys.ioctl(fd, 0x3b6b, new Uint8Array(24))).toBe(-ERRNO.ENOTTY); // VFIO_DEVICE_GET_INFO
    expect(sys.ioctl(fd, 0x3b75, new Uint8Array(24))).toBe(-ERRNO.ENOTTY); // VFIO_IOMMU_DIRTY_PAGES
  });

  it('SET_IOMMU needs TYPE1 or TYPE1v2 and the compat IOAS; TYPE1 disables large pages, so UNMAP_DMA may cut areas (iommufd_vfio_set_iommu(), iommufd_vfio_unmap_dma())', () => {
    const { sys, fd, vfioIoas, dma } = open();
    expect(sys.ioctl(fd, 0x3b66, 7)).toBe(-ERRNO.EINVAL);
    expect(sys.ioctl(fd, 0x3b66, 3)).toBe(-ERRNO.ENODEV);
    expect(dma(0x3b71, 3, 0x10_0000n, 0x4000n).status).toBe(-ERRNO.ENODEV);
    vfioIoas(1, 1);
    expect(sys.ioctl(fd, 0x3b66, 3)).toBe(0);
    expect(dma(0x3b71, 3, 0x10_0000n, 0x4000n).status).toBe(0);
    expect(dma(0x3b71, 4, 0x20_0000n, 0x1000n).status).toBe(-ERRNO.EINVAL); // VADDR is not taken
    expect(dma(0x3b71, 0, 0x20_0000n, 0x1000n).status).toBe(0); // no READ nor WRITE is allowed
    // TYPE1v2 semantics: a cut is ENOENT, with size written back 0; nothing there is 0.
    expect(dma(0x3b72, 0, 0x10_1000n, 0x1000n)).toEqual({ status: -ERRNO.ENOENT, size: 0n });
    expect(dma(0x3b72, 0, 0x40_0000n, 0x1000n)).toEqual({ status: 0, size: 0n });
    expect(dma(0x3b72, 2, 0x1000n, 0n).status).toBe(-ERRNO.EINVAL);
    expect(dma(0x3b72, 2, 0n, 0n)).toEqual({ status: 0, size: 0x5000n });
    // TYPE1: the same cut now splits the area.
    expect(sys.ioctl(fd, 0x3b66, 1)).toBe(0);
    expect(dma(0x3b71, 3, 0x10_0000n, 0x4000n).status).toBe(0);
    expect(dma(0x3b72, 0, 0x10_1000n, 0x1000n)).toEqual({ status: 0, size: 0x1000n });
    expect(dma(0x3b72, 0, 0x10_0000n, 0x4000n)).toEqual({ status: 0, size: 0x3000n });
  });

  it('VFIO_IOMMU_GET_INFO: page sizes and the usable ranges of the compat IOAS, caps where argsz has room (iommufd_vfio_iommu_get_info())', () => {
    const { sys, fd, vfioIoas } = open();
    const info = (argsz: number): { status: number; view: DataView } => {
      const bytes = new Uint8Array(Math.max(argsz, 16));
      const view = new DataView(bytes.buffer);
      view.setUint32(0, argsz, true);
      return { status: sys.ioctl(fd, 0x3b70, bytes), view };
    };
    expect(info(16).status).toBe(-ERRNO.ENODEV);
    vfioIoas(1, 1);
    const small = info(16);
    expect(small.status).toBe(0);
    expect(small.view.getUint32(0, true)).toBe(24 + 16 + 16 + 16); // the total: one range, 0..2^64-1
    expect(small.view.getUint32(4, true)).toBe(3);
    expect(small.view.getBigUint64(8, true)).toBe(0xffff_ffff_ffff_f000n);
    const whole = info(72);
    expect(whole.view.getUint32(16, true)).toBe(24);
    expect([whole.view.getUint16(24, true), whole.view.getUint32(28, true), whole.view.getUint32(32, true)]).toEqual([3, 40, 0xffff_ffff]);
    expect([whole.view.getUint16(40, true), whole.view.getUint32(48, true)]).toEqual([1, 1]);
    expect([whole.view.getBigUint64(56, true), whole.view.getBigUint64(64, true)]).toEqual([0n, U64_MAX]);
  });
});

describe('ATTACH to another IOAS: a replace adds the new domain before it reserves the device\'s regions (device.c, iommufd_device_replace(); hw_pagetable.c, iommufd_hwpt_paging_alloc())', () => {
  // IOAS 2 allows exactly the MSI window and holds a lazy area over memory that is gone.
  const prepare = () => {
    const context = setup();
    const { iommufd, gone } = context;
    const other = iommufd.allocateIoas(0);
    iommufd.allowIovas(other, [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }]);
    iommufd.map(other, FIXED_IOVA | READABLE, gone, 0x1000n, 0x19_4000n);
    return { ...context, other };
  };

  it('replacing: the new domain pins the lazy area first, EFAULT (as the 6.12 lane answered)', () => {
    const { iommufd, edu, ioas, other } = prepare();
    const device = iommufd.bind(edu);
    iommufd.attach(device, ioas);
    expect(errnoOf(() => iommufd.attach(device, other))).toBe(ERRNO.EFAULT);
    expect(edu.domain instanceof Hwpt && edu.domain.ioas.id).toBe(ioas);
  });

  it('a first attach reserves the MSI window first: EADDRINUSE', () => {
    const { iommufd, edu, other } = prepare();
    expect(errnoOf(() => iommufd.attach(iommufd.bind(edu), other))).toBe(ERRNO.EADDRINUSE);
    expect(edu.domain).toBeUndefined();
  });
});

describe('closing /dev/iommu with a device bound (main.c, iommufd_ctx_from_fd(), iommufd_fops_release())', () => {
  it('keeps the context and its objects until the last device unbinds', () => {
    const { iommufd, ioas, memory, edu, simulator } = setup();
    const device = iommufd.bind(edu);
    iommufd.map(ioas, FIXED_RW, memory, 0x1000n, 0x10_0000n);
    iommufd.releaseFile();
    expect(simulator.kernelObjects.has(iommufd)).toBe(true);
    expect(iommufd.attach(device, ioas)).toBe(3); // IOAS 1, device 2, its automatic domain 3
    expect(iommufd.mappingCount).toBe(1);
    iommufd.unbind(device);
    expect(simulator.kernelObjects.has(iommufd)).toBe(false);
    expect(iommufd.mappingCount).toBe(0);
    expect(edu.boundTo).toBeUndefined();
  });

  it('releases at once with no device bound', () => {
    const { iommufd, simulator } = setup();
    iommufd.releaseFile();
    expect(simulator.kernelObjects.has(iommufd)).toBe(false);
  });
});

describe('VFIO_DEVICE_BIND_IOMMUFD through the syscall face (6.12 device_cdev.c, vfio_df_ioctl_bind_iommufd())', () => {
  const BIND = 0x3b76;
  const ATTACH = 0x3b77;
  const bind = (sys: ReturnType<typeof simSyscalls>, device: number, iommufd: number, flags = 0): number => {
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 16, true);
    view.setUint32(4, flags, true);
    view.setInt32(8, iommufd, true);
    return sys.ioctl(device, BIND, bytes);
  };
  const machine = (kernel: '6.1' | '6.12') => {
    const simulator = createSimulator({ platform: 'x86-vtd', kernel });
    const sys = simSyscalls(simulator);
    const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!;
    return { simulator, sys, edu, group: `/dev/vfio/${edu.group}` };
  };
  const rdwr = SYSCALL_FLAGS.O_RDWR;

  it('on a device fd got from its group: EINVAL on 6.12 (bind is dispatched before the driver), ENOTTY on 6.1, which has no cdevs', () => {
    for (const [kernel, answer] of [['6.12', -ERRNO.EINVAL], ['6.1', -ERRNO.ENOTTY]] as const) {
      const { sys, edu, group } = machine(kernel);
      const container = sys.open('/dev/vfio/vfio', rdwr);
      const groupFd = sys.open(group, rdwr);
      const int = new Uint8Array(4);
      new DataView(int.buffer).setInt32(0, container, true);
      expect(sys.ioctl(groupFd, 0x3b68, int)).toBe(0); // VFIO_GROUP_SET_CONTAINER
      expect(sys.ioctl(container, 0x3b66, 3)).toBe(0); // VFIO_SET_IOMMU type1v2
      const device = sys.ioctl(groupFd, 0x3b6a, new TextEncoder().encode(`${edu.address}\0`));
      expect(device).toBeGreaterThan(0);
      expect(bind(sys, device, sys.open('/dev/iommu', rdwr)), kernel).toBe(answer);
    }
  });

  it('with the group open elsewhere: EBUSY before the iommufd fd is looked at (vfio_device_block_group())', () => {
    const { simulator, sys, group } = machine('6.12');
    const other = simSyscalls(simulator);
    expect(other.open(group, rdwr)).toBeGreaterThan(0);
    const device = sys.open('/dev/vfio/devices/vfio0', rdwr);
    expect(bind(sys, device, 1_000_000)).toBe(-ERRNO.EBUSY);
    expect(bind(sys, device, sys.eventfd(0, 0))).toBe(-ERRNO.EBUSY);
    expect(bind(sys, device, -1)).toBe(-ERRNO.EINVAL);
  });

  it('closing /dev/iommu leaves a bound cdev working: the bind holds the iommufd file (iommufd_ctx_from_fd())', () => {
    const { sys } = machine('6.12');
    const iommufd = sys.open('/dev/iommu', rdwr);
    const device = sys.open('/dev/vfio/devices/vfio0', rdwr);
    expect(bind(sys, device, iommufd)).toBe(0);
    const alloc = new Uint8Array(12);
    new DataView(alloc.buffer).setUint32(0, 12, true);
    expect(sys.ioctl(iommufd, 0x3b81, alloc)).toBe(0); // IOMMU_IOAS_ALLOC
    const ioas = new DataView(alloc.buffer).getUint32(8, true);
    expect(sys.close(iommufd)).toBe(0);
    const attach = new Uint8Array(12);
    const view = new DataView(attach.buffer);
    view.setUint32(0, 12, true);
    view.setUint32(8, ioas, true);
    expect(sys.ioctl(device, ATTACH, attach)).toBe(0);
    expect(sys.close(device)).toBe(0);
  });
});

describe('IOMMU_HWPT_INVALIDATE and IOMMU_IOAS_IOVA_RANGES write-backs (hw_pagetable.c, iommufd_hwpt_invalidate(); ioas.c, iommufd_ioas_iova_ranges())', () => {
  const open = iommufdByHand;

  it('HWPT_INVALIDATE: EOPNOTSUPP, EINVAL, then ENOENT (no nested HWPT), entry_num written back 0 each time', () => {
    const { sys, fd } = open();
    const invalidate = (fill: (view: DataView) => void): { status: number; done: number } => {
      const bytes = new Uint8Array(32);
      const view = new DataView(bytes.buffer);
      view.setUint32(0, 32, true);
      view.setUint32(4, 1, true);
      view.setUint32(24, 5, true);
      fill(view);
      return { status: sys.ioctl(fd, 0x3b8d, bytes), done: view.getUint32(24, true) };
    };
    expect(invalidate((view) => view.setUint32(28, 1, true))).toEqual({ status: -ERRNO.EOPNOTSUPP, done: 0 });
    expect(invalidate(() => {})).toEqual({ status: -ERRNO.EINVAL, done: 0 }); // 5 entries, no data_uptr
    expect(invalidate((view) => view.setUint32(24, 0, true))).toEqual({ status: -ERRNO.ENOENT, done: 0 }); // IOAS 1 is not nested
  });

  it('IOVA_RANGES: entries written one by one up to the first fault, the struct not written back', () => {
    const { simulator, sys, fd, memory } = open();
    const edu = simulator.devices().find((device) => device.edu)!;
    const cdev = sys.open(`/dev/vfio/devices/vfio0`, SYSCALL_FLAGS.O_RDWR);
    const bind = new DataView(new ArrayBuffer(16));
    bind.setUint32(0, 16, true);
    bind.setInt32(8, fd, true);
    expect(sys.ioctl(cdev, 0x3b00 + 118, new Uint8Array(bind.buffer))).toBe(0);
    const attach = new DataView(new ArrayBuffer(12));
    attach.setUint32(0, 12, true);
    attach.setUint32(8, 1, true);
    expect(sys.ioctl(cdev, 0x3b00 + 119, new Uint8Array(attach.buffer))).toBe(0);
    expect(edu.domain).toBeDefined();
    // Two ranges on the VT-d preset; the second slot is past the mapping.
    const bytes = new Uint8Array(32);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 32, true);
    view.setUint32(4, 1, true);
    view.setUint32(8, 2, true);
    view.setBigUint64(16, memory + 0x10000n - 16n, true);
    expect(sys.ioctl(fd, 0x3b84, bytes)).toBe(-ERRNO.EFAULT);
    expect(view.getUint32(8, true)).toBe(2); // not written back
    expect(simulator.memory.read(memory + 0x10000n - 8n, 8)).toEqual(new Uint8Array([0xff, 0xff, 0xdf, 0xfe, 0, 0, 0, 0]));
  });
});
