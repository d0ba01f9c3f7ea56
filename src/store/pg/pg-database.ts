/**
 * Opens a library kept in Postgres (`--db postgres://…`, `CLIPDEX_DATABASE_URL`): connects, checks pgvector,
 * migrates, and hands back the same StoreDatabase the SQLite side does, so everything above is unchanged.
 */
import { ClipdexError } from '../../errors.js';
import type { StoreDatabase } from '../database.js';
import { listMigrations } from '../migrations.js';
import { checkPgMigratable, checkPgvector, migratePg, PG_MIGRATIONS_DIR } from './pg-migrations.js';
import { type PgConnectOptions, PgSyncConnection, redactUrl } from './pg-sync-connection.js';

export interface OpenPgOptions extends PgConnectOptions {
  /** Defaults to migrations/postgres/ of the package; tests point it at their own. */
  migrationsDir?: string;
  /** Opens without migrating (the schema must be current): a worker or a second server never races the first. */
  readonly?: boolean;
}

/** Whether `--db` names a Postgres server rather than a folder. */
export function isPostgresUrl(value: string): boolean {
  return /^postgres(ql)?:\/\//i.test(value);
}

export function openPostgresDatabase(url: string, options: OpenPgOptions = {}): StoreDatabase & { db: PgSyncConnection; pgvector: string } {
  const migrations = listMigrations(options.migrationsDir ?? PG_MIGRATIONS_DIR);
  const db = PgSyncConnection.open(url, options);
  try {
    const pgvector = checkPgvector(db, url);
    const current = checkPgMigratable(db, migrations, url);
    let applied: ReturnType<typeof migratePg> = [];
    if (options.readonly) {
      if (current < migrations.length) {
        throw new ClipdexError(
          'DATABASE_INVALID',
          `the library in ${redactUrl(url)} is at schema version ${current}; start one clipdex that may migrate it (serve, or any command without --readonly) to bring it to ${migrations.length}`,
        );
      }
    } else {
      applied = migratePg(db, url, migrations);
    }
    const row = db.query<{ value: string }>("SELECT value FROM meta WHERE key = 'library_id'").rows[0];
    if (!row) throw new ClipdexError('DATABASE_INVALID', `${redactUrl(url)} has no library id; it is not a clipdex library`);
    return {
      db,
      pgvector,
      path: redactUrl(url),
      location: { kind: 'postgres', url },
      schemaVersion: migrations.length,
      applied,
      libraryId: row.value,
      transaction: (fn, mode) => (mode === 'immediate' ? db.transaction(fn).immediate() : db.transaction(fn)()),
      // The cluster's snapshot moves whenever any transaction that wrote has committed, here or elsewhere:
      // equal stamps mean nothing was committed in between (it may also move for another database's writes,
      // which only costs a re-read).
      changeStamp: () => db.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s').rows[0]!.s,
      // Postgres checkpoints on its own.
      checkpointWal: () => undefined,
      close: () => db.close(),
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
