import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HnswIndex } from '../src/index/hnsw-index.js';
import { IndexManager, readSavedIndexStatus, type IndexManagerOptions } from '../src/index/index-manager.js';
import { keyDir, type IndexState } from '../src/index/index-files.js';
import type { SearchHit } from '../src/index/vector-index.js';
import { blobToVector } from '../src/store/vector-blob.js';
import { IndexChangesRepo } from '../src/store/index-changes-repo.js';
import { addIndexedImages, bruteForce, clusteredVectors, openTestLibrary, row, tempLibraryDir, type TestLibrary } from './helpers/store-fixtures.js';

const DIM = 64;
const KEY = 'tiny-64';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function library(): TestLibrary & { dir: string } {
  const t = tempLibraryDir('clipdex-index-');
  const lib = openTestLibrary(t.dir);
  cleanups.push(t.cleanup, () => lib.close());
  return { ...lib, dir: t.dir };
}

async function manager(lib: TestLibrary, options: Partial<IndexManagerOptions> = {}): Promise<IndexManager> {
  const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false, ...options });
  cleanups.push(() => m.close());
  return m;
}

/** The truth, straight from SQLite: every member's id and vector. */
function members(lib: TestLibrary): { ids: number[]; vectors: Float32Array } {
  const log = new IndexChangesRepo(lib.store.db);
  const rows = [...log.members(KEY)];
  const vectors = new Float32Array(rows.length * DIM);
  rows.forEach((r, i) => vectors.set(blobToVector(r.vector, DIM), i * DIM));
  return { ids: rows.map((r) => r.imageId), vectors };
}

/** The index holds exactly SQLite's members, once each, with SQLite's vectors. */
function expectConsistent(lib: TestLibrary, m: IndexManager): void {
  m.sync();
  const truth = members(lib);
  const { ids, duplicated } = m.contents();
  expect(duplicated).toEqual([]);
  expect(ids).toEqual(truth.ids);
  for (let i = 0; i < truth.ids.length; i += Math.max(1, Math.floor(truth.ids.length / 50))) {
    const held = m.vectorOf(truth.ids[i]!)!;
    const want = row(truth.vectors, i, DIM);
    const norm = Math.hypot(...want);
    want.forEach((x, j) => expect(held[j]).toBeCloseTo(x / norm, 5));
  }
}

/** Answers match brute force over SQLite's members: exactly, or at the given mean recall@k for HNSW. */
async function expectAnswers(lib: TestLibrary, m: IndexManager, queries: Float32Array, k: number, minRecall = 1): Promise<void> {
  const truth = members(lib);
  let sum = 0;
  const n = queries.length / DIM;
  for (let q = 0; q < n; q++) {
    const query = row(queries, q, DIM);
    const got = await m.search(query, k);
    const want = bruteForce(truth.vectors, DIM, truth.ids, query, k);
    if (minRecall === 1) {
      // Exact: the same score at every rank, and each id really has the score reported for it (near-ties
      // between float32 and float64 arithmetic may swap two ids, nothing else).
      expect(got).toHaveLength(want.length);
      got.forEach((h, r) => expect(h.score).toBeCloseTo(want[r]!.score, 5));
      const all = bruteForce(truth.vectors, DIM, truth.ids, query, truth.ids.length);
      for (const h of got) expect(all.find((x) => x.id === h.id)!.score).toBeCloseTo(h.score, 5);
    }
    sum += ids(got).filter((id) => ids(want).includes(id)).length / want.length;
  }
  expect(sum / n).toBeGreaterThanOrEqual(minRecall);
}

/** Queries in the data's own distribution: normalised midpoints of two stored vectors. */
function queriesNear(vectors: Float32Array, count: number, seed: number): Float32Array {
  const n = vectors.length / DIM;
  const out = new Float32Array(count * DIM);
  for (let q = 0; q < count; q++) {
    const a = (seed * 7919 + q * 104729) % n;
    const b = (seed * 15485863 + q * 1299709 + 1) % n;
    for (let j = 0; j < DIM; j++) out[q * DIM + j] = vectors[a * DIM + j]! + vectors[b * DIM + j]!;
  }
  return out;
}

