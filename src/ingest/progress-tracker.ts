/**
 * What an engine has done since it started, and how fast: counts per kind of result, files per second over
 * the last ten seconds, the ETA of what is queued, and the progress event (sent only when it says something
 * new). The phase and the queue come from outside; the tracker only counts what the events say.
 */
import type { IngestEvent, IngestPhase, IngestProgress } from './ingest-events.js';

const RATE_WINDOW_MS = 10_000;

export interface ProgressTrackerOptions {
  /** Everything queued, and what of it can be worked on now (its root is online). */
  queueCounts: () => { all: number; online: number };
  phase: () => IngestPhase;
  /** Roots being walked now. */
  scanning: () => number;
}

export class ProgressTracker {
  private readonly counters = { encoded: 0, reused: 0, renamed: 0, removed: 0, errors: 0, vanished: 0 };
  private readonly rate: { at: number; done: number }[] = [];
  /** The queue's length, counted at most twice a second, and again whenever `done` moved (see progress()). */
  private pendingCache = { at: 0, done: -1, all: 0, online: 0 };
  private lastKey = '';

  constructor(private readonly o: ProgressTrackerOptions) {}

  /** Counts what an event says was done. */
  count(event: IngestEvent): void {
    switch (event.type) {
      case 'indexed':
        this.counters[event.encoded ? 'encoded' : 'reused']++;
        break;
      case 'renamed':
        this.counters.renamed++;
        break;
      case 'removed':
        this.counters.removed++;
        break;
      case 'error':
        this.counters.errors++;
        break;
      case 'notice':
        if (event.code === 'FILE_VANISHED') this.counters.vanished++;
        break;
      default:
        break;
    }
  }

  /** Files whose result was recorded. */
  get done(): number {
    const c = this.counters;
    return c.encoded + c.reused + c.renamed + c.errors;
  }

  progress(): IngestProgress {
    const now = Date.now();
    const done = this.done;
    // total is done + the queue, so both must be read at the same moment: a file recorded since the count
    // was taken is in `done` and still in a stale count, and a whole batch recorded at once showed as a
    // total one batch too high (48/260 for 244 files), to the very end of the run.
    let queued = this.pendingCache;
    if (now - queued.at > 500 || queued.done !== done) this.pendingCache = queued = { at: now, done, ...this.o.queueCounts() };
    const pending = queued.all;
    // Entries of an offline root wait for it: this run will not do them, so they are not part of its total.
    const workable = queued.online;
    this.rate.push({ at: now, done });
    while (this.rate.length > 2 && this.rate[0]!.at < now - RATE_WINDOW_MS) this.rate.shift();
    const first = this.rate[0]!;
    const seconds = (now - first.at) / 1000;
    const filesPerSecond = seconds > 0.5 ? (done - first.done) / seconds : 0;
    const c = this.counters;
    return {
      phase: this.o.phase(),
      done,
      total: done + workable,
      pending,
      filesPerSecond,
      etaSeconds: filesPerSecond > 0 ? workable / filesPerSecond : null,
      errors: c.errors,
      reused: c.reused,
      encoded: c.encoded,
      renamed: c.renamed,
      removed: c.removed,
      vanished: c.vanished,
      scanning: this.o.scanning(),
    };
  }

  /** The progress to send now; null when nothing changed since the last one sent (unless `force`). */
  progressUpdate(force: boolean): IngestProgress | null {
    const progress = this.progress();
    const key = `${progress.phase}:${progress.done}:${progress.pending}:${progress.removed}`;
    if (!force && key === this.lastKey) return null;
    this.lastKey = key;
    return progress;
  }
}
