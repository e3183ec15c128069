// The blank-picture check must be able to fail: it is tried here on PNGs made in the test (blank,
// nearly blank, busy), written with every scanline filter, before the browser test relies on it.
import { crc32, deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { blankReason, decodePng, inkStats } from './png.js';

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Encodes samples (`channels` a pixel) as a PNG, row y filtered with filter `y % 5`. */
function encodePng(width: number, height: number, samples: Uint8Array, colourType: 0 | 2 | 3 | 4 | 6, extra: Buffer[] = []): Buffer {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colourType];
  const stride = width * channels;
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const filter = y % 5;
    raw[y * (stride + 1)] = filter;
    for (let x = 0; x < stride; x++) {
      const value = samples[y * stride + x]!;
      const left = x >= channels ? samples[y * stride + x - channels]! : 0;
      const up = y > 0 ? samples[(y - 1) * stride + x]! : 0;
      const upLeft = y > 0 && x >= channels ? samples[(y - 1) * stride + x - channels]! : 0;
      const predictor = [0, left, up, (left + up) >> 1, paeth(left, up, upLeft)][filter]!;
      raw[y * (stride + 1) + 1 + x] = (value - predictor) & 0xff;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = colourType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    ...extra,
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', new Uint8Array()),
  ]);
}

/** An RGB image, each pixel from `colour(x, y)`. */
function rgbImage(width: number, height: number, colour: (x: number, y: number) => [number, number, number]): Uint8Array {
  const samples = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) samples.set(colour(x, y), (y * width + x) * 3);
  return samples;
}

describe('decodePng', () => {
  it('round-trips RGB pixels through all five scanline filters', () => {
    const samples = rgbImage(37, 23, (x, y) => [(x * 7) & 0xff, (y * 11) & 0xff, (x * y) & 0xff]);
    const png = decodePng(encodePng(37, 23, samples, 2));
    expect([png.width, png.height]).toEqual([37, 23]);
    for (let i = 0; i < 37 * 23; i++) expect([...png.rgba.subarray(i * 4, i * 4 + 4)]).toEqual([samples[i * 3], samples[i * 3 + 1], samples[i * 3 + 2], 255]);
  });

  it('reads RGBA, greyscale, grey+alpha and palette images', () => {
    const rgba = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...decodePng(encodePng(2, 1, rgba, 6)).rgba]).toEqual([...rgba]);
    expect([...decodePng(encodePng(2, 1, new Uint8Array([9, 200]), 0)).rgba]).toEqual([9, 9, 9, 255, 200, 200, 200, 255]);
    expect([...decodePng(encodePng(1, 1, new Uint8Array([50, 60]), 4)).rgba]).toEqual([50, 50, 50, 60]);
    const plte = chunk('PLTE', new Uint8Array([10, 20, 30, 40, 50, 60]));
    const trns = chunk('tRNS', new Uint8Array([128]));
    expect([...decodePng(encodePng(2, 1, new Uint8Array([1, 0]), 3, [plte, trns])).rgba]).toEqual([40, 50, 60, 255, 10, 20, 30, 128]);
  });

  it('refuses what is not a PNG', () => {
    expect(() => decodePng(Buffer.from('GIF89a not a png at all'))).toThrow(/signature/);
  });
});

describe('blankReason', () => {
  it('calls a one-colour picture blank', () => {
    const white = encodePng(200, 120, rgbImage(200, 120, () => [255, 255, 255]), 2);
    expect(inkStats(decodePng(white))).toEqual({ colours: 1, background: '#ffffffff', ink: 0 });
    expect(blankReason(white)).toMatch(/blank: only 1 distinct colour.*0\.00% of pixels/);
  });

  it('calls a picture with a speck of many colours blank', () => {
    // 16 colours, but on 16 pixels of 24,000: no real picture.
    const speck = encodePng(200, 120, rgbImage(200, 120, (x, y) => (y === 0 && x < 16 ? [x * 16, 0, 0] : [255, 255, 255])), 2);
    expect(blankReason(speck)).toMatch(/differ from the background #ffffffff/);
    expect(blankReason(speck)).not.toMatch(/distinct colour/);
  });

  it('calls a two-colour half-and-half picture blank (too few colours for text and shapes)', () => {
    const halves = encodePng(100, 100, rgbImage(100, 100, (x) => (x < 50 ? [0, 0, 0] : [255, 255, 255])), 2);
    expect(blankReason(halves)).toMatch(/only 2 distinct colour/);
  });

  it('accepts a busy picture', () => {
    const busy = encodePng(200, 120, rgbImage(200, 120, (x, y) => (x > 20 && x < 180 && y > 10 && y < 60 ? [x, y * 2, 128] : [255, 255, 255])), 2);
    expect(blankReason(busy)).toBeUndefined();
  });
});
