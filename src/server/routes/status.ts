import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { listManifests } from '../../model/model-registry.js';
import { ApiRoutes } from '../api-routes.js';
import { statusOf } from '../status-service.js';
import type { RouteContext } from './route-context.js';

/** The server's state: counts, progress, model and index health; the models it knows. */
export function statusRoutes({ library, ingest, modelSwitch }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry)
    .get('/api/status', { summary: 'Counts, indexing progress, model and execution provider, index health', responses: { 200: { description: 'status' } } }, (_input, _req, res) => {
      res.json(statusOf({ library, ingest, modelSwitch }));
    })
    .get('/api/models', { summary: 'Known models and the one loaded', responses: { 200: { description: 'models' } } }, async (_input, _req, res) => {
      const manifests = await listManifests();
      res.json({
        active: library.modelRef,
        loaded: library.loaded ? { key: library.loaded.key, dim: library.loaded.model.dim } : null,
        models: manifests.map((m) => ({ id: m.id, description: m.description, supported: m.supported, embeddingDim: m.embeddingDim })),
      });
    }).router;
}
