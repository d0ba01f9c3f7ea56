/**
 * Image/caption pairs the user labels. `split` records the last training run: 'train' for a photo its
 * version learned from, 'val' for one it did not (a test photo, or a validation photo the run chose on).
 * It is a record, never an input: each run splits afresh by photo content (train/pair-split.ts), so the
 * same labels split alike in any library. (No 'test' value: the CHECK of migrations 001/003 allows two,
 * and the record needs no more.)
 *
 * A label belongs to the photo's content (migrations/003): it stays when its image row goes (a move not
 * seen as one, a folder removed, a share away), attached to no row and "missing", and the schema's
 * triggers attach it again when the content reappears anywhere in the library.
 */

import { ClipdexError } from '../errors.js';
import type { SqlHandle } from './sql-handle.js';

export type PairSplit = 'train' | 'val';

export interface LabeledPair {
  id: number;
  /** The row the label is attached to now; null while no file in the library has its content. */
  imageId: number | null;
  /** The key: the labeled photo's content (null only for a label made on a file that never read). */
  contentHash: string | null;
  caption: string;
  split: PairSplit;
  createdAt: number;
  /** The photo's path, or the last one known while it is missing. */
  lastPath: string;
  /** When its photo left the library (ms); null while it is there. */
  missingSince: number | null;
}

const COLUMNS = `id, image_id AS imageId, content_hash AS contentHash, caption, split, created_at AS createdAt,
  last_path AS lastPath, missing_since AS missingSince`;

/** Where a label's photo is: searchable, on a folder that is offline, failed to index, or not in the library. */
export type LabelPhotoState = 'ok' | 'offline' | 'failed' | 'missing';

/** A pair with its photo's path (the last known one when missing) and state, as lists show it. */
export interface ListedPair extends LabeledPair {
  path: string;
  photo: LabelPhotoState;
}

/** One caption: how many labels use it, on how many photos, in which split. */
export interface CaptionSummary {
  caption: string;
  labels: number;
  photos: number;
  train: number;
  val: number;
}

/** Narrows a listing; a field left out does not filter. */
export interface PairFilter {
  imageId?: number | null;
  caption?: string | null;
}

// The casts give Postgres the parameters' types, which `@x IS NULL` alone does not; SQLite ignores them.
const FILTER = '(CAST(@image AS bigint) IS NULL OR p.image_id = @image) AND (CAST(@caption AS text) IS NULL OR p.caption = @caption)';

