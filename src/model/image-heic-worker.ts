/**
 * Worker side of image-heic.ts: runs heic-decode (libheif compiled to WASM), which decodes synchronously
 * and would otherwise hold the event loop for seconds per iPhone photo.
 */
import { parentPort } from 'node:worker_threads';
import { errorMessage, isClipdexError } from '../errors.js';
import { decodeHeicHere, type HeicReply, type HeicRequest } from './image-heic.js';

// libheif reports a file it cannot parse with console.log; a worker's stdout is the process's, where
// `clipdex --json index` prints its JSON.
console.log = (...args: unknown[]) => console.error(...args);

const port = parentPort!;
port.on('message', (m: HeicRequest) => {
  void (async () => {
    try {
      const r = await decodeHeicHere(Buffer.from(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength), m.name, m.maxPixels);
      // A copy of its own to hand over: the pixels may be a view into a pooled buffer or the WASM heap.
      const data = new Uint8Array(r.data.byteLength);
      data.set(r.data);
      port.postMessage({ id: m.id, ok: true, data, width: r.width, height: r.height, channels: r.channels } satisfies HeicReply, [data.buffer]);
    } catch (err) {
      const e = isClipdexError(err) ? err : null;
      port.postMessage({ id: m.id, ok: false, code: e?.code ?? 'DECODE_FAILED', message: errorMessage(err), details: (e?.details as Record<string, unknown> | undefined) ?? null } satisfies HeicReply);
    }
  })();
});
