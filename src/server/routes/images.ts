import { sep } from 'node:path';
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { photoFromRecord } from '../../search/query-engine.js';
import { imageFilterOf, requestOptionsOf } from '../../validation/search-params.js';
import { OcrRepo } from '../../store/ocr-repo.js';
import { browseResponse, photoText, timelineSummary } from '../api-responses.js';
import { browseQuery, errorsQuery, idParam, similarQuery, timelineQuery } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { sendError } from '../http-errors.js';
import { errors, json, results } from '../openapi.js';
import { openPhotoFile } from '../photo-file.js';
import { ThumbnailRemaker } from '../thumbnail-remake.js';
import type { RouteContext } from './route-context.js';

const CONTENT_TYPES: Record<string, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  heic: 'image/heic',
  avif: 'image/avif',
};

/** The library's photos: pages of it, one photo's metadata, similar photos, thumbnails, originals, failures. */
export function imageRoutes({ library, engine }: RouteContext, registry: OpenAPIRegistry) {
  const ocr = new OcrRepo(library.store.db);
  // A photo encoded on another machine (or a cleared thumbnail folder): its thumbnail is made on request.
  const thumbnails = new ThumbnailRemaker(library);
  return new ApiRoutes(registry)
    .get(
      '/api/images',
      {
        summary: 'The library a page at a time (photos searches can find), newest first by default; date-desc pages by cursor too (nextCursor)',
        query: browseQuery,
        responses: { 200: json('photos', browseResponse), ...errors(400, 503) },
      },
      ({ query }, _req, res) => {
        res.json(engine.browse({ ...requestOptionsOf(query), ...(query.cursor ? { cursor: query.cursor } : {}) }));
      },
    )
    .get(
      '/api/timeline',
      {
        summary: 'Photos per month, newest first (undated photos by file time), each with the cursor that starts /api/images there',
        query: timelineQuery,
        responses: { 200: json('the months', timelineSummary), ...errors(400, 503) },
      },
      ({ query }, _req, res) => {
        const filter = imageFilterOf(query);
        res.json(engine.timeline(filter ? { filter } : {}));
      },
    )
    .get('/api/images/{id}', { summary: 'Photo metadata', params: idParam, responses: { 200: { description: 'metadata' }, ...errors(400, 404) } }, ({ params: { id } }, _req, res) => {
      const image = library.images.get(id);
      if (!image) return sendError(res, 404, 'NOT_FOUND', `no photo with id ${id}`);
      const meta = photoFromRecord(image);
      res.json({ ...meta, status: image.status, errorCode: image.errorCode, errorMessage: image.errorMessage, contentHash: image.contentHash, rootId: image.rootId });
    })
    .get(
      '/api/images/{id}/text',
      {
        summary: 'The text read in the photo (OCR): lines with confidence and box, or why it could not be read',
        params: idParam,
        responses: { 200: json('the text', photoText), ...errors(400, 404) },
      },
      ({ params: { id } }, _req, res) => {
        const image = library.images.get(id);
        if (!image) return sendError(res, 404, 'NOT_FOUND', `no photo with id ${id}`);
        const reading = image.contentHash ? ocr.reading(image.contentHash) : undefined;
        if (!reading) return res.json({ status: 'pending', lines: [], stopped: null, error: null });
        res.json({
          status: reading.status,
          lines: reading.lines,
          stopped: reading.stopped,
          error: reading.errorCode ? { code: reading.errorCode, message: reading.errorMessage ?? '' } : null,
        });
      },
    )
    .get(
      '/api/images/{id}/similar',
      { summary: 'Photos similar to a stored photo', params: idParam, query: similarQuery, responses: { 200: results, ...errors(400, 404, 409) } },
      async ({ params: { id }, query }, _req, res) => {
        res.json(await engine.search({ terms: [{ imageId: id }], ...requestOptionsOf(query) }));
      },
    )
    .get(
      '/api/images/{id}/thumbnail',
      { summary: 'WebP thumbnail (~320 px)', params: idParam, responses: { 200: { description: 'image/webp' }, ...errors(400, 404) } },
      async ({ params: { id } }, _req, res) => {
        const image = library.images.get(id);
        if (!image?.contentHash || !(await thumbnails.ensure(image))) {
          return sendError(res, 404, 'NOT_FOUND', `no thumbnail for photo ${id}`);
        }
        res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
        res.type('image/webp');
        res.sendFile(library.thumbnails.path(image.contentHash), { dotfiles: 'allow' });
      },
    )
    .get(
      '/api/images/{id}/file',
      {
        summary: 'The original file (only from inside a watched folder, and only as it was indexed: 409 FILE_CHANGED or ROOT_RETARGETED otherwise)',
        params: idParam,
        responses: { 200: { description: 'the image' }, ...errors(400, 404, 409) },
      },
      async ({ params: { id } }, _req, res) => {
        const image = library.images.get(id);
        if (!image) return sendError(res, 404, 'NOT_FOUND', `photo ${id} is not available`);
        // Only the file that was indexed, from the folder that was chosen (photo-file.ts); never a stand-in.
        const file = await openPhotoFile(library, image);
        if (!file.ok) return sendError(res, file.status, file.code, file.message, { id });
        res.setHeader('Cache-Control', 'private, no-cache');
        res.setHeader('Content-Disposition', `inline; filename*=UTF-8''${encodeURIComponent(file.realPath.split(sep).pop() ?? 'photo')}`);
        res.setHeader('Content-Length', String(file.size));
        res.type(CONTENT_TYPES[image.format ?? ''] ?? 'application/octet-stream');
        const stream = file.handle.createReadStream();
        stream.on('error', (err) => res.destroy(err));
        res.on('close', () => stream.destroy());
        stream.pipe(res);
      },
    )
    .get('/api/errors', { summary: 'Files that failed to index, with the reason', query: errorsQuery, responses: { 200: { description: 'failed files' }, ...errors(400) } }, ({ query }, _req, res) => {
      const limit = query.limit ?? 100;
      const rows = library.images.listByStatus('error', limit + 1, query.afterId ?? 0);
      res.json({
        errors: rows.slice(0, limit).map((r) => ({ id: r.id, path: r.path, code: r.errorCode, message: r.errorMessage, updatedAt: r.updatedAt })),
        nextAfterId: rows.length > limit ? rows[limit - 1]!.id : null,
      });
    }).router;
}
