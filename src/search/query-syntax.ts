/**
 * The search box's syntax, one parser for the API, the CLI and library callers: dates and ranges become a
 * capture-date filter ("beach July 2023", "snow last winter", "photos from 2019 to 2021"), `|` separates
 * alternatives searched on their own and merged ("cat | dog"), `-word` and `-"two words"` subtract
 * ("dog -cat"), and what is left goes to the text encoder. Quoted text is never read as a date or an
 * operator. Pure: the clock comes in as `now`.
 *
 * Dates are read by chrono-node (forwardDate off: photos are in the past), with two additions it lacks and
 * one guard it needs in a photo search:
 * - a bare year ("birthday 2019"): chrono reads none, and in a search box a number is often a name ("the
 *   1975 band", "room 2023"). A year alone counts only with a cue word before it (in, during, from, since,
 *   before, after, until, between, around) or as the last word of its phrase after a word that does not take a
 *   number (not "the", "room", "route", "iphone", … see NUMBERED): "birthday 2019" and "christmas 2020" are
 *   dates, "the 1975 band", "room 2023" and "2001 space odyssey" are not. Quotes make any year text.
 * - seasons ("last winter", "summer 2021"): meteorological seasons of the northern hemisphere (spring
 *   March–May, summer June–August, autumn/fall September–November, winter December to February, a winter
 *   named by the year it starts in: "winter 2020" is December 2020 to February 2021, "winter 2020/21" says
 *   the same). A season needs a year or last/this; a bare "summer" stays a word for the encoder.
 * - a month alone whose name is also an English word ("may", "march", "august") is a month only after a
 *   cue word: "kids may play" and "march protest" keep their words, "cat in may" is May (chrono itself
 *   reads "may" only after "in"). A month or day without a year is the latest one not in the future.
 * Before/until and since/after a date open the range at its start or end ("before 2010": up to
 * 2010-01-01; "after March 2021": from 2021-04-01); in/during/from/around mean the date itself.
 * Times of day and weekdays alone ("5 pm party", "sunday brunch") are not dates: a filter of one hour or
 * one weekday of an unknown week is not what a photo search means by them, so the encoder keeps them.
 *
 * Ranges are calendar days in UTC, from inclusive, to exclusive: capture times are the camera's wall clock
 * stored as if UTC (see ingest/exif-meta.ts), so "July 2023" is the camera's July. "Yesterday" and "last
 * week" are counted from `now`'s local calendar day.
 */
// The English locale only: the package root loads all of chrono's locales (325 files, ~160 ms of every CLI
// start here), and its `casual` is this same object.
import type { ParsedComponents, ParsedResult, Parser, Refiner } from 'chrono-node';
import { casual } from 'chrono-node/en';
import type { ImageFilter } from '../store/image-filter.js';
import { checkAlternatives } from '../validation/search-params.js';
import type { QueryTerm, SearchRequest, SearchResponse } from './query-engine.js';

/** What the parser understood, in the order a person reads it back; `text` is the query's own words. */
export type UnderstoodPart =
  /** Sent to the text encoder as it stands. */
  | { kind: 'phrase'; text: string }
  /** Alternatives: each searched on its own, a photo scoring its best over them. */
  | { kind: 'or'; phrases: string[] }
  /** Subtracted from the query. */
  | { kind: 'not'; text: string }
  /** A capture-date range: `from` inclusive, `to` exclusive, as YYYY-MM-DD; an open end is absent. */
  | { kind: 'date'; text: string; from?: string; to?: string };

export interface ParsedQuery {
  /** Positive phrases; more than one are alternatives. Empty when only negatives were given. */
  phrases: string[];
  /** Phrases to subtract from every alternative. */
  negatives: string[];
  /** The capture-date range read from the text, ms since the epoch (from inclusive, to exclusive). */
  date: { text: string; takenFrom?: number; takenTo?: number } | null;
  understood: UnderstoodPart[];
  /** Quoted pieces of the positive alternatives: the text read in a photo must contain them (OCR). */
  quoted?: string[];
}

/** A search from typed text answers what it understood beside the results. */
export type TextSearchResponse = SearchResponse & { understood: UnderstoodPart[] };

