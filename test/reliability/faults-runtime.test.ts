/**
 * Things going wrong around a running `clipdex serve` (the real CLI): each must give a clear message in
 * status and in the log while the server keeps serving what it can.
 *
 * - The model directory missing, a model file missing or a model file truncated at start: the server starts,
 *   status names the problem and the fix, searches answer 503 JSON, folders and status work; with the model
 *   back, the next start indexes what was waiting.
 * - The model deleted while the server runs: what is loaded keeps working (the text tower in the server, the
 *   image tower in the encoder thread); nothing reports it until the next start, which then says
 *   MODEL_NOT_FOUND. (Noted, not changed: nothing in the running server reads the model files again.)
 * - The index folder deleted while running (a library above the HNSW threshold): searches go on from memory,
 *   status.index says the files are gone, a restart rebuilds them and says why; in-process, the next merge
 *   recreates them instead of failing on the missing graph every minute.
 * - The database made read-only, while running and at start. As root, chmod stops nothing, and
 *   `mount -o remount,ro` of a tmpfs is refused while the server holds the database open for writing
 *   ("mount point is busy"); `chattr +i` makes the kernel refuse writes even through descriptors already open
 *   (EPERM), which is what a file system gone read-only (EROFS) does to a running process: SQLite's write
 *   fails either way. At start, SQLite opens a file it may not write read-only: searches work, indexing says
 *   the database is read-only. Made writable again, indexing resumes (while running) or restarts (at start).
 * - A watched folder deleted, and a tmpfs-mounted watched folder unmounted, while running: both roots go
 *   offline with the reason (status and log), their photos are kept (same rows, same ids), searches go on over
 *   the folder that stayed, and both come back by themselves when restored.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyDir } from '../../src/index/index-files.js';
import { IndexManager } from '../../src/index/index-manager.js';
import { IndexChangesRepo } from '../../src/store/index-changes-repo.js';
import { imageFilesUnder } from '../helpers/ingest-library.js';
import { tinyModel } from '../helpers/library-fixture.js';
import { addIndexedImages, clusteredVectors, openTestLibrary, row } from '../helpers/store-fixtures.js';
import {
  addArchive,
  api,
  canMount,
  HNSW_THRESHOLD,
  indexedPaths,
  integrityCheck,
  mountTmpfs,
  NEEDS_MOUNT,
  spawnServe,
  STRESS,
  tempDir,
  unmount,
  waitFor,
  withDb,
  writePhotos,
  type Served,
} from './faults-support.js';

/** Times the two watched folders go away and come back under one server. */
const ROOT_ROUNDS = STRESS ? 5 : 1;

let tmp: { dir: string; cleanup: () => Promise<void> };
let modelDir: string;
const servers = new Set<Served>();

beforeAll(async () => {
  tmp = tempDir('clipdex-faults-runtime-');
  modelDir = await tinyModel(tmp.dir, 29);
});
afterAll(async () => {
  for (const s of servers) await s.kill();
  await tmp?.cleanup();
});

async function serve(model: string, dataDir: string, roots: string[]): Promise<Served & { url: string }> {
  const s = spawnServe(['--model', model, '--data-dir', dataDir], roots.length ? ['--root', ...roots] : []);
  servers.add(s);
  void s.exited.then(() => servers.delete(s));
  await s.ready;
  return s as Served & { url: string };
}

interface Status {
  indexed: number;
  pending: number;
  failed: number;
  offline: number;
  model: { ready: boolean; key: string | null; error: { code: string; message: string; fix: string } | null };
  index: { engine: string; count: number; lastError: string | null; lastRebuildReason: string | null } | null;
  ingest: {
    phase: string;
    lastFailure: { code: string; message: string } | null;
    roots: { id: number; path: string; state: string; stateReason: string | null }[];
  } | null;
  roots: { id: number; path: string }[];
}

const status = async (url: string) => {
  const res = await api<Status>(url, 'GET', '/api/status');
  expect(res.status).toBe(200);
  return res.body;
};

async function indexed(s: Served & { url: string }, n: number, timeoutMs = 60_000): Promise<Status> {
  return waitFor(
    async () => {
      const st = await status(s.url);
      return st.indexed === n && st.pending === 0 && st.ingest?.phase === 'idle' ? st : undefined;
    },
    `${n} photos indexed\n${s.log().slice(-2000)}`,
    timeoutMs,
    150,
  );
}

