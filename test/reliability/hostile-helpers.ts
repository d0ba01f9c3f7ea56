/**
 * Plumbing shared by the hostile-input tests: a raw HTTP client (fetch normalises URLs, refuses some
 * headers and would hide exactly what these tests send), a tally of what was sent and answered, and
 * byte-level builders for hostile payloads (percent-encoding of lone surrogates, crafted PNG headers,
 * hand-made multipart bodies).
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { createDeflate, deflateSync } from 'node:zlib';

/** `STRESS=1` selects the long variants (for `npm run stress`); CI runs the short ones. */
export const STRESS = process.env.STRESS === '1';

export interface RawRequest {
  method: string;
  /** Sent exactly as given (it must be ASCII: Node refuses other bytes in a request line). */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** From the first byte written to the last byte read. */
  ms: number;
}

/**
 * One request on its own connection (no keep-alive: a response that ends early, or a stream the test
 * drops, must not leave a half-used socket for the next case). An event stream is read until its first
 * event and then dropped, as a closing browser tab would.
 */
export function rawRequest(port: number, req: RawRequest, timeoutMs = 15_000, host = '127.0.0.1'): Promise<RawResponse> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const body = req.body === undefined ? undefined : Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body);
    const headers: Record<string, string> = { ...(req.headers ?? {}) };
    if (body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')) headers['content-length'] = String(body.length);
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const r = httpRequest({ host, port, method: req.method, path: req.path, headers, agent: false, setHost: !('host' in headers) }, (res) => {
      const chunks: Buffer[] = [];
      const sse = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        if (sse && /event: status\ndata: [^\n]*\n\n/.test(Buffer.concat(chunks).toString())) {
          finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started }));
          r.destroy();
        }
      });
      res.on('end', () => finish(() => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started })));
      res.on('error', (err) => finish(() => reject(err)));
    });
    const timer = setTimeout(() => {
      finish(() => reject(new Error(`no complete answer within ${timeoutMs} ms to ${req.method} ${req.path.slice(0, 200)}`)));
      r.destroy();
    }, timeoutMs);
    // A server that answers before reading a too-large body may close the socket while we still write:
    // the answer already received is what counts, so only a failure before any answer is an error.
    r.on('error', (err) => setTimeout(() => finish(() => reject(err)), 50));
    if (body !== undefined) r.end(body);
    else r.end();
  });
}

