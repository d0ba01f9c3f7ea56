/** Image files of a library: where they are, what they are, and how far ingest got with them. */
import { ClipdexError } from '../errors.js';

import { prefixRange } from './path-range.js';
import type { SqlHandle } from './sql-handle.js';

export type ImageStatus = 'pending' | 'indexed' | 'error' | 'offline';
export const IMAGE_STATUSES: readonly ImageStatus[] = ['pending', 'indexed', 'error', 'offline'];

export interface ImageRecord {
  id: number;
  rootId: number;
  /** The display form (the key); see src/ingest/raw-path.ts. */
  path: string;
  /** The path as the file system spells it, when it is not valid UTF-8 (then `path` is not openable). */
  pathBytes: Buffer | null;
  size: number;
  mtimeMs: number;
  contentHash: string | null;
  width: number | null;
  height: number | null;
  format: string | null;
  /** Capture time from EXIF, ms since the epoch. */
  takenAt: number | null;
  cameraMake: string | null;
  cameraModel: string | null;
  status: ImageStatus;
  errorCode: string | null;
  errorMessage: string | null;
  createdAt: number;
  updatedAt: number;
}

/** What ingest knows about a file; omitted optional fields are stored as NULL (an upsert replaces them). */
export interface ImageInput {
  rootId: number;
  path: string;
  pathBytes?: Buffer | null;
  size: number;
  mtimeMs: number;
  contentHash?: string | null;
  width?: number | null;
  height?: number | null;
  format?: string | null;
  takenAt?: number | null;
  cameraMake?: string | null;
  cameraModel?: string | null;
  status?: ImageStatus;
  errorCode?: string | null;
  errorMessage?: string | null;
}

const COLUMNS = `id, root_id AS rootId, path, path_bytes AS pathBytes, size, mtime_ms AS mtimeMs, content_hash AS contentHash, width, height, format,
  taken_at AS takenAt, camera_make AS cameraMake, camera_model AS cameraModel, status, error_code AS errorCode,
  error_message AS errorMessage, created_at AS createdAt, updated_at AS updatedAt`;

/** Rename candidates for a file moved while clipdex was stopped: per swept row, so on images_size_mtime (test/store-query-plans). */
export const IMAGES_BY_SIZE_MTIME_SQL = `SELECT ${COLUMNS} FROM images WHERE size = ? AND mtime_ms = ?`;

type Row = Required<Omit<ImageInput, 'status'>> & { status: ImageStatus; now: number };

export class ImagesRepo {
  private readonly upsertStmt;
  private readonly getStmt;
  private readonly byPathStmt;
  private readonly byHashStmt;
  private readonly byRootStmt;
  private readonly byStatusStmt;
  private readonly statusStmt;
  private readonly renameStmt;
  private readonly removeStmt;
  private readonly countsStmt;
  private readonly bySizeMtimeStmt;
  private readonly inRangeStmt;
  private readonly ofRootPageStmt;
  private readonly moveStmt;
  private readonly touchVersionStmt;
  private readonly availabilityStmt;
  private readonly offlineRootStmt;
  private readonly rootHasPhotosStmt;
  private readonly indexedInRangeStmt;

