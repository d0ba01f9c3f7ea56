import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import { IndexManager, type IndexProgress } from '../index/index-manager.js';
import type { LibraryIndex } from '../index/library-index.js';
import { PgVectorIndex } from '../index/pg-vector-index.js';
import { ThumbnailStore } from '../store/thumbnail-store.js';
import { cacheDir as defaultCacheDir, dataDir as defaultDataDir } from '../model/cache-dir.js';
import { ClipModel, type LoadModelOptions } from '../model/clip-model.js';
import { DEFAULT_MODEL_ID, resolveModel } from '../model/model-registry.js';
import { AdaptersRepo, type AdapterRecord, textTowerOf, towerFileName } from '../store/adapters-repo.js';
import type { TextTower } from '../model/text-encoder.js';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { libraryDamagedError, libraryPaths, type LibraryPaths, type StoreDatabase } from '../store/database.js';
import { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { libraryLocation, openStore } from '../store/open-store.js';
import { towerPath } from './version-towers.js';
import { ImagesRepo } from '../store/images-repo.js';
import { PairsRepo } from '../store/pairs-repo.js';
import { RootsRepo } from '../store/roots-repo.js';
import { AdaptedEmbeddings, versionSearchKey } from '../adapter/adapter-embeddings.js';
import { removeAdapterLeftovers } from '../adapter/adapter-leftovers.js';
import { decodeAdapter, type AdapterWeights } from '../adapter/adapter-weights.js';
import { storageError } from '../util/storage-error.js';
import { LibraryModelRepo } from '../store/library-model-repo.js';
import type { ModelSpec } from '../model/model-dir.js';
import { refuseLostDatabase } from './lost-database.js';
import { adoptLegacyModelKey } from './legacy-model-key.js';
import { modelKeyFor } from './model-key.js';
import { startupMark } from '../util/startup-trace.js';

export interface OpenLibraryOptions {
  /** Where the database, index and thumbnails live; default `$CLIPDEX_DATA_DIR` or the XDG data dir. */
  dataDir?: string;
  /**
   * A Postgres URL (default `$CLIPDEX_DATABASE_URL`): the library's records and vectors live there instead of
   * in `<dataDir>/library.db`; thumbnails and index files stay in the data dir.
   */
  databaseUrl?: string;
  /**
   * Model id or directory; default `$CLIPDEX_MODEL`, else the model the library recorded (`models use`),
   * else the default model. One that differs from the recorded model is used for this run only, and
   * `notice` says so: a flag never re-encodes a library.
   */
  model?: string | undefined;
  cacheDir?: string;
  session?: LoadModelOptions;
  /**
   * When the model cannot be loaded: throw (the default, for one-shot commands), or open anyway with
   * `model` null and `modelError` set (the server keeps serving what it can and says what is missing).
   */
  modelOptional?: boolean;
  onIndexProgress?: (p: IndexProgress) => void;
  onIndexError?: (err: unknown) => void;
}

/** The model side of a library, present only when its model loaded. */
export interface LoadedModel {
  model: ClipModel;
  /** Model name + weights fingerprint: the key of its base embeddings and base index. */
  key: string;
  /** The base model's index (kept while an adapter is active: rollback to the base is instant). */
  index: LibraryIndex;
}

/** What searches run against: the base model's vectors, or an activated adapter's. */
export interface SearchSpace {
  /**
   * The model whose vectors the space holds: queries are encoded with this one, never with the library's
   * model of the moment, so a search running across a model switch cannot pair one model's query with
   * another model's index.
   */
  model: ClipModel;
  /** The model key of the vectors searched. */
  key: string;
  index: LibraryIndex;
  /** The active adapter; queries are projected through it. null: the base model. */
  adapter: { id: number; version: number; weights: AdapterWeights; text?: TextTower | null } | null;
}

/** An index that was swapped out is closed this long after the switch, so searches already running finish. */
const RETIRE_AFTER_MS = 10_000;

/**
 * One photo library opened for use: its SQLite store and repositories, the CLIP model and the vector index
 * of that model, and the thumbnail cache. Everything is opened up front, so the first query pays nothing.
 */
export class Library {
  readonly images: ImagesRepo;
  readonly roots: RootsRepo;
  readonly embeddings: EmbeddingsRepo;
  readonly pairs: PairsRepo;
  readonly adapters: AdaptersRepo;
  readonly thumbnails: ThumbnailStore;
  /** The recorded model and a switch under way (model-switch). */
  readonly models: LibraryModelRepo;
  /** Said once at open when this run's model is not the library's recorded one. */
  readonly notice: string | null;
  private current: LoadedModel | null;
  private ref: string;
  private space: SearchSpace | null;
  private readonly retiring = new Set<{ index: LibraryIndex; close: () => Promise<void>; timer: NodeJS.Timeout }>();
  private readonly indexOptions: Pick<OpenLibraryOptions, 'onIndexProgress' | 'onIndexError'>;

  private constructor(
    readonly paths: LibraryPaths,
    readonly store: StoreDatabase,
    modelRef: string,
    loaded: LoadedModel | null,
    readonly modelError: ClipdexError | null,
    options: OpenLibraryOptions = {},
    notice: string | null = null,
  ) {
    this.current = loaded;
    this.ref = modelRef;
    this.notice = notice;
    this.models = new LibraryModelRepo(store.db);
    this.space = loaded ? { model: loaded.model, key: loaded.key, index: loaded.index, adapter: null } : null;
    this.indexOptions = { ...(options.onIndexProgress ? { onIndexProgress: options.onIndexProgress } : {}), ...(options.onIndexError ? { onIndexError: options.onIndexError } : {}) };
    this.images = new ImagesRepo(store.db);
    this.roots = new RootsRepo(store.db);
    this.embeddings = new EmbeddingsRepo(store.db);
    this.pairs = new PairsRepo(store.db);
    this.adapters = new AdaptersRepo(store.db);
    this.thumbnails = new ThumbnailStore(paths.dir);
  }

  static async open(options: OpenLibraryOptions = {}): Promise<Library> {
    startupMark('library open start');
    const paths = libraryPaths(options.dataDir ?? defaultDataDir());
    const location = libraryLocation(paths.dir, options.databaseUrl ?? (process.env.CLIPDEX_DATABASE_URL || undefined));
    if (location.kind === 'sqlite') refuseLostDatabase(paths);
    let store: StoreDatabase;
    try {
      store = openStore(location);
    } catch (err) {
      throw libraryDamagedError(err, paths.database) ?? err;
    }
    let recorded: ReturnType<LibraryModelRepo['current']> = null;
    try {
      recorded = new LibraryModelRepo(store.db).current();
    } catch (err) {
      store.close();
      throw libraryDamagedError(err, paths.database) ?? err;
    }
    const asked = options.model ?? process.env.CLIPDEX_MODEL;
    const modelRef = asked ?? recorded?.ref ?? DEFAULT_MODEL_ID;
    let model: ClipModel | null = null;
    let loading: Promise<ClipModel> | null = null;
    let index: LibraryIndex | null = null;
    let notice: string | null = null;
    try {
      const cacheRoot = options.cacheDir ?? defaultCacheDir();
      const spec = await resolveModel(modelRef, { cacheRoot });
      startupMark('model resolved');
      // The towers open on their threads (or this one) while the key, the database and the index are seen to
      // here: the index load is hundreds of ms of this thread that would otherwise follow the towers'
      // seconds. Saved optimized graphs go to the model cache, beside the fingerprints (optimized-cache.ts).
      loading = ClipModel.load(spec, { cacheDir: cacheRoot, ...options.session });
      loading.catch(() => undefined); // awaited below, or in the catch
      const key = await modelKeyFor(spec, { cacheDir: cacheRoot });
      startupMark('model key');
      // A library keyed the old way keeps its vectors, indexes and trained versions under the new key.
      await adoptLegacyModelKey(store, paths.indexDir, spec, key);
      const models = new LibraryModelRepo(store.db);
      if (recorded && recorded.key !== key) {
        notice = `this run uses ${modelRef}, not the library's model ${recorded.ref}: searches see only what ${modelRef} has encoded; \`clipdex models use ${modelRef}\` switches the library (re-encoding it in the background)`;
      }
      const prepare = async (dim: number): Promise<LibraryIndex> => {
        new EmbeddingsRepo(store.db).registerModel(key, dim);
        // Bookkeeping, not a reason to refuse the library: on a database that refuses writes (read-only file,
        // full disk) the model still loads and searches work, and ingest reports the storage problem itself.
        try {
          // A library from before model switching records the model it is opened with, once that model's
          // vectors are there (or nothing's are): a one-off --model on a library of another model records nothing.
          if (!recorded) {
            const embeddings = new EmbeddingsRepo(store.db);
            if (embeddings.count(key) > 0 || embeddings.models().every((m) => m.count === 0)) models.setCurrent({ ref: modelRef, key });
          } else if (recorded.key === key && models.knownRefs().find((r) => r.key === key)?.ref !== modelRef) models.rememberRef(key, modelRef);
        } catch (err) {
          if (!storageError(err, paths.dir)) throw err;
        }
        startupMark('model recorded');
        const opened = await openLibraryIndex(store, paths.indexDir, key, options.onIndexProgress, options.onIndexError);
        startupMark('index open');
        return opened;
      };
      // A model whose config gives the dimension loads with that one or fails (ClipModel.load checks the
      // graphs against it): the index need not wait for the towers. Otherwise the towers settle it first.
      if (spec.embeddingDim !== null) index = await prepare(spec.embeddingDim);
      model = await loading;
      startupMark('model loaded');
      index ??= await prepare(model.dim);
      const library = new Library(paths, store, modelRef, { model, key, index }, null, options, notice);
      await library.openActiveAdapter();
      await library.removeAdapterLeftovers();
      await library.adapters.removeOrphanTowers(paths.dir).catch((err: unknown) => options.onIndexError?.(err));
      startupMark('library ready');
      return library;
    } catch (caught) {
      await index?.close().catch(() => undefined);
      // A model that failed to load is the error to report, as when it loaded first (the database's own
      // problems are found again by the next open); one that loaded is closed.
      let err = caught;
      if (loading && !model) {
        const failed = await loading.then(
          (m) => {
            model = m;
            return null;
          },
          (e: unknown) => ({ e }),
        );
        if (failed) err = failed.e;
      }
      await model?.release().catch(() => undefined);
      // Damaged pages are often first read here (registering the model, opening its index): that is the
      // library's problem, not the model's, and no caller can go on without a sound database.
      const damaged = libraryDamagedError(err, paths.database);
      if (damaged) {
        store.close();
        throw damaged;
      }
      // A database that refuses a write here (full disk, read-only file) is not a broken model: say which it is.
      const modelError = isClipdexError(err)
        ? err
        : (storageError(err, paths.dir) ?? new ClipdexError('MODEL_INVALID', `cannot load model ${modelRef}: ${errorMessage(err)}`, { cause: err }));
      if (!options.modelOptional) {
        store.close();
        throw modelError;
      }
      return new Library(paths, store, modelRef, null, modelError);
    }
  }

  /** The model searches use now (null when it could not load); another one after a model switch. */
  get loaded(): LoadedModel | null {
    return this.current;
  }

  /** What loaded the current model: an id or a directory. */
  get modelRef(): string {
    return this.ref;
  }

  /**
   * Loads another model of this library (a switch's target): its towers, its key, and its vectors'
   * dimension recorded. Its index is not opened (the caller does, once its vectors are there).
   */
  async loadModel(ref: string, options: { cacheDir?: string; session?: LoadModelOptions } = {}): Promise<{ model: ClipModel; key: string; spec: ModelSpec }> {
    const cacheRoot = options.cacheDir ?? defaultCacheDir();
    const spec = await resolveModel(ref, { cacheRoot });
    const key = await modelKeyFor(spec, { cacheDir: cacheRoot });
    const model = await ClipModel.load(spec, { cacheDir: cacheRoot, ...options.session });
    try {
      this.embeddings.registerModel(key, model.dim);
    } catch (err) {
      await model.release().catch(() => undefined);
      throw err;
    }
    return { model, key, spec };
  }

  /**
   * Makes another model the library's: recorded in the database (with any switch target cleared) and
   * searched from the next query on, through its active trained version if it has one. The old model's
   * towers and index are closed a little later (searches already running finish on them); its vectors,
   * index files and trained versions stay, so switching back is instant.
   */
  async switchModel(ref: string, next: LoadedModel): Promise<void> {
    const previous = this.requireModel();
    if (previous.key === next.key) return;
    this.store.transaction(() => {
      this.models.setCurrent({ ref, key: next.key });
      this.models.clearTarget();
    });
    let space: SearchSpace = { model: next.model, key: next.key, index: next.index, adapter: null };
    const active = this.adapters.active(next.key);
    if (active) {
      try {
        const weights = decodeAdapter(active.weights);
        const key = versionSearchKey(next.key, active.id, weights);
        await new AdaptedEmbeddings(this.store.db, this.embeddings, next.key).fillMissing(key, weights);
        const text = await this.openTunedText(active, next.model);
        try {
          space = { model: next.model, key, index: key === next.key ? next.index : await this.openIndex(key), adapter: { id: active.id, version: active.version, weights, text } };
        } catch (err) {
          await text?.release();
          throw err;
        }
      } catch (err) {
        this.indexOptions.onIndexError?.(new ClipdexError('ADAPTER_INVALID', `the active adapter v${active.version} of ${ref} could not be opened; searching with its base model: ${errorMessage(err)}`, { cause: err }));
      }
    }
    const old = this.space!;
    this.current = next;
    this.ref = ref;
    this.space = space;
    this.lastActiveCheck = Date.now();
    // The previous model's spaces go after a grace period, like any swapped-out index.
    // A version searched under the base key shares the previous model's index, which the next line closes.
    if (old.index !== previous.index || old.adapter?.text) this.retire(old, undefined, { keepIndex: old.index === previous.index });
    this.retire({ model: previous.model, key: previous.key, index: previous.index, adapter: null }, async () => {
      await previous.model.release();
    });
  }

  /** The loaded model, or the error that says why there is none and what to do. */
  requireModel(): LoadedModel {
    if (this.loaded) return this.loaded;
    throw this.modelError ?? new ClipdexError('MODEL_NOT_FOUND', `model ${this.modelRef} is not loaded`);
  }

  /** The vectors searches use now. */
  searchSpace(): SearchSpace {
    this.requireModel();
    this.followActiveAdapter();
    return this.space!;
  }

  private lastActiveCheck = 0;
  private following = false;

  /**
   * Follows an activation or rollback made by another process (the CLI beside a running server): at most
   * every 2 s, compares the database's active adapter with the one searched, and switches in the background
   * (the other process built and saved that index, so opening it is quick). The switch happens only if the
   * database still says so when the index is ready.
   */
  private followActiveAdapter(): void {
    const loaded = this.loaded;
    if (!loaded || this.following || Date.now() - this.lastActiveCheck < 2000) return;
    this.lastActiveCheck = Date.now();
    const activeId = () => this.adapters.active(loaded.key)?.id ?? null;
    const wanted = activeId();
    if (wanted === (this.space?.adapter?.id ?? null)) return;
    this.following = true;
    void (async () => {
      let next: SearchSpace = { model: loaded.model, key: loaded.key, index: loaded.index, adapter: null };
      if (wanted !== null) {
        const record = this.adapters.get(wanted);
        if (!record) return;
        next = await this.openAdapterSpace(record);
      }
      if (activeId() === wanted && (this.space?.adapter?.id ?? null) !== wanted) this.setSearchSpace(next);
      else if (next.adapter) {
        if (next.index !== loaded.index) await next.index.close();
        await next.adapter.text?.release();
      }
    })()
      .catch((err: unknown) => this.indexOptions.onIndexError?.(new ClipdexError('ADAPTER_INVALID', `cannot follow the adapter activated elsewhere: ${errorMessage(err)}`, { cause: err })))
      .finally(() => {
        this.following = false;
      });
  }

  /** Opens the index of a model key of this library (an adapter's), with the library's progress callbacks. */
  async openIndex(modelKey: string, onProgress?: OpenLibraryOptions['onIndexProgress']): Promise<LibraryIndex> {
    return openLibraryIndex(this.store, this.paths.indexDir, modelKey, onProgress ?? this.indexOptions.onIndexProgress, this.indexOptions.onIndexError);
  }

  /**
   * Switches searches to another space in one assignment: a search that already holds the old space
   * finishes on it (its index is closed a little later), the next one uses the new space.
   */
  setSearchSpace(next: SearchSpace, onRetired?: (previous: SearchSpace) => Promise<void>): SearchSpace {
    const previous = this.searchSpace();
    this.space = next;
    const indexGoes = previous.index !== next.index && previous.index !== this.current!.index;
    // A text-tuned version is searched in the base index: leaving it keeps the index but not its tower.
    const towerGoes = !!previous.adapter?.text && previous.adapter.text !== next.adapter?.text;
    if (indexGoes || towerGoes) this.retire(previous, onRetired, { keepIndex: !indexGoes });
    return previous;
  }

  private retire(space: SearchSpace, onRetired?: (previous: SearchSpace) => Promise<void>, options: { keepIndex?: boolean } = {}): void {
    const close = async () => {
      if (!options.keepIndex) await space.index.close().catch(() => undefined);
      await space.adapter?.text?.release().catch(() => undefined);
      await onRetired?.(space).catch((err: unknown) => this.indexOptions.onIndexError?.(err));
    };
    const entry = {
      index: space.index,
      close,
      timer: setTimeout(() => {
        this.retiring.delete(entry);
        void close();
      }, RETIRE_AFTER_MS),
    };
    entry.timer.unref();
    this.retiring.add(entry);
  }

  /**
   * At open: searches use the active adapter when there is one. Its projected embeddings are completed
   * first (photos added by a process that did not know the adapter); if anything about it fails, the base
   * model serves and the error is reported, never a half-switched state.
   */
  private async openActiveAdapter(): Promise<void> {
    const loaded = this.loaded!;
    const active = this.adapters.active(loaded.key);
    if (!active) return;
    try {
      this.space = await this.openAdapterSpace(active);
    } catch (err) {
      this.indexOptions.onIndexError?.(
        new ClipdexError('ADAPTER_INVALID', `the active adapter v${active.version} could not be opened; searching with the base model: ${errorMessage(err)}`, { cause: err }),
      );
    }
  }

  /** What killed activations left behind (see adapter-leftovers.ts); a failure here only gets reported. */
  private async removeAdapterLeftovers(): Promise<void> {
    const base = this.loaded!.key;
    const active = this.adapters.active(base);
    try {
      await removeAdapterLeftovers(this.store.db, this.embeddings, this.paths.indexDir, base, active ? versionSearchKey(base, active.id, decodeAdapter(active.weights)) : null);
    } catch (err) {
      this.indexOptions.onIndexError?.(new ClipdexError('ADAPTER_INVALID', `cannot remove what an interrupted adapter activation left behind: ${errorMessage(err)}`, { cause: err }));
    }
  }

  /**
   * An adapter version's search space, as another process (or an earlier run) activated it: its projected
   * embeddings completed first (photos added by a process that did not know the adapter), then its index.
   */
  private async openAdapterSpace(record: AdapterRecord): Promise<SearchSpace> {
    const base = this.loaded!.key;
    const weights = decodeAdapter(record.weights);
    const key = versionSearchKey(base, record.id, weights);
    await new AdaptedEmbeddings(this.store.db, this.embeddings, base).fillMissing(key, weights);
    const text = await this.openTunedText(record);
    try {
      const index = key === base ? this.loaded!.index : await this.openIndex(key);
      return { model: this.loaded!.model, key, index, adapter: { id: record.id, version: record.version, weights, text } };
    } catch (err) {
      await text?.release();
      throw err;
    }
  }

  /**
   * A text-tuned version's own text tower as an encoder (null for an adapter-only version), refused unless
   * the file is the one trained: its whole-file SHA-256 must be the recorded one.
   */
  async openTunedText(record: Pick<AdapterRecord, 'metrics' | 'version'>, model: ClipModel = this.requireModel().model): Promise<TextTower | null> {
    const ref = textTowerOf(record);
    if (!ref) return null;
    const path = await towerPath(this.store, this.paths.dir, ref);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    const sha = hash.digest('hex');
    if (sha !== ref.sha256 || ref.file !== towerFileName(ref.sha256)) {
      throw new ClipdexError('ADAPTER_INVALID', `version ${record.version}'s text tower ${path} is not the one trained (SHA-256 ${sha}, recorded ${ref.sha256})`);
    }
    return model.openTextTowerAt(path);
  }

  async close(): Promise<void> {
    for (const entry of this.retiring) {
      clearTimeout(entry.timer);
      await entry.close();
    }
    this.retiring.clear();
    if (this.space && this.loaded && this.space.index !== this.loaded.index) await this.space.index.close();
    await this.space?.adapter?.text?.release();
    if (this.loaded) {
      await this.loaded.index.close();
      await this.loaded.model.release();
    }
    this.store.close();
  }
}

/**
 * A Postgres library searches inside Postgres (pgvector): every process sees every commit at once and no
 * graph files need building or keeping per machine. An embedded library keeps its hnswlib graph files.
 */
function openLibraryIndex(
  store: StoreDatabase,
  indexDir: string,
  modelKey: string,
  onProgress: OpenLibraryOptions['onIndexProgress'],
  onError: OpenLibraryOptions['onIndexError'],
): Promise<LibraryIndex> {
  const callbacks = { ...(onProgress ? { onProgress } : {}), ...(onError ? { onError } : {}) };
  if (store.location.kind === 'postgres') return PgVectorIndex.open({ store, modelKey, ...callbacks });
  return IndexManager.open({ store, indexDir, modelKey, ...callbacks });
}
