/**
 * Brings the database in line with one root's folder as it is now (the scan at start, after a root
 * comes back, after a polling fallback): mark and sweep, as rclip does it, but queueing work instead of
 * doing it, so the pipeline runs while the walk goes on.
 *
 * - Each file the walk finds is compared with its row by size and mtime: unchanged → nothing; changed
 *   or new → queued (the sink re-hashes it, and the encoder runs only when the content hash is new).
 *   Offline rows that come back unchanged return to search without being read.
 * - Rows the walk did not see are swept, but only when the walk completed and the root stayed the same
 *   folder; never under a folder that could not be read; never rows written since the walk began (the
 *   watcher's). A swept row that a queued new path matches by size, mtime and then content hash was
 *   moved while clipdex was not running: the row is renamed, keeping its id, labels and embedding.
 * - A root that cannot be read, that vanished during the walk, or that reads as an empty folder with a
 *   new identity (the bare mount point of an unmounted share) goes offline: its photos leave search but
 *   keep their rows, and come back with it.
 */
import { join, sep } from 'node:path';
import type { EmbeddingsRepo } from '../store/embeddings-repo.js';
import type { ImagesRepo } from '../store/images-repo.js';
import { SeenPaths } from '../store/seen-paths.js';
import { fileError, hashFile } from './content-hash.js';
import type { IngestEvent, ScanReport } from './ingest-events.js';
import type { IngestQueue } from './ingest-queue.js';
import { identityKey, type IngestStore, type RootInfo } from './ingest-store.js';
import { createFileRules, type FileRules } from './file-rules.js';
import { fsPathOf } from './raw-path.js';
import { NAME_CLASH, scanRoot, type ScanProblem, type ScannedFile } from './scanner.js';

export interface ReconcileDeps {
  /** Which files count (default: the root's exclude globs alone). */
  rules?: FileRules;
  store: IngestStore;
  images: ImagesRepo;
  embeddings: EmbeddingsRepo;
  modelKey: string;
  queue: IngestQueue;
  emit: (event: IngestEvent) => void;
  /** Files modified less than this long ago may still be being written: they wait to settle first. */
  stableMs: number;
  signal?: AbortSignal;
  /** Files per scan batch (one transaction each). */
  batchSize?: number;
  /** After a complete walk: every folder whose path is not UTF-8 (scanner.ts `byteDirs`), for the watcher. */
  onByteDirs?: (dirs: readonly Buffer[]) => void;
}

