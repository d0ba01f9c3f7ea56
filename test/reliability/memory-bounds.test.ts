/**
 * Bounded memory under hostile load (issue 11).
 *
 * Uploads: the built `clipdex serve` (self-built tiny model, its own process, so its RSS is its own) gets
 * many maximum-size uploads at once — noise PNGs of ~31 MB, just under the 32 MB limit, which no codec
 * shrinks — while `/api/status` is polled every 100 ms. Every upload must get its search results (after
 * any number of 503 UPLOADS_BUSY answers with Retry-After, which the clients honour), nothing else; RSS,
 * sampled from /proc every 50 ms, may rise at most UPLOAD_RSS_LIMIT_MB over the idle server's; and no
 * status answer may take a second longer than a bare control server's answers take on the same machine.
 *
 *   default (CI):  8 clients × 1 upload
 *   STRESS=1:     16 clients × 4 uploads (the load of the issue: RSS 424 MB → 1.85 GB before the fix)
 *   (MEM_CLIENTS, MEM_UPLOADS override either.)
 *
 * Event stream: the built server refuses the event-stream client past its cap (64) with 503, Retry-After
 * and a JSON error, and accepts one again when a slot frees. A client that stops reading is cut off once it
 * is a bound behind, and the bytes queued for it stay under that bound, while a client that reads gets every
 * message (the real EventHub on a real HTTP server, in this process so its heap can be weighed).
 *
 * Figures: one `MEMORY_RESULT {json}` line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'node:worker_threads';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventHub } from '../../src/server/event-hub.js';
import { startServe, type ServeProcess } from '../helpers/e2e-server.js';
import { noise, sleep, writeJpeg } from '../helpers/ingest-fixtures.js';
import { tinyModel } from '../helpers/library-fixture.js';
import { findServePid, percentile, round1, rssMb } from './load-driver.js';

const STRESS = process.env.STRESS === '1';
const CLIENTS = Number(process.env.MEM_CLIENTS ?? (STRESS ? 16 : 8));
const UPLOADS = Number(process.env.MEM_UPLOADS ?? (STRESS ? 4 : 1));
/** The server's upload limit (app.ts): the test file must stay under it to be a valid upload. */
const MAX_UPLOAD_BYTES = 32 * 1024 * 1024;
/**
 * RSS above the idle server's, at any sample. The server holds at most 64 MB of uploads at once (two of
 * these); each is received in chunks and joined into one buffer (2× while joining), then decoded by libvips
 * (10 MP: 31 MB of pixels, plus its working buffers) and resized — measured rises +146 to +212 MB with 8
 * clients, +157 to +209 MB with 16 (2-core machine, load average 7–12). Without the cap the 8 uploads of the
 * CI load are all held at once: measured +410 MB (and +913 MB for STRESS's 16 × 4).
 */
const UPLOAD_RSS_LIMIT_MB = 300;
/**
 * Every status answer under load (the requirement), beyond what the machine adds to any answer at
 * that moment: on a 2-core machine at load average 10 a bare control server's answers took up to ~1 s too,
 * so the bound is on the status answer's excess over the slowest control answer of the run.
 */
const STATUS_LIMIT_MS = 1000;
/** A client gives up after this many refusals (1 s apart): a server that never admits is a failure, not a hang. */
const MAX_ATTEMPTS = 200;

/**
 * GET /api/status every 100 ms until told to stop, each time beside the same GET to a control server (a bare
 * Node HTTP server in a process of its own): each pair's latencies posted back. The control answers at
 * once whenever it runs, so its latency is what the machine itself adds to any answer at that moment.
 */
const STATUS_POLLER = `
const { parentPort, workerData } = require('node:worker_threads');
let running = true;
parentPort.once('message', () => { running = false; });
const timed = async (url) => {
  const s = performance.now();
  const ok = await fetch(url, { signal: AbortSignal.timeout(30000) }).then(async (r) => (await r.json(), r.ok)).catch(() => false);
  return { ms: Math.round(performance.now() - s), ok };
};
(async () => {
  while (running) {
    const at = Math.round(performance.timeOrigin + performance.now() - workerData.t0);
    const [status, control] = await Promise.all([timed(workerData.url), timed(workerData.controlUrl)]);
    parentPort.postMessage({ at, ms: status.ms, ok: status.ok, controlMs: control.ms });
    await new Promise((r) => setTimeout(r, 100));
  }
  process.exit(0);
})();
`;

/** A bare HTTP server in its own process: the control for what the machine adds to every answer. */
const CONTROL_SERVER = `require('node:http').createServer((q, s) => { s.setHeader('content-type', 'application/json'); s.end('{}'); }).listen(0, '127.0.0.1', function () { process.stdout.write(String(this.address().port) + '\\n'); });`;

