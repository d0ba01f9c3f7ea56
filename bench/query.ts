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
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import Database from 'better-sqlite3';
import sharp from 'sharp';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Library } from '../src/library/library.js';
import { ThumbnailStore } from '../src/store/thumbnail-store.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
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
  stop(): Promise<void>;
}

async function startServe(env: Record<string, string> = {}): Promise<{ server: Server; firstAnswerMs: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [CLI, '--model', MODEL_DIR, '--data-dir', DATA_DIR, '--json', 'serve', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, CLIPDEX_THREADS: '2', ...env },
  });
  const line = await new Promise<string>((resolveLine, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolveLine);
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  const { url } = JSON.parse(line) as { url: string };
  const res = await fetch(`${url}/api/search?q=${encodeURIComponent(nextPhrase())}&limit=20`);
  if (!res.ok) throw new Error(`first query failed: ${res.status} ${await res.text()}`);
  await res.json();
  const firstAnswerMs = performance.now() - started;
  return {
    firstAnswerMs,
    server: {
      url,
      rssMb: () => Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024),
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

async function query(url: string): Promise<number> {
  const t = performance.now();
  const res = await fetch(`${url}/api/search?q=${encodeURIComponent(nextPhrase())}&limit=20`);
  if (!res.ok) throw new Error(`query failed: ${res.status}`);
  await res.json();
  return performance.now() - t;
}

async function main(): Promise<void> {
  await ensureLibrary();
  if (process.env.BENCH_SETUP_ONLY !== '1' && !existsSync(CLI)) throw new Error('run `npm run build` first (the benchmark starts the real `clipdex serve`)');
  if (process.env.BENCH_SETUP_ONLY === '1') return; // bench:train only needs the library
  const starts: number[] = [];
  let server: Server | null = null;
  for (let i = 0; i < 3; i++) {
    const s = await startServe();
    starts.push(s.firstAnswerMs);
    if (i < 2) await s.server.stop();
    else server = s.server;
  }
  console.log(`cold start → first answer: ${starts.map((s) => s.toFixed(0)).join(', ')} ms`);

  for (let i = 0; i < 10; i++) await query(server!.url); // warm-up
  const latencies: number[] = [];
  for (let i = 0; i < 200; i++) latencies.push(await query(server!.url));

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
    sequential: { queries: latencies.length, p50Ms: +percentile(latencies, 50).toFixed(1), p99Ms: +percentile(latencies, 99).toFixed(1) },
    concurrent: { clients, seconds, queries: done, qps: +(done / seconds).toFixed(1), p50Ms: +percentile(concurrent, 50).toFixed(1), p99Ms: +percentile(concurrent, 99).toFixed(1) },
    thumbnailsWhile8Search: thumbnails,
  };
  console.log(JSON.stringify(result, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
