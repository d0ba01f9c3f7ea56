/**
 * The shape every vector search engine answers in, and the small helpers they share.
 * Scores are cosine similarities (vectors are compared after L2 normalisation), best first.
 */
import { ClipdexError } from '../errors.js';

export interface SearchHit {
  /** The image id (the index label). */
  id: number;
  /** Cosine similarity in [-1, 1]. */
  score: number;
}

export type EngineName = 'exact' | 'hnsw';

export interface EngineSearchOptions {
  /** Only ids for which this returns true are returned. */
  filter?: (id: number) => boolean;
  /** HNSW only: the candidate list size (at least k is used). */
  ef?: number;
}

/** One interface, two engines: exact (brute force) and HNSW. */
export interface VectorIndex {
  readonly engine: EngineName;
  readonly dim: number;
  /** Live (searchable) entries. */
  readonly size: number;
  has(id: number): boolean;
  /** Adds or replaces the vector of `id`. */
  add(id: number, vector: Float32Array): void;
  /** Removes `id`; false when it was not there. A removed id is never returned again. */
  remove(id: number): boolean;
  search(query: Float32Array, k: number, options?: EngineSearchOptions): Promise<SearchHit[]>;
}

/** hnswlib labels are uint32; SQLite rowids start at 1. */
export function checkLabel(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffff_ffff) {
    throw new ClipdexError('INVALID_ARGUMENT', `vector index ids must be integers in [0, 2^32), got ${id}`);
  }
}

export function checkK(k: number): void {
  if (!Number.isInteger(k) || k < 1) throw new ClipdexError('INVALID_ARGUMENT', `k must be a positive integer, got ${k}`);
}

export function checkQuery(query: Float32Array, dim: number): void {
  if (!(query instanceof Float32Array)) throw new ClipdexError('INVALID_ARGUMENT', 'a query vector must be a Float32Array');
  if (query.length !== dim) {
    throw new ClipdexError('DIMENSION_MISMATCH', `query has ${query.length} dimensions, the index holds ${dim}-dimensional vectors`, {
      details: { expected: dim, actual: query.length },
    });
  }
}

/** Writes the L2-normalised `v` into `out` at `offset`; a zero vector stays zero (it scores 0 against everything). */
export function normalizeInto(v: ArrayLike<number>, out: Float32Array, offset = 0): void {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let i = 0; i < v.length; i++) out[offset + i] = v[i]! * inv;
}

export function normalized(v: ArrayLike<number>): Float32Array {
  const out = new Float32Array(v.length);
  normalizeInto(v, out);
  return out;
}

/** Best-first union of two engines' answers, keeping k (each side is already best first and at most k long). */
export function mergeHits(a: SearchHit[], b: SearchHit[], k: number): SearchHit[] {
  const out: SearchHit[] = [];
  let i = 0;
  let j = 0;
  while (out.length < k && (i < a.length || j < b.length)) {
    if (j >= b.length || (i < a.length && a[i]!.score >= b[j]!.score)) out.push(a[i++]!);
    else out.push(b[j++]!);
  }
  return out;
}
