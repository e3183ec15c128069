/**
 * The system-call interface the Linux backends are written against. `@ioas/vfio` implements it
 * with libc through koffi; `@ioas/backend-sim` implements it over its model (a fake `/dev/vfio`,
 * `/dev/iommu` and sysfs that speak the real ioctl byte layouts). Backends take it as a parameter,
 * so the same code runs on the kernel and on the simulator. Types and constants only.
 *
 * Conventions: calls that the kernel answers with `-1` and errno return **`-errno`** here (a
 * negative number), so that the hot path never throws; file helpers (sysfs) throw like `node:fs`,
 * with `error.code` set to the errno name.
 */
export interface Syscalls {
  /** `'libc'` or `'sim'`, for messages. */
  readonly name: string;
  /** open(2); returns the fd or `-errno`. */
  open(path: string, flags: number): number;
  /** close(2); returns 0 or `-errno`. */
  close(fd: number): number;
  /**
   * ioctl(2) with its third argument always given (docs/kernel-rules.md#calling-ioctl-from-node): an integer
   * passed by value, or a byte buffer passed by pointer, which the kernel may write. Returns the
   * ioctl's non-negative result or `-errno`.
   */
  ioctl(fd: number, request: number, argument: number | Uint8Array): number;
  /** mmap(2); returns the address, or `-errno` as a negative bigint. */
  mmap(length: bigint, prot: number, flags: number, fd: number, offset: bigint): bigint;
  /** munmap(2); returns 0 or `-errno`. */
  munmap(address: bigint, length: bigint): number;
  /** A view of `length` bytes of this process's memory at `address` (an mmapped region). */
  memory(address: bigint, length: number): Uint8Array;
  /** The address of a buffer's first byte, for pointers placed inside ioctl structs. */
  addressOf(buffer: Uint8Array): bigint;
  /** pread(2) on a device fd (config space, region offsets); returns bytes read or `-errno`. */
  pread(fd: number, buffer: Uint8Array, offset: bigint): number;
  /** pwrite(2); returns bytes written or `-errno`. */
  pwrite(fd: number, buffer: Uint8Array, offset: bigint): number;
  /** eventfd(2); returns the fd or `-errno`. */
  eventfd(initialValue: number, flags: number): number;
  /** read(2); returns bytes read or `-errno` (`-EAGAIN` for an empty non-blocking eventfd). */
  read(fd: number, buffer: Uint8Array): number;
  /** write(2); returns bytes written or `-errno`. */
  write(fd: number, buffer: Uint8Array): number;
  /** Reads a whole (sysfs) file as text. Throws with `code` set on failure. */
  readFile(path: string): string;
  /** Writes a (sysfs) file. Throws with `code` set on failure. */
  writeFile(path: string, data: string): void;
  /** readlink(2) of a symlink. Throws with `code` set on failure. */
  readLink(path: string): string;
  /** The entries of a directory. Throws with `code` set on failure. */
  readDir(path: string): string[];
  /** True when the path exists. */
  exists(path: string): boolean;
}

/**
 * Flag values for the calls above, from include/uapi/asm-generic (x86-64, arm64, riscv; PowerPC
 * uses the same values for every flag listed here).
 */
export const SYSCALL_FLAGS = {
  /** open(2): read only. */
  O_RDONLY: 0,
  /** open(2): read and write. */
  O_RDWR: 2,
  /** open(2): non-blocking. */
  O_NONBLOCK: 0o4000,
  /** open(2): close on exec. */
  O_CLOEXEC: 0o2000000,
  /** mmap(2): readable. */
  PROT_READ: 1,
  /** mmap(2): writable. */
  PROT_WRITE: 2,
  /** mmap(2): shared mapping (what DMA memory uses). */
  MAP_SHARED: 0x01,
  /** mmap(2): private copy-on-write mapping. */
  MAP_PRIVATE: 0x02,
  /** mmap(2): no file behind it. */
  MAP_ANONYMOUS: 0x20,
  /** mmap(2): fault every page in now. */
  MAP_POPULATE: 0x8000,
  /** mmap(2): from hugepages (size in MAP_HUGE_SHIFT bits). */
  MAP_HUGETLB: 0x40000,
  /** log2 of the hugepage size goes in bits 26-31 of the mmap flags (MAP_HUGE_SHIFT). */
  MAP_HUGE_SHIFT: 26,
  /** eventfd(2): non-blocking reads (EAGAIN when empty). */
  EFD_NONBLOCK: 0o4000,
  /** eventfd(2): close on exec. */
  EFD_CLOEXEC: 0o2000000,
} as const;
