/**
 * CLIP image preprocessing: decode → resize (shortest side + centre crop, or squash) → /255 →
 * (x - mean) / std → CHW float32, one image or a batch laid out as [B, 3, S, S].
 *
 * The geometry follows torchvision/OpenAI CLIP exactly (integer sizes and crop offsets), and the
 * resampling uses libvips' kernels, whose cubic is the same a = -0.5 Keys/Catmull-Rom filter as
 * PIL's BICUBIC and is likewise widened when downscaling (antialiased).
 */
import { availableParallelism } from 'node:os';
import { ClipdexError, errorMessage } from '../errors.js';
import type { Interpolation, PreprocessConfig } from './manifest.js';
import {
  DEFAULT_THUMBNAIL_SIZE,
  openImage,
  type DecodedImage,
  type DecodeOptions,
  type ImageInfo,
  type ImageInput,
  type Region,
  type ResizeKernel,
  type ThumbnailOptions,
} from './image-decode.js';

export interface ResizePlan {
  /** Size the upright image is resized to. */
  resize: { width: number; height: number };
  /** The size × size square kept from the resized image. */
  crop: Region;
}

/** Python's round(): halves go to the even neighbour. torchvision's CenterCrop uses it. */
function pythonRound(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return Math.round(x);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * 'shortest': torchvision Resize(size) makes the short side `size` and the long side
 * int(size * long / short) (truncated), then CenterCrop takes top = round((h - size) / 2).
 * (Hugging Face's CLIPImageProcessor floors the offset instead: the two differ by one pixel
 * only when the leftover is odd and its half rounds up to even.)
 * 'squash': both sides to `size`, nothing cut.
 */
export function planResize(width: number, height: number, config: Pick<PreprocessConfig, 'size' | 'resizeMode'>): ResizePlan {
  const s = config.size;
  if (config.resizeMode === 'squash') {
    return { resize: { width: s, height: s }, crop: { left: 0, top: 0, width: s, height: s } };
  }
  const w = width <= height ? s : Math.trunc((s * width) / height);
  const h = width <= height ? Math.trunc((s * height) / width) : s;
  return {
    resize: { width: w, height: h },
    crop: { left: pythonRound((w - s) / 2), top: pythonRound((h - s) / 2), width: s, height: s },
  };
}

const KERNELS: Record<Interpolation, ResizeKernel> = { bicubic: 'cubic', bilinear: 'linear', nearest: 'nearest' };

export function kernelFor(interpolation: Interpolation): ResizeKernel {
  const kernel = KERNELS[interpolation];
  if (!kernel) throw new ClipdexError('INVALID_ARGUMENT', `Unknown interpolation '${String(interpolation)}'`);
  return kernel;
}

function checkConfig(config: PreprocessConfig): void {
  const bad = (why: string) => new ClipdexError('INVALID_ARGUMENT', `Invalid preprocessing config: ${why}`, { details: { config } });
  if (!Number.isInteger(config.size) || config.size <= 0) throw bad(`size must be a positive integer, got ${config.size}`);
  if (config.resizeMode !== 'shortest' && config.resizeMode !== 'squash') throw bad(`unknown resizeMode '${String(config.resizeMode)}'`);
  kernelFor(config.interpolation);
  if (config.mean?.length !== 3 || !config.mean.every(Number.isFinite)) throw bad('mean must be 3 finite numbers');
  if (config.std?.length !== 3 || !config.std.every((v) => Number.isFinite(v) && v !== 0)) throw bad('std must be 3 finite non-zero numbers');
}

/** Per channel, the normalised value of each byte: (v / 255 - mean) / std, computed once. */
function lookupTables(config: PreprocessConfig): Float32Array[] {
  return [0, 1, 2].map((c) => {
    const lut = new Float32Array(256);
    for (let v = 0; v < 256; v++) lut[v] = (v / 255 - config.mean[c]!) / config.std[c]!;
    return lut;
  });
}

/** Packed RGB (HWC) bytes → normalised CHW float32, written at `out[offset…]`. */
export function normalizeToChw(rgb: Uint8Array, config: PreprocessConfig, out: Float32Array, offset = 0, luts = lookupTables(config)): void {
  const plane = config.size * config.size;
  if (rgb.length !== plane * 3) {
    throw new ClipdexError('INVALID_ARGUMENT', `Expected ${plane * 3} RGB bytes for ${config.size}², got ${rgb.length}`);
  }
  const [r, g, b] = luts as [Float32Array, Float32Array, Float32Array];
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    out[offset + i] = r[rgb[p]!]!;
    out[offset + plane + i] = g[rgb[p + 1]!]!;
    out[offset + 2 * plane + i] = b[rgb[p + 2]!]!;
  }
}

export interface PreprocessOptions extends DecodeOptions {
  /** Also make a display thumbnail from the same decoded pixels (true: defaults, 320 px WebP). */
  thumbnail?: boolean | ThumbnailOptions;
  /**
   * 'once' (default): when more than the model input is rendered, the file is decoded once for all renders
   * (DecodedImage.decodeOnce). 'per-render': each render decodes the file itself, the path before issue 19,
   * kept so that bench:ingest can measure both in one run.
   */
  decode?: DecodeMode;
  /** See DecodeOnceRequest.reserve: where the single decode's pixels are counted (ingest's read budget). */
  reserveDecoded?: (bytes: number) => (() => void) | null;
}

