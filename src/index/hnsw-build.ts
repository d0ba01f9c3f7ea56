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
import { graphFileName } from './index-files.js';
import { chooseEf, recallAt, StreamingTopK } from './recall.js';
import { normalizeInto } from './vector-index.js';
import { seededRandom } from '../util/seeded-random.js';

export interface BuildBase {
  file: string;
  deleted: number[];
  checkpointSeq: number;
  ef: number;
  recall: number | null;
  recallQueries: number;
  tunedAtCount: number;
}

export interface BuildJob {
  kind: 'build' | 'merge';
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
}

export interface BuildResult {
  kind: 'build' | 'merge';
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
    const checkpointSeq = log.maxSeq();
    let index: HnswIndex;
    let truth: StreamingTopK | null = null;
    let efTried: { ef: number; recall: number }[] = [];
    let tune: { ef: number; recall: number | null; recallQueries: number; tunedAtCount: number };

    if (job.kind === 'merge') {
      if (!job.base) throw new ClipdexError('INVALID_ARGUMENT', 'a merge needs a base graph');
      index = await HnswIndex.load(join(job.dir, job.base.file), job.dim, job.base.deleted);
      const changes = log.changedSince(job.modelKey, job.base.checkpointSeq, checkpointSeq);
      let done = 0;
      for (const c of changes) {
        if (c.vector) index.add(c.imageId, blobToVector(c.vector, job.dim));
        else index.remove(c.imageId);
        if (++done % CHUNK === 0) onProgress({ phase: 'replay', done, total: changes.length });
      }
      onProgress({ phase: 'replay', done, total: changes.length });
      const drift = Math.abs(index.size - job.base.tunedAtCount) / Math.max(1, job.base.tunedAtCount);
      tune = { ef: job.base.ef, recall: job.base.recall, recallQueries: job.base.recallQueries, tunedAtCount: job.base.tunedAtCount };
      if (job.base.recall === null || drift > 0.25) {
        // The collection changed a lot since ef was chosen: measure again over what the graph now holds.
        truth = sampleQueries(index, job.recallQueries, job.dim, job.params.seed);
        await streamRows(log.members(job.modelKey), job.dim, (rows, ids, n) => truth!.add(rows, ids, n), (done) =>
          onProgress({ phase: 'tune', done, total: index.size }),
        );
      }
    } else {
      const total = log.memberCount(job.modelKey);
      index = HnswIndex.create(job.dim, Math.ceil(total * 1.1) + 16, job.params);
      const queryIds = pickQueryIds(log.memberIds(job.modelKey), job.recallQueries, job.params.seed);
      truth = queryIds.length > 0 ? new StreamingTopK(midpoints(log, job.modelKey, queryIds, job.dim), job.dim, TRUTH_K) : null;
      let done = 0;
      await streamRows(log.members(job.modelKey), job.dim, async (rows, ids, n) => {
        for (let i = 0; i < n; i++) index.add(ids[i]!, rows.subarray(i * job.dim, (i + 1) * job.dim));
        if (truth) await truth.add(rows, ids, n);
        done += n;
        onProgress({ phase: 'add', done, total });
      });
      tune = { ef: 64, recall: null, recallQueries: 0, tunedAtCount: index.size };
    }

    if (truth && truth.queryCount > 0 && index.size > 0) {
      const t = truth;
      const choice = chooseEf((ef) => {
        let sum = 0;
        for (let qi = 0; qi < t.queryCount; qi++) {
          const q = t.queries.subarray(qi * job.dim, (qi + 1) * job.dim);
          sum += recallAt(index.searchSync(q, TRUTH_K, { ef }), t.truth(qi), TRUTH_K);
        }
        return sum / t.queryCount;
      }, job.targetRecall);
      efTried = choice.tried;
      tune = { ef: choice.ef, recall: choice.recall, recallQueries: t.queryCount, tunedAtCount: index.size };
      onProgress({ phase: 'tune', done: 1, total: 1 });
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
        ef: tune.ef,
        recall: tune.recall,
        recallQueries: tune.recallQueries,
        tunedAtCount: tune.tunedAtCount,
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

/** Feeds member rows to `sink` in normalised chunks of CHUNK rows. */
async function streamRows(
  rows: Iterable<{ imageId: number; vector: Buffer }>,
  dim: number,
  sink: (rows: Float32Array, ids: Uint32Array, n: number) => Promise<void> | void,
  onChunk?: (done: number) => void,
): Promise<void> {
  const buf = new Float32Array(CHUNK * dim);
  const ids = new Uint32Array(CHUNK);
  let n = 0;
  let done = 0;
  for (const row of rows) {
    normalizeInto(blobToVector(row.vector, dim), buf, n * dim);
    ids[n++] = row.imageId;
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

function pickQueryIds(ids: number[], queries: number, seed: number): [number, number][] {
  if (ids.length === 0) return [];
  const r = seededRandom(seed);
  return Array.from({ length: queries }, () => [ids[Math.floor(r() * ids.length)]!, ids[Math.floor(r() * ids.length)]!]);
}

/**
 * Queries as normalised midpoints of two random members: inside the data's distribution (as a photo or
 * a phrase about one is) but not equal to a stored vector, which would make every search trivially right.
 */
function midpoints(log: IndexChangesRepo, modelKey: string, pairs: [number, number][], dim: number): Float32Array {
  const out = new Float32Array(pairs.length * dim);
  const tmp = new Float32Array(dim);
  pairs.forEach(([a, b], i) => {
    const va = blobToVector(log.memberVector(modelKey, a)!, dim);
    const vb = blobToVector(log.memberVector(modelKey, b)!, dim);
    const na = Math.hypot(...va) || 1;
    const nb = Math.hypot(...vb) || 1;
    for (let j = 0; j < dim; j++) tmp[j] = va[j]! / na + vb[j]! / nb;
    normalizeInto(tmp, out, i * dim);
  });
  return out;
}

function sampleQueries(index: HnswIndex, queries: number, dim: number, seed: number): StreamingTopK {
  const ids = [...index.liveLabels()];
  const pairs = pickQueryIds(ids, ids.length > 0 ? queries : 0, seed);
  const out = new Float32Array(pairs.length * dim);
  const tmp = new Float32Array(dim);
  pairs.forEach(([a, b], i) => {
    const va = index.vector(a)!;
    const vb = index.vector(b)!;
    for (let j = 0; j < dim; j++) tmp[j] = va[j]! + vb[j]!;
    normalizeInto(tmp, out, i * dim);
  });
  return new StreamingTopK(out, dim, TRUTH_K);
}
