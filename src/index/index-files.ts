/**
 * Where an HNSW index lives on disk and how it is committed: `<indexDir>/<key>/state.json` names the
 * graph file and records everything needed to trust it (checkpoint, checksum, size, dimension, model,
 * library, deletions, tuned ef). Files are written to a temporary name, fsynced and renamed; state.json
 * is renamed last, so it is the single commit point and a crash anywhere leaves the previous state intact.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';

export const STATE_FORMAT = 'clipdex-hnsw-1';

/**
 * What ef was tuned on: queries users asked ('logged'), synthetic stand-ins for them ('synthetic'), or
 * midpoints of two random photos (graphs tuned before issue 19, whose state has no `tunedOn`).
 */
export type TunedOn = 'logged' | 'synthetic' | 'midpoints';

/** The key's log of asked queries (query-log.ts): in the key's folder, it outlives every graph. */
export const QUERY_LOG_FILE = 'queries.log';
const KEPT_FILES = [QUERY_LOG_FILE];

export interface IndexState {
  format: typeof STATE_FORMAT;
  libraryId: string;
  modelKey: string;
  dim: number;
  M: number;
  efConstruction: number;
  /** Graph file name inside the key's folder. */
  file: string;
  fileBytes: number;
  crc32: number;
  /** Labels in the graph, deleted ones included. */
  labels: number;
  /** Labels marked deleted in the graph (hnswlib cannot list them itself). */
  deleted: number[];
  /** Highest change-log seq this graph reflects. */
  checkpointSeq: number;
  ef: number;
  /** recall@10 against exact search at `ef`, on `recallQueries` sample queries; null if never measured. */
  recall: number | null;
  recallQueries: number;
  /** Which queries `recall` was measured on; absent in states written before issue 19 (midpoints). */
  tunedOn?: TunedOn;
  /** Every ef tried at the last tuning with its recall (empty when ef was kept from before). */
  efTried: { ef: number; recall: number }[];
  /** Live count when ef was last tuned (re-tuned when the collection has grown or shrunk a lot). */
  tunedAtCount: number;
  builtAt: number;
  buildMs: number;
  /** 'build' (from scratch) or 'merge' (previous graph plus the change log). */
  lastJob: 'build' | 'merge';
}

/** A folder name for a model key that is safe on every file system and still readable. */
export function keyDir(indexDir: string, modelKey: string): string {
  const readable = modelKey.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
  const hash = createHash('sha256').update(modelKey).digest('hex').slice(0, 10);
  return join(indexDir, `${readable}-${hash}`);
}

export const STATE_FILE = 'state.json';

/** Reads state.json; null when absent, { problem } when unreadable or not ours. */
export async function readState(dir: string): Promise<IndexState | null | { problem: string }> {
  let text: string;
  try {
    text = await readFile(join(dir, STATE_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    return { problem: `cannot read ${STATE_FILE}: ${errorMessage(err)}` };
  }
  let state: unknown;
  try {
    state = JSON.parse(text);
  } catch (err) {
    return { problem: `${STATE_FILE} is not valid JSON (${errorMessage(err)})` };
  }
  const problem = stateProblem(state);
  return problem ? { problem } : (state as IndexState);
}

function stateProblem(s: unknown): string | null {
  if (typeof s !== 'object' || s === null) return `${STATE_FILE} is not an object`;
  const o = s as Record<string, unknown>;
  if (o.format !== STATE_FORMAT) return `${STATE_FILE} has format ${JSON.stringify(o.format)}, ${STATE_FORMAT} expected`;
  const ints = ['dim', 'M', 'efConstruction', 'fileBytes', 'crc32', 'labels', 'checkpointSeq', 'ef', 'recallQueries', 'tunedAtCount'];
  for (const k of ints) if (!Number.isInteger(o[k]) || (o[k] as number) < 0) return `${STATE_FILE}: ${k} is not a non-negative integer`;
  for (const k of ['libraryId', 'modelKey', 'file']) if (typeof o[k] !== 'string' || o[k] === '') return `${STATE_FILE}: ${k} is missing`;
  if (!/^hnsw-[0-9a-z-]+\.bin$/.test(o.file as string)) return `${STATE_FILE}: unexpected file name`;
  if (!Array.isArray(o.deleted) || o.deleted.some((x) => !Number.isInteger(x))) return `${STATE_FILE}: deleted is not a list of ids`;
  if (o.tunedOn !== undefined && o.tunedOn !== 'logged' && o.tunedOn !== 'synthetic' && o.tunedOn !== 'midpoints') return `${STATE_FILE}: unexpected tunedOn`;
  return null;
}

/** A fresh, never reused graph file name for a checkpoint. */
export function graphFileName(checkpointSeq: number): string {
  return `hnsw-${checkpointSeq}-${randomBytes(4).toString('hex')}.bin`;
}

/** fsync a file or directory so a rename that follows (or preceded) survives power loss. */
export async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories (EINVAL/EISDIR); the rename is then as durable as it gets.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    await fh.close();
  }
}

/** Writes state.json atomically: temp file, fsync, rename, fsync the folder. This is the commit point. */
export async function writeState(dir: string, state: IndexState): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `${STATE_FILE}.${randomBytes(4).toString('hex')}.tmp`);
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(JSON.stringify(state));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, STATE_FILE));
  await fsyncPath(dir);
}

export async function removeState(dir: string): Promise<void> {
  await rm(join(dir, STATE_FILE), { force: true });
}

/** Deletes every file in the folder except state.json and `keep`: leftovers of crashed or replaced builds. */
export async function removeOrphans(dir: string, keep: readonly string[]): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (name === STATE_FILE || keep.includes(name) || KEPT_FILES.includes(name)) continue;
    await rm(join(dir, name), { force: true, recursive: true });
    removed.push(name);
  }
  return removed;
}

export async function fileBytes(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}
