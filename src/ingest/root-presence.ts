/**
 * Is a root's folder there? The one place that decides it: the watcher asks before it passes deletions on,
 * the root supervisor before it watches a root and while it looks for an offline root to come back.
 *
 * Two questions, answered differently on purpose:
 * - Is it still the folder being watched (`isSameFolder`)? Same device and inode, nothing less: an unmounted
 *   share leaves its empty mount point behind (another folder), and chokidar reports every file under it as
 *   deleted. Those deletions must not reach the database.
 * - Is it there (`isRootThere`)? The folder scanned before (its stored identity), or at least one with
 *   something in it: an empty folder in its place is taken for a bare mount point. Device and inode cannot
 *   decide alone: a remounted share may get another device number.
 */
import { opendir, stat } from 'node:fs/promises';
import { identityKey } from './ingest-store.js';

export interface FolderIdentityNumbers {
  dev: number;
  ino: number;
}

/** True while `path` is the very folder with this device and inode, and can still be read. */
export async function isSameFolder(path: string, identity: FolderIdentityNumbers): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isDirectory() || st.dev !== identity.dev || st.ino !== identity.ino) return false;
    // A folder that can no longer be listed cannot be told from a vanished one: its deletions wait too.
    await (await opendir(path)).close();
    return true;
  } catch {
    return false;
  }
}

/** The folder at `path` is the one last scanned (`identity`, "dev:ino"; null: none known yet) or is not empty. */
export async function isRootThere(path: string, identity: string | null): Promise<boolean> {
  try {
    const st = await stat(path);
    if (!st.isDirectory()) return false;
    if (identity === null || identity === identityKey(st)) return true;
    const dir = await opendir(path);
    const first = await dir.read();
    await dir.close();
    return first !== null;
  } catch {
    return false;
  }
}
