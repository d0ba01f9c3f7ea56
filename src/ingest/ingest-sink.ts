/**
 * Where pipeline results land: one SQLite transaction per delivery writes each file's outcome and
 * removes its queue entry together, so after a crash a file is either recorded or still queued. Content
 * that no row uses any more keeps its embedding and thumbnail until the engine collects garbage.
 *
 * The queue entry is the ticket: a result is written only when the entry it came from is still there.
 * An entry removed meanwhile (the file was deleted, its root removed, the path swept) or queued again
 * (the file changed again; the newer entry will be read) makes the result stale, and it is dropped.
 *
 * Outcomes:
 * - encoded: the embedding (keyed by content hash) and the image row, status 'indexed'.
 * - skipped (the content is already embedded): a rename when another row with this content has lost
 *   its file (moved while clipdex was not looking); otherwise a row sharing the stored embedding.
 * - failed: status 'error' with the code and message, kept until the file's size or mtime changes;
 *   except a file that changed while read (parked until it settles, then read again), and a file that
 *   is gone (its row goes) or whose whole root is gone (the root goes offline; nothing is recorded).
 */
import { ClipdexError } from '../errors.js';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import type { ImageRecord, ImagesRepo } from '../store/images-repo.js';
import type { ContentSnapshot } from './content-hash.js';
import type { PipelineResult } from './encode-pipeline.js';
import type { ExifMeta } from './exif-meta.js';
import type { IngestEvent } from './ingest-events.js';
import type { IngestQueue, QueueItem } from './ingest-queue.js';
import type { IngestStore } from './ingest-store.js';
import type { ThumbnailStore } from '../store/thumbnail-store.js';
import { isMissing } from './path-missing.js';
import { fsPathOf } from './raw-path.js';

export interface SinkDeps {
  store: IngestStore;
  images: ImagesRepo;
  embeddings: EmbeddingsRepo;
  thumbnails: ThumbnailStore;
  modelKey: string;
  queue: IngestQueue;
  /** Thumbnails are made by the pipeline: a copy is only "already done" when its thumbnail exists. */
  thumbnailsEnabled: boolean;
  emit: (event: IngestEvent) => void;
  /** True when the root folder is there and is the folder it was (not an empty mount point). */
  rootAvailable: (rootId: number) => Promise<boolean>;
  /** The root vanished under us: mark it offline (its queue entries wait). */
  rootLost: (rootId: number, reason: string) => void;
  /** Called in the write transaction after a new embedding is stored (the active adapter's projection). */
  onEmbedded?: (contentHash: string, vector: Float32Array) => void;
  /** Times a file may change while being read before it is recorded as an error (default 8). */
  maxChangedRetries?: number;
}


function exifColumns(exif: ExifMeta | undefined) {
  return {
    takenAt: exif?.takenAt?.epochMs ?? null,
    cameraMake: exif?.cameraMake ?? null,
    cameraModel: exif?.cameraModel ?? null,
  };
}

type Plan =
  | { kind: 'write'; result: PipelineResult<QueueItem>; renameFrom?: ImageRecord }
  | { kind: 'gone'; item: QueueItem }
  | { kind: 'rootLost'; item: QueueItem; reason: string }
  | { kind: 'park'; item: QueueItem };

