/**
 * The SQL ingestion needs beyond the shared repositories: the work queue (ingest_queue), a root's
 * identity and exclude globs, offline marking, rename, removal with orphan cleanup, and the lookups
 * that find rename candidates. Every method is synchronous (better-sqlite3); callers group them in
 * transactions with `transaction()`.
 */
import { sep } from 'node:path';
import type Database from 'better-sqlite3';
import type { ImageRecord } from '../store/images-repo.js';

export interface QueueEntry {
  id: number;
  path: string;
  /** Set when the path is not valid UTF-8 (see raw-path.ts). */
  pathBytes: Buffer | null;
  rootId: number;
  size: number;
  mtimeMs: number;
}

export interface RootInfo {
  id: number;
  path: string;
  state: 'ok' | 'offline';
  stateReason: string | null;
  identity: string | null;
  exclude: string[];
  lastScanAt: number | null;
  addedAt: number;
}

/** The stored form of a folder's identity (device and inode). */
export function identityKey(identity: { dev: number; ino: number }): string {
  return `${identity.dev}:${identity.ino}`;
}

/** Every path under `dir` sorts in [lo, hi): a range on the UNIQUE(path) index. */
export function prefixRange(dir: string): { lo: string; hi: string } {
  const lo = dir.endsWith(sep) ? dir : dir + sep;
  return { lo, hi: lo.slice(0, -1) + String.fromCharCode(lo.charCodeAt(lo.length - 1) + 1) };
}

const IMAGE_COLUMNS = `id, root_id AS rootId, path, path_bytes AS pathBytes, size, mtime_ms AS mtimeMs, content_hash AS contentHash, width, height, format,
  taken_at AS takenAt, camera_make AS cameraMake, camera_model AS cameraModel, status, error_code AS errorCode,
  error_message AS errorMessage, created_at AS createdAt, updated_at AS updatedAt`;

type RootRow = Omit<RootInfo, 'exclude'> & { exclude: string };

export class IngestStore {
  private readonly s;

