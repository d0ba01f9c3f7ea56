/**
 * The statements of vector search inside Postgres (pgvector), for src/index/pg-vector-index.ts: each model
 * key's HNSW index, the pgvector column filled where it is missing, and the nearest-neighbour queries with
 * the library's membership and filters in the same statement.
 *
 * Why the shapes below:
 * - One partial expression index per model key, `USING hnsw ((embedding::halfvec(D)) halfvec_cosine_ops)
 *   WHERE model_key = '<key>'`: the column is dimensionless (keys of several dimensions share the table) and
 *   HNSW needs a fixed dimension, which the cast gives; the predicate keeps each key's graph to its own rows.
 *   The key is written into the statements as a literal, not a parameter: the planner matches a partial
 *   index only against a predicate it can prove, and a generic plan of `model_key = $1` proves nothing.
 * - halfvec in the graph, vector (float32) in the table: the graph is half the size (1 KB instead of 2 KB per
 *   512-d vector, so twice as much of it stays in shared buffers) and the candidates it yields are re-scored
 *   on the float32 column, so scores are float32 cosines as the embedded index gives, not halfvec's (which
 *   differ in the 3rd–4th decimal). halfvec also lifts HNSW's limit from 2 000 to 4 000 dimensions. A float32
 *   graph (`vector`) can be asked for instead: on a server with F16C conversions halfvec costs nothing extra,
 *   but where they are missing (PGlite's WASM) every distance converts in software (npm run bench:scale).
 * - Iterative scans in relaxed order (pgvector ≥ 0.8): the graph is walked until the statement's LIMIT is met
 *   by rows that pass the join to images and the filter, so a filter that keeps 1% still returns k; relaxed
 *   order is re-sorted exactly by the outer query (a materialized CTE, as pgvector documents).
 */
import { createHash } from 'node:crypto';
import { ClipdexError } from '../../errors.js';
import { filterClauses, type ImageFilter, MEMBER_SQL } from '../image-filter.js';
import { dialectOf, type SqlHandle } from '../sql-handle.js';
import { blobToVector } from '../vector-blob.js';
import type { PgSyncConnection } from './pg-sync-connection.js';

/** pgvector's text form of a vector: 9 significant digits give back every float32 exactly. */
export function vectorLiteral(v: ArrayLike<number>): string {
  let s = '[';
  for (let i = 0; i < v.length; i++) s += (i ? ',' : '') + (v[i] === 0 ? '0' : v[i]!.toPrecision(9));
  return `${s}]`;
}

export interface PgVectorHit {
  id: number;
  score: number;
}

export interface PgSearchOptions {
  /** hnsw.ef_search: the candidate list of each pass through the graph. */
  ef: number;
  /** hnsw.max_scan_tuples: how many index tuples an iterative scan may visit before it gives up. */
  maxScanTuples: number;
  filter?: ImageFilter | null;
  /**
   * Walk the graph even under a filter the planner would answer from another index (a folder's path range,
   * scored exactly): how the iterative scan itself is measured and tested.
   */
  graphOnly?: boolean;
}

/** What the graph holds: half-precision (default) or float32 vectors; the table keeps float32 either way. */
export type GraphType = 'halfvec' | 'vector';

export interface HnswBuildOptions {
  m: number;
  efConstruction: number;
  /** maintenance_work_mem for the build: pgvector builds in memory while the graph fits, far faster. */
  maintenanceWorkMem: string;
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}

function checkDim(dim: number, graph: GraphType = 'halfvec'): number {
  const max = graph === 'halfvec' ? 4000 : 2000;
  if (!Number.isInteger(dim) || dim < 1 || dim > max) throw new ClipdexError('INVALID_ARGUMENT', `pgvector's HNSW on ${graph} takes 1 to ${max} dimensions, not ${dim}`);
  return dim;
}

export class PgVectorRepo {
  private readonly db: PgSyncConnection;

  constructor(
    db: SqlHandle,
    private readonly graph: GraphType = 'halfvec',
  ) {
    if (dialectOf(db) !== 'postgres') throw new ClipdexError('INVALID_ARGUMENT', 'vector search in the database needs a Postgres library');
    this.db = db as PgSyncConnection;
  }

  /** The index's name: Postgres names stop at 63 bytes and a model key can be longer, so a digest of it. */
  static indexName(modelKey: string, dim: number, graph: GraphType = 'halfvec'): string {
    const id = graph === 'halfvec' ? `${modelKey}\0${dim}` : `${modelKey}\0${dim}\0${graph}`;
    return `embeddings_hnsw_${createHash('sha256').update(id).digest('hex').slice(0, 24)}`;
  }

  private nameOf(modelKey: string, dim: number): string {
    return PgVectorRepo.indexName(modelKey, checkDim(dim, this.graph), this.graph);
  }

  hasIndex(name: string): boolean {
    return this.db.query("SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1", [name]).rows.length > 0;
  }

