/**
 * The one rule for what a search or a page of the library may ask: whole numbers in range, real calendar
 * dates, known formats (with their usual aliases), the score ratio. The CLI's options, the API's schemas
 * and the query engine all parse through these, so `--after 2018-06-31` and `?after=2018-06-31` are refused
 * by the same words, and `jpg` means `jpeg` everywhere.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { ClipdexError } from '../errors.js';
import type { ImageFormat } from '../model/image-format.js';
import type { ImageFilter, TimelineCursor } from '../store/image-filter.js';
import { fromText, intParam, intRule, parseParam } from './param-rules.js';

/** Results per page of a search or of the library. */
export const MAX_LIMIT = 500;
/** A search ranks at most this many candidates, so a page cannot start further in. */
export const MAX_SEARCH_OFFSET = 2000;

export const limitParam = intParam(1, MAX_LIMIT);
export const searchOffsetParam = intParam(0, MAX_SEARCH_OFFSET);
export const browseOffsetParam = intParam(0, Number.MAX_SAFE_INTEGER);

/**
 * Where a date-desc page of the library starts: `d_<takenAt>_<id>` (after that dated photo), `u_<mtimeMs>_<id>`
 * (after that undated one) or `u` (at the newest undated photo). Opaque to clients, who get cursors from a
 * page's `nextCursor` or from GET /api/timeline; written here beside its parser so the two cannot drift.
 */
export function encodeBrowseCursor(c: TimelineCursor): string {
  if (c.part === 'dated') return `d_${c.at}_${c.id}`;
  return c.at === undefined ? 'u' : `u_${c.at}_${c.id ?? 0}`;
}

const CURSOR_MESSAGE = 'is not a cursor this server gave out (use a page’s nextCursor or a month’s cursor from /api/timeline)';
export const browseCursorParam = z
  .string({ error: CURSOR_MESSAGE })
  .max(80, CURSOR_MESSAGE)
  .transform((s, ctx): TimelineCursor => {
    if (s === 'u') return { part: 'undated' };
    const m = /^([du])_(-?\d{1,16}(?:\.\d{1,12})?)_(\d{1,16})$/.exec(s);
    const at = m ? Number(m[2]) : NaN;
    const id = m ? Number(m[3]) : NaN;
    // Capture dates are whole milliseconds; file times may carry a fraction.
    if (!m || !Number.isFinite(at) || !Number.isSafeInteger(id) || (m[1] === 'd' && !Number.isSafeInteger(at))) {
      ctx.addIssue({ code: 'custom', message: CURSOR_MESSAGE });
      return z.NEVER;
    }
    return m[1] === 'd' ? { part: 'dated', at, id } : { part: 'undated', at, id };
  });

/** The same rule for a schema that passes the cursor on as its text (the engine parses it). */
export const browseCursorText = z.string({ error: CURSOR_MESSAGE }).refine((s) => browseCursorParam.safeParse(s).success, CURSOR_MESSAGE);

/** A share of the best score, 0 to 1, as a number or its decimal text. */
export const minScoreRatioParam = fromText(z.number({ error: 'must be a number from 0 to 1' }).min(0, 'must be a number from 0 to 1').max(1, 'must be a number from 0 to 1'));

const DATE_MESSAGE = 'must be a real date as YYYY-MM-DD (e.g. 2024-06-30) or an ISO 8601 timestamp';
// zod's ISO checks know the calendar (30 days in June, 29 February only in leap years); Date.parse does
// not: it rolls 2018-06-31 over to 1 July.
const isoDate = z.iso.date();
const isoDateTime = z.iso.datetime({ offset: true, local: true });

/** A date (start of that day, UTC) or an ISO timestamp, to ms since the epoch. */
export const dateParam = z
  .string({ error: DATE_MESSAGE })
  .trim()
  .max(40, DATE_MESSAGE)
  .refine((s) => isoDate.safeParse(s).success || isoDateTime.safeParse(s).success, DATE_MESSAGE)
  .transform((s) => Date.parse(s));

/** Every format the store records (as `detectImageFormat` names them), so a filter can match. */
const FORMATS: Record<ImageFormat, readonly string[]> = {
  jpeg: ['jpg', 'jpe', 'jfif'],
  png: [],
  webp: [],
  gif: [],
  tiff: ['tif'],
  bmp: [],
  heic: ['heif', 'hif'],
  avif: [],
};
export const IMAGE_FORMATS = Object.keys(FORMATS) as ImageFormat[];
const FORMAT_OF = new Map<string, ImageFormat>(IMAGE_FORMATS.flatMap((f) => [[f, f] as const, ...FORMATS[f].map((alias) => [alias, f] as const)]));
const VALID_FORMATS = IMAGE_FORMATS.map((f) => (FORMATS[f].length ? `${f} (${FORMATS[f].join(', ')})` : f)).join(', ');

/** The store's name for a format or one of its aliases, any case; undefined for an unknown one. */
export function canonicalFormat(name: string): ImageFormat | undefined {
  return FORMAT_OF.get(name.trim().toLowerCase());
}

