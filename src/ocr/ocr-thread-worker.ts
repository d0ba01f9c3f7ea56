/**
 * Worker side of ocr-thread.ts: opens the OCR engine and reads the images it is sent, one at a time.
 * ONNX Runtime runs on the calling thread (inference/onnx-runtime.ts), so here it blocks this worker only.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage, isClipdexError } from '../errors.js';
import type { SessionOptions } from '../inference/onnx-runtime.js';
import { OcrEngine, type OcrModelFiles, type OcrOptions, type OcrResult } from './ocr-engine.js';
import { closeWhenAsked, isCloseMessage } from '../util/worker-stop.js';

export interface OcrWorkerData {
  options: OcrOptions;
  session: SessionOptions;
  files?: OcrModelFiles;
}

export type OcrRequest = { type: 'read'; id: number; data: Uint8Array; width: number; height: number };

export type OcrReply =
  | { type: 'ready' }
  | { type: 'result'; id: number; result: OcrResult }
  | { type: 'error'; id: number | null; code: string | null; message: string };

const port = parentPort!;
const { options, session, files } = workerData as OcrWorkerData;

const fail = (id: number | null, err: unknown): void =>
  port.postMessage({ type: 'error', id, code: isClipdexError(err) ? err.code : null, message: errorMessage(err) } satisfies OcrReply);

try {
  const engine = await OcrEngine.open({ ...options, session, ...(files ? { files } : {}) });
  // One image at a time: two runs at once would only share the same cores and both miss their time bound.
  let chain = Promise.resolve();
  closeWhenAsked(port, () => chain, () => engine.release());
  port.on('message', (m: OcrRequest) => {
    if (isCloseMessage(m)) return;
    chain = chain.then(async () => {
      try {
        const result = await engine.recognize({ data: Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength), width: m.width, height: m.height });
        port.postMessage({ type: 'result', id: m.id, result } satisfies OcrReply);
      } catch (err) {
        fail(m.id, err);
      }
    });
  });
  port.postMessage({ type: 'ready' } satisfies OcrReply);
} catch (err) {
  fail(null, err);
}
