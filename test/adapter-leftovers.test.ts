/**
 * What an interrupted adapter activation leaves behind (projected embeddings, a registered index, its
 * folder) is removed when the library next opens — unless another process's activation still holds a
 * fresh lease on it, and never the active adapter's. Real library, SQLite file, index folders, tiny model.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyDir } from '../src/index/index-files.js';
import { Library } from '../src/library/library.js';
import { adapterModelKey, AdaptedEmbeddings } from '../src/adapter/adapter-embeddings.js';
import { ActivationLease, findAdapterLeftovers, LEASE_STALE_MS } from '../src/adapter/adapter-leftovers.js';
import { AdapterService } from '../src/train/adapter-service.js';
import { encodeAdapter } from '../src/adapter/adapter-weights.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles, projectingAdapter, tinyModel } from './helpers/library-fixture.js';

describe('leftovers of interrupted activations', () => {
  let dir: string;
  let model: string;
  const open = () => Library.open({ dataDir: join(dir, 'data'), model, cacheDir: join(dir, 'cache') });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-leftovers-'));
    model = await tinyModel(dir);
    const photos = join(dir, 'photos');
    mkdirSync(photos);
    const files = await Promise.all(Array.from({ length: 12 }, (_, i) => writeJpeg(join(photos, `p${i}.jpg`), i + 1).then(() => join(photos, `p${i}.jpg`))));
    const library = await open();
    await indexFiles(library, photos, files);
    await library.close();
  }, 60_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** An activation killed after projecting and building its index, before the switch. */
  async function interruptedActivation(library: Library): Promise<string> {
    const base = library.requireModel().key;
    const record = library.adapters.add(base, encodeAdapter(projectingAdapter(library.requireModel().model.dim)));
    const key = adapterModelKey(base, record.id);
    await new AdaptedEmbeddings(library.store.db, library.embeddings, base).fillMissing(key, projectingAdapter(library.requireModel().model.dim));
    const index = await library.openIndex(key);
    await index.idle();
    await index.close();
    // 12 photos are searched exactly, with no graph file: leave what a graph build killed half-way leaves.
    mkdirSync(keyDir(library.paths.indexDir, key), { recursive: true });
    writeFileSync(join(keyDir(library.paths.indexDir, key), 'hnsw-1-0123abcd.bin.tmp'), Buffer.alloc(4096, 1));
    return key;
  }

  const rows = (library: Library, key: string) => (library.store.db.prepare('SELECT count(*) AS n FROM embeddings WHERE model_key = ?').get(key) as { n: number }).n;

  it('removes the rows, the index registration and the folder at the next open; keeps the active adapter and the base', async () => {
    let library = await open();
    const base = library.requireModel().key;
    const active = await (async () => {
      const record = library.adapters.add(base, encodeAdapter(projectingAdapter(library.requireModel().model.dim)));
      await new AdapterService(library).activate(record.version);
      return adapterModelKey(base, record.id);
    })();
    const killed = await interruptedActivation(library);
    expect(rows(library, killed)).toBe(12);
    expect(existsSync(keyDir(library.paths.indexDir, killed))).toBe(true);
    // A folder whose rows went but which a crash kept (its state file names the key).
    const orphan = adapterModelKey(base, 999);
    mkdirSync(keyDir(library.paths.indexDir, orphan));
    writeFileSync(join(keyDir(library.paths.indexDir, orphan), 'state.json'), JSON.stringify({ modelKey: orphan }));
    // Another model's index folder in the same data directory is not this base's business.
    const foreign = join(library.paths.indexDir, 'some-other-model-0123456789');
    mkdirSync(foreign);
    await library.close();

    library = await open();
    try {
      expect(rows(library, killed)).toBe(0);
      expect(library.store.db.prepare('SELECT count(*) AS n FROM vector_indexes WHERE model_key = ?').get(killed)).toEqual({ n: 0 });
      expect(existsSync(keyDir(library.paths.indexDir, killed))).toBe(false);
      expect(existsSync(keyDir(library.paths.indexDir, orphan))).toBe(false);
      expect(existsSync(foreign)).toBe(true);
      // The active adapter and the base keep everything, and searches still go through the adapter.
      expect(rows(library, active)).toBe(12);
      expect(rows(library, base)).toBe(12);
      expect(library.searchSpace().key).toBe(active);
    } finally {
      await library.close();
    }
  });

  it('leaves alone a key leased by a live activation elsewhere; takes it once that process is gone or its lease a minute old', async () => {
    let library = await open();
    const key = await interruptedActivation(library);
    const lease = ActivationLease.take(library.store.db, key);
    const base = library.requireModel().key;
    const activeKey = library.searchSpace().key;
    expect(findAdapterLeftovers(library.store.db, base, activeKey).leftovers).not.toContain(key);
    expect(findAdapterLeftovers(library.store.db, base, activeKey, Date.now() + LEASE_STALE_MS + 1000).leftovers).toContain(key);
    await library.close();

    // Another process opens while the lease is fresh: nothing of the key is touched.
    library = await open();
    expect(rows(library, key)).toBe(12);
    expect(existsSync(keyDir(library.paths.indexDir, key))).toBe(true);
    // The activation's process dies without releasing (a lease whose pid is gone from this machine).
    lease.release();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const putLease = (value: object) =>
      library.store.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(`activation-lease:${key}`, JSON.stringify(value));
    putLease({ pid: Number(dead.stdout), host: hostname(), at: Date.now() });
    expect(findAdapterLeftovers(library.store.db, base, activeKey).leftovers).toContain(key);
    // A process on another machine is trusted until its lease has not been refreshed for a minute.
    putLease({ pid: Number(dead.stdout), host: 'another-machine', at: Date.now() });
    expect(findAdapterLeftovers(library.store.db, base, activeKey).leftovers).not.toContain(key);
    putLease({ pid: Number(dead.stdout), host: 'another-machine', at: Date.now() - LEASE_STALE_MS - 1000 });
    await library.close();

    library = await open();
    try {
      expect(rows(library, key)).toBe(0);
      expect(existsSync(keyDir(library.paths.indexDir, key))).toBe(false);
      // The stale lease itself is gone too.
      expect(library.store.db.prepare("SELECT count(*) AS n FROM meta WHERE key LIKE 'activation-lease:%'").get()).toEqual({ n: 0 });
    } finally {
      await library.close();
    }
  });
});
