/**
 * The vector part of `npm run bench:scale`: the same N × D vectors searched by the embedded index (hnswlib graph
 * files beside SQLite) and by pgvector inside Postgres with a halfvec graph and with a float32 graph, side by
 * side in one run: build time, p50/p99 per query and recall@10 against exact search, unfiltered and with a
 * folder filter keeping 10% and 1% of the library. All three at their defaults (M 16, ef_construction 64,
 * ef_search tuned to recall@10 ≥ 0.98 by each index itself).
 */
import { join } from 'node:path';
import { IndexManager } from '../src/index/index-manager.js';
import type { LibraryIndex } from '../src/index/library-index.js';
import { PgVectorIndex } from '../src/index/pg-vector-index.js';
import { normalized } from '../src/index/vector-index.js';
import type { ImageFilter } from '../src/store/image-filter.js';
import { copyLibrary } from '../src/store/library-copy.js';
import { addIndexedImages, bruteForce, clusteredVectors, gaussian, openTestLibrary, rng, row, storeBackends } from '../test/helpers/store-fixtures.js';

export interface VectorBenchOptions {
  n: number;
  dim: number;
  queries: number;
  dir: string;
  log: (line: string) => void;
}

interface Timing {
  p50: number;
  p99: number;
}

export interface EngineFigures {
  engine: string;
  /** pgvector: the CREATE INDEX statement alone. hnswlib: null (its build and tuning are one job: readyS). */
  buildS: number | null;
  /** From open to searchable: the build, and the ef tuning (exact passes over every vector). */
  readyS: number;
  /** Bytes of the graph (files, or the Postgres index relation). */
  graphBytes: number | null;
  ef: number | null;
  unfiltered: Timing & { recall: number };
  filter10: Timing & { recall: number };
  filter1: Timing & { recall: number };
}

const KEY = 'bench-scale@512';
const K = 10;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function benchVectors(o: VectorBenchOptions): Promise<EngineFigures[]> {
  const { n, dim } = o;
  // Three folders: 89%, 10% and 1% of the library, the filters' subsets.
  const n1 = Math.max(K, Math.round(n * 0.01));
  const n10 = Math.round(n * 0.1);
  const nBig = n - n10 - n1;
  const vectors = clusteredVectors(n, dim, { seed: 21 });
  const sqlite = openTestLibrary(join(o.dir, 'embedded'));
  const t0 = performance.now();
  const ids = [
    ...addIndexedImages(sqlite, KEY, vectors, dim, { rootPath: '/photos/all', start: 0, count: nBig }),
    ...addIndexedImages(sqlite, KEY, vectors, dim, { rootPath: '/photos/tenth', start: nBig, count: n10 }),
    ...addIndexedImages(sqlite, KEY, vectors, dim, { rootPath: '/photos/rare', start: nBig + n10, count: n1 }),
  ];
  o.log(`seeded ${n} × ${dim} in SQLite in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // Queries near the library's vectors (perturbed rows), as real queries land near photos; each filter's
  // queries are drawn from inside its subset and from anywhere, half and half.
  const r = rng(5);
  const g = gaussian(r);
  const near = (from: number, count: number) =>
    normalized(Float32Array.from(row(vectors, from + Math.floor(r() * count), dim), (x) => x + 0.05 * g()));
  const sets: { name: 'unfiltered' | 'filter10' | 'filter1'; filter: ImageFilter | undefined; lo: number; hi: number }[] = [
    { name: 'unfiltered', filter: undefined, lo: 0, hi: n },
    { name: 'filter10', filter: { folder: '/photos/tenth' }, lo: nBig, hi: nBig + n10 },
    { name: 'filter1', filter: { folder: '/photos/rare' }, lo: nBig + n10, hi: n },
  ];
  const queries = sets.map((s) => Array.from({ length: o.queries }, (_, i) => (i % 2 === 0 ? near(s.lo, s.hi - s.lo) : near(0, n))));
  const truth = sets.map((s, si) =>
    queries[si]!.map((q) => {
      const memberIds = ids.slice(s.lo, s.hi);
      const sub = vectors.subarray(s.lo * dim, s.hi * dim);
      return new Set(bruteForce(sub, dim, memberIds, q, K).map((h) => h.id));
    }),
  );
  o.log('exact answers computed');

  const measure = async (engine: string, index: LibraryIndex, readyS: number): Promise<EngineFigures> => {
    const h = index.health();
    const figures: Partial<EngineFigures> = {
      engine,
      buildS: index instanceof PgVectorIndex && h.lastBuildMs !== null ? Number((h.lastBuildMs / 1000).toFixed(1)) : null,
      readyS: Number(readyS.toFixed(1)),
      graphBytes: h.fileBytes ?? null,
      ef: h.ef ?? null,
    };
    for (const [si, s] of sets.entries()) {
      const ms: number[] = [];
      let found = 0;
      for (const [qi, q] of queries[si]!.entries()) {
        const t = performance.now();
        const hits = await index.search(q, K, s.filter ? { filter: s.filter } : {});
        ms.push(performance.now() - t);
        for (const hit of hits) if (truth[si]![qi]!.has(hit.id)) found++;
      }
      ms.sort((a, b) => a - b);
      figures[s.name] = { p50: Number(percentile(ms, 50).toFixed(2)), p99: Number(percentile(ms, 99).toFixed(2)), recall: Number((found / (K * ms.length)).toFixed(3)) };
    }
    o.log(`${engine}: ${JSON.stringify(figures)}`);
    return figures as EngineFigures;
  };

  const out: EngineFigures[] = [];
  {
    const t = performance.now();
    const index = await IndexManager.open({ store: sqlite.store, indexDir: sqlite.indexDir, modelKey: KEY, exactBelow: 0 });
    await index.merge();
    await index.idle();
    out.push(await measure('hnswlib (embedded)', index, (performance.now() - t) / 1000));
    await index.close();
  }
  const pg = storeBackends().find((b) => b.name === 'postgres')!;
  await pg.start();
  try {
    for (const graph of ['halfvec', 'vector'] as const) {
      const lib = pg.open(join(o.dir, `pg-${graph}`));
      // The previous run's graph survives the tables being emptied, and would be kept up to date row by row
      // while this run's vectors go in: each run starts with no graph at all.
      const leftovers = lib.store.db.prepare<[], { name: string }>("SELECT indexname AS name FROM pg_indexes WHERE indexname LIKE 'embeddings_hnsw_%'").all();
      for (const { name } of leftovers) lib.store.db.exec(`DROP INDEX ${name}`);
      const c = performance.now();
      copyLibrary(sqlite.store, lib.store);
      o.log(`copied into Postgres in ${((performance.now() - c) / 1000).toFixed(1)} s`);
      const t = performance.now();
      const index = await PgVectorIndex.open({ store: lib.store, modelKey: KEY, graph });
      await index.idle();
      out.push(await measure(`pgvector ${graph} (PGlite)`, index, (performance.now() - t) / 1000));
      await index.close();
      lib.close();
    }
  } finally {
    await pg.stop();
    sqlite.close();
  }
  return out;
}
