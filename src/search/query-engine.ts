/**
 * The one query engine behind the library, the REST API, the CLI and the web page: terms (phrases, stored
 * photos, uploaded or local images) are embedded, combined with their weights (negative terms subtract, as
 * rclip allows), searched in the vector index with exact filters, split into strong and weaker matches
 * (relevance-cutoff.ts), sorted, paged, and joined with the photos' metadata.
 */
import { ClipdexError } from '../errors.js';
import type { Library, SearchSpace } from '../library/library.js';
import { projectRows } from '../adapter/adapter-weights.js';
import type { ImageInput } from '../model/image-source.js';
import type { ImageRecord } from '../store/images-repo.js';
import type { SearchHit } from '../index/vector-index.js';
import { ImageFilterQueries, type BrowseOrder, type ImageFilter } from '../store/image-filter.js';
import { OcrRepo } from '../store/ocr-repo.js';
import { failedPhotoError } from './failed-photo.js';
import { parseParam } from '../validation/param-rules.js';
import {
  browseCursorParam,
  browseOffsetParam,
  checkImageFilter,
  encodeBrowseCursor,
  limitParam,
  checkAlternatives,
  languageParam,
  MAX_SEARCH_OFFSET,
  MAX_TERMS,
  minScoreRatioParam,
  phraseParam,
  photoIdParam,
  searchOffsetParam,
  termWeightParam,
} from '../validation/search-params.js';
import { LruCache } from './lru-cache.js';
import { calibrationOf, relevanceCutoff, type RelevanceCutoff } from './relevance-cutoff.js';

export { MAX_LIMIT } from '../validation/search-params.js';

export type QueryTerm = { weight?: number } & (
  | { text: string }
  | { imageId: number }
  /** An uploaded image's bytes. */
  | { image: Uint8Array }
  /** A local file; never accepted from the network (the server builds terms itself). */
  | { path: string }
);

export type SortOrder = 'relevance' | 'date-desc' | 'date-asc';

export interface SearchRequest {
  terms: QueryTerm[];
  /**
   * Alternatives (`cat | dog`): each list, with `terms` added to it, is a query of its own, and a photo
   * scores its best over them. Absent or empty: one query, `terms`.
   */
  anyOf?: QueryTerm[][];
  filter?: ImageFilter;
  /** Results per page; default 50, at most 500. */
  limit?: number;
  offset?: number;
  sort?: SortOrder;
  /**
   * Keep only results scoring at least this fraction of the best score (0–1), and call those the strong
   * ones. A fixed cosine threshold fails across queries (a good match for one phrase scores 0.25, for a
   * photo 0.9); a share of the best adapts. Default: every result up to the limit comes back, split by
   * the relevance cut-off (`cutoff` in the response: 0.9 of the best, or p ≥ 0.5 for a model with a
   * calibrated score); date order keeps only the strong ones (a date-sorted list needs a boundary).
   */
  minScoreRatio?: number;
  /** Leave out the query's own photo when searching by a stored photo. Default true. */
  excludeQueryImages?: boolean;
  /**
   * The text read in photos (OCR) as a second signal: photos whose text contains every one of `words` are
   * merged with CLIP's ranking by reciprocal rank fusion; with `required` (quoted phrases) only photos
   * whose text contains each of them are returned. `false`: CLIP alone. Default: the words of the positive
   * phrases (one query, no `anyOf`); the typed syntax (query-syntax.ts) adds the quoted pieces. Ignored while the library has no text read at all (quotes then only keep a
   * phrase literal, as before OCR).
   */
  text?: { words: string[]; required?: string[] } | false;
  /**
   * The phrases' language, for a model whose text tower takes one (NLLB-CLIP): a tag (`de`) or a FLORES-200
   * code (`deu_Latn`); without it each phrase's language is detected. Other models ignore it.
   */
  language?: string;
}

/** Which signals found a result: a strong CLIP match ('image'), words in its text ('text'). */
export type MatchSignal = 'image' | 'text';

/** Reciprocal rank fusion's constant (Cormack et al. 2009): ranks past the first few count nearly alike. */
export const RRF_K = 60;

