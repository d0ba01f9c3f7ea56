/**
 * A root stands for the folder the user chose, not for whatever its path leads to later. A root given as a
 * symlink (or under one) can be pointed elsewhere after indexing; the stored photo paths would then name the
 * new target's files. So each root pins its real path and device:inode, and a root whose path now leads to
 * another folder goes offline until the user confirms the new one.
 */
import { opendir, realpath, stat } from 'node:fs/promises';
import type { RootRecord, RootsRepo } from '../store/roots-repo.js';

export interface FolderIdentity {
  realPath: string;
  /** "dev:ino" */
  identity: string;
  dev: number;
  ino: number;
}

/** The folder a path leads to now; null when it leads to no folder. */
export async function folderIdentity(path: string): Promise<FolderIdentity | null> {
  try {
    const real = await realpath(path);
    const st = await stat(real);
    if (!st.isDirectory()) return null;
    return { realPath: real, identity: `${st.dev}:${st.ino}`, dev: st.dev, ino: st.ino };
  } catch {
    return null;
  }
}

export type PinVerdict = 'same' | 'repin' | 'retargeted';

/**
 * Is `now` still the pinned folder? Tolerated, with the pin updated ('repin'): the same device and inode
 * reached by another real path (a parent renamed and a link left behind), and any folder at the pinned real
 * path itself — a folder deleted and restored from a backup, a share or drive remounted (new device number,
 * often new inodes): that is the place the user chose, and what it holds is inside it. Only a path that now
 * leads to another real path, as a retargeted symlink does, is another folder.
 */
export function pinVerdict(pinned: { realPath: string; identity: string }, now: FolderIdentity): PinVerdict {
  if (pinned.identity === now.identity) return pinned.realPath === now.realPath ? 'same' : 'repin';
  if (pinned.realPath === now.realPath) return 'repin';
  return 'retargeted';
}

export function retargetedReason(path: string): string {
  return `the folder at ${path} is now a different folder (it was retargeted); confirm to use the new one`;
}

export type PinCheck = { ok: true } | { ok: false; reason: string } | { ok: null };

/**
 * Checks a root against its pin, recording the pin when the root has none yet (roots added before pins
 * existed) and following the tolerated changes. `{ ok: null }`: the path leads to no folder now, or to an
 * empty one at the pinned real path (an unmounted share's mount point); those are the scan's to judge.
 */
export async function checkRootPin(roots: RootsRepo, root: RootRecord): Promise<PinCheck> {
  const now = await folderIdentity(root.path);
  if (!now) return { ok: null };
  if (root.pinnedRealPath === null || root.pinnedIdentity === null) {
    roots.pin(root.id, now.realPath, now.identity);
    return { ok: true };
  }
  const verdict = pinVerdict({ realPath: root.pinnedRealPath, identity: root.pinnedIdentity }, now);
  if (verdict === 'same') return { ok: true };
  if (verdict === 'repin') {
    // An empty folder where the pinned one was is an unmounted share's mount point: the scan judges that,
    // and the pin waits for the share to come back.
    if (now.realPath === root.pinnedRealPath && (await isEmpty(now.realPath))) return { ok: null };
    roots.pin(root.id, now.realPath, now.identity);
    return { ok: true };
  }
  return { ok: false, reason: retargetedReason(root.path) };
}

async function isEmpty(dir: string): Promise<boolean> {
  try {
    const handle = await opendir(dir);
    const first = await handle.read();
    await handle.close();
    return first === null;
  } catch {
    return false;
  }
}
