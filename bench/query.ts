/**
 * npm run bench:query — what a user feels: text queries over HTTP against a library of 100k photos, with the
 * ViT-B/32-shaped self-built model (text encoder at the real token length) and the HNSW index.
 *
 *   cold start: `clipdex serve` launched → first search answered (median of 3 starts)
 *   latency: p50/p99 of sequential queries, every phrase new (no cache hits)
 *   throughput: queries/s with 8 concurrent clients
 *   the event loop: thumbnail latency (p50/p99) while 8 clients search, the text tower on its own thread
 *     (the default) and on the main thread (CLIPDEX_TEXT_THREAD=off), measured side by side in one run
 *
 * The library is made once in bench/out/query-<n> (photos are rows with clustered 512-d embeddings: no image
 * is decoded, since ingest has its own benchmark). BENCH_N=20000 for a quicker run.
 *
 * Each cold start prints where its time went: the server's startup marks (CLIPDEX_TRACE_STARTUP=1; a build
 * from before them prints none), in ms from the launch. BENCH_EVICT=1 drops the model's ONNX files and the
 * saved optimized graphs (the model cache's ort-optimized/) from the page cache before each start
 * (POSIX_FADV_DONTNEED through GNU dd; Linux): a start after a reboot, as far as those files go.
 * BENCH_QUICK=1 stops after the sequential queries (no concurrent or thumbnail rounds).
 *
 * BENCH_QUERY_PRECISIONS=fp32,int8 measures the text tower's query precisions side by side on the same library
 * (CLIPDEX_QUERY_PRECISION of each serve process): a first start each (int8's writes its int8 file), then cold
 * starts (median of 3) and sequential queries (BENCH_QUERY_ROUNDS rounds of 100, default 2) from serve processes
 * started in turn, fp32, int8, fp32, int8 …, so a change of load falls on both alike. Prints a table and the JSON.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Library } from '../src/library/library.js';
import { ThumbnailStore } from '../src/store/thumbnail-store.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { cacheDir } from '../src/model/cache-dir.js';
import { OPTIMIZED_CACHE_DIR } from '../src/inference/optimized-cache.js';
import { addSyntheticPhotos } from '../test/helpers/synthetic-photos.js';

const N = Number(process.env.BENCH_N ?? 100_000);
const OUT = resolve('bench/out');
const MODEL_DIR = join(OUT, 'vit-b-32');
const DATA_DIR = join(OUT, `query-${N}`);
const PHOTOS_DIR = join(OUT, `query-${N}-photos`);
// BENCH_CLI: another build's main.js (an older commit's), to compare on the same library.
const CLI = resolve(process.env.BENCH_CLI ?? 'dist/cli/main.js');
const sharedVocab = resolve('..', 'shared', 'clip', 'bpe_simple_vocab_16e6.txt.gz');

const WORDS = ['dog', 'cat', 'beach', 'sunset', 'mountain', 'snow', 'kids', 'birthday', 'cake', 'garden', 'kayak', 'lake', 'city', 'night', 'forest', 'car', 'bike', 'grandma', 'wedding', 'concert'];
let phraseCounter = 0;
/** Every phrase different, so the text cache never answers for the encoder. */
function nextPhrase(): string {
  const i = phraseCounter++;
  return `${WORDS[i % WORDS.length]} ${WORDS[(i * 7 + 3) % WORDS.length]} in the ${WORDS[(i * 13 + 5) % WORDS.length]} number ${i}`;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/**
 * The photos are real files — hard links to one small JPEG, with rows of the same size and mtime so the
 * server's start-up scan leaves them alone — because `serve` scans its folders: rows pointing at a folder
 * that does not exist would be taken offline (and out of the index) at the first start, and the numbers
 * would be for an empty library. A library made that way by an older version is made again.
 */
async function ensureLibrary(): Promise<void> {
  if (!existsSync(join(MODEL_DIR, 'onnx', 'vision_model.onnx'))) {
    console.log('building the vit-b-32 preset model …');
    await buildTinyModel({ out: MODEL_DIR, preset: 'vit-b-32', vocab: existsSync(sharedVocab) ? sharedVocab : undefined, force: true });
  }
  if (existsSync(join(DATA_DIR, 'library.db'))) {
    const db = new Database(join(DATA_DIR, 'library.db'), { readonly: true });
    const indexed = (db.prepare("SELECT count(*) AS n FROM images WHERE status = 'indexed'").get() as { n: number }).n;
    db.close();
    if (indexed === N && existsSync(PHOTOS_DIR)) return;
    console.log(`${DATA_DIR} has ${indexed} indexed photos of ${N}: making it again`);
    rmSync(DATA_DIR, { recursive: true, force: true });
    rmSync(PHOTOS_DIR, { recursive: true, force: true });
  }
  mkdirSync(DATA_DIR, { recursive: true });
  console.log(`making a library of ${N} photos in ${DATA_DIR} …`);
  const t0 = performance.now();
  const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 90, g: 120, b: 60 } } }).jpeg().toBuffer();
  const library = await Library.open({ dataDir: DATA_DIR, model: MODEL_DIR });
  const { index } = library.requireModel();
  await addSyntheticPhotos(library, {
    root: PHOTOS_DIR,
    count: N,
    seed: 7,
    path: (i) => join(PHOTOS_DIR, String(Math.floor(i / 1000)), `IMG_${i}.jpg`),
    hash: (i) => i.toString(16).padStart(64, '0'),
    files: { linked: jpeg, sourceDir: OUT },
    width: 4000,
    height: 3000,
    takenAt: (i) => 1_600_000_000_000 + i * 60_000,
  });
  console.log(`inserted in ${((performance.now() - t0) / 1000).toFixed(1)} s; building the HNSW index …`);
  index.sync();
  await index.rebuild();
  await index.idle();
  console.log(`index ready in ${((performance.now() - t0) / 1000).toFixed(1)} s: ${JSON.stringify(index.health())}`);
  await library.close();
}

