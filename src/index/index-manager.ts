/**
 * The vector index of one model key, kept consistent with SQLite (the source of truth):
 *
 *   base   an HNSW graph saved at a checkpoint (a change-log seq), loaded from disk, never modified on
 *          the main thread except for deletion marks (O(1));
 *   delta  an exact index of every vector added or changed after the base's checkpoint (all vectors while
 *          the collection is small, when there is no base at all).
 *
 * Every search first applies the committed change log (cheap: a few rows per new photo), so answers match
 * SQLite at that moment. The expensive work, building or merging the graph, runs in a worker thread
 * (build-runner.ts), which writes a new file; the new graph is then swapped in and caught up. A missing,
 * truncated, corrupt or mismatched file is never handed to hnswlib: it is rebuilt from SQLite.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import type { StoreDatabase } from '../store/database.js';
import { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { IndexChangesRepo, type ChangedMember } from '../store/index-changes-repo.js';
import { ImageFilterQueries, isEmptyFilter, type ImageFilter } from '../store/image-filter.js';
import { blobToVector } from '../store/vector-blob.js';
import { startBuild, type RunningBuild } from './build-runner.js';
import { ExactIndex, exactSearchRows } from './exact-index.js';
import type { BuildProgress, BuildResult } from './hnsw-build.js';
import { DEFAULT_HNSW_PARAMS, HnswIndex, type HnswParams } from './hnsw-index.js';
import { hnswlibBuild } from './hnswlib-binding.js';
import {
  keyDir,
  readState,
  removeOrphans,
  removeState,
  STATE_FILE,
  STATE_FORMAT,
  writeState,
  type IndexState,
  type TunedOn,
} from './index-files.js';
import { storageError } from '../util/storage-error.js';
import { LabelSet } from './label-set.js';
import { MIN_LOGGED_QUERIES, QueryLog, queryLogPath } from './query-log.js';
import type { IndexHealth, IndexSearchOptions, LibraryIndex } from './library-index.js';
import { checkK, checkQuery, mergeHits, type SearchHit } from './vector-index.js';

export interface IndexManagerOptions {
  store: StoreDatabase;
  /** `<dataDir>/index`; each model key gets its own folder inside. */
  indexDir: string;
  modelKey: string;
  /** Collections smaller than this are searched exactly and get no HNSW graph. Default 20 000. */
  exactBelow?: number;
  /**
   * Filtered subsets up to this size are searched exactly over their stored vectors (read from SQLite at
   * ~10 µs a row); larger ones through HNSW with a filter. Default 3 000, from bench:index at 100k: a 1 000
   * subset costs ~13 ms exactly vs ~32 ms through the graph, a 10 000 subset ~130 ms vs ~7 ms.
   */
  exactSubsetBelow?: number;
  /** Vectors waiting beside the graph that trigger a background merge. Default 5 000. */
  mergeAbove?: number;
  /** Fraction of deleted labels in the graph that turns the next merge into a full rebuild. Default 0.2. */
  compactAbove?: number;
  /** recall@10 the tuned ef must reach against exact search. Default 0.98. */
  targetRecall?: number;
  /** Sample queries for tuning. Default 200. */
  recallQueries?: number;
  hnsw?: Partial<HnswParams>;
  /** Merge and build in the background when thresholds are crossed. Default true. */
  autoMerge?: boolean;
  /** Only for tests that run their own migrations: handed to the worker's read-only connection. */
  migrationsDir?: string;
  /** Logged queries needed before ef is tuned on them (query-log.ts). Default 100. */
  minLoggedQueries?: number;
  /**
   * Once ef is tuned on logged queries, the least time before new queries start another retune (default 6 h):
   * each retune loads a second copy of the graph in the worker and runs exact search for every logged query
   * (2.2 GB and ~2 minutes at 1M), which a stream of searches must not repeat back to back.
   */
  retuneIntervalMs?: number;
  onProgress?: (p: IndexProgress) => void;
  /** Failures of background work (the index keeps answering from what it has). */
  onError?: (err: unknown) => void;
}

