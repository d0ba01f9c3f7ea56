/**
 * The lookups the change-log triggers and the index run on every write must use an index on content, or
 * ingest turns quadratic (it did: SQLite picked the status index and 100k inserts took 12 minutes).
 * Plans are checked on a populated database, where the planner has real choices to make.
 */
import { afterAll, describe, expect, it } from 'vitest';
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