interface StatusSample {
  at: number;
  ms: number;
  ok: boolean;
  /** The control server's latency in the same round. */
  controlMs: number;
}

describe('event stream: a client that stops reading', () => {
  let http: Server;
  let hub: EventHub;
  let port: number;
  const BOUND = 1024 * 1024;

  beforeAll(async () => {
    // The real EventHub on a real HTTP server; events coalesce for 20 ms instead of 500 so that tens of
    // megabytes can be offered to the clients in a few seconds.
    hub = new EventHub({ maxBufferedBytes: BOUND, flushIntervalMs: 20 });
    const app = express();
    app.get('/api/events', (req, res) => hub.attach(req, res, () => ({ ok: true })));
    http = createServer(app);
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    port = (http.address() as AddressInfo).port;
  });
  afterAll(async () => {
    hub?.close();
    http?.closeAllConnections();
    await new Promise<void>((r) => (http ? http.close(() => r()) : r()));
  });

  it('is cut off once a bound behind, the bytes queued for it stay under that bound, and a reading client gets everything', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = () => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const open = (onData: (chunk: Buffer) => void) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let seen = '';
        socket.on('error', reject);
        socket.on('data', (chunk: Buffer) => {
          if (seen !== null) {
            seen += chunk.toString('latin1');
            if (seen.includes('event: status')) {
              seen = null as unknown as string;
              resolve(socket);
            }
          }
          onData(chunk);
        });
        socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      });

    const ROUNDS = 200;
    const PAYLOAD = 256 * 1024;
    let readerBytes = 0;
    let readerTail = '';
    let readerMessages = 0;
    const reader = await open((chunk) => {
      readerBytes += chunk.length;
      const text = readerTail + chunk.toString('latin1');
      readerMessages += text.split('event: big\n').length - 1;
      readerTail = text.slice(-16);
    });
    let slowClosed = false;
    const slow = await open(() => {});
    slow.on('close', () => (slowClosed = true));
    slow.on('error', () => {});
    // Stops reading: from here every byte sent to it piles up in the kernel's buffers, then in the server's.
    slow.pause();
    expect(hub.clientCount).toBe(2);

    const heapBefore = heap();
    let worstQueued = 0;
    let droppedAtRound = -1;
    for (let round = 0; round < ROUNDS; round++) {
      hub.publish('big', { round, pad: String(round % 10).repeat(PAYLOAD) });
      // Wait for that flush to go out (events coalesce per type: one per round reaches the clients).
      await new Promise((r) => setTimeout(r, 25));
      worstQueued = Math.max(worstQueued, hub.bufferedBytes);
      if (droppedAtRound < 0 && hub.dropped.slowReaders > 0) droppedAtRound = round;
    }
    await new Promise((r) => setTimeout(r, 200));
    const heapGrowthMb = round1((heap() - heapBefore) / 1024 / 1024);
    // The slow client, reading again, finds its connection closed after what was in the kernel's buffers.
    slow.resume();
    for (let i = 0; i < 100 && !slowClosed; i++) await sleep(50);
    for (let i = 0; i < 100 && readerMessages < ROUNDS; i++) await sleep(50);
    console.log(
      `MEMORY_RESULT ${JSON.stringify({ sse: { offeredMb: round1((ROUNDS * PAYLOAD) / 1024 / 1024), droppedAtRound, worstQueuedKb: Math.round(worstQueued / 1024), heapGrowthMb, readerMb: round1(readerBytes / 1024 / 1024), readerMessages } })}`,
    );

    expect(hub.dropped.slowReaders, 'slow readers disconnected').toBe(1);
    expect(droppedAtRound, 'dropped while the rounds ran').toBeGreaterThanOrEqual(0);
    expect(slowClosed, 'the slow client saw its connection closed').toBe(true);
    expect(hub.clientCount, 'the reading client is still connected').toBe(1);
    expect(readerMessages, 'messages the reading client got').toBe(ROUNDS);
    // The bound, plus at most the one message that took a client over it (and the reader's in-flight one).
    expect(worstQueued, 'bytes queued in the server for its clients').toBeLessThanOrEqual(BOUND + 3 * (PAYLOAD + 1024));
    // 50 MB were offered to the slow client: kept, they would show here.
    expect(heapGrowthMb, 'heap + external growth (MB) after GC').toBeLessThan(16);
    reader.destroy();
    slow.destroy();
  });
});

