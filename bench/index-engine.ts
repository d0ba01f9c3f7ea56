/**
 * One engine measurement in its own process (so peak RSS belongs to that engine alone); started by
 * bench/index.ts. Prints one JSON line starting with "RESULT ".
 *
 *   hnsw-build <dataDir> <vectors.f32> <dim>     SQLite library + IndexManager build (worker, ef tuning)
 *   hnsw-serve <dataDir> <queries.f32> <truth.json> <dim>   reopen (verify + load), queries at several ef
 *   hnsw-open  <dataDir>                          only the reopen, as a server start does it (a fresh process)
 *   usearch    <outDir> <vectors.f32> <queries.f32> <truth.json> <dim>
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { HnswIndex } from '../src/index/hnsw-index.js';
import { hnswlibBuild } from '../src/index/hnswlib-binding.js';
import { keyDir, type IndexState } from '../src/index/index-files.js';
import { IndexManager } from '../src/index/index-manager.js';
import type { SearchHit } from '../src/index/vector-index.js';
import { addIndexedImages, openTestLibrary } from '../test/helpers/store-fixtures.js';

export const EF_SWEEP = [16, 32, 64, 128, 160, 192, 256];
const KEY = 'bench-clip';

const peakRssMb = () => Math.round(process.resourceUsage().maxRSS / 1024);
const rssMb = () => Math.round(process.memoryUsage().rss / 1024 / 1024);

function readF32(path: string): Float32Array {
  const buf = readFileSync(path);
  return new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
}

interface Truth {
  ids: number[][];
  scores: number[][];
}

function recallAt10(hits: { id: number; score: number }[], truth: Truth, q: number): number {
  const kth = truth.scores[q]![9]!;
  const seen = new Set<number>();
  let good = 0;
  for (const h of hits.slice(0, 10)) {
    if (!seen.has(h.id) && h.score >= kth - 1e-5) good++;
    seen.add(h.id);
  }
  return good / 10;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function sweep(name: string, queries: Float32Array, dim: number, truth: Truth, search: (q: Float32Array) => SearchHit[]) {
  const n = queries.length / dim;
  for (let q = 0; q < Math.min(20, n); q++) search(queries.subarray(q * dim, (q + 1) * dim)); // warm-up
  const times: number[] = [];
  let recall = 0;
  for (let q = 0; q < n; q++) {
    const query = queries.subarray(q * dim, (q + 1) * dim);
    const t = performance.now();
    const hits = search(query);
    times.push(performance.now() - t);
    recall += recallAt10(hits, truth, q);
  }
  return { name, p50Ms: +percentile(times, 50).toFixed(3), p99Ms: +percentile(times, 99).toFixed(3), recallAt10: +(recall / n).toFixed(4) };
}

async function hnswBuild(dataDir: string, vectorsPath: string, dim: number) {
  const vectors = readF32(vectorsPath);
  const n = vectors.length / dim;
  const lib = openTestLibrary(dataDir);
  let t = performance.now();
  const chunk = 20_000;
  for (let start = 0; start < n; start += chunk) {
    // Formats give the filtered-search measurement two subset sizes: png 10% (exact over the subset's
    // stored vectors when ≤ 20k) and webp ~30% (HNSW with a filter function and a widened ef).
    addIndexedImages(lib, KEY, vectors, dim, {
      start,
      count: Math.min(chunk, n - start),
      extra: (i) => ({ format: i % 10 === 0 ? 'png' : i % 3 === 0 ? 'webp' : 'jpeg' }),
    });
  }
  const insertMs = performance.now() - t;
  let lastPhase = '';
  t = performance.now();
  const m = await IndexManager.open({
    store: lib.store,
    indexDir: lib.indexDir,
    modelKey: KEY,
    autoMerge: false,
    exactBelow: 1000,
    onProgress: (p) => {
      const line = `${p.phase} ${p.done}/${p.total}`;
      if (p.phase !== lastPhase || p.done === p.total) process.stderr.write(`  hnsw ${line}\n`);
      lastPhase = p.phase;
    },
  });
  const buildWallMs = performance.now() - t;
  const h = m.health();
  const state = JSON.parse(readFileSync(join(keyDir(lib.indexDir, KEY), 'state.json'), 'utf8')) as IndexState;
  await m.close();
  lib.close();
  return {
    engine: 'hnswlib-node (clipdex: SQLite → worker)',
    n,
    insertSqliteMs: Math.round(insertMs),
    buildWallMs: Math.round(buildWallMs),
    buildWorkerMs: h.lastBuildMs,
    peakRssMb: peakRssMb(),
    fileBytes: h.fileBytes,
    tunedEf: h.ef,
    tunedRecall: h.recall,
    efTried: state.efTried,
  };
}

async function hnswServe(dataDir: string, queriesPath: string, truthPath: string, dim: number) {
  const queries = readF32(queriesPath);
  const truth = JSON.parse(readFileSync(truthPath, 'utf8')) as Truth;
  const lib = openTestLibrary(dataDir);
  const rssBefore = rssMb();
  let t = performance.now();
  const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false, exactBelow: 1000 });
  const loadMs = performance.now() - t;
  const rssLoaded = rssMb();
  const h = m.health();
  const state = JSON.parse(readFileSync(join(keyDir(lib.indexDir, KEY), 'state.json'), 'utf8')) as IndexState;
  const file = join(keyDir(lib.indexDir, KEY), state.file);
  t = performance.now();
  const raw = await HnswIndex.load(file, dim, state.deleted);
  const rawLoadMs = performance.now() - t;
  await hugePagesSettled();
  const rows = EF_SWEEP.map((ef) => sweep(`ef=${ef}`, queries, dim, truth, (q) => raw.searchSync(q, 10, { ef })));
  // End to end through the manager at the tuned ef: includes the change-log check before every search.
  const n = queries.length / dim;
  const times: number[] = [];
  let recall = 0;
  for (let q = 0; q < n; q++) {
    const query = queries.subarray(q * dim, (q + 1) * dim);
    const t0 = performance.now();
    const hits = await m.search(query, 10);
    times.push(performance.now() - t0);
    recall += recallAt10(hits, truth, q);
  }
  rows.push({ name: `manager.search (tuned ef=${h.ef})`, p50Ms: +percentile(times, 50).toFixed(3), p99Ms: +percentile(times, 99).toFixed(3), recallAt10: +(recall / n).toFixed(4) });
  const filtered = [];
  for (const format of ['png', 'webp']) {
    const ft: number[] = [];
    for (let q = 0; q < Math.min(50, n); q++) {
      const query = queries.subarray(q * dim, (q + 1) * dim);
      const t0 = performance.now();
      const hits = await m.search(query, 10, { filter: { formats: [format] } });
      ft.push(performance.now() - t0);
      if (hits.length !== 10) throw new Error(`filtered search returned ${hits.length}`);
    }
    const share = (lib.store.db.prepare('SELECT count(*) AS c FROM images WHERE format = ?').get(format) as { c: number }).c;
    filtered.push({ filter: `format=${format} (${share} images)`, p50Ms: +percentile(ft, 50).toFixed(2), p99Ms: +percentile(ft, 99).toFixed(2) });
  }
  await m.close();
  lib.close();
  const build = hnswlibBuild.kind === 'clipdex' ? `clipdex build, ${hnswlibBuild.features.join(' ') || 'no SIMD flags'}` : 'stock build';
  return { engine: `hnswlib-node (${build})`, openMs: Math.round(loadMs), rawReadIndexMs: Math.round(rawLoadMs), rssAfterOpenMb: rssLoaded - rssBefore, peakRssMb: peakRssMb(), fileBytes: statSync(file).size, queries: rows, filtered };
}

async function hnswOpen(dataDir: string) {
  const lib = openTestLibrary(dataDir);
  const t = performance.now();
  const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false, exactBelow: 1000 });
  const openMs = performance.now() - t;
  const engine = m.health().engine;
  await m.close();
  lib.close();
  return { build: hnswlibBuild.kind, engine, openMs: Math.round(openMs) };
}

/**
 * clipdex's hnswlib build moves a loaded graph onto huge pages in the background for a few seconds; the
 * sweep measures the steady state after it (the process's huge-page total stops growing), at most 30 s.
 */
