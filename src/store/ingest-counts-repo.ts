/**
 * The counts `clipdex status` and /api/status show: images by status and the length of the work queue.
 * Two statements, prepared once per database: status is asked for often (the web UI polls it), and
 * preparing statements on each call cost the server's main thread tens of ms that the ingest pipeline
 * sharing that thread needed.
 */
import type Database from 'better-sqlite3';

export interface IngestCounts {
  indexed: number;
  /** Queued files (roots that are offline included). */
  pending: number;
  failed: number;
  offline: number;
}

export class IngestCountsRepo {
  private readonly byStatusStmt;
  private readonly queueStmt;

  constructor(db: Database.Database) {
    this.byStatusStmt = db.prepare<[], { status: string; n: number }>('SELECT status, count(*) AS n FROM images GROUP BY status');
    this.queueStmt = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM ingest_queue');
  }

  counts(): IngestCounts {
    const counts: IngestCounts = { indexed: 0, pending: this.queueStmt.get()!.n, failed: 0, offline: 0 };
    for (const { status, n } of this.byStatusStmt.all()) {
      if (status === 'indexed') counts.indexed = n;
      else if (status === 'error') counts.failed = n;
      else if (status === 'offline') counts.offline = n;
    }
    return counts;
  }
}

const repos = new WeakMap<Database.Database, IngestCountsRepo>();

/** The database's counts repository, made on first use. */
export function ingestCountsRepo(db: Database.Database): IngestCountsRepo {
  let repo = repos.get(db);
  if (!repo) repos.set(db, (repo = new IngestCountsRepo(db)));
  return repo;
}

/** Image counts by status and the queue length, straight from the database (no engine needed). */
export function readIngestCounts(library: { readonly store: { readonly db: Database.Database } }): IngestCounts {
  return ingestCountsRepo(library.store.db).counts();
}
