/**
 * NLLB-CLIP's tokenizer: NLLB-200's SentencePiece BPE (a tokenizer.json run by Hugging Face's library), with a
 * FLORES-200 language code token before the text and `</s>` after it: `[deu_Latn] ▁Hund … </s> <pad>…`.
 *
 * That is the row open_clip builds for NLLB-CLIP (its HFTokenizer's `set_language` calls transformers'
 * `set_src_lang_special_tokens`: prefix [lang], suffix [eos]), the input the model was trained and evaluated
 * with; its text tower pools that first position. Immich's ML service instead glues the code onto the text
 * (`f"{flores_code}{text}"`) and lets the tokenizer.json's own template add its tokens, which with a template
 * of `eng_Latn $A </s>` puts two language tokens first. clipdex builds the open_clip row itself, whatever
 * template the file carries: truncation keeps room for both special tokens, as transformers' does.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import { HfTokenizer, type HfTokenizerOptions } from './hf-tokenizer.js';
import { DEFAULT_FLORES_CODE, FLORES_CODE_PATTERN, floresCodeFor } from './language-codes.js';
import { detectLanguage } from './language-detect.js';
import type { TextOptions, TextTokenizer, TokenizedText } from './text-encoder.js';

export class NllbTokenizer implements TextTokenizer {
  readonly padsToContext = true;

  private constructor(
    readonly inner: HfTokenizer,
    private readonly codes: ReadonlyMap<string, number>,
    readonly eosId: number,
    private readonly source: string,
  ) {}

  static async fromDir(dir: string, options: HfTokenizerOptions): Promise<NllbTokenizer> {
    const inner = await HfTokenizer.fromDir(dir, options);
    const codes = new Map([...inner.vocabulary()].filter(([token]) => FLORES_CODE_PATTERN.test(token)));
    const source = options.source ?? dir;
    if (codes.size === 0) {
      throw new ClipdexError('TOKENIZER_INVALID', `Tokenizer ${source} has no FLORES-200 language tokens (such as eng_Latn); it is not NLLB's`);
    }
    const eosToken = await eosFromConfig(join(dir, 'tokenizer_config.json'));
    const eosId = inner.tokenId(eosToken);
    if (eosId === null) throw new ClipdexError('TOKENIZER_INVALID', `Tokenizer ${source}: its end token ${JSON.stringify(eosToken)} has no id`);
    return new NllbTokenizer(inner, codes, eosId, source);
  }

  get padId(): number {
    return this.inner.padId;
  }

  get contextLength(): number {
    return this.inner.contextLength;
  }

  /** The FLORES-200 codes this tokenizer has a token for, in id order. */
  get languageCodes(): string[] {
    return [...this.codes].sort((a, b) => a[1] - b[1]).map(([code]) => code);
  }

  /**
   * The FLORES-200 code for `language` (a code, or a tag such as `de`, `pt-BR`), checked against the codes this
   * tokenizer knows; a ClipdexError (INVALID_ARGUMENT) that says how to find a valid one otherwise.
   */
  resolveLanguage(language: string): string {
    if (typeof language !== 'string') {
      throw new ClipdexError('INVALID_ARGUMENT', `language must be a string such as "deu_Latn" or "de", got ${language === null ? 'null' : typeof language}`);
    }
    const code = floresCodeFor(language);
    if (code !== null && this.codes.has(code)) return code;
    const known = this.languageCodes;
    const stem = language.trim().toLowerCase().slice(0, 3);
    const near = known.filter((c) => stem.length > 0 && c.toLowerCase().startsWith(stem));
    throw new ClipdexError(
      'INVALID_ARGUMENT',
      `unknown language ${JSON.stringify(language)}${code && code !== language ? ` (read as ${code})` : ''}: this model (${this.source}) takes ` +
        `one of its ${known.length} FLORES-200 codes, written as an ISO 639-3 language and an ISO 15924 script (deu_Latn, zho_Hant, arb_Arab), ` +
        `or a language tag clipdex maps to one (de, pt-BR, zh-TW)${near.length > 0 ? `; close to what you gave: ${near.join(', ')}` : ''}. ` +
        'The full list is the language tokens of the model\'s tokenizer.json; without a language clipdex detects it.',
      { details: { language, known } },
    );
  }

  /** The FLORES-200 code each text is encoded with: `language` for all when given, else each one detected. */
  async languagesFor(texts: readonly string[], language?: string): Promise<string[]> {
    if (language !== undefined) {
      const code = this.resolveLanguage(language);
      return texts.map(() => code);
    }
    return Promise.all(
      texts.map(async (text) => {
        const detected = await detectLanguage(text);
        // A detected language the model has no token for (none of eld's) falls back to NLLB-CLIP's default.
        return this.codes.has(detected.flores) ? detected.flores : DEFAULT_FLORES_CODE;
      }),
    );
  }

  async tokenize(texts: readonly string[], contextLength = this.contextLength, options: TextOptions = {}): Promise<TokenizedText[]> {
    if (contextLength < 3) throw new ClipdexError('INVALID_ARGUMENT', `contextLength must leave room for the language and end tokens, got ${contextLength}`);
    const languages = await this.languagesFor(texts, options.language);
    const bodies = await this.inner.encodeWithoutSpecialTokens(texts, contextLength - 2);
    return bodies.map((body, i) => {
      const ids = [this.codes.get(languages[i]!)!, ...body, this.eosId];
      const mask = ids.map(() => 1);
      while (ids.length < contextLength) {
        ids.push(this.padId);
        mask.push(0);
      }
      return { ids, mask };
    });
  }
}

async function eosFromConfig(path: string): Promise<string> {
  try {
    const config = JSON.parse(await readFile(path, 'utf8')) as { eos_token?: unknown };
    const eos = config.eos_token;
    if (typeof eos === 'string') return eos;
    if (typeof eos === 'object' && eos !== null && typeof (eos as { content?: unknown }).content === 'string') return (eos as { content: string }).content;
  } catch {
    // No or unreadable config: NLLB's end token is </s>.
  }
  return '</s>';
}
