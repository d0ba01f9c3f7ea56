import { isAbsolute } from 'node:path';
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ClipdexError } from '../../errors.js';
import { trainingState } from '../api-responses.js';
import { exportBody, rollbackBody, versionParam } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { errors, json } from '../openapi.js';
import type { RouteContext } from './route-context.js';

/** Adapter versions: list, activate, roll back, export. Activation and rollback run as background jobs. */
export function versionRoutes({ adapters, jobs }: RouteContext, registry: OpenAPIRegistry) {
  const started = json('started', trainingState.shape.job.unwrap());
  return new ApiRoutes(registry)
    .get('/api/adapters', { summary: 'Adapter versions of the loaded model with their metrics, and the active one', responses: { 200: { description: '{ versions, active }' }, ...errors(503) } }, (_input, _req, res) => {
      res.json(adapters.list());
    })
    .post(
      '/api/adapters/{version}/activate',
      { summary: 'Re-project, index and switch searches to this version (background job); an image-tuned version instead starts a model switch to its model folder (result `modelSwitch`; the photos are re-encoded in the background, progress as the Model panel shows it)', params: versionParam, responses: { 202: started, ...errors(400, 404, 409) } },
      ({ params: { version } }, _req, res) => {
        res.status(202).json(jobs.activate(version));
      },
    )
    .post(
      '/api/adapters/rollback',
      {
        summary: 'Back to the base model (`to: "base"`, the default) or to an earlier version',
        body: rollbackBody,
        bodyOf: (req) => req.body ?? {},
        responses: { 202: started, ...errors(400, 404, 409) },
      },
      ({ body: { to } }, _req, res) => {
        res.status(202).json(jobs.rollback(to));
      },
    )
    .post(
      '/api/adapters/{version}/export',
      {
        summary: 'Write this version as a model folder of plain ONNX files (default under the data directory)',
        params: versionParam,
        body: exportBody,
        bodyOf: (req) => req.body ?? {},
        responses: { 201: { description: '{ dir }' }, ...errors(400, 404) },
      },
      async ({ params: { version }, body: { dir } }, _req, res) => {
        if (dir !== undefined && !isAbsolute(dir)) throw new ClipdexError('INVALID_ARGUMENT', 'the export folder must be an absolute path');
        res.status(201).json(await adapters.export(version, dir));
      },
    ).router;
}
