/**
 * What reviewing duplicates keeps in SQLite (migration 006): photos hidden from search, photos moved to
 * their root's trash folder with the row they had (so undo restores the same photo, id and all), and the
 * exact copies (same content hash) among the photos a search can find.
 */
import { ClipdexError } from '../errors.js';
import { runInTransaction } from './database.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';

export interface HiddenPhoto {
  id: number;
  path: string;
  hiddenAt: number;
}

export interface TrashRecord {
  id: number;
  imageId: number;
  contentHash: string | null;
  rootPath: string;
  originalPath: string;
  trashPath: string;
  trashedAt: number;
  restoredAt: number | null;
}

const TRASH_COLUMNS = `id, image_id AS imageId, content_hash AS contentHash, root_path AS rootPath, original_path AS originalPath,
  trash_path AS trashPath, trashed_at AS trashedAt, restored_at AS restoredAt`;

/**
 * Every column of an image row, as JSON (path_bytes as hex): what a trashed photo's row was. A column a
 * later migration adds must be added here and in RESTORE_ROW_SQL.
 */
const ROW_JSON = `json_object('id', id, 'root_id', root_id, 'path', path, 'path_bytes', hex(path_bytes), 'size', size,
  'mtime_ms', mtime_ms, 'content_hash', content_hash, 'width', width, 'height', height, 'format', format, 'taken_at', taken_at,
  'camera_make', camera_make, 'camera_model', camera_model, 'status', status, 'error_code', error_code,
  'error_message', error_message, 'created_at', created_at, 'updated_at', updated_at, 'hidden_at', hidden_at)`;

const RESTORE_ROW_SQL = `INSERT INTO images (id, root_id, path, path_bytes, size, mtime_ms, content_hash, width, height, format, taken_at,
    camera_make, camera_model, status, error_code, error_message, created_at, updated_at, hidden_at)
  SELECT r.value ->> '$.id', r.value ->> '$.root_id', r.value ->> '$.path',
    CASE WHEN r.value ->> '$.path_bytes' = '' THEN NULL ELSE unhex(r.value ->> '$.path_bytes') END,
    r.value ->> '$.size', r.value ->> '$.mtime_ms', r.value ->> '$.content_hash', r.value ->> '$.width', r.value ->> '$.height',
    r.value ->> '$.format', r.value ->> '$.taken_at', r.value ->> '$.camera_make', r.value ->> '$.camera_model',
    r.value ->> '$.status', r.value ->> '$.error_code', r.value ->> '$.error_message', r.value ->> '$.created_at', @now,
    r.value ->> '$.hidden_at'
  FROM (SELECT row AS value FROM trashed_photos WHERE id = @trashId) r
  WHERE EXISTS (SELECT 1 FROM roots WHERE id = r.value ->> '$.root_id')`;

/** Postgres's spelling of ROW_JSON: json_build_object, encode(…, 'hex') (NULL stays null, where SQLite's hex gives ''). */
const PG_ROW_JSON = `json_build_object('id', id, 'root_id', root_id, 'path', path, 'path_bytes', encode(path_bytes, 'hex'), 'size', size,
  'mtime_ms', mtime_ms, 'content_hash', content_hash, 'width', width, 'height', height, 'format', format, 'taken_at', taken_at,
  'camera_make', camera_make, 'camera_model', camera_model, 'status', status, 'error_code', error_code,
  'error_message', error_message, 'created_at', created_at, 'updated_at', updated_at, 'hidden_at', hidden_at)::text`;

/** …and of RESTORE_ROW_SQL: JSON's values cast back to the columns' types, which Postgres does not do by itself. */
const PG_RESTORE_ROW_SQL = `INSERT INTO images (id, root_id, path, path_bytes, size, mtime_ms, content_hash, width, height, format, taken_at,
    camera_make, camera_model, status, error_code, error_message, created_at, updated_at, hidden_at)
  SELECT (r.v ->> 'id')::bigint, (r.v ->> 'root_id')::bigint, r.v ->> 'path', decode(NULLIF(r.v ->> 'path_bytes', ''), 'hex'),
    (r.v ->> 'size')::bigint, (r.v ->> 'mtime_ms')::double precision, r.v ->> 'content_hash', (r.v ->> 'width')::bigint,
    (r.v ->> 'height')::bigint, r.v ->> 'format', (r.v ->> 'taken_at')::bigint, r.v ->> 'camera_make', r.v ->> 'camera_model',
    r.v ->> 'status', r.v ->> 'error_code', r.v ->> 'error_message', (r.v ->> 'created_at')::bigint, CAST(@now AS bigint),
    (r.v ->> 'hidden_at')::bigint
  FROM (SELECT "row"::jsonb AS v FROM trashed_photos WHERE id = @trashId) r
  WHERE EXISTS (SELECT 1 FROM roots WHERE id = (r.v ->> 'root_id')::bigint)`;