export type DecodeMode = 'once' | 'per-render';

/** The thumbnail options `thumbnail` asks for, or undefined for none. */
export function thumbnailOptions(thumbnail: boolean | ThumbnailOptions | undefined): ThumbnailOptions | undefined {
  return thumbnail === true ? {} : thumbnail || undefined;
}

/**
 * Opens `input` for the model input plus the renders in `boxes` (each the whole picture, longest side at
 * most maxSide): with any box, and unless `decode` is 'per-render', its pixels are decoded once for all.
 */
export async function openForRenders(
  input: ImageInput,
  config: PreprocessConfig,
  options: PreprocessOptions,
  boxes: ReadonlyArray<{ maxSide: number; kernel?: ResizeKernel }>,
): Promise<{ image: DecodedImage; plan: ResizePlan }> {
  const opened = await openImage(input, options);
  const plan = planResize(opened.info.width, opened.info.height, config);
  // One render alone decodes once anyway, streamed, with no raw copy in between.
  if (boxes.length === 0 || options.decode === 'per-render') return { image: opened, plan };
  const request = options.reserveDecoded ? { resize: plan.resize, boxes, reserve: options.reserveDecoded } : { resize: plan.resize, boxes };
  return { image: await opened.decodeOnce(request), plan };
}

/** The box a thumbnail needs of decodeOnce's pixels. */
export function thumbnailBox(thumb: ThumbnailOptions): { maxSide: number } {
  return { maxSide: thumb.size ?? DEFAULT_THUMBNAIL_SIZE };
}

export interface PreprocessedImage {
  /** [3, size, size] normalised CHW. */
  pixels: Float32Array;
  info: ImageInfo;
  thumbnail?: Buffer;
  /** Times the file's pixels were decoded to make this (1 unless `decode` is 'per-render'). */
  decodes: number;
}

async function preprocessInto(
  input: ImageInput,
  config: PreprocessConfig,
  out: Float32Array,
  offset: number,
  options: PreprocessOptions,
  luts: Float32Array[],
): Promise<Omit<PreprocessedImage, 'pixels'>> {
  const thumbOptions = thumbnailOptions(options.thumbnail);
  const { image, plan } = await openForRenders(input, config, options, thumbOptions ? [thumbnailBox(thumbOptions)] : []);
  const kernel = kernelFor(config.interpolation);
  // Both renders start together; libvips runs them on its own threads. The decoded pixels go once both are made.
  const [rgb, thumbnail] = await Promise.all([
    image.rgb({ resize: { ...plan.resize, kernel }, extract: plan.crop }),
    thumbOptions ? image.thumbnail(thumbOptions) : undefined,
  ]).finally(() => image.release());
  normalizeToChw(rgb.data, config, out, offset, luts);
  const decodes = image.decodes;
  return thumbnail ? { info: image.info, thumbnail, decodes } : { info: image.info, decodes };
}

/** One image → [3, S, S] model input (and optionally its thumbnail). */
export async function preprocessImage(
  input: ImageInput,
  config: PreprocessConfig,
  options: PreprocessOptions = {},
): Promise<PreprocessedImage> {
  checkConfig(config);
  const pixels = new Float32Array(3 * config.size * config.size);
  const rest = await preprocessInto(input, config, pixels, 0, options, lookupTables(config));
  return { pixels, ...rest };
}

export type BatchItem =
  | { ok: true; info: ImageInfo; thumbnail?: Buffer }
  | { ok: false; error: ClipdexError };

export interface PreprocessedBatch {
  /** [B, 3, S, S]; row i belongs to inputs[i]; rows of failed items are zeros. */
  tensor: Float32Array;
  dims: [number, 3, number, number];
  /** One entry per input, in input order. */
  items: BatchItem[];
}

export interface BatchOptions extends PreprocessOptions {
  /** Images decoded at once. Default: the number of CPUs, at most 4 (each holds a decoded image). */
  concurrency?: number;
}

function asClipdexError(err: unknown, input: ImageInput, index: number): ClipdexError {
  if (err instanceof ClipdexError) return err;
  const name = typeof input === 'string' ? input : `<buffer #${index}>`;
  return new ClipdexError('DECODE_FAILED', `Cannot preprocess ${name}: ${errorMessage(err)}`, { cause: err, details: { file: name } });
}

/** Many images → one [B, 3, S, S] tensor. A bad file fails only its own item. */
export async function preprocessBatch(
  inputs: readonly ImageInput[],
  config: PreprocessConfig,
  options: BatchOptions = {},
): Promise<PreprocessedBatch> {
  checkConfig(config);
  const plane = 3 * config.size * config.size;
  const tensor = new Float32Array(inputs.length * plane);
  const items = new Array<BatchItem>(inputs.length);
  const luts = lookupTables(config);
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? Math.min(4, availableParallelism())));

  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < inputs.length; i = next++) {
      const input = inputs[i]!;
      try {
        // Buffers have no name of their own: their index in the batch names them in errors.
        const itemOptions = typeof input === 'string' ? options : { ...options, name: `<buffer #${i}>` };
        items[i] = { ok: true, ...(await preprocessInto(input, config, tensor, i * plane, itemOptions, luts)) };
      } catch (err) {
        tensor.fill(0, i * plane, (i + 1) * plane);
        items[i] = { ok: false, error: asClipdexError(err, input, i) };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
  return { tensor, dims: [inputs.length, 3, config.size, config.size], items };
}
