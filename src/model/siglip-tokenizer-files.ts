/**
 * The tokenizer files of the self-built SigLIP models, in the shape the real ones have (the real files are
 * 32 000 and 256 000 pieces and cannot be fetched here):
 *
 * - SigLIP: a SentencePiece **Unigram** tokenizer.json as Hugging Face's SentencePiece converter writes it:
 *   a `Precompiled` normalizer (SentencePiece's own character map, serialised as a double-array trie),
 *   whitespace runs collapsed, a `Metaspace` pre-tokenizer ("▁" before each word), `</s>` appended,
 *   pad = `</s>` (id 1), unknown characters → `<unk>`.
 * - SigLIP2: Gemma's SentencePiece **BPE** with byte fallback (a character outside the vocabulary becomes its
 *   UTF-8 bytes `<0xNN>`, never `<unk>`), spaces replaced by "▁" without a prefix, `<eos>` appended,
 *   pad = `<pad>` (id 0).
 *
 * Pieces and scores are a small hand-made list plus merges learnt here from a phrase list, enough for
 * multilingual text to take every path of both algorithms (known words, single characters, unknowns, bytes).
 */

const SPACE = '\u2581';

/**
 * SentencePiece's `precompiled_charsmap`: u32 trie size, a Darts double-array trie over the UTF-8 bytes of
 * each source string, then the replacement strings, NUL-terminated. The trie's leaf value is the offset of
 * the replacement. Units: bits 0-7 label, bit 8 "has leaf", bits 10-30 offset (children at pos ^ offset ^ byte).
 */
export function precompiledCharsmap(map: ReadonlyMap<string, string>): Uint8Array {
  const utf8 = new TextEncoder();
  interface Node {
    children: Map<number, Node>;
    value: number | null;
    pos: number;
  }
  const root: Node = { children: new Map(), value: null, pos: 0 };
  const normalized: number[] = [];
  for (const [from, to] of [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    let node = root;
    for (const byte of utf8.encode(from)) {
      let child = node.children.get(byte);
      if (!child) node.children.set(byte, (child = { children: new Map(), value: null, pos: -1 }));
      node = child;
    }
    node.value = normalized.length;
    normalized.push(...utf8.encode(to), 0);
  }
  const units: number[] = [0];
  const used = new Set<number>([0]);
  const queue: Node[] = [root];
  while (queue.length > 0) {
    const node = queue.shift()!;
    const labels = [...node.children.keys()];
    const slots = node.value !== null ? [0, ...labels] : labels;
    if (slots.length === 0) continue;
    // The first base whose slots are all free; bases start at 256 so no child lands on the root.
    let base = 256;
    while (slots.some((c) => used.has(base ^ c))) base++;
    for (const c of slots) used.add(base ^ c);
    const offset = node.pos ^ base;
    if (offset >= 2 ** 21) throw new Error('precompiled charsmap too large for this builder');
    units[node.pos] = ((units[node.pos] ?? 0) & 0xff) | (offset << 10) | (node.value !== null ? 1 << 8 : 0);
    if (node.value !== null) units[base] = (node.value | 0x80000000) >>> 0;
    for (const [label, child] of node.children) {
      child.pos = base ^ label;
      units[child.pos] = label;
      queue.push(child);
    }
  }
  const trie = Uint32Array.from({ length: units.length }, (_, i) => (units[i] ?? 0) >>> 0);
  const out = new Uint8Array(4 + trie.byteLength + normalized.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, trie.byteLength, true);
  trie.forEach((u, i) => view.setUint32(4 + 4 * i, u, true));
  out.set(normalized, 4 + trie.byteLength);
  return out;
}

/**
 * A slice of SentencePiece's `nmt_nfkc` rules: NFKC for full-width forms, ligatures, circled digits and
 * compatibility spaces, control characters removed, tab/newline to a space. The real map has ~150 000 rules.
 */
export function nmtNfkcSample(): Map<string, string> {
  const map = new Map<string, string>();
  for (let cp = 0xff01; cp <= 0xff5e; cp++) map.set(String.fromCodePoint(cp), String.fromCodePoint(cp - 0xfee0));
  for (const ch of ['\u3000', '\u00a0', '\u2002', '\u2003', '\u2009', '\t', '\n', '\r']) map.set(ch, ' ');
  for (const ch of ['\u0000', '\u0001', '\u0007', '\u007f', '\u200b', '\ufeff']) map.set(ch, '');
  for (const [from, to] of [
    ['\ufb01', 'fi'],
    ['\ufb02', 'fl'],
    ['\u2122', 'TM'],
    ['\u2026', '...'],
    ['\u00bd', '1\u20442'],
    ['e\u0301', '\u00e9'],
    ['a\u0300', '\u00e0'],
    ['\u212b', '\u00c5'],
  ] as const) {
    map.set(from, to);
  }
  for (let i = 0; i < 9; i++) map.set(String.fromCodePoint(0x2460 + i), String(i + 1));
  return map;
}

/** Words for the tiny vocabularies: photo-search phrases in the scripts the tests use. */
export const WORDS = [
  'a', 'an', 'the', 'of', 'in', 'on', 'at', 'and', 'with', 'photo', 'picture', 'dog', 'dogs', 'cat', 'cats', 'beach',
  'sunset', 'mountain', 'mountains', 'snow', 'red', 'blue', 'green', 'car', 'cars', 'tree', 'trees', 'house', 'city',
  'night', 'sea', 'sky', 'people', 'child', 'children', 'birthday', 'cake', 'flower', 'flowers', 'playing', 'running',
  'sleeping', 'on', 'grass', 'water', 'boat', 'street', 'food', 'café', 'plage', 'chien', 'chat', 'été', 'crème',
  'brûlée', 'niño', 'playa', 'montaña', 'straße', 'hund', 'über', 'schöne',
];
export const CHARS =
  'abcdefghijklmnopqrstuvwxyz0123456789' +
  'éèêëàâäçñöüßúíóá' +
  '猫犬海の写真夕日山雪赤い車子供' + // CJK (Japanese)
  'قطةكلببحر' + // Arabic
  'कुत्ताबिल्ली' + // Devanagari (combining marks as their own pieces)
  'кошсбаеа'; // Cyrillic

/** The SigLIP (v1) tokenizer.json: SentencePiece Unigram, ids 0 <pad>, 1 </s>, 2 <unk>. */
export function siglipTokenizerJson(): Record<string, unknown> {
  const pieces: [string, number][] = [
    ['<pad>', 0],
    ['</s>', 0],
    ['<unk>', 0],
    [SPACE, -2.5],
  ];
  const seen = new Set(pieces.map(([p]) => p));
  const add = (piece: string, score: number) => {
    if (seen.has(piece)) return;
    seen.add(piece);
    pieces.push([piece, score]);
  };
  // Whole words score above their letters so Viterbi prefers them; longer words slightly more.
  WORDS.forEach((word, i) => add(SPACE + word, -6 - (i % 7) * 0.25 + word.length * 0.1));
  for (const suffix of ['s', 'ing', 'ed', 'er', 'ly', 'en']) add(suffix, -7.5);
  [...CHARS].forEach((ch, i) => add(ch, -9 - (i % 5) * 0.1));
  [...'abcdefghijklmnopqrstuvwxyz'].forEach((ch) => add(SPACE + ch, -9.5));
  const charsmap = Buffer.from(precompiledCharsmap(nmtNfkcSample())).toString('base64');
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const metaspace = { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<pad>'), special(1, '</s>'), special(2, '<unk>')],
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Precompiled', precompiled_charsmap: charsmap },
        { type: 'Replace', pattern: { Regex: ' {2,}' }, content: ' ' },
      ],
    },
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: { '</s>': { id: '</s>', ids: [1], tokens: ['</s>'] } },
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: 2, vocab: pieces, byte_fallback: false },
  };
}