  constructor(
    readonly db: Database.Database,
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
      queuedBySizeMtime: p<[number, number], QueueEntry>(
        'SELECT id, path, path_bytes AS pathBytes, root_id AS rootId, size, mtime_ms AS mtimeMs FROM ingest_queue WHERE size = ? AND mtime_ms = ?',
      ),
      imageByPath: p<[string], ImageRecord>(`SELECT ${IMAGE_COLUMNS} FROM images WHERE path = ?`),
      imagesBySizeMtime: p<[number, number], ImageRecord>(`SELECT ${IMAGE_COLUMNS} FROM images WHERE size = ? AND mtime_ms = ?`),
      imagesByHash: p<[string], ImageRecord>(`SELECT ${IMAGE_COLUMNS} FROM images WHERE content_hash = ? ORDER BY id`),
      imagesInRange: p<[string, string, number, number], ImageRecord>(
        `SELECT ${IMAGE_COLUMNS} FROM images WHERE path >= ? AND path < ? AND id > ? ORDER BY id LIMIT ?`,
      ),
      imagesOfRootPage: p<[number, number, number], ImageRecord>(
        `SELECT ${IMAGE_COLUMNS} FROM images WHERE root_id = ? AND id > ? ORDER BY id LIMIT ?`,
      ),
      // Content no row has any more remembers what it was (migrations/003), so a file found again is not decoded.
      metaOfHash: p<[string, string], { width: number; height: number; format: string }>(
        `SELECT width, height, format FROM images WHERE content_hash = ? AND format IS NOT NULL AND width IS NOT NULL
         UNION ALL
         SELECT width, height, format FROM orphaned_content WHERE content_hash = ? AND format IS NOT NULL AND width IS NOT NULL
         LIMIT 1`,
      ),
      // Orphans the delete trigger did not see (content replaced in place, a database from before it).
      markOrphans: p<[number]>(
        `INSERT OR IGNORE INTO orphaned_content (content_hash, since)
         SELECT DISTINCT e.content_hash, ? FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.content_hash = e.content_hash)`,
      ),
      unorphanBack: p<[]>('DELETE FROM orphaned_content WHERE EXISTS (SELECT 1 FROM images i WHERE i.content_hash = orphaned_content.content_hash)'),
      orphansDue: p<[number], { hash: string }>(
        `SELECT content_hash AS hash FROM orphaned_content o
         WHERE since <= ? AND NOT EXISTS (SELECT 1 FROM labeled_pairs p WHERE p.content_hash = o.content_hash)`,
      ),
      dropEmbeddings: p<[string]>('DELETE FROM embeddings WHERE content_hash = ?'),
      dropOrphan: p<[string]>('DELETE FROM orphaned_content WHERE content_hash = ?'),
      removeImage: p<[number]>('DELETE FROM images WHERE id = ?'),
      // A failed file's message names it ("<path>: not an image"): it follows the file, or `status --errors`
      // would show a name that no longer exists. SET reads the old `path`, so the replace needs no second query.
      rename: p<[string, string, Buffer | null, number, number, number, number, number]>(
        `UPDATE images SET error_message = replace(error_message, path, ?), path = ?, path_bytes = ?, root_id = ?, size = ?, mtime_ms = ?, updated_at = ?
         WHERE id = ?`,
      ),
      touchVersion: p<[number, number, number, number]>('UPDATE images SET size = ?, mtime_ms = ?, updated_at = ? WHERE id = ?'),
      setStatus: p<[string, number, number]>('UPDATE images SET status = ?, updated_at = ? WHERE id = ?'),
      offlineImages: p<[number, number]>("UPDATE images SET status = 'offline', updated_at = ? WHERE root_id = ? AND status = 'indexed'"),
      root: p<[number], RootRow>(
        `SELECT id, path, state, state_reason AS stateReason, identity, exclude, last_scan_at AS lastScanAt, added_at AS addedAt
         FROM roots WHERE id = ?`,
      ),
      rootByPath: p<[string], RootRow>(
        `SELECT id, path, state, state_reason AS stateReason, identity, exclude, last_scan_at AS lastScanAt, added_at AS addedAt
         FROM roots WHERE path = ?`,
      ),
      removeRoot: p<[number]>('DELETE FROM roots WHERE id = ?'),
      roots: p<[], RootRow>(
        `SELECT id, path, state, state_reason AS stateReason, identity, exclude, last_scan_at AS lastScanAt, added_at AS addedAt
         FROM roots ORDER BY path`,
      ),
      addRoot: p<[string, number, string], RootRow>(
        `INSERT INTO roots (path, added_at, exclude) VALUES (?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET exclude = excluded.exclude
         RETURNING id, path, state, state_reason AS stateReason, identity, exclude, last_scan_at AS lastScanAt, added_at AS addedAt`,
      ),
      rootState: p<[string, string | null, number]>('UPDATE roots SET state = ?, state_reason = ? WHERE id = ?'),
      rootScanned: p<[string, number, number]>("UPDATE roots SET identity = ?, last_scan_at = ?, state = 'ok', state_reason = NULL WHERE id = ?"),
      rootStatusCounts: p<[], { rootId: number; status: string; n: number }>(
        'SELECT root_id AS rootId, status, count(*) AS n FROM images GROUP BY root_id, status',
      ),
      rootQueueCounts: p<[], { rootId: number; n: number }>('SELECT root_id AS rootId, count(*) AS n FROM ingest_queue GROUP BY root_id'),
      rootHasImages: p<[number], { one: number }>("SELECT 1 AS one FROM images WHERE root_id = ? AND status IN ('indexed', 'offline') LIMIT 1"),
    };
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  // ---- queue ----

  /**
   * Queues `path` for a check at this size and mtime. A path already queued with the same version is left
   * alone; with another version it is queued again under a new id (see the schema for why).
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
  queuePage(afterId: number, limit: number): QueueEntry[] {
    return this.s.page.all(afterId, limit);
  }

  /** Everything queued (offline roots included). */
  queueCount(): number {
    return this.s.queueCount.get()!.n;
  }

  /** Everything queued, and what of it can be worked on now (its root is online), in one pass. */
  queueCounts(): { all: number; online: number } {
    return this.s.queueCounts.get()!;
  }

  /** True when an entry can be worked on now (its root is online). */
  hasQueuedOnline(): boolean {
    return this.s.queueOnlineAny.get() !== undefined;
  }

  queuedBySizeMtime(size: number, mtimeMs: number): QueueEntry[] {
    return this.s.queuedBySizeMtime.all(size, mtimeMs);
  }

  // ---- images ----

  imageByPath(path: string): ImageRecord | undefined {
    return this.s.imageByPath.get(path);
  }

  imagesBySizeMtime(size: number, mtimeMs: number): ImageRecord[] {
    return this.s.imagesBySizeMtime.all(size, mtimeMs);
  }

  imagesByHash(hash: string): ImageRecord[] {
    return this.s.imagesByHash.all(hash);
  }

  /** A page of the images under a folder, in id order. */
  imagesUnder(dir: string, afterId: number, limit: number): ImageRecord[] {
    const { lo, hi } = prefixRange(dir);
    return this.s.imagesInRange.all(lo, hi, afterId, limit);
  }

  imagesOfRoot(rootId: number, afterId: number, limit: number): ImageRecord[] {
    return this.s.imagesOfRootPage.all(rootId, afterId, limit);
  }

