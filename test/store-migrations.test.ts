import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { isClipdexError } from '../src/errors.js';
import { libraryPaths, openDatabase } from '../src/store/database.js';
import { listMigrations, MIGRATIONS_DIR, schemaVersion } from '../src/store/migrations.js';
import { tempLibraryDir } from './helpers/store-fixtures.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});
function temp(): string {
  const t = tempLibraryDir('clipdex-mig-');
  cleanups.push(t.cleanup);
  return t.dir;
}

/** A migrations folder holding the real 001 and, optionally, a test-only 002 that reshapes a table with data. */
function migrationsDir(withSecond: boolean): string {
  const dir = join(temp(), 'migrations');
  mkdirSync(dir);
  copyFileSync(join(MIGRATIONS_DIR, '001_initial.sql'), join(dir, '001_initial.sql'));
  if (withSecond) {
    writeFileSync(
      join(dir, '002_root_labels.sql'),
      `ALTER TABLE roots ADD COLUMN label TEXT;
       UPDATE roots SET label = 'root ' || id;
       CREATE INDEX roots_label ON roots (label);`,
    );
  }
  return dir;
}

const tables = (db: Database.Database) =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map(
    (r) => r.name,
  );

describe('migrations', () => {
  it('the shipped migrations are numbered from 1 without gaps', () => {
    const ms = listMigrations();
    expect(ms.length).toBeGreaterThanOrEqual(1);
    expect(ms.map((m) => m.version)).toEqual(ms.map((_, i) => i + 1));
    expect(ms[0]!.name).toBe('initial');
  });

  it('a fresh database gets every migration, recorded with version, name and time, and WAL + foreign keys', () => {
    const { database } = libraryPaths(temp());
    const before = Date.now();
    const store = openDatabase(database);
    try {
      expect(store.applied.map((a) => a.version)).toEqual(listMigrations().map((m) => m.version));
      expect(store.schemaVersion).toBe(listMigrations().length);
      const rows = store.db.prepare('SELECT version, name, applied_at FROM schema_migrations ORDER BY version').all() as {
        version: number;
        name: string;
        applied_at: number;
      }[];
      expect(rows.map((r) => r.name)).toEqual(listMigrations().map((m) => m.name));
      expect(rows.every((r) => r.applied_at >= before && r.applied_at <= Date.now())).toBe(true);
      expect(store.db.pragma('user_version', { simple: true })).toBe(store.schemaVersion);
      expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(tables(store.db)).toEqual(
        expect.arrayContaining(['roots', 'images', 'embeddings', 'embedding_models', 'labeled_pairs', 'adapters', 'index_changes', 'index_members', 'vector_indexes', 'meta']),
      );
      expect(store.libraryId).toMatch(/^[0-9a-f]{32}$/);
    } finally {
      store.close();
    }
    // Reopening applies nothing and keeps the library id.
    const again = openDatabase(database);
    expect(again.applied).toEqual([]);
    again.close();
  });

  it('a database at version 1 is upgraded to 2 in place, keeping its data', () => {
    const { database } = libraryPaths(temp());
    const v1 = openDatabase(database, { migrationsDir: migrationsDir(false) });
    v1.db.prepare("INSERT INTO roots (path, added_at) VALUES ('/a', 1), ('/b', 2)").run();
    const id = v1.libraryId;
    expect(v1.schemaVersion).toBe(1);
    v1.close();

    const v2 = openDatabase(database, { migrationsDir: migrationsDir(true) });
    try {
      expect(v2.applied.map((a) => [a.version, a.name])).toEqual([[2, 'root_labels']]);
      expect(v2.schemaVersion).toBe(2);
      expect(v2.libraryId).toBe(id);
      expect(v2.db.prepare('SELECT path, label FROM roots ORDER BY id').all()).toEqual([
        { path: '/a', label: 'root 1' },
        { path: '/b', label: 'root 2' },
      ]);
      expect(schemaVersion(v2.db)).toBe(2);
    } finally {
      v2.close();
    }
  });

  it('labels made on schema 2 (keyed by image row) move to content keys with every label intact', () => {
    const { database } = libraryPaths(temp());
    const dir = join(temp(), 'migrations-2');
    mkdirSync(dir);
    for (const m of listMigrations().filter((x) => x.version <= 2)) copyFileSync(m.path, join(dir, `${String(m.version).padStart(3, '0')}_${m.name}.sql`));
    const v2 = openDatabase(database, { migrationsDir: dir });
    const db = v2.db;
    db.prepare("INSERT INTO roots (id, path, added_at) VALUES (1, '/photos', 1)").run();
    const image = db.prepare(
      "INSERT INTO images (id, root_id, path, size, mtime_ms, content_hash, status, created_at, updated_at) VALUES (?, 1, ?, 10, 1, ?, ?, 1, 1)",
    );
    image.run(1, '/photos/a.jpg', 'hash-a', 'indexed');
    image.run(2, '/photos/copy-of-a.jpg', 'hash-a', 'indexed'); // same content, labeled separately
    image.run(3, '/photos/b.jpg', 'hash-b', 'offline');
    image.run(4, '/photos/broken.jpg', null, 'error'); // labeled before failed photos were refused
    const pair = db.prepare('INSERT INTO labeled_pairs (id, image_id, caption, split, created_at) VALUES (?, ?, ?, ?, ?)');
    const labels: [number, number, string, string, number][] = [
      [1, 1, 'kayak', 'train', 100],
      [2, 1, 'red boat', 'train', 101],
      [3, 2, 'kayak', 'val', 102],
      [5, 3, 'beach', 'train', 103],
      [9, 4, 'broken one', 'val', 104],
    ];
    for (const l of labels) pair.run(...l);
    expect(v2.schemaVersion).toBe(2);
    v2.close();

    const v3 = openDatabase(database);
    try {
      expect(v3.applied.map((a) => a.version)).toContain(3);
      const rows = v3.db
        .prepare(
          'SELECT id, image_id AS imageId, caption, split, created_at AS createdAt, content_hash AS contentHash, last_path AS lastPath, missing_since AS missingSince FROM labeled_pairs ORDER BY id',
        )
        .all();
      expect(rows).toEqual([
        { id: 1, imageId: 1, caption: 'kayak', split: 'train', createdAt: 100, contentHash: 'hash-a', lastPath: '/photos/a.jpg', missingSince: null },
        { id: 2, imageId: 1, caption: 'red boat', split: 'train', createdAt: 101, contentHash: 'hash-a', lastPath: '/photos/a.jpg', missingSince: null },
        { id: 3, imageId: 2, caption: 'kayak', split: 'val', createdAt: 102, contentHash: 'hash-a', lastPath: '/photos/copy-of-a.jpg', missingSince: null },
        { id: 5, imageId: 3, caption: 'beach', split: 'train', createdAt: 103, contentHash: 'hash-b', lastPath: '/photos/b.jpg', missingSince: null },
        { id: 9, imageId: 4, caption: 'broken one', split: 'val', createdAt: 104, contentHash: null, lastPath: '/photos/broken.jpg', missingSince: null },
      ]);
      // The new keying holds: deleting the photo rows no longer deletes a label.
      v3.db.prepare('DELETE FROM images').run();
      expect(v3.db.prepare('SELECT count(*) AS n FROM labeled_pairs WHERE image_id IS NULL AND missing_since IS NOT NULL').get()).toEqual({ n: 5 });
    } finally {
      v3.close();
    }
  });

  it('a migration that fails is rolled back whole and reported', () => {
    const { database } = libraryPaths(temp());
    const dir = migrationsDir(false);
    openDatabase(database, { migrationsDir: dir }).close();
    writeFileSync(join(dir, '002_broken.sql'), 'CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);');
    let err: unknown;
    try {
      openDatabase(database, { migrationsDir: dir });
    } catch (e) {
      err = e;
    }
    expect(isClipdexError(err, 'MIGRATION_FAILED')).toBe(true);
    expect((err as Error).message).toMatch(/002|broken/);
    const db = new Database(database, { readonly: true });
    expect(schemaVersion(db)).toBe(1);
    expect(tables(db)).not.toContain('half_done');
    db.close();
  });

  it('a database newer than this clipdex is refused with DATABASE_TOO_NEW and left byte-for-byte unchanged', () => {
    const { database } = libraryPaths(temp());
    const newer = openDatabase(database, { migrationsDir: migrationsDir(true) });
    newer.db.prepare("INSERT INTO roots (path, added_at) VALUES ('/x', 1)").run();
    newer.close(); // checkpoints the WAL into the main file
    const before = readFileSync(database);
    let err: unknown;
    try {
      openDatabase(database, { migrationsDir: migrationsDir(false) });
    } catch (e) {
      err = e;
    }
    expect(isClipdexError(err, 'DATABASE_TOO_NEW')).toBe(true);
    expect((err as Error).message).toContain('schema version 2');
    expect((err as Error).message).toContain('not modified');
    expect(Buffer.compare(readFileSync(database), before)).toBe(0);
  });

  it('refuses files that are not clipdex libraries without touching them', () => {
    const dir = temp();
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, Buffer.from('this is not a database at all, just text'.repeat(40)));
    const junkBefore = readFileSync(junk);
    expect(() => openDatabase(junk)).toThrow(expect.objectContaining({ code: 'DATABASE_INVALID' }));
    expect(Buffer.compare(readFileSync(junk), junkBefore)).toBe(0);

    const other = join(dir, 'other.db');
    const db = new Database(other);
    db.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)');
    db.close();
    const otherBefore = readFileSync(other);
    expect(() => openDatabase(other)).toThrow(expect.objectContaining({ code: 'DATABASE_INVALID' }));
    expect(Buffer.compare(readFileSync(other), otherBefore)).toBe(0);
  });

  it('refuses a migrations folder with a gap', () => {
    const dir = migrationsDir(false);
    writeFileSync(join(dir, '003_skipped.sql'), 'SELECT 1;');
    expect(() => listMigrations(dir)).toThrow(expect.objectContaining({ code: 'MIGRATION_FAILED' }));
  });

  it('read-only opens never migrate and refuse an outdated schema', () => {
    const { database } = libraryPaths(temp());
    openDatabase(database, { migrationsDir: migrationsDir(false) }).close();
    expect(() => openDatabase(database, { readonly: true, migrationsDir: migrationsDir(true) })).toThrow(
      expect.objectContaining({ code: 'DATABASE_INVALID' }),
    );
    const ro = openDatabase(database, { readonly: true, migrationsDir: migrationsDir(false) });
    expect(ro.schemaVersion).toBe(1);
    ro.close();
  });
});
