/**
 * A tokenizer driven by a Hugging Face `tokenizer.json` (SentencePiece Unigram, Gemma's byte-fallback BPE,
 * XLM-R's…), run by the `tokenizers` package: Hugging Face's own Rust tokenizer, the one Immich's ML
 * service and transformers (Python) use. The pure-JS ports approximate parts of it (the Precompiled
 * normalizer most of all), and a tokenizer that differs by one id is a different model's input.
 *
 * This module is the only importer of `tokenizers`. It is loaded lazily, on the first model that needs
 * it, so that a platform without its native binary still runs every CLIP (BPE) model.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import type { TextTokenizer, TokenizedText } from './text-encoder.js';
import { cleanForModel, type TextCleaning } from './text-clean.js';

type TokenizersModule = typeof import('tokenizers');
type NativeTokenizer = InstanceType<TokenizersModule['Tokenizer']>;

let loaded: TokenizersModule | null = null;

/** The binary file inside the package the running platform needs, as napi-rs names them. */
export function nativeBinaryName(os = platform(), cpu = arch(), musl = isMusl()): string {
  const abi = os === 'linux' ? (cpu.startsWith('arm') && cpu !== 'arm64' ? '-gnueabihf' : musl ? '-musl' : '-gnu') : os === 'win32' ? '-msvc' : '';
  return `tokenizers.${os}-${cpu}${abi}.node`;
}

function isMusl(): boolean {
  if (platform() !== 'linux') return false;
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return !report?.header?.glibcVersionRuntime;
}

/** The `tokenizers` package, or a ClipdexError that names the native binary this platform lacks. */
export function loadTokenizers(): TokenizersModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  try {
    loaded = require('tokenizers') as TokenizersModule;
    return loaded;
  } catch (err) {
    throw new ClipdexError(
      'MODEL_UNSUPPORTED',
      `This model's text tower needs Hugging Face's tokenizer (the "tokenizers" package), whose native binary ` +
        `for ${platform()}-${arch()} (${nativeBinaryName()}) could not be loaded: ${errorMessage(err)}. ` +
        'CLIP models (BPE tokenizer) still work; reinstall clipdex on a platform tokenizers ships a binary for ' +
        '(Linux x64/arm64 glibc or musl, macOS x64/arm64, Windows x64/arm64/ia32).',
      { cause: err, details: { platform: platform(), arch: arch(), binary: nativeBinaryName() } },
    );
  }
}

export interface HfTokenizerOptions {
  /** Tokens per row: every row is truncated and padded to exactly this many. */
  contextLength: number;
  /** Text cleaning the model was trained with, applied before the tokenizer (open_clip's `clean`). */
  cleaning?: TextCleaning;
  /** Names the tokenizer in error messages. */
  source?: string;
}

interface TokenizerConfig {
  pad_token?: unknown;
  tokenizer_class?: unknown;
  model_max_length?: unknown;
}

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/**
 * Rows padded to the context with the model's pad token and truncated to it (the special tokens the
 * tokenizer.json's post-processor adds, e.g. SigLIP's `</s>`, kept inside the limit): what Immich's
 * `enable_padding(length=context) + enable_truncation(context)` and transformers' `padding='max_length',
 * truncation=True` produce.
 */
export class HfTokenizer implements TextTokenizer {
  readonly padsToContext = true;

  private constructor(
    private readonly native: NativeTokenizer,
    /** The tokenizer.json text, for a second instance set up without special tokens (encodeWithoutSpecialTokens). */
    private readonly json: string,
    readonly padId: number,
    readonly padToken: string,
    readonly contextLength: number,
    readonly cleaning: TextCleaning,
    /** Ids the embedding table must have rows for: the largest id + 1. */
    readonly vocabSize: number,
  ) {}

