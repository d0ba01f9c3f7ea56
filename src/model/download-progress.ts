import type { RemoteFile } from './manifest.js';
import type { PullPhase, PullProgressEvent } from './hub-download.js';

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
