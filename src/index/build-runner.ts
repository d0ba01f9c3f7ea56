/**
 * Runs a build job in a worker thread and turns its messages into a promise with progress callbacks.
 * From dist/ the worker is the compiled .js beside this file; from src/ (vitest, tsx) it is the .ts,
 * loaded through tsx's ESM hooks registered inside the worker (Node 20 does not pass --import hooks on
 * to workers).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { BuildJob, BuildProgress, BuildResult } from './hnsw-build.js';
import type { WorkerMessage } from './hnsw-build-worker.js';

export interface RunningBuild {
  result: Promise<BuildResult>;
  /** Stops the worker; the promise rejects and the partial file is left for orphan cleanup. */
  cancel(): Promise<void>;
}

export function startBuild(job: BuildJob, onProgress: (p: BuildProgress) => void = () => {}): RunningBuild {
  const worker = spawnWorker(job);
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

function spawnWorker(job: BuildJob): Worker {
  const here = fileURLToPath(import.meta.url);
  const js = join(dirname(here), 'hnsw-build-worker.js');
  if (!here.endsWith('.ts') && existsSync(js)) return new Worker(js, { workerData: job });
  const ts = join(dirname(here), 'hnsw-build-worker.ts');
  // tsx's public ESM API, resolved through its exports map from here (an eval'd worker resolves from the cwd).
  let tsxApi: string;
  try {
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch (err) {
    throw new ClipdexError('INDEX_BUILD_FAILED', 'running from TypeScript sources needs tsx to start the index worker', { cause: err });
  }
  const boot = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(pathToFileURL(ts).href)}); })`;
  return new Worker(boot, { eval: true, workerData: job });
}
