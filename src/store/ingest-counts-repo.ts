/**
 * The counts `clipdex status` and /api/status show: images by status and the length of the work queue.
 * Two statements, prepared once per database: status is asked for often (the web UI polls it), and
 * preparing statements on each call cost the server's main thread tens of ms that the ingest pipeline
 * sharing that thread needed.
 */
import type { SqlHandle } from './sql-handle.js';

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
  private readonly rootStatusStmt;
  private readonly rootQueueStmt;

  constructor(db: SqlHandle) {
    this.byStatusStmt = db.prepare<[], { status: string; n: number }>('SELECT status, count(*) AS n FROM images GROUP BY status');
    this.queueStmt = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM ingest_queue');
    this.rootStatusStmt = db.prepare<[], { rootId: number; status: string; n: number }>(
      'SELECT root_id AS rootId, status, count(*) AS n FROM images GROUP BY root_id, status',
    );
    this.rootQueueStmt = db.prepare<[], { rootId: number; n: number }>('SELECT root_id AS rootId, count(*) AS n FROM ingest_queue GROUP BY root_id');
  }

  /** The same counts per root (a root with no images and nothing queued is absent). */
  countsByRoot(): Map<number, IngestCounts> {
    const out = new Map<number, IngestCounts>();
    const get = (id: number) => {
      let c = out.get(id);
      if (!c) out.set(id, (c = { indexed: 0, pending: 0, failed: 0, offline: 0 }));
      return c;
    };
    for (const r of this.rootStatusStmt.all()) {
      const c = get(r.rootId);
      if (r.status === 'indexed') c.indexed = r.n;
      else if (r.status === 'error') c.failed = r.n;
      else if (r.status === 'offline') c.offline = r.n;
    }
    for (const r of this.rootQueueStmt.all()) get(r.rootId).pending = r.n;
    return out;
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

const repos = new WeakMap<SqlHandle, IngestCountsRepo>();

/** The database's counts repository, made on first use. */
export function ingestCountsRepo(db: SqlHandle): IngestCountsRepo {
  let repo = repos.get(db);
  if (!repo) repos.set(db, (repo = new IngestCountsRepo(db)));
  return repo;
}

/** Image counts by status and the queue length, straight from the database (no engine needed). */
export function readIngestCounts(library: { readonly store: { readonly db: SqlHandle } }): IngestCounts {
  return ingestCountsRepo(library.store.db).counts();
}
