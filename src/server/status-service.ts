/**
 * The status the API and the event stream report: counts, the model and what to do when it cannot load,
 * which vectors searches use, indexing progress and the watched folders.
 */
import type { ClipdexError } from '../errors.js';
import { readIngestCounts } from '../ingest/ingest-engine.js';
import type { ModelSwitcher } from '../ingest/model-switch.js';
import type { Library } from '../library/library.js';
import type { ClipModel } from '../model/clip-model.js';
import { describeTextPrecision } from '../model/query-precision.js';
import { providerUnavailableReason } from '../inference/onnx-runtime.js';
import { queueClaimants } from '../store/queue-leases-repo.js';
import type { IngestService } from './ingest-service.js';

export function statusOf(options: { library: Library; ingest?: IngestService | undefined; modelSwitch?: ModelSwitcher | undefined }): Record<string, unknown> {
  const { library } = options;
  const counts = readIngestCounts(library);
  const loaded = library.loaded;
  const err = library.modelError;
  return {
    indexed: counts.indexed,
    pending: counts.pending,
    failed: counts.failed,
    offline: counts.offline,
    model: {
      ref: library.modelRef,
      ready: loaded !== null,
      key: loaded?.key ?? null,
      dim: loaded?.model.dim ?? null,
      providers: loaded ? loaded.model.providers : null,
      // The image tower may open after the server starts (serve opens it once listening): 'opening' until then.
      imageTower: loaded ? imageTowerStatus(loaded.model, library.modelRef) : null,
      // What encodes queries: fp32, or "int8 for queries (photos encoded in fp32)" (query-precision.ts).
      textTower: loaded ? textTowerStatus(loaded.model) : null,
      cuda: providerUnavailableReason('cuda') ?? 'available',
      error: err ? { code: err.code, message: err.message, fix: modelFix(err, library.modelRef) } : null,
    },
    index: loaded ? loaded.index.health() : null,
    search: loaded ? searchSpaceStatus(library) : null,
    ingest: options.ingest?.status() ?? null,
    // A switch to another model under way (target, done/total, rate, ETA), or the last one done.
    modelSwitch: options.modelSwitch?.status() ?? null,
    roots: library.roots.list(),
    // Processes holding queued photos of a library in Postgres (`clipdex worker`, serve replicas), and how many each.
    workers: queueClaimants(library.store.db),
  };
}

function imageTowerStatus(model: ClipModel, modelRef: string): Record<string, unknown> | string {
  const err = model.imageTowerError;
  if (err) return { state: 'failed', error: { code: err.code, message: err.message, fix: modelFix(err, modelRef) } };
  return model.imageTowerOpen ? 'open' : 'opening';
}

function textTowerStatus(model: ClipModel): Record<string, unknown> {
  const p = model.textPrecision;
  if (!p) return { state: 'opening', precision: model.queryPrecision };
  return {
    state: 'open',
    precision: p.precision,
    description: `text tower: ${describeTextPrecision(p)}`,
    ...(p.precision === 'int8' && p.source === 'query' ? { int8File: p.file, int8Cache: p.state } : {}),
  };
}

/** What the user does about a model that did not load, in the words the page shows. */
function modelFix(err: ClipdexError, modelRef: string): string {
  if (err.code === 'MODEL_NOT_FOUND') {
    return `run \`clipdex models pull ${modelRef}\` (or \`clipdex models import <dir>\` offline), then restart the server; indexing waits until then`;
  }
  // A damaged or half-copied model file: "run doctor" alone does not say that the files must be replaced.
  if (err.code === 'MODEL_INVALID') {
    return `the model files cannot be loaded (damaged or incomplete?): \`clipdex doctor\` says which; replace them (\`clipdex models pull ${modelRef}\` again, or copy the model folder anew), then restart the server`;
  }
  return 'run `clipdex doctor` for details';
}

/** Which vectors searches use: the base model's, or an adapter version's (and that index's health). */
function searchSpaceStatus(library: Library): Record<string, unknown> {
  const space = library.searchSpace();
  return {
    key: space.key,
    adapter: space.adapter ? { id: space.adapter.id, version: space.adapter.version } : null,
    index: space.adapter ? space.index.health() : null,
  };
}
