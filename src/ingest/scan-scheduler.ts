/**
 * When roots are walked (reconcile.ts): one walk per root at a time, asks during a walk coalesced into one
 * more pass right after it, and, after a change could not be recorded (a full or read-only disk), every
 * online root walked again a while later, since the walk is what finds the lost changes.
 */
import type { Library } from '../library/library.js';
import type { FileRules } from './file-rules.js';
import type { IngestEvent, ScanReport } from './ingest-events.js';
import type { IngestQueue } from './ingest-queue.js';
import type { IngestStore, RootInfo } from './ingest-store.js';
import { reconcileRoot } from './reconcile.js';
import { checkRootPin, type PinCheck } from './root-pin.js';

/** After a change could not be recorded, the roots are walked again this much later. */
const RESCAN_AFTER_FAILURE_MS = 10_000;

export interface ScanSchedulerOptions {
  library: Pick<Library, 'roots' | 'images' | 'embeddings'>;
  store: IngestStore;
  queue: IngestQueue;
  modelKey: string;
  stableMs: number;
  emit: (event: IngestEvent) => void;
  rulesFor: (root: RootInfo) => Promise<FileRules>;
  /** The walk found folders whose names are not UTF-8 (the watcher watches them by bytes). */
  onByteDirs: (rootId: number, dirs: readonly Buffer[]) => void;
  /** The walk found the root gone: it goes offline. */
  onLost: (rootId: number, reason: string) => void;
  /** The root's path leads to another folder now. */
  onRetargeted: (rootId: number, reason: string) => void;
  /** A walk that saw the whole root: content no file has any more can be collected. */
  onComplete: () => void;
  recordFailure: (error: unknown) => void;
  isClosed: () => boolean;
}

interface Scan {
  dirty: boolean;
  done: Promise<void>;
  abort: AbortController;
}

export class ScanScheduler {
  private readonly scans = new Map<number, Scan>();
  /** When the roots are to be reconciled again because changes were lost to a failure; 0: not due. */
  private rescanAt = 0;

  constructor(private readonly o: ScanSchedulerOptions) {}

  /** Roots being walked now. */
  get running(): number {
    return this.scans.size;
  }

  isScanning(rootId: number): boolean {
    return this.scans.has(rootId);
  }

  /** One reconcile per root at a time; asking during one runs another pass right after it. */
  request(rootId: number): Promise<void> {
    const running = this.scans.get(rootId);
    if (running) {
      running.dirty = true;
      return running.done;
    }
    const entry: Scan = { dirty: true, done: Promise.resolve(), abort: new AbortController() };
    this.scans.set(rootId, entry);
    entry.done = (async () => {
      try {
        while (entry.dirty && !this.o.isClosed() && !entry.abort.signal.aborted) {
          entry.dirty = false;
          await this.reconcileOnce(rootId, entry.abort.signal).catch((err: unknown) => {
            // Marking the root offline failed (the database refused the write): try the walk again later.
            this.o.recordFailure(err);
            this.rescanLater();
          });
        }
      } finally {
        this.scans.delete(rootId);
      }
    })();
    return entry.done;
  }

  /** Stops the root's walk (it is being removed: rows written for it would fail) and waits for it. */
  async cancel(rootId: number): Promise<void> {
    const scan = this.scans.get(rootId);
    if (!scan) return;
    scan.abort.abort();
    await scan.done.catch(() => undefined);
  }

  /** Changes were lost to a failure: walk the roots again in a while (once, however many failures). */
  rescanLater(): void {
    if (this.rescanAt === 0 && !this.o.isClosed()) this.rescanAt = Date.now() + RESCAN_AFTER_FAILURE_MS;
  }

  /** Walks the online roots among `rootIds` when a rescan after a failure is due. */
  rescanIfDue(rootIds: Iterable<number>): void {
    if (this.rescanAt === 0 || Date.now() < this.rescanAt) return;
    this.rescanAt = 0;
    for (const id of rootIds) if (this.o.store.root(id)?.state === 'ok') void this.request(id);
  }

  /** Aborts every walk; `settle()` waits for them to end. */
  abortAll(): void {
    for (const scan of this.scans.values()) scan.abort.abort();
  }

  async settle(): Promise<void> {
    await Promise.all([...this.scans.values()].map((s) => s.done.catch(() => undefined)));
  }

  private async reconcileOnce(rootId: number, signal: AbortSignal): Promise<void> {
    const { store, library, emit } = this.o;
    const root = store.root(rootId);
    if (!root) return;
    // Checked before the walk: it would index the new folder's files under the old photos' root.
    const record = library.roots.get(rootId);
    const pin: PinCheck = record ? await checkRootPin(library.roots, record) : { ok: true };
    if (pin.ok === false) return this.o.onRetargeted(rootId, pin.reason);
    emit({ type: 'scan', rootId, path: root.path, phase: 'started' });
    let report: ScanReport;
    try {
      report = await reconcileRoot(root, {
        rules: await this.o.rulesFor(root),
        store,
        images: library.images,
        embeddings: library.embeddings,
        modelKey: this.o.modelKey,
        queue: this.o.queue,
        emit,
        stableMs: this.o.stableMs,
        signal,
        onByteDirs: (dirs) => this.o.onByteDirs(rootId, dirs),
      });
    } catch (err) {
      if (!this.o.isClosed() && !signal.aborted) {
        this.o.recordFailure(err);
        this.rescanLater();
      }
      return;
    }
    if (report.complete) this.o.onComplete();
    emit({ type: 'scan', rootId, path: root.path, phase: 'finished', summary: report });
    if (report.offline) this.o.onLost(rootId, store.root(rootId)?.stateReason ?? 'unavailable');
    else if (root.state === 'offline' && store.root(rootId)?.state === 'ok') {
      emit({ type: 'root', rootId, path: root.path, state: 'ok' });
    }
    // Entries of a root that came back sit below the queue's cursor.
    this.o.queue.wake(true);
  }
}
