/**
 * Image decoding: any supported file or buffer → upright 8-bit sRGB pixels, resized in the same
 * libvips pipeline that decodes them (so big JPEGs use shrink-on-load instead of being decoded
 * at full size), plus a cheap header probe and an optional WebP thumbnail from the same source.
 *
 * sharp/libvips does the work for JPEG, PNG, WebP, GIF (first frame), TIFF (first page) and AVIF;
 * HEIC falls back to heic-decode (WASM) and BMP to a small reader of our own, whose raw pixels
 * then go through the same sharp pipeline.
 *
 * When several renders are made of one picture (ingest: model input, thumbnail, OCR), decodeOnce decodes
 * the file once into raw pixels in memory and each render resizes those, instead of each decoding the file.
 */
import sharp, { type Metadata, type Sharp } from 'sharp';
import { ClipdexError } from '../errors.js';
import { decodeBmp, readBmpHeader } from './image-bmp.js';
import { fromSharpError, tooLarge } from './image-errors.js';
import type { ImageFormat } from './image-format.js';
import { decodeHeic } from './image-heic.js';
import { openImageSource, type ImageInput, type ImageSource } from './image-source.js';

export type { ImageFormat } from './image-format.js';
export type { ImageInput } from './image-source.js';

/** libvips strictness, least to most: see sharp's `failOn`. */
export type FailOn = 'none' | 'truncated' | 'error' | 'warning';

export interface DecodeOptions {
  /** Refuse images whose header declares more pixels than this (decompression bombs). */
  maxPixels?: number;
  /**
   * 'error' (default) rejects truncated and corrupt data instead of returning grey rows, but
   * tolerates libjpeg warnings such as stray bytes between markers, which many camera files have.
   */
  failOn?: FailOn;
  /** The name errors use for a Buffer input (paths name themselves). */
  name?: string;
}

export const DEFAULT_MAX_PIXELS = 100_000_000;
const DEFAULT_FAIL_ON: FailOn = 'error';

export interface ImageInfo {
  format: ImageFormat;
  /** Width and height after EXIF orientation, i.e. as the picture is meant to be seen. */
  width: number;
  height: number;
  hasAlpha: boolean;
  hasExif: boolean;
  /** EXIF orientation 1–8 (1 when absent). */
  orientation: number;
}

export type ResizeKernel = 'cubic' | 'linear' | 'nearest';

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface RgbRequest {
  /** Resize the upright image to exactly this size (the caller has chosen the aspect). */
  resize?: { width: number; height: number; kernel: ResizeKernel };
  /** Then keep only this region of the resized image. */
  extract?: Region;
}

/** Packed 8-bit RGB, row-major (HWC), 3 channels. */
export interface RgbPixels {
  data: Buffer;
  width: number;
  height: number;
}

export const DEFAULT_THUMBNAIL_SIZE = 320;

export interface ThumbnailOptions {
  /** Longest side in pixels; smaller images are not enlarged. Default 320. */
  size?: number;
  /** WebP quality 1–100. Default 80. */
  quality?: number;
}

/** What one decode must serve (decodeOnce): the renders that will be made from its pixels. */
export interface DecodeOnceRequest {
  /**
   * The model input's resize, as rgb() would run it from the file: the decode keeps the JPEG shrink-on-load
   * factor that render would use, so the model input stays as close to a direct render as the tests ask.
   */
  resize: { width: number; height: number };
  /** Other renders, each the whole picture with its longest side at most `maxSide` (thumbnail, OCR). */
  boxes?: ReadonlyArray<{ maxSide: number; kernel?: ResizeKernel }>;
  /**
   * Asked for the bytes the decoded pixels will take (width × height × 3, or 4 with alpha) before they are
   * decoded: a release to call once they are dropped, or null when there is no room for them now; the
   * picture is then rendered per render from the file, streamed by libvips, as before issue 19 (ingest: its
   * read budget, so that files and decoded pixels held at once stay under one bound). Never waits: a decoder
   * that holds its file's bytes and waited for more could deadlock against the others.
   */
  reserve?: (bytes: number) => (() => void) | null;
}

