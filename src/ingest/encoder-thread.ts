/**
 * The ingest pipeline's image encoder on a worker thread.
 *
 * Why: a session runs synchronously on the JS thread that calls it (see inference/onnx-runtime.ts). On the
 * main thread a ViT-B/32 batch of 16 holds the event loop for about a second on a laptop CPU: meanwhile no
 * decoded image is collected, no new decode starts (so decoding stops overlapping inference), and in
 * `clipdex serve` no request is answered. On its own thread the encoder blocks only itself.
 * One copy per process: `clipdex serve` opens the model's image tower here (ClipModel's `openImageTower`)
 * and the engine encodes with that one; an engine that opens its own lends it to a model without one
 * (ClipModel.shareImageTower). Either way image queries run here too, off the main thread.
 */
import type { Worker } from 'node:worker_threads';
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { ModelSpec } from '../model/model-dir.js';
import type { ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import type { OwnedImageTower } from '../model/clip-model.js';
import type { PipelineModel } from './encode-pipeline.js';
import type { EncoderReply, EncoderRequest, EncoderWorkerData } from './encoder-thread-worker.js';
import { spawnWorker } from '../util/spawn-worker.js';
import { stopWorker } from '../util/worker-stop.js';

interface Pending {
  resolve: (rows: Float32Array[]) => void;
  reject: (err: unknown) => void;
}

export class ThreadImageEncoder implements PipelineModel, OwnedImageTower {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: ClipdexError | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly spec: ModelSpec,
    readonly batchSize: number,
    readonly dim: number | null,
    readonly provider: ProviderName,
    readonly fallbacks: ProviderFallback[],
  ) {
    worker.on('message', (m: EncoderReply) => {
      if (m.type !== 'result' && m.type !== 'error') return;
      const p = m.id === null ? undefined : this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id!);
      if (m.type === 'error') p.reject(new ClipdexError((m.code as ErrorCode | null) ?? 'INFERENCE_FAILED', m.message));
      else p.resolve(Array.from({ length: m.data.length / m.dim }, (_, i) => m.data.subarray(i * m.dim, (i + 1) * m.dim)));
    });
    const crash = (why: string) => {
      this.failure = new ClipdexError('INFERENCE_FAILED', `the image encoder thread ${why}`);
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    };
    worker.on('error', (err) => crash(`crashed: ${err.message}`));
    worker.on('exit', (code) => crash(`exited (code ${code})`));
  }

  /** Starts the thread and opens the image tower there; rejects with the tower's own error. */
  static async open(spec: ModelSpec, options: { session?: SessionOptions; batch?: number } = {}): Promise<ThreadImageEncoder> {
    const data: EncoderWorkerData = { spec, session: options.session ?? {}, batch: options.batch };
    const worker = spawnWorker(import.meta.url, 'encoder-thread-worker', data, { code: 'INFERENCE_FAILED', what: 'the encoder thread' });
    try {
      const ready = await new Promise<EncoderReply & { type: 'ready' }>((resolve, reject) => {
        worker.once('message', (m: EncoderReply) => {
          if (m.type === 'ready') resolve(m);
          else if (m.type === 'error') reject(new ClipdexError((m.code as ErrorCode | null) ?? 'MODEL_INVALID', m.message));
        });
        worker.once('error', (err) => reject(new ClipdexError('INFERENCE_FAILED', `the image encoder thread failed to start: ${err.message}`, { cause: err })));
        worker.once('exit', (code) => reject(new ClipdexError('INFERENCE_FAILED', `the image encoder thread exited at start (code ${code})`)));
      });
      return new ThreadImageEncoder(worker, spec, ready.batchSize, ready.dim, ready.provider, ready.fallbacks);
    } catch (err) {
      await worker.terminate();
      throw err;
    }
  }

  /** What the pipeline calls. */
  get image(): PipelineModel['image'] {
    return { batchSize: this.batchSize, encode: (pixels, count) => this.encode(pixels, count) };
  }

  /** `count` images as [count, 3, S, S]; `pixels` is handed over to the thread (do not reuse it). */
  encode(pixels: Float32Array, count: number): Promise<Float32Array[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    const whole = pixels.byteOffset === 0 && pixels.byteLength === pixels.buffer.byteLength && pixels.buffer instanceof ArrayBuffer;
    const payload = whole ? pixels : pixels.slice();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'encode', id, pixels: payload, count } satisfies EncoderRequest, [payload.buffer as ArrayBuffer]);
    });
  }

  /** As a model's own image tower (`openImageTower`), the model closes it with this. */
  release(): Promise<void> {
    return this.close();
  }

  /** Batches already sent are encoded first; the thread then releases its session and exits (util/worker-stop.ts). */
  async close(): Promise<void> {
    this.failure ??= new ClipdexError('INFERENCE_FAILED', 'the image encoder thread is closed');
    this.worker.removeAllListeners('exit');
    await stopWorker(this.worker);
  }
}