export interface ParseQueryOptions {
  /** The moment "yesterday" and "last winter" are counted from; default the current time. */
  now?: Date;
}

/** The text as one phrase, nothing read into it: `syntax=plain`, `--plain`. */
export function plainQuery(text: string): ParsedQuery {
  const phrase = text.trim();
  return { phrases: [phrase], negatives: [], date: null, understood: [{ kind: 'phrase', text: phrase }] };
}

const DAY_MS = 86_400_000;

/** Words before a date that only say "when": they go with the date, not to the encoder. */
const CUES = new Set(['in', 'during', 'from', 'since', 'before', 'after', 'until', 'till', 'between', 'around']);
/** Cues that open a range at the date's start or end instead of meaning the date itself. */
const OPEN_RANGE: Record<string, 'since' | 'after' | 'before' | 'until'> = { since: 'since', after: 'after', before: 'before', until: 'until', till: 'until' };
/**
 * Words after which a number is a name, not a year: articles and possessives ("the 1975") and nouns that
 * take a number ("room 2023", "route 2019"). Not every such noun can be listed; quotes make any year text.
 */
const NUMBERED = new Set(
  (
    'the a an my your his her its our their this that these those no no. nr nr. num number # ' +
    'room page chapter verse route bus tram train flight gate platform track terminal seat row table apartment apt suite unit house ' +
    'street st highway interstate exit pier dock lot box level floor channel model version v iphone ipad windows galaxy pixel ' +
    'jersey player shirt code id step episode issue volume vol part item order ticket invoice mile km kilometre kilometer'
  ).split(' '),
);
/** Month names that are English words too: alone, they need a cue or a capital to be a month. */
const AMBIGUOUS_MONTHS = new Set(['may', 'march', 'august']);

/** Seasons of the northern hemisphere, meteorological: first month (1-based) and length in months. */
const SEASONS: Record<string, number> = { spring: 3, summer: 6, autumn: 9, fall: 9, winter: 12 };

const YEAR = '(1[89]\\d\\d|20\\d\\d)';

/** A bare year; whether it counts is decided with the words around it (`accept`). */
const yearParser: Parser = {
  // A year stands alone: not inside "2019a", "#2023", "1080p", "3.2019" or a date chrono reads whole.
  // "2019-2021" is two years; "covid-2019" is a name.
  pattern: () => new RegExp(`(?<![\\w#.\\/:])(?<![^\\d\\s]-)${YEAR}(?![\\w/:]|\\.\\d)`, 'i'),
  extract: (context, match) => {
    const year = Number(match[1]);
    if (year > context.refDate.getFullYear()) return null;
    return context.createParsingComponents({ year }).addTag('clipdex/year');
  },
};

/** "summer 2021", "summer of 2021", "last winter", "this spring", "winter 2020/21". */
const seasonParser: Parser = {
  pattern: () => new RegExp(`(?<![\\w-])(?:(last|this|past)\\s+)?(spring|summer|autumn|fall|winter)(?:\\s+(?:of\\s+)?${YEAR}(?:\\s*[/–-]\\s*(\\d\\d(?:\\d\\d)?))?)?(?![\\w-])`, 'i'),
  extract: (context, match) => {
    const [, qualifier, name, yearText, secondYear] = match;
    const first = SEASONS[name!.toLowerCase()]!;
    const now = context.refDate;
    let start: number;
    if (yearText !== undefined) {
      start = Number(yearText);
      // "winter 2020/21": the second year must be the next one, else this is not a season's name.
      if (secondYear !== undefined && (first !== 12 || Number(secondYear) % 100 !== (start + 1) % 100)) return null;
      if (secondYear !== undefined && secondYear.length === 4 && Number(secondYear) !== start + 1) return null;
    } else if (qualifier) {
      start = seasonStartYear(first, qualifier.toLowerCase() === 'this' ? 'this' : 'last', now);
    } else {
      return null;
    }
    const end = new Date(start, first - 1 + 3, 0);
    return context
      .createParsingResult(match.index!, match[0], { year: start, month: first, day: 1 }, { year: end.getFullYear(), month: end.getMonth() + 1, day: end.getDate() })
      .addTag('clipdex/season');
  },
};