const ids = (hits: SearchHit[]) => hits.map((h) => h.id);

describe('index manager: exact mode (small collections)', () => {
  it('answers exactly and follows every committed change before each search', async () => {
    const lib = library();
    const vectors = clusteredVectors(300, DIM, { seed: 21 });
    const imageIds = addIndexedImages(lib, KEY, vectors, DIM);
    const m = await manager(lib);
    expect(m.health()).toMatchObject({ engine: 'exact', count: 300, dim: DIM });
    const queries = queriesNear(vectors, 10, 22);
    await expectAnswers(lib, m, queries, 10);

    // Deletion, status change, new vector for existing content, new images: all visible at the next search.
    lib.images.remove(imageIds[0]!);
    lib.images.setStatus(imageIds[1]!, 'error', { code: 'DECODE_FAILED', message: 'x' });
    lib.embeddings.put('/photos#2', KEY, row(clusteredVectors(1, DIM, { seed: 23 }), 0, DIM));
    addIndexedImages(lib, KEY, clusteredVectors(20, DIM, { seed: 24 }), DIM, { rootPath: '/new' });
    const first = await m.search(row(vectors, 0, DIM), 5);
    expect(ids(first)).not.toContain(imageIds[0]);
    expect(ids(await m.search(row(vectors, 1, DIM), 5))).not.toContain(imageIds[1]);
    expect(m.health().count).toBe(318);
    expectConsistent(lib, m);
    await expectAnswers(lib, m, queries, 10);
  });

  it('starts empty (no embeddings yet) and picks up the dimension from the first embedding', async () => {
    const lib = library();
    const m = await manager(lib);
    expect(await m.search(new Float32Array(DIM), 5)).toEqual([]);
    expect(m.health()).toMatchObject({ engine: 'exact', count: 0, dim: null });
    const vectors = clusteredVectors(5, DIM, { seed: 25 });
    const added = addIndexedImages(lib, KEY, vectors, DIM);
    expect(ids(await m.search(row(vectors, 3, DIM), 1))).toEqual([added[3]]);
    await expect(m.search(new Float32Array(DIM + 1), 1)).rejects.toMatchObject({ code: 'DIMENSION_MISMATCH' });
  });
});

