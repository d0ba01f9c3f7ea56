/**
 * Live changes under one root, as batches of plain events. The engine runs one watcher per root,
 * so a root that hits the OS watch limit falls back to polling on its own, and removing a root is
 * closing its watcher.
 *
 * - Filtering: the same file rules as the scanner, applied inside chokidar (`ignored`) so that
 *   excluded folders are never walked or watched, and again on each event.
 * - Write settling: add/change events wait in a WriteSettler until the file has been quiet and
 *   unchanged for `stableMs` (see write-settle.ts for why not chokidar's awaitWriteFinish).
 * - Batching: events are coalesced per path (the latest wins) and delivered after `debounceMs`
 *   of quiet, or after `maxWaitMs` during a continuous burst, or at `maxBatch` events; one
 *   delivery at a time, and events that arrive meanwhile are merged into the next batch.
 * - New folders: chokidar watches a new folder only after its first read, so what is created in between
 *   would never be reported; once it watches, the folder is compared with what it knows (catchUp).
 * - Symlinked folders follow the scanner's policy (dir-links.ts): loops and in-root aliases are
 *   not followed; chokidar alone would descend into a loop until the kernel says ELOOP.
 * - Watch limits: an ENOSPC/EMFILE/ENFILE error from the chokidar instance closes it and reopens
 *   the root with polling, reported once through `onNotice`. Changes made while switching can be
 *   missed, so the notice asks the caller to rescan the root.
 *
 * - Offline root: before deletions are passed on, the root is checked to still be the same
 *   folder (device and inode, see root-presence.ts); a vanished or replaced root is reported as
 *   'rootOffline' instead (an unmounted share shows up as every file deleted), once; its owner
 *   looks for the root's return and watches it again.
 *
 * There is no initial 'add' flood (ignoreInitial): the initial state comes from the scanner.
 * Start the watcher before the scan, so changes made during the scan are not lost.
 */
import { type FSWatcher as NodeFSWatcher, lstatSync, type Stats, watch as watchDir } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { readdir, realpath, stat } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
import chokidar, { type ChokidarOptions, type FSWatcher } from 'chokidar';
import { ClipdexError, errorMessage } from '../errors.js';
import { classifyDirLinkSync } from './dir-links.js';
import { createFileRules, hasImageExtension, relativeToRoot, type FileRules } from './file-rules.js';
import { isSameFolder, type FolderIdentityNumbers } from './root-presence.js';
import { keepReadThrottles, namesKnownIn, watchesFolder } from './chokidar-internals.js';
import { WriteSettler, type SettledFile } from './write-settle.js';

/**
 * 'rootOffline': the root vanished or was replaced (unmounted, its mount point left empty); its
 * deletions in that batch were withheld, and the caller should mark its files offline rather
 * than delete them. The watcher reports nothing more; its owner looks for the root's return and
 * watches it again with a new watcher.
 */
export type WatchEventType = 'add' | 'change' | 'unlink' | 'addDir' | 'unlinkDir' | 'rootOffline';

export interface WatchEvent {
  /** 'add' and 'change' both mean "this path now holds a complete file: check it". */
  type: WatchEventType;
  root: string;
  path: string;
  relPath: string;
  /** For add/change: the settled size and mtime. */
  size?: number;
  mtimeMs?: number;
}

export type WatchMode = 'native' | 'polling' | 'offline';

export interface WatchNotice {
  kind: 'polling-fallback';
  root: string;
  /** The errno that caused it: ENOSPC (inotify watches), EMFILE/ENFILE (open files). */
  code: string;
  /** A sentence for the user: what happened, what it costs, how to fix it. */
  message: string;
  /** Events during the switch may have been missed: reconcile this root once. */
  rescanAdvised: true;
}

export type WatcherFactory = (root: string, options: ChokidarOptions) => FSWatcher;

export interface FolderWatcherOptions {
  rules?: FileRules;
  /** Quiet time before a batch is delivered (default 250 ms). */
  debounceMs?: number;
  /** Longest an event waits during a continuous burst (default 4 × debounceMs). */
  maxWaitMs?: number;
  /** A batch is delivered as soon as it holds this many events (default 2000). */
  maxBatch?: number;
  /** How long a written file must stay unchanged before it is reported (default 1000 ms). */
  stableMs?: number;
  /** Watch the root by polling from the start (network file systems that send no events). */
  usePolling?: boolean;
  /** Polling interval when polling (default 2000 ms). */
  pollIntervalMs?: number;
  /** Follow links to folders outside the root (default true), like the scanner. */
  followSymlinks?: boolean;
  onBatch: (events: WatchEvent[]) => void | Promise<void>;
  onNotice?: (notice: WatchNotice) => void;
  /** Other watcher errors (a folder that cannot be read, a failing onBatch). */
  onError?: (error: Error) => void;
  /**
   * Something changed under the root that this watcher cannot report as an event: a name that is not UTF-8
   * (see open()). The caller walks the root again (the scanner reads names as bytes).
   */
  onRescan?: () => void;
  /** Makes the chokidar instance; tests use it to reach the instance. */
  createWatcher?: WatcherFactory;
}