/** The year a season starts in: "last" the latest one already over, "this" the one under way or else this year's. */
function seasonStartYear(firstMonth: number, which: 'last' | 'this', now: Date): number {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const startOf = (y: number) => new Date(y, firstMonth - 1, 1);
  const endOf = (y: number) => new Date(y, firstMonth - 1 + 3, 1);
  for (let y = now.getFullYear(); y > now.getFullYear() - 3; y--) {
    if (which === 'last' && endOf(y) <= today) return y;
    if (which === 'this' && startOf(y) <= today && today < endOf(y)) return y;
  }
  return now.getFullYear();
}

/** "between 2019 and 2021": chrono merges "2019 to 2021" and "2019-2021" but not "and". */
const betweenRefiner: Refiner = {
  refine: (context, results) => {
    const merged: typeof results = [];
    for (const r of results) {
      const prev = merged.at(-1);
      const gap = prev ? context.text.slice(prev.index + prev.text.length, r.index) : '';
      if (prev && !prev.end && !r.end && /^\s+and\s+$/i.test(gap) && /\bbetween\s+$/i.test(context.text.slice(0, prev.index))) {
        prev.end = r.start;
        prev.text = context.text.slice(prev.index, r.index + r.text.length);
        continue;
      }
      merged.push(r);
    }
    return merged;
  },
};

const dateReader = casual.clone();
dateReader.parsers.push(yearParser, seasonParser);
dateReader.refiners.push(betweenRefiner);
// chrono drops every result that is only digits, which a bare year is: its filter is kept for the others,
// and a year passes it when acceptYear (below) has the words around it to judge by.
const digitsFilter = dateReader.refiners.findIndex((r) => r.constructor.name === 'UnlikelyFormatFilter');
if (digitsFilter === -1) throw new Error('chrono-node changed: its UnlikelyFormatFilter is gone, bare years would not be read');
const inner = dateReader.refiners[digitsFilter]!;
dateReader.refiners[digitsFilter] = {
  refine: (context, results) => {
    const kept = new Set(inner.refine(context, results));
    return results.filter((r) => kept.has(r) || (r.tags().has('clipdex/year') && !r.end && r.start.isValidDate()));
  },
};

/** A piece of one alternative: plain words (read for dates), a quoted literal, or a negated term. */
type Piece = { kind: 'plain' | 'quoted'; text: string; at: number } | { kind: 'not'; text: string; at: number; end: number };

/**
 * The query cut at `|` outside quotes, each alternative into pieces. A `-` starts a negation only at the
 * start of a word and before a letter or a quote: "t-shirt", "-5 degrees" and "well - lit" stay text.
 */
function tokenize(text: string): { pieces: Piece[]; start: number; end: number }[] {
  const alternatives: { pieces: Piece[]; start: number; end: number }[] = [];
  let pieces: Piece[] = [];
  let altStart = 0;
  let plainStart = 0;
  const flushPlain = (end: number) => {
    if (end > plainStart) pieces.push({ kind: 'plain', text: text.slice(plainStart, end), at: plainStart });
  };
  const quotedEnd = (open: number) => {
    const close = text.indexOf('"', open + 1);
    // An unclosed quote quotes the rest: the user meant it literally.
    return close === -1 ? text.length : close + 1;
  };
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    const wordStart = i === 0 || /[\s|]/.test(text[i - 1]!);
    if (ch === '"') {
      flushPlain(i);
      const end = quotedEnd(i);
      pieces.push({ kind: 'quoted', text: text.slice(i + 1, text[end - 1] === '"' && end - 1 > i ? end - 1 : end), at: i });
      i = plainStart = end;
    } else if (ch === '-' && wordStart && i + 1 < text.length && /[\p{L}"]/u.test(text[i + 1]!)) {
      flushPlain(i);
      let end: number;
      let term: string;
      if (text[i + 1] === '"') {
        end = quotedEnd(i + 1);
        term = text.slice(i + 2, text[end - 1] === '"' && end - 1 > i + 1 ? end - 1 : end);
      } else {
        end = i + 1;
        while (end < text.length && !/[\s|]/.test(text[end]!)) end++;
        term = text.slice(i + 1, end).replace(/[,;.!?]+$/, '');
      }
      if (term.trim()) pieces.push({ kind: 'not', text: term.trim(), at: i, end });
      i = plainStart = end;
    } else if (ch === '|') {
      flushPlain(i);
      alternatives.push({ pieces, start: altStart, end: i });
      pieces = [];
      i = plainStart = altStart = i + 1;
    } else {
      i++;
    }
  }
  flushPlain(text.length);
  alternatives.push({ pieces, start: altStart, end: text.length });
  return alternatives;
}

