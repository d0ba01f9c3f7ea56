/**
 * Embeddings, keyed by content hash and model key: identical files at two paths share one row, and a
 * renamed or moved file finds its vector again by hash. Vectors go in and come out as Float32Array.
 */
import { ClipdexError } from '../errors.js';
import { runInTransaction } from './database.js';
import { blobToVector, vectorToBlob } from './vector-blob.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';
import { vectorLiteral } from './pg/pg-vector-repo.js';

export interface EmbeddingModel {
  modelKey: string;
  dim: number;
  count: number;
}

export class EmbeddingsRepo {
  private readonly dims = new Map<string, number>();
  private readonly modelStmt;
  private readonly addModelStmt;
  private readonly modelsStmt;
  private readonly putStmt;
  private readonly getStmt;
  private readonly hasStmt;
  private readonly forImageStmt;
  private readonly countStmt;
  private readonly removeStmt;
  private readonly orphansStmt;
  private readonly dropModelStmt;
  private readonly missingUnderStmt;
  private readonly addNewStmt;
  private readonly sampleStmt;
  private readonly pg: boolean;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    this.modelStmt = db.prepare<[string], { dim: number }>('SELECT dim FROM embedding_models WHERE model_key = ?');
    this.addModelStmt = db.prepare<[string, number, number]>(
      'INSERT INTO embedding_models (model_key, dim, created_at) VALUES (?, ?, ?) ON CONFLICT (model_key) DO NOTHING',
    );
    this.modelsStmt = db.prepare<[], EmbeddingModel>(
      `SELECT m.model_key AS modelKey, m.dim AS dim, (SELECT count(*) FROM embeddings e WHERE e.model_key = m.model_key) AS count
       FROM embedding_models m ORDER BY m.model_key`,
    );
    // On Postgres every write also fills the pgvector column (migration 008) that the database searches: in
    // the same statement, so no reader ever sees a row whose two copies differ. The text form '[…]' is what
    // pgvector parses; SQLite's statements bind the same parameters and ignore the last one.
    this.pg = dialectOf(db) === 'postgres';
    this.putStmt = db.prepare<[string, string, number, Buffer, number, string?], { id: number }>(
      this.pg
        ? `INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at, embedding) VALUES (?, ?, ?, ?, ?, CAST(? AS vector))
           ON CONFLICT (content_hash, model_key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector, created_at = excluded.created_at, embedding = excluded.embedding
           RETURNING id`
        : `INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (content_hash, model_key) DO UPDATE SET dim = excluded.dim, vector = excluded.vector, created_at = excluded.created_at
           RETURNING id`,
    );
    this.getStmt = db.prepare<[string, string], { vector: Buffer }>(
      'SELECT vector FROM embeddings WHERE content_hash = ? AND model_key = ?',
    );
    this.hasStmt = db.prepare<[string, string], { one: number }>(
      'SELECT 1 AS one FROM embeddings WHERE content_hash = ? AND model_key = ?',
    );
    this.forImageStmt = db.prepare<[string, number], { vector: Buffer }>(
      'SELECT e.vector FROM images i JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = ? WHERE i.id = ?',
    );
    this.countStmt = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM embeddings WHERE model_key = ?');
    this.removeStmt = db.prepare<[string, string]>('DELETE FROM embeddings WHERE content_hash = ? AND model_key = ?');
    this.orphansStmt = db.prepare<[]>(
      'DELETE FROM embeddings WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.content_hash = embeddings.content_hash)',
    );
    this.dropModelStmt = db.prepare<[string]>('DELETE FROM embedding_models WHERE model_key = ?');
    this.missingUnderStmt = db.prepare<{ base: string; key: string; after: number; limit: number }, { id: number; contentHash: string; vector: Buffer }>(
      `SELECT b.id, b.content_hash AS contentHash, b.vector FROM embeddings b
       WHERE b.model_key = @base AND b.id > @after
         AND NOT EXISTS (SELECT 1 FROM embeddings a WHERE a.content_hash = b.content_hash AND a.model_key = @key)
       ORDER BY b.id LIMIT @limit`,
    );
    this.sampleStmt = db.prepare<[string, number], { vector: Buffer }>(
      `SELECT e.vector FROM images i JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = ?
         WHERE i.status = 'indexed' ORDER BY (i.id * 2654435761) % 4294967296 LIMIT ?`,
    );
    this.addNewStmt = db.prepare<[string, string, number, Buffer, number, string?]>(
      this.pg
        ? 'INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at, embedding) VALUES (?, ?, ?, ?, ?, CAST(? AS vector)) ON CONFLICT (content_hash, model_key) DO NOTHING'
        : 'INSERT INTO embeddings (content_hash, model_key, dim, vector, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (content_hash, model_key) DO NOTHING',
    );
  }

  /**
   * Vectors of up to `limit` indexed photos under `modelKey`, a fixed pseudo-random sample (the same at
   * every call while the library does not change, so measurements on it are comparable).
   */
  indexedSample(modelKey: string, limit: number): Buffer[] {
    return this.sampleStmt.all(modelKey, limit).map((r) => r.vector);
  }

  /**
   * A page, in row id order after `afterId`, of `baseKey`'s rows whose content has no row under `key` yet
   * (a derived key being filled: an adapter's projections).
   */
  missingUnder(baseKey: string, key: string, afterId: number, limit: number): { id: number; contentHash: string; vector: Buffer }[] {
    return this.missingUnderStmt.all({ base: baseKey, key, after: afterId, limit });
  }

  /**
   * Adds rows under a registered key in one transaction, leaving any row already there as it is. No
   * per-value checks: for vectors a kernel computed from checked ones (the caller vouches for them).
   */
  addNew(key: string, dim: number, rows: Iterable<{ contentHash: string; vector: Buffer }>): void {
    const now = this.now();
    runInTransaction(this.db, () => {
      for (const r of rows) this.addNewStmt.run(r.contentHash, key, dim, r.vector, now, ...this.pgVector(() => blobToVector(r.vector)));
    });
  }

  /** The dimension recorded for a model key, or undefined when it has never stored an embedding. */
  modelDim(modelKey: string): number | undefined {
    const cached = this.dims.get(modelKey);
    if (cached !== undefined) return cached;
    const dim = this.modelStmt.get(modelKey)?.dim;
    if (dim !== undefined) this.dims.set(modelKey, dim);
    return dim;
  }

  /** Records a model key with its dimension; a different dimension for a known key is refused. */
  registerModel(modelKey: string, dim: number): void {
    if (modelKey === '') throw new ClipdexError('INVALID_ARGUMENT', 'model key must not be empty');
    if (!Number.isInteger(dim) || dim <= 0) throw new ClipdexError('INVALID_ARGUMENT', `dimension must be a positive integer, got ${dim}`);
    const known = this.modelDim(modelKey);
    if (known === undefined) {
      this.addModelStmt.run(modelKey, dim, this.now());
      this.dims.delete(modelKey); // another connection may have won the race with another dimension
      return this.registerModel(modelKey, dim);
    }
    if (known !== dim) {
      throw new ClipdexError(
        'DIMENSION_MISMATCH',
        `model ${modelKey} stores ${known}-dimensional embeddings; refusing a ${dim}-dimensional one (a different model under the same key?)`,
        { details: { modelKey, expected: known, actual: dim } },
      );
    }
  }

  models(): EmbeddingModel[] {
    return this.modelsStmt.all();
  }

  /** Stores (or replaces) the embedding of a content hash under a model key; returns its row id. */
  put(contentHash: string, modelKey: string, vector: Float32Array): number {
    if (!(vector instanceof Float32Array)) throw new ClipdexError('INVALID_ARGUMENT', 'an embedding must be a Float32Array');
    if (contentHash === '') throw new ClipdexError('INVALID_ARGUMENT', 'content hash must not be empty');
    for (let i = 0; i < vector.length; i++) {
      if (!Number.isFinite(vector[i]!)) throw new ClipdexError('INVALID_ARGUMENT', `embedding value ${i} is ${vector[i]}`);
    }
    this.registerModel(modelKey, vector.length);
    return this.putStmt.get(contentHash, modelKey, vector.length, vectorToBlob(vector), this.now(), ...this.pgVector(() => vector))!.id;
  }

  /** The pgvector text of a vector as the last parameter on Postgres; no parameter on SQLite. */
  private pgVector(vector: () => Float32Array): [string] | [] {
    return this.pg ? [vectorLiteral(vector())] : [];
  }

  get(contentHash: string, modelKey: string): Float32Array | undefined {
    const row = this.getStmt.get(contentHash, modelKey);
    return row ? blobToVector(row.vector) : undefined;
  }

  has(contentHash: string, modelKey: string): boolean {
    return this.hasStmt.get(contentHash, modelKey) !== undefined;
  }

  /** The embedding of an image's current content, if it has one. */
  forImage(imageId: number, modelKey: string): Float32Array | undefined {
    const row = this.forImageStmt.get(modelKey, imageId);
    return row ? blobToVector(row.vector) : undefined;
  }

  count(modelKey: string): number {
    return this.countStmt.get(modelKey)!.n;
  }

  remove(contentHash: string, modelKey: string): boolean {
    return this.removeStmt.run(contentHash, modelKey).changes > 0;
  }

  /** Deletes embeddings no image points at any more (the sweep after files are deleted); returns how many. */
  removeOrphans(): number {
    return this.orphansStmt.run().changes;
  }

  /** Forgets a model key and all its embeddings. */
  removeModel(modelKey: string): boolean {
    this.dims.delete(modelKey);
    return runInTransaction(this.db, () => this.dropModelStmt.run(modelKey).changes > 0);
  }
}
