/**
 * PgVectorIndex: vector search inside Postgres (pgvector HNSW), on a real PostgreSQL (PGlite + pgvector over
 * the wire protocol) with the real repositories writing the library. Its answers are compared with exact
 * brute force computed here, independently of the database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgVectorIndex } from '../src/index/pg-vector-index.js';
import { normalized } from '../src/index/vector-index.js';
import { DuplicatesRepo } from '../src/store/duplicates-repo.js';
import { PgVectorRepo } from '../src/store/pg/pg-vector-repo.js';
import { addIndexedImages, bruteForce, clusteredVectors, gaussian, rng, row, storeBackends, tempLibraryDir, type TestLibrary } from './helpers/store-fixtures.js';

const DIM = 64;
const N = 1500;
const RARE = 15; // 1% of the library, in a folder of its own
const KEY = "clip-test@pg'vec"; // a quote in the key: it is written into the statements as a literal
const K = 10;

const backend = storeBackends().find((b) => b.name === 'postgres')!;
const tmp = tempLibraryDir('clipdex-pgvec-');
let lib: TestLibrary;
let index: PgVectorIndex;
const vectors = clusteredVectors(N, DIM, { seed: 7 });
let ids: number[] = [];
let openMs = 0;

/** Queries near the library's vectors (perturbed rows), as real queries land near photos. */
function queries(n: number, seed: number, from: readonly number[]): Float32Array[] {
  const r = rng(seed);
  const g = gaussian(r);
  return Array.from({ length: n }, () => {
    const base = row(vectors, from[Math.floor(r() * from.length)]!, DIM);
    return normalized(Float32Array.from(base, (x) => x + 0.04 * g()));
  });
}

function recall(got: { id: number }[][], want: { id: number }[][]): number {
  let found = 0;
  let total = 0;
  got.forEach((hits, i) => {
    const truth = new Set(want[i]!.map((h) => h.id));
    total += truth.size;
    for (const h of hits) if (truth.has(h.id)) found++;
  });
  return found / total;
}

beforeAll(async () => {
  await backend.start();
  lib = backend.open(tmp.dir);
  const t0 = performance.now();
  ids = addIndexedImages(lib, KEY, vectors, DIM, { rootPath: '/photos', start: 0, count: N - RARE });
  ids.push(...addIndexedImages(lib, KEY, vectors, DIM, { rootPath: '/rare', start: N - RARE, count: RARE, extra: () => ({ format: 'png', takenAt: 1_600_000_000_000 }) }));
  const seeded = performance.now();
  // Opened on a library that already has its vectors: the index is built in one statement, then ef is tuned.
  index = await PgVectorIndex.open({ store: lib.store, modelKey: KEY });
  openMs = performance.now() - seeded;
  const h = index.health();
  console.log(`seeded ${N}×${DIM} in ${Math.round(seeded - t0)} ms; opened in ${Math.round(openMs)} ms (HNSW build ${Math.round(h.lastBuildMs!)} ms, ${h.fileBytes} bytes; tuned ef ${h.ef} at recall ${h.recall})`);
}, 120_000);

afterAll(async () => {
  await index?.close();
  lib?.close();
  await backend.stop();
  tmp.cleanup();
});

