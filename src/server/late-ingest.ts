import { ClipdexError } from '../errors.js';
import type { IngestService } from './ingest-service.js';

type Listener = Parameters<IngestService['onEvent']>[0];

/**
 * The ingest engine as the server sees it while it is still starting: the server listens (and answers
 * searches) at once, the engine (scans, an encoder thread that loads the image tower) comes up behind it.
 */
export class LateIngest<T extends IngestService = IngestService> implements IngestService {
  private engine: T | null = null;
  private failure: unknown = null;
  private readonly listeners = new Set<Listener>();
  private readonly detach = new Map<Listener, () => void>();
  readonly ready: Promise<T | null>;

  constructor(start: () => Promise<T>, onError: (err: unknown) => void) {
    this.ready = start().then(
      (engine) => {
        this.engine = engine;
        for (const l of this.listeners) this.detach.set(l, engine.onEvent(l));
        return engine;
      },
      (err: unknown) => {
        this.failure = err;
        onError(err);
        return null;
      },
    );
  }

  status(): Record<string, unknown> {
    if (this.engine) return this.engine.status();
    return { phase: this.failure ? 'failed' : 'starting', progress: null, roots: [], lastFailure: this.failure ? { code: 'INGEST_FAILED', message: String((this.failure as Error)?.message ?? this.failure) } : null };
  }

  private async engineOrThrow(): Promise<T> {
    const engine = await this.ready;
    if (!engine) throw this.failure;
    return engine;
  }

  async addRoot(path: string): Promise<{ id: number; path: string }> {
    return (await this.engineOrThrow()).addRoot(path);
  }

  async removeRoot(id: number): Promise<boolean> {
    return (await this.engineOrThrow()).removeRoot(id);
  }

  async confirmRoot(id: number): Promise<{ id: number; path: string } | undefined> {
    const engine = await this.engineOrThrow();
    if (!engine.confirmRoot) throw new ClipdexError('INVALID_ARGUMENT', 'this server’s indexing cannot confirm a folder');
    return engine.confirmRoot(id);
  }

  async setOcrEnabled(on: boolean): Promise<Record<string, unknown>> {
    const engine = await this.engineOrThrow();
    if (!engine.setOcrEnabled) throw new ClipdexError('INVALID_ARGUMENT', 'this server’s indexing cannot turn OCR on or off');
    return engine.setOcrEnabled(on);
  }

  onEvent(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.engine) this.detach.set(listener, this.engine.onEvent(listener));
    return () => {
      this.listeners.delete(listener);
      this.detach.get(listener)?.();
      this.detach.delete(listener);
    };
  }
}
