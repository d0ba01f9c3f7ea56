/**
 * Where a worker finds the library's files on its own machine. The library names a photo by the path the
 * machine that added the folder saw (`/srv/photos/2019/a.jpg`); another machine may mount that share
 * elsewhere (`/mnt/nas/photos/2019/a.jpg`). `--path-map /srv/photos=/mnt/nas/photos` says so; the longest
 * matching library prefix wins, and a path no prefix matches is read as it is. Only reading goes through the
 * map: what the library records (paths, rows) is never rewritten, so every machine keeps one name per photo.
 */
import { isAbsolute } from 'node:path';
import { ClipdexError } from '../errors.js';
import type { LibraryFile } from './ingest-queue.js';
import { type FsPath, fsPathOf } from './raw-path.js';

export interface PathMapping {
  /** The folder as the library names it. */
  from: string;
  /** The same folder on this machine. */
  to: string;
}

/** Parses `LIBRARY=LOCAL` (both absolute); a trailing slash on either is ignored. */
export function parsePathMapping(spec: string): PathMapping {
  const eq = spec.indexOf('=');
  const from = trimSlash(eq < 0 ? '' : spec.slice(0, eq));
  const to = trimSlash(eq < 0 ? '' : spec.slice(eq + 1));
  if (eq < 0 || !isAbsolute(from) || !isAbsolute(to)) {
    throw new ClipdexError('INVALID_ARGUMENT', `--path-map takes LIBRARY_PATH=LOCAL_PATH, both absolute (e.g. /srv/photos=/mnt/nas/photos); got "${spec}"`);
  }
  return { from, to };
}

function trimSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

export class PathMap {
  private readonly mappings: PathMapping[];

  constructor(mappings: readonly PathMapping[]) {
    // Longest first, so /srv/photos/family wins over /srv/photos.
    this.mappings = [...mappings].sort((a, b) => b.from.length - a.from.length);
  }

  get size(): number {
    return this.mappings.length;
  }

  /** The path this machine reads `file` by. */
  local(file: LibraryFile): FsPath {
    const hit = this.match(file.path);
    if (!hit) return fsPathOf(file);
    if (!file.pathBytes) return hit.to + hit.rest;
    // A name that is not UTF-8: swap the prefix's bytes and keep the rest of the raw name as it is.
    return Buffer.concat([Buffer.from(hit.to, 'utf8'), file.pathBytes.subarray(Buffer.byteLength(hit.from, 'utf8'))]);
  }

  /** A folder's path on this machine (a root's, to check that it is reachable). */
  localDir(path: string): string {
    const hit = this.match(path);
    return hit ? hit.to + hit.rest : path;
  }

  /** The longest mapping `path` lies under, and what follows its prefix. */
  private match(path: string): (PathMapping & { rest: string }) | null {
    for (const m of this.mappings) {
      const rest = under(path, m.from);
      if (rest !== null) return { ...m, rest };
    }
    return null;
  }
}

/** What follows `prefix` in `path` (starting with "/" or empty), or null when `path` is not under it. */
function under(path: string, prefix: string): string | null {
  if (prefix === '/') return path.startsWith('/') ? path : null;
  if (path === prefix) return '';
  return path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : null;
}
