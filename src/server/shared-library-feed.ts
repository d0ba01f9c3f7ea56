/**
 * Live updates between the replicas of a library in Postgres. A page shows photos appearing as they are
 * indexed; with many machines the photo may have been encoded by a worker or another replica, which this
 * server hears nothing from. So each replica follows the library's change log (store/change-feed-repo.ts),
 * once a second, and publishes what joined and what left to its own pages, in place of its local ingest's
 * per-photo events (which the log holds too: publishing both would show a photo twice).
 *
 * Why a polled log and not LISTEN/NOTIFY: a notification sent while a listener is reconnecting is lost, so a
 * log is needed anyway to catch up; LISTEN holds a session of its own, which a transaction-mode pooler
 * (PgBouncer) does not give; and a second's latency is what a page showing photos needs. The log's rows are
 * pruned once they are a minute old: a replica that was away longer starts again from "now" (its pages
 * reload the status on reconnect anyway).
 */
import { errorMessage } from '../errors.js';
import type { IngestEvent } from '../ingest/ingest-events.js';
import { ChangeFeedRepo } from '../store/change-feed-repo.js';
import type { SqlHandle } from '../store/sql-handle.js';

export interface SharedLibraryFeedOptions {
  db: SqlHandle;
  publish: (event: IngestEvent) => void;
  /** How often the log is read (default 1 s). */
  intervalMs?: number;
  /** How long read rows stay in the log for other replicas (default 60 s). */
  retentionMs?: number;
  onError?: (message: string) => void;
}

export class SharedLibraryFeed {
  private readonly repo: ChangeFeedRepo;
  private readonly timer: NodeJS.Timeout;
  private position: number;
  /** (time, position) pairs, to prune what is older than the retention. */
  private readonly marks: { at: number; seq: number }[] = [];
  private failing = false;

  constructor(private readonly options: SharedLibraryFeedOptions) {
    this.repo = new ChangeFeedRepo(options.db);
    this.position = this.repo.position();
    this.timer = setInterval(() => this.poll(), options.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Reads what changed since the last read and publishes it; exposed for tests and for a flush at close. */
  poll(): void {
    try {
      const upto = this.repo.position();
      if (upto > this.position) {
        for (const c of this.repo.changes(this.position, upto)) {
          this.options.publish(
            c.path !== null && c.rootId !== null
              ? { type: 'indexed', imageId: c.imageId, path: c.path, rootId: c.rootId, encoded: false }
              : { type: 'removed', imageId: c.imageId, path: '' },
          );
        }
        this.position = upto;
      }
      this.prune(upto);
      this.failing = false;
    } catch (err) {
      // The database is away: the next tick tries again; said once, not every second.
      if (!this.failing) this.options.onError?.(`live updates paused: ${errorMessage(err)}`);
      this.failing = true;
    }
  }

  private prune(seq: number): void {
    const now = Date.now();
    this.marks.push({ at: now, seq });
    const retention = this.options.retentionMs ?? 60_000;
    let through: number | null = null;
    while (this.marks.length > 0 && this.marks[0]!.at <= now - retention) through = this.marks.shift()!.seq;
    if (through !== null && through > 0) this.repo.prune(through);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
