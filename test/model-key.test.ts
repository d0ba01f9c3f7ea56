/**
 * The model key fingerprints every byte of the ONNX files (a changed middle weight is another model), is
 * cached by file identity, and a library stored under the old sampled key is re-keyed when it opens:
 * embeddings, index registration and graph, change log and trained versions all follow, nothing re-encoded.
 * Real tiny model, real SQLite file, real index folders.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashFile } from '../src/ingest/content-hash.js';
import { IndexManager } from '../src/index/index-manager.js';
import { keyDir, readState } from '../src/index/index-files.js';
import { Library } from '../src/library/library.js';
import { FINGERPRINT_CACHE_FILE, legacyModelKeyFor, modelKeyFor } from '../src/library/model-key.js';
import { ClipModel } from '../src/model/clip-model.js';
import { resolveModel } from '../src/model/model-registry.js';
import { builtWeights } from '../src/model/tiny-model-builder.js';
import { AdaptersRepo } from '../src/store/adapters-repo.js';
import { libraryPaths, openDatabase } from '../src/store/database.js';
import { EmbeddingsRepo } from '../src/store/embeddings-repo.js';
import { ImagesRepo } from '../src/store/images-repo.js';
import { RootsRepo } from '../src/store/roots-repo.js';
import { adapterModelKey, AdaptedEmbeddings } from '../src/adapter/adapter-embeddings.js';
import { encodeAdapter } from '../src/adapter/adapter-weights.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { projectingAdapter, tinyModel } from './helpers/library-fixture.js';

const SEED = 11;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'clipdex-model-key-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Where the first vision block's fc1 weights lie in the ONNX file: the middle, far from both 64 KB ends. */
async function middleWeightOffset(file: string): Promise<number> {
  const w = (await builtWeights({ seed: SEED })).vision.blocks[0]!.fc1.w;
  const bytes = readFileSync(file);
  const at = bytes.indexOf(Buffer.from(w.buffer, w.byteOffset, 64));
  expect(at).toBeGreaterThan(64 * 1024);
  return at + Math.floor(w.byteLength / 2);
}

describe('model key', () => {
  it('changes when one weight in the middle of an initializer changes, size and mtime kept', async () => {
    const modelDir = await tinyModel(join(dir, 'flip'), SEED);
    const cacheDir = join(dir, 'flip', 'cache');
    const spec = await resolveModel(modelDir);
    const file = join(spec.dir, spec.vision.file);
    // A whole-second mtime, so putting it back below restores it exactly.
    const mtime = new Date('2024-05-01T12:00:00Z');
    utimesSync(file, mtime, mtime);
    const before = await modelKeyFor(spec, { cacheDir });
    const legacyBefore = await legacyModelKeyFor(spec);
    expect(await modelKeyFor(spec, { cacheDir })).toBe(before);

    const st = statSync(file);
    const at = await middleWeightOffset(file);
    const bytes = readFileSync(file);
    bytes.writeFloatLE(bytes.readFloatLE(at) + 0.5, at);
    writeFileSync(file, bytes);
    // What a careless tool does: put the old mtime back. Only the ctime still tells.
    utimesSync(file, mtime, mtime);
    expect(statSync(file).size).toBe(st.size);
    expect(statSync(file).mtimeMs).toBe(st.mtimeMs);

    const after = await modelKeyFor(spec, { cacheDir });
    expect(after).not.toBe(before);
    expect(after.split('#')[0]).toBe(before.split('#')[0]);
    // The sampled key of before could not see it: this is the collision the whole-file key removes.
    expect(await legacyModelKeyFor(spec)).toBe(legacyBefore);
    // And without the cache the same answer (the cache was not serving the stale digest).
    expect(await modelKeyFor(spec)).toBe(after);
  });

  it('is read from the cache while the file is unchanged, and the cache is a small JSON file in the cache dir', async () => {
    const modelDir = await tinyModel(join(dir, 'cache'), SEED);
    const cacheDir = join(dir, 'cache', 'cache');
    const spec = await resolveModel(modelDir);
    const key = await modelKeyFor(spec, { cacheDir });
    const cacheFile = join(cacheDir, FINGERPRINT_CACHE_FILE);
    const cached = JSON.parse(readFileSync(cacheFile, 'utf8')) as { files: Record<string, { sha256: string }> };
    const vision = join(spec.dir, spec.vision.file);
    expect(cached.files[vision]!.sha256).toBe((await hashFile(vision)).hash);
    // A doctored digest with a matching stamp is believed: proof the file was not hashed again.
    cached.files[vision]!.sha256 = '0'.repeat(64);
    writeFileSync(cacheFile, JSON.stringify(cached));
    expect(await modelKeyFor(spec, { cacheDir })).not.toBe(key);
    // A damaged cache file costs a re-hash, never an error.
    writeFileSync(cacheFile, '{not json');
    expect(await modelKeyFor(spec, { cacheDir })).toBe(key);
  });
});

