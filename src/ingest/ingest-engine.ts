/**
 * The ingest engine: keeps a library's roots and its database in step, once (`clipdex index`) or for as
 * long as it runs (`clipdex serve`).
 *
 *   watcher ──▶ live changes ─┐
 *                             ├──▶ ingest_queue (SQLite) ──▶ encode pipeline ──▶ sink (SQLite, thumbnails)
 *   reconcile (scan) ─────────┘
 *
 * The watcher starts before the scan, so nothing that changes during the scan is missed; the pipeline
 * runs from the first queued file, so encoding overlaps the walk. All state that matters is in SQLite
 * (rows, queue); what is in memory (in-flight files, held deletions, counters) is rebuilt or redone
 * after a restart. Heavy work runs off the JS thread (ORT, libvips), so the engine can live inside the
 * server process.
 *
 * The engine wires the parts together and holds the public API; each part has its own module:
 * root-supervisor.ts (roots, their watchers, offline and retargeted roots; root-presence.ts decides
 * "offline"), scan-scheduler.ts (when roots are walked), pipeline-loop.ts (the pipeline and its retries),
 * progress-tracker.ts (counts, rate, ETA), garbage-collector.ts (content no file has any more).
 */
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { Library, LoadedModel } from '../library/library.js';
import type { RgbPixels, ThumbnailOptions } from '../model/image-decode.js';
import type { DecodeMode } from '../model/image-preprocess.js';
import { availableParallelism } from 'node:os';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import { readIngestCounts, type IngestCounts } from '../store/ingest-counts-repo.js';
import { ThreadImageEncoder } from './encoder-thread.js';
import type { WatchMode } from './folder-watcher.js';
import { type IngestEvent, type IngestListener, IngestListeners, type IngestPhase, type IngestProgress } from './ingest-events.js';
import { IngestQueue } from './ingest-queue.js';
import { storageError } from '../util/storage-error.js';
import { IngestStore, type RootInfo } from './ingest-store.js';
import { LiveChanges } from './live-changes.js';
import { folderIdentity } from './root-pin.js';
import { RootSupervisor } from './root-supervisor.js';
import { GarbageCollector } from './garbage-collector.js';
import { assertOcrSettable, OCR_MAX_SIDE, OcrService, resolveOcr, type OcrChoice, type OcrStatus } from './ocr-service.js';
import { OcrRepo } from '../store/ocr-repo.js';
import type { OcrOptions } from '../ocr/ocr-engine.js';
import { runPipelineLoop } from './pipeline-loop.js';
import { ProgressTracker } from './progress-tracker.js';
import { QueueClaims } from './queue-claims.js';
import { QueueLeasesRepo } from '../store/queue-leases-repo.js';
import { ScanScheduler } from './scan-scheduler.js';

// Re-exported: the server and the package's entry point take them from the engine.
export { readIngestCounts, type IngestCounts };

