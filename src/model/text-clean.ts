/**
 * The text cleanup of OpenAI's CLIP tokenizer (`simple_tokenizer.py`):
 * `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is `ftfy.fix_text`,
 * `html.unescape` twice and `strip`.
 *
 * ftfy has no JS port. Its default fixes that work character by character are reproduced here,
 * in ftfy's order: HTML entities (only where the line holds no '<', as its `unescape_html="auto"`
 * does), terminal escapes, C1 controls read as Windows-1252, Latin ligatures, full/half-width
 * forms, curly quotes, control characters, then NFC. They matter for typed queries: a phone
 * keyboard's "grandma’s" must tokenise like "grandma's" (`'s` is one token), as it did in training.
 * What is NOT reproduced: ftfy's mojibake repair (`fix_encoding`: "cafÃ©" → "café", including
 * `restore_byte_a0`, `replace_lossy_sequences`, `decode_inconsistent_utf8`) and its re-run of
 * all fixes until the text stops changing. Lone surrogates need no step: TextEncoder writes them
 * as U+FFFD, which is what ftfy's `fix_surrogates` makes of them. Line breaks need none either:
 * they are whitespace, collapsed below.
 *
 * Whitespace is Unicode White_Space, the `\s` of Python's `regex` module (JS `\s` also takes
 * U+FEFF and misses U+0085).
 */
import { decodeHTML, decodeHTMLStrict } from 'entities';
import { c1AsWindows1252, htmlUnescape } from './html-unescape.js';

const FTFY_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;
const TERMINAL_ESCAPE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const C1_CONTROL = /[\x80-\x9f]/g;
const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;
const CONTROL_CHARS = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
const WHITESPACE_RUN = /\p{White_Space}+/gu;

const LIGATURES: Readonly<Record<string, string>> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj',
  'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

// ftfy's WIDTH_MAP: U+3000 and every form in U+FF01..U+FFEF that NFKC changes.
const WIDTH_MAP: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>([['\u3000', ' ']]);
  for (let cp = 0xff01; cp < 0xfff0; cp++) {
    const ch = String.fromCharCode(cp);
    const alt = ch.normalize('NFKC');
    if (alt !== ch) map.set(ch, alt);
  }
  return map;
})();
const WIDTH_FORM = /[\u3000\uff01-\uffef]/g;

/** ftfy's `unescape_html`: only `;`-terminated references, plus all-caps names such as `&NTILDE;`. */
function ftfyUnescapeEntity(entity: string): string {
  if (entity.startsWith('&#')) {
    const unescaped = htmlUnescape(entity);
    return unescaped.includes(';') ? entity : unescaped;
  }
  const decoded = decodeHTMLStrict(entity);
  if (decoded !== entity) return decoded;
  // ftfy also decodes the upper-cased form of a lower-case name, unless that form already means
  // something to html.unescape (e.g. `&LTRIF;` reads as `<` + "RIF;").
  const lower = entity.toLowerCase();
  if (entity === entity.toUpperCase() && lower !== entity && decodeHTML(entity) === entity) {
    const decodedLower = decodeHTMLStrict(lower);
    if (decodedLower !== lower) return decodedLower.toUpperCase();
  }
  return entity;
}

/** ftfy's character-level fixes for one line (ftfy fixes text line by line). */
function ftfyLine(line: string, unescapeEntities: boolean): string {
  let text = unescapeEntities && line.includes('&') ? line.replace(FTFY_ENTITY, ftfyUnescapeEntity) : line;
  text = text.replace(TERMINAL_ESCAPE, '');
  text = text.replace(C1_CONTROL, c1AsWindows1252);
  text = text.replace(LIGATURE, (ch) => LIGATURES[ch] ?? ch);
  text = text.replace(WIDTH_FORM, (ch) => WIDTH_MAP.get(ch) ?? ch);
  text = text.replace(SINGLE_QUOTE, "'").replace(DOUBLE_QUOTE, '"');
  text = text.replace(CONTROL_CHARS, '');
  return text.normalize('NFC');
}

/** The subset of `ftfy.fix_text` described above. */
export function fixText(text: string): string {
  // Once a line holding '<' is seen, ftfy stops unescaping for the rest of the text.
  let unescapeEntities = true;
  const lines = text.split(/(?<=\n)/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (unescapeEntities && line.includes('<')) unescapeEntities = false;
    lines[i] = ftfyLine(line, unescapeEntities);
  }
  return lines.join('');
}

/** OpenAI's `whitespace_clean(basic_clean(text)).lower()`: what the BPE regex then splits. */
export function cleanClipText(text: string): string {
  const unescaped = htmlUnescape(htmlUnescape(fixText(text)));
  return unescaped.replace(WHITESPACE_RUN, ' ').replace(/^ | $/g, '').toLowerCase();
}

/**
 * Cleaning applied before a tokenizer.json-driven tokenizer, as open_clip's `HFTokenizer(clean=…)` names them:
 * `canonicalize` (SigLIP, SigLIP2: big_vision's prompt canonicalisation), `lower`, `whitespace` (open_clip's
 * default), `none` (the text as typed: what transformers.js feeds a tokenizer.json).
 */
export type TextCleaning = 'canonicalize' | 'lower' | 'whitespace' | 'none';

/** Python's `str.split()` separators: Unicode White_Space plus the information separators U+001C..U+001F. */
const PY_WHITESPACE_RUN = /[\p{White_Space}\x1c-\x1f]+/gu;
/** Python's `string.punctuation`: ASCII only, so "¿" and "。" stay. */
const ASCII_PUNCTUATION = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

function pyWhitespaceJoin(text: string): string {
  return text.split(PY_WHITESPACE_RUN).filter((part) => part !== '').join(' ');
}

/**
 * open_clip's `canonicalize_text` (from big_vision): "_" to a space, ASCII punctuation removed, lower-cased,
 * whitespace runs to one space, trimmed. (Immich's `clean_text` removes "_" instead of spacing it: open_clip
 * is the reference the models were evaluated with.)
 */
export function canonicalizeText(text: string): string {
  return pyWhitespaceJoin(text.replaceAll('_', ' ').replace(ASCII_PUNCTUATION, '').toLowerCase());
}

/** open_clip's `basic_clean`: ftfy's fixes, then `html.unescape` twice. */
function basicClean(text: string): string {
  return htmlUnescape(htmlUnescape(fixText(text)));
}

export function cleanForModel(text: string, cleaning: TextCleaning): string {
  switch (cleaning) {
    case 'canonicalize':
      return canonicalizeText(text);
    case 'lower':
      return pyWhitespaceJoin(basicClean(text)).toLowerCase();
    case 'whitespace':
      return pyWhitespaceJoin(basicClean(text));
    case 'none':
      return text;
  }
}
