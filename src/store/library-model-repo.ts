/**
 * Which model a library uses, and the one it is switching to, as rows of the meta table (no migration:
 * a key/value table is there since schema 1). Also the one question the switch asks of the photos: which
 * indexed content has no vector under a model key yet.
 *
 *   library_model          {ref, key}       the model searches use; a start without --model opens it
 *   library_model_target   {ref, key, dim, requestedAt}  a switch under way (absent: none)
 *   library_model_ref:<key> ref             how to load a key's model again (`models use` back, forget)
 *   library_model_runner   {pid, at}        the process re-encoding now (a heartbeat; stale after a while)
 *   library_model_progress {…}              its last rate, ETA and failures, for `status` in another process
 */

import { MetaRepo } from './meta-repo.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';

export interface RecordedModel {
  /** What loads it: a model id or a directory. */
  ref: string;
  /** Its model key (name + weights fingerprint). */
  key: string;
}

export interface SwitchTarget extends RecordedModel {
  dim: number;
  requestedAt: number;
}

export interface MissingPhoto {
  id: number;
  path: string;
  pathBytes: Buffer | null;
  contentHash: string;
}

const CURRENT = 'library_model';
const TARGET = 'library_model_target';
const REF_PREFIX = 'library_model_ref:';
const RUNNER = 'library_model_runner';
const PROGRESS = 'library_model_progress';

export interface SwitchRunner {
  pid: number;
  /** A token of the holder (several switchers may live in one process: tests). */
  holder: string;
  at: number;
}

export class LibraryModelRepo {
  private readonly meta: MetaRepo;
  private readonly missingStmt;
  private readonly totalStmt;
  private readonly doneStmt;

  constructor(db: SqlHandle) {
    this.meta = new MetaRepo(db);
    // One row per content (two paths of one file need one vector), the lowest image id standing for it.
    const missing = `FROM images i WHERE i.status = 'indexed' AND i.content_hash IS NOT NULL AND i.id > @after
          AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.content_hash = i.content_hash AND e.model_key = @key)`;
    this.missingStmt = db.prepare<{ key: string; after: number; limit: number }, MissingPhoto>(
      dialectOf(db) === 'postgres'
        ? // Postgres has no bare columns beside an aggregate: the row with the lowest id per content, explicitly.
          `SELECT id, path, "pathBytes", "contentHash" FROM (
             SELECT DISTINCT ON (i.content_hash) i.id AS id, i.path AS path, i.path_bytes AS pathBytes, i.content_hash AS contentHash
             ${missing} ORDER BY i.content_hash, i.id) m
           ORDER BY id LIMIT @limit`
        : // SQLite takes the bare columns from the row holding min(i.id).
          `SELECT min(i.id) AS id, i.path AS path, i.path_bytes AS pathBytes, i.content_hash AS contentHash ${missing}
           GROUP BY i.content_hash ORDER BY min(i.id) LIMIT @limit`,
    );
    this.totalStmt = db.prepare<[], { n: number }>(
      `SELECT count(DISTINCT content_hash) AS n FROM images WHERE status = 'indexed' AND content_hash IS NOT NULL`,
    );
    this.doneStmt = db.prepare<[string], { n: number }>(
      `SELECT count(DISTINCT i.content_hash) AS n FROM images i
        JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = ?
        WHERE i.status = 'indexed'`,
    );
  }

  current(): RecordedModel | null {
    return this.read<RecordedModel>(CURRENT);
  }

  /** Records the model searches use (and remembers how to load its key). */
  setCurrent(model: RecordedModel): void {
    this.meta.put(CURRENT, JSON.stringify({ ref: model.ref, key: model.key }));
    this.rememberRef(model.key, model.ref);
  }

  target(): SwitchTarget | null {
    return this.read<SwitchTarget>(TARGET);
  }

  setTarget(target: SwitchTarget): void {
    this.meta.put(TARGET, JSON.stringify(target));
    this.rememberRef(target.key, target.ref);
  }

  clearTarget(): void {
    this.meta.remove(TARGET);
  }

  runner(): SwitchRunner | null {
    return this.read<SwitchRunner>(RUNNER);
  }

  setRunner(runner: SwitchRunner): void {
    this.meta.put(RUNNER, JSON.stringify(runner));
  }

  clearRunner(): void {
    this.meta.remove(RUNNER);
  }

  /** The runner's last progress report (opaque JSON to the store). */
  progress<T>(): T | null {
    return this.read<T>(PROGRESS);
  }

  setProgress(value: unknown): void {
    this.meta.put(PROGRESS, JSON.stringify(value));
  }

  clearProgress(): void {
    this.meta.remove(PROGRESS);
  }

  rememberRef(key: string, ref: string): void {
    this.meta.put(REF_PREFIX + key, ref);
  }

  forgetRef(key: string): void {
    this.meta.remove(REF_PREFIX + key);
  }

  /** The model keys this library has loaded, with what loads each. */
  knownRefs(): { key: string; ref: string }[] {
    return this.meta.list(REF_PREFIX).map((r) => ({ key: r.key.slice(REF_PREFIX.length), ref: r.value }));
  }

  /** Indexed photos whose content has no vector under `key`, a page after image id `afterId`. */
  missing(key: string, afterId: number, limit: number): MissingPhoto[] {
    return this.missingStmt.all({ key, after: afterId, limit });
  }

  /** Distinct indexed contents, and how many of them have a vector under `key`. */
  coverage(key: string): { done: number; total: number } {
    return { done: this.doneStmt.get(key)!.n, total: this.totalStmt.get()!.n };
  }

  private read<T>(key: string): T | null {
    const value = this.meta.get(key);
    if (value === undefined) return null;
    try {
      return JSON.parse(value) as T;
    } catch {
      return null;
    }
  }
}
