import type { Request, Response } from 'express';
import { sendError } from './http-errors.js';

export interface EventHubOptions {
  /** Clients connected at once; one more is answered 503 with Retry-After. Default 64. */
  maxClients?: number;
  /**
   * Bytes a client may have queued and not yet taken (the response's writableLength): a client still that
   * far behind when the next message is due is not reading, and is disconnected (its EventSource
   * reconnects and starts again from a fresh status). Default 1 MiB.
   */
  maxBufferedBytes?: number;
  /** Events are coalesced for this long before they go out (default 500 ms). */
  flushIntervalMs?: number;
}

export const DEFAULT_MAX_EVENT_CLIENTS = 64;
export const DEFAULT_MAX_EVENT_BUFFERED_BYTES = 1024 * 1024;
/** Seconds a refused event-stream client is asked to wait. */
export const EVENTS_RETRY_AFTER_S = 5;

/**
 * Server-Sent Events to the browser: live indexing progress and new photos. A status snapshot is sent on
 * connect and then at most once a second while anything changes, so a burst of 10,000 files costs the
 * browser a few messages, not 10,000.
 *
 * Memory is bounded whoever connects: at most `maxClients` streams, and none may hold more than
 * `maxBufferedBytes` unsent (plus the one message that took it over), so a client that stops reading
 * costs a bounded amount and is then dropped instead of growing the server's memory with every event.
 */
export class EventHub {
  private readonly clients = new Map<Response, NodeJS.Timeout>();
  private pending = new Map<string, unknown>();
  private timer: NodeJS.Timeout | null = null;
  private statusOf: (() => unknown) | null = null;
  private readonly maxClients: number;
  private readonly maxBufferedBytes: number;
  private readonly flushIntervalMs: number;
  private droppedClients = 0;
  private refusedClients = 0;

  constructor(options: EventHubOptions = {}) {
    this.maxClients = options.maxClients ?? DEFAULT_MAX_EVENT_CLIENTS;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_EVENT_BUFFERED_BYTES;
    this.flushIntervalMs = options.flushIntervalMs ?? 500;
  }

  attach(req: Request, res: Response, statusOf: () => unknown): void {
    if (this.clients.size >= this.maxClients) {
      this.refusedClients++;
      res.setHeader('Retry-After', String(EVENTS_RETRY_AFTER_S));
      return sendError(
        res,
        503,
        'TOO_MANY_EVENT_CLIENTS',
        `the server already streams events to ${this.maxClients} clients, its limit; close another tab or retry in ${EVENTS_RETRY_AFTER_S} s`,
        { maxClients: this.maxClients, retryAfterSeconds: EVENTS_RETRY_AFTER_S },
      );
    }
    this.statusOf = statusOf;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.write('retry: 2000\n\n');
    const ping = setInterval(() => this.write(res, ': ping\n\n'), 15_000);
    this.clients.set(res, ping);
    this.send(res, 'status', statusOf());
    req.on('close', () => this.forget(res));
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
      this.timer = setTimeout(() => this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Clients disconnected for not reading, and clients refused at the cap, since the start. */
  get dropped(): { slowReaders: number; refused: number } {
    return { slowReaders: this.droppedClients, refused: this.refusedClients };
  }

  /** Bytes queued for all clients and not yet taken by their sockets. */
  get bufferedBytes(): number {
    let total = 0;
    for (const res of this.clients.keys()) total += res.writableLength;
    return total;
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const [res, ping] of this.clients) {
      clearInterval(ping);
      res.end();
    }
    this.clients.clear();
  }

  private flush(): void {
    this.timer = null;
    const pending = this.pending;
    this.pending = new Map();
    for (const [type, data] of pending) {
      if (this.clients.size === 0) break;
      let payload = data;
      if (type === 'status') {
        // A status read that fails (the database away for a moment) skips this update; the next one comes.
        try {
          payload = this.statusOf?.();
        } catch {
          continue;
        }
      }
      // Serialised once for every client.
      const message = `event: ${type}\ndata: ${JSON.stringify(payload ?? null)}\n\n`;
      for (const res of [...this.clients.keys()]) this.write(res, message);
    }
  }

  private send(res: Response, type: string, data: unknown): void {
    this.write(res, `event: ${type}\ndata: ${JSON.stringify(data ?? null)}\n\n`);
  }

  /** Writes unless the client is still `maxBufferedBytes` behind from earlier messages: then it is dropped. */
  private write(res: Response, message: string): void {
    if (!this.clients.has(res)) return;
    if (res.writableLength > this.maxBufferedBytes) {
      this.droppedClients++;
      this.forget(res);
      res.destroy();
      return;
    }
    res.write(message);
  }

  private forget(res: Response): void {
    const ping = this.clients.get(res);
    if (ping) clearInterval(ping);
    this.clients.delete(res);
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