export function jsonOf(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The API's error shape: `{ error: { code, message } }`, both non-empty strings. */
export function isErrorBody(value: unknown): value is { error: { code: string; message: string } } {
  const e = (value as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  return typeof e?.code === 'string' && e.code.length > 0 && typeof e.message === 'string' && e.message.length > 0;
}

/** What was sent and how it was answered, for the assertions and for the report line each test prints. */
export class Tally {
  requests = 0;
  readonly byStatus = new Map<number, number>();
  readonly byRoute = new Map<string, number>();
  readonly codes = new Map<string, number>();
  /** 5xx answers, less the 503 a server without indexing gives to the folder routes (an answer, not a failure). */
  serverErrors = 0;
  maxMs = 0;
  maxWhat = '';
  bytesSent = 0;

  record(route: string, req: RawRequest, res: RawResponse): void {
    this.requests++;
    this.byStatus.set(res.status, (this.byStatus.get(res.status) ?? 0) + 1);
    this.byRoute.set(route, (this.byRoute.get(route) ?? 0) + 1);
    this.bytesSent += req.body?.length ?? 0;
    const body = jsonOf(res.body);
    if (isErrorBody(body)) this.codes.set(body.error.code, (this.codes.get(body.error.code) ?? 0) + 1);
    if (res.status >= 500 && !(res.status === 503 && isErrorBody(body) && body.error.code === 'INGEST_UNAVAILABLE')) this.serverErrors++;
    if (res.ms > this.maxMs) {
      this.maxMs = res.ms;
      this.maxWhat = `${req.method} ${req.path.slice(0, 120)}${req.path.length > 120 ? '…' : ''} (${req.body?.length ?? 0} body bytes) → ${res.status}`;
    }
  }

  count(pred: (status: number) => boolean): number {
    let n = 0;
    for (const [s, c] of this.byStatus) if (pred(s)) n += c;
    return n;
  }

  summary(): string {
    const sorted = <K>(m: Map<K, number>) => [...m].sort((a, b) => String(a[0]).localeCompare(String(b[0]))).map(([k, v]) => `${String(k)}:${v}`).join(' ');
    return [
      `${this.requests} requests (${(this.bytesSent / 1e6).toFixed(1)} MB of bodies), ${this.serverErrors} 5xx (not counting 503 INGEST_UNAVAILABLE)`,
      `statuses ${sorted(this.byStatus)}`,
      `error codes ${sorted(this.codes)}`,
      `max ${this.maxMs.toFixed(0)} ms: ${this.maxWhat}`,
    ].join('\n  ');
  }
}

/**
 * UTF-8, except that a lone surrogate is written as the three bytes it would take (WTF-8), which is what a
 * careless client sends and what a decoder must refuse or replace rather than crash on.
 */
export function wtf8(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Buffer.from(out);
}

const UNRESERVED = /[A-Za-z0-9\-_.~]/;

/** Percent-encodes every byte but the unreserved ones; `raw` keeps printable ASCII as it is (`%`, `/`, `..` included). */
export function pct(s: string, raw = false): string {
  let out = '';
  for (const byte of wtf8(s)) {
    const ch = String.fromCharCode(byte);
    if (UNRESERVED.test(ch) || (raw && byte > 0x20 && byte < 0x7f && ch !== '#')) out += ch;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const typed = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typed));
  return Buffer.concat([len, typed, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function ihdr(width: number, height: number): Buffer {
  const d = Buffer.alloc(13);
  d.writeUInt32BE(width, 0);
  d.writeUInt32BE(height, 4);
  d[8] = 8; // bit depth
  d[9] = 0; // greyscale
  return pngChunk('IHDR', d);
}

/**
 * A real decompression bomb: a valid greyscale PNG of width×height black pixels whose deflate stream is
 * ~1/1000 of the decoded size (20000×20000: ~400 KB on disk, 400 MB once decoded). Made by streaming
 * deflate over zero rows, so the test never holds the decoded picture in memory.
 */
export async function pngBomb(width: number, height: number): Promise<Buffer> {
  const deflate = createDeflate({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (c: Buffer) => out.push(c));
  const done = new Promise<void>((r) => deflate.on('end', () => r()));
  const rowsPerChunk = Math.max(1, Math.floor((4 << 20) / (width + 1)));
  const chunk = Buffer.alloc(rowsPerChunk * (width + 1)); // filter byte 0 + zero pixels per row
  for (let y = 0; y < height; y += rowsPerChunk) {
    const rows = Math.min(rowsPerChunk, height - y);
    if (!deflate.write(rows === rowsPerChunk ? chunk : chunk.subarray(0, rows * (width + 1)))) await new Promise((r) => deflate.once('drain', r));
  }
  deflate.end();
  await done;
  return Buffer.concat([PNG_SIGNATURE, ihdr(width, height), pngChunk('IDAT', Buffer.concat(out)), pngChunk('IEND', Buffer.alloc(0))]);
}

/** A PNG whose header declares width×height but whose data holds one row: the size is a lie. */
export function pngLyingHeader(width: number, height: number): Buffer {
  const row = Buffer.alloc(Math.min(width, 1 << 16) + 1);
  return Buffer.concat([PNG_SIGNATURE, ihdr(width, height), pngChunk('IDAT', deflateSync(row)), pngChunk('IEND', Buffer.alloc(0))]);
}

export interface Part {
  name: string;
  filename?: string;
  contentType?: string;
  data: Buffer | string;
}

/** A multipart/form-data body built byte by byte, so a test can cut it or break its framing anywhere. */
export function multipartBody(boundary: string, parts: Part[], close = true): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += '\r\n';
    if (p.contentType) head += `Content-Type: ${p.contentType}\r\n`;
    chunks.push(wtf8(`${head}\r\n`), Buffer.isBuffer(p.data) ? p.data : wtf8(p.data), Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

/** Runs `tasks` with at most `limit` at a time; resolves with their results in order. */
export async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out = new Array<T>(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}

export interface SocketAnswer {
  /** 0 when the server closed the connection without answering. */
  status: number;
  head: string;
  body: Buffer;
  ms: number;
}

/**
 * Writes bytes straight to a TCP socket (requests no HTTP client would produce: bytes above 0x7f in the
 * request line, NUL in a header, framing that contradicts itself) and reads one answer: up to its
 * Content-Length, or until the server closes or goes quiet.
 */
export function rawSocket(port: number, bytes: Buffer, quietMs = 3_000): Promise<SocketAnswer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let data = Buffer.alloc(0);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      const split = data.indexOf('\r\n\r\n');
      const head = split < 0 ? data.toString('latin1') : data.subarray(0, split).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, body: split < 0 ? Buffer.alloc(0) : data.subarray(split + 4), ms: performance.now() - started });
    };
    let timer = setTimeout(finish, quietMs);
    socket.on('data', (c: Buffer) => {
      data = Buffer.concat([data, c]);
      clearTimeout(timer);
      timer = setTimeout(finish, quietMs);
      const split = data.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(data.subarray(0, Math.max(0, split)).toString('latin1'))?.[1];
      if (split >= 0 && length !== undefined && data.length >= split + 4 + Number(length)) finish();
    });
    socket.on('error', finish);
    socket.on('close', finish);
    // Written, not ended: on a half-closed socket Node aborts the request in flight and never answers.
    socket.write(bytes);
  });
}
