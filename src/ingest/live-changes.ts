/**
 * Turns the watcher's batches into database changes while the engine runs.
 *
 * - add/change: unchanged (same size and mtime as the row) → nothing; otherwise queued, unless it is
 *   the new name of a file that was just deleted (below).
 * - unlink / unlinkDir: the rows are not deleted at once but held for `renameWindowMs`. A move arrives
 *   as a deletion followed, once the new file has settled, by an addition; when that addition has the
 *   size and mtime of a held row (a rename keeps both) and then the same content hash, the row is
 *   renamed: same id, labels and embedding, and the encoder does not run. Held rows that nobody
 *   claimed are deleted once their files are confirmed missing. The window counts from the last
 *   watcher activity, so a large folder move that takes a while to arrive is still a move.
 * - rootOffline: handed to the engine (mark the root offline; it looks for the root's return).
 */
import { lstat } from 'node:fs/promises';
import { sep } from 'node:path';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { hashFile, type ContentSnapshot } from './content-hash.js';
import type { WatchEvent } from './folder-watcher.js';
import type { IngestEvent } from './ingest-events.js';
import type { IngestQueue } from './ingest-queue.js';
import type { IngestStore } from './ingest-store.js';
import { isMissing } from './path-missing.js';
import { fsPathOf } from './raw-path.js';

export interface LiveChangesDeps {
  store: IngestStore;
  embeddings: EmbeddingsRepo;
  modelKey: string;
  queue: IngestQueue;
  emit: (event: IngestEvent) => void;
  rootIdOf: (rootPath: string) => number | undefined;
  rootAvailable: (rootId: number) => Promise<boolean>;
  onRootOffline: (rootId: number, reason: string) => void;
  /** How long a deleted file's row waits for its new name (ms after the last watcher activity). */
  renameWindowMs: number;
  /** True while the watcher still holds writes that have not settled (additions still to come). */
  busy?: () => boolean;
  /** Held deletions could not be recorded (a full or read-only disk): their rows wait for the next walk. */
  onError?: (err: unknown) => void;
}

interface Hold {
  rootId: number;
  at: number;
  /** For a file: the row id held (a row at that path with another id is not ours). */
  imageId?: number;
}


const EXPIRE_PAGE = 500;

