/**
 * `clipdex migrate --to` (issue 14): an embedded library copied into Postgres without re-encoding, used there,
 * and copied back into a new data dir — every row of every table the same on each side, ids and sequences
 * included, and the same search answers. The Postgres is real (PGlite + pgvector over the wire protocol).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { AdaptersRepo, towerFileName, versionsDir } from '../src/store/adapters-repo.js';
import { libraryPaths, openDatabase, type StoreDatabase } from '../src/store/database.js';
import { COPIED_TABLES, NOT_COPIED } from '../src/store/library-copy.js';
import { openPostgresDatabase } from '../src/store/pg/pg-database.js';
import { VersionTowersRepo } from '../src/store/version-towers-repo.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

let tmp: string;
let modelDir: string;
let server: PgliteServer;
const TOWER = Buffer.from('a trained text tower, as far as this test is concerned');
const TOWER_SHA = createHash('sha256').update(TOWER).digest('hex');
const env = () => ({ CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-migrate-'));
  [server, modelDir] = await Promise.all([startPgliteServer(), buildTinyModel({ out: join(tmp, 'model'), seed: 9 }).then((m) => m.dir)]);
  const names = ['a.jpg', 'b.jpg', 'trip/c.jpg', 'trip/d.jpg', 'trip/e.jpg', 'home/f.jpg'];
  for (const [i, name] of names.entries()) await writeJpeg(join(tmp, 'Pictures', name), 50 + i);
  // A copy of one photo: two images, one content, one vector.
  await writeJpeg(join(tmp, 'Pictures', 'home', 'a-copy.jpg'), 50);
  // A damaged file: a failed image with its reason.
  await mkdir(join(tmp, 'Pictures'), { recursive: true });
  await writeFile(join(tmp, 'Pictures', 'broken.jpg'), Buffer.from('not a jpeg at all'));
  const index = await runCli(['--model', modelDir, 'index', join(tmp, 'Pictures')], env());
  expect(index.code, index.stderr).toBe(0);
  const label = await runCli(['--model', modelDir, 'label', join(tmp, 'Pictures', 'trip', 'c.jpg'), join(tmp, 'Pictures', 'trip', 'd.jpg'), '-c', 'our trip'], env());
  expect(label.code, label.stderr).toBe(0);
  // A trained version (its weights a BLOB), recorded as the real trainer records one.
  const store = openDatabase(libraryPaths(join(tmp, 'data')).database);
  try {
    const key = (store.db.prepare('SELECT model_key AS k FROM embedding_models').get() as { k: string }).k;
    // With a trained text tower (any bytes will do here): a file in the data dir's versions folder.
    await mkdir(versionsDir(join(tmp, 'data')), { recursive: true });
    await writeFile(join(versionsDir(join(tmp, 'data')), towerFileName(TOWER_SHA)), TOWER);
    new AdaptersRepo(store.db).add(key, new Uint8Array(Float32Array.from({ length: 64 }, (_, i) => Math.sin(i)).buffer), {
      note: 'test',
      kind: 'text-blocks',
      textTower: { file: towerFileName(TOWER_SHA), sha256: TOWER_SHA },
    });
  } finally {
    store.close();
  }
}, 180_000);

afterAll(async () => {
  await server?.stop();
  await rm(tmp, { recursive: true, force: true });
});

/** Every copied table's rows, ordered by every column, values normalised (Buffers to hex). */
function dump(store: StoreDatabase): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  const sqlite = openDatabase(':memory:');
  try {
    for (const table of COPIED_TABLES) {
      const cols =
        table === 'ocr_fts'
          ? ['rowid', 'text']
          : (sqlite.db.prepare('SELECT name FROM pragma_table_info(?) ORDER BY cid').all(table) as { name: string }[]).map((r) => r.name);
      const list = cols.map((c) => `"${c}"`).join(', ');
      out[table] = (store.db.prepare(`SELECT ${list} FROM "${table}" ORDER BY ${list}`).all() as Record<string, unknown>[]).map((row) =>
        cols.map((c) => (Buffer.isBuffer(row[c]) ? `hex:${(row[c] as Buffer).toString('hex')}` : row[c])),
      );
    }
  } finally {
    sqlite.close();
  }
  return out;
}

