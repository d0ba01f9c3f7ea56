/**
 * What the ingest engine tells its listeners (the CLI's progress bar, the server's event stream).
 * Plain data, so it serialises to JSON as is.
 */

export type IngestPhase = 'scanning' | 'encoding' | 'idle';

export interface IngestProgress {
  phase: IngestPhase;
  /** Files whose result was recorded since the engine started. */
  done: number;
  /** done + what is queued now for roots that are online (in flight included): what this run will do. */
  total: number;
  /** Queued entries (roots that are offline included). */
  pending: number;
  /** Over the last few seconds. */
  filesPerSecond: number;
  /** Seconds until the queue is empty at the current rate; null when unknown. */
  etaSeconds: number | null;
  /** Files recorded as failed since the engine started. */
  errors: number;
  /** Encoder runs avoided by content already embedded (renames, copies, unchanged content). */
  reused: number;
  encoded: number;
  renamed: number;
  removed: number;
  /** Files listed (by a walk or the watcher) that were gone before they could be read; each also a notice. */
  vanished: number;
  /** Roots being scanned now. */
  scanning: number;
}

export type IngestEvent =
  | { type: 'progress'; progress: IngestProgress }
  /** encoded false: the content's embedding was already stored (a copy, or a change that kept the content). */
  | { type: 'indexed'; imageId: number; path: string; rootId: number; encoded: boolean }
  | { type: 'renamed'; imageId: number; from: string; to: string }
  | { type: 'removed'; imageId: number; path: string }
  | { type: 'error'; imageId: number; path: string; code: string; message: string }
  | { type: 'root'; rootId: number; path: string; state: 'ok' | 'offline'; reason?: string }
  | { type: 'scan'; rootId: number; path: string; phase: 'started' | 'finished'; summary?: ScanReport }
  /** Something the user should read once (a polling fallback, a folder that cannot be read). */
  | { type: 'notice'; rootId: number | null; code: string; message: string }
  /** A failure of the engine itself (the encoder, the database); it retries on its own. */
  | { type: 'failure'; code: string; message: string };

export interface ScanReport {
  files: number;
  queued: number;
  unchanged: number;
  /** Rows removed because their files are gone. */
  removed: number;
  renamed: number;
  /** Offline images that came back unchanged. */
  restored: number;
  /** Files listed by the walk that were gone before they could be stat'ed (each also said in a notice). */
  vanished: number;
  unreadableDirs: string[];
  /** The walk finished and the root stayed the same folder: the sweep ran. */
  complete: boolean;
  offline: boolean;
}

export type IngestListener = (event: IngestEvent) => void;

/** Who listens to an ingest process's events (the engine's or a worker's); a listener's failure is its own business. */
export class IngestListeners {
  private readonly listeners = new Set<IngestListener>();

  /** Adds a listener; returns the function that removes it. */
  add(listener: IngestListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.listeners.size;
  }

  emit(event: IngestEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        // not ours to handle: the other listeners still hear it
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}
