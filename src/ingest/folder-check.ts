import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ClipdexError } from '../errors.js';

/** Why a path cannot be watched as a photo folder, as the API and the CLI say it. */
export interface FolderProblem {
  code: 'FOLDER_NOT_FOUND' | 'NOT_A_FOLDER' | 'FOLDER_UNREADABLE';
  /** The HTTP status the API answers with. */
  status: 404 | 400 | 403;
  message: string;
}

/**
 * Checks, before anything is stored or started, that `path` is a folder this process can look into: a
 * missing path or a file would otherwise surface later as a raw `ENOENT …` or as indexing that never starts.
 * Returns null when it is a folder (other failures are left to the ingest engine, which names them).
 */
export async function folderProblem(path: string): Promise<FolderProblem | null> {
  try {
    const st = await stat(path);
    if (st.isDirectory()) return null;
    return { code: 'NOT_A_FOLDER', status: 400, message: st.isFile() ? `${path} is a file, not a folder` : `${path} is not a folder` };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOTDIR: a file stands where a parent folder should be (/photos/a.jpg/more).
    if (code === 'ENOENT' || code === 'ENOTDIR') return { code: 'FOLDER_NOT_FOUND', status: 404, message: `No folder at ${path}` };
    if (code === 'EACCES' || code === 'EPERM') return { code: 'FOLDER_UNREADABLE', status: 403, message: `The folder ${path} cannot be read (permission denied)` };
    return null;
  }
}

/**
 * The CLI's form of the same check: every folder given on the command line must be one, or the command
 * stops with a usage error (exit 2) naming it, before a library opens or a server listens.
 * `label` names the option in the message (`--root: …`), empty for plain arguments.
 */
export async function requireFolders(paths: readonly string[], label = ''): Promise<void> {
  for (const path of paths) {
    const problem = await folderProblem(resolve(path));
    if (problem) throw new ClipdexError('INVALID_ARGUMENT', `${label}${problem.message}`, { details: { path: resolve(path), reason: problem.code } });
  }
}
