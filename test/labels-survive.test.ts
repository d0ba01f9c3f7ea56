/**
 * The user's labels outlive the photo rows they were made on (issue 11): a label is keyed by the photo's
 * content, kept while no file in the library has that content, and attached again when the content
 * comes back under any path and row id. Real parts throughout: the self-built model, SQLite, chokidar.
 */
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import type { Library } from '../src/library/library.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { AdapterService } from '../src/train/adapter-service.js';
import { waitFor, writeJpeg } from './helpers/ingest-fixtures.js';
import { openLibrary } from './helpers/ingest-library.js';

const FAST = { stableMs: 400, debounceMs: 50 } as const;

let tmp: string;
let modelDir: string;
let counter = 0;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-labels-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 7 })).dir;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function fresh(name: string): Promise<{ root: string; dataDir: string }> {
  const n = ++counter;
  const root = join(tmp, `${name}-${n}`);
  await mkdir(root, { recursive: true });
  return { root, dataDir: join(tmp, `data-${n}`) };
}

/** Counts the files the engine ran through the encoder (an 'indexed' event with encoded: true). */
function encoderCalls(engine: IngestEngine): { readonly n: number } {
  const counted = { n: 0 };
  engine.onEvent((e) => {
    if (e.type === 'indexed' && e.encoded) counted.n++;
  });
  return counted;
}

const embeddingRows = (lib: Library) =>
  lib.store.db.prepare('SELECT id, content_hash AS hash FROM embeddings ORDER BY id').all() as { id: number; hash: string }[];

/** Every label as the Labels page lists it: caption → where its photo is and what state it is in. */
function listed(lib: Library): Map<string, { imageId: number | null; path: string; photo: string; missingSince: number | null }> {
  return new Map(lib.pairs.page({}, 1000).map((p) => [p.caption, { imageId: p.imageId, path: p.path, photo: p.photo, missingSince: p.missingSince }]));
}

