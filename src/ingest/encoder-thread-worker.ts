/**
 * Worker side of encoder-thread.ts: opens the image tower and encodes the batches it is sent.
 * A session runs synchronously on the JS thread that calls it (see inference/onnx-runtime.ts), so here it
 * blocks this worker, not the thread that decodes the next batch (and, in `clipdex serve`, answers requests).
 */
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { isClipdexError, errorMessage } from '../errors.js';
import type { ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import { ImageEncoder } from '../model/image-encoder.js';
import type { ModelSpec } from '../model/model-dir.js';
import { openTower } from '../model/tower-session.js';
import { closeWhenAsked, isCloseMessage } from '../util/worker-stop.js';

export interface EncoderWorkerData {
  spec: ModelSpec;
  session: SessionOptions;
  batch: number | undefined;
}

export type EncoderRequest = { type: 'encode'; id: number; pixels: Float32Array; count: number };

export type EncoderReply =
  | { type: 'ready'; batchSize: number; dim: number | null; provider: ProviderName; fallbacks: ProviderFallback[] }
  | { type: 'result'; id: number; data: Float32Array; dim: number }
  | { type: 'error'; id: number | null; code: string | null; message: string };

const port = parentPort!;
const { spec, session, batch } = workerData as EncoderWorkerData;

const fail = (id: number | null, err: unknown): void =>
  port.postMessage({ type: 'error', id, code: isClipdexError(err) ? err.code : null, message: errorMessage(err) } satisfies EncoderReply);

try {
  const tower = await openTower(join(spec.dir, spec.vision.file), spec.vision, 'image', session);
  const encoder = new ImageEncoder(tower, spec.preprocess.size, batch);
  // One batch at a time, in order (a session runs synchronously here anyway); the chain is what a close waits for.
  let chain = Promise.resolve();
  closeWhenAsked(port, () => chain, () => encoder.release());
  port.on('message', (m: EncoderRequest) => {
    if (isCloseMessage(m)) return;
    chain = chain.then(async () => {
      try {
        const rows = await encoder.encode(m.pixels, m.count);
        const dim = rows[0]?.length ?? 0;
        const data = new Float32Array(rows.length * dim);
        rows.forEach((r, i) => data.set(r, i * dim));
        port.postMessage({ type: 'result', id: m.id, data, dim } satisfies EncoderReply, [data.buffer]);
      } catch (err) {
        fail(m.id, err);
      }
    });
  });
  port.postMessage({ type: 'ready', batchSize: encoder.batchSize, dim: encoder.dim, provider: encoder.provider, fallbacks: encoder.fallbacks } satisfies EncoderReply);
} catch (err) {
  fail(null, err);
}
