/**
 * Reliability under load (issue 7): many concurrent clients against the real `clipdex serve` (built CLI,
 * self-built tiny model, one watched folder) while photos are written into that folder in bursts, so the
 * watcher, the ingest queue, the encoder thread, the index's background build and the searches all run at
 * once. The library starts just below the size where the index leaves exact search for an HNSW graph, so
 * the arriving photos make it build that graph on its worker thread and swap it in under load.
 *
 *   default (CI):  20 clients × 15 s,   800 photos arriving
 *   STRESS=1:      50 clients × 60 s, 5,000 photos arriving
 *   (LOAD_CLIENTS, LOAD_SECONDS, LOAD_PHOTOS override either.)
 *
 * The clients are closed-loop (the next request leaves when the last answer is in, no think time): the
 * server is saturated on purpose. Asserted: no failed request (2xx for every valid request, the deliberately
 * invalid ones get exactly their 4xx, no 5xx, no network error or timeout), answers that keep their filters'
 * promises, no error line in the server log, RSS flat under load, every photo indexed and none failed, the
 * graph built. Speed is reported, bounded only by "not stuck". The figures are one `LOAD_RESULT {json}` line.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/util/seeded-random.js';
import { eventually, startServe, type ServeProcess } from '../helpers/e2e-server.js';
import { tinyModel } from '../helpers/library-fixture.js';
import {
  burstPlan,
  classifyLog,
  cpuSeconds,
  findServePid,
  makeArchive,
  makePhotos,
  nextRequest,
  percentile,
  round1,
  rssMb,
  send,
  Tally,
  writePhotos,
  type Context,
  type Photo,
} from './load-driver.js';

const STRESS = process.env.STRESS === '1';
const CLIENTS = Number(process.env.LOAD_CLIENTS ?? (STRESS ? 50 : 20));
const SECONDS = Number(process.env.LOAD_SECONDS ?? (STRESS ? 60 : 15));
const PHOTOS = Number(process.env.LOAD_PHOTOS ?? (STRESS ? 5000 : 800));
/** Indexed before the clients start (real files, through the pipeline), so every request kind has ids at once. */
const SEED_PHOTOS = 24;
/** IndexManager's default `exactBelow`: the size at which the first HNSW graph is built. */
const EXACT_BELOW = 20_000;
/**
 * The library crosses EXACT_BELOW with the first arriving photo, so the graph is built while the clients run
 * (under saturating load the first batch of photos can take seconds to land; any later crossing could fall
 * after the window).
 */
const BUILD_AFTER = 1;
const ARCHIVE = EXACT_BELOW - SEED_PHOTOS - BUILD_AFTER;
/** Photos arrive during the first 70% of the window: the rest of it is load on a library that is catching up. */
const WRITE_SHARE = 0.7;
const BURST_EVERY_MS = STRESS ? 700 : 500;
const SAMPLE_EVERY_MS = STRESS ? 2000 : 1000;
/**
 * RSS, checked twice.
 *
 * Under load: the first 20% of the samples are warm-up; of the rest, the last third's max may be at most 2×
 * the first third's. This only catches runaway growth within the window, because under saturating load
 * the server's RSS rises for reasons that are not leaks: V8 lets its old generation grow well past the live
 * set before a major GC when the allocation rate is high (measured in the server: heapUsed 80 → 200 MB within
 * the window, back to 87 MB at the next major GC), and the HNSW build, when it starts inside the window,
 * adds its worker thread, a copy of the vectors and the new graph (~100 MB at 20k × 512). Measured growth:
 * 1.04–1.4 when the build starts at the end of the window, 1.56 when the machine was busier (CI, with the
 * install test beside) and the build started mid-window. A 1.5× bound failed on that; 2× still fails on a
 * whole buffer kept per request (870 requests × ≥600 KB ≥ 500 MB).
 *
 * Settled: what stays after the load. Once the queue has drained, RSS is sampled over two seconds and the
 * lowest sample may be at most 1.8× the RSS before the load. What legitimately stays is the HNSW graph beside
 * the vectors, the encoder's arena, a heap V8 has not shrunk and pages glibc's malloc has not returned
 * (measured 1.36–1.43× with two CPU hogs beside; RSS did not fall within the samples); a decoded image
 * (600 KB of pixels) kept per photo would add 480 MB, 2.4×.
 */
