/**
 * Issue 14: the Postgres migrations (migrations/postgres/NNN_*.sql) must build the same library as the SQLite ones,
 * step for step. Both sides are real: the SQLite migrations applied by the project's own openDatabase to a temp
 * file, the Postgres ones applied to PGlite (PostgreSQL in WASM, over the wire protocol) through `pg`. Each side's
 * catalog is read back as one list of facts ("images.path: text NOT NULL"), and the two lists must be equal but
 * for the entries of ALLOWED, each there with its reason.
 *
 * The runner below stands in for the Postgres one the store will have (src/store/pg/pg-migrations.ts on
 * wip/postgres): one transaction per file under a transaction-scoped advisory lock, recorded in
 * `schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`, the SQLite
 * runner's table and name; a file is applied only when that table says it is missing.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../src/store/database.js';
import { listMigrations, MIGRATIONS_DIR, type Migration } from '../src/store/migrations.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';
import { tempLibraryDir } from './helpers/store-fixtures.js';

const PG_MIGRATIONS_DIR = join(MIGRATIONS_DIR, 'postgres');

/**
 * Facts that differ on purpose, matched against "sqlite: <fact>" / "pg: <fact>" lines of the diff. Each must
 * match at least one line, so an entry that no longer applies is noticed and removed.
 */
const ALLOWED: { match: RegExp; why: string }[] = [
  {
    match: /^(sqlite: schema_migrations\.version: integer NOT NULL|pg: schema_migrations\.version: pg:integer NOT NULL)$/,
    why: "the runners' version table, made by each runner (not by a migration): Postgres's says integer, as a version fits",
  },
  {
    match: /^sqlite: ocr_fts_(config|content|data|docsize|idx)[:.]/,
    why: 'FTS5 shadow tables: SQLite keeps the full-text index in them; Postgres keeps it in the GIN index below',
  },
  {
    match: /^(sqlite: ocr_fts: columns text|pg: ocr_fts: columns rowid, text)$/,
    why: "FTS5's rowid (= ocr_state.id) is implicit; Postgres needs it as a column",
  },
  { match: /^pg: ocr_fts\.rowid: integer NOT NULL$/, why: 'the explicit rowid column, see above' },
  { match: /^pg: ocr_fts: primary key \(rowid\)$/, why: "FTS5's rowid is unique like a primary key; the column makes it one" },
  {
    match: /^(sqlite: ocr_fts\.text: untyped|pg: ocr_fts\.text: text)$/,
    why: 'FTS5 columns carry no type; the Postgres column is text',
  },
  {
    match: /^(sqlite: embeddings: columns id, content_hash, model_key, dim, vector, created_at|pg: embeddings: columns id, content_hash, model_key, dim, vector, created_at, embedding|pg: embeddings\.embedding: pg:vector)$/,
    why: "pgvector's copy of each vector (migration 008), which Postgres searches in the database (src/index/pg-vector-index.ts); the embedded backend searches its own HNSW files over the BLOB",
  },
  {
    match: /^pg: ocr_fts: index ocr_fts_text_trgm \(text\)$/,
    why: "pg_trgm's GIN index in place of FTS5's trigram tokenizer: substring search, case-insensitive",
  },
];

type Value = string | number | boolean | null | undefined;
type Row = Record<string, Value>;

