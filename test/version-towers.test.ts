/**
 * Trained text towers on a library in Postgres (issue 14: everything a library holds, trained versions
 * included, is in the database). A version's tower trained on machine A is searched with on machine B, which
 * has never seen the file: it is fetched from the database, checked against the recorded SHA-256, and put in
 * B's versions folder; a damaged copy in the database is refused and leaves nothing behind; `clipdex migrate`
 * carries towers out of Postgres into a new data dir. Towers are stored in parts (a bytea is read as hex).
 * The Postgres is real (PGlite + pgvector over the wire protocol).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeAdapter, identityMatrix } from '../src/adapter/adapter-weights.js';
import { Library } from '../src/library/library.js';
import { shareTower } from '../src/library/version-towers.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { towerFileName, versionsDir } from '../src/store/adapters-repo.js';
import { openPostgresDatabase } from '../src/store/pg/pg-database.js';
import { TOWER_PART_BYTES, VersionTowersRepo } from '../src/store/version-towers-repo.js';
import { runCli } from './helpers/cli.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

let tmp: string;
let model: string;
let pg: PgliteServer;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-towers-'));
  [pg, model] = await Promise.all([startPgliteServer(), buildTinyModel({ out: join(tmp, 'model'), seed: 4 }).then((m) => m.dir)]);
}, 120_000);

afterAll(async () => {
  await pg?.stop();
  await rm(tmp, { recursive: true, force: true });
});

const open = (machine: string) => Library.open({ dataDir: join(tmp, machine), model, cacheDir: join(tmp, 'cache'), databaseUrl: pg.url });

/** A text-blocks version as the trainer records one: the tower file in A's versions folder, shared, then its row. */
async function recordVersion(library: Library, tower: Uint8Array): Promise<{ id: number; sha256: string }> {
  const sha256 = createHash('sha256').update(tower).digest('hex');
  const file = towerFileName(sha256);
  await mkdir(versionsDir(library.paths.dir), { recursive: true });
  await writeFile(join(versionsDir(library.paths.dir), file), tower);
  shareTower(library.store, sha256, tower);
  const { key, model: m } = library.requireModel();
  const dim = m.dim;
  const row = library.adapters.add(key, encodeAdapter({ dim, image: identityMatrix(dim), text: identityMatrix(dim) }), { kind: 'text-blocks', textTower: { file, sha256 } });
  return { id: row.id, sha256 };
}

describe('trained text towers in Postgres', () => {
  it('stores a tower in parts and reads back the same bytes', () => {
    const store = openPostgresDatabase(pg.url);
    try {
      // Parts of 64 KiB here: the same code path as the 16 MiB parts, without moving 32 MiB through PGlite.
      const part = 64 * 1024;
      const repo = new VersionTowersRepo(store.db, part);
      expect(TOWER_PART_BYTES).toBe(16 * 1024 * 1024);
      const bytes = randomBytes(2 * part + 12345);
      const sha = createHash('sha256').update(bytes).digest('hex');
      expect(repo.put(sha, bytes)).toBe(true);
      expect(repo.put(sha, bytes)).toBe(false);
      const parts = [...repo.read(sha)];
      expect(parts.map((p) => p.length)).toEqual([part, part, 12345]);
      expect(Buffer.concat(parts).equals(bytes)).toBe(true);
      expect(repo.remove(sha)).toBe(true);
      expect([...repo.read(sha)]).toEqual([]);
    } finally {
      store.close();
    }
  });

  it('lets another machine search with a version trained on one: fetched, checked, kept', async () => {
    const a = await open('machine-a');
    let version: { id: number; sha256: string };
    let tower: Buffer;
    try {
      // The base text tower stands in for a trained one: a real ONNX file whose answers are known.
      const spec = a.requireModel().model.spec;
      tower = await readFile(join(spec.dir, spec.text.file));
      version = await recordVersion(a, tower);
    } finally {
      await a.close();
    }
    const b = await open('machine-b');
    try {
      const file = join(versionsDir(b.paths.dir), towerFileName(version.sha256));
      expect(existsSync(file)).toBe(false);
      const encoder = await b.openTunedText(b.adapters.get(version.id)!);
      expect(encoder).not.toBeNull();
      try {
        const [tuned] = await encoder!.encode(['a dog asleep on the sofa']);
        const [base] = await b.requireModel().model.text.encode(['a dog asleep on the sofa']);
        expect(Array.from(tuned!)).toEqual(Array.from(base!));
      } finally {
        await encoder!.release();
      }
      expect((await readFile(file)).equals(tower)).toBe(true);
    } finally {
      await b.close();
    }
  });

  it('refuses a tower damaged in the database, leaving no file behind', async () => {
    const a = await open('machine-a');
    let id: number;
    let sha256: string;
    try {
      const damaged = randomBytes(1000);
      ({ id, sha256 } = await recordVersion(a, damaged));
      a.store.db.prepare<[string]>("UPDATE version_towers SET bytes = '\\x00'::bytea WHERE sha256 = ?").run(sha256);
    } finally {
      await a.close();
    }
    const c = await open('machine-c');
    try {
      await expect(c.openTunedText(c.adapters.get(id)!)).rejects.toMatchObject({ code: 'ADAPTER_INVALID', message: expect.stringMatching(/damaged/) });
      expect(existsSync(join(versionsDir(c.paths.dir), towerFileName(sha256)))).toBe(false);
    } finally {
      await c.close();
    }
  });

  it('`clipdex migrate --to <dir>` carries the towers out of Postgres', async () => {
    const store = openPostgresDatabase(pg.url);
    const towers = new VersionTowersRepo(store.db).stored();
    store.close();
    const target = join(tmp, 'back-home');
    const r = await runCli(['--db', pg.url, '--model', model, 'migrate', '--to', target], { CLIPDEX_DATA_DIR: join(tmp, 'machine-d'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    expect(r.code, r.stderr).toBe(0);
    // The intact tower is carried; the damaged one is named and not carried; the copy goes on.
    const carried = towers.filter((sha) => existsSync(join(versionsDir(target), towerFileName(sha))));
    expect(carried).toHaveLength(1);
    expect(r.stderr).toMatch(/text tower text-[0-9a-f]{64}\.onnx is missing or damaged here and was not carried/);
  });
});