export interface IndexProgress extends BuildProgress {
  modelKey: string;
  job: 'build' | 'merge';
}

export type { IndexHealth, IndexSearchOptions } from './library-index.js';

interface Live {
  base: HnswIndex | null;
  state: IndexState | null;
  delta: ExactIndex | null;
  appliedSeq: number;
}

const DEFAULTS = {
  exactBelow: 20_000,
  exactSubsetBelow: 3_000,
  mergeAbove: 5_000,
  compactAbove: 0.2,
  targetRecall: 0.98,
  recallQueries: 200,
};

/** After a failed background job, wait this long before trying again on our own. */
const RETRY_AFTER_MS = 60_000;
/** What `retuneIntervalMs` defaults to. */
const RETUNE_INTERVAL_MS = 6 * 3_600_000;

export class IndexManager implements LibraryIndex {
  readonly modelKey: string;
  private readonly store: StoreDatabase;
  private readonly dir: string;
  private readonly log: IndexChangesRepo;
  private readonly embeddings: EmbeddingsRepo;
  private readonly filters: ImageFilterQueries;
  private readonly opts: typeof DEFAULTS & { autoMerge: boolean; params: HnswParams };
  private live: Live = { base: null, state: null, delta: null, appliedSeq: 0 };
  private dim: number | null = null;
  private job: { running: RunningBuild | null; promise: Promise<void> } | null = null;
  private retryAt = 0;
  private reloadNeeded: string | null = null;
  private lastRebuildReason: string | null = null;
  private lastError: string | null = null;
  private closed = false;
  private queryLog: QueryLog | null = null;
  /** Queries logged since ef was last measured (in this process): enough new ones trigger a retune. */
  private notedSinceTune = 0;
  private lastTuneStartedAt = 0;
  private readonly filterCache = new Map<string, { version: string; ids: number[]; allowed: LabelSet | null }>();

  private constructor(private readonly options: IndexManagerOptions) {
    this.modelKey = options.modelKey;
    this.store = options.store;
    this.dir = keyDir(options.indexDir, options.modelKey);
    this.log = new IndexChangesRepo(options.store.db);
    this.embeddings = new EmbeddingsRepo(options.store.db);
    this.filters = new ImageFilterQueries(options.store.db);
    this.opts = {
      exactBelow: options.exactBelow ?? DEFAULTS.exactBelow,
      exactSubsetBelow: options.exactSubsetBelow ?? DEFAULTS.exactSubsetBelow,
      mergeAbove: options.mergeAbove ?? DEFAULTS.mergeAbove,
      compactAbove: options.compactAbove ?? DEFAULTS.compactAbove,
      targetRecall: options.targetRecall ?? DEFAULTS.targetRecall,
      recallQueries: options.recallQueries ?? DEFAULTS.recallQueries,
      autoMerge: options.autoMerge ?? true,
      params: { ...DEFAULT_HNSW_PARAMS, ...options.hnsw },
    };
  }

  /**
   * Opens the index: loads and verifies the saved graph and replays the change log after its checkpoint;
   * without a usable graph, builds one (awaited, with progress) or, for a small collection, loads the
   * vectors for exact search.
   */
  static async open(options: IndexManagerOptions): Promise<IndexManager> {
    if (options.modelKey === '') throw new ClipdexError('INVALID_ARGUMENT', 'model key must not be empty');
    const manager = new IndexManager(options);
    await manager.load();
    return manager;
  }

  private get canBuild(): boolean {
    return this.store.path !== ':memory:';
  }

