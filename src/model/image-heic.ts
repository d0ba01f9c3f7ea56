/**
 * HEIC fallback decoder. The prebuilt sharp ships libheif without an HEVC decoder, so iPhone
 * photos fail there; `heic-decode` (libheif compiled to WASM) reads them. It is loaded lazily,
 * because the WASM module costs start-up time that folders without HEIC files never need.
 * Note: decoding is synchronous inside the WASM module and blocks the event loop while it runs.
 */
import { createRequire } from 'node:module';
import { ClipdexError, errorMessage } from '../errors.js';
import { tooLarge } from './image-errors.js';

interface HeicFrame {
  width: number;
  height: number;
  decode(): Promise<{ width: number; height: number; data: Uint8ClampedArray }>;
}
type HeicFrames = HeicFrame[] & { dispose(): void };
interface HeicDecodeModule {
  all(input: { buffer: Uint8Array }): Promise<HeicFrames>;
}

export interface RawHeic {
  data: Buffer;
  width: number;
  height: number;
  /** 3 when every pixel is opaque (the usual photo), else 4 (RGBA). */
  channels: 3 | 4;
}

let heicModule: HeicDecodeModule | undefined;

function heicDecode(): HeicDecodeModule {
  // heic-decode is CommonJS without type declarations; the interface above is the part we use.
  heicModule ??= createRequire(import.meta.url)('heic-decode') as HeicDecodeModule;
  return heicModule;
}

/**
 * Decodes the first top-level image (the one heic-decode itself treats as the picture) to RGBA.
 * libheif applies the HEIF rotation/mirror boxes, so the pixels come out upright; HEIF files
 * must not be re-oriented from EXIF. The size is checked from the header before any pixels
 * are allocated, so a decompression bomb is refused cheaply.
 */
export async function decodeHeic(bytes: Buffer, name: string, maxPixels: number): Promise<RawHeic> {
  let frames: HeicFrames;
  const restore = logToStderr();
  try {
    try {
      frames = await heicDecode().all({ buffer: bytes });
    } catch (err) {
      throw new ClipdexError('DECODE_FAILED', `Cannot decode HEIC ${name}: ${errorMessage(err)}`, { cause: err, details: { file: name } });
    }
    try {
      const first = frames[0];
      if (!first) throw new ClipdexError('DECODE_FAILED', `Cannot decode HEIC ${name}: it holds no image`, { details: { file: name } });
      if (first.width * first.height > maxPixels) throw tooLarge(name, first.width, first.height, maxPixels);
      const { width, height, data } = await first.decode().catch((err: unknown) => {
        throw new ClipdexError('DECODE_FAILED', `Cannot decode HEIC ${name}: ${errorMessage(err)}`, { cause: err, details: { file: name } });
      });
      return dropOpaqueAlpha(data, width, height);
    } finally {
      frames.dispose();
    }
  } finally {
    // Parsing and decoding both log their failures ("Decoding image failed" comes from the decode).
    restore();
  }
}

let redirected = 0;
let consoleLog: typeof console.log = console.log;

/**
 * libheif-js reports a file it cannot parse with console.log, which writes to stdout and breaks the JSON
 * that `clipdex --json index` prints there; while any HEIC parse runs, console.log goes to stderr.
 * Counted, so overlapping decodes restore the real console.log only when the last one ends.
 */
function logToStderr(): () => void {
  if (redirected++ === 0) {
    consoleLog = console.log;
    console.log = (...args: unknown[]) => console.error(...args);
  }
  let done = false;
  return () => {
    if (done) return;
    done = true;
    if (--redirected === 0) console.log = consoleLog;
  };
}

/** libheif always hands out RGBA; a photo's alpha is all 255, and RGB is a quarter smaller. */
function dropOpaqueAlpha(rgba: Uint8ClampedArray, width: number, height: number): RawHeic {
  const n = width * height;
  for (let i = 3; i < rgba.length; i += 4) {
    if (rgba[i] !== 255) return { data: Buffer.from(rgba.buffer, rgba.byteOffset, rgba.byteLength), width, height, channels: 4 };
  }
  const rgb = Buffer.allocUnsafe(n * 3);
  for (let p = 0, q = 0; p < n * 4; p += 4, q += 3) {
    rgb[q] = rgba[p]!;
    rgb[q + 1] = rgba[p + 1]!;
    rgb[q + 2] = rgba[p + 2]!;
  }
  return { data: rgb, width, height, channels: 3 };
}
