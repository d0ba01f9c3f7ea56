/**
 * Write failures of the storage under a library (a full disk, a read-only or immutable file system, a failing
 * disk) as one error a person can act on. Node reports them as errno codes and SQLite as its own, and both
 * read badly on their own: "ENOSPC: no space left on device, write", "database or disk is full", "disk I/O
 * error" say neither where nor what to do, and they reached the status page and the API as INTERNAL.
 */
import { sep } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';

const FULL = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/**
 * The storage error `err` stands for, or null when it is something else (already a ClipdexError, a photo
 * that cannot be read, a bug). `libraryDir`, when given, names the folder in messages and lets permission
 * errors (EACCES, EPERM: chmod, chattr +i) on files inside it count as "read-only"; outside it they are
 * not the library's storage (a photo folder, say) and are left alone.
 */
export function storageError(err: unknown, libraryDir?: string): ClipdexError | null {
  if (err instanceof ClipdexError || typeof err !== 'object' || err === null) return null;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return null;
  const path = (err as { path?: unknown }).path;
  const where = typeof path === 'string' ? path : (libraryDir ?? 'the library folder');
  const inLibrary = typeof path === 'string' && libraryDir !== undefined && (path === libraryDir || path.startsWith(libraryDir + sep));
  const details = { path: where, cause: code };
  const sqlite = code.startsWith('SQLITE_');
  const what = sqlite ? `the library database${libraryDir ? ` in ${libraryDir}` : ''}` : where;
  if (FULL.has(code)) {
    return new ClipdexError(
      'DISK_FULL',
      `no space left on the disk holding ${what} (${errorMessage(err)}): free some space there; indexing waits and resumes by itself, searches keep working`,
      { cause: err, details },
    );
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS' || ((code === 'EACCES' || code === 'EPERM') && inLibrary)) {
    // SQLite opens a file it may not write read-only, and the connection stays so: that case needs a restart.
    const then = code.startsWith('SQLITE_READONLY') ? ', then restart clipdex (it opened the database read-only)' : '';
    return new ClipdexError(
      'STORAGE_READ_ONLY',
      `cannot write to ${what}: it is read-only (${errorMessage(err)}); make it writable again (file and folder permissions, chattr -i, a read-only mount)${then} — searches keep working, indexing waits`,
      { cause: err, details },
    );
  }
  if (code.startsWith('SQLITE_IOERR') || code === 'EIO') {
    return new ClipdexError(
      'STORAGE_FAILED',
      `cannot write to ${what}: the disk reported an I/O error (${errorMessage(err)}); it may be read-only, immutable or failing — searches keep working, indexing waits`,
      { cause: err, details },
    );
  }
  return null;
}
