import { describe, expect, it } from 'vitest';
import { ExactIndex } from '../src/index/exact-index.js';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileCrc32, HnswIndex, LabelCollector, parseHnswHeader } from '../src/index/hnsw-index.js';
import { LabelSet } from '../src/index/label-set.js';
import { chooseEf, recallAt } from '../src/index/recall.js';
import { mergeHits } from '../src/index/vector-index.js';
import { bruteForce, clusteredVectors, gaussian, rng, row } from './helpers/store-fixtures.js';

const DIM = 64;

function randomVectors(n: number, dim: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n * dim }, () => g());
}

describe('exact engine', () => {
  it('matches a brute-force sort through adds, replacements and removals', async () => {
    const n = 700;
    const vectors = randomVectors(n, DIM, 3); // deliberately not normalised: scores must still be cosines
    const ids = Array.from({ length: n }, (_, i) => 10 * i + 7);
    const index = new ExactIndex(DIM, 16); // small start: growth is exercised
    ids.forEach((id, i) => index.add(id, row(vectors, i, DIM)));
    // Replace 50 vectors, remove 100 (from the middle and the end, so swap-removal is exercised).
    const replacement = randomVectors(50, DIM, 4);
    for (let i = 0; i < 50; i++) {
      index.add(ids[i * 3]!, row(replacement, i, DIM));
      vectors.set(row(replacement, i, DIM), i * 3 * DIM);
    }
    const removed = new Set<number>();
    for (let i = 0; i < 100; i++) {
      const id = ids[(i * 7 + 1) % n]!;
      expect(index.remove(id)).toBe(!removed.has(id));
      removed.add(id);
    }
    expect(index.remove(123456)).toBe(false);
    const keep = ids.map((id, i) => ({ id, i })).filter((x) => !removed.has(x.id));
    const kept = new Float32Array(keep.length * DIM);
    keep.forEach((x, j) => kept.set(row(vectors, x.i, DIM), j * DIM));
    expect(index.size).toBe(keep.length);

    const queries = randomVectors(20, DIM, 5);
    for (let q = 0; q < 20; q++) {
      const query = row(queries, q, DIM);
      const got = await index.search(query, 15);
      const want = bruteForce(kept, DIM, keep.map((x) => x.id), query, 15);
      expect(got.map((h) => h.id)).toEqual(want.map((h) => h.id));
      got.forEach((h, j) => expect(h.score).toBeCloseTo(want[j]!.score, 5));
      expect(got.some((h) => removed.has(h.id))).toBe(false);
    }
  });

  it('filters to a subset and returns fewer than k only when fewer exist', async () => {
    const vectors = randomVectors(300, DIM, 6);
    const index = ExactIndex.fromRows(DIM, Array.from({ length: 300 }, (_, i) => i + 1), vectors);
    const even = (id: number) => id % 2 === 0;
    const query = row(randomVectors(1, DIM, 7), 0, DIM);
    const got = await index.search(query, 10, { filter: even });
    const evenIds = Array.from({ length: 150 }, (_, i) => 2 * (i + 1));
    const evenRows = new Float32Array(150 * DIM);
    evenIds.forEach((id, j) => evenRows.set(row(vectors, id - 1, DIM), j * DIM));
    expect(got.map((h) => h.id)).toEqual(bruteForce(evenRows, DIM, evenIds, query, 10).map((h) => h.id));
    expect(await index.search(query, 10, { filter: (id) => id === 5 || id === 6 })).toHaveLength(2);
    expect(await index.search(query, 500)).toHaveLength(300);
  });

  it('rejects a wrong query dimension and a bad k with typed errors', async () => {
    const index = new ExactIndex(DIM);
    index.add(1, row(randomVectors(1, DIM, 1), 0, DIM));
    await expect(index.search(new Float32Array(DIM + 1), 3)).rejects.toMatchObject({ code: 'DIMENSION_MISMATCH' });
    await expect(index.search(new Float32Array(DIM), 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(() => index.add(-1, new Float32Array(DIM))).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => index.add(2, new Float32Array(3))).toThrow(expect.objectContaining({ code: 'DIMENSION_MISMATCH' }));
  });
});

describe('HNSW engine', () => {
  it('agrees with exact search on a small set (ids and scores)', async () => {
    const n = 500;
    const vectors = clusteredVectors(n, DIM, { seed: 11 });
    const ids = Array.from({ length: n }, (_, i) => i + 1);
    const hnsw = HnswIndex.create(DIM, n);
    ids.forEach((id, i) => hnsw.add(id, row(vectors, i, DIM)));
    const exact = ExactIndex.fromRows(DIM, ids, vectors);
    const queries = clusteredVectors(30, DIM, { seed: 12 });
    for (let q = 0; q < 30; q++) {
      const query = row(queries, q, DIM);
      const a = await hnsw.search(query, 10, { ef: n });
      const b = await exact.search(query, 10);
      expect(a.map((h) => h.id)).toEqual(b.map((h) => h.id));
      a.forEach((h, j) => expect(h.score).toBeCloseTo(b[j]!.score, 5));
    }
  });

  it('never returns deleted ids, and still returns k live ones', async () => {
    const n = 2000;
    const vectors = clusteredVectors(n, DIM, { seed: 13 });
    const hnsw = HnswIndex.create(DIM, 64); // grows by resizing
    for (let i = 0; i < n; i++) hnsw.add(i + 1, row(vectors, i, DIM));
    expect(hnsw.capacity).toBeGreaterThanOrEqual(n);
    const deleted = new Set<number>();
    for (let id = 1; id <= n; id += 3) {
      expect(hnsw.remove(id)).toBe(true);
      deleted.add(id);
    }
    expect(hnsw.remove(1)).toBe(false); // already deleted
    expect(hnsw.size).toBe(n - deleted.size);
    expect(hnsw.deletedCount).toBe(deleted.size);
    expect(hnsw.deletedLabels()).toHaveLength(deleted.size);
    for (let q = 0; q < 50; q++) {
      // Querying with a deleted vector itself: its exact match must not come back.
      const hits = await hnsw.search(row(vectors, q * 3, DIM), 40);
      expect(hits).toHaveLength(40);
      expect(hits.filter((h) => deleted.has(h.id))).toEqual([]);
      expect(new Set(hits.map((h) => h.id)).size).toBe(40);
    }
    // Re-adding a deleted id brings it back (hnswlib updates in place and clears the mark).
    hnsw.add(1, row(vectors, 0, DIM));
    expect((await hnsw.search(row(vectors, 0, DIM), 1))[0]!.id).toBe(1);
    expect(hnsw.deletedCount).toBe(deleted.size - 1);
  });

  it('accepts a filter function', async () => {
    const vectors = clusteredVectors(400, DIM, { seed: 14 });
    const hnsw = HnswIndex.create(DIM, 400);
    for (let i = 0; i < 400; i++) hnsw.add(i, row(vectors, i, DIM));
    const hits = await hnsw.search(row(vectors, 0, DIM), 10, { filter: (id) => id % 5 === 1, ef: 200 });
    expect(hits).toHaveLength(10);
    expect(hits.every((h) => h.id % 5 === 1)).toBe(true);
  });
});

describe('index building blocks', () => {
  it('hnswlib headers are checked before hnswlib sees them', () => {
    const header = Buffer.alloc(96);
    const put = (o: number, v: number) => header.writeBigUInt64LE(BigInt(v), o);
    const M = 16;
    const dim = 8;
    const offsetData = 2 * M * 4 + 4;
    put(8, 10); // capacity
    put(16, 4); // count
    put(32, offsetData + dim * 4);
    put(24, offsetData + dim * 4 + 8);
    put(40, offsetData);
    put(56, M);
    put(64, 2 * M);
    put(72, M);
    const size = 96 + 4 * (offsetData + dim * 4 + 8) + 4 * 4;
    expect(parseHnswHeader(header, size)).toEqual({
      header: { maxElements: 10, count: 4, sizePerElement: offsetData + dim * 4 + 8, labelOffset: offsetData + dim * 4, dim, M, maxM0: 2 * M, maxLevel: 0 },
    });
    expect(parseHnswHeader(header, size - 1)).toHaveProperty('problem');
    expect(parseHnswHeader(header.subarray(0, 50), size)).toHaveProperty('problem');
    const bad = Buffer.from(header);
    bad.writeBigUInt64LE(BigInt(2 ** 40), 16); // count far beyond capacity
    expect(parseHnswHeader(bad, size)).toHaveProperty('problem');
  });

  it('the checksum pass reads every label out of a saved graph, whatever the chunk boundaries', async () => {
    const dim = 16;
    const index = HnswIndex.create(dim, 300);
    const vectors = clusteredVectors(257, dim, { seed: 5 });
    const ids = Array.from({ length: 257 }, (_, i) => (i === 7 ? 0xffff_fff0 : i * 13 + 1));
    ids.forEach((id, i) => index.add(id, vectors.subarray(i * dim, (i + 1) * dim)));
    const dir = mkdtempSync(join(tmpdir(), 'clipdex-labels-'));
    try {
      const file = join(dir, 'g.bin');
      await index.write(file);
      const head = readFileSync(file).subarray(0, 96);
      const parsed = parseHnswHeader(head, statSync(file).size);
      if (!('header' in parsed)) throw new Error(parsed.problem);
      const whole = await fileCrc32(file);
      // 8 MB, and sizes that cut labels in every possible place.
      for (const chunk of [8 << 20, 1000, 333, 7, 1]) {
        const collector = new LabelCollector(parsed.header);
        const { crc32: crc } = await fileCrc32(file, (c, at) => collector.take(c, at), chunk);
        expect(crc).toBe(whole.crc32);
        expect([...collector.labels].sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('label sets, hit merging, tie-aware recall and the ef ladder', () => {
    const s = new LabelSet([5, 70_000, 5]);
    expect(s.size).toBe(2);
    expect(s.has(70_000) && !s.has(6)).toBe(true);
    expect(s.delete(5) && !s.delete(5)).toBe(true);
    expect(s.toArray()).toEqual([70_000]);

    expect(mergeHits([{ id: 1, score: 0.9 }, { id: 2, score: 0.5 }], [{ id: 3, score: 0.7 }], 2).map((h) => h.id)).toEqual([1, 3]);

    const truth = { ids: [1, 2, 3], scores: [0.9, 0.8, 0.8] };
    // id 4 ties with id 3 at the 3rd score: just as correct.
    expect(recallAt([{ id: 1, score: 0.9 }, { id: 2, score: 0.8 }, { id: 4, score: 0.8 }], truth, 3)).toBe(1);
    expect(recallAt([{ id: 1, score: 0.9 }, { id: 5, score: 0.5 }], truth, 3)).toBeCloseTo(1 / 3);

    const curve = (ef: number) => Math.min(1, ef / 100);
    expect(chooseEf(curve, 0.9).ef).toBe(96);
    const never = chooseEf(() => 0.5, 0.98);
    expect(never.tried.length).toBeGreaterThan(5);
    expect(never.recall).toBe(0.5);
  });
});
