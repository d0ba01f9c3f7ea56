/**
 * What the server understood of a typed query (`understood` of GET/POST /api/search: phrase, `a | b`,
 * -word, a date), placed back on the words the user typed, so a chip can select its words in the box or take
 * them out. The parsing itself is the server's (src/search/query-syntax.ts); this only finds where each
 * part's own words sit in the text, by their text.
 *
 * @typedef {{ kind: 'phrase', text: string } | { kind: 'or', phrases: string[] } | { kind: 'not', text: string }
 *   | { kind: 'date', text: string, from?: string, to?: string }} Part
 * @typedef {{ start: number, end: number }} Span
 */

/** Words before a date that only say "when" (the server's CUES): they go with the date. */
const CUES = new Set(['in', 'during', 'from', 'since', 'before', 'after', 'until', 'till', 'between', 'around']);

/** Whether the parser read anything but one plain phrase: only then are chips worth showing. */
export function hasSyntax(parts) {
  return Array.isArray(parts) && parts.some((p) => p.kind !== 'phrase');
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** A run of words as a pattern that allows any whitespace between them. */
const wordsRe = (text) => text.trim().split(/\s+/).map(escapeRe).join('\\s+');
const overlaps = (a, spans) => spans.some((s) => a.start < s.end && s.start < a.end);

/** `-cat`, `-cat,` or `-"two words"` at the start of a word, first one not taken already. */
function findNegation(query, text, taken) {
  const w = wordsRe(text);
  const re = new RegExp(`(^|[\\s|])(-(?:"\\s*${w}\\s*(?:"|$)|${w}[,;.!?]*(?=$|[\\s|])))`, 'gu');
  for (const m of query.matchAll(re)) {
    const span = { start: m.index + m[1].length, end: m.index + m[0].length };
    if (!overlaps(span, taken)) return span;
  }
  return null;
}

/** A date's words (the last place they occur: a bare year counts mostly at the end), with a cue word in front. */
function findDate(query, text, taken) {
  const re = new RegExp(`(?<![\\p{L}\\p{N}])${wordsRe(text)}(?![\\p{L}\\p{N}])`, 'giu');
  const spans = [...query.matchAll(re)].map((m) => ({ start: m.index, end: m.index + m[0].length })).filter((s) => !overlaps(s, taken));
  const span = spans.at(-1);
  if (!span) return null;
  const before = /(\S+)\s+$/.exec(query.slice(0, span.start));
  if (before && CUES.has(before[1].toLowerCase()) && !CUES.has(text.trim().split(/\s+/)[0].toLowerCase())) span.start = before.index;
  return span;
}

/**
 * Where each part sits in `query`: the negations and the date's words, and what is left between them cut at
 * `|` (outside quotes): the alternatives, in order.
 * @param {string} query @param {Part[]} parts
 * @returns {{ nots: (Span | null)[], dates: Span[], alternatives: Span[] }} nots in the order of the `not` parts
 */
export function locate(query, parts) {
  const taken = [];
  const nots = [];
  for (const p of parts) {
    if (p.kind !== 'not') continue;
    const span = findNegation(query, p.text, taken);
    nots.push(span);
    if (span) taken.push(span);
  }
  const dates = [];
  for (const p of parts) {
    if (p.kind !== 'date') continue;
    // Several dates come joined by ", " ("2019, 2021"): the whole text first, else piece by piece.
    const whole = findDate(query, p.text, taken);
    const found = whole ? [whole] : p.text.split(', ').map((t) => findDate(query, t, taken)).filter(Boolean);
    for (const s of found) {
      dates.push(s);
      taken.push(s);
    }
  }
  // The rest, with the spans above blanked, cut at | outside quotes.
  let rest = query;
  for (const s of taken) rest = rest.slice(0, s.start) + ' '.repeat(s.end - s.start) + rest.slice(s.end);
  const alternatives = [];
  let from = 0;
  let quoted = false;
  for (let i = 0; i <= rest.length; i++) {
    const ch = rest[i];
    if (ch === '"') quoted = !quoted;
    if (i < rest.length && (ch !== '|' || quoted)) continue;
    const segment = rest.slice(from, i);
    const lead = segment.length - segment.trimStart().length;
    const trimmed = segment.trim();
    if (trimmed) alternatives.push({ start: from + lead, end: from + lead + trimmed.length });
    from = i + 1;
  }
  return { nots, dates: dates.sort((a, b) => a.start - b.start), alternatives };
}

/** The query without the given spans, spaces tidied. */
export function without(query, spans) {
  let out = query;
  for (const s of [...spans].sort((a, b) => b.start - a.start)) out = `${out.slice(0, s.start)} ${out.slice(s.end)}`;
  return out.replace(/\s+/g, ' ').trim();
}

/** Only the given spans of the query, in order: what is left when the phrases go. */
export function only(query, spans) {
  return [...spans]
    .sort((a, b) => a.start - b.start)
    .map((s) => query.slice(s.start, s.end))
    .join(' ')
    .replace(/\s+/g, ' ')
    .trim();
}

// ---- a date range in words ----

const DAY_MS = 86_400_000;
const dayOf = (iso) => Date.parse(`${iso}T00:00:00Z`);
const formats = {
  year: new Intl.DateTimeFormat(undefined, { year: 'numeric', timeZone: 'UTC' }),
  month: new Intl.DateTimeFormat(undefined, { month: 'short', year: 'numeric', timeZone: 'UTC' }),
  day: new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' }),
};

/** The coarsest unit both ends fall on: whole years, whole months, or days. */
function unitOf(...days) {
  const ds = days.map((ms) => new Date(ms));
  if (ds.every((d) => d.getUTCDate() === 1 && d.getUTCMonth() === 0)) return 'year';
  if (ds.every((d) => d.getUTCDate() === 1)) return 'month';
  return 'day';
}

/**
 * "Taken Jul 2023", "Taken Jul 1 – 12, 2023", "Taken Jun – Aug 2021", "Taken before 2010" (in the
 * browser's language): `from` inclusive, `to` exclusive as the API sends them.
 * @param {{ from?: string, to?: string }} part
 */
export function dateLabel(part) {
  const from = part.from ? dayOf(part.from) : null;
  const to = part.to ? dayOf(part.to) : null;
  if (from !== null && to !== null) {
    const unit = unitOf(from, to);
    const fmt = formats[unit];
    // The last day, month or year inside the range (`to` is the first one past it).
    const last = unit === 'day' ? to - DAY_MS : unit === 'month' ? Date.UTC(new Date(to).getUTCFullYear(), new Date(to).getUTCMonth() - 1, 1) : Date.UTC(new Date(to).getUTCFullYear() - 1, 0, 1);
    return last <= from ? fmt.format(from) : fmt.formatRange(from, last);
  }
  // An open end on a whole year or month says so: "before 2010", "since Apr 2021".
  if (from !== null) return `since ${formats[unitOf(from)].format(from)}`;
  if (to !== null) return `before ${formats[unitOf(to)].format(to)}`;
  return 'any time';
}
