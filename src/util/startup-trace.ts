/**
 * Where a process's start goes: with CLIPDEX_TRACE_STARTUP=1, each mark is one line on stderr,
 * `clipdex-startup {"mark":…,"at":…,"thread":…}`, `at` in epoch milliseconds so that marks of worker threads
 * (whose performance.now() starts at the thread's own start) and of the process that launched this one
 * (bench/query.ts) share one clock. Off, a mark costs one property read.
 */
import { threadId } from 'node:worker_threads';

const on = process.env.CLIPDEX_TRACE_STARTUP === '1';

export function startupMark(mark: string): void {
  if (!on) return;
  process.stderr.write(`clipdex-startup ${JSON.stringify({ mark, at: Math.round(performance.timeOrigin + performance.now()), thread: threadId })}\n`);
}