/** A photo as results and pages of the library carry it. */
export type PhotoSummary = Pick<ImageRecord, 'id' | 'path' | 'size' | 'width' | 'height' | 'format' | 'takenAt' | 'cameraMake' | 'cameraModel'>;

/** A photo as results carry it: its metadata, the cosine score of this search, and which side of the cut-off it is on. */
export type SearchResult = PhotoSummary & {
  score: number;
  /** A strong match: at or above the cut-off (`SearchResponse.cutoff`). Strong results come before weaker ones. */
  strong: boolean;
  /** For a model with a calibrated score (SigLIP): the probability that the photo matches; absent otherwise. */
  probability?: number;
  /** Which signals found it (a weaker CLIP match alone: none); present when the search used the text in photos. */
  matched?: MatchSignal[];
};

/** Where the strong matches end, and how many there are among every candidate ranked (not only this page). */
export type SearchCutoff = RelevanceCutoff;

export interface SearchResponse {
  results: SearchResult[];
  offset: number;
  limit: number;
  hasMore: boolean;
  /** Best score among all matches (before paging), for "score relative to best" displays. */
  bestScore: number | null;
  /** The strong/weaker split: its rule, its value and the number of strong matches (see relevance-cutoff.ts). */
  cutoff: SearchCutoff;
  tookMs: number;
  modelKey: string;
}

/** A page of the library itself, in a stable order (`browse`). */
export interface BrowseRequest {
  filter?: ImageFilter;
  /** Default date-desc: newest capture first, photos without a date last. */
  sort?: BrowseOrder;
  /** Default 50, at most 500. */
  limit?: number;
  offset?: number;
  /** date-desc only: a page's `nextCursor`, or a month's from `timeline()`. */
  cursor?: string;
}

export interface BrowseResponse {
  images: BrowsedPhoto[];
  offset: number;
  limit: number;
  /** Photos matching the filter in all; null on a page asked by `cursor` (counting would read them all: the timeline summary has the counts). */
  total: number | null;
  hasMore: boolean;
  /** date-desc only: pass as `cursor` for the next page; null on the last. */
  nextCursor: string | null;
  modelKey: string;
}

/** Photos per month, for jumping along the timeline. */
export interface TimelineSummary {
  /** Photos matching the filter in all. */
  total: number;
  /** Of them, photos without a capture date. */
  undated: number;
  /** Newest first: months with dated photos, then months (by file time) of photos without a date. */
  months: { month: string; undated: boolean; count: number; cursor: string }[];
  modelKey: string;
}

/** A photo of a library page: the file's modification time too, which places a photo without a capture date. */
export type BrowsedPhoto = PhotoSummary & { mtimeMs: number };

/**
 * Results a cut-off or date sort looks at: the index returns the best this many, then they are filtered.
 * It is also the deepest offset a search takes, so the parameter rules hold it.
 */
const MAX_CANDIDATES = MAX_SEARCH_OFFSET;

export function resultFromRecord(r: ImageRecord, score: number, strong: boolean, probability?: number): SearchResult {
  return { ...photoFromRecord(r), score, strong, ...(probability !== undefined ? { probability } : {}) };
}

export function photoFromRecord(r: ImageRecord): PhotoSummary {
  return {
    id: r.id,
    path: r.path,
    size: r.size,
    width: r.width,
    height: r.height,
    format: r.format,
    takenAt: r.takenAt,
    cameraMake: r.cameraMake,
    cameraModel: r.cameraModel,
  };
}

/** Several ranked lists as one: each photo once, with its best score, best first (ties by id, stably). */
function bestPerPhoto<H extends { id: number; score: number }>(lists: readonly H[][]): H[] {
  const best = new Map<number, H>();
  for (const list of lists) for (const h of list) if ((best.get(h.id)?.score ?? -Infinity) < h.score) best.set(h.id, h);
  return [...best.values()].sort((a, b) => b.score - a.score || a.id - b.id);
}

