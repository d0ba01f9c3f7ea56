import { join } from 'node:path';
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import { ImageEncoder } from './image-encoder.js';
import { preprocessBatch, type BatchOptions } from './image-preprocess.js';
import type { ImageInput } from './image-source.js';
import type { ModelSpec } from './model-dir.js';
import type { ScoreCalibration } from './manifest.js';
import { NllbTokenizer } from './nllb-tokenizer.js';
import { type QueryPrecision, resolveQueryPrecision, type TextPrecision } from './query-precision.js';
import { openTextTowerSession, TextEncoder, type TextOptions, type TextTower } from './text-encoder.js';
import { ThreadTextEncoder } from './text-thread.js';
import { loadTextTokenizer, type ModelTokenizer } from './text-tokenizer.js';
import { openTower } from './tower-session.js';

export interface LoadModelOptions extends SessionOptions {
  /** Largest image batch sent to the encoder at once (graphs with a fixed batch run one at a time). */
  imageBatch?: number;
  textBatch?: number;
  /**
   * Open the image tower at the first image to encode instead of at load. A text search from the CLI needs
   * the text tower only; the image tower of ViT-B/32 is ~350 MB to read and optimise. The server and ingest
   * keep the default (both at load: the first photo or image query pays nothing).
   */
  lazyImageTower?: boolean;
  /**
   * Open the text tower at the first text to encode, too. A CLI command that may encode nothing (labels,
   * versions, a search by photo id) then opens no session at all: for ViT-B/32 each tower is seconds of
   * reading and optimising.
   */
  lazyTextTower?: boolean;
  /**
   * Run the text tower on a worker thread (text-thread.ts): `clipdex serve`, whose event loop must not wait
   * for a query's encoding. One copy of the tower either way.
   */
  textThread?: boolean;
  /**
   * Opens the image tower somewhere else than this thread (`clipdex serve`: on the ingest encoder thread,
   * which then encodes photos with it too: one copy, off the main thread). Called at load, beside the text
   * tower, so a damaged image tower is found at start as before. The model releases it.
   */
  openImageTower?: (spec: ModelSpec, session: SessionOptions) => Promise<OwnedImageTower>;
  /**
   * The text tower's precision for queries (query-precision.ts): `fp32`, the model's own file, or `int8`, its
   * int8 version made once in `cacheDir` (int8-text-tower.ts), a trained version's tower too. Only queries use
   * a text tower: photos' vectors, the model key and the index stay as they are. Default: CLIPDEX_QUERY_PRECISION,
   * else fp32.
   */
  queryPrecision?: QueryPrecision;
}

/** What encodes preprocessed images for a model: its own session (ImageEncoder), or one lent to it. */
export interface ImageTower {
  readonly batchSize: number;
  readonly provider: ProviderName;
  readonly fallbacks: ProviderFallback[];
  /** `count` images as CHW float32, [count, 3, S, S]. */
  encode(pixels: Float32Array, count: number): Promise<Float32Array[]>;
}

/** An image tower this model holds and releases. */
export interface OwnedImageTower extends ImageTower {
  /** The embedding dimension, when the graph says it. */
  readonly dim?: number | null;
  release(): Promise<void>;
}

export type ImageEmbeddingResult =
  | { ok: true; embedding: Float32Array }
  | { ok: false; error: ClipdexError };

/**
 * A loaded CLIP model: tokenizer, both ONNX towers and the preprocessing they expect.
 * Everything is opened up front so the first query pays no loading cost (unless `lazyImageTower` or
 * `lazyTextTower`: then a tower opens at its first use).
 */
export class ClipModel {
  private readonly imageSlot: TowerSlot<ImageTower>;
  /** The image tower is lent (shareImageTower): its lender closes it, not this model. */
  private imageLent = false;
  private released = false;
  private imageFailure: ClipdexError | null = null;
  private readonly textSlot: TowerSlot<TextTower>;

  private constructor(
    readonly spec: ModelSpec,
    readonly tokenizer: ModelTokenizer,
    image: OwnedImageTower | null,
    text: TextTower | null,
    readonly dim: number,
    private readonly options: LoadModelOptions,
  ) {
    this.imageSlot = new TowerSlot<ImageTower>(image);
    this.textSlot = new TowerSlot(text);
  }

