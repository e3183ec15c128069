import { IoasError } from './errors.js';

/** Formats a bigint address or size as the kernel prints it: `0x` and lowercase hex. */
export function hex(value: bigint | number): string {
  if (typeof value !== 'bigint' && typeof value !== 'number') {
    throw new IoasError('invalid-argument', `hex: ${value === null ? 'null' : typeof value} is not a number or a bigint`);
  }
  return `0x${value.toString(16)}`;
}
