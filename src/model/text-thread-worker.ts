/**
 * Worker side of text-thread.ts: opens the text tower and encodes the token ids it is sent.
 * A session runs synchronously on the JS thread that calls it (see inference/onnx-runtime.ts), so here it
 * blocks this worker, not the server's event loop. The texts are tokenized on the main thread, which has
 * the model's tokenizer anyway: loading a second one here (parsing CLIP's vocabulary and merges, hundreds
 * of ms) would come after the session's creation on this thread, and the first answer would wait for it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage, isClipdexError } from '../errors.js';
import type { GraphCacheOutcome, ProviderFallback, ProviderName, SessionOptions } from '../inference/onnx-runtime.js';
import type { ModelSpec } from './model-dir.js';
import type { QueryPrecision, TextPrecision } from './query-precision.js';
import { openTextTowerSession, TextEncoder, type TextTokenizer, type TokenizedText } from './text-encoder.js';
import { join } from 'node:path';
import { closeWhenAsked, isCloseMessage } from '../util/worker-stop.js';

export interface TextWorkerData {
  spec: ModelSpec;
  session: SessionOptions;
  batch: number | undefined;
  /** Another file with the tower's I/O (a trained version's text tower); default the model's own. */
  path: string | undefined;
  /** int8: the tower's int8 version, quantized here (off the server's main thread) the first time. */
  precision: QueryPrecision;
}

/** Texts as the main thread's tokenizer made them, with what the encoder needs of that tokenizer. */
export type TextRequest = { type: 'encode'; id: number; rows: TokenizedText[]; padId: number; padsToContext: boolean; padToContext: boolean };

export type TextReply =
  | { type: 'ready'; dim: number | null; contextLength: number; provider: ProviderName; fallbacks: ProviderFallback[]; graphCache: GraphCacheOutcome; precision: TextPrecision }
  | { type: 'result'; id: number; data: Float32Array; dim: number }
  | { type: 'error'; id: number | null; code: string | null; message: string };

const port = parentPort!;
const { spec, session, batch, path, precision } = workerData as TextWorkerData;

const fail = (id: number | null, err: unknown): void =>
  port.postMessage({ type: 'error', id, code: isClipdexError(err) ? err.code : null, message: errorMessage(err) } satisfies TextReply);

/** The rows of the request being encoded, as the encoder's tokenizer. */
class Tokenized implements TextTokenizer {
  padId = 0;
  padsToContext = false;
  rows: TokenizedText[] = [];

  async tokenize(): Promise<TokenizedText[]> {
    return this.rows;
  }
}

try {
  const opened = await openTextTowerSession(path ?? join(spec.dir, spec.text.file), spec, session, precision);
  const tokens = new Tokenized();
  const encoder = new TextEncoder(opened.tower, tokens, spec.contextLength, batch, opened.precision);
  // One request at a time, in order: a session is not run twice at once here, and replies keep their order.
  let chain = Promise.resolve();
  closeWhenAsked(port, () => chain, () => encoder.release());
  port.on('message', (m: TextRequest) => {
    if (isCloseMessage(m)) return;
    chain = chain.then(async () => {
      try {
        Object.assign(tokens, { rows: m.rows, padId: m.padId, padsToContext: m.padsToContext });
        const rows = await encoder.encode(
          m.rows.map(() => ''),
          { padToContext: m.padToContext },
        );
        const dim = rows[0]?.length ?? 0;
        const data = new Float32Array(rows.length * dim);
        rows.forEach((r, i) => data.set(r, i * dim));
        port.postMessage({ type: 'result', id: m.id, data, dim } satisfies TextReply, [data.buffer]);
      } catch (err) {
        fail(m.id, err);
      } finally {
        tokens.rows = [];
      }
    });
  });
  port.postMessage({ type: 'ready', dim: encoder.dim, contextLength: encoder.contextLength, provider: encoder.provider, fallbacks: encoder.fallbacks, graphCache: encoder.graphCache, precision: encoder.precision } satisfies TextReply);
} catch (err) {
  fail(null, err);
}
