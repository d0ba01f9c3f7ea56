import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ClipdexError } from '../../errors.js';
import { PhotoTrash, type TrashedPhoto } from '../../ingest/photo-trash.js';
import { findDuplicates } from '../../search/duplicate-groups.js';
import { DuplicatesRepo } from '../../store/duplicates-repo.js';
import { duplicateThresholdParam, neighboursParam, photoIdsParam, rotationsParam, trashIdsParam } from '../../validation/duplicates-params.js';
import { intParam } from '../../validation/param-rules.js';
import { photoFields } from '../api-responses.js';
import { ApiRoutes } from '../api-routes.js';
import { sendError, statusFor } from '../http-errors.js';
import { errors, json } from '../openapi.js';
import type { RouteContext } from './route-context.js';

const duplicatesQuery = z.object({
  threshold: duplicateThresholdParam.optional().describe('cosine distance under which two photos are duplicates, 0.001–0.1 (default 0.01: the same shot re-saved or resized)'),
  rotations: rotationsParam.optional().describe('also match photos turned by 90°, 180° or 270° (slower: rotations of close pairs are encoded)'),
  neighbours: neighboursParam.optional().describe('neighbours asked per photo (default 10)'),
});
const idsBody = z.object({ ids: photoIdsParam }).strict();
const undoBody = z.object({ trashIds: trashIdsParam }).strict();
const pageQuery = z.object({ limit: intParam(1, 1000).optional(), offset: intParam(0, Number.MAX_SAFE_INTEGER).optional() });

const pairPhoto = z.object({ id: z.number().int(), path: z.string() });
const duplicatePhoto = z.object({
  ...photoFields,
  keeper: z.boolean().describe('the suggested photo to keep'),
  distance: z.number().describe('cosine distance to the keeper'),
  exactCopy: z.boolean().describe("the keeper's very bytes"),
  rotated: z.number().int().optional().describe('matched once turned by this many degrees'),
});
const duplicatesReport = z
  .object({
    threshold: z.number(),
    rotations: z.boolean(),
    neighbours: z.number().int(),
    groups: z.array(
      z.object({
        id: z.string(),
        kind: z.enum(['exact', 'near', 'mixed']),
        keeperId: z.number().int(),
        reason: z.string().describe('why the keeper was suggested'),
        maxDistance: z.number(),
        photos: z.array(duplicatePhoto),
      }),
    ),
    duplicatePhotos: z.number().int(),
    photosChecked: z.number().int(),
    examples: z.object({
      under: z.array(z.object({ a: pairPhoto, b: pairPhoto, distance: z.number() })),
      over: z.array(z.object({ a: pairPhoto, b: pairPhoto, distance: z.number() })),
    }),
    rotationStats: z.object({ encodedPhotos: z.number().int(), candidatePairs: z.number().int(), skippedPairs: z.number().int(), failedPhotos: z.number().int() }).nullable(),
    hiddenCount: z.number().int(),
    trashCount: z.number().int(),
    tookMs: z.number(),
    modelKey: z.string(),
  })
  .meta({ id: 'DuplicatesReport' });
const trashRecord = z.object({
  id: z.number().int(),
  imageId: z.number().int(),
  contentHash: z.string().nullable(),
  rootPath: z.string(),
  originalPath: z.string(),
  trashPath: z.string(),
  trashedAt: z.number().int(),
  restoredAt: z.number().int().nullable(),
});

