/**
 * A library whose own folders sit inside an indexed folder (`--data-dir ~/Pictures/clipdex-data`, a cache
 * dir under ~/Pictures): its thumbnails, and anything else in those folders, are never taken for photos,
 * neither by `clipdex index` nor by the watcher.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { jpegBytes, waitFor, writeJpeg } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';

let tmp: string;
let modelDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-own-dirs-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 7 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const paths = (lib: Library) => (lib.store.db.prepare('SELECT path FROM images ORDER BY path').all() as { path: string }[]).map((r) => r.path);

describe("the library's own folders inside an indexed folder", () => {
  it('`clipdex index` indexes the photos only, not the thumbnails it wrote (run twice), nor the cache dir', async () => {
    const root = join(tmp, 'Pictures');
    const dataDir = join(root, 'clipdex-data');
    const cacheDir = join(root, 'cache');
    const photos = [join(root, 'a.jpg'), join(root, 'trip', 'b.jpg'), join(root, 'trip', 'c.jpg')];
    for (const [i, p] of photos.entries()) await writeJpeg(p, 10 + i);
    // Whatever lands in the cache (a model's sample picture, say) is clipdex's, not the user's.
    await writeJpeg(join(cacheDir, 'models', 'sample.jpg'), 20);
    const env = { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: cacheDir };
    for (const run of [1, 2]) {
      const r = await runCli(['--model', modelDir, 'index', root], env);
      expect(r.code, `run ${run}: ${r.stderr}`).toBe(0);
    }
    const lib = await openLibrary(dataDir, modelDir);
    try {
      // The thumbnails exist (so there was something to mistake for photos), and none is a row.
      expect(await lib.thumbnails.has(lib.images.getByPath(photos[0]!)!.contentHash!)).toBe(true);
      expect(paths(lib)).toEqual([...photos].sort());
      expect(lib.images.countByStatus()).toMatchObject({ indexed: photos.length, error: 0 });
    } finally {
      await lib.close();
    }
  }, 120_000);

  it('the watcher ignores what is written in the data dir, and a root inside it is refused', async () => {
    const root = join(tmp, 'Watched');
    const dataDir = join(root, 'data');
    await mkdir(root, { recursive: true });
    const lib = await openLibrary(dataDir, modelDir);
    const engine = await IngestEngine.start(lib, { roots: [root], stableMs: 300, debounceMs: 50 });
    try {
      await engine.idle();
      const first = join(root, 'first.jpg');
      await writeJpeg(first, 30);
      await waitFor(() => lib.images.getByPath(first)?.status === 'indexed', 'first.jpg indexed');
      // Its thumbnail is now in data/thumbnails; an image dropped straight into the data dir as well.
      await writeFile(join(dataDir, 'probe.jpg'), await jpegBytes(31));
      // Written after both, so by the time it is indexed their events have been seen and settled too.
      const sentinel = join(root, 'sentinel.jpg');
      await writeJpeg(sentinel, 32);
      await waitFor(() => lib.images.getByPath(sentinel)?.status === 'indexed', 'sentinel.jpg indexed');
      await engine.idle();
      expect(paths(lib)).toEqual([first, sentinel]);
      expect(paths(lib).filter((p) => p.startsWith(dataDir + sep))).toEqual([]);
      await expect(engine.addRoot(join(dataDir, 'thumbnails'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      await engine.close();
      await lib.close();
    }
  }, 60_000);
});
