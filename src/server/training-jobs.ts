/**
 * Training, activation and rollback run for seconds to minutes, so the API starts them and returns 202;
 * progress goes out as `training` events on the event stream and is readable at GET /api/training. One job
 * at a time (the adapter service refuses a second with BUSY).
 */
import { ClipdexError, errorMessage, isClipdexError } from '../errors.js';
import type { AdapterJobProgress, AdapterService, TrainRequest } from '../train/adapter-service.js';
import { checkShares, DEFAULT_SHARES } from '../train/split-plan.js';
import type { EventHub } from './event-hub.js';

export type JobKind = 'train' | 'activate' | 'rollback';

export interface JobState {
  kind: JobKind;
  state: 'running' | 'done' | 'failed';
  startedAt: number;
  finishedAt: number | null;
  progress: AdapterJobProgress | null;
  /** What a finished job produced (the adapter and its numbers, or the activation). */
  result: unknown;
  error: { code: string; message: string } | null;
}

export class TrainingJobs {
  private current: JobState | null = null;

  constructor(
    private readonly service: AdapterService,
    private readonly events: EventHub,
    private readonly log: (message: string) => void = () => {},
  ) {}

  state(): { running: boolean; job: JobState | null } {
    return { running: this.current?.state === 'running', job: this.current };
  }

  start(kind: JobKind, run: (onProgress: (p: AdapterJobProgress) => void) => Promise<unknown>): JobState {
    if (this.current?.state === 'running' || this.service.busy) {
      throw new ClipdexError('BUSY', `a ${this.current?.kind ?? this.service.busy} job is running; wait for it to finish`);
    }
    const job: JobState = { kind, state: 'running', startedAt: Date.now(), finishedAt: null, progress: null, result: null, error: null };
    this.current = job;
    this.publish();
    void run((p) => {
      job.progress = p;
      this.publish();
    }).then(
      (result) => {
        job.state = 'done';
        job.result = result;
      },
      (err: unknown) => {
        job.state = 'failed';
        job.error = { code: isClipdexError(err) ? err.code : 'INTERNAL', message: errorMessage(err) };
        if (!isClipdexError(err)) this.log(`${kind} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      },
    ).finally(() => {
      job.finishedAt = Date.now();
      this.publish();
    });
    return job;
  }

  train(request: TrainRequest): JobState {
    // A 400 now rather than a failed job later.
    checkShares({ valFraction: request.valFraction ?? DEFAULT_SHARES.valFraction, testFraction: request.testFraction ?? DEFAULT_SHARES.testFraction });
    this.service.checkReady();
    return this.start('train', (onProgress) => this.service.train(request, onProgress).then(({ adapter, outcome, skippedPairs, skipped, comparison, reencode }) => ({ adapter, outcome: { ...outcome, weights: undefined }, skippedPairs, skipped: skipped.slice(0, 100), ...(comparison ? { comparison } : {}), ...(reencode ? { reencode } : {}) })));
  }

  activate(version: number): JobState {
    this.service.version(version); // a 404 now rather than a failed job later
    return this.start('activate', (onProgress) => this.service.activate(version, onProgress));
  }

  rollback(to: 'base' | number): JobState {
    if (to !== 'base') this.service.version(to);
    return this.start('rollback', (onProgress) => this.service.rollback(to, onProgress));
  }

  private publish(): void {
    this.events.publish('training', this.state());
  }
}
