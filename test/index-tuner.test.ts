/**
 * ef tuned on the queries users ask (issue 19): the query log beside the index (bounded, crash-safe), the
 * build worker tuning on logged queries once there are enough and on synthetic ones before, and what
 * `clipdex status` says it was measured on. Real hnswlib graphs, real SQLite, the real build worker.
 */
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keyDir, type IndexState } from '../src/index/index-files.js';
import { IndexManager, readSavedIndexStatus, type IndexManagerOptions } from '../src/index/index-manager.js';
import { tuningSummary } from '../src/index/library-index.js';
import { QueryLog, queryLogPath, readQueryLog } from '../src/index/query-log.js';
import { recallAt } from '../src/index/recall.js';
import { normalized } from '../src/index/vector-index.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { addIndexedImages, bruteForce, clusteredVectors, openTestLibrary, tempLibraryDir, type TestLibrary } from './helpers/store-fixtures.js';

const DIM = 64;
const N = 8000;
const KEY = 'tuner-64';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function library(): TestLibrary & { dir: string; vectors: Float32Array; ids: number[] } {
  const t = tempLibraryDir('clipdex-tuner-');
  const lib = openTestLibrary(t.dir);
  cleanups.push(t.cleanup, () => lib.close());
  const vectors = clusteredVectors(N, DIM, { seed: 19 });
  const ids = addIndexedImages(lib, KEY, vectors, DIM);
  return { ...lib, dir: t.dir, vectors, ids };
}

async function manager(lib: TestLibrary, options: Partial<IndexManagerOptions> = {}): Promise<IndexManager> {
  const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false, exactBelow: 2000, ...options });
  cleanups.push(() => m.close());
  return m;
}

/** Midpoints of two random photos: the hardest kind measured (bench/index-query-kinds.ts), so ef must rise for them. */
function midpoints(vectors: Float32Array, count: number, seed: number): Float32Array[] {
  const r = seededRandom(seed);
  return Array.from({ length: count }, () => {
    const a = Math.floor(r() * N);
    const b = Math.floor(r() * N);
    const q = new Float32Array(DIM);
    for (let j = 0; j < DIM; j++) q[j] = vectors[a * DIM + j]! + vectors[b * DIM + j]!;
    return normalized(q);
  });
}

async function recallOf(m: IndexManager, lib: { vectors: Float32Array; ids: number[] }, queries: Float32Array[], ef: number): Promise<number> {
  let sum = 0;
  for (const q of queries) {
    const [hits] = await m.searchBatch([q], 10, { ef });
    const want = bruteForce(lib.vectors, DIM, lib.ids, q, 10);
    sum += recallAt(hits!, { ids: want.map((w) => w.id), scores: want.map((w) => w.score) }, 10);
  }
  return sum / queries.length;
}

const state = (lib: TestLibrary): IndexState => JSON.parse(readFileSync(join(keyDir(lib.indexDir, KEY), 'state.json'), 'utf8')) as IndexState;

describe('query log', () => {
  it('keeps the newest distinct queries up to its capacity, across reopen, and drops a torn or garbled record', () => {
    const t = tempLibraryDir('clipdex-qlog-');
    cleanups.push(t.cleanup);
    const path = join(t.dir, 'queries.log');
    const dim = 8;
    const v = (i: number) => normalized(Float32Array.from({ length: dim }, (_, j) => Math.sin(i * 7 + j) + (j === 0 ? i : 0)));
    const log = QueryLog.open(path, dim, 16);
    for (let i = 0; i < 40; i++) expect(log.note(v(i))).toBe(true);
    expect(log.note(v(39))).toBe(false); // asked again: not logged twice
    expect(log.size).toBe(16);
    // Compaction ran at 32 records; the file never holds more than twice the capacity.
    expect(statSync(path).size).toBeLessThanOrEqual(32 * (12 + dim * 4));

    const reopened = QueryLog.open(path, dim, 16);
    expect(reopened.size).toBe(16);
    const kept = readQueryLog(path, dim);
    expect(kept).toHaveLength(16);
    expect([...kept[0]!]).toEqual([...v(24)]);
    expect([...kept[15]!]).toEqual([...v(39)]);

    // A crash mid-append leaves half a record; a flipped byte garbles another. Neither is read back, and the
    // log stays usable (later appends land on a record boundary).
    const bytes = readFileSync(path);
    bytes[12 + 3]! ^= 0xff; // inside the first record's vector: its CRC no longer matches
    writeFileSync(path, bytes);
    appendFileSync(path, bytes.subarray(0, 20));
    const repaired = QueryLog.open(path, dim, 16);
    expect(repaired.size).toBe(15);
    expect(repaired.note(v(100))).toBe(true);
    const after = readQueryLog(path, dim);
    expect(after).toHaveLength(16);
    expect([...after[0]!]).toEqual([...v(25)]);
    expect([...after[15]!]).toEqual([...v(100)]);
    // A log of another dimension (the key's model changed) is not misread.
    expect(readQueryLog(path, 16)).toHaveLength(0);
  });
});