  constructor(
    db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    this.upsertStmt = db.prepare<Row, ImageRecord>(
      `INSERT INTO images (root_id, path, path_bytes, size, mtime_ms, content_hash, width, height, format, taken_at, camera_make,
         camera_model, status, error_code, error_message, created_at, updated_at)
       VALUES (@rootId, @path, @pathBytes, @size, @mtimeMs, @contentHash, @width, @height, @format, @takenAt, @cameraMake,
         @cameraModel, @status, @errorCode, @errorMessage, @now, @now)
       ON CONFLICT (path) DO UPDATE SET root_id = excluded.root_id, path_bytes = excluded.path_bytes, size = excluded.size, mtime_ms = excluded.mtime_ms,
         content_hash = excluded.content_hash, width = excluded.width, height = excluded.height, format = excluded.format,
         taken_at = excluded.taken_at, camera_make = excluded.camera_make, camera_model = excluded.camera_model,
         status = excluded.status, error_code = excluded.error_code, error_message = excluded.error_message,
         updated_at = excluded.updated_at
       RETURNING ${COLUMNS}`,
    );
    this.getStmt = db.prepare<[number], ImageRecord>(`SELECT ${COLUMNS} FROM images WHERE id = ?`);
    this.byPathStmt = db.prepare<[string], ImageRecord>(`SELECT ${COLUMNS} FROM images WHERE path = ?`);
    this.byHashStmt = db.prepare<[string], ImageRecord>(`SELECT ${COLUMNS} FROM images WHERE content_hash = ? ORDER BY id`);
    this.byRootStmt = db.prepare<[number], ImageRecord>(`SELECT ${COLUMNS} FROM images WHERE root_id = ? ORDER BY path`);
    this.byStatusStmt = db.prepare<[ImageStatus, number, number], ImageRecord>(
      `SELECT ${COLUMNS} FROM images WHERE status = ? AND id > ? ORDER BY id LIMIT ?`,
    );
    this.statusStmt = db.prepare<[ImageStatus, string | null, string | null, number, number]>(
      'UPDATE images SET status = ?, error_code = ?, error_message = ?, updated_at = ? WHERE id = ?',
    );
    this.renameStmt = db.prepare<[string, Buffer | null, number, number, number]>(
      'UPDATE images SET path = ?, path_bytes = ?, root_id = ?, updated_at = ? WHERE id = ?',
    );
    this.removeStmt = db.prepare<[number]>('DELETE FROM images WHERE id = ?');
    this.countsStmt = db.prepare<[], { status: ImageStatus; n: number }>('SELECT status, count(*) AS n FROM images GROUP BY status');
    this.bySizeMtimeStmt = db.prepare<[number, number], ImageRecord>(IMAGES_BY_SIZE_MTIME_SQL);
    this.inRangeStmt = db.prepare<[string, string, number, number], ImageRecord>(
      `SELECT ${COLUMNS} FROM images WHERE path >= ? AND path < ? AND id > ? ORDER BY id LIMIT ?`,
    );
    this.ofRootPageStmt = db.prepare<[number, number, number], ImageRecord>(
      `SELECT ${COLUMNS} FROM images WHERE root_id = ? AND id > ? ORDER BY id LIMIT ?`,
    );
    // A failed file's message names it ("<path>: not an image"): it follows the file, or `status --errors`
    // would show a name that no longer exists. SET reads the old `path`, so the replace needs no second query.
    this.moveStmt = db.prepare<[string, string, Buffer | null, number, number, number, number, number]>(
      `UPDATE images SET error_message = replace(error_message, path, ?), path = ?, path_bytes = ?, root_id = ?, size = ?, mtime_ms = ?, updated_at = ?
         WHERE id = ?`,
    );
    this.touchVersionStmt = db.prepare<[number, number, number, number]>('UPDATE images SET size = ?, mtime_ms = ?, updated_at = ? WHERE id = ?');
    this.availabilityStmt = db.prepare<[string, number, number]>('UPDATE images SET status = ?, updated_at = ? WHERE id = ?');
    this.offlineRootStmt = db.prepare<[number, number]>("UPDATE images SET status = 'offline', updated_at = ? WHERE root_id = ? AND status = 'indexed'");
    this.indexedInRangeStmt = db.prepare<[string, string], { id: number; path: string }>(
      `SELECT id, path FROM images WHERE path >= ? AND path < ? AND status = 'indexed' ORDER BY path`,
    );
    this.rootHasPhotosStmt = db.prepare<[number], { one: number }>("SELECT 1 AS one FROM images WHERE root_id = ? AND status IN ('indexed', 'offline') LIMIT 1");
  }

  /** Inserts or, for a known path, replaces what is known about the file; the id of a known path is kept. */
  upsert(input: ImageInput): ImageRecord {
    if (input.status !== undefined && !IMAGE_STATUSES.includes(input.status)) {
      throw new ClipdexError('INVALID_ARGUMENT', `unknown image status ${JSON.stringify(input.status)}`);
    }
    return this.upsertStmt.get({
      rootId: input.rootId,
      path: input.path,
      pathBytes: input.pathBytes ?? null,
      size: input.size,
      mtimeMs: input.mtimeMs,
      contentHash: input.contentHash ?? null,
      width: input.width ?? null,
      height: input.height ?? null,
      format: input.format ?? null,
      takenAt: input.takenAt ?? null,
      cameraMake: input.cameraMake ?? null,
      cameraModel: input.cameraModel ?? null,
      status: input.status ?? 'pending',
      errorCode: input.errorCode ?? null,
      errorMessage: input.errorMessage ?? null,
      now: this.now(),
    })!;
  }

