import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import { IndexManager, type IndexProgress } from '../index/index-manager.js';
import { ThumbnailStore } from '../ingest/thumbnail-store.js';
import { cacheDir as defaultCacheDir, dataDir as defaultDataDir } from '../model/cache-dir.js';
import { ClipModel, type LoadModelOptions } from '../model/clip-model.js';
import { DEFAULT_MODEL_ID, resolveModel } from '../model/model-registry.js';
import { AdaptersRepo } from '../store/adapters-repo.js';
import { libraryPaths, openDatabase, type LibraryPaths, type StoreDatabase } from '../store/database.js';
import { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { ImagesRepo } from '../store/images-repo.js';
import { PairsRepo } from '../store/pairs-repo.js';
import { RootsRepo } from '../store/roots-repo.js';
import { modelKeyFor } from './model-key.js';

export interface OpenLibraryOptions {
  /** Where the database, index and thumbnails live; default `$CLIPDEX_DATA_DIR` or the XDG data dir. */
  dataDir?: string;
  /** Model id or directory; default `$CLIPDEX_MODEL` or the default model. */
  model?: string;
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
  /** Model name + weights fingerprint: the key of its embeddings and its index. */
  key: string;
  index: IndexManager;
}

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

  private constructor(
    readonly paths: LibraryPaths,
    readonly store: StoreDatabase,
    readonly modelRef: string,
    readonly loaded: LoadedModel | null,
    readonly modelError: ClipdexError | null,
  ) {
    this.images = new ImagesRepo(store.db);
    this.roots = new RootsRepo(store.db);
    this.embeddings = new EmbeddingsRepo(store.db);
    this.pairs = new PairsRepo(store.db);
    this.adapters = new AdaptersRepo(store.db);
    this.thumbnails = new ThumbnailStore(paths.dir);
  }

  static async open(options: OpenLibraryOptions = {}): Promise<Library> {
    const paths = libraryPaths(options.dataDir ?? defaultDataDir());
    const modelRef = options.model ?? process.env.CLIPDEX_MODEL ?? DEFAULT_MODEL_ID;
    const store = openDatabase(paths.database);
    let model: ClipModel | null = null;
    try {
      const spec = await resolveModel(modelRef, { cacheRoot: options.cacheDir ?? defaultCacheDir() });
      model = await ClipModel.load(spec, options.session);
      const key = await modelKeyFor(spec);
      new EmbeddingsRepo(store.db).registerModel(key, model.dim);
      const index = await IndexManager.open({
        store,
        indexDir: paths.indexDir,
        modelKey: key,
        ...(options.onIndexProgress ? { onProgress: options.onIndexProgress } : {}),
        ...(options.onIndexError ? { onError: options.onIndexError } : {}),
      });
      return new Library(paths, store, modelRef, { model, key, index }, null);
    } catch (err) {
      await model?.release().catch(() => undefined);
      const modelError = isClipdexError(err)
        ? err
        : new ClipdexError('MODEL_INVALID', `cannot load model ${modelRef}: ${errorMessage(err)}`, { cause: err });
      if (!options.modelOptional) {
        store.close();
        throw modelError;
      }
      return new Library(paths, store, modelRef, null, modelError);
    }
  }

  /** The loaded model, or the error that says why there is none and what to do. */
  requireModel(): LoadedModel {
    if (this.loaded) return this.loaded;
    throw this.modelError ?? new ClipdexError('MODEL_NOT_FOUND', `model ${this.modelRef} is not loaded`);
  }

  async close(): Promise<void> {
    if (this.loaded) {
      await this.loaded.index.close();
      await this.loaded.model.release();
    }
    this.store.close();
  }
}