/** Duplicates review: the groups, hiding photos from search, the trash folder and undo. */
export function duplicateRoutes({ library, events }: RouteContext, registry: OpenAPIRegistry) {
  const repo = new DuplicatesRepo(library.store.db);
  const trash = new PhotoTrash(library.store);
  const counts = () => ({ hiddenCount: repo.hiddenCount(), trashCount: repo.trashCount() });
  return new ApiRoutes(registry)
    .get(
      '/api/duplicates',
      {
        summary: 'Groups of exact copies and near-duplicates, each with a suggested photo to keep and why',
        query: duplicatesQuery,
        responses: { 200: json('duplicate groups', duplicatesReport), ...errors(400, 503) },
      },
      async ({ query }, _req, res) => {
        res.json(
          await findDuplicates(library, {
            ...(query.threshold !== undefined ? { threshold: query.threshold } : {}),
            ...(query.rotations !== undefined ? { rotations: query.rotations } : {}),
            ...(query.neighbours !== undefined ? { neighbours: query.neighbours } : {}),
          }),
        );
      },
    )
    .get(
      '/api/duplicates/hidden',
      { summary: 'Photos hidden from search, most recent first', query: pageQuery, responses: { 200: { description: 'hidden photos and how many' }, ...errors(400) } },
      ({ query }, _req, res) => {
        res.json({ photos: repo.hidden(query.limit ?? 200, query.offset ?? 0), ...counts() });
      },
    )
    .post(
      '/api/duplicates/hide',
      { summary: 'Hide photos from every search, find-similar and page of the library (their files stay)', body: idsBody, responses: { 200: { description: 'the ids hidden now' }, ...errors(400, 404) } },
      ({ body: { ids } }, _req, res) => {
        const changed = repo.setHidden(ids, true);
        for (const id of changed) events.publish('removed', { type: 'removed', imageId: id, path: library.images.get(id)?.path ?? '' });
        res.json({ hidden: changed, ...counts() });
      },
    )
    .post(
      '/api/duplicates/unhide',
      { summary: 'Show hidden photos in search again', body: idsBody, responses: { 200: { description: 'the ids shown again' }, ...errors(400, 404) } },
      ({ body: { ids } }, _req, res) => {
        res.json({ unhidden: repo.setHidden(ids, false), ...counts() });
      },
    )
    .get(
      '/api/duplicates/trash',
      { summary: "Photos moved to their folder's .clipdex-trash, most recent first", query: pageQuery, responses: { 200: json('trashed photos', z.object({ items: z.array(trashRecord), hiddenCount: z.number().int(), trashCount: z.number().int() })), ...errors(400) } },
      ({ query }, _req, res) => {
        res.json({ items: trash.list(query.limit ?? 200, query.offset ?? 0), ...counts() });
      },
    )
    .post(
      '/api/duplicates/trash',
      {
        summary: "Move photos to their watched folder's .clipdex-trash folder (never deleted; undo puts them back)",
        description: 'Photos are moved one by one, in order; on the first failure the answer is that error, with the photos moved before it in `details.trashed` (undo them by their trashId).',
        body: idsBody,
        responses: { 200: { description: 'the photos moved, with the trash ids that undo them' }, ...errors(400, 404, 409) },
      },
      ({ body: { ids } }, _req, res) => {
        const unknown = ids.filter((id) => !library.images.get(id));
        if (unknown.length > 0) return sendError(res, 404, 'NOT_FOUND', `no photo with id ${unknown.join(', ')}`, { ids: unknown });
        const done: TrashedPhoto[] = [];
        for (const id of new Set(ids)) {
          try {
            done.push(trash.trash(id));
            events.publish('removed', { type: 'removed', imageId: id, path: done.at(-1)!.originalPath });
          } catch (err) {
            if (done.length === 0 || !(err instanceof ClipdexError)) throw err;
            // Those already moved stay moved (each is whole); the answer says which, so they can be undone.
            return sendError(res, statusFor(err.code), err.code, `${err.message} (${done.length} photo(s) before it were moved to the trash)`, { trashed: done });
          }
        }
        res.json({ trashed: done, ...counts() });
      },
    )
    .post(
      '/api/duplicates/undo',
      { summary: 'Put trashed photos back where they were (same id, labels and all)', body: undoBody, responses: { 200: { description: 'the photos put back' }, ...errors(400, 404, 409) } },
      ({ body: { trashIds } }, _req, res) => {
        const restored = [...new Set(trashIds)].map((id) => trash.restore(id));
        res.json({ restored, ...counts() });
      },
    ).router;
}
