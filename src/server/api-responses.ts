/**
 * What the API answers, described for /api/openapi.json (only described: responses are not validated).
 * Where a TypeScript type says the same, `satisfies` ties the two, so a field added to one and not the
 * other fails the build.
 */
import { z } from 'zod';
import type { SearchResult } from '../search/query-engine.js';
import type { UnderstoodPart } from '../search/query-syntax.js';
import type { CaptionSummary, ListedPair } from '../store/pairs-repo.js';
import type { SkippedLabel } from '../train/labeled-photos.js';
import type { SplitPreview } from './split-preview.js';

export const errorResponse = z
  .object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) })
  .meta({ id: 'Error', description: 'every API error: a stable code for programs, a sentence for people' });

const photoFields = {
  id: z.number().int(),
  path: z.string(),
  size: z.number().int(),
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
  format: z.string().nullable(),
  takenAt: z.number().int().nullable().describe('capture time, ms since the epoch'),
  cameraMake: z.string().nullable(),
  cameraModel: z.string().nullable(),
};

export const searchResult = z.object({ ...photoFields, score: z.number().describe('cosine similarity') }).meta({ id: 'SearchResult' }) satisfies z.ZodType<SearchResult>;

const day = z.string().describe('YYYY-MM-DD');
export const understoodPart = z
  .discriminatedUnion('kind', [
    z.object({ kind: z.literal('phrase'), text: z.string().describe('sent to the text encoder') }),
    z.object({ kind: z.literal('or'), phrases: z.array(z.string()).describe('alternatives, each searched on its own; a photo scores its best') }),
    z.object({ kind: z.literal('not'), text: z.string().describe('subtracted') }),
    z.object({
      kind: z.literal('date'),
      text: z.string().describe("the query's words that said it"),
      from: day.optional().describe('taken on or after this day (absent: open)'),
      to: day.optional().describe('taken before this day (exclusive; absent: open)'),
    }),
  ])
  .meta({ id: 'UnderstoodPart', description: 'what the query syntax read in the text' }) satisfies z.ZodType<UnderstoodPart>;

export const searchResponse = z
  .object({
    understood: z.array(understoodPart).optional().describe('what the typed text was read as (searches from text only)'),
    results: z.array(searchResult),
    offset: z.number().int(),
    limit: z.number().int(),
    hasMore: z.boolean(),
    bestScore: z.number().nullable(),
    tookMs: z.number(),
    modelKey: z.string(),
  })
  .meta({ id: 'SearchResponse' });

export const browseResponse = z
  .object({ images: z.array(z.object(photoFields)), offset: z.number().int(), limit: z.number().int(), total: z.number().int(), hasMore: z.boolean(), modelKey: z.string() })
  .meta({ id: 'BrowseResponse' });

export const label = z
  .object({
    id: z.number().int(),
    imageId: z.number().int().nullable().describe('the photo the label is attached to now; null while no file in the library has its content'),
    contentHash: z.string().nullable().describe("the labeled photo's content, the label's key"),
    caption: z.string(),
    split: z.enum(['train', 'val']),
    createdAt: z.number().int(),
    lastPath: z.string().describe("the photo's path, or the last one known while it is missing"),
    missingSince: z.number().int().nullable().describe('when its photo left the library (ms); null while it is there'),
    path: z.string(),
    photo: z.enum(['ok', 'offline', 'failed', 'missing']).describe("the photo's state"),
  })
  .meta({ id: 'Label' }) satisfies z.ZodType<ListedPair>;

const captionSummary = z
  .object({ caption: z.string(), labels: z.number().int(), photos: z.number().int(), train: z.number().int(), val: z.number().int() })
  .meta({ id: 'CaptionSummary' }) satisfies z.ZodType<CaptionSummary>;

export const labelsPage = z
  .object({
    labels: z.array(label),
    nextAfterId: z.number().int().nullable().describe('pass as afterId for the next page; null on the last'),
    counts: z.object({ train: z.number().int(), val: z.number().int() }),
    captions: z.array(captionSummary),
  })
  .meta({ id: 'LabelsPage' });

export const labelImportReport = z
  .object({
    added: z.number().int(),
    duplicates: z.number().int().describe('the photo already had this caption'),
    problems: z.array(z.object({ row: z.number().int(), photo: z.string(), reason: z.string(), code: z.string() })).describe('rows that could not be used, with why (first 100)'),
    problemCount: z.number().int(),
  })
  .meta({ id: 'LabelImportReport' });

const skippedLabel = z
  .object({ pairId: z.number().int(), caption: z.string(), path: z.string(), reason: z.string() })
  .meta({ id: 'SkippedLabel', description: 'a label left out of a training run (kept; it trains again once its photo is there)' }) satisfies z.ZodType<SkippedLabel>;

const splitSide = z.object({ labels: z.number().int(), photos: z.number().int() });
export const splitPreview = z
  .object({
    valFraction: z.number(),
    seed: z.number().int(),
    train: splitSide,
    val: splitSide,
    skipped: z.number().int().describe('labels the trainer would leave out: their photo is missing, offline, failed or not indexed (yet)'),
  })
  .meta({ id: 'SplitPreview' }) satisfies z.ZodType<SplitPreview>;

const trainResult = z
  .object({
    adapter: z.record(z.string(), z.unknown()).describe('the saved version'),
    outcome: z.record(z.string(), z.unknown()).describe('losses per epoch, before/after metrics on validation, the blend, the verdict'),
    skippedPairs: z.number().int().describe('labels left out of this run'),
    skipped: z.array(skippedLabel).describe('the first 100 of them, with why'),
  })
  .meta({ id: 'TrainResult' });

export const trainingState = z
  .object({
    running: z.boolean(),
    job: z
      .object({
        kind: z.enum(['train', 'activate', 'rollback']),
        state: z.enum(['running', 'done', 'failed']),
        startedAt: z.number().int(),
        finishedAt: z.number().int().nullable(),
        progress: z.record(z.string(), z.unknown()).nullable(),
        result: z.union([trainResult, z.record(z.string(), z.unknown())]).nullable().describe('a training job: TrainResult; an activation: { adapter, projected, durationMs }'),
        error: z.object({ code: z.string(), message: z.string() }).nullable(),
      })
      .nullable(),
  })
  .meta({ id: 'TrainingState' });