  private async load(): Promise<void> {
    // Registered before anything is read: from here on every relevant change is logged.
    this.log.register(this.modelKey);
    this.dim = this.embeddings.modelDim(this.modelKey) ?? null;
    this.reloadNeeded = null;
    const saved = await this.loadSaved();
    if (saved) {
      this.live = { base: saved.base, state: saved.state, delta: null, appliedSeq: saved.state.checkpointSeq };
      this.applyLog(this.live);
    } else if (this.dim !== null && this.canBuild && this.log.memberCount(this.modelKey) >= this.opts.exactBelow) {
      if (this.lastRebuildReason === null && this.log.tracked(this.modelKey)?.savedCheckpoint != null) {
        // A graph was saved before and its files are gone (the index folder deleted): say so, do not rebuild silently.
        this.lastRebuildReason = `the saved index files in ${this.dir} were missing; rebuilt from the database`;
        this.options.onError?.(new ClipdexError('INDEX_BUILD_FAILED', `index for ${this.modelKey} is missing from ${this.dir}, rebuilding from the database`));
      }
      // Built before open() returns rather than searched exactly meanwhile: a million vectors in memory
      // beside the worker's graph would double the footprint.
      try {
        await this.merge();
      } catch (err) {
        this.options.onError?.(err);
        await this.loadExact(); // slower, but correct
      }
    } else {
      await this.loadExact();
    }
    this.maybeMerge();
  }

  /** The saved graph if it passes every check, otherwise null (and the reason is recorded). */
  private async loadSaved(): Promise<{ base: HnswIndex; state: IndexState } | null> {
    const state = await readState(this.dir);
    if (state === null) {
      await removeOrphans(this.dir, []);
      return null;
    }
    let reason: string | null = 'problem' in state ? state.problem : this.stateProblem(state);
    let base: HnswIndex | null = null;
    if (reason === null) {
      const s = state as IndexState;
      const loaded = await HnswIndex.loadVerified(join(this.dir, s.file), { bytes: s.fileBytes, crc32: s.crc32, dim: s.dim, labels: s.labels, M: s.M }, s.deleted);
      if ('problem' in loaded) {
        reason = loaded.problem;
      } else {
        base = loaded;
        base.ef = s.ef;
      }
    }
    if (reason !== null || base === null) {
      this.lastRebuildReason = reason;
      this.options.onError?.(new ClipdexError('INDEX_BUILD_FAILED', `index for ${this.modelKey} discarded, rebuilding from the database: ${reason}`));
      await removeState(this.dir);
      await removeOrphans(this.dir, []);
      return null;
    }
    const s = state as IndexState;
    await removeOrphans(this.dir, [s.file]);
    return { base, state: s };
  }

  /** Why a readable state file still must not be used, or null. */
  private stateProblem(s: IndexState): string | null {
    if (s.libraryId !== this.store.libraryId) return 'index belongs to another library database';
    if (s.modelKey !== this.modelKey) return `index is for model ${s.modelKey}`;
    if (this.dim === null) return 'the database has no embeddings for this model any more';
    if (s.dim !== this.dim) return `index has dimension ${s.dim}, the model's embeddings have ${this.dim}`;
    if (s.M !== this.opts.params.M) return `index was built with M=${s.M}, M=${this.opts.params.M} requested`;
    const maxSeq = this.log.maxSeq();
    if (s.checkpointSeq > maxSeq) return `index checkpoint ${s.checkpointSeq} is ahead of the database (${maxSeq}); the database was restored or rolled back`;
    const tracked = this.log.tracked(this.modelKey);
    if (tracked && s.checkpointSeq < tracked.prunedThrough) return `index checkpoint ${s.checkpointSeq} predates the change log (pruned through ${tracked.prunedThrough})`;
    return null;
  }

  /** Exact mode: every member in memory (read after the checkpoint; see hnsw-build.ts for why that is consistent). */
  private async loadExact(): Promise<void> {
    const appliedSeq = this.log.maxSeq();
    let delta: ExactIndex | null = null;
    if (this.dim !== null) {
      delta = new ExactIndex(this.dim, Math.max(1024, this.log.memberCount(this.modelKey)));
      for (const row of this.log.members(this.modelKey)) delta.add(row.imageId, blobToVector(row.vector, this.dim));
    }
    this.live = { base: null, state: null, delta, appliedSeq };
    this.applyLog(this.live);
  }