export const SIGLIP_SPECIAL_TOKENS = { eos_token: '</s>', pad_token: '</s>', unk_token: '<unk>' };

/** transformers' SiglipTokenizer config: lower-cased input, pad = eos = `</s>`. */
export function siglipTokenizerConfig(contextLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'SiglipTokenizer',
    model_max_length: contextLength,
    do_lower_case: true,
    add_prefix_space: true,
    ...SIGLIP_SPECIAL_TOKENS,
  };
}

/**
 * BPE merges learnt from words (each as "▁word"): repeatedly merge the most frequent adjacent pair
 * (ties broken by the pair's text, so the same list always gives the same merges).
 */
export function learnMerges(words: readonly string[], count: number): [string, string][] {
  const seqs = words.map((w) => [...(SPACE + w)]);
  const merges: [string, string][] = [];
  for (let m = 0; m < count; m++) {
    const counts = new Map<string, number>();
    for (const seq of seqs) {
      for (let i = 0; i + 1 < seq.length; i++) {
        const key = `${seq[i]}\u0000${seq[i + 1]}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    }
    let best: string | null = null;
    let bestCount = 0;
    for (const [key, n] of counts) {
      if (n > bestCount || (n === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = n;
      }
    }
    if (best === null) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    for (const seq of seqs) {
      for (let i = 0; i + 1 < seq.length; i++) {
        if (seq[i] === a && seq[i + 1] === b) seq.splice(i, 2, a + b);
      }
    }
  }
  return merges;
}

/** The SigLIP2 tokenizer.json: Gemma's SentencePiece BPE with byte fallback; ids 0 <pad>, 1 <eos>, 2 <bos>, 3 <unk>. */
export function gemmaTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  const add = (token: string) => {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  };
  for (const t of ['<pad>', '<eos>', '<bos>', '<unk>']) add(t);
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  add(SPACE);
  for (const ch of CHARS) add(ch);
  for (const ch of WORDS.join('')) add(ch);
  for (const ch of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') add(ch);
  const merges = learnMerges(WORDS, 160);
  for (const [a, b] of merges) add(a + b);
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: ['<pad>', '<eos>', '<bos>', '<unk>'].map(special),
    normalizer: { type: 'Replace', pattern: { String: ' ' }, content: SPACE },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<eos>', type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<eos>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } },
        { SpecialToken: { id: '<eos>', type_id: 1 } },
      ],
      special_tokens: { '<eos>': { id: '<eos>', ids: [vocab['<eos>']], tokens: ['<eos>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: SPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}

export const GEMMA_SPECIAL_TOKENS = { bos_token: '<bos>', eos_token: '<eos>', pad_token: '<pad>', unk_token: '<unk>' };

/** google/siglip2-*'s tokenizer config: Gemma's, with `<eos>` appended and no `<bos>`. */
export function gemmaTokenizerConfig(contextLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'GemmaTokenizer',
    model_max_length: contextLength,
    add_bos_token: false,
    add_eos_token: true,
    ...GEMMA_SPECIAL_TOKENS,
  };
}
