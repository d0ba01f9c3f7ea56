/**
 * The bounded ingest pipeline: files in, one result per file out, delivered to a sink in batches.
 *
 *   input ──(window)──▶ read+hash ▶ decode/preprocess (pool) ──▶ encoder batches ──▶ sink
 *
 * - Overlap: a pool of `decodeConcurrency` decoders keeps preparing the next batch while the
 *   encoder runs the current one (ORT and libvips both run off the JS thread).
 * - Backpressure: at most `window` files are between being taken from the input and being
 *   accepted by the sink. A slow sink or encoder stops the pipeline from pulling more input, so
 *   memory depends on the window, never on how many files there are.
 * - Isolation: a file that cannot be read or decoded yields a 'failed' result and the rest go
 *   on. Failures that are not about one file (the encoder or the sink throws, the input
 *   iterator throws, the signal aborts) stop the pipeline and reject: results already delivered
 *   stand, the rest were never acknowledged and stay queued for the next run.
 * - Content: with `hash` (default), each file is read once, hashed, and decoded from those same
 *   bytes, so the embedding belongs to exactly the content the hash names. `skip` can then
 *   pass over content whose embedding is already stored (a rename, a duplicate) before any
 *   decoding or inference is spent on it.
 * - One decode per photo: the model input, the thumbnail and the OCR pixels are rendered from one decode
 *   of its bytes (DecodedImage.decodeOnce); `stats.decodes` counts them.
 * - The sink sees results in completion order; `seq` is each file's position in the input.
 * - Memory of the files themselves: each decoder reserves its file's size in a byte budget before
 *   reading it and gives it back once the file is decoded, so the bytes of files held at once stay
 *   under `readBudgetBytes` however large the files (a file larger than the whole budget is read
 *   alone; one above `maxFileBytes` is refused with IMAGE_TOO_LARGE before it is read). The single
 *   decode's raw pixels are reserved in the same budget (without waiting: no room, that photo is rendered
 *   from its file per render, streamed) and given back as soon as its renders are made, before it waits
 *   for the encoder: photos in the window hold only their model input, thumbnail and OCR pixels.
 *
 * HEIC files decode in heic-decode's WASM module, which runs on the JS thread: while one
 * decodes (a second or so for 12 MP) the rest of the pipeline waits. A worker thread would fix
 * it; not done, as HEIC is the exception on most libraries (and sharp builds with HEVC skip it).
 */
