/**
 * The vector index of one model key of a Postgres library, inside Postgres: pgvector's HNSW over the
 * embeddings table (src/store/pg/pg-vector-repo.ts has the statements and says why they are shaped so).
 *
 * Where IndexManager keeps a graph in files and replays a change log to stay consistent, here the table is the
 * index: every committed row is searchable by the next statement, from any process, so there is no log, no
 * checkpoint, no merge and no reload. What remains to manage is small: the index itself (created when a key
 * is first opened), the pgvector column of rows written before migration 008 (filled from their bytea), and
 * the ef_search that reaches the target recall, measured against exact search on a sample of the library
 * and kept in `meta` so a CLI command does not pay for it at every start.
 */
import { ClipdexError } from '../errors.js';
import type { StoreDatabase } from '../store/database.js';
import { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { isEmptyFilter } from '../store/image-filter.js';
import { MetaRepo } from '../store/meta-repo.js';
import { type GraphType, type HnswBuildOptions, type PgVectorHit, PgVectorRepo } from '../store/pg/pg-vector-repo.js';
import { blobToVector } from '../store/vector-blob.js';
import { hnswlibBuild } from './hnswlib-binding.js';
import type { IndexProgress } from './index-manager.js';
import type { IndexHealth, IndexSearchOptions, LibraryIndex } from './library-index.js';
import { checkK, checkQuery, normalized, type SearchHit } from './vector-index.js';

export interface PgVectorIndexOptions {
  store: StoreDatabase;
  modelKey: string;
  /** HNSW build parameters (pgvector's defaults: m 16, ef_construction 64). */
  hnsw?: Partial<Pick<HnswBuildOptions, 'm' | 'efConstruction'>>;
  /** What the graph holds (pg-vector-repo.ts): halfvec (default, half the memory) or float32 `vector`. */
  graph?: GraphType;
  /** maintenance_work_mem for building the index; default 256MB (PGlite builds 3k×512 in ~7 s with it, minutes without). */
  maintenanceWorkMem?: string;
  /** recall@10 the tuned ef_search must reach against exact search. Default 0.98. */
  targetRecall?: number;
  /** Sample queries for tuning. Default 50 (each costs one exact pass over the key's rows). */
  recallQueries?: number;
  /** hnsw.max_scan_tuples for filtered searches; a scan that stops short is completed exactly. Default 20 000. */
  maxScanTuples?: number;
  /**
   * Filtered searches: 'planner' (default) lets Postgres choose between the graph with the filter applied
   * during an iterative scan and the filter's own index with exact scores; 'graph' always walks the graph.
   */
  filteredPlan?: 'planner' | 'graph';
  onProgress?: (p: IndexProgress) => void;
  onError?: (err: unknown) => void;
}

/** What tuning found, kept in `meta` under `pgvector_index:<model key>`. */
interface TunedState {
  dim: number;
  ef: number;
  recall: number | null;
  recallQueries: number;
  efTried: { ef: number; recall: number }[];
  tunedAtCount: number;
  builtAt: number | null;
  buildMs: number | null;
}

const EF_STEPS = [40, 64, 100, 160, 250, 400, 640, 1000];
const TRUTH_K = 10;
const STATE_PREFIX = 'pgvector_index:';

export class PgVectorIndex implements LibraryIndex {
  readonly modelKey: string;
  private readonly repo: PgVectorRepo;
  private readonly embeddings: EmbeddingsRepo;
  private readonly meta: MetaRepo;
  private readonly build: HnswBuildOptions;
  private readonly targetRecall: number;
  private readonly recallQueries: number;
  private readonly maxScanTuples: number;
  private readonly graphOnly: boolean;
  private dim: number | null = null;
  private state: TunedState | null = null;
  private lastError: string | null = null;
  private closed = false;
  /** Searches the graph answered short and exact search completed (the scan limit reached first). */
  exactFallbacks = 0;

  private constructor(private readonly options: PgVectorIndexOptions) {
    this.modelKey = options.modelKey;
    this.repo = new PgVectorRepo(options.store.db, options.graph);
    this.embeddings = new EmbeddingsRepo(options.store.db);
    this.meta = new MetaRepo(options.store.db);
    this.build = { m: options.hnsw?.m ?? 16, efConstruction: options.hnsw?.efConstruction ?? 64, maintenanceWorkMem: options.maintenanceWorkMem ?? '256MB' };
    this.targetRecall = options.targetRecall ?? 0.98;
    this.recallQueries = options.recallQueries ?? 50;
    this.maxScanTuples = options.maxScanTuples ?? 20_000;
    this.graphOnly = options.filteredPlan === 'graph';
  }

  /** Opens the key's index: fills missing pgvector columns, creates the HNSW index if needed, tunes ef if stale. */
  static async open(options: PgVectorIndexOptions): Promise<PgVectorIndex> {
    if (options.modelKey === '') throw new ClipdexError('INVALID_ARGUMENT', 'model key must not be empty');
    if (options.store.location.kind !== 'postgres') throw new ClipdexError('INVALID_ARGUMENT', 'a pgvector index needs a Postgres library');
    const index = new PgVectorIndex(options);
    index.ready(false);
    return index;
  }

  /** Makes the index ready for the key's dimension (known once the model registered it); a no-op before. */
  private ready(forceTune: boolean): number {
    this.dim ??= this.embeddings.modelDim(this.modelKey) ?? null;
    if (this.dim === null) return 0;
    const dim = this.dim;
    const filled = this.fill();
    this.state = this.readState();
    const started = performance.now();
    this.progress('add', 0, 1);
    const built = this.repo.createIndex(this.modelKey, dim, this.build);
    this.progress('add', 1, 1);
    let state = this.state;
    if (built) state = { ...(state ?? this.emptyState(dim)), dim, builtAt: Date.now(), buildMs: performance.now() - started };
    const count = this.repo.memberCount(this.modelKey);
    const stale = !state || state.dim !== dim || state.recall === null || count > 2 * state.tunedAtCount + 100 || count < state.tunedAtCount / 2;
    if (forceTune || stale) state = { ...(state ?? this.emptyState(dim)), ...this.tune(dim, count) };
    if (state !== this.state) {
      this.state = state;
      this.meta.put(STATE_PREFIX + this.modelKey, JSON.stringify(state));
    }
    return filled;
  }

  private emptyState(dim: number): TunedState {
    return { dim, ef: EF_STEPS[0]!, recall: null, recallQueries: 0, efTried: [], tunedAtCount: 0, builtAt: null, buildMs: null };
  }

  private readState(): TunedState | null {
    const raw = this.meta.get(STATE_PREFIX + this.modelKey);
    if (!raw) return null;
    try {
      const s = JSON.parse(raw) as TunedState;
      return typeof s.ef === 'number' && typeof s.dim === 'number' ? s : null;
    } catch {
      return null;
    }
  }

  /**
   * The smallest ef_search whose recall@10 on a fixed sample of the library's own vectors reaches the target,
   * against exact search over the same rows (the embedded index tunes the same way, hnsw-build.ts).
   */
  private tune(dim: number, count: number): Pick<TunedState, 'ef' | 'recall' | 'recallQueries' | 'efTried' | 'tunedAtCount'> {
    const sample = this.embeddings.indexedSample(this.modelKey, this.recallQueries).map((b) => blobToVector(b, dim));
    if (sample.length === 0) return { ef: EF_STEPS[0]!, recall: null, recallQueries: 0, efTried: [], tunedAtCount: count };
    const truth = sample.map((q, i) => {
      this.progress('tune', i, sample.length);
      return new Set(this.repo.exact(this.modelKey, q, TRUTH_K).map((h) => h.id));
    });
    const efTried: { ef: number; recall: number }[] = [];
    for (const ef of EF_STEPS) {
      const answers = this.repo.search(this.modelKey, dim, sample, TRUTH_K, { ef, maxScanTuples: this.maxScanTuples });
      let found = 0;
      let wanted = 0;
      answers.forEach((hits, i) => {
        const t = truth[i]!;
        wanted += t.size;
        for (const h of hits) if (t.has(h.id)) found++;
      });
      const recall = wanted === 0 ? 1 : found / wanted;
      efTried.push({ ef, recall });
      if (recall >= this.targetRecall) break;
    }
    this.progress('tune', sample.length, sample.length);
    const best = efTried[efTried.length - 1]!;
    return { ef: best.ef, recall: best.recall, recallQueries: sample.length, efTried, tunedAtCount: count };
  }

  private progress(phase: IndexProgress['phase'], done: number, total: number): void {
    this.options.onProgress?.({ phase, done, total, modelKey: this.modelKey, job: 'build' });
  }

  /** Nothing to replay (the table is the index): fills pgvector columns left empty; returns how many. */
  sync(): number {
    this.assertOpen();
    return this.dim === null ? this.ready(false) : this.fill();
  }

  private fill(): number {
    let filled = 0;
    for (let n = this.repo.fillMissing(this.modelKey); n > 0; n = this.repo.fillMissing(this.modelKey)) filled += n;
    return filled;
  }

  async search(query: Float32Array, k: number, options: IndexSearchOptions = {}): Promise<SearchHit[]> {
    this.assertOpen();
    checkK(k);
    if (this.dim === null) this.ready(false);
    if (this.dim === null) return [];
    checkQuery(query, this.dim);
    const filter = options.filter && !isEmptyFilter(options.filter) ? options.filter : null;
    const hits = this.repo.search(this.modelKey, this.dim, [query], k, { ef: this.ef, maxScanTuples: this.maxScanTuples, filter, graphOnly: this.graphOnly })[0]!;
    return this.completed(hits, query, k, filter);
  }

  /**
   * A scan that came back with fewer than k (the scan limit reached under a rare filter, or members starved by
   * rows of the key that are no members) is answered exactly instead: k come back whenever k match.
   */
  private completed(hits: PgVectorHit[], query: Float32Array, k: number, filter: IndexSearchOptions['filter'] | null): SearchHit[] {
    if (hits.length >= k) return hits;
    this.exactFallbacks++;
    const exact = this.repo.exact(this.modelKey, query, k, filter ?? null);
    return exact.length > hits.length ? exact : hits;
  }

  async searchBatch(queries: readonly Float32Array[], k: number, options: { ef?: number } = {}): Promise<SearchHit[][]> {
    this.assertOpen();
    checkK(k);
    if (this.dim === null) this.ready(false);
    if (this.dim === null) return queries.map(() => []);
    for (const q of queries) checkQuery(q, this.dim);
    if (queries.length === 0) return [];
    const answers = this.repo.search(this.modelKey, this.dim, queries, k, { ef: options.ef ?? this.ef, maxScanTuples: this.maxScanTuples });
    return answers.map((hits, i) => this.completed(hits, queries[i]!, k, null));
  }

  private get ef(): number {
    return this.state?.ef ?? EF_STEPS[0]!;
  }

  /** The index needs no merging: this fills empty columns and re-tunes ef when the library has grown or shrunk. */
  async merge(options: { rebuild?: boolean } = {}): Promise<void> {
    this.assertOpen();
    if (options.rebuild) return this.rebuild();
    this.run(() => this.ready(false));
  }

  /** REINDEX from the table (pgvector's graph degrades little with deletions, but a rebuild tightens it) and re-tunes. */
  async rebuild(): Promise<void> {
    this.assertOpen();
    this.run(() => {
      this.dim ??= this.embeddings.modelDim(this.modelKey) ?? null;
      if (this.dim === null) return;
      const started = performance.now();
      this.repo.reindex(this.modelKey, this.dim, this.build);
      this.meta.put(STATE_PREFIX + this.modelKey, JSON.stringify({ ...(this.state ?? this.emptyState(this.dim)), dim: this.dim, builtAt: Date.now(), buildMs: performance.now() - started }));
      this.ready(true);
    });
  }

  private run(job: () => void): void {
    try {
      job();
      this.lastError = null;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      throw err;
    }
  }

  /** Nothing runs in the background: the database builds the index inside the statement that creates it. */
  async idle(): Promise<void> {}

  health(): IndexHealth {
    const dim = this.dim;
    const count = dim === null ? 0 : this.repo.memberCount(this.modelKey);
    const s = this.state;
    return {
      modelKey: this.modelKey,
      engine: 'pgvector',
      location: 'postgres',
      dim,
      count,
      graphCount: count,
      deleted: 0,
      pending: dim === null ? 0 : this.repo.missingCount(this.modelKey),
      ef: dim === null ? null : this.ef,
      hnswlib: hnswlibBuild,
      recall: s?.recall ?? null,
      recallQueries: s?.recallQueries ?? 0,
      fileBytes: dim === null ? null : this.repo.indexBytes(this.modelKey, dim),
      checkpointSeq: null,
      appliedSeq: 0,
      lastBuildAt: s?.builtAt ?? null,
      lastBuildMs: s?.buildMs ?? null,
      building: false,
      lastRebuildReason: null,
      lastError: this.lastError,
    };
  }

  contents(): { ids: number[]; duplicated: number[] } {
    return { ids: this.repo.memberIds(this.modelKey), duplicated: [] };
  }

  vectorOf(id: number): Float32Array | undefined {
    const v = this.repo.memberVector(this.modelKey, id);
    return v ? normalized(v) : undefined;
  }

  /** Nothing to save or stop: the index lives in the database. */
  async close(): Promise<void> {
    this.closed = true;
  }

  /** The plan of the search statement for `query` (tests check that the HNSW index serves it). */
  explain(query: Float32Array, k: number, options: IndexSearchOptions = {}): string {
    if (this.dim === null) throw new ClipdexError('INVALID_ARGUMENT', `the index for ${this.modelKey} has no vectors yet`);
    const filter = options.filter && !isEmptyFilter(options.filter) ? options.filter : null;
    return this.repo.explain(this.modelKey, this.dim, query, k, { ef: this.ef, maxScanTuples: this.maxScanTuples, filter, graphOnly: this.graphOnly });
  }

  private assertOpen(): void {
    if (this.closed) throw new ClipdexError('INVALID_ARGUMENT', `the index for ${this.modelKey} is closed`);
  }
}