describe('index manager: HNSW mode', () => {
  it('builds in the worker, tunes ef, persists, and replays changes made after the checkpoint on reopen', async () => {
    const lib = library();
    const vectors = clusteredVectors(1500, DIM, { seed: 31 });
    const imageIds = addIndexedImages(lib, KEY, vectors, DIM);
    const progress: string[] = [];
    const m = await manager(lib, { exactBelow: 1000, onProgress: (p) => progress.push(`${p.job}:${p.phase}`) });
    const h = m.health();
    expect(h).toMatchObject({ engine: 'hnsw', count: 1500, graphCount: 1500, deleted: 0, pending: 0, lastRebuildReason: null });
    expect(h.ef).toBeGreaterThanOrEqual(16);
    expect(h.recall).toBeGreaterThanOrEqual(0.98);
    expect(h.fileBytes).toBeGreaterThan(1500 * DIM * 4);
    expect(progress).toEqual(expect.arrayContaining(['build:add', 'build:tune', 'build:write']));
    expectConsistent(lib, m);

    // Changes after the checkpoint: seen at once (delta + deletion marks)…
    for (let i = 0; i < 100; i++) lib.images.remove(imageIds[i]!);
    addIndexedImages(lib, KEY, clusteredVectors(50, DIM, { seed: 32 }), DIM, { rootPath: '/later' });
    lib.embeddings.put('/photos#500', KEY, row(clusteredVectors(1, DIM, { seed: 33 }), 0, DIM));
    expect(ids(await m.search(row(vectors, 5, DIM), 10))).not.toContain(imageIds[5]);
    expect(m.health()).toMatchObject({ count: 1450, pending: 51, deleted: 101 });
    expectConsistent(lib, m);
    await m.close();

    // …and after a restart, from the saved graph plus the log.
    const again = await manager(lib, { exactBelow: 1000 });
    expect(again.health()).toMatchObject({ engine: 'hnsw', count: 1450, pending: 51, lastRebuildReason: null });
    expectConsistent(lib, again);

    // A merge folds the waiting vectors into a new file; the log behind it is pruned; the old file is gone.
    await again.merge();
    // The replaced vector (#500) was updated in place in the graph; only the 100 removals stay marked.
    expect(again.health()).toMatchObject({ count: 1450, pending: 0, deleted: 100 });
    expectConsistent(lib, again);
    const log = new IndexChangesRepo(lib.store.db);
    expect(log.pendingCount(KEY, 0)).toBe(0);
    const dir = keyDir(lib.indexDir, KEY);
    expect(readdirSync(dir).filter((f) => f.endsWith('.bin'))).toHaveLength(1);
    const saved = await readSavedIndexStatus(lib.indexDir, KEY);
    expect(saved).toMatchObject({ labels: 1550, deleted: 100, ef: again.health().ef, checkpointSeq: again.health().checkpointSeq });
    await expectAnswers(lib, again, queriesNear(vectors, 50, 34), 10, 0.97);
  });

  it('compacts: when deletions pass the threshold the next merge rebuilds from scratch', async () => {
    const lib = library();
    const imageIds = addIndexedImages(lib, KEY, clusteredVectors(1200, DIM, { seed: 41 }), DIM);
    const m = await manager(lib, { exactBelow: 1000, compactAbove: 0.2 });
    for (let i = 0; i < 400; i++) lib.images.setStatus(imageIds[i]!, 'offline');
    m.sync();
    expect(m.health().deleted).toBe(400);
    await m.merge();
    expect(m.health()).toMatchObject({ deleted: 0, graphCount: 800, count: 800 });
    expect((JSON.parse(readFileSync(join(keyDir(lib.indexDir, KEY), 'state.json'), 'utf8')) as IndexState).lastJob).toBe('build');
    expectConsistent(lib, m);
    // Shrunk far below the HNSW threshold, the next compaction drops the graph for exact search.
    for (let i = 400; i < 1000; i++) lib.images.remove(imageIds[i]!);
    m.sync();
    await m.merge();
    expect(m.health()).toMatchObject({ engine: 'exact', count: 200, fileBytes: null });
    expect(readdirSync(keyDir(lib.indexDir, KEY))).toEqual([]);
    expectConsistent(lib, m);
  });

  it('grows from exact search to HNSW in the background once the collection passes the threshold', async () => {
    const lib = library();
    addIndexedImages(lib, KEY, clusteredVectors(600, DIM, { seed: 51 }), DIM);
    const m = await manager(lib, { exactBelow: 1000, autoMerge: true });
    expect(m.health().engine).toBe('exact');
    addIndexedImages(lib, KEY, clusteredVectors(500, DIM, { seed: 52 }), DIM, { rootPath: '/more' });
    // The search that notices the growth answers at once (exactly) and starts the build behind it.
    expect(await m.search(row(clusteredVectors(1, DIM, { seed: 53 }), 0, DIM), 5)).toHaveLength(5);
    expect(m.health().building).toBe(true);
    await m.idle();
    expect(m.health()).toMatchObject({ engine: 'hnsw', count: 1100, lastError: null });
    expectConsistent(lib, m);
  });
});