/** A search answers with JSON; its status and body. */
async function search(url: string, q: string) {
  const res = await fetch(`${url}/api/search?q=${encodeURIComponent(q)}&limit=100`);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return { status: res.status, body: (await res.json()) as { results?: { id: number; path: string }[]; error?: { code: string; message: string } } };
}

describe('the model', () => {
  it('missing or corrupt at start: the server starts, says what and how to fix, search is 503 (a damaged image tower alone: text search works), folders and status work; repaired, it indexes', { timeout: 120_000 }, async () => {
    const dataDir = join(tmp.dir, 'model-data');
    const photos = join(tmp.dir, 'model-photos');
    await writePhotos(photos, 100, 12);
    const broken = {
      'the model folder is missing': () => join(tmp.dir, 'no-such-model'),
      'text_model.onnx is missing': () => {
        const dir = join(tmp.dir, 'model-without-text');
        cpSync(modelDir, dir, { recursive: true });
        unlinkSync(join(dir, 'onnx', 'text_model.onnx'));
        return dir;
      },
    };
    const seen: Record<string, { code: string; fix: string }> = {};
    for (const [what, make] of Object.entries(broken)) {
      const model = make();
      const s = await serve(model, dataDir, [photos]);
      const st = await status(s.url);
      expect(st.model.ready, what).toBe(false);
      expect(st.model.error, what).not.toBeNull();
      const { code, message, fix } = st.model.error!;
      expect(['MODEL_NOT_FOUND', 'MODEL_INVALID'], `${what}: ${code}`).toContain(code);
      expect(message, what).toContain(model);
      // The fix names a command to run and says to restart.
      expect(fix, what).toMatch(/clipdex models pull .*restart the server/);
      seen[what] = { code, fix };
      const q = await search(s.url, 'a dog on a beach');
      expect(q.status, what).toBe(503);
      expect(q.body.error?.code, what).toBe(code);
      // Folders and status still answer; the folder given is remembered for when the model is there.
      const roots = await api<{ roots: { path: string }[] }>(s.url, 'GET', '/api/roots');
      expect(roots.status).toBe(200);
      expect(roots.body.roots.map((r) => r.path)).toEqual([photos]);
      expect((await api(s.url, 'GET', '/api/images/1')).status).toBe(404);
      expect(s.log()).toContain(`clipdex: ${message}`);
      expect(s.log()).toContain('serving without search until the model is available');
      await s.stop();
    }
    expect(seen['the model folder is missing']!.code).toBe('MODEL_NOT_FOUND');

    // Only the image tower damaged: it opens after the server listens, so the text tower still answers
    // searches over what is indexed, while the status, the log and the indexing say what is wrong and how to fix it.
    {
      const truncated = join(tmp.dir, 'model-truncated');
      cpSync(modelDir, truncated, { recursive: true });
      truncateSync(join(truncated, 'onnx', 'vision_model.onnx'), 4096);
      const s = await serve(truncated, dataDir, [photos]);
      const st = await waitFor(
        async () => {
          const now = (await api<Status & { model: { imageTower: unknown } }>(s.url, 'GET', '/api/status')).body;
          return now.model.imageTower !== 'opening' ? now : undefined;
        },
        `the image tower settled\n${s.log()}`,
        60_000,
        150,
      );
      expect(st.model).toMatchObject({
        ready: true,
        error: null,
        imageTower: { state: 'failed', error: { code: 'MODEL_INVALID', message: expect.stringContaining(truncated), fix: expect.stringMatching(/damaged or incomplete.*clipdex models pull .*restart the server/s) } },
      });
      const q = await search(s.url, 'a dog on a beach');
      expect(q.status).toBe(200);
      expect(q.body.results).toEqual([]);
      expect(s.log()).toContain('clipdex: the image tower cannot be opened');
      expect(st.indexed).toBe(0);
      seen['vision_model.onnx is truncated'] = { code: 'MODEL_INVALID', fix: '' };
      await s.stop();
    }

    // The model is back: the next start indexes the folder that waited.
    const s = await serve(modelDir, dataDir, []);
    await indexed(s, 12);
    const q = await search(s.url, 'a dog on a beach');
    expect(q.status).toBe(200);
    expect(q.body.results).toHaveLength(12);
    await s.stop();
    console.log(`model at start: ${JSON.stringify(Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v.code])))}`);
  });

  it('deleted while running: what is loaded keeps working; the next start says MODEL_NOT_FOUND and keeps the photos', { timeout: 120_000 }, async () => {
    const dataDir = join(tmp.dir, 'gone-data');
    const photos = join(tmp.dir, 'gone-photos');
    const model = join(tmp.dir, 'model-to-delete');
    cpSync(modelDir, model, { recursive: true });
    await writePhotos(photos, 200, 12);
    let s = await serve(model, dataDir, [photos]);
    await indexed(s, 12);
    rmSync(model, { recursive: true });

    // A phrase never seen (no cache) still encodes: the text tower is in memory.
    const q = await search(s.url, 'a phrase nobody searched before the model was deleted');
    expect(q.status).toBe(200);
    expect(q.body.results).toHaveLength(12);
    // A new photo is still encoded: the image tower lives in the encoder thread.
    await writePhotos(photos, 300, 3);
    const st = await indexed(s, 15);
    // Nothing reports the deletion while running (nothing reads the files again).
    expect(st.model).toMatchObject({ ready: true, error: null });
    await s.stop();

    s = await serve(model, dataDir, [photos]);
    const after = await status(s.url);
    expect(after.model.error).toMatchObject({ code: 'MODEL_NOT_FOUND', fix: expect.stringMatching(/clipdex models pull/) });
    expect(after.indexed).toBe(15); // the photos stay; only searching waits
    expect((await search(s.url, 'anything')).status).toBe(503);
    expect((await api(s.url, 'GET', '/api/roots')).status).toBe(200);
    await s.stop();
  });
});

