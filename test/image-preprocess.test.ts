import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import { decodeRgb } from '../src/model/image-decode.js';
import { normalizeToChw, planResize, preprocessBatch, preprocessImage } from '../src/model/image-preprocess.js';
import { OPENAI_MEAN, OPENAI_STD, type PreprocessConfig } from '../src/model/manifest.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const edgeDir = sharedPath('photos', 'edge');
const skimageDir = sharedPath('photos', 'skimage');

const clip = (size = 224, resizeMode: PreprocessConfig['resizeMode'] = 'shortest'): PreprocessConfig => ({
  size,
  resizeMode,
  interpolation: 'bicubic',
  mean: OPENAI_MEAN,
  std: OPENAI_STD,
});

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-image-preprocess-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** CHW normalised floats back to HWC bytes (pixel units), so comparisons read as levels 0–255. */
function denormalize(chw: Float32Array, config: PreprocessConfig, offset = 0): Float64Array {
  const plane = config.size * config.size;
  const out = new Float64Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) out[i * 3 + c] = (chw[offset + c * plane + i]! * config.std[c]! + config.mean[c]!) * 255;
  }
  return out;
}

function pixelAt(hwc: Float64Array, size: number, x: number, y: number): number[] {
  const i = (y * size + x) * 3;
  return [hwc[i]!, hwc[i + 1]!, hwc[i + 2]!].map((v) => Math.round(v) || 0); // no -0
}

function diffStats(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number } {
  expect(a.length).toBe(b.length);
  let max = 0, sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    max = Math.max(max, d);
  }
  return { max, mean: sum / a.length };
}

/** Vertical bands of solid colour, left to right, as a lossless PNG. */
async function bands(width: number, height: number, colours: number[][]): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(colours[Math.floor((x * colours.length) / width)]!, (y * width + x) * 3);
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

// ---- An independent reference: Pillow's resample (Resample.c) for BICUBIC, a = -0.5, support
// widened by the scale when downscaling, horizontal pass then vertical, 8-bit between passes. ----
function pilBicubic(x: number): number {
  const a = -0.5;
  x = Math.abs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

function pilCoefficients(inSize: number, outSize: number): Array<{ start: number; weights: number[] }> {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  return Array.from({ length: outSize }, (_, xx) => {
    const center = (xx + 0.5) * scale;
    const start = Math.max(Math.trunc(center - support + 0.5), 0);
    const end = Math.min(Math.trunc(center + support + 0.5), inSize);
    const weights: number[] = [];
    for (let x = start; x < end; x++) weights.push(pilBicubic((x - center + 0.5) / filterScale));
    const total = weights.reduce((s, w) => s + w, 0);
    return { start, weights: weights.map((w) => w / total) };
  });
}

function pilResize(src: Uint8Array, w: number, h: number, W: number, H: number): Uint8Array {
  const clamp = (v: number) => Math.min(255, Math.max(0, Math.round(v)));
  let cur = src;
  let cw = w;
  if (W !== w) {
    const cs = pilCoefficients(w, W);
    const out = new Uint8Array(W * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < W; x++) {
        const { start, weights } = cs[x]!;
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let k = 0; k < weights.length; k++) s += weights[k]! * cur[(y * w + start + k) * 3 + c]!;
          out[(y * W + x) * 3 + c] = clamp(s);
        }
      }
    }
    cur = out;
    cw = W;
  }
  if (H !== h) {
    const cs = pilCoefficients(h, H);
    const out = new Uint8Array(cw * H * 3);
    for (let y = 0; y < H; y++) {
      const { start, weights } = cs[y]!;
      for (let x = 0; x < cw; x++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let k = 0; k < weights.length; k++) s += weights[k]! * cur[((start + k) * cw + x) * 3 + c]!;
          out[(y * cw + x) * 3 + c] = clamp(s);
        }
      }
    }
    cur = out;
  }
  return cur;
}

/** OpenAI CLIP's torchvision pipeline on full-size pixels, in pixel units (HWC). */
async function referencePixels(input: string | Buffer, size: number): Promise<Uint8Array> {
  const full = await decodeRgb(input);
  const { width: w, height: h } = full;
  const W = w <= h ? size : Math.trunc((size * w) / h);
  const H = w <= h ? Math.trunc((size * h) / w) : size;
  const resized = pilResize(full.data, w, h, W, H);
  const pyRound = (v: number) => (v - Math.floor(v) === 0.5 ? (Math.floor(v) % 2 === 0 ? Math.floor(v) : Math.ceil(v)) : Math.round(v));
  const left = pyRound((W - size) / 2);
  const top = pyRound((H - size) / 2);
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) out.set(resized.subarray(((top + y) * W + left) * 3, ((top + y) * W + left + size) * 3), y * size * 3);
  return out;
}