describe('index manager: filters are exact', () => {
  it('in exact mode, on the HNSW path for large subsets, and on the exact path for small ones', async () => {
    const lib = library();
    const n = 1600;
    const vectors = clusteredVectors(n, DIM, { seed: 61 });
    // Three folders; capture times spread over a range; a few PNGs.
    addIndexedImages(lib, KEY, vectors, DIM, {
      extra: (i) => ({
        path: `/photos/${['beach', 'garden', 'city'][i % 3]}/img${i}.jpg`,
        takenAt: 1_000_000 + i * 1000,
        format: i % 40 === 0 ? 'png' : 'jpeg',
      }),
    });
    const filters = [
      { folder: '/photos/garden' }, // ~1/3: HNSW with a filter
      { takenFrom: 1_000_000 + 200_000, takenTo: 1_000_000 + 1_400_000 }, // 3/4
      { formats: ['png'] }, // 40 images: exact over the subset
      { folder: '/photos/beach', formats: ['png'] }, // ~13
      { folder: '/photos/nowhere' }, // nothing
    ];
    const check = async (m: IndexManager) => {
      const queries = queriesNear(vectors, 5, 62);
      for (const filter of filters) {
        const matching = new Set(
          (lib.store.db.prepare('SELECT id FROM images').all() as { id: number }[])
            .map((r) => r.id)
            .filter((id) => {
              const img = lib.images.get(id)!;
              return (
                (!filter.folder || img.path.startsWith(`${filter.folder}/`)) &&
                (!filter.formats || filter.formats.includes(img.format!)) &&
                (filter.takenFrom === undefined || img.takenAt! >= filter.takenFrom) &&
                (filter.takenTo === undefined || img.takenAt! < filter.takenTo)
              );
            }),
        );
        const truth = members(lib);
        const subsetIds = truth.ids.filter((id) => matching.has(id));
        const subset = new Float32Array(subsetIds.length * DIM);
        subsetIds.forEach((id, j) => subset.set(row(truth.vectors, truth.ids.indexOf(id), DIM), j * DIM));
        for (let q = 0; q < 5; q++) {
          const query = row(queries, q, DIM);
          const got = await m.search(query, 20, { filter });
          expect(got.length).toBe(Math.min(20, subsetIds.length));
          expect(got.every((h) => matching.has(h.id))).toBe(true);
          const want = bruteForce(subset, DIM, subsetIds, query, 20);
          // HNSW may swap near-ties; recall against the exact answer must still be (almost) perfect.
          const overlap = ids(got).filter((id) => ids(want).includes(id)).length;
          if (want.length === 0) expect(got).toEqual([]);
          else expect(overlap / want.length).toBeGreaterThanOrEqual(0.95);
        }
      }
    };
    const exact = await manager(lib, { exactBelow: 5000 });
    expect(exact.health().engine).toBe('exact');
    await check(exact);
    await exact.close();
    const graph = await manager(lib, { exactBelow: 1000, exactSubsetBelow: 100 });
    expect(graph.health().engine).toBe('hnsw');
    await check(graph);
  });

  it('never comes back short: a filter the graph walk cannot satisfy falls back to exact', async () => {
    const lib = library();
    const vectors = clusteredVectors(1500, DIM, { seed: 71 });
    const imageIds = addIndexedImages(lib, KEY, vectors, DIM, { extra: (i) => ({ format: i < 1200 ? 'jpeg' : 'png' }) });
    const m = await manager(lib, { exactBelow: 1000, exactSubsetBelow: 10 });
    // Query far inside the jpeg cluster for pngs: 300 match, k = 250 of them wanted.
    const got = await m.search(row(vectors, 0, DIM), 250, { filter: { formats: ['png'] } });
    expect(got).toHaveLength(250);
    expect(new Set(ids(got)).size).toBe(250);
    expect(got.every((h) => imageIds.indexOf(h.id) >= 1200)).toBe(true);
  });
});

