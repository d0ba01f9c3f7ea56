/**
 * Copies a library's database into an empty one of the other backend (`clipdex migrate --to`): SQLite →
 * Postgres to scale out, Postgres → SQLite to come back. Nothing is re-encoded: every row moves as it is,
 * ids included, since the two schemas are kept in step (test/store-pg-schema-parity.test.ts) — so a photo's
 * id, its labels, its vectors and every trained version are the same on the other side.
 *
 * What is not copied is what each side derives for itself: the schema's version table, the embedded index's
 * change log and registrations (the target's index is built from the vectors), FTS5's shadow tables, and the
 * trained text towers (files in a data dir, parts in Postgres: `clipdex migrate` carries them as such,
 * library/version-towers.ts).
 */
import { ClipdexError } from '../errors.js';
import type { StoreDatabase } from './database.js';
import type { PgSyncConnection } from './pg/pg-sync-connection.js';
import type { SqlHandle, SqlStatement } from './sql-handle.js';

interface TableCopy {
  table: string;
  /** The columns that order the rows (keyset paging), the first being an integer id where there is one. */
  key: string[];
  /** Only these columns (default: every column of the SQLite side's table). */
  columns?: string[];
  /** An id that must never be handed out again: carry the high-water mark of its sequence over. */
  identity?: string;
}

/** In an order that satisfies every foreign key (referenced tables first). */
const TABLES: readonly TableCopy[] = [
  { table: 'roots', key: ['id'], identity: 'id' },
  { table: 'images', key: ['id'], identity: 'id' },
  { table: 'embedding_models', key: ['model_key'] },
  { table: 'embeddings', key: ['id'], identity: 'id' },
  { table: 'adapters', key: ['id'], identity: 'id' },
  // Claims belong to the processes of the source's machines (migration 009): the files travel unclaimed.
  { table: 'ingest_queue', key: ['id'], identity: 'id', columns: ['id', 'path', 'path_bytes', 'root_id', 'size', 'mtime_ms', 'enqueued_at'] },
  { table: 'labeled_pairs', key: ['id'], identity: 'id' },
  { table: 'orphaned_content', key: ['content_hash'] },
  { table: 'trashed_photos', key: ['id'], identity: 'id' },
  { table: 'ocr_state', key: ['id'], identity: 'id' },
  { table: 'ocr_lines', key: ['state_id', 'line'] },
  // SQLite's FTS5 table answers its rowid and text; Postgres keeps the same two as ordinary columns.
  { table: 'ocr_fts', key: ['rowid'], columns: ['rowid', 'text'] },
];

/** Not copied: derived on each side (see above). With TABLES and meta, every table of the schema. */
export const NOT_COPIED = ['schema_migrations', 'sqlite_sequence', 'vector_indexes', 'index_changes', 'version_towers'] as const;

export const COPIED_TABLES: readonly string[] = ['meta', ...TABLES.map((t) => t.table)];

/** Tables whose content says the target already holds a library. */
const MUST_BE_EMPTY = ['roots', 'images', 'labeled_pairs', 'adapters', 'embeddings'];

export interface CopyProgress {
  table: string;
  done: number;
  total: number;
}

export interface CopyResult {
  /** Rows copied per table (equal on both sides when this returns: checked). */
  rows: Record<string, number>;
}

/** Bind values per INSERT: under SQLite's 32,766 and Postgres's 65,535. */
const MAX_PARAMS = 30_000;
const PAGE = 1000;

const quote = (name: string) => `"${name}"`;

/** The SQLite side's columns of a table (both sides have the same ones; SQLite's list is the reference). */
function columnsOf(sqlite: SqlHandle, table: string): string[] {
  return (sqlite.prepare(`SELECT name FROM pragma_table_info(?) ORDER BY cid`).all(table) as { name: string }[]).map((r) => r.name);
}

function count(db: SqlHandle, table: string): number {
  return (db.prepare(`SELECT count(*) AS n FROM ${quote(table)}`).get() as { n: number }).n;
}

/** The highest id a table ever handed out (deleted rows included), 0 when none. */
function highWater(store: StoreDatabase, table: string, column: string): number {
  if (store.location.kind === 'postgres') {
    const row = (store.db as PgSyncConnection).query<{ v: number | null }>(
      'SELECT pg_sequence_last_value(pg_get_serial_sequence($1, $2)::regclass) AS v',
      [table, column],
    ).rows[0];
    return row?.v ?? 0;
  }
  const seq = store.db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number } | undefined;
  const max = store.db.prepare(`SELECT max(${quote(column)}) AS m FROM ${quote(table)}`).get() as { m: number | null };
  return Math.max(seq?.seq ?? 0, max.m ?? 0);
}

