/**
 * The change log (index_changes, written by the images and embeddings triggers of migration 001) read as a
 * feed of what happened to the library: which photos joined it and which left, since a position. On a
 * library in Postgres every replica of `clipdex serve` follows it to tell its pages what other machines did
 * (server/shared-library-feed.ts). The triggers log for every key registered in vector_indexes; the feed's
 * own key is FEED_KEY, so its rows are separate from any index's.
 */
import { IndexChangesRepo } from './index-changes-repo.js';
import { MEMBER_SQL } from './image-filter.js';
import type { SqlHandle } from './sql-handle.js';

/** Not a model key (those never start with "~"): the log rows written for the feed. */
export const FEED_KEY = '~live';

/** A photo that joined the library (path set), or left it (path null), at log position `seq`. */
export interface FeedChange {
  imageId: number;
  path: string | null;
  rootId: number | null;
}

export class ChangeFeedRepo {
  private readonly log: IndexChangesRepo;
  private readonly s;

  constructor(db: SqlHandle) {
    this.log = new IndexChangesRepo(db);
    this.log.register(FEED_KEY);
    this.s = {
      changed: db.prepare<[string, number, number], FeedChange>(
        `SELECT c.image_id AS imageId, i.path AS path, i.root_id AS rootId
         FROM (SELECT DISTINCT image_id FROM index_changes WHERE model_key = ? AND seq > ? AND seq <= ?) c
         LEFT JOIN images i ON i.id = c.image_id AND ${MEMBER_SQL}
         ORDER BY c.image_id`,
      ),
    };
  }

  /** The position of the latest change (0 when none). */
  position(): number {
    return this.log.maxSeq();
  }

  /** Each photo changed in (after, upto], once, as it is now. */
  changes(after: number, upto: number): FeedChange[] {
    return this.s.changed.all(FEED_KEY, after, upto);
  }

  /** Forgets the log through `seq` (every replica has read it, or is so far behind that it starts afresh). */
  prune(seq: number): void {
    this.log.prune(FEED_KEY, seq);
  }
}