  /** Applies every change committed since `live.appliedSeq`; returns how many ids it touched. */
  private applyLog(live: Live): number {
    const tracked = this.log.tracked(this.modelKey);
    if (tracked && live.appliedSeq < tracked.prunedThrough) {
      // Another process saved a newer graph and pruned the log we still needed: reload from its file.
      this.reloadNeeded = 'the change log was pruned by another process';
      return 0;
    }
    const upto = this.log.maxSeq();
    if (upto <= live.appliedSeq) return 0;
    const changes = this.log.changedSince(this.modelKey, live.appliedSeq, upto);
    this.applyChanges(live, changes);
    live.appliedSeq = upto;
    return changes.length;
  }

  private applyChanges(live: Live, changes: ChangedMember[]): void {
    for (const c of changes) {
      if (c.vector) {
        const dim = c.vector.byteLength / 4;
        if (this.dim === null) this.dim = dim;
        if (dim !== this.dim) {
          this.reloadNeeded = `embeddings changed dimension (${this.dim} → ${dim})`;
          return;
        }
        live.delta ??= new ExactIndex(this.dim);
        // The graph's copy (if any) is superseded: mark it deleted, the new vector lives in delta until merged.
        live.base?.remove(c.imageId);
        live.delta.add(c.imageId, blobToVector(c.vector, this.dim));
      } else {
        live.delta?.remove(c.imageId);
        live.base?.remove(c.imageId);
      }
    }
  }

  /** Applies committed changes now (searches do this themselves); returns how many ids changed. */
  sync(): number {
    this.assertOpen();
    const n = this.store.transaction(() => this.applyLog(this.live));
    this.maybeMerge();
    return n;
  }

  /**
   * The k nearest images by cosine similarity, best first, consistent with everything committed to SQLite
   * before the call. With a filter the answer is exact for that filter: never fewer than k when k match.
   */
  async search(query: Float32Array, k: number, options: IndexSearchOptions = {}): Promise<SearchHit[]> {
    this.assertOpen();
    checkK(k);
    if (this.reloadNeeded) await this.reload();
    const filter = options.filter && !isEmptyFilter(options.filter) ? options.filter : null;
    const live = this.live;
    // One read transaction: the log replay and the filter see the same snapshot.
    const subset = this.store.transaction(() => {
      this.applyLog(live);
      if (!filter || this.dim === null) return null;
      const matching = this.filteredIds(filter);
      const small = live.base !== null && matching.ids.length > 0 && matching.ids.length <= this.opts.exactSubsetBelow;
      return { ids: matching.ids, allowed: matching.allowed, members: small ? this.filters.members(this.modelKey, filter) : null };
    });
    this.maybeMerge();
    if (this.reloadNeeded) return this.search(query, k, options);
    if (this.dim === null) return [];
    checkQuery(query, this.dim);
    if (!subset) return this.searchAll(live, query, k);
    if (subset.ids.length === 0) return [];
    if (subset.members) return exactSearchRows(this.dim, subset.members, query, k);
    // A filter that keeps everything is no filter (and a per-candidate callback costs).
    if (subset.ids.length >= (live.base?.size ?? 0) + (live.delta?.size ?? 0)) return this.searchAll(live, query, k);
    const allowed = subset.allowed ?? new LabelSet(subset.ids);
    const accept = (id: number) => allowed.has(id);
    if (!live.base) return live.delta ? live.delta.search(query, k, { filter: accept }) : [];
    // A large subset: HNSW with the filter. hnswlib keeps walking until it holds ef matching candidates,
    // so the tuned ef needs no widening; exact over the subset is the guarantee if it still comes back short.
    const fromGraph = live.base.searchSync(query, k, { filter: accept });
    const fromDelta = live.delta ? await live.delta.search(query, k, { filter: accept }) : [];
    const hits = mergeHits(fromGraph, fromDelta, k);
    if (hits.length >= Math.min(k, subset.ids.length)) return hits;
    return exactSearchRows(this.dim, this.filters.members(this.modelKey, filter!), query, k);
  }

