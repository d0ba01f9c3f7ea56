/** Shared fixtures for the store and vector index tests: temp libraries and seeded clustered vectors. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { libraryPaths, openDatabase, type OpenDatabaseOptions, type SqliteStoreDatabase, type StoreDatabase } from '../../src/store/database.js';
import { EmbeddingsRepo } from '../../src/store/embeddings-repo.js';
import { ImagesRepo, type ImageInput } from '../../src/store/images-repo.js';
import { RootsRepo } from '../../src/store/roots-repo.js';
import { openPostgresDatabase } from '../../src/store/pg/pg-database.js';
import { seededRandom } from '../../src/util/seeded-random.js';
import { type PgliteServer, startPgliteServer } from './pglite-server.js';

export function tempLibraryDir(prefix = 'clipdex-store-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface TestLibrary {
  store: StoreDatabase;
  indexDir: string;
  dbPath: string;
  roots: RootsRepo;
  images: ImagesRepo;
  embeddings: EmbeddingsRepo;
  close(): void;
}

export function openTestLibrary(dir: string, options: OpenDatabaseOptions = {}): TestLibrary & { store: SqliteStoreDatabase } {
  const paths = libraryPaths(dir);
  const store = openDatabase(paths.database, options);
  return {
    store,
    indexDir: paths.indexDir,
    dbPath: paths.database,
    roots: new RootsRepo(store.db),
    images: new ImagesRepo(store.db),
    embeddings: new EmbeddingsRepo(store.db),
    close: () => store.close(),
  };
}

/** mulberry32: small, fast, seeded. */
export const rng = seededRandom;

export function gaussian(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

export interface ClusteredOptions {
  seed?: number;
  /** Number of clusters; default n / 100. */
  clusters?: number;
  /** Dimension of the within-cluster variation (real embeddings vary along far fewer axes than they have). */
  latent?: number;
  /** Isotropic noise on top, per coordinate. */
  noise?: number;
}

/**
 * n L2-normalised vectors in clusters: a shared mean direction (so unrelated vectors still have a positive
 * cosine, as CLIP embeddings do), cluster centres around it, and per-vector variation in a low-dimensional
 * subspace plus a little isotropic noise. Row-major.
 */
export function clusteredVectors(n: number, dim: number, options: ClusteredOptions = {}): Float32Array {
  const r = rng(options.seed ?? 1);
  const g = gaussian(r);
  const clusters = options.clusters ?? Math.max(4, Math.round(n / 100));
  const latent = options.latent ?? 16;
  const noise = options.noise ?? 0.05;
  const mean = Float32Array.from({ length: dim }, () => g());
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: dim }, (_, j) => mean[j]! + g()));
  const basis = Float32Array.from({ length: latent * dim }, () => g());
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    const row = out.subarray(i * dim, (i + 1) * dim);
    row.set(centres[Math.floor(r() * clusters)]!);
    for (let l = 0; l < latent; l++) {
      const z = g() * 0.6;
      for (let j = 0; j < dim; j++) row[j]! += z * basis[l * dim + j]!;
    }
    let s = 0;
    for (let j = 0; j < dim; j++) {
      row[j]! += noise * g();
      s += row[j]! * row[j]!;
    }
    const inv = 1 / Math.sqrt(s);
    for (let j = 0; j < dim; j++) row[j]! *= inv;
  }
  return out;
}

export function row(vectors: Float32Array, i: number, dim: number): Float32Array {
  return vectors.subarray(i * dim, (i + 1) * dim);
}

/**
 * Adds `count` indexed images under `rootPath`, each with its own content hash (`<rootPath>#<i>`) and
 * embedding from `vectors` (row i for the i-th image), in one transaction. Returns the image ids in order.
 */