  static async load(spec: ModelSpec, options: LoadModelOptions = {}): Promise<ClipModel> {
    // Settled once: a bad CLIPDEX_QUERY_PRECISION fails the load, and the model's towers all open at one precision.
    options = { ...options, queryPrecision: queryPrecisionOf(options) };
    // The towers start at once, beside the tokenizer (parsing CLIP's vocabulary and merges takes a few hundred
    // ms): a tower on its own thread does not need this one, and one on this thread awaits it itself.
    const tokenizing = loadTextTokenizer(spec);
    // Neither graph nor config may say the dimension; a text tower opened now settles it (below).
    const textNow = !options.lazyTextTower || spec.embeddingDim === null;
    const opened = await Promise.allSettled([
      options.lazyImageTower ? null : openImageEncoder(spec, options),
      textNow ? openTextEncoder(spec, tokenizing, options) : null,
      tokenizing,
    ] as const);
    const [imageResult, textResult, tokenizerResult] = opened;
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) {
      // A tower that did open is closed: its thread and session would otherwise outlive the failed load.
      await Promise.all([imageResult, textResult].map((r) => (r.status === 'fulfilled' ? r.value?.release().catch(() => undefined) : undefined)));
      throw failed.reason;
    }
    const image = (imageResult as PromiseFulfilledResult<OwnedImageTower | null>).value;
    const text = (textResult as PromiseFulfilledResult<TextTower | null>).value;
    const tokenizer = (tokenizerResult as PromiseFulfilledResult<ModelTokenizer>).value;
    const dims = [image?.dim ?? null, text?.dim ?? null, spec.embeddingDim].filter((d): d is number => d !== null);
    const dim = dims[0];
    if (dim === undefined) {
      // Neither graph nor config says; one probe settles it.
      const [probe] = await text!.encode(['']);
      return new ClipModel(spec, tokenizer, image, text, probe!.length, options);
    }
    if (dims.some((d) => d !== dim)) {
      await Promise.all([image?.release(), text?.release()]);
      throw dimensionError(spec, image?.dim ?? null, text?.dim ?? null);
    }
    return new ClipModel(spec, tokenizer, image, text, dim, options);
  }

  /** The text tower; a model loaded with `lazyTextTower` must have opened it first (`openTextEncoder`). */
  get text(): TextTower {
    if (!this.textSlot.tower) throw new ClipdexError('INFERENCE_FAILED', `the text tower of ${this.spec.id} is not open yet (loaded with lazyTextTower): await openTextEncoder() first`);
    return this.textSlot.tower;
  }

  /** Whether the text tower is open (always, unless loaded with `lazyTextTower` and no text was encoded yet). */
  get textTowerOpen(): boolean {
    return this.textSlot.tower !== null;
  }

  /** The text tower, opened now if it was left for later; concurrent callers share one opening. */
  openTextEncoder(): Promise<TextTower> {
    return this.textSlot.open(async () =>
      ofDimension(await openTextEncoder(this.spec, this.tokenizer, this.options), this.dim, (got) => dimensionError(this.spec, this.dim, got)),
    );
  }

  /** The image tower; a model loaded with `lazyImageTower` must have opened it first (`openImageEncoder`). */
  get image(): ImageTower {
    if (!this.imageSlot.tower) throw new ClipdexError('INFERENCE_FAILED', `the image tower of ${this.spec.id} is not open yet (loaded with lazyImageTower): await openImageEncoder() first`);
    return this.imageSlot.tower;
  }

  /** Whether the image tower is open (always, unless loaded with `lazyImageTower` and no image was encoded yet). */
  get imageTowerOpen(): boolean {
    return this.imageSlot.tower !== null;
  }

  /**
   * Takes another holder's copy of this model's image tower (the ingest engine's encoder thread) while none
   * is open here: image queries then run there, off this thread, and no second copy is loaded. False when
   * this model has its own open already. The lender takes it back (`unshareImageTower`) before closing it.
   */
  shareImageTower(tower: ImageTower): boolean {
    if (this.imageSlot.tower || this.imageSlot.opening) return false;
    this.imageSlot.tower = tower;
    this.imageLent = true;
    return true;
  }

  /**
   * Hands this model's own image tower to a caller that closes it from now on (the ingest engine, when the
   * tower is on an encoder thread already): the model keeps encoding image queries with it until it is given
   * back (`unshareImageTower`), and does not close it itself, so a model retired by a switch leaves the engine
   * that still encodes with it working. null when the model has none of its own open.
   */
  handOverImageTower(): ImageTower | null {
    if (!this.imageSlot.tower || this.imageLent) return null;
    this.imageLent = true;
    return this.imageSlot.tower;
  }

  /** Gives a lent tower back: a later image opens this model's own. */
  unshareImageTower(tower: ImageTower): void {
    if (this.imageSlot.tower !== tower || !this.imageLent) return;
    this.imageSlot.tower = null;
    this.imageLent = false;
  }

  /** The image tower, opened now if it was left for later; concurrent callers share one opening. */
  openImageEncoder(): Promise<ImageTower> {
    return this.imageSlot
      .open(async () => ofDimension(await openImageEncoder(this.spec, this.options), this.dim, (got) => dimensionError(this.spec, got, this.textSlot.tower?.dim ?? null)))
      .then(
        (tower) => {
          this.imageFailure = null;
          return tower;
        },
        (err: unknown) => {
          this.imageFailure = isClipdexError(err) ? err : new ClipdexError('MODEL_INVALID', `cannot open the image tower of ${this.spec.id}: ${errorMessage(err)}`, { cause: err });
          throw err;
        },
      );
  }

  /**
   * Why the image tower's last opening failed, until one succeeds; null otherwise. A model loaded with
   * `lazyImageTower` finds a damaged image file only when it opens it: a server says it from then on.
   */
  get imageTowerError(): ClipdexError | null {
    return this.imageFailure;
  }

  /**
   * Sigmoid-loss models (SigLIP, SigLIP2): sigmoid(logitScale · cos + logitBias) is the calibrated
   * probability that a text matches an image (`calibratedProbability` in manifest.ts). null for CLIP.
   */
  get scoreCalibration(): ScoreCalibration | null {
    return this.spec.scoreCalibration;
  }

  get id(): string {
    return this.spec.id;
  }

  /** The precision asked for the text tower (its own and a trained version's): LoadModelOptions.queryPrecision, else the env's, else fp32. */
  get queryPrecision(): QueryPrecision {
    return queryPrecisionOf(this.options);
  }

  /** What the text tower runs as (fp32, or int8 for queries); null while it is not open. */
  get textPrecision(): TextPrecision | null {
    return this.textSlot.tower ? (this.textSlot.tower.precision ?? { precision: 'fp32' }) : null;
  }

  /** The provider each tower runs on, and why faster ones were passed over; null while no tower is open. */
  get providers(): { image: ProviderName; text: ProviderName; fallbacks: ProviderFallback[] } | null {
    // A tower not open yet will open with the same options as the other: the same provider, as a rule.
    const image = this.imageSlot.tower ?? this.textSlot.tower;
    const text = this.textSlot.tower ?? this.imageSlot.tower;
    if (!image || !text) return null;
    return { image: image.provider, text: text.provider, fallbacks: image.fallbacks };
  }

  /**
   * Text embeddings. `options.language` is for models whose text tower takes a language (NLLB-CLIP): a
   * FLORES-200 code (`deu_Latn`) or a language tag (`de`, `pt-BR`), checked against the model's codes (a
   * ClipdexError INVALID_ARGUMENT names how to find valid ones); without it each text's language is detected.
   * Other models ignore it.
   */
  async embedTexts(texts: string[], options: TextOptions = {}): Promise<Float32Array[]> {
    return (await this.openTextEncoder()).encode(texts, options);
  }

  /** A trained version's text tower for this model, opened as this model's own is (on a thread when it is). */
  openTextTowerAt(path: string): Promise<TextTower> {
    return openTextEncoder(this.spec, this.tokenizer, this.options, path);
  }

  /** The FLORES-200 codes this model's text tower takes (NLLB-CLIP), or null when it takes no language. */
  get languageCodes(): string[] | null {
    return this.tokenizer instanceof NllbTokenizer ? this.tokenizer.languageCodes : null;
  }

  /**
   * The language code each text would be encoded with (`options.language` checked, or detected), e.g. to show
   * "searched as German"; null for each text when the model takes no language.
   */
  async textLanguages(texts: readonly string[], options: TextOptions = {}): Promise<(string | null)[]> {
    if (!(this.tokenizer instanceof NllbTokenizer)) return texts.map(() => null);
    return this.tokenizer.languagesFor(texts, options.language);
  }

  /** One result per input, in order; a file that cannot be decoded fails alone. */
  async embedImages(inputs: readonly ImageInput[], options: BatchOptions = {}): Promise<ImageEmbeddingResult[]> {
    const batch = await preprocessBatch(inputs, this.spec.preprocess, options);
    const okIndexes = batch.items.flatMap((item, i) => (item.ok ? [i] : []));
    const plane = 3 * this.spec.preprocess.size ** 2;
    const packed = new Float32Array(okIndexes.length * plane);
    okIndexes.forEach((src, dst) => packed.set(batch.tensor.subarray(src * plane, (src + 1) * plane), dst * plane));
    const embeddings = okIndexes.length > 0 ? await (await this.openImageEncoder()).encode(packed, okIndexes.length) : [];
    const results: ImageEmbeddingResult[] = batch.items.map((item) =>
      item.ok ? { ok: true, embedding: new Float32Array(0) } : { ok: false, error: item.error },
    );
    okIndexes.forEach((src, k) => {
      results[src] = { ok: true, embedding: embeddings[k]! };
    });
    return results;
  }

  /** Closes what this model holds (a tower handed over stays open); a second call does nothing. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    // A tower this model opened is its own (only lent ones are set from outside, and those it does not close).
    const image = (this.imageLent ? null : (this.imageSlot.tower ?? (await this.imageSlot.settled()))) as OwnedImageTower | null;
    const text = this.textSlot.tower ?? (await this.textSlot.settled());
    await Promise.all([image?.release(), text?.release()]);
  }
}

/**
 * A tower opened at load or at its first use: callers that come while it opens share the one opening, and a
 * failed opening is tried again by the next caller.
 */
