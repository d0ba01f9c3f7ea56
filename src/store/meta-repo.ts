/**
 * The meta table: the library's key/value rows (its id, the model it uses and a switch under way, the OCR
 * setting, training leases). One place for its statements; what a key means belongs to its caller
 * (library-model-repo.ts, ocr-repo.ts, adapter/adapter-leftovers.ts).
 */
import type { SqlHandle } from './sql-handle.js';

export class MetaRepo {
  private readonly getStmt;
  private readonly putStmt;
  private readonly removeStmt;
  private readonly listStmt;

  constructor(db: SqlHandle) {
    this.getStmt = db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?');
    this.putStmt = db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
    this.removeStmt = db.prepare<[string]>('DELETE FROM meta WHERE key = ?');
    this.listStmt = db.prepare<[string, string], { key: string; value: string }>('SELECT key, value FROM meta WHERE substr(key, 1, length(?)) = ?');
  }

  get(key: string): string | undefined {
    return this.getStmt.get(key)?.value;
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