export class QueryEngine {
  /**
   * Phrase → embedding, per model key and version: typing "dog", "dog " and "dog" again costs one encode.
   * In memory, per engine (one process): never shared nor kept, and a process's query precision (fp32 or int8,
   * query-precision.ts) is fixed when its model loads. The text tower's precision is in the key all the same, so
   * an fp32 embedding can never answer for an int8 tower or the reverse.
   */
  private readonly textCache = new LruCache<string, Float32Array>(1000);
  private browser: ImageFilterQueries | null = null;
  private ocr: OcrRepo | null = null;

  constructor(
    private readonly library: Library,
    private readonly options: { maxPixels?: number } = {},
  ) {}

  /**
   * The library a page at a time: the photos a search could find (indexed, with an embedding in the space
   * searched), under the same filters, without a query. Pages by `offset`, or in date-desc order by
   * `cursor` (the timeline: each page reads only its own rows, however deep).
   */
  browse(request: BrowseRequest = {}): BrowseResponse {
    const { key } = this.library.searchSpace();
    const limit = parseParam(limitParam, request.limit ?? 50, 'limit');
    const sort = request.sort ?? 'date-desc';
    const filter = request.filter ? checkImageFilter(request.filter) : {};
    const cursor = request.cursor === undefined ? undefined : parseParam(browseCursorParam, request.cursor, 'cursor');
    this.browser ??= new ImageFilterQueries(this.library.store.db);
    if (cursor !== undefined) {
      if (sort !== 'date-desc') throw new ClipdexError('INVALID_ARGUMENT', `cursor pages the date-desc order only, not ${sort}: use offset`);
      if (request.offset) throw new ClipdexError('INVALID_ARGUMENT', 'give cursor or offset, not both');
    }
    const offset = cursor === undefined ? parseParam(browseOffsetParam, request.offset ?? 0, 'offset') : 0;
    const photos = (ids: readonly number[]) =>
      ids.flatMap((id) => {
        const record = this.library.images.get(id);
        return record ? [{ ...photoFromRecord(record), mtimeMs: record.mtimeMs }] : [];
      });
    if (cursor !== undefined || sort === 'date-desc') {
      // date-desc pages by keyset even without a cursor, so every page says where the next one starts.
      const page = offset === 0 ? this.browser.timelinePage(key, filter, cursor ?? null, limit) : null;
      if (page) {
        const total = cursor === undefined ? this.browser.count(key, filter) : null;
        const nextCursor = page.next ? encodeBrowseCursor(page.next) : null;
        return { images: photos(page.rows.map((r) => r.imageId)), offset, limit, total, hasMore: nextCursor !== null, nextCursor, modelKey: key };
      }
    }
    const { ids, total } = this.browser.page(key, filter, sort, limit, offset);
    return { images: photos(ids), offset, limit, total, hasMore: offset + ids.length < total, nextCursor: null, modelKey: key };
  }

  /**
   * Photos per month, newest first (capture months, then the file months of photos without a capture
   * date), each with the cursor that starts the timeline there: what a "jump to" list needs.
   */
  timeline(request: Pick<BrowseRequest, 'filter'> = {}): TimelineSummary {
    const { key } = this.library.searchSpace();
    const filter = request.filter ? checkImageFilter(request.filter) : {};
    this.browser ??= new ImageFilterQueries(this.library.store.db);
    const months = this.browser.timelineMonths(key, filter).map(({ undated, month, count }) => {
      const [y, m] = month.split('-').map(Number) as [number, number];
      // Starts after everything in the month that follows: the month's newest photo comes first.
      const end = Date.UTC(y, m, 1);
      return { month, undated, count, cursor: encodeBrowseCursor(undated ? { part: 'undated', at: end, id: 0 } : { part: 'dated', at: end, id: 0 }) };
    });
    const total = months.reduce((n, m) => n + m.count, 0);
    const undated = months.reduce((n, m) => n + (m.undated ? m.count : 0), 0);
    return { total, undated, months, modelKey: key };
  }

