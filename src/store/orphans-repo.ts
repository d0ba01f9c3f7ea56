/**
 * Content no image row points at any more (orphaned_content, migrations/003): remembered for a while, so
 * a file found again (a folder removed and added back, a share that returns, a photo moved while clipdex
 * was stopped) finds its embedding and its decoded size, then collected.
 */
import { runInTransaction } from './database.js';
import type { SqlHandle } from './sql-handle.js';

export interface ContentMeta {
  width: number;
  height: number;
  format: string;
}

export class OrphansRepo {
  private readonly s;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    const p = <P extends unknown[] | object = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    this.s = {
      // Content no row has any more remembers what it was, so a file found again is not decoded.
      metaOfHash: p<[string, string], ContentMeta>(
        `SELECT width, height, format FROM images WHERE content_hash = ? AND format IS NOT NULL AND width IS NOT NULL
         UNION ALL
         SELECT width, height, format FROM orphaned_content WHERE content_hash = ? AND format IS NOT NULL AND width IS NOT NULL
         LIMIT 1`,
      ),
      // Orphans the delete trigger did not see (content replaced in place, a database from before it).
      markOrphans: p<[number]>(
        `INSERT OR IGNORE INTO orphaned_content (content_hash, since)
         SELECT DISTINCT e.content_hash, CAST(? AS bigint) FROM embeddings e WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.content_hash = e.content_hash)`,
      ),
      unorphanBack: p<[]>('DELETE FROM orphaned_content WHERE EXISTS (SELECT 1 FROM images i WHERE i.content_hash = orphaned_content.content_hash)'),
      orphansDue: p<[number], { hash: string }>(
        `SELECT content_hash AS hash FROM orphaned_content o
         WHERE since <= ? AND NOT EXISTS (SELECT 1 FROM labeled_pairs p WHERE p.content_hash = o.content_hash)
           AND NOT EXISTS (SELECT 1 FROM trashed_photos t WHERE t.content_hash = o.content_hash AND t.restored_at IS NULL)`,
      ),
      dropEmbeddings: p<[string]>('DELETE FROM embeddings WHERE content_hash = ?'),
      dropOrphan: p<[string]>('DELETE FROM orphaned_content WHERE content_hash = ?'),
    };
  }

  /** Width, height and format of any decoded file with this content (copies share them), gone ones included. */
  metaOfHash(hash: string): ContentMeta | undefined {
    return this.s.metaOfHash.get(hash, hash);
  }

  /**
   * Content no image row has pointed at for `keepForMs`: its embeddings, under every model key, are dropped
   * and its hashes returned so the caller can remove the thumbnails. Content a label is keyed by is kept
   * while the label exists: the photo may come back, and the Labels page shows it. So is the content of a
   * photo in the trash folder (migration 006): undo puts it back indexed, nothing encoded again. One immediate
   * transaction: the orphan marks and the drops must agree with the rows as they are.
   */
  collectGarbage(keepForMs = 0): string[] {
    return runInTransaction(
      this.db,
      () => {
        const now = this.now();
        this.s.unorphanBack.run();
        this.s.markOrphans.run(now);
        const hashes = this.s.orphansDue.all(now - keepForMs).map((r) => r.hash);
        for (const hash of hashes) {
          this.s.dropEmbeddings.run(hash);
          this.s.dropOrphan.run(hash);
        }
        return hashes;
      },
      'immediate',
    );
  }
}
