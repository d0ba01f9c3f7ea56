/**
 * Walks one root and reports every candidate photo with its size and mtime, in batches, for
 * the mark-and-sweep reconcile. Nothing here throws for a bad entry: unreadable folders,
 * files that vanish mid-walk and symlink loops come back as problems beside the files.
 *
 * Memory stays flat whatever the tree: folders are read as a stream (opendir), one at a time,
 * and only the folders still to visit and one batch of files are held.
 */
import { isUtf8 } from 'node:buffer';
import type { Dirent, Stats } from 'node:fs';
import { lstat, opendir, realpath, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { errorMessage } from '../errors.js';
import { classifyDirLink } from './dir-links.js';
import { createFileRules, hasImageExtension, type FileRules } from './file-rules.js';
import { childBytes, displayName } from './raw-path.js';

export interface ScannedFile {
  /** Absolute path as found under the root (through any followed link, not resolved); the display form. */
  path: string;
  /** The path's bytes when some name in it is not UTF-8 (then `path` cannot be opened); see raw-path.ts. */
  pathBytes: Buffer | null;
  /** Relative to the root, '/'-separated. */
  relPath: string;
  size: number;
  mtimeMs: number;
}

export interface ScanProblem {
  path: string;
  pathBytes?: Buffer | null;
  /** The errno code (EACCES, EPERM, ENOENT, ELOOP, EIO…), or ELOOP for a loop we detected ourselves. */
  code: string;
  message: string;
  /** True when a whole folder could not be read (so its files were not seen). */
  isDir: boolean;
}

export interface ScanBatch {
  files: ScannedFile[];
  problems: ScanProblem[];
}

export interface ScanSummary {
  files: number;
  dirs: number;
  problems: number;
  /**
   * Folders (relative paths) that exist but could not be read, or were only partly read.
   * Their files were not seen, so a sweep must not delete what the database holds under them.
   */
  unreadableDirs: string[];
  /** Links to folders inside the root that were not followed because the walk reaches them anyway. */
  skippedAliases: number;
  /**
   * Folders read whose path is not valid UTF-8, as bytes: a watcher cannot see inside them by name
   * (folder-watcher.ts watches them by these bytes).
   */
  byteDirs: Buffer[];
  /** True once the walk has finished (false while running, or when the consumer stopped early). */
  complete: boolean;
  /**
   * True when the root itself was unavailable by the end of the walk (a NAS unmounted mid-scan):
   * the caller should mark it offline rather than delete what it did not see.
   */
  rootLost: boolean;
}

/** Identity of the root folder: compare with the one seen last time to notice an unmounted mount point. */
export interface RootIdentity {
  dev: number;
  ino: number;
}

export type RootScan =
  | { ok: false; root: string; code: string; message: string }
  | {
      ok: true;
      root: string;
      realRoot: string;
      identity: RootIdentity;
      /** The walk; iterate it once. */
      batches: AsyncIterable<ScanBatch>;
      /** Filled in as the walk proceeds; final when `complete` is true. */
      readonly summary: Readonly<ScanSummary>;
    };

export interface ScanOptions {
  rules?: FileRules;
  /** Files per batch (default 500). */
  batchSize?: number;
  /** stat calls in flight at once (default 16; a NAS answers many at once much faster than in turn). */
  statConcurrency?: number;
  /** Follow links to folders outside the root (default true); loops and in-root aliases are never followed. */
  followSymlinks?: boolean;
  signal?: AbortSignal;
}

const errnoOf = (err: unknown): string => (err as NodeJS.ErrnoException | null)?.code ?? 'EUNKNOWN';

function problem(path: string, err: unknown, isDir: boolean): ScanProblem {
  const code = errnoOf(err);
  const what = isDir ? 'folder' : 'file';
  const why: Record<string, string> = {
    EACCES: `permission denied reading ${what}`,
    EPERM: `permission denied reading ${what}`,
    ENOENT: `${what} vanished during the scan`,
    ELOOP: 'symbolic link loop',
    EIO: `I/O error reading ${what}`,
  };
  return { path, code, message: `${path}: ${why[code] ?? errorMessage(err)}`, isDir };
}

/** Checks the root, then returns the walk. A missing or unreadable root is a result, not an exception. */
export async function scanRoot(rootArg: string, options: ScanOptions = {}): Promise<RootScan> {
  const root = resolve(rootArg);
  let rootStat: Stats;
  let realRoot: string;
  try {
    rootStat = await stat(root);
    if (!rootStat.isDirectory()) return { ok: false, root, code: 'ENOTDIR', message: `${root} is not a folder` };
    realRoot = await realpath(root);
    // Opening proves it is readable; the walk opens it again.
    await (await opendir(root)).close();
  } catch (err) {
    const code = errnoOf(err);
    const message =
      code === 'ENOENT'
        ? `${root} does not exist (unmounted or removed?)`
        : code === 'EACCES' || code === 'EPERM'
          ? `${root} cannot be read: permission denied`
          : `${root} cannot be read: ${errorMessage(err)}`;
    return { ok: false, root, code, message };
  }
  const summary: ScanSummary = {
    files: 0, dirs: 0, problems: 0, unreadableDirs: [], byteDirs: [], skippedAliases: 0, complete: false, rootLost: false,
  };
  const identity = { dev: rootStat.dev, ino: rootStat.ino };
  return {
    ok: true,
    root,
    realRoot,
    identity,
    batches: walk(root, realRoot, identity, summary, options),
    summary,
  };
}

interface PendingDir {
  abs: string;
  /** Set when `abs` is not the exact path (a name in it is not UTF-8). */
  bytes: Buffer | null;
  rel: string;
  real: string;
}

interface PendingFile {
  abs: string;
  bytes: Buffer | null;
  rel: string;
  isLink: boolean;
}

async function* walk(
  root: string,
  realRoot: string,
  identity: RootIdentity,
  summary: ScanSummary,
  options: ScanOptions,
): AsyncGenerator<ScanBatch> {
  const rules = options.rules ?? createFileRules();
  const batchSize = Math.max(1, options.batchSize ?? 500);
  const statConcurrency = Math.max(1, options.statConcurrency ?? 16);
  const followLinks = options.followSymlinks ?? true;
  const visited = new Set<string>([realRoot]);
  const stack: PendingDir[] = [{ abs: root, bytes: null, rel: '', real: realRoot }];
  let files: ScannedFile[] = [];
  let problems: ScanProblem[] = [];
  let unstated: PendingFile[] = [];

  const report = (p: ScanProblem): void => {
    problems.push(p);
    summary.problems++;
    if (p.isDir && p.code !== 'ENOENT' && p.code !== 'ELOOP') {
      const rel = p.path === root ? '' : p.path.slice(root.length + 1);
      summary.unreadableDirs.push(rel);
    }
  };

  /** Files are stat'ed in groups; a link to a folder found here is queued as a folder. */
  const statPending = async (parent: PendingDir): Promise<void> => {
    const group = unstated;
    unstated = [];
    for (let i = 0; i < group.length; i += statConcurrency) {
      const slice = group.slice(i, i + statConcurrency);
      const stats = await Promise.allSettled(slice.map((f) => stat(f.bytes ?? f.abs)));
      for (let k = 0; k < slice.length; k++) {
        const f = slice[k]!;
        const s = stats[k]!;
        if (s.status === 'rejected') {
          // A dangling link without an image name is nobody's photo; a loop is always worth saying.
          const code = errnoOf(s.reason);
          if (!f.isLink || hasImageExtension(f.rel) || code === 'ELOOP') report({ ...problem(f.abs, s.reason, false), pathBytes: f.bytes });
          continue;
        }
        const st = s.value;
        if (st.isDirectory()) {
          if (f.isLink) await queueLinkedDir(f, parent);
        } else if (st.isFile() && rules.isCandidateFile(f.rel)) {
          files.push({ path: f.abs, pathBytes: f.bytes, relPath: f.rel, size: st.size, mtimeMs: st.mtimeMs });
          summary.files++;
        }
      }
    }
  };

  const queueLinkedDir = async (f: PendingFile, parent: PendingDir): Promise<void> => {
    if (!followLinks || rules.isExcludedDir(f.rel)) return;
    let target: string;
    try {
      target = await realpath(f.bytes ?? f.abs);
    } catch (err) {
      report(problem(f.abs, err, true));
      return;
    }
    const action = classifyDirLink(target, parent.real, realRoot);
    if (action === 'loop') {
      report({ path: f.abs, code: 'ELOOP', message: `${f.abs}: symbolic link loop (points to ${target}, which contains it); not followed`, isDir: true });
    } else if (action === 'alias' || visited.has(target)) {
      summary.skippedAliases++;
    } else {
      visited.add(target);
      stack.push({ abs: f.abs, bytes: f.bytes, rel: f.rel, real: target });
    }
  };

  const take = (): ScanBatch => {
    const batch = { files, problems };
    files = [];
    problems = [];
    return batch;
  };

  while (stack.length > 0) {
    options.signal?.throwIfAborted();
    const dir = stack.pop()!;
    let handle: AsyncIterable<Dirent<Buffer>>;
    try {
      // Names as bytes: decoded as UTF-8, a Latin-1 name would become a path that does not exist.
      handle = (await opendir(dir.bytes ?? dir.abs, { bufferSize: 256, encoding: 'buffer' as BufferEncoding })) as unknown as AsyncIterable<
        Dirent<Buffer>
      >;
    } catch (err) {
      report(problem(dir.abs, err, true));
      continue;
    }
    summary.dirs++;
    if (dir.bytes !== null) summary.byteDirs.push(dir.bytes);
    try {
      for await (const entry of handle) {
        const name = displayName(entry.name);
        const rel = dir.rel === '' ? name : `${dir.rel}/${name}`;
        const abs = join(dir.abs, name);
        const bytes = childBytes(dir.abs, dir.bytes, entry.name);
        if (!isUtf8(entry.name) && (await nameClash(dir, name))) {
          report({
            path: abs,
            pathBytes: bytes,
            code: NAME_CLASH,
            message: `${abs}: its name is not UTF-8 and reads the same as the UTF-8 name beside it; skipped (rename one of them, e.g. with convmv)`,
            isDir: false,
          });
          continue;
        }
        if (entry.isDirectory()) {
          if (rules.isExcludedDir(rel)) continue;
          const real = join(dir.real, name);
          visited.add(real);
          stack.push({ abs, bytes, rel, real });
        } else if (entry.isFile()) {
          if (rules.isCandidateFile(rel)) unstated.push({ abs, bytes, rel, isLink: false });
        } else if (entry.isSymbolicLink()) {
          if (!rules.isExcludedPath(rel)) unstated.push({ abs, bytes, rel, isLink: true });
        }
        if (unstated.length >= batchSize) await statPending(dir);
        if (files.length >= batchSize) yield take();
      }
    } catch (err) {
      // Reading stopped part-way (the folder vanished or the disk failed): what was read stands.
      report(problem(dir.abs, err, true));
    }
    await statPending(dir);
    if (files.length >= batchSize || problems.length >= batchSize) yield take();
  }
  if (files.length > 0 || problems.length > 0) yield take();
  summary.rootLost = !(await sameRoot(root, identity));
  summary.complete = true;
}

/** The code of a name skipped because its display form is a sibling's real name (see nameClash). */
export const NAME_CLASH = 'ENAMECLASH';

/**
 * True when a name that is not UTF-8 reads (decoded as Latin-1) exactly like a UTF-8 name in the same folder
 * (`caf\xe9.jpg` beside `café.jpg`, a half-converted archive): both would be one path, one row. One lstat,
 * for such names only.
 */
async function nameClash(dir: PendingDir, display: string): Promise<boolean> {
  const twin = childBytes(dir.abs, dir.bytes, Buffer.from(display, 'utf8')) ?? join(dir.abs, display);
  return lstat(twin).then(
    () => true,
    () => false,
  );
}

async function sameRoot(root: string, identity: RootIdentity): Promise<boolean> {
  try {
    const s = await stat(root);
    return s.isDirectory() && s.dev === identity.dev && s.ino === identity.ino;
  } catch {
    return false;
  }
}