interface Server {
  url: string;
  /** The serve process's resident memory now (Linux /proc), in MB. */
  rssMb(): number;
  /** CPU time the serve process used so far, all its threads (Linux /proc), in ms: less load-sensitive than latency. */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** The files a start reads most of: the model's towers and their saved optimized graphs. */
function modelFiles(): string[] {
  const onnx = join(MODEL_DIR, 'onnx');
  const saved = join(cacheDir(), OPTIMIZED_CACHE_DIR);
  const inDir = (dir: string, deep: boolean): string[] =>
    existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isFile() ? [join(dir, e.name)] : deep && e.isDirectory() ? inDir(join(dir, e.name), false) : [])) : [];
  return [...inDir(onnx, false), ...inDir(saved, true)];
}

function evictFromPageCache(files: string[]): void {
  for (const f of files) execFileSync('dd', [`if=${f}`, 'iflag=nocache', 'count=0', 'status=none']);
}

async function startServe(env: Record<string, string> = {}, trace?: (mark: string, ms: number) => void): Promise<{ server: Server; firstAnswerMs: number }> {
  if (process.env.BENCH_EVICT === '1') evictFromPageCache(modelFiles());
  const started = performance.now();
  const launchedAt = Date.now();
  const child = spawn(process.execPath, [CLI, '--model', MODEL_DIR, '--data-dir', DATA_DIR, '--json', 'serve', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLIPDEX_THREADS: '2', CLIPDEX_TRACE_STARTUP: '1', ...env },
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    const m = /^clipdex-startup (.*)$/.exec(line);
    if (!m) process.stderr.write(`${line}\n`);
    else if (trace) {
      const { mark, at, thread } = JSON.parse(m[1]!) as { mark: string; at: number; thread: number };
      trace(`${mark}${thread ? ` (thread ${thread})` : ''}`, at - launchedAt);
    }
  });
  const line = await new Promise<string>((resolveLine, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolveLine);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  const { url } = JSON.parse(line) as { url: string };
  trace?.('url read by the benchmark', Date.now() - launchedAt);
  const res = await fetch(`${url}/api/search?q=${encodeURIComponent(nextPhrase())}&limit=20`);
  if (!res.ok) throw new Error(`first query failed: ${res.status} ${await res.text()}`);
  await res.json();
  const firstAnswerMs = performance.now() - started;
  trace?.('FIRST ANSWER', Date.now() - launchedAt);
  return {
    firstAnswerMs,
    server: {
      url,
      rssMb: () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024),
      cpuMs: () => {
        // utime and stime, the 14th and 15th fields, in clock ticks (100 per second on Linux).
        const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return (Number(fields[11]) + Number(fields[12])) * 10;
      },
      stop: () =>
        new Promise<void>((r) => {
          child.once('exit', () => r());
          child.kill('SIGTERM');
        }),
    },
  };
}

/**
 * Ids of 50 photos whose thumbnails are in the store. The rows' content hashes are made up (no image was
 * encoded), so the server could not make thumbnails from the files: they are written here, one small WebP each.
 */
