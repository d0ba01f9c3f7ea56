import type { Request, Response } from 'express';

/**
 * Server-Sent Events to the browser: live indexing progress and new photos. A status snapshot is sent on
 * connect and then at most once a second while anything changes, so a burst of 10,000 files costs the
 * browser a few messages, not 10,000.
 */
export class EventHub {
  private readonly clients = new Set<Response>();
  private pending = new Map<string, unknown>();
  private timer: NodeJS.Timeout | null = null;
  private statusOf: (() => unknown) | null = null;

  attach(req: Request, res: Response, statusOf: () => unknown): void {
    this.statusOf = statusOf;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.write('retry: 2000\n\n');
    this.send(res, 'status', statusOf());
    this.clients.add(res);
    const ping = setInterval(() => res.write(': ping\n\n'), 15_000);
    req.on('close', () => {
      clearInterval(ping);
      this.clients.delete(res);
    });
  }

  /** Coalesces events by type within a short window; 'status' is recomputed when the window closes. */
  publish(kind: string, data: unknown): void {
    const type = sseEventName(kind);
    if (type === 'indexed' || type === 'removed') {
      const list = (this.pending.get(type) as unknown[] | undefined) ?? [];
      if (list.length < 200) list.push(data);
      this.pending.set(type, list);
    } else {
      this.pending.set(type, data);
    }
    this.pending.set('status', null);
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), 500);
      this.timer.unref();
    }
  }

  get clientCount(): number {
    return this.clients.size;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private flush(): void {
    this.timer = null;
    const pending = this.pending;
    this.pending = new Map();
    for (const [type, data] of pending) {
      const payload = type === 'status' ? this.statusOf?.() : data;
      for (const res of this.clients) this.send(res, type, payload);
    }
  }

  private send(res: Response, type: string, data: unknown): void {
    res.write(`event: ${type}\ndata: ${JSON.stringify(data ?? null)}\n\n`);
  }
}

/**
 * The name an event travels under. A browser's EventSource dispatches a message named `error` to the same
 * listeners as a dropped connection, so a photo that failed to index must not be called that: the page
 * would read it as "reconnecting" and stay there while the stream is in fact live.
 */
export function sseEventName(kind: string): string {
  return kind === 'error' ? 'failed' : kind;
}
