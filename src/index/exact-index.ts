/**
 * Exact (brute-force) search over a contiguous matrix of normalised vectors. Used for small collections,
 * small filtered subsets, and the not-yet-merged additions beside an HNSW index. Removal swaps the last
 * row into the hole, so the matrix stays dense and a scan never visits dead rows.
 */
import { ClipdexError } from '../errors.js';
import { blobInto } from '../store/vector-blob.js';
import { topKInnerProduct } from './topk-kernel.js';
import {
  checkK,
  checkLabel,
  checkQuery,
  normalized,
  normalizeInto,
  type EngineSearchOptions,
  type SearchHit,
  type VectorIndex,
} from './vector-index.js';

export class ExactIndex implements VectorIndex {
  readonly engine = 'exact' as const;
  private matrix: Float32Array;
  private labels: Uint32Array;
  private readonly rowOf = new Map<number, number>();
  private n = 0;

  constructor(
    readonly dim: number,
    initialCapacity = 1024,
  ) {
    if (!Number.isInteger(dim) || dim <= 0) throw new ClipdexError('INVALID_ARGUMENT', `dimension must be a positive integer, got ${dim}`);
    const cap = Math.max(1, initialCapacity);
    this.matrix = new Float32Array(cap * dim);
    this.labels = new Uint32Array(cap);
  }

  /** Builds an index from parallel ids and a row-major matrix (copied and normalised). */
  static fromRows(dim: number, ids: ArrayLike<number>, rows: Float32Array): ExactIndex {
    const index = new ExactIndex(dim, ids.length);
    for (let i = 0; i < ids.length; i++) index.add(ids[i]!, rows.subarray(i * dim, (i + 1) * dim));
    return index;
  }

  get size(): number {
    return this.n;
  }

  has(id: number): boolean {
    return this.rowOf.has(id);
  }

  ids(): IterableIterator<number> {
    return this.rowOf.keys();
  }

  /** The stored (normalised) vector of `id`, copied. */
  vector(id: number): Float32Array | undefined {
    const row = this.rowOf.get(id);
    return row === undefined ? undefined : this.matrix.slice(row * this.dim, (row + 1) * this.dim);
  }

  add(id: number, vector: Float32Array): void {
    checkLabel(id);
    if (vector.length !== this.dim) {
      throw new ClipdexError('DIMENSION_MISMATCH', `vector has ${vector.length} dimensions, the index holds ${this.dim}`);
    }
    let row = this.rowOf.get(id);
    if (row === undefined) {
      if (this.n === this.labels.length) this.grow();
      row = this.n++;
      this.rowOf.set(id, row);
      this.labels[row] = id;
    }
    normalizeInto(vector, this.matrix, row * this.dim);
  }

  remove(id: number): boolean {
    const row = this.rowOf.get(id);
    if (row === undefined) return false;
    const last = --this.n;
    if (row !== last) {
      this.matrix.copyWithin(row * this.dim, last * this.dim, (last + 1) * this.dim);
      const moved = this.labels[last]!;
      this.labels[row] = moved;
      this.rowOf.set(moved, row);
    }
    this.rowOf.delete(id);
    return true;
  }

  clear(): void {
    this.rowOf.clear();
    this.n = 0;
  }

  async search(query: Float32Array, k: number, options: EngineSearchOptions = {}): Promise<SearchHit[]> {
    checkK(k);
    checkQuery(query, this.dim);
    if (this.n === 0) return [];
    const q = normalized(query);
    if (!options.filter) return this.scan(this.matrix, this.labels, this.n, q, k);
    // A filtered scan gathers the allowed rows first: the kernel then touches only what can be returned.
    const keep: number[] = [];
    for (let r = 0; r < this.n; r++) if (options.filter(this.labels[r]!)) keep.push(r);
    if (keep.length === 0) return [];
    const sub = new Float32Array(keep.length * this.dim);
    const subLabels = new Uint32Array(keep.length);
    keep.forEach((r, i) => {
      sub.set(this.matrix.subarray(r * this.dim, (r + 1) * this.dim), i * this.dim);
      subLabels[i] = this.labels[r]!;
    });
    return this.scan(sub, subLabels, keep.length, q, k);
  }

  /**
   * The k nearest of each query (no filter), in chunks of queries: one matrix product per chunk instead of
   * a scan per query, for callers that ask about many photos at once (duplicate finding).
   */
  async searchMany(queries: readonly Float32Array[], k: number, chunk = 256): Promise<SearchHit[][]> {
    checkK(k);
    for (const q of queries) checkQuery(q, this.dim);
    if (this.n === 0) return queries.map(() => []);
    const out: SearchHit[][] = [];
    for (let start = 0; start < queries.length; start += chunk) {
      const part = queries.slice(start, start + chunk);
      const packed = new Float32Array(part.length * this.dim);
      part.forEach((q, i) => normalizeInto(q, packed, i * this.dim));
      const tops = await topKInnerProduct(this.matrix, this.n, this.dim, packed, k);
      for (const top of tops) {
        const hits: SearchHit[] = [];
        for (let i = 0; i < top.rows.length; i++) hits.push({ id: this.labels[top.rows[i]!]!, score: top.scores[i]! });
        out.push(hits);
      }
    }
    return out;
  }

  private async scan(matrix: Float32Array, labels: Uint32Array, n: number, q: Float32Array, k: number): Promise<SearchHit[]> {
    const [top] = await topKInnerProduct(matrix, n, this.dim, q, k);
    const hits: SearchHit[] = [];
    for (let i = 0; i < top!.rows.length; i++) hits.push({ id: labels[top!.rows[i]!]!, score: top!.scores[i]! });
    return hits;
  }

  private grow(): void {
    const cap = this.labels.length * 2;
    const matrix = new Float32Array(cap * this.dim);
    matrix.set(this.matrix.subarray(0, this.n * this.dim));
    const labels = new Uint32Array(cap);
    labels.set(this.labels.subarray(0, this.n));
    this.matrix = matrix;
    this.labels = labels;
  }
}

/** Exact top-k over vectors read straight from the store (a filtered subset), without keeping an index. */
export async function exactSearchRows(
  dim: number,
  rows: readonly { imageId: number; vector: Uint8Array }[],
  query: Float32Array,
  k: number,
): Promise<SearchHit[]> {
  if (rows.length === 0) return [];
  const matrix = new Float32Array(rows.length * dim);
  rows.forEach((row, i) => {
    if (row.vector.byteLength !== dim * 4) {
      throw new ClipdexError('DIMENSION_MISMATCH', `stored vector of image ${row.imageId} has ${row.vector.byteLength / 4} dimensions, expected ${dim}`);
    }
    blobInto(row.vector, matrix, i * dim);
  });
  normalizeRows(matrix, rows.length, dim);
  const [top] = await topKInnerProduct(matrix, rows.length, dim, normalized(query), k);
  const hits: SearchHit[] = [];
  for (let i = 0; i < top!.rows.length; i++) hits.push({ id: rows[top!.rows[i]!]!.imageId, score: top!.scores[i]! });
  return hits;
}

/** L2-normalises every row of a row-major matrix in place. */
function normalizeRows(matrix: Float32Array, n: number, dim: number): void {
  for (let r = 0; r < n; r++) {
    const o = r * dim;
    let s = 0;
    for (let j = 0; j < dim; j++) s += matrix[o + j]! * matrix[o + j]!;
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < dim; j++) matrix[o + j]! *= inv;
  }
}