  /**
   * Reads `tokenizer.json` and `tokenizer_config.json` from `dir`. The pad token is the config's
   * `pad_token` (as Immich reads it), else the tokenizer.json's own padding config, else `<pad>`.
   */
  static async fromDir(dir: string, options: HfTokenizerOptions): Promise<HfTokenizer> {
    const source = options.source ?? dir;
    const file = join(dir, 'tokenizer.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new ClipdexError('FILE_NOT_FOUND', `No tokenizer.json in ${dir}`, { cause: err, details: { path: file } });
    }
    const config = await readConfig(join(dir, 'tokenizer_config.json'));
    const { Tokenizer } = loadTokenizers();
    let native: NativeTokenizer;
    try {
      native = Tokenizer.fromString(text);
    } catch (err) {
      throw new ClipdexError('TOKENIZER_INVALID', `${file} is not a tokenizer.json the tokenizers library reads: ${errorMessage(err)}`, {
        cause: err,
        details: { path: file },
      });
    }
    const padToken = tokenContent(config?.pad_token) ?? padFromJson(text) ?? '<pad>';
    const padId = native.tokenToId(padToken);
    if (padId === null || padId === undefined) {
      throw new ClipdexError('TOKENIZER_INVALID', `Tokenizer ${source}: its pad token ${JSON.stringify(padToken)} has no id`, { details: { path: file } });
    }
    const context = options.contextLength;
    if (!Number.isSafeInteger(context) || context < 1) {
      throw new ClipdexError('INVALID_ARGUMENT', `contextLength must be a positive integer, got ${context}`);
    }
    const vocab = native.getVocab(true);
    let maxId = 0;
    for (const id of Object.values(vocab)) maxId = Math.max(maxId, id);
    const tokenizer = new HfTokenizer(native, text, padId, padToken, context, options.cleaning ?? 'none', maxId + 1);
    tokenizer.configure(context);
    return tokenizer;
  }

  private configuredFor = 0;

  private configure(contextLength: number): void {
    if (this.configuredFor === contextLength) return;
    this.native.setTruncation(contextLength);
    this.native.setPadding({ maxLength: contextLength, padId: this.padId, padToken: this.padToken });
    this.configuredFor = contextLength;
  }

  /** Ids and attention mask of each text, exactly `contextLength` long. */
  async tokenize(texts: readonly string[], contextLength = this.contextLength): Promise<TokenizedText[]> {
    for (const text of texts) {
      if (typeof text !== 'string') {
        throw new ClipdexError('INVALID_ARGUMENT', `Text to tokenise must be a string, got ${text === null ? 'null' : typeof text}`);
      }
    }
    this.configure(contextLength);
    const encodings = await this.native.encodeBatch(texts.map((t) => cleanForModel(t, this.cleaning)));
    return encodings.map((e) => ({ ids: e.getIds(), mask: e.getAttentionMask() }));
  }

  private bare: { native: NativeTokenizer; maxTokens: number } | null = null;

  /**
   * Each text's ids without the post-processor's special tokens and without padding, cut to `maxTokens`
   * (after cleaning): for tokenizers whose special tokens depend on the call, such as NLLB's language code
   * (nllb-tokenizer.ts). A second native instance, so the padded one's settings never change under a
   * concurrent call.
   */
  async encodeWithoutSpecialTokens(texts: readonly string[], maxTokens: number): Promise<number[][]> {
    for (const text of texts) {
      if (typeof text !== 'string') {
        throw new ClipdexError('INVALID_ARGUMENT', `Text to tokenise must be a string, got ${text === null ? 'null' : typeof text}`);
      }
    }
    if (!this.bare || this.bare.maxTokens !== maxTokens) {
      const native = loadTokenizers().Tokenizer.fromString(this.json);
      native.setTruncation(maxTokens);
      this.bare = { native, maxTokens };
    }
    const encodings = await this.bare.native.encodeBatch(
      texts.map((t) => cleanForModel(t, this.cleaning)),
      { addSpecialTokens: false },
    );
    return encodings.map((e) => e.getIds());
  }

  /** The id of a token (special or not), or null when the vocabulary lacks it. */
  tokenId(token: string): number | null {
    return this.native.tokenToId(token) ?? null;
  }

  /** Every token and its id, the added ones (special tokens, NLLB's language codes) included. */
  vocabulary(): Map<string, number> {
    return new Map(Object.entries(this.native.getVocab(true)));
  }

  /** The token strings of one text (for `clipdex tokenize` and tests), padding left off. */
  async tokens(text: string): Promise<string[]> {
    const [row] = await this.tokenize([text]);
    return row!.ids.filter((_, i) => row!.mask[i] === 1).map((id) => this.native.idToToken(id) ?? `<${id}>`);
  }
}

async function readConfig(path: string): Promise<TokenizerConfig | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return null;
  }
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as TokenizerConfig) : null;
  } catch (err) {
    throw new ClipdexError('TOKENIZER_INVALID', `cannot read ${path}: ${errorMessage(err)}`, { cause: err, details: { path } });
  }
}

function padFromJson(text: string): string | undefined {
  try {
    const json = JSON.parse(text) as { padding?: { pad_token?: unknown } | null };
    return typeof json.padding?.pad_token === 'string' ? json.padding.pad_token : undefined;
  } catch {
    return undefined;
  }
}
