/**
 * Crash safety of ingestion through the real CLI: `clipdex index` is SIGKILLed at random moments of a
 * large ingest (during the scan, mid-encoding, right after a batch is written), restarted each time,
 * and the library finally holds every file exactly once with nothing left queued.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/ingest/content-hash.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { CLI, runCli } from './helpers/cli.js';
import { sleep } from './helpers/ingest-fixtures.js';
import { imageFilesUnder, openLibrary, tinyJpeg } from './helpers/ingest-library.js';
import { rng } from './helpers/store-fixtures.js';

const FILES = 400;
// 9 in CI (20 minutes on 2 cores for the whole suite); STRESS=1 for a long run.
const KILLS = process.env.STRESS === '1' ? 40 : 9;

let tmp: string;
let modelDir: string;
let root: string;
let env: Record<string, string>;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-ingest-crash-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 5 })).dir;
  root = join(tmp, 'photos');
  for (let i = 0; i < FILES; i += 50) {
    await Promise.all(
      Array.from({ length: 50 }, async (_, k) => {
        const dir = join(root, `d${(i + k) % 8}`);
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, `p${i + k}.jpg`), await tinyJpeg(50_000 + i + k, 48, 36));
      }),
    );
  }
  env = { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') };
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Indexed rows as another process sees them (WAL: a reader never blocks the writer). */
function indexedCount(dbPath: string): number {
  let db: Database.Database | undefined;
  try {
    db = new Database(dbPath, { readonly: true, fileMustExist: true });
    return (db.prepare("SELECT count(*) AS n FROM images WHERE status = 'indexed'").get() as { n: number }).n;
  } catch {
    return 0; // not created yet, or mid-migration
  } finally {
    db?.close();
  }
}

describe('SIGKILL during `clipdex index`', () => {
  it(`${KILLS} kills at random moments, then one full run: every file exactly once, nothing stuck in the queue`, async () => {
    const random = rng(2024);
    const dbPath = join(env.CLIPDEX_DATA_DIR!, 'library.db');
    const killedMidEncoding: number[] = [];
    for (let round = 0; round < KILLS; round++) {
      const before = indexedCount(dbPath);
      const child = spawn(process.execPath, [CLI, '--model', modelDir, 'index', root], {
        env: { ...process.env, ...env },
        stdio: 'ignore',
      });
      const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
      let finished = false;
      void exited.then(() => (finished = true));
      if (round % 3 === 0) {
        // Early: while the database opens, the scan walks, the first batches are read.
        await Promise.race([sleep(200 + random() * 1500), exited]);
      } else {
        // Mid-encoding: after a random number of files has landed since this run began.
        const target = before + 1 + Math.floor(random() * 40);
        const deadline = Date.now() + 30_000;
        while (!finished && indexedCount(dbPath) < target && Date.now() < deadline) await sleep(5);
        await sleep(random() * 30);
      }
      if (!finished) {
        child.kill('SIGKILL');
        if (indexedCount(dbPath) > before) killedMidEncoding.push(round);
      }
      await exited;
    }
    // The kills must have landed while work was being done, not after a finished run.
    expect(killedMidEncoding.length).toBeGreaterThanOrEqual(Math.floor(KILLS / 2));
    expect(indexedCount(dbPath)).toBeLessThan(FILES);

    const final = await runCli(['--model', modelDir, '--json', 'index', root], env);
    expect(final.code, final.stderr).toBe(0);
    const summary = JSON.parse(final.stdout) as { indexed: number; pending: number; failed: number };
    expect(summary).toMatchObject({ indexed: FILES, pending: 0, failed: 0 });

    const files = imageFilesUnder(root);
    expect(files).toHaveLength(FILES);
    const lib = await openLibrary(env.CLIPDEX_DATA_DIR!, modelDir);
    try {
      const db = lib.store.db;
      const rows = db.prepare('SELECT id, path, status, content_hash AS hash FROM images ORDER BY path').all() as {
        id: number; path: string; status: string; hash: string;
      }[];
      expect(rows.map((r) => r.path)).toEqual(files);
      expect(rows.every((r) => r.status === 'indexed')).toBe(true);
      expect((db.prepare('SELECT count(*) AS n FROM ingest_queue').get() as { n: number }).n).toBe(0);
      // Each row's hash is its file's content, and has exactly one embedding under the model's key.
      const { key, index } = lib.requireModel();
      for (const r of rows.filter((_, i) => i % 40 === 0)) expect(r.hash).toBe(sha256Hex(await readFile(r.path)));
      const embedded = db.prepare('SELECT count(*) AS n FROM embeddings WHERE model_key = ?').get(key) as { n: number };
      expect(embedded.n).toBe(new Set(rows.map((r) => r.hash)).size);
      const missing = db
        .prepare('SELECT count(*) AS n FROM images i WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.content_hash = i.content_hash AND e.model_key = ?)')
        .get(key) as { n: number };
      expect(missing.n).toBe(0);
      // The vector index agrees with SQLite: every image once.
      index.sync();
      const contents = index.contents();
      expect(contents.duplicated).toEqual([]);
      expect(contents.ids).toEqual(rows.map((r) => r.id).sort((a, b) => a - b));
      for (const r of rows.slice(0, 3)) expect(await lib.thumbnails.has(r.hash)).toBe(true);
    } finally {
      await lib.close();
    }
  }, 240_000);
});
