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