  get(id: number): ImageRecord | undefined {
    return this.getStmt.get(id);
  }

  getByPath(path: string): ImageRecord | undefined {
    return this.byPathStmt.get(path);
  }

  /** Every file with this content (duplicates share one embedding). */
  findByContentHash(contentHash: string): ImageRecord[] {
    return this.byHashStmt.all(contentHash);
  }

  listByRoot(rootId: number): ImageRecord[] {
    return this.byRootStmt.all(rootId);
  }

  /** A page of images in one state, in id order; pass the last id seen as `afterId` for the next page. */
  listByStatus(status: ImageStatus, limit: number, afterId = 0): ImageRecord[] {
    return this.byStatusStmt.all(status, afterId, limit);
  }

  /** Sets the status; an error code and message go with 'error' and are cleared otherwise. */
  setStatus(id: number, status: ImageStatus, error?: { code: string; message: string }): boolean {
    if (!IMAGE_STATUSES.includes(status)) throw new ClipdexError('INVALID_ARGUMENT', `unknown image status ${JSON.stringify(status)}`);
    const e = status === 'error' ? error : undefined;
    return this.statusStmt.run(status, e?.code ?? null, e?.message ?? null, this.now(), id).changes > 0;
  }

  /** A moved file keeps its id, so its embedding, labels and place in the vector index stay. */
  rename(id: number, newPath: string, rootId: number, newPathBytes: Buffer | null = null): boolean {
    return this.renameStmt.run(newPath, newPathBytes, rootId, this.now(), id).changes > 0;
  }

  remove(id: number): boolean {
    return this.removeStmt.run(id).changes > 0;
  }

  /** Rename candidates: files with this size and mtime (a move keeps both). */
  listBySizeMtime(size: number, mtimeMs: number): ImageRecord[] {
    return this.bySizeMtimeStmt.all(size, mtimeMs);
  }

  /** A page of the images under a folder, in id order. */
  listUnder(dir: string, afterId: number, limit: number): ImageRecord[] {
    const { lo, hi } = prefixRange(dir);
    return this.inRangeStmt.all(lo, hi, afterId, limit);
  }

  /** A page of a root's images, in id order. */
  listByRootPage(rootId: number, afterId: number, limit: number): ImageRecord[] {
    return this.ofRootPageStmt.all(rootId, afterId, limit);
  }

  /**
   * A file moved on disk: the row follows it with the version found there, keeping its id (and so its
   * embedding, labels and thumbnail); an error message naming the old path names the new one.
   */
  move(id: number, newPath: string, rootId: number, size: number, mtimeMs: number, newPathBytes: Buffer | null = null): boolean {
    return this.moveStmt.run(newPath, newPath, newPathBytes, rootId, size, mtimeMs, this.now(), id).changes > 0;
  }

  /** Records a new size/mtime for an image whose content was checked and found unchanged. */
  touchVersion(id: number, size: number, mtimeMs: number): void {
    this.touchVersionStmt.run(size, mtimeMs, this.now(), id);
  }

  /** In or out of search with its root; unlike `setStatus`, an error code and message stay as they are. */
  setAvailability(id: number, status: 'indexed' | 'offline'): void {
    this.availabilityStmt.run(status, this.now(), id);
  }

  /** A root went offline: its indexed images leave search but keep their rows (error rows keep their reason). */
  takeRootOffline(rootId: number): number {
    return this.offlineRootStmt.run(this.now(), rootId).changes;
  }

  /** Ids and paths of the indexed images with a path in [lo, hi), by path. */
  listIndexedInRange(lo: string, hi: string): { id: number; path: string }[] {
    return this.indexedInRangeStmt.all(lo, hi);
  }

  /** True when the database holds photos for the root (the test for a bare mount point). */
  rootHasPhotos(rootId: number): boolean {
    return this.rootHasPhotosStmt.get(rootId) !== undefined;
  }

  countByStatus(): Record<ImageStatus, number> {
    const counts: Record<ImageStatus, number> = { pending: 0, indexed: 0, error: 0, offline: 0 };
    for (const row of this.countsStmt.all()) counts[row.status] = row.n;
    return counts;
  }
}
