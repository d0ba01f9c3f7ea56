import type { RemoteFile } from './manifest.js';

/** One step of a model pull, as the CLI's bar and the web page's status show it. */
export type PullPhase = 'start' | 'progress' | 'verified' | 'skipped' | 'resumed';

export interface PullProgressEvent {
  phase: PullPhase;
  /** Repository path of the file, '/'-separated. */
  file: string;
  /** 0-based. */
  fileIndex: number;
  fileCount: number;
  /** Bytes of this file on disk so far. Falls back to 0 (with a `note`) when a download restarts. */
  bytesDone: number;
  /** Size of this file when known (manifest, HEAD or Content-Length). */
  bytesTotal: number | undefined;
  totalBytesDone: number;
  /** Sum over all files, when every size is known. */
  totalBytes: number | undefined;
  /** Why something unusual happened: a corrupt local copy replaced, a restart, a retry. */
  note?: string;
}

/** Turns per-chunk byte counts into throttled, monotonic progress events for the whole pull. */

export class ProgressReporter {
  private readonly sizes: (number | undefined)[];
  private completedBytes = 0;
  private lastEmit = 0;

  constructor(
    private readonly files: RemoteFile[],
    private readonly onProgress: ((event: PullProgressEvent) => void) | undefined,
    private readonly intervalMs: number,
  ) {
    this.sizes = files.map((f) => f.size);
  }

  setSize(index: number, size: number): void {
    this.sizes[index] = size;
  }

  emit(phase: PullPhase, index: number, bytesDone: number, note?: string): void {
    if (!this.onProgress) return;
    this.lastEmit = Date.now();
    const totalKnown = this.sizes.every((s) => s !== undefined);
    const event: PullProgressEvent = {
      phase,
      file: this.files[index]!.path,
      fileIndex: index,
      fileCount: this.files.length,
      bytesDone,
      bytesTotal: this.sizes[index],
      totalBytesDone: this.completedBytes + (phase === 'verified' || phase === 'skipped' ? 0 : bytesDone),
      totalBytes: totalKnown ? this.sizes.reduce<number>((a, s) => a + s!, 0) : undefined,
    };
    if (note !== undefined) event.note = note;
    this.onProgress(event);
  }

  /** Per-chunk call; emits at most once per interval. */
  tick(index: number, bytesDone: number): void {
    if (this.onProgress && Date.now() - this.lastEmit >= this.intervalMs) this.emit('progress', index, bytesDone);
  }

  skipped(index: number, size: number): void {
    this.finish('skipped', index, size);
  }

  verified(index: number, size: number): void {
    this.finish('verified', index, size);
  }

  private finish(phase: 'skipped' | 'verified', index: number, size: number): void {
    this.sizes[index] = size;
    this.completedBytes += size;
    this.emit(phase, index, size);
  }
}
