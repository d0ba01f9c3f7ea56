/**
 * The CLIP BPE vocabulary on disk, in the three layouts real models ship:
 * OpenAI's `bpe_simple_vocab_16e6.txt.gz`, Hugging Face's `tokenizer.json`, and `vocab.json` + `merges.txt`.
 * Reading turns any of them into one `TokenizerData`; writing makes a model directory loadable by any of them.
 */
import { readdir, readFile, stat, writeFile, mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { ClipdexError } from '../errors.js';

export const START_TOKEN = '<|startoftext|>';
export const END_TOKEN = '<|endoftext|>';
export const END_OF_WORD = '</w>';

/** OpenAI keeps merges lines 1..48894 of its BPE file: a 49408-token vocabulary less 256 bytes, 256 byte+`</w>` and 2 specials. */
const OPENAI_MERGE_COUNT = 49152 - 256 - 2;
const OPENAI_BPE_FILE = 'bpe_simple_vocab_16e6.txt.gz';

export type Merge = [string, string];

export interface TokenizerData {
  vocab: Map<string, number>;
  merges: Merge[];
  /** Pad id named by a tokenizer.json padding config, if it has one. */
  padId?: number;
  /** The file(s) it was read from, for error messages. */
  source: string;
}

/**
 * OpenAI's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * take U+0100 onwards. The order (printable ones first) is the order of the first 256 vocabulary ids.
 */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const table: string[] = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : next++);
  return table;
})();

/** The byte symbols in OpenAI's vocabulary order: printable bytes ascending, then the rest ascending. */
export function byteSymbolsInVocabOrder(): string[] {
  const bytes = [...BYTE_TO_UNICODE.keys()];
  const shifted = (b: number) => BYTE_TO_UNICODE[b]!.charCodeAt(0) >= 256;
  return [...bytes.filter((b) => !shifted(b)), ...bytes.filter(shifted)].map((b) => BYTE_TO_UNICODE[b]!);
}

/** OpenAI's vocabulary from its merges: bytes, bytes + `</w>`, one token per merge, then the two specials. */
export function vocabFromMerges(merges: readonly Merge[]): Map<string, number> {
  const bytes = byteSymbolsInVocabOrder();
  const tokens = [...bytes, ...bytes.map((b) => b + END_OF_WORD), ...merges.map(([a, b]) => a + b), START_TOKEN, END_TOKEN];
  return new Map(tokens.map((token, id) => [token, id]));
}

/**
 * A vocabulary with no merges (every byte is its own token), for the self-built test model when the
 * real vocabulary is absent: ids 0..255 the byte symbols, 256..511 the same + `</w>`, 512 and 513 the specials.
 * Ids 0..511 coincide with the real vocabulary's.
 */
export function byteLevelVocabulary(): { vocab: Record<string, number>; merges: Merge[] } {
  return { vocab: Object.fromEntries(vocabFromMerges([])), merges: [] };
}

function invalid(source: string, what: string, cause?: unknown): ClipdexError {
  return new ClipdexError('TOKENIZER_INVALID', `Tokenizer file ${source} is not usable: ${what}`, {
    cause,
    details: { path: source },
  });
}

async function readBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ClipdexError('FILE_NOT_FOUND', `Tokenizer file not found: ${path}`, { cause: err, details: { path } });
    }
    throw new ClipdexError('FILE_UNREADABLE', `Cannot read tokenizer file ${path}: ${code ?? String(err)}`, {
      cause: err,
      details: { path },
    });
  }
}

function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw invalid(source, 'it is not UTF-8 text', err);
  }
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalid(source, `it is not valid JSON (${(err as Error).message})`, err);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Merges lines ("a b"), skipping a `#version` header and blank lines; `lineOffset` makes line numbers in errors 1-based. */
function parseMergeLines(lines: readonly string[], source: string, lineOffset: number): Merge[] {
  const merges: Merge[] = [];
  lines.forEach((line, i) => {
    if (line.trim() === '' || (i + lineOffset === 1 && line.startsWith('#version'))) return;
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw invalid(source, `line ${i + lineOffset} is not a merge of two symbols: ${JSON.stringify(line)}`);
    merges.push([parts[0]!, parts[1]!]);
  });
  return merges;
}

function parseVocab(value: unknown, source: string, where: string): Map<string, number> {
  if (!isRecord(value)) throw invalid(source, `${where} must be an object mapping tokens to ids`);
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(value)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
      throw invalid(source, `${where} gives token ${JSON.stringify(token)} the id ${JSON.stringify(id)}, not a non-negative integer`);
    }
    vocab.set(token, id);
  }
  if (vocab.size === 0) throw invalid(source, `${where} is empty`);
  return vocab;
}