export interface IngestEngineOptions {
  /** Folders to add (and remember) before starting. */
  roots?: readonly string[];
  /** Exclude globs for the roots added here (see file-rules.ts); a known root keeps its own when omitted. */
  exclude?: readonly string[];
  /** Work on the roots given in `roots` only, not on every root the library remembers (default false). */
  onlyGivenRoots?: boolean;
  /** Watch the roots for changes (default true). */
  watch?: boolean;
  /** Reconcile every root at start (default true). */
  scan?: boolean;
  /**
   * Encode what is queued (default true). false: scan and watch only, and leave the encoding to `clipdex
   * worker` processes (`serve --no-encode`, a library in Postgres).
   */
  encode?: boolean;
  /** How long this process's claims on a shared queue last without renewal (a library in Postgres; default 60 s). */
  leaseMs?: number;
  onEvent?: IngestListener;
  /**
   * How long a written file must stay unchanged before it is read (default 750 ms). Half a second covers
   * local copies and keeps "file lands → searchable" near a second; the pipeline's own check (stat
   * before and after reading) catches a writer that pauses longer, and reads the file again later.
   */
  stableMs?: number;
  /** Quiet time before a batch of watch events is handled (default 150 ms). */
  debounceMs?: number;
  /** How long a deleted file's row waits for its new name (default 2 × stableMs + 2 × debounceMs + 500 ms). */
  renameWindowMs?: number;
  /** Watch by polling from the start (network shares that send no events). */
  usePolling?: boolean;
  pollIntervalMs?: number;
  /** How often an offline root is looked for (default 10 s). */
  offlineCheckMs?: number;
  /**
   * How long the embeddings and thumbnail of content no file has any more are kept (default 7 days), so a
   * folder removed and added back, or a share that comes back, is not encoded again. 0: dropped at the
   * next collection. Content a label is keyed by is kept while the label exists.
   */
  orphanRetentionMs?: number;
  /** Pipeline settings (see encode-pipeline.ts). */
  decodeConcurrency?: number;
  batchSize?: number;
  window?: number;
  thumbnail?: boolean | ThumbnailOptions;
  maxPixels?: number;
  /** 'once' (default): one decode per photo; 'per-render' only for bench:ingest's before/after comparison. */
  decode?: DecodeMode;
  /**
   * Encode on a worker thread (default true); see encoder-thread.ts for why. false shares the library's
   * image tower instead and saves its memory, at the price of blocking the event loop while it runs.
   */
  encoderThread?: boolean;
  /** ONNX Runtime options for the encoder thread (default: as the environment says, all cores). */
  session?: SessionOptions;
  /** Least time between two progress events (default 250 ms). */
  progressIntervalMs?: number;
  /** Stop, and make idle() reject, on the first failure of the engine itself (the CLI); default: retry. */
  stopOnFailure?: boolean;
  /**
   * More folders of clipdex's own (the model cache dir) that are never scanned or watched when they lie
   * inside a root. The library's data dir and the model's folder are always left out.
   */
  libraryDirs?: readonly string[];
  /**
   * Read the text in photos (ocr-service.ts): new photos from the same decode as CLIP's input, photos indexed
   * before in the background while ingest is idle. Given here it overrides CLIPDEX_OCR and the library's
   * setting (and setOcrEnabled refuses to change it); absent: CLIPDEX_OCR (on/off), else the library's
   * setting (`clipdex ocr on|off`), else on. Off reads nothing and keeps what was read searchable.
   */
  ocr?: boolean | { engine?: OcrOptions; session?: SessionOptions; hardLimitMs?: number; maxQueued?: number };
}

export interface RootStatus extends RootInfo {
  /** How it is watched now; 'off' when the engine does not watch. */
  watch: WatchMode | 'off';
  scanning: boolean;
}

/** A type, not an interface, so it is assignable to Record<string, unknown> (the server's view of it). */
export type IngestStatus = {
  phase: IngestPhase;
  progress: IngestProgress;
  counts: IngestCounts;
  roots: RootStatus[];
  modelKey: string;
  provider: string;
  /** Deleted files whose rows wait for a possible rename. */
  heldDeletions: number;
  /** The engine's last failure; `resolvedAt` is when it next got a file done (it is over, kept to read). */
  lastFailure: { code: string; message: string; at: number; resolvedAt: number | null } | null;
  /** Text in photos: read, failed and still to read (indexed contents), whether OCR is on and what decided it. */
  ocr: OcrStatus;
};

