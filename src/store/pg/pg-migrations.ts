/**
 * The Postgres schema: `migrations/postgres/NNN_name.sql`, one per SQLite step with the same number and name
 * (test/store-pg-schema-parity checks that they build the same tables), recorded in the same
 * `schema_migrations (version, name, applied_at)` table. Many processes (servers, workers) may open one
 * database at once; a transaction-scoped advisory lock makes each step run once.
 */
import { join } from 'node:path';
import { ClipdexError, errorMessage } from '../../errors.js';
import { type AppliedMigration, listMigrations, MIGRATIONS_DIR, type Migration, readMigration } from '../migrations.js';
import { type PgSyncConnection, redactUrl } from './pg-sync-connection.js';

export const PG_MIGRATIONS_DIR = join(MIGRATIONS_DIR, 'postgres');

/** The oldest pgvector with what clipdex relies on: HNSW, halfvec and iterative index scans for filtered search. */
export const MIN_PGVECTOR = [0, 8, 0] as const;

/** An arbitrary constant shared by every clipdex process: the key of the migration advisory lock. */
const MIGRATION_LOCK = 0x636c6970; // "clip"

function parseVersion(v: string): number[] {
  return v.split(/[.-]/).map((p) => Number.parseInt(p, 10) || 0);
}

function olderThan(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    if ((v[i] ?? 0) !== min[i]) return (v[i] ?? 0) < min[i]!;
  }
  return false;
}

/**
 * pgvector must be installed on the server (it is an extension in the server's files, not something a client
 * can bring) and new enough. Says which of the two is missing and what to do.
 */
export function checkPgvector(db: PgSyncConnection, url: string): string {
  const row = db.query<{ installed: string | null; available: string | null }>(
    "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed, (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available",
  ).rows[0];
  const version = row?.installed ?? row?.available ?? null;
  const need = MIN_PGVECTOR.join('.');
  if (!version) {
    throw new ClipdexError(
      'DATABASE_UNSUPPORTED',
      `the Postgres server at ${redactUrl(url)} does not have pgvector, which clipdex stores its vectors in. Install pgvector ${need} or newer on the server ` +
        '(https://github.com/pgvector/pgvector#installation; managed Postgres services offer it as the "vector" extension), then start clipdex again.',
      { details: { need } },
    );
  }
  if (olderThan(parseVersion(version), MIN_PGVECTOR)) {
    throw new ClipdexError(
      'DATABASE_UNSUPPORTED',
      `the Postgres server at ${redactUrl(url)} has pgvector ${version}; clipdex needs ${need} or newer (HNSW on halfvec, iterative index scans). ` +
        `Upgrade it on the server, then run ALTER EXTENSION vector UPDATE.`,
      { details: { need, found: version } },
    );
  }
  return version;
}

export function pgSchemaVersion(db: PgSyncConnection): number {
  const exists = db.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t").rows[0]?.t;
  if (!exists) return 0;
  return db.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations').rows[0]?.v ?? 0;
}

/** Refuses a schema from a newer clipdex, or a database that holds other tables and no clipdex schema. Reads only. */
export function checkPgMigratable(db: PgSyncConnection, migrations: readonly Migration[], url: string): number {
  const current = pgSchemaVersion(db);
  if (current > migrations.length) {
    throw new ClipdexError(
      'DATABASE_TOO_NEW',
      `the library in ${redactUrl(url)} was written by a newer clipdex (schema version ${current}; this version knows up to ${migrations.length}). ` +
        'Upgrade clipdex on this machine; the database was not modified.',
      { details: { databaseVersion: current, supportedVersion: migrations.length } },
    );
  }
  if (current === 0) {
    const foreign = db.query<{ name: string }>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' LIMIT 1",
    ).rows[0];
    if (foreign) {
      throw new ClipdexError(
        'DATABASE_INVALID',
        `${redactUrl(url)} already has tables (such as "${foreign.name}") and no clipdex schema; give clipdex a database (or a schema, with ?options=-c%20search_path%3Dclipdex) of its own. Nothing was changed.`,
      );
    }
  }
  const applied = db.query<{ version: number; name: string }>(current > 0 ? 'SELECT version, name FROM schema_migrations ORDER BY version' : 'SELECT 1 WHERE false').rows;
  for (const a of applied) {
    const m = migrations[a.version - 1];
    if (m && m.name !== a.name) {
      throw new ClipdexError(
        'MIGRATION_FAILED',
        `${redactUrl(url)}: schema version ${a.version} was applied as "${a.name}", but this clipdex calls it "${m.name}"; the builds have diverged`,
      );
    }
  }
  return current;
}

export function migratePg(db: PgSyncConnection, url: string, migrations: readonly Migration[] = listMigrations(PG_MIGRATIONS_DIR), now: () => number = Date.now): AppliedMigration[] {
  checkPgMigratable(db, migrations, url);
  const applied: AppliedMigration[] = [];
  for (const m of migrations) {
    const sql = readMigration(m);
    try {
      db.transaction(() => {
        // Held to the end of this transaction: a second process waits here, then sees the step done.
        db.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        if (pgSchemaVersion(db) >= m.version) return;
        db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)');
        db.exec(sql);
        const appliedAt = now();
        db.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, appliedAt]);
        applied.push({ version: m.version, name: m.name, appliedAt });
      })();
    } catch (err) {
      if (err instanceof ClipdexError) throw err;
      throw new ClipdexError('MIGRATION_FAILED', `migration ${m.version} (${m.name}) failed on ${redactUrl(url)}: ${errorMessage(err)}`, {
        cause: err,
        details: { version: m.version },
      });
    }
  }
  return applied;
}