export interface DecodedImage {
  readonly name: string;
  readonly info: ImageInfo;
  /** Times this image's pixels were decoded from the file's bytes so far (renders from decodeOnce's pixels add none). */
  readonly decodes: number;
  /** Upright 8-bit sRGB RGB pixels, optionally resized and cropped in the decoding pipeline. */
  rgb(request?: RgbRequest): Promise<RgbPixels>;
  /** An upright WebP thumbnail that keeps transparency, for display. */
  thumbnail(options?: ThumbnailOptions): Promise<Buffer>;
  /**
   * Decodes the pixels once, at the least scale that serves every render of `request`, and returns the same
   * picture whose rgb() and thumbnail() render from those pixels in memory instead of decoding the file again.
   * Falls back to `this` (each render decodes) when the pixels would take more than RAW_BUDGET_BYTES or
   * `request.reserve` has no room for them. Call release() on the returned image once its renders are made.
   */
  decodeOnce(request: DecodeOnceRequest): Promise<DecodedImage>;
  /**
   * Drops the pixels decodeOnce decoded and gives back their reservation at once (idempotent; a later render
   * decodes the file again). The bytes themselves are freed when V8 collects the buffer: the reservation
   * bounds what is referenced, and what awaits collection is V8's to bound (external memory drives its GC).
   */
  release(): void;
}

/**
 * Most bytes decodeOnce holds as raw pixels. Only pictures libvips cannot shrink on load (PNG, WebP, TIFF…
 * above ~16 MP) reach it: those are decoded per render as before, streamed by libvips, not held whole.
 */
export const RAW_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * The JPEG shrink-on-load factor sharp 0.35 picks (pipeline.cc) for rgb()'s resize (fastShrinkOnLoad: false)
 * by `shrink`: the largest of 8, 4, 2 with `shrink` ≥ twice it, halved when trunc(shrink) equals it.
 */
function jpegShrinkOnLoad(shrink: number): number {
  let j = 1;
  if (shrink >= 16) j = 8;
  else if (shrink >= 8) j = 4;
  else if (shrink >= 4) j = 2;
  if (j > 1 && Math.trunc(shrink) === j) j /= 2;
  return j;
}

/**
 * Size and kernel of decodeOnce's pixels for an upright W×H picture, or null for full size.
 *
 * A JPEG is decoded at the model render's shrink-on-load factor J and then reduced to just over a J+1
 * shrink: sharp has no way to ask for the DCT-shrunk pixels alone (a target of exactly 1/J makes it halve
 * J), so the least extra reduction is (J+1)/J. Done with lanczos3, the model input stays 0.2–0.5 level
 * (mean) from the direct render and as close to Pillow on the full-size image as that was (Dune.jpg 0.73
 * against 0.69 levels; with bicubic 0.89, with linear 1.5; test/one-decode.test.ts). A box
 * larger than that (OCR at 1280 px) sets the size instead, with its own kernel, so that render is exact.
 * Other formats have no shrink-on-load in the model render: decoded at full size, every render exact.
 */
export function decodeOncePlan(
  format: ImageFormat,
  W: number,
  H: number,
  request: DecodeOnceRequest,
): { width: number; height: number; kernel: ResizeKernel | 'lanczos3' } | null {
  if (format !== 'jpeg') return null;
  const { width: mw, height: mh } = request.resize;
  const j = jpegShrinkOnLoad(Math.min(W / mw, H / mh));
  if (j === 1) return null;
  let width = Math.floor(W / (j + 1));
  let height = Math.floor(H / (j + 1));
  let kernel: ResizeKernel | 'lanczos3' = 'lanczos3';
  for (const box of request.boxes ?? []) {
    const scale = Math.min(1, box.maxSide / Math.max(W, H));
    const bw = Math.max(1, Math.round(W * scale));
    const bh = Math.max(1, Math.round(H * scale));
    if (bw > width || bh > height) {
      if (scale === 1) return null;
      width = bw;
      height = bh;
      kernel = box.kernel ?? 'lanczos3';
    }
  }
  return { width, height, kernel };
}

interface RawPixels {
  kind: 'raw';
  data: Buffer;
  width: number;
  height: number;
  channels: 3 | 4;
}
type PixelSource = { kind: 'encoded'; input: string | Buffer } | RawPixels;

// Set once sharp has said it cannot decode HEVC, so later HEIC files go straight to heic-decode.
let sharpLacksHevc = false;

/** Pixel decodes of encoded bytes in this process, for tests and benchmarks (a count, not a mock of sharp). */
let decodesInProcess = 0;
export function pixelDecodes(): number {
  return decodesInProcess;
}

class Image implements DecodedImage {
  readonly name: string;
  private raw: Promise<RawPixels> | undefined;