const WARMUP_SHARE = 0.2;
const RSS_GROWTH_LIMIT = 2;
const RSS_SETTLED_LIMIT = 1.8;
const SETTLE_SAMPLES = 4;
const SETTLE_EVERY_MS = 500;
/**
 * "Not stuck": a request slower than the server's own requestTimeout (60 s, server.ts) is a hang, and so is
 * a p99 above half of it. Closed-loop clients on a shared 2-core machine see p99s of seconds (8 s with 50).
 */
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * After the window, the time the queue gets to drain. Under saturating load ingest nearly stops: each file
 * takes ~10 turns of the server's event loop (open, stat, read, stat, close, decode, thumbnail…) and each turn
 * also serves every waiting request, so most photos are indexed after the window, at 16–40 photos/s on this
 * shared 2-core machine once the clients stop; 10 photos/s allowed.
 */
const DRAIN_MS = Math.max(60_000, PHOTOS * 100);

interface IndexHealth {
  engine: 'exact' | 'hnsw';
  count: number;
  graphCount: number;
  pending: number;
  building: boolean;
  lastBuildAt: number | null;
  lastBuildMs: number | null;
  lastError: string | null;
}

interface StatusBody {
  indexed: number;
  pending: number;
  failed: number;
  index: IndexHealth | null;
  ingest: { lastFailure: { code: string; message: string } | null; progress: { errors: number } | null } | null;
}

async function status(url: string): Promise<StatusBody> {
  const res = await fetch(`${url}/api/status`);
  if (!res.ok) throw new Error(`/api/status: ${res.status} ${await res.text()}`);
  return (await res.json()) as StatusBody;
}

/** Written photos the library has no row for, with the burst that wrote them: what a failure needs to be read. */
function missingPhotos(dataDir: string, root: string, photos: Photo[], bursts: { from: number; startedAt: number; endedAt: number }[]): string[] {
  const db = new Database(join(dataDir, 'library.db'), { readonly: true });
  try {
    const known = new Set(db.prepare<[], { path: string }>('SELECT path FROM images').all().map((r) => r.path));
    const out: string[] = [];
    photos.forEach((p, i) => {
      if (known.has(join(root, p.rel))) return;
      const k = bursts.findLastIndex((b) => b.from <= i);
      out.push(`${p.rel} (burst ${k}, written ${bursts[k]?.startedAt}–${bursts[k]?.endedAt} ms)`);
    });
    return out;
  } finally {
    db.close();
  }
}

