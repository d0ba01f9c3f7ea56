/**
 * What the API answers, described for /api/openapi.json (only described: responses are not validated).
 * Where a TypeScript type says the same, `satisfies` ties the two, so a field added to one and not the
 * other fails the build.
 */
import { z } from 'zod';
import type { BrowsedPhoto, SearchCutoff, SearchResult, TimelineSummary } from '../search/query-engine.js';
import { DEFAULT_STRONG_PROBABILITY, DEFAULT_STRONG_RATIO } from '../search/relevance-cutoff.js';
import type { UnderstoodPart } from '../search/query-syntax.js';
import type { OcrStatus } from '../ingest/ocr-service.js';
import type { CaptionSummary, ListedPair } from '../store/pairs-repo.js';
import type { SkippedLabel } from '../train/labeled-photos.js';
import type { SplitPreview } from './split-preview.js';

export const errorResponse = z
  .object({ error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }) })
  .meta({ id: 'Error', description: 'every API error: a stable code for programs, a sentence for people' });

/** The fields every photo in a list carries (PhotoSummary). */
export const photoFields = {
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

export const searchResult = z
  .object({
    ...photoFields,
    score: z.number().describe('cosine similarity'),
    strong: z.boolean().describe('a strong match (at or above `cutoff`); strong results come before weaker ones'),
    probability: z.number().optional().describe('models with a calibrated score (SigLIP, SigLIP2): sigmoid(logit_scale · cosine + logit_bias), the probability that the photo matches; absent for CLIP'),
    matched: z
      .array(z.enum(['image', 'text']))
      .optional()
      .describe('when the search used the text in photos: which signals found it — image (a strong CLIP match), text (its recognised text has the words); empty for a weaker CLIP match'),
  })
  .meta({ id: 'SearchResult' }) satisfies z.ZodType<SearchResult>;

const ocrPoint = z.tuple([z.number(), z.number()]);
export const photoText = z
  .object({
    status: z.enum(['done', 'failed', 'pending']).describe('done: read (lines may be empty); failed: could not be read (error says why); pending: not read yet, or OCR is off'),
    lines: z.array(
      z.object({
        text: z.string(),
        confidence: z.number().describe('the recogniser’s mean character probability, 0–1'),
        box: z.tuple([ocrPoint, ocrPoint, ocrPoint, ocrPoint]).describe('corners tl, tr, br, bl as fractions (0–1) of the upright photo’s width and height'),
      }),
    ),
    stopped: z.enum(['boxes', 'time']).nullable().describe('why reading stopped early: more lines than the cap per photo, or the time bound'),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
  })
  .meta({ id: 'PhotoText' });

export const ocrStatus = z
  .object({
    enabled: z.boolean().describe('whether the text in photos is being read'),
    source: z
      .enum(['option', 'env', 'library', 'default'])
      .describe('what decided `enabled`, strongest first: the program embedding the engine, CLIPDEX_OCR in the server’s environment, the library’s setting (PUT /api/ocr, `clipdex ocr`), the default (on)'),
    unavailable: z.string().nullable().describe('why the OCR engine cannot read (its model files missing), or null'),
    done: z.number().int().describe('indexed contents (copies count once) whose text is read'),
    failed: z.number().int().describe('indexed contents whose text could not be read'),
    pending: z.number().int().describe('indexed contents not read yet'),
  })
  .meta({ id: 'OcrStatus', description: 'text in photos (also `ingest.ocr` in /api/status)' }) satisfies z.ZodType<OcrStatus>;

export const searchCutoff = z
  .object({
    rule: z
      .enum(['relative', 'absolute'])
      .describe(
        `relative: strong means at least \`value\` × the best score (default ${DEFAULT_STRONG_RATIO}, or minScoreRatio when given); absolute, for models with a calibrated probability: p ≥ \`value\` (default ${DEFAULT_STRONG_PROBABILITY})`,
      ),
    value: z.number().describe('the share of the best score (relative) or the probability (absolute)'),
    minScore: z.number().nullable().describe('the least score a strong match has; null when nothing can be strong (the best score is ≤ 0)'),
    strongCount: z.number().int().describe('strong matches among every candidate ranked (at most 2000), not only this page'),
  })
  .meta({ id: 'SearchCutoff', description: 'where the strong matches end: the results come back up to the limit, the weaker ones after the strong, marked `strong: false`' }) satisfies z.ZodType<SearchCutoff>;

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
    cutoff: searchCutoff,
    tookMs: z.number(),
    modelKey: z.string(),
  })
  .meta({ id: 'SearchResponse' });

