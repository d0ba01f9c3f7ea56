/**
 * HEIC fallback decoder. The prebuilt sharp ships libheif without an HEVC decoder, so iPhone
 * photos fail there; `heic-decode` (libheif compiled to WASM) reads them. It is loaded lazily,
 * because the WASM module costs start-up time that folders without HEIC files never need.
 * Decoding is synchronous inside the WASM module (~0.15 s per megapixel here: seconds for an iPhone
 * photo), so it runs on a worker thread of its own, started on the first HEIC file; the event loop (a
 * server's requests, the other decodes) keeps turning meanwhile.
 */
import { createRequire } from 'node:module';
import type { Worker } from 'node:worker_threads';
import { ClipdexError, errorMessage, type ErrorCode } from '../errors.js';
import { spawnWorker } from '../util/spawn-worker.js';
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

export interface HeicRequest {
  id: number;
  bytes: Uint8Array;
  name: string;
  maxPixels: number;
}

export type HeicReply =
  | { id: number; ok: true; data: Uint8Array; width: number; height: number; channels: 3 | 4 }
  | { id: number; ok: false; code: string; message: string; details: Record<string, unknown> | null };

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, { resolve: (r: RawHeic) => void; reject: (err: unknown) => void }>();

function heicWorker(): Worker {
  if (worker) return worker;
  const w = spawnWorker(import.meta.url, 'image-heic-worker', null, { code: 'DECODE_FAILED', what: 'the HEIC decoder thread' });
  w.on('message', (m: HeicReply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve({ data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), width: m.width, height: m.height, channels: m.channels });
    else p.reject(new ClipdexError(m.code as ErrorCode, m.message, m.details ? { details: m.details } : {}));
  });
  const gone = (why: string) => {
    if (worker === w) worker = null;
    for (const p of pending.values()) p.reject(new ClipdexError('DECODE_FAILED', `the HEIC decoder thread ${why}`));
    pending.clear();
  };
  w.on('error', (err) => gone(`crashed: ${err.message}`));
  w.on('exit', (code) => gone(`exited (code ${code})`));
  // Idle, it must not keep a finished CLI run alive; busy, the pending decodes keep it referenced.
  w.unref();
  worker = w;
  return w;
}

/**
 * Decodes the first top-level image of a HEIC/HEIF file on the decoder thread; see decodeHeicHere.
 */
export function decodeHeic(bytes: Buffer, name: string, maxPixels: number): Promise<RawHeic> {
  const w = heicWorker();
  const id = nextId++;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Promise<RawHeic>((resolve, reject) => {
    if (pending.size === 0) w.ref();
    pending.set(id, {
      resolve: (r) => {
        if (pending.size === 0) w.unref();
        resolve(r);
      },
      reject: (err) => {
        if (pending.size === 0) w.unref();
        reject(err);
      },
    });
    w.postMessage({ id, bytes: copy, name, maxPixels } satisfies HeicRequest, [copy.buffer]);
  });
}

/**
 * Decodes the first top-level image (the one heic-decode itself treats as the picture) to RGB(A), on
 * the calling thread. libheif applies the HEIF rotation/mirror boxes, so the pixels come out upright;
 * HEIF files must not be re-oriented from EXIF. The size is checked from the header before any pixels
 * are allocated, so a decompression bomb is refused cheaply.
 */
export async function decodeHeicHere(bytes: Buffer, name: string, maxPixels: number): Promise<RawHeic> {
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
