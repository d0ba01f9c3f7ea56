/**
 * The lookups the change-log triggers and the index run on every write must use an index on content, or
 * ingest turns quadratic (it did: SQLite picked the status index and 100k inserts took 12 minutes).
 * Plans are checked on a populated database, where the planner has real choices to make.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ImageFilterQueries } from '../src/store/image-filter.js';
import { IMAGES_BY_SIZE_MTIME_SQL } from '../src/store/images-repo.js';
import { CHANGED_MEMBERS_SQL } from '../src/store/index-changes-repo.js';
import { QUEUED_BY_SIZE_MTIME_SQL } from '../src/store/ingest-queue-repo.js';
import { openTestLibrary, tempLibraryDir } from './helpers/store-fixtures.js';

const { dir, cleanup } = tempLibraryDir();
afterAll(cleanup);

function plan(db: import('better-sqlite3').Database, sql: string, ...params: unknown[]): string {
  return (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as { detail: string }[]).map((r) => r.detail).join(' | ');
}

describe('query plans of per-write lookups', () => {
  it('finds indexed images by content hash through the content index, not by scanning status', () => {
    const lib = openTestLibrary(dir);
    const db = lib.store.db;
    const root = lib.roots.add('/p');
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) {
        lib.images.upsert({ rootId: root.id, path: `/p/${i}.jpg`, size: 1, mtimeMs: 1, contentHash: `h${i}`, status: 'indexed' });
      }
    })();
    const p = plan(db, "SELECT id FROM images WHERE content_hash = ? AND status = 'indexed'", 'h1');
    expect(p).toMatch(/images_content_hash/);
    expect(p).not.toMatch(/images_status/);

    // Replaying the change log looks each changed id up by key; it never materialises and scans the members.
    const replay = plan(db, CHANGED_MEMBERS_SQL, { key: 'k', after: 0, upto: 10 });
    expect(replay).not.toMatch(/MATERIALIZE|SCAN (m|i|e)\b/);
    expect(replay).toMatch(/images USING INTEGER PRIMARY KEY|SEARCH i USING INTEGER PRIMARY KEY/);

    // The sweep looks up rename candidates for each row it did not see (store/images-repo, store/ingest-queue-repo).
    expect(plan(db, IMAGES_BY_SIZE_MTIME_SQL, 1, 1)).toMatch(/USING INDEX images_size_mtime/);
    expect(plan(db, QUEUED_BY_SIZE_MTIME_SQL, 1, 1)).toMatch(/USING INDEX ingest_queue_size_mtime/);
    lib.store.close();
  });
});

describe('query plans of the timeline', () => {
  it('pages the library newest first along images_taken_at, however deep the cursor, and never scans for an undated page', () => {
    const own = tempLibraryDir();
    const lib = openTestLibrary(own.dir);
    const db = lib.store.db;
    const root = lib.roots.add('/t');
    db.transaction(() => {
      for (let i = 0; i < 3000; i++) {
        const hash = `t${i}`;
        lib.images.upsert({ rootId: root.id, path: `/t/${i}.jpg`, size: 1, mtimeMs: 1000 + i, contentHash: hash, status: 'indexed', takenAt: i % 7 === 0 ? null : 1e12 + i * 1000 });
        lib.embeddings.put(hash, 'k', new Float32Array(4));
      }
    })();
    // The statements the timeline prepares, caught on their way to SQLite, then planned as they are.
    const prepared: string[] = [];
    const prepare = (sql: string) => {
      prepared.push(sql);
      return db.prepare(sql);
    };
    const spy = new Proxy(db, { get: (target, key) => (key === 'prepare' ? prepare : Reflect.get(target, key)) });
    const timeline = new ImageFilterQueries(spy);
    const first = timeline.timelinePage('k', {}, null, 50);
    const deep = timeline.timelinePage('k', {}, { part: 'dated', at: 1e12 + 1500 * 1000, id: 1500 }, 50);
    timeline.timelinePage('k', {}, { part: 'undated', at: 2000, id: 999 }, 50);
    expect(first.rows).toHaveLength(50);
    expect(deep.rows[0]!.takenAt).toBeLessThan(1e12 + 1500 * 1000);
    const params = { key: 'k', at: 1, id: 1, limit: 51 };
    const [top, after, undated] = [...new Set(prepared)].map((sql) => plan(db, sql, params));
    for (const p of [top!, after!]) {
      expect(p).toMatch(/SEARCH i USING INDEX images_taken_at/);
      // Read in the index's order: no sort of the whole library before the LIMIT.
      expect(p).not.toMatch(/TEMP B-TREE|SCAN i\b/);
    }
    expect(after).toMatch(/taken_at<\?/);
    // Photos without a date are found through an index (taken_at IS NULL) and only they are sorted by file
    // time: an index of its own on mtime_ms would need a migration.
    expect(undated).toMatch(/SEARCH i USING INDEX images_taken_at \(taken_at=\?\)/);
    expect(undated).not.toMatch(/SCAN i\b/);
    lib.store.close();
    own.cleanup();
  });
});
