/**
 * Text read in photos (migration 007): per content hash, whether reading is done or failed (and why), the
 * lines with their confidence and box, and the full-text index over them. Copies of a photo share one
 * reading, as they share one embedding; garbage collection drops it with the content (the migration's
 * trigger). The lines' type is written here, not imported: ocr/ is store/'s peer (ARCHITECTURE.md).
 *
 * The library's own OCR setting (`clipdex ocr on|off`, the page's toggle) is a row of the meta table,
 * `ocr_enabled` = on | off, absent when never set (no migration: meta is there since schema 1).
 */
import { runInTransaction } from './database.js';
import { MetaRepo } from './meta-repo.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';

export type BoxPoint = [number, number];

export interface StoredLine {
  text: string;
  confidence: number;
  /** tl, tr, br, bl as fractions (0–1) of the upright photo's width and height. */
  box: [BoxPoint, BoxPoint, BoxPoint, BoxPoint];
}

export interface OcrReading {
  status: 'done' | 'failed';
  engine: string;
  lines: StoredLine[];
  stopped: 'boxes' | 'time' | null;
  errorCode: string | null;
  errorMessage: string | null;
  readMs: number | null;
  updatedAt: number;
}

/** A type, not an interface: the server takes the OCR status as a Record<string, unknown>. */
export type OcrCounts = {
  /** Indexed contents (not photos: copies count once) whose text is read. */
  done: number;
  failed: number;
  /** Indexed contents not read yet. */
  pending: number;
};

export interface PendingContent {
  hash: string;
  /** One indexed photo with this content, to read it from. */
  imageId: number;
  path: string;
}

export interface TextHit {
  imageId: number;
  /**
   * Lower is better: FTS5's bm25 rank on SQLite, minus pg_trgm's similarity to the pieces on Postgres (the
   * two scales are not comparable); 0 when only short pieces were asked (no index to rank by).
   */
  rank: number;
}

/** The trigram tokenizer indexes nothing shorter than 3 characters: such a piece is matched by a scan. */
export const MIN_INDEXED_CHARS = 3;

/** A piece of text as one FTS5 phrase: double quotes doubled, the whole quoted, so no query syntax leaks in. */
export function ftsPhrase(piece: string): string {
  return `"${piece.replace(/"/g, '""')}"`;
}

/**
 * Postgres's form of a text in ocr_fts and of a piece searched for: lower case, and a Latin letter's accents
 * off ('Café' → 'cafe') but no other script's ('Ωμέγα' keeps its tonos, 'ガ' its voicing mark) — what FTS5's
 * remove_diacritics does on SQLite (measured against it on the test words, Greek, Cyrillic, kana). In
 * JavaScript because a stock Postgres has no accent folding short of the unaccent extension, and lower()
 * follows the server's locale (under plain C it leaves anything outside ASCII as it is).
 */
function foldForPostgres(s: string): string {
  return s.normalize('NFD').replace(/(\p{Script=Latin})[\u0300-\u036f]+/gu, '$1').normalize('NFC').toLowerCase();
}

/** A LIKE pattern finding `piece` anywhere: its `%`, `_` and `\` stand for themselves (LIKE's escape is `\`). */
function containsPattern(piece: string): string {
  return `%${piece.replace(/[\\%_]/g, '\\$&')}%`;
}

const SETTING_KEY = 'ocr_enabled';

