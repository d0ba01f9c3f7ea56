/**
 * Display thumbnails on disk, keyed by content hash: `<dir>/thumbnails/<hash[0:2]>/<hash>.webp`.
 * Keyed by content, so a renamed photo keeps its thumbnail and duplicates share one; the
 * two-character fan-out keeps any one folder to a few thousand files at a million photos.
 *
 * Thumbnails are a cache that the next decode can rebuild, so writes are atomic (a reader
 * never sees half a file) but not fsync'ed.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';

/** A thumbnail is named by the sha256 of its photo's bytes (ingest/content-hash.ts). */
const HASH_PATTERN = /^[0-9a-f]{64}$/;

const TMP_MARK = '.tmp-';
const RECENT_MARGIN_MS = 2000;
/** Temporary files younger than this may belong to a write in progress (here or in another process). */
const TMP_GRACE_MS = 60_000;

export interface PruneResult {
  kept: number;
  removed: number;
  /** Leftover temporary files from interrupted writes that were removed. */
  removedTemp: number;
}

export class ThumbnailStore {
  /** The folder holding the fan-out folders. */
  readonly root: string;
  private tmpCounter = 0;

  constructor(dataDir: string) {
    this.root = join(dataDir, 'thumbnails');
  }

  /** Where the thumbnail for `hash` lives (whether or not it exists). */
  path(hash: string): string {
    checkHash(hash);
    return join(this.root, hash.slice(0, 2), `${hash}.webp`);
  }

  async has(hash: string): Promise<boolean> {
    try {
      return (await stat(this.path(hash))).isFile();
    } catch (err) {
      if (isClipdexArgError(err)) throw err;
      return false;
    }
  }

  /** The WebP bytes, or null when there is no thumbnail for this content. */
  async get(hash: string): Promise<Buffer | null> {
    try {
      return await readFile(this.path(hash));
    } catch (err) {
      if (isClipdexArgError(err) || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return null;
    }
  }

  /** Writes atomically (temporary file + rename); returns the final path. */
  async put(hash: string, webp: Uint8Array): Promise<string> {
    const final = this.path(hash);
    if (webp.length === 0) throw new ClipdexError('INVALID_ARGUMENT', `Refusing to store an empty thumbnail for ${hash}`);
    const dir = join(this.root, hash.slice(0, 2));
    await mkdir(dir, { recursive: true });
    // Unique per writer, so two writers of the same content never share a temporary file.
    const tmp = `${final}${TMP_MARK}${process.pid}-${++this.tmpCounter}`;
    try {
      await writeFile(tmp, webp);
      await rename(tmp, final);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return final;
  }

  /** True when a thumbnail was removed. */
  async remove(hash: string): Promise<boolean> {
    const path = this.path(hash);
    try {
      await rm(path);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Removes every thumbnail whose hash `keep` rejects, and temporary files left by interrupted
   * writes. `keep` can be a set or a lookup (a database query, so a million hashes need not be
   * held in memory). Files written after the prune started are kept whatever `keep` says: a
   * photo indexed meanwhile may not be in a snapshot taken before. (File times come from the
   * kernel's coarse clock, a few ms behind Date.now(), hence the margin.)
   */
  async prune(keep: ReadonlySet<string> | ((hash: string) => boolean | Promise<boolean>)): Promise<PruneResult> {
    const startedAt = Date.now() - RECENT_MARGIN_MS;
    const keeps = typeof keep === 'function' ? keep : (hash: string) => keep.has(hash);
    const result: PruneResult = { kept: 0, removed: 0, removedTemp: 0 };
    let fanouts: string[];
    try {
      fanouts = await readdir(this.root);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result;
      throw err;
    }
    for (const fanout of fanouts) {
      if (!/^[0-9a-f]{2}$/.test(fanout)) continue;
      const dir = join(this.root, fanout);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        const file = join(dir, name);
        const tmpAt = name.indexOf(TMP_MARK);
        if (tmpAt >= 0) {
          if (await olderThan(file, startedAt - TMP_GRACE_MS)) {
            await rm(file, { force: true });
            result.removedTemp++;
          }
          continue;
        }
        const hash = name.endsWith('.webp') ? name.slice(0, -5) : '';
        if (!HASH_PATTERN.test(hash) || hash.slice(0, 2) !== fanout) continue;
        if ((await keeps(hash)) || !(await olderThan(file, startedAt))) {
          result.kept++;
          continue;
        }
        await rm(file, { force: true });
        result.removed++;
      }
    }
    return result;
  }
}

function checkHash(hash: string): void {
  // Also what keeps a hash from naming a path outside the store.
  if (typeof hash !== 'string' || !HASH_PATTERN.test(hash)) {
    throw new ClipdexError('INVALID_ARGUMENT', `Not a content hash (64 lower-case hex characters): ${JSON.stringify(hash)}`);
  }
}

function isClipdexArgError(err: unknown): boolean {
  return err instanceof ClipdexError;
}

/** True when the file exists and was last modified before `ms`; a file already gone counts as not older. */
async function olderThan(path: string, ms: number): Promise<boolean> {
  try {
    return (await stat(path)).mtimeMs < ms;
  } catch {
    return false;
  }
}
