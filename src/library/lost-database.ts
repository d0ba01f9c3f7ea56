/**
 * A library whose database lost its content (a 0-byte file, an empty schema after its WAL was lost before
 * the first checkpoint, a deleted file) used to start again as a new, empty library beside the thumbnails
 * and index of the old one, and said nothing. Those files are the sign that there was a library here.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import { databaseContent, type LibraryPaths } from '../store/database.js';

/** Set to 1 to start a new database beside the files of a lost one, on purpose. */
export const REINIT_ENV = 'CLIPDEX_REINIT';

/** Which files of a library are in the data dir: any thumbnail, any index file. */
function leftovers(paths: LibraryPaths): string[] {
  const found: string[] = [];
  const thumbnails = join(paths.dir, 'thumbnails');
  if (existsSync(thumbnails) && readdirSync(thumbnails, { withFileTypes: true }).some((e) => e.isFile() || (e.isDirectory() && readdirSync(join(thumbnails, e.name)).length > 0))) {
    found.push('thumbnails');
  }
  if (existsSync(paths.indexDir) && readdirSync(paths.indexDir, { recursive: true, withFileTypes: true }).some((e) => e.isFile())) {
    found.push('vector index files');
  }
  return found;
}

const STATE: Record<'missing' | 'empty-file' | 'empty-schema', string> = {
  missing: 'is missing',
  'empty-file': 'is empty (0 bytes)',
  'empty-schema': 'is empty (no tables: its write-ahead log was lost or damaged before its first checkpoint)',
};

/** Why the database looks lost, or null when it holds a library or the data dir is genuinely new. */
export function lostDatabaseReason(paths: LibraryPaths): string | null {
  const found = leftovers(paths);
  if (found.length === 0) return null;
  let content: ReturnType<typeof databaseContent>;
  try {
    content = databaseContent(paths.database);
  } catch {
    // A file that cannot be read (damaged, locked, read-only storage) is for the real open to explain.
    return null;
  }
  if (content === 'library') return null;
  return `${paths.database} ${STATE[content]}, but ${paths.dir} holds the ${found.join(' and ')} of a library`;
}

/** Refuses to create a database over a lost one unless CLIPDEX_REINIT=1; nothing is written before this. */
export function refuseLostDatabase(paths: LibraryPaths, env: Readonly<Record<string, string | undefined>> = process.env): void {
  if (env[REINIT_ENV] === '1') return;
  const reason = lostDatabaseReason(paths);
  if (!reason) return;
  throw new ClipdexError(
    'LIBRARY_DATABASE_LOST',
    `${reason}. The database lost its content, so clipdex will not start a new, empty library over it; nothing was changed. ` +
      `The way back: restore library.db (and library.db-wal) from a backup; labels and trained versions lived only there. ` +
      `Or start afresh on purpose: run once with ${REINIT_ENV}=1 (e.g. \`${REINIT_ENV}=1 clipdex index <your folders>\`) and the photos are indexed again ` +
      `(thumbnails are reused), or move ${paths.dir} aside.`,
    { details: { path: paths.database } },
  );
}