/** OpenAI's gzip (or already unzipped) BPE file; the vocabulary is derived from its merges as OpenAI does. */
export function parseOpenAiBpe(bytes: Uint8Array, source: string): TokenizerData {
  let raw = bytes;
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      raw = gunzipSync(bytes);
    } catch (err) {
      throw invalid(source, 'it is not a readable gzip file', err);
    }
  }
  const lines = decodeUtf8(raw, source).split('\n').slice(1, OPENAI_MERGE_COUNT + 1);
  const merges = parseMergeLines(lines, source, 2);
  if (merges.length === 0) throw invalid(source, 'it holds no merges after its header line');
  return { vocab: vocabFromMerges(merges), merges, source };
}

function parseMergeEntry(entry: unknown, index: number, source: string): Merge {
  if (typeof entry === 'string') {
    const parts = entry.split(' ');
    if (parts.length === 2 && parts[0] && parts[1]) return [parts[0], parts[1]];
  } else if (Array.isArray(entry) && entry.length === 2 && entry.every((p) => typeof p === 'string' && p !== '')) {
    return [entry[0] as string, entry[1] as string];
  }
  throw invalid(source, `model.merges[${index}] is ${JSON.stringify(entry)}, not "a b" or ["a", "b"]`);
}

/** Hugging Face `tokenizer.json` with a BPE model; added tokens join the vocabulary, a padding config gives the pad id. */
export function parseTokenizerJson(json: unknown, source: string): TokenizerData {
  if (!isRecord(json) || !isRecord(json.model)) throw invalid(source, 'it has no "model" object (is it a tokenizer.json?)');
  const model = json.model;
  if (model.type !== undefined && model.type !== 'BPE') throw invalid(source, `model.type is ${JSON.stringify(model.type)}, CLIP needs "BPE"`);
  if (model.end_of_word_suffix != null && model.end_of_word_suffix !== END_OF_WORD) {
    throw invalid(source, `model.end_of_word_suffix is ${JSON.stringify(model.end_of_word_suffix)}, CLIP uses "${END_OF_WORD}"`);
  }
  const vocab = parseVocab(model.vocab, source, 'model.vocab');
  if (!Array.isArray(model.merges)) throw invalid(source, 'model.merges must be an array');
  const merges = model.merges.map((entry: unknown, i: number) => parseMergeEntry(entry, i, source));
  if (Array.isArray(json.added_tokens)) {
    for (const added of json.added_tokens) {
      if (isRecord(added) && typeof added.content === 'string' && typeof added.id === 'number') vocab.set(added.content, added.id);
    }
  }
  const data: TokenizerData = { vocab, merges, source };
  if (isRecord(json.padding)) {
    const { pad_token: padToken, pad_id: padId } = json.padding;
    const byName = typeof padToken === 'string' ? vocab.get(padToken) : undefined;
    if (byName !== undefined) data.padId = byName;
    else if (typeof padId === 'number' && Number.isSafeInteger(padId) && padId >= 0) data.padId = padId;
    else throw invalid(source, `padding names pad token ${JSON.stringify(padToken)}, which is not in the vocabulary`);
  }
  return data;
}