  async search(request: SearchRequest): Promise<SearchResponse> {
    const started = performance.now();
    // One space for the whole search: an adapter switch in the middle does not mix two spaces' vectors.
    const space = this.library.searchSpace();
    const { index, key } = space;
    const limit = parseParam(limitParam, request.limit ?? 50, 'limit');
    const offset = parseParam(searchOffsetParam, request.offset ?? 0, 'offset');
    const filter = request.filter ? checkImageFilter(request.filter) : undefined;
    const sort = request.sort ?? 'relevance';
    const ratio = request.minScoreRatio !== undefined ? parseParam(minScoreRatioParam, request.minScoreRatio, 'minScoreRatio') : undefined;
    checkAlternatives(request.anyOf?.length ?? 0);
    const queries = request.anyOf?.length ? request.anyOf.map((alt) => [...alt, ...request.terms]) : [request.terms];
    const language = request.language !== undefined ? parseParam(languageParam, request.language, 'lang') : undefined;
    const vectors = await Promise.all(queries.map((terms) => this.queryVector(terms, space, language)));
    const excluded = new Set(
      request.excludeQueryImages === false ? [] : queries.flat().flatMap((t) => ('imageId' in t && (t.weight ?? 1) > 0 ? [t.imageId] : [])),
    );
    // An explicit ratio is the user's own cut-off, kept relative as documented; otherwise a model with a
    // calibrated score gets the absolute rule. The one place the model's say is asked.
    const calibrated = calibrationOf(space.model);
    const probability = ratio === undefined ? calibrated : null;
    const cut = (scores: readonly number[]) =>
      probability ? relevanceCutoff({ calibrated: true, probabilities: scores.map(probability) }) : relevanceCutoff({ scores, ...(ratio !== undefined ? { ratio } : {}) });
    const strongScore = (cutoff: RelevanceCutoff, score: number) => cutoff.minScore !== null && (probability ? probability(score) : score) >= cutoff.minScore;

    const rank = async (want: number) => {
      // Each alternative's best `want` are enough for the merged best `want`: a photo's merged score is its
      // score in one alternative, where it ranks at least as high as in the merged list.
      const lists: SearchHit[][] = [];
      for (const v of vectors) lists.push(await index.search(v, want, filter ? { filter } : {}));
      const hits = (lists.length === 1 ? lists[0]! : bestPerPhoto(lists)).filter((h) => !excluded.has(h.id));
      return { hits, full: lists.some((l) => l.length >= want) };
    };
    const wholeList = ratio !== undefined || sort !== 'relevance';
    let want = Math.min(MAX_CANDIDATES, (wholeList ? MAX_CANDIDATES : offset + limit + 1) + excluded.size);
    let { hits, full } = await rank(want);
    for (const v of vectors) index.noteQuery?.(v); // issue 19: ef is tuned on the queries users ask (index/query-log.ts)
    let cutoff = cut(hits.map((h) => h.score));
    // Strong matches all the way down what was ranked, and more could follow: rank every candidate to count them.
    if (full && want < MAX_CANDIDATES && cutoff.strongCount === hits.length && hits.length > 0) {
      want = MAX_CANDIDATES;
      ({ hits } = await rank(want));
      cutoff = cut(hits.map((h) => h.score));
    }
    const bestScore = hits[0]?.score ?? null;
    // An explicit ratio drops what is under it (as it always did: not when even the best is ≤ 0, where a
    // share of it means nothing); date order keeps the strong matches only, a list by date needs a boundary.
    if (ratio !== undefined ? bestScore !== null && bestScore > 0 : sort !== 'relevance' && (probability !== null || (bestScore ?? 0) > 0)) {
      hits = hits.filter((h) => strongScore(cutoff, h.score));
    }

    let results = hits.flatMap((h) => {
      const record = this.library.images.get(h.id);
      return record ? [resultFromRecord(record, h.score, strongScore(cutoff, h.score), calibrated?.(h.score))] : [];
    });
    const text = request.text === false ? null : this.textMatches(request.text ?? { words: this.phraseWords(request) }, filter, key);
    if (text) {
      const vector = vectors.length === 1 ? vectors[0]! : null;
      results = this.mergeText(results, text, vector, key, (score) => strongScore(cutoff, score), calibrated, sort === 'relevance', excluded);
    }
    if (sort !== 'relevance') {
      const dir = sort === 'date-desc' ? -1 : 1;
      // Photos without a capture date go last either way, best score first among them.
      results = [...results].sort((a, b) =>
        a.takenAt === null || b.takenAt === null
          ? (a.takenAt === null ? 1 : 0) - (b.takenAt === null ? 1 : 0) || b.score - a.score
          : dir * (a.takenAt - b.takenAt) || b.score - a.score,
      );
    }
    return {
      results: results.slice(offset, offset + limit),
      offset,
      limit,
      hasMore: results.length > offset + limit,
      bestScore,
      cutoff,
      tookMs: Math.round((performance.now() - started) * 100) / 100,
      modelKey: key,
    };
  }

