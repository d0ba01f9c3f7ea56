/**
 * The OCR engine on a worker thread, so reading text (hundreds of ms of ONNX Runtime per photo) never holds
 * the thread that decodes, encodes or answers requests. Each read has a hard bound on top of the engine's own
 * time bound (which is checked between recogniser batches and cannot stop a run in progress): past it the
 * read fails with INFERENCE_FAILED, the thread is let go (it ends after its run), and the next read starts a fresh one.
 */
import type { Worker } from 'node:worker_threads';
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import type { RgbPixels } from '../model/image-decode.js';
import { spawnWorker } from '../util/spawn-worker.js';
import { STOP_GRACE_MS, stopWorker } from '../util/worker-stop.js';
import { OCR_DEFAULTS, type OcrModelFiles, type OcrOptions, type OcrResult } from './ocr-engine.js';
import type { OcrReply, OcrRequest, OcrWorkerData } from './ocr-thread-worker.js';

export interface OcrThreadOptions {
  options?: OcrOptions;
  session?: SessionOptions;
  files?: OcrModelFiles;
  /** Longest a read may take, waiting included (default: 3 × the engine's time bound). */
  hardLimitMs?: number;
}

interface Pending {
  resolve: (r: OcrResult) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

export class OcrThread {
  private worker: Promise<Worker> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private readonly hardLimitMs: number;

  constructor(private readonly o: OcrThreadOptions = {}) {
    this.hardLimitMs = o.hardLimitMs ?? 3 * (o.options?.timeLimitMs ?? OCR_DEFAULTS.timeLimitMs);
  }

  /** Reads one image; the pixels' buffer is handed over to the thread. */
  async read(image: RgbPixels): Promise<OcrResult> {
    if (this.closed) throw new ClipdexError('INFERENCE_FAILED', 'the OCR thread is closed');
    const worker = await this.start();
    const id = this.nextId++;
    const data = new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
    const whole = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
    const payload = whole ? data : data.slice();
    return new Promise<OcrResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        void this.restart(new ClipdexError('INFERENCE_FAILED', `reading the text took longer than ${this.hardLimitMs} ms`));
      }, this.hardLimitMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      worker.postMessage({ type: 'read', id, data: payload, width: image.width, height: image.height } satisfies OcrRequest, [payload.buffer as ArrayBuffer]);
    });
  }

  private start(): Promise<Worker> {
    this.worker ??= (async () => {
      const data: OcrWorkerData = { options: this.o.options ?? {}, session: this.o.session ?? {}, ...(this.o.files ? { files: this.o.files } : {}) };
      const worker = spawnWorker(import.meta.url, 'ocr-thread-worker', data, { code: 'INFERENCE_FAILED', what: 'the OCR thread' });
      // Worker's own listeners (it starts its port on 'newListener') must stay: only ours are removed after.
      let onMessage: (m: OcrReply) => void = () => undefined;
      let onError: (err: Error) => void = () => undefined;
      let onExit: (code: number) => void = () => undefined;
      try {
        await new Promise<void>((resolve, reject) => {
          onMessage = (m) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'error') reject(new ClipdexError((m.code as ErrorCode | null) ?? 'MODEL_INVALID', m.message));
          };
          onError = (err) => reject(new ClipdexError('INFERENCE_FAILED', `the OCR thread failed to start: ${err.message}`, { cause: err }));
          onExit = (code) => reject(new ClipdexError('INFERENCE_FAILED', `the OCR thread exited at start (code ${code})`));
          worker.on('message', onMessage).on('error', onError).on('exit', onExit);
        });
      } catch (err) {
        await worker.terminate();
        throw err;
      } finally {
        worker.off('message', onMessage).off('error', onError).off('exit', onExit);
      }
      worker.on('message', (m: OcrReply) => {
        if (m.type !== 'result' && m.type !== 'error') return;
        const p = m.id === null ? undefined : this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id!);
        clearTimeout(p.timer);
        if (m.type === 'error') p.reject(new ClipdexError((m.code as ErrorCode | null) ?? 'INFERENCE_FAILED', m.message));
        else p.resolve(m.result);
      });
      worker.on('error', (err) => void this.restart(new ClipdexError('INFERENCE_FAILED', `the OCR thread crashed: ${err.message}`)));
      worker.on('exit', (code) => void this.restart(new ClipdexError('INFERENCE_FAILED', `the OCR thread exited (code ${code})`)));
      return worker;
    })().catch((err: unknown) => {
      // A thread that could not start is not kept: the next read tries again.
      this.worker = null;
      throw err;
    });
    return this.worker;
  }

  /**
   * Fails every read in flight with `why` and lets the thread go; the next read starts another. The old thread
   * is asked to stop, not terminated (util/worker-stop.ts: terminating it mid-run aborts the process), so it
   * ends once its run in progress does; one stuck for good is left running rather than risk that abort
   * (`graceMs` null; a close gives it stopWorker's grace).
   */
  private restart(why: ClipdexError, graceMs: number | null = null): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(why);
    }
    this.pending.clear();
    return (
      worker
        ?.then((w) => {
          w.removeAllListeners('exit');
          w.removeAllListeners('error');
          return stopWorker(w, graceMs);
        })
        .catch(() => undefined) ?? Promise.resolve()
    );
  }

  /**
   * Reads in flight fail at once; resolves when the thread has finished its run in progress and exited (or after
   * stopWorker's grace, a process that is closing being owed an end).
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.restart(new ClipdexError('INFERENCE_FAILED', 'the OCR thread is closed'), STOP_GRACE_MS);
  }
}
