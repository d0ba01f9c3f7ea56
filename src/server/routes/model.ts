import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { ClipdexError, isClipdexError } from '../../errors.js';
import type { ModelSwitcher } from '../../ingest/model-switch.js';
import type { Library } from '../../library/library.js';
import { isPulled } from '../../model/hub-download.js';
import { listLocalModels, listManifests, manifestCacheDir } from '../../model/model-registry.js';
import { cacheDir } from '../../model/cache-dir.js';
import { ApiRoutes } from '../api-routes.js';
import { errors } from '../openapi.js';
import type { RouteContext } from './route-context.js';

const useBody = z.object({ id: z.string().trim().min(1).max(4096).describe('a model id (`models list`) or a model directory') }).strict();

/** One model the page may offer: one the library has vectors of, or one installed in the cache. */
interface ModelChoice {
  /** What `use` takes. */
  id: string;
  /** Its model key, when this library has used it. */
  key: string | null;
  /** Photos with its vectors in this library (switching to it encodes the rest). */
  vectors: number;
  current: boolean;
}

/** The library's model and its switch to another one: state, the models to choose from, use and cancel. */
export function modelRoutes({ library, modelSwitch }: RouteContext, registry: OpenAPIRegistry) {
  const switcher = (): ModelSwitcher => {
    if (!modelSwitch) throw new ClipdexError('MODEL_NOT_FOUND', 'changing model runs in `clipdex serve` with a loaded model; use `clipdex models use <id> --wait` here');
    return modelSwitch;
  };
  return new ApiRoutes(registry)
    .get('/api/model', { summary: "The library's model, a switch under way (target, done/total, rate, ETA) and the models to choose from", responses: { 200: { description: '{ current, switch, choices }' } } }, async (_input, _req, res) => {
      res.json({ current: library.models.current(), switch: modelSwitch?.status() ?? null, choices: await choices(library, modelSwitch?.cacheDir ?? cacheDir()) });
    })
    .post(
      '/api/model',
      {
        summary: "Make another model the library's: its photos are encoded in the background, searches keep the current model until every photo has a vector; a model whose vectors are all there switches at once",
        body: useBody,
        responses: { 200: { description: '{ outcome: switched | pending | unchanged, ref, key, done, total }' }, ...errors(400, 404, 409, 503) },
      },
      async ({ body }, _req, res) => {
        const s = switcher();
        if (s.status().state === 'indexing') throw new ClipdexError('BUSY', 'the switch under way is opening its index; try again in a moment');
        // A model that is not there is the request's fault here (404), not the server's missing model (503).
        const result = await s.use(body.id).catch((err: unknown) => {
          if (isClipdexError(err, 'MODEL_NOT_FOUND')) throw new ClipdexError('NOT_FOUND', err.message, { cause: err });
          throw err;
        });
        res.json(result);
      },
    )
    .delete('/api/model/target', { summary: 'Cancel the switch under way; the vectors encoded so far stay (a later switch goes on from there)', responses: { 200: { description: '{ cancelled }' }, ...errors(503) } }, async (_input, _req, res) => {
      res.json({ cancelled: await switcher().cancel() });
    }).router;
}

async function choices(library: Library, root: string): Promise<ModelChoice[]> {
  const current = library.models.current()?.key ?? library.loaded?.key ?? null;
  const counts = new Map(library.embeddings.models().map((m) => [m.modelKey, m.count]));
  const out: ModelChoice[] = [];
  const seen = new Set<string>();
  for (const { key, ref } of library.models.knownRefs()) {
    seen.add(ref);
    out.push({ id: ref, key, vectors: counts.get(key) ?? 0, current: key === current });
  }
  for (const m of await listManifests()) {
    if (!m.supported || !m.source || seen.has(m.id)) continue;
    if (await isPulled(manifestCacheDir(m, root), m.source)) out.push({ id: m.id, key: null, vectors: 0, current: false });
  }
  for (const l of await listLocalModels(root)) {
    if (l.error === undefined && !seen.has(l.id)) out.push({ id: l.id, key: null, vectors: 0, current: false });
  }
  return out;
}