describe.skipIf(process.platform !== 'linux')(`memory bounds: ${CLIENTS} clients × ${UPLOADS} uploads of ~31 MB${STRESS ? ' (STRESS)' : ''}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let pid: number;
  let upload: Buffer;
  let control: { url: string; child: ChildProcess };

  beforeAll(async () => {
    control = await startControlServer();
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-memory-'));
    const root = join(tmp, 'photos');
    await mkdir(root, { recursive: true });
    for (let i = 0; i < 3; i++) await writeJpeg(join(root, `p${i}.jpg`), 7 + i, 160, 120);
    // Noise does not compress: 3240 × 3240 × 3 bytes stored is ~31.5 MB of PNG, 10.5 MP.
    const side = 3240;
    upload = await sharp(noise(side, side, 3), { raw: { width: side, height: side, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    const model = await tinyModel(tmp, 17);
    server = await startServe(['--model', model], ['--root', root], { CLIPDEX_DATA_DIR: join(tmp, 'data'), CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    pid = findServePid(tmp);
  }, 120_000);

  afterAll(async () => {
    control?.child.kill();
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  const search = (image: Buffer) => {
    const form = new FormData();
    form.append('query', JSON.stringify({ limit: 5 }));
    form.append('image', new Blob([new Uint8Array(image)], { type: 'image/png' }), 'upload.png');
    return fetch(`${server.url}/api/search`, { method: 'POST', body: form, signal: AbortSignal.timeout(120_000) });
  };

  it(
    'keeps RSS bounded and /api/status answering within a second while maximum-size uploads pour in',
    async () => {
      expect(upload.length, 'a maximum-size upload').toBeGreaterThan(30 * 1024 * 1024);
      expect(upload.length, 'under the upload limit').toBeLessThan(MAX_UPLOAD_BYTES);
      // Warm: the image tower has run and sharp has decoded one of these, so the baseline is the working server's.
      const warm = await search(upload);
      expect(warm.status, await warm.clone().text()).toBe(200);
      await warm.arrayBuffer();
      await sleep(500);
      const baseline = rssMb(pid);

      const t0 = performance.now();
      const at = () => Math.round(performance.now() - t0);
      const rss: { at: number; mb: number }[] = [{ at: 0, mb: baseline }];
      const sampler = setInterval(() => {
        try {
          rss.push({ at: at(), mb: rssMb(pid) });
        } catch {
          // gone: the requests say so
        }
      }, 50);
      // The status poller runs on its own thread: this one is busy streaming the uploads, and its delays
      // must not be counted as the server's.
      const poller = new Worker(STATUS_POLLER, { eval: true, workerData: { url: `${server.url}/api/status`, controlUrl: control.url, t0: performance.timeOrigin + t0 } });
      const statuses: StatusSample[] = [];
      poller.on('message', (s: StatusSample) => statuses.push(s));
      const pollerDone = new Promise<void>((r) => poller.once('exit', () => r()));
      const problems: string[] = [];
      let refused = 0;
      let answered = 0;
      const latencies: number[] = [];
      const clients = Array.from({ length: CLIENTS }, async (_, c) => {
        for (let u = 0; u < UPLOADS; u++) {
          const started = performance.now();
          for (let attempt = 1; ; attempt++) {
            let res: Response;
            try {
              res = await search(upload);
            } catch (err) {
              problems.push(`client ${c} upload ${u}: ${(err as Error).message}`);
              break;
            }
            const body = await res.text();
            if (res.status === 200) {
              const results = (JSON.parse(body) as { results?: unknown[] }).results;
              if (!Array.isArray(results) || results.length === 0) problems.push(`client ${c} upload ${u}: 200 without results: ${body.slice(0, 200)}`);
              answered++;
              latencies.push(performance.now() - started);
              break;
            }
            const retryAfter = Number(res.headers.get('retry-after'));
            const code = res.status === 503 ? (JSON.parse(body) as { error?: { code?: string } }).error?.code : undefined;
            if (res.status !== 503 || code !== 'UPLOADS_BUSY' || !(retryAfter >= 1)) {
              problems.push(`client ${c} upload ${u}: ${res.status} retry-after=${res.headers.get('retry-after')} ${body.slice(0, 200)}`);
              break;
            }
            refused++;
            if (attempt >= MAX_ATTEMPTS) {
              problems.push(`client ${c} upload ${u}: still refused after ${attempt} attempts`);
              break;
            }
            // Honour Retry-After, with jitter so the refused clients do not come back in one wave.
            await sleep(retryAfter * 1000 + Math.floor(Math.random() * 500));
          }
        }
      });
      await Promise.all(clients);
      const loadMs = at();
      poller.postMessage('stop');
      await pollerDone;
      await sleep(2000);
      clearInterval(sampler);
      const settled = rssMb(pid);

      const duringLoad = rss.filter((s) => s.at <= loadMs);
      const peak = Math.max(...duringLoad.map((s) => s.mb));
      const statusMs = statuses.map((s) => s.ms);
      const controlMs = statuses.map((s) => s.controlMs);
      const result = {
        mode: STRESS ? 'stress' : 'ci',
        machine: `${cpus().length} cores, Node ${process.versions.node}, load average ${loadavg()[0]!.toFixed(1)}`,
        clients: CLIENTS,
        uploadsEach: UPLOADS,
        uploadMb: round1(upload.length / 1024 / 1024),
        seconds: round1(loadMs / 1000),
        answered,
        refused503: refused,
        uploadLatencyMs: { p50: Math.round(percentile(latencies, 50)), max: Math.round(Math.max(...latencies)) },
        rssMb: { baseline, peak, rise: peak - baseline, twoSecondsAfter: settled },
        status: { polls: statuses.length, failed: statuses.filter((s) => !s.ok).length, p50: percentile(statusMs, 50), p99: percentile(statusMs, 99), max: Math.max(...statusMs) },
        control: { p50: percentile(controlMs, 50), max: Math.max(...controlMs) },
      };
      console.log(`MEMORY_RESULT ${JSON.stringify(result)}`);

      expect(problems, `failed uploads; server log:\n${server.log().slice(-3000)}`).toEqual([]);
      expect(answered, 'uploads answered with results').toBe(CLIENTS * UPLOADS);
      expect(statuses.length, 'status polls during the load').toBeGreaterThan(5);
      expect(result.status.failed, 'status requests that failed').toBe(0);
      expect(result.status.max - result.control.max, `slowest /api/status beyond the slowest control answer: ${JSON.stringify(statuses.filter((s) => s.ms > 300))}`).toBeLessThan(
        STATUS_LIMIT_MS,
      );
      expect(peak - baseline, `RSS rise over ${baseline} MB: ${JSON.stringify(duringLoad.filter((_, i) => i % 10 === 0))}`).toBeLessThanOrEqual(UPLOAD_RSS_LIMIT_MB);
      // The cap was exercised: more uploads arrived at once than it holds.
      if (CLIENTS > 2) expect(refused, 'uploads refused with 503 while the cap was full').toBeGreaterThan(0);
    },
    (STRESS ? 600 : 180) * 1000,
  );

  it('refuses the event-stream client past the cap with 503, Retry-After and a JSON error, and admits one when a slot frees', async () => {
    const port = Number(new URL(server.url).port);
    const open: Socket[] = [];
    const openStream = () =>
      new Promise<{ socket: Socket; head: string }>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1');
        let head = '';
        const timer = setTimeout(() => reject(new Error(`no answer from /api/events: ${JSON.stringify(head)}`)), 15_000);
        socket.on('error', reject);
        socket.on('data', (chunk: Buffer) => {
          head += chunk.toString('latin1');
          // A stream counts once its first status is in; a refusal once its JSON body is.
          if (head.includes('event: status') || (head.startsWith('HTTP/1.1 503') && head.includes('}}'))) {
            clearTimeout(timer);
            socket.removeAllListeners('data');
            resolve({ socket, head });
          }
        });
        socket.write(`GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
      });
    try {
      for (let i = 0; i < 64; i++) {
        const s = await openStream();
        open.push(s.socket);
        expect(s.head.startsWith('HTTP/1.1 200'), `stream ${i}: ${s.head.slice(0, 80)}`).toBe(true);
      }
      const refused = await openStream();
      open.push(refused.socket);
      expect(refused.head).toMatch(/^HTTP\/1\.1 503/);
      expect(refused.head).toMatch(/\r\nretry-after: 5\r\n/i);
      expect(refused.head).toMatch(/\r\ncontent-type: application\/json/i);
      const body = JSON.parse(refused.head.slice(refused.head.indexOf('\r\n\r\n') + 4).replace(/^[0-9a-f]+\r\n/, '').replace(/\r\n0\r\n\r\n$/, '').trim()) as {
        error: { code: string; message: string };
      };
      expect(body.error.code).toBe('TOO_MANY_EVENT_CLIENTS');
      expect(body.error.message).toContain('64');
      // The rest of the API keeps answering with every slot taken.
      expect((await fetch(`${server.url}/api/status`)).status).toBe(200);
      // A slot frees when a client leaves: the server sees the close and admits the next one.
      open.shift()!.destroy();
      let admitted = '';
      for (let i = 0; i < 100 && !admitted.startsWith('HTTP/1.1 200'); i++) {
        const s = await openStream();
        open.push(s.socket);
        admitted = s.head;
        if (!admitted.startsWith('HTTP/1.1 200')) await sleep(100);
      }
      expect(admitted.slice(0, 12)).toBe('HTTP/1.1 200');
    } finally {
      for (const s of open) s.destroy();
    }
  });
});

async function startControlServer(): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['-e', CONTROL_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(Number(out.trim()));
    });
    child.once('exit', (code) => reject(new Error(`the control server exited (${code})`)));
  });
  return { url: `http://127.0.0.1:${port}/`, child };
}