interface FoundDate {
  /** Where it sits in the query (cue word included), to take it out of the phrase. */
  at: number;
  end: number;
  text: string;
  from?: number;
  to?: number;
}

/** Reads the query: alternatives, negations, the date filter, and the phrase that is left. */
export function parseQueryText(text: string, options: ParseQueryOptions = {}): ParsedQuery {
  const now = options.now ?? new Date();
  const alternatives = tokenize(text);
  const negatives: string[] = [];
  const dates: FoundDate[] = [];
  for (const alt of alternatives) {
    for (const p of alt.pieces) if (p.kind === 'not') negatives.push(p.text);
    dates.push(...findDates(text, alt, now));
  }
  // Each alternative without its dates and negations; quoted words stay, without their quotes.
  const phrases: string[] = [];
  const quoted: string[] = [];
  for (const alt of alternatives) {
    let phrase = '';
    for (const p of alt.pieces) {
      if (p.kind === 'quoted' && p.text.trim()) quoted.push(p.text.trim().replace(/\s+/g, ' '));
      if (p.kind === 'quoted') phrase += ` ${p.text} `;
      else if (p.kind === 'plain') phrase += blankOut(p.text, p.at, dates);
    }
    phrase = phrase.replace(/\s+/g, ' ').trim();
    if (phrase) phrases.push(phrase);
  }
  checkAlternatives(phrases.length);

  const date = combineDates(dates);
  // A query that was only a date ("July 2023") still needs a phrase for the encoder: its own words, which
  // rank nothing in particular, while the filter does the work.
  if (phrases.length === 0 && negatives.length === 0 && date) phrases.push(date.text);

  const understood: UnderstoodPart[] = [];
  if (phrases.length === 1) understood.push({ kind: 'phrase', text: phrases[0]! });
  else if (phrases.length > 1) understood.push({ kind: 'or', phrases: [...phrases] });
  for (const n of negatives) understood.push({ kind: 'not', text: n });
  if (date) {
    understood.push({
      kind: 'date',
      text: date.text,
      ...(date.takenFrom !== undefined ? { from: isoDay(date.takenFrom) } : {}),
      ...(date.takenTo !== undefined ? { to: isoDay(date.takenTo) } : {}),
    });
  }
  return { phrases, negatives, date, understood, ...(quoted.length > 0 ? { quoted } : {}) };
}

/** The dates chrono reads in an alternative's plain words, kept only where they mean a date (see the header). */
function findDates(query: string, alt: { pieces: Piece[]; start: number; end: number }, now: Date): FoundDate[] {
  // The alternative with quoted words masked (a word, so a year after them is not "first") and negations
  // blanked (gone, as from the phrase): offsets stay those of the query.
  let masked = '';
  let at = alt.start;
  for (const p of alt.pieces) {
    masked += ' '.repeat(p.at - at);
    const end = p.kind === 'not' ? p.end : p.kind === 'quoted' ? pieceEnd(query, p) : p.at + p.text.length;
    masked += p.kind === 'plain' ? p.text : p.kind === 'quoted' ? 'x'.repeat(end - p.at) : ' '.repeat(end - p.at);
    at = end;
  }
  masked += ' '.repeat(Math.max(0, alt.end - at));
  const found: FoundDate[] = [];
  for (const r of dateReader.parse(masked, now, { forwardDate: false }) as ParsedResult[]) {
    const before = masked.slice(0, r.index);
    const prevWord = /(\S+)\s*$/.exec(before)?.[1] ?? '';
    const cue = CUES.has(prevWord.toLowerCase()) ? prevWord.toLowerCase() : null;
    const isLast = masked.slice(r.index + r.text.length).trim() === '';
    if (!accept(r, prevWord, cue, isLast)) continue;
    const range = rangeOf(r, now);
    if (!range) continue;
    const open = cue ? OPEN_RANGE[cue] : undefined;
    const start = cue ? before.trimEnd().length - prevWord.length : r.index;
    const from = open === 'before' || open === 'until' ? undefined : open === 'after' ? range.to : range.from;
    const to = open === 'since' || open === 'after' ? undefined : open === 'before' ? range.from : range.to;
    const end = r.index + r.text.length;
    found.push({ at: alt.start + start, end: alt.start + end, text: masked.slice(start, end), ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) });
  }
  return found;
}

