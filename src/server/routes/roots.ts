import { isAbsolute } from 'node:path';
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ClipdexError } from '../../errors.js';
import { addRootBody, idParam } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { folderProblem } from '../../ingest/folder-check.js';
import { sendError } from '../http-errors.js';
import { errors } from '../openapi.js';
import type { RouteContext } from './route-context.js';

const NO_INGEST = 'this server does not index folders';

/** Watched folders: list, add, confirm a retargeted one, remove. */
export function rootRoutes({ library, ingest }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry)
    .get('/api/roots', { summary: 'Watched folders', responses: { 200: { description: 'roots' } } }, (_input, _req, res) => {
      res.json({ roots: library.roots.list() });
    })
    .post('/api/roots', { summary: 'Watch and index a folder', body: addRootBody, responses: { 201: { description: 'added' }, ...errors(400, 403, 404, 503) } }, async ({ body: { path } }, _req, res) => {
      if (!ingest) return sendError(res, 503, 'INGEST_UNAVAILABLE', NO_INGEST);
      if (!isAbsolute(path)) throw new ClipdexError('INVALID_ARGUMENT', 'the folder must be an absolute path');
      // A missing folder or a file: a sentence for the page, not the file system's `ENOENT: … stat`.
      const problem = await folderProblem(path);
      if (problem) return sendError(res, problem.status, problem.code, problem.message, { path });
      res.status(201).json(await ingest.addRoot(path));
    })
    .post(
      '/api/roots/{id}/confirm',
      { summary: 'Accept the folder a retargeted root now leads to: pin it and index it anew', params: idParam, responses: { 200: { description: 'the root' }, ...errors(400, 404, 409, 503) } },
      async ({ params: { id } }, _req, res) => {
        if (!ingest?.confirmRoot) return sendError(res, 503, 'INGEST_UNAVAILABLE', NO_INGEST);
        const root = await ingest.confirmRoot(id);
        if (!root) return sendError(res, 404, 'NOT_FOUND', `no root with id ${id}`);
        res.json(root);
      },
    )
    .delete('/api/roots/{id}', { summary: 'Stop watching a folder and forget its photos', params: idParam, responses: { 204: { description: 'removed' }, ...errors(400, 404, 503) } }, async ({ params: { id } }, _req, res) => {
      if (!ingest) return sendError(res, 503, 'INGEST_UNAVAILABLE', NO_INGEST);
      if (!(await ingest.removeRoot(id))) return sendError(res, 404, 'NOT_FOUND', `no root with id ${id}`);
      res.status(204).end();
    }).router;
}
