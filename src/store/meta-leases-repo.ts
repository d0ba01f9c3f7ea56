/**
 * Leases kept as rows of the meta table: a key under a prefix, its value written by whoever holds it
 * (what the value means and when it is stale is the holder's business, see adapter/adapter-leftovers.ts).
 */
import type { SqliteHandle } from './database.js';

export class MetaLeasesRepo {
  private readonly putStmt;
  private readonly removeStmt;
  private readonly listStmt;

  constructor(db: SqliteHandle) {
    this.putStmt = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    this.removeStmt = db.prepare<[string]>('DELETE FROM meta WHERE key = ?');
    this.listStmt = db.prepare<[string, string], { key: string; value: string }>('SELECT key, value FROM meta WHERE substr(key, 1, length(?)) = ?');
  }

  put(key: string, value: string): void {
    this.putStmt.run(key, value);
  }

  remove(key: string): void {
    this.removeStmt.run(key);
  }

  /** Every row whose key starts with `prefix`. */
  list(prefix: string): { key: string; value: string }[] {
    return this.listStmt.all(prefix, prefix);
  }
}
