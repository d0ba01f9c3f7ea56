/**
 * A real HTTP server on 127.0.0.1 that serves directories in the Hugging Face hub's URL layout
 * (`/{owner}/{name}/resolve/{revision}/{path}`), with Range support, a CDN-style redirect and faults
 * that tests switch on: a dropped connection, corrupt bytes, 503s, a server that ignores Range, a slow
 * stream. Faults are keyed by the file's path inside its repository and apply to every repository.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface FakeHubRepo {
  revision: string;
  dir: string;
}

export interface FakeHubFaults {
  /** Drop the connection after this many body bytes of the file's first GET; once per file. */
  cutAfter?: Record<string, number>;
  /** Serve these files with the middle byte flipped (same length), every time. */
  corrupt?: string[];
  /** Answer the first N GETs of the file with 503. */
  unavailable?: Record<string, number>;
  /** Answer Range requests with the whole file (200): for every file, or the listed ones. */
  ignoreRange?: boolean | string[];
  /** Pause after each chunk, so a transfer lasts long enough to watch or abort. */
  slow?: Record<string, { delayMs: number; chunkSize?: number }>;
}

export interface FakeHubOptions {
  repos: Record<string, FakeHubRepo>;
  faults?: FakeHubFaults;
  /** Which files `/resolve/` redirects to `/cdn/`, like the real hub does for LFS files. Default: `*.onnx`. */
  redirect?: 'all' | 'none' | string[];
}

export interface FakeHubRequest {
  method: string;
  /** Decoded URL path. */
  path: string;
  range: string | null;
  status: number;
  /** Body bytes actually written. */
  bytes: number;
}

export interface FakeHub {
  endpoint: string;
  requests: FakeHubRequest[];
  close(): Promise<void>;
}

const DEFAULT_CHUNK = 64 * 1024;

export async function startFakeHub(options: FakeHubOptions): Promise<FakeHub> {
  const faults = options.faults ?? {};
  const requests: FakeHubRequest[] = [];
  const cutDone = new Set<string>();
  const unavailableServed = new Map<string, number>();

  const redirects = (file: string): boolean => {
    const r = options.redirect;
    if (r === 'all') return true;
    if (r === 'none') return false;
    return r ? r.includes(file) : file.endsWith('.onnx');
  };

  const server = createServer((req, res) => {
    const entry: FakeHubRequest = {
      method: req.method ?? 'GET',
      path: safeDecode(new URL(req.url ?? '/', 'http://x').pathname) ?? '',
      range: req.headers.range ?? null,
      status: 0,
      bytes: 0,
    };
    requests.push(entry);
    handle(req, res, entry).catch(() => {
      if (!res.headersSent) reply(res, entry, 500);
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse, entry: FakeHubRequest): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, entry, 405);
    const target = route(new URL(req.url ?? '/', 'http://x').pathname);
    if (!target) return reply(res, entry, 404);
    const repo = options.repos[target.repo];
    if (!repo || repo.revision !== target.revision) return reply(res, entry, 404);
    const root = resolve(repo.dir);
    const filePath = resolve(root, ...target.file.split('/'));
    if (!filePath.startsWith(root + sep)) return reply(res, entry, 404);
    const st = await stat(filePath).catch(() => null);
    if (!st?.isFile()) return reply(res, entry, 404);

    if (!target.cdn && redirects(target.file)) {
      const location = `/cdn/${encodeURIComponent(target.repo)}/${encodeURIComponent(target.revision)}/${target.file
        .split('/')
        .map(encodeURIComponent)
        .join('/')}`;
      res.setHeader('location', location);
      // As the real hub does for LFS files: the sha256 and size of the file behind the redirect.
      res.setHeader('x-linked-etag', `"${await sha256Of(filePath)}"`);
      res.setHeader('x-linked-size', String(st.size));
      return reply(res, entry, 302);
    }

    const isGet = req.method === 'GET';
    const unavailable = faults.unavailable?.[target.file] ?? 0;
    if (isGet && (unavailableServed.get(target.file) ?? 0) < unavailable) {
      unavailableServed.set(target.file, (unavailableServed.get(target.file) ?? 0) + 1);
      return reply(res, entry, 503);
    }

    const size = st.size;
    const ignoreRange = faults.ignoreRange === true || (Array.isArray(faults.ignoreRange) && faults.ignoreRange.includes(target.file));
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    if (range && !ignoreRange) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (!m) return reply(res, entry, 400);
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      if (start >= size || start > end) {
        res.setHeader('content-range', `bytes */${size}`);
        return reply(res, entry, 416);
      }
      status = 206;
      res.setHeader('content-range', `bytes ${start}-${end}/${size}`);
    }
    entry.status = status;
    res.writeHead(status, {
      'content-length': String(end - start + 1),
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
    });
    if (!isGet) {
      res.end();
      return;
    }

    let cutAt: number | undefined;
    if (faults.cutAfter?.[target.file] !== undefined && !cutDone.has(target.file)) {
      cutDone.add(target.file);
      cutAt = faults.cutAfter[target.file];
    }
    const corruptAt = faults.corrupt?.includes(target.file) ? Math.floor(size / 2) : undefined;
    const slow = faults.slow?.[target.file];
    await streamFile(res, entry, filePath, start, end, { cutAt, corruptAt, slow });
  }

  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}

