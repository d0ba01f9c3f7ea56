/** Request shapes of the REST API, validated with zod; the OpenAPI description is generated from the same schemas. */
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** A date as YYYY-MM-DD (start of that day, UTC) or an ISO timestamp, to ms since the epoch. */
const dateParam = z
  .string()
  .max(40)
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be a date (YYYY-MM-DD or ISO 8601)')
  .transform((s) => Date.parse(s));

const formats = z
  .string()
  .max(200)
  .regex(/^[a-z0-9,]+$/i, 'a comma-separated list of formats such as jpeg,png')
  .transform((s) => s.split(',').filter(Boolean).map((f) => f.toLowerCase()));

export const sortSchema = z.enum(['relevance', 'date-desc', 'date-asc']);

/** Filters and paging shared by every search. */
export const searchOptionsShape = {
  limit: int(1, 500).optional().describe('results per page (default 50)'),
  offset: int(0, 2000).optional().describe('results to skip'),
  folder: z.string().min(1).max(4096).optional().describe('only photos under this folder (absolute path)'),
  after: dateParam.optional().describe('taken on or after this date'),
  before: dateParam.optional().describe('taken before this date'),
  format: formats.optional().describe('only these formats, e.g. jpeg,png'),
  sort: sortSchema.optional().describe('relevance (default), date-desc or date-asc'),
  minScoreRatio: z.coerce.number().min(0).max(1).optional().describe('keep results scoring at least this share of the best score'),
};

export const textSearchQuery = z.object({
  q: z.string().trim().min(1, 'q (the phrase) is required').max(1000),
  ...searchOptionsShape,
});

export const similarQuery = z.object(searchOptionsShape);

/** GET /api/images: the library itself, newest first by default, with the search filters. */
export const browseQuery = z.object({
  limit: searchOptionsShape.limit,
  offset: int(0, 10_000_000).optional().describe('photos to skip'),
  folder: searchOptionsShape.folder,
  after: searchOptionsShape.after,
  before: searchOptionsShape.before,
  format: searchOptionsShape.format,
  sort: z.enum(['date-desc', 'date-asc', 'path']).optional().describe('date-desc (default: newest first, undated last), date-asc or path'),
});

const weight = z.number().min(-100).max(100).optional();

/** POST /api/search: any mix of phrases and stored photos, each with a weight; uploads come as multipart files. */
export const combinedSearchBody = z.object({
  terms: z
    .array(
      z.union([
        z.object({ text: z.string().trim().min(1).max(1000), weight }).strict(),
        z.object({ imageId: z.number().int().positive(), weight }).strict(),
      ]),
    )
    .max(16)
    .default([]),
  /** Weights of the uploaded files, in upload order (default 1 each). */
  uploadWeights: z.array(z.number().min(-100).max(100)).max(4).optional(),
  limit: z.number().int().min(1).max(500).optional(),
  offset: z.number().int().min(0).max(2000).optional(),
  folder: z.string().min(1).max(4096).optional(),
  after: dateParam.optional(),
  before: dateParam.optional(),
  format: z.array(z.string().regex(/^[a-z0-9]+$/i).max(10)).max(10).optional(),
  sort: sortSchema.optional(),
  minScoreRatio: z.number().min(0).max(1).optional(),
});

export const idParam = z.object({ id: int(1, Number.MAX_SAFE_INTEGER) });

export const errorsQuery = z.object({ limit: int(1, 1000).optional(), afterId: int(0, Number.MAX_SAFE_INTEGER).optional() });

export const addRootBody = z.object({ path: z.string().min(1).max(4096) }).strict();

const caption = z.string().trim().min(1, 'a caption must not be empty').max(1000);

export const labelsQuery = z.object({
  limit: int(1, 1000).optional().describe('labels per page (default 200)'),
  afterId: int(0, Number.MAX_SAFE_INTEGER).optional().describe('labels after this id (paging)'),
  imageId: int(1, Number.MAX_SAFE_INTEGER).optional().describe('only the labels of this photo'),
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

export const trainBody = z
  .object({
    epochs: z.number().int().min(1).max(10_000).optional(),
    batchSize: z.number().int().min(2).max(65_536).optional(),
    valFraction: z.number().min(0).max(0.9).optional(),
    seed: z.number().int().min(0).max(2 ** 31 - 1).optional(),
    learningRate: z.number().gt(0).lt(1).optional(),
    patience: z.number().int().min(1).max(10_000).optional(),
  })
  .strict();

export const versionParam = z.object({ version: int(1, Number.MAX_SAFE_INTEGER) });

export const rollbackBody = z.object({ to: z.union([z.literal('base'), z.number().int().positive()]).default('base') }).strict();

export const exportBody = z.object({ dir: z.string().min(1).max(4096).optional() }).strict();