function pieceEnd(query: string, p: Piece): number {
  const close = query.indexOf('"', p.at + 1);
  return close === -1 ? query.length : close + 1;
}

/** Whether a date chrono found means a date in a photo search (the rules in the header). */
function accept(r: ParsedResult, prevWord: string, cue: string | null, isLast: boolean): boolean {
  const tags = r.tags();
  if (tags.has('casualReference/now')) return false;
  if (tags.has('clipdex/year') && !r.end) {
    if (cue) return true;
    // Last (or alone), not after a word that takes a number.
    return isLast && !NUMBERED.has(prevWord.toLowerCase());
  }
  const s = r.start;
  const relative = tags.has('result/relativeDate');
  if (!relative && !onlyWeekday(s) && !s.isCertain('year') && !s.isCertain('month') && !s.isCertain('day')) return false;
  // "last sunday" is a day; "sunday" alone is any Sunday, a word for the encoder.
  if (onlyWeekday(s)) return /\s/.test(r.text.trim());
  if (!s.isCertain('year') && !s.isCertain('day') && s.isCertain('month') && AMBIGUOUS_MONTHS.has(r.text.trim().toLowerCase())) return cue !== null;
  return true;
}

function onlyWeekday(c: ParsedComponents): boolean {
  return c.isCertain('weekday') && !c.isCertain('day') && !c.isCertain('month') && !c.isCertain('year');
}

type Granularity = 'day' | 'week' | 'month' | 'year';

/** The days a result covers, from inclusive, to exclusive, in ms (UTC calendar days). */
function rangeOf(r: ParsedResult, now: Date): { from: number; to: number } | null {
  const relative = r.tags().has('result/relativeDate');
  // A relative phrase ("last week", "2 years ago") lands chrono on a day; the unit it counted in is the
  // span the person means.
  const unit: Granularity | null = relative ? (/\bweeks?\b/i.test(r.text) ? 'week' : /\bmonths?\b/i.test(r.text) ? 'month' : /\byears?\b/i.test(r.text) ? 'year' : null) : null;
  const startG = unit ?? granularity(r.start);
  if (!startG) return null;
  let from = periodStart(r.start, startG);
  let to = r.end ? periodEnd(periodStart(r.end, granularity(r.end) ?? startG), granularity(r.end) ?? startG) : periodEnd(from, startG);
  // A month or day named without its year is the latest one not ahead of today ("May" in December: this May).
  const today = Date.UTC(now.getFullYear(), now.getMonth(), now.getDate());
  if (!relative && !r.start.isCertain('year') && from > today) {
    from = shiftYears(from, -1);
    to = shiftYears(to, -1);
  }
  return to > from ? { from, to } : null;
}

function granularity(c: ParsedComponents): Granularity | null {
  if (c.isCertain('day')) return 'day';
  if (c.isCertain('month')) return 'month';
  if (c.isCertain('year')) return 'year';
  // "last sunday": chrono has implied the day.
  if (c.isCertain('weekday')) return 'day';
  return null;
}