  /** The words of a search's positive phrases, for the text signal when the request does not say: one query only. */
  private phraseWords(request: SearchRequest): string[] {
    if (request.anyOf?.length) return [];
    return request.terms.flatMap((t) => ('text' in t && (t.weight ?? 1) > 0 ? t.text.split(/\s+/).filter(Boolean) : []));
  }

  /**
   * Photos whose text contains every word (in bm25 order) and, with required phrases, the set allowed at
   * all; null when the search has no words or the library has read no text.
   */
  private textMatches(
    request: { words: string[]; required?: string[] },
    filter: ImageFilter | undefined,
    key: string,
  ): { ranked: number[]; allowed: Set<number> | null } | null {
    const words = request.words.map((w) => w.trim()).filter(Boolean);
    const required = (request.required ?? []).map((w) => w.trim()).filter(Boolean);
    if (words.length === 0 && required.length === 0) return null;
    this.ocr ??= new OcrRepo(this.library.store.db);
    // A library without any text read (OCR off, or not run yet): quotes keep their old meaning, a literal phrase for CLIP.
    if (!this.ocr.hasText()) return null;
    const inFilter = filter && Object.keys(filter).length > 0 ? new Set((this.browser ??= new ImageFilterQueries(this.library.store.db)).ids(key, filter)) : null;
    const keep = (ids: number[]) => (inFilter ? ids.filter((id) => inFilter.has(id)) : ids);
    const ranked = words.length > 0 ? keep(this.ocr.search([...words, ...required], MAX_CANDIDATES).map((h) => h.imageId)) : [];
    const allowed = required.length > 0 ? new Set(keep(this.ocr.search(required, MAX_CANDIDATES).map((h) => h.imageId))) : null;
    return ranked.length === 0 && allowed === null ? null : { ranked, allowed };
  }

  /**
   * CLIP's results and the text matches as one list: reciprocal rank fusion (1 / (RRF_K + rank) summed over
   * the lists a photo is in) when sorting by relevance, each result marked with the signals that found it. A
   * photo only the text found gets its cosine from its stored embedding, so `score` stays CLIP's everywhere.
   */
  private mergeText(
    results: SearchResult[],
    text: { ranked: number[]; allowed: Set<number> | null },
    vector: Float32Array | null,
    key: string,
    strong: (score: number) => boolean,
    calibrated: ((score: number) => number) | null,
    byRelevance: boolean,
    excluded: Set<number>,
  ): SearchResult[] {
    const textRank = new Map(text.ranked.map((id, i) => [id, i + 1]));
    const merged = new Map<number, { result: SearchResult; fused: number }>();
    results.forEach((r, i) => {
      const t = textRank.get(r.id);
      const matched: MatchSignal[] = [...(r.strong ? (['image'] as const) : []), ...(t ? (['text'] as const) : [])];
      merged.set(r.id, { result: { ...r, strong: r.strong || t !== undefined, matched }, fused: 1 / (RRF_K + i + 1) + (t ? 1 / (RRF_K + t) : 0) });
    });
    for (const [id, t] of textRank) {
      if (merged.has(id) || excluded.has(id)) continue;
      const record = this.library.images.get(id);
      const stored = vector ? this.library.embeddings.forImage(id, key) : null;
      if (!record) continue;
      let score = 0;
      if (stored && vector) for (let d = 0; d < vector.length; d++) score += stored[d]! * vector[d]!;
      const matched: MatchSignal[] = strong(score) ? ['image', 'text'] : ['text'];
      merged.set(id, { result: { ...resultFromRecord(record, score, true, calibrated?.(score)), matched }, fused: 1 / (RRF_K + t) });
    }
    let list = [...merged.values()];
    if (text.allowed) list = list.filter((m) => text.allowed!.has(m.result.id));
    // Strong results (either signal) still come before weaker ones, as without text.
    if (byRelevance) {
      list.sort((a, b) => Number(b.result.strong) - Number(a.result.strong) || b.fused - a.fused || b.result.score - a.result.score || a.result.id - b.result.id);
    }
    return list.map((m) => m.result);
  }

