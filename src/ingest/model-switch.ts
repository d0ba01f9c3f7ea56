/**
 * Changing a library's model (`clipdex models use`, POST /api/model): the target is recorded in the
 * database, every indexed photo is encoded again with it in the background (reencoder.ts, on its own
 * encoder thread), and when every photo has a vector under the target's key and its index is open, the
 * library switches in one step (Library.switchModel). Until then searches, labels and training use the
 * current model. The old model's vectors and index stay: switching back finds every vector there and is
 * instant. A kill loses nothing: the target stays recorded and what was encoded is in the embeddings
 * table, so the next start (or `models use … --wait`) goes on from there.
 *
 * One process re-encodes at a time: the runner keeps a heartbeat row; another process (a CLI beside a
 * server) sees it and follows the progress from the database instead of encoding the same photos.
 */
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { ClipdexError, errorMessage } from '../errors.js';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import type { Library, LoadedModel } from '../library/library.js';
import type { ModelSpec } from '../model/model-dir.js';
import type { LoadModelOptions } from '../model/clip-model.js';
import type { QueryPrecision } from '../model/query-precision.js';
import { keyDir } from '../index/index-files.js';
import { runInTransaction } from '../store/database.js';
import { IndexChangesRepo } from '../store/index-changes-repo.js';
import type { RecordedModel, SwitchTarget } from '../store/library-model-repo.js';
import { ModelKeysRepo } from '../store/model-keys-repo.js';
import type { PipelineModel } from './encode-pipeline.js';
import { ThreadImageEncoder } from './encoder-thread.js';
import { reencodeMissing, type ReencodeFailure } from './reencoder.js';

export type SwitchState = 'idle' | 'encoding' | 'indexing' | 'waiting' | 'elsewhere';

export interface ModelSwitchStatus {
  /** idle: no switch; encoding/indexing: this process works on it; waiting: photos failed, or not started;
   * elsewhere: another process (a server, `models use --wait`) is encoding. */
  state: SwitchState;
  current: RecordedModel | null;
  target: { ref: string; key: string } | null;
  /** Photos (distinct contents) with a vector under the target's key, of all indexed ones. */
  done: number;
  total: number;
  filesPerSecond: number;
  etaSeconds: number | null;
  /** Photos that could not be encoded in this pass (the switch waits for them), the last few named. */
  failed: number;
  failures: ReencodeFailure[];
  error: string | null;
  lastSwitch: { from: string; to: string; at: number } | null;
}

export type ModelSwitchEvent =
  | { type: 'model-switch'; status: ModelSwitchStatus }
  | { type: 'model-switched'; from: string; to: string; key: string; encoded: number };

export interface UseResult {
  /** switched: done now (every photo already had a vector); pending: re-encoding recorded; unchanged: already the model. */
  outcome: 'switched' | 'pending' | 'unchanged';
  ref: string;
  key: string;
  done: number;
  total: number;
}

/** What opens the target's image tower for the re-encoder (a test may hand the library's own). */
export type EncoderFactory = (spec: ModelSpec) => Promise<PipelineModel & { close(): Promise<void> }>;

export interface ModelSwitcherOptions {
  cacheDir?: string;
  session?: SessionOptions;
  /** The text tower's precision for queries in the model switched to (`clipdex serve --query-precision`). */
  queryPrecision?: QueryPrecision;
  decodeConcurrency?: number;
  batchSize?: number;
  /** How often the database is looked at for a target recorded elsewhere (default 2 s). */
  pollMs?: number;
  onEvent?: (event: ModelSwitchEvent) => void;
  /** Least time between two progress events while encoding (default 500 ms). */
  progressMs?: number;
  encoder?: EncoderFactory;
  /** Also encode, under the current model, photos that another model's ingest added (a server whose ingest
   * engine still runs the model it started with). Default true. */
  follow?: boolean;
}

/** A runner's heartbeat older than this belongs to a process that is gone. */
export const RUNNER_STALE_MS = 15_000;
const RATE_WINDOW_MS = 15_000;
const MAX_FAILURES_KEPT = 5;
const RETRY_FAILED_MS = 5 * 60_000;