export function addIndexedImages(
  lib: TestLibrary,
  modelKey: string,
  vectors: Float32Array,
  dim: number,
  options: { rootPath?: string; start?: number; count?: number; extra?: (i: number) => Partial<ImageInput> } = {},
): number[] {
  const rootPath = options.rootPath ?? '/photos';
  const start = options.start ?? 0;
  const count = options.count ?? vectors.length / dim - start;
  const root = lib.roots.add(rootPath);
  const ids: number[] = [];
  lib.store.db.transaction(() => {
    for (let i = start; i < start + count; i++) {
      const hash = `${rootPath}#${i}`;
      lib.embeddings.put(hash, modelKey, row(vectors, i, dim));
      const img = lib.images.upsert({
        rootId: root.id,
        path: `${rootPath}/img${String(i).padStart(6, '0')}.jpg`,
        size: 1000 + i,
        mtimeMs: 1_700_000_000_000 + i,
        contentHash: hash,
        format: 'jpeg',
        status: 'indexed',
        ...options.extra?.(i),
      });
      ids.push(img.id);
    }
  })();
  return ids;
}

/** Exact top-k ids by cosine, by sorting everything: the independent oracle the tests compare against. */
export function bruteForce(vectors: Float32Array, dim: number, ids: readonly number[], query: Float32Array, k: number): { id: number; score: number }[] {
  let qn = 0;
  for (let j = 0; j < dim; j++) qn += query[j]! * query[j]!;
  qn = Math.sqrt(qn) || 1;
  const scored = ids.map((id, i) => {
    let dot = 0;
    let vn = 0;
    for (let j = 0; j < dim; j++) {
      dot += query[j]! * vectors[i * dim + j]!;
      vn += vectors[i * dim + j]! * vectors[i * dim + j]!;
    }
    return { id, score: dot / (qn * (Math.sqrt(vn) || 1)) };
  });
  scored.sort((a, b) => b.score - a.score);
  return scored.slice(0, k);
}

/**
 * The two backends a store test runs on: the embedded SQLite file and Postgres (PGlite + pgvector over the
 * wire protocol, one server per test file, its schema emptied before each library is opened).
 */
export interface StoreBackend {
  readonly name: 'sqlite' | 'postgres';
  /** Once per file (starts the Postgres server). */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** A fresh, empty library. */
  open(dir: string): TestLibrary;
}

export function storeBackends(): StoreBackend[] {
  let server: PgliteServer | null = null;
  let migrated: { meta: { key: string; value: string }[] } | null = null;
  return [
    { name: 'sqlite', start: async () => undefined, stop: async () => undefined, open: (dir) => openTestLibrary(dir) },
    {
      name: 'postgres',
      start: async () => {
        server = await startPgliteServer();
      },
      stop: async () => {
        await server?.stop();
        server = null;
        migrated = null;
      },
      open: (dir) => {
        if (!server) throw new Error('start() the postgres backend first');
        const store = openPostgresDatabase(server.url);
        // Migrated once per server; after that each library starts from the freshly migrated state by emptying
        // every table (identities restarted) and putting back the rows the migrations wrote — ~20× faster
        // than dropping and migrating the schema again.
        if (!migrated) {
          migrated = { meta: store.db.query<{ key: string; value: string }>('SELECT key, value FROM meta ORDER BY key').rows };
        } else {
          const tables = store.db
            .query<{ t: string }>("SELECT quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'schema_migrations'")
            .rows.map((r) => r.t);
          store.db.exec(`TRUNCATE ${tables.join(', ')} RESTART IDENTITY CASCADE`);
          for (const row of migrated.meta) store.db.query('INSERT INTO meta (key, value) VALUES ($1, $2)', [row.key, row.value]);
        }
        return {
          store,
          indexDir: join(dir, 'index'),
          dbPath: store.path,
          roots: new RootsRepo(store.db),
          images: new ImagesRepo(store.db),
          embeddings: new EmbeddingsRepo(store.db),
          close: () => store.close(),
        };
      },
    },
  ];
}