async function thumbnailIds(): Promise<number[]> {
  const db = new Database(join(DATA_DIR, 'library.db'), { readonly: true });
  const rows = db.prepare("SELECT id, content_hash AS hash FROM images WHERE status = 'indexed' ORDER BY id LIMIT 50").all() as { id: number; hash: string }[];
  db.close();
  const store = new ThumbnailStore(DATA_DIR);
  const webp = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 90, g: 140, b: 200 } } }).webp({ quality: 80 }).toBuffer();
  for (const r of rows) if (!(await store.has(r.hash))) await store.put(r.hash, webp);
  return rows.map((r) => r.id);
}

/** Waits until the server's indexing has started and has nothing to do (the scan done, the queue empty). */
async function settled(url: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const status = (await (await fetch(`${url}/api/status`)).json()) as { ingest?: { phase?: string } | null };
    if (status.ingest?.phase === 'idle') return;
    if (Date.now() > deadline) throw new Error(`the server did not settle: ${JSON.stringify(status.ingest)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function query(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${url}/api/search?q=${encodeURIComponent(nextPhrase())}&limit=20`);
  if (!res.ok) throw new Error(`query failed: ${res.status}`);
  await res.json();
  return performance.now() - t;
}

/** Cold start, sequential latency and server CPU per query for each query precision, from alternating serve processes. */
async function comparePrecisions(precisions: string[]): Promise<void> {
  const loadAtStart = +loadavg()[0]!.toFixed(1);
  const firstStartMs: Record<string, number> = {};
  // First starts: int8's quantizes the text tower into the cache (once); both write optimized graphs if missing.
  for (const p of precisions) {
    const s = await startServe({ CLIPDEX_QUERY_PRECISION: p });
    firstStartMs[p] = Math.round(s.firstAnswerMs);
    await s.server.stop();
  }
  const starts: Record<string, number[]> = Object.fromEntries(precisions.map((p) => [p, []]));
  for (let i = 0; i < 3; i++) {
    for (const p of precisions) {
      const s = await startServe({ CLIPDEX_QUERY_PRECISION: p });
      starts[p]!.push(s.firstAnswerMs);
      await s.server.stop();
    }
  }
  const rounds = Number(process.env.BENCH_QUERY_ROUNDS ?? 2);
  const latencies: Record<string, number[]> = Object.fromEntries(precisions.map((p) => [p, []]));
  const cpuMs: Record<string, number> = Object.fromEntries(precisions.map((p) => [p, 0]));
  const rssMb: Record<string, number> = {};
  const towers: Record<string, unknown> = {};
  for (let r = 0; r < rounds; r++) {
    for (const p of precisions) {
      const { server } = await startServe({ CLIPDEX_QUERY_PRECISION: p });
      await settled(server.url);
      towers[p] = ((await (await fetch(`${server.url}/api/status`)).json()) as { model?: { textTower?: unknown } }).model?.textTower;
      for (let i = 0; i < 10; i++) await query(server.url); // warm-up
      const before = server.cpuMs();
      for (let i = 0; i < 100; i++) latencies[p]!.push(await query(server.url));
      cpuMs[p]! += server.cpuMs() - before;
      rssMb[p] = server.rssMb();
      await server.stop();
    }
  }
  const result = Object.fromEntries(
    precisions.map((p) => [
      p,
      {
        textTower: towers[p],
        firstStartMs: firstStartMs[p],
        coldStartMs: { runs: starts[p]!.map((s) => Math.round(s)), median: Math.round(percentile(starts[p]!, 50)) },
        sequential: {
          queries: latencies[p]!.length,
          p50Ms: +percentile(latencies[p]!, 50).toFixed(1),
          p99Ms: +percentile(latencies[p]!, 99).toFixed(1),
          serverCpuMsPerQuery: +(cpuMs[p]! / latencies[p]!.length).toFixed(1),
        },
        rssMbAfterQueries: rssMb[p],
      },
    ]),
  );
  console.log(`| precision | first start (ms) | cold start median (ms) | p50 (ms) | p99 (ms) | server CPU / query (ms) | RSS (MB) |`);
  console.log(`|---|---|---|---|---|---|---|`);
  for (const p of precisions) {
    const r = result[p]!;
    console.log(`| ${p} | ${r.firstStartMs} | ${r.coldStartMs.median} (${r.coldStartMs.runs.join(', ')}) | ${r.sequential.p50Ms} | ${r.sequential.p99Ms} | ${r.sequential.serverCpuMsPerQuery} | ${r.rssMbAfterQueries} |`);
  }
  console.log(JSON.stringify({ photos: N, cli: CLI, rounds, loadAvg1m: { start: loadAtStart, end: +loadavg()[0]!.toFixed(1) }, precisions: result }, null, 2));
}