export class DuplicatesRepo {
  private readonly s;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    const p = <P extends unknown[] | object = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    const pg = dialectOf(db) === 'postgres';
    this.s = {
      // Membership as index_members has it, grouped by content: every group is a set of byte-identical files.
      exactCopies: p<[string], { ids: string }>(
        `SELECT ${pg ? "string_agg(i.id::text, ',')" : 'group_concat(i.id)'} AS ids FROM images i
         WHERE i.status = 'indexed' AND i.hidden_at IS NULL AND i.content_hash IS NOT NULL
           AND EXISTS (SELECT 1 FROM embeddings e WHERE e.content_hash = i.content_hash AND e.model_key = ?)
         GROUP BY i.content_hash HAVING count(*) > 1`,
      ),
      hide: p<[number, number]>('UPDATE images SET hidden_at = ? WHERE id = ? AND hidden_at IS NULL'),
      unhide: p<[number]>('UPDATE images SET hidden_at = NULL WHERE id = ? AND hidden_at IS NOT NULL'),
      isHidden: p<[number], { hidden: number }>('SELECT hidden_at IS NOT NULL AS hidden FROM images WHERE id = ?'),
      hiddenCount: p<[], { n: number }>('SELECT count(*) AS n FROM images WHERE hidden_at IS NOT NULL'),
      hiddenPage: p<[number, number], HiddenPhoto>(
        'SELECT id, path, hidden_at AS hiddenAt FROM images WHERE hidden_at IS NOT NULL ORDER BY hidden_at DESC, id DESC LIMIT ? OFFSET ?',
      ),
      recordTrash: p<{ imageId: number; rootPath: string; trashPath: string; now: number }, { id: number }>(
        `INSERT INTO trashed_photos (image_id, content_hash, root_path, original_path, trash_path, "row", trashed_at)
         SELECT id, content_hash, CAST(@rootPath AS text), path, CAST(@trashPath AS text), ${pg ? PG_ROW_JSON : ROW_JSON}, CAST(@now AS bigint) FROM images WHERE id = @imageId
         RETURNING id`,
      ),
      removeImage: p<[number]>('DELETE FROM images WHERE id = ?'),
      getTrash: p<[number], TrashRecord>(`SELECT ${TRASH_COLUMNS} FROM trashed_photos WHERE id = ?`),
      trashPage: p<[number, number], TrashRecord>(
        `SELECT ${TRASH_COLUMNS} FROM trashed_photos WHERE restored_at IS NULL ORDER BY trashed_at DESC, id DESC LIMIT ? OFFSET ?`,
      ),
      trashCount: p<[], { n: number }>('SELECT count(*) AS n FROM trashed_photos WHERE restored_at IS NULL'),
      restoreRow: p<{ trashId: number; now: number }>(pg ? PG_RESTORE_ROW_SQL : RESTORE_ROW_SQL),
      markRestored: p<[number, number]>('UPDATE trashed_photos SET restored_at = ? WHERE id = ? AND restored_at IS NULL'),
      pathTaken: p<[string], { id: number }>('SELECT id FROM images WHERE path = ?'),
    };
  }

  /** Groups of photo ids that share their content, among the photos searches can find under `modelKey`. */
  exactCopyGroups(modelKey: string): number[][] {
    return this.s.exactCopies.all(modelKey).map((r) => r.ids.split(',').map(Number));
  }

  /** Hides a photo from search; false when it was hidden already (or is not there). */
  hide(id: number): boolean {
    return this.s.hide.run(this.now(), id).changes > 0;
  }

  unhide(id: number): boolean {
    return this.s.unhide.run(id).changes > 0;
  }

  /**
   * Hides (or shows again) each photo of `ids`, in one transaction: an unknown id refuses them all. Returns
   * the ids whose state changed.
   */
  setHidden(ids: readonly number[], hidden: boolean): number[] {
    return runInTransaction(
      this.db,
      () => {
        const missing = ids.filter((id) => this.isHidden(id) === undefined);
        if (missing.length > 0) throw new ClipdexError('NOT_FOUND', `no photo with id ${missing.join(', ')}`, { details: { ids: missing } });
        return [...new Set(ids)].filter((id) => (hidden ? this.hide(id) : this.unhide(id)));
      },
      'immediate',
    );
  }

  /** undefined: no photo with this id. */
  isHidden(id: number): boolean | undefined {
    const row = this.s.isHidden.get(id);
    return row ? row.hidden === 1 : undefined;
  }

  hiddenCount(): number {
    return this.s.hiddenCount.get()!.n;
  }

  /** Hidden photos, most recently hidden first. */
  hidden(limit: number, offset = 0): HiddenPhoto[] {
    return this.s.hiddenPage.all(limit, offset);
  }

  /**
   * A photo leaves for the trash folder: its row is recorded (every column) and deleted, so search, labels
   * (kept by content, migration 003) and the index all see it gone. Call inside the transaction that also
   * moves the file, so a failed move leaves no record. Returns the record's id, undefined for no such photo.
   */
  recordTrashed(imageId: number, rootPath: string, trashPath: string): number | undefined {
    const row = this.s.recordTrash.get({ imageId, rootPath, trashPath, now: this.now() });
    if (!row) return undefined;
    this.s.removeImage.run(imageId);
    return row.id;
  }

  getTrash(id: number): TrashRecord | undefined {
    return this.s.getTrash.get(id);
  }

  /** Photos in the trash (not restored), most recent first. */
  trashed(limit: number, offset = 0): TrashRecord[] {
    return this.s.trashPage.all(limit, offset);
  }

  trashCount(): number {
    return this.s.trashCount.get()!.n;
  }

  /** The id of the row at `path`, if any (a restore must not meet one). */
  imageAtPath(path: string): number | undefined {
    return this.s.pathTaken.get(path)?.id;
  }

  /**
   * Puts a trashed photo's row back as it was (same id; its labels attach again by content) and marks the
   * record restored. false when its root is no longer watched: the file goes back, the library does not
   * take it in again. Call inside the transaction that moves the file back.
   */
  restoreRow(trashId: number): boolean {
    const restored = this.s.restoreRow.run({ trashId, now: this.now() }).changes > 0;
    this.s.markRestored.run(this.now(), trashId);
    return restored;
  }
}