export class LiveChanges {
  private readonly fileHolds = new Map<string, Hold>();
  private readonly dirHolds = new Map<string, Hold>();
  private lastActivity = 0;
  private timer: NodeJS.Timeout | undefined;
  private expiring: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly deps: LiveChangesDeps) {}

  /** Deletions waiting for their window to pass. */
  get held(): number {
    return this.fileHolds.size + this.dirHolds.size;
  }

  async handle(events: readonly WatchEvent[]): Promise<void> {
    this.lastActivity = Date.now();
    const { store } = this.deps;
    // Queued in one transaction at the end: a burst of 2,000 new files is one commit, not 2,000.
    const queue: { path: string; rootId: number; size: number; mtimeMs: number }[] = [];
    const flush = () => {
      if (queue.length > 0) store.transaction(() => queue.splice(0).forEach((q) => store.enqueue(q.path, q.rootId, q.size, q.mtimeMs)));
    };
    for (const e of events) {
      const rootId = this.deps.rootIdOf(e.root);
      if (rootId === undefined) continue;
      // A deletion must not overtake the addition of the same path queued before it.
      if (e.type !== 'add' && e.type !== 'change') flush();
      switch (e.type) {
        case 'add':
        case 'change': {
          const work = await this.written(e, rootId);
          if (work) queue.push(work);
          break;
        }
        case 'unlink': {
          store.dequeuePath(e.path);
          const row = store.imageByPath(e.path);
          if (row) this.fileHolds.set(e.path, { rootId, at: Date.now(), imageId: row.id });
          break;
        }
        case 'unlinkDir':
          store.dequeueUnder(e.path);
          this.dirHolds.set(e.path, { rootId, at: Date.now() });
          break;
        case 'rootOffline':
          this.dropHolds(rootId);
          this.deps.onRootOffline(rootId, `${e.root} vanished or was replaced (unmounted?)`);
          break;
        default:
          break;
      }
    }
    flush();
    this.deps.queue.wake();
    this.schedule();
  }

  /** What to queue for a written file, or null when it needs nothing (unchanged, or a rename done here). */
  private async written(e: WatchEvent, rootId: number): Promise<{ path: string; rootId: number; size: number; mtimeMs: number } | null> {
    const { store, embeddings, modelKey } = this.deps;
    // It exists (again): whatever deletion was held for this path is void.
    this.fileHolds.delete(e.path);
    let { size, mtimeMs } = e;
    if (size === undefined || mtimeMs === undefined) {
      const st = await lstat(e.path).catch(() => null);
      if (!st) return null;
      ({ size, mtimeMs } = st);
    }
    const row = store.imageByPath(e.path);
    if (row && row.size === size && row.mtimeMs === mtimeMs) {
      const embedded = row.contentHash !== null && embeddings.has(row.contentHash, modelKey);
      if (row.status === 'error' || (row.status === 'indexed' && embedded)) return null;
    }
    if (!row && this.held > 0 && (await this.renamed(e.path, rootId, size, mtimeMs))) return null;
    return { path: e.path, rootId, size, mtimeMs };
  }

  /** Is this new file a held row under a new name? Renames it when it is. */
  private async renamed(path: string, rootId: number, size: number, mtimeMs: number): Promise<boolean> {
    const { store } = this.deps;
    const candidates = store.imagesBySizeMtime(size, mtimeMs).filter((c) => c.path !== path && c.contentHash !== null && this.isHeld(c.path, c.id));
    if (candidates.length === 0) return false;
    let snap: ContentSnapshot | null = null;
    try {
      snap = await hashFile(path);
    } catch {
      return false;
    }
    if (snap.changed || snap.size !== size) return false;
    const match = candidates.find((c) => c.contentHash === snap!.hash);
    if (!match) return false;
    const moved = store.transaction(() => {
      const now = store.imageByPath(match.path);
      if (!now || now.id !== match.id || store.imageByPath(path)) return false;
      store.renameImage(match.id, path, rootId, size, mtimeMs);
      return true;
    });
    if (!moved) return false;
    this.fileHolds.delete(match.path);
    this.deps.emit({ type: 'renamed', imageId: match.id, from: match.path, to: path });
    return true;
  }

  private isHeld(path: string, imageId: number): boolean {
    const hold = this.fileHolds.get(path);
    if (hold) return hold.imageId === imageId;
    for (const dir of this.dirHolds.keys()) if (path.startsWith(dir + sep)) return true;
    return false;
  }

  private dropHolds(rootId: number): void {
    for (const [k, h] of this.fileHolds) if (h.rootId === rootId) this.fileHolds.delete(k);
    for (const [k, h] of this.dirHolds) if (h.rootId === rootId) this.dirHolds.delete(k);
  }

  private schedule(): void {
    if (this.timer || this.closed || this.held === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // A rejection here would be unhandled and end the process (a photo deleted to free a full disk did).
      void this.expire(false)
        .catch((err: unknown) => this.deps.onError?.(err))
        .finally(() => this.schedule());
    }, Math.max(50, this.deps.renameWindowMs / 4));
    this.timer.unref();
  }

  /**
   * Deletes the held rows whose window has passed (all of them with `force`, at close) and whose files
   * are really missing, while their root is still there (a vanished root goes offline instead).
   */
  expire(force: boolean): Promise<void> {
    this.expiring ??= this.expireNow(force).finally(() => (this.expiring = null));
    return this.expiring;
  }

  private async expireNow(force: boolean): Promise<void> {
    const now = Date.now();
    const window = this.deps.renameWindowMs;
    // Additions still settling may be the other half of a move; a long wait has a cap all the same.
    const quietSince = this.deps.busy?.() ? now : this.lastActivity;
    const due = (h: Hold) => force || now - h.at >= Math.max(20 * window, 60_000) || now - Math.max(h.at, quietSince) >= window;
    const roots = new Map<number, Promise<boolean>>();
    const rootOk = (id: number) => {
      let p = roots.get(id);
      if (!p) roots.set(id, (p = this.deps.rootAvailable(id)));
      return p;
    };
    const gone: { id: number; path: string }[] = [];
    for (const [path, hold] of [...this.fileHolds]) {
      if (!due(hold)) continue;
      this.fileHolds.delete(path);
      if ((await rootOk(hold.rootId)) && (await isMissing(path))) gone.push({ id: hold.imageId!, path });
    }
    for (const [dir, hold] of [...this.dirHolds]) {
      if (!due(hold)) continue;
      this.dirHolds.delete(dir);
      if (!(await rootOk(hold.rootId))) continue;
      for (let after = 0; ; ) {
        const page = this.deps.store.imagesUnder(dir, after, EXPIRE_PAGE);
        if (page.length === 0) break;
        after = page[page.length - 1]!.id;
        for (const row of page) if (await isMissing(fsPathOf(row))) gone.push({ id: row.id, path: row.path });
      }
    }
    if (gone.length === 0) return;
    const { store } = this.deps;
    const removed = store.transaction(() =>
      gone.filter((g) => store.imageByPath(g.path)?.id === g.id && store.removeImage(g.id)),
    );
    for (const g of removed) this.deps.emit({ type: 'removed', imageId: g.id, path: g.path });
  }

  /** Settles every held deletion now (the engine is closing). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.expiring;
    await this.expire(true);
  }
}
