/**
 * Linux errno numbers the SDK meets from VFIO and iommufd, with their names.
 *
 * Values are from include/uapi/asm-generic/errno-base.h and errno.h, which x86-64, arm64, riscv and
 * PowerPC share for every number listed here (PowerPC differs only for EDEADLOCK).
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ELOOP: 40,
  EOVERFLOW: 75,
  EBADFD: 77,
  EMSGSIZE: 90,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
} as const;

/** The name of a known errno, such as `'EEXIST'`. */
export type ErrnoName = keyof typeof ERRNO;

const namesByNumber = new Map<number, ErrnoName>(
  (Object.entries(ERRNO) as [ErrnoName, number][]).map(([name, value]) => [value, name]),
);

/** The name of an errno number, or `'E<n>'` when the number is not in {@link ERRNO}. */
export function errnoName(errno: number): string {
  return namesByNumber.get(errno) ?? `E${errno}`;
}