function setHighWater(store: StoreDatabase, table: string, column: string, value: number): void {
  if (value <= 0) return;
  if (store.location.kind === 'postgres') {
    (store.db as PgSyncConnection).query('SELECT setval(pg_get_serial_sequence($1, $2), $3)', [table, column, value]);
    return;
  }
  // Only AUTOINCREMENT tables keep a high-water mark in SQLite; the others reuse nothing above max(id) anyway.
  const tracked = store.db.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number } | undefined;
  if (tracked) store.db.prepare('UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = ?').run(value, table);
  else if (isAutoincrement(store.db, table)) store.db.prepare('INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)').run(table, value);
}

function isAutoincrement(db: SqlHandle, table: string): boolean {
  const row = db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) as { sql: string } | undefined;
  return /AUTOINCREMENT/i.test(row?.sql ?? '');
}

/**
 * Copies everything of `from` into `to`, which must be an empty library of the other backend (freshly
 * migrated to the same schema version). One transaction on the target: a failure leaves it empty.
 */
export function copyLibrary(from: StoreDatabase, to: StoreDatabase, onProgress: (p: CopyProgress) => void = () => {}): CopyResult {
  if (from.location.kind === to.location.kind) {
    throw new ClipdexError('INVALID_ARGUMENT', `clipdex migrate copies between SQLite and Postgres; both are ${from.location.kind} here`);
  }
  if (from.schemaVersion !== to.schemaVersion) {
    throw new ClipdexError('MIGRATION_FAILED', `the two libraries are at different schema versions (${from.schemaVersion} and ${to.schemaVersion})`);
  }
  const sqlite = from.location.kind === 'sqlite' ? from.db : to.db;
  for (const t of MUST_BE_EMPTY) {
    const n = count(to.db, t);
    if (n > 0) {
      throw new ClipdexError(
        'INVALID_ARGUMENT',
        `${to.path} already holds a library (${n} rows in ${t}); clipdex migrate copies into an empty one and changed nothing`,
      );
    }
  }
  const rows: Record<string, number> = {};
  to.transaction(() => {
    // The library is the same library on the other side: its id (which index files record) comes along.
    const meta = from.db.prepare('SELECT key, value FROM meta ORDER BY key').all() as { key: string; value: string }[];
    to.db.prepare('DELETE FROM meta').run();
    const putMeta = to.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
    for (const m of meta) putMeta.run(m.key, m.value);
    rows.meta = meta.length;

    for (const spec of TABLES) {
      const columns = spec.columns ?? columnsOf(sqlite, spec.table);
      const total = count(from.db, spec.table);
      rows[spec.table] = copyTable(from.db, to.db, spec, columns, total, (done) => onProgress({ table: spec.table, done, total }));
      if (spec.identity) setHighWater(to, spec.table, spec.identity, highWater(from, spec.table, spec.identity));
    }
  });
  for (const spec of TABLES) {
    const there = count(to.db, spec.table);
    if (there !== rows[spec.table]) {
      throw new ClipdexError('MIGRATION_FAILED', `copying ${spec.table} wrote ${rows[spec.table]} rows but ${there} are there`);
    }
  }
  return { rows };
}

function copyTable(from: SqlHandle, to: SqlHandle, spec: TableCopy, columns: string[], total: number, progress: (done: number) => void): number {
  const cols = columns.map(quote).join(', ');
  const keys = spec.key.map(quote);
  // Keyset paging: (k1, k2) > (last1, last2) on the key's own index, so a million rows cost no OFFSET scans.
  const firstPage = from.prepare(`SELECT ${cols} FROM ${quote(spec.table)} ORDER BY ${keys.join(', ')} LIMIT ${PAGE}`);
  const nextPage = from.prepare(
    `SELECT ${cols} FROM ${quote(spec.table)} WHERE (${keys.join(', ')}) > (${keys.map(() => '?').join(', ')}) ORDER BY ${keys.join(', ')} LIMIT ${PAGE}`,
  );
  const perInsert = Math.max(1, Math.min(PAGE, Math.floor(MAX_PARAMS / columns.length)));
  const inserts = new Map<number, SqlStatement>();
  const insertFor = (n: number) => {
    let stmt = inserts.get(n);
    if (!stmt) {
      const row = `(${columns.map(() => '?').join(', ')})`;
      stmt = to.prepare<unknown[]>(`INSERT INTO ${quote(spec.table)} (${cols}) VALUES ${Array.from({ length: n }, () => row).join(', ')}`);
      inserts.set(n, stmt);
    }
    return stmt;
  };
  let done = 0;
  let page = firstPage.all() as Record<string, unknown>[];
  while (page.length > 0) {
    for (let i = 0; i < page.length; i += perInsert) {
      const chunk = page.slice(i, i + perInsert);
      insertFor(chunk.length).run(...chunk.flatMap((r) => columns.map((c) => r[c])));
    }
    done += page.length;
    progress(Math.min(done, total));
    const last = page[page.length - 1]!;
    page = page.length < PAGE ? [] : (nextPage.all(...spec.key.map((k) => last[k])) as Record<string, unknown>[]);
  }
  return done;
}
