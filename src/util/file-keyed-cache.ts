/**
 * What the model cache's entries derived from one file have in common (inference/optimized-cache.ts: a tower's
 * optimized graph; model/int8-text-tower.ts: its int8 version): an entry is a folder named by a key that covers
 * the source file's stamp, holding the derived files and a small record; it is written in a temporary folder and
 * renamed into place, so a reader sees all of it or none; and entries of sources that changed or are gone are
 * removed when a new one is written (each holds tens to hundreds of MB).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** A source file as an entry's key covers it. `ctimeMs` only where a change of it must miss (see `stampFile`). */
export interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
  ctimeMs?: number;
  ino: number;
  dev: number;
}

/**
 * The stamp of the file itself, not of the way to it (a file reached through a link is the same file and entry).
 * `ctime`: also the inode's change time, which catches a rewrite that kept size and mtime, but also moves when
 * the file is hard-linked or its permissions change.
 */
export async function stampFile(path: string, options: { ctime: boolean }): Promise<FileStamp> {
  const real = await realpath(resolve(path));
  const st = await stat(real);
  return { path: real, size: st.size, mtimeMs: st.mtimeMs, ...(options.ctime ? { ctimeMs: st.ctimeMs } : {}), ino: st.ino, dev: st.dev };
}

/** Whether the file a stamp was taken of is still there and the same (its ctime compared only if stamped). */
export async function stampIsCurrent(stamp: FileStamp): Promise<boolean> {
  const st = await stat(stamp.path).catch(() => null);
  if (!st) return false;
  return st.size === stamp.size && st.mtimeMs === stamp.mtimeMs && st.ino === stamp.ino && (stamp.ctimeMs === undefined || st.ctimeMs === stamp.ctimeMs);
}

export type EntryRecordRead<R> = { record: R } | { missing: true } | { unreadable: string };

/** An entry's record (parsed JSON), or that there is no record file, or why it cannot be read. */
export async function readEntryRecord<R>(dir: string, recordFile: string): Promise<EntryRecordRead<R>> {
  try {
    return { record: JSON.parse(await readFile(join(dir, recordFile), 'utf8')) as R };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { missing: true };
    return { unreadable: (err as Error).message };
  }
}

/** A temporary folder to write an entry in, and how to drop it. */
export interface EntryStaging {
  tmp: string;
  discard: () => Promise<void>;
}

/** A staging folder under `root` for the entry `key`. */
export async function entryStaging(root: string, key: string): Promise<EntryStaging> {
  await mkdir(root, { recursive: true });
  const tmp = join(root, `.tmp-${key}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  return { tmp, discard: () => rm(tmp, { recursive: true, force: true }).then(() => undefined, () => undefined) };
}

/**
 * Finishes a staged entry: `record()` (which may write the entry's last files first) is written as its record,
 * last, and the folder renamed into place as `dir` — when another process wrote the same entry meanwhile, its copy
 * stays. On any failure the staging folder is dropped and the error rethrown.
 */
export async function commitEntry<R>(staging: EntryStaging, dir: string, recordFile: string, record: () => Promise<R>): Promise<void> {
  try {
    await writeFile(join(staging.tmp, recordFile), JSON.stringify(await record()));
    await rename(staging.tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST' || err.code === 'EPERM') return staging.discard();
      throw err;
    });
  } catch (err) {
    await staging.discard();
    throw err;
  }
}

/**
 * Removes, under `root`, every folder but `keep` that is stale: staging folders a day old (left by a process
 * killed while writing: a day is far longer than any write), folders without a readable record, and entries
 * `stale(record)` says go. A session still using a removed entry's files keeps what it opened.
 */
export async function removeStaleEntries<R>(root: string, keep: string, recordFile: string, stale: (record: R) => Promise<boolean>): Promise<void> {
  const names = await readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    if (name === keep) continue;
    const dir = join(root, name);
    if (name.startsWith('.tmp-')) {
      const st = await stat(dir).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 86_400_000) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
      continue;
    }
    const read = await readEntryRecord<R>(dir, recordFile);
    if (!('record' in read) || (await stale(read.record))) {
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