describe('planResize: torchvision geometry', () => {
  it('shortest side to size, long side truncated, crop centred with Python rounding', () => {
    expect(planResize(1680, 1050, clip())).toEqual({
      resize: { width: 358, height: 224 },
      crop: { left: 67, top: 0, width: 224, height: 224 },
    });
    // 224 * 1000 / 333 = 672.67 → 672 (int(), not round()).
    expect(planResize(1000, 333, clip()).resize).toEqual({ width: 672, height: 224 });
    // Leftover 227 → 113.5 rounds to even 114; leftover 225 → 112.5 rounds to even 112.
    expect(planResize(327, 100, clip(100)).crop.left).toBe(114);
    expect(planResize(325, 100, clip(100)).crop.left).toBe(112);
    expect(planResize(100, 327, clip(100)).crop).toEqual({ left: 0, top: 114, width: 100, height: 100 });
    expect(planResize(50, 50, clip(224))).toEqual({ resize: { width: 224, height: 224 }, crop: { left: 0, top: 0, width: 224, height: 224 } });
  });

  it('squash resizes both sides to size and cuts nothing', () => {
    expect(planResize(1680, 1050, clip(224, 'squash'))).toEqual({
      resize: { width: 224, height: 224 },
      crop: { left: 0, top: 0, width: 224, height: 224 },
    });
  });
});