const browsedPhoto = z.object({ ...photoFields, mtimeMs: z.number().describe("the file's modification time, ms: where a photo without a capture date goes") }) satisfies z.ZodType<BrowsedPhoto>;

export const browseResponse = z
  .object({
    images: z.array(browsedPhoto),
    offset: z.number().int(),
    limit: z.number().int(),
    total: z.number().int().nullable().describe('photos matching the filter in all; null on a page asked by cursor'),
    hasMore: z.boolean(),
    nextCursor: z.string().nullable().describe('date-desc: the `cursor` of the next page; null on the last (and in other orders)'),
    modelKey: z.string(),
  })
  .meta({ id: 'BrowseResponse' });

export const timelineSummary = z
  .object({
    total: z.number().int(),
    undated: z.number().int().describe('photos without a capture date'),
    months: z
      .array(
        z.object({
          month: z.string().describe('YYYY-MM, UTC (a capture date without a zone counts by its own wall clock)'),
          undated: z.boolean().describe('photos without a capture date, placed by their file time'),
          count: z.number().int(),
          cursor: z.string().describe('GET /api/images?cursor=… starts the timeline at this month'),
        }),
      )
      .describe('newest first: capture months, then the file months of undated photos'),
    modelKey: z.string(),
  })
  .meta({ id: 'TimelineSummary' }) satisfies z.ZodType<TimelineSummary>;

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
    testFraction: z.number(),
    seed: z.number().int(),
    selection: z.enum(['holdout', 'cross-validation']).describe('how the epoch and the blend are chosen: on the validation part (from 30 photos), or by k-fold cross-validation over the photos learned from'),
    folds: z.number().int().describe('k of the cross-validation; 1 with a validation part'),
    train: splitSide.describe('what the version learns from'),
    val: splitSide.describe('held out for the choices only'),
    test: splitSide.describe('held out from every choice, to judge the result'),
    skipped: z.number().int().describe('labels the trainer would leave out: their photo is missing, offline, failed or not indexed (yet)'),
  })
  .meta({ id: 'SplitPreview' }) satisfies z.ZodType<SplitPreview>;

const trainResult = z
  .object({
    adapter: z.record(z.string(), z.unknown()).describe('the saved version'),
    outcome: z.record(z.string(), z.unknown()).describe('losses per epoch, how the choices were made (selection), before/after metrics on the test photos, the gain with its bootstrap interval, the blend, the verdict'),
    skippedPairs: z.number().int().describe('labels left out of this run'),
    skipped: z.array(skippedLabel).describe('the first 100 of them, with why'),
    comparison: z.record(z.string(), z.unknown()).optional().describe('a textBlocks or imageBlocks run: { chosen, adapter, textBlocks | imageBlocks }, both candidates on one split; with both: { chosen, adapter, imageBlocks (the first stage), bothTowers }'),
    reencode: z
      .object({ photos: z.number().int(), msPerPhoto: z.number(), seconds: z.number().int(), note: z.string() })
      .optional()
      .describe('the saved version is image-tuned: activating it re-encodes this many photos with its image tower, about this long (measured on the run\'s labeled photos)'),
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
        result: z.union([trainResult, z.record(z.string(), z.unknown())]).nullable().describe('a training job: TrainResult; an activation: { adapter, projected, durationMs, modelSwitch? } (modelSwitch: an image-tuned version, re-encoded in the background)'),
        error: z.object({ code: z.string(), message: z.string() }).nullable(),
      })
      .nullable(),
  })
  .meta({ id: 'TrainingState' });
