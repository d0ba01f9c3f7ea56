/**
 * Python's `html.unescape`, which OpenAI's CLIP tokenizer applies twice to every text.
 *
 * Named references go through `entities` (WHATWG legacy mode), whose longest-prefix rule for
 * semicolon-less names is the one Python implements. Numeric references are done here because
 * the two differ there: Python drops control characters and noncharacters (`&#1;` → ''), where
 * WHATWG keeps them.
 */
import { decodeHTML } from 'entities';

// Python's `html._charref`, with `u` so that `{1,32}` counts code points as Python does.
const CHARREF = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

// Python's `html._invalid_charrefs`: NUL, CR and the C1 range read as Windows-1252.
const INVALID_CHARREFS = new Map<number, string>([
  [0x00, '\ufffd'], [0x0d, '\r'],
  [0x80, '\u20ac'], [0x81, '\x81'], [0x82, '\u201a'], [0x83, '\u0192'], [0x84, '\u201e'],
  [0x85, '\u2026'], [0x86, '\u2020'], [0x87, '\u2021'], [0x88, '\u02c6'], [0x89, '\u2030'],
  [0x8a, '\u0160'], [0x8b, '\u2039'], [0x8c, '\u0152'], [0x8d, '\x8d'], [0x8e, '\u017d'],
  [0x8f, '\x8f'], [0x90, '\x90'], [0x91, '\u2018'], [0x92, '\u2019'], [0x93, '\u201c'],
  [0x94, '\u201d'], [0x95, '\u2022'], [0x96, '\u2013'], [0x97, '\u2014'], [0x98, '\u02dc'],
  [0x99, '\u2122'], [0x9a, '\u0161'], [0x9b, '\u203a'], [0x9c, '\u0153'], [0x9d, '\x9d'],
  [0x9e, '\u017e'], [0x9f, '\u0178'],
]);

/** The Windows-1252 reading of a C1 control character (U+0080–U+009F), as browsers, Python and ftfy give it. */
export function c1AsWindows1252(c1: string): string {
  return INVALID_CHARREFS.get(c1.charCodeAt(0)) ?? c1;
}

/** Python's `html._invalid_codepoints`: references to these decode to nothing. */
function isInvalidCodepoint(cp: number): boolean {
  return (
    (cp >= 0x1 && cp <= 0x8) ||
    cp === 0xb ||
    (cp >= 0xe && cp <= 0x1f) ||
    (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) ||
    (cp & 0xfffe) === 0xfffe // U+xFFFE and U+xFFFF of every plane
  );
}

function decodeNumeric(ref: string): string {
  const hex = ref[1] === 'x' || ref[1] === 'X';
  const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '').replace(/^0+(?=.)/, '');
  // Python parses numbers of any length; everything past U+10FFFF decodes to U+FFFD anyway.
  const cp = digits.length > 8 ? Infinity : Number.parseInt(digits, hex ? 16 : 10);
  const mapped = INVALID_CHARREFS.get(cp);
  if (mapped !== undefined) return mapped;
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\ufffd';
  if (isInvalidCodepoint(cp)) return '';
  return String.fromCodePoint(cp);
}

/** Replaces HTML character references exactly as Python's `html.unescape` does. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(CHARREF, (_match, ref: string) =>
    ref.startsWith('#') ? decodeNumeric(ref) : decodeHTML(`&${ref}`),
  );
}
