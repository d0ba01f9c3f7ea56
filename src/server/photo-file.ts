/**
 * Opens a photo's original for serving, only when it is still the file that was indexed: inside its root
 * once every symlink is resolved, under a root that still leads to the folder it was pinned to, and with
 * the size and mtime recorded at indexing. The checks are made on the open file descriptor that is then
 * streamed, so a file swapped after the check is not the one sent. No path from the client is ever opened.
 */
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import type { Library } from '../library/library.js';
import { folderIdentity, pinVerdict, retargetedReason } from '../ingest/root-pin.js';
import type { ImageRecord } from '../store/images-repo.js';

export type PhotoFile =
  | { ok: true; handle: FileHandle; size: number; realPath: string }
  | { ok: false; status: number; code: string; message: string };

export async function openPhotoFile(library: Library, image: ImageRecord): Promise<PhotoFile> {
  const gone: PhotoFile = { ok: false, status: 404, code: 'NOT_FOUND', message: `photo ${image.id} is not available` };
  const root = library.roots.get(image.rootId);
  if (!root) return gone;
  const now = await folderIdentity(root.path);
  if (!now) return gone;
  if (root.pinnedRealPath !== null && root.pinnedIdentity !== null) {
    if (pinVerdict({ realPath: root.pinnedRealPath, identity: root.pinnedIdentity }, now) === 'retargeted') {
      return { ok: false, status: 409, code: 'ROOT_RETARGETED', message: retargetedReason(root.path) };
    }
  }
  let real: string;
  try {
    real = await realpath(image.path);
  } catch {
    return gone;
  }
  const rel = relative(now.realPath, real);
  if (!rel || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) return gone;
  let handle: FileHandle;
  try {
    handle = await open(real, 'r');
  } catch {
    return gone;
  }
  const st = await handle.stat().catch(() => null);
  if (!st?.isFile() || st.size !== image.size || st.mtimeMs !== image.mtimeMs) {
    await handle.close().catch(() => undefined);
    if (!st?.isFile()) return gone;
    return {
      ok: false,
      status: 409,
      code: 'FILE_CHANGED',
      message: `photo ${image.id} changed on disk since it was indexed (its size or modification time differ); it is served again once it has been re-indexed`,
    };
  }
  return { ok: true, handle, size: st.size, realPath: real };
}
