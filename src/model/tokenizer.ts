/**
 * CLIP's byte-level BPE tokenizer, reproducing the ids of OpenAI's `simple_tokenizer.py`:
 * clean the text (see text-clean.ts), split it with OpenAI's regex, write each piece's UTF-8
 * bytes as byte symbols, mark the last with `</w>`, apply merges by rank, look the tokens up.
 */
import { ClipdexError } from '../errors.js';
import { cleanClipText } from './text-clean.js';
import type { TextTokenizer, TokenizedText } from './text-encoder.js';
import {
  BYTE_TO_UNICODE,
  END_OF_WORD,
  END_TOKEN,
  START_TOKEN,
  byteSymbolsInVocabOrder,
  readTokenizerFile,
  type Merge,
  type TokenizerData,
} from './tokenizer-files.js';

export { byteLevelVocabulary, writeTokenizerFiles, type Merge } from './tokenizer-files.js';

/**
 * OpenAI's pattern. It runs on lower-cased text, so its IGNORECASE flag changes nothing except at
 * U+0345, which case-insensitive matching in Python's `regex` puts in neither class (its case fold
 * is a letter, itself is not): it is excluded here to match, and so skipped like whitespace.
 * `\s` is Python's (Unicode White_Space), not JS's.
 */
const WORD_PATTERN =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: U+0345 stands alone in this class on purpose (see above)
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}\u0345]+/gu;

const utf8 = new TextEncoder();

export interface ClipTokenizerOptions {
  /** Id written after the end token by `encodeBatch`. Default: the file's padding config, else 0 as OpenAI pads. */
  padId?: number;
  /** Distinct words whose ids are remembered (first in, first out). Default 50 000. */
  cacheSize?: number;
  /** Names the vocabulary in error messages. */
  source?: string;
}

/** Merge ranks as first symbol → second symbol → rank, so lookups need no string building. */
type RankTable = Map<string, Map<string, number>>;

function rankOf(ranks: RankTable, a: string, b: string): number | undefined {
  return ranks.get(a)?.get(b);
}

/**
 * Applies merges to one word's symbols exactly as OpenAI's `bpe()` does: repeatedly take the
 * lowest-ranked adjacent pair and merge all its occurrences left to right, then look again.
 * A heap keyed by (rank, position) finds the pairs in O(n log n), so a pasted 100k-letter "word"
 * costs milliseconds, not minutes; occurrences of one rank are merged as a batch before the pairs
 * they create are queued, which is what makes it OpenAI's order and not merely a valid one.
 */
function applyMerges(symbols: string[], ranks: RankTable): string[] {
  const n = symbols.length;
  if (n < 2) return symbols;
  const next = new Int32Array(n);
  const prev = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  const alive = new Uint8Array(n).fill(1);
  // Heap of rank * 2^32 + position: pops the lowest rank, then the leftmost occurrence.
  const heap: number[] = [];
  const push = (key: number) => {
    let i = heap.push(key) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= key) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = key;
  };
  const pop = (): number => {
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= heap.length) break;
        const r = l + 1;
        const c = r < heap.length && heap[r]! < heap[l]! ? r : l;
        if (heap[c]! >= last) break;
        heap[i] = heap[c]!;
        i = c;
      }
      heap[i] = last;
    }
    return top;
  };
  const SHIFT = 2 ** 32;
  const queuePair = (left: number) => {
    const right = next[left]!;
    if (left < 0 || right < 0) return;
    const rank = rankOf(ranks, symbols[left]!, symbols[right]!);
    if (rank !== undefined) push(rank * SHIFT + left);
  };
  for (let i = 0; i + 1 < n; i++) queuePair(i);

  const merged: number[] = [];
  while (heap.length > 0) {
    const rank = Math.floor(heap[0]! / SHIFT);
    merged.length = 0;
    while (heap.length > 0 && Math.floor(heap[0]! / SHIFT) === rank) {
      const left = pop() % SHIFT;
      const right = next[left]!;
      // Entries go stale when a neighbour merged first; symbols only grow, so a stale pair never ranks the same again.
      if (!alive[left] || right < 0 || rankOf(ranks, symbols[left]!, symbols[right]!) !== rank) continue;
      symbols[left] = symbols[left]! + symbols[right]!;
      alive[right] = 0;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      merged.push(left);
    }
    for (const left of merged) {
      if (!alive[left]) continue;
      if (prev[left]! >= 0) queuePair(prev[left]!);
      queuePair(left);
    }
  }
  const out: string[] = [];
  for (let i = 0; i >= 0; i = next[i]!) out.push(symbols[i]!);
  return out;
}

