/**
 * What ingestion asks of the database, in its own words: the work queue, rename candidates, a root's
 * identity and exclude globs, offline marking, rename, removal with orphan cleanup. It holds no SQL: each
 * call is a store/ repository method (issue 14), and the few that span tables (a rename also finishes the
 * new path's queue entry) are composed here. Every method is synchronous; callers group them in
 * transactions with `transaction()`.
 */
import { ingestCountsRepo, type IngestCounts } from '../store/ingest-counts-repo.js';
import { runInTransaction } from '../store/database.js';
import { IngestQueueRepo, type QueueEntry } from '../store/ingest-queue-repo.js';
import { ImagesRepo, type ImageRecord } from '../store/images-repo.js';
import { OrphansRepo } from '../store/orphans-repo.js';
import { RootsRepo, type RootInfo } from '../store/roots-repo.js';
import type { SqlHandle } from '../store/sql-handle.js';

export type { QueueEntry } from '../store/ingest-queue-repo.js';
export type { RootInfo } from '../store/roots-repo.js';
export { prefixRange } from '../store/path-range.js';

/** The stored form of a folder's identity (device and inode). */
export function identityKey(identity: { dev: number; ino: number }): string {
  return `${identity.dev}:${identity.ino}`;
}

export class IngestStore {
  private readonly queue: IngestQueueRepo;
  private readonly images: ImagesRepo;
  private readonly orphans: OrphansRepo;
  private readonly rootsRepo: RootsRepo;

  constructor(
    readonly db: SqlHandle,
    now: () => number = Date.now,
  ) {
    this.queue = new IngestQueueRepo(db, now);
    this.images = new ImagesRepo(db, now);
    this.orphans = new OrphansRepo(db, now);
    this.rootsRepo = new RootsRepo(db, now);
  }

  /** Immediate: the queue's read-then-write steps must not meet SQLITE_BUSY half-way. */
  transaction<T>(fn: () => T): T {
    return runInTransaction(this.db, fn, 'immediate');
  }

  // ---- queue ----

  /**
   * Queues `path` for a check at this size and mtime. A path already queued with the same version is left
   * alone; with another version it is queued again under a new id (see the schema for why).
   */
  enqueue(path: string, rootId: number, size: number, mtimeMs: number, pathBytes: Buffer | null = null): boolean {
    return this.queue.enqueue(path, rootId, size, mtimeMs, pathBytes);
  }

  queued(path: string): QueueEntry | undefined {
    return this.queue.queued(path);
  }

  /** Removes the entry that was processed; false when it was queued again (or removed) meanwhile. */
  dequeue(id: number): boolean {
    return this.queue.dequeue(id);
  }

  dequeuePath(path: string): boolean {
    return this.queue.dequeuePath(path);
  }

  dequeueUnder(dir: string): number {
    return this.queue.dequeueUnder(dir);
  }

  /** Entries of online roots after `afterId`, in queue order. */
  queuePage(afterId: number, limit: number): QueueEntry[] {
    return this.queue.page(afterId, limit);
  }

  /** Everything queued (offline roots included). */
  queueCount(): number {
    return this.queue.count();
  }

  /** Everything queued, and what of it can be worked on now (its root is online), in one pass. */
  queueCounts(): { all: number; online: number } {
    return this.queue.counts();
  }

  /** True when an entry can be worked on now (its root is online). */
  hasQueuedOnline(): boolean {
    return this.queue.hasOnline();
  }

  queuedBySizeMtime(size: number, mtimeMs: number): QueueEntry[] {
    return this.queue.bySizeMtime(size, mtimeMs);
  }

  // ---- images ----

  imageByPath(path: string): ImageRecord | undefined {
    return this.images.getByPath(path);
  }

  imagesBySizeMtime(size: number, mtimeMs: number): ImageRecord[] {
    return this.images.listBySizeMtime(size, mtimeMs);
  }

  imagesByHash(hash: string): ImageRecord[] {
    return this.images.findByContentHash(hash);
  }

  /** A page of the images under a folder, in id order. */
  imagesUnder(dir: string, afterId: number, limit: number): ImageRecord[] {
    return this.images.listUnder(dir, afterId, limit);
  }

  imagesOfRoot(rootId: number, afterId: number, limit: number): ImageRecord[] {
    return this.images.listByRootPage(rootId, afterId, limit);
  }

  /** Width, height and format of any decoded file with this content (copies share them). */
  metaOfHash(hash: string): { width: number; height: number; format: string } | undefined {
    return this.orphans.metaOfHash(hash);
  }

  /**
   * Moves an image row to another path (its id, embedding, labels and thumbnail stay). A row already at
   * `newPath` held an older file that the move replaced: it goes. The new path's queue entry is done.
   */
  renameImage(id: number, newPath: string, rootId: number, size: number, mtimeMs: number, newPathBytes: Buffer | null = null): void {
    const existing = this.images.getByPath(newPath);
    if (existing && existing.id !== id) this.images.remove(existing.id);
    this.images.move(id, newPath, rootId, size, mtimeMs, newPathBytes);
    this.queue.dequeuePath(newPath);
  }

  /** Records a new size/mtime for an image whose content was checked and found unchanged. */
  touchVersion(id: number, size: number, mtimeMs: number): void {
    this.images.touchVersion(id, size, mtimeMs);
  }

  setImageStatus(id: number, status: 'indexed' | 'offline'): void {
    this.images.setAvailability(id, status);
  }

  removeImage(id: number): boolean {
    return this.images.remove(id);
  }

  /**
   * Content no image row has pointed at for `keepForMs` (every file with it was deleted or its folder
   * removed): its embeddings, under every model key, are dropped and its hashes returned so the caller can
   * remove the thumbnails. Kept until then, a folder removed and added back, a share that returns or a
   * photo moved while clipdex was stopped finds its embedding and is not encoded again.
   */
  collectGarbage(keepForMs = 0): string[] {
    return this.orphans.collectGarbage(keepForMs);
  }

  // ---- roots ----

  /** Adds a root, or returns the known one; its exclude globs are replaced only when given. */
  addRoot(path: string, exclude?: readonly string[]): RootInfo {
    return this.rootsRepo.addWithExclude(path, exclude);
  }

  rootByPath(path: string): RootInfo | undefined {
    return this.rootsRepo.infoByPath(path);
  }

  removeRoot(id: number): boolean {
    return this.rootsRepo.remove(id);
  }

  root(id: number): RootInfo | undefined {
    return this.rootsRepo.info(id);
  }

  roots(): RootInfo[] {
    return this.rootsRepo.infos();
  }

  /** Offline: its indexed images leave search but keep their rows (error rows keep their reason). */
  markRootOffline(rootId: number, reason: string): number {
    this.rootsRepo.setStateWithReason(rootId, 'offline', reason);
    return this.images.takeRootOffline(rootId);
  }

  markRootOnline(rootId: number): void {
    this.rootsRepo.setStateWithReason(rootId, 'ok', null);
  }

  markRootScanned(rootId: number, identity: string, at?: number): void {
    this.rootsRepo.markScannedAs(rootId, identity, at);
  }

  /** Images per status and queued files, per root. */
  rootCounts(): Map<number, IngestCounts> {
    return ingestCountsRepo(this.db).countsByRoot();
  }

  /** True when the database holds photos for the root (the test for a bare mount point). */
  rootHasImages(rootId: number): boolean {
    return this.images.rootHasPhotos(rootId);
  }
}
