/**
 * Worker-thread entry for index builds and merges (see hnsw-build.ts). hnswlib's addPoint is synchronous,
 * so doing this on the main thread would freeze queries and the HTTP server for minutes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isClipdexError, errorMessage } from '../errors.js';
import { storageError } from '../util/storage-error.js';
import { runBuild, type BuildJob } from './hnsw-build.js';

export type WorkerMessage =
  | { type: 'progress'; phase: string; done: number; total: number }
  | { type: 'done'; result: Awaited<ReturnType<typeof runBuild>> }
  | { type: 'error'; message: string; code: string | null };

const port = parentPort;
if (port) {
  const job = workerData as BuildJob;
  let last = 0;
  runBuild(job, (p) => {
    // Progress at most every 100 ms (and always at the end of a phase): messages are cheap but not free.
    const now = Date.now();
    if (now - last >= 100 || p.done === p.total) {
      last = now;
      port.postMessage({ type: 'progress', ...p } satisfies WorkerMessage);
    }
  }).then(
    (result) => port.postMessage({ type: 'done', result } satisfies WorkerMessage),
    (error: unknown) => {
      // A full or read-only disk under the index folder: the main thread gets DISK_FULL & co., not a bare errno.
      const err = storageError(error, job.dir) ?? error;
      port.postMessage({ type: 'error', message: errorMessage(err), code: isClipdexError(err) ? err.code : null } satisfies WorkerMessage);
    },
  );
}
