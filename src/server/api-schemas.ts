/** Request shapes of the REST API, validated with zod; the OpenAPI description is generated from the same schemas. */
import { z } from 'zod';
import {
  browseCursorText,
  browseOffsetParam,
  browseSortParam,
  filterParamsShape,
  languageParam,
  limitParam,
  MAX_TERMS,
  minScoreRatioParam,
  phraseParam,
  photoIdParam,
  querySyntaxParam,
  searchOffsetParam,
  termWeightParam,
  searchSortParam,
} from '../validation/search-params.js';
import { intParam } from '../validation/param-rules.js';
import { DEFAULT_STRONG_PROBABILITY, DEFAULT_STRONG_RATIO } from '../search/relevance-cutoff.js';
import { trainRequestShape } from '../validation/train-params.js';

export const sortSchema = searchSortParam;

/** Filters and paging shared by every search (the rules themselves live in validation/search-params). */
export const searchOptionsShape = {
  limit: limitParam.optional().describe('results per page (default 50)'),
  offset: searchOffsetParam.optional().describe('results to skip'),
  ...filterParamsShape,
  sort: searchSortParam.optional().describe('relevance (default), date-desc or date-asc'),
  minScoreRatio: minScoreRatioParam
    .optional()
    .describe(
      `keep only results scoring at least this share of the best score (all of them strong). Default: none, every result up to the limit comes back, split by the relevance cut-off (\`cutoff\`: strong from ${DEFAULT_STRONG_RATIO} of the best score, or p ≥ ${DEFAULT_STRONG_PROBABILITY} for a model with a calibrated score); date order keeps the strong ones only`,
    ),
};

const syntax = querySyntaxParam
  .optional()
  .describe('query (default): dates ("beach July 2023", "last winter") become a capture-date filter, `a | b` are alternatives, `-word` and `-"two words"` subtract, quoted text is literal; plain: the text is one phrase');

/** `text=off`: CLIP alone, the text read in photos (OCR) left out of the ranking. */
export const textSignalParam = z
  .enum(['on', 'off'])
  .optional()
  .describe('on (default): photos whose recognised text contains the words are merged with CLIP’s ranking (reciprocal rank fusion) and quoted phrases must be in the text (once the library has read any); off: CLIP alone');
const lang = languageParam
  .optional()
  .describe('the language of the phrases, for a model whose text tower takes one (NLLB-CLIP): a tag (de, pt-BR) or a FLORES-200 code (deu_Latn); default: detected per phrase. Other models ignore it');

export const textSearchQuery = z.object({
  q: z.string().trim().min(1, 'q (the phrase) is required').max(1000).describe('what to look for, in the query syntax unless syntax=plain'),
  syntax,
  text: textSignalParam,
  lang,
  ...searchOptionsShape,
});

export const similarQuery = z.object(searchOptionsShape);

/** GET /api/images: the library itself, newest first by default, with the search filters. */
export const browseQuery = z.object({
  limit: searchOptionsShape.limit,
  offset: browseOffsetParam.optional().describe('photos to skip'),
  ...filterParamsShape,
  sort: browseSortParam.optional().describe('date-desc (default: newest first, then undated photos by file time), date-asc or path'),
  cursor: browseCursorText.optional().describe('date-desc: start after this point (a page’s nextCursor, or a month’s cursor from /api/timeline); reads only the page, however deep'),
});

/** GET /api/timeline: photos per month under the same filters, for jumping along the timeline. */
export const timelineQuery = z.object(filterParamsShape);

const weight = termWeightParam.optional();

/** POST /api/search: any mix of phrases and stored photos, each with a weight; uploads come as multipart files. */
export const combinedSearchBody = z.object({
  terms: z
    .array(
      z.union([
        z.object({ text: phraseParam, weight }).strict(),
        z.object({ imageId: photoIdParam, weight }).strict(),
      ]),
    )
    .max(MAX_TERMS)
    .default([]),
  /**
   * Typed text read like GET's `q` (dates, `|`, `-word`), searched with the terms and uploads above; `terms`
   * phrases are structured already and stay literal.
   */
  q: z.string().trim().min(1, 'q must not be empty').max(1000).optional().describe('typed text in the query syntax, searched together with `terms` (whose phrases stay literal)'),
  text: textSignalParam,
  syntax,
  lang,
  /** Weights of the uploaded files, in upload order (default 1 each). */
  uploadWeights: z.array(termWeightParam).max(4).optional(),
  ...searchOptionsShape,
});

export const idParam = z.object({ id: intParam(1, Number.MAX_SAFE_INTEGER) });

export const errorsQuery = z.object({ limit: intParam(1, 1000).optional(), afterId: intParam(0, Number.MAX_SAFE_INTEGER).optional() });

/** PUT /api/ocr: the library's OCR setting. */
export const ocrBody = z.object({ enabled: z.boolean().describe('true: read the text in photos (the default); false: read nothing more, keep what was read searchable') }).strict();

export const addRootBody = z.object({ path: z.string().min(1).max(4096) }).strict();

const caption = z.string().trim().min(1, 'a caption must not be empty').max(1000);

export const labelsQuery = z.object({
  limit: intParam(1, 1000).optional().describe('labels per page (default 200)'),
  afterId: intParam(0, Number.MAX_SAFE_INTEGER).optional().describe('labels after this id (paging)'),
  imageId: intParam(1, Number.MAX_SAFE_INTEGER).optional().describe('only the labels of this photo'),
  caption: z.string().min(1).max(1000).optional().describe('only labels with exactly this caption'),
});

/** POST /api/labels: one caption for one or more photos (the web page's "label selected"). */
export const addLabelsBody = z.object({ imageIds: z.array(z.number().int().positive()).min(1).max(1000), caption }).strict();

export const editLabelBody = z.object({ caption }).strict();

/** POST /api/labels/import: rows (photo id or absolute path + caption), or a folder-as-label import. */
export const importLabelsBody = z.union([
  z.object({ rows: z.array(z.object({ photo: z.union([z.number().int().positive(), z.string().min(1).max(4096)]), caption: z.string().max(1000) }).strict()).min(1).max(100_000) }).strict(),
  z.object({ folder: z.string().min(1).max(4096), template: z.string().min(1).max(500).optional() }).strict(),
]);

export const trainBody = z.object(trainRequestShape).strict();

export const versionParam = z.object({ version: intParam(1, Number.MAX_SAFE_INTEGER) });

export const rollbackBody = z.object({ to: z.union([z.literal('base'), z.number().int().positive()]).default('base') }).strict();

export const exportBody = z.object({ dir: z.string().min(1).max(4096).optional() }).strict();