export class ModelSwitcher {
  private readonly holder = `${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly startKey: string;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private abort: AbortController | null = null;
  private closed = false;
  private state: SwitchState = 'idle';
  private failures: ReencodeFailure[] = [];
  private failedHashes = new Set<string>();
  private failedCount = 0;
  private failedAt = 0;
  private error: string | null = null;
  private lastSwitch: ModelSwitchStatus['lastSwitch'] = null;
  private rate: { at: number; done: number }[] = [];
  private readonly listeners = new Set<(event: ModelSwitchEvent) => void>();
  private lastEmit = 0;
  /** Photos this switcher encoded, over its life (what a test asserts is zero when switching back). */
  encoded = 0;

  constructor(
    private readonly library: Library,
    private readonly options: ModelSwitcherOptions = {},
  ) {
    this.startKey = library.requireModel().key;
  }

  /** The model cache dir models are resolved in (undefined: the default). */
  get cacheDir(): string | undefined {
    return this.options.cacheDir;
  }

  /** Adds a listener of the switch's events (the server's event stream); returns its removal. */
  onEvent(listener: (event: ModelSwitchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(event: ModelSwitchEvent): void {
    this.options.onEvent?.(event);
    for (const l of this.listeners) l(event);
  }

  /** Starts working in the background: on a recorded target now, and on one recorded later. */
  start(): this {
    const every = this.options.pollMs ?? 2000;
    this.timer = setInterval(() => this.kick(), every);
    this.timer.unref();
    this.kick();
    return this;
  }

  /**
   * Records `ref` as the library's target. Its model is loaded (so a bad id fails here, with its error);
   * when every indexed photo already has its vectors, the library switches at once.
   */
  async use(ref: string): Promise<UseResult> {
    const current = this.library.requireModel();
    const loaded = await this.library.loadModel(ref, this.loadOptions());
    const { key } = loaded;
    if (key === current.key) {
      await loaded.model.release();
      // Back to the current model while a switch was pending: that is a cancel.
      this.cancelTarget();
      const { done, total } = this.library.models.coverage(key);
      return { outcome: 'unchanged', ref, key, done, total };
    }
    const { done, total } = this.library.models.coverage(key);
    if (done >= total) {
      // Every vector is there: no encoder, no pass; the index opens (built in its worker if it must be).
      this.cancelTarget();
      await this.switchTo(ref, loaded, 0);
      return { outcome: 'switched', ref, key, done, total };
    }
    await loaded.model.release();
    if (this.library.models.target()?.key !== key) this.cancelTarget();
    this.library.models.setTarget({ ref, key, dim: loaded.model.dim, requestedAt: Date.now() });
    this.failedHashes = new Set();
    this.failedCount = 0;
    this.failures = [];
    this.error = null;
    this.emitStatus(true);
    // A started switcher works on it now; one that is not (the CLI) leaves it to `runToEnd` or a server.
    if (this.timer) this.kick();
    return { outcome: 'pending', ref, key, done, total };
  }

  /** Cancels a pending switch; the target's vectors encoded so far stay (a later `use` resumes). */
  async cancel(): Promise<boolean> {
    const had = this.cancelTarget();
    await this.running;
    this.emitStatus(true);
    return had;
  }

  private cancelTarget(): boolean {
    const had = this.library.models.target() !== null;
    this.library.models.clearTarget();
    this.library.models.clearProgress();
    this.abort?.abort(new DOMException('the model switch was cancelled', 'AbortError'));
    return had;
  }

  /**
   * Encodes up to `photos` photos for the target and measures the time a photo takes (tower already
   * open, so its load is not counted); the photos stay encoded. null when nothing is left to measure.
   */
  async measure(photos = 4): Promise<{ msPerPhoto: number; photos: number } | null> {
    const target = this.library.models.target();
    if (!target) return null;
    const spec = (await this.library.loadModel(target.ref, this.loadOptions()).then(async (l) => {
      await l.model.release();
      return l.spec;
    })) as ModelSpec;
    const encoder = await this.openEncoder(spec);
    try {
      // One photo first, unmeasured: the session's first run allocates and warms up.
      await this.pass(target, encoder, 1);
      const t0 = performance.now();
      const { encoded } = await this.pass(target, encoder, photos);
      if (encoded === 0) return null;
      return { msPerPhoto: (performance.now() - t0) / encoded, photos: encoded };
    } finally {
      await encoder.close();
    }
  }

  /** Runs the switch here until it is done (or cancelled, or fails); the CLI's `--wait`. */
  async runToEnd(): Promise<void> {
    for (;;) {
      this.kick(true);
      await this.running;
      if (this.closed || !this.library.models.target()) return;
      if (this.error) throw new ClipdexError('MODEL_INVALID', this.error);
      if (this.state === 'waiting' && this.failedCount > 0) {
        throw new ClipdexError('FILE_UNREADABLE', `${this.failedCount} photo(s) could not be encoded with the target model (first: ${this.failures[0]?.path}: ${this.failures[0]?.message}); the switch waits for them`);
      }
      if (this.state === 'elsewhere') {
        // Another process encodes: its progress row is what there is to show.
        this.emitStatus(true);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Resolves when the background work now running has stopped. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  status(): ModelSwitchStatus {
    const models = this.library.models;
    const target = models.target();
    const current = models.current();
    const coverage = target ? models.coverage(target.key) : { done: 0, total: 0 };
    const mine = this.state === 'encoding' || this.state === 'indexing';
    // A process that has worked on the switch reports its own numbers; one that has not (`clipdex status`,
    // a CLI beside a server) reads the runner's last report.
    const own = mine || this.encoded > 0 || this.failedCount > 0 || this.error !== null;
    const elsewhere = target && !own ? models.progress<Partial<ModelSwitchStatus>>() : null;
    const runner = models.runner();
    const runnerAlive = runner !== null && runner.holder !== this.holder && Date.now() - runner.at < RUNNER_STALE_MS;
    const { filesPerSecond, etaSeconds } = mine ? this.rateNow(coverage) : { filesPerSecond: elsewhere?.filesPerSecond ?? 0, etaSeconds: elsewhere?.etaSeconds ?? null };
    return {
      state: !target ? 'idle' : mine ? this.state : runnerAlive ? 'elsewhere' : 'waiting',
      current,
      target: target ? { ref: target.ref, key: target.key } : null,
      done: coverage.done,
      total: coverage.total,
      filesPerSecond,
      etaSeconds,
      failed: !elsewhere ? this.failedCount : (elsewhere.failed ?? 0),
      failures: !elsewhere ? this.failures : (elsewhere.failures ?? []),
      error: this.error,
      lastSwitch: this.lastSwitch,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.abort?.abort(new DOMException('closing', 'AbortError'));
    await this.idle();
  }

  private loadOptions(): { cacheDir?: string; session?: LoadModelOptions } {
    const session: LoadModelOptions = { ...this.options.session, ...(this.options.queryPrecision ? { queryPrecision: this.options.queryPrecision } : {}) };
    return { ...(this.options.cacheDir ? { cacheDir: this.options.cacheDir } : {}), ...(Object.keys(session).length > 0 ? { session } : {}) };
  }

  /** Starts a round of work unless one runs; `force` also retries photos that failed before. */
  private kick(force = false): void {
    if (this.running || this.closed) return;
    if (force) {
      this.failedHashes = new Set();
      this.failedCount = 0;
      this.failures = [];
      this.error = null;
    }
    // A batch of a large model on a CPU can take longer than the heartbeat's staleness: beat on a timer too.
    const heart = setInterval(() => {
      try {
        if (this.library.models.runner()?.holder === this.holder) this.beat();
      } catch {
        // A database that refuses the write: the batch's own write reports it.
      }
    }, RUNNER_STALE_MS / 3);
    heart.unref();
    this.running = this.round()
      .catch((err: unknown) => {
        if (this.abort?.signal.aborted) return;
        this.error = errorMessage(err);
        this.failedAt = Date.now();
        this.emitStatus(true);
      })
      .finally(() => {
        clearInterval(heart);
        this.running = null;
        this.abort = null;
        if (this.state === 'encoding' || this.state === 'indexing') this.state = 'idle';
        this.releaseRunner();
      });
  }

  private async round(): Promise<void> {
    const models = this.library.models;
    const target = models.target();
    const loaded = this.library.requireModel();
    if (!target) {
      this.state = 'idle';
      await this.followRecorded(loaded);
      return;
    }
    // Photos that failed (an unreadable file, a share gone) are tried again a while later, not at every tick.
    if ((this.error || this.failedCount > 0) && Date.now() - this.failedAt > RETRY_FAILED_MS) {
      this.failedHashes = new Set();
      this.failedCount = 0;
      this.failures = [];
      this.error = null;
    }
    if (this.error || this.failedCount > 0) {
      this.state = 'waiting';
      return;
    }
    if (!this.takeRunner()) {
      this.state = 'elsewhere';
      return;
    }
    this.abort = new AbortController();
    this.state = 'encoding';
    this.rate = [];
    const { spec } = await this.library.loadModel(target.ref, this.loadOptions()).then(async (l) => {
      await l.model.release();
      if (l.key !== target.key) throw new ClipdexError('MODEL_INVALID', `${target.ref} is no longer the model it was when the switch began (its files changed); run \`clipdex models use ${target.ref}\` again`);
      return l;
    });
    if (models.target()?.key !== target.key) return;
    const encoder = await this.openEncoder(spec);
    try {
      this.emitStatus(true);
      await this.pass(target, encoder);
    } finally {
      await encoder.close();
    }
    if (models.target()?.key !== target.key || this.abort.signal.aborted) return;
    if (this.failedCount > 0) {
      this.state = 'waiting';
      this.emitStatus(true);
      return;
    }
    const { done, total } = models.coverage(target.key);
    if (done < total) return; // photos arrived meanwhile: the next round takes them
    this.state = 'indexing';
    this.emitStatus(true);
    const next = await this.library.loadModel(target.ref, this.loadOptions());
    if (models.target()?.key !== target.key) {
      await next.model.release();
      return;
    }
    await this.switchTo(target.ref, next, this.encoded);
  }

  /** One pass over what has no vector under the target; failures held back until a forced retry. */
  private async pass(target: SwitchTarget, encoder: PipelineModel, limit?: number): Promise<{ encoded: number }> {
    let before = 0;
    const { encoded } = await reencodeMissing({
      library: this.library,
      key: target.key,
      model: encoder,
      skipHashes: this.failedHashes,
      ...(limit !== undefined ? { limit } : {}),
      ...(this.abort ? { signal: this.abort.signal } : {}),
      ...(this.options.decodeConcurrency !== undefined ? { decodeConcurrency: this.options.decodeConcurrency } : {}),
      ...(this.options.batchSize !== undefined ? { batchSize: this.options.batchSize } : {}),
      onBatch: (n) => {
        this.encoded += n - before;
        before = n;
        this.beat();
        this.emitStatus(false);
      },
      onFailure: (f) => {
        this.failedCount++;
        this.failedAt = Date.now();
        this.failures = [...this.failures, f].slice(-MAX_FAILURES_KEPT);
      },
    });
    return { encoded };
  }

  private async switchTo(ref: string, next: { model: LoadedModel['model']; key: string }, encoded: number): Promise<void> {
    const from = this.library.modelRef;
    let index: LoadedModel['index'];
    try {
      index = await this.library.openIndex(next.key);
    } catch (err) {
      await next.model.release();
      throw err;
    }
    await this.library.switchModel(ref, { model: next.model, key: next.key, index });
    this.lastSwitch = { from, to: ref, at: Date.now() };
    this.state = 'idle';
    this.emit({ type: 'model-switched', from, to: ref, key: next.key, encoded });
    this.emitStatus(true);
  }

  /**
   * Without a target: a model switched by another process is followed here (its vectors are there), and
   * photos that an ingest engine still on the old model added get the current model's vectors.
   */
  private async followRecorded(loaded: LoadedModel): Promise<void> {
    const recorded = this.library.models.current();
    if (recorded && recorded.key !== loaded.key && this.library.notice === null) {
      const next = await this.library.loadModel(recorded.ref, this.loadOptions());
      if (next.key !== recorded.key) {
        await next.model.release();
        return;
      }
      await this.switchTo(recorded.ref, next, 0);
      return;
    }
    if (this.options.follow === false || loaded.key === this.startKey) return;
    if (this.library.models.missing(loaded.key, 0, 1).length === 0) return;
    if (!this.takeRunner()) return;
    this.abort = new AbortController();
    const encoder = await this.openEncoder(loaded.model.spec);
    try {
      await this.pass({ ref: this.library.modelRef, key: loaded.key, dim: loaded.model.dim, requestedAt: 0 }, encoder);
    } finally {
      await encoder.close();
    }
  }

  private async openEncoder(spec: ModelSpec): Promise<PipelineModel & { close(): Promise<void> }> {
    if (this.options.encoder) return this.options.encoder(spec);
    return ThreadImageEncoder.open(spec, { ...(this.options.session ? { session: this.options.session } : {}), ...(this.options.batchSize ? { batch: this.options.batchSize } : {}) });
  }

  /** Takes the runner row unless another live process holds it. */
  private takeRunner(): boolean {
    const runner = this.library.models.runner();
    if (runner && runner.holder !== this.holder && Date.now() - runner.at < RUNNER_STALE_MS) return false;
    this.beat();
    return true;
  }

  private beat(): void {
    this.library.models.setRunner({ pid: process.pid, holder: this.holder, at: Date.now() });
  }

  private releaseRunner(): void {
    try {
      if (this.library.models.runner()?.holder === this.holder) this.library.models.clearRunner();
    } catch {
      // A closed or full database: the row goes stale on its own.
    }
  }

  private rateNow(coverage: { done: number; total: number }): { filesPerSecond: number; etaSeconds: number | null } {
    const now = Date.now();
    this.rate.push({ at: now, done: this.encoded });
    while (this.rate.length > 2 && this.rate[0]!.at < now - RATE_WINDOW_MS) this.rate.shift();
    const first = this.rate[0]!;
    const seconds = (now - first.at) / 1000;
    const filesPerSecond = seconds > 0.5 ? (this.encoded - first.done) / seconds : 0;
    const left = coverage.total - coverage.done;
    return { filesPerSecond, etaSeconds: filesPerSecond > 0 ? left / filesPerSecond : null };
  }

  /** The status event (at most every 500 ms unless `force`), and the progress row other processes read. */
  private emitStatus(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastEmit < (this.options.progressMs ?? 500)) return;
    this.lastEmit = now;
    const status = this.status();
    if (status.target && (this.state === 'encoding' || this.state === 'indexing' || this.state === 'waiting')) {
      try {
        this.library.models.setProgress({ filesPerSecond: status.filesPerSecond, etaSeconds: status.etaSeconds, failed: status.failed, failures: status.failures, at: now });
      } catch {
        // Progress is for show; a write that fails here fails the next batch's too, which reports it.
      }
    }
    this.emit({ type: 'model-switch', status });
  }
}

