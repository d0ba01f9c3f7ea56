/**
 * Moving a photo to its root's trash folder (`<root>/.clipdex-trash/<its path inside the root>`) and back.
 * clipdex never deletes a photo: the trash is a folder the user empties, or not, as they like.
 *
 * - A move is a hard link then an unlink of the old name, inside the same file system: the destination is
 *   never overwritten (link refuses an existing name, and a taken name gets " (2)", " (3)"…), the file keeps
 *   its inode, bytes and mtime. Where hard links are not supported, a rename after a check.
 * - The database and the file move together: the record and the row's removal (or its return) are written
 *   in a transaction that moves the file last, so a failed move rolls the record back; a commit that fails
 *   after the move moves the file back. Either way the photo is where it was, and the error says why.
 * - The trash folder is dot-named (file-rules.ts): the scanner and the watcher never index it.
 */
import { existsSync, linkSync, mkdirSync, renameSync, unlinkSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import type { StoreDatabase } from '../store/database.js';
import { DuplicatesRepo, type TrashRecord } from '../store/duplicates-repo.js';
import { ImagesRepo } from '../store/images-repo.js';
import { RootsRepo } from '../store/roots-repo.js';
import { relativeToRoot, TRASH_DIR_NAME } from './file-rules.js';

export interface TrashedPhoto {
  trashId: number;
  imageId: number;
  originalPath: string;
  trashPath: string;
}

export interface RestoredPhoto {
  trashId: number;
  imageId: number;
  path: string;
  /** false when the photo's folder is no longer watched: the file is back, the library did not take it in. */
  inLibrary: boolean;
}

const MAX_NAME_TRIES = 1000;

/** Why a move failed, in words a person can act on. */
function moveError(err: unknown, from: string, to: string): ClipdexError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const why =
    code === 'EXDEV'
      ? 'they are on different file systems (the trash folder is at the top of the watched folder)'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'the file system is read-only'
          : code === 'ENOENT'
            ? 'the file is not there any more'
            : errorMessage(err);
  return new ClipdexError('FILE_MOVE_FAILED', `cannot move ${from} to ${to}: ${why}; nothing was changed`, { cause: err, details: { from, to, errno: code } });
}

/** Moves `from` to `to` unless `to` exists; false when it does (nothing moved). */
function moveNoClobber(from: string, to: string): boolean {
  try {
    linkSync(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // File systems without hard links (FAT, some network shares): a rename, after looking.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'ENOSYS') {
      if (existsSync(to)) return false;
      renameSync(from, to);
      return true;
    }
    throw err;
  }
  try {
    unlinkSync(from);
  } catch (err) {
    // Both names stay otherwise: take the new one away again, so the photo is only where it was.
    unlinkSync(to);
    throw err;
  }
  return true;
}

/** `a.jpg`, `a (2).jpg`, `a (3).jpg`… */
function candidateName(path: string, n: number): string {
  if (n === 1) return path;
  const ext = extname(path);
  return join(dirname(path), `${basename(path, ext)} (${n})${ext}`);
}

export class PhotoTrash {
  private readonly repo: DuplicatesRepo;
  private readonly images: ImagesRepo;
  private readonly roots: RootsRepo;

  constructor(private readonly store: StoreDatabase) {
    this.repo = new DuplicatesRepo(store.db);
    this.images = new ImagesRepo(store.db);
    this.roots = new RootsRepo(store.db);
  }

  /** The photo's file goes to its root's trash folder, its row out of the library (kept for undo). */
  trash(imageId: number): TrashedPhoto {
    const image = this.images.get(imageId);
    if (!image) throw new ClipdexError('NOT_FOUND', `no photo with id ${imageId}`, { details: { id: imageId } });
    if (image.pathBytes) {
      throw new ClipdexError('FILE_MOVE_FAILED', `${image.path} has a name that is not UTF-8, which the trash does not handle; hide it instead. Nothing was changed.`, { details: { id: imageId } });
    }
    const root = this.roots.get(image.rootId);
    if (!root) throw new ClipdexError('NOT_FOUND', `photo ${imageId} belongs to no watched folder`, { details: { id: imageId } });
    if (root.state === 'offline') throw new ClipdexError('FILE_MOVE_FAILED', `the folder of ${image.path} (${root.path}) is offline; nothing was changed`, { details: { id: imageId } });
    const rel = relativeToRoot(root.path, image.path);
    if (rel === null || rel === '') throw new ClipdexError('FILE_MOVE_FAILED', `${image.path} is not inside its watched folder ${root.path}; nothing was changed`, { details: { id: imageId } });
    if (!existsSync(image.path)) throw new ClipdexError('FILE_NOT_FOUND', `${image.path} is not there any more; nothing was changed`, { details: { id: imageId } });
    const wanted = join(root.path, TRASH_DIR_NAME, ...rel.split('/'));
    try {
      mkdirSync(dirname(wanted), { recursive: true });
    } catch (err) {
      throw moveError(err, image.path, wanted);
    }
    return this.moveToTrash(imageId, image.path, root.path, wanted);
  }

