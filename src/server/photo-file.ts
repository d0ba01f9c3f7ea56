/**
 * Opens a photo's original for serving, only when it is still the file that was indexed: inside its root
 * once every symlink is resolved, under a root that still leads to the folder it was pinned to, and with
 * the size and mtime recorded at indexing. The checks are made on the open file descriptor that is then
 * streamed, so a file swapped after the check is not the one sent. No path from the client is ever opened.
 */
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import type { Library } from '../library/library.js';
import { displayName, fsPathOf } from '../ingest/raw-path.js';
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
  const at = fsPathOf(image);
  let real: string;
  let realAt: string | Buffer;
  try {
    if (typeof at === 'string') realAt = real = await realpath(at);
    else {
      // A name that is not UTF-8 (raw-path.ts): resolved and opened as bytes; `real` is for display only.
      realAt = await realpath(at, { encoding: 'buffer' });
      real = splitBytes(realAt).map(displayName).join(sep);
    }
  } catch {
    return gone;
  }
  const rel = relative(now.realPath, real);
  if (!rel || rel.startsWith('..') || isAbsolute(rel) || rel.split(sep).includes('..')) return gone;
  // The display form of a byte path is checked above; the bytes themselves must lie under the root too.
  if (typeof realAt !== 'string' && !realAt.subarray(0, Buffer.byteLength(now.realPath) + 1).equals(Buffer.from(now.realPath + sep))) return gone;
  let handle: FileHandle;
  try {
    handle = await open(realAt, 'r');
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

function splitBytes(path: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let from = 0;
  for (let i = path.indexOf(0x2f); i !== -1; i = path.indexOf(0x2f, from)) {
    parts.push(path.subarray(from, i));
    from = i + 1;
  }
  parts.push(path.subarray(from));
  return parts;
}
