/**
 * Opens a library database: one SQLite file per library, migrated at open, tuned for one writer and
 * many readers (the CLI, the server and the index build worker may all have it open).
 */
import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ClipdexError, errorMessage } from '../errors.js';
import { dataDir } from '../model/cache-dir.js';
import type { SqlHandle } from './sql-handle.js';
import { checkMigratable, listMigrations, migrate, schemaVersion, type AppliedMigration, MIGRATIONS_DIR } from './migrations.js';

export interface LibraryPaths {
  dir: string;
  database: string;
  /** Vector index files live here, one folder per model key. */
  indexDir: string;
}

/** `<dataDir>/library.db` and `<dataDir>/index/`; `dir` defaults to `dataDir()` (`$CLIPDEX_DATA_DIR`, XDG). */
export function libraryPaths(dir: string = dataDir()): LibraryPaths {
  const root = resolve(dir);
  return { dir: root, database: join(root, 'library.db'), indexDir: join(root, 'index') };
}

export interface OpenDatabaseOptions {
  /** Defaults to the package's migrations/ folder; tests point it at their own. */
  migrationsDir?: string;
  /** Opens without migrating or writing anything (the index build worker); the schema must be current. */
  readonly?: boolean;
  /** How long a statement waits for another connection's write lock before SQLITE_BUSY. */
  busyTimeoutMs?: number;
}

/**
 * The connection repositories are made from. Code outside store/ may hold it and hand it to a repository,
 * never query it: every statement lives in a store/ repository (issue 14: a second backend implements them).
 */
export type SqliteHandle = Database.Database;

/**
 * `immediate` takes the write lock at BEGIN: a read-then-write transaction (the ingest queue's) cannot
 * then fail with SQLITE_BUSY half-way when another connection wrote in between. `deferred` takes it at
 * the first write; a read-only transaction (one snapshot for several reads) never takes it.
 */
export type TransactionMode = 'deferred' | 'immediate';

/**
 * Runs `fn` as one transaction: committed when it returns, rolled back when it throws. Nested inside
 * another it becomes a savepoint of the outer one. Callers that group writes of several repositories use
 * this; a unit of work inside one repository is a method of that repository.
 */
export function runInTransaction<T>(db: SqlHandle, fn: () => T, mode: TransactionMode = 'deferred'): T {
  const tx = db.transaction(fn);
  return mode === 'immediate' ? tx.immediate() : tx();
}

/** Where a library's database is: enough to open it again (a worker thread does, read-only). */
export type StoreLocation = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

export interface StoreDatabase {
  readonly db: SqlHandle;
  /** The SQLite file, or the Postgres URL without its password: for messages. */
  readonly path: string;
  /** Holds the password of a Postgres URL: never print it (`path` is the printable form). */
  readonly location: StoreLocation;
  readonly schemaVersion: number;
  /** Migrations applied by this open (empty when the database was already current). */
  readonly applied: readonly AppliedMigration[];
  /** Random id made by the first migration; index files record it so they never cross libraries. */
  readonly libraryId: string;
  /** `runInTransaction` on this database. */
  transaction<T>(fn: () => T, mode?: TransactionMode): T;
  /**
   * Changes whenever the database may have: a commit by another connection (`data_version`) or any
   * write on this one (`total_changes()`). Equal strings mean nothing changed in between.
   */
  changeStamp(): string;
  /** Folds the WAL into the database file without waiting for readers (PASSIVE: never blocks). */
  checkpointWal(): void;
  close(): void;
}

/** A library in a SQLite file: its connection is better-sqlite3's own (pragmas, backups and all). */
export interface SqliteStoreDatabase extends StoreDatabase {
  readonly db: SqliteHandle;
}

export function openDatabase(path: string, options: OpenDatabaseOptions = {}): SqliteStoreDatabase {
  const memory = path === ':memory:';
  const file = memory ? path : resolve(path);
  const migrations = listMigrations(options.migrationsDir ?? MIGRATIONS_DIR);
  if (!memory && !options.readonly) mkdirSync(dirname(file), { recursive: true });
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
  } catch (err) {
    throw new ClipdexError('DATABASE_INVALID', `cannot open the library database ${file}: ${errorMessage(err)}`, {
      cause: err,
      details: { path: file },
    });
  }
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
    // Checked before any pragma that writes the file (journal_mode), so a refused database stays byte-identical.
    const current = guardSqlite(() => checkMigratable(db, migrations, file), file);
    let applied: AppliedMigration[] = [];
    if (options.readonly) {
      if (current < migrations.length) {
        throw new ClipdexError(
          'DATABASE_INVALID',
          `${file} is at schema version ${current}; open it read-write once to migrate it to ${migrations.length}`,
          { details: { path: file } },
        );
      }
    } else {
      // WAL: readers never block the writer and vice versa. synchronous=NORMAL is safe with WAL: a commit
      // survives any process crash (the WAL is written before COMMIT returns), and a power loss can only
      // drop the last transactions, never corrupt the file. The index manager forces a WAL sync before it
      // records an index checkpoint, so a derived index is never ahead of durable SQLite.
      guardSqlite(() => db.pragma('journal_mode = WAL'), file);
      db.pragma('synchronous = NORMAL');
      applied = migrate(db, migrations, file);
    }
    db.pragma('foreign_keys = ON');
    const row = db.prepare("SELECT value FROM meta WHERE key = 'library_id'").get() as { value: string } | undefined;
    if (!row) throw new ClipdexError('DATABASE_INVALID', `${file} has no library id; it is not a clipdex library`, { details: { path: file } });
    const schemaVersion = migrations.length;
    const totalChanges = db.prepare<[], { n: number }>('SELECT total_changes() AS n');
    return {
      db,
      path: file,
      location: { kind: 'sqlite', path: file },
      schemaVersion,
      applied,
      libraryId: row.value,
      transaction: (fn, mode) => runInTransaction(db, fn, mode),
      changeStamp: () => `${db.pragma('data_version', { simple: true })}:${totalChanges.get()!.n}`,
      checkpointWal: () => {
        db.pragma('wal_checkpoint(PASSIVE)');
      },
      close: () => {
        if (!db.open) return;
        // Keeps the planner's statistics current (cheap: SQLite only re-analyses what changed a lot).
        if (!options.readonly && !memory) {
          try {
            db.pragma('optimize');
          } catch {
            // a busy database just skips it this time
          }
        }
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** SQLite's own errors for a file that is not a database read as "file is not a database"; say what it means. */
function guardSqlite<T>(fn: () => T, file: string): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ClipdexError) throw err;
    const code = (err as { code?: string }).code ?? '';
    const damaged = libraryDamagedError(err, file);
    if (damaged) throw damaged;
    if (code === 'SQLITE_NOTADB') {
      throw new ClipdexError('DATABASE_INVALID', `${file} is not a clipdex library database (${errorMessage(err)})`, {
        cause: err,
        details: { path: file },
      });
    }
    if ((code === 'SQLITE_CANTOPEN' || code.startsWith('SQLITE_READONLY')) && !writable(dirname(file))) {
      // A library on a read-only mount failed to start with a bare "unable to open database file".
      throw new ClipdexError(
        'STORAGE_READ_ONLY',
        `cannot open the library database ${file}: its folder ${dirname(file)} is read-only (a read-only mount?), and SQLite must create its -wal and -shm files beside it; make the folder writable and start again`,
        { cause: err, details: { path: file } },
      );
    }
    throw err;
  }
}