class TowerSlot<T> {
  opening: Promise<T> | null = null;

  constructor(public tower: T | null) {}

  async open(openTower: () => Promise<T>): Promise<T> {
    if (this.tower) return this.tower;
    this.opening ??= openTower().then((t) => (this.tower = t));
    try {
      return await this.opening;
    } finally {
      this.opening = null;
    }
  }

  /** The tower an opening under way gives, or null (none under way, or it failed). */
  async settled(): Promise<T | null> {
    return (await this.opening?.catch(() => null)) ?? null;
  }
}

/** The tower, unless the graph gives embeddings of another dimension than the model's: then closed and refused. */
async function ofDimension<T extends { dim?: number | null; release(): Promise<void> }>(tower: T, dim: number, mismatch: (got: number) => ClipdexError): Promise<T> {
  if (tower.dim != null && tower.dim !== dim) {
    await tower.release();
    throw mismatch(tower.dim);
  }
  return tower;
}

async function openImageEncoder(spec: ModelSpec, options: LoadModelOptions): Promise<OwnedImageTower> {
  if (options.openImageTower) return options.openImageTower(spec, sessionOptionsOf(options));
  const tower = await openTower(join(spec.dir, spec.vision.file), spec.vision, 'image', options);
  return new ImageEncoder(tower, spec.preprocess.size, options.imageBatch);
}

