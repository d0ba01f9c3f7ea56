/**
 * The ingest work queue (ingest_queue): files waiting to be checked and, when their content is new,
 * encoded. One row per path; a path queued again at another size or mtime gets a new id (see the schema),
 * so a worker that finished an older version does not remove the newer one.
 */

import { prefixRange } from './path-range.js';
import type { SqlHandle } from './sql-handle.js';

export interface QueueEntry {
  id: number;
  path: string;
  /** Set when the path is not valid UTF-8 (see ingest/raw-path.ts). */
  pathBytes: Buffer | null;
  rootId: number;
  size: number;
  mtimeMs: number;
}

/** Queued files a swept row may have moved to: asked per swept row, so on ingest_queue_size_mtime (test/store-query-plans). */
export const QUEUED_BY_SIZE_MTIME_SQL =
  'SELECT id, path, path_bytes AS pathBytes, root_id AS rootId, size, mtime_ms AS mtimeMs FROM ingest_queue WHERE size = ? AND mtime_ms = ?';

export class IngestQueueRepo {
  private readonly s;

  constructor(
    db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    const p = <P extends unknown[] | object = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    this.s = {
      enqueue: p<[string, Buffer | null, number, number, number, number]>(
        `INSERT INTO ingest_queue (path, path_bytes, root_id, size, mtime_ms, enqueued_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (path) DO NOTHING`,
      ),
      queued: p<[string], QueueEntry>('SELECT id, path, path_bytes AS pathBytes, root_id AS rootId, size, mtime_ms AS mtimeMs FROM ingest_queue WHERE path = ?'),
      dequeueId: p<[number]>('DELETE FROM ingest_queue WHERE id = ?'),
      dequeuePath: p<[string]>('DELETE FROM ingest_queue WHERE path = ?'),
      dequeueRange: p<[string, string]>('DELETE FROM ingest_queue WHERE path >= ? AND path < ?'),
      page: p<[number, number], QueueEntry>(
        `SELECT q.id, q.path, q.path_bytes AS pathBytes, q.root_id AS rootId, q.size, q.mtime_ms AS mtimeMs
         FROM ingest_queue q JOIN roots r ON r.id = q.root_id AND r.state = 'ok'
         WHERE q.id > ? ORDER BY q.id LIMIT ?`,
      ),
      queueCount: p<[], { n: number }>('SELECT count(*) AS n FROM ingest_queue'),
      queueCounts: p<[], { all: number; online: number }>(
        `SELECT count(*) AS "all", count(r.id) AS online FROM ingest_queue q LEFT JOIN roots r ON r.id = q.root_id AND r.state = 'ok'`,
      ),
      queueOnlineAny: p<[], { one: number }>(
        `SELECT 1 AS one FROM ingest_queue q JOIN roots r ON r.id = q.root_id AND r.state = 'ok' LIMIT 1`,
      ),
      queuedBySizeMtime: p<[number, number], QueueEntry>(QUEUED_BY_SIZE_MTIME_SQL),
    };
  }

  /**
   * Queues `path` for a check at this size and mtime. A path already queued with the same version is left
   * alone; with another version it is queued again under a new id. Run it inside a transaction: the
   * lookup and the write belong together.
   */
  enqueue(path: string, rootId: number, size: number, mtimeMs: number, pathBytes: Buffer | null = null): boolean {
    const existing = this.s.queued.get(path);
    if (existing) {
      if (existing.size === size && existing.mtimeMs === mtimeMs && existing.rootId === rootId) return false;
      this.s.dequeueId.run(existing.id);
    }
    return this.s.enqueue.run(path, pathBytes, rootId, size, mtimeMs, this.now()).changes > 0;
  }

  queued(path: string): QueueEntry | undefined {
    return this.s.queued.get(path);
  }

  /** Removes the entry that was processed; false when it was queued again (or removed) meanwhile. */
  dequeue(id: number): boolean {
    return this.s.dequeueId.run(id).changes > 0;
  }

  dequeuePath(path: string): boolean {
    return this.s.dequeuePath.run(path).changes > 0;
  }

  dequeueUnder(dir: string): number {
    const { lo, hi } = prefixRange(dir);
    return this.s.dequeueRange.run(lo, hi).changes;
  }

  /** Entries of online roots after `afterId`, in queue order. */
  page(afterId: number, limit: number): QueueEntry[] {
    return this.s.page.all(afterId, limit);
  }

  /** Everything queued (offline roots included). */
  count(): number {
    return this.s.queueCount.get()!.n;
  }

  /** Everything queued, and what of it can be worked on now (its root is online), in one pass. */
  counts(): { all: number; online: number } {
    return this.s.queueCounts.get()!;
  }

  /** True when an entry can be worked on now (its root is online). */
  hasOnline(): boolean {
    return this.s.queueOnlineAny.get() !== undefined;
  }

  bySizeMtime(size: number, mtimeMs: number): QueueEntry[] {
    return this.s.queuedBySizeMtime.all(size, mtimeMs);
  }
}
