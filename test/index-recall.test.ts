/**
 * recall@10 ≥ 0.98 against exact search on 20k clustered 512-d vectors, with the graph built by the real
 * path: SQLite → worker → tuned ef → saved file → loaded by the manager.
 */
import { describe, expect, it } from 'vitest';
import { IndexManager } from '../src/index/index-manager.js';
import { addIndexedImages, bruteForce, clusteredVectors, openTestLibrary, tempLibraryDir } from './helpers/store-fixtures.js';

const N = 20_000;
const DIM = 512;
const QUERIES = 100;

describe('HNSW recall', () => {
  it(`recall@10 >= 0.98 vs exact on ${N} clustered ${DIM}-d vectors, at the ef the build chose`, { timeout: 180_000 }, async () => {
    const t = tempLibraryDir('clipdex-recall-');
    const lib = openTestLibrary(t.dir);
    try {
      const vectors = clusteredVectors(N, DIM, { seed: 2024 });
      const ids = addIndexedImages(lib, 'clip-512', vectors, DIM);
      const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: 'clip-512', autoMerge: false, exactBelow: 10_000 });
      try {
        const h = m.health();
        expect(h).toMatchObject({ engine: 'hnsw', count: N, graphCount: N });
        expect(h.recall).toBeGreaterThanOrEqual(0.98);
        expect(h.ef).toBeGreaterThan(0);

        // Fresh queries (not the build's sample): midpoints of two stored vectors, and stored vectors
        // with noise, as a phrase or a similar photo would land among the photos.
        const g = clusteredVectors(QUERIES, DIM, { seed: 7 });
        let sum = 0;
        for (let q = 0; q < QUERIES; q++) {
          const a = (q * 7919) % N;
          const b = (q * 104729 + 17) % N;
          const query = new Float32Array(DIM);
          for (let j = 0; j < DIM; j++) {
            query[j] = q % 2 === 0 ? vectors[a * DIM + j]! + vectors[b * DIM + j]! : vectors[a * DIM + j]! + 0.3 * g[q * DIM + j]!;
          }
          const got = await m.search(query, 10);
          const want = bruteForce(vectors, DIM, ids, query, 10);
          const kth = want[9]!.score;
          expect(got).toHaveLength(10);
          sum += got.filter((hit) => hit.score >= kth - 1e-5).length / 10;
          // Scores are cosines of the stored vectors, whichever engine found them.
          expect(got[0]!.score).toBeCloseTo(want[0]!.score, 4);
        }
        const recall = sum / QUERIES;
        console.log(`recall@10 = ${recall.toFixed(3)} at ef=${h.ef} (build measured ${h.recall?.toFixed(3)}; built in ${h.lastBuildMs} ms)`);
        expect(recall).toBeGreaterThanOrEqual(0.98);
      } finally {
        await m.close();
      }
    } finally {
      lib.close();
      t.cleanup();
    }
  });
});
