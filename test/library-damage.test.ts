/**
 * A library database that was damaged (bit-flipped pages) or lost its content (0 bytes, an empty schema
 * after its WAL was lost) must be named as such, with the way back, and never be silently started afresh
 * beside the thumbnails and index of the library it was. Real SQLite files, the built CLI, the self-built model.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-damage-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let model: string;
let goodData: string;

/** A fresh user (own cache, no configured model) using the self-built model and `dataDir`. */
function env(dataDir: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: join(tmp, 'cache'), CLIPDEX_MODEL: model, CLIPDEX_REINIT: undefined, ...extra };
}

/** A copy of the healthy library to damage, with its WAL folded into the main file first. */
function copyLibrary(name: string): string {
  const dir = join(tmp, name);
  cpSync(goodData, dir, { recursive: true });
  return dir;
}

/** Flips the b-tree page header of `table`'s root page, as a failing disk or a bad copy would. */
function corruptTablePage(dbFile: string, table: string): number {
  const db = new Database(dbFile, { readonly: true });
  const { rootpage } = db.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').get(table) as { rootpage: number };
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  db.close();
  const bytes = readFileSync(dbFile);
  for (let i = 0; i < 12; i++) bytes[(rootpage - 1) * pageSize + i]! ^= 0xff;
  writeFileSync(dbFile, bytes);
  return rootpage;
}

beforeAll(async () => {
  model = (await buildTinyModel({ out: join(tmp, 'model'), force: true })).dir;
  const photos = join(tmp, 'photos');
  mkdirSync(photos);
  for (let i = 0; i < 3; i++) await writeJpeg(join(photos, `p${i}.jpg`), i + 1);
  goodData = join(tmp, 'good');
  const r = await runCli(['index', photos, '--no-watch'], env(goodData));
  expect(r.code, r.stderr).toBe(0);
  // Every page in the main file, so a copy is the whole library and page numbers are final.
  const db = new Database(join(goodData, 'library.db'));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  for (const f of ['library.db-wal', 'library.db-shm']) rmSync(join(goodData, f), { force: true });
  expect(readdirSync(join(goodData, 'thumbnails')).length).toBeGreaterThan(0);
});

describe('a damaged library database', () => {
  it('is reported as a damaged library with the way back, not as a model to download again', async () => {
    const dir = copyLibrary('damaged');
    corruptTablePage(join(dir, 'library.db'), 'embedding_models');
    const r = await runCli(['search', 'a dog', '--json'], env(dir));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'LIBRARY_DAMAGED' } });
    expect(r.stderr).toMatch(/library database .*library\.db is damaged/);
    // What can be rebuilt from the photos, what cannot, and how to try to save the latter.
    expect(r.stderr).toMatch(/embeddings, thumbnails and the vector index/);
    expect(r.stderr).toMatch(/labels and trained versions live only in this file/i);
    expect(r.stderr).toMatch(/\.recover/);
    expect(r.stderr).not.toMatch(/cannot load model|models pull/);

    // status, which tolerates a missing model, must not file a damaged library under "model".
    const status = await runCli(['status', '--json'], env(dir));
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout)).toMatchObject({ error: { code: 'LIBRARY_DAMAGED' } });
  });

  it('doctor runs an integrity check, reports what it found and fails', async () => {
    const dir = copyLibrary('doctor-damaged');
    corruptTablePage(join(dir, 'library.db'), 'embeddings');
    const r = await runCli(['doctor'], env(dir));
    expect(r.code).toBe(1);
    // SQLite's own findings, whatever words it picks for this page (an emptied b-tree page reads as missing entries).
    expect(r.stdout).toMatch(/✗ library database: .*library\.db is damaged: quick_check found [1-9]\d* problems?: \S/);
    expect(r.stdout).toMatch(/fix: .*\.recover/);
    const json = await runCli(['doctor', '--json', '--full'], env(dir));
    expect(json.code).toBe(1);
    const check = (JSON.parse(json.stdout) as { checks: { name: string; status: string; detail: string }[] }).checks.find((c) => c.name === 'library database');
    expect(check).toMatchObject({ status: 'fail' });
    expect(check!.detail).toMatch(/integrity_check/);
  });

  it('doctor passes a healthy library and says which check it ran', async () => {
    const r = await runCli(['doctor'], env(goodData));
    expect(r.code, r.stdout).toBe(0);
    expect(r.stdout).toMatch(/✓ library database: .*library\.db: quick_check ok/);
  });
});

describe('a library database that lost its content', () => {
  it('refuses a 0-byte library.db beside thumbnails, leaves it untouched, and opens with the explicit override', async () => {
    const dir = copyLibrary('zero');
    writeFileSync(join(dir, 'library.db'), '');
    const r = await runCli(['status', '--json'], env(dir));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'LIBRARY_DATABASE_LOST' } });
    expect(r.stderr).toMatch(/library\.db is empty.*thumbnails/);
    expect(r.stderr).toMatch(/CLIPDEX_REINIT=1/);
    expect(statSync(join(dir, 'library.db')).size).toBe(0);

    const doctor = await runCli(['doctor'], env(dir));
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).toMatch(/✗ library database: .*empty/);

    const forced = await runCli(['status', '--json'], env(dir, { CLIPDEX_REINIT: '1' }));
    expect(forced.code, forced.stderr).toBe(0);
    // Once started afresh on purpose, later runs need no override.
    const after = await runCli(['status', '--json'], env(dir));
    expect(after.code, after.stderr).toBe(0);
  });

  it('refuses an empty schema (the WAL lost before the first checkpoint)', async () => {
    const dir = copyLibrary('empty-schema');
    rmSync(join(dir, 'library.db'));
    // What survives when the WAL is lost before its first checkpoint: a header with WAL mode set and no tables.
    const db = new Database(join(dir, 'library.db'));
    db.pragma('journal_mode = WAL');
    db.close();
    const before = readFileSync(join(dir, 'library.db'));
    const r = await runCli(['search', 'a dog', '--json'], env(dir));
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'LIBRARY_DATABASE_LOST' } });
    expect(readFileSync(join(dir, 'library.db')).equals(before)).toBe(true);
  });

  it('opens a genuinely new data dir as usual', async () => {
    const dir = join(tmp, 'new');
    const r = await runCli(['status', '--json'], env(dir));
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(dir, 'library.db'))).toBe(true);
  });
});