export class OcrRepo {
  private readonly s;
  private readonly meta: MetaRepo;
  /** Postgres keeps ocr_fts's text folded (foldForPostgres): what search compares against. */
  private readonly pg: boolean;
  private readonly find: (long: string[], short: string[], limit: number) => TextHit[];

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    this.meta = new MetaRepo(db);
    const pg = dialectOf(db) === 'postgres';
    this.pg = pg;
    const p = <P extends unknown[] | object = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    this.s = {
      drop: p<[string]>('DELETE FROM ocr_state WHERE content_hash = ?'),
      has: p<[string], { one: number }>('SELECT 1 AS one FROM ocr_state WHERE content_hash = ?'),
      // Asked at every text search: a line is there exactly when a read found text (lines go with their state),
      // whereas status/line_count walked every read photo of a library where none had text.
      anyDone: p<[], { one: number }>('SELECT 1 AS one FROM ocr_lines LIMIT 1'),
      insertState: p<[string, string, string, number, string | null, string | null, string | null, number | null, number], { id: number }>(
        `INSERT INTO ocr_state (content_hash, status, engine, line_count, stopped, error_code, error_message, read_ms, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
      ),
      insertLine: p<[number, number, string, number, string]>('INSERT INTO ocr_lines (state_id, line, text, confidence, box) VALUES (?, ?, ?, ?, ?)'),
      insertFts: p<[number, string]>('INSERT INTO ocr_fts (rowid, text) VALUES (?, ?)'),
      state: p<[string], { id: number; status: 'done' | 'failed'; engine: string; stopped: 'boxes' | 'time' | null; errorCode: string | null; errorMessage: string | null; readMs: number | null; updatedAt: number }>(
        `SELECT id, status, engine, stopped, error_code AS errorCode, error_message AS errorMessage, read_ms AS readMs, updated_at AS updatedAt
         FROM ocr_state WHERE content_hash = ?`,
      ),
      lines: p<[number], { text: string; confidence: number; box: string }>('SELECT text, confidence, box FROM ocr_lines WHERE state_id = ? ORDER BY line'),
      counts: p<[], OcrCounts>(
        `SELECT count(s.id) FILTER (WHERE s.status = 'done') AS done, count(s.id) FILTER (WHERE s.status = 'failed') AS failed,
                count(*) FILTER (WHERE s.id IS NULL) AS pending
         FROM (SELECT DISTINCT content_hash FROM images WHERE status = 'indexed' AND content_hash IS NOT NULL) c
         LEFT JOIN ocr_state s ON s.content_hash = c.content_hash`,
      ),
      // SQLite takes path from the row holding min(id) (bare columns beside min()); Postgres says so with DISTINCT ON.
      pending: p<[number], PendingContent>(
        pg
          ? `SELECT * FROM (
               SELECT DISTINCT ON (i.content_hash) i.content_hash AS hash, i.id AS imageId, i.path AS path FROM images i
               WHERE i.status = 'indexed' AND i.content_hash IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM ocr_state s WHERE s.content_hash = i.content_hash)
               ORDER BY i.content_hash, i.id) p
             ORDER BY p."imageId" LIMIT ?`
          : `SELECT i.content_hash AS hash, min(i.id) AS imageId, i.path AS path FROM images i
             WHERE i.status = 'indexed' AND i.content_hash IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM ocr_state s WHERE s.content_hash = i.content_hash)
             GROUP BY i.content_hash ORDER BY min(i.id) LIMIT ?`,
      ),
    };
    this.find = pg ? postgresSearch(db) : sqliteSearch(db);
  }

  /** The library's OCR setting: true (on), false (off), undefined when never set (the default applies). */
  setting(): boolean | undefined {
    const v = this.meta.get(SETTING_KEY);
    // Anything else (a hand-edited row) counts as never set rather than failing every start.
    return v === 'on' ? true : v === 'off' ? false : undefined;
  }

  setSetting(on: boolean): void {
    this.meta.put(SETTING_KEY, on ? 'on' : 'off');
  }

  /** Records a finished reading (replacing any earlier one): its lines and their full-text entry. */
  saveDone(hash: string, reading: { engine: string; lines: readonly StoredLine[]; stopped: 'boxes' | 'time' | null; readMs: number }): void {
    runInTransaction(this.db, () => {
      this.s.drop.run(hash);
      const { id } = this.s.insertState.get(hash, 'done', reading.engine, reading.lines.length, reading.stopped, null, null, reading.readMs, this.now())!;
      reading.lines.forEach((l, i) => this.s.insertLine.run(id, i, l.text, l.confidence, JSON.stringify(l.box)));
      // One space between lines: the detector splits a row at wide gaps ('Q3' | 'roadmap'), and a phrase may wrap.
      if (reading.lines.length > 0) {
        const text = reading.lines.map((l) => l.text).join(' ');
        this.s.insertFts.run(id, this.pg ? foldForPostgres(text) : text);
      }
    });
  }

  /** Records that this content's text could not be read, and why. */
  saveFailed(hash: string, engine: string, errorCode: string, errorMessage: string): void {
    runInTransaction(this.db, () => {
      this.s.drop.run(hash);
      this.s.insertState.get(hash, 'failed', engine, 0, null, errorCode, errorMessage, null, this.now());
    });
  }

  /** The reading of this content, or undefined when it has not been read. */
  reading(hash: string): OcrReading | undefined {
    const state = this.s.state.get(hash);
    if (!state) return undefined;
    const { id, ...rest } = state;
    const lines = this.s.lines.all(id).map((l) => ({ text: l.text, confidence: l.confidence, box: JSON.parse(l.box) as StoredLine['box'] }));
    return { ...rest, lines };
  }

  /** Whether this content has a reading, done or failed. */
  has(hash: string): boolean {
    return this.s.has.get(hash) !== undefined;
  }

  /** Whether any photo's text has been read (with at least one line): a search has text to match. */
  hasText(): boolean {
    return this.s.anyDone.get() !== undefined;
  }

  counts(): OcrCounts {
    return this.s.counts.get()!;
  }

  /** Indexed contents not read yet, oldest photo first. */
  pending(limit: number): PendingContent[] {
    return this.s.pending.all(limit);
  }

  /**
   * Indexed, visible photos whose text contains every piece, best rank first (TextHit.rank). Case and
   * accents are folded for pieces of 3+ characters; for shorter ones SQLite folds ASCII case only (lower()),
   * Postgres folds both as for the long ones (its text is stored folded). No pieces: no hits.
   */
  search(pieces: readonly string[], limit: number): TextHit[] {
    const clean = pieces.map((p) => p.trim()).filter((p) => p !== '');
    if (clean.length === 0) return [];
    const long = clean.filter((p) => [...p].length >= MIN_INDEXED_CHARS);
    const short = clean.filter((p) => [...p].length < MIN_INDEXED_CHARS);
    return this.find(long, short, limit);
  }
}

/** FTS5: pieces of 3+ characters through the trigram index, shorter ones (a JSON array) by a case-insensitive scan of the hits. */
function sqliteSearch(db: SqlHandle): OcrRepo['find'] {
  const withIndex = db.prepare<[string, string, number], TextHit>(
    `SELECT i.id AS imageId, f.rank AS rank FROM ocr_fts f
     JOIN ocr_state s ON s.id = f.rowid
     JOIN images i ON i.content_hash = s.content_hash
     WHERE ocr_fts MATCH ? AND i.status = 'indexed' AND i.hidden_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM json_each(?) j WHERE instr(lower(f.text), lower(j.value)) = 0)
     ORDER BY f.rank, i.id LIMIT ?`,
  );
  const scan = db.prepare<[string, number], TextHit>(
    `SELECT i.id AS imageId, 0 AS rank FROM ocr_fts f
     JOIN ocr_state s ON s.id = f.rowid
     JOIN images i ON i.content_hash = s.content_hash
     WHERE i.status = 'indexed' AND i.hidden_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM json_each(?) j WHERE instr(lower(f.text), lower(j.value)) = 0)
     ORDER BY i.id LIMIT ?`,
  );
  return (long, short, limit) =>
    long.length === 0 ? scan.all(JSON.stringify(short), limit) : withIndex.all(long.map(ftsPhrase).join(' AND '), JSON.stringify(short), limit);
}

/**
 * pg_trgm over the folded text (foldForPostgres on both sides). One LIKE, on the longest piece, is what the
 * GIN trigram index serves (an index condition must stand alone in WHERE, so a list of pieces cannot be
 * one); every piece, long or short, is then checked in the rows it found. Ranked by trigram similarity to the
 * long pieces, best first: like bm25 a short text full of the words beats a long one that mentions them, but
 * without bm25's weight for rare words or repeated ones.
 */
function postgresSearch(db: SqlHandle): OcrRepo['find'] {
  const withIndex = db.prepare<[string, string, string, number], TextHit>(
    `SELECT i.id AS imageId, -similarity(f.text, ?) AS rank FROM ocr_fts f
     JOIN ocr_state s ON s.id = f.rowid
     JOIN images i ON i.content_hash = s.content_hash
     WHERE f.text LIKE ? ESCAPE '\\' AND i.status = 'indexed' AND i.hidden_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST(? AS jsonb)) j (piece) WHERE strpos(f.text, j.piece) = 0)
     ORDER BY rank, i.id LIMIT ?`,
  );
  const scan = db.prepare<[string, number], TextHit>(
    `SELECT i.id AS imageId, 0 AS rank FROM ocr_fts f
     JOIN ocr_state s ON s.id = f.rowid
     JOIN images i ON i.content_hash = s.content_hash
     WHERE i.status = 'indexed' AND i.hidden_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(CAST(? AS jsonb)) j (piece) WHERE strpos(f.text, j.piece) = 0)
     ORDER BY i.id LIMIT ?`,
  );
  return (long, short, limit) => {
    const all = JSON.stringify([...long, ...short].map(foldForPostgres));
    if (long.length === 0) return scan.all(all, limit);
    const folded = long.map(foldForPostgres);
    const longest = folded.toSorted((a, b) => [...b].length - [...a].length)[0]!;
    return withIndex.all(folded.join(' '), containsPattern(longest), all, limit);
  };
}