describe.skipIf(process.platform !== 'linux')(`load: ${CLIENTS} clients × ${SECONDS} s while ${PHOTOS} photos arrive${STRESS ? ' (STRESS)' : ''}`, () => {
  let tmp: string;
  let root: string;
  let server: ServeProcess;
  let pid: number;
  let photos: Photo[];
  let uploadPng: Buffer;
  let startIndex: IndexHealth | null = null;
  const setupMs: Record<string, number> = {};

  beforeAll(async () => {
    let t = performance.now();
    tmp = await mkdtemp(join(tmpdir(), 'clipdex-load-'));
    root = join(tmp, 'photos');
    const dataDir = join(tmp, 'data');
    await mkdir(root, { recursive: true });
    const model = await tinyModel(tmp, 17);
    // All bytes made before the window: the test process then only sends requests and writes files.
    const seed = await makePhotos(20_000, SEED_PHOTOS, 'seed');
    photos = await makePhotos(0, PHOTOS, 'load');
    uploadPng = await sharp({ create: { width: 200, height: 150, channels: 3, background: { r: 200, g: 40, b: 40 } } }).png().toBuffer();
    setupMs.photos = Math.round(performance.now() - t);
    t = performance.now();
    await makeArchive(dataDir, model, root, ARCHIVE, seed.find((p) => p.format === 'jpeg')!);
    await writePhotos(root, seed);
    setupMs.archive = Math.round(performance.now() - t);
    t = performance.now();
    server = await startServe(['--model', model], ['--root', root], { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: join(tmp, 'cache') });
    pid = findServePid(tmp);
    await eventually(
      async () => {
        const s = await status(server.url);
        return s.indexed === ARCHIVE + SEED_PHOTOS && s.pending === 0;
      },
      `the ${ARCHIVE} archive photos and ${SEED_PHOTOS} seed photos indexed`,
      90_000,
    );
    setupMs.serverReady = Math.round(performance.now() - t);
  }, 240_000);

  afterAll(async () => {
    await server?.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it(
    'answers every request, logs no error, keeps its memory flat and indexes every photo',
    async () => {
      const url = server.url;
      const tally = new Tally();
      const ctx: Context = { root, rng: seededRandom(7), ids: [], counter: { phrase: 0 }, uploadPng };
      const first = (await (await fetch(`${url}/api/search?q=photo&limit=100`)).json()) as { results: { id: number }[] };
      ctx.ids.push(...first.results.map((r) => r.id));
      expect(ctx.ids.length).toBe(100);
      // The starting point the build is about: exact search, just below the line (the search above brought
      // the index up to date with SQLite: it replays the change log at each search).
      startIndex = (await status(url)).index;
      expect(startIndex).toMatchObject({ engine: 'exact', count: ARCHIVE + SEED_PHOTOS, graphCount: 0 });

      const before = ARCHIVE + SEED_PHOTOS;
      const expectedTotal = before + PHOTOS;
      const load0 = loadavg()[0]!;
      const serverCpu0 = cpuSeconds(pid);
      const testCpu0 = process.cpuUsage();
      const wall0 = Date.now();
      const t0 = performance.now();
      const windowEnd = t0 + SECONDS * 1000;
      const at = () => Math.round(performance.now() - t0);
      let indexedSeen = before;
      let allIndexedAt: number | null = null;
      let buildSeenAt: number | null = null;
      let hnswSeenAt: number | null = null;
      ctx.onStatus = ({ indexed, index }) => {
        indexedSeen = Math.max(indexedSeen, indexed);
        if (indexed >= expectedTotal && allIndexedAt === null) allIndexedAt = at();
        if (index?.building && buildSeenAt === null) buildSeenAt = at();
        if (index?.engine === 'hnsw' && hnswSeenAt === null) hnswSeenAt = at();
      };

      const samples: { at: number; mb: number; indexed: number }[] = [{ at: 0, mb: rssMb(pid), indexed: 0 }];
      const sampler = setInterval(() => {
        try {
          samples.push({ at: at(), mb: rssMb(pid), indexed: indexedSeen - before });
        } catch {
          // the server is gone: the requests say so louder
        }
      }, SAMPLE_EVERY_MS);

      // Bursts of uneven size, one every BURST_EVERY_MS, into eight folders (created by the first burst into each).
      const bursts = burstPlan(PHOTOS, Math.max(1, Math.floor((SECONDS * 1000 * WRITE_SHARE) / BURST_EVERY_MS)), seededRandom(3));
      let written = 0;
      let lastWriteAt = 0;
      const burstOf: { from: number; startedAt: number; endedAt: number }[] = [];
      const writer = (async () => {
        for (const [k, size] of bursts.entries()) {
          const due = t0 + k * BURST_EVERY_MS;
          if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
          const startedAt = at();
          await writePhotos(root, photos.slice(written, written + size));
          burstOf.push({ from: written, startedAt, endedAt: at() });
          written += size;
        }
        lastWriteAt = at();
      })();

      const clients = Array.from({ length: CLIENTS }, async () => {
        while (performance.now() < windowEnd) await send(url, nextRequest(ctx), tally, REQUEST_TIMEOUT_MS);
      });
      await Promise.all(clients);
      const windowMs = at();
      const serverCpu = cpuSeconds(pid) - serverCpu0;
      const testCpu = process.cpuUsage(testCpu0);
      await writer;
      clearInterval(sampler);
      const duringLoad = samples.filter((s) => s.at <= windowMs);
      const atWindowEnd = await status(url);

      // The queue drains; status polled without load from here on.
      let drainError: string | null = null;
      await eventually(
        async () => {
          const s = await status(url);
          return s.indexed + s.failed >= expectedTotal && s.pending === 0 && s.index?.building === false;
        },
        `${expectedTotal} photos indexed (${written} written)`,
        DRAIN_MS,
      ).catch((err: Error) => (drainError = err.message));
      allIndexedAt ??= at();
      // One search first, so that the index health below includes the last photos' changes.
      await fetch(`${url}/api/search?q=last&limit=1`).then((r) => r.arrayBuffer());
      const final = await status(url);
      const rssAfter = rssMb(pid);
      const settled: number[] = [rssAfter];
      for (let i = 1; i < SETTLE_SAMPLES; i++) {
        await new Promise((r) => setTimeout(r, SETTLE_EVERY_MS));
        settled.push(rssMb(pid));
      }
      const rssSettled = Math.min(...settled);
      await server.stop();
      const lastFailure = final.ingest?.lastFailure ?? null;
      const missing = final.indexed < expectedTotal ? missingPhotos(join(tmp, 'data'), root, photos, burstOf) : [];
      const log = classifyLog(server.log(), lastFailure?.message ?? null);

      // ---- figures ----
      const all = tally.allMs();
      const requests = tally.total('sent');
      const skip = Math.floor(duringLoad.length * WARMUP_SHARE);
      const steady = duringLoad.slice(skip).map((s) => s.mb);
      const third = Math.max(1, Math.floor(steady.length / 3));
      const firstThirdMax = Math.max(...steady.slice(0, third));
      const lastThirdMax = Math.max(...steady.slice(-third));
      const sampleAt = (ms: number) => duringLoad.reduce((best, s) => (Math.abs(s.at - ms) < Math.abs(best.at - ms) ? s : best)).mb;
      const index = final.index;
      const result = {
        mode: STRESS ? 'stress' : 'ci',
        machine: `${cpus().length} cores, Node ${process.versions.node}, load average ${load0.toFixed(1)} at the start`,
        clients: CLIENTS,
        seconds: round1(windowMs / 1000),
        requests,
        throughputPerS: round1(requests / (windowMs / 1000)),
        ok: tally.total('ok'),
        expected4xx: tally.total('expected4xx'),
        failed: tally.total('unexpected') + tally.total('serverErrors') + tally.total('networkErrors'),
        unexpected: tally.total('unexpected'),
        serverErrors: tally.total('serverErrors'),
        networkErrors: tally.total('networkErrors'),
        wrongAnswers: tally.total('wrongAnswers'),
        latencyMs: { p50: round1(percentile(all, 50)), p99: round1(percentile(all, 99)), max: round1(Math.max(...all)) },
        byKind: Object.fromEntries([...tally.kinds].map(([k, t]) => [k, { sent: t.sent, p50: round1(percentile(t.ms, 50)), p99: round1(percentile(t.ms, 99)) }])),
        photos: {
          libraryBefore: before,
          written,
          bursts: bursts.length,
          lastWrittenAtMs: lastWriteAt,
          indexedAtWindowEnd: atWindowEnd.indexed - before,
          allIndexedAtMs: allIndexedAt,
          indexed: final.indexed - before,
          failed: final.failed,
          pending: final.pending,
          timeline: duringLoad.map((s) => [s.at, s.indexed]),
        },
        index: index && {
          engine: index.engine,
          graphCount: index.graphCount,
          besideGraph: index.pending,
          // Times from the start of the window: the build first seen running, and the graph first seen answering
          // (both by the clients' status requests: null when it happened after the window), the build's end.
          buildSeenAtMs: buildSeenAt,
          graphServingSeenAtMs: hnswSeenAt,
          builtAtMs: index.lastBuildAt === null ? null : index.lastBuildAt - wall0,
          buildMs: index.lastBuildMs,
        },
        rssMb: {
          beforeLoad: samples[0]!.mb,
          start: sampleAt(0),
          middle: sampleAt(windowMs / 2),
          end: sampleAt(windowMs),
          peak: Math.max(...duringLoad.map((s) => s.mb)),
          afterDrain: rssAfter,
          settled: rssSettled,
          settledGrowth: Math.round((rssSettled / samples[0]!.mb) * 100) / 100,
          samples: duringLoad.length,
          warmupSamples: skip,
          firstThirdMax,
          lastThirdMax,
          growth: Math.round((lastThirdMax / firstThirdMax) * 100) / 100,
        },
        // CPU seconds used in the window, against cores × seconds: whether the machine, not the server, was the limit.
        cpuS: { server: round1(serverCpu), testClients: round1((testCpu.user + testCpu.system) / 1e6), available: round1((cpus().length * windowMs) / 1000) },
        log: { errorLines: log.errors.length, notices: log.notices.length, lastFailure },
        setupMs,
      };
      console.log(`LOAD_RESULT ${JSON.stringify(result)}`);

      // ---- assertions ----
      const why = `${tally.problems.slice(0, 10).join('\n')}\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
      expect(requests, 'requests sent').toBeGreaterThan(CLIENTS * 5);
      expect(result.networkErrors, `network errors or timeouts\n${why}`).toBe(0);
      expect(result.serverErrors, `5xx answers\n${why}`).toBe(0);
      expect(result.unexpected, `valid requests refused / invalid ones not refused as they should be\n${why}`).toBe(0);
      expect(result.wrongAnswers, `2xx answers that broke their filters\n${why}`).toBe(0);
      // The mix really contained what it claims: a change of weights that drops a kind fails here.
      for (const kind of ['search', 'search-filtered', 'similar', 'thumbnail', 'image', 'status', 'post-search', 'post-upload', 'invalid']) {
        expect(tally.of(kind).sent, `${kind} requests sent`).toBeGreaterThan(0);
      }
      expect(result.expected4xx, 'every invalid request refused').toBe(tally.of('invalid').sent);

      expect(log.errors, `error lines in the server log\n${server.log().slice(-4000)}`).toEqual([]);
      expect(lastFailure, 'a failure of the ingest engine itself').toBeNull();

      expect(drainError, 'the queue drained').toBeNull();
      expect(written).toBe(PHOTOS);
      expect(final.failed, 'photos that failed to index').toBe(0);
      expect(final.pending, 'photos still queued').toBe(0);
      expect(missing, 'photos written but never indexed (nor queued, nor failed)').toEqual([]);
      expect(final.indexed, 'every photo indexed').toBe(expectedTotal);
      // Crossing the line built the graph, and graph + the vectors beside it hold every photo exactly once.
      expect(index, 'index health').toMatchObject({ engine: 'hnsw', count: expectedTotal, lastError: null });
      expect(index!.graphCount).toBeGreaterThanOrEqual(EXACT_BELOW);

      expect(steady.length, 'RSS samples after warm-up').toBeGreaterThanOrEqual(6);
      expect(lastThirdMax, `RSS ${JSON.stringify(duringLoad)}`).toBeLessThanOrEqual(RSS_GROWTH_LIMIT * firstThirdMax);
      expect(rssSettled, `RSS settled after the queue drained (samples ${JSON.stringify(settled)})`).toBeLessThanOrEqual(RSS_SETTLED_LIMIT * result.rssMb.beforeLoad);

      // Not speed, only "not stuck".
      expect(result.latencyMs.p99).toBeLessThan(REQUEST_TIMEOUT_MS / 2);
    },
    (SECONDS + DRAIN_MS / 1000 + 120) * 1000,
  );
});