  /** Each name tried in a transaction of its own: a taken name leaves nothing behind. */
  private moveToTrash(imageId: number, from: string, rootPath: string, wanted: string): TrashedPhoto {
    for (let n = 1; n <= MAX_NAME_TRIES; n++) {
      const to = candidateName(wanted, n);
      if (existsSync(to)) continue;
      let moved: string | null = null;
      try {
        const trashId = this.store.transaction(() => {
          const id = this.repo.recordTrashed(imageId, rootPath, to);
          if (id === undefined) throw new ClipdexError('NOT_FOUND', `no photo with id ${imageId}`, { details: { id: imageId } });
          // Last: when it throws, the record and the row's removal roll back with it.
          if (!moveNoClobber(from, to)) throw new NameTaken();
          moved = to;
          return id;
        }, 'immediate');
        return { trashId, imageId, originalPath: from, trashPath: to };
      } catch (err) {
        if (err instanceof NameTaken) continue;
        throw this.undoMove(err, moved, from);
      }
    }
    throw new ClipdexError('FILE_MOVE_FAILED', `no free name for ${wanted} after ${MAX_NAME_TRIES} tries; nothing was changed`);
  }

  /** A failure after the file moved (the commit): the file goes back, and the error says what happened. */
  private undoMove(err: unknown, moved: string | null, original: string): unknown {
    if (moved !== null) {
      try {
        moveNoClobber(moved, original);
      } catch (back) {
        return new ClipdexError('FILE_MOVE_FAILED', `the library could not record the move (${errorMessage(err)}) and ${original} could not be moved back from ${moved} (${errorMessage(back)}): the photo is there`, { cause: err });
      }
    }
    if (err instanceof ClipdexError) return err;
    const code = (err as NodeJS.ErrnoException | null)?.code;
    return typeof code === 'string' && code.startsWith('E') ? moveError(err, original, moved ?? 'the trash folder') : err;
  }

  /** Undo: the file goes back to where it was and its row with it (same id, labels attached again). */
  restore(trashId: number): RestoredPhoto {
    const record = this.repo.getTrash(trashId);
    if (!record) throw new ClipdexError('NOT_FOUND', `nothing in the trash with id ${trashId}`, { details: { trashId } });
    if (record.restoredAt !== null) throw new ClipdexError('INVALID_ARGUMENT', `${record.originalPath} was already put back`, { details: { trashId } });
    if (!existsSync(record.trashPath)) {
      throw new ClipdexError('FILE_NOT_FOUND', `${record.trashPath} is not in the trash folder any more (moved or deleted outside clipdex); nothing was changed`, { details: { trashId } });
    }
    if (existsSync(record.originalPath) || this.repo.imageAtPath(record.originalPath) !== undefined) {
      throw new ClipdexError('FILE_MOVE_FAILED', `another file is at ${record.originalPath} now; move it away first. Nothing was changed`, { details: { trashId } });
    }
    try {
      mkdirSync(dirname(record.originalPath), { recursive: true });
    } catch (err) {
      throw moveError(err, record.trashPath, record.originalPath);
    }
    let moved = false;
    try {
      const inLibrary = this.store.transaction(() => {
        const restored = this.repo.restoreRow(trashId);
        if (!moveNoClobber(record.trashPath, record.originalPath)) {
          throw new ClipdexError('FILE_MOVE_FAILED', `another file is at ${record.originalPath} now; move it away first. Nothing was changed`, { details: { trashId } });
        }
        moved = true;
        return restored;
      }, 'immediate');
      return { trashId, imageId: record.imageId, path: record.originalPath, inLibrary };
    } catch (err) {
      if (moved) {
        try {
          moveNoClobber(record.originalPath, record.trashPath);
        } catch {
          // The file is at its original place and the record still says trash: the next scan takes it in.
        }
      }
      if (err instanceof ClipdexError) throw err;
      const code = (err as NodeJS.ErrnoException | null)?.code;
      throw typeof code === 'string' && code.startsWith('E') ? moveError(err, record.trashPath, record.originalPath) : err;
    }
  }

  list(limit = 200, offset = 0): TrashRecord[] {
    return this.repo.trashed(limit, offset);
  }
}

class NameTaken extends Error {}
