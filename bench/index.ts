/**
 * npm run bench:index — vector index at 100k (and 1M with BENCH_1M=1) clustered 512-d vectors:
 * build time, peak RSS, file size, load time, query p50/p99 and recall@10 at several ef, exact search
 * latency; hnswlib-node (through clipdex's own path: SQLite → build worker → tuned ef) side by side with
 * usearch in the same run when it is installed (`npm install --no-save usearch`, Node ≥ 22: not a dependency). Each engine runs in its own process so peak RSS is its own.
 *
 * Env: BENCH_1M=1 adds the 1M run (minutes; competes for the cores); BENCH_N=<n> runs one custom size
 * (a quick smoke run: BENCH_N=5000); BENCH_USEARCH_THREADS (default 1, like hnswlib's single build thread);
 * BENCH_REUSE=1 re-measures serving on the last build; BENCH_SKIP_USEARCH=1 leaves usearch out;
 * BENCH_SKIP_STOCK=1 leaves out serving with hnswlib-node's stock build (clipdex's own is always measured).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StreamingTopK } from '../src/index/recall.js';
import { topKInnerProduct } from '../src/index/topk-kernel.js';
import { normalizeInto } from '../src/index/vector-index.js';
import { clusteredVectors } from '../test/helpers/store-fixtures.js';

const DIM = 512;
const QUERIES = 200;
const OUT = resolve('bench/out');
const sizes = process.env.BENCH_N ? [Number(process.env.BENCH_N)] : [100_000, ...(process.env.BENCH_1M === '1' ? [1_000_000] : [])];

const FAISS_NOTE = 'faiss-node: not measured; it does not install offline (its install script clones and builds faiss from GitHub).';

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function child(role: string, args: string[], env: Record<string, string> = {}): Record<string, unknown> {
  const started = performance.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', resolve('bench/index-engine.ts'), role, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.status !== 0 || !line) throw new Error(`${role} failed (status ${r.status}): ${r.stdout.slice(-2000)}`);
  console.log(`  ${role} finished in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return JSON.parse(line.slice('RESULT '.length)) as Record<string, unknown>;
}

async function runSize(n: number) {
  const dir = join(OUT, `index-${n}`);
  mkdirSync(dir, { recursive: true });
  const vectorsPath = join(dir, 'vectors.f32');
  let vectors: Float32Array;
  if (existsSync(vectorsPath)) {
    const buf = readFileSync(vectorsPath);
    vectors = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  } else {
    const t = performance.now();
    vectors = clusteredVectors(n, DIM, { seed: 2024 });
    writeFileSync(vectorsPath, Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength));
    console.log(`generated ${n}×${DIM} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  // Mean cosine between random pairs: how "CLIP-like" the data is (real CLIP photo embeddings: ~0.5).
  let mc = 0;
  for (let i = 0; i < 1000; i++) {
    const a = (i * 7919) % n;
    const b = (i * 104729 + 1) % n;
    let s = 0;
    for (let j = 0; j < DIM; j++) s += vectors[a * DIM + j]! * vectors[b * DIM + j]!;
    mc += s / 1000;
  }

  // Queries: half midpoints of two stored vectors, half stored vectors plus noise; normalised.
  const queries = new Float32Array(QUERIES * DIM);
  const tmp = new Float32Array(DIM);
  for (let q = 0; q < QUERIES; q++) {
    const a = (q * 7919 + 3) % n;
    const b = (q * 104729 + 11) % n;
    for (let j = 0; j < DIM; j++) {
      tmp[j] = q % 2 === 0 ? vectors[a * DIM + j]! + vectors[b * DIM + j]! : vectors[a * DIM + j]! + 0.04 * Math.sin(q * 31 + j * 7);
    }
    normalizeInto(tmp, queries, q * DIM);
  }
  const queriesPath = join(dir, 'queries.f32');
  writeFileSync(queriesPath, Buffer.from(queries.buffer));

  // Ground truth and exact-search latency (ORT Gemm+TopK, the engine clipdex uses for exact search).
  const truthTop = new StreamingTopK(queries, DIM, 10);
  const chunk = 50_000;
  const ids = new Uint32Array(chunk);
  for (let s = 0; s < n; s += chunk) {
    const e = Math.min(n, s + chunk);
    for (let i = s; i < e; i++) ids[i - s] = i + 1;
    await truthTop.add(vectors.subarray(s * DIM, e * DIM), ids, e - s);
  }
  const truth = { ids: [] as number[][], scores: [] as number[][] };
  for (let q = 0; q < QUERIES; q++) {
    truth.ids.push(truthTop.truth(q).ids);
    truth.scores.push(truthTop.truth(q).scores);
  }
  const truthPath = join(dir, 'truth.json');
  writeFileSync(truthPath, JSON.stringify(truth));
  const single: number[] = [];
  for (let q = 0; q < 30; q++) {
    const t = performance.now();
    await topKInnerProduct(vectors, n, DIM, queries.subarray(q * DIM, (q + 1) * DIM), 10);
    if (q >= 5) single.push(performance.now() - t);
  }
  const t = performance.now();
  await topKInnerProduct(vectors, n, DIM, queries.subarray(0, 50 * DIM), 10);
  const batchedPerQuery = (performance.now() - t) / 50;
  const exact = { p50Ms: +percentile(single, 50).toFixed(2), p99Ms: +percentile(single, 99).toFixed(2), batched50PerQueryMs: +batchedPerQuery.toFixed(2) };
  console.log(`n=${n}: mean cosine ${mc.toFixed(3)}; exact search (ORT) ${JSON.stringify(exact)}`);

  const libDir = join(dir, 'library');
  // BENCH_REUSE=1: measure serving again on the library and graph of the last run (a 1M build is ~30 min).
  const reuse = process.env.BENCH_REUSE === '1' && existsSync(join(libDir, 'library.db')) && existsSync(join(dir, 'build.json'));
  let hnswBuild: Record<string, unknown>;
  if (reuse) {
    hnswBuild = JSON.parse(readFileSync(join(dir, 'build.json'), 'utf8')) as Record<string, unknown>;
    console.log(`  reusing the library built earlier: ${JSON.stringify(hnswBuild)}`);
  } else {
    rmSync(libDir, { recursive: true, force: true });
    hnswBuild = child('hnsw-build', [libDir, vectorsPath, String(DIM)]);
    writeFileSync(join(dir, 'build.json'), JSON.stringify(hnswBuild));
    console.log(`  ${JSON.stringify(hnswBuild)}`);
  }
  // hnswlib-node's stock build on the same graph first (BENCH_SKIP_STOCK=1 leaves it out), then clipdex's.
  const hnswServeStock = process.env.BENCH_SKIP_STOCK === '1' ? null : child('hnsw-serve', [libDir, queriesPath, truthPath, String(DIM)], { CLIPDEX_HNSWLIB: 'stock' });
  if (hnswServeStock) console.log(`  ${JSON.stringify(hnswServeStock)}`);
  const hnswServe = child('hnsw-serve', [libDir, queriesPath, truthPath, String(DIM)]);
  console.log(`  ${JSON.stringify(hnswServe)}`);
  // Opening as a server start does, in fresh processes, the two builds taking turns (BENCH_OPEN_ROUNDS).
  const opens: { clipdex: number[]; stock: number[] } = { clipdex: [], stock: [] };
  for (let round = 0; round < Number(process.env.BENCH_OPEN_ROUNDS ?? 3); round++) {
    for (const build of ['stock', 'clipdex'] as const) {
      if (build === 'stock' && process.env.BENCH_SKIP_STOCK === '1') continue;
      const o = child('hnsw-open', [libDir], build === 'stock' ? { CLIPDEX_HNSWLIB: 'stock' } : {}) as { openMs: number; engine: string };
      if (o.engine !== 'hnsw') throw new Error(`the saved graph was not loaded (${o.engine})`);
      opens[build].push(o.openMs);
    }
  }
  console.log(`  open (ms): ${JSON.stringify(opens)}`);
  const usearch = process.env.BENCH_SKIP_USEARCH === '1' ? { engine: 'usearch (skipped: BENCH_SKIP_USEARCH=1)', buildMs: 0, loadMs: 0, peakRssMb: 0, fileBytes: 0, queries: [] } : child('usearch', [dir, vectorsPath, queriesPath, truthPath, String(DIM)]);
  console.log(`  ${JSON.stringify(usearch)}`);
  return { n, dim: DIM, meanCosine: +mc.toFixed(3), queries: QUERIES, exact, hnswBuild, hnswServe, hnswServeStock, opens, usearch, faiss: FAISS_NOTE };
}

function table(r: Awaited<ReturnType<typeof runSize>>): string {
  const hb = r.hnswBuild as Record<string, number>;
  type Serve = { engine: string; openMs: number; rawReadIndexMs: number; rssAfterOpenMb: number; queries: { name: string; p50Ms: number; p99Ms: number; recallAt10: number }[] };
  const stock = r.hnswServeStock as Serve | null;
  const hs = r.hnswServe as { engine: string; openMs: number; rawReadIndexMs: number; rssAfterOpenMb: number; peakRssMb: number; fileBytes: number; queries: { name: string; p50Ms: number; p99Ms: number; recallAt10: number }[]; filtered: { filter: string; p50Ms: number; p99Ms: number }[] };
  const us = r.usearch as { engine: string; buildMs: number; loadMs: number; peakRssMb: number; fileBytes: number; queries: { name: string; p50Ms: number; p99Ms: number; recallAt10: number }[] };
  const mb = (b: number) => (b / 1e6).toFixed(0);
  const lines = [
    `### ${r.n.toLocaleString('en')} × ${r.dim} (clustered, mean cosine ${r.meanCosine}), ${r.queries} queries, k=10`,
    '',
    '| engine | build | peak RSS (build) | file | load | RSS after load |',
    '|---|---|---|---|---|---|',
    `| ${hs.engine} M=16 efC=100 (SQLite → worker, incl. ef tuning) | ${(hb.buildWallMs! / 1000).toFixed(1)} s | ${hb.peakRssMb} MB | ${mb(hs.fileBytes)} MB | ${hs.openMs} ms open (CRC + load + replay); ${hs.rawReadIndexMs} ms readIndex | +${hs.rssAfterOpenMb} MB |`,
    ...(stock ? [`| ${stock.engine}, same graph | – | – | – | ${stock.openMs} ms open; ${stock.rawReadIndexMs} ms readIndex | +${stock.rssAfterOpenMb} MB |`] : []),
    `| ${us.engine} | ${(us.buildMs / 1000).toFixed(1)} s | ${us.peakRssMb} MB | ${mb(us.fileBytes)} MB | ${us.loadMs} ms | – |`,
    `| exact (ORT Gemm+TopK) | – | – | – | – | – |`,
    '',
    '| engine | ef | p50 | p99 | recall@10 |',
    '|---|---|---|---|---|',
    ...hs.queries.map((q) => `| hnswlib-node, clipdex build | ${q.name} | ${q.p50Ms} ms | ${q.p99Ms} ms | ${q.recallAt10} |`),
    ...(stock?.queries ?? []).map((q) => `| hnswlib-node, stock build | ${q.name} | ${q.p50Ms} ms | ${q.p99Ms} ms | ${q.recallAt10} |`),
    ...us.queries.map((q) => `| usearch | ${q.name} | ${q.p50Ms} ms | ${q.p99Ms} ms | ${q.recallAt10} |`),
    `| exact (ORT) | – | ${r.exact.p50Ms} ms | ${r.exact.p99Ms} ms | 1 (batched ×50: ${r.exact.batched50PerQueryMs} ms/query) |`,
    '',
    `Opening the saved graph in a fresh process (IndexManager.open: header check, checksum and readIndex, change-log replay), ` +
      `builds taking turns: clipdex build ${r.opens.clipdex.join(' / ')} ms; stock build ${r.opens.stock.join(' / ') || 'not measured'} ms.`,
    '',
    '| filtered search (manager, k=10) | p50 | p99 |',
    '|---|---|---|',
    ...hs.filtered.map((f) => `| ${f.filter} | ${f.p50Ms} ms | ${f.p99Ms} ms |`),
    '',
    `SQLite insert of ${r.n} images + embeddings: ${(hb.insertSqliteMs! / 1000).toFixed(1)} s. Build tuned ef=${hb.tunedEf} (sample recall ${hb.tunedRecall}).`,
    r.faiss,
  ];
  return lines.join('\n');
}

const results = [];
for (const n of sizes) {
  const r = await runSize(n);
  results.push(r);
  console.log(`\n${table(r)}\n`);
}
mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, 'index.json'), JSON.stringify(results, null, 2));
console.log(`results: ${join(OUT, 'index.json')}`);
