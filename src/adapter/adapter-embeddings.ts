/**
 * The stored embeddings of an activated adapter: every base embedding re-projected (x·W, normalised) under
 * the adapter's own model key, so its vector index is an ordinary index of that key — built, merged,
 * crash-checked and change-logged like the base one. Costs one more 4·d-byte row per photo while the
 * adapter is active; dropped when it is deactivated.
 *
 * A version whose image side is exactly the identity (a text-tuned version: the image tower stays locked,
 * LiT-style) has nothing to project: its photos are searched under the base model's own key and index
 * (`versionSearchKey`), so activating it copies no vector and builds no index, and the base rows are never
 * this module's to drop.
 */
import { AdaptersRepo } from '../store/adapters-repo.js';
import { runInTransaction } from '../store/database.js';
import { IndexChangesRepo } from '../store/index-changes-repo.js';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { blobToVector } from '../store/vector-blob.js';
import { decodeAdapter, isIdentityMatrix, projectRows, type AdapterWeights } from './adapter-weights.js';
import { projectBulk } from './projection-kernel.js';
import type { SqlHandle } from '../store/sql-handle.js';

/** The model key an adapter's embeddings and index live under. */
export function adapterModelKey(baseKey: string, adapterId: number): string {
  return `${baseKey}@adapter-${adapterId}`;
}

/** The model key a version's photos are searched under: the base key when its image side is the identity. */
export function versionSearchKey(baseKey: string, adapterId: number, w: AdapterWeights): string {
  return isIdentityMatrix(w.image, w.dim) ? baseKey : adapterModelKey(baseKey, adapterId);
}

const CHUNK = 16_384;

export class AdaptedEmbeddings {
  constructor(
    private readonly db: SqlHandle,
    private readonly embeddings: EmbeddingsRepo,
    readonly baseKey: string,
  ) {}

  /**
   * Projects every base embedding that has no row under `key` yet, in chunks through ORT, one transaction
   * per chunk. Returns how many were written. Safe to run while photos are being added: rows written later
   * are found by a later pass (the final one runs inside the activation transaction, see `fillMissingSync`).
   */
  async fillMissing(key: string, w: AdapterWeights, onProgress?: (done: number, total: number) => void): Promise<{ written: number; throughId: number }> {
    if (key === this.baseKey) return { written: 0, throughId: 0 };
    this.embeddings.registerModel(key, w.dim);
    // An upper bound (counting the missing ones exactly costs a pass of its own).
    const total = this.embeddings.count(this.baseKey);
    let done = 0;
    let after = 0;
    for (;;) {
      const rows = this.embeddings.missingUnder(this.baseKey, key, after, CHUNK);
      if (rows.length === 0) break;
      const input = new Float32Array(rows.length * w.dim);
      rows.forEach((r, i) => input.set(blobToVector(r.vector, w.dim), i * w.dim));
      const projected = await projectBulk(input, rows.length, w.image, w.dim);
      const bytes = Buffer.from(projected.buffer, projected.byteOffset, projected.byteLength);
      const rowBytes = 4 * w.dim;
      // In content-hash order, the order of the unique index the rows go into: fewer B-tree pages touched.
      const order = rows.map((_, i) => i).sort((a, b) => (rows[a]!.contentHash < rows[b]!.contentHash ? -1 : 1));
      // Rows projected by ORT from finite unit vectors: no per-value checks, no upsert (none exist yet).
      this.embeddings.addNew(
        key,
        w.dim,
        order.map((i) => ({ contentHash: rows[i]!.contentHash, vector: bytes.subarray(i * rowBytes, (i + 1) * rowBytes) })),
      );
      done += rows.length;
      after = rows[rows.length - 1]!.id;
      onProgress?.(done, Math.max(total, done));
    }
    return { written: done, throughId: after };
  }

  /**
   * The same, synchronously (TS projection): for the few rows left, inside the caller's transaction.
   * `afterId`: base rows up to it are known done (a vector never changes under its content hash and key,
   * so only newer rows can be missing).
   */
  fillMissingSync(key: string, w: AdapterWeights, afterId = 0): number {
    if (key === this.baseKey) return 0;
    let done = 0;
    let after = afterId;
    for (;;) {
      const rows = this.embeddings.missingUnder(this.baseKey, key, after, CHUNK);
      if (rows.length === 0) return done;
      for (const r of rows) this.embeddings.put(r.contentHash, key, projectRows(blobToVector(r.vector, w.dim), 1, w.image, w.dim));
      done += rows.length;
      after = rows[rows.length - 1]!.id;
    }
  }

  /** One freshly encoded photo: its projection under the active adapter's key (called in the writer's transaction). */
  writeOne(key: string, w: AdapterWeights, contentHash: string, baseVector: Float32Array): void {
    this.embeddings.put(contentHash, key, projectRows(baseVector, 1, w.image, w.dim));
  }

  /** Forgets an adapter key: stops its change log first (so deleting its rows logs nothing), then its rows. */
  drop(key: string): void {
    // The base model's vectors are the photos' own encodings: no version's retirement may take them.
    if (key === this.baseKey) return;
    runInTransaction(this.db, () => {
      new IndexChangesRepo(this.db).unregister(key);
      this.embeddings.removeModel(key);
    });
  }
}

/**
 * Keeps the active adapter's embeddings complete while photos are added: the ingest sink calls `write` in
 * the same transaction as the base embedding. It reads which adapter is active from the database at each
 * call (one indexed row), so a switch made by another process (the CLI beside a server) is followed at once.
 */
export class ActiveAdapterWriter {
  private readonly adapters: AdaptersRepo;
  private cached: { id: number; key: string; weights: AdapterWeights; identity: boolean } | null = null;
  private readonly adapted: AdaptedEmbeddings;

  constructor(db: SqlHandle, embeddings: EmbeddingsRepo, private readonly baseKey: string) {
    this.adapted = new AdaptedEmbeddings(db, embeddings, baseKey);
    this.adapters = new AdaptersRepo(db);
  }

  write(contentHash: string, baseVector: Float32Array): void {
    const id = this.adapters.activeId(this.baseKey);
    if (id === undefined) return;
    if (this.cached?.id !== id) {
      const weights = decodeAdapter(this.adapters.weights(id)!);
      this.cached = { id, key: adapterModelKey(this.baseKey, id), weights, identity: versionSearchKey(this.baseKey, id, weights) === this.baseKey };
    }
    // Refused at activation; never half-write. A version searched under the base key has nothing of its own.
    if (this.cached.identity || this.cached.weights.dim !== baseVector.length) return;
    this.adapted.writeOne(this.cached.key, this.cached.weights, contentHash, baseVector);
  }
}