  constructor(
    private readonly source: ImageSource,
    readonly info: ImageInfo,
    private readonly maxPixels: number,
    private readonly failOn: FailOn,
    raw?: RawPixels,
    // Shared with the image decodeOnce returns, so its count includes the decode it was made from.
    private readonly counter = { decodes: 0 },
    // decodeOnce's: gives back the reservation of `raw`.
    private releaseRaw?: () => void,
  ) {
    this.name = source.name;
    if (raw) this.raw = Promise.resolve(raw);
  }

  get decodes(): number {
    return this.counter.decodes;
  }

  private countDecode(): void {
    this.counter.decodes++;
    decodesInProcess++;
  }

  async decodeOnce(request: DecodeOnceRequest): Promise<DecodedImage> {
    const plan = decodeOncePlan(this.source.format, this.info.width, this.info.height, request);
    const width = plan?.width ?? this.info.width;
    const height = plan?.height ?? this.info.height;
    if (width * height * 4 > RAW_BUDGET_BYTES) return this;
    let giveBack: (() => void) | undefined;
    if (request.reserve) {
      const reserved = request.reserve(width * height * (this.info.hasAlpha ? 4 : 3));
      if (!reserved) return this;
      giveBack = reserved;
    }
    let raw: RawPixels;
    try {
      raw = await this.decodeWhole(plan, width, height);
    } catch (err) {
      giveBack?.();
      throw err;
    }
    return new Image(this.source, this.info, this.maxPixels, this.failOn, raw, this.counter, giveBack);
  }

  release(): void {
    if (!this.releaseRaw) return;
    this.raw = undefined;
    this.releaseRaw();
    this.releaseRaw = undefined;
  }

  private decodeWhole(plan: ReturnType<typeof decodeOncePlan>, width: number, height: number): Promise<RawPixels> {
    return this.run(async (src): Promise<RawPixels> => {
      if (src.kind === 'raw') return src;
      let pipeline = this.open(src);
      if (plan) pipeline = pipeline.resize(width, height, { fit: 'fill', kernel: plan.kernel });
      // sRGB here, as each render would convert (CMYK, 16-bit, greyscale); alpha kept for the thumbnail.
      const out = await pipeline.toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
      const channels = out.info.channels;
      if (channels !== 3 && channels !== 4) {
        throw new ClipdexError('DECODE_FAILED', `Cannot decode ${this.name}: got ${channels} channels, expected RGB or RGBA`, {
          details: { file: this.name },
        });
      }
      return { kind: 'raw', data: out.data, width: out.info.width, height: out.info.height, channels };
    });
  }

  async rgb(request: RgbRequest = {}): Promise<RgbPixels> {
    const out = await this.run(async (src) => {
      let pipeline = this.open(src);
      const hasAlpha = src.kind === 'raw' ? src.channels === 4 : this.info.hasAlpha;
      if (hasAlpha && request.resize) {
        // PIL's convert('RGB'), which CLIP's preprocessing uses, drops alpha WITHOUT compositing:
        // transparent pixels show their stored colour. libvips resizes alpha images premultiplied,
        // which would turn transparent areas black and bleed colour across edges, so the alpha
        // band is dropped in a first full-size pass and the resize runs on plain RGB.
        const flat = await pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
        pipeline = sharp(flat.data, {
          raw: { width: flat.info.width, height: flat.info.height, channels: flat.info.channels },
          limitInputPixels: this.maxPixels,
        });
      }
      if (request.resize) {
        const { width, height, kernel } = request.resize;
        // fastShrinkOnLoad: false leaves at least a 2x reduction to the chosen kernel after the
        // JPEG's DCT-domain shrink; measured closer to PIL's bicubic at little cost.
        pipeline = pipeline.resize(width, height, { fit: 'fill', kernel, fastShrinkOnLoad: false });
      }
      if (request.extract) pipeline = pipeline.extract(request.extract);
      return pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    });
    if (out.info.channels !== 3) {
      throw new ClipdexError('DECODE_FAILED', `Cannot decode ${this.name}: got ${out.info.channels} channels, expected RGB`, {
        details: { file: this.name },
      });
    }
    return { data: out.data, width: out.info.width, height: out.info.height };
  }

  thumbnail({ size = DEFAULT_THUMBNAIL_SIZE, quality = 80 }: ThumbnailOptions = {}): Promise<Buffer> {
    return this.run((src) =>
      this.open(src).resize(size, size, { fit: 'inside', withoutEnlargement: true }).webp({ quality }).toBuffer(),
    );
  }