/**
 * A text tower of this model's spec, on this thread or its own (`textThread`): the model's own file, or
 * `path` (a trained version's tower, which has the same inputs and outputs).
 */
export async function openTextEncoder(spec: ModelSpec, tokenizer: ModelTokenizer | Promise<ModelTokenizer>, options: LoadModelOptions, path?: string): Promise<TextTower> {
  const file = path ?? join(spec.dir, spec.text.file);
  const precision = queryPrecisionOf(options);
  if (options.textThread) {
    return ThreadTextEncoder.open(spec, tokenizer, { session: sessionOptionsOf(options), path: file, precision, ...(options.textBatch ? { batch: options.textBatch } : {}) });
  }
  const [opened, tokens] = await Promise.all([openTextTowerSession(file, spec, sessionOptionsOf(options), precision), tokenizer]);
  return new TextEncoder(opened.tower, tokens, spec.contextLength, options.textBatch, opened.precision);
}

function queryPrecisionOf(options: LoadModelOptions): QueryPrecision {
  return resolveQueryPrecision(options.queryPrecision);
}

/** The session options of a model's load options, for a tower opened on another thread (plain data). */
export function sessionOptionsOf(options: LoadModelOptions): SessionOptions {
  return {
    ...(options.providers ? { providers: options.providers } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.cacheDir !== undefined ? { cacheDir: options.cacheDir } : {}),
  };
}

function dimensionError(spec: ModelSpec, image: number | null, text: number | null): ClipdexError {
  return new ClipdexError(
    'MODEL_INVALID',
    `${spec.dir}: image embeddings (${image ?? '?'}), text embeddings (${text ?? '?'}) and config (${spec.embeddingDim ?? '?'}) disagree on the dimension`,
  );
}