describe('labels survive', () => {
  it('a folder removed and added back: labels kept while it is gone, attached again after, nothing re-encoded', async () => {
    const { root, dataDir } = await fresh('readd');
    for (let i = 0; i < 4; i++) await writeJpeg(join(root, `p${i}.jpg`), 100 + i);
    const lib = await openLibrary(dataDir, modelDir);
    const engine = await IngestEngine.start(lib, { ...FAST, watch: false });
    const encoded = encoderCalls(engine);
    try {
      const added = await engine.addRoot(root);
      await engine.idle();
      expect(encoded.n).toBe(4);
      const p0 = lib.images.getByPath(join(root, 'p0.jpg'))!;
      const p1 = lib.images.getByPath(join(root, 'p1.jpg'))!;
      lib.pairs.addUnique(p0.id, 'our red kayak');
      lib.pairs.addUnique(p1.id, "grandma's garden");
      const embeddingsBefore = embeddingRows(lib);

      const removedAt = Date.now();
      expect(await engine.removeRoot(added.id)).toBe(true);
      // Garbage collection runs by itself once idle; here it is run outright so the test does not race it.
      await engine.collectGarbage();
      const away = listed(lib);
      expect(away.get('our red kayak')).toMatchObject({ imageId: null, path: p0.path, photo: 'missing' });
      expect(away.get('our red kayak')!.missingSince).toBeGreaterThanOrEqual(removedAt - 1000);
      expect(away.get("grandma's garden")).toMatchObject({ imageId: null, path: p1.path, photo: 'missing' });
      // The removed folder's content keeps its embeddings (and thumbnails) for a while.
      expect(embeddingRows(lib)).toEqual(embeddingsBefore);
      expect(await lib.thumbnails.has(p0.contentHash!)).toBe(true);

      await engine.addRoot(root);
      await engine.idle();
      const again0 = lib.images.getByPath(p0.path)!;
      expect(again0.id).not.toBe(p0.id);
      const back = listed(lib);
      expect(back.get('our red kayak')).toEqual({ imageId: again0.id, path: p0.path, photo: 'ok', missingSince: null });
      expect(back.get("grandma's garden")).toMatchObject({ imageId: lib.images.getByPath(p1.path)!.id, photo: 'ok' });
      expect(encoded.n).toBe(4);
      expect(embeddingRows(lib)).toEqual(embeddingsBefore);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('a move the watcher cannot pair (new mtime, after the rename hold expired): the label follows the content', async () => {
    const { root, dataDir } = await fresh('move');
    await writeJpeg(join(root, 'kayak.jpg'), 200);
    await writeJpeg(join(root, 'other.jpg'), 201);
    const lib = await openLibrary(dataDir, modelDir);
    const engine = await IngestEngine.start(lib, { ...FAST, roots: [root], renameWindowMs: 300 });
    const encoded = encoderCalls(engine);
    try {
      await engine.idle();
      expect(encoded.n).toBe(2);
      const before = lib.images.getByPath(join(root, 'kayak.jpg'))!;
      const pair = lib.pairs.addUnique(before.id, 'our red kayak').pair;
      const bytes = await readFile(before.path);
      await rm(before.path);
      await waitFor(() => lib.images.getByPath(before.path) === undefined, 'the deleted row to be swept after its hold');
      expect(listed(lib).get('our red kayak')).toMatchObject({ imageId: null, photo: 'missing' });

      // The same content appears elsewhere, written anew (another mtime): an addition, not a rename.
      const moved = join(root, 'trips', 'kayak-2024.jpg');
      await mkdir(join(root, 'trips'));
      await writeFile(moved, bytes);
      const after = await waitFor(() => {
        const row = lib.images.getByPath(moved);
        return row?.status === 'indexed' ? row : undefined;
      }, 'the moved photo to be indexed');
      expect(after.id).not.toBe(before.id);
      expect(lib.pairs.get(pair.id)).toMatchObject({ imageId: after.id, caption: 'our red kayak', missingSince: null });
      expect(listed(lib).get('our red kayak')).toMatchObject({ imageId: after.id, path: moved, photo: 'ok' });
      expect(encoded.n).toBe(2);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('a share inside a root goes away and comes back as new rows: its labels come back, nothing re-encoded', async () => {
    const { root, dataDir } = await fresh('share');
    const share = join(root, 'nas');
    await mkdir(share);
    for (let i = 0; i < 3; i++) await writeJpeg(join(share, `n${i}.jpg`), 300 + i);
    await writeJpeg(join(root, 'local.jpg'), 310);
    const lib = await openLibrary(dataDir, modelDir);
    const engine = await IngestEngine.start(lib, { ...FAST, roots: [root], renameWindowMs: 300 });
    const encoded = encoderCalls(engine);
    try {
      await engine.idle();
      expect(encoded.n).toBe(4);
      const ids = [0, 1, 2].map((i) => lib.images.getByPath(join(share, `n${i}.jpg`))!.id);
      ids.forEach((id, i) => lib.pairs.addUnique(id, `share photo ${i}`));
      const embeddingsBefore = embeddingRows(lib);

      // Unmounted: to the watcher the share's folder and files are deleted.
      const away = `${root}-nas-away`;
      await rename(share, away);
      await waitFor(() => ids.every((id) => lib.images.get(id) === undefined), "the share's rows to be removed");
      await engine.idle();
      await engine.collectGarbage();
      for (let i = 0; i < 3; i++) expect(listed(lib).get(`share photo ${i}`)).toMatchObject({ imageId: null, photo: 'missing' });

      await rename(away, share);
      await waitFor(() => [0, 1, 2].every((i) => lib.images.getByPath(join(share, `n${i}.jpg`))?.status === 'indexed'), 'the share back');
      for (let i = 0; i < 3; i++) {
        const row = lib.images.getByPath(join(share, `n${i}.jpg`))!;
        expect(ids).not.toContain(row.id);
        expect(listed(lib).get(`share photo ${i}`)).toEqual({ imageId: row.id, path: row.path, photo: 'ok', missingSince: null });
      }
      expect(encoded.n).toBe(4);
      expect(embeddingRows(lib)).toEqual(embeddingsBefore);
    } finally {
      await engine.close();
      await lib.close();
    }
  });

  it('a root that goes offline: its labels are listed as offline, skipped by training with the reason, and back with it', async () => {
    const { root, dataDir } = await fresh('offline');
    for (let i = 0; i < 6; i++) await writeJpeg(join(root, `o${i}.jpg`), 400 + i);
    const other = `${root}-local`;
    await mkdir(other);
    for (let i = 0; i < 6; i++) await writeJpeg(join(other, `l${i}.jpg`), 500 + i);
    const lib = await openLibrary(dataDir, modelDir);
    let engine = await IngestEngine.start(lib, { roots: [root, other], watch: false });
    await engine.idle();
    await engine.close();
    const offlineIds = [0, 1].map((i) => lib.images.getByPath(join(root, `o${i}.jpg`))!.id);
    offlineIds.forEach((id) => lib.pairs.addUnique(id, 'beach'));
    for (let i = 0; i < 6; i++) lib.pairs.addUnique(lib.images.getByPath(join(other, `l${i}.jpg`))!.id, i % 2 ? 'forest' : 'beach');

    const away = `${root}-away`;
    await rename(root, away);
    engine = await IngestEngine.start(lib, { ...FAST, offlineCheckMs: 200 });
    try {
      await engine.idle();
      const offline = lib.pairs.page({ caption: 'beach' }, 100).filter((p) => offlineIds.includes(p.imageId ?? -1));
      expect(offline.map((p) => p.photo)).toEqual(['offline', 'offline']);

      const result = await new AdapterService(lib).train({ epochs: 2, seed: 1 });
      expect(result.skippedPairs).toBe(2);
      expect(result.skipped).toEqual([
        expect.objectContaining({ pairId: offline[0]!.id, reason: expect.stringMatching(/offline/) }),
        expect.objectContaining({ pairId: offline[1]!.id, reason: expect.stringMatching(/offline/) }),
      ]);

      await rename(away, root);
      await waitFor(() => engine.status().roots.every((r) => r.state === 'ok'), 'the root back online', 20_000);
      await engine.idle();
      const back = lib.pairs.page({ caption: 'beach' }, 100).filter((p) => offlineIds.includes(p.imageId ?? -1));
      expect(back.map((p) => p.photo)).toEqual(['ok', 'ok']);
    } finally {
      await engine.close();
      await lib.close();
    }
  });
});
