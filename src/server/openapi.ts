/**
 * The OpenAPI 3.1 description served at /api/openapi.json, generated from what the routers declared
 * (api-routes.ts): the same zod schemas that validate the requests.
 */
import { createRequire } from 'node:module';
import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import type { z } from 'zod';
import { errorResponse, searchResponse } from './api-responses.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

/** A registry for one app's routes, with the bearer-token scheme they may need. */
export function apiRegistry(): OpenAPIRegistry {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'token', { type: 'http', scheme: 'bearer' });
  return registry;
}

export function openApiDocument(registry: OpenAPIRegistry): Record<string, unknown> {
  const document = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'clipdex',
      version,
      description:
        'Local semantic photo search. Bound to loopback by default; when bound elsewhere every call needs `Authorization: Bearer <token>`.',
    },
    security: [{}, { token: [] }],
  });
  return document as unknown as Record<string, unknown>;
}

/** Responses the routes share. */
export const error: ResponseConfig = { description: 'error', content: { 'application/json': { schema: errorResponse } } };
export const results: ResponseConfig = { description: 'ranked results', content: { 'application/json': { schema: searchResponse } } };

export function errors(...statuses: number[]): Record<number, ResponseConfig> {
  return Object.fromEntries(statuses.map((s) => [s, error]));
}

/** A JSON answer described by its schema. */
export function json(description: string, schema: z.ZodType): ResponseConfig {
  return { description, content: { 'application/json': { schema } } };
}
