/**
 * The pipeline's input: an endless async feed over the SQLite work queue. An entry is handed out once
 * and stays in the table until the sink records its result (in the same transaction that writes the
 * image row), so a crash leaves it queued and the next run picks it up: nothing is lost and nothing
 * lands twice.
 *
 * In memory only what must not be handed out now:
 * - in flight: taken by the pipeline, result not recorded yet. One path is never in flight twice, so
 *   an older read of a file can never overwrite a newer one.
 * - parked: changed while it was read; waits (in a WriteSettler) until it has been quiet again.
 * Both are skipped by the cursor; when one becomes available again the cursor rewinds.
 *
 * On a library in Postgres that several processes encode for, the queue pages through this process's
 * claims (queue-claims.ts) instead, a result is recorded only while its claim holds (`remove`), and the
 * feed looks for new work once a second as well: other machines queue files it hears nothing about.
 */
import type { IngestStore, QueueEntry } from './ingest-store.js';
import type { QueueClaims } from './queue-claims.js';
import { type FsPath, fsPathOf } from './raw-path.js';
import { WriteSettler } from './write-settle.js';
import { Wakeup } from './wakeup.js';

export interface QueueItem extends QueueEntry {
  /** The pipeline reads `readPath` when set (a mapped path), else `pathBytes` or `path` (raw-path.ts). */
  path: string;
  readPath?: FsPath;
}

/** A file as the library names it: its path, and its raw bytes when the name is not UTF-8. */
export type LibraryFile = { path: string; pathBytes: Buffer | null };

export interface IngestQueueOptions {
  /** How long a file that changed while read must be quiet before it is read again (ms). */
  stableMs: number;
  /** Entries read from the database at a time. */
  pageSize?: number;
  /** Claims on a queue shared with other processes (a library in Postgres); absent: this process owns the queue. */
  claims?: QueueClaims;
  /** Where this machine reads an entry's file, when not at its library path (a worker's --path-map). */
  localPath?: (file: LibraryFile) => FsPath;
  /** How often a shared queue is looked at for work queued elsewhere (default 1 s). */
  pollMs?: number;
}


export class IngestQueue {
  private readonly inFlight = new Map<string, number>();
  private readonly parked = new Set<string>();
  /** Paths whose newer entry the cursor passed while an older one was in flight. */
  private readonly passed = new Set<string>();
  private readonly settler: WriteSettler<undefined>;
  private readonly signal = new Wakeup();
  private readonly pageSize: number;
  private readonly claims: QueueClaims | undefined;
  private readonly localPath: ((file: LibraryFile) => FsPath) | undefined;
  private readonly pollMs: number;
  private buffer: QueueEntry[] = [];
  private cursor = 0;
  private rewind = false;
  private closed = false;

  constructor(
    private readonly store: IngestStore,
    options: IngestQueueOptions,
  ) {
    this.pageSize = options.pageSize ?? (options.claims ? 16 : 128);
    this.claims = options.claims;
    this.localPath = options.localPath;
    this.pollMs = options.pollMs ?? 1000;
    this.settler = new WriteSettler<undefined>({
      stableMs: options.stableMs,
      onSettled: (files) => files.forEach((f) => this.unpark(f.path)),
      // Gone while parked: its next read reports it missing and the sink cleans up.
      onGone: (paths) => paths.forEach((p) => this.unpark(p)),
    });
  }

  /** Entries taken and not yet recorded. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  get parkedCount(): number {
    return this.parked.size;
  }

  /** Nothing to hand out now and nothing out: what is queued belongs to offline roots, if anything. */
  isIdle(): boolean {
    return this.inFlight.size === 0 && this.parked.size === 0 && this.buffer.length === 0 && !this.store.hasQueuedOnline();
  }

  /** Something new may be available (an entry queued, a root back online). */
  wake(rewind = false): void {
    if (rewind) this.rewind = true;
    this.signal.notify();
  }

  /** Where this process reads a file of the library (its mapped path on a worker with --path-map). */
  readPathOf(file: LibraryFile): FsPath {
    return this.localPath ? this.localPath(file) : fsPathOf(file);
  }

  /**
   * Takes a processed entry off the queue, in the sink's transaction; false when the result must not be
   * written: the entry was removed or queued again meanwhile, or (shared queue) its claim was lost.
   */
  remove(item: QueueEntry): boolean {
    return this.claims ? this.claims.remove(item.id) : this.store.dequeue(item.id);
  }

  /** This process cannot read the item's root now: others may take it (shared queue); done here either way. */
  giveBack(item: QueueEntry): void {
    if (this.claims) {
      this.claims.skipRoot(item.rootId);
      this.claims.giveBack(item.id);
    }
    this.done(item);
  }

  /** The sink recorded (or dropped) the result for this item. */
  done(item: QueueEntry): void {
    if (this.inFlight.get(item.path) === item.id) this.inFlight.delete(item.path);
    // An entry for this path queued while it was in flight was skipped by the cursor: go back for it.
    this.wake(this.passed.delete(item.path));
  }

  /** The file changed while read: hand it out again once it has settled. */
  park(item: QueueItem): void {
    if (this.inFlight.get(item.path) === item.id) this.inFlight.delete(item.path);
    this.passed.delete(item.path);
    this.parked.add(item.path);
    this.settler.touch(item.path, undefined, undefined, fsPathOf(item));
  }

  /** Holds back a queued file that was written moments ago (the scan found it mid-copy). */
  parkFresh(path: string, pathBytes: Buffer | null = null): void {
    this.parked.add(path);
    this.settler.touch(path, undefined, undefined, pathBytes ?? path);
  }

  private unpark(path: string): void {
    if (this.parked.delete(path)) this.wake(true);
  }

  /** After the pipeline stopped on a failure: whatever it held was never recorded and is queued still. */
  resetInFlight(): void {
    this.inFlight.clear();
    this.passed.clear();
    this.buffer = [];
    this.wake(true);
  }

  close(): void {
    this.closed = true;
    this.settler.close();
    this.signal.notify();
  }

  /** Hands out queued entries as they become available; ends only when the queue is closed. */
  async *feed(): AsyncGenerator<QueueItem> {
    while (!this.closed) {
      const item = this.take();
      if (item) {
        yield item;
        continue;
      }
      if (this.claims) await this.waitOrPoll();
      else await this.signal.wait();
    }
  }

  private async waitOrPoll(): Promise<void> {
    await this.signal.wait(this.pollMs);
    this.rewind = true;
  }

  private take(): QueueItem | undefined {
    for (;;) {
      if (this.buffer.length === 0 && !this.refill()) return undefined;
      const entry = this.buffer.shift()!;
      const flying = this.inFlight.get(entry.path);
      if (flying !== undefined) {
        if (flying !== entry.id) this.passed.add(entry.path);
        continue;
      }
      if (this.parked.has(entry.path)) continue;
      this.inFlight.set(entry.path, entry.id);
      return this.localPath ? { ...entry, readPath: this.localPath(entry) } : entry;
    }
  }

  private refill(): boolean {
    if (this.rewind) {
      this.rewind = false;
      this.cursor = 0;
    }
    const page = this.claims ? this.claims.claimPage(this.cursor, this.pageSize) : this.store.queuePage(this.cursor, this.pageSize);
    if (page.length === 0) return false;
    this.cursor = page[page.length - 1]!.id;
    this.buffer = page;
    return true;
  }
}
