import { ERRNO } from '@ioas/core';
import { KernelError } from './kernel-error.js';

const M64 = (1n << 64n) - 1n;

/**
 * A dirty bitmap in the process's memory as the kernel sees it: an array of u64 words in the
 * process's byte order (`unsigned long` on the 64-bit hosts dirty tracking runs on), bit n of word
 * n / 64 standing for page n. `bytes` are the bytes the process can write from the bitmap's start
 * (fewer than it claims when its buffer ends early): touching a word past them is EFAULT, as
 * copy_to_user() / pin_user_pages() fail there.
 */
export class UserBitmap {
  constructor(
    /** The process's bytes from the bitmap's start, as far as they go. */
    readonly bytes: Uint8Array,
    private readonly little: boolean,
    private readonly ioctl: string,
  ) {}

  /** EFAULT unless words `[first, first + count)` are writable. */
  require(first: number, count: number): void {
    if ((first + count) * 8 > this.bytes.length) {
      throw new KernelError(ERRNO.EFAULT, this.ioctl, `the bitmap's words ${first}-${first + count - 1} are not in the process's memory`);
    }
  }

  /** Word `index` (EFAULT when it is not there). */
  word(index: number): bigint {
    this.require(index, 1);
    let value = 0n;
    for (let byte = 0; byte < 8; byte++) value |= BigInt(this.bytes[index * 8 + byte]!) << BigInt(this.little ? byte * 8 : 56 - byte * 8);
    return value;
  }

  /** Writes word `index`. */
  setWord(index: number, value: bigint): void {
    this.require(index, 1);
    const masked = value & M64;
    for (let byte = 0; byte < 8; byte++) this.bytes[index * 8 + byte] = Number((masked >> BigInt(this.little ? byte * 8 : 56 - byte * 8)) & 0xffn);
  }

  /** Writes `count` words from `first` as all ones or all zeros. */
  fillWords(first: number, count: number, ones: boolean): void {
    if (count <= 0) return;
    this.require(first, count);
    this.bytes.fill(ones ? 0xff : 0, first * 8, (first + count) * 8);
  }

  /** Sets bits `[first, last]` (ORs: bits already set stay), as the kernel's bitmap_set(). */
  setBits(first: number, last: number): void {
    this.require(Math.floor(first / 64), Math.floor(last / 64) - Math.floor(first / 64) + 1);
    let bit = first;
    // Up to a byte boundary, whole bytes, then the tail.
    while (bit <= last && bit % 8 !== 0) this.setBit(bit++);
    const wholeBytes = Math.floor((last + 1 - bit) / 8);
    if (wholeBytes > 0) {
      if (this.little) {
        this.bytes.fill(0xff, bit / 8, bit / 8 + wholeBytes);
      } else {
        for (let byte = 0; byte < wholeBytes; byte++) this.bytes[this.byteOf(bit + byte * 8)] = 0xff;
      }
      bit += wholeBytes * 8;
    }
    while (bit <= last) this.setBit(bit++);
  }

  /**
   * Sets bits `[first, last]` where the process's memory holds them and drops the rest, with no
   * error: 6.12's iova_bitmap_set() pins the bitmap's pages as it reaches them and, when
   * pin_user_pages_fast() fails, returns without recording it (iova_bitmap_advance_to()).
   */
  setBitsWherePinned(first: number, last: number): void {
    const writable = Math.floor(this.bytes.length / 8) * 64;
    if (first < writable) this.setBits(first, Math.min(last, writable - 1));
  }

  private setBit(bit: number): void {
    this.bytes[this.byteOf(bit)]! |= 1 << (bit % 8);
  }

  /** The byte holding bit `bit` of the u64 array. */
  private byteOf(bit: number): number {
    return this.little ? bit >>> 3 : Math.floor(bit / 64) * 8 + 7 - ((bit % 64) >>> 3);
  }
}

/** All ones in the low `bits` bits. */
function ones(bits: number): bigint {
  return bits <= 0 ? 0n : (1n << BigInt(bits)) - 1n;
}

