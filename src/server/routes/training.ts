import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ClipdexError } from '../../errors.js';
import { splitPreview, trainingState } from '../api-responses.js';
import { trainBody } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { errors, json } from '../openapi.js';
import { previewSplit, splitPreviewQuery } from '../split-preview.js';
import type { RouteContext } from './route-context.js';

/** Training runs in the background (training-jobs.ts): start one, read its state, preview its split. */
export function trainingRoutes({ library, jobs }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry)
    .get(
      '/api/training',
      { summary: 'The current or last training/activation/rollback job: { running, job: { kind, state, progress, result, error } }', responses: { 200: json('job state', trainingState) } },
      (_input, _req, res) => {
        res.json(jobs.state());
      },
    )
    .get(
      '/api/training/split',
      {
        summary: 'What the next training run would hold out: labels and photos it learns from, those only its choices see (validation), those only its verdict sees (test), how it chooses (validation part or k-fold cross-validation), and labels it would skip',
        query: splitPreviewQuery,
        responses: { 200: json('{ train, val, test, selection, folds, skipped }', splitPreview), ...errors(400, 503) },
      },
      ({ query }, _req, res) => {
        res.json(previewSplit(library, query.valFraction, query.seed, query.testFraction));
      },
    )
    .post(
      '/api/training',
      {
        summary: 'Start training on the labels (runs in the background; progress as `training` events): the adapter, and with textBlocks > 0 also the last k text-tower blocks (lora: their low-rank rank), both judged on one split; or with imageBlocks > 0 the last k image-tower blocks; with both, the image blocks then the text blocks against the tuned image tower (`comparison.bothTowers`, the image-only first stage as `comparison.imageBlocks`); the result then carries `comparison` and the saved version is the one the selection step scored higher; an image-tuned version also carries `reencode` (activating it re-encodes every photo: how many, about how long)',
        body: trainBody,
        bodyOf: (req) => req.body ?? {},
        responses: { 202: json('started', trainingState.shape.job.unwrap()), ...errors(400, 409, 503) },
      },
      ({ body }, _req, res) => {
        library.requireModel();
        // Refused before a job starts, like every other bad field.
        if (body.lora && !body.textBlocks && !body.imageBlocks) throw new ClipdexError('INVALID_ARGUMENT', 'lora applies to tuned text or image blocks: give textBlocks or imageBlocks too');
        res.status(202).json(jobs.train(body));
      },
    ).router;
}
