/**
 * Worker side of text-thread.ts: opens the text tower and its tokenizer and encodes the texts it is sent.
 * A session runs synchronously on the JS thread that calls it (see inference/onnx-runtime.ts), so here it
 * blocks this worker, not the server's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage, isClipdexError } from '../errors.js';
import type { ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import type { ModelSpec } from './model-dir.js';
import { TextEncoder, type TextOptions } from './text-encoder.js';
import { loadTextTokenizer } from './text-tokenizer.js';
import { openTower } from './tower-session.js';
import { join } from 'node:path';

export interface TextWorkerData {
  spec: ModelSpec;
  session: SessionOptions;
  batch: number | undefined;
  /** Another file with the tower's I/O (a trained version's text tower); default the model's own. */
  path: string | undefined;
}

export type TextRequest = { type: 'encode'; id: number; texts: string[]; options: { padToContext?: boolean } & TextOptions };

export type TextReply =
  | { type: 'ready'; dim: number | null; provider: ProviderName; fallbacks: ProviderFallback[] }
  | { type: 'result'; id: number; data: Float32Array; dim: number }
  | { type: 'error'; id: number | null; code: string | null; message: string };

const port = parentPort!;
const { spec, session, batch, path } = workerData as TextWorkerData;

const fail = (id: number | null, err: unknown): void =>
  port.postMessage({ type: 'error', id, code: isClipdexError(err) ? err.code : null, message: errorMessage(err) } satisfies TextReply);

try {
  const [tower, tokenizer] = await Promise.all([openTower(path ?? join(spec.dir, spec.text.file), spec.text, 'text', session), loadTextTokenizer(spec)]);
  const encoder = new TextEncoder(tower, tokenizer, spec.contextLength, batch);
  // One request at a time, in order: a session is not run twice at once here, and replies keep their order.
  let chain = Promise.resolve();
  port.on('message', (m: TextRequest) => {
    chain = chain.then(async () => {
      try {
        const rows = await encoder.encode(m.texts, m.options);
        const dim = rows[0]?.length ?? 0;
        const data = new Float32Array(rows.length * dim);
        rows.forEach((r, i) => data.set(r, i * dim));
        port.postMessage({ type: 'result', id: m.id, data, dim } satisfies TextReply, [data.buffer]);
      } catch (err) {
        fail(m.id, err);
      }
    });
  });
  port.postMessage({ type: 'ready', dim: encoder.dim, provider: encoder.provider, fallbacks: encoder.fallbacks } satisfies TextReply);
} catch (err) {
  fail(null, err);
}
