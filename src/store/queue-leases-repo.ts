/**
 * Claims on the work queue, for a library in Postgres that many processes encode for (`clipdex worker`,
 * `serve` replicas). A process claims a page of queued files with `FOR UPDATE SKIP LOCKED` (two claimants
 * never wait on each other or take the same row) under a lease; it renews its leases while it works, and
 * writes a file's result only while the claim is still its own (removeOwned, in the sink's transaction). A
 * killed process's leases run out and the files are claimed again by whoever asks next: nothing is encoded
 * twice by live processes and nothing is lost.
 *
 * Leases are timed by the database's clock (`clock_timestamp()`), never the machines': workers' clocks need
 * not agree. The embedded library has one process and no claims; this repository is Postgres only.
 */
import { ClipdexError } from '../errors.js';
import type { QueueEntry } from './ingest-queue-repo.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';

/** Now by the database's clock, in ms since the epoch (the unit of lease_until). */
const DB_NOW_MS = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** A claimant and how many files it holds under a live lease. */
export interface QueueClaimant {
  claimant: string;
  files: number;
}

const ENTRY_COLUMNS = 'q.id, q.path, q.path_bytes AS pathBytes, q.root_id AS rootId, q.size, q.mtime_ms AS mtimeMs';

export class QueueLeasesRepo {
  private readonly s;

  constructor(db: SqlHandle) {
    if (dialectOf(db) !== 'postgres') {
      throw new ClipdexError('INVALID_ARGUMENT', 'queue leases are for a library in Postgres; the embedded library has one process and needs none');
    }
    const p = <P extends unknown[] = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    // Claimable: not claimed, claimed by this claimant already (in flight or parked here), or its lease ran out.
    // Roots to skip are those this process cannot reach (a share not mounted on this machine).
    this.s = {
      claim: p<[number, string, number[], number, string, number], QueueEntry>(
        `WITH picked AS (
           SELECT q.id FROM ingest_queue q JOIN roots r ON r.id = q.root_id AND r.state = 'ok'
           WHERE q.id > ? AND (q.claimed_by IS NULL OR q.claimed_by = ? OR q.lease_until < ${DB_NOW_MS})
             AND NOT (q.root_id = ANY (?::bigint[]))
           ORDER BY q.id LIMIT ?
           FOR UPDATE OF q SKIP LOCKED)
         UPDATE ingest_queue q SET claimed_by = ?, lease_until = ${DB_NOW_MS} + ?
         FROM picked WHERE q.id = picked.id
         RETURNING ${ENTRY_COLUMNS}`,
      ),
      renew: p<[number, string]>(`UPDATE ingest_queue SET lease_until = ${DB_NOW_MS} + ? WHERE claimed_by = ?`),
      removeOwned: p<[number, string]>('DELETE FROM ingest_queue WHERE id = ? AND claimed_by = ?'),
      release: p<[number, string]>('UPDATE ingest_queue SET claimed_by = NULL, lease_until = NULL WHERE id = ? AND claimed_by = ?'),
      releaseAll: p<[string]>('UPDATE ingest_queue SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = ?'),
      claimants: p<[], QueueClaimant>(
        `SELECT claimed_by AS claimant, count(*) AS files FROM ingest_queue
         WHERE claimed_by IS NOT NULL AND lease_until >= ${DB_NOW_MS} GROUP BY claimed_by ORDER BY claimed_by`,
      ),
    };
  }

  /**
   * Claims up to `limit` files after `afterId` (queue order) for `claimant`, for `leaseMs`, skipping the
   * roots in `skipRoots`; returns them in queue order.
   */
  claim(claimant: string, afterId: number, limit: number, leaseMs: number, skipRoots: readonly number[] = []): QueueEntry[] {
    const rows = this.s.claim.all(afterId, claimant, [...skipRoots], limit, claimant, Math.round(leaseMs));
    return rows.sort((a, b) => a.id - b.id);
  }

  /** Extends every lease `claimant` holds to `leaseMs` from now; returns how many it holds. */
  renew(claimant: string, leaseMs: number): number {
    return this.s.renew.run(Math.round(leaseMs), claimant).changes;
  }

  /**
   * Takes a processed entry off the queue, only if `claimant` still holds it: false when the entry was
   * queued again, removed, or claimed by another process after this one's lease ran out (whose result wins).
   */
  removeOwned(id: number, claimant: string): boolean {
    return this.s.removeOwned.run(id, claimant).changes > 0;
  }

  /** Gives one claim back to the queue (this process cannot read the file now). */
  release(id: number, claimant: string): boolean {
    return this.s.release.run(id, claimant).changes > 0;
  }

  /** Gives every claim of `claimant` back (it is closing); returns how many. */
  releaseAll(claimant: string): number {
    return this.s.releaseAll.run(claimant).changes;
  }

  /** Who holds files under a live lease now, and how many each. */
  claimants(): QueueClaimant[] {
    return this.s.claimants.all();
  }
}

/** Who encodes for the library now (claimants with live leases); none on the embedded backend (one process). */
export function queueClaimants(db: SqlHandle): QueueClaimant[] {
  return dialectOf(db) === 'postgres' ? new QueueLeasesRepo(db).claimants() : [];
}