import { readFile, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { ClipdexError, errorMessage } from '../errors.js';
import type { ImageInfo, RgbPixels, ThumbnailOptions } from '../model/image-decode.js';
import {
  kernelFor,
  normalizeToChw,
  openForRenders,
  preprocessImage,
  thumbnailBox,
  thumbnailOptions,
  type DecodeMode,
  type PreprocessedImage,
  type PreprocessOptions,
} from '../model/image-preprocess.js';
import { ocrRender } from '../ocr/ocr-image.js';
import type { PreprocessConfig } from '../model/manifest.js';
import { ByteBudget, type Release } from '../util/byte-budget.js';
import { DEFAULT_MAX_FILE_BYTES, readFileSnapshot, type ContentSnapshot } from './content-hash.js';
import { fsPathOf, type FsPath } from './raw-path.js';
import { readExifMeta, type ExifMeta } from './exif-meta.js';
import { Wakeup } from './wakeup.js';

export interface PipelineFile {
  path: string;
  /** The path's raw bytes when a name in it is not UTF-8 (raw-path.ts): what is opened then. */
  pathBytes?: Buffer | null;
}

/** What the pipeline needs of a model; a ClipModel is one. */
export interface PipelineModel {
  image: {
    readonly batchSize: number;
    encode(pixels: Float32Array, count: number): Promise<Float32Array[]>;
  };
  spec: { preprocess: PreprocessConfig };
}

interface ResultBase<F> {
  file: F;
  /** Position of the file in the input, from 0. */
  seq: number;
}

export interface EncodedResult<F> extends ResultBase<F> {
  status: 'encoded';
  embedding: Float32Array;
  info: ImageInfo;
  thumbnail?: Buffer;
  /** With `hash`: the content the embedding was computed from. */
  content?: ContentSnapshot;
  exif?: ExifMeta;
}

export interface SkippedResult<F> extends ResultBase<F> {
  /** `skip` said this content needs no encoding (its embedding is already stored). */
  status: 'skipped';
  content: ContentSnapshot;
  exif?: ExifMeta;
}

export interface FailedResult<F> extends ResultBase<F> {
  status: 'failed';
  /** FILE_NOT_FOUND, FILE_UNREADABLE, EMPTY_FILE, NOT_AN_IMAGE, DECODE_FAILED, IMAGE_TOO_LARGE, UNSUPPORTED_FORMAT, FILE_CHANGED… */
  error: ClipdexError;
  /** Present when the bytes were read before the failure (so the size/mtime that failed is known). */
  content?: ContentSnapshot;
}

export type PipelineResult<F> = EncodedResult<F> | SkippedResult<F> | FailedResult<F>;

export interface PipelineProgress {
  /** Files whose result the sink has accepted. */
  done: number;
  encoded: number;
  skipped: number;
  failed: number;
  /** Files taken from the input and not yet accepted by the sink. */
  inFlight: number;
  elapsedMs: number;
  /** done / elapsed. */
  filesPerSecond: number;
}

export interface PipelineStats extends PipelineProgress {
  /** The most files ever in flight: never more than `window`. */
  maxInFlight: number;
  window: number;
  encoderBatches: number;
  /** Time the encoder was busy; compare with elapsedMs to see how well decoding was hidden. */
  encoderMs: number;
  sinkCalls: number;
  sinkMs: number;
  /** The most bytes of files held at once by the decoders (their sizes as reserved in the read budget). */
  maxReadBytes: number;
  /** The most bytes of decoded pixels held at once (decodeOnce's, reserved in the same read budget). */
  maxDecodedBytes: number;
  /** The most bytes of files and decoded pixels held at once: at most the read budget (one oversized file aside). */
  maxHeldBytes: number;
  /** Photos rendered per render from the file because the read budget had no room for their decoded pixels. */
  decodeFallbacks: number;
  /**
   * Pixel decodes of the files' bytes: one per encoded photo (model input, thumbnail and OCR pixels come from
   * one decode), more with `decode: 'per-render'` or for a picture too large to hold decoded (RAW_BUDGET_BYTES).
   */
  decodes: number;
}

/** Default read budget: a few large camera files at once, many ordinary ones. */
export const DEFAULT_READ_BUDGET_BYTES = 256 * 1024 * 1024;

export interface EncodePipelineOptions<F extends PipelineFile> {
  model: PipelineModel;
  /** Files read and decoded at once (default: the number of CPUs). */
  decodeConcurrency?: number;
  /** Images per encoder call (default: model.image.batchSize). */
  batchSize?: number;
  /** Most files in flight between input and sink (default 2 × batchSize + decodeConcurrency). */
  window?: number;
  /** Make a WebP thumbnail in the same decode (default true: 320 px). */
  thumbnail?: boolean | ThumbnailOptions;
  /** 'once' (default) or 'per-render' (the two-decode path before issue 19, for bench:ingest's comparison). */
  decode?: DecodeMode;
  /** Refuse images declaring more pixels than this (decompression bombs). */
  maxPixels?: number;
  /** Refuse files larger than this many bytes (default 1 GiB); only with `hash`. */
  maxFileBytes?: number;
  /**
   * Most bytes of files read and being decoded at once, summed over the decoders (default 256 MiB), or a
   * budget shared with other work. A file larger than the budget waits until it can be read alone.
   */
  readBudget?: number | ByteBudget;
  /** Read each file once, hash it and decode the same bytes (default true). */
  hash?: boolean;
  /** Read EXIF capture date and camera (default true). */
  exif?: boolean;
  /** After hashing, before decoding: true skips the file (e.g. its content is already embedded). */
  skip?: (file: F, content: ContentSnapshot) => boolean | Promise<boolean>;
  onProgress?: (progress: PipelineProgress) => void;
  /** Least time between two onProgress calls (default 250 ms); the final state is always reported. */
  progressIntervalMs?: number;
  signal?: AbortSignal;
  /** Instrumentation for tests and benchmarks: called whenever the in-flight count changes. */
  onInFlight?: (inFlight: number) => void;
  /**
   * Text in photos (ingest/ocr-service.ts): for content `wants` says yes to, OCR pixels are rendered from the
   * same opened source as the model input and handed to `offer`; needs `hash`.
   */
  ocr?: PipelineOcr;
}

export interface PipelineOcr {
  /** Longest side of the pixels offered. */
  maxSide: number;
  wants(hash: string): boolean;
  offer(hash: string, pixels: RgbPixels): void;
}

/**
 * preprocessImage's work (image-preprocess.ts: plan, resize + crop, normalise, thumbnail) plus the OCR
 * rendering, all from one decode of the bytes.
 */
async function preprocessWithOcr(
  input: string | Buffer,
  config: PreprocessConfig,
  options: PreprocessOptions,
  ocrSide: number,
): Promise<PreprocessedImage & { ocr: RgbPixels; decodes: number }> {
  const thumbOptions = thumbnailOptions(options.thumbnail);
  // 'linear' as ocrRender resizes: when the OCR render sets the decode's size, its pixels are the same as before.
  const boxes = [...(thumbOptions ? [thumbnailBox(thumbOptions)] : []), { maxSide: ocrSide, kernel: 'linear' as const }];
  const { image, plan } = await openForRenders(input, config, options, boxes);
  const [rgb, thumbnail, ocr] = await Promise.all([
    image.rgb({ resize: { ...plan.resize, kernel: kernelFor(config.interpolation) }, extract: plan.crop }),
    thumbOptions ? image.thumbnail(thumbOptions) : undefined,
    ocrRender(image, ocrSide),
  ]).finally(() => image.release());
  const pixels = new Float32Array(3 * config.size * config.size);
  normalizeToChw(rgb.data, config, pixels);
  const decodes = image.decodes;
  return thumbnail ? { pixels, info: image.info, thumbnail, ocr, decodes } : { pixels, info: image.info, ocr, decodes };
}

export type PipelineSink<F> = (results: PipelineResult<F>[]) => void | Promise<void>;

interface Decoded<F> {
  file: F;
  seq: number;
  pixels: Float32Array;
  info: ImageInfo;
  thumbnail?: Buffer;
  content?: ContentSnapshot;
  exif?: ExifMeta;
}


function asError(err: unknown, path: string): ClipdexError {
  if (err instanceof ClipdexError) return err;
  return new ClipdexError('DECODE_FAILED', `Cannot process ${path}: ${errorMessage(err)}`, { cause: err, details: { file: path } });
}

/** Runs every file of `files` through decode → encode → `sink`; resolves with totals when all are delivered. */
export async function runEncodePipeline<F extends PipelineFile>(
  files: AsyncIterable<F> | Iterable<F>,
  sink: PipelineSink<F>,
  options: EncodePipelineOptions<F>,
): Promise<PipelineStats> {
  const { model } = options;
  const config = model.spec.preprocess;
  const plane = 3 * config.size * config.size;
  const decodeConcurrency = Math.max(1, Math.floor(options.decodeConcurrency ?? availableParallelism()));
  const batchSize = Math.max(1, Math.floor(options.batchSize ?? model.image.batchSize));
  const window = Math.max(1, Math.floor(options.window ?? 2 * batchSize + decodeConcurrency));
  const useHash = options.hash ?? true;
  const useExif = options.exif ?? true;
  const thumbnail = options.thumbnail ?? true;
  const progressEvery = options.progressIntervalMs ?? 250;
  const maxFileBytes = options.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const budget = options.readBudget instanceof ByteBudget ? options.readBudget : new ByteBudget(options.readBudget ?? DEFAULT_READ_BUDGET_BYTES);
  let readBytes = 0;
  let decodedBytes = 0;
  /**
   * The single decode's pixels (DecodeOnceRequest.reserve) share the files' read budget: the file is held
   * while they are decoded from it, and both are dropped once the renders are made, so what the decoders
   * hold at once stays under one bound however large the photos. No room now: that photo is rendered from
   * its file per render (streamed, not held whole), counted in decodeFallbacks.
   */
  const reserveDecoded = (bytes: number): Release | null => {
    const release = budget.tryAcquire(bytes);
    if (!release) {
      stats.decodeFallbacks++;
      return null;
    }
    decodedBytes += bytes;
    stats.maxDecodedBytes = Math.max(stats.maxDecodedBytes, decodedBytes);
    stats.maxHeldBytes = Math.max(stats.maxHeldBytes, readBytes + decodedBytes);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      decodedBytes -= bytes;
      release();
    };
  };
  const startedAt = performance.now();

  const iterator: AsyncIterator<F> | Iterator<F> =
    Symbol.asyncIterator in files ? (files as AsyncIterable<F>)[Symbol.asyncIterator]() : (files as Iterable<F>)[Symbol.iterator]();

  const wake = new Wakeup();
  const ready: Decoded<F>[] = [];
  let outbox: PipelineResult<F>[] = [];
  // Slots are taken before a pull (so the window bounds pulls too); files counts what was pulled.
  let slots = 0;
  let inFlight = 0;
  let decoding = 0;
  let inputDone = false;
  let pulls = 0;
  let encoderBusy = false;
  let fatal: unknown = null;
  let stop!: () => void;
  const stopped = new Promise<IteratorResult<F>>((res) => (stop = () => res({ done: true, value: undefined })));
  let seq = 0;
  let pulling: Promise<unknown> = Promise.resolve();
  let lastProgressAt = -Infinity;
  const stats: PipelineStats = {
    done: 0, encoded: 0, skipped: 0, failed: 0, inFlight: 0, elapsedMs: 0, filesPerSecond: 0,
    maxInFlight: 0, window, encoderBatches: 0, encoderMs: 0, sinkCalls: 0, sinkMs: 0, maxReadBytes: 0, decodes: 0,
    maxDecodedBytes: 0, maxHeldBytes: 0, decodeFallbacks: 0,
  };

  const fail = (err: unknown): void => {
    fatal ??= err;
    stop();
    wake.notify();
  };
  const onAbort = () => fail(options.signal?.reason ?? new DOMException('The operation was aborted', 'AbortError'));
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });

  const setInFlight = (n: number): void => {
    inFlight = n;
    if (n > stats.maxInFlight) stats.maxInFlight = n;
    options.onInFlight?.(n);
  };
  const releaseSlots = (n: number): void => {
    slots -= n;
    wake.notify();
  };

  const progress = (force: boolean): void => {
    const now = performance.now();
    if (!options.onProgress || (!force && now - lastProgressAt < progressEvery)) return;
    lastProgressAt = now;
    stats.inFlight = inFlight;
    stats.elapsedMs = now - startedAt;
    stats.filesPerSecond = stats.elapsedMs > 0 ? (stats.done * 1000) / stats.elapsedMs : 0;
    const { done, encoded, skipped, failed, elapsedMs, filesPerSecond } = stats;
    options.onProgress({ done, encoded, skipped, failed, inFlight, elapsedMs, filesPerSecond });
  };

  /** Pulls are serialised: an arbitrary iterator need not support overlapping next() calls. */
  const next = (): Promise<IteratorResult<F>> => {
    const result = pulling.then(() => (inputDone || fatal ? ({ done: true, value: undefined } as IteratorResult<F>) : iterator.next()));
    pulling = result.catch(() => undefined);
    return result;
  };

  /**
   * Reserves the file's size (as stat sees it now) in the read budget. A file that cannot be stat'ed, or
   * one above `maxFileBytes`, reserves nothing: the read that follows fails with its typed error before
   * any byte is held. Null when the pipeline stopped while waiting.
   */
  const reserve = async (path: FsPath): Promise<{ bytes: number; release: Release } | null> => {
    const size = await stat(path).then(
      (st) => (st.isFile() ? st.size : 0),
      () => 0,
    );
    const bytes = size > maxFileBytes ? 0 : size;
    try {
      const release = await budget.acquire(bytes, options.signal);
      readBytes += bytes;
      if (readBytes > stats.maxReadBytes) stats.maxReadBytes = readBytes;
      stats.maxHeldBytes = Math.max(stats.maxHeldBytes, readBytes + decodedBytes);
      return {
        bytes,
        release: () => {
          readBytes -= bytes;
          release();
        },
      };
    } catch (err) {
      fail(err);
      return null;
    }
  };

  const decodeOne = async (file: F, n: number): Promise<void> => {
    const path = file.path;
    const at = fsPathOf(file);
    let content: ContentSnapshot | undefined;
    const reserved = await reserve(at);
    if (!reserved) return;
    try {
      let source: string | Buffer = path;
      if (useHash) {
        const snap = await readFileSnapshot(path, { maxBytes: maxFileBytes, at });
        content = { hash: snap.hash, size: snap.size, mtimeMs: snap.mtimeMs, changed: snap.changed };
        // Grew between the budget's stat and the read: more bytes are held than were reserved, and the
        // file is still being written. Read again once it settles, within the budget then.
        if (snap.changed || snap.size > reserved.bytes) {
          throw new ClipdexError('FILE_CHANGED', `${path} changed while it was being read; it will be read again once it settles`, {
            details: { file: path },
          });
        }
        source = snap.bytes;
      } else if (typeof at !== 'string') {
        // A Buffer source means file content, not a name: a path that is raw bytes is read here.
        source = await readFile(at);
      }
      const exifPromise = useExif ? readExifMeta(source) : undefined;
      let skipIt = false;
      if (content && options.skip) {
        try {
          skipIt = await options.skip(file, content);
        } catch (err) {
          // The caller's lookup failed (its database, say): not this file's fault, and not one to record against it.
          fail(err);
          return;
        }
      }
      if (content && skipIt) {
        const exif = await exifPromise;
        outbox.push(exif ? { status: 'skipped', file, seq: n, content, exif } : { status: 'skipped', file, seq: n, content });
        return;
      }
      const preOptions: PreprocessOptions = {
        thumbnail,
        name: path,
        ...(options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels }),
        ...(options.decode === undefined ? {} : { decode: options.decode }),
        reserveDecoded,
      };
      const ocr = content && options.ocr?.wants(content.hash) ? options.ocr : undefined;
      const [pre, exif] = await Promise.all([
        ocr ? preprocessWithOcr(source, config, preOptions, ocr.maxSide) : preprocessImage(source, config, preOptions).then((p) => ({ ...p, ocr: undefined })),
        exifPromise,
      ]);
      // Offered before the encoder has run: the text belongs to the content the hash names, whatever CLIP makes of it.
      if (ocr && content && pre.ocr) ocr.offer(content.hash, pre.ocr);
      stats.decodes += pre.decodes;
      ready.push({ file, seq: n, pixels: pre.pixels, info: pre.info, thumbnail: pre.thumbnail, content, exif });
    } catch (err) {
      const error = asError(err, path);
      outbox.push(content ? { status: 'failed', file, seq: n, error, content } : { status: 'failed', file, seq: n, error });
    } finally {
      // The bytes are dropped here: what is kept (pixels, thumbnail) is small and bounded by the window.
      reserved.release();
    }
  };

  const decoder = async (): Promise<void> => {
    for (;;) {
      while (!fatal && slots >= window) await wake.wait();
      if (fatal || inputDone) return;
      slots++;
      let item: IteratorResult<F>;
      pulls++;
      try {
        // An input that waits for new files (a live queue) must not hold up an abort.
        item = await Promise.race([next(), stopped]);
      } catch (err) {
        releaseSlots(1);
        fail(err);
        return;
      } finally {
        pulls--;
      }
      if (item.done) {
        if (!fatal) inputDone = true;
        releaseSlots(1);
        return;
      }
      setInFlight(inFlight + 1);
      decoding++;
      await decodeOne(item.value, seq++);
      decoding--;
      wake.notify();
    }
  };

  const encoder = async (): Promise<void> => {
    for (;;) {
      while (!fatal && !(ready.length >= batchSize || (ready.length > 0 && decoding === 0) || (inputDone && pulls === 0 && decoding === 0 && ready.length === 0))) {
        await wake.wait();
      }
      if (fatal || ready.length === 0) return;
      const batch = ready.splice(0, batchSize);
      const pixels = new Float32Array(batch.length * plane);
      batch.forEach((d, i) => pixels.set(d.pixels, i * plane));
      encoderBusy = true;
      const t0 = performance.now();
      let embeddings: Float32Array[];
      try {
        embeddings = await model.image.encode(pixels, batch.length);
      } catch (err) {
        // Decoded pixels are always finite, normalised values: an encoder failure is the model's or
        // the runtime's, not one file's, and would fail every file that followed.
        fail(err);
        return;
      } finally {
        encoderBusy = false;
        stats.encoderMs += performance.now() - t0;
      }
      stats.encoderBatches++;
      batch.forEach((d, i) => {
        const r: EncodedResult<F> = { status: 'encoded', file: d.file, seq: d.seq, embedding: embeddings[i]!, info: d.info };
        if (d.thumbnail) r.thumbnail = d.thumbnail;
        if (d.content) r.content = d.content;
        if (d.exif) r.exif = d.exif;
        outbox.push(r);
      });
      wake.notify();
    }
  };

  const deliverer = async (): Promise<void> => {
    for (;;) {
      const finished = () => inputDone && pulls === 0 && decoding === 0 && ready.length === 0 && !encoderBusy && outbox.length === 0;
      while (!fatal && outbox.length === 0 && !finished()) await wake.wait();
      if (fatal || outbox.length === 0) return;
      const results = outbox;
      outbox = [];
      const t0 = performance.now();
      try {
        await sink(results);
      } catch (err) {
        fail(err);
        return;
      } finally {
        stats.sinkMs += performance.now() - t0;
      }
      stats.sinkCalls++;
      for (const r of results) stats[r.status === 'encoded' ? 'encoded' : r.status === 'skipped' ? 'skipped' : 'failed']++;
      stats.done += results.length;
      setInFlight(inFlight - results.length);
      releaseSlots(results.length);
      progress(false);
    }
  };

  try {
    await Promise.all([...Array.from({ length: decodeConcurrency }, decoder), encoder(), deliverer()]);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
  if (fatal) {
    // Lets a generator run its finally blocks (close a cursor, release a lock). Not awaited: a
    // generator still inside a pull would make return() wait for that pull to end.
    void Promise.resolve()
      .then(() => iterator.return?.())
      .catch(() => undefined);
    throw fatal;
  }
  progress(true);
  stats.inFlight = inFlight;
  stats.elapsedMs = performance.now() - startedAt;
  stats.filesPerSecond = stats.elapsedMs > 0 ? (stats.done * 1000) / stats.elapsedMs : 0;
  return stats;
}