describe('the index folder', () => {
  it('deleted while running (HNSW library): searches go on, status says so, a restart rebuilds it and says why', { timeout: 240_000 }, async () => {
    const dataDir = join(tmp.dir, 'hnsw-data');
    const photos = join(tmp.dir, 'hnsw-photos');
    await writePhotos(photos, 400, 20);
    await addArchive(dataDir, modelDir, join(tmp.dir, 'hnsw-archive'), HNSW_THRESHOLD + 200);
    const total = HNSW_THRESHOLD + 220;
    let s = await serve(modelDir, dataDir, [photos]);
    let st = await waitFor(async () => {
      const x = await status(s.url);
      return x.indexed === total && x.pending === 0 ? x : undefined;
    }, `${total} indexed\n${s.log()}`, 120_000);
    expect(st.index).toMatchObject({ engine: 'hnsw', lastError: null });
    const dir = keyDir(join(dataDir, 'index'), st.model.key!);
    expect(existsSync(join(dir, 'state.json'))).toBe(true);

    rmSync(join(dataDir, 'index'), { recursive: true });
    const q = await search(s.url, 'a photo of a lake');
    expect(q.status).toBe(200);
    expect(q.body.results).toHaveLength(100);
    st = await status(s.url);
    expect(st.index).toMatchObject({ engine: 'hnsw', count: total });
    expect(st.index!.lastError).toMatch(/index files in .* are gone .*searches use the copy in memory.*rebuilds them/);
    await s.stop();

    s = await serve(modelDir, dataDir, [photos]);
    st = await status(s.url);
    expect(existsSync(join(dir, 'state.json'))).toBe(true);
    expect(st.index).toMatchObject({ engine: 'hnsw', count: total, lastError: null });
    expect(st.index!.lastRebuildReason).toMatch(/saved index files .* were missing; rebuilt from the database/);
    expect(s.log()).toMatch(/clipdex: index for .* is missing from .*, rebuilding from the database/);
    expect((await search(s.url, 'a photo of a lake')).body.results).toHaveLength(100);
    await s.stop();
  });

  it('deleted while running (in-process): the next merge recreates it instead of failing on the missing graph', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmp.dir, 'merge-'));
    const lib = openTestLibrary(dir);
    const KEY = 'deleted-folder';
    const DIM = 24;
    const vectors = clusteredVectors(700, DIM, { seed: 3 });
    addIndexedImages(lib, KEY, vectors, DIM, { count: 600 });
    const errors: string[] = [];
    const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, exactBelow: 500, mergeAbove: 50, onError: (e) => errors.push(String(e)) });
    try {
      expect(m.health()).toMatchObject({ engine: 'hnsw', lastError: null });
      rmSync(lib.indexDir, { recursive: true });
      expect(m.health().lastError).toMatch(/are gone/);
      addIndexedImages(lib, KEY, vectors, DIM, { rootPath: '/more', start: 600, count: 100 });
      m.sync(); // 100 waiting ≥ mergeAbove: a background merge starts
      await m.idle();
      expect(errors).toEqual([]);
      expect(existsSync(join(keyDir(lib.indexDir, KEY), 'state.json'))).toBe(true);
      expect(m.health()).toMatchObject({ engine: 'hnsw', count: 700, pending: 0, lastError: null });
      const { ids, duplicated } = m.contents();
      expect(duplicated).toEqual([]);
      expect(ids).toEqual(new IndexChangesRepo(lib.store.db).memberIds(KEY));
      expect((await m.search(row(vectors, 650, DIM), 1))[0]!.score).toBeGreaterThan(0.9999);
    } finally {
      await m.close();
      lib.close();
    }
  });
});

