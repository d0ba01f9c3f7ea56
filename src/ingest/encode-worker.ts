/**
 * `clipdex worker`: encodes for a library in Postgres that other processes scan and serve. It does not walk
 * or watch folders (a `serve` does, and queues what it finds); it claims queued files under leases
 * (queue-claims.ts), reads them where this machine sees them (path-map.ts), and runs the same pipeline and
 * sink as the ingest engine, so a photo encoded here is recorded exactly as one encoded by `serve`. Many
 * workers (one per GPU or CPU box) share the queue; none encodes a file another holds, and a killed one's
 * files go to the others when its leases run out.
 *
 * It makes no thumbnails (its folder is not the servers'); a server makes a missing one from the photo when
 * the page asks for it (server/thumbnail-remake.ts).
 */
import { stat } from 'node:fs/promises';
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { Library, LoadedModel } from '../library/library.js';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import { QueueLeasesRepo } from '../store/queue-leases-repo.js';
import { type IngestEvent, type IngestListener, IngestListeners } from './ingest-events.js';
import { IngestQueue } from './ingest-queue.js';
import { IngestStore } from './ingest-store.js';
import { PathMap } from './path-map.js';
import { runPipelineLoop } from './pipeline-loop.js';
import { QueueClaims } from './queue-claims.js';
import { ThreadImageEncoder } from './encoder-thread.js';

export interface EncodeWorkerOptions {
  /** How long a claim lasts without renewal (default 60 s): a killed worker's files wait this long. */
  leaseMs?: number;
  /** Where this machine sees the library's folders, when not at the library's paths. */
  pathMap?: PathMap;
  /** How often the queue is looked at when it has nothing for this worker (default 1 s). */
  pollMs?: number;
  /** This worker's name in the queue (default host:pid:random). */
  claimant?: string;
  onEvent?: IngestListener;
  decodeConcurrency?: number;
  batchSize?: number;
  /** Encode on a worker thread (default false: nothing else needs this process's event loop). */
  encoderThread?: boolean;
  session?: SessionOptions;
  /** Stop, and make idle() reject, at the first failure (default: retry with backoff). */
  stopOnFailure?: boolean;
}

export interface EncodeWorkerStatus {
  claimant: string;
  /** Files whose result this worker recorded. */
  done: number;
  encoded: number;
  errors: number;
  /** Files taken and not recorded yet. */
  inFlight: number;
}

export class EncodeWorker {
  private readonly store: IngestStore;
  private readonly claims: QueueClaims;
  private readonly queue: IngestQueue;
  private readonly model: LoadedModel;
  private readonly listeners = new IngestListeners();
  private readonly pathMap: PathMap;
  private encoder: ThreadImageEncoder | null = null;
  private pipeline: Promise<void> = Promise.resolve();
  private readonly counts = { done: 0, encoded: 0, errors: 0 };
  private fatal: unknown = null;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly library: Library,
    private readonly options: EncodeWorkerOptions,
  ) {
    if (library.store.location.kind !== 'postgres') {
      throw new ClipdexError(
        'INVALID_ARGUMENT',
        'a worker encodes for a library in Postgres (--db postgres://… or CLIPDEX_DATABASE_URL); an embedded library is encoded by `clipdex index` or `clipdex serve`',
      );
    }
    this.model = library.requireModel();
    this.store = new IngestStore(library.store.db);
    this.pathMap = options.pathMap ?? new PathMap([]);
    this.claims = new QueueClaims(new QueueLeasesRepo(library.store.db), {
      ...(options.leaseMs !== undefined ? { leaseMs: options.leaseMs } : {}),
      ...(options.claimant ? { claimant: options.claimant } : {}),
      onError: (err) => this.failure(err),
    });
    this.queue = new IngestQueue(this.store, {
      stableMs: 750,
      claims: this.claims,
      ...(this.pathMap.size > 0 ? { localPath: (f) => this.pathMap.local(f) } : {}),
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
    });
    if (options.onEvent) this.listeners.add(options.onEvent);
  }

  static async start(library: Library, options: EncodeWorkerOptions = {}): Promise<EncodeWorker> {
    const worker = new EncodeWorker(library, options);
    try {
      await worker.begin();
    } catch (err) {
      await worker.close();
      throw err;
    }
    return worker;
  }

  get claimant(): string {
    return this.claims.claimant;
  }

  private async begin(): Promise<void> {
    const o = this.options;
    if (o.encoderThread) {
      this.encoder = await ThreadImageEncoder.open(this.model.model.spec, {
        ...(o.session ? { session: o.session } : {}),
        ...(o.batchSize ? { batch: o.batchSize } : {}),
      });
    } else await this.model.model.openImageEncoder();
    this.pipeline = runPipelineLoop({
      library: this.library,
      store: this.store,
      queue: this.queue,
      model: this.encoder ?? this.model.model,
      modelKey: this.model.key,
      emit: (e) => this.emit(e),
      rootAvailable: (id) => this.rootReadable(id),
      // Not readable here (a share this machine lacks): left to the others, not marked offline for them.
      rootLost: (id, reason) => this.emit({ type: 'notice', rootId: id, code: 'ROOT_UNREADABLE', message: `folder ${this.store.root(id)?.path ?? id} cannot be read on this machine (${reason}); its photos are left to other workers` }),
      done: () => this.counts.done,
      isClosed: () => this.closed,
      recordFailure: (err) => this.failure(err),
      ...(o.stopOnFailure ? { stopOnFailure: true } : {}),
      onFatal: (err) => {
        this.fatal = err;
      },
      thumbnail: false,
      ...(o.decodeConcurrency !== undefined ? { decodeConcurrency: o.decodeConcurrency } : {}),
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    });
  }

  private async rootReadable(rootId: number): Promise<boolean> {
    const root = this.store.root(rootId);
    if (!root) return false;
    return stat(this.pathMap.localDir(root.path)).then(
      (st) => st.isDirectory(),
      () => false,
    );
  }

  onEvent(listener: IngestListener): () => void {
    return this.listeners.add(listener);
  }

  status(): EncodeWorkerStatus {
    return { claimant: this.claimant, ...this.counts, inFlight: this.queue.inFlightCount };
  }

  /**
   * Resolves when the whole queue is empty for the online folders (this worker's files and everyone
   * else's recorded), for `--exit-when-idle`; rejects when the worker stopped on a failure.
   */
  async idle(): Promise<void> {
    for (;;) {
      if (this.fatal) throw this.fatal;
      if (this.closed) return;
      if (this.queue.isIdle()) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Finishes the files in hand (their results are recorded), then gives every other claim back. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.closed = true;
    this.queue.close();
    await this.pipeline;
    await this.encoder?.close();
    this.claims.close();
    this.listeners.clear();
  }

  private failure(err: unknown): void {
    this.emit({ type: 'failure', code: isClipdexError(err) ? err.code : 'INTERNAL', message: errorMessage(err) });
  }

  private emit(event: IngestEvent): void {
    if (event.type === 'indexed') {
      this.counts.done++;
      if (event.encoded) this.counts.encoded++;
    } else if (event.type === 'error') {
      this.counts.done++;
      this.counts.errors++;
    } else if (event.type === 'removed' || event.type === 'renamed') this.counts.done++;
    this.listeners.emit(event);
  }
}
