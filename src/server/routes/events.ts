import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { ApiRoutes } from '../api-routes.js';
import { statusOf } from '../status-service.js';
import type { RouteContext } from './route-context.js';

/** The event stream (Server-Sent Events), starting with the status. */
export function eventRoutes({ library, ingest, events, modelSwitch }: RouteContext, registry: OpenAPIRegistry) {
  return new ApiRoutes(registry).get(
    '/api/events',
    {
      summary: 'Server-Sent Events, coalesced over ~0.5 s',
      description:
        '`status`: the same JSON as GET /api/status (sent on connect and after changes). `indexed`: an array of ' +
        '`{ imageId, path, rootId, encoded }`. `removed`: an array of `{ imageId, path }`. `progress`: ' +
        '`{ progress: { phase, done, total, pending, filesPerSecond, etaSeconds, errors, … } }`. `renamed`, `failed` (a photo that could not ' +
        'be indexed: `{ imageId, path, code, message }`), `root`, `scan`, `notice`, `failure`, `model-switch` (`{ status }`: the progress of a model switch), `model-switched` (`{ from, to, key, encoded }`): the latest of each kind. In GET /api/status, `ingest` carries ' +
        '`phase`, `progress` and `roots[{ id, path, state, stateReason, watch, scanning }]`, and `model.providers` is ' +
        '`{ image, text, fallbacks: [{ provider, reason }] }`.',
      responses: { 200: { description: 'text/event-stream' }, 503: { description: 'TOO_MANY_EVENT_CLIENTS (Retry-After): past 64 clients' } },
    },
    (_input, req, res) => events.attach(req, res, () => statusOf({ library, ingest, modelSwitch })),
  ).router;
}
