/**
 * Ending a worker thread that runs ONNX Runtime without taking the process down with it.
 *
 * Why not `worker.terminate()`: onnxruntime-node runs a session synchronously on the worker's JS thread, and
 * terminating a thread marks its isolate as terminating while the native run goes on. When the run returns,
 * the binding's result (or error) cannot be handed to JavaScript any more: node-addon-api throws a C++
 * exception nothing catches, and `std::terminate` aborts the whole process (SIGABRT, "terminate called after
 * throwing an instance of 'Napi::Error'"). Measured: `clipdex index` with OCR on, ended while the OCR thread
 * was reading a photo, aborted in 4 runs of 4. So a thread is asked to stop: it finishes the run in progress,
 * releases its sessions and exits by itself, between runs, where nothing native is in flight.
 */
import type { MessagePort, Worker } from 'node:worker_threads';

/** How long a closing thread may take to finish its run in progress before it is ended by force. */
export const STOP_GRACE_MS = 120_000;

/** The message a worker's `closeWhenAsked` answers by finishing its work and exiting. */
export const CLOSE_MESSAGE = { type: 'close' } as const;

/**
 * Asks `worker` to finish the run in progress and exit, and resolves once it has. A thread that has not exited
 * after `graceMs` is terminated (a run stuck that long: the abort risk above is then the lesser evil against a
 * process that never ends); with `graceMs` null it is never forced, and the promise waits for it.
 */
export async function stopWorker(worker: Worker, graceMs: number | null = STOP_GRACE_MS): Promise<void> {
  // A thread that has exited has no port to post to (its threadId is -1 from then on).
  if (worker.threadId < 0) return;
  const exited = new Promise<'exited'>((resolve) => worker.once('exit', () => resolve('exited')));
  // An unref'd thread (the text tower's) would otherwise let the process end first, and the process ending
  // ends its threads the way terminate() does.
  worker.ref();
  worker.postMessage(CLOSE_MESSAGE);
  if (graceMs === null) {
    await exited;
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((resolve) => {
    timer = setTimeout(() => resolve('late'), graceMs);
    timer.unref();
  });
  try {
    if ((await Promise.race([exited, late])) === 'late') await worker.terminate();
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The worker's side: when CLOSE_MESSAGE arrives, waits for `idle()` (the work queued before it), runs
 * `release` (the sessions) and ends the thread. Messages of any other type are left to the worker's own
 * listener, which must ignore CLOSE_MESSAGE.
 */
export function closeWhenAsked(port: MessagePort, idle: () => Promise<unknown>, release: () => Promise<unknown>): void {
  port.on('message', (m: { type?: unknown }) => {
    if (m?.type !== CLOSE_MESSAGE.type) return;
    void (async () => {
      await idle().catch(() => undefined);
      await release().catch(() => undefined);
      // Nothing native is in flight here: ending the thread from inside is safe (it is not `terminate` mid-run).
      process.exit(0);
    })();
  });
}

/** True for CLOSE_MESSAGE: a worker's own listener skips it. */
export function isCloseMessage(m: unknown): boolean {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === CLOSE_MESSAGE.type;
}
