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