const LIMIT_CODES = new Set(['ENOSPC', 'EMFILE', 'ENFILE']);

/** How often new folders are looked at for chokidar's watch on them, and the longest wait for it. */
const NEW_FOLDER_POLL_MS = 100;
const NEW_FOLDER_MAX_WAIT_MS = 60_000;

export class FolderWatcher {
  private watcher: FSWatcher | null = null;
  /** fs.watch handles on folders whose paths are not UTF-8, by their bytes as Latin-1 text (watchByteDirs). */
  private readonly byteWatches = new Map<string, NodeFSWatcher>();
  private watchMode: 'native' | 'polling';
  private noticed = false;
  private offline = false;
  private markReady!: () => void;
  private readonly ready = new Promise<void>((res) => (this.markReady = res));
  private readonly settler: WriteSettler<'add' | 'change'>;
  private readonly rules: FileRules;
  private readonly createWatcher: WatcherFactory;
  private buffer = new Map<string, WatchEvent>();
  private firstBufferedAt = 0;
  private flushTimer: NodeJS.Timeout | undefined;
  private delivering: Promise<void> | null = null;
  private closed = false;
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;
  private readonly maxBatch: number;
  private readonly pollIntervalMs: number;
  private readonly stableMs: number;
  /** New folders to look into once chokidar watches them (see catchUp); `all`: chokidar reported none of their files. */
  private readonly newFolders = new Map<string, { all: boolean; since: number }>();
  private newFolderTimer: NodeJS.Timeout | undefined;
  private readonly toSweep: { dir: string; all: boolean }[] = [];
  private sweeping: Promise<void> | null = null;

  private constructor(
    readonly root: string,
    private readonly realRoot: string,
    private readonly identity: FolderIdentityNumbers,
    private readonly options: FolderWatcherOptions,
  ) {
    this.watchMode = options.usePolling ? 'polling' : 'native';
    this.rules = options.rules ?? createFileRules();
    this.createWatcher = options.createWatcher ?? ((root, opts) => chokidar.watch(root, opts));
    this.debounceMs = Math.max(0, options.debounceMs ?? 250);
    this.maxWaitMs = Math.max(this.debounceMs, options.maxWaitMs ?? 4 * this.debounceMs);
    this.maxBatch = Math.max(1, options.maxBatch ?? 2000);
    this.pollIntervalMs = Math.max(10, options.pollIntervalMs ?? 2000);
    this.stableMs = Math.max(0, options.stableMs ?? 1000);
    this.settler = new WriteSettler({
      stableMs: this.stableMs,
      onSettled: (files) => this.settled(files),
    });
  }

  /** Watches `root`; resolves once it is being watched. */
  static async start(rootArg: string, options: FolderWatcherOptions): Promise<FolderWatcher> {
    if (typeof options?.onBatch !== 'function') throw new ClipdexError('INVALID_ARGUMENT', 'FolderWatcher needs an onBatch callback');
    const root = resolve(rootArg);
    let realRoot: string;
    let s: Stats;
    try {
      realRoot = await realpath(root);
      s = await stat(root);
    } catch (err) {
      throw new ClipdexError('FILE_NOT_FOUND', `Cannot watch ${root}: ${errorMessage(err)}`, { cause: err, details: { root } });
    }
    if (!s.isDirectory()) throw new ClipdexError('INVALID_ARGUMENT', `Cannot watch ${root}: not a folder`, { details: { root } });
    const watcher = new FolderWatcher(root, realRoot, { dev: s.dev, ino: s.ino }, options);
    try {
      watcher.open();
      await watcher.ready;
    } catch (err) {
      await watcher.close();
      throw err;
    }
    return watcher;
  }

  mode(): WatchMode {
    return this.offline ? 'offline' : this.watchMode;
  }

  /** Files written recently that are still waiting to settle. */
  get pendingWrites(): number {
    return this.settler.size;
  }

