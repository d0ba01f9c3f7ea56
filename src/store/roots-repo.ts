/** Watched folders (roots) of a library. */
import { runInTransaction } from './database.js';
import type { SqlHandle } from './sql-handle.js';

export type RootState = 'ok' | 'offline';

export interface RootRecord {
  id: number;
  path: string;
  addedAt: number;
  state: RootState;
  /** Why the root is offline, in words for the user; null while it is ok. */
  stateReason: string | null;
  lastScanAt: number | null;
  /** The folder the user chose (see migrations/004_root_pin.sql); null until its path first resolved. */
  pinnedRealPath: string | null;
  /** Its "dev:ino" then. */
  pinnedIdentity: string | null;
}

/** A root as ingest sees it: its folder's identity when last scanned and its exclude globs. */
export interface RootInfo {
  id: number;
  path: string;
  state: RootState;
  stateReason: string | null;
  identity: string | null;
  exclude: string[];
  lastScanAt: number | null;
  addedAt: number;
}

type RootInfoRow = Omit<RootInfo, 'exclude'> & { exclude: string };

const INFO_COLUMNS = 'id, path, state, state_reason AS stateReason, identity, exclude, last_scan_at AS lastScanAt, added_at AS addedAt';

const COLUMNS =
  'id, path, added_at AS addedAt, state, state_reason AS stateReason, last_scan_at AS lastScanAt, pinned_real_path AS pinnedRealPath, pinned_identity AS pinnedIdentity';

export class RootsRepo {
  private readonly insertStmt;
  private readonly getStmt;
  private readonly byPathStmt;
  private readonly listStmt;
  private readonly stateStmt;
  private readonly scannedStmt;
  private readonly removeStmt;
  private readonly pinStmt;
  private readonly forgetVersionsStmt;
  private readonly infoStmt;
  private readonly infoByPathStmt;
  private readonly infosStmt;
  private readonly addWithExcludeStmt;
  private readonly stateReasonStmt;
  private readonly scannedAsStmt;
  private readonly db: SqlHandle;

  constructor(
    db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    // ON CONFLICT … DO UPDATE (a no-op update) so RETURNING yields the existing row too: adding twice is harmless.
    this.insertStmt = db.prepare<[string, number], RootRecord>(
      `INSERT INTO roots (path, added_at) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET path = excluded.path RETURNING ${COLUMNS}`,
    );
    this.getStmt = db.prepare<[number], RootRecord>(`SELECT ${COLUMNS} FROM roots WHERE id = ?`);
    this.byPathStmt = db.prepare<[string], RootRecord>(`SELECT ${COLUMNS} FROM roots WHERE path = ?`);
    this.listStmt = db.prepare<[], RootRecord>(`SELECT ${COLUMNS} FROM roots ORDER BY path`);
    this.stateStmt = db.prepare<[RootState, number]>('UPDATE roots SET state = ? WHERE id = ?');
    this.scannedStmt = db.prepare<[number, number]>('UPDATE roots SET last_scan_at = ? WHERE id = ?');
    this.removeStmt = db.prepare<[number]>('DELETE FROM roots WHERE id = ?');
    this.db = db;
    // -1 matches no file's mtime: the next scan queues every file, and the sink re-reads each one's content.
    this.forgetVersionsStmt = db.prepare<[number]>('UPDATE images SET mtime_ms = -1 WHERE root_id = ?');
    this.pinStmt = db.prepare<[string, string, number]>('UPDATE roots SET pinned_real_path = ?, pinned_identity = ? WHERE id = ?');
    this.infoStmt = db.prepare<[number], RootInfoRow>(`SELECT ${INFO_COLUMNS}
         FROM roots WHERE id = ?`);
    this.infoByPathStmt = db.prepare<[string], RootInfoRow>(`SELECT ${INFO_COLUMNS}
         FROM roots WHERE path = ?`);
    this.infosStmt = db.prepare<[], RootInfoRow>(`SELECT ${INFO_COLUMNS}
         FROM roots ORDER BY path`);
    this.addWithExcludeStmt = db.prepare<[string, number, string], RootInfoRow>(
      `INSERT INTO roots (path, added_at, exclude) VALUES (?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET exclude = excluded.exclude
         RETURNING ${INFO_COLUMNS}`,
    );
    this.stateReasonStmt = db.prepare<[RootState, string | null, number]>('UPDATE roots SET state = ?, state_reason = ? WHERE id = ?');
    this.scannedAsStmt = db.prepare<[string, number, number]>("UPDATE roots SET identity = ?, last_scan_at = ?, state = 'ok', state_reason = NULL WHERE id = ?");
  }

  /** Adds a root, or returns the existing one with that path. */
  add(path: string): RootRecord {
    return this.insertStmt.get(path, this.now())!;
  }

  get(id: number): RootRecord | undefined {
    return this.getStmt.get(id);
  }

  getByPath(path: string): RootRecord | undefined {
    return this.byPathStmt.get(path);
  }

  list(): RootRecord[] {
    return this.listStmt.all();
  }

  setState(id: number, state: RootState): boolean {
    return this.stateStmt.run(state, id).changes > 0;
  }

  markScanned(id: number, at: number = this.now()): boolean {
    return this.scannedStmt.run(at, id).changes > 0;
  }

  /** Records the folder the root stands for: at its first resolution, or when the user confirms a new one. */
  pin(id: number, realPath: string, identity: string): boolean {
    return this.pinStmt.run(realPath, identity, id).changes > 0;
  }

  /**
   * The user accepts the folder the root's path leads to now. Its files are all read again at the next scan:
   * a file there with the old one's name, size and mtime is another file all the same.
   */
  confirm(id: number, realPath: string, identity: string): boolean {
    return runInTransaction(this.db, () => {
      const changed = this.pin(id, realPath, identity);
      if (changed) this.forgetVersionsStmt.run(id);
      return changed;
    });
  }

  info(id: number): RootInfo | undefined {
    const row = this.infoStmt.get(id);
    return row ? toInfo(row) : undefined;
  }

  infoByPath(path: string): RootInfo | undefined {
    const row = this.infoByPathStmt.get(path);
    return row ? toInfo(row) : undefined;
  }

  infos(): RootInfo[] {
    return this.infosStmt.all().map(toInfo);
  }

  /** Adds a root, or returns the known one; its exclude globs are replaced only when given. */
  addWithExclude(path: string, exclude?: readonly string[]): RootInfo {
    const known = this.infoByPathStmt.get(path);
    if (known && exclude === undefined) return toInfo(known);
    return toInfo(this.addWithExcludeStmt.get(path, this.now(), JSON.stringify(exclude ?? []))!);
  }

  /** Sets the state with the reason said to the user (null while it is ok). */
  setStateWithReason(id: number, state: RootState, reason: string | null): void {
    this.stateReasonStmt.run(state, reason, id);
  }

  /** A complete scan: the folder's identity then, and the root is ok. */
  markScannedAs(id: number, identity: string, at: number = this.now()): void {
    this.scannedAsStmt.run(identity, at, id);
  }

  /** Removes the root and, by cascade, its images (which leave the vector index through the change log). */
  remove(id: number): boolean {
    return this.removeStmt.run(id).changes > 0;
  }
}

function toInfo(row: RootInfoRow): RootInfo {
  return { ...row, exclude: JSON.parse(row.exclude) as string[] };
}