  private open(src: PixelSource): Sharp {
    if (src.kind === 'raw') {
      const { width, height, channels } = src;
      return sharp(src.data, { raw: { width, height, channels }, limitInputPixels: this.maxPixels });
    }
    return sharp(src.input, { failOn: this.failOn, limitInputPixels: this.maxPixels }).rotate();
  }

  private pixelSource(): Promise<PixelSource> | PixelSource {
    const { format } = this.source;
    if (this.raw || format === 'bmp' || (format === 'heic' && sharpLacksHevc)) return this.decodeRaw();
    return { kind: 'encoded', input: this.source.input };
  }

  private decodeRaw(): Promise<RawPixels> {
    this.raw ??= (async (): Promise<RawPixels> => {
      this.countDecode();
      const bytes = await this.source.bytes();
      if (this.source.format === 'bmp') return { kind: 'raw', ...decodeBmp(bytes, this.name) };
      return { kind: 'raw', ...(await decodeHeic(bytes, this.name, this.maxPixels)) };
    })();
    return this.raw;
  }

  private async run<T>(work: (src: PixelSource) => Promise<T>): Promise<T> {
    const src = await this.pixelSource();
    try {
      const out = await work(src);
      // Each work on encoded bytes is one libvips pipeline decoding them (probe reads only the header).
      if (src.kind === 'encoded') this.countDecode();
      return out;
    } catch (err) {
      const mapped = fromSharpError(err, this.name, this.maxPixels);
      if (this.source.format !== 'heic' || src.kind === 'raw' || mapped.code === 'IMAGE_TOO_LARGE') throw mapped;
      if (/HEVC|not been built in/i.test(String(mapped.details.decoder))) sharpLacksHevc = true;
      return work(await this.decodeRaw()).catch((e: unknown) => {
        throw fromSharpError(e, this.name, this.maxPixels);
      });
    }
  }
}

async function probe(source: ImageSource, maxPixels: number, failOn: FailOn): Promise<{ info: ImageInfo; raw?: RawPixels }> {
  const { name, format } = source;
  if (format === 'bmp') {
    const header = readBmpHeader(await source.bytes(), name);
    if (header.width * header.height > maxPixels) throw tooLarge(name, header.width, header.height, maxPixels);
    return { info: { format, width: header.width, height: header.height, hasAlpha: false, hasExif: false, orientation: 1 } };
  }
  let meta: Metadata;
  try {
    // No pixel limit here: metadata reads only the header, and our own check below names the size.
    meta = await sharp(source.input, { failOn, limitInputPixels: false }).metadata();
  } catch (err) {
    if (format !== 'heic') throw fromSharpError(err, name, maxPixels);
    // sharp's libheif could not even parse the header: let heic-decode read it (it checks the size first).
    decodesInProcess++;
    const raw: RawPixels = { kind: 'raw', ...(await decodeHeic(await source.bytes(), name, maxPixels)) };
    const info = { format, width: raw.width, height: raw.height, hasAlpha: raw.channels === 4, hasExif: false, orientation: 1 };
    return { info, raw };
  }
  if (meta.width * meta.height > maxPixels) throw tooLarge(name, meta.width, meta.height, maxPixels);
  const info: ImageInfo = {
    format,
    width: meta.autoOrient.width,
    height: meta.autoOrient.height,
    hasAlpha: meta.hasAlpha,
    hasExif: meta.exif !== undefined,
    orientation: meta.orientation ?? 1,
  };
  return { info };
}

/** Checks the input and reads its header; pixels are decoded only when asked for. */
export async function openImage(input: ImageInput, options: DecodeOptions = {}): Promise<DecodedImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const failOn = options.failOn ?? DEFAULT_FAIL_ON;
  if (!(Number.isFinite(maxPixels) && maxPixels > 0)) {
    throw new ClipdexError('INVALID_ARGUMENT', `maxPixels must be a positive number, got ${maxPixels}`);
  }
  const source = await openImageSource(input, options.name);
  const { info, raw } = await probe(source, maxPixels, failOn);
  return new Image(source, info, maxPixels, failOn, raw, { decodes: raw ? 1 : 0 });
}

/** Format, upright size and EXIF presence from the header alone (no pixel decoding). */
export async function readImageInfo(input: ImageInput, options: DecodeOptions = {}): Promise<ImageInfo> {
  return (await openImage(input, options)).info;
}

/** One-shot decode to upright 8-bit sRGB RGB. */
export async function decodeRgb(input: ImageInput, request: RgbRequest = {}, options: DecodeOptions = {}): Promise<RgbPixels> {
  return (await openImage(input, options)).rgb(request);
}