interface Hit {
  id: number;
  path: string;
  score: number;
}

describe('clipdex migrate', () => {
  let original: Record<string, unknown[]>;

  it('copies every table but the derived ones (a table added by a migration must be copied or named here)', () => {
    const store = openDatabase(':memory:');
    try {
      const tables = (store.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'ocr_fts_%'").all() as { name: string }[]).map((r) => r.name);
      expect([...COPIED_TABLES, ...NOT_COPIED].sort()).toEqual(tables.sort());
    } finally {
      store.close();
    }
  });

  it('copies the data dir’s library into Postgres: the same rows, ids and all', async () => {
    const sqlite = openDatabase(libraryPaths(join(tmp, 'data')).database);
    try {
      original = dump(sqlite);
    } finally {
      sqlite.close();
    }
    expect((original.images as unknown[]).length).toBe(8);
    expect((original.labeled_pairs as unknown[]).length).toBe(2);
    expect((original.adapters as unknown[]).length).toBe(1);

    const r = await runCli(['--json', 'migrate', '--to', server.url], env());
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).rows).toMatchObject({ images: 8, labeled_pairs: 2, adapters: 1 });
    expect(r.stdout).not.toContain('postgres:postgres@');
    const pg = openPostgresDatabase(server.url);
    try {
      expect(dump(pg)).toEqual(original);
      // The version's tower went into the database with it, so any machine can search with the version.
      expect(Buffer.concat([...new VersionTowersRepo(pg.db).read(TOWER_SHA)]).equals(TOWER)).toBe(true);
    } finally {
      pg.close();
    }
  }, 120_000);

  it('searches the same on Postgres as in the data dir, and a new photo gets the next id, not an old one', async () => {
    const ask = async (extra: string[]) => {
      const r = await runCli([...extra, '--model', modelDir, '--json', 'search', 'our trip', '--local', '--all'], env());
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { results: Hit[] }).results.map((h) => [h.id, h.path, h.score.toFixed(5)]);
    };
    expect(await ask(['--db', server.url])).toEqual(await ask([]));
    const maxId = Math.max(...(original.images as unknown[][]).map((row) => row[0] as number));
    await writeJpeg(join(tmp, 'Pictures', 'new.jpg'), 99);
    const index = await runCli(['--db', server.url, '--model', modelDir, 'index', join(tmp, 'Pictures')], env());
    expect(index.code, index.stderr).toBe(0);
    const pg = openPostgresDatabase(server.url);
    try {
      const row = pg.db.prepare('SELECT id FROM images WHERE path = ?').get(join(tmp, 'Pictures', 'new.jpg')) as { id: number };
      expect(row.id).toBeGreaterThan(maxId);
    } finally {
      pg.close();
    }
  }, 120_000);

  it('refuses to copy into a database that already holds a library, changing nothing', async () => {
    const r = await runCli(['migrate', '--to', server.url], env());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already holds a library/);
  }, 60_000);

  it('copies the Postgres library back into a new data dir, with the trained towers and thumbnails', async () => {
    const back = join(tmp, 'back');
    const r = await runCli(['--db', server.url, 'migrate', '--to', back], env());
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(back, 'thumbnails'))).toBe(true);
    const sqlite = openDatabase(libraryPaths(back).database);
    const pg = openPostgresDatabase(server.url);
    try {
      expect(dump(sqlite)).toEqual(dump(pg));
      // The id a deleted photo had is still never handed out again in the copy.
      const seq = sqlite.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'images'").get() as { seq: number };
      expect(seq.seq).toBeGreaterThanOrEqual(Math.max(...(dump(pg).images as unknown[][]).map((row) => row[0] as number)));
    } finally {
      sqlite.close();
      pg.close();
    }
    const again = await runCli(['--db', server.url, 'migrate', '--to', back], env());
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/not empty/);
  }, 120_000);
});