/** `vocab.json` + `merges.txt` (first line `#version: ...`), as Hugging Face's slow CLIP tokenizer reads them. */
export function parseVocabAndMerges(vocabJson: unknown, mergesText: string, vocabSource: string, mergesSource: string): TokenizerData {
  const vocab = parseVocab(vocabJson, vocabSource, 'the vocabulary');
  const merges = parseMergeLines(mergesText.split('\n'), mergesSource, 1);
  return { vocab, merges, source: `${vocabSource} + ${mergesSource}` };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function readJson(path: string): Promise<unknown> {
  return parseJson(decodeUtf8(await readBytes(path), path), path);
}

async function readVocabPair(vocabPath: string, mergesPath: string, vocabJson?: unknown): Promise<TokenizerData> {
  const [vocab, mergesBytes] = await Promise.all([vocabJson ?? readJson(vocabPath), readBytes(mergesPath)]);
  return parseVocabAndMerges(vocab, decodeUtf8(mergesBytes, mergesPath), vocabPath, mergesPath);
}

async function readFromDirectory(dir: string): Promise<TokenizerData> {
  const tokenizerJson = join(dir, 'tokenizer.json');
  if (await isFile(tokenizerJson)) return readTokenizerFile(tokenizerJson);
  const vocabJson = join(dir, 'vocab.json');
  const mergesTxt = join(dir, 'merges.txt');
  if ((await isFile(vocabJson)) && (await isFile(mergesTxt))) return readVocabPair(vocabJson, mergesTxt);
  const gz = (await readdir(dir)).filter((name) => name.endsWith('.txt.gz')).sort((a, b) => Number(b === OPENAI_BPE_FILE) - Number(a === OPENAI_BPE_FILE) || a.localeCompare(b));
  if (gz[0]) return readTokenizerFile(join(dir, gz[0]));
  throw new ClipdexError(
    'FILE_NOT_FOUND',
    `No tokenizer in ${dir}: expected tokenizer.json, vocab.json with merges.txt, or ${OPENAI_BPE_FILE}`,
    { details: { path: dir } },
  );
}

/**
 * Reads a tokenizer from a file or a directory. Files are told apart by content where names are
 * ambiguous: gzip magic → OpenAI BPE; JSON with a "model" → tokenizer.json, other JSON → vocab.json
 * (merges.txt beside it); a .txt → merges.txt when vocab.json is beside it, else OpenAI's BPE text.
 */
export async function readTokenizerFile(path: string): Promise<TokenizerData> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    throw new ClipdexError('FILE_NOT_FOUND', `Tokenizer file not found: ${path}`, { cause: err, details: { path } });
  }
  if (info.isDirectory()) return readFromDirectory(path);

  const dir = dirname(path);
  const name = basename(path);
  const bytes = await readBytes(path);
  if ((bytes[0] === 0x1f && bytes[1] === 0x8b) || name.endsWith('.gz')) return parseOpenAiBpe(bytes, path);
  if (name.endsWith('.json')) {
    const json = parseJson(decodeUtf8(bytes, path), path);
    if (name === 'tokenizer.json' || (isRecord(json) && isRecord(json.model))) return parseTokenizerJson(json, path);
    const mergesPath = join(dir, 'merges.txt');
    if (!(await isFile(mergesPath))) {
      throw new ClipdexError('FILE_NOT_FOUND', `${path} is a vocabulary without merges: expected ${mergesPath} beside it`, {
        details: { path: mergesPath },
      });
    }
    return readVocabPair(path, mergesPath, json);
  }
  const vocabPath = join(dir, 'vocab.json');
  if (await isFile(vocabPath)) return readVocabPair(vocabPath, path);
  return parseOpenAiBpe(bytes, path);
}

/** The `tokenizer.json` Hugging Face's CLIP converter writes (NFC + whitespace + lowercase, CLIP regex split, byte level, BPE with `</w>`). */
export function clipTokenizerJson(vocab: Record<string, number>, merges: readonly Merge[]): Record<string, unknown> {
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  const startId = vocab[START_TOKEN];
  const endId = vocab[END_TOKEN];
  if (startId === undefined || endId === undefined) {
    throw new ClipdexError('TOKENIZER_INVALID', `The vocabulary lacks ${START_TOKEN} or ${END_TOKEN}`);
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(START_TOKEN), special(END_TOKEN)],
    normalizer: {
      type: 'Sequence',
      normalizers: [{ type: 'NFC' }, { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Lowercase' }],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        {
          type: 'Split',
          pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: 'Removed',
          invert: true,
        },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: START_TOKEN, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: END_TOKEN, type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: START_TOKEN, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: END_TOKEN, type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: END_TOKEN, type_id: 1 } },
      ],
      special_tokens: {
        [START_TOKEN]: { id: START_TOKEN, ids: [startId], tokens: [START_TOKEN] },
        [END_TOKEN]: { id: END_TOKEN, ids: [endId], tokens: [END_TOKEN] },
      },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: END_TOKEN,
      continuing_subword_prefix: '',
      end_of_word_suffix: END_OF_WORD,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/**
 * Writes `vocab.json`, `merges.txt` and `tokenizer.json` into `dir`, so that `ClipTokenizer.fromFile(dir)`
 * (or a Hugging Face loader) reads it. Returns the names written.
 */
export async function writeTokenizerFiles(dir: string, vocab: Record<string, number>, merges: readonly Merge[]): Promise<string[]> {
  const files: Record<string, string> = {
    'vocab.json': JSON.stringify(vocab),
    'merges.txt': `${['#version: 0.2', ...merges.map(([a, b]) => `${a} ${b}`)].join('\n')}\n`,
    'tokenizer.json': JSON.stringify(clipTokenizerJson(vocab, merges)),
  };
  await mkdir(dir, { recursive: true });
  await Promise.all(Object.entries(files).map(([name, text]) => writeFile(join(dir, name), text)));
  return Object.keys(files);
}
