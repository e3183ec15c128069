/**
 * Ioctl request numbers. VFIO and iommufd use `_IO(';', nr)`: no size or direction bits
 * (docs/kernel-rules.md#ioctl-numbers-and-the-powerpc-direction-bit).
 */

/** Architectures whose `_IO` differs: PowerPC, MIPS, SPARC and Alpha set the `_IOC_NONE` bit 0x20000000. */
export type IoctlArch = 'generic' | 'powerpc';

/** The `_IOC_NONE` direction bit on PowerPC, MIPS, SPARC and Alpha. */
export const IOC_NONE_POWERPC = 0x2000_0000;

/** `_IO(';', nr)` for `arch`, as an unsigned 32-bit number (bit 31 stays positive: `>>> 0`). */
export function ioctlNumber(nr: number, arch: IoctlArch = 'generic'): number {
  return ((arch === 'powerpc' ? IOC_NONE_POWERPC : 0) | (0x3b << 8) | nr) >>> 0;
}

/** The architecture of this process, from `process.arch`. */
export function hostIoctlArch(): IoctlArch {
  return process.arch === 'ppc64' || process.arch === 'ppc' || process.arch === 'mips' || process.arch === 'mipsel' ? 'powerpc' : 'generic';
}
