/**
 * What the folder watcher reads or adjusts of chokidar 5's private state (the version package-lock pins),
 * in one place. Each use works around a race chokidar has under load, and each falls back to the public
 * behaviour when the private part is missing, so a chokidar upgrade degrades to today's risk, never to a
 * crash. test/ingest-watcher.test.ts provokes each race on the real chokidar.
 */
import { resolve } from 'node:path';
import type { FSWatcher } from 'chokidar';

/** How long a folder read may take before the changes counted during it are dropped (see keepReadThrottles). */
const READ_THROTTLE_MS = 60_000;

type Internals = {
  _throttle?: (type: string, path: string, timeout: number) => unknown;
  _closers?: Map<string, unknown>;
  _watched?: Map<string, { items?: Set<string> }>;
};

const internals = (watcher: FSWatcher): Internals => watcher as unknown as Internals;

/**
 * chokidar 5 re-reads a folder when something in it changes, at most once a second: changes that come
 * during a read are counted, and the read runs once more when it ends. That count lives in a throttle entry
 * which expires after the second, so when a read takes longer (a folder of hundreds of files on a busy
 * server: every entry is lstat'ed through the event loop) the count is dropped, and the files created during
 * the read are reported only if something else in that folder changes later (under load: 78 of 5,000
 * photos never indexed). Here the entry lasts until the read ends (a minute at most), so the read repeats.
 */
export function keepReadThrottles(watcher: FSWatcher): void {
  const w = internals(watcher);
  const throttle = w._throttle;
  if (typeof throttle !== 'function') return;
  w._throttle = function (this: unknown, type: string, path: string, timeout: number) {
    return throttle.call(this, type, path, type === 'readdir' ? Math.max(timeout, READ_THROTTLE_MS) : timeout);
  };
}

/**
 * Whether chokidar watches `dir` for changes yet: true once its first read of a new folder has ended and
 * the folder's own watch is set (chokidar records the watch's closer only then); undefined when this
 * chokidar does not say.
 */
export function watchesFolder(watcher: FSWatcher, dir: string): boolean | undefined {
  const closers = internals(watcher)._closers;
  return closers instanceof Map ? closers.has(resolve(dir)) : undefined;
}

/** The names chokidar knows in `dir` (it reported them, or found them at start); public but slower fallback. */
export function namesKnownIn(watcher: FSWatcher, dir: string): ReadonlySet<string> {
  const watched = internals(watcher)._watched;
  const key = resolve(dir);
  if (watched instanceof Map) {
    const items = watched.get(key)?.items;
    if (items instanceof Set) return items;
  }
  return new Set(watcher.getWatched()[key] ?? []);
}
