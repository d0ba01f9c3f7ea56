/**
 * A model's text tower on a worker thread, for `clipdex serve`.
 *
 * Why: a session runs synchronously on the JS thread that calls it (see inference/onnx-runtime.ts). On the
 * server's main thread every text query holds the event loop for the tower's run (10+ ms for ViT-B/32 on a
 * CPU, more for a batch of captions in training): meanwhile no thumbnail, status or other request is
 * answered. On its own thread the tower blocks only itself. The main thread keeps the tokenizer: it
 * tokenizes here (a fraction of a millisecond per phrase) and the thread runs the ids, so the thread needs
 * no tokenizer of its own and is ready as soon as its session is.
 */
import type { Worker } from 'node:worker_threads';
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { GraphCacheOutcome, ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import { spawnWorker } from '../util/spawn-worker.js';
import { stopWorker } from '../util/worker-stop.js';
import type { ModelSpec } from './model-dir.js';
import type { QueryPrecision, TextPrecision } from './query-precision.js';
import type { TextOptions, TextTokenizer, TextTower } from './text-encoder.js';
import type { TextReply, TextRequest, TextWorkerData } from './text-thread-worker.js';

interface Pending {
  resolve: (rows: Float32Array[]) => void;
  reject: (err: unknown) => void;
}

export class ThreadTextEncoder implements TextTower {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: ClipdexError | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly dim: number | null,
    readonly provider: ProviderName,
    readonly fallbacks: ProviderFallback[],
    readonly graphCache: GraphCacheOutcome,
    readonly precision: TextPrecision,
    /** The graph's context length (a fixed-length graph's own, else the config's). */
    private readonly contextLength: number,
    private readonly tokenizer: TextTokenizer | Promise<TextTokenizer>,
  ) {
    worker.on('message', (m: TextReply) => {
      if (m.type !== 'result' && m.type !== 'error') return;
      const p = m.id === null ? undefined : this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id!);
      if (m.type === 'error') p.reject(new ClipdexError((m.code as ErrorCode | null) ?? 'INFERENCE_FAILED', m.message));
      else p.resolve(Array.from({ length: m.dim === 0 ? 0 : m.data.length / m.dim }, (_, i) => m.data.subarray(i * m.dim, (i + 1) * m.dim)));
    });
    const crash = (why: string) => {
      this.failure = new ClipdexError('INFERENCE_FAILED', `the text encoder thread ${why}`);
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    };
    worker.on('error', (err) => crash(`crashed: ${err.message}`));
    worker.on('exit', (code) => crash(`exited (code ${code})`));
    // The server's process ends when it is done: this thread never holds it open.
    worker.unref();
  }

  /**
   * Starts the thread and opens the text tower there; rejects with the tower's own error. `tokenizer` is the
   * model's (loading still, as a rule: it is awaited at the first text).
   */
  static async open(spec: ModelSpec, tokenizer: TextTokenizer | Promise<TextTokenizer>, options: { session?: SessionOptions; batch?: number; path?: string; precision?: QueryPrecision } = {}): Promise<ThreadTextEncoder> {
    const data: TextWorkerData = { spec, session: options.session ?? {}, batch: options.batch, path: options.path, precision: options.precision ?? 'fp32' };
    const worker = spawnWorker(import.meta.url, 'text-thread-worker', data, { code: 'INFERENCE_FAILED', what: 'the text encoder thread' });
    try {
      const ready = await new Promise<TextReply & { type: 'ready' }>((resolve, reject) => {
        worker.once('message', (m: TextReply) => {
          if (m.type === 'ready') resolve(m);
          else if (m.type === 'error') reject(new ClipdexError((m.code as ErrorCode | null) ?? 'MODEL_INVALID', m.message));
        });
        worker.once('error', (err) => reject(new ClipdexError('INFERENCE_FAILED', `the text encoder thread failed to start: ${err.message}`, { cause: err })));
        worker.once('exit', (code) => reject(new ClipdexError('INFERENCE_FAILED', `the text encoder thread exited at start (code ${code})`)));
      });
      return new ThreadTextEncoder(worker, ready.dim, ready.provider, ready.fallbacks, ready.graphCache, ready.precision, ready.contextLength, tokenizer);
    } catch (err) {
      await worker.terminate();
      throw err;
    }
  }

  async encode(texts: string[], options: { padToContext?: boolean } & TextOptions = {}): Promise<Float32Array[]> {
    if (this.failure) throw this.failure;
    if (texts.length === 0) return [];
    const tokenizer = await this.tokenizer;
    const rows = await tokenizer.tokenize(texts, this.contextLength, { language: options.language });
    if (this.failure) throw this.failure;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: TextRequest = { type: 'encode', id, rows, padId: tokenizer.padId, padsToContext: tokenizer.padsToContext, padToContext: options.padToContext === true };
      this.worker.postMessage(request);
    });
  }

  /** Texts already sent are encoded first; the thread then releases its session and exits (util/worker-stop.ts). */
  async release(): Promise<void> {
    this.failure ??= new ClipdexError('INFERENCE_FAILED', 'the text encoder thread is closed');
    this.worker.removeAllListeners('exit');
    await stopWorker(this.worker);
  }
}