  /**
   * The ids a filter keeps, remembered until the database changes (any write on this connection or a
   * commit by another): paging through a folder or a date range re-reads 300k ids per page otherwise
   * (~0.3 s at 1M photos). Keyed by the filter itself; the last few filters are kept.
   */
  private filteredIds(filter: ImageFilter): { ids: number[]; allowed: LabelSet | null } {
    const version = this.store.changeStamp();
    const key = JSON.stringify(filter);
    const hit = this.filterCache.get(key);
    if (hit && hit.version === version) return hit;
    const ids = this.filters.ids(this.modelKey, filter);
    const entry = { version, ids, allowed: ids.length > this.opts.exactSubsetBelow ? new LabelSet(ids) : null };
    this.filterCache.delete(key);
    this.filterCache.set(key, entry);
    if (this.filterCache.size > 4) this.filterCache.delete(this.filterCache.keys().next().value!);
    return entry;
  }

  private async searchAll(live: Live, query: Float32Array, k: number): Promise<SearchHit[]> {
    const fromDelta = live.delta ? await live.delta.search(query, k) : [];
    return live.base ? this.searchGraph(live.base, live.delta, query, k, fromDelta) : fromDelta;
  }

  /** The graph's best k merged with the delta's (already searched). */
  private searchGraph(base: HnswIndex, delta: ExactIndex | null, query: Float32Array, k: number, fromDelta: SearchHit[], startEf = base.ef): SearchHit[] {
    const want = Math.min(k, base.size + (delta?.size ?? 0));
    // Deletion marks can starve a search of live candidates; widen ef until k come back.
    for (let ef = Math.max(1, startEf); ; ef *= 4) {
      const hits = mergeHits(base.searchSync(query, k, { ef }), fromDelta, k);
      if (hits.length >= want || ef >= base.labelCount) return hits;
    }
  }

  /**
   * The k nearest of each query, as `search` answers one without a filter, for many at once: one log
   * replay for all, and the vectors beside the graph (all of them in exact mode) scanned in chunks of
   * queries instead of once per query. Finding duplicates asks this about every photo of the library.
   * `ef` replaces the tuned ef for the graph (a caller after only the very closest can afford less).
   */
  async searchBatch(queries: readonly Float32Array[], k: number, options: { ef?: number } = {}): Promise<SearchHit[][]> {
    this.assertOpen();
    checkK(k);
    if (this.reloadNeeded) await this.reload();
    const live = this.live;
    this.store.transaction(() => this.applyLog(live));
    this.maybeMerge();
    if (this.reloadNeeded) return this.searchBatch(queries, k, options);
    if (this.dim === null) return queries.map(() => []);
    for (const q of queries) checkQuery(q, this.dim);
    const fromDelta = live.delta ? await live.delta.searchMany(queries, k) : queries.map(() => []);
    const base = live.base;
    if (!base) return fromDelta;
    return queries.map((q, i) => this.searchGraph(base, live.delta, q, k, fromDelta[i]!, options.ef ?? base.ef));
  }