async function main(): Promise<void> {
  await ensureLibrary();
  if (process.env.BENCH_SETUP_ONLY !== '1' && !existsSync(CLI)) throw new Error('run `npm run build` first (the benchmark starts the real `clipdex serve`)');
  if (process.env.BENCH_SETUP_ONLY === '1') return; // bench:train only needs the library
  const precisions = (process.env.BENCH_QUERY_PRECISIONS ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
  if (precisions.length > 0) return comparePrecisions(precisions);
  const starts: number[] = [];
  let server: Server | null = null;
  // A warm-up start: fills the page cache (unless evicted) and writes the optimized graphs of a build that
  // keeps them (whose first start ever pays for it: measure it with CLIPDEX_ORT_CACHE=off).
  await (await startServe()).server.stop();
  for (let i = 0; i < 3; i++) {
    const marks: string[] = [];
    const s = await startServe({}, (mark, ms) => marks.push(`${String(ms).padStart(6)} ms  ${mark}`));
    console.log(`cold start ${i + 1}:\n${marks.join('\n')}`);
    starts.push(s.firstAnswerMs);
    if (i < 2) await s.server.stop();
    else server = s.server;
  }
  console.log(`cold start → first answer: ${starts.map((s) => s.toFixed(0)).join(', ')} ms`);

  // Latency with the server settled: the ingest engine's start (watching every photo, the scan) is
  // main-thread work, and a build that starts it behind the first answer would be measured during it.
  await settled(server!.url);
  for (let i = 0; i < 10; i++) await query(server!.url); // warm-up
  const latencies: number[] = [];
  const cpuBefore = server!.cpuMs();
  for (let i = 0; i < 200; i++) latencies.push(await query(server!.url));
  const serverCpuMsPerQuery = +((server!.cpuMs() - cpuBefore) / latencies.length).toFixed(1);
  if (process.env.BENCH_QUICK === '1') {
    await server!.stop();
    const sequential = { queries: latencies.length, p50Ms: +percentile(latencies, 50).toFixed(1), p99Ms: +percentile(latencies, 99).toFixed(1), serverCpuMsPerQuery };
    console.log(JSON.stringify({ photos: N, cli: CLI, coldStartMs: { runs: starts.map((s) => Math.round(s)), median: Math.round(percentile(starts, 50)) }, sequential }, null, 2));
    return;
  }

  const clients = 8;
  const seconds = 10;
  let done = 0;
  const concurrent: number[] = [];
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) {
        concurrent.push(await query(server!.url));
        done++;
      }
    }),
  );
  await server!.stop();

  // Thumbnails while 8 clients search: what a person browsing the grid feels while others query.
  const thumbnails: Record<string, { p50Ms: number; p99Ms: number; served: number; searches: number; rssMb: number }> = {};
  const ids = await thumbnailIds();
  for (const [name, env] of [['textThread', {}], ['mainThread', { CLIPDEX_TEXT_THREAD: 'off' }], ['textThread again', {}]] as const) {
    const s = (await startServe(env)).server;
    for (let i = 0; i < 10; i++) await query(s.url);
    const stopAt = performance.now() + seconds * 1000;
    let searches = 0;
    const thumbs: number[] = [];
    await Promise.all([
      ...Array.from({ length: clients }, async () => {
        while (performance.now() < stopAt) {
          await query(s.url);
          searches++;
        }
      }),
      (async () => {
        for (let i = 0; performance.now() < stopAt; i++) {
          const t = performance.now();
          const res = await fetch(`${s.url}/api/images/${ids[i % ids.length]}/thumbnail`);
          if (!res.ok) throw new Error(`thumbnail failed: ${res.status}`);
          await res.arrayBuffer();
          thumbs.push(performance.now() - t);
        }
      })(),
    ]);
    const rssMb = s.rssMb();
    await s.stop();
    thumbnails[name] = { p50Ms: +percentile(thumbs, 50).toFixed(1), p99Ms: +percentile(thumbs, 99).toFixed(1), served: thumbs.length, searches, rssMb };
  }

  const result = {
    photos: N,
    model: 'vit-b-32 preset (self-built, 512-d)',
    coldStartMs: { runs: starts.map((s) => Math.round(s)), median: Math.round(percentile(starts, 50)) },
    sequential: { queries: latencies.length, p50Ms: +percentile(latencies, 50).toFixed(1), p99Ms: +percentile(latencies, 99).toFixed(1), serverCpuMsPerQuery },
    concurrent: { clients, seconds, queries: done, qps: +(done / seconds).toFixed(1), p50Ms: +percentile(concurrent, 50).toFixed(1), p99Ms: +percentile(concurrent, 99).toFixed(1) },
    thumbnailsWhile8Search: thumbnails,
  };
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
