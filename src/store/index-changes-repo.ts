/**
 * What a derived vector index needs from SQLite: its members (the `index_members` view), the change log
 * the triggers of migration 001 write, and the bookkeeping that lets a saved index catch up.
 */
import { dialectOf, type SqlHandle } from './sql-handle.js';

export interface MemberRow {
  imageId: number;
  vector: Buffer;
}

/** A logged image id with its current vector, or null when it is no longer a member (delete it). */
export interface ChangedMember {
  imageId: number;
  vector: Buffer | null;
}

export interface TrackedIndex {
  modelKey: string;
  /** Log rows up to this seq have been deleted; an index checkpointed before it cannot catch up. */
  prunedThrough: number;
  savedCheckpoint: number | null;
  registeredAt: number;
}

/**
 * Ids touched after a checkpoint, with their vector now (NULL: no longer a member). index_members is spelled
 * out: a LEFT JOIN on the view makes SQLite materialise it and scan it once per change (quadratic: 30k new
 * photos took 70 s to apply); joined by keys, each change is two index lookups.
 */
export const CHANGED_MEMBERS_SQL = `SELECT c.image_id AS imageId, e.vector AS vector
       FROM (SELECT DISTINCT image_id FROM index_changes WHERE model_key = @key AND seq > @after AND seq <= @upto) c
       LEFT JOIN images i ON i.id = c.image_id AND i.status = 'indexed' AND i.hidden_at IS NULL
       LEFT JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = @key
       ORDER BY c.image_id`;