  /** Width, height and format of any decoded file with this content (copies share them). */
  metaOfHash(hash: string): { width: number; height: number; format: string } | undefined {
    return this.s.metaOfHash.get(hash, hash);
  }

  /**
   * Moves an image row to another path (its id, embedding, labels and thumbnail stay). A row already at
   * `newPath` held an older file that the move replaced: it goes. The new path's queue entry is done.
   */
  renameImage(id: number, newPath: string, rootId: number, size: number, mtimeMs: number, newPathBytes: Buffer | null = null): void {
    const existing = this.s.imageByPath.get(newPath);
    if (existing && existing.id !== id) this.s.removeImage.run(existing.id);
    this.s.rename.run(newPath, newPath, newPathBytes, rootId, size, mtimeMs, this.now(), id);
    this.s.dequeuePath.run(newPath);
  }

  /** Records a new size/mtime for an image whose content was checked and found unchanged. */
  touchVersion(id: number, size: number, mtimeMs: number): void {
    this.s.touchVersion.run(size, mtimeMs, this.now(), id);
  }

  setImageStatus(id: number, status: 'indexed' | 'offline'): void {
    this.s.setStatus.run(status, this.now(), id);
  }

  removeImage(id: number): boolean {
    return this.s.removeImage.run(id).changes > 0;
  }

  /**
   * Content no image row has pointed at for `keepForMs` (every file with it was deleted or its folder
   * removed): its embeddings, under every model key, are dropped and its hashes returned so the caller can
   * remove the thumbnails. Kept until then, a folder removed and added back, a share that returns or a
   * photo moved while clipdex was stopped finds its embedding and is not encoded again. Content a label is
   * keyed by is kept while the label exists: the photo may come back, and the Labels page shows it.
   */
  collectGarbage(keepForMs = 0): string[] {
    return this.db.transaction(() => {
      const now = this.now();
      this.s.unorphanBack.run();
      this.s.markOrphans.run(now);
      const hashes = this.s.orphansDue.all(now - keepForMs).map((r) => r.hash);
      for (const hash of hashes) {
        this.s.dropEmbeddings.run(hash);
        this.s.dropOrphan.run(hash);
      }
      return hashes;
    }).immediate();
  }

  // ---- roots ----

  /** Adds a root, or returns the known one; its exclude globs are replaced only when given. */
  addRoot(path: string, exclude?: readonly string[]): RootInfo {
    const known = this.s.rootByPath.get(path);
    if (known && exclude === undefined) return toRoot(known);
    return toRoot(this.s.addRoot.get(path, this.now(), JSON.stringify(exclude ?? []))!);
  }

  rootByPath(path: string): RootInfo | undefined {
    const row = this.s.rootByPath.get(path);
    return row ? toRoot(row) : undefined;
  }

  removeRoot(id: number): boolean {
    return this.s.removeRoot.run(id).changes > 0;
  }

  root(id: number): RootInfo | undefined {
    const row = this.s.root.get(id);
    return row ? toRoot(row) : undefined;
  }

  roots(): RootInfo[] {
    return this.s.roots.all().map(toRoot);
  }

  /** Offline: its indexed images leave search but keep their rows (error rows keep their reason). */
  markRootOffline(rootId: number, reason: string): number {
    this.s.rootState.run('offline', reason, rootId);
    return this.s.offlineImages.run(this.now(), rootId).changes;
  }

  markRootOnline(rootId: number): void {
    this.s.rootState.run('ok', null, rootId);
  }

  markRootScanned(rootId: number, identity: string, at: number = this.now()): void {
    this.s.rootScanned.run(identity, at, rootId);
  }

  /** Images per status and queued files, per root. */
  rootCounts(): Map<number, { indexed: number; pending: number; failed: number; offline: number }> {
    const out = new Map<number, { indexed: number; pending: number; failed: number; offline: number }>();
    const get = (id: number) => {
      let c = out.get(id);
      if (!c) out.set(id, (c = { indexed: 0, pending: 0, failed: 0, offline: 0 }));
      return c;
    };
    for (const r of this.s.rootStatusCounts.all()) {
      const c = get(r.rootId);
      if (r.status === 'indexed') c.indexed = r.n;
      else if (r.status === 'error') c.failed = r.n;
      else if (r.status === 'offline') c.offline = r.n;
    }
    for (const r of this.s.rootQueueCounts.all()) get(r.rootId).pending = r.n;
    return out;
  }

  /** True when the database holds photos for the root (the test for a bare mount point). */
  rootHasImages(rootId: number): boolean {
    return this.s.rootHasImages.get(rootId) !== undefined;
  }
}

function toRoot(row: RootRow): RootInfo {
  return { ...row, exclude: JSON.parse(row.exclude) as string[] };
}