const occurrences = (text: string, part: string) => text.split(part).length - 1;

/** True when `chattr +i` works on files under `dir` (root on a file system that supports it). */
function chattrWorks(dir: string): boolean {
  const probe = join(dir, 'chattr-probe');
  writeFileSync(probe, 'x');
  const ok = spawnSync('chattr', ['+i', probe]).status === 0;
  if (ok) spawnSync('chattr', ['-i', probe]);
  rmSync(probe, { force: true });
  return ok;
}

describe('the database made read-only', () => {
  it('(chattr +i) while running and at start: a clear error, searches keep working; writable again, indexing resumes', { timeout: 180_000 }, async (ctx) => {
    if (!chattrWorks(tmp.dir)) ctx.skip('(skipped: chattr +i is not available here; it needs root and a file system with the immutable flag)');
    const dataDir = join(tmp.dir, 'ro-data');
    const photos = join(tmp.dir, 'ro-photos');
    const db = join(dataDir, 'library.db');
    await writePhotos(photos, 500, 12);
    const immutable = (on: boolean) => {
      const files = [db, `${db}-wal`].filter((f) => existsSync(f));
      const r = spawnSync('chattr', [on ? '+i' : '-i', ...files], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
    };
    let s = await serve(modelDir, dataDir, [photos]);
    try {
      await indexed(s, 12);
      immutable(true);
      await writePhotos(photos, 600, 4);
      const failed = await waitFor(
        async () => {
          const st = await status(s.url);
          return st.ingest?.lastFailure?.code?.startsWith('STORAGE_') ? st : undefined;
        },
        `a storage failure in status\n${s.log()}`,
        30_000,
        200,
      );
      const failure = failed.ingest!.lastFailure!;
      expect(failure.message).toContain(`the library database in ${dataDir}`);
      expect(failure.message).toMatch(/read-only|I\/O error/);
      expect(failure.message).toMatch(/searches keep working, indexing waits/);
      expect(s.log()).toContain(`clipdex: ${failure.message}`);
      expect(s.log()).not.toMatch(/internal error|SqliteError/);
      // Searches go on; a write through the API answers 503 with the same sentence, not 500.
      const q = await search(s.url, 'a cat');
      expect(q.status).toBe(200);
      expect(q.body.results).toHaveLength(12);
      const label = await api<{ error: { code: string } }>(s.url, 'POST', '/api/labels', { imageIds: [q.body.results![0]!.id], caption: 'on a read-only disk' });
      expect(label.status).toBe(503);
      expect(label.body.error.code).toMatch(/^STORAGE_/);
      expect(integrityCheck(db)).toBe('ok');

      // Writable again: what arrived meanwhile gets indexed without a restart.
      immutable(false);
      await indexed(s, 16, 60_000);
      await s.stop();

      // At start: SQLite opens the file read-only; searches work, indexing says what to do.
      immutable(true);
      await writePhotos(photos, 700, 2);
      s = await serve(modelDir, dataDir, [photos]);
      const st = await waitFor(async () => {
        const x = await status(s.url);
        return x.ingest?.lastFailure ? x : undefined;
      }, `indexing to report the read-only database\n${s.log()}`, 30_000);
      expect(st.model).toMatchObject({ ready: true, error: null });
      expect(st.ingest!.lastFailure).toMatchObject({ code: 'STORAGE_READ_ONLY', message: expect.stringMatching(/read-only .*restart clipdex/) });
      expect((await search(s.url, 'a cat')).body.results).toHaveLength(16);
      await s.stop();
      immutable(false);
      s = await serve(modelDir, dataDir, [photos]);
      await indexed(s, 18);
      await s.stop();
      expect(integrityCheck(db)).toBe('ok');
    } finally {
      await s.kill();
      spawnSync('chattr', ['-i', db, `${db}-wal`]);
    }
  });
});

describe.skipIf(!canMount())(`watched folders ${canMount() ? '' : NEEDS_MOUNT}`, () => {
  it('one deleted and one (tmpfs) unmounted while running: offline with the reason, photos kept, searches go on, both come back', { timeout: 180_000 }, async () => {
    const dataDir = join(tmp.dir, 'roots-data');
    const deleted = join(tmp.dir, 'roots-deleted');
    const mounted = join(tmp.dir, 'roots-mounted');
    const stays = join(tmp.dir, 'roots-stays');
    const backup = join(tmp.dir, 'roots-backup');
    await writePhotos(deleted, 800, 10);
    await writePhotos(stays, 900, 10);
    await writePhotos(join(backup, 'mounted'), 1000, 10);
    mountTmpfs(mounted, '8m');
    try {
      cpSync(join(backup, 'mounted'), mounted, { recursive: true, preserveTimestamps: true });
      cpSync(deleted, join(backup, 'deleted'), { recursive: true, preserveTimestamps: true });
      const s = await serve(modelDir, dataDir, [deleted, mounted, stays]);
      await indexed(s, 30);
      const idsBefore = withDb(join(dataDir, 'library.db'), (db) => db.prepare('SELECT id, path FROM images ORDER BY id').all());

      // STRESS=1: gone and back several times under the same server.
      const backAfterMs: number[] = [];
      for (let round = 0; round < ROOT_ROUNDS; round++) {
        rmSync(deleted, { recursive: true });
        await unmount(mounted);
        const down = await waitFor(
          async () => {
            const st = await status(s.url);
            const offline = st.ingest!.roots.filter((r) => r.state === 'offline').map((r) => r.path);
            return offline.length === 2 && st.indexed === 10 ? st : undefined;
          },
          `both roots offline\n${s.log()}`,
          60_000,
          200,
        );
        for (const root of [deleted, mounted]) {
          const r = down.ingest!.roots.find((x) => x.path === root)!;
          expect(r.stateReason, root).toMatch(/vanished|unmounted|not the one scanned before|empty folder/);
          expect(occurrences(s.log(), `clipdex: folder ${root} is offline (`)).toBe(round + 1);
        }
        expect(down.ingest!.roots.find((x) => x.path === stays)!.state).toBe('ok');
        // Kept, not deleted: the same rows, waiting offline.
        expect(down.offline).toBe(20);
        expect(withDb(join(dataDir, 'library.db'), (db) => db.prepare('SELECT id, path FROM images ORDER BY id').all())).toEqual(idsBefore);
        const q = await search(s.url, 'a red bicycle');
        expect(q.status).toBe(200);
        expect(q.body.results!.map((r) => r.path).sort()).toEqual(imageFilesUnder(stays));

        // Back: the folder restored, the share mounted again (a new tmpfs, so a new device id) with its files.
        cpSync(join(backup, 'deleted'), deleted, { recursive: true, preserveTimestamps: true });
        mountTmpfs(mounted, '8m');
        cpSync(join(backup, 'mounted'), mounted, { recursive: true, preserveTimestamps: true });
        const restoredAt = Date.now();
        const up = await indexed(s, 30, 60_000);
        backAfterMs.push(Date.now() - restoredAt);
        expect(up.offline).toBe(0);
        expect(up.ingest!.roots.every((r) => r.state === 'ok')).toBe(true);
        expect(occurrences(s.log(), `clipdex: folder ${deleted} is back online`)).toBe(round + 1);
        expect(occurrences(s.log(), `clipdex: folder ${mounted} is back online`)).toBe(round + 1);
        // The same photos (same ids), not new rows.
        expect(withDb(join(dataDir, 'library.db'), (db) => db.prepare('SELECT id, path FROM images ORDER BY id').all())).toEqual(idsBefore);
        expect(indexedPaths(join(dataDir, 'library.db')).length).toBe(30);
        expect((await search(s.url, 'a red bicycle')).body.results).toHaveLength(30);
      }
      console.log(`watched folders: ${ROOT_ROUNDS} rounds of one folder deleted and one tmpfs unmounted; 20 photos kept offline each time, back with the same ids after ${backAfterMs.join(', ')} ms`);
      await s.stop();
    } finally {
      await unmount(mounted);
    }
  });
});