describe('ef tuned on the queries users ask', () => {
  it(
    'tunes on synthetic queries until enough are logged, then on the logged ones, reaching the target on held-out queries of their kind',
    { timeout: 240_000 },
    async () => {
      const lib = library();
      const m = await manager(lib, { minLoggedQueries: 100, recallQueries: 100 });
      const built = m.health();
      expect(built).toMatchObject({ engine: 'hnsw', graphCount: N, tunedOn: 'synthetic', recallQueries: 100 });
      expect(tuningSummary(built)).toContain('on 100 synthetic queries');

      // Users' queries reach the log through noteQuery (the search path's hook); too few change nothing.
      const asked = midpoints(lib.vectors, 150, 1);
      for (const q of asked.slice(0, 99)) m.noteQuery(q);
      await m.retune();
      expect(m.health().tunedOn).toBe('synthetic');

      for (const q of asked.slice(99)) m.noteQuery(q);
      m.noteQuery(asked[0]!); // a repeat is not a new query
      expect(readQueryLog(queryLogPath(keyDir(lib.indexDir, KEY)), DIM)).toHaveLength(150);
      await m.retune();
      const h = m.health();
      expect(h).toMatchObject({ tunedOn: 'logged', recallQueries: 150 });
      expect(tuningSummary(h)).toBe(`recall@10 ${h.recall!.toFixed(3)} at ef ${h.ef} on 150 of your queries`);
      // The recall stored is the one of exactly those queries at that ef (measured in the worker).
      expect(h.recall).toBeCloseTo(await recallOf(m, lib, asked, h.ef!), 6);
      expect(h.recall).toBeGreaterThanOrEqual(0.98);
      // The tuning tried efs smallest first and stopped at the one it chose.
      const tried = state(lib).efTried;
      expect(tried.at(-1)).toEqual({ ef: h.ef, recall: h.recall });

      // Held out: other queries of the same kind, at the ef the product now uses, searched as it searches.
      const heldOut = midpoints(lib.vectors, 150, 2);
      let sum = 0;
      for (const q of heldOut) {
        const hits = await m.search(q, 10);
        const want = bruteForce(lib.vectors, DIM, lib.ids, q, 10);
        sum += recallAt(hits, { ids: want.map((w) => w.id), scores: want.map((w) => w.score) }, 10);
      }
      expect(sum / heldOut.length).toBeGreaterThanOrEqual(0.98);
      // Status, from the saved state without loading the graph, says which queries.
      expect((await readSavedIndexStatus(lib.indexDir, KEY))?.tunedOn).toBe('logged');
    },
  );

  it('retunes in the background once enough queries are logged, and every rebuild tunes on them too', { timeout: 240_000 }, async () => {
    const lib = library();
    const m = await manager(lib, { autoMerge: true, minLoggedQueries: 60 });
    expect(m.health().tunedOn).toBe('synthetic');
    for (const q of midpoints(lib.vectors, 60, 3)) m.noteQuery(q); // the 60th starts a retune in the worker
    await m.idle();
    expect(m.health()).toMatchObject({ tunedOn: 'logged', recallQueries: 60 });
    // Another 200 queries right after do not start another retune (each loads a second copy of the graph and
    // runs exact search for every logged query): not before the interval has passed.
    for (const q of midpoints(lib.vectors, 200, 4)) m.noteQuery(q);
    expect(m.health().building).toBe(false);

    await m.rebuild();
    const h = m.health();
    // The rebuild measures on every query logged by then, those 200 too.
    expect(h).toMatchObject({ tunedOn: 'logged', recallQueries: 260 });
    expect(state(lib)).toMatchObject({ lastJob: 'build', tunedOn: 'logged' });
    // The log outlives the graph it tuned (orphan cleanup keeps it), and a reopened index reads its tuning back.
    expect(existsSync(queryLogPath(keyDir(lib.indexDir, KEY)))).toBe(true);
    await m.close();
    const again = await manager(lib);
    expect(again.health()).toMatchObject({ tunedOn: 'logged', ef: h.ef, recall: h.recall });
    expect(tuningSummary(again.health())).toContain('of your queries');
  });

  it('with the interval passed, new queries retune again', { timeout: 240_000 }, async () => {
    const lib = library();
    const m = await manager(lib, { autoMerge: true, minLoggedQueries: 60, retuneIntervalMs: 0, recallQueries: 100 });
    for (const q of midpoints(lib.vectors, 60, 5)) m.noteQuery(q);
    await m.idle();
    expect(m.health()).toMatchObject({ tunedOn: 'logged', recallQueries: 60 });
    for (const q of midpoints(lib.vectors, 100, 6)) m.noteQuery(q); // the 100th new one starts a retune
    expect(m.health().building).toBe(true);
    await m.idle();
    // Measured on every query logged by then.
    expect(m.health()).toMatchObject({ tunedOn: 'logged', recallQueries: 160 });
  });
});
