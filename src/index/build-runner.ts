/**
 * Runs a build job in a worker thread and turns its messages into a promise with progress callbacks.
 * From dist/ the worker is the compiled .js beside this file; from src/ (vitest, tsx) it is the .ts,
 * loaded through tsx's ESM hooks registered inside the worker (Node 20 does not pass --import hooks on
 * to workers).
 */
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { BuildJob, BuildProgress, BuildResult } from './hnsw-build.js';
import type { WorkerMessage } from './hnsw-build-worker.js';
import { spawnWorker } from '../util/spawn-worker.js';

export interface RunningBuild {
  result: Promise<BuildResult>;
  /** Stops the worker; the promise rejects and the partial file is left for orphan cleanup. */
  cancel(): Promise<void>;
}

export function startBuild(job: BuildJob, onProgress: (p: BuildProgress) => void = () => {}): RunningBuild {
  const worker = spawnWorker(import.meta.url, 'hnsw-build-worker', job, { code: 'INDEX_BUILD_FAILED', what: 'the index worker' });
  let settled = false;
  const result = new Promise<BuildResult>((resolve, reject) => {
    worker.on('message', (m: WorkerMessage) => {
      if (m.type === 'progress') onProgress({ phase: m.phase as BuildProgress['phase'], done: m.done, total: m.total });
      else if (m.type === 'done') {
        settled = true;
        resolve(m.result);
      } else {
        settled = true;
        const code: ErrorCode = (m.code as ErrorCode | null) ?? 'INDEX_BUILD_FAILED';
        reject(new ClipdexError(code, `index ${job.kind} for ${job.modelKey} failed: ${m.message}`));
      }
    });
    worker.on('error', (err) => {
      settled = true;
      reject(new ClipdexError('INDEX_BUILD_FAILED', `index ${job.kind} worker for ${job.modelKey} crashed: ${err.message}`, { cause: err }));
    });
    worker.on('exit', (code) => {
      if (!settled) reject(new ClipdexError('INDEX_BUILD_FAILED', `index ${job.kind} worker for ${job.modelKey} exited with code ${code}`));
    });
  });
  result.then(
    () => void worker.terminate(),
    () => void worker.terminate(),
  );
  return {
    result,
    cancel: async () => {
      await worker.terminate();
    },
  };
}