  /**
   * Folds the vectors waiting beside the graph into a new graph file (or builds the first graph, or
   * rebuilds when deletions pile up), in the worker; resolves once the new graph is saved and in use.
   * Concurrent calls share one job.
   */
  merge(options: { rebuild?: boolean; tuneOnly?: boolean } = {}): Promise<void> {
    this.assertOpen();
    if (this.job) return this.job.promise;
    const live = this.live;
    if (this.dim === null || !this.canBuild) return Promise.resolve();
    const dim = this.dim;
    const rebuild =
      options.rebuild === true ||
      !live.base ||
      !live.state ||
      live.base.deletedCount / Math.max(1, live.base.labelCount) > this.opts.compactAbove ||
      // The graph file was deleted under us (the index folder removed): a merge would fail on it every minute.
      !existsSync(join(this.dir, live.state.file));
    const base = live.state;
    if (rebuild && options.rebuild !== true && live.base && this.log.memberCount(this.modelKey) < this.opts.exactBelow / 2) {
      // Deletions shrank the collection well below the HNSW threshold: exact search, no graph to keep.
      return this.dropGraph();
    }
    const kind = rebuild ? 'build' : options.tuneOnly ? 'tune' : 'merge';
    const job = {
      running: null as RunningBuild | null,
      promise: Promise.resolve(),
    };
    const run = async () => {
      const running = startBuild(
        {
          kind,
          queryLog: queryLogPath(this.dir),
          minLogged: this.options.minLoggedQueries ?? MIN_LOGGED_QUERIES,
          location: this.store.location,
          modelKey: this.modelKey,
          dim,
          dir: this.dir,
          params: this.opts.params,
          targetRecall: this.opts.targetRecall,
          recallQueries: this.opts.recallQueries,
          ...(this.options.migrationsDir ? { migrationsDir: this.options.migrationsDir } : {}),
          ...(!rebuild && base
            ? {
                base: {
                  file: base.file,
                  deleted: base.deleted,
                  checkpointSeq: base.checkpointSeq,
                  ef: base.ef,
                  recall: base.recall,
                  recallQueries: base.recallQueries,
                  tunedAtCount: base.tunedAtCount,
                  ...(base.tunedOn ? { tunedOn: base.tunedOn } : {}),
                },
              }
            : {}),
        },
        (p) => this.options.onProgress?.({ ...p, modelKey: this.modelKey, job: rebuild ? 'build' : 'merge' }),
      );
      job.running = running;
      this.notedSinceTune = 0;
      this.lastTuneStartedAt = Date.now();
      const result = await running.result;
      if (this.closed) return;
      if (result.kind === 'tune') await this.installTuning(result);
      else await this.install(result, dim);
    };
    job.promise = (async () => {
      await mkdir(this.dir, { recursive: true });
      try {
        await run();
        this.lastError = null;
      } catch (error) {
        // install() writes SQLite and state.json: a full or read-only disk there is said as such.
        const err = storageError(error, this.options.indexDir) ?? error;
        this.lastError = errorMessage(err);
        this.retryAt = Date.now() + RETRY_AFTER_MS;
        throw err;
      } finally {
        this.job = null;
      }
    })();
    this.job = job;
    return job.promise;
  }

  private async dropGraph(): Promise<void> {
    await removeState(this.dir);
    await removeOrphans(this.dir, []);
    await this.loadExact();
  }

  /**
   * Measures ef again on the saved graph with the current tuning queries (the logged ones once there are
   * enough), in the worker: the exact answers for the queries are computed there, never on a search.
   */
  retune(): Promise<void> {
    return this.live.base && this.live.state ? this.merge({ tuneOnly: true }) : Promise.resolve();
  }

  /**
   * Logs the embedding of a query a user asked (query-log.ts), for tuning ef on queries like theirs. Cheap
   * enough for the search path; starts a background retune the first time enough queries are logged (and
   * again after every `recallQueries` new ones), never waits for it.
   */
  noteQuery(query: Float32Array): void {
    if (this.closed || this.dim === null || query.length !== this.dim || !this.canBuild) return;
    if (!this.queryLog) {
      try {
        mkdirSync(this.dir, { recursive: true });
      } catch {
        return;
      }
      this.queryLog = QueryLog.open(queryLogPath(this.dir), this.dim);
    }
    if (this.queryLog.note(query)) this.notedSinceTune++;
    const state = this.live.state;
    if (!state || !this.live.base || this.job || !this.opts.autoMerge || Date.now() < this.retryAt) return;
    const enough = this.queryLog.size >= (this.options.minLoggedQueries ?? MIN_LOGGED_QUERIES);
    const again = this.notedSinceTune >= this.opts.recallQueries && Date.now() - this.lastTuneStartedAt >= (this.options.retuneIntervalMs ?? RETUNE_INTERVAL_MS);
    const due = enough && (state.tunedOn !== 'logged' || again);
    if (due) this.retune().catch((err: unknown) => this.options.onError?.(err));
  }

