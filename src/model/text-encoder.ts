import { ClipdexError } from '../errors.js';
import { type GraphCacheOutcome, type ProviderFallback, type ProviderName, type SessionOptions, type Tensor, tensor } from '../inference/onnx-runtime.js';
import { openInt8TextTower } from './int8-text-tower.js';
import type { ModelSpec } from './model-dir.js';
import type { QueryPrecision, TextPrecision } from './query-precision.js';
import { isDynamic, openTower, runTower, type TowerSession } from './tower-session.js';

/** One text's token ids, and 1 for each real token / 0 for each pad (the attention mask). */
export interface TokenizedText {
  ids: number[];
  mask: number[];
}

/**
 * What the text encoder needs of a tokenizer: CLIP's BPE (tokenizer.ts) or a tokenizer.json run by
 * Hugging Face's library (hf-tokenizer.ts: SigLIP, SigLIP2, and the multilingual families' XLM-R).
 */
export interface TextTokenizer {
  readonly padId: number;
  /**
   * True when rows must be padded to the context: models that pool the last position (SigLIP) or were
   * trained on padded rows without a mask. False for CLIP, whose end-token pooling and causal mask make
   * the padding irrelevant, so a batch may run at its longest real length.
   */
  readonly padsToContext: boolean;
  /** Each text's ids, truncated to `contextLength`; padded to it when `padsToContext`. */
  tokenize(texts: readonly string[], contextLength: number, options?: TextOptions): Promise<TokenizedText[]>;
}

/** What a text may carry besides itself. */
export interface TextOptions {
  /**
   * The language the texts are written in, for models whose text tower takes one (NLLB-CLIP: a FLORES-200
   * code such as `deu_Latn`, or a tag such as `de`, `pt-BR`). Without it such a model detects each text's
   * language; other models ignore it.
   */
  language?: string | undefined;
}

/** What encodes texts for a model: a session on this thread (TextEncoder) or on its own (text-thread.ts). */
export interface TextTower {
  readonly dim: number | null;
  readonly provider: ProviderName;
  readonly fallbacks: ProviderFallback[];
  /** Whether the session came from a saved optimized graph; absent where the tower does not say. */
  readonly graphCache?: GraphCacheOutcome;
  /** What the tower runs as (fp32, or int8 for queries: query-precision.ts); absent where the tower does not say. */
  readonly precision?: TextPrecision;
  encode(texts: string[], options?: { padToContext?: boolean } & TextOptions): Promise<Float32Array[]>;
  release(): Promise<void>;
}

/**
 * CLIP text tower: phrases in, L2-normalised embeddings out.
 * When the graph accepts a free sequence length, a batch runs at its longest real token length:
 * the causal mask and end-token pooling make the padding after the end token irrelevant,
 * so the result equals the padded-to-77 one and costs a fraction of it.
 */
export class TextEncoder implements TextTower {
  readonly dynamicLength: boolean;

  constructor(
    private readonly tower: TowerSession,
    private readonly tokenizer: TextTokenizer,
    readonly contextLength: number,
    private readonly preferredBatch = 32,
    readonly precision: TextPrecision = { precision: 'fp32' },
  ) {
    const seqDim = tower.input.shape[1];
    this.dynamicLength = isDynamic(seqDim);
    if (!this.dynamicLength && typeof seqDim === 'number' && seqDim !== contextLength) {
      // The graph's fixed length is the truth; the config's context length may describe another export.
      this.contextLength = seqDim;
    }
    if (!['int64', 'int32'].includes(tower.input.type)) {
      throw new ClipdexError('MODEL_INVALID', `text model input ${tower.input.name} has type ${tower.input.type}; expected int64 or int32 token ids`);
    }
  }

  get provider(): ProviderName {
    return this.tower.provider;
  }

  get fallbacks(): ProviderFallback[] {
    return this.tower.fallbacks;
  }

  get dim(): number | null {
    return this.tower.outputDim;
  }

  get graphCache(): GraphCacheOutcome {
    return this.tower.graphCache;
  }

  /** Encodes phrases; `padToContext` forces the fixed 77-token input (used to prove both agree). */
  async encode(texts: string[], options: { padToContext?: boolean } & TextOptions = {}): Promise<Float32Array[]> {
    const tokenized = await this.tokenizer.tokenize(texts, this.contextLength, { language: options.language });
    const batch = Math.min(this.tower.maxBatch, this.preferredBatch);
    const padToContext = options.padToContext === true || this.tokenizer.padsToContext;
    const out: Float32Array[] = [];
    for (let start = 0; start < tokenized.length; start += batch) {
      out.push(...(await this.run(tokenized.slice(start, start + batch), padToContext)));
    }
    return out;
  }

  private async run(rows: TokenizedText[], padToContext: boolean): Promise<Float32Array[]> {
    const length = this.dynamicLength && !padToContext ? Math.max(...rows.map((r) => r.ids.length)) : this.contextLength;
    const n = rows.length;
    const ids = this.tower.input.type === 'int64' ? new BigInt64Array(n * length) : new Int32Array(n * length);
    const mask = this.tower.input.type === 'int64' ? new BigInt64Array(n * length) : new Int32Array(n * length);
    rows.forEach((row, r) => {
      for (let i = 0; i < length; i++) {
        const real = i < row.ids.length;
        const id = real ? row.ids[i]! : this.tokenizer.padId;
        const m = real ? (row.mask[i] ?? 1) : 0;
        if (ids instanceof BigInt64Array) {
          ids[r * length + i] = BigInt(id);
          (mask as BigInt64Array)[r * length + i] = BigInt(m);
        } else {
          ids[r * length + i] = id;
          (mask as Int32Array)[r * length + i] = m;
        }
      }
    });
    const type = this.tower.input.type as 'int64' | 'int32';
    const feeds: Record<string, Tensor> = { [this.tower.input.name]: tensor(type, ids, [n, length]) };
    for (const extra of this.tower.extraInputs) {
      if (extra.name !== 'attention_mask') {
        throw new ClipdexError('MODEL_INVALID', `text model declares an input ${extra.name} that clipdex does not know how to feed`);
      }
      feeds[extra.name] = tensor(extra.type === 'int32' ? 'int32' : 'int64', extra.type === type ? mask : convert(mask), [n, length]);
    }
    return runTower(this.tower, feeds, n, 'text');
  }

  async release(): Promise<void> {
    await this.tower.session.release();
  }
}

function convert(mask: BigInt64Array | Int32Array): BigInt64Array | Int32Array {
  return mask instanceof BigInt64Array ? Int32Array.from(mask, Number) : BigInt64Array.from(mask, BigInt);
}

/**
 * Opens a text tower file of `spec` at the asked precision: fp32 opens `file` itself; int8 opens its int8 version
 * (int8-text-tower.ts: quantized once into the cache dir, or the file itself when it is quantized already).
 */
export async function openTextTowerSession(
  file: string,
  spec: ModelSpec,
  session: SessionOptions,
  precision: QueryPrecision,
): Promise<{ tower: TowerSession; precision: TextPrecision }> {
  if (precision === 'fp32') {
    const tower = await openTower(file, spec.text, 'text', session);
    return { tower, precision: spec.quantization ? { precision: 'int8', source: 'model' } : { precision: 'fp32' } };
  }
  const { cacheDir, ...rest } = session;
  return openInt8TextTower(file, { cacheDir, quantized: spec.quantization !== undefined }, (path, lasting) => openTower(path, spec.text, 'text', lasting ? session : rest));
}