export function createIngestSink(deps: SinkDeps) {
  const { store, images, embeddings, thumbnails, modelKey, queue } = deps;
  const maxChanged = deps.maxChangedRetries ?? 8;
  const changedCount = new Map<string, number>();

  /** Content already embedded, described and (when wanted) with a thumbnail needs no decoding. */
  const skip = async (_file: QueueItem, content: ContentSnapshot): Promise<boolean> => {
    if (!embeddings.has(content.hash, modelKey) || store.metaOfHash(content.hash) === undefined) return false;
    return deps.thumbnailsEnabled ? thumbnails.has(content.hash) : true;
  };

  /** Decisions that need the file system, made before the (synchronous) transaction. */
  const plan = async (results: PipelineResult<QueueItem>[]): Promise<Plan[]> => {
    const roots = new Map<number, Promise<boolean>>();
    const rootOk = (id: number) => {
      let p = roots.get(id);
      if (!p) roots.set(id, (p = deps.rootAvailable(id)));
      return p;
    };
    return Promise.all(
      results.map(async (r): Promise<Plan> => {
        const item = r.file;
        if (r.status === 'failed') {
          const code = r.error.code;
          if (code === 'FILE_CHANGED') {
            const n = (changedCount.get(item.path) ?? 0) + 1;
            changedCount.set(item.path, n);
            if (n <= maxChanged) return { kind: 'park', item };
            // Something rewrites it all the time: record that, and try again when it changes next.
            return { kind: 'write', result: { ...r, error: keptChanging(item.path, n) } };
          }
          if (code === 'FILE_NOT_FOUND' || code === 'FILE_UNREADABLE') {
            // A NAS that went away fails every file the same way: that is the root's state, not theirs.
            if (!(await rootOk(item.rootId))) return { kind: 'rootLost', item, reason: r.error.message };
            if (code === 'FILE_NOT_FOUND' && (await isMissing(fsPathOf(item)))) return { kind: 'gone', item };
          }
          return { kind: 'write', result: r };
        }
        if (r.status === 'skipped' && !store.imageByPath(item.path)) {
          // A new path with known content: is it a file that moved while nobody watched?
          for (const other of store.imagesByHash(r.content.hash)) {
            if (other.path === item.path || other.status === 'offline') continue;
            if ((await rootOk(other.rootId)) && (await isMissing(queue.readPathOf(other)))) return { kind: 'write', result: r, renameFrom: other };
          }
        }
        return { kind: 'write', result: r };
      }),
    );
  };

  const sink = async (results: PipelineResult<QueueItem>[]): Promise<void> => {
    // Thumbnails first: a crash after this leaves a cached file the next run rewrites, never a row without one.
    await Promise.all(
      results.map((r) => (r.status === 'encoded' && r.thumbnail && r.content ? thumbnails.put(r.content.hash, r.thumbnail) : undefined)),
    );
    const plans = await plan(results);
    const events: IngestEvent[] = [];

    store.transaction(() => {
      for (const p of plans) {
        if (p.kind === 'park' || p.kind === 'rootLost') continue;
        const item = p.kind === 'gone' ? p.item : p.result.file;
        const root = store.root(item.rootId);
        // Stale: the entry was removed or queued again while the file was being read.
        if (!root || !queue.remove(item)) {
          continue;
        }
        const prev = store.imageByPath(item.path);
        if (p.kind === 'gone') {
          if (prev) {
            store.removeImage(prev.id);
            events.push({ type: 'removed', imageId: prev.id, path: prev.path });
          } else {
            // Listed (by a walk or the watcher), then gone before it was read: counted, not silently dropped.
            const message = `${item.path}: file vanished before it could be read`;
            events.push({ type: 'notice', rootId: item.rootId, code: 'FILE_VANISHED', message });
          }
          continue;
        }
        const r = p.result;
        const status = root.state === 'ok' ? 'indexed' : 'offline';
        if (r.status === 'failed') {
          const hash = r.content?.hash ?? null;
          const row = images.upsert({
            rootId: item.rootId,
            path: item.path,
            pathBytes: item.pathBytes,
            size: r.content?.size ?? item.size,
            mtimeMs: r.content?.mtimeMs ?? item.mtimeMs,
            contentHash: hash,
            status: 'error',
            errorCode: r.error.code,
            errorMessage: r.error.message,
          });
          changedCount.delete(item.path);
          events.push({ type: 'error', imageId: row.id, path: item.path, code: r.error.code, message: r.error.message });
          continue;
        }
        const content = r.content!;
        if (r.status === 'skipped' && p.renameFrom && store.imageByPath(p.renameFrom.path)?.id === p.renameFrom.id) {
          const from = p.renameFrom;
          store.renameImage(from.id, item.path, item.rootId, content.size, content.mtimeMs, item.pathBytes);
          if (from.status !== status) store.setImageStatus(from.id, status);
          changedCount.delete(item.path);
          events.push({ type: 'renamed', imageId: from.id, from: from.path, to: item.path });
          continue;
        }
        let meta: { width: number | null; height: number | null; format: string | null };
        if (r.status === 'encoded') {
          embeddings.put(content.hash, modelKey, r.embedding);
          deps.onEmbedded?.(content.hash, r.embedding);
          meta = { width: r.info.width, height: r.info.height, format: r.info.format };
        } else {
          meta = store.metaOfHash(content.hash) ?? { width: prev?.width ?? null, height: prev?.height ?? null, format: prev?.format ?? null };
        }
        const row = images.upsert({
          rootId: item.rootId,
          path: item.path,
          pathBytes: item.pathBytes,
          size: content.size,
          mtimeMs: content.mtimeMs,
          contentHash: content.hash,
          ...meta,
          ...exifColumns(r.exif),
          status,
        });
        changedCount.delete(item.path);
        events.push({ type: 'indexed', imageId: row.id, path: item.path, rootId: item.rootId, encoded: r.status === 'encoded' });
      }
    });

    for (const p of plans) {
      if (p.kind === 'park') queue.park(p.item);
      else if (p.kind === 'rootLost') {
        deps.rootLost(p.item.rootId, p.reason);
        queue.giveBack(p.item);
      } else queue.done(p.kind === 'gone' ? p.item : p.result.file);
    }
    for (const e of events) deps.emit(e);
  };

  return { sink, skip };
}

function keptChanging(path: string, times: number): ClipdexError {
  return new ClipdexError('FILE_CHANGED', `${path} changed every time it was read (${times} times); it will be tried again when it changes next`, {
    details: { file: path },
  });
}