/** Reconciles one root; resolves when the walk and the sweep are done (the queued work goes on). */
export async function reconcileRoot(root: RootInfo, deps: ReconcileDeps): Promise<ScanReport> {
  const { store, queue } = deps;
  const report: ScanReport = {
    files: 0, queued: 0, unchanged: 0, removed: 0, renamed: 0, restored: 0, vanished: 0, unreadableDirs: [], complete: false, offline: false,
  };
  const startedAt = Date.now();
  const scan = await scanRoot(root.path, {
    rules: deps.rules ?? createFileRules({ exclude: root.exclude }),
    ...(deps.batchSize ? { batchSize: deps.batchSize } : {}),
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  if (!scan.ok) {
    goOffline(root, scan.message, deps);
    report.offline = true;
    return report;
  }

  // Paths the walk saw, in a temporary table: the sweep is then one anti-join, and a million paths stay
  // out of the JS heap.
  const seen = new SeenPaths(store.db);
  try {
    for await (const batch of scan.batches) {
      const fresh: ScannedFile[] = [];
      store.transaction(() => {
        for (const file of batch.files) {
          seen.mark(file.path);
          if (compare(file, root, deps, report)) {
            report.queued++;
            if (startedAt - file.mtimeMs < deps.stableMs) fresh.push(file);
          }
        }
        for (const problem of batch.problems) {
          // A clash's path is its UTF-8 twin's: an error row there would overwrite the twin's (a notice instead).
          if (problem.isDir || problem.code === NAME_CLASH) continue;
          if (recordProblem(problem, root, deps)) seen.mark(problem.path);
        }
      });
      report.files += batch.files.length;
      for (const file of fresh) queue.parkFresh(file.path, file.pathBytes);
      for (const problem of batch.problems) {
        if ((problem.isDir && problem.code !== 'ENOENT') || problem.code === NAME_CLASH) deps.emit({ type: 'notice', rootId: root.id, code: problem.code, message: problem.message });
        // Listed, then gone before it could be stat'ed: nothing to index, but said, so that a count of files
        // on disk that differs from the count indexed has its explanation.
        if (!problem.isDir && problem.code === 'ENOENT') {
          report.vanished++;
          deps.emit({ type: 'notice', rootId: root.id, code: 'FILE_VANISHED', message: problem.message });
        }
      }
      queue.wake();
    }
    const summary = scan.summary;
    report.unreadableDirs = [...summary.unreadableDirs];
    const id = identityKey(scan.identity);
    const bareMountPoint = root.identity !== null && root.identity !== id && summary.files === 0 && store.rootHasImages(root.id);
    if (summary.rootLost || bareMountPoint) {
      goOffline(
        root,
        summary.rootLost
          ? `${root.path} vanished or was replaced during the scan (unmounted?)`
          : `${root.path} is an empty folder that is not the one scanned before: an unmounted share's mount point?`,
        deps,
      );
      report.offline = true;
      return report;
    }
    if (!summary.complete) return report;
    await sweep(root, seen, startedAt, report, deps);
    store.markRootScanned(root.id, id);
    deps.onByteDirs?.(summary.byteDirs);
    report.complete = true;
    return report;
  } finally {
    seen.drop();
  }
}

function goOffline(root: RootInfo, reason: string, deps: ReconcileDeps): void {
  deps.store.markRootOffline(root.id, reason);
  deps.emit({ type: 'root', rootId: root.id, path: root.path, state: 'offline', reason });
}

/** Compares one found file with its row; true when it was queued. Runs inside the batch's transaction. */
function compare(file: ScannedFile, root: RootInfo, deps: ReconcileDeps, report: ScanReport): boolean {
  const { store } = deps;
  const row = store.imageByPath(file.path);
  // Same display path, other bytes: renamed to or from its UTF-8 spelling (convmv); the row must follow.
  const rowBytes = row?.pathBytes ?? null;
  const sameBytes = rowBytes === null || file.pathBytes === null ? rowBytes === file.pathBytes : rowBytes.equals(file.pathBytes);
  if (row && sameBytes && row.size === file.size && row.mtimeMs === file.mtimeMs) {
    const embedded = row.contentHash !== null && deps.embeddings.has(row.contentHash, deps.modelKey);
    if (row.status === 'error' || (row.status === 'indexed' && embedded)) {
      report.unchanged++;
      return false;
    }
    if (row.status === 'offline' && embedded) {
      store.setImageStatus(row.id, 'indexed');
      report.restored++;
      return false;
    }
  }
  store.enqueue(file.path, root.id, file.size, file.mtimeMs, file.pathBytes);
  return true;
}

/** A file the walk could not stat (a symlink loop, permission denied): recorded like any bad file. */
function recordProblem(problem: ScanProblem, root: RootInfo, deps: ReconcileDeps): boolean {
  if (problem.code === 'ENOENT') return false; // vanished during the walk: counted and said by the caller
  const error = fileError(Object.assign(new Error(problem.message), { code: problem.code }), problem.path);
  const row = deps.store.imageByPath(problem.path);
  if (row?.status === 'error' && row.errorCode === error.code) return true;
  const written = deps.images.upsert({
    rootId: root.id, path: problem.path, pathBytes: problem.pathBytes ?? null, size: 0, mtimeMs: 0, status: 'error', errorCode: error.code, errorMessage: error.message,
  });
  deps.emit({ type: 'error', imageId: written.id, path: problem.path, code: error.code, message: error.message });
  return true;
}

const SWEEP_PAGE = 500;

async function sweep(root: RootInfo, seen: SeenPaths, startedAt: number, report: ScanReport, deps: ReconcileDeps): Promise<void> {
  const { store } = deps;
  const skipDirs = report.unreadableDirs.map((rel) => (rel === '' ? root.path : join(root.path, ...rel.split('/'))));
  const protectedPath = (path: string) => skipDirs.some((d) => path === d || path.startsWith(d + sep));
  if (!skipDirs.includes(root.path)) {
    for (let after = 0; ; ) {
      const page = seen.unseenImages(root.id, after, startedAt, SWEEP_PAGE);
      if (page.length === 0) break;
      after = page[page.length - 1]!.id;
      // Async checks first (hashing a candidate), then one transaction that re-checks each row.
      const moves = new Map<number, { path: string; pathBytes: Buffer | null; rootId: number; size: number; mtimeMs: number }>();
      for (const row of page) {
        if (protectedPath(row.path) || !row.contentHash) continue;
        for (const candidate of store.queuedBySizeMtime(row.size, row.mtimeMs)) {
          const snap = await hashFile(candidate.path, { at: fsPathOf(candidate) }).catch(() => null);
          if (snap && !snap.changed && snap.hash === row.contentHash) {
            moves.set(row.id, candidate);
            break;
          }
        }
      }
      const events: IngestEvent[] = [];
      store.transaction(() => {
        for (const row of page) {
          if (protectedPath(row.path)) continue;
          const now = store.imageByPath(row.path);
          if (!now || now.id !== row.id || now.updatedAt >= startedAt) continue;
          const move = moves.get(row.id);
          if (move && store.queued(move.path)) {
            store.renameImage(row.id, move.path, move.rootId, move.size, move.mtimeMs, move.pathBytes);
            if (now.status === 'offline') store.setImageStatus(row.id, 'indexed');
            report.renamed++;
            events.push({ type: 'renamed', imageId: row.id, from: row.path, to: move.path });
          } else {
            store.removeImage(row.id);
            report.removed++;
            events.push({ type: 'removed', imageId: row.id, path: row.path });
          }
        }
      });
      for (const e of events) deps.emit(e);
    }
  }
  // Queued files that are gone (queued by an earlier run that stopped before reading them).
  const gone = seen.unseenQueued(root.id, startedAt).filter((q) => !protectedPath(q.path));
  if (gone.length > 0) store.transaction(() => gone.forEach((q) => store.dequeue(q.id)));
}
