/**
 * Holds back files that are still being written until they have been quiet and unchanged for
 * `stableMs`, so a half-copied photo is never decoded.
 *
 * Why our own and not chokidar's `awaitWriteFinish`:
 * - chokidar compares the size only. Copy tools that preallocate (rsync --preallocate, SMB
 *   clients, some cameras' upload apps) set the final size first and fill it afterwards; the
 *   size is then stable from the first instant. Here size, mtime and inode must all hold still.
 * - chokidar polls every pending file on its own timer (every 100 ms by default): 10,000 files
 *   copied at once are 100,000 stat calls a second, on a NAS. Here one timer serves all files
 *   and a file is stat'ed only after it has had no event for `stableMs`, usually just once.
 * - the same settler can hold back files that the initial scan finds with a very recent mtime
 *   (a copy running while clipdex starts), which chokidar's option cannot.
 * No heuristic can tell a writer that pauses longer than `stableMs` from one that finished;
 * the pipeline's own check (stat before and after reading) and the decoder's truncation check
 * catch that case, and the next write event brings the file back.
 */
import { stat } from 'node:fs/promises';
import { sep } from 'node:path';
import type { FsPath } from './raw-path.js';

export interface FileVersion {
  size: number;
  mtimeMs: number;
  ino: number;
}

export interface SettledFile<T> extends FileVersion {
  path: string;
  /** What the caller attached when the file was first touched in this round (e.g. 'add' vs 'change'). */
  tag: T;
}

export interface WriteSettlerOptions<T> {
  /** How long a file must be quiet and unchanged before it is released (default 1000 ms). */
  stableMs?: number;
  /** How often to look for quiet files (default stableMs / 4, at least 20 ms). */
  checkMs?: number;
  /** stat calls in flight at once when many files are due together (default 32). */
  statConcurrency?: number;
  /** Files that settled, in groups (one call per check). */
  onSettled: (files: SettledFile<T>[]) => void;
  /** Files that disappeared while they were being waited on. */
  onGone?: (paths: string[]) => void;
}

interface Pending<T> {
  tag: T;
  /** What to stat when `path` is a display form (a name that is not UTF-8: raw-path.ts). */
  at: FsPath;
  lastEventAt: number;
  /** The version last seen, and when it was first seen. */
  version: FileVersion | null;
  versionSince: number;
}

const same = (a: FileVersion, b: FileVersion) => a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;

export class WriteSettler<T = undefined> {
  private readonly pending = new Map<string, Pending<T>>();
  private readonly stableMs: number;
  private readonly checkMs: number;
  private readonly statConcurrency: number;
  private timer: NodeJS.Timeout | undefined;
  private checking = false;
  private closed = false;

  constructor(private readonly options: WriteSettlerOptions<T>) {
    this.stableMs = Math.max(0, options.stableMs ?? 1000);
    this.checkMs = Math.max(20, options.checkMs ?? Math.floor(this.stableMs / 4));
    this.statConcurrency = Math.max(1, options.statConcurrency ?? 32);
  }

  /** Files waiting to settle. */
  get size(): number {
    return this.pending.size;
  }

  has(path: string): boolean {
    return this.pending.has(path);
  }

  /**
   * A write event for `path`: restart its quiet period. `version` is the stat the event came
   * with (saves one stat per file); `tag` is kept from the first touch until the file settles.
   */
  touch(path: string, tag: T, version?: FileVersion, at: FsPath = path): void {
    if (this.closed) return;
    const now = Date.now();
    const entry = this.pending.get(path);
    if (entry) {
      entry.lastEventAt = now;
      if (version && !(entry.version && same(entry.version, version))) {
        entry.version = version;
        entry.versionSince = now;
      }
    } else {
      this.pending.set(path, { tag, at, lastEventAt: now, version: version ?? null, versionSince: now });
    }
    this.schedule();
  }

  /** Stop waiting for `path` (it was deleted); true when it was pending. */
  forget(path: string): boolean {
    return this.pending.delete(path);
  }

  /** Stop waiting for everything under `dir` (a folder was deleted); the paths forgotten. */
  forgetUnder(dir: string): string[] {
    const prefix = dir.endsWith(sep) ? dir : dir + sep;
    const gone = [...this.pending.keys()].filter((p) => p.startsWith(prefix));
    for (const p of gone) this.pending.delete(p);
    return gone;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pending.clear();
  }

  private schedule(): void {
    if (this.timer || this.closed || this.pending.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.check();
    }, this.checkMs);
  }

  private async check(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      const now = Date.now();
      const due = [...this.pending].filter(([, e]) => now - e.lastEventAt >= this.stableMs);
      const settled: SettledFile<T>[] = [];
      const gone: string[] = [];
      for (let i = 0; i < due.length; i += this.statConcurrency) {
        const slice = due.slice(i, i + this.statConcurrency);
        const stats = await Promise.allSettled(slice.map(([, entry]) => stat(entry.at)));
        if (this.closed) return;
        const seenAt = Date.now();
        slice.forEach(([path, entry], k) => {
          // A newer event arrived while we were stat'ing: its quiet period starts over.
          if (this.pending.get(path) !== entry || entry.lastEventAt > now) return;
          const s = stats[k]!;
          if (s.status === 'rejected' || !s.value.isFile()) {
            this.pending.delete(path);
            gone.push(path);
            return;
          }
          const version = { size: s.value.size, mtimeMs: s.value.mtimeMs, ino: s.value.ino };
          if (entry.version && same(entry.version, version) && seenAt - entry.versionSince >= this.stableMs) {
            this.pending.delete(path);
            settled.push({ path, tag: entry.tag, ...version });
          } else if (!entry.version || !same(entry.version, version)) {
            entry.version = version;
            entry.versionSince = seenAt;
          }
        });
      }
      if (gone.length > 0) this.options.onGone?.(gone);
      if (settled.length > 0) this.options.onSettled(settled);
    } finally {
      this.checking = false;
      this.schedule();
    }
  }
}