export class IngestEngine {
  private readonly store: IngestStore;
  private readonly queue: IngestQueue;
  private readonly claims: QueueClaims | null;
  private readonly live: LiveChanges;
  private readonly model: LoadedModel;
  private readonly listeners = new IngestListeners();
  private readonly roots: RootSupervisor;
  private readonly scans: ScanScheduler;
  private readonly stableMs: number;
  private readonly debounceMs: number;
  private readonly tracker: ProgressTracker;
  private readonly garbage: GarbageCollector;
  private pipeline: Promise<void> = Promise.resolve();
  private encoder: ThreadImageEncoder | null = null;
  private readonly ocrRepo: OcrRepo;
  private ocr: OcrService | null = null;
  private ocrChoice: OcrChoice = { enabled: false, source: 'default' };
  /** A service turned off and still closing: shutDown waits for it (it may be writing a reading). */
  private ocrClosing: Promise<void> = Promise.resolve();
  private ticker: NodeJS.Timeout | undefined;
  private handlingBatches = 0;
  private wroteSinceSync = false;
  private failure: { error: unknown; at: number; resolvedAt: number | null } | null = null;
  private fatal: unknown = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly library: Library,
    private readonly options: IngestEngineOptions,
  ) {
    this.model = library.requireModel();
    this.store = new IngestStore(library.store.db);
    this.ocrRepo = new OcrRepo(library.store.db);
    this.stableMs = Math.max(0, options.stableMs ?? 750);
    this.debounceMs = Math.max(0, options.debounceMs ?? 150);
    // On Postgres other processes (workers, serve replicas) take files from the same queue: claim them.
    this.claims =
      library.store.location.kind === 'postgres'
        ? new QueueClaims(new QueueLeasesRepo(library.store.db), {
            ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
            onError: (err) => this.recordFailure(err),
          })
        : null;
    this.queue = new IngestQueue(this.store, { stableMs: this.stableMs, ...(this.claims ? { claims: this.claims } : {}) });
    if (options.onEvent) this.listeners.add(options.onEvent);
    this.live = new LiveChanges({
      store: this.store,
      embeddings: library.embeddings,
      modelKey: this.model.key,
      queue: this.queue,
      emit: (e) => this.emit(e),
      rootIdOf: (path) => this.store.rootByPath(path)?.id,
      rootAvailable: (id) => this.roots.available(id),
      onRootOffline: (id, reason) => this.roots.lost(id, reason),
      renameWindowMs: options.renameWindowMs ?? 2 * this.stableMs + 2 * this.debounceMs + 500,
      busy: () => this.roots.hasPendingWrites(),
      onError: (err) => {
        this.recordFailure(err);
        this.scans.rescanLater();
      },
    });
    this.scans = new ScanScheduler({
      library,
      store: this.store,
      queue: this.queue,
      modelKey: this.model.key,
      stableMs: this.stableMs,
      emit: (e) => this.emit(e),
      rulesFor: (root) => this.roots.rulesFor(root),
      onByteDirs: (rootId, dirs) => this.roots.watchByteDirs(rootId, dirs),
      onLost: (rootId, reason) => this.roots.lost(rootId, reason),
      onRetargeted: (rootId, reason) => this.roots.retargeted(rootId, reason),
      onComplete: () => this.garbage.markDue(),
      recordFailure: (err) => this.recordFailure(err),
      isClosed: () => this.closed,
    });
    this.garbage = new GarbageCollector(this.store, library.thumbnails, options.orphanRetentionMs);
    this.tracker = new ProgressTracker({
      queueCounts: () => this.store.queueCounts(),
      phase: () => this.phase(),
      scanning: () => this.scans.running,
    });
    this.roots = new RootSupervisor({
      library,
      store: this.store,
      modelDir: this.model.model.spec.dir,
      ...(options.libraryDirs ? { libraryDirs: options.libraryDirs } : {}),
      watch: options.watch ?? true,
      stableMs: this.stableMs,
      debounceMs: this.debounceMs,
      ...(options.usePolling ? { usePolling: true } : {}),
      ...(options.pollIntervalMs ? { pollIntervalMs: options.pollIntervalMs } : {}),
      ...(options.offlineCheckMs !== undefined ? { offlineCheckMs: options.offlineCheckMs } : {}),
      emit: (e) => this.emit(e),
      onBatch: (events) => this.onWatchBatch(events),
      requestScan: (rootId) => this.scans.request(rootId),
      isScanning: (rootId) => this.scans.isScanning(rootId),
      recordFailure: (err) => this.recordFailure(err),
    });
  }

  /**
   * Adds `options.roots`, starts watching (before scanning, so nothing changed during the scan is
   * missed), starts the pipeline and the scans. Resolves once watching; `idle()` says when all is done.
   */
  static async start(library: Library, options: IngestEngineOptions = {}): Promise<IngestEngine> {
    const engine = new IngestEngine(library, options);
    try {
      await engine.begin();
    } catch (err) {
      await engine.close();
      throw err;
    }
    return engine;
  }

  private async begin(): Promise<void> {
    await this.roots.init();
    const given: RootInfo[] = [];
    for (const path of this.options.roots ?? []) given.push(await this.roots.register(path, this.options.exclude));
    const roots = this.options.onlyGivenRoots ? given : this.store.roots();
    for (const root of roots) this.roots.manage(root.id);
    const encode = this.options.encode ?? true;
    const clip = this.model.model;
    const onThread = clip.imageTowerOpen && clip.image instanceof ThreadImageEncoder && !this.options.session && !this.options.batchSize;
    const handed = encode && (this.options.encoderThread ?? true) && onThread ? clip.handOverImageTower() : null;
    if (handed instanceof ThreadImageEncoder) {
      // The model's tower is on an encoder thread already (serve): encode with it; this engine closes it.
      this.encoder = handed;
    } else if (encode && (this.options.encoderThread ?? true)) {
      this.encoder = await ThreadImageEncoder.open(clip.spec, {
        ...(this.options.session ? { session: this.options.session } : {}),
        ...(this.options.batchSize ? { batch: this.options.batchSize } : {}),
      });
      // Image queries of a library opened without its image tower use this copy, off the main thread.
      clip.shareImageTower(this.encoder);
    } else if (encode) await clip.openImageEncoder();
    const o = this.options;
    this.ocrChoice = resolveOcr({ option: o.ocr === undefined ? undefined : o.ocr !== false, library: this.ocrRepo.setting() });
    if (this.ocrChoice.enabled) this.ocr = this.newOcrService();
    if (encode) this.startPipeline();
    await Promise.all(roots.map((r) => this.roots.watch(r.id)));
    this.ticker = setInterval(() => this.tick(), this.options.progressIntervalMs ?? 250);
    this.ticker.unref();
    this.roots.startPinChecks();
    if (this.options.scan ?? true) for (const root of roots) void this.scans.request(root.id);
  }

  private startPipeline(): void {
    const o = this.options;
    this.pipeline = runPipelineLoop({
      library: this.library,
      store: this.store,
      queue: this.queue,
      model: this.encoder ?? this.model.model,
      modelKey: this.model.key,
      emit: (e) => this.emit(e),
      rootAvailable: (id) => this.roots.available(id),
      rootLost: (id, reason) => this.roots.lost(id, reason),
      done: () => this.tracker.done,
      isClosed: () => this.closed,
      recordFailure: (err) => this.recordFailure(err),
      ...(o.stopOnFailure ? { stopOnFailure: true } : {}),
      onFatal: (err) => {
        this.fatal = err;
      },
      ...(o.decodeConcurrency !== undefined ? { decodeConcurrency: o.decodeConcurrency } : {}),
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
      ...(o.window !== undefined ? { window: o.window } : {}),
      ...(o.thumbnail !== undefined ? { thumbnail: o.thumbnail } : {}),
      ...(o.maxPixels !== undefined ? { maxPixels: o.maxPixels } : {}),
      ...(o.decode !== undefined ? { decode: o.decode } : {}),
      // Through this.ocr at each photo, not a service fixed here: setOcrEnabled starts and stops it while the pipeline runs.
      ocr: { maxSide: OCR_MAX_SIDE, wants: (h: string) => this.ocr?.wants(h) ?? false, offer: (h: string, px: RgbPixels) => this.ocr?.offer(h, px) },
    });
  }

  private newOcrService(): OcrService {
    const o = this.options;
    const settings = typeof o.ocr === 'object' ? o.ocr : {};
    return new OcrService({
      repo: this.ocrRepo,
      busy: () => !this.isIdle(),
      // Half the cores by default: the CLIP encoder thread runs beside it during ingest.
      session: settings.session ?? { threads: Math.max(1, Math.floor(availableParallelism() / 2)), ...(o.session ?? {}) },
      ...(settings.engine ? { engine: settings.engine } : {}),
      ...(settings.hardLimitMs !== undefined ? { hardLimitMs: settings.hardLimitMs } : {}),
      ...(settings.maxQueued !== undefined ? { maxQueued: settings.maxQueued } : {}),
      ...(o.maxPixels !== undefined ? { maxPixels: o.maxPixels } : {}),
    });
  }

  // ---- public API ----

  /** Listens to every event (the server forwards them to browsers); returns the function that stops listening. */
  onEvent(listener: IngestListener): () => void {
    return this.listeners.add(listener);
  }

  /** Adds (and remembers) a folder, watches it and scans it. */
  async addRoot(path: string, options: { exclude?: readonly string[] } = {}): Promise<RootInfo> {
    this.assertOpen();
    const root = await this.roots.register(path, options.exclude);
    this.roots.manage(root.id);
    await this.roots.watch(root.id);
    void this.scans.request(root.id);
    return root;
  }

  /**
   * The user confirms that a root now stands for the folder its path leads to (after a retarget): the new
   * folder is pinned, watched and scanned like a new one; the old folder's photos that are not in it leave.
   */
  async confirmRoot(rootId: number): Promise<RootInfo | undefined> {
    this.assertOpen();
    const root = this.store.root(rootId);
    if (!root) return undefined;
    const now = await folderIdentity(root.path);
    if (!now) throw new ClipdexError('FILE_NOT_FOUND', `No folder at ${root.path}`, { details: { path: root.path } });
    // The new folder must pass what a new root must: not clipdex's own, not inside or around another root.
    await this.roots.register(root.path, undefined);
    this.library.roots.confirm(rootId, now.realPath, now.identity);
    await this.roots.unwatch(rootId);
    await this.roots.watch(rootId);
    void this.scans.request(rootId);
    return this.store.root(rootId);
  }

  /** Forgets a root and its images (their embeddings and thumbnails go at the next garbage collection). */
  async removeRoot(rootId: number): Promise<boolean> {
    this.assertOpen();
    await this.roots.release(rootId);
    // A scan still writing rows for it would fail on the missing root: stop it first.
    await this.scans.cancel(rootId);
    const removed = this.store.transaction(() => this.store.removeRoot(rootId));
    if (removed) {
      this.garbage.markDue();
      this.queue.wake(true);
    }
    return removed;
  }

  /** Reconciles one root, or every root; resolves when the walk and the sweep are done. */
  async rescan(rootId?: number): Promise<void> {
    this.assertOpen();
    const ids = rootId === undefined ? this.roots.ids : [rootId];
    for (const id of ids) {
      if (!this.store.root(id)) throw new ClipdexError('INVALID_ARGUMENT', `no root with id ${id}`);
    }
    await Promise.all(ids.map((id) => this.scans.request(id)));
  }

  /**
   * Resolves when nothing is left to do: scans finished, queue drained (for roots that are online),
   * no write waiting to settle, no watch batch in hand; or once the engine has closed. Rejects when
   * the engine stopped on a failure.
   */
  async idle(): Promise<void> {
    for (;;) {
      if (this.fatal) throw this.fatal;
      // Closing (Ctrl-C in `clipdex index`): what is left stays queued; there is nothing more to wait for.
      if (this.closed) return this.closing ?? undefined;
      await this.roots.flushWatchers();
      if (this.isIdle()) return;
      // A referenced timer: a caller waiting here keeps the process alive even when nothing else does.
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  status(): IngestStatus {
    const counts = readIngestCounts(this.library);
    const roots = this.store.roots().map((r) => ({
      ...r,
      watch: this.roots.watchMode(r),
      scanning: this.scans.isScanning(r.id),
    }));
    const f = this.failure;
    return {
      phase: this.phase(),
      progress: this.tracker.progress(),
      counts,
      roots,
      modelKey: this.model.key,
      // 'none' only where nothing encodes here (serve --no-encode) and no image was queried yet.
      provider: this.encoder?.provider ?? this.model.model.providers?.image ?? 'none',
      heldDeletions: this.live.held,
      lastFailure: f ? { code: isClipdexError(f.error) ? f.error.code : 'INTERNAL', message: errorMessage(f.error), at: f.at, resolvedAt: f.resolvedAt } : null,
      ocr: this.ocrStatus(),
    };
  }

  /** Text in photos: the counts, whether it is on (off: nothing is being read) and what decided that. */
  ocrStatus(): OcrStatus {
    return { ...(this.ocr?.status() ?? { enabled: false, unavailable: null, ...this.ocrRepo.counts() }), source: this.ocrChoice.source };
  }

  /**
   * Turns reading the text in photos on or off now, and records it as the library's setting so later runs
   * do the same; ingest goes on meanwhile. Off stops the OCR thread (a read in flight is dropped, its photo
   * stays pending); what was read stays searchable. Refused (SETTING_OVERRIDDEN) when CLIPDEX_OCR or the
   * engine's `ocr` option decides instead and says otherwise.
   */
  async setOcrEnabled(on: boolean): Promise<OcrStatus> {
    this.assertOpen();
    assertOcrSettable(this.ocrChoice, on);
    this.ocrRepo.setSetting(on);
    // A forced value that agrees stays the reason it is on or off; the setting written applies once it is not forced.
    if (this.ocrChoice.source !== 'env' && this.ocrChoice.source !== 'option') this.ocrChoice = { enabled: on, source: 'library' };
    if (on && !this.ocr) {
      this.ocr = this.newOcrService();
      if (this.isIdle()) this.ocr.poke();
    } else if (!on && this.ocr) {
      const service = this.ocr;
      this.ocr = null;
      const closing = service.close();
      this.ocrClosing = Promise.all([this.ocrClosing, closing]).then(() => undefined);
      await closing;
    }
    return this.ocrStatus();
  }

  /**
   * Resolves when OCR has read everything it can now: ingest idle, no photo queued or pending for it (or
   * OCR is off or its engine unavailable). For `clipdex index` and tests; rejects as idle() does.
   */
  async ocrIdle(): Promise<void> {
    let before = Infinity;
    for (;;) {
      await this.idle();
      if (!this.ocr || this.closed) return;
      this.ocr.poke();
      await this.ocr.settled();
      const s = this.ocr.status();
      // No progress over a whole pass (a reading that cannot be recorded): nothing more will come of waiting.
      if (s.unavailable !== null || s.pending === 0 || s.pending >= before) return;
      before = s.pending;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Drops embeddings and thumbnails of content that no file has any more. Runs by itself once the
   * engine is idle after a scan or after deletions; returns how many contents were dropped.
   */
  collectGarbage(): Promise<number> {
    return this.garbage.collect();
  }

  /**
   * Stops watching and scanning, lets the files already in the pipeline finish (their results are
   * recorded), settles held deletions, and leaves everything else queued for next time.
   */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    clearInterval(this.ticker);
    const unwatching = this.roots.close();
    this.scans.abortAll();
    await unwatching;
    await this.scans.settle();
    this.queue.close();
    await this.pipeline;
    // After the pipeline: the files it still held were recorded under these claims.
    this.claims?.close();
    if (this.encoder) {
      this.model.model.unshareImageTower(this.encoder);
      await this.encoder.close();
    }
    await this.ocr?.close();
    await this.ocrClosing;
    await this.live.close();
    // A one-shot run ends as soon as it is idle, before the ticker's collection: do it here. Only when
    // idle: a file still queued may be a moved photo whose stored embedding it is about to reuse.
    if (this.garbage.hasWork() && this.isIdle()) await this.collectGarbage().catch((err: unknown) => this.recordFailure(err));
    this.emitProgress(true);
    this.listeners.clear();
  }

  // ---- watching ----

  private async onWatchBatch(events: Parameters<LiveChanges['handle']>[0]): Promise<void> {
    if (this.closed) return;
    this.handlingBatches++;
    try {
      await this.live.handle(events);
    } catch (err) {
      this.recordFailure(err);
      // The batch's changes are recorded nowhere else (the watcher will not send them again): a later walk
      // of the roots finds them.
      this.scans.rescanLater();
    } finally {
      this.handlingBatches--;
    }
  }

  // ---- failures, events, the ticker ----

  private recordFailure(error: unknown): void {
    // A full or read-only disk under the library reads as "ENOSPC … write" or "disk I/O error": say where and what to do.
    const err = storageError(error, this.library.paths.dir) ?? error;
    this.failure = { error: err, at: Date.now(), resolvedAt: null };
    this.emit({ type: 'failure', code: isClipdexError(err) ? err.code : 'INTERNAL', message: errorMessage(err) });
  }

  private emit(event: IngestEvent): void {
    this.tracker.count(event);
    if (event.type === 'indexed') {
      this.wroteSinceSync = true;
      if (this.failure && this.failure.resolvedAt === null) this.failure.resolvedAt = Date.now();
    } else if (event.type === 'removed') {
      this.garbage.noteRemoved();
      this.wroteSinceSync = true;
    }
    this.listeners.emit(event);
  }

  private isIdle(): boolean {
    return (
      this.scans.running === 0 &&
      this.handlingBatches === 0 &&
      !this.roots.hasPendingWrites() &&
      this.queue.isIdle()
    );
  }

  private phase(): IngestPhase {
    if (this.scans.running > 0) return 'scanning';
    return this.queue.isIdle() ? 'idle' : 'encoding';
  }

  private emitProgress(force: boolean): void {
    if (this.listeners.size === 0) return;
    const progress = this.tracker.progressUpdate(force);
    if (progress) this.emit({ type: 'progress', progress });
  }

  private tick(): void {
    if (this.closed) return;
    this.emitProgress(false);
    if (this.wroteSinceSync && this.model.index) {
      // The index replays SQLite's change log by itself at each search; applying it as we go keeps that
      // replay short and lets the index start a background merge when enough has accumulated.
      this.wroteSinceSync = false;
      try {
        this.model.index.sync();
      } catch (err) {
        this.recordFailure(err);
      }
    }
    this.scans.rescanIfDue(this.roots.ids);
    // The background pass over photos not read yet starts once ingest is idle.
    if (this.ocr && this.isIdle()) this.ocr.poke();
    if (this.garbage.isDue() && this.isIdle()) {
      void this.collectGarbage().catch((err: unknown) => this.recordFailure(err));
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ClipdexError('INVALID_ARGUMENT', 'the ingest engine is closed');
  }
}
