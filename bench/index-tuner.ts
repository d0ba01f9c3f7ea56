/**
 * npx tsx bench/index-tuner.ts — the ef the product picks (issue 19) on the library and graph bench/index.ts
 * left in bench/out/index-<BENCH_N> (run that first; BENCH_N default 1 000 000), and what it costs:
 *
 *   as built      the ef in state.json (the build's own tuning: midpoints for graphs built before issue 19)
 *   synthetic     IndexManager.retune() with no logged queries: the synthetic fallback (tuning-queries.ts)
 *   logged        512 of the benchmark's kind of queries (other indices than its 200) fed through
 *                 IndexManager.noteQuery, as a user's searches are, then retune()
 *
 * Each is measured on the benchmark's own 200 queries (held out: none of them is logged), through
 * IndexManager.search as the product searches: recall@10 against bench/index.ts's exact truth and p50/p99,
 * the efs taking turns over BENCH_ROUNDS rounds (default 3) so a noisy moment hits all of them alike.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { keyDir } from '../src/index/index-files.js';
import { IndexManager } from '../src/index/index-manager.js';
import { tuningSummary } from '../src/index/library-index.js';
import { QUERY_LOG_CAPACITY, queryLogPath } from '../src/index/query-log.js';
import { normalizeInto } from '../src/index/vector-index.js';
import { openTestLibrary } from '../test/helpers/store-fixtures.js';

const DIM = 512;
const KEY = 'bench-clip';
const N = Number(process.env.BENCH_N ?? 1_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = resolve('bench/out', `index-${N}`);
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

if (!existsSync(join(dir, 'library', 'library.db'))) throw new Error(`no library in ${dir}: run BENCH_N=${N} npm run bench:index first`);
const f32 = (p: string) => {
  const b = readFileSync(p);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const vectors = f32(join(dir, 'vectors.f32'));
const heldOut = f32(join(dir, 'queries.f32'));
const truth = JSON.parse(readFileSync(join(dir, 'truth.json'), 'utf8')) as { ids: number[][]; scores: number[][] };
const H = heldOut.length / DIM;

// bench/index.ts's formula at indices it does not use (200 + q): half midpoints, half near-duplicates.
function benchQuery(q: number): Float32Array {
  const tmp = new Float32Array(DIM);
  const a = (q * 7919 + 3) % N;
  const b = (q * 104729 + 11) % N;
  for (let j = 0; j < DIM; j++) tmp[j] = q % 2 === 0 ? vectors[a * DIM + j]! + vectors[b * DIM + j]! : vectors[a * DIM + j]! + 0.04 * Math.sin(q * 31 + j * 7);
  const out = new Float32Array(DIM);
  normalizeInto(tmp, out);
  return out;
}

function recallAt10(hits: { id: number; score: number }[], q: number): number {
  const kth = truth.scores[q]![9]!;
  const seen = new Set<number>();
  let good = 0;
  for (const h of hits.slice(0, 10)) {
    if (!seen.has(h.id) && h.score >= kth - 1e-5) good++;
    seen.add(h.id);
  }
  return good / 10;
}

const percentile = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function hugePagesSettled(): Promise<void> {
  if (process.platform !== 'linux') return;
  const huge = () => Number(/AnonHugePages:\s+(\d+)/.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? 0);
  let last = -1;
  for (let i = 0; i < 60; i++) {
    const now = huge();
    if (now === last) return;
    last = now;
    await new Promise((r) => setTimeout(r, 500));
  }
}

const lib = openTestLibrary(join(dir, 'library'));
const logFile = queryLogPath(keyDir(lib.indexDir, KEY));
rmSync(logFile, { force: true });
let t = performance.now();
const m = await IndexManager.open({ store: lib.store, indexDir: lib.indexDir, modelKey: KEY, autoMerge: false, exactBelow: 1000 });
console.log(`open ${((performance.now() - t) / 1000).toFixed(1)} s; load average ${load()}`);
const picks: { name: string; ef: number; summary: string | null; tuneS: number | null; efTried: unknown }[] = [];
const stateEfTried = () => (JSON.parse(readFileSync(join(keyDir(lib.indexDir, KEY), 'state.json'), 'utf8')) as { efTried: unknown }).efTried;
picks.push({ name: 'as built', ef: m.health().ef!, summary: tuningSummary(m.health()), tuneS: null, efTried: stateEfTried() });

t = performance.now();
await m.retune();
picks.push({ name: 'synthetic fallback', ef: m.health().ef!, summary: tuningSummary(m.health()), tuneS: (performance.now() - t) / 1000, efTried: stateEfTried() });
console.log(JSON.stringify(picks.at(-1)), `load average ${load()}`);

for (let q = 0; q < QUERY_LOG_CAPACITY; q++) m.noteQuery(benchQuery(H + q));
t = performance.now();
await m.retune();
picks.push({ name: `logged (${QUERY_LOG_CAPACITY} bench queries)`, ef: m.health().ef!, summary: tuningSummary(m.health()), tuneS: (performance.now() - t) / 1000, efTried: stateEfTried() });
console.log(JSON.stringify(picks.at(-1)), `load average ${load()}`);

await hugePagesSettled();
const efs = [...new Set([...picks.map((p) => p.ef), 128, 160, 176, 192])].sort((a, b) => a - b);
const times = new Map<number, number[][]>(efs.map((ef) => [ef, []]));
const recall = new Map<number, number>();
const loads: string[] = [load()];
const productTimes: number[][] = [];
let productRecall = 0;
const productEf = m.health().ef;
for (let round = 0; round < ROUNDS; round++) {
  for (const ef of efs) {
    const ts: number[] = [];
    let sum = 0;
    for (let q = 0; q < H; q++) {
      const query = heldOut.subarray(q * DIM, (q + 1) * DIM);
      const t0 = performance.now();
      const hits = await m.searchBatch([query], 10, { ef }).then((r) => r[0]!);
      ts.push(performance.now() - t0);
      sum += recallAt10(hits, q);
    }
    times.get(ef)!.push(ts);
    recall.set(ef, sum / H);
  }
  // The product's own call at the ef it now holds (the logged tuning's).
  const ts: number[] = [];
  let sum = 0;
  for (let q = 0; q < H; q++) {
    const query = heldOut.subarray(q * DIM, (q + 1) * DIM);
    const t0 = performance.now();
    const hits = await m.search(query, 10);
    ts.push(performance.now() - t0);
    sum += recallAt10(hits, q);
  }
  productTimes.push(ts);
  productRecall = sum / H;
  loads.push(load());
}
await m.close();
lib.close();

console.log(`\n| ef | picked by | recall@10 on the 200 held-out benchmark queries | p50 per round | p99 (all rounds) |`);
console.log('|---|---|---|---|---|');
for (const ef of efs) {
  const by = picks.filter((p) => p.ef === ef).map((p) => p.name).join(', ') || '–';
  const rounds = times.get(ef)!;
  console.log(`| ${ef} | ${by} | ${recall.get(ef)!.toFixed(4)} | ${rounds.map((r) => `${percentile(r, 50).toFixed(3)}`).join(' / ')} ms | ${percentile(rounds.flat(), 99).toFixed(3)} ms |`);
}
console.log(
  `| ${productEf} | IndexManager.search as the product calls it | ${productRecall.toFixed(4)} | ${productTimes.map((r) => percentile(r, 50).toFixed(3)).join(' / ')} ms | ${percentile(productTimes.flat(), 99).toFixed(3)} ms |`,
);
for (const p of picks) console.log(`${p.name}: ef ${p.ef}; ${p.summary}${p.tuneS !== null ? `; retune took ${p.tuneS.toFixed(1)} s` : ''}; tried ${JSON.stringify(p.efTried)}`);
console.log(`load average before and after each round: ${loads.join(' | ')}`);
