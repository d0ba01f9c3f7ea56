/**
 * What a library searches its vectors through, whichever engine holds them: IndexManager (hnswlib graph files
 * beside an embedded or Postgres database, kept current from the change log) or PgVectorIndex (pgvector's HNSW
 * inside Postgres, where the table is the index). Library, the query engine and duplicate finding hold this.
 */
import type { ImageFilter } from '../store/image-filter.js';
import type { HnswlibBuild } from './hnswlib-binding.js';
import type { TunedOn } from './index-files.js';
import type { EngineName, SearchHit } from './vector-index.js';

export interface IndexSearchOptions {
  filter?: ImageFilter;
}

export interface IndexHealth {
  modelKey: string;
  /** exact / hnsw: clipdex's own engines; pgvector: HNSW inside Postgres. */
  engine: EngineName | 'pgvector';
  /** Where the index lives: files in the data dir, or the Postgres database itself. */
  location: 'files' | 'postgres';
  dim: number | null;
  /** Searchable vectors (graph + waiting beside it). */
  count: number;
  /** Live vectors inside the HNSW graph. */
  graphCount: number;
  /** Deleted labels still occupying the graph. */
  deleted: number;
  /** Vectors searched exactly beside the graph until the next merge (everything in exact mode); pgvector: rows whose vector column is still to be filled. */
  pending: number;
  ef: number | null;
  /** Which build of hnswlib serves the graph (clipdex's CPU-tuned one, or the stock one and why). */
  hnswlib: HnswlibBuild;
  /** recall@10 measured at `ef` when it was chosen. */
  recall: number | null;
  recallQueries: number;
  /** Which queries `recall` was measured on (users' logged ones or synthetic); absent where not tuned here. */
  tunedOn?: TunedOn | null;
  /** The graph file's size, or the pgvector index's. */
  fileBytes: number | null;
  checkpointSeq: number | null;
  appliedSeq: number;
  lastBuildAt: number | null;
  lastBuildMs: number | null;
  building: boolean;
  /** Why the saved index was discarded at open, if it was. */
  lastRebuildReason: string | null;
  lastError: string | null;
}

export interface LibraryIndex {
  readonly modelKey: string;
  /**
   * The k nearest images by cosine similarity, best first, consistent with everything committed before the
   * call; with a filter, never fewer than k when k match.
   */
  search(query: Float32Array, k: number, options?: IndexSearchOptions): Promise<SearchHit[]>;
  /** The k nearest of each query, unfiltered; `ef` replaces the tuned one (the very closest need less). */
  searchBatch(queries: readonly Float32Array[], k: number, options?: { ef?: number }): Promise<SearchHit[][]>;
  /** Brings the index up to what is committed now; returns how many ids (or rows) it touched. */
  sync(): number;
  /** Folds pending work into the index (a merge or a retune); resolves when done. */
  merge(options?: { rebuild?: boolean }): Promise<void>;
  /** Rebuilds the index from the stored vectors. */
  rebuild(): Promise<void>;
  /**
   * Records the embedding of a query a user asked, so the engine can tune itself on queries like theirs
   * (IndexManager: query-log.ts). Cheap, never throws; engines that do not tune leave it out.
   */
  noteQuery?(query: Float32Array): void;
  /** Waits for background work. */
  idle(): Promise<void>;
  health(): IndexHealth;
  /** Every searchable id, ascending; ids the index holds twice (a bug) in `duplicated`. */
  contents(): { ids: number[]; duplicated: number[] };
  /** The stored vector of a searchable id, L2-normalised. */
  vectorOf(id: number): Float32Array | undefined;
  close(): Promise<void>;
}

/** "recall@10 0.983 at ef 160 on 200 of your queries": what `clipdex status` says about the tuning. */
export function tuningSummary(h: Pick<IndexHealth, 'recall' | 'ef' | 'recallQueries' | 'tunedOn'>): string | null {
  if (h.recall === null) return null;
  const on =
    h.tunedOn === 'logged'
      ? `on ${h.recallQueries} of your queries`
      : h.tunedOn === 'synthetic'
        ? `on ${h.recallQueries} synthetic queries`
        : h.tunedOn === 'midpoints'
          ? `on ${h.recallQueries} synthetic queries (midpoints of two photos)`
          : `on ${h.recallQueries} sample queries`;
  return `recall@10 ${h.recall.toFixed(3)} at ef ${h.ef} ${on}`;
}
