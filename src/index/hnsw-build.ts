/**
 * The heavy index work, run inside the build worker (hnsw-build-worker.ts): a full build from SQLite, or a
 * merge of the saved graph with the change log, then ef tuning and an atomic write. Reads its own
 * read-only connection, so the main thread never holds a million vectors or blocks on addPoint.
 *
 * Consistency without a long read transaction: the checkpoint (highest change seq) is read FIRST, then
 * members are read page by page. Every id that changes after the checkpoint is in the log with a higher
 * seq, and replay resolves each logged id against the state at replay time; every id that does not change
 * reads the same at any moment after the checkpoint. So the graph plus the replayed log always equals
 * SQLite, whatever happened between the pages.
 */
import { open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import type { StoreLocation } from '../store/database.js';
import { openStore } from '../store/open-store.js';
import { IndexChangesRepo } from '../store/index-changes-repo.js';
import { blobToVector } from '../store/vector-blob.js';
import { fileCrc32, HnswIndex, type HnswParams } from './hnsw-index.js';
import { graphFileName, type TunedOn } from './index-files.js';
import { MIN_LOGGED_QUERIES, readQueryLog } from './query-log.js';
import { chooseEf, recallAt, StreamingTopK } from './recall.js';
import { syntheticQueries } from './tuning-queries.js';
import { normalizeInto } from './vector-index.js';

export interface BuildBase {
  file: string;
  deleted: number[];
  checkpointSeq: number;
  ef: number;
  recall: number | null;
  recallQueries: number;
  tunedAtCount: number;
  tunedOn?: TunedOn;
}

export interface BuildJob {
  /** 'tune': measure ef again on the saved graph (`base`) with the current queries; no new file. */
  kind: 'build' | 'merge' | 'tune';
  /** The library's database, opened again read-only by the build. */
  location: StoreLocation;
  modelKey: string;
  dim: number;
  /** The key's folder; the new graph file is written here. */
  dir: string;
  params: HnswParams;
  targetRecall: number;
  recallQueries: number;
  /** The graph to merge into (kind 'merge'). */
  base?: BuildBase;
  /** Directory of migrations (tests that use their own). */
  migrationsDir?: string;
  /** The key's query log (query-log.ts): ef is tuned on its queries once it holds `minLogged`. */
  queryLog?: string;
  /** Default MIN_LOGGED_QUERIES. */
  minLogged?: number;
}

export interface BuildResult {
  kind: 'build' | 'merge' | 'tune';
  file: string;
  fileBytes: number;
  crc32: number;
  labels: number;
  live: number;
  deleted: number[];
  checkpointSeq: number;
  capacity: number;
  ef: number;
  recall: number | null;
  recallQueries: number;
  tunedAtCount: number;
  tunedOn: TunedOn | null;
  efTried: { ef: number; recall: number }[];
  buildMs: number;
}

export interface BuildProgress {
  phase: 'read' | 'add' | 'replay' | 'tune' | 'write';
  done: number;
  total: number;
}

const CHUNK = 4096;
const TRUTH_K = 10;

export async function runBuild(job: BuildJob, onProgress: (p: BuildProgress) => void = () => {}): Promise<BuildResult> {
  const started = performance.now();
  const store = openStore(job.location, { readonly: true, ...(job.migrationsDir ? { migrationsDir: job.migrationsDir } : {}) });
  try {
    const log = new IndexChangesRepo(store.db);
    const checkpointSeq = job.kind === 'tune' && job.base ? job.base.checkpointSeq : log.maxSeq();
    const dim = job.dim;
    // Queries users asked beat any stand-in for them; until there are enough, synthetic ones shaped like
    // them. All the logged ones are used (up to the log's 512): more queries, a smaller sampling margin.
    const logged = job.queryLog ? readQueryLog(job.queryLog, dim) : [];
    const source: TunedOn = logged.length >= (job.minLogged ?? MIN_LOGGED_QUERIES) ? 'logged' : 'synthetic';
    const tuningQueries = (ids: readonly number[], vectorOf: (id: number) => ArrayLike<number> | undefined): Float32Array => {
      if (source === 'synthetic') return syntheticQueries(job.recallQueries, dim, ids, vectorOf, job.params.seed);
      const out = new Float32Array(logged.length * dim);
      logged.forEach((v, i) => normalizeInto(v, out, i * dim));
      return out;
    };
    let index: HnswIndex;
    let truth: StreamingTopK | null = null;
    let efTried: { ef: number; recall: number }[] = [];
    let tune: { ef: number; recall: number | null; recallQueries: number; tunedAtCount: number; tunedOn: TunedOn | null };

    if (job.kind === 'merge' || job.kind === 'tune') {
      if (!job.base) throw new ClipdexError('INVALID_ARGUMENT', `a ${job.kind} needs a base graph`);
      const base = job.base;
      index = await HnswIndex.load(join(job.dir, base.file), dim, base.deleted);
      if (job.kind === 'merge') {
        const changes = log.changedSince(job.modelKey, base.checkpointSeq, checkpointSeq);
        let done = 0;
        for (const c of changes) {
          if (c.vector) index.add(c.imageId, blobToVector(c.vector, dim));
          else index.remove(c.imageId);
          if (++done % CHUNK === 0) onProgress({ phase: 'replay', done, total: changes.length });
        }
        onProgress({ phase: 'replay', done, total: changes.length });
      }
      const drift = Math.abs(index.size - base.tunedAtCount) / Math.max(1, base.tunedAtCount);
      tune = { ef: base.ef, recall: base.recall, recallQueries: base.recallQueries, tunedAtCount: base.tunedAtCount, tunedOn: base.tunedOn ?? 'midpoints' };
      // Measured again when asked to, when the collection changed a lot since ef was chosen, or when
      // better queries than last time's exist (the first time enough users' queries are logged).
      if (job.kind === 'tune' || base.recall === null || drift > 0.25 || tune.tunedOn !== source) {
        const queries = tuningQueries([...index.liveLabels()], (id) => index.vector(id));
        truth = new StreamingTopK(queries, dim, TRUTH_K);
        const t = truth;
        const progress = (done: number) => onProgress({ phase: 'tune', done, total: index.size });
        // A retune measures against what the graph holds; a merge's graph holds what the database holds.
        if (job.kind === 'tune') await streamVectors(indexVectors(index), dim, (rows, ids, n) => t.add(rows, ids, n), progress);
        else await streamVectors(memberVectors(log.members(job.modelKey), dim), dim, (rows, ids, n) => t.add(rows, ids, n), progress);
      }
    } else {
      const total = log.memberCount(job.modelKey);
      index = HnswIndex.create(dim, Math.ceil(total * 1.1) + 16, job.params);
      const queries = tuningQueries(log.memberIds(job.modelKey), (id) => {
        const blob = log.memberVector(job.modelKey, id);
        return blob ? blobToVector(blob, dim) : undefined;
      });
      truth = queries.length > 0 ? new StreamingTopK(queries, dim, TRUTH_K) : null;
      let done = 0;
      await streamVectors(memberVectors(log.members(job.modelKey), dim), dim, async (rows, ids, n) => {
        for (let i = 0; i < n; i++) index.add(ids[i]!, rows.subarray(i * dim, (i + 1) * dim));
        if (truth) await truth.add(rows, ids, n);
        done += n;
        onProgress({ phase: 'add', done, total });
      });
      tune = { ef: 64, recall: null, recallQueries: 0, tunedAtCount: index.size, tunedOn: null };
    }

    if (truth && truth.queryCount > 0 && index.size > 0) {
      const choice = tuneEf(index, truth, job.targetRecall);
      efTried = choice.tried;
      tune = { ef: choice.ef, recall: choice.recall, recallQueries: truth.queryCount, tunedAtCount: index.size, tunedOn: source };
      onProgress({ phase: 'tune', done: 1, total: 1 });
    }

    if (job.kind === 'tune') {
      // Nothing new to write: the saved graph and its checksum stay; only the tuning changes.
      return {
        kind: 'tune',
        file: job.base!.file,
        fileBytes: 0,
        crc32: 0,
        labels: index.labelCount,
        live: index.size,
        deleted: index.deletedLabels(),
        checkpointSeq,
        capacity: index.capacity,
        ...tune,
        efTried,
        buildMs: Math.round(performance.now() - started),
      };
    }

    const file = graphFileName(checkpointSeq);
    const final = join(job.dir, file);
    const tmp = `${final}.tmp`;
    onProgress({ phase: 'write', done: 0, total: 1 });
    try {
      await index.write(tmp);
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      // The checksum is taken from the bytes on disk, so it also proves the write.
      const { crc32, bytes } = await fileCrc32(tmp);
      await rename(tmp, final);
      onProgress({ phase: 'write', done: 1, total: 1 });
      return {
        kind: job.kind,
        file,
        fileBytes: bytes,
        crc32,
        labels: index.labelCount,
        live: index.size,
        deleted: index.deletedLabels(),
        checkpointSeq,
        capacity: index.capacity,
        ...tune,
        efTried,
        buildMs: Math.round(performance.now() - started),
      };
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  } finally {
    store.close();
  }
}

/** Feeds vectors to `sink` in normalised chunks of CHUNK rows. */
async function streamVectors(
  rows: Iterable<{ id: number; vector: Float32Array }>,
  dim: number,
  sink: (rows: Float32Array, ids: Uint32Array, n: number) => Promise<void> | void,
  onChunk?: (done: number) => void,
): Promise<void> {
  const buf = new Float32Array(CHUNK * dim);
  const ids = new Uint32Array(CHUNK);
  let n = 0;
  let done = 0;
  for (const row of rows) {
    normalizeInto(row.vector, buf, n * dim);
    ids[n++] = row.id;
    if (n === CHUNK) {
      await sink(buf, ids, n);
      done += n;
      onChunk?.(done);
      n = 0;
    }
  }
  if (n > 0) {
    await sink(buf, ids, n);
    onChunk?.(done + n);
  }
}

/** The member rows of the change log, as vectors. */
function* memberVectors(rows: Iterable<{ imageId: number; vector: Buffer }>, dim: number): Iterable<{ id: number; vector: Float32Array }> {
  for (const row of rows) yield { id: row.imageId, vector: blobToVector(row.vector, dim) };
}

/** The graph's own live vectors (what a retune measures against, without reading SQLite). */
function* indexVectors(index: HnswIndex): Iterable<{ id: number; vector: Float32Array }> {
  for (const id of index.liveLabels()) {
    const vector = index.vector(id);
    if (vector) yield { id, vector };
  }
}

/** The smallest ef whose mean recall@10 over `truth`'s queries reaches the target (recall.ts's chooseEf). */
export function tuneEf(index: HnswIndex, truth: StreamingTopK, targetRecall: number) {
  const dim = truth.dim;
  return chooseEf((ef) => {
    const perQuery: number[] = [];
    for (let qi = 0; qi < truth.queryCount; qi++) {
      const q = truth.queries.subarray(qi * dim, (qi + 1) * dim);
      perQuery.push(recallAt(index.searchSync(q, TRUTH_K, { ef }), truth.truth(qi), TRUTH_K));
    }
    return perQuery;
  }, targetRecall);
}

