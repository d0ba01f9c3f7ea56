/**
 * The roots an engine works on: which folders may become roots, which are watched, and which are offline.
 *
 * - Registration refuses clipdex's own folders (a data dir inside a root would index its own thumbnails)
 *   and roots inside or around another root (their photos would be indexed twice), and pins a new root to
 *   the folder it leads to (root-pin.ts).
 * - One FolderWatcher per online root. A root goes offline when the watcher, a scan or a read says it
 *   vanished, or when its path now leads to another folder; its watcher is closed then, and the root is
 *   looked for every `offlineCheckMs` (root-presence.ts decides) until it is back: watched again, then
 *   reconciled (the walk sets it online).
 * - A symlinked root can be pointed elsewhere without a single watch event: online roots are checked
 *   against their pins on the same period.
 */
import { realpath, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { Library } from '../library/library.js';
import { createFileRules, ownDirsUnder, type FileRules } from './file-rules.js';
import { FolderWatcher, type WatchEvent, type WatchMode, type WatchNotice } from './folder-watcher.js';
import type { IngestEvent } from './ingest-events.js';
import type { IngestStore, RootInfo } from './ingest-store.js';
import { checkRootPin } from './root-pin.js';
import { isRootThere } from './root-presence.js';

export interface RootSupervisorOptions {
  library: Pick<Library, 'roots' | 'paths'>;
  store: IngestStore;
  /** The model's folder: never a root, never walked inside one. */
  modelDir: string;
  /** More folders of clipdex's own (the model cache dir). */
  libraryDirs?: readonly string[];
  /** Watch roots at all (false: `clipdex index --no-watch`, tests). */
  watch: boolean;
  stableMs: number;
  debounceMs: number;
  usePolling?: boolean;
  pollIntervalMs?: number;
  /** How often offline roots are looked for and pins checked (default 10 s). */
  offlineCheckMs?: number;
  emit: (event: IngestEvent) => void;
  onBatch: (events: WatchEvent[]) => Promise<void>;
  /** Reconciles a root (coalesced by the scan scheduler). */
  requestScan: (rootId: number) => Promise<void>;
  isScanning: (rootId: number) => boolean;
  recordFailure: (error: unknown) => void;
}

const inside = (a: string, b: string) => a.startsWith(b.endsWith(sep) ? b : b + sep);

export class RootSupervisor {
  /** The roots this engine works on (`onlyGivenRoots` leaves the library's others alone). */
  private readonly managed = new Set<number>();
  private readonly watchers = new Map<number, FolderWatcher>();
  /** The library's own folders, as given and resolved through links (see ownFolders()). */
  private ownDirs: string[] = [];
  private offlineTimer: NodeJS.Timeout | undefined;
  private pinTimer: NodeJS.Timeout | undefined;
  private checkingOffline = false;
  private checkingPins = false;
  private closed = false;

  constructor(private readonly o: RootSupervisorOptions) {}

  /** Learns the library's own folders; before any root is registered. */
  async init(): Promise<void> {
    this.ownDirs = await this.ownFolders();
  }

  /** Starts checking pins (a retargeted symlink sends no watch event): once the roots are watched. */
  startPinChecks(): void {
    this.pinTimer = setInterval(() => void this.checkPins(), this.o.offlineCheckMs ?? 10_000);
    this.pinTimer.unref();
  }

  get ids(): number[] {
    return [...this.managed];
  }

  manage(rootId: number): void {
    this.managed.add(rootId);
  }

  /** Stops working on a root and stops watching it (the caller removes its rows). */
  async release(rootId: number): Promise<void> {
    this.managed.delete(rootId);
    await this.unwatch(rootId);
  }

  /** How the root is watched now, for status. */
  watchMode(root: RootInfo): WatchMode | 'off' {
    return this.watchers.get(root.id)?.mode() ?? (this.o.watch && root.state === 'offline' ? 'offline' : 'off');
  }

  /** Written files still settling in some watcher (more additions are on their way). */
  hasPendingWrites(): boolean {
    return [...this.watchers.values()].some((w) => w.pendingWrites > 0);
  }

  /** Delivers every watcher's buffered events and waits for their handling. */
  async flushWatchers(): Promise<void> {
    await Promise.all([...this.watchers.values()].map((w) => w.flush()));
  }

  /** A walk found folders whose names are not UTF-8: their watcher watches them by bytes. */
  watchByteDirs(rootId: number, dirs: readonly Buffer[]): void {
    this.watchers.get(rootId)?.watchByteDirs(dirs);
  }

  /** The root's file rules: its exclude globs, and the library's own folders inside it. */
  async rulesFor(root: RootInfo): Promise<FileRules> {
    const realRoot = await realpath(root.path).catch(() => root.path);
    return createFileRules({ exclude: root.exclude, excludeDirs: ownDirsUnder([root.path, realRoot], this.ownDirs) });
  }

  /** Checks a folder as a root and stores it (an existing root: its exclude globs, when given). */
  async register(pathArg: string, exclude: readonly string[] | undefined): Promise<RootInfo> {
    const path = resolve(pathArg);
    let real: string;
    try {
      const st = await stat(path);
      if (!st.isDirectory()) throw new ClipdexError('INVALID_ARGUMENT', `${path} is not a folder`, { details: { path } });
      real = await realpath(path);
    } catch (err) {
      if (isClipdexError(err)) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new ClipdexError(code === 'ENOENT' ? 'FILE_NOT_FOUND' : 'FILE_UNREADABLE', `cannot add ${path}: ${errorMessage(err)}`, {
        cause: err,
        details: { path },
      });
    }
    // Validates the globs before anything is stored.
    if (exclude) createFileRules({ exclude });
    const own = this.ownDirs.find((d) => path === d || real === d || inside(path, d) || inside(real, d));
    if (own) {
      throw new ClipdexError('INVALID_ARGUMENT', `${path} is inside ${own}, a folder of clipdex's own (its data or model files), not photos`, {
        details: { path },
      });
    }
    const { store, library } = this.o;
    for (const other of store.roots()) {
      if (other.path === path) continue;
      const otherReal = await realpath(other.path).catch(() => other.path);
      if (inside(path, other.path) || inside(real, otherReal)) {
        throw new ClipdexError('INVALID_ARGUMENT', `${path} is inside the folder ${other.path}, which is indexed already`, { details: { path } });
      }
      if (inside(other.path, path) || inside(otherReal, real)) {
        throw new ClipdexError(
          'INVALID_ARGUMENT',
          `${path} contains the indexed folder ${other.path}; remove that root first (its photos would be indexed twice)`,
          { details: { path } },
        );
      }
    }
    const root = store.addRoot(path, exclude);
    // A new root is pinned to the folder it leads to now (an existing one is checked at its scan).
    const record = library.roots.get(root.id);
    if (record && record.pinnedIdentity === null) await checkRootPin(library.roots, record);
    return root;
  }

  /** The root is still the folder the user chose (its pin), and its folder is there (root-presence.ts). */
  async available(rootId: number): Promise<boolean> {
    const root = this.o.store.root(rootId);
    if (!root) return false;
    const { roots } = this.o.library;
    const record = roots.get(rootId);
    if (record && (await checkRootPin(roots, record)).ok === false) return false;
    return isRootThere(root.path, root.identity);
  }

  async watch(rootId: number): Promise<void> {
    if (!this.o.watch || this.closed || this.watchers.has(rootId)) return;
    const root = this.o.store.root(rootId);
    if (!root) return;
    if (!(await this.available(rootId))) {
      this.lookForOfflineRoots();
      return;
    }
    try {
      const watcher = await FolderWatcher.start(root.path, {
        rules: await this.rulesFor(root),
        stableMs: this.o.stableMs,
        debounceMs: this.o.debounceMs,
        ...(this.o.usePolling ? { usePolling: true } : {}),
        ...(this.o.pollIntervalMs ? { pollIntervalMs: this.o.pollIntervalMs } : {}),
        onBatch: (events) => this.o.onBatch(events),
        onNotice: (notice) => this.onWatchNotice(rootId, notice),
        // A name the watcher cannot report (not UTF-8): the walk reads names as bytes. Asks coalesce (requestScan).
        onRescan: () => void this.o.requestScan(rootId),
        onError: (error) => this.o.emit({ type: 'notice', rootId, code: (error as NodeJS.ErrnoException).code ?? 'WATCH_ERROR', message: error.message }),
      });
      if (this.closed || !this.managed.has(rootId)) await watcher.close();
      else this.watchers.set(rootId, watcher);
    } catch (err) {
      // Gone between the check and the watch: treated as offline, looked for again later.
      this.lost(rootId, errorMessage(err));
    }
  }

  async unwatch(rootId: number): Promise<void> {
    const watcher = this.watchers.get(rootId);
    this.watchers.delete(rootId);
    await watcher?.close();
  }

  /** The root vanished (the watcher, a scan or a read said so): offline until it is back. */
  lost(rootId: number, reason: string): void {
    const root = this.o.store.root(rootId);
    if (!root || this.closed) return;
    if (root.state !== 'offline') this.markOffline(root, reason);
    void this.unwatch(rootId);
    this.lookForOfflineRoots();
  }

  /** The root's path leads to another folder now: offline, with the reason, until the user confirms. */
  retargeted(rootId: number, reason: string): void {
    const root = this.o.store.root(rootId);
    if (!root || this.closed) return;
    if (root.state !== 'offline' || root.stateReason !== reason) this.markOffline(root, reason);
    void this.unwatch(rootId);
    this.lookForOfflineRoots();
  }

  /** Stops the timers and every watcher. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.offlineTimer);
    clearInterval(this.pinTimer);
    await Promise.all([...this.watchers.keys()].map((id) => this.unwatch(id)));
  }

  /**
   * Folders clipdex writes to or reads its model from. With `--data-dir ~/Pictures/clipdex-data` the
   * thumbnails it writes are images inside a root: walked, they were indexed as photos, and watched, each
   * photo indexed wrote a thumbnail that was queued in turn.
   */
  private async ownFolders(): Promise<string[]> {
    const dirs = [this.o.library.paths.dir, this.o.modelDir, ...(this.o.libraryDirs ?? [])].map((d) => resolve(d));
    const real = await Promise.all(dirs.map((d) => realpath(d).catch(() => d)));
    return [...new Set([...dirs, ...real])];
  }

  private markOffline(root: RootInfo, reason: string): void {
    const { store } = this.o;
    store.transaction(() => store.markRootOffline(root.id, reason));
    this.o.emit({ type: 'root', rootId: root.id, path: root.path, state: 'offline', reason });
  }

  private onWatchNotice(rootId: number, notice: WatchNotice): void {
    this.o.emit({ type: 'notice', rootId, code: notice.code, message: notice.message });
    // Changes made while the watcher switched to polling may have been missed.
    if (notice.rescanAdvised) void this.o.requestScan(rootId);
  }

  /** Checks every online root against its pin (see root-pin.ts). */
  private async checkPins(): Promise<void> {
    if (this.checkingPins || this.closed) return;
    this.checkingPins = true;
    try {
      const { roots } = this.o.library;
      for (const id of this.managed) {
        const record = roots.get(id);
        if (record?.state !== 'ok' || this.o.isScanning(id)) continue;
        const pin = await checkRootPin(roots, record);
        if (pin.ok === false) this.retargeted(id, pin.reason);
      }
    } catch (err) {
      this.o.recordFailure(err);
    } finally {
      this.checkingPins = false;
    }
  }

  /** Back: watch it again first, then reconcile (which sets it online, and says so, once its walk completes). */
  private async back(rootId: number): Promise<void> {
    const root = this.o.store.root(rootId);
    if (!root || this.closed) return;
    await this.watch(rootId);
    await this.o.requestScan(rootId);
  }

  private lookForOfflineRoots(): void {
    if (this.offlineTimer || this.closed) return;
    this.offlineTimer = setInterval(() => void this.checkOfflineRoots(), this.o.offlineCheckMs ?? 10_000);
    this.offlineTimer.unref();
  }

  private async checkOfflineRoots(): Promise<void> {
    if (this.checkingOffline || this.closed) return;
    this.checkingOffline = true;
    try {
      const offline = this.ids
        .map((id) => this.o.store.root(id))
        .filter((r): r is RootInfo => r?.state === 'offline' && !this.o.isScanning(r.id));
      if (offline.length === 0) {
        clearInterval(this.offlineTimer);
        this.offlineTimer = undefined;
        return;
      }
      for (const root of offline) if (await this.available(root.id)) await this.back(root.id);
    } finally {
      this.checkingOffline = false;
    }
  }
}