/** A comma-separated list ("jpg,PNG") or an array of names, to the store's names, without repeats. */
export const formatListParam = z
  .union([z.string().max(200), z.array(z.string().max(20)).max(20)], { error: 'must be a list of formats such as jpeg,png' })
  .transform((value, ctx) => {
    const names = (typeof value === 'string' ? value.split(',') : value).map((f) => f.trim()).filter(Boolean);
    if (names.length === 0) {
      ctx.addIssue({ code: 'custom', message: `must name at least one format: ${VALID_FORMATS}` });
      return z.NEVER;
    }
    const unknown = names.filter((f) => canonicalFormat(f) === undefined);
    if (unknown.length > 0) {
      ctx.addIssue({ code: 'custom', message: `names an unknown format: ${unknown.map((f) => JSON.stringify(f)).join(', ')}; valid formats: ${VALID_FORMATS}` });
      return z.NEVER;
    }
    return [...new Set(names.map((f) => canonicalFormat(f)!))];
  });

export const folderParam = z.string().min(1).max(4096);
export const searchSortParam = z.enum(['relevance', 'date-desc', 'date-asc']);
export const browseSortParam = z.enum(['date-desc', 'date-asc', 'path']);

/** The filters every search and the library listing take, under the names the CLI and the API use. */
export const filterParamsShape = {
  folder: folderParam.optional().describe('only photos under this folder (absolute path)'),
  after: dateParam.optional().describe('taken on or after this date (YYYY-MM-DD or ISO 8601)'),
  before: dateParam.optional().describe('taken before this date'),
  format: formatListParam.optional().describe(`only these formats, e.g. jpeg,png (${VALID_FORMATS})`),
};

export interface FilterParams {
  folder?: string | undefined;
  after?: number | undefined;
  before?: number | undefined;
  format?: readonly string[] | undefined;
}

/** Parsed filter parameters as the store's filter; undefined when they constrain nothing. */
export function imageFilterOf(p: FilterParams): ImageFilter | undefined {
  const filter: ImageFilter = {
    ...(p.folder ? { folder: resolve(p.folder) } : {}),
    ...(p.after !== undefined ? { takenFrom: p.after } : {}),
    ...(p.before !== undefined ? { takenTo: p.before } : {}),
    ...(p.format?.length ? { formats: p.format } : {}),
  };
  return Object.keys(filter).length ? filter : undefined;
}

/** Paging, order and filters as the CLI's options and the API's schemas parse them. */
export interface PageParams<Sort extends string> extends FilterParams {
  limit?: number | undefined;
  offset?: number | undefined;
  sort?: Sort | undefined;
  minScoreRatio?: number | undefined;
  lang?: string | undefined;
}

/** Parsed parameters as the query engine's request options: the filter built, absent ones left out. */
export function requestOptionsOf<Sort extends string>(p: PageParams<Sort>): {
  filter?: ImageFilter;
  limit?: number;
  offset?: number;
  sort?: Sort;
  minScoreRatio?: number;
  language?: string;
} {
  const filter = imageFilterOf(p);
  return {
    ...(p.lang !== undefined ? { language: p.lang } : {}),
    ...(p.limit !== undefined ? { limit: p.limit } : {}),
    ...(p.offset !== undefined ? { offset: p.offset } : {}),
    ...(p.sort !== undefined ? { sort: p.sort } : {}),
    ...(p.minScoreRatio !== undefined ? { minScoreRatio: p.minScoreRatio } : {}),
    ...(filter ? { filter } : {}),
  };
}

/**
 * A filter as a library caller built it, its formats in the store's names: the engine's check, so a
 * caller that did not come through the CLI or the API meets the same rule.
 */
export function checkImageFilter(filter: ImageFilter): ImageFilter {
  if (filter.formats === undefined) return filter;
  return { ...filter, formats: parseParam(formatListParam, filter.formats, 'formats') };
}

/** Terms of one search (phrases, photos, images), and the limits on each. */
export const MAX_TERMS = 16;
const WEIGHT = 'must be a number from -100 to 100';
/** A term's weight: negative subtracts; ±100 is far past any useful mix. */
export const termWeightParam = z.number({ error: WEIGHT }).min(-100, WEIGHT).max(100, WEIGHT);
/** A phrase to search for, trimmed. */
export const phraseParam = z.string({ error: 'must be text' }).trim().min(1, 'must not be empty').max(1000, 'is limited to 1000 characters');
/** A stored photo's id in a JSON body or a library call. */
export const photoIdParam = intRule(1, Number.MAX_SAFE_INTEGER);
/**
 * The language of a query's phrases, for models whose text tower takes one (NLLB-CLIP): a language tag
 * (`de`, `pt-BR`) or a FLORES-200 code (`deu_Latn`). Only its form is checked here; whether the model knows
 * it is the model's answer (an INVALID_ARGUMENT naming close codes). Other models ignore it.
 */
export const languageParam = z
  .string({ error: 'must be text' })
  .trim()
  .regex(/^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,3}$/, 'must be a language tag (de, pt-BR) or a FLORES-200 code (deu_Latn)');
/** Alternatives of one query (`cat | dog`): each is a search of its own, so they are few. */
export const MAX_ALTERNATIVES = 8;
/** The one check on a query's alternatives, whether they came typed (`a | b`) or as `anyOf` in a request. */
export function checkAlternatives(count: number): void {
  if (count > MAX_ALTERNATIVES) throw new ClipdexError('INVALID_ARGUMENT', `at most ${MAX_ALTERNATIVES} alternatives (a | b) per search, got ${count}`);
}
/** How a typed query is read: `query` (the default) reads dates, `|` and `-word`; `plain` takes the text as one phrase. */
export const querySyntaxParam = z.enum(['query', 'plain']);
