/**
 * The paths one scan of a root saw, in a temporary table of this connection: the sweep of rows the walk
 * did not see is then one anti-join, and a million paths stay out of the JS heap. One table per scan
 * (scans of two roots may overlap), so its statements are prepared per scan, not per database.
 */

import type { ImageStatus } from './images-repo.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';

export interface UnseenImage {
  id: number;
  path: string;
  size: number;
  mtimeMs: number;
  contentHash: string | null;
  status: ImageStatus;
}

let seenTables = 0;

export class SeenPaths {
  private readonly table: string;
  private readonly markStmt;
  private readonly unseenImagesStmt;
  private readonly unseenQueuedStmt;

  constructor(private readonly db: SqlHandle) {
    const pg = dialectOf(db) === 'postgres';
    // A temporary table: private to this connection, gone with it.
    this.table = `${pg ? 'pg_temp' : 'temp'}.ingest_seen_${process.pid}_${++seenTables}`;
    db.exec(pg ? `CREATE TABLE ${this.table} (path text COLLATE "C" PRIMARY KEY)` : `CREATE TABLE ${this.table} (path TEXT PRIMARY KEY) WITHOUT ROWID`);
    try {
      this.markStmt = db.prepare<[string]>(`INSERT OR IGNORE INTO ${this.table} (path) VALUES (?)`);
      this.unseenImagesStmt = db.prepare<[number, number, number, number], UnseenImage>(
        `SELECT id, path, size, mtime_ms AS mtimeMs, content_hash AS contentHash, status
     FROM images WHERE root_id = ? AND id > ? AND updated_at < ? AND path NOT IN (SELECT path FROM ${this.table}) ORDER BY id LIMIT ?`,
      );
      this.unseenQueuedStmt = db.prepare<[number, number], { id: number; path: string }>(
        `SELECT id, path FROM ingest_queue WHERE root_id = ? AND enqueued_at < ? AND path NOT IN (SELECT path FROM ${this.table})`,
      );
    } catch (err) {
      this.drop();
      throw err;
    }
  }

  mark(path: string): void {
    this.markStmt.run(path);
  }

  /** A page, in id order after `afterId`, of the root's rows not seen and not written since `before`. */
  unseenImages(rootId: number, afterId: number, before: number, limit: number): UnseenImage[] {
    return this.unseenImagesStmt.all(rootId, afterId, before, limit);
  }

  /** The root's queue entries not seen and queued before `before`. */
  unseenQueued(rootId: number, before: number): { id: number; path: string }[] {
    return this.unseenQueuedStmt.all(rootId, before);
  }

  drop(): void {
    this.db.exec(`DROP TABLE IF EXISTS ${this.table}`);
  }
}
