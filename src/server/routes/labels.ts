import { isAbsolute } from 'node:path';
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ClipdexError } from '../../errors.js';
import { folderLabelRows, importLabels } from '../../train/label-import.js';
import { label, labelImportReport, labelsPage } from '../api-responses.js';
import { addLabelsBody, editLabelBody, idParam, importLabelsBody, labelsQuery } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { sendError, statusFor } from '../http-errors.js';
import { errors, json } from '../openapi.js';
import type { RouteContext } from './route-context.js';

/** Labels: the photo/caption pairs the trainer learns from. */
export function labelRoutes({ library }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry)
    .get(
      '/api/labels',
      { summary: 'Labeled pairs (photo, caption, split), captions with photo counts', query: labelsQuery, responses: { 200: json('labels', labelsPage), ...errors(400) } },
      ({ query }, _req, res) => {
        const limit = query.limit ?? 200;
        const rows = library.pairs.page({ imageId: query.imageId ?? null, caption: query.caption ?? null }, limit + 1, query.afterId ?? 0);
        const captions = library.pairs.captions();
        res.json({
          labels: rows.slice(0, limit),
          nextAfterId: rows.length > limit ? rows[limit - 1]!.id : null,
          counts: library.pairs.count(),
          captions,
        });
      },
    )
    .post(
      '/api/labels',
      { summary: 'Label photos with one caption (a photo gets a caption once)', body: addLabelsBody, responses: { 201: json('labeled', labelImportReport), ...errors(400, 404, 409) } },
      ({ body: { imageIds, caption } }, _req, res) => {
        const report = importLabels(library, imageIds.map((photo) => ({ photo, caption })));
        if (report.added + report.duplicates === 0) {
          // Nothing labeled: the request fails as its first photo did (unknown: 404; failed to index: 409).
          const first = report.problems[0];
          const code = first?.code === 'PHOTO_FAILED' ? 'PHOTO_FAILED' : 'NOT_FOUND';
          return sendError(res, statusFor(code), code, first?.reason ?? 'no such photos', { problems: report.problems });
        }
        res.status(201).json(report);
      },
    )
    .post(
      '/api/labels/import',
      {
        summary: 'Import rows { photo: id or absolute path, caption }, or label every photo under a folder with a template ("a photo of {folder}")',
        body: importLabelsBody,
        responses: { 201: json('imported', labelImportReport), ...errors(400, 404) },
      },
      ({ body }, _req, res) => {
        if ('folder' in body && !isAbsolute(body.folder)) throw new ClipdexError('INVALID_ARGUMENT', 'the folder must be an absolute path');
        const rows = 'rows' in body ? body.rows : folderLabelRows(library, body.folder, body.template);
        if ('folder' in body && rows.length === 0) return sendError(res, 404, 'NOT_FOUND', `no indexed photos under ${body.folder}`);
        res.status(201).json(importLabels(library, rows));
      },
    )
    .patch('/api/labels/{id}', { summary: 'Change a caption', params: idParam, body: editLabelBody, responses: { 200: json('the label', label.omit({ path: true, photo: true })), ...errors(400, 404) } }, ({ params: { id }, body: { caption } }, _req, res) => {
      const pair = library.pairs.update(id, caption);
      if (!pair) return sendError(res, 404, 'NOT_FOUND', `no label with id ${id}`);
      res.json(pair);
    })
    .delete('/api/labels/{id}', { summary: 'Delete a label', params: idParam, responses: { 204: { description: 'deleted' }, ...errors(400, 404) } }, ({ params: { id } }, _req, res) => {
      if (!library.pairs.remove(id)) return sendError(res, 404, 'NOT_FOUND', `no label with id ${id}`);
      res.status(204).end();
    }).router;
}
