/**
 * Schema migrations: `migrations/NNN_name.sql`, applied in order, each in its own transaction, recorded
 * in `schema_migrations` and mirrored in `PRAGMA user_version` (in the file header, so even a future
 * schema that reshapes the table cannot hide how new the database is).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { ClipdexError, errorMessage } from '../errors.js';

/** migrations/ in the installed package (same relative place from src/ and dist/). */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

export interface Migration {
  version: number;
  name: string;
  path: string;
}

export interface AppliedMigration {
  version: number;
  name: string;
  appliedAt: number;
}

const FILE_RE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** The migration files in order; a gap or a duplicate number is a packaging bug and is refused. */
export function listMigrations(dir: string = MIGRATIONS_DIR): Migration[] {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch (err) {
    throw new ClipdexError('MIGRATION_FAILED', `cannot read the migrations directory ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  const migrations = files
    .map((file) => ({ file, m: FILE_RE.exec(file) }))
    .filter((x): x is { file: string; m: RegExpExecArray } => x.m !== null)
    .map(({ file, m }) => ({ version: Number(m[1]), name: m[2]!, path: join(dir, file) }))
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new ClipdexError(
        'MIGRATION_FAILED',
        `migrations in ${dir} must be numbered 1, 2, 3… without gaps or duplicates; found ${migrations.map((x) => x.version).join(', ')}`,
      );
    }
  });
  return migrations;
}

/** A migration's SQL; a file that cannot be read is a packaging problem, said as such. */
export function readMigration(m: Migration): string {
  try {
    return readFileSync(m.path, 'utf8');
  } catch (err) {
    throw new ClipdexError('MIGRATION_FAILED', `cannot read migration ${m.path}: ${errorMessage(err)}`, { cause: err });
  }
}

/** The schema version recorded in the database; 0 for a fresh one. Reads only. */
export function schemaVersion(db: Database.Database): number {
  const userVersion = db.pragma('user_version', { simple: true }) as number;
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (!table) return userVersion;
  const row = db.prepare('SELECT max(version) AS v FROM schema_migrations').get() as { v: number | null };
  return Math.max(userVersion, row.v ?? 0);
}

export function appliedMigrations(db: Database.Database): AppliedMigration[] {
  const table = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (!table) return [];
  return db
    .prepare('SELECT version, name, applied_at AS appliedAt FROM schema_migrations ORDER BY version')
    .all() as AppliedMigration[];
}

/**
 * Refuses a database newer than these migrations, or one that is not ours, without writing to it.
 * Must run before anything that could modify the file (journal_mode, migrations).
 */
export function checkMigratable(db: Database.Database, migrations: readonly Migration[], path: string): number {
  const current = schemaVersion(db);
  const latest = migrations.length;
  if (current > latest) {
    throw new ClipdexError(
      'DATABASE_TOO_NEW',
      `${path} was written by a newer clipdex (schema version ${current}; this version knows up to ${latest}). ` +
        'Upgrade clipdex, or point --data-dir at another library. The database was not modified.',
      { details: { path, databaseVersion: current, supportedVersion: latest } },
    );
  }
  if (current === 0) {
    const foreign = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1").get() as
      | { name: string }
      | undefined;
    if (foreign) {
      throw new ClipdexError(
        'DATABASE_INVALID',
        `${path} is a SQLite database but not a clipdex library (it has a table "${foreign.name}" and no schema version). It was not modified.`,
        { details: { path } },
      );
    }
  }
  const applied = appliedMigrations(db);
  for (const a of applied) {
    const m = migrations[a.version - 1];
    if (m && m.name !== a.name) {
      throw new ClipdexError(
        'MIGRATION_FAILED',
        `${path}: schema version ${a.version} was applied as "${a.name}", but this clipdex calls it "${m.name}"; the builds have diverged`,
        { details: { path, version: a.version } },
      );
    }
  }
  return current;
}

/**
 * Applies every migration newer than the database, each inside its own IMMEDIATE transaction that
 * re-reads the version first, so two processes opening the same library at once apply each step once.
 * Foreign keys are off while migrating (a table rebuild needs that, and the pragma cannot change inside
 * a transaction); `foreign_key_check` then proves each step left no dangling reference before commit.
 */
export function migrate(db: Database.Database, migrations: readonly Migration[], path: string, now: () => number = Date.now): AppliedMigration[] {
  checkMigratable(db, migrations, path);
  const applied: AppliedMigration[] = [];
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    for (const m of migrations) {
      const sql = readMigration(m);
      const step = db.transaction(() => {
        if (schemaVersion(db) >= m.version) return false;
        db.exec(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT',
        );
        db.exec(sql);
        const dangling = db.pragma('foreign_key_check') as unknown[];
        if (dangling.length > 0) throw new Error(`it leaves ${dangling.length} dangling foreign key(s)`);
        const appliedAt = now();
        db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, appliedAt);
        db.pragma(`user_version = ${m.version}`);
        applied.push({ version: m.version, name: m.name, appliedAt });
        return true;
      });
      try {
        step.immediate();
      } catch (err) {
        if (err instanceof ClipdexError) throw err;
        throw new ClipdexError('MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed on ${path}: ${errorMessage(err)}`, {
          cause: err,
          details: { path, version: m.version },
        });
      }
    }
  } finally {
    db.pragma(`foreign_keys = ${foreignKeys ? 'ON' : 'OFF'}`);
  }
  return applied;
}