export class ClipTokenizer implements TextTokenizer {
  readonly padsToContext = false;
  readonly startId: number;
  readonly endId: number;
  readonly padId: number;
  /** One more than the largest id: the rows the text tower's token embedding needs. */
  readonly vocabSize: number;

  private readonly vocab: ReadonlyMap<string, number>;
  private readonly ranks: RankTable;
  private readonly cache = new Map<string, readonly number[]>();
  private readonly cacheSize: number;

  constructor(vocab: ReadonlyMap<string, number> | Readonly<Record<string, number>>, merges: readonly (readonly [string, string])[], options: ClipTokenizerOptions = {}) {
    const source = options.source ?? 'the vocabulary';
    const fail = (what: string) =>
      new ClipdexError('TOKENIZER_INVALID', `Tokenizer ${source} is not a CLIP byte-level BPE vocabulary: ${what}`, {
        details: { path: source },
      });
    this.vocab = vocab instanceof Map ? vocab : new Map(Object.entries(vocab));
    const startId = this.vocab.get(START_TOKEN);
    const endId = this.vocab.get(END_TOKEN);
    if (startId === undefined || endId === undefined) throw fail(`it lacks ${startId === undefined ? START_TOKEN : END_TOKEN}`);
    for (const symbol of byteSymbolsInVocabOrder()) {
      for (const token of [symbol, symbol + END_OF_WORD]) {
        if (!this.vocab.has(token)) throw fail(`it lacks the byte token ${JSON.stringify(token)}`);
      }
    }
    // dict(zip(merges, range(len(merges)))) in OpenAI's code: a repeated merge keeps its last rank.
    this.ranks = new Map();
    merges.forEach(([a, b], rank) => {
      if (!this.vocab.has(a + b)) throw fail(`merge ${rank + 1} (${JSON.stringify(`${a} ${b}`)}) makes ${JSON.stringify(a + b)}, which has no id`);
      let inner = this.ranks.get(a);
      if (!inner) this.ranks.set(a, (inner = new Map()));
      inner.set(b, rank);
    });
    let maxId = 0;
    for (const id of this.vocab.values()) maxId = Math.max(maxId, id);
    this.startId = startId;
    this.endId = endId;
    this.vocabSize = maxId + 1;
    this.padId = options.padId ?? 0;
    if (!Number.isSafeInteger(this.padId) || this.padId < 0 || this.padId >= this.vocabSize) {
      throw new ClipdexError('INVALID_ARGUMENT', `padId ${this.padId} is not an id of ${source} (0..${this.vocabSize - 1})`);
    }
    this.cacheSize = options.cacheSize ?? 50_000;
  }

  static fromVocabAndMerges(vocab: ReadonlyMap<string, number> | Readonly<Record<string, number>>, merges: readonly (readonly [string, string])[], options?: ClipTokenizerOptions): ClipTokenizer {
    return new ClipTokenizer(vocab, merges, options);
  }

