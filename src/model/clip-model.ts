import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import type { ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import { ImageEncoder } from './image-encoder.js';
import { preprocessBatch, type BatchOptions } from './image-preprocess.js';
import type { ImageInput } from './image-source.js';
import type { ModelSpec } from './model-dir.js';
import type { ScoreCalibration } from './manifest.js';
import { NllbTokenizer } from './nllb-tokenizer.js';
import { TextEncoder, type TextOptions } from './text-encoder.js';
import { loadTextTokenizer, type ModelTokenizer } from './text-tokenizer.js';
import { openTower } from './tower-session.js';

export interface LoadModelOptions extends SessionOptions {
  /** Largest image batch sent to the encoder at once (graphs with a fixed batch run one at a time). */
  imageBatch?: number;
  textBatch?: number;
}

export type ImageEmbeddingResult =
  | { ok: true; embedding: Float32Array }
  | { ok: false; error: ClipdexError };

/**
 * A loaded CLIP model: tokenizer, both ONNX towers and the preprocessing they expect.
 * Everything is opened up front so the first query pays no loading cost.
 */
export class ClipModel {
  private constructor(
    readonly spec: ModelSpec,
    readonly tokenizer: ModelTokenizer,
    readonly image: ImageEncoder,
    readonly text: TextEncoder,
    readonly dim: number,
  ) {}

  static async load(spec: ModelSpec, options: LoadModelOptions = {}): Promise<ClipModel> {
    const tokenizer = await loadTextTokenizer(spec);
    const [imageTower, textTower] = await Promise.all([
      openTower(join(spec.dir, spec.vision.file), spec.vision, 'image', options),
      openTower(join(spec.dir, spec.text.file), spec.text, 'text', options),
    ]);
    const image = new ImageEncoder(imageTower, spec.preprocess.size, options.imageBatch);
    const text = new TextEncoder(textTower, tokenizer, spec.contextLength, options.textBatch);
    const dims = [image.dim, text.dim, spec.embeddingDim].filter((d): d is number => d !== null);
    const dim = dims[0];
    if (dim === undefined) {
      // Neither graph nor config says; one probe settles it.
      const [probe] = await text.encode(['']);
      return new ClipModel(spec, tokenizer, image, text, probe!.length);
    }
    if (dims.some((d) => d !== dim)) {
      await Promise.all([image.release(), text.release()]);
      throw new ClipdexError(
        'MODEL_INVALID',
        `${spec.dir}: image embeddings (${image.dim ?? '?'}), text embeddings (${text.dim ?? '?'}) and config (${spec.embeddingDim ?? '?'}) disagree on the dimension`,
      );
    }
    return new ClipModel(spec, tokenizer, image, text, dim);
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

  /** The provider each tower runs on, and why faster ones were passed over. */
  get providers(): { image: ProviderName; text: ProviderName; fallbacks: ProviderFallback[] } {
    return { image: this.image.provider, text: this.text.provider, fallbacks: this.image.fallbacks };
  }

  /**
   * Text embeddings. `options.language` is for models whose text tower takes a language (NLLB-CLIP): a
   * FLORES-200 code (`deu_Latn`) or a language tag (`de`, `pt-BR`), checked against the model's codes (a
   * ClipdexError INVALID_ARGUMENT names how to find valid ones); without it each text's language is detected.
   * Other models ignore it.
   */
  async embedTexts(texts: string[], options: TextOptions = {}): Promise<Float32Array[]> {
    return this.text.encode(texts, options);
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
    const embeddings = okIndexes.length > 0 ? await this.image.encode(packed, okIndexes.length) : [];
    const results: ImageEmbeddingResult[] = batch.items.map((item) =>
      item.ok ? { ok: true, embedding: new Float32Array(0) } : { ok: false, error: item.error },
    );
    okIndexes.forEach((src, k) => {
      results[src] = { ok: true, embedding: embeddings[k]! };
    });
    return results;
  }

  async release(): Promise<void> {
    await Promise.all([this.image.release(), this.text.release()]);
  }
}
