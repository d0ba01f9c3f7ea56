/**
 * Trained text towers kept in the database (migration 010), for a library in Postgres: each tower, named by
 * its whole-file SHA-256, as parts of TOWER_PART_BYTES written in one transaction (a tower is all there or
 * not at all). The embedded library keeps towers as files only (store/adapters-repo.ts).
 */
import type { SqlHandle } from './sql-handle.js';

/** 16 MiB: a part travels as 32 MiB of hex through the Postgres driver, not a 500 MB string for a whole tower. */
export const TOWER_PART_BYTES = 16 * 1024 * 1024;

export class VersionTowersRepo {
  private readonly s;

  constructor(
    private readonly db: SqlHandle,
    /** Bytes per part (tests make it small). */
    private readonly partBytes = TOWER_PART_BYTES,
  ) {
    const p = <P extends unknown[] = unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
    this.s = {
      has: p<[string], { one: number }>('SELECT 1 AS one FROM version_towers WHERE sha256 = ? AND part = 0'),
      insert: p<[string, number, Uint8Array]>('INSERT INTO version_towers (sha256, part, bytes) VALUES (?, ?, ?)'),
      part: p<[string, number], { bytes: Uint8Array }>('SELECT bytes FROM version_towers WHERE sha256 = ? AND part = ?'),
      parts: p<[string], { n: number }>('SELECT count(*) AS n FROM version_towers WHERE sha256 = ?'),
      remove: p<[string]>('DELETE FROM version_towers WHERE sha256 = ?'),
      all: p<[], { sha256: string }>('SELECT DISTINCT sha256 FROM version_towers'),
    };
  }

  has(sha256: string): boolean {
    return this.s.has.get(sha256) !== undefined;
  }

  /** Stores a tower unless it is there already; returns whether it wrote it. */
  put(sha256: string, bytes: Uint8Array): boolean {
    return this.db.transaction(() => {
      if (this.has(sha256)) return false;
      for (let part = 0, at = 0; at < bytes.length || part === 0; part++, at += this.partBytes) {
        this.s.insert.run(sha256, part, bytes.subarray(at, Math.min(bytes.length, at + this.partBytes)));
      }
      return true;
    })();
  }

  /** The tower's bytes, part by part (one part in memory at a time); nothing when it is not stored. */
  *read(sha256: string): Generator<Uint8Array> {
    const n = this.s.parts.get(sha256)!.n;
    for (let part = 0; part < n; part++) {
      const row = this.s.part.get(sha256, part);
      if (!row) return;
      yield row.bytes;
    }
  }

  remove(sha256: string): boolean {
    return this.s.remove.run(sha256).changes > 0;
  }

  /** Every tower stored. */
  stored(): string[] {
    return this.s.all.all().map((r) => r.sha256);
  }
}
