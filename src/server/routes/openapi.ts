import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ApiRoutes } from '../api-routes.js';
import { openApiDocument } from '../openapi.js';

/** The API's own description; generated on the first request, once every router has declared its routes. */
export function openApiRoutes(registry: OpenAPIRegistry) {
  let document: Record<string, unknown> | null = null;
  return new ApiRoutes(registry).get('/api/openapi.json', { summary: 'This description (OpenAPI 3.1)', responses: { 200: { description: 'the OpenAPI document' } } }, (_input, _req, res) => {
    document ??= openApiDocument(registry);
    res.json(document);
  }).router;
}