/** SQLite's word for damaged pages: SQLITE_CORRUPT and its extended codes (SQLITE_CORRUPT_INDEX, …). */
export function isCorruptionError(err: unknown): boolean {
  // Followed through `cause`: a layer above may have wrapped SQLite's error in one of its own.
  for (let e = err, depth = 0; typeof e === 'object' && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT')) return true;
  }
  return false;
}

/**
 * The damaged-library error `err` stands for, or null. A damaged page surfaces wherever a statement first
 * reads it (often while the model is being registered), and was reported as a broken model with advice to
 * download it again; this says what is damaged, what the photos can rebuild and what only the file holds.
 */
export function libraryDamagedError(err: unknown, file: string): ClipdexError | null {
  if (err instanceof ClipdexError && err.code === 'LIBRARY_DAMAGED') return err;
  if (!isCorruptionError(err)) return null;
  return new ClipdexError('LIBRARY_DAMAGED', `the library database ${file} is damaged (${errorMessage(err)}). ${damagedDatabaseAdvice(file)}`, {
    cause: err,
    details: { path: file },
  });
}

/** How to get back from a damaged library database, spelled out with its paths. */
export function damagedDatabaseAdvice(file: string): string {
  const name = basename(file);
  return (
    `\`clipdex doctor\` checks it page by page. To recover, in ${dirname(file)}: stop every clipdex using it and keep a copy of ${name} and ${name}-wal. ` +
    `Labels and trained versions live only in this file: try \`sqlite3 ${name} .recover | sqlite3 recovered.db\` and use recovered.db as ${name} if it opens, or restore a backup. ` +
    `Everything else — embeddings, thumbnails and the vector index — is rebuilt from the photos: move ${name} (and ${name}-wal, ${name}-shm) aside, ` +
    `then run \`CLIPDEX_REINIT=1 clipdex index <your folders>\` once (CLIPDEX_REINIT=1 allows a new database beside the old thumbnails).`
  );
}

export interface IntegrityReport {
  /** `quick_check` (b-tree structure and records, O(N)) or `integrity_check` (also every index against its table). */
  mode: 'quick_check' | 'integrity_check';
  /** What SQLite found; empty when the file is sound. */
  problems: string[];
}

/** Runs SQLite's own consistency check on a library file, read-only, and collects what it reports. */
export function checkIntegrity(file: string, options: { full?: boolean; maxProblems?: number } = {}): IntegrityReport {
  const mode = options.full ? 'integrity_check' : 'quick_check';
  const max = options.maxProblems ?? 20;
  const problems: string[] = [];
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    // The pragma yields its findings as rows and may then fail on the page it could not read: keep both.
    for (const row of db.prepare(`PRAGMA ${mode}(${max})`).iterate() as IterableIterator<Record<string, unknown>>) {
      const text = String(Object.values(row)[0]);
      if (text !== 'ok' && !text.startsWith('*** in database')) problems.push(text);
    }
  } catch (err) {
    // After findings, this is only SQLite tripping over the page it already reported.
    if (problems.length === 0) problems.push(errorMessage(err));
  } finally {
    db?.close();
  }
  return { mode, problems };
}

/** What a library file holds, read without writing: a damaged or missing WAL can still be rescued after this. */
export type DatabaseContent = 'missing' | 'empty-file' | 'empty-schema' | 'library';

export function databaseContent(file: string): DatabaseContent {
  if (!existsSync(file)) return 'missing';
  if (statSync(file).size === 0) return 'empty-file';
  // Read-only on purpose: the last read-write connection to close would delete a WAL it could not read.
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return guardSqlite(() => schemaVersion(db), file) === 0 ? 'empty-schema' : 'library';
  } finally {
    db.close();
  }
}