/**
 * Removes a model's vectors and index from the library (`clipdex models forget`), and the projected
 * vectors of its trained versions; the versions themselves, the photos and the labels stay. The current
 * model and a pending switch's target are refused.
 */
export async function forgetModel(library: Library, key: string): Promise<{ key: string; vectors: number; keys: string[] }> {
  const current = library.models.current()?.key ?? library.loaded?.key;
  if (key === current || key === library.loaded?.key) {
    throw new ClipdexError('INVALID_ARGUMENT', `${key.split('#')[0]} is the library's current model; switch to another one first (\`clipdex models use <model>\`)`);
  }
  if (library.models.target()?.key === key) {
    throw new ClipdexError('INVALID_ARGUMENT', `${key.split('#')[0]} is the target of the switch under way; cancel it first (\`clipdex models use --cancel\`)`);
  }
  const keys = [key, ...new ModelKeysRepo(library.store.db).withPrefix(`${key}@`)];
  const vectors = library.embeddings.count(key);
  const changes = new IndexChangesRepo(library.store.db);
  runInTransaction(library.store.db, () => {
    for (const k of keys) {
      changes.unregister(k);
      library.embeddings.removeModel(k);
    }
    library.models.forgetRef(key);
  });
  for (const k of keys) await rm(keyDir(library.paths.indexDir, k), { recursive: true, force: true });
  return { key, vectors, keys };
}
