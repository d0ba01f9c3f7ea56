/**
 * Drops the embeddings and thumbnails of content no file has any more, once they have been kept long
 * enough (a folder removed and added back, or a share that comes back, is not encoded again). It runs when
 * a complete walk or a root's removal makes it due, or ten minutes after deletions; the engine runs it only
 * while idle, since a file still queued may be a moved photo about to reuse a stored embedding.
 */
import type { Library } from '../library/library.js';
import type { IngestStore } from './ingest-store.js';

const ORPHAN_RETENTION_MS = 7 * 24 * 3600_000;
/** Deletions alone (no walk since) make a collection due this long after the last one. */
const AFTER_DELETIONS_MS = 10 * 60_000;

export class GarbageCollector {
  private due = false;
  private removed = 0;
  private lastAt = Date.now();

  constructor(
    private readonly store: IngestStore,
    private readonly thumbnails: Library['thumbnails'],
    private readonly retentionMs = ORPHAN_RETENTION_MS,
  ) {}

  /** A complete walk or a root's removal may have left content without files. */
  markDue(): void {
    this.due = true;
  }

  /** A file's row was deleted. */
  noteRemoved(): void {
    this.removed++;
  }

  /** Time for a collection (when the engine is idle). */
  isDue(): boolean {
    return this.due || (this.removed > 0 && Date.now() - this.lastAt > AFTER_DELETIONS_MS);
  }

  /** Something since the last collection may have left content without files (a one-shot run's end). */
  hasWork(): boolean {
    return this.due || this.removed > 0;
  }

  /** Collects now; returns how many contents were dropped. */
  async collect(): Promise<number> {
    this.due = false;
    this.removed = 0;
    this.lastAt = Date.now();
    const hashes = this.store.collectGarbage(this.retentionMs);
    for (const hash of hashes) await this.thumbnails.remove(hash).catch(() => false);
    return hashes.length;
  }
}
