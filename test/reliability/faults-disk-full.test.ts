/**
 * A full disk under the library. The data directory is a small tmpfs (the photos live elsewhere, as on a
 * laptop whose home disk fills up while the photos sit on a NAS): the real `clipdex serve` ingests until the
 * thumbnails, the database and its WAL have filled it, and then a ballast file takes the last bytes so that
 * SQLite's own writes fail too. While full: status and log say DISK_FULL with the folder and what to do, an
 * API write answers 507, searches keep answering, photos added and deleted meanwhile do not crash the server,
 * and the database passes integrity_check. Then space is freed (the ballast deleted, the tmpfs remounted
 * bigger) and ingestion resumes by itself and completes: every file indexed once, none recorded as failed
 * because of the disk.
 *
 * A second test saves an HNSW index (the real IndexManager and its build worker) onto a full tmpfs: the save
 * fails with DISK_FULL, searches go on from the graph in memory, and the save succeeds once there is room.
 *
 * Both need to mount a tmpfs (root); they skip and say so otherwise.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyDir } from '../../src/index/index-files.js';
import { IndexManager } from '../../src/index/index-manager.js';
import { imageFilesUnder } from '../helpers/ingest-library.js';
import { tinyModel } from '../helpers/library-fixture.js';
import { addIndexedImages, clusteredVectors, openTestLibrary, row } from '../helpers/store-fixtures.js';
import {
  api,
  canMount,
  freeBytes,
  indexedPaths,
  integrityCheck,
  mountTmpfs,
  NEEDS_MOUNT,
  remountTmpfs,
  sleep,
  spawnServe,
  STRESS,
  tempDir,
  unmount,
  waitFor,
  withDb,
  writePhotos,
  type Served,
} from './faults-support.js';

const MOUNTABLE = canMount();
/** Times the disk is filled and freed under one running server. */
const ROUNDS = STRESS ? 5 : 1;

let tmp: { dir: string; cleanup: () => Promise<void> };
let server: Served | null = null;

beforeAll(() => {
  tmp = tempDir('clipdex-faults-full-');
});
afterAll(async () => {
  await server?.kill();
  await tmp?.cleanup();
});

