/** Formats a bigint address or size as the kernel prints it: `0x` and lowercase hex. */
export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}
