/**
 * Which model keys the library knows anywhere: with stored embeddings (embedding_models) or a registered
 * vector index (vector_indexes). Asked when a library opens, to find keys left behind (a killed adapter
 * activation, a key from an older clipdex).
 */
import type { SqlHandle } from './sql-handle.js';

export class ModelKeysRepo {
  private readonly embeddedStmt;
  private readonly withPrefixStmt;
  private readonly allStmt;

  constructor(db: SqlHandle) {
    this.embeddedStmt = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM embedding_models WHERE model_key = ?');
    this.withPrefixStmt = db.prepare<[string, string, string, string], { key: string }>(
      `SELECT model_key AS key FROM embedding_models WHERE substr(model_key, 1, length(?)) = ?
         UNION SELECT model_key FROM vector_indexes WHERE substr(model_key, 1, length(?)) = ?`,
    );
    this.allStmt = db.prepare<[], { key: string }>('SELECT model_key AS key FROM embedding_models UNION SELECT model_key FROM vector_indexes');
  }

  /** True when embeddings were ever registered under the key. */
  hasEmbeddings(key: string): boolean {
    return this.embeddedStmt.get(key) !== undefined;
  }

  /** Keys starting with `prefix`, from both tables. */
  withPrefix(prefix: string): string[] {
    return this.withPrefixStmt.all(prefix, prefix, prefix, prefix).map((r) => r.key);
  }

  all(): string[] {
    return this.allStmt.all().map((r) => r.key);
  }
}