describe('preprocessImage', () => {
  it('normalises exactly: (v / 255 - mean) / std per channel on a solid colour', async () => {
    const colour = [10, 128, 250];
    const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: { r: 10, g: 128, b: 250 } } }).png().toBuffer();
    const config = clip(32);
    const { pixels } = await preprocessImage(png, config);
    expect(pixels.length).toBe(3 * 32 * 32);
    for (let c = 0; c < 3; c++) {
      const expected = Math.fround((colour[c]! / 255 - OPENAI_MEAN[c]!) / OPENAI_STD[c]!);
      const plane = pixels.subarray(c * 32 * 32, (c + 1) * 32 * 32);
      expect(plane.every((v) => v === expected), `channel ${c}`).toBe(true);
    }
  });

  it('centre crop takes exactly the middle columns (no resize, odd leftover)', async () => {
    // Each column stores its own x (R = x & 255, G = x >> 8), so the crop's first column tells its offset.
    // (401 - 100) / 2 = 150.5 → 150 and (403 - 100) / 2 = 151.5 → 152: Python rounds halves to even,
    // which neither floor nor Math.round reproduces for both.
    for (const [width, left] of [[401, 150], [403, 152]] as const) {
      const height = 100;
      const data = Buffer.alloc(width * height * 3);
      for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data.set([x & 255, x >> 8, 0], (y * width + x) * 3);
      const png = await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
      const config = clip(100);
      const hwc = denormalize((await preprocessImage(png, config)).pixels, config);
      const columnX = (x: number) => {
        const [r, g] = pixelAt(hwc, 100, x, 50);
        return r! + 256 * g!;
      };
      expect([columnX(0), columnX(99)], `width ${width}`).toEqual([left, left + 99]);
    }
  });

  it('centre crop after a resize is centred on the middle of the image', async () => {
    // 400×100, left half red, right half blue → 200×50 → crop [75, 125): the boundary at 100 lands
    // between crop columns 24 and 25. A crop off by one column moves it and fails here.
    const png = await bands(400, 100, [[255, 0, 0], [0, 0, 255]]);
    const config = clip(50);
    const hwc = denormalize((await preprocessImage(png, config)).pixels, config);
    const [r24, , b24] = pixelAt(hwc, 50, 24, 25);
    const [r25, , b25] = pixelAt(hwc, 50, 25, 25);
    expect(r24!).toBeGreaterThan(b24!);
    expect(b25!).toBeGreaterThan(r25!);
    expect(pixelAt(hwc, 50, 0, 25)).toEqual([255, 0, 0]);
    expect(pixelAt(hwc, 50, 49, 25)).toEqual([0, 0, 255]);
  });

  it('squash keeps the whole image; shortest crops its sides', async () => {
    const colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
    const png = await bands(400, 100, colours);
    const squash = clip(32, 'squash');
    const sq = denormalize((await preprocessImage(png, squash)).pixels, squash);
    expect([2, 10, 21, 29].map((x) => pixelAt(sq, 32, x, 16))).toEqual(colours);
    const shortest = clip(32);
    const sh = denormalize((await preprocessImage(png, shortest)).pixels, shortest);
    expect([pixelAt(sh, 32, 2, 16), pixelAt(sh, 32, 29, 16)]).toEqual([colours[1], colours[2]]);
  });

  it('matches a Pillow BICUBIC reference within a fraction of a level (generated image)', async () => {
    // Smooth gradients plus hard edges, 640×427 → 335×224, crop 224².
    const width = 640, height = 427;
    const data = Buffer.alloc(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const edge = (Math.floor(x / 37) + Math.floor(y / 29)) % 2 === 0 ? 60 : 0;
        data.set([(x * 255) / width, 128 + 100 * Math.sin(x / 9 + y / 13), edge + (y * 190) / height], (y * width + x) * 3);
      }
    }
    const png = await sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
    const config = clip();
    const ours = denormalize((await preprocessImage(png, config)).pixels, config);
    const stats = diffStats(ours, await referencePixels(png, 224));
    // Measured: mean 0.05, max 2 (rounding between the two passes).
    expect(stats.mean).toBeLessThan(0.2);
    expect(stats.max).toBeLessThanOrEqual(3);
    // A bilinear model config gives a clearly different picture: the check can tell kernels apart.
    const bilinear = denormalize((await preprocessImage(png, { ...config, interpolation: 'bilinear' })).pixels, config);
    expect(diffStats(bilinear, await referencePixels(png, 224)).mean).toBeGreaterThan(2 * stats.mean);
  });

  it('returns a thumbnail from the same pass when asked', async () => {
    const png = await bands(900, 300, [[255, 0, 0], [0, 0, 255]]);
    const out = await preprocessImage(png, clip(), { thumbnail: true });
    expect(out.info).toMatchObject({ format: 'png', width: 900, height: 300 });
    const meta = await sharp(out.thumbnail!).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 320, 107]);
    expect((await preprocessImage(png, clip())).thumbnail).toBeUndefined();
  });

  it('rejects a bad config with INVALID_ARGUMENT', async () => {
    const png = await bands(10, 10, [[0, 0, 0]]);
    for (const bad of [
      { ...clip(), size: 0 },
      { ...clip(), size: 10.5 },
      { ...clip(), std: [1, 0, 1] as const },
      { ...clip(), resizeMode: 'pad' as never },
      { ...clip(), interpolation: 'lanczos' as never },
    ]) {
      await expect(preprocessImage(png, bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
  });

  it('normalizeToChw refuses a buffer of the wrong size', () => {
    expect(() => normalizeToChw(new Uint8Array(10), clip(4), new Float32Array(48))).toThrow(ClipdexError);
  });
});

describe('preprocessBatch', () => {
  it('lays the tensor out as [B, 3, S, S] with channel planes', async () => {
    const S = 8;
    const config = clip(S);
    const red = await sharp({ create: { width: 20, height: 12, channels: 3, background: '#ff0000' } }).png().toBuffer();
    const blue = await sharp({ create: { width: 12, height: 20, channels: 3, background: '#0000ff' } }).jpeg({ quality: 100 }).toBuffer();
    const { tensor, dims, items } = await preprocessBatch([red, blue], config);
    expect(dims).toEqual([2, 3, S, S]);
    expect(tensor.length).toBe(2 * 3 * S * S);
    expect(items.map((i) => i.ok)).toEqual([true, true]);
    const norm = (v: number, c: number) => Math.fround((v / 255 - OPENAI_MEAN[c]!) / OPENAI_STD[c]!);
    const plane = (b: number, c: number) => tensor.subarray((b * 3 + c) * S * S, (b * 3 + c + 1) * S * S);
    // Pure red: the whole first plane is 255, the other two 0.
    expect(plane(0, 0).every((v) => v === norm(255, 0))).toBe(true);
    expect(plane(0, 1).every((v) => v === norm(0, 1))).toBe(true);
    expect(plane(0, 2).every((v) => v === norm(0, 2))).toBe(true);
    // Blue (JPEG, so within a level or two): only the third plane is high.
    const level = (v: number, c: number) => (v * OPENAI_STD[c]! + OPENAI_MEAN[c]!) * 255;
    expect(Math.min(...plane(1, 2).map((v) => level(v, 2)))).toBeGreaterThan(250);
    expect(Math.max(...plane(1, 0).map((v) => level(v, 0)))).toBeLessThan(5);
  });

  it('one bad file fails only its own item; the others match single-image preprocessing', async () => {
    const config = clip(16);
    const good = join(tmp, 'good.png');
    await writeFile(good, await bands(64, 48, [[250, 10, 10], [10, 250, 10], [10, 10, 250]]));
    const text = join(tmp, 'notes.jpg');
    await writeFile(text, 'shopping list: milk, eggs');
    const goodBuffer = await bands(30, 60, [[0, 0, 0], [255, 255, 255]]);
    const inputs = [good, text, join(tmp, 'gone.png'), Buffer.alloc(0), goodBuffer];
    const { tensor, items } = await preprocessBatch(inputs, config, { concurrency: 3 });

    expect(items.map((i) => i.ok)).toEqual([true, false, false, false, true]);
    expect(items.map((i) => (i.ok ? null : i.error.code))).toEqual([null, 'NOT_AN_IMAGE', 'FILE_NOT_FOUND', 'EMPTY_FILE', null]);
    const bad = items[1]!;
    expect(!bad.ok && bad.error.message).toContain(text);
    expect(!items[3]!.ok && items[3]!.error.message).toContain('#3');

    const plane = 3 * 16 * 16;
    expect([...tensor.subarray(0, plane)]).toEqual([...(await preprocessImage(good, config)).pixels]);
    expect([...tensor.subarray(4 * plane)]).toEqual([...(await preprocessImage(goodBuffer, config)).pixels]);
    for (const i of [1, 2, 3]) expect(tensor.subarray(i * plane, (i + 1) * plane).every((v) => v === 0)).toBe(true);
    expect(items[0]!.ok && items[0]!.info).toMatchObject({ width: 64, height: 48, format: 'png' });
  });

  it('an empty batch is an empty tensor', async () => {
    expect(await preprocessBatch([], clip(8))).toEqual({ tensor: new Float32Array(0), dims: [0, 3, 8, 8], items: [] });
  });
});

describe.skipIf(!edgeDir)(`real photos ${edgeDir ? '' : NEEDS_SHARED}`, () => {
  const edge = (f: string) => join(edgeDir!, f);

  it('all nine orientation_*.jpg give the same tensor (within the JPEG noise of the files)', async () => {
    const config = clip();
    const ref = denormalize((await preprocessImage(edge('orientation_0.jpg'), config)).pixels, config);
    for (let k = 1; k <= 8; k++) {
      const file = edge(`orientation_${k}.jpg`);
      const out = denormalize((await preprocessImage(file, config)).pixels, config);
      // The files are separately encoded JPEGs that differ by up to 4 levels at full size
      // (see image-decode.test.ts); the lossless orientation test there is exact.
      const stats = diffStats(out, ref);
      expect(stats.max, file).toBeLessThanOrEqual(6);
      expect(stats.mean, file).toBeLessThan(0.5);
    }
  });

  it('a batch of every edge file: the broken ones fail alone', async () => {
    const files = ['Dune.jpg', 'truncated.jpg', 'chelsea.heic', 'not-an-image.jpg', 'coffee.avif', 'empty.png', 'logo.png'];
    const { items } = await preprocessBatch(files.map(edge), clip());
    expect(items.map((i) => (i.ok ? 'ok' : i.error.code))).toEqual([
      'ok',
      'DECODE_FAILED',
      'ok',
      'NOT_AN_IMAGE',
      'ok',
      'EMPTY_FILE',
      'ok',
    ]);
  });

  it('big JPEGs with shrink-on-load stay close to Pillow on the full-size image', async () => {
    for (const f of ['Storm.jpg', 'TwoWings.jpg', 'Dune.jpg']) {
      const config = clip();
      const ours = denormalize((await preprocessImage(edge(f), config)).pixels, config);
      const stats = diffStats(ours, await referencePixels(edge(f), 224));
      // Measured: mean 0.2–0.7 levels; DCT-domain shrinking makes a few chroma edges differ more.
      expect(stats.mean, f).toBeLessThan(1);
    }
  });
});

describe.skipIf(!skimageDir)(`CLIP notebook images ${skimageDir ? '' : NEEDS_SHARED}`, () => {
  it('match the Pillow BICUBIC reference closely', async () => {
    for (const f of ['chelsea.png', 'rocket.jpg', 'astronaut.png']) {
      const config = clip();
      const path = join(skimageDir!, f);
      const ours = denormalize((await preprocessImage(path, config)).pixels, config);
      const stats = diffStats(ours, await referencePixels(path, 224));
      expect(stats.mean, f).toBeLessThan(0.5);
    }
  });
});
