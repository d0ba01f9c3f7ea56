/**
 * Encodes the library's indexed photos again with another model (a model switch's target), through the
 * same bounded encode pipeline ingest uses (encode-pipeline.ts): the photos come from SQLite a page at a
 * time, so memory depends on the pipeline's window, never on the library's size. Resumable by
 * construction: what is asked for is "indexed content with no vector under the key", so a photo encoded
 * before a kill is never encoded again.
 */
import { ClipdexError } from '../errors.js';
import type { StoreDatabase } from '../store/database.js';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import type { LibraryModelRepo, MissingPhoto } from '../store/library-model-repo.js';
import { runEncodePipeline, type PipelineFile, type PipelineModel, type PipelineResult } from './encode-pipeline.js';

export interface ReencodeFailure {
  path: string;
  code: string;
  message: string;
}

export interface ReencodeOptions {
  library: { store: StoreDatabase; embeddings: EmbeddingsRepo; models: LibraryModelRepo };
  /** The key the vectors are stored under. */
  key: string;
  model: PipelineModel;
  /** Contents not to try (failed earlier in this pass); the ones that fail now are added. */
  skipHashes?: Set<string>;
  /** Stop after this many photos (a measurement). */
  limit?: number;
  signal?: AbortSignal;
  decodeConcurrency?: number;
  batchSize?: number;
  /** After each batch the pipeline delivers: photos encoded and failed so far in this call. */
  onBatch?: (encoded: number, failed: number) => void;
  onFailure?: (failure: ReencodeFailure) => void;
}

type Item = PipelineFile & { contentHash: string };

const PAGE = 256;

/** Encodes what has no vector under `key` yet; resolves with what this call did. */
export async function reencodeMissing(o: ReencodeOptions): Promise<{ encoded: number; failed: number }> {
  const { library, key } = o;
  const skip = o.skipHashes ?? new Set<string>();
  let encoded = 0;
  let failed = 0;
  async function* photos(): AsyncGenerator<Item> {
    let after = 0;
    let given = 0;
    for (;;) {
      const page: MissingPhoto[] = library.models.missing(key, after, PAGE);
      if (page.length === 0) return;
      for (const p of page) {
        after = Math.max(after, p.id);
        if (skip.has(p.contentHash)) continue;
        if (o.limit !== undefined && given >= o.limit) return;
        given++;
        // Marked before it is encoded: a content that two rows share is not fed twice in one pass.
        skip.add(p.contentHash);
        yield { path: p.path, pathBytes: p.pathBytes, contentHash: p.contentHash };
      }
    }
  }
  const sink = (results: PipelineResult<Item>[]): void => {
    const stored: { hash: string; vector: Float32Array }[] = [];
    for (const r of results) {
      if (r.status === 'encoded' && r.content && r.content.hash !== r.file.contentHash) {
        // The file changed since ingest recorded it: ingest will index the new content; this photo is tried
        // again at the next pass (its row then names the new content).
        fail(r.file, new ClipdexError('FILE_CHANGED', `${r.file.path} changed since it was indexed; it is encoded again once ingest has read it`));
      } else if (r.status === 'encoded') {
        stored.push({ hash: r.file.contentHash, vector: r.embedding });
        // Encoded this pass: not a failure to hold back.
        skip.delete(r.file.contentHash);
      } else if (r.status === 'failed') fail(r.file, r.error);
    }
    if (stored.length > 0) {
      library.store.transaction(() => {
        for (const s of stored) library.embeddings.put(s.hash, key, s.vector);
      });
      encoded += stored.length;
    }
    o.onBatch?.(encoded, failed);
  };
  const fail = (file: Item, error: ClipdexError): void => {
    failed++;
    o.onFailure?.({ path: file.path, code: error.code, message: error.message });
  };
  await runEncodePipeline(photos(), sink, {
    model: o.model,
    thumbnail: false,
    exif: false,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.decodeConcurrency !== undefined ? { decodeConcurrency: o.decodeConcurrency } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
  });
  return { encoded, failed };
}
