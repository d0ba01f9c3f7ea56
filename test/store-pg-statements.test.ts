/**
 * Every statement of every repository is valid Postgres (issue 14). Each repository prepares its statements
 * when it is made; here they are recorded and each is PREPAREd on a migrated Postgres (PGlite + pgvector),
 * which parses it, resolves every name and infers every parameter's type without running it — the errors a
 * SQLite-first statement meets on Postgres (a function only SQLite has, a parameter whose type only SQLite
 * would guess, a camelCase alias folded to lower case) all show up at PREPARE. Statements built per call
 * (the filter queries, a model re-key) are run once on the empty library instead.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IngestStore } from '../src/ingest/ingest-store.js';
import { AdaptersRepo } from '../src/store/adapters-repo.js';
import { ChangeFeedRepo } from '../src/store/change-feed-repo.js';
import { DuplicatesRepo } from '../src/store/duplicates-repo.js';
import { EmbeddingsRepo } from '../src/store/embeddings-repo.js';
import { ImageFilterQueries } from '../src/store/image-filter.js';
import { ImagesRepo } from '../src/store/images-repo.js';
import { IndexChangesRepo } from '../src/store/index-changes-repo.js';
import { IngestCountsRepo } from '../src/store/ingest-counts-repo.js';
import { IngestQueueRepo } from '../src/store/ingest-queue-repo.js';
import { LibraryModelRepo } from '../src/store/library-model-repo.js';
import { MetaRepo } from '../src/store/meta-repo.js';
import { ModelKeysRepo } from '../src/store/model-keys-repo.js';
import { rekeyModel } from '../src/store/model-rekey.js';
import { OcrRepo } from '../src/store/ocr-repo.js';
import { OrphansRepo } from '../src/store/orphans-repo.js';
import { PairsRepo } from '../src/store/pairs-repo.js';
import { QueueLeasesRepo } from '../src/store/queue-leases-repo.js';
import { openPostgresDatabase } from '../src/store/pg/pg-database.js';
import { translateSql } from '../src/store/pg/pg-sql.js';
import type { PgSyncConnection } from '../src/store/pg/pg-sync-connection.js';
import { RootsRepo } from '../src/store/roots-repo.js';
import { SeenPaths } from '../src/store/seen-paths.js';
import { VersionTowersRepo } from '../src/store/version-towers-repo.js';
import type { SqlHandle } from '../src/store/sql-handle.js';
import { type PgliteServer, startPgliteServer } from './helpers/pglite-server.js';

/** The repositories, by the class name each store/ file exports: a new one missing here fails the last test. */
const REPOSITORIES: Record<string, (db: SqlHandle) => unknown> = {
  AdaptersRepo: (db) => new AdaptersRepo(db),
  ChangeFeedRepo: (db) => new ChangeFeedRepo(db),
  DuplicatesRepo: (db) => new DuplicatesRepo(db),
  EmbeddingsRepo: (db) => new EmbeddingsRepo(db),
  ImagesRepo: (db) => new ImagesRepo(db),
  IndexChangesRepo: (db) => new IndexChangesRepo(db),
  IngestCountsRepo: (db) => new IngestCountsRepo(db),
  IngestQueueRepo: (db) => new IngestQueueRepo(db),
  LibraryModelRepo: (db) => new LibraryModelRepo(db),
  MetaRepo: (db) => new MetaRepo(db),
  ModelKeysRepo: (db) => new ModelKeysRepo(db),
  OcrRepo: (db) => new OcrRepo(db),
  OrphansRepo: (db) => new OrphansRepo(db),
  PairsRepo: (db) => new PairsRepo(db),
  QueueLeasesRepo: (db) => new QueueLeasesRepo(db),
  RootsRepo: (db) => new RootsRepo(db),
  SeenPaths: (db) => new SeenPaths(db),
  VersionTowersRepo: (db) => new VersionTowersRepo(db),
};

let server: PgliteServer;
let store: ReturnType<typeof openPostgresDatabase>;

beforeAll(async () => {
  server = await startPgliteServer();
  store = openPostgresDatabase(server.url);
}, 90_000);

afterAll(async () => {
  store?.close();
  await server?.stop();
});

/** A handle that records the SQL of every statement prepared through it. */
function recording(db: PgSyncConnection): { db: SqlHandle; seen: string[] } {
  const seen: string[] = [];
  const proxy = new Proxy(db, {
    get(target, key, receiver) {
      if (key === 'prepare') {
        return (sql: string) => {
          seen.push(sql);
          return target.prepare(sql);
        };
      }
      const value = Reflect.get(target, key, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { db: proxy as SqlHandle, seen };
}

/** Postgres's own verdict on one statement: null when it prepares. */
function prepareError(db: PgSyncConnection, sql: string): string | null {
  try {
    db.query(`PREPARE clipdex_check AS ${translateSql(sql).text}`);
    db.query('DEALLOCATE clipdex_check');
    return null;
  } catch (err) {
    return (err as Error).message.replace(/ in: .*$/s, '');
  }
}

describe('the repositories on Postgres', () => {
  for (const [name, make] of Object.entries(REPOSITORIES)) {
    it(`${name}: every statement prepares`, () => {
      const { db, seen } = recording(store.db);
      make(db);
      expect(seen.length, `${name} prepared no statement when made`).toBeGreaterThan(0);
      const failures = seen.map((sql) => ({ sql: sql.replace(/\s+/g, ' ').trim(), error: prepareError(store.db, sql) })).filter((f) => f.error);
      expect(failures).toEqual([]);
    });
  }

  it('the per-call statements run: every combination of filters, the month counts, a model re-key, the ingest store', () => {
    const filters = new ImageFilterQueries(store.db);
    const combos = [{}, { folder: '/p' }, { takenFrom: 0 }, { takenTo: 1 }, { formats: ['jpeg', 'png'] }, { folder: '/p', takenFrom: 0, takenTo: 9, formats: ['heic'] }];
    for (const filter of combos) {
      expect(filters.ids('k', filter)).toEqual([]);
      expect(filters.count('k', filter)).toBe(0);
      expect(filters.members('k', filter)).toEqual([]);
      expect(filters.timelineMonths('k', filter)).toEqual([]);
      for (const order of ['date-desc', 'date-asc', 'path'] as const) expect(filters.page('k', filter, order, 10, 0)).toEqual({ ids: [], total: 0 });
      expect(filters.timelinePage('k', filter, null, 10).rows).toEqual([]);
      expect(filters.timelinePage('k', filter, { part: 'dated', at: 5, id: 3 }, 10).rows).toEqual([]);
      expect(filters.timelinePage('k', filter, { part: 'undated', at: 5, id: 3 }, 10).rows).toEqual([]);
    }
    expect(rekeyModel(store.db, 'old', 'new').moved.size).toBe(0);
    const ingest = new IngestStore(store.db);
    expect(ingest.rootCounts().size).toBe(0);
  });

  it('covers every repository store/ exports', () => {
    const dir = join(import.meta.dirname, '..', 'src', 'store');
    const exported = readdirSync(dir)
      .filter((f) => f.endsWith('-repo.ts') || f === 'seen-paths.ts')
      .map((f) => f.replace(/\.ts$/, ''));
    expect(exported.length).toBe(Object.keys(REPOSITORIES).length);
  });
});