export class PairsRepo {
  private readonly addStmt;
  private readonly getStmt;
  private readonly listStmt;
  private readonly listSplitStmt;
  private readonly forImageStmt;
  private readonly removeStmt;
  private readonly countStmt;
  private readonly updateStmt;
  private readonly setSplitStmt;
  private readonly findStmt;
  private readonly pageStmt;
  private readonly captionsStmt;
  private readonly varietyStmt;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    // The key and the path come from the row, so a label is never written without them.
    this.addStmt = db.prepare<[string, PairSplit, number, number], LabeledPair>(
      `INSERT INTO labeled_pairs (image_id, content_hash, last_path, caption, split, created_at)
       SELECT id, content_hash, path, ?, ?, ? FROM images WHERE id = ? RETURNING ${COLUMNS}`,
    );
    this.getStmt = db.prepare<[number], LabeledPair>(`SELECT ${COLUMNS} FROM labeled_pairs WHERE id = ?`);
    this.listStmt = db.prepare<[], LabeledPair>(`SELECT ${COLUMNS} FROM labeled_pairs ORDER BY id`);
    this.listSplitStmt = db.prepare<[PairSplit], LabeledPair>(`SELECT ${COLUMNS} FROM labeled_pairs WHERE split = ? ORDER BY id`);
    this.forImageStmt = db.prepare<[number], LabeledPair>(`SELECT ${COLUMNS} FROM labeled_pairs WHERE image_id = ? ORDER BY id`);
    this.removeStmt = db.prepare<[number]>('DELETE FROM labeled_pairs WHERE id = ?');
    this.countStmt = db.prepare<[], { split: PairSplit; n: number }>('SELECT split, count(*) AS n FROM labeled_pairs GROUP BY split');
    this.updateStmt = db.prepare<[string, number], LabeledPair>(`UPDATE labeled_pairs SET caption = ? WHERE id = ? RETURNING ${COLUMNS}`);
    this.setSplitStmt = db.prepare<[PairSplit, number]>('UPDATE labeled_pairs SET split = ? WHERE image_id = ?');
    this.findStmt = db.prepare<[number, string], LabeledPair>(`SELECT ${COLUMNS} FROM labeled_pairs WHERE image_id = ? AND caption = ?`);
    type Bind = { after: number; image: number | null; caption: string | null; limit: number };
    this.pageStmt = db.prepare<Bind, ListedPair>(
      `SELECT p.id, p.image_id AS imageId, p.content_hash AS contentHash, coalesce(i.path, p.last_path) AS path, p.caption,
         p.split, p.created_at AS createdAt, p.last_path AS lastPath, p.missing_since AS missingSince,
         CASE WHEN i.id IS NULL THEN 'missing' WHEN i.status = 'offline' THEN 'offline' WHEN i.status = 'error' THEN 'failed'
              ELSE 'ok' END AS photo
       FROM labeled_pairs p LEFT JOIN images i ON i.id = p.image_id
       WHERE p.id > @after AND ${FILTER} ORDER BY p.id LIMIT @limit`,
    );
    this.captionsStmt = db.prepare<Omit<Bind, 'after' | 'limit'>, CaptionSummary>(
      // A photo is its content (a missing one has no row); a label without content counts by its path.
      `SELECT p.caption, count(*) AS labels, count(DISTINCT coalesce(p.content_hash, 'path:' || p.last_path)) AS photos,
              sum(CASE WHEN p.split = 'train' THEN 1 ELSE 0 END) AS train, sum(CASE WHEN p.split = 'val' THEN 1 ELSE 0 END) AS val
       FROM labeled_pairs p WHERE ${FILTER} GROUP BY p.caption ORDER BY labels DESC, p.caption`,
    );
    this.varietyStmt = db.prepare<[], { photos: number; captions: number }>(
      'SELECT count(DISTINCT image_id) AS photos, count(DISTINCT caption) AS captions FROM labeled_pairs',
    );
  }

  /** How many different photos and captions the labels hold (whether they can train anything). */
  variety(): { photos: number; captions: number } {
    return this.varietyStmt.get()!;
  }

  /** Up to `limit` pairs with their photos' paths, by id, after `afterId` (for paging). */
  page(filter: PairFilter, limit: number, afterId = 0): ListedPair[] {
    return this.pageStmt.all({ after: afterId, image: filter.imageId ?? null, caption: filter.caption ?? null, limit });
  }

  /** Every caption in use (under the filter), most used first. */
  captions(filter: PairFilter = {}): CaptionSummary[] {
    return this.captionsStmt.all({ image: filter.imageId ?? null, caption: filter.caption ?? null });
  }

  /**
   * Adds a pair unless the same photo already has the same caption (labeling twice is not two examples);
   * returns the pair and whether it is new. A new pair joins its photo's split, so a photo is never in both.
   */
  addUnique(imageId: number, caption: string): { pair: LabeledPair; added: boolean } {
    const text = caption.trim();
    const existing = this.findStmt.get(imageId, text);
    if (existing) return { pair: existing, added: false };
    const split = this.forImageStmt.get(imageId)?.split ?? 'train';
    return { pair: this.add(imageId, text, split), added: true };
  }

  /** Changes a caption; undefined when there is no such pair. */
  update(id: number, caption: string): LabeledPair | undefined {
    const text = caption.trim();
    if (text === '') throw new ClipdexError('INVALID_ARGUMENT', 'a caption must not be empty');
    // SQLite's length() stops at a NUL, so "\0abc" would fail the CHECK as an internal error.
    if (text.includes('\0')) throw new ClipdexError('INVALID_ARGUMENT', 'a caption must not contain NUL characters');
    return this.updateStmt.get(text, id);
  }

  /** Puts every pair of each photo in the given split (the trainer's split, stored with the pairs). */
  setSplits(splits: ReadonlyMap<number, PairSplit>): void {
    this.db.transaction(() => {
      for (const [imageId, split] of splits) this.setSplitStmt.run(split, imageId);
    })();
  }

  add(imageId: number, caption: string, split: PairSplit): LabeledPair {
    const text = caption.trim();
    if (text === '') throw new ClipdexError('INVALID_ARGUMENT', 'a caption must not be empty');
    // SQLite's length() stops at a NUL, so "\0abc" would fail the CHECK as an internal error.
    if (text.includes('\0')) throw new ClipdexError('INVALID_ARGUMENT', 'a caption must not contain NUL characters');
    if (split !== 'train' && split !== 'val') throw new ClipdexError('INVALID_ARGUMENT', `split must be "train" or "val", got ${JSON.stringify(split)}`);
    const pair = this.addStmt.get(text, split, this.now(), imageId);
    if (!pair) throw new ClipdexError('INVALID_ARGUMENT', `no image with id ${imageId}`);
    return pair;
  }

  get(id: number): LabeledPair | undefined {
    return this.getStmt.get(id);
  }

  list(split?: PairSplit): LabeledPair[] {
    return split === undefined ? this.listStmt.all() : this.listSplitStmt.all(split);
  }

  forImage(imageId: number): LabeledPair[] {
    return this.forImageStmt.all(imageId);
  }

  remove(id: number): boolean {
    return this.removeStmt.run(id).changes > 0;
  }

  count(): Record<PairSplit, number> {
    const counts: Record<PairSplit, number> = { train: 0, val: 0 };
    for (const row of this.countStmt.all()) counts[row.split] = row.n;
    return counts;
  }
}