async function hugePagesSettled(): Promise<void> {
  const huge = () => Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? 0);
  if (hnswlibBuild.kind !== 'clipdex' || process.platform !== 'linux') return;
  let last = -1;
  for (let i = 0; i < 60; i++) {
    const now = huge();
    if (now === last) return;
    last = now;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The slice of usearch's API this comparison uses; usearch is not a dependency (it needs Node ≥ 22). */
interface UsearchModule {
  Index: new (config: Record<string, unknown>) => {
    add(keys: BigUint64Array, vectors: Float32Array, threads: number): void;
    save(path: string): void;
    load(path: string): void;
    search(q: Float32Array, k: number, threads: number): { keys: BigUint64Array; distances: Float32Array };
  };
  MetricKind: { Cos: unknown };
  ScalarKind: { F32: unknown };
}

async function usearchRun(outDir: string, vectorsPath: string, queriesPath: string, truthPath: string, dim: number) {
  // A variable specifier keeps tsc from resolving a module that is installed only on demand.
  const specifier = 'usearch';
  let mod: UsearchModule;
  try {
    mod = (await import(specifier)) as UsearchModule;
  } catch {
    return { engine: 'usearch (not installed: `npm install --no-save usearch` on Node ≥ 22 to compare)', buildMs: 0, loadMs: 0, peakRssMb: 0, fileBytes: 0, queries: [] };
  }
  const { Index, MetricKind, ScalarKind } = mod;
  const vectors = readF32(vectorsPath);
  const queries = readF32(queriesPath);
  const truth = JSON.parse(readFileSync(truthPath, 'utf8')) as Truth;
  const n = vectors.length / dim;
  const config = (ef: number) => ({
    dimensions: dim,
    metric: MetricKind.Cos,
    quantization: ScalarKind.F32,
    connectivity: 16,
    expansion_add: 100,
    expansion_search: ef,
    multi: false,
  });
  const index = new Index(config(64));
  const keys = BigUint64Array.from({ length: n }, (_, i) => BigInt(i + 1));
  let t = performance.now();
  const threads = Number(process.env.BENCH_USEARCH_THREADS ?? 1);
  const batch = 10_000;
  for (let s = 0; s < n; s += batch) {
    const e = Math.min(n, s + batch);
    index.add(keys.subarray(s, e), vectors.subarray(s * dim, e * dim), threads);
    process.stderr.write(`  usearch add ${e}/${n}\n`);
  }
  const buildMs = performance.now() - t;
  const file = join(outDir, 'usearch.index');
  index.save(file);
  const rows = [];
  let loadMs = 0;
  for (const ef of EF_SWEEP) {
    const loaded = new Index(config(ef));
    t = performance.now();
    loaded.load(file);
    loadMs = performance.now() - t;
    rows.push(
      sweep(`ef=${ef}`, queries, dim, truth, (q) => {
        const r = loaded.search(q, 10, 1);
        return Array.from(r.keys, (k, i) => ({ id: Number(k), score: 1 - r.distances[i]! }));
      }),
    );
  }
  return { engine: `usearch (M=16, efC=100, ${threads} thread${threads === 1 ? '' : 's'})`, n, buildMs: Math.round(buildMs), loadMs: Math.round(loadMs), peakRssMb: peakRssMb(), fileBytes: statSync(file).size, queries: rows };
}

const [role, ...args] = process.argv.slice(2);
const dimArg = (i: number) => Number(args[i]);
const result =
  role === 'hnsw-build'
    ? await hnswBuild(args[0]!, args[1]!, dimArg(2))
    : role === 'hnsw-serve'
      ? await hnswServe(args[0]!, args[1]!, args[2]!, dimArg(3))
      : role === 'hnsw-open'
        ? await hnswOpen(args[0]!)
      : role === 'usearch'
        ? await usearchRun(args[0]!, args[1]!, args[2]!, args[3]!, dimArg(4))
        : null;
if (!result) {
  console.error(`unknown role ${role}`);
  process.exit(2);
}
console.log(`RESULT ${JSON.stringify(result)}`);