export class IndexChangesRepo {
  private readonly registerStmt;
  private readonly trackedStmt;
  private readonly maxSeqStmt;
  private readonly changedStmt;
  private readonly pendingStmt;
  private readonly pruneStmt;
  private readonly prunedStmt;
  private readonly countStmt;
  private readonly pageStmt;
  private readonly idsStmt;
  private readonly vectorStmt;
  private readonly savedStmt;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    this.registerStmt = db.prepare<[string, number]>(
      'INSERT INTO vector_indexes (model_key, registered_at) VALUES (?, ?) ON CONFLICT (model_key) DO NOTHING',
    );
    this.trackedStmt = db.prepare<[string], TrackedIndex>(
      'SELECT model_key AS modelKey, pruned_through AS prunedThrough, saved_checkpoint AS savedCheckpoint, registered_at AS registeredAt FROM vector_indexes WHERE model_key = ?',
    );
    // The highest seq ever handed out, even after the rows are pruned: SQLite's AUTOINCREMENT table, or the
    // identity column's sequence (null until its first value).
    this.maxSeqStmt = db.prepare<[], { seq: number | null }>(
      dialectOf(db) === 'postgres'
        ? "SELECT pg_sequence_last_value(pg_get_serial_sequence('index_changes', 'seq')::regclass) AS seq"
        : "SELECT seq FROM sqlite_sequence WHERE name = 'index_changes'",
    );
    this.changedStmt = db.prepare<{ key: string; after: number; upto: number }, ChangedMember>(
      CHANGED_MEMBERS_SQL,
    );
    this.pendingStmt = db.prepare<[string, number], { n: number }>(
      'SELECT count(*) AS n FROM index_changes WHERE model_key = ? AND seq > ?',
    );
    this.pruneStmt = db.prepare<[string, number]>('DELETE FROM index_changes WHERE model_key = ? AND seq <= ?');
    this.prunedStmt = db.prepare<[number, string]>(
      'UPDATE vector_indexes SET pruned_through = max(pruned_through, ?) WHERE model_key = ?',
    );
    this.countStmt = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM index_members WHERE model_key = ?');
    this.pageStmt = db.prepare<[string, number, number], MemberRow>(
      'SELECT image_id AS imageId, vector FROM index_members WHERE model_key = ? AND image_id > ? ORDER BY image_id LIMIT ?',
    );
    this.idsStmt = db.prepare<[string], { imageId: number }>(
      'SELECT image_id AS imageId FROM index_members WHERE model_key = ? ORDER BY image_id',
    );
    this.savedStmt = db.prepare<[number, string]>('UPDATE vector_indexes SET saved_checkpoint = ? WHERE model_key = ?');
    this.vectorStmt = db.prepare<[string, number], { vector: Buffer }>(
      'SELECT vector FROM index_members WHERE model_key = ? AND image_id = ?',
    );
  }

  /** From now on every change affecting this key's members is logged (in the writer's transaction). */
  register(modelKey: string): TrackedIndex {
    // Read first: a key registered before needs no write, so a library whose database is read-only still opens.
    const known = this.tracked(modelKey);
    if (known) return known;
    this.registerStmt.run(modelKey, this.now());
    return this.tracked(modelKey)!;
  }

  /** Stops logging changes for a key and forgets its log (its index is being deleted). */
  unregister(modelKey: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM index_changes WHERE model_key = ?').run(modelKey);
      this.db.prepare('DELETE FROM vector_indexes WHERE model_key = ?').run(modelKey);
    })();
  }

  tracked(modelKey: string): TrackedIndex | undefined {
    return this.trackedStmt.get(modelKey);
  }

  /** The highest change seq ever written (0 when none): an index built from a read after this includes it. */
  maxSeq(): number {
    return this.maxSeqStmt.get()?.seq ?? 0;
  }

  /** Every image id logged in (after, upto], once, with what it should now hold. */
  changedSince(modelKey: string, after: number, upto: number): ChangedMember[] {
    return this.changedStmt.all({ key: modelKey, after, upto });
  }

  pendingCount(modelKey: string, after: number): number {
    return this.pendingStmt.get(modelKey, after)!.n;
  }

  /**
   * Records that an index file with this checkpoint is about to be committed, in a transaction synced with
   * synchronous=FULL: that fsyncs the WAL, so every change up to the checkpoint survives a power loss
   * before any index file claims to contain it (with synchronous=NORMAL, the last commits could roll back).
   */
  markSaving(modelKey: string, checkpointSeq: number): void {
    // Postgres commits durably already (synchronous_commit is on unless its operator turned it off).
    if (dialectOf(this.db) === 'postgres') {
      this.savedStmt.run(checkpointSeq, modelKey);
      return;
    }
    const sqlite = this.db as SqlHandle & { pragma(source: string, options?: { simple: boolean }): unknown };
    const previous = sqlite.pragma('synchronous', { simple: true }) as number;
    sqlite.pragma('synchronous = FULL');
    try {
      this.savedStmt.run(checkpointSeq, modelKey);
    } finally {
      sqlite.pragma(`synchronous = ${previous}`);
    }
  }

  /** Drops log rows an index saved at `throughSeq` no longer needs. */
  prune(modelKey: string, throughSeq: number): number {
    return this.db.transaction(() => {
      const n = this.pruneStmt.run(modelKey, throughSeq).changes;
      this.prunedStmt.run(throughSeq, modelKey);
      return n;
    })();
  }

  memberCount(modelKey: string): number {
    return this.countStmt.get(modelKey)!.n;
  }

  /** Members in image id order, a page at a time, so a million vectors never sit in memory at once. */
  *members(modelKey: string, pageSize = 2048): Generator<MemberRow> {
    let after = 0;
    for (;;) {
      const page = this.pageStmt.all(modelKey, after, pageSize);
      for (const row of page) yield row;
      if (page.length < pageSize) return;
      after = page[page.length - 1]!.imageId;
    }
  }

  memberIds(modelKey: string): number[] {
    return this.idsStmt.all(modelKey).map((r) => r.imageId);
  }

  memberVector(modelKey: string, imageId: number): Buffer | undefined {
    return this.vectorStmt.get(modelKey, imageId)?.vector;
  }
}
