import { createRequire } from 'node:module';
import { z } from 'zod';
import {
  addLabelsBody,
  addRootBody,
  combinedSearchBody,
  editLabelBody,
  errorsQuery,
  exportBody,
  importLabelsBody,
  labelsQuery,
  rollbackBody,
  similarQuery,
  browseQuery,
  textSearchQuery,
  trainBody,
} from './api-schemas.js';
import { splitPreviewQuery } from './split-preview.js';

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };

type JsonSchema = Record<string, unknown>;

/** Query parameters from a zod object, described as the client sends them (before coercion). */
function queryParameters(schema: z.ZodObject): JsonSchema[] {
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: 'query',
    required: json.required?.includes(name) ?? false,
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
    schema: { ...s, description: undefined },
  }));
}

function body(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
}

const idPath = { name: 'id', in: 'path', required: true, schema: { type: 'integer', minimum: 1 } };
const error = { description: 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
const results = { description: 'ranked results', content: { 'application/json': { schema: { $ref: '#/components/schemas/SearchResponse' } } } };

let cached: JsonSchema | null = null;

/** The OpenAPI 3.1 description served at /api/openapi.json. */
export function openApiDocument(): JsonSchema {
  cached ??= {
    openapi: '3.1.0',
    info: {
      title: 'clipdex',
      version,
      description:
        'Local semantic photo search. Bound to loopback by default; when bound elsewhere every call needs `Authorization: Bearer <token>`.',
    },
    components: {
      securitySchemes: { token: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Error: {
          type: 'object',
          properties: { error: { type: 'object', properties: { code: { type: 'string' }, message: { type: 'string' } }, required: ['code', 'message'] } },
        },
        SearchResult: {
          type: 'object',
          properties: {
            id: { type: 'integer' },
            path: { type: 'string' },
            score: { type: 'number', description: 'cosine similarity' },
            size: { type: 'integer' },
            width: { type: ['integer', 'null'] },
            height: { type: ['integer', 'null'] },
            format: { type: ['string', 'null'] },
            takenAt: { type: ['integer', 'null'], description: 'capture time, ms since the epoch' },
            cameraMake: { type: ['string', 'null'] },
            cameraModel: { type: ['string', 'null'] },
          },
        },
        SearchResponse: {
          type: 'object',
          properties: {
            results: { type: 'array', items: { $ref: '#/components/schemas/SearchResult' } },
            offset: { type: 'integer' },
            limit: { type: 'integer' },
            hasMore: { type: 'boolean' },
            bestScore: { type: ['number', 'null'] },
            tookMs: { type: 'number' },
            modelKey: { type: 'string' },
          },
        },
      },
    },
    security: [{}, { token: [] }],
    paths: {
      '/api/search': {
        get: { summary: 'Search by phrase', parameters: queryParameters(textSearchQuery), responses: { 200: results, 400: error, 503: error } },
        post: {
          summary: 'Combined search: phrases, stored photos and uploaded images with weights (negative weights subtract)',
          requestBody: {
            content: {
              'application/json': { schema: body(combinedSearchBody) },
              'multipart/form-data': {
                schema: {
                  type: 'object',
                  properties: {
                    image: { type: 'array', items: { type: 'string', format: 'binary' }, maxItems: 4 },
                    query: { type: 'string', description: 'the JSON body above, as a string' },
                  },
                },
              },
            },
          },
          // 503 also as UPLOADS_BUSY with Retry-After, past 64 MB of uploads in flight.
          responses: { 200: results, 400: error, 413: error, 415: error, 422: error, 503: error },
        },
      },
      '/api/images': {
        get: {
          summary: 'The library a page at a time (photos searches can find), newest first by default',
          description: '`{ images: [{ id, path, size, width, height, format, takenAt, cameraMake, cameraModel }], offset, limit, total, hasMore, modelKey }`.',
          parameters: queryParameters(browseQuery),
          responses: { 200: { description: 'photos' }, 400: error },
        },
      },
      '/api/images/{id}': { get: { summary: 'Photo metadata', parameters: [idPath], responses: { 200: { description: 'metadata' }, 404: error } } },
      '/api/images/{id}/similar': {
        get: { summary: 'Photos similar to a stored photo', parameters: [idPath, ...queryParameters(similarQuery)], responses: { 200: results, 404: error, 409: error } },
      },
      '/api/images/{id}/thumbnail': { get: { summary: 'WebP thumbnail (~320 px)', parameters: [idPath], responses: { 200: { description: 'image/webp' }, 404: error } } },
      '/api/images/{id}/file': {
        get: {
          summary: 'The original file (only from inside a watched folder, and only as it was indexed: 409 FILE_CHANGED or ROOT_RETARGETED otherwise)',
          parameters: [idPath],
          responses: { 200: { description: 'the image' }, 404: error, 409: error },
        },
      },
      '/api/status': { get: { summary: 'Counts, indexing progress, model and execution provider, index health', responses: { 200: { description: 'status' } } } },
      '/api/errors': { get: { summary: 'Files that failed to index, with the reason', parameters: queryParameters(errorsQuery), responses: { 200: { description: 'failed files' } } } },
      '/api/roots': {
        get: { summary: 'Watched folders', responses: { 200: { description: 'roots' } } },
        post: { summary: 'Watch and index a folder', requestBody: { content: { 'application/json': { schema: body(addRootBody) } } }, responses: { 201: { description: 'added' }, 400: error, 403: error, 404: error } },
      },
      '/api/roots/{id}/confirm': {
        post: { summary: 'Accept the folder a retargeted root now leads to: pin it and index it anew', parameters: [idPath], responses: { 200: { description: 'the root' }, 404: error, 409: error } },
      },
      '/api/roots/{id}': { delete: { summary: 'Stop watching a folder and forget its photos', parameters: [idPath], responses: { 204: { description: 'removed' }, 404: error } } },
      '/api/labels': {
        get: { summary: 'Labeled pairs (photo, caption, split), captions with photo counts', parameters: queryParameters(labelsQuery), responses: { 200: { description: 'labels' }, 400: error } },
        post: {
          summary: 'Label photos with one caption (a photo gets a caption once)',
          requestBody: { content: { 'application/json': { schema: body(addLabelsBody) } } },
          responses: { 201: { description: '{ added, duplicates, problems, problemCount }' }, 400: error, 404: error, 409: error },
        },
      },
      '/api/labels/import': {
        post: {
          summary: 'Import rows { photo: id or absolute path, caption }, or label every photo under a folder with a template ("a photo of {folder}")',
          requestBody: { content: { 'application/json': { schema: body(importLabelsBody) } } },
          responses: { 201: { description: '{ added, duplicates, problems, problemCount }' }, 400: error, 404: error },
        },
      },
      '/api/labels/{id}': {
        patch: { summary: 'Change a caption', parameters: [idPath], requestBody: { content: { 'application/json': { schema: body(editLabelBody) } } }, responses: { 200: { description: 'the label' }, 404: error } },
        delete: { summary: 'Delete a label', parameters: [idPath], responses: { 204: { description: 'deleted' }, 404: error } },
      },
      '/api/training/split': {
        get: {
          summary: 'What the next training run would hold out: train/val counts of labels and photos, and labels it would skip',
          parameters: queryParameters(splitPreviewQuery),
          responses: { 200: { description: '{ train, val, skipped }' }, 400: error },
        },
      },
      '/api/training': {
        get: { summary: 'The current or last training/activation/rollback job: { running, job: { kind, state, progress, result, error } }', responses: { 200: { description: 'job state' } } },
        post: {
          summary: 'Start training an adapter on the labels (runs in the background; progress as `training` events)',
          requestBody: { content: { 'application/json': { schema: body(trainBody) } } },
          responses: { 202: { description: 'started' }, 400: error, 409: error },
        },
      },
      '/api/adapters': { get: { summary: 'Adapter versions of the loaded model with their metrics, and the active one', responses: { 200: { description: '{ versions, active }' } } } },
      '/api/adapters/{version}/activate': {
        post: { summary: 'Re-project, index and switch searches to this version (background job)', parameters: [{ ...idPath, name: 'version' }], responses: { 202: { description: 'started' }, 404: error, 409: error } },
      },
      '/api/adapters/rollback': {
        post: { summary: 'Back to the base model (`to: "base"`, the default) or to an earlier version', requestBody: { content: { 'application/json': { schema: body(rollbackBody) } } }, responses: { 202: { description: 'started' }, 400: error, 404: error, 409: error } },
      },
      '/api/adapters/{version}/export': {
        post: {
          summary: 'Write this version as a model folder of plain ONNX files (default under the data directory)',
          parameters: [{ ...idPath, name: 'version' }],
          requestBody: { content: { 'application/json': { schema: body(exportBody) } } },
          responses: { 201: { description: '{ dir }' }, 400: error, 404: error },
        },
      },
      '/api/models': { get: { summary: 'Known models and the one loaded', responses: { 200: { description: 'models' } } } },
      '/api/events': {
        get: {
          summary: 'Server-Sent Events, coalesced over ~0.5 s',
          description:
            '`status`: the same JSON as GET /api/status (sent on connect and after changes). `indexed`: an array of ' +
            '`{ imageId, path, rootId, encoded }`. `removed`: an array of `{ imageId, path }`. `progress`: ' +
            '`{ progress: { phase, done, total, pending, filesPerSecond, etaSeconds, errors, … } }`. `renamed`, `failed` (a photo that could not ' +
            'be indexed: `{ imageId, path, code, message }`), `root`, `scan`, `notice`, `failure`: the latest of each kind. In GET /api/status, `ingest` carries ' +
            '`phase`, `progress` and `roots[{ id, path, state, stateReason, watch, scanning }]`, and `model.providers` is ' +
            '`{ image, text, fallbacks: [{ provider, reason }] }`.',
          responses: { 200: { description: 'text/event-stream' }, 503: { description: 'TOO_MANY_EVENT_CLIENTS (Retry-After): past 64 clients' } },
        },
      },
    },
  };
  return cached;
}