  /**
   * Creates the key's HNSW index unless it exists; returns whether it built one. Processes opening the same
   * key at once take turns on an advisory lock, so one builds and the others find it there.
   */
  createIndex(modelKey: string, dim: number, options: HnswBuildOptions): boolean {
    const name = this.nameOf(modelKey, dim);
    // A build over a whole library (one moved in by `clipdex migrate`, a model switch) runs for minutes on a
    // large one: no statement timeout and no bridge deadline for it.
    return this.db.unbounded(() =>
      this.db.transaction(() => {
        this.db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
        if (this.hasIndex(name)) return false;
        this.db.exec('SET LOCAL statement_timeout = 0');
        this.db.exec(`SET LOCAL maintenance_work_mem = ${literal(options.maintenanceWorkMem)}`);
        this.db.exec(
          `CREATE INDEX ${name} ON embeddings USING hnsw ((embedding::${this.graph}(${dim})) ${this.graph}_cosine_ops) ` +
            `WITH (m = ${Math.trunc(options.m)}, ef_construction = ${Math.trunc(options.efConstruction)}) WHERE model_key = ${literal(modelKey)}`,
        );
        // Statistics for the planner: an index is built on a table that was just filled (a library moved or
        // re-encoded), and without them it guesses one row per table and sorts instead of walking the graph.
        this.db.exec('ANALYZE embeddings, images');
        return true;
      })(),
    );
  }

  /** Builds the index again from the table (after heavy deletion, or to apply new build parameters). */
  reindex(modelKey: string, dim: number, options: HnswBuildOptions): void {
    const name = this.nameOf(modelKey, dim);
    this.db.transaction(() => {
      this.db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [name]);
      this.db.exec(`DROP INDEX IF EXISTS ${name}`);
    })();
    this.createIndex(modelKey, dim, options);
  }

  /** Bytes the key's index occupies, or null without one. */
  indexBytes(modelKey: string, dim: number): number | null {
    const r = this.db.query<{ n: number | null }>('SELECT pg_relation_size(to_regclass($1)) AS n', [this.nameOf(modelKey, dim)]).rows[0];
    return r?.n ?? null;
  }

  /** Rows of the key whose pgvector column is still empty (written before migration 008). */
  missingCount(modelKey: string): number {
    return this.db.query<{ n: number }>('SELECT count(*) AS n FROM embeddings WHERE model_key = $1 AND embedding IS NULL', [modelKey]).rows[0]!.n;
  }

  /** Fills up to `limit` empty pgvector columns of the key from their bytea; returns how many it filled. */
  fillMissing(modelKey: string, limit = 500): number {
    const rows = this.db.query<{ id: number; vector: Buffer }>('SELECT id, vector FROM embeddings WHERE model_key = $1 AND embedding IS NULL ORDER BY id LIMIT $2', [modelKey, limit]).rows;
    if (rows.length === 0) return 0;
    // `embedding IS NULL` again: a writer that stored a new vector meanwhile filled the column itself.
    this.db.query('UPDATE embeddings e SET embedding = CAST(u.v AS vector) FROM unnest($1::bigint[], $2::text[]) AS u(id, v) WHERE e.id = u.id AND e.embedding IS NULL', [
      rows.map((r) => r.id),
      rows.map((r) => vectorLiteral(blobToVector(r.vector))),
    ]);
    return rows.length;
  }

  /** Searchable images of the key (indexed, not hidden, with a vector): two files of one content are two. */
  memberCount(modelKey: string): number {
    return this.db.query<{ n: number }>(`SELECT count(*) AS n FROM embeddings e JOIN images i ON i.content_hash = e.content_hash WHERE e.model_key = $1 AND ${MEMBER_SQL}`, [modelKey]).rows[0]!.n;
  }

  memberIds(modelKey: string): number[] {
    return this.db
      .query<{ id: number }>(`SELECT i.id FROM embeddings e JOIN images i ON i.content_hash = e.content_hash WHERE e.model_key = $1 AND ${MEMBER_SQL} ORDER BY i.id`, [modelKey])
      .rows.map((r) => r.id);
  }

  /** The stored vector of a member image (undefined for one that is no member). */
  memberVector(modelKey: string, imageId: number): Float32Array | undefined {
    const r = this.db.query<{ vector: Buffer }>(`SELECT e.vector FROM images i JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = $1 WHERE i.id = $2 AND ${MEMBER_SQL}`, [
      modelKey,
      imageId,
    ]).rows[0];
    return r ? blobToVector(r.vector) : undefined;
  }

  /**
   * The k nearest members of each query through the key's HNSW index, in one transaction (its settings are
   * SET LOCAL: they end with it, and a pooled session is left as it was found). Each answer is exact in its
   * order; it may be shorter than k when the scan limit was reached first (the caller falls back to `exact`).
   */
  search(modelKey: string, dim: number, queries: readonly Float32Array[], k: number, options: PgSearchOptions): PgVectorHit[][] {
    const where = filterSql(options.filter ?? null, 5);
    // Twice k (and at least k + 10) candidates from the graph, re-scored on float32: halfvec's rounding may
    // swap neighbours that are nearly tied at the k-th place, and the extra candidates catch them.
    const candidates = Math.max(2 * k, k + 10);
    const sql = searchSql(modelKey, dim, where.sql, this.graph);
    return this.db.transaction(() => {
      this.db.exec(scanSettings(options, candidates));
      return queries.map((q) => {
        const text = vectorLiteral(q);
        return this.db.query<PgVectorHit>(sql, [text, candidates, text, k, ...where.values]).rows.map(scored);
      });
    })();
  }

  /**
   * The exact k nearest members (a sequential pass over the float32 column, which no index serves): the
   * fallback when a scan comes back short, and the truth the ef is tuned against.
   */
  exact(modelKey: string, query: Float32Array, k: number, filter: ImageFilter | null = null): PgVectorHit[] {
    const where = filterSql(filter, 3);
    const text = vectorLiteral(query);
    return this.db
      .query<PgVectorHit>(
        `SELECT i.id, 1 - (e.embedding <=> $1::vector) AS score FROM embeddings e JOIN images i ON i.content_hash = e.content_hash ` +
          `WHERE e.model_key = ${literal(modelKey)} AND ${MEMBER_SQL} AND e.embedding IS NOT NULL${where.sql} ORDER BY e.embedding <=> $1::vector, i.id LIMIT $2`,
        [text, k, ...where.values],
      )
      .rows.map(scored);
  }

  /** The plan of `search`'s statement for one query, as EXPLAIN prints it (tests and diagnostics). */
  explain(modelKey: string, dim: number, query: Float32Array, k: number, options: PgSearchOptions): string {
    const where = filterSql(options.filter ?? null, 5);
    const candidates = Math.max(2 * k, k + 10);
    const text = vectorLiteral(query);
    return this.db.transaction(() => {
      this.db.exec(scanSettings(options, candidates));
      return this.db
        .query<{ 'QUERY PLAN': string }>(`EXPLAIN ${searchSql(modelKey, dim, where.sql, this.graph)}`, [text, candidates, text, k, ...where.values])
        .rows.map((r) => r['QUERY PLAN'])
        .join('\n');
    })();
  }
}

