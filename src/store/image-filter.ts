/**
 * Search filters resolved in SQLite: folder prefix, capture-time range, formats. Results are index
 * members only (indexed images not hidden, with an embedding under the model key), so counts match what can
 * be found.
 */
import { sep } from 'node:path';
import type Database from 'better-sqlite3';
import { ClipdexError } from '../errors.js';

export interface ImageFilter {
  /** Images anywhere under this folder (absolute path as stored). */
  folder?: string;
  /** Capture time (EXIF), ms since the epoch: from inclusive, to exclusive. Images without one never match. */
  takenFrom?: number;
  takenTo?: number;
  /** e.g. ['jpeg', 'png'], compared case-insensitively. */
  formats?: readonly string[];
}

export interface FilteredMember {
  imageId: number;
  vector: Buffer;
}

type Params = { key: string; lo?: string; hi?: string; from?: number; to?: number; formats?: string };

export type BrowseOrder = 'date-desc' | 'date-asc' | 'path';

/** True when the filter constrains nothing. */
export function isEmptyFilter(filter: ImageFilter | undefined): boolean {
  return !filter || (filter.folder === undefined && filter.takenFrom === undefined && filter.takenTo === undefined && filter.formats === undefined);
}

export class ImageFilterQueries {
  // One prepared statement per combination of present clauses (at most 8 × 3): each can use its indexes.
  private readonly cache = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  count(modelKey: string, filter: ImageFilter): number {
    const { sql, params } = this.build('count', modelKey, filter);
    return (this.statement(sql).get(params) as { n: number }).n;
  }

  /** Matching member ids, in no particular order. */
  ids(modelKey: string, filter: ImageFilter): number[] {
    const { sql, params } = this.build('ids', modelKey, filter);
    return (this.statement(sql).all(params) as { imageId: number }[]).map((r) => r.imageId);
  }

  /** Matching members with their vectors, in no particular order. */
  members(modelKey: string, filter: ImageFilter): FilteredMember[] {
    const { sql, params } = this.build('members', modelKey, filter);
    return this.statement(sql).all(params) as FilteredMember[];
  }

  /**
   * A page of the matching members' ids in a stable order (`date-desc`: newest capture first, photos
   * without a date last; `date-asc`; `path`), with how many match in all: browsing the library.
   */
  page(modelKey: string, filter: ImageFilter, order: BrowseOrder, limit: number, offset: number): { ids: number[]; total: number } {
    const { sql, params } = this.build('ids', modelKey, filter);
    const orderBy = { 'date-desc': 'i.taken_at IS NULL, i.taken_at DESC, i.id DESC', 'date-asc': 'i.taken_at IS NULL, i.taken_at ASC, i.id ASC', path: 'i.path' }[order];
    const rows = this.statement(`${sql} ORDER BY ${orderBy} LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as { imageId: number }[];
    return { ids: rows.map((r) => r.imageId), total: this.count(modelKey, filter) };
  }

  private statement(sql: string): Database.Statement {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.cache.set(sql, stmt);
    }
    return stmt;
  }

  private build(what: 'count' | 'ids' | 'members', modelKey: string, filter: ImageFilter): { sql: string; params: Params } {
    const params: Params = { key: modelKey };
    // Same membership as the index_members view, written out so the plan drives from the filter's own index
    // (path, taken_at or lower(format)): CROSS JOIN fixes images as the outer loop (otherwise SQLite may scan
    // every embedding of the model first: 100× slower on 100k images) and the unary + keeps it off the
    // status index, which matches nearly every row.
    // Hidden photos (migration 006) are no members: no search, similar or page of the library shows them.
    const where = ["+i.status = 'indexed'", 'i.hidden_at IS NULL'];
    if (filter.folder !== undefined) {
      if (typeof filter.folder !== 'string' || filter.folder === '') throw new ClipdexError('INVALID_ARGUMENT', 'folder filter must be a non-empty path');
      const range = folderPathRange(filter.folder);
      params.lo = range.lo;
      params.hi = range.hi;
      where.push('i.path >= @lo AND i.path < @hi');
    }
    if (filter.takenFrom !== undefined) {
      params.from = finite(filter.takenFrom, 'takenFrom');
      where.push('i.taken_at >= @from');
    }
    if (filter.takenTo !== undefined) {
      params.to = finite(filter.takenTo, 'takenTo');
      where.push('i.taken_at < @to');
    }
    if (filter.formats !== undefined) {
      if (!Array.isArray(filter.formats) || filter.formats.some((f) => typeof f !== 'string' || f === '')) {
        throw new ClipdexError('INVALID_ARGUMENT', 'formats filter must be a list of format names');
      }
      // One statement for any number of formats: the list travels as a JSON array.
      params.formats = JSON.stringify(filter.formats.map((f) => f.toLowerCase()));
      where.push('lower(i.format) IN (SELECT value FROM json_each(@formats))');
    }
    const select = what === 'count' ? 'count(*) AS n' : what === 'ids' ? 'i.id AS imageId' : 'i.id AS imageId, e.vector AS vector';
    const sql = `SELECT ${select} FROM images i CROSS JOIN embeddings e ON e.content_hash = i.content_hash AND e.model_key = @key WHERE ${where.join(' AND ')}`;
    return { sql, params };
  }
}

function finite(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ClipdexError('INVALID_ARGUMENT', `${name} must be a finite number (ms since the epoch)`);
  return value;
}

/**
 * Every path under a folder as a range on the UNIQUE(path) index: paths starting with "<folder>/" sort in
 * [prefix, prefix with its last character + 1).
 */
export function folderPathRange(folder: string): { lo: string; hi: string } {
  const prefix = folder.endsWith(sep) || folder.endsWith('/') ? folder : folder + sep;
  return { lo: prefix, hi: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1) };
}
