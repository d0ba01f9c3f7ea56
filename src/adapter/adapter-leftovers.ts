/**
 * What an activation leaves behind when its process dies (SIGKILL, power cut, Ctrl-C mid-way) or when a
 * process stops within seconds of switching away from a version: an adapter key's projected embeddings
 * (2 KB per photo) and its index folder, searched by nobody. A library removes them when it opens.
 *
 * An activation running in another process (the CLI beside a server) must not lose its work to that, so
 * each activation holds a lease in the database, refreshed every 10 s: a key with a fresh lease is left
 * alone. A lease is dead once its process is gone from this machine (so a server restarted right after a
 * crash cleans up at once), or when it has not been refreshed for a minute (a process on another machine
 * sharing the library).
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { keyDir, STATE_FILE } from '../index/index-files.js';
import { runInTransaction } from '../store/database.js';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import { MetaRepo } from '../store/meta-repo.js';
import { ModelKeysRepo } from '../store/model-keys-repo.js';
import { AdaptedEmbeddings } from './adapter-embeddings.js';
import type { SqlHandle } from '../store/sql-handle.js';

const LEASE_PREFIX = 'activation-lease:';
export const LEASE_HEARTBEAT_MS = 10_000;
export const LEASE_STALE_MS = 60_000;

/** Marks an adapter key as being built by this process until released. */
export class ActivationLease {
  private readonly timer: NodeJS.Timeout;
  private readonly leases: MetaRepo;

  private constructor(
    db: SqlHandle,
    private readonly key: string,
  ) {
    this.leases = new MetaRepo(db);
    this.beat();
    this.timer = setInterval(() => {
      try {
        this.beat();
      } catch {
        // A full or read-only disk: the activation itself will fail and say so.
      }
    }, LEASE_HEARTBEAT_MS);
    this.timer.unref();
  }

  static take(db: SqlHandle, key: string): ActivationLease {
    return new ActivationLease(db, key);
  }

  release(): void {
    clearInterval(this.timer);
    try {
      this.leases.remove(LEASE_PREFIX + this.key);
    } catch {
      // Left behind, it goes stale within a minute.
    }
  }

  private beat(): void {
    this.leases.put(LEASE_PREFIX + this.key, JSON.stringify({ pid: process.pid, host: hostname(), at: Date.now() } satisfies Lease));
  }
}

/**
 * Adapter keys of `baseKey` with stored embeddings or a registered index that are neither `activeKey` nor
 * leased by a live activation (`leased`: the keys that are; `deadLeases`: the lease rows nobody refreshes).
 * Read in one transaction, so a lease and the rows it covers are seen together.
 */
export function findAdapterLeftovers(
  db: SqlHandle,
  baseKey: string,
  activeKey: string | null,
  now = Date.now(),
): { leftovers: string[]; leased: string[]; deadLeases: string[] } {
  const prefix = `${baseKey}@adapter-`;
  const modelKeys = new ModelKeysRepo(db);
  const leaseRows = new MetaRepo(db);
  return runInTransaction(db, () => {
    const keys = modelKeys.withPrefix(prefix);
    const leases = leaseRows.list(LEASE_PREFIX);
    const leased = leases.filter((r) => leaseLive(r.value, now)).map((r) => r.key.slice(LEASE_PREFIX.length));
    const deadLeases = leases.filter((r) => !leased.includes(r.key.slice(LEASE_PREFIX.length))).map((r) => r.key);
    return { leftovers: keys.filter((k) => k !== activeKey && !leased.includes(k)), leased, deadLeases };
  });
}

interface Lease {
  pid: number;
  host: string;
  at: number;
}

function leaseLive(value: string, now: number): boolean {
  let lease: Partial<Lease>;
  try {
    lease = JSON.parse(value) as Partial<Lease>;
  } catch {
    return false;
  }
  if (typeof lease.at !== 'number' || now - lease.at >= LEASE_STALE_MS) return false;
  if (lease.host !== hostname() || typeof lease.pid !== 'number') return true;
  return processAlive(lease.pid);
}

function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the leftovers of `baseKey`'s adapters: their rows (change log first, then embeddings) and index
 * folders — those of the keys found, and folders whose state file names an adapter key of this base that
 * the database no longer knows (a crash between dropping the rows and the folder). Returns the keys removed.
 */
export async function removeAdapterLeftovers(
  db: SqlHandle,
  embeddings: EmbeddingsRepo,
  indexDir: string,
  baseKey: string,
  activeKey: string | null,
): Promise<string[]> {
  const { leftovers, leased, deadLeases } = findAdapterLeftovers(db, baseKey, activeKey);
  const adapted = new AdaptedEmbeddings(db, embeddings, baseKey);
  for (const key of leftovers) adapted.drop(key);
  // Leases nobody refreshes any more go too (written only when there are some: a read-only library opens).
  if (deadLeases.length > 0) {
    const leases = new MetaRepo(db);
    for (const key of deadLeases) leases.remove(key);
  }
  const folders = new Set(leftovers.map((k) => keyDir(indexDir, k)));
  const keep = new Set([activeKey, ...leased].filter((k): k is string => k !== null).map((k) => keyDir(indexDir, k)));
  const known = new Set(new ModelKeysRepo(db).all().map((key) => keyDir(indexDir, key)));
  let entries: string[] = [];
  try {
    entries = await readdir(indexDir);
  } catch {
    // No index folder yet.
  }
  for (const name of entries) {
    const dir = join(indexDir, name);
    if (folders.has(dir) || keep.has(dir) || known.has(dir)) continue;
    const key = await stateModelKey(dir);
    if (key?.startsWith(`${baseKey}@adapter-`)) folders.add(dir);
  }
  for (const dir of folders) if (!keep.has(dir)) await rm(dir, { recursive: true, force: true });
  return leftovers;
}

/** The model key a folder's state file names (read loosely: a damaged state still says whose it was). */
async function stateModelKey(dir: string): Promise<string | null> {
  try {
    const key = (JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as { modelKey?: unknown }).modelKey;
    return typeof key === 'string' ? key : null;
  } catch {
    return null;
  }
}