/** Writes 4 KB blocks until the file system says ENOSPC: whatever room was left is gone. */
function fillUp(path: string): number {
  const fd = openSync(path, 'a');
  const block = Buffer.alloc(4096, 0x5a);
  let bytes = 0;
  try {
    for (;;) bytes += writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return bytes;
}

interface Status {
  indexed: number;
  pending: number;
  failed: number;
  ingest: { phase: string; lastFailure: { code: string; message: string; at: number; resolvedAt: number | null } | null } | null;
}

describe.skipIf(!MOUNTABLE)(`a full disk under the library ${MOUNTABLE ? '' : NEEDS_MOUNT}`, () => {
  it('ingests until the tmpfs is full: a clear DISK_FULL, searches keep answering, no corruption; freed, ingestion resumes and completes', { timeout: 300_000 }, async () => {
    const modelDir = await tinyModel(tmp.dir, 23);
    const photos = join(tmp.dir, 'photos');
    const dataDir = join(tmp.dir, 'data');
    const dbPath = join(dataDir, 'library.db');
    // 640×480 noise: each thumbnail is ~40 KB of WebP (noise does not compress), so ~100 photos fill 5 MB
    // together with the database and its WAL.
    await writePhotos(photos, 1, 140, 640, 480);
    mountTmpfs(dataDir, '5m');
    try {
      server = spawnServe(['--model', modelDir, '--data-dir', dataDir], ['--root', photos]);
      const url = await server.ready;
      const status = async () => (await api<Status>(url, 'GET', '/api/status')).body;

      // Ingestion fills the disk by itself.
      const full = await waitFor(
        async () => {
          const st = await status();
          return st.ingest?.lastFailure?.code === 'DISK_FULL' ? st : undefined;
        },
        `a DISK_FULL failure while ingesting into a 5 MB tmpfs\n${server.log()}`,
        120_000,
        200,
      );
      expect(full.indexed).toBeGreaterThan(0);
      expect(full.indexed).toBeLessThan(140);
      expect(full.ingest!.lastFailure!.message).toContain(dataDir);
      expect(full.ingest!.lastFailure!.message).toMatch(/no space left.*free some space/);
      // The last bytes go too, so that SQLite's own writes (queueing, rows, labels) fail as well.
      const ballast = join(dataDir, 'ballast');
      fillUp(ballast);
      expect(freeBytes(dataDir)).toBeLessThan(4096);

      // While full: searches answer with everything indexed so far.
      const indexedNow = (await status()).indexed;
      const indexedIds = (await api<{ results: { id: number }[] }>(url, 'GET', '/api/search?q=noise&limit=500')).body.results.map((r) => r.id);
      expect(indexedIds.length).toBe(indexedNow);
      // API writes: SQLite may still reuse the space of its WAL for a while, but once that is used up a write
      // answers 507 DISK_FULL with a sentence, never 500 INTERNAL.
      let labelStatus = 0;
      let labelsWritten = 0;
      for (let i = 0; i < 400 && labelStatus !== 507; i++) {
        const res = await api<{ error: { code: string; message: string } }>(url, 'POST', '/api/labels', { imageIds: indexedIds.slice(0, 4), caption: `written on a full disk ${i} ${'x'.repeat(900)}` });
        labelStatus = res.status;
        if (res.status === 201) labelsWritten++;
        else {
          expect(res.status, JSON.stringify(res.body)).toBe(507);
          expect(res.body.error.code).toBe('DISK_FULL');
          expect(res.body.error.message).toMatch(/no space left on the disk holding the library database.*free some space/);
        }
      }
      expect(labelStatus).toBe(507);
      // Photos keep arriving and some are deleted (to make room, as a user would) while the disk is full.
      const pendingBefore = (await status()).pending;
      const late = await writePhotos(photos, 1000, 20, 640, 480);
      const gone = indexedPaths(dbPath, photos).slice(0, 5);
      for (const p of gone) rmSync(p);
      // Queueing the new photos fails in SQLite too (the engine says so and walks the folder again later), unless
      // SQLite found room in its WAL for the queue rows; either way they must all be indexed once there is room.
      const queuing = await waitFor(
        async () => {
          if (/clipdex: no space left on the disk holding the library database in /.test(server!.log())) return 'refused by SQLite';
          return (await status()).pending >= pendingBefore + late.length ? 'queued' : undefined;
        },
        `the new photos to be queued or refused\n${server.log()}`,
        30_000,
        200,
      );
      await sleep(3000); // the deletions' rename window passes; their removal fails on the full disk
      for (let i = 0; i < 5; i++) {
        const res = await api<{ results: unknown[] }>(url, 'GET', `/api/search?q=${encodeURIComponent(`query number ${i}`)}&limit=10`);
        expect(res.status).toBe(200);
        expect(res.body.results.length).toBe(10);
      }
      expect(server.alive()).toBe(true);
      expect(integrityCheck(dbPath)).toBe('ok');
      const log = server.log();
      expect(log).toMatch(/clipdex: no space left on the disk holding .*free some space there/);
      expect(log).not.toMatch(/internal error|SqliteError|ENOSPC: no space left on device, write\n/);

      // Room again: the ballast goes and the tmpfs grows.
      rmSync(ballast);
      remountTmpfs(dataDir, 'size=64m');
      const freedAt = Date.now();
      const expected = imageFilesUnder(photos);
      expect(expected.length).toBe(140 + late.length - gone.length);
      const done = await waitFor(
        async () => {
          const st = await status();
          return st.indexed === expected.length && st.pending === 0 && st.ingest?.phase === 'idle' ? st : undefined;
        },
        `ingestion to resume and complete after space was freed (${expected.length} photos)\n${server.log().slice(-3000)}`,
        120_000,
        250,
      );
      const recoveries = [Date.now() - freedAt];
      expect(done.failed).toBe(0);
      // The failure is kept to read, marked as over once files were indexed again.
      expect(done.ingest!.lastFailure).toMatchObject({ code: 'DISK_FULL', resolvedAt: expect.any(Number) });
      expect(done.ingest!.lastFailure!.resolvedAt!).toBeGreaterThanOrEqual(done.ingest!.lastFailure!.at);

      // Filled up and freed again, with photos arriving and leaving each time (STRESS=1: more rounds).
      for (let round = 1; round < ROUNDS; round++) {
        const since = Date.now();
        fillUp(ballast);
        await writePhotos(photos, 2000 + round * 100, 15, 640, 480);
        for (const p of indexedPaths(dbPath, photos).slice(0, 3)) rmSync(p);
        await waitFor(
          async () => {
            const f = (await status()).ingest?.lastFailure;
            return f?.code === 'DISK_FULL' && f.at >= since ? f : undefined;
          },
          `round ${round}: DISK_FULL again\n${server.log().slice(-2000)}`,
          60_000,
          200,
        );
        expect((await api(url, 'GET', `/api/search?q=round%20${round}&limit=5`)).status).toBe(200);
        expect(server.alive()).toBe(true);
        expect(integrityCheck(dbPath)).toBe('ok');
        rmSync(ballast);
        const freed = Date.now();
        const files = imageFilesUnder(photos);
        const st = await waitFor(
          async () => {
            const x = await status();
            return x.indexed === files.length && x.pending === 0 && x.ingest?.phase === 'idle' ? x : undefined;
          },
          `round ${round}: ingestion to complete after space was freed (${files.length} photos)\n${server.log().slice(-3000)}`,
          120_000,
          250,
        );
        expect(st.failed).toBe(0);
        recoveries.push(Date.now() - freed);
      }
      expected.splice(0, expected.length, ...imageFilesUnder(photos));
      expect(indexedPaths(dbPath, photos).sort()).toEqual(expected);
      const rows = withDb(dbPath, (db) => db.prepare('SELECT id, content_hash AS hash FROM images').all() as { id: number; hash: string }[]);
      expect(rows.length).toBe(expected.length);
      // Every indexed photo has its thumbnail (none was skipped because the disk was full when it was read).
      for (const r of rows) expect(existsSync(join(dataDir, 'thumbnails', r.hash.slice(0, 2), `${r.hash}.webp`)), r.hash).toBe(true);
      expect((await api(url, 'POST', '/api/labels', { imageIds: [rows[0]!.id], caption: 'written after the disk was freed' })).status).toBe(201);
      await server.stop();
      server = null;
      expect(integrityCheck(dbPath)).toBe('ok');
      console.log(
        `disk full: ${full.indexed} of 140 photos in when the 5 MB tmpfs filled; ${labelsWritten} label writes fit in the WAL before 507; ` +
          `${late.length} added (${queuing}) and ${gone.length} deleted while full; ${ROUNDS} full/freed rounds, recovered (all indexed) after ${recoveries.join(', ')} ms; ` +
          `${expected.length} photos at the end, 0 failed, integrity ok`,
      );
    } finally {
      await server?.kill();
      server = null;
      await unmount(dataDir);
    }
  });

  it('an index save on a full disk fails with DISK_FULL, searches go on from memory, and the next save succeeds', { timeout: 120_000 }, async () => {
    const dataDir = join(tmp.dir, 'index-data');
    mountTmpfs(dataDir, '3m');
    let lib: ReturnType<typeof openTestLibrary> | null = null;
    let m: IndexManager | null = null;
    try {
      const KEY = 'full-disk-test';
      const DIM = 32;
      lib = openTestLibrary(dataDir);
      const vectors = clusteredVectors(1200, DIM, { seed: 5 });
      addIndexedImages(lib, KEY, vectors, DIM, { count: 800 });
      // 800 ≥ exactBelow: the graph is built and saved at open.
      m = await IndexManager.open({ store: lib.store, indexDir: join(dataDir, 'index'), modelKey: KEY, exactBelow: 500, autoMerge: false });
      const saved = JSON.parse(readFileSync(join(keyDir(join(dataDir, 'index'), KEY), 'state.json'), 'utf8')) as { file: string; checkpointSeq: number };
      addIndexedImages(lib, KEY, vectors, DIM, { rootPath: '/later', start: 800, count: 400 });
      const ballast = join(dataDir, 'ballast');
      fillUp(ballast);

      await expect(m.merge()).rejects.toMatchObject({ code: 'DISK_FULL' });
      expect(m.health().lastError).toMatch(/no space left on the disk holding .*free some space/);
      // The previous graph and its state are untouched, and searches see all 1,200 from memory.
      const state = JSON.parse(readFileSync(join(keyDir(join(dataDir, 'index'), KEY), 'state.json'), 'utf8')) as { file: string; checkpointSeq: number };
      expect(state).toMatchObject(saved);
      const hits = await m.search(row(vectors, 1100, DIM), 1);
      expect(hits[0]!.score).toBeGreaterThan(0.9999);
      expect(m.health()).toMatchObject({ engine: 'hnsw', count: 1200, pending: 400 });

      rmSync(ballast);
      await m.merge();
      expect(m.health()).toMatchObject({ engine: 'hnsw', count: 1200, pending: 0, lastError: null });
      const after = JSON.parse(readFileSync(join(keyDir(join(dataDir, 'index'), KEY), 'state.json'), 'utf8')) as { file: string; checkpointSeq: number };
      expect(after.checkpointSeq).toBeGreaterThan(saved.checkpointSeq);
      expect(integrityCheck(join(dataDir, 'library.db'))).toBe('ok');
    } finally {
      await m?.close();
      lib?.close();
      await unmount(dataDir);
    }
  });
});
