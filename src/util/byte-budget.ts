/**
 * A counting semaphore over bytes: work that holds large buffers (an upload being received, a photo file
 * read into memory to be hashed and decoded) reserves its size first, so the total held at once stays
 * under `capacity` however many such jobs arrive together.
 *
 * - A reservation larger than the whole budget is not refused: it waits until nothing else is held and
 *   then runs alone (callers that must refuse huge inputs check their own per-item limit first).
 * - Waiters are served first come, first served: a large reservation at the head of the queue is not
 *   overtaken forever by a stream of small ones.
 * - A release is idempotent, so it can sit in a `finally` and in a 'close' listener at once.
 */
export type Release = () => void;

interface Waiter {
  bytes: number;
  grant: (release: Release) => void;
}

export class ByteBudget {
  private held = 0;
  private peakHeld = 0;
  private readonly queue: Waiter[] = [];

  constructor(readonly capacity: number) {
    if (!(Number.isFinite(capacity) && capacity > 0)) throw new RangeError(`a byte budget must be a positive number, got ${capacity}`);
  }

  /** Bytes reserved right now (may exceed capacity while one oversized reservation runs alone). */
  get inUse(): number {
    return this.held;
  }

  /** The most bytes ever reserved at once. */
  get peak(): number {
    return this.peakHeld;
  }

  /** Reservations waiting for room. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Reserves `bytes` now if they fit (and nobody is queued before them); otherwise null, and nothing is held. */
  tryAcquire(bytes: number): Release | null {
    const n = this.normalise(bytes);
    if (this.queue.length > 0 || !this.fits(n)) return null;
    return this.take(n);
  }

  /** Resolves once `bytes` are reserved; rejects with the signal's reason if it aborts first (nothing is then held). */
  acquire(bytes: number, signal?: AbortSignal): Promise<Release> {
    const n = this.normalise(bytes);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.queue.length === 0 && this.fits(n)) return Promise.resolve(this.take(n));
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        bytes: n,
        grant: (release) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal?.reason);
        // The head may have been what blocked the rest.
        this.drain();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  private normalise(bytes: number): number {
    if (!(Number.isFinite(bytes) && bytes >= 0)) throw new RangeError(`a reservation must be a non-negative number of bytes, got ${bytes}`);
    return Math.ceil(bytes);
  }

  /** Fits within the budget, or is oversized and nothing else is held (then it runs alone). */
  private fits(n: number): boolean {
    return this.held + n <= this.capacity || this.held === 0;
  }

  private take(n: number): Release {
    this.held += n;
    if (this.held > this.peakHeld) this.peakHeld = this.held;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held -= n;
      this.drain();
    };
  }

  private drain(): void {
    while (this.queue.length > 0 && this.fits(this.queue[0]!.bytes)) {
      const waiter = this.queue.shift()!;
      waiter.grant(this.take(waiter.bytes));
    }
  }
}