  /** Delivers what is buffered now and waits until every delivery has finished. */
  async flush(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    while (!this.closed && (this.buffer.size > 0 || this.delivering)) {
      if (this.delivering) await this.delivering;
      else this.deliver();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearInterval(this.newFolderTimer);
    this.newFolders.clear();
    this.markReady();
    this.settler.close();
    this.closeByteWatches();
    await this.watcher?.close();
    this.buffer.clear();
    await this.delivering;
    await this.sweeping;
  }

  /** Opens a chokidar instance on the root, in the current mode. */
  private open(): FSWatcher {
    const polling = this.watchMode === 'polling';
    const watcher = this.createWatcher(this.root, {
      ignoreInitial: true,
      persistent: true,
      followSymlinks: this.options.followSymlinks ?? true,
      alwaysStat: true,
      usePolling: polling,
      interval: this.pollIntervalMs,
      binaryInterval: this.pollIntervalMs,
      // Our settler does this job; chokidar's would hold events back a second time.
      awaitWriteFinish: false,
      ignored: (path: string, stats?: Stats) => this.ignored(path, stats),
    });
    this.watcher = watcher;
    keepReadThrottles(watcher);
    const live = () => !this.closed && !this.offline && this.watcher === watcher;
    watcher.on('ready', () => {
      if (live()) this.markReady();
    });
    watcher.on('error', (err: unknown) => {
      if (!live()) return;
      const error = err instanceof Error ? err : new Error(String(err));
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (LIMIT_CODES.has(code) && this.watchMode === 'native') void this.fallBackToPolling(code, error);
      else if (!LIMIT_CODES.has(code)) this.options.onError?.(error);
    });
    watcher.on('all', (event, path, stats) => {
      if (live()) this.onEvent(event as WatchEventType, path, stats);
    });
    // chokidar takes names as UTF-8 strings: a Latin-1 name (`caf\xe9.jpg`) decodes to `caf\uFFFD.jpg`, whose
    // stat fails, and chokidar drops it without an event (files and whole folders alike). The raw inotify
    // event still arrives with that lossy name, so it asks for a walk of the root, which reads names as bytes.
    // Inside such a folder chokidar watches nothing: watchByteDirs() watches those folders by their bytes.
    // Polling sends no raw names: there, such files are found by the next walk (a restart, `clipdex index`).
    watcher.on('raw', (_event: string, name: unknown) => {
      if (live() && typeof name === 'string' && name.includes('\uFFFD')) this.options.onRescan?.();
    });
    return watcher;
  }

  /**
   * Watches the folders of the root whose paths are not UTF-8 (a walk lists them: scanner.ts `byteDirs`),
   * which chokidar cannot enter, by their bytes: any change in one asks for a walk of the root. Replaces the
   * last list, so folders gone since stop being watched.
   */
  watchByteDirs(dirs: readonly Buffer[]): void {
    if (this.closed || this.watchMode === 'polling') return;
    const wanted = new Map(dirs.map((d) => [d.toString('latin1'), d]));
    for (const [key, w] of this.byteWatches) {
      if (!wanted.has(key)) {
        w.close();
        this.byteWatches.delete(key);
      }
    }
    for (const [key, dir] of wanted) {
      if (this.byteWatches.has(key)) continue;
      try {
        const w = watchDir(dir, { encoding: 'buffer', persistent: false }, () => {
          if (!this.closed) this.options.onRescan?.();
        });
        // Removed or unreadable: the walk that its removal prompts (in its parent) sends the new list.
        w.on('error', () => {
          w.close();
          if (this.byteWatches.get(key) === w) this.byteWatches.delete(key);
        });
        this.byteWatches.set(key, w);
      } catch {
        // Gone already, or out of watches: found by the next walk instead.
      }
    }
  }

  private closeByteWatches(): void {
    for (const w of this.byteWatches.values()) w.close();
    this.byteWatches.clear();
  }

  /**
   * chokidar reads a new folder first and watches it only when the read has ended: a file created in
   * between gets no event, ever (a copy that finished while a busy event loop ran the read: CI saw 1,479 of
   * 2,000 copied photos never indexed). So once chokidar watches a new folder, its entries are compared
   * with what chokidar knows: a file it missed is reported here, a folder it missed is handed to it and
   * looked into the same way. Anything created after the watch is set comes as an event.
   */
  private expectFolder(dir: string, all: boolean): void {
    if (this.closed) return;
    const had = this.newFolders.get(dir);
    this.newFolders.set(dir, { all: all || (had?.all ?? false), since: had?.since ?? Date.now() });
    if (!this.newFolderTimer) {
      this.newFolderTimer = setInterval(() => this.checkNewFolders(), NEW_FOLDER_POLL_MS);
      this.newFolderTimer.unref();
    }
  }

  private checkNewFolders(): void {
    const watcher = this.watcher;
    const now = Date.now();
    for (const [dir, f] of this.newFolders) {
      const watched = watcher && !this.offline ? watchesFolder(watcher, dir) : false;
      const waited = now - f.since;
      // undefined: this chokidar does not say, so wait as long as a write settles. Not watched for long:
      // gone or unreadable, or a read that still runs; one look either way (what it finds is harmless twice).
      if (watched === true || (watched === undefined && waited >= this.stableMs) || waited >= NEW_FOLDER_MAX_WAIT_MS) {
        this.newFolders.delete(dir);
        this.toSweep.push({ dir, all: f.all });
      }
    }
    if (this.newFolders.size === 0) {
      clearInterval(this.newFolderTimer);
      this.newFolderTimer = undefined;
    }
    if (this.toSweep.length > 0 && !this.sweeping) {
      this.sweeping = this.sweepAll().finally(() => (this.sweeping = null));
    }
  }

  /** One folder at a time: a copied tree of thousands of folders must not open thousands of reads at once. */
  private async sweepAll(): Promise<void> {
    for (let next = this.toSweep.shift(); next && !this.closed; next = this.toSweep.shift()) {
      try {
        await this.catchUp(next.dir, next.all);
      } catch (err) {
        this.options.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  private async catchUp(dir: string, all: boolean): Promise<void> {
    const watcher = this.watcher;
    if (!watcher || this.offline) return;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return; // gone or unreadable: its own events say so
    }
    const known = namesKnownIn(watcher, dir);
    for (const name of names) {
      if (this.closed || this.watcher !== watcher || this.offline) return;
      const knows = known.has(name);
      if (knows && !all) continue;
      const path = join(dir, name);
      const rel = relativeToRoot(this.root, path);
      if (rel === null) continue;
      const stats = await stat(path).catch(() => null);
      if (!stats || this.ignored(path, stats)) continue;
      if (stats.isFile()) this.onEvent('add', path, stats);
      else if (stats.isDirectory()) {
        // Missed whole: chokidar watches it from now on, but reports nothing already in it (ignoreInitial),
        // and neither in the folders under it: all of theirs is reported here.
        if (!knows) watcher.add(path);
        this.folderAppeared(path, rel, true);
      }
    }
  }

  /** A new folder, reported by chokidar or found by catchUp (`all`: chokidar reports none of what is in it). */
  private folderAppeared(path: string, rel: string, all: boolean): void {
    this.enqueue({ type: 'addDir', root: this.root, path, relPath: rel });
    // A folder moved in whole brings its names with it and no raw event for them (see open()).
    void this.checkByteNames(path);
    this.expectFolder(path, all);
  }

  /** Asks for a walk when a folder holds a name chokidar cannot report (not UTF-8). */
  private async checkByteNames(dir: string): Promise<void> {
    try {
      const names = await readdir(dir, { encoding: 'buffer' });
      if (names.some((name) => !isUtf8(name)) && !this.closed) this.options.onRescan?.();
    } catch {
      // Gone or unreadable already: its own events (unlinkDir, a read error) say so.
    }
  }

  private async fallBackToPolling(code: string, cause: Error): Promise<void> {
    this.watchMode = 'polling';
    const old = this.watcher;
    this.open();
    if (!this.noticed) {
      this.noticed = true;
      this.options.onNotice?.({ kind: 'polling-fallback', root: this.root, code, message: limitMessage(this.root, code, this.pollIntervalMs, cause), rescanAdvised: true });
    }
    await old?.close().catch(() => undefined);
  }

  private ignored(path: string, stats?: Stats): boolean {
    const rel = relativeToRoot(this.root, path);
    if (rel === null || rel === '') return false;
    if (this.rules.isExcludedPath(rel)) return true;
    if (stats?.isFile()) return !hasImageExtension(basename(path));
    if (stats?.isDirectory() && (this.options.followSymlinks ?? true)) {
      // chokidar's stats follow links; only lstat says whether this folder is one.
      let isLink = false;
      try {
        isLink = lstatSync(path).isSymbolicLink();
      } catch {
        return false;
      }
      if (isLink) return classifyDirLinkSync(path, this.realRoot) !== 'follow';
    }
    return false;
  }

  private onEvent(type: WatchEventType, path: string, stats?: Stats): void {
    const rel = relativeToRoot(this.root, path);
    if (rel === null) return;
    const root = this.root;
    switch (type) {
      case 'add':
      case 'change':
        if (!this.rules.isCandidateFile(rel)) return;
        this.settler.touch(path, type, stats ? { size: stats.size, mtimeMs: stats.mtimeMs, ino: stats.ino } : undefined);
        return;
      case 'unlink':
        if (!this.rules.isCandidateFile(rel)) return;
        this.settler.forget(path);
        this.enqueue({ type, root, path, relPath: rel });
        return;
      case 'addDir':
        if (rel !== '' && this.rules.isExcludedDir(rel)) return;
        this.folderAppeared(path, rel, false);
        return;
      case 'unlinkDir':
        if (rel !== '' && this.rules.isExcludedDir(rel)) return;
        this.settler.forgetUnder(path);
        // Whatever is buffered under the folder is overtaken by its removal.
        for (const p of [...this.buffer.keys()]) if (p.startsWith(path + sep)) this.buffer.delete(p);
        this.enqueue({ type, root, path, relPath: rel });
        return;
      default:
        return;
    }
  }

  private settled(files: SettledFile<'add' | 'change'>[]): void {
    for (const f of files) {
      const rel = relativeToRoot(this.root, f.path);
      if (rel === null) continue;
      this.enqueue({ type: f.tag, root: this.root, path: f.path, relPath: rel, size: f.size, mtimeMs: f.mtimeMs });
    }
  }

  private enqueue(event: WatchEvent): void {
    if (this.closed) return;
    if (this.buffer.size === 0) this.firstBufferedAt = Date.now();
    // Delete first so the path moves to the end: batches keep the order things happened in.
    this.buffer.delete(event.path);
    this.buffer.set(event.path, event);
    if (this.buffer.size >= this.maxBatch) {
      this.deliver();
      return;
    }
    clearTimeout(this.flushTimer);
    const due = Math.min(Date.now() + this.debounceMs, this.firstBufferedAt + this.maxWaitMs);
    this.flushTimer = setTimeout(() => this.deliver(), Math.max(0, due - Date.now()));
  }

  /**
   * Deletions are the one kind of event that can lose data: before passing them on, check that
   * the root is still the folder it was. An unmounted share leaves an empty mount point behind
   * (another device), and chokidar then reports every file under it as deleted.
   */
  private async withholdIfLost(events: WatchEvent[]): Promise<WatchEvent[]> {
    if (this.offline || !events.some((e) => e.type === 'unlink' || e.type === 'unlinkDir')) return events;
    if (await isSameFolder(this.root, this.identity)) return events;
    this.offline = true;
    this.settler.forgetUnder(this.root);
    this.buffer.clear();
    await this.watcher?.close().catch(() => undefined);
    return [{ type: 'rootOffline', root: this.root, path: this.root, relPath: '' }];
  }

  private deliver(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    // One delivery at a time; what arrives meanwhile keeps coalescing and goes next.
    if (this.delivering || this.buffer.size === 0 || this.closed) return;
    const events = [...this.buffer.values()].slice(0, this.maxBatch);
    for (const e of events) this.buffer.delete(e.path);
    if (this.buffer.size > 0) this.firstBufferedAt = Date.now();
    this.delivering = (async () => {
      try {
        const screened = await this.withholdIfLost(events);
        if (screened.length > 0 && !this.closed) await this.options.onBatch(screened);
      } catch (err) {
        this.options.onError?.(err instanceof Error ? err : new Error(String(err)));
      } finally {
        this.delivering = null;
        if (this.buffer.size > 0 && !this.closed) {
          const due = Math.max(0, this.firstBufferedAt + this.maxWaitMs - Date.now());
          if (this.buffer.size >= this.maxBatch || due === 0) this.deliver();
          else this.flushTimer = setTimeout(() => this.deliver(), Math.min(due, this.debounceMs));
        }
      }
    })();
  }
}

function limitMessage(root: string, code: string, pollMs: number, cause: Error): string {
  const every = pollMs >= 1000 ? `${(pollMs / 1000).toFixed(pollMs % 1000 === 0 ? 0 : 1)} s` : `${pollMs} ms`;
  const fix =
    code === 'ENOSPC'
      ? 'raise the limit on file watches (e.g. `sudo sysctl fs.inotify.max_user_watches=524288`, and fs.inotify.max_user_instances) and restart'
      : 'raise the limit on open files (e.g. `ulimit -n 65536`) and restart';
  return (
    `Watching ${root} by polling every ${every}: the system limit was reached (${code}: ${cause.message}). ` +
    `Changes there will show up more slowly and cost more CPU. To watch natively, ${fix}.`
  );
}