  /** Σ weight·embedding over the terms, normalised: the point in embedding space the search looks around. */
  async queryVector(terms: readonly QueryTerm[], space: SearchSpace = this.library.searchSpace(), language?: string): Promise<Float32Array> {
    if (terms.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'a search needs at least one term (a phrase or an image)');
    if (terms.length > MAX_TERMS) throw new ClipdexError('INVALID_ARGUMENT', `at most ${MAX_TERMS} terms per search, got ${terms.length}`);
    const { model } = space;
    const weights = terms.map((t) => parseParam(termWeightParam, t.weight ?? 1, 'a term weight'));
    if (!weights.some((w) => w > 0)) throw new ClipdexError('INVALID_ARGUMENT', 'at least one term needs a positive weight');
    const vectors = await Promise.all(terms.map((t) => this.termVector(t, space, language)));
    const sum = new Float32Array(model.dim);
    vectors.forEach((v, i) => {
      for (let d = 0; d < sum.length; d++) sum[d]! += weights[i]! * v[d]!;
    });
    let norm = 0;
    for (const x of sum) norm += x * x;
    norm = Math.sqrt(norm);
    if (!(norm > 1e-6)) throw new ClipdexError('INVALID_ARGUMENT', 'the terms cancel each other out; change their weights');
    for (let d = 0; d < sum.length; d++) sum[d]! /= norm;
    return sum;
  }

  private async termVector(term: QueryTerm, space: SearchSpace, language: string | undefined): Promise<Float32Array> {
    const { model } = space;
    const { key, adapter } = space;
    // Phrases and new images are encoded by the base model, then projected like the stored vectors were.
    const project = (v: Float32Array, w: 'image' | 'text') => (adapter ? projectRows(v, 1, adapter.weights[w], adapter.weights.dim) : v);
    if ('text' in term) {
      const text = parseParam(phraseParam, term.text, 'a phrase');
      // Per version, not per key: a text-tuned version is searched under the base key with its own tower.
      const tuned = adapter?.text;
      const cacheKey = `${key}\n${adapter?.id ?? ''}\n${model.queryPrecision}\n${language ?? ''}\n${text}`;
      const cached = this.textCache.get(cacheKey);
      if (cached) return cached;
      // A text-tuned version encodes with its own tower; its text side has no projection on top.
      const v = tuned
        ? (await tuned.encode([text], language !== undefined ? { language } : {}))[0]!
        : project((await model.embedTexts([text], language !== undefined ? { language } : {}))[0]!, 'text');
      this.textCache.set(cacheKey, v);
      return v;
    }
    if ('imageId' in term) {
      parseParam(photoIdParam, term.imageId, 'a photo id');
      const record = this.library.images.get(term.imageId);
      if (!record) throw new ClipdexError('NOT_FOUND', `no photo with id ${term.imageId}`);
      // Refused before any lookup: whatever vector its hash may still find, the file as it is now could not be read.
      const failed = failedPhotoError(record, 'searched by');
      if (failed) throw failed;
      // A stored photo's own embedding: no decoding, no encoder.
      const v = this.library.embeddings.forImage(term.imageId, key);
      if (!v) throw new ClipdexError('INVALID_ARGUMENT', `photo ${term.imageId} is not indexed yet (status: ${record.status})`);
      return v;
    }
    const input: ImageInput = 'image' in term ? term.image : term.path;
    const [result] = await model.embedImages([input], { ...(this.options.maxPixels ? { maxPixels: this.options.maxPixels } : {}), name: 'path' in term ? term.path : 'the uploaded image' });
    if (!result!.ok) throw result!.error;
    return project(result!.embedding, 'image');
  }
}