  /** Commits a retune: the same graph file, a new ef and the recall and queries it was measured on. */
  private async installTuning(result: BuildResult): Promise<void> {
    const { state, base } = this.live;
    if (!state || !base || state.file !== result.file) return; // the graph was replaced meanwhile
    const next: IndexState = {
      ...state,
      ef: result.ef,
      recall: result.recall,
      recallQueries: result.recallQueries,
      efTried: result.efTried.length > 0 ? result.efTried : state.efTried,
      tunedAtCount: result.tunedAtCount,
      ...(result.tunedOn ? { tunedOn: result.tunedOn } : {}),
    };
    await writeState(this.dir, next);
    base.ef = result.ef;
    this.live = { ...this.live, state: next };
  }

  /** Rebuilds the graph from SQLite, whatever the state of the current one. */
  rebuild(): Promise<void> {
    return this.merge({ rebuild: true });
  }

  /** Commits a finished job: SQLite durable first, then the state file, then the swap and log pruning. */
  private async install(result: BuildResult, dim: number): Promise<void> {
    this.log.markSaving(this.modelKey, result.checkpointSeq);
    const state: IndexState = {
      format: STATE_FORMAT,
      libraryId: this.store.libraryId,
      modelKey: this.modelKey,
      dim,
      M: this.opts.params.M,
      efConstruction: this.opts.params.efConstruction,
      file: result.file,
      fileBytes: result.fileBytes,
      crc32: result.crc32,
      labels: result.labels,
      deleted: result.deleted,
      checkpointSeq: result.checkpointSeq,
      ef: result.ef,
      recall: result.recall,
      recallQueries: result.recallQueries,
      efTried: result.efTried.length > 0 ? result.efTried : (this.live.state?.efTried ?? []),
      tunedAtCount: result.tunedAtCount,
      ...(result.tunedOn ? { tunedOn: result.tunedOn } : {}),
      builtAt: Date.now(),
      buildMs: result.buildMs,
      lastJob: result.kind === 'build' ? 'build' : 'merge',
    };
    const base = await HnswIndex.load(join(this.dir, result.file), dim, result.deleted);
    base.ef = result.ef;
    await writeState(this.dir, state);
    const previous = this.live.state?.file;
    if (previous && previous !== result.file) await rm(join(this.dir, previous), { force: true });
    this.log.prune(this.modelKey, result.checkpointSeq);
    // Catch the new graph up with what was committed while the worker ran, then swap (synchronously).
    const next: Live = { base, state, delta: new ExactIndex(dim), appliedSeq: result.checkpointSeq };
    this.store.transaction(() => this.applyLog(next));
    this.live = next;
  }

  private maybeMerge(): void {
    if (!this.opts.autoMerge || this.job || this.closed || !this.canBuild || Date.now() < this.retryAt) return;
    const { base, delta } = this.live;
    const pending = delta?.size ?? 0;
    const due = base
      ? pending >= this.opts.mergeAbove || base.deletedCount / Math.max(1, base.labelCount) > this.opts.compactAbove
      : pending >= this.opts.exactBelow;
    if (!due) return;
    this.merge().catch((err: unknown) => this.options.onError?.(err));
  }

  private async reload(): Promise<void> {
    await this.cancelJob();
    this.reloadNeeded = null;
    await this.load();
  }