function periodStart(c: ParsedComponents, g: Granularity): number {
  const y = c.get('year')!;
  const m = c.get('month')! - 1;
  const d = c.get('day')!;
  if (g === 'year') return Date.UTC(y, 0, 1);
  if (g === 'month') return Date.UTC(y, m, 1);
  const day = Date.UTC(y, m, d);
  // Weeks start on Monday (ISO 8601).
  return g === 'week' ? day - ((new Date(day).getUTCDay() + 6) % 7) * DAY_MS : day;
}

function periodEnd(start: number, g: Granularity): number {
  const s = new Date(start);
  if (g === 'year') return Date.UTC(s.getUTCFullYear() + 1, 0, 1);
  if (g === 'month') return Date.UTC(s.getUTCFullYear(), s.getUTCMonth() + 1, 1);
  return start + (g === 'week' ? 7 : 1) * DAY_MS;
}

function shiftYears(ms: number, years: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear() + years, d.getUTCMonth(), d.getUTCDate());
}

/** The phrase's words with the dates' spans (cue words included) taken out. */
function blankOut(text: string, at: number, dates: readonly FoundDate[]): string {
  let out = text;
  for (const d of dates) {
    const from = Math.max(d.at, at) - at;
    const to = Math.min(d.end, at + text.length) - at;
    if (to > from) out = out.slice(0, from) + ' '.repeat(to - from) + out.slice(to);
  }
  return out;
}

/**
 * Several dates in one query ("beach 2019 | snow 2021") cover the span from the earliest to the latest:
 * one filter serves every alternative, and an intersection of different years would find nothing.
 */
function combineDates(dates: readonly FoundDate[]): ParsedQuery['date'] {
  if (dates.length === 0) return null;
  const text = dates.map((d) => d.text.trim()).join(', ');
  const froms = dates.map((d) => d.from);
  const tos = dates.map((d) => d.to);
  const from = froms.includes(undefined) ? undefined : Math.min(...(froms as number[]));
  const to = tos.includes(undefined) ? undefined : Math.max(...(tos as number[]));
  return { text, ...(from !== undefined ? { takenFrom: from } : {}), ...(to !== undefined ? { takenTo: to } : {}) };
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * A filter the caller gave (`--after`, `?before=`) and the one read from the text both hold: the range is
 * their intersection, as every other filter adds to the ones before it.
 */
export function withParsedDate(filter: ImageFilter | undefined, date: ParsedQuery['date']): ImageFilter | undefined {
  if (!date) return filter;
  const merged: ImageFilter = { ...filter };
  if (date.takenFrom !== undefined) merged.takenFrom = Math.max(date.takenFrom, filter?.takenFrom ?? -Infinity);
  if (date.takenTo !== undefined) merged.takenTo = Math.min(date.takenTo, filter?.takenTo ?? Infinity);
  return merged;
}

/**
 * A parsed query as the engine's request: one query per alternative, the negations (and `base.terms`, such
 * as uploaded images or `--add`) in each, the date within `base.filter`.
 */
export function searchRequestOf(parsed: ParsedQuery, base: Omit<SearchRequest, 'terms' | 'anyOf'> & { terms?: QueryTerm[] } = {}): SearchRequest {
  const { terms: extra = [], filter: given, ...options } = base;
  const shared: QueryTerm[] = [...parsed.negatives.map((text) => ({ text, weight: -1 })), ...extra];
  const alternatives: QueryTerm[][] = parsed.phrases.map((text) => [{ text }]);
  const filter = withParsedDate(given, parsed.date);
  // Quoted pieces must be in the text read in photos (the engine takes the words from the phrase itself).
  // The text is matched for one query, not alternatives: "cat | dog" asks CLIP, each its own.
  const words = parsed.phrases.length === 1 ? parsed.phrases[0]!.split(/\s+/).filter(Boolean) : [];
  const text = parsed.quoted?.length ? { words, required: parsed.quoted } : undefined;
  return {
    ...(text && options.text === undefined ? { text } : {}),
    ...options,
    terms: alternatives.length === 1 ? [...alternatives[0]!, ...shared] : shared,
    ...(alternatives.length > 1 ? { anyOf: alternatives } : {}),
    ...(filter ? { filter } : {}),
  };
}
