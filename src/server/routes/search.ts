import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { RequestHandler } from 'express';
import multer from 'multer';
import { ClipdexError, errorMessage } from '../../errors.js';
import type { QueryTerm } from '../../search/query-engine.js';
import { parseQueryText, plainQuery, searchRequestOf } from '../../search/query-syntax.js';
import { requestOptionsOf } from '../../validation/search-params.js';
import { combinedSearchBody, textSearchQuery } from '../api-schemas.js';
import { ApiRoutes } from '../api-routes.js';
import { errors, results } from '../openapi.js';
import type { RouteContext } from './route-context.js';

/** GET /api/search (a phrase) and POST /api/search (phrases, stored photos and uploads with weights). */
export function searchRoutes({ engine }: RouteContext, registry: OpenAPIRegistry, uploads: { admit: RequestHandler; read: RequestHandler }) {
  return new ApiRoutes(registry)
    .get('/api/search', { summary: 'Search by typed text (dates, `a | b`, `-word`)', query: textSearchQuery, responses: { 200: results, ...errors(400, 503) } }, async ({ query }, _req, res) => {
      const parsed = query.syntax === 'plain' ? plainQuery(query.q) : parseQueryText(query.q);
      // A date in the text and ?after/?before both hold (their intersection): see withParsedDate.
      res.json({ ...(await engine.search(searchRequestOf(parsed, { ...requestOptionsOf(query), ...textSignal(query.text) }))), understood: parsed.understood });
    })
    .post(
      '/api/search',
      {
        summary: 'Combined search: phrases, stored photos and uploaded images with weights (negative weights subtract)',
        body: combinedSearchBody,
        // Multipart: the JSON query travels in a `query` field beside the files; otherwise the body is the query.
        bodyOf: (req) => (req.is('multipart/form-data') ? parseQueryField(req.body?.query) : req.body) ?? {},
        otherBodies: {
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
        // 503 also as UPLOADS_BUSY with Retry-After, past 64 MB of uploads in flight.
        responses: { 200: results, ...errors(400, 413, 415, 422, 503) },
        before: [uploads.admit, uploads.read],
      },
      async ({ body }, req, res) => {
        const files = (req.files as Express.Multer.File[] | undefined) ?? [];
        const terms: QueryTerm[] = [...body.terms];
        files.forEach((f, i) => terms.push({ image: f.buffer, weight: body.uploadWeights?.[i] ?? 1 }));
        if (terms.length === 0 && body.q === undefined) throw new ClipdexError('INVALID_ARGUMENT', 'a search needs at least one term: a phrase, a photo id or an uploaded image');
        if (body.q === undefined) {
          res.json(await engine.search({ terms, ...requestOptionsOf(body) }));
          return;
        }
        const parsed = body.syntax === 'plain' ? plainQuery(body.q) : parseQueryText(body.q);
        res.json({ ...(await engine.search(searchRequestOf(parsed, { ...requestOptionsOf(body), ...textSignal(body.text), terms }))), understood: parsed.understood });
      },
    ).router;
}

/** `text=off` asks CLIP alone; otherwise the syntax decides (the phrase's words, its quoted pieces). */
function textSignal(value: 'on' | 'off' | undefined): { text?: false } {
  return value === 'off' ? { text: false } : {};
}

/** The multipart reader for search uploads: busboy's framing errors are the client's, not internal ones. */
export function uploadReader(upload: multer.Multer): RequestHandler {
  const images = upload.array('image', 4);
  return (req, res, next) => images(req, res, (err?: unknown) => next(malformedUpload(err)));
}

function malformedUpload(err: unknown): unknown {
  if (!err || err instanceof multer.MulterError || err instanceof ClipdexError) return err;
  return new ClipdexError('INVALID_UPLOAD', `the upload is not valid multipart/form-data: ${errorMessage(err)}`, { cause: err });
}

function parseQueryField(value: unknown): unknown {
  if (value === undefined) return {};
  if (typeof value !== 'string') throw new ClipdexError('INVALID_ARGUMENT', 'the `query` field must be a JSON string');
  try {
    return JSON.parse(value);
  } catch {
    throw new ClipdexError('INVALID_ARGUMENT', 'the `query` field is not valid JSON');
  }
}
