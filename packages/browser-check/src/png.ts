/**
 * A small PNG reader, enough for Chromium's screenshots (8-bit greyscale, RGB, palette, grey+alpha
 * or RGBA, not interlaced), and a test for "this picture shows something": a blank, a one-colour
 * or an almost empty screenshot is what a broken page looks like.
 */
import { inflateSync } from 'node:zlib';

/** A decoded PNG: RGBA, 4 bytes a pixel, row by row. */
export interface DecodedPng {
  readonly width: number;
  readonly height: number;
  readonly rgba: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Samples a pixel for each colour type. */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Decodes a PNG file's bytes. Throws on anything it does not read (16-bit, interlaced, corrupt). */
export function decodePng(file: Uint8Array): DecodedPng {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < 8 || !bytes.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG: bad signature');
  let width = 0;
  let height = 0;
  let bitDepth = 0;
  let colourType = -1;
  let palette: Buffer | undefined;
  let transparency: Buffer | undefined;
  const idat: Buffer[] = [];
  for (let at = 8; at < bytes.length; ) {
    if (at + 12 > bytes.length) throw new Error('not a PNG: truncated chunk');
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (data.length !== length) throw new Error(`not a PNG: truncated ${type} chunk`);
    at += 12 + length;
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      bitDepth = data[8]!;
      colourType = data[9]!;
      if (data[12] !== 0) throw new Error('interlaced PNGs are not supported');
    } else if (type === 'PLTE') palette = data;
    else if (type === 'tRNS') transparency = data;
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
  }
  const channels = CHANNELS[colourType];
  if (channels === undefined || width === 0 || height === 0) throw new Error('not a PNG: no valid IHDR');
  if (bitDepth !== 8) throw new Error(`${bitDepth}-bit PNGs are not supported (only 8-bit)`);
  if (colourType === 3 && palette === undefined) throw new Error('not a PNG: palette image without PLTE');

  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new Error(`not a PNG: ${raw.length} bytes of image data, ${height * (stride + 1)} needed`);
  const rgba = new Uint8Array(width * height * 4);
  let previous = new Uint8Array(stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const current = new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? current[x - channels]! : 0;
      const up = previous[x]!;
      const upLeft = x >= channels ? previous[x - channels]! : 0;
      let predictor: number;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = left;
          break;
        case 2:
          predictor = up;
          break;
        case 3:
          predictor = (left + up) >> 1;
          break;
        case 4:
          predictor = paeth(left, up, upLeft);
          break;
        default:
          throw new Error(`not a PNG: filter type ${filter} on row ${y}`);
      }
      current[x] = (line[x]! + predictor) & 0xff;
    }
    for (let x = 0; x < width; x++) {
      const out = (y * width + x) * 4;
      const sample = current.subarray(x * channels, (x + 1) * channels);
      if (colourType === 0 || colourType === 4) {
        rgba[out] = rgba[out + 1] = rgba[out + 2] = sample[0]!;
        rgba[out + 3] = colourType === 4 ? sample[1]! : 255;
      } else if (colourType === 3) {
        const index = sample[0]!;
        rgba[out] = palette![index * 3] ?? 0;
        rgba[out + 1] = palette![index * 3 + 1] ?? 0;
        rgba[out + 2] = palette![index * 3 + 2] ?? 0;
        rgba[out + 3] = transparency?.[index] ?? 255;
      } else {
        rgba[out] = sample[0]!;
        rgba[out + 1] = sample[1]!;
        rgba[out + 2] = sample[2]!;
        rgba[out + 3] = colourType === 6 ? sample[3]! : 255;
      }
    }
    previous = current;
  }
  return { width, height, rgba };
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** What {@link inkStats} measures. */
export interface InkStats {
  /** Distinct RGBA colours. */
  readonly colours: number;
  /** The most common colour, as `#rrggbbaa`: the background. */
  readonly background: string;
  /** The share (0 to 1) of pixels that are not the background colour. */
  readonly ink: number;
}

/** Counts colours and the share of non-background pixels. */
export function inkStats(png: DecodedPng): InkStats {
  const counts = new Map<number, number>();
  const pixels = png.width * png.height;
  const view = new DataView(png.rgba.buffer, png.rgba.byteOffset, png.rgba.byteLength);
  for (let i = 0; i < pixels; i++) {
    const colour = view.getUint32(i * 4);
    counts.set(colour, (counts.get(colour) ?? 0) + 1);
  }
  let background = 0;
  let most = 0;
  for (const [colour, count] of counts) {
    if (count > most) {
      most = count;
      background = colour;
    }
  }
  return { colours: counts.size, background: `#${background.toString(16).padStart(8, '0')}`, ink: pixels === 0 ? 0 : (pixels - most) / pixels };
}

/** The thresholds of {@link blankReason}: a real picture has more colours and more ink than this. */
export const MIN_COLOURS = 8;
export const MIN_INK = 0.02;

/**
 * Why the PNG looks blank, or `undefined` when it shows something: at least {@link MIN_COLOURS}
 * distinct colours and at least {@link MIN_INK} of its pixels not the background colour.
 */
export function blankReason(file: Uint8Array): string | undefined {
  const stats = inkStats(decodePng(file));
  const problems: string[] = [];
  if (stats.colours < MIN_COLOURS) problems.push(`only ${stats.colours} distinct colour(s), fewer than ${MIN_COLOURS}`);
  if (stats.ink < MIN_INK) problems.push(`only ${(stats.ink * 100).toFixed(2)}% of pixels differ from the background ${stats.background}, under ${MIN_INK * 100}%`);
  return problems.length === 0 ? undefined : `the picture looks blank: ${problems.join('; ')}`;
}
