/**
 * Search filters resolved in SQLite: folder prefix, capture-time range, formats. Results are index
 * members only (indexed images not hidden, with an embedding under the model key), so counts match what can
 * be found.
 */
import { sep } from 'node:path';
import { dialectOf, type SqlDialect, type SqlHandle, type SqlStatement } from './sql-handle.js';
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

type Params = { key: string } & Record<string, unknown>;

export type BrowseOrder = 'date-desc' | 'date-asc' | 'path';

/** True when the filter constrains nothing. */
export function isEmptyFilter(filter: ImageFilter | undefined): boolean {
  return !filter || (filter.folder === undefined && filter.takenFrom === undefined && filter.takenTo === undefined && filter.formats === undefined);
}

export class ImageFilterQueries {
  // One prepared statement per combination of present clauses (at most 8 × 3): each can use its indexes.
  private readonly cache = new Map<string, SqlStatement>();

  constructor(private readonly db: SqlHandle) {}

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
    // Photos without a capture date go last, newest file first: the order the timeline pages by (timelinePage).
    const orderBy = { 'date-desc': `i.taken_at IS NULL, i.taken_at DESC, ${UNDATED_FILE_TIME} DESC, i.id DESC`, 'date-asc': `i.taken_at IS NULL, i.taken_at ASC, ${UNDATED_FILE_TIME} ASC, i.id ASC`, path: 'i.path' }[order];
    const rows = this.statement(`${sql} ORDER BY ${orderBy} LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as { imageId: number }[];
    return { ids: rows.map((r) => r.imageId), total: this.count(modelKey, filter) };
  }

  // ---- the timeline: the library newest first, a page after a cursor (keyset paging, no OFFSET) ----

  /**
   * The page after `after` (null: from the newest) in date-desc order: photos with a capture date by it,
   * newest first, then photos without one by their file's time. Two statements, one per part, each walking
   * its own order: the dated part reads images_taken_at backwards from the cursor and stops after `limit`
   * rows, whatever the library's size; the undated part finds its rows through the same index
   * (taken_at IS NULL) and sorts only those (an index on mtime_ms would need a migration).
   */
  timelinePage(modelKey: string, filter: ImageFilter, after: TimelineCursor | null, limit: number): { rows: TimelineRow[]; next: TimelineCursor | null } {
    const rows: TimelineRow[] = [];
    if (after === null || after.part === 'dated') {
      const { sql, params } = this.build('timeline', modelKey, filter);
      const cursor = after === null ? '' : ' AND i.taken_at <= @at AND (i.taken_at < @at OR i.id < @id)';
      const dated = this.statement(`${sql} AND i.taken_at IS NOT NULL${cursor} ORDER BY i.taken_at DESC, i.id DESC LIMIT @limit`).all({
        ...params,
        ...(after ? { at: after.at, id: after.id } : {}),
        limit: limit + 1,
      }) as TimelineRow[];
      if (dated.length > limit) {
        const last = dated[limit - 1]!;
        return { rows: dated.slice(0, limit), next: { part: 'dated', at: last.takenAt!, id: last.imageId } };
      }
      rows.push(...dated);
    }
    const room = limit - rows.length;
    const from = after?.part === 'undated' ? after : null;
    const { sql, params } = this.build('timeline', modelKey, filter);
    const cursor = from?.at === undefined ? '' : ' AND i.mtime_ms <= @at AND (i.mtime_ms < @at OR i.id < @id)';
    const undated = this.statement(`${sql} AND i.taken_at IS NULL${cursor} ORDER BY i.mtime_ms DESC, i.id DESC LIMIT @limit`).all({
      ...params,
      ...(from?.at !== undefined ? { at: from.at, id: from.id ?? 0 } : {}),
      limit: room + 1,
    }) as TimelineRow[];
    rows.push(...undated.slice(0, room));
    if (undated.length <= room) return { rows, next: null };
    const last = rows[rows.length - 1];
    // A page that ends exactly where the dated photos do continues at the undated ones' start.
    return { rows, next: last && last.takenAt === null ? { part: 'undated', at: last.mtimeMs, id: last.imageId } : { part: 'undated' } };
  }

  /** Photos per month (UTC), newest first: dated ones by capture date, then undated ones by file time. */
  timelineMonths(modelKey: string, filter: ImageFilter): TimelineMonth[] {
    const { sql, params } = this.build('months', modelKey, filter);
    const rows = this.statement(`${sql} GROUP BY undated, month ORDER BY undated, month DESC`).all(params) as { undated: number; month: string; n: number }[];
    return rows.map((r) => ({ undated: r.undated === 1, month: r.month, count: r.n }));
  }

  private statement(sql: string): SqlStatement {
    let stmt = this.cache.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.cache.set(sql, stmt);
    }
    return stmt;
  }

  private build(what: keyof typeof SELECT, modelKey: string, filter: ImageFilter): { sql: string; params: Params } {
    const params: Params = { key: modelKey };
    // Same membership as the index_members view, written out so the plan drives from the filter's own index
    // (path, taken_at or lower(format)): CROSS JOIN fixes images as the outer loop (otherwise SQLite may scan
    // every embedding of the model first: 100× slower on 100k images) and the unary + keeps it off the
    // status index, which matches nearly every row.
    // Hidden photos (migration 006) are no members: no search, similar or page of the library shows them.
    // Postgres plans by statistics and has neither the join-order hint nor unary + on text.
    const dialect = dialectOf(this.db);
    const pg = dialect === 'postgres';
    const clauses = filterClauses(filter, dialect, (name, value) => {
      params[name] = value;
      return `@${name}`;
    });
    const where = [pg ? MEMBER_SQL : `+${MEMBER_SQL}`, ...clauses];
    const select = what === 'months' && pg ? PG_MONTHS : SELECT[what];
    const sql = `SELECT ${select} FROM images i ${pg ? 'JOIN' : 'CROSS JOIN'} embeddings e ON e.content_hash = i.content_hash AND e.model_key = @key WHERE ${where.join(' AND ')}`;
    return { sql, params };
  }
}

/** Where a timeline page starts: after this photo, or (undated, no photo) at the newest photo without a date. */
export type TimelineCursor = { part: 'dated'; at: number; id: number } | { part: 'undated'; at?: number; id?: number };

export interface TimelineRow {
  imageId: number;
  takenAt: number | null;
  mtimeMs: number;
}

export interface TimelineMonth {
  /** True for photos without a capture date, counted by their file's time. */
  undated: boolean;
  /** YYYY-MM (UTC). */
  month: string;
  count: number;
}

const UNDATED_FILE_TIME = 'CASE WHEN i.taken_at IS NULL THEN i.mtime_ms END';

const SELECT = {
  count: 'count(*) AS n',
  ids: 'i.id AS imageId',
  members: 'i.id AS imageId, e.vector AS vector',
  timeline: 'i.id AS imageId, i.taken_at AS takenAt, i.mtime_ms AS mtimeMs',
  // Months in UTC: a capture date without a zone is stored as its wall clock read as UTC (ingest/exif-meta),
  // so UTC gives back the camera's own calendar. A photo without one counts by its file's time.
  months: "i.taken_at IS NULL AS undated, strftime('%Y-%m', coalesce(i.taken_at, i.mtime_ms) / 1000.0, 'unixepoch') AS month, count(*) AS n",
} as const;

const PG_MONTHS =
  "i.taken_at IS NULL AS undated, to_char(to_timestamp(coalesce(i.taken_at, i.mtime_ms) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM') AS month, count(*) AS n";

/** Which images are searchable members: indexed, and not hidden from search (migration 006). */
export const MEMBER_SQL = "i.status = 'indexed' AND i.hidden_at IS NULL";

/**
 * A filter's conditions on `images i`, each value bound through `param` (which returns its placeholder):
 * one definition of what folder, dates and formats mean, for the filter queries here and the pgvector search.
 * A folder is a range on the path index; formats compare case-insensitively, as one parameter whatever
 * their number (a JSON array on SQLite, an array on Postgres).
 */
export function filterClauses(filter: ImageFilter, dialect: SqlDialect, param: (name: string, value: unknown) => string): string[] {
  const where: string[] = [];
  if (filter.folder !== undefined) {
    if (typeof filter.folder !== 'string' || filter.folder === '') throw new ClipdexError('INVALID_ARGUMENT', 'folder filter must be a non-empty path');
    const range = folderPathRange(filter.folder);
    where.push(`i.path >= ${param('lo', range.lo)} AND i.path < ${param('hi', range.hi)}`);
  }
  if (filter.takenFrom !== undefined) where.push(`i.taken_at >= ${param('from', finite(filter.takenFrom, 'takenFrom'))}`);
  if (filter.takenTo !== undefined) where.push(`i.taken_at < ${param('to', finite(filter.takenTo, 'takenTo'))}`);
  if (filter.formats !== undefined) {
    if (!Array.isArray(filter.formats) || filter.formats.some((f) => typeof f !== 'string' || f === '')) {
      throw new ClipdexError('INVALID_ARGUMENT', 'formats filter must be a list of format names');
    }
    const formats = filter.formats.map((f) => f.toLowerCase());
    where.push(
      dialect === 'postgres'
        ? `lower(i.format) = ANY(CAST(${param('formats', formats)} AS text[]))`
        : `lower(i.format) IN (SELECT value FROM json_each(${param('formats', JSON.stringify(formats))}))`,
    );
  }
  return where;
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