describe('PgVectorIndex (pgvector on PGlite)', () => {
  it('finds the exact top 10 with recall ≥ 0.98, scored as float32 cosines, through the HNSW index', async () => {
    const qs = queries(50, 11, ids.map((_, i) => i));
    const t0 = performance.now();
    const got = [];
    for (const q of qs) got.push(await index.search(q, K));
    const perQuery = (performance.now() - t0) / qs.length;
    const want = qs.map((q) => bruteForce(vectors, DIM, ids, q, K));
    const r = recall(got, want);
    console.log(`unfiltered recall@10 ${r.toFixed(3)} at ef ${index.health().ef}, ${perQuery.toFixed(1)} ms/query`);
    expect(r).toBeGreaterThanOrEqual(0.98);
    for (const hits of got) {
      expect(hits).toHaveLength(K);
      for (let i = 1; i < hits.length; i++) expect(hits[i - 1]!.score).toBeGreaterThanOrEqual(hits[i]!.score);
    }
    // Scores come from the float32 column, not from halfvec: they agree with float64 brute force to ~1e-6.
    const exact = new Map(want[0]!.map((h) => [h.id, h.score]));
    for (const h of got[0]!) if (exact.has(h.id)) expect(Math.abs(h.score - exact.get(h.id)!)).toBeLessThan(1e-5);

    const plan = index.explain(qs[0]!, K);
    console.log(`EXPLAIN (unfiltered):\n${short(plan)}`);
    expect(plan).toMatch(/Index Scan using embeddings_hnsw_[0-9a-f]+ on embeddings/);

    const h = index.health();
    expect(h).toMatchObject({ engine: 'pgvector', location: 'postgres', dim: DIM, count: N, pending: 0 });
    expect(h.recall).toBeGreaterThanOrEqual(0.98);
    expect(h.recallQueries).toBe(50);
    expect(h.fileBytes).toBeGreaterThan(0);
  });

  it('a 1% folder, format or date filter still returns k, at recall ≥ 0.98', async () => {
    const rareIds = ids.slice(N - RARE);
    const rareVectors = vectors.slice((N - RARE) * DIM);
    // Queries near the whole library, so most of each query's true neighbours are outside the filter.
    const qs = queries(30, 12, ids.map((_, i) => i));
    const want = qs.map((q) => bruteForce(rareVectors, DIM, rareIds, q, K));
    // The planner's choice (here: the filter's own index, scored exactly), and the graph walked with the filter
    // applied during pgvector's iterative scan, which must also come back with k.
    const graph = await PgVectorIndex.open({ store: lib.store, modelKey: KEY, filteredPlan: 'graph' });
    for (const [how, idx] of [['planner', index], ['graph', graph]] as const) {
      for (const filter of [{ folder: '/rare' }, { formats: ['PNG'] }, { takenFrom: 1_599_999_999_999, takenTo: 1_600_000_000_001 }]) {
        const t0 = performance.now();
        const got = [];
        for (const q of qs) got.push(await idx.search(q, K, { filter }));
        const perQuery = (performance.now() - t0) / qs.length;
        const r = recall(got, want);
        const plan = idx.explain(qs[0]!, K, { filter });
        console.log(`${how}, filter ${JSON.stringify(filter)}: recall@10 ${r.toFixed(3)}, ${perQuery.toFixed(1)} ms/query; plan:\n${short(plan)}`);
        expect(r).toBeGreaterThanOrEqual(0.98);
        for (const hits of got) {
          expect(hits).toHaveLength(K);
          for (const h of hits) expect(rareIds).toContain(h.id);
        }
        if (how === 'graph') {
          expect(plan).toMatch(/Index Scan using embeddings_hnsw_[0-9a-f]+ on embeddings/);
          // k came from the iterative scan itself, not from the exact completion of a short answer.
          expect(idx.exactFallbacks).toBe(0);
        }
      }
    }
    await graph.close();
  });

  it('searchBatch answers as search does, and vectorOf gives the stored vector normalised', async () => {
    const qs = queries(8, 13, ids.map((_, i) => i));
    const batch = await index.searchBatch(qs, K);
    for (let i = 0; i < qs.length; i++) expect(batch[i]!.map((h) => h.id)).toEqual((await index.search(qs[i]!, K)).map((h) => h.id));
    const v = index.vectorOf(ids[5]!)!;
    const want = row(vectors, 5, DIM);
    for (let j = 0; j < DIM; j++) expect(v[j]).toBeCloseTo(want[j]!, 6);
  });

  it('returns both files of one content, and never a hidden or unindexed photo', async () => {
    const probe = normalized(Float32Array.from({ length: DIM }, (_, j) => Math.sin(j * 0.37) + 0.2));
    const root = lib.roots.add('/dupes');
    const copies = lib.store.transaction(() => {
      lib.embeddings.put('dupe-content', KEY, probe);
      return ['a', 'b', 'c', 'd'].map(
        (name, i) =>
          lib.images.upsert({ rootId: root.id, path: `/dupes/${name}.jpg`, size: 10 + i, mtimeMs: 1, contentHash: 'dupe-content', format: 'jpeg', status: 'indexed' }).id,
      );
    });
    const [a, b, hidden, failed] = copies as [number, number, number, number];
    new DuplicatesRepo(lib.store.db).hide(hidden);
    lib.images.setStatus(failed, 'error', { code: 'DECODE_FAILED', message: 'test' });

    const hits = await index.search(probe, K);
    expect(hits.slice(0, 2).map((h) => h.id).sort((x, y) => x - y)).toEqual([a, b].sort((x, y) => x - y));
    expect(hits[0]!.score).toBeCloseTo(1, 5);
    expect(hits.map((h) => h.id)).not.toContain(hidden);
    expect(hits.map((h) => h.id)).not.toContain(failed);
    const contents = index.contents();
    expect(contents.ids).toContain(a);
    expect(contents.ids).not.toContain(hidden);
    expect(contents.ids).not.toContain(failed);
    expect(index.vectorOf(hidden)).toBeUndefined();

    // Hidden photos come back when un-hidden, at once.
    new DuplicatesRepo(lib.store.db).unhide(hidden);
    expect((await index.search(probe, K)).slice(0, 3).map((h) => h.id)).toContain(hidden);
    for (const id of copies) lib.images.remove(id);
    lib.embeddings.removeOrphans();
  });

  it('sees a vector committed after open at once, and forgets a removed photo at once', async () => {
    const fresh = normalized(Float32Array.from({ length: DIM }, (_, j) => Math.cos(j * 1.3) - 0.1));
    const root = lib.roots.add('/new');
    const id = lib.store.transaction(() => {
      lib.embeddings.put('fresh-content', KEY, fresh);
      return lib.images.upsert({ rootId: root.id, path: '/new/fresh.jpg', size: 1, mtimeMs: 1, contentHash: 'fresh-content', format: 'jpeg', status: 'indexed' }).id;
    });
    expect((await index.search(fresh, 1))[0]).toMatchObject({ id });
    expect((await index.search(fresh, 1, { filter: { folder: '/new' } }))[0]).toMatchObject({ id });
    expect(index.sync()).toBe(0); // EmbeddingsRepo wrote the pgvector column itself: nothing to fill
    lib.images.remove(id);
    expect((await index.search(fresh, K)).map((h) => h.id)).not.toContain(id);
    expect(await index.search(fresh, K, { filter: { folder: '/new' } })).toEqual([]);
  });

  it('fills the pgvector column of rows written without it (before migration 008)', async () => {
    const db = lib.store.db as unknown as { query: (text: string, values?: unknown[]) => { rowCount: number } };
    const cleared = db.query("UPDATE embeddings SET embedding = NULL WHERE content_hash LIKE '/rare#%'").rowCount;
    expect(cleared).toBe(RARE);
    expect(index.health().pending).toBe(RARE);
    expect(await index.search(row(vectors, N - 1, DIM), K, { filter: { folder: '/rare' } })).toEqual([]);
    expect(index.sync()).toBe(RARE);
    expect(index.health().pending).toBe(0);
    expect((await index.search(row(vectors, N - 1, DIM), 1, { filter: { folder: '/rare' } }))[0]).toMatchObject({ id: ids[N - 1] });
  });

  it('keeps a second model key of another dimension in an index of its own, and rebuilds it', async () => {
    const KEY2 = 'other-model@32';
    const small = clusteredVectors(300, 32, { seed: 9 });
    const otherIds = addIndexedImages(lib, KEY2, small, 32, { rootPath: '/other' });
    const other = await PgVectorIndex.open({ store: lib.store, modelKey: KEY2 });
    const q = row(small, 17, 32);
    expect((await other.search(q, 1))[0]).toMatchObject({ id: otherIds[17] });
    expect(other.contents().ids).toEqual(otherIds);
    // The first key's members are unchanged: the other key's photos have no vector under it.
    expect(index.contents().ids).toHaveLength(N);
    await expect(index.search(q, K)).rejects.toMatchObject({ code: 'DIMENSION_MISMATCH' });

    const before = other.health();
    expect(before).toMatchObject({ engine: 'pgvector', dim: 32, count: 300 });
    await other.rebuild();
    const after = other.health();
    expect(after.lastBuildAt).toBeGreaterThanOrEqual(before.lastBuildAt!);
    expect(after.recall).toBeGreaterThanOrEqual(0.98);
    expect(other.explain(q, K)).toMatch(/Index Scan using embeddings_hnsw_[0-9a-f]+ on embeddings/);
    expect((await other.search(q, 1))[0]).toMatchObject({ id: otherIds[17] });
    await other.close();
    await expect(other.search(q, 1)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('walks a float32 graph on request (graph: vector), found by its own index and as exact', async () => {
    const KEY3 = 'f32-model@24';
    const small = clusteredVectors(400, 24, { seed: 13 });
    const f32Ids = addIndexedImages(lib, KEY3, small, 24, { rootPath: '/f32' });
    const f32 = await PgVectorIndex.open({ store: lib.store, modelKey: KEY3, graph: 'vector' });
    try {
      const name = PgVectorRepo.indexName(KEY3, 24, 'vector');
      expect(name).not.toBe(PgVectorRepo.indexName(KEY3, 24));
      const def = lib.store.db.prepare<[string], { def: string }>('SELECT indexdef AS def FROM pg_indexes WHERE indexname = ?').get(name);
      expect(def?.def).toMatch(/USING hnsw \(\(\(embedding\)::vector\(24\)\) vector_cosine_ops\)/);
      expect(f32.health().recall).toBeGreaterThanOrEqual(0.98);
      const q = row(small, 31, 24);
      expect(f32.explain(q, K)).toContain(name);
      const got = await f32.search(q, K);
      expect(got.map((h) => h.id)).toEqual(bruteForce(small, 24, f32Ids, q, K).map((h) => h.id));
    } finally {
      await f32.close();
    }
  });
});

/** A plan without its 512-number vector literals. */
function short(plan: string): string {
  return plan.replace(/'\[[^\]]*\]'/g, "'[…]'");
}