/**
 * The transaction's settings for a search. Without a filter the graph is always the better path, and
 * `enable_sort = off` keeps the planner on it even when its statistics are stale (a sort of every member looks
 * cheap to a planner that thinks the table holds a few rows). With a filter the planner chooses: a small
 * subset reached through its own index (a folder's path range) is scored exactly faster than the graph is
 * walked, a large one through the graph with the filter applied during the iterative scan.
 */
function scanSettings(options: PgSearchOptions, candidates: number): string {
  const ef = Math.max(1, Math.min(1000, Math.trunc(Math.max(options.ef, candidates))));
  return (
    `SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = ${ef}; ` +
    `SET LOCAL hnsw.max_scan_tuples = ${Math.max(1, Math.trunc(options.maxScanTuples))}${options.filter && !options.graphOnly ? '' : '; SET LOCAL enable_sort = off'}`
  );
}

/** A zero vector has no cosine (pgvector says NaN): it scores 0 against everything, as in the embedded index. */
function scored(r: PgVectorHit): PgVectorHit {
  const score = Number(r.score);
  return { id: Number(r.id), score: Number.isNaN(score) ? 0 : score };
}

/**
 * The search: $2 candidates from the key's graph with the filter's conditions applied during the scan,
 * re-scored exactly on the float32 column against $3, the best $4 kept. $1 is the query, cast as the graph's.
 */
function searchSql(modelKey: string, dim: number, filterConditions: string, graph: GraphType): string {
  return (
    `WITH hits AS MATERIALIZED (SELECT i.id, e.embedding AS v FROM embeddings e JOIN images i ON i.content_hash = e.content_hash ` +
    `WHERE e.model_key = ${literal(modelKey)} AND ${MEMBER_SQL} AND e.embedding IS NOT NULL${filterConditions} ORDER BY e.embedding::${graph}(${checkDim(dim, graph)}) <=> $1::${graph}(${dim}) LIMIT $2) ` +
    'SELECT id, 1 - (v <=> $3::vector) AS score FROM hits ORDER BY score DESC, id LIMIT $4'
  );
}

/** The filter's conditions on `images i` (image-filter.ts says what they mean), numbered from `$first`. */
function filterSql(filter: ImageFilter | null, first: number): { sql: string; values: unknown[] } {
  const values: unknown[] = [];
  if (!filter) return { sql: '', values };
  const clauses = filterClauses(filter, 'postgres', (_name, value) => {
    values.push(value);
    return `$${first + values.length - 1}`;
  });
  return { sql: clauses.map((c) => ` AND ${c}`).join(''), values };
}