  /**
   * Loads OpenAI's `bpe_simple_vocab_16e6.txt.gz`, a Hugging Face `tokenizer.json`, a `vocab.json`
   * (with `merges.txt` beside it), or a directory holding one of them (tried in that order of preference:
   * tokenizer.json, vocab.json + merges.txt, the gz).
   */
  static async fromFile(path: string, options: ClipTokenizerOptions = {}): Promise<ClipTokenizer> {
    const data: TokenizerData = await readTokenizerFile(path);
    return new ClipTokenizer(data.vocab, data.merges, {
      ...options,
      padId: options.padId ?? data.padId,
      source: options.source ?? data.source,
    });
  }

  /** Ids of `text` with the start and end tokens, neither truncated nor padded. */
  encode(text: string): number[] {
    return this.encodeLimited(text, Infinity);
  }

  /** Ids with start and end, cut to at most `contextLength` so that the last id is still the end token; not padded. */
  encodeTruncated(text: string, contextLength: number): number[] {
    checkContextLength(contextLength);
    return this.encodeLimited(text, contextLength);
  }

  /** Each text truncated to `contextLength`, unpadded (the encoder pads), all of it real tokens. */
  async tokenize(texts: readonly string[], contextLength: number): Promise<TokenizedText[]> {
    return texts.map((text) => {
      const ids = this.encodeTruncated(text, contextLength);
      return { ids, mask: ids.map(() => 1) };
    });
  }

  /** One row of exactly `contextLength` ids per text: truncated keeping the end token last, then padded with `padId`. */
  encodeBatch(texts: readonly string[], contextLength = 77): number[][] {
    checkContextLength(contextLength);
    return texts.map((text) => {
      const ids = this.encodeLimited(text, contextLength);
      while (ids.length < contextLength) ids.push(this.padId);
      return ids;
    });
  }

  /** Words after the limit cannot change the kept ones (each word is encoded on its own), so they are never encoded. */
  private encodeLimited(text: string, contextLength: number): number[] {
    if (typeof text !== 'string') {
      throw new ClipdexError('INVALID_ARGUMENT', `Text to tokenise must be a string, got ${text === null ? 'null' : typeof text}`);
    }
    const ids = [this.startId];
    for (const match of cleanClipText(text).matchAll(WORD_PATTERN)) {
      for (const id of this.encodeWord(match[0])) ids.push(id);
      if (ids.length >= contextLength) {
        ids.length = contextLength - 1;
        break;
      }
    }
    ids.push(this.endId);
    return ids;
  }

  private encodeWord(word: string): readonly number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    let ids: number[];
    if (word === START_TOKEN) ids = [this.startId];
    else if (word === END_TOKEN) ids = [this.endId];
    else {
      const symbols = Array.from(utf8.encode(word), (byte) => BYTE_TO_UNICODE[byte]!);
      symbols[symbols.length - 1] += END_OF_WORD;
      ids = applyMerges(symbols, this.ranks).map((token) => {
        const id = this.vocab.get(token);
        // Unreachable for a vocabulary that passed the constructor's checks.
        if (id === undefined) throw new ClipdexError('TOKENIZER_INVALID', `Token ${JSON.stringify(token)} has no id`);
        return id;
      });
    }
    if (this.cache.size >= this.cacheSize) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(word, ids);
    return ids;
  }
}

function checkContextLength(contextLength: number): void {
  if (!Number.isSafeInteger(contextLength) || contextLength < 2) {
    throw new ClipdexError('INVALID_ARGUMENT', `contextLength must be an integer of at least 2 (start and end tokens), got ${contextLength}`);
  }
}

/**
 * The vocabulary and merges of any file `ClipTokenizer.fromFile` accepts, checked to make a working
 * tokenizer, for writing into a model directory with `writeTokenizerFiles`.
 */
export async function readVocabulary(path: string): Promise<{ vocab: Record<string, number>; merges: Merge[] }> {
  const data = await readTokenizerFile(path);
  ClipTokenizer.fromVocabAndMerges(data.vocab, data.merges, { source: data.source }); // throws what a later load would
  return { vocab: Object.fromEntries(data.vocab), merges: data.merges };
}