/**
 * update_user_bitmap() of 6.1 and 6.12 drivers/vfio/vfio_iommu_type1.c for one `vfio_dma`,
 * including what its own bitmap (`dma->bitmap`: `DIRTY_BITMAP_BYTES(nbits) + 8` bytes) keeps
 * between calls. `tail` is that bitmap's content from bit `nbits` up (bits below `nbits` are 0
 * between calls: vfio-pci pins nothing, and each read clears them). Returns the new tail, as
 * `bitmap_clear(dma->bitmap, 0, nbits)` leaves it.
 *
 * In the kernel's order: every page is set when `pessimistic` (a group that pins no pages, and the
 * dma mapped into an IOMMU domain); when the dma's first page is not at bit 0 of a word
 * (`shift = bit_offset % 64`), the bitmap is shifted left by `shift` over `nbits + shift` bits
 * (`__bitmap_shift_left()`, which neither masks its last word nor touches the words past it) and
 * the whole user word it lands in is ORed in (`bitmap_or(.., shift)` ORs whole words); then
 * `DIRTY_BITMAP_BYTES(nbits + shift)` bytes are copied out at word `bit_offset / 64`. So the
 * words written are whole: bits of a word the previous dma shares survive (the OR), bits past the
 * dma's last page in its last word are rewritten (with what the shift carried there), and a dma
 * read at a shift keeps carried bits above `nbits`, which later reads at a shift shift into the
 * user's words past the dma. Bytes outside those words are untouched.
 *
 * An EFAULT (the user's word cannot be read, or the words cannot be written) leaves dma->bitmap
 * as far as it got, uncleared: update_user_bitmap() sets and shifts it before it touches user
 * memory, and vfio_iova_dirty_bitmap() / vfio_dma_do_unmap() return without bitmap_clear(). So
 * after a fault at a shift the bits the shift carried past `nbits` stay, and a later read shows
 * them. `faulted` is given that tail before the EFAULT is thrown.
 */
export function updateUserBitmap(user: UserBitmap, nbits: number, bitOffset: number, pessimistic: boolean, tail: bigint, faulted?: (tail: bigint) => void): bigint {
  const W = Math.ceil(nbits / 64);
  const total = W + 1; // words of dma->bitmap
  const shift = bitOffset % 64;
  const copyOffset = Math.floor(bitOffset / 64);
  const kt = Math.floor(nbits / 64);
  const k0 = Math.max(0, kt - 1);
  const windowWords = total - k0;
  const windowBits = windowWords * 64;
  const lowBits = nbits - 64 * k0;
  // dma->bitmap from word k0 up, after bitmap_set() when pessimistic.
  let window = ((pessimistic ? ones(lowBits) : 0n) | (tail << BigInt(lowBits))) & ones(windowBits);
  const full = pessimistic ? (1n << 64n) - 1n : 0n;
  const wordOf = (value: bigint, index: number): bigint => (value >> BigInt(index * 64)) & ((1n << 64n) - 1n);
  const lim = shift === 0 ? W : Math.ceil((nbits + shift) / 64);
  let first: bigint | undefined;
  /** dma->bitmap from bit nbits up, as it stands (what stays when the copy faults). */
  const tailNow = (): bigint => (window >> BigInt(lowBits)) & ones(total * 64 - nbits);
  /** An EFAULT: dma->bitmap stays as it is now (update_user_bitmap() returns before bitmap_clear()). */
  const fault = (error: unknown): never => {
    faulted?.(tailNow());
    throw error;
  };
  if (shift !== 0) {
    // __bitmap_shift_left() first: words below lim shift, carrying from the word below; others stay.
    let shifted = 0n;
    for (let k = k0; k < total; k++) {
      let word: bigint;
      if (k < lim) {
        const below = k === k0 ? (k0 > 0 ? full : 0n) : wordOf(window, k - k0 - 1);
        word = ((wordOf(window, k - k0) << BigInt(shift)) | (k > 0 ? below >> BigInt(64 - shift) : 0n)) & ((1n << 64n) - 1n);
      } else {
        word = wordOf(window, k - k0);
      }
      shifted |= word << BigInt((k - k0) * 64);
    }
    window = shifted;
    // Then copy_from_user() of the user's word the dma's first bit lands in (EFAULT: the shift stays).
    let leftover = 0n;
    try {
      leftover = user.word(copyOffset);
    } catch (error) {
      fault(error);
    }
    // bitmap_or(.., shift) ORs the whole word in: word 0 of dma->bitmap.
    if (k0 === 0) window |= leftover;
    else first = ((full << BigInt(shift)) & ((1n << 64n) - 1n)) | leftover;
  }
  try {
    user.require(copyOffset, lim);
  } catch (error) {
    fault(error);
  }
  // The copy out: words 0..lim-1 of dma->bitmap at copyOffset.
  if (k0 > 0) {
    user.setWord(copyOffset, first ?? full);
    user.fillWords(copyOffset + 1, Math.min(k0, lim) - 1, pessimistic);
  }
  for (let k = k0; k < lim; k++) user.setWord(copyOffset + k, wordOf(window, k - k0));
  // bitmap_clear(dma->bitmap, 0, nbits): what stays is from bit nbits up.
  return (window >> BigInt(lowBits)) & ones(total * 64 - nbits);
}
