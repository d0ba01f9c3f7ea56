/**
 * The tokenizer files of the self-built multilingual models, in the shape Hugging Face's converters write the
 * real ones (250 002 pieces for XLM-R, 501 153 for LaBSE, 256 204 for NLLB-200: far too big to ship):
 *
 * - XLM-R (M-CLIP's XLM-Roberta-Large-*): SentencePiece **Unigram**, `Precompiled` normaliser (nmt_nfkc),
 *   whitespace runs collapsed, `Metaspace`, template `<s> $A </s>`; ids `<s>` 0, `<pad>` 1, `</s>` 2,
 *   `<unk>` 3 as fairseq's dictionary has them, `<mask>` last.
 * - LaBSE (M-CLIP's LABSE-Vit-L-14): BERT **WordPiece**, `BertNormalizer` (cased: LaBSE keeps case),
 *   `BertPreTokenizer`, template `[CLS] $A [SEP]`, `[PAD]` the pad token; a word with a character outside
 *   the vocabulary is one `[UNK]`.
 * - NLLB-200 (NLLB-CLIP): SentencePiece **BPE** without byte fallback, the same normaliser and Metaspace,
 *   the 202 FLORES-200 codes as added special tokens after the pieces, `<mask>` last; template
 *   `eng_Latn $A </s>` as transformers saves it (legacy_behaviour false).
 */
import { FLORES200_CODES } from './language-codes.js';
import { CHARS, learnMerges, nmtNfkcSample, precompiledCharsmap, WORDS } from './siglip-tokenizer-files.js';

const SPACE = '\u2581';

/** Photo words in the languages the tests query in, on top of SigLIP's list. */
const MORE_WORDS = [
  'hund', 'strand', 'am', 'spielt', 'ein', 'der', 'die', 'das', 'berge', 'katze', 'foto', 'sonnenuntergang', 'über',
  'perro', 'gato', 'montagne', 'plage', 'chien', 'le', 'la', 'sur', 'un', 'une', 'el', 'en', 'de', 'del', 'cane',
  'spiaggia', 'gatto', 'fiore', 'собака', 'кошка', 'пляж', 'на', 'fish', 'rocket', 'coffee', 'cup', 'astronaut', 'horse',
];
const ALL_WORDS = [...new Set([...WORDS, ...MORE_WORDS])];
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';

function special(id: number, content: string, extra: Record<string, boolean> = {}) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...extra };
}

function spmNormalizer() {
  return {
    type: 'Sequence',
    normalizers: [
      { type: 'Precompiled', precompiled_charsmap: Buffer.from(precompiledCharsmap(nmtNfkcSample())).toString('base64') },
      { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' },
    ],
  };
}

const METASPACE = { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'always', split: true };

function template(first: string, firstId: number, last: string, lastId: number) {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: first, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: last, type_id: 0 } }],
    pair: [
      { SpecialToken: { id: first, type_id: 0 } },
      { Sequence: { id: 'A', type_id: 0 } },
      { SpecialToken: { id: last, type_id: 0 } },
      { Sequence: { id: 'B', type_id: 1 } },
      { SpecialToken: { id: last, type_id: 1 } },
    ],
    special_tokens: {
      [first]: { id: first, ids: [firstId], tokens: [first] },
      [last]: { id: last, ids: [lastId], tokens: [last] },
    },
  };
}

/** XLM-R's tokenizer.json (Unigram): `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, …, `<mask>` last. */
export function xlmrTokenizerJson(): Record<string, unknown> {
  const pieces: [string, number][] = [
    ['<s>', 0],
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
    [SPACE, -3],
  ];
  const seen = new Set(pieces.map(([p]) => p));
  const add = (piece: string, score: number) => {
    if (seen.has(piece)) return;
    seen.add(piece);
    pieces.push([piece, score]);
  };
  ALL_WORDS.forEach((word, i) => add(SPACE + word, -6 - (i % 7) * 0.25 + [...word].length * 0.1));
  for (const suffix of ['s', 'en', 'er', 'ing', 'es', 'e']) add(suffix, -7.5);
  [...CHARS].forEach((ch, i) => add(ch, -9 - (i % 5) * 0.1));
  for (const ch of LETTERS.toUpperCase()) add(ch, -9.8);
  for (const ch of LETTERS) add(SPACE + ch, -9.5);
  const mask = pieces.length;
  pieces.push(['<mask>', 0]);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>'), special(mask, '<mask>', { lstrip: true, normalized: true })],
    normalizer: spmNormalizer(),
    pre_tokenizer: METASPACE,
    post_processor: template('<s>', 0, '</s>', 2),
    decoder: METASPACE,
    model: { type: 'Unigram', unk_id: 3, vocab: pieces, byte_fallback: false },
  };
}