function reply(res: ServerResponse, entry: FakeHubRequest, status: number): void {
  entry.status = status;
  res.statusCode = status;
  res.end();
}

function route(pathname: string): { repo: string; revision: string; file: string; cdn: boolean } | null {
  const parts = pathname.split('/').slice(1).map(safeDecode);
  if (parts.some((p) => p === null)) return null;
  const segs = parts as string[];
  if (segs[0] === 'cdn') {
    if (segs.length < 4) return null;
    return { repo: segs[1]!, revision: segs[2]!, file: segs.slice(3).join('/'), cdn: true };
  }
  const k = segs.indexOf('resolve');
  if (k < 1 || segs.length < k + 3) return null;
  const fileSegs = segs.slice(k + 2);
  if (fileSegs.some((s) => s === '' || s === '.' || s === '..')) return null;
  return { repo: segs.slice(0, k).join('/'), revision: segs[k + 1]!, file: fileSegs.join('/'), cdn: false };
}

function safeDecode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

async function streamFile(
  res: ServerResponse,
  entry: FakeHubRequest,
  filePath: string,
  start: number,
  end: number,
  fault: { cutAt: number | undefined; corruptAt: number | undefined; slow: { delayMs: number; chunkSize?: number } | undefined },
): Promise<void> {
  const chunkSize = fault.slow?.chunkSize ?? DEFAULT_CHUNK;
  const fh = await open(filePath, 'r');
  try {
    let pos = start;
    while (pos <= end) {
      if (res.destroyed) return;
      const want = Math.min(chunkSize, end - pos + 1);
      const buf = Buffer.alloc(want);
      const { bytesRead } = await fh.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      let chunk = buf.subarray(0, bytesRead);
      if (fault.corruptAt !== undefined && fault.corruptAt >= pos && fault.corruptAt < pos + bytesRead) {
        chunk[fault.corruptAt - pos] = chunk[fault.corruptAt - pos]! ^ 0xff;
      }
      if (fault.cutAt !== undefined && entry.bytes + chunk.length >= fault.cutAt) {
        chunk = chunk.subarray(0, fault.cutAt - entry.bytes);
        entry.bytes += chunk.length;
        // Flush what was promised, then drop the socket mid-body, as a broken connection would.
        await new Promise<void>((done) => res.write(chunk, () => done()));
        res.destroy();
        return;
      }
      entry.bytes += chunk.length;
      pos += bytesRead;
      if (!res.write(chunk)) await drainOrClose(res);
      if (fault.slow) await sleep(fault.slow.delayMs);
    }
    res.end();
  } finally {
    await fh.close();
  }
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((done) => {
    const finish = (): void => {
      res.off('drain', finish);
      res.off('close', finish);
      done();
    };
    res.on('drain', finish);
    res.on('close', finish);
  });
}

/** A URL on 127.0.0.1 where nothing listens: the port of a server that was just closed. */
export async function closedEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((done) => server.close(() => done()));
  return `http://127.0.0.1:${port}`;
}

const sha256Cache = new Map<string, string>();
async function sha256Of(path: string): Promise<string> {
  const st = await stat(path);
  const key = `${path}:${st.size}:${st.mtimeMs}`;
  const cached = sha256Cache.get(key);
  if (cached) return cached;
  const hash = createHash('sha256').update(await readFile(path)).digest('hex');
  sha256Cache.set(key, hash);
  return hash;
}
