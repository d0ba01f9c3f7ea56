/**
 * Where clipdex keeps its files, XDG style: the data dir holds what the user built (database, index,
 * adapters); the cache dir holds what can be fetched again (downloaded model weights).
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { ClipdexError } from '../errors.js';

export interface DirOptions {
  /** Wins over the environment, e.g. the CLI's `--data-dir`. Relative paths resolve against the cwd. */
  override?: string;
  /** Defaults to `process.env`; tests pass their own. */
  env?: Readonly<Record<string, string | undefined>>;
  /** Defaults to `os.homedir()`. */
  home?: string;
}

/** `$CLIPDEX_DATA_DIR`, else `$XDG_DATA_HOME/clipdex`, else `~/.local/share/clipdex`. */
export function dataDir(options: DirOptions | string | undefined = {}): string {
  return pickDir(asOptions(options), 'CLIPDEX_DATA_DIR', 'XDG_DATA_HOME', ['.local', 'share']);
}

/** `$CLIPDEX_CACHE_DIR`, else `$XDG_CACHE_HOME/clipdex`, else `~/.cache/clipdex`. */
export function cacheDir(options: DirOptions | string | undefined = {}): string {
  return pickDir(asOptions(options), 'CLIPDEX_CACHE_DIR', 'XDG_CACHE_HOME', ['.cache']);
}

/**
 * `<root>/models/<id with '/' as '--'>/<revision with '/' as '--'>`. Ids and revisions come from
 * manifests and the command line, so anything that could climb out of the cache is refused.
 */
export function modelCacheDir(manifestId: string, revision: string, root: string = cacheDir()): string {
  return join(resolve(root), 'models', cacheSegment(manifestId, 'model id'), cacheSegment(revision, 'revision'));
}

function asOptions(options: DirOptions | string | undefined): DirOptions {
  return typeof options === 'string' ? { override: options } : (options ?? {});
}

function pickDir(options: DirOptions, ownVar: string, xdgVar: string, homeParts: string[]): string {
  if (options.override !== undefined && options.override !== '') return resolve(options.override);
  const env = options.env ?? process.env;
  const own = env[ownVar];
  if (own) return resolve(own);
  // The XDG spec says relative values are invalid and must be ignored.
  const xdg = env[xdgVar];
  if (xdg && isAbsolute(xdg)) return join(xdg, 'clipdex');
  return join(options.home ?? homedir(), ...homeParts, 'clipdex');
}

function cacheSegment(value: string, what: string): string {
  const problem = unsafeReason(value);
  if (problem) {
    throw new ClipdexError('INVALID_ARGUMENT', `Invalid ${what} ${JSON.stringify(value)}: ${problem}.`, {
      details: { [what === 'revision' ? 'revision' : 'id']: value },
    });
  }
  return value.replaceAll('/', '--');
}

function unsafeReason(value: string): string | null {
  if (value === '') return 'it is empty';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f]/.test(value)) return 'it contains a control character';
  if (value.includes('..')) return "it contains '..'";
  if (value.startsWith('/') || isAbsolute(value) || /^[A-Za-z]:/.test(value)) return 'it is an absolute path';
  if (value.includes('\\') || value.includes(':')) return "it contains '\\' or ':'";
  if (value.split('/').some((part) => part === '' || part === '.')) return "it has an empty or '.' path segment";
  return null;
}
