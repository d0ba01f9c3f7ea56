/**
 * Moves everything a library stored under one model key to another: the base key's embeddings, index
 * registration, change log and trained versions, and the same for every adapter key derived from it
 * (`<base>@adapter-<id>`). Used once per library when the way keys are computed changes, so that nothing
 * is re-encoded and no trained version is orphaned.
 */
import type { SqlHandle } from './sql-handle.js';

export interface RekeyResult {
  /** old key → new key, for every key moved (the base and its adapter keys). */
  moved: Map<string, string>;
}

/**
 * In one transaction. Does nothing (empty result) when the old key is unknown or the new key is already
 * in use: a library that already has vectors under the new key must never have a second set merged in.
 */
export function rekeyModel(db: SqlHandle, oldKey: string, newKey: string): RekeyResult {
  const moved = new Map<string, string>();
  if (oldKey === newKey) return { moved };
  const prefix = `${oldKey}@`;
  const derived = (key: string) => key === oldKey || key.startsWith(prefix);
  const rename = (key: string) => newKey + key.slice(oldKey.length);
  db.transaction(() => {
    const inUse = db
      .prepare<[string, string, string], { n: number }>(
        `SELECT (SELECT count(*) FROM embedding_models WHERE model_key = ?) + (SELECT count(*) FROM vector_indexes WHERE model_key = ?)
              + (SELECT count(*) FROM adapters WHERE model_key = ?) AS n`,
      )
      .get(newKey, newKey, newKey)!.n;
    if (inUse > 0) return;
    const keys = new Set<string>();
    for (const table of ['embedding_models', 'vector_indexes', 'embeddings', 'adapters', 'index_changes']) {
      // substr, not LIKE: keys may hold % and _.
      const rows = db
        .prepare<[string, string, string], { key: string }>(
          `SELECT DISTINCT model_key AS key FROM ${table} WHERE model_key = ? OR substr(model_key, 1, length(?)) = ?`,
        )
        .all(oldKey, prefix, prefix);
      for (const r of rows) if (derived(r.key)) keys.add(r.key);
    }
    if (!keys.has(oldKey)) return;
    // The index registrations are lifted out while the embeddings move, so the change-log triggers do not
    // log every photo twice; the indexes are rebuilt or renamed afterwards anyway.
    const indexes = db
      .prepare<[], { key: string; pruned: number; saved: number | null; at: number }>(
        'SELECT model_key AS key, pruned_through AS pruned, saved_checkpoint AS saved, registered_at AS at FROM vector_indexes',
      )
      .all()
      .filter((r) => keys.has(r.key));
    const dropIndex = db.prepare<[string]>('DELETE FROM vector_indexes WHERE model_key = ?');
    for (const r of indexes) dropIndex.run(r.key);
    const copyModel = db.prepare<[string, string]>(
      'INSERT INTO embedding_models (model_key, dim, created_at) SELECT ?, dim, created_at FROM embedding_models WHERE model_key = ?',
    );
    const moveEmbeddings = db.prepare<[string, string]>('UPDATE embeddings SET model_key = ? WHERE model_key = ?');
    const dropModel = db.prepare<[string]>('DELETE FROM embedding_models WHERE model_key = ?');
    const moveAdapters = db.prepare<[string, string]>('UPDATE adapters SET model_key = ? WHERE model_key = ?');
    const moveChanges = db.prepare<[string, string]>('UPDATE index_changes SET model_key = ? WHERE model_key = ?');
    const addIndex = db.prepare<[string, number, number | null, number]>(
      'INSERT INTO vector_indexes (model_key, pruned_through, saved_checkpoint, registered_at) VALUES (?, ?, ?, ?)',
    );
    for (const key of keys) {
      const to = rename(key);
      // The embeddings reference embedding_models: the new row exists before they move, the old goes after.
      copyModel.run(to, key);
      moveEmbeddings.run(to, key);
      dropModel.run(key);
      moveAdapters.run(to, key);
      moveChanges.run(to, key);
      moved.set(key, to);
    }
    for (const r of indexes) addIndex.run(rename(r.key), r.pruned, r.saved, r.at);
  })();
  return { moved };
}