describe('a library stored under the old sampled key', () => {
  it('is re-keyed at open: vectors, graph, change log and the active trained version all kept', async () => {
    const root = join(dir, 'legacy');
    const modelDir = await tinyModel(root, SEED);
    const cacheDir = join(root, 'cache');
    const dataDir = join(root, 'data');
    const photos = join(root, 'photos');
    mkdirSync(photos);
    const spec = await resolveModel(modelDir);
    const legacy = await legacyModelKeyFor(spec);
    const paths = libraryPaths(dataDir);

    // The library as an older clipdex left it: everything under the legacy key, written through the repos.
    const model = await ClipModel.load(spec);
    const store = openDatabase(paths.database);
    const images = new ImagesRepo(store.db);
    const embeddings = new EmbeddingsRepo(store.db);
    const adapters = new AdaptersRepo(store.db);
    const rootId = new RootsRepo(store.db).add(photos).id;
    embeddings.registerModel(legacy, model.dim);
    const addPhoto = async (i: number) => {
      const file = join(photos, `p${i}.jpg`);
      await writeJpeg(file, i + 1);
      const [result] = await model.embedImages([file]);
      if (!result?.ok) throw new Error(`cannot embed ${file}`);
      const { hash } = await hashFile(file);
      embeddings.put(hash, legacy, result.embedding);
      const st = statSync(file);
      return images.upsert({ rootId, path: file, size: st.size, mtimeMs: st.mtimeMs, contentHash: hash, status: 'indexed' }).id;
    };
    const ids: number[] = [];
    for (let i = 0; i < 12; i++) ids.push(await addPhoto(i));
    const index = await IndexManager.open({ store, indexDir: paths.indexDir, modelKey: legacy, exactBelow: 1, autoMerge: false });
    await index.rebuild();
    await index.close();
    // One photo after the graph was saved: it reaches the index only through the change log.
    ids.push(await addPhoto(12));
    const trained = projectingAdapter(model.dim);
    const record = adapters.add(legacy, encodeAdapter(trained));
    adapters.activate(record.id);
    await new AdaptedEmbeddings(store.db, embeddings, legacy).fillMissing(adapterModelKey(legacy, record.id), trained);
    const vectors = (key: string) => store.db.prepare('SELECT id, content_hash, vector FROM embeddings WHERE model_key = ? ORDER BY id').all(key);
    const baseVectors = vectors(legacy);
    const adapterVectors = vectors(adapterModelKey(legacy, record.id));
    expect(baseVectors).toHaveLength(13);
    expect(adapterVectors).toHaveLength(13);
    const pendingChanges = (store.db.prepare('SELECT count(*) AS n FROM index_changes WHERE model_key = ?').get(legacy) as { n: number }).n;
    expect(pendingChanges).toBeGreaterThan(0);
    store.close();
    await model.release();
    expect(existsSync(join(keyDir(paths.indexDir, legacy), 'state.json'))).toBe(true);

    const library = await Library.open({ dataDir, model: modelDir, cacheDir });
    try {
      const { key, index: opened } = library.requireModel();
      expect(key).not.toBe(legacy);
      const db = library.store.db;
      const count = (table: string, k: string) => (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE model_key = ?`).get(k) as { n: number }).n;
      for (const table of ['embedding_models', 'embeddings', 'adapters', 'vector_indexes', 'index_changes']) {
        expect(count(table, legacy), table).toBe(0);
        expect(db.prepare(`SELECT count(*) AS n FROM ${table} WHERE substr(model_key, 1, length(?)) = ?`).get(`${legacy}@`, `${legacy}@`)).toEqual({ n: 0 });
      }
      // The same rows, ids and bytes: nothing was encoded again.
      expect(vectors(key)).toEqual(baseVectors);
      expect(vectors(adapterModelKey(key, record.id))).toEqual(adapterVectors);
      function vectors(k: string) {
        return db.prepare('SELECT id, content_hash, vector FROM embeddings WHERE model_key = ? ORDER BY id').all(k);
      }
      expect(count('index_changes', key)).toBe(pendingChanges);
      // The trained version is still there and still the one searched.
      expect(library.adapters.active(key)?.id).toBe(record.id);
      expect(library.searchSpace().adapter?.id).toBe(record.id);
      // The saved graph moved with its key and was used (no rebuild), and the change log caught it up.
      expect(existsSync(keyDir(library.paths.indexDir, legacy))).toBe(false);
      const state = await readState(keyDir(library.paths.indexDir, key));
      expect(state && !('problem' in state) ? state.modelKey : state).toBe(key);
      const health = opened.health();
      expect(health.engine).toBe('hnsw');
      expect(health.lastRebuildReason).toBeNull();
      expect(opened.contents().ids.sort((a, b) => a - b)).toEqual(ids);
    } finally {
      await library.close();
    }

    // Opening again changes nothing: the new key is known now.
    const again = await Library.open({ dataDir, model: modelDir, cacheDir });
    try {
      expect(again.requireModel().key).toBe(library.requireModel().key);
      expect(again.requireModel().index.health().engine).toBe('hnsw');
    } finally {
      await again.close();
    }
  });
});
