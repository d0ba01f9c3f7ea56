/**
 * Runs the encode pipeline over the queue for as long as the engine is open, and again after a failure
 * of its own (the encoder, the database): files in flight go back to the queue, and the next try comes
 * after a backoff of 0.5 s doubling up to 30 s. The feed ends only when the queue is closed.
 */
import type { Library } from '../library/library.js';
import type { ThumbnailOptions } from '../model/image-decode.js';
import type { DecodeMode } from '../model/image-preprocess.js';
import { ActiveAdapterWriter } from '../adapter/adapter-embeddings.js';
import { runEncodePipeline, type PipelineModel, type PipelineOcr } from './encode-pipeline.js';
import type { IngestEvent } from './ingest-events.js';
import type { IngestQueue } from './ingest-queue.js';
import { createIngestSink } from './ingest-sink.js';
import type { IngestStore } from './ingest-store.js';

export interface PipelineLoopOptions {
  library: Pick<Library, 'store' | 'images' | 'embeddings' | 'thumbnails'>;
  store: IngestStore;
  queue: IngestQueue;
  model: PipelineModel;
  modelKey: string;
  emit: (event: IngestEvent) => void;
  rootAvailable: (rootId: number) => Promise<boolean>;
  rootLost: (rootId: number, reason: string) => void;
  /** Files whose result was recorded so far (a failure after progress is a new trouble: retried soon). */
  done: () => number;
  isClosed: () => boolean;
  recordFailure: (error: unknown) => void;
  /** Give up at the first failure (the CLI); `onFatal` gets it. Default: retry. */
  stopOnFailure?: boolean;
  onFatal: (error: unknown) => void;
  decodeConcurrency?: number;
  batchSize?: number;
  window?: number;
  thumbnail?: boolean | ThumbnailOptions;
  maxPixels?: number;
  /** See EncodePipelineOptions.decode. */
  decode?: DecodeMode;
  /** Text in photos read from the same decode (ocr-service.ts); absent: OCR is off. */
  ocr?: PipelineOcr;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/** Resolves when the queue has been closed (or at the first failure with `stopOnFailure`). */
export async function runPipelineLoop(o: PipelineLoopOptions): Promise<void> {
  const { library, modelKey } = o;
  const adapterWriter = new ActiveAdapterWriter(library.store.db, library.embeddings, modelKey);
  const { sink, skip } = createIngestSink({
    store: o.store,
    images: library.images,
    embeddings: library.embeddings,
    thumbnails: library.thumbnails,
    modelKey,
    queue: o.queue,
    onEmbedded: (hash, vector) => adapterWriter.write(hash, vector),
    thumbnailsEnabled: o.thumbnail !== false,
    emit: o.emit,
    rootAvailable: o.rootAvailable,
    rootLost: o.rootLost,
  });
  for (let failures = 0; !o.isClosed(); ) {
    const doneBefore = o.done();
    try {
      await runEncodePipeline(o.queue.feed(), sink, {
        model: o.model,
        skip,
        ...(o.decodeConcurrency !== undefined ? { decodeConcurrency: o.decodeConcurrency } : {}),
        ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
        ...(o.window !== undefined ? { window: o.window } : {}),
        ...(o.thumbnail !== undefined ? { thumbnail: o.thumbnail } : {}),
        ...(o.maxPixels !== undefined ? { maxPixels: o.maxPixels } : {}),
        ...(o.decode !== undefined ? { decode: o.decode } : {}),
        ...(o.ocr ? { ocr: o.ocr } : {}),
      });
      return; // the feed ends only when the queue is closed
    } catch (err) {
      if (o.isClosed()) return;
      o.recordFailure(err);
      o.queue.resetInFlight();
      if (o.stopOnFailure) {
        o.onFatal(err);
        return;
      }
      // Files got done since the last failure: this is a new trouble, retried soon, not the 30 s wait that
      // a server's earlier troubles (days ago) would otherwise impose on it.
      if (o.done() > doneBefore) failures = 0;
      await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures++, 6)));
    }
  }
}
