// What the commands of commands/status.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { readIngestCounts } from '../../store/ingest-counts-repo.js';
import { queueClaimants } from '../../store/queue-leases-repo.js';
import { IngestStore } from '../../ingest/ingest-store.js';
import { tuningSummary } from '../../index/library-index.js';
import { Library } from '../../library/library.js';
import { ModelSwitcher } from '../../ingest/model-switch.js';
import { describeModelRef } from '../../train/adapter-export.js';
import { exitCodeFor, globalOptions, printJson, libraryOptions } from '../context.js';
import { describeTextPrecision, queryPrecisionFromEnv } from '../../model/query-precision.js';

interface FailedFile {
  id: number;
  path: string;
  code: string | null;
  message: string | null;
}

function ago(ms: number | null): string {
  if (ms === null) return 'never scanned';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 90) return `scanned ${Math.round(s)} s ago`;
  if (s < 5400) return `scanned ${Math.round(s / 60)} min ago`;
  if (s < 2 * 86400) return `scanned ${Math.round(s / 3600)} h ago`;
  return `scanned ${Math.round(s / 86400)} days ago`;
}

export const actionStatus = async (opts: { errors?: boolean; limit?: number }, cmd: Command) => {
  const g = globalOptions(cmd);
  // Read before the library opens: a bad value is a usage error, not a model that failed to load.
  const queryPrecision = queryPrecisionFromEnv();
  // Status must work when the model is missing or broken: it is where the user looks to find out.
  const lib = await Library.open({ ...libraryOptions(g), modelOptional: true, ...(queryPrecision ? { session: { queryPrecision } } : {}) });
  try {
    const counts = readIngestCounts(lib);
    const store = new IngestStore(lib.store.db);
    const perRoot = store.rootCounts();
    const roots = store.roots().map((r) => ({
      id: r.id,
      path: r.path,
      state: r.state,
      stateReason: r.stateReason,
      exclude: r.exclude,
      lastScanAt: r.lastScanAt,
      ...(perRoot.get(r.id) ?? { indexed: 0, pending: 0, failed: 0, offline: 0 }),
    }));
    const loaded = lib.loaded;
    const model = {
      ref: lib.modelRef,
      ready: loaded !== null,
      key: loaded?.key ?? null,
      dim: loaded?.model.dim ?? null,
      provider: loaded?.model.providers?.image ?? null,
      fallbacks: loaded?.model.providers?.fallbacks ?? [],
      // The text tower as this process opened it (CLIPDEX_QUERY_PRECISION; a server says its own in its status).
      textTower: loaded?.model.textPrecision ? `text tower: ${describeTextPrecision(loaded.model.textPrecision)}` : null,
      error: lib.modelError ? { code: lib.modelError.code, message: lib.modelError.message } : null,
};
        const index = loaded ? loaded.index.health() : null;
        // Read from the database: the process encoding (a server) writes its rate and ETA there.
        const modelSwitch = loaded ? new ModelSwitcher(lib, { cacheDir: g.cacheDir }).status() : null;
        let errors: FailedFile[] | undefined;
        if (opts.errors) {
          errors = [];
          const limit = opts.limit ?? Infinity;
          for (let after = 0; errors.length < limit; ) {
            const page = lib.images.listByStatus('error', 500, after);
            if (page.length === 0) break;
            after = page[page.length - 1]!.id;
            for (const r of page) if (errors.length < limit) errors.push({ id: r.id, path: r.path, code: r.errorCode, message: r.errorMessage });
          }
        }
        // `path` is the SQLite file, or the Postgres URL without its password.
        const workers = queueClaimants(lib.store.db);
        const library = { dataDir: lib.paths.dir, database: lib.store.path, backend: lib.store.location.kind, schemaVersion: lib.store.schemaVersion };
        // The report is still useful without a model, but a script asking "is it ready?" must hear no.
        if (!loaded) process.exitCode = exitCodeFor(lib.modelError ?? new ClipdexError('MODEL_NOT_FOUND', 'no model'));
        if (g.json) {
          printJson({ ...counts, roots, model, index, library, modelSwitch, workers, ...(errors ? { errors } : {}) });
          return;
        }
        const out: string[] = [];
        out.push(`Library   ${library.dataDir}`);
        if (library.backend === 'postgres') out.push(`Database  ${library.database} (PostgreSQL)`);
        out.push(
          loaded
            ? `Model     ${model.key} (${model.dim}-d) on ${model.provider}`
            : `Model     ${model.ref}: not loaded: ${model.error?.message ?? 'unknown reason'}`,
        );
        if (model.textTower && model.textTower !== 'text tower: fp32') out.push(`          ${model.textTower}`);
        if (lib.notice) out.push(`          ${lib.notice}`);
        const sw = modelSwitch?.target ? modelSwitch : null;
        if (sw?.target) {
          const how = sw.state === 'elsewhere' ? `${sw.filesPerSecond.toFixed(1)} photos/s${sw.etaSeconds !== null ? `, about ${Math.ceil(sw.etaSeconds)} s left` : ''}` : 'waiting for `clipdex serve` (or `clipdex models use … --wait`)';
          out.push(`Switching to ${describeModelRef(sw.target.ref)}: ${sw.done}/${sw.total} photos encoded, ${how}${sw.failed > 0 ? `; ${sw.failed} could not be encoded` : ''}`);
        }
        out.push(`Files     ${counts.indexed} indexed, ${counts.pending} pending, ${counts.failed} failed, ${counts.offline} offline`);
        if (workers.length > 0) {
          const held = workers.reduce((n, w) => n + w.files, 0);
          out.push(`Encoding  ${workers.length} process${workers.length === 1 ? '' : 'es'} holding ${held} photo${held === 1 ? '' : 's'}: ${workers.map((w) => `${w.claimant} (${w.files})`).join(', ')}`);
        }
        if (index) {
          const tuning = tuningSummary(index);
          const quality = tuning ? `, ${tuning}` : '';
          out.push(
            `Index     ${index.engine}, ${index.count} vectors${index.engine === 'hnsw' ? ` (${index.graphCount} in the graph, ${index.pending} beside it)` : ''}${quality}` +
              `${index.building ? ', building' : ''}${index.lastError ? `; last error: ${index.lastError}` : ''}`,
          );
          const hb = index.hnswlib;
          // pgvector searches inside Postgres: this machine's hnswlib build plays no part.
          if (index.engine !== 'pgvector') {
            out.push(
              `          hnswlib-node ${hb.version}, ${hb.kind === 'clipdex' ? `clipdex's build for this CPU${hb.features.length ? ` (${hb.features.join(' ')})` : ''}` : `stock build${hb.reason ? ` (${hb.reason})` : ''}`}`,
            );
          }
        }
        out.push(roots.length === 0 ? 'Folders   none yet: add one with `clipdex index <dir>`' : 'Folders');
        for (const r of roots) {
          const state = r.state === 'offline' ? `OFFLINE (${r.stateReason ?? 'unavailable'})` : ago(r.lastScanAt);
          out.push(`  ${r.path}  ${r.indexed} indexed, ${r.pending} pending, ${r.failed} failed, ${r.offline} offline; ${state}`);
          if (r.exclude.length > 0) out.push(`    excluding ${r.exclude.join(', ')}`);
        }
        if (errors) {
          out.push(errors.length === 0 ? 'No failed files.' : `Failed files${errors.length < counts.failed ? ` (first ${errors.length} of ${counts.failed})` : ''}:`);
          for (const e of errors) out.push(`  ${e.path}\n    ${e.code}: ${e.message}`);
        } else if (counts.failed > 0) {
          out.push(`${counts.failed} file${counts.failed === 1 ? '' : 's'} failed: \`clipdex status --errors\` lists them with the reasons`);
        }
        process.stdout.write(`${out.join('\n')}\n`);
      } finally {
        await lib.close();
      }
    };