export const XLMR_SPECIAL_TOKENS = {
  bos_token: '<s>',
  cls_token: '<s>',
  eos_token: '</s>',
  mask_token: { content: '<mask>', lstrip: true, normalized: true, rstrip: false, single_word: false },
  pad_token: '<pad>',
  sep_token: '</s>',
  unk_token: '<unk>',
};

export function xlmrTokenizerConfig(): Record<string, unknown> {
  return { tokenizer_class: 'XLMRobertaTokenizer', model_max_length: 512, ...XLMR_SPECIAL_TOKENS };
}

/** LaBSE's tokenizer.json (WordPiece, cased): `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, `[MASK]` 4. */
export function labseTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  for (const t of ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']) add(t);
  const chars = [...new Set([...`${LETTERS}${LETTERS.toUpperCase()}0123456789.,!?'"()&#-_:;`, ...CHARS, ...ALL_WORDS.join('')])];
  for (const ch of chars) add(ch);
  for (const ch of chars) add(`##${ch}`);
  for (const word of ALL_WORDS) {
    add(word);
    add(word[0]!.toUpperCase() + word.slice(1));
  }
  for (const suffix of ['s', 'en', 'er', 'ing', 'es', 'e', 'ung']) add(`##${suffix}`);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => special(vocab[t]!, t)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: false },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: template('[CLS]', vocab['[CLS]']!, '[SEP]', vocab['[SEP]']!),
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

export const LABSE_SPECIAL_TOKENS = { cls_token: '[CLS]', mask_token: '[MASK]', pad_token: '[PAD]', sep_token: '[SEP]', unk_token: '[UNK]' };

export function labseTokenizerConfig(): Record<string, unknown> {
  return { tokenizer_class: 'BertTokenizer', do_lower_case: false, tokenize_chinese_chars: true, strip_accents: null, model_max_length: 512, ...LABSE_SPECIAL_TOKENS };
}

/** NLLB-200's tokenizer.json (BPE): `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, pieces, the FLORES-200 codes, `<mask>`. */
export function nllbTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  for (const t of ['<s>', '<pad>', '</s>', '<unk>']) add(t);
  add(SPACE);
  for (const ch of CHARS) add(ch);
  for (const ch of ALL_WORDS.join('')) add(ch);
  for (const ch of LETTERS.toUpperCase()) add(ch);
  const merges = learnMerges(ALL_WORDS, 220);
  for (const [a, b] of merges) add(a + b);
  const added = [special(0, '<s>'), special(1, '<pad>'), special(2, '</s>'), special(3, '<unk>')];
  let next = Object.keys(vocab).length;
  for (const code of FLORES200_CODES) added.push(special(next++, code));
  added.push(special(next, '<mask>', { lstrip: true, normalized: true }));
  const eng = added.find((t) => t.content === 'eng_Latn')!;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: spmNormalizer(),
    pre_tokenizer: METASPACE,
    post_processor: template('eng_Latn', eng.id, '</s>', 2),
    decoder: METASPACE,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}

export const NLLB_SPECIAL_TOKENS = {
  bos_token: '<s>',
  cls_token: '<s>',
  eos_token: '</s>',
  mask_token: { content: '<mask>', lstrip: true, normalized: true, rstrip: false, single_word: false },
  pad_token: '<pad>',
  sep_token: '</s>',
  unk_token: '<unk>',
  additional_special_tokens: [...FLORES200_CODES],
};

export function nllbTokenizerConfig(): Record<string, unknown> {
  return { tokenizer_class: 'NllbTokenizer', model_max_length: 1024, src_lang: null, tgt_lang: null, legacy_behaviour: false, ...NLLB_SPECIAL_TOKENS };
}

/** Ids the token embedding needs rows for: the largest id in the file + 1. */
export function tokenizerVocabSize(json: Record<string, unknown>): number {
  const model = json.model as { vocab: Record<string, number> | [string, number][] };
  const base = Array.isArray(model.vocab) ? model.vocab.length : Math.max(...Object.values(model.vocab)) + 1;
  const added = (json.added_tokens as { id: number }[]).reduce((m, t) => Math.max(m, t.id + 1), 0);
  return Math.max(base, added);
}
