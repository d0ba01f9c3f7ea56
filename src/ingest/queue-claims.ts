/**
 * One process's claims on a shared work queue (a library in Postgres; store/queue-leases-repo.ts says how
 * claims work). The IngestQueue pages through claims instead of the plain queue, and the sink takes a file
 * off the queue only while the claim is still this process's. A heartbeat renews the leases every third of
 * the lease, so a process that stops (killed, frozen, cut off) loses its files to the others within one
 * lease. Roots this process cannot read (a share not mounted here) are skipped for a while, their claims
 * given back, so another machine that can read them takes them.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { QueueEntry } from '../store/ingest-queue-repo.js';
import type { QueueLeasesRepo } from '../store/queue-leases-repo.js';

export interface QueueClaimsOptions {
  /** How long a claim lasts without renewal (default 60 s). */
  leaseMs?: number;
  /** How long a root this process could not read is left to others (default 60 s). */
  skipRootMs?: number;
  /** Called when a renewal fails (the database is unreachable); the next beat tries again. */
  onError?: (error: unknown) => void;
  /** This process's name in the queue (default host:pid:random). */
  claimant?: string;
}

/** A name that tells people which machine and process holds files, unique across restarts. */
export function newClaimantName(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export class QueueClaims {
  readonly claimant: string;
  readonly leaseMs: number;
  private readonly skipRootMs: number;
  private readonly skipped = new Map<number, number>();
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly repo: QueueLeasesRepo,
    private readonly options: QueueClaimsOptions = {},
  ) {
    this.claimant = options.claimant ?? newClaimantName();
    this.leaseMs = Math.max(1000, options.leaseMs ?? 60_000);
    this.skipRootMs = options.skipRootMs ?? 60_000;
    this.heartbeat = setInterval(() => this.renew(), Math.max(250, Math.floor(this.leaseMs / 3)));
    this.heartbeat.unref();
  }

  /** Claims up to `limit` entries after `afterId`, in queue order (entries this process holds already included). */
  claimPage(afterId: number, limit: number): QueueEntry[] {
    if (this.closed) return [];
    return this.repo.claim(this.claimant, afterId, limit, this.leaseMs, this.skippedRoots());
  }

  /** Takes a processed entry off the queue if it is still this process's; false: the result must not be written. */
  remove(id: number): boolean {
    return this.repo.removeOwned(id, this.claimant);
  }

  /** Lets others have one entry (this process will not work on it now). */
  giveBack(id: number): void {
    this.repo.release(id, this.claimant);
  }

  /** This process cannot read `rootId` now: its files are left to others for a while. */
  skipRoot(rootId: number): void {
    this.skipped.set(rootId, Date.now() + this.skipRootMs);
  }

  private skippedRoots(): number[] {
    const now = Date.now();
    for (const [id, until] of this.skipped) if (until <= now) this.skipped.delete(id);
    return [...this.skipped.keys()];
  }

  private renew(): void {
    if (this.closed) return;
    try {
      this.repo.renew(this.claimant, this.leaseMs);
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  /** Stops renewing and gives every claim back, so others take the files at once rather than after a lease. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    try {
      this.repo.releaseAll(this.claimant);
    } catch (err) {
      // Unreachable now: the leases run out by themselves.
      this.options.onError?.(err);
    }
  }
}