describe('index manager: a bad index file is detected and rebuilt, never loaded', () => {
  async function builtLibrary() {
    const lib = library();
    addIndexedImages(lib, KEY, clusteredVectors(1100, DIM, { seed: 81 }), DIM);
    const m = await manager(lib, { exactBelow: 1000 });
    await m.close();
    const dir = keyDir(lib.indexDir, KEY);
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as IndexState;
    return { lib, dir, state, file: join(dir, state.file) };
  }

  async function expectRebuilt(lib: TestLibrary, reason: RegExp) {
    const m = await manager(lib, { exactBelow: 1000 });
    expect(m.health().lastRebuildReason).toMatch(reason);
    expect(m.health()).toMatchObject({ engine: 'hnsw', count: 1100 });
    expectConsistent(lib, m);
    await m.close();
    // The rebuilt index is trusted next time.
    const again = await manager(lib, { exactBelow: 1000 });
    expect(again.health().lastRebuildReason).toBeNull();
  }

  it('truncated', async () => {
    const { lib, file } = await builtLibrary();
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expectRebuilt(lib, /bytes.*expected|truncated/);
  });

  it('random bytes (same size, header intact)', async () => {
    const { lib, file } = await builtLibrary();
    const bytes = readFileSync(file);
    for (let i = 200; i < bytes.length; i += 97) bytes[i] = (bytes[i]! * 31 + 7) & 0xff;
    writeFileSync(file, bytes);
    await expectRebuilt(lib, /checksum/);
  });

  it('random bytes everywhere, state file rewritten to match (a header hnswlib would choke on)', async () => {
    const { lib, dir, state, file } = await builtLibrary();
    const junk = Buffer.alloc(state.fileBytes);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 2654435761) >>> 24;
    writeFileSync(file, junk);
    const { crc32 } = await import('node:zlib');
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ ...state, crc32: crc32(junk) }));
    await expectRebuilt(lib, /header/);
  });

  it('wrong dimension: a valid graph of another dimension with a matching state file', async () => {
    const { lib, dir, state, file } = await builtLibrary();
    const other = HnswIndex.create(32, 100);
    const v = clusteredVectors(100, 32, { seed: 82 });
    for (let i = 0; i < 100; i++) other.add(i + 1, row(v, i, 32));
    await other.write(file);
    const bytes = readFileSync(file);
    const { crc32 } = await import('node:zlib');
    writeFileSync(join(dir, 'state.json'), JSON.stringify({ ...state, fileBytes: bytes.length, crc32: crc32(bytes), labels: 100 }));
    await expectRebuilt(lib, /dimension 32/);
    // …and a state file that itself claims the other dimension is caught by the model's dimension.
    const { dir: dir2, state: state2, lib: lib2 } = await builtLibrary();
    writeFileSync(join(dir2, 'state.json'), JSON.stringify({ ...state2, dim: 32 }));
    await expectRebuilt(lib2, /dimension 32/);
  });

  it('garbage state file, missing graph file, and an index from another library', async () => {
    const a = await builtLibrary();
    writeFileSync(join(a.dir, 'state.json'), '{"format": "clipdex-hnsw-1", "dim": ');
    await expectRebuilt(a.lib, /not valid JSON/);

    const b = await builtLibrary();
    writeFileSync(b.file, Buffer.alloc(0));
    await expectRebuilt(b.lib, /bytes/);

    const c = await builtLibrary();
    const d = library();
    addIndexedImages(d, KEY, clusteredVectors(1100, DIM, { seed: 81 }), DIM);
    const target = keyDir(d.indexDir, KEY);
    mkdirSync(target, { recursive: true });
    for (const f of readdirSync(c.dir)) copyFileSync(join(c.dir, f), join(target, f));
    await expectRebuilt(d, /another library/);
  });
});

describe('filtered search over a large subset', () => {
  it('remembers the filter between searches but never across a change (a move to another folder)', async () => {
    const lib = library();
    const n = 3000;
    const vectors = clusteredVectors(n, DIM, { seed: 21 });
    const ids = addIndexedImages(lib, KEY, vectors, DIM, { rootPath: '/a' });
    // exactBelow low so there is a graph; exactSubsetBelow low so the filter goes through the graph path.
    const m = await manager(lib, { exactBelow: 500, exactSubsetBelow: 10 });
    await m.merge();
    const root = lib.roots.getByPath('/a')!;
    // Every photo sits in /a; move half of them to /a/sub without touching their status or content.
    for (let i = 0; i < n; i += 2) lib.images.rename(ids[i]!, `/a/sub/img${i}.jpg`, root.id);
    const query = row(vectors, 1, DIM);
    const first = await m.search(query, 10, { filter: { folder: '/a/sub' } });
    const again = await m.search(query, 10, { filter: { folder: '/a/sub' } });
    expect(again).toEqual(first);
    expect(first.every((h) => ids.indexOf(h.id) % 2 === 0)).toBe(true);
    // Move the query's own photo (odd, so outside /a/sub) in: the next filtered search must see it.
    lib.images.rename(ids[1]!, '/a/sub/moved.jpg', root.id);
    const after = await m.search(query, 10, { filter: { folder: '/a/sub' } });
    expect(after[0]!.id).toBe(ids[1]);
  });
});
