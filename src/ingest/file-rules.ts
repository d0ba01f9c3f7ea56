/**
 * Which paths under a root are photo candidates. The scanner and the watcher both ask this one
 * module, so a file the initial scan skips is never picked up by a watch event, and vice versa.
 *
 * Paths are judged relative to their root with '/' separators, so a root's own location
 * (say /home/me/.photos) never excludes what is inside it.
 */
import { isAbsolute, relative, sep } from 'node:path';
import picomatch from 'picomatch';
import { ClipdexError } from '../errors.js';

/** Extensions (lower case, no dot) of the formats the decoders read; matched case-insensitively. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  'jpg', 'jpeg', 'png', 'webp', 'gif', 'tif', 'tiff', 'bmp', 'heic', 'heif', 'avif',
]);

/**
 * Folder names that hold derived or system files rather than the user's photos, matched
 * case-insensitively. Dot-prefixed names (.git, .thumbnails, .Trash…) are excluded by the
 * hidden rule. @eaDir: Synology's per-folder thumbnails; #recycle/#snapshot: Synology's bin and
 * snapshots; $RECYCLE.BIN and System Volume Information: Windows volumes mounted on a NAS.
 */
/**
 * The folder at the top of each root that photos moved to the trash go to (duplicates review). Dot-prefixed,
 * so the hidden rule below keeps the scanner and the watcher out of it: a trashed photo is not indexed again.
 */
export const TRASH_DIR_NAME = '.clipdex-trash';

export const EXCLUDED_DIR_NAMES: ReadonlySet<string> = new Set(
  ['node_modules', '@eadir', '#recycle', '#snapshot', '$recycle.bin', 'system volume information', 'lost+found'],
);

export interface FileRulesOptions {
  /**
   * Extra exclusions as picomatch globs. A glob without '/' is tested against every path
   * segment ('raw' excludes any folder named raw, '*.tmp.jpg' any such file); a glob with '/'
   * (or starting with '/') is anchored at the root and tested against the path and each of its
   * parent folders ('2019/private' excludes that folder and everything inside it).
   */
  exclude?: readonly string[];
  /**
   * Folders (relative to the root, '/'-separated) excluded with everything inside them, taken as they are
   * rather than as globs: the library's own folders when they lie inside a root (see ownDirsUnder).
   */
  excludeDirs?: readonly string[];
}

export interface FileRules {
  /** The globs the rules were built from (for display and for storing with a root). */
  readonly exclude: readonly string[];
  /** True when a folder (relative to its root) must not be entered. */
  isExcludedDir(relPath: string): boolean;
  /** True when a file (relative to its root) is an image the indexer should look at. */
  isCandidateFile(relPath: string): boolean;
  /** True when the path is excluded whatever its type: a hidden, system or user-excluded part. */
  isExcludedPath(relPath: string): boolean;
}

/** 'a/b.JPG' → true. Only the name decides; the decoders check the bytes later. */
export function hasImageExtension(name: string): boolean {
  const dot = name.lastIndexOf('.');
  if (dot <= 0 || dot === name.length - 1) return false;
  return IMAGE_EXTENSIONS.has(name.slice(dot + 1).toLowerCase());
}

/**
 * `abs` relative to `root` with '/' separators, or null when `abs` is not inside `root`.
 * The root itself is ''.
 */
export function relativeToRoot(root: string, abs: string): string | null {
  const rel = relative(root, abs);
  if (rel === '') return '';
  if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return null;
  return sep === '/' ? rel : rel.split(sep).join('/');
}

function isSystemName(segment: string): boolean {
  return segment.startsWith('.') || EXCLUDED_DIR_NAMES.has(segment.toLowerCase());
}

function compileGlobs(globs: readonly string[]): { segment: picomatch.Matcher | null; anchored: picomatch.Matcher | null } {
  const segment: string[] = [];
  const anchored: string[] = [];
  for (const raw of globs) {
    if (typeof raw !== 'string' || raw.trim() === '') {
      throw new ClipdexError('INVALID_ARGUMENT', `Exclude patterns must be non-empty strings, got ${JSON.stringify(raw)}`);
    }
    // A leading '/' or './' anchors a glob at the root, as in .gitignore ('/exports' is only the top one).
    const trimmed = raw.trim();
    const glob = trimmed.replace(/^\.?\/+/, '').replace(/\/+$/, '');
    if (glob === '') throw new ClipdexError('INVALID_ARGUMENT', `Exclude pattern ${JSON.stringify(raw)} would exclude the whole root`);
    (glob.includes('/') || glob !== trimmed.replace(/\/+$/, '') ? anchored : segment).push(glob);
  }
  // dot: true so that user globs such as '*' or '**/x' are not silently blind to dot names.
  const compile = (list: string[]) => (list.length > 0 ? picomatch(list, { dot: true }) : null);
  return { segment: compile(segment), anchored: compile(anchored) };
}

/**
 * The folders of `dirs` that lie inside `root`, relative to it, for `excludeDirs`. Give real paths as well
 * as the paths as typed when either may go through a symbolic link: each pair is compared as given.
 */
export function ownDirsUnder(roots: readonly string[], dirs: readonly string[]): string[] {
  const out = new Set<string>();
  for (const root of roots) {
    for (const dir of dirs) {
      const rel = relativeToRoot(root, dir);
      // '' is the root itself: a root inside a library folder is refused when it is added, not emptied here.
      if (rel !== null && rel !== '') out.add(rel);
    }
  }
  return [...out];
}

export function createFileRules(options: FileRulesOptions = {}): FileRules {
  const exclude = Object.freeze([...(options.exclude ?? [])]);
  const { segment, anchored } = compileGlobs(exclude);
  const excludedDirs = new Set(options.excludeDirs ?? []);

  const isExcludedPath = (relPath: string): boolean => {
    if (relPath === '') return false;
    const parts = relPath.split('/');
    let prefix = '';
    for (const part of parts) {
      if (part === '' || part === '.') continue;
      if (isSystemName(part)) return true;
      if (segment?.(part)) return true;
      prefix = prefix === '' ? part : `${prefix}/${part}`;
      if (anchored?.(prefix) || excludedDirs.has(prefix)) return true;
    }
    return false;
  };

  return {
    exclude,
    isExcludedPath,
    isExcludedDir: isExcludedPath,
    isCandidateFile: (relPath) => hasImageExtension(relPath.slice(relPath.lastIndexOf('/') + 1)) && !isExcludedPath(relPath),
  };
}
