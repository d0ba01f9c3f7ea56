import { lstat } from 'node:fs/promises';
import type { FsPath } from './raw-path.js';

/** True when nothing is at `path` any more (the file, or a folder above it, is gone); other errors are not "missing". */
export async function isMissing(path: FsPath): Promise<boolean> {
  try {
    await lstat(path);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR';
  }
}