interface Side {
  /** Rows of a query written with `?` placeholders (turned into $1, $2… for Postgres). */
  all(sql: string, params?: unknown[]): Promise<Row[]>;
  run(sql: string, params?: unknown[]): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// Catalog → facts

const norm = (s: string) => s.replace(/["`\s]/g, '').toLowerCase();

/** The top-level comma-separated items inside the first parenthesis after `marker` (an index's key list). */
function parenItems(sql: string, marker: RegExp): string[] {
  const at = sql.search(marker);
  const open = sql.indexOf('(', at);
  const items: string[] = [];
  let depth = 0;
  let start = open + 1;
  for (let i = open; i < sql.length; i++) {
    const ch = sql[i];
    if (ch === '(') depth++;
    else if (ch === ')' && --depth === 0) {
      items.push(sql.slice(start, i));
      break;
    } else if (ch === ',' && depth === 1) {
      items.push(sql.slice(start, i));
      start = i + 1;
    }
  }
  return items.map(norm);
}

/** "AFTER UPDATE OF a, b" from either dialect's CREATE TRIGGER text. */
function triggerShape(sql: string): string {
  const m = /\b(BEFORE|AFTER|INSTEAD\s+OF)\s+(INSERT|UPDATE|DELETE)(?:\s+OF\s+([\w\s,"]+?))?\s+ON\s/i.exec(sql);
  if (!m) return `unparsed: ${sql.slice(0, 80)}`;
  const cols = m[3] ? ` OF ${m[3].split(',').map(norm).join(', ')}` : '';
  return `${m[1]!.toUpperCase()} ${m[2]!.toUpperCase()}${cols}`;
}

const SQLITE_TYPES: Record<string, string> = { INTEGER: 'integer', REAL: 'real', TEXT: 'text', BLOB: 'blob', '': 'untyped' };
const PG_TYPES: Record<string, string> = { bigint: 'integer', 'double precision': 'real', text: 'text', bytea: 'blob' };
const PG_ON_DELETE: Record<string, string> = { a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT' };

function column(table: string, name: string, type: string, notNull: boolean, hasDefault: boolean): string {
  return `${table}.${name}: ${type}${notNull ? ' NOT NULL' : ''}${hasDefault ? ' DEFAULT' : ''}`;
}

function sqliteFacts(db: Database.Database): string[] {
  const facts: string[] = [];
  const objects = db
    .prepare("SELECT type, name, tbl_name AS tbl, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
    .all() as { type: string; name: string; tbl: string; sql: string | null }[];
  for (const o of objects) {
    if (o.type === 'view') {
      const cols = db.prepare('SELECT name FROM pragma_table_info(?)').all(o.name) as { name: string }[];
      facts.push(`${o.name}: view (${cols.map((c) => c.name).join(', ')})`);
      continue;
    }
    if (o.type === 'trigger') {
      facts.push(`${o.tbl}: trigger ${o.name} ${triggerShape(o.sql!)}`);
      continue;
    }
    if (o.type !== 'table') continue;
    const t = o.name;
    facts.push(`${t}: table`);
    const cols = db.prepare('SELECT name, type, "notnull" AS nn, dflt_value AS dflt, pk FROM pragma_table_info(?) ORDER BY cid').all(t) as {
      name: string;
      type: string;
      nn: number;
      dflt: string | null;
      pk: number;
    }[];
    facts.push(`${t}: columns ${cols.map((c) => c.name).join(', ')}`);
    for (const c of cols) {
      // A primary key column is NOT NULL in Postgres; SQLite reports 0 for it (a rowid alias, or a legacy quirk).
      facts.push(column(t, c.name, SQLITE_TYPES[c.type.toUpperCase()] ?? `sqlite:${c.type}`, c.nn === 1 || c.pk > 0, c.dflt !== null));
    }
    const pk = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
    if (pk.length) facts.push(`${t}: primary key (${pk.map((c) => c.name).join(', ')})`);
    const fks = db.prepare('SELECT id, seq, "table" AS ref, "from" AS col, "to" AS refCol, on_delete AS onDelete FROM pragma_foreign_key_list(?) ORDER BY id, seq').all(t) as {
      id: number;
      ref: string;
      col: string;
      refCol: string;
      onDelete: string;
    }[];
    for (const id of [...new Set(fks.map((f) => f.id))]) {
      const parts = fks.filter((f) => f.id === id);
      facts.push(
        `${t}: foreign key (${parts.map((f) => f.col).join(', ')}) -> ${parts[0]!.ref} (${parts.map((f) => f.refCol).join(', ')}) ON DELETE ${parts[0]!.onDelete}`,
      );
    }
    const indexes = db.prepare('SELECT name, "unique" AS uniq, origin, partial FROM pragma_index_list(?)').all(t) as {
      name: string;
      uniq: number;
      origin: string;
      partial: number;
    }[];
    for (const ix of indexes) {
      if (ix.origin === 'pk') continue;
      const keys = db.prepare('SELECT cid, name FROM pragma_index_xinfo(?) WHERE key = 1 ORDER BY seqno').all(ix.name) as { cid: number; name: string | null }[];
      let exprs: string[] | null = null;
      const cols = keys.map((k, i) => {
        if (k.name !== null) return k.name;
        // An expression key: its text is only in the CREATE INDEX statement.
        const sql = (db.prepare('SELECT sql FROM sqlite_master WHERE name = ?').get(ix.name) as { sql: string }).sql;
        exprs ??= parenItems(sql, /\sON\s/i);
        return exprs[i]!;
      });
      if (ix.origin === 'u') facts.push(`${t}: unique (${cols.join(', ')})`);
      else facts.push(`${t}: index ${ix.name} (${cols.join(', ')})${ix.uniq ? ' UNIQUE' : ''}${ix.partial ? ' WHERE' : ''}`);
    }
  }
  return facts.sort();
}

async function pgFacts(side: Side, schema: string): Promise<string[]> {
  const facts: string[] = [];
  const rels = await side.all(
    `SELECT c.oid::int AS oid, c.relname AS name, c.relkind AS kind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ? AND c.relkind IN ('r', 'v', 'p', 'f', 'm') ORDER BY c.relname`,
    [schema],
  );
  const namesOf = async (oid: Value, keys: string) =>
    (
      await side.all(
        `SELECT a.attname AS name FROM unnest(${keys}) WITH ORDINALITY k(attnum, o)
         JOIN pg_attribute a ON a.attrelid = ? AND a.attnum = k.attnum ORDER BY k.o`,
        [oid],
      )
    ).map((r) => r.name as string);
  for (const rel of rels) {
    const t = rel.name as string;
    const cols = await side.all(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type, attnotnull AS nn, atthasdef AS dflt FROM pg_attribute
       WHERE attrelid = ? AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
      [rel.oid],
    );
    if (rel.kind === 'v') {
      facts.push(`${t}: view (${cols.map((c) => c.name).join(', ')})`);
      continue;
    }
    facts.push(rel.kind === 'r' ? `${t}: table` : `${t}: relkind ${rel.kind}`);
    facts.push(`${t}: columns ${cols.map((c) => c.name).join(', ')}`);
    for (const c of cols) {
      const type = c.type as string;
      facts.push(column(t, c.name as string, PG_TYPES[type] ?? `pg:${type}`, c.nn === true || c.nn === 't', c.dflt === true || c.dflt === 't'));
    }
    const cons = await side.all(
      `SELECT contype AS type, conkey::text AS keys, confkey::text AS refkeys, confrelid::int AS refoid,
              (SELECT relname FROM pg_class WHERE oid = confrelid) AS ref, confdeltype AS ondelete
       FROM pg_constraint WHERE conrelid = ? AND contype IN ('p', 'u', 'f') ORDER BY conname`,
      [rel.oid],
    );
    for (const c of cons) {
      const names = await namesOf(rel.oid, `'${c.keys}'::int2[]`);
      if (c.type === 'p') facts.push(`${t}: primary key (${names.join(', ')})`);
      else if (c.type === 'u') facts.push(`${t}: unique (${names.join(', ')})`);
      else {
        const refNames = await namesOf(c.refoid, `'${c.refkeys}'::int2[]`);
        facts.push(`${t}: foreign key (${names.join(', ')}) -> ${c.ref} (${refNames.join(', ')}) ON DELETE ${PG_ON_DELETE[c.ondelete as string]}`);
      }
    }
    // Indexes made by CREATE INDEX, not the ones backing a primary key or UNIQUE constraint (those are above).
    const indexes = await side.all(
      `SELECT i.indexrelid::int AS oid, ic.relname AS name, i.indisunique AS uniq, i.indpred IS NOT NULL AS partial, i.indnkeyatts AS n
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
       WHERE i.indrelid = ? AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
       ORDER BY ic.relname`,
      [rel.oid],
    );
    for (const ix of indexes) {
      const keys = await side.all('SELECT pg_get_indexdef(?::oid, k, true) AS def FROM generate_series(1, ?::int) k ORDER BY k', [ix.oid, ix.n]);
      const isTrue = (v: Value) => v === true || v === 't';
      facts.push(
        `${t}: index ${ix.name} (${keys.map((k) => norm(k.def as string)).join(', ')})${isTrue(ix.uniq) ? ' UNIQUE' : ''}${isTrue(ix.partial) ? ' WHERE' : ''}`,
      );
    }
    const triggers = await side.all('SELECT tgname AS name, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgrelid = ? AND NOT tgisinternal', [rel.oid]);
    for (const tg of triggers) facts.push(`${t}: trigger ${tg.name} ${triggerShape(tg.def as string)}`);
  }
  return facts.sort();
}

/** The lines only one side has, less the allowed ones; and the allow-list entries nothing matched. */
function schemaDiff(sqlite: string[], pgSide: string[]): { unexpected: string[]; unusedAllowances: string[] } {
  const inPg = new Set(pgSide);
  const inSqlite = new Set(sqlite);
  const lines = [...sqlite.filter((f) => !inPg.has(f)).map((f) => `sqlite: ${f}`), ...pgSide.filter((f) => !inSqlite.has(f)).map((f) => `pg: ${f}`)];
  const used = new Set<number>();
  const unexpected = lines.filter((line) => {
    const i = ALLOWED.findIndex((a) => a.match.test(line));
    if (i >= 0) used.add(i);
    return i < 0;
  });
  return { unexpected, unusedAllowances: ALLOWED.filter((_, i) => !used.has(i)).map((a) => `${a.match} (${a.why})`) };
}

// ---------------------------------------------------------------------------------------------------------------
// The two databases

function sqliteSide(db: Database.Database): Side {
  return {
    all: async (sql, params = []) => db.prepare(sql).all(...params) as Row[],
    run: async (sql, params = []) => {
      db.prepare(sql).run(...params);
    },
  };
}

/** bigint (oid 20) as a number: every id and time here is far below 2^53. */
const pgTypes = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

function pgSide(client: pg.Client): Side {
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    all: async (sql, params = []) => (await client.query(numbered(sql), params)).rows as Row[],
    run: async (sql, params = []) => {
      await client.query(numbered(sql), params);
    },
  };
}

/** The advisory lock key the real runner takes ("clip"), so this stand-in and it never migrate at once. */
const MIGRATION_LOCK = 0x636c6970;

/** Applies the Postgres migrations the version table says are missing, up to `upTo`. Returns the versions applied. */
async function migratePg(client: pg.Client, migrations: readonly Migration[], upTo = Number.POSITIVE_INFINITY): Promise<number[]> {
  const applied: number[] = [];
  for (const m of migrations.filter((x) => x.version <= upTo)) {
    await client.query('BEGIN');
    try {
      // Held to the end of the transaction: a second runner waits, then sees the step done.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)');
      const { rows } = await client.query<{ v: number }>('SELECT coalesce(max(version), 0) AS v FROM schema_migrations');
      if (rows[0]!.v >= m.version) {
        await client.query('COMMIT');
        continue;
      }
      // Simple-query protocol (no parameters): the whole file, many statements, in this transaction.
      await client.query(readFileSync(m.path, 'utf8'));
      await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()]);
      await client.query('COMMIT');
      applied.push(m.version);
    } catch (err) {
      await client.query('ROLLBACK');
      throw new Error(`Postgres migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
    }
  }
  return applied;
}

/** A client whose unqualified names resolve in `schema` (created fresh); extensions stay in public. */
async function pgClient(server: PgliteServer, schema: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: server.url, types: pgTypes });
  await client.connect();
  if (schema !== 'public') await client.query(`CREATE SCHEMA ${schema}`);
  await client.query(`SET search_path TO ${schema}, public`);
  return client;
}

/** A SQLite library migrated only up to `upTo` (a migrations folder holding just those files). */
function sqliteMigrationsUpTo(dir: string, upTo: number): string {
  const out = join(dir, `migrations-${upTo}`);
  mkdirSync(out);
  for (const m of listMigrations().filter((x) => x.version <= upTo)) copyFileSync(m.path, join(out, `${String(m.version).padStart(3, '0')}_${m.name}.sql`));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

let server: PgliteServer;
const clients: pg.Client[] = [];
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  server = await startPgliteServer();
}, 60_000);

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await server?.stop();
  while (cleanups.length) cleanups.pop()!();
});

function tempDir(): string {
  const t = tempLibraryDir('clipdex-pgschema-');
  cleanups.push(t.cleanup);
  return t.dir;
}

describe('Postgres schema parity', () => {
  it('there is one Postgres migration per SQLite one, with the same number and name', () => {
    const sqlite = listMigrations().map((m) => `${m.version} ${m.name}`);
    expect(listMigrations(PG_MIGRATIONS_DIR).map((m) => `${m.version} ${m.name}`)).toEqual(sqlite);
    for (const m of listMigrations(PG_MIGRATIONS_DIR)) {
      const sql = readFileSync(m.path, 'utf8');
      // The header names its SQLite twin, and the runner owns the transaction.
      expect(sql.slice(0, 300)).toContain(`migrations/${String(m.version).padStart(3, '0')}_${m.name}.sql`);
      expect(sql).not.toMatch(/^\s*(BEGIN|COMMIT)\s*;/im);
    }
  });

  it('both dialects build the same tables, columns, keys, indexes and triggers; a second migrate changes nothing', async () => {
    const store = openDatabase(join(tempDir(), 'library.db'));
    cleanups.push(() => store.close());
    const client = await pgClient(server, 'public');
    clients.push(client);
    const pgMigrations = listMigrations(PG_MIGRATIONS_DIR);
    expect(await migratePg(client, pgMigrations)).toEqual(pgMigrations.map((m) => m.version));

    const sqlite = sqliteFacts(store.db);
    const pgList = await pgFacts(pgSide(client), 'public');
    // Sanity: both lists are real catalogs, not two empty ones agreeing.
    expect(sqlite).toContain('images: index images_format (lower(format))');
    expect(pgList).toContain('labeled_pairs: foreign key (image_id) -> images (id) ON DELETE SET NULL');
    const { unexpected, unusedAllowances } = schemaDiff(sqlite, pgList);
    expect(unexpected, 'schema facts that differ between migrations/ and migrations/postgres/').toEqual([]);
    expect(unusedAllowances, 'ALLOWED entries that no difference matches any more').toEqual([]);

    const sqliteId = store.libraryId;
    const [pgMeta] = await pgSide(client).all("SELECT value FROM meta WHERE key = 'library_id'");
    expect(sqliteId).toMatch(/^[0-9a-f]{32}$/);
    expect(pgMeta!.value).toMatch(/^[0-9a-f]{32}$/);

    // Again: the version table says everything is there, so nothing runs and nothing changes.
    expect(await migratePg(client, pgMigrations)).toEqual([]);
    expect(await pgFacts(pgSide(client), 'public')).toEqual(pgList);
    expect((await pgSide(client).all("SELECT value FROM meta WHERE key = 'library_id'"))[0]!.value).toBe(pgMeta!.value);
    const versions = await pgSide(client).all('SELECT version, name FROM schema_migrations ORDER BY version');
    expect(versions.map((r) => `${r.version} ${r.name}`)).toEqual(pgMigrations.map((m) => `${m.version} ${m.name}`));
    // The files themselves are not idempotent: the version table is what makes the second run a no-op.
    await expect(client.query(readFileSync(pgMigrations[0]!.path, 'utf8'))).rejects.toThrow(/already exists/);
  }, 30_000);

  it('the CHECK, UNIQUE and foreign key constraints refuse the same rows on both', async () => {
    const store = openDatabase(join(tempDir(), 'library.db'));
    cleanups.push(() => store.close());
    const client = await pgClient(server, 'checks');
    clients.push(client);
    await migratePg(client, listMigrations(PG_MIGRATIONS_DIR));
    const v = Buffer.alloc(8);
    // [statement, refused?]: the catalog diff cannot see CHECK expressions, so each is tried with a row it must refuse.
    // Ids are looked up, not assumed: a refused INSERT still uses up an identity value in Postgres (gaps, never reuse).
    const cases: [string, boolean, unknown[]?][] = [
      ["INSERT INTO roots (path, added_at, exclude) VALUES ('/r1', 1, 'not json')", true],
      ["INSERT INTO roots (path, added_at, exclude) VALUES ('/r1', 1, '{}')", true],
      ["INSERT INTO roots (path, added_at, state) VALUES ('/r1', 1, 'gone')", true],
      ["INSERT INTO roots (path, added_at, exclude) VALUES ('/r1', 1, '[\"*.tmp\"]')", false],
      ["INSERT INTO roots (path, added_at) VALUES ('/r1', 2)", true],
      ["INSERT INTO images (root_id, path, size, mtime_ms, created_at, updated_at) VALUES (99, '/r1/a', 1, 1, 1, 1)", true],
      ["INSERT INTO images (root_id, path, size, mtime_ms, created_at, updated_at) VALUES ((SELECT id FROM roots WHERE path = '/r1'), '/r1/a', -1, 1, 1, 1)", true],
      ["INSERT INTO images (root_id, path, size, mtime_ms, created_at, updated_at, status) VALUES ((SELECT id FROM roots WHERE path = '/r1'), '/r1/a', 1, 1, 1, 1, 'lost')", true],
      ["INSERT INTO images (root_id, path, size, mtime_ms, created_at, updated_at) VALUES ((SELECT id FROM roots WHERE path = '/r1'), '/r1/a', 1, 1, 1, 1)", false],
      ["INSERT INTO embedding_models (model_key, dim, created_at) VALUES ('z', 0, 1)", true],
      ["INSERT INTO embedding_models (model_key, dim, created_at) VALUES ('m', 2, 1)", false],
      ["INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES ('c', 'm', 3, ?, 1)", true, [v]],
      ["INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES ('c', 'nope', 2, ?, 1)", true, [v]],
      ["INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES ('c', 'm', 2, ?, 1)", false, [v]],
      ["INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES ('c', 'm', 2, ?, 2)", true, [v]],
      ["INSERT INTO adapters (model_key, version, weights, metrics, created_at) VALUES ('m', 1, ?, 'nope', 1)", true, [v]],
      ["INSERT INTO adapters (model_key, version, weights, created_at, active) VALUES ('m', 1, ?, 1, 2)", true, [v]],
      ["INSERT INTO adapters (model_key, version, weights, created_at, active) VALUES ('m', 1, ?, 1, 1)", false, [v]],
      ["INSERT INTO adapters (model_key, version, weights, created_at, active) VALUES ('m', 2, ?, 1, 1)", true, [v]],
      ["INSERT INTO adapters (model_key, version, weights, created_at, active) VALUES ('m', 1, ?, 1, 0)", true, [v]],
      ["INSERT INTO labeled_pairs (image_id, last_path, caption, split, created_at) VALUES ((SELECT id FROM images WHERE path = '/r1/a'), '/r1/a', '', 'train', 1)", true],
      ["INSERT INTO labeled_pairs (image_id, last_path, caption, split, created_at) VALUES ((SELECT id FROM images WHERE path = '/r1/a'), '/r1/a', 'x', 'test', 1)", true],
      ["INSERT INTO labeled_pairs (image_id, last_path, caption, split, created_at) VALUES (7, '/r1/a', 'x', 'val', 1)", true],
      ["INSERT INTO ocr_state (content_hash, status, engine, updated_at) VALUES ('c', 'failed', 'e', 1)", true],
      ["INSERT INTO ocr_state (content_hash, status, engine, updated_at, error_code) VALUES ('c', 'done', 'e', 1, 'X')", true],
      ["INSERT INTO ocr_state (content_hash, status, engine, updated_at, stopped) VALUES ('c', 'done', 'e', 1, 'bored')", true],
      ["INSERT INTO ocr_state (content_hash, status, engine, updated_at) VALUES ('c', 'done', 'e', 1)", false],
      ["INSERT INTO ocr_lines (state_id, line, text, confidence, box) VALUES ((SELECT id FROM ocr_state WHERE content_hash = 'c'), 0, 't', 1.5, '[]')", true],
      ["INSERT INTO ocr_lines (state_id, line, text, confidence, box) VALUES ((SELECT id FROM ocr_state WHERE content_hash = 'c'), 0, 't', 0.5, '[[0,')", true],
      ["INSERT INTO ocr_lines (state_id, line, text, confidence, box) VALUES ((SELECT id FROM ocr_state WHERE content_hash = 'c'), 0, 't', 0.5, '[]')", false],
      ["INSERT INTO ocr_lines (state_id, line, text, confidence, box) VALUES ((SELECT id FROM ocr_state WHERE content_hash = 'c'), 0, 'again', 0.5, '[]')", true],
      [
        "INSERT INTO trashed_photos (image_id, root_path, original_path, trash_path, \"row\", trashed_at) VALUES (1, '/r1', '/r1/a', '/r1/t', '{', 1)",
        true,
      ],
      ["INSERT INTO ingest_queue (path, root_id, size, mtime_ms, enqueued_at) VALUES ('/r1/b', (SELECT id FROM roots WHERE path = '/r1'), 1, 1, 1)", false],
      ["INSERT INTO ingest_queue (path, root_id, size, mtime_ms, enqueued_at) VALUES ('/r1/b', (SELECT id FROM roots WHERE path = '/r1'), 2, 1, 1)", true],
    ];
    const outcome = (side: Side, sql: string, params?: unknown[]) =>
      side.run(sql, params).then(
        () => 'accepted',
        () => 'refused',
      );
    const seen: string[] = [];
    const expected: string[] = [];
    for (const [sql, refused, params] of cases) {
      seen.push(`${sql}: sqlite ${await outcome(sqliteSide(store.db), sql, params)}, pg ${await outcome(pgSide(client), sql, params)}`);
      expected.push(`${sql}: sqlite ${refused ? 'refused' : 'accepted'}, pg ${refused ? 'refused' : 'accepted'}`);
    }
    expect(seen).toEqual(expected);
  }, 30_000);

  it('a library made before schema 3 migrates its data the same way, and the triggers then act the same on both', async () => {
    const dir = tempDir();
    const dbPath = join(dir, 'library.db');
    const atVersion2 = openDatabase(dbPath, { migrationsDir: sqliteMigrationsUpTo(dir, 2) });
    const client = await pgClient(server, 'upgraded');
    clients.push(client);
    const pgMigrations = listMigrations(PG_MIGRATIONS_DIR);
    expect(await migratePg(client, pgMigrations, 2)).toEqual([1, 2]);

    // The same rows, written at schema 2 on both: labels on image ids (2 then 3 deleted: ids a sequence handed out).
    const atSchema2 = async (side: Side) => {
      await side.run("INSERT INTO roots (path, added_at) VALUES ('/photos', 1)");
      const image = "INSERT INTO images (root_id, path, size, mtime_ms, content_hash, status, created_at, updated_at) VALUES (1, ?, 10, 1.5, ?, ?, 1, 1)";
      await side.run(image, ['/photos/a.jpg', 'c1', 'indexed']);
      await side.run(image, ['/photos/b.jpg', 'c2', 'indexed']);
      await side.run(image, ['/photos/copy-of-a.jpg', 'c1', 'offline']);
      const label = "INSERT INTO labeled_pairs (image_id, caption, split, created_at) VALUES (?, ?, 'train', 7)";
      await side.run(label, [1, 'a dog']);
      await side.run(label, [2, 'a cat']);
      await side.run(label, [2, 'gone']);
      await side.run("DELETE FROM labeled_pairs WHERE caption = 'gone'");
      await side.run("INSERT INTO embedding_models (model_key, dim, created_at) VALUES ('m', 2, 1)");
      // c9: content with an embedding and no image, which schema 3 records as orphaned.
      for (const hash of ['c1', 'c2', 'c9']) {
        await side.run("INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES (?, 'm', 2, ?, 1)", [hash, Buffer.alloc(8, 1)]);
      }
    };
    await atSchema2(sqliteSide(atVersion2.db));
    atVersion2.close();
    await atSchema2(pgSide(client));

    const store = openDatabase(dbPath);
    cleanups.push(() => store.close());
    const after2 = pgMigrations.map((m) => m.version).filter((v) => v > 2);
    expect(store.applied.map((a) => a.version)).toEqual(after2);
    expect(await migratePg(client, pgMigrations)).toEqual(after2);
    const sides = { sqlite: sqliteSide(store.db), pg: pgSide(client) };

    const state = async (side: Side) => ({
      labels: await side.all('SELECT id, content_hash, image_id, last_path, missing_since IS NULL AS attached, caption, split FROM labeled_pairs ORDER BY id'),
      orphans: (await side.all('SELECT content_hash FROM orphaned_content ORDER BY content_hash')).map((r) => r.content_hash),
      changes: (await side.all('SELECT model_key, image_id FROM index_changes ORDER BY seq')).map((r) => `${r.model_key}:${r.image_id}`),
      ocr: (await side.all('SELECT (SELECT count(*) FROM ocr_state) AS states, (SELECT count(*) FROM ocr_fts) AS texts'))[0],
    });
    const migrated = await state(sides.sqlite);
    // Postgres returns booleans for `IS NULL`; SQLite 0/1: compare as SQLite writes them.
    const asSqlite = (s: Awaited<ReturnType<typeof state>>) => ({
      ...s,
      labels: s.labels.map((l): Row => ({ ...l, attached: l.attached === true || l.attached === 1 ? 1 : 0 })),
      ocr: { states: Number(s.ocr!.states), texts: Number(s.ocr!.texts) },
    });
    expect(asSqlite(migrated).labels).toEqual([
      { id: 1, content_hash: 'c1', image_id: 1, last_path: '/photos/a.jpg', attached: 1, caption: 'a dog', split: 'train' },
      { id: 2, content_hash: 'c2', image_id: 2, last_path: '/photos/b.jpg', attached: 1, caption: 'a cat', split: 'train' },
    ]);
    expect(migrated.orphans).toEqual(['c9']);
    expect(asSqlite(await state(sides.pg)), 'Postgres rows right after migrating to the latest schema').toEqual(asSqlite(migrated));

    // A label made after the rebuild never takes id 3, which the old table had already handed out.
    await sides.pg.run("INSERT INTO labeled_pairs (content_hash, image_id, last_path, caption, split, created_at) VALUES ('c2', 2, '/photos/b.jpg', 'new', 'val', 8)");
    const [fresh] = await sides.pg.all("SELECT id FROM labeled_pairs WHERE caption = 'new'");
    expect(fresh!.id).toBeGreaterThan(3);
    await sides.pg.run("DELETE FROM labeled_pairs WHERE caption = 'new'");

    // The same writes on both; every trigger of 001, 003, 006 and 007 has its say in what follows.
    const script: [string, unknown[]?][] = [
      ["INSERT INTO vector_indexes (model_key, registered_at) VALUES ('m', 1)"],
      ["UPDATE embeddings SET vector = ? WHERE content_hash = 'c1'", [Buffer.alloc(8, 2)]],
      ["INSERT INTO embedding_models (model_key, dim, created_at) VALUES ('n', 2, 1)"],
      ["INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES ('c2', 'n', 2, ?, 1)", [Buffer.alloc(8, 3)]],
      // a.jpg goes: its label moves to the offline copy, still attached.
      ["DELETE FROM images WHERE path = '/photos/a.jpg'"],
      ["UPDATE images SET status = 'indexed' WHERE path = '/photos/copy-of-a.jpg'"],
      ['UPDATE images SET hidden_at = 5 WHERE id = 3'],
      ['UPDATE images SET hidden_at = NULL WHERE id = 3'],
      // The last c1 goes: the label is kept as missing, c1 is orphaned.
      ['DELETE FROM images WHERE id = 3'],
      // c1 comes back under a new name: the label attaches to it and the orphan mark goes.
      [
        "INSERT INTO images (root_id, path, size, mtime_ms, content_hash, status, created_at, updated_at) VALUES (1, '/photos/again.jpg', 10, 1.5, 'c1', 'indexed', 2, 2)",
      ],
      ["DELETE FROM embeddings WHERE content_hash = 'c1' AND model_key = 'm'"],
      ["UPDATE images SET path = '/photos/renamed.jpg' WHERE path = '/photos/again.jpg'"],
      // Edited in place: the label follows the row to the new content.
      ["UPDATE images SET content_hash = 'c1b' WHERE path = '/photos/renamed.jpg'"],
      ["INSERT INTO ocr_state (content_hash, status, engine, updated_at) VALUES ('c2', 'done', 'e', 1)"],
      ["INSERT INTO ocr_fts (rowid, text) VALUES (1, 'hello world')"],
      // b.jpg goes, then garbage collection drops c2's orphan mark: its OCR text goes with it.
      ["DELETE FROM images WHERE path = '/photos/b.jpg'"],
      ["DELETE FROM orphaned_content WHERE content_hash = 'c2'"],
    ];
    for (const [sql, params] of script) {
      for (const [name, side] of Object.entries(sides)) {
        await side.run(sql, params).catch((err: Error) => {
          throw new Error(`${name}: ${sql}: ${err.message}`);
        });
      }
    }
    const after = asSqlite(await state(sides.sqlite));
    expect(after.labels.find((l) => l.caption === 'a dog')).toMatchObject({ content_hash: 'c1b', image_id: 4, last_path: '/photos/renamed.jpg', attached: 1 });
    expect(after.labels.find((l) => l.caption === 'a cat')).toMatchObject({ image_id: null, last_path: '/photos/b.jpg', attached: 0 });
    expect(after.ocr).toEqual({ states: 0, texts: 0 });
    expect(after.changes.length).toBeGreaterThan(5);
    expect(asSqlite(await state(sides.pg)), 'Postgres rows after the same writes (labels, orphans, change log, OCR)').toEqual(after);
  }, 30_000);
});
