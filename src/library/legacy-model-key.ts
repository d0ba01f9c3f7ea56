/**
 * Libraries created before whole-file model fingerprints stored everything under the sampled key
 * (model-key.ts, legacyModelKeyFor). When such a library opens with the same model, its rows are re-keyed
 * to the new key in one transaction and its index folders are renamed, so nothing is re-encoded, no trained
 * version is orphaned and no index has to be rebuilt.
 */
import { rename } from 'node:fs/promises';
import { keyDir, readState, writeState } from '../index/index-files.js';
import type { ModelSpec } from '../model/model-dir.js';
import type { StoreDatabase } from '../store/database.js';
import { ModelKeysRepo } from '../store/model-keys-repo.js';
import { rekeyModel } from '../store/model-rekey.js';
import { legacyModelKeyFor } from './model-key.js';

/** Returns the keys moved (old → new); empty when the library needed nothing. */
export async function adoptLegacyModelKey(store: StoreDatabase, indexDir: string, spec: ModelSpec, key: string): Promise<Map<string, string>> {
  if (new ModelKeysRepo(store.db).hasEmbeddings(key)) return new Map();
  const legacy = await legacyModelKeyFor(spec);
  const { moved } = rekeyModel(store.db, legacy, key);
  for (const [from, to] of moved) await moveIndexFolder(indexDir, from, to);
  return moved;
}

/**
 * The database is already committed: if anything here fails, the index manager finds no folder (or one
 * whose state names the old key) and rebuilds it from the database, which is slower but loses nothing.
 */
async function moveIndexFolder(indexDir: string, from: string, to: string): Promise<void> {
  const source = keyDir(indexDir, from);
  const target = keyDir(indexDir, to);
  const state = await readState(source);
  if (state === null || 'problem' in state) return;
  try {
    await rename(source, target);
    await writeState(target, { ...state, modelKey: to });
  } catch {
    // Left for the rebuild described above.
  }
}
