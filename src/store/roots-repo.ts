/** Watched folders (roots) of a library. */
import type Database from 'better-sqlite3';

export type RootState = 'ok' | 'offline';

export interface RootRecord {
  id: number;
  path: string;
  addedAt: number;
  state: RootState;
  lastScanAt: number | null;
}

const COLUMNS = 'id, path, added_at AS addedAt, state, last_scan_at AS lastScanAt';

export class RootsRepo {
  private readonly insertStmt;
  private readonly getStmt;
  private readonly byPathStmt;
  private readonly listStmt;
  private readonly stateStmt;
  private readonly scannedStmt;
  private readonly removeStmt;

  constructor(
    db: Database.Database,
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

  /** Removes the root and, by cascade, its images (which leave the vector index through the change log). */
  remove(id: number): boolean {
    return this.removeStmt.run(id).changes > 0;
  }
}