  /** Waits for background work to finish (errors are reported through onError / health, not thrown here). */
  async idle(): Promise<void> {
    while (this.job) await this.job.promise.catch(() => {});
  }

  health(): IndexHealth {
    const { base, state, delta, appliedSeq } = this.live;
    return {
      modelKey: this.modelKey,
      engine: base ? 'hnsw' : 'exact',
      location: 'files',
      dim: this.dim,
      count: (base?.size ?? 0) + (delta?.size ?? 0),
      graphCount: base?.size ?? 0,
      deleted: base?.deletedCount ?? 0,
      pending: delta?.size ?? 0,
      ef: base?.ef ?? null,
      hnswlib: hnswlibBuild,
      recall: state?.recall ?? null,
      recallQueries: state?.recallQueries ?? 0,
      tunedOn: state ? (state.tunedOn ?? 'midpoints') : null,
      fileBytes: state?.fileBytes ?? null,
      checkpointSeq: state?.checkpointSeq ?? null,
      appliedSeq,
      lastBuildAt: state?.builtAt ?? null,
      lastBuildMs: state?.buildMs ?? null,
      building: this.job !== null,
      lastRebuildReason: this.lastRebuildReason,
      lastError: this.lastError ?? this.missingFiles(state),
    };
  }

  /** The saved graph in use has vanished from disk (deleted while running): searches go on from memory. */
  private missingFiles(state: IndexState | null): string | null {
    if (!state || this.job || (existsSync(join(this.dir, STATE_FILE)) && existsSync(join(this.dir, state.file)))) return null;
    return `the index files in ${this.dir} are gone (deleted?); searches use the copy in memory, and the next merge or restart rebuilds them from the database`;
  }

  /**
   * Every searchable id, for consistency checks: graph ∪ delta. An id in both would be a duplicate
   * answer, so it is reported separately.
   */
  contents(): { ids: number[]; duplicated: number[] } {
    const { base, delta } = this.live;
    const ids = base ? [...base.liveLabels()] : [];
    const duplicated: number[] = [];
    if (delta) {
      for (const id of delta.ids()) {
        if (base?.has(id)) duplicated.push(id);
        ids.push(id);
      }
    }
    return { ids: ids.sort((a, b) => a - b), duplicated };
  }

  /** The stored (normalised) vector the index holds for an id. */
  vectorOf(id: number): Float32Array | undefined {
    return this.live.delta?.vector(id) ?? this.live.base?.vector(id);
  }

  private async cancelJob(): Promise<void> {
    const job = this.job;
    if (!job) return;
    await job.running?.cancel();
    await job.promise.catch(() => {});
  }

  /** Stops background work. Nothing needs saving: the change log already holds what the graph lacks. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.cancelJob();
  }

  private assertOpen(): void {
    if (this.closed) throw new ClipdexError('INVALID_ARGUMENT', `the index for ${this.modelKey} is closed`);
  }
}

/** What `clipdex status` shows about a saved index without loading it. */
export interface SavedIndexStatus {
  modelKey: string;
  dim: number;
  labels: number;
  deleted: number;
  ef: number;
  recall: number | null;
  recallQueries: number;
  tunedOn: TunedOn;
  fileBytes: number;
  checkpointSeq: number;
  builtAt: number;
  buildMs: number;
}

export async function readSavedIndexStatus(indexDir: string, modelKey: string): Promise<SavedIndexStatus | null> {
  const state = await readState(keyDir(indexDir, modelKey));
  if (state === null || 'problem' in state) return null;
  return {
    modelKey: state.modelKey,
    dim: state.dim,
    labels: state.labels,
    deleted: state.deleted.length,
    ef: state.ef,
    recall: state.recall,
    recallQueries: state.recallQueries,
    tunedOn: state.tunedOn ?? 'midpoints',
    fileBytes: state.fileBytes,
    checkpointSeq: state.checkpointSeq,
    builtAt: state.builtAt,
    buildMs: state.buildMs,
  };
}
