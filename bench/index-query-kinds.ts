/**
 * npx tsx bench/index-query-kinds.ts — what makes a query hard for the HNSW graph (issue 19, step 1), on the benchmark's
 * clustered data (bench/index.ts's generator and seed) at BENCH_N (default 100 000): for each kind of query,
 * the geometry of its exact top 10 (top-1 cosine, top1 − top10, mean and spread of its cosines to the
 * collection, relative contrast) and recall@10 per ef through clipdex's hnswlib build.
 *
 * Kinds: the old tuner's midpoints of two random photos; the benchmark's queries (midpoints and near-
 * duplicates alternating); near-duplicates alone (a photo like one in the library); text-like queries built
 * on the published geometry of CLIP text→image search (a concept shared by a group of photos, without the
 * image cone's common direction, plus text-side detail unrelated to any photo, moved into a cone of its own
 * by a gap direction so the best image scores ~0.3); and perturbed members (a stored photo plus noise),
 * the candidate synthetic fallback. `gap on …` rows add only the gap offset to another kind, to check that
 * an offset orthogonal to the photos changes nothing for the graph.
 *
 * Env: BENCH_N (default 100000), BENCH_QUERIES (default 200), BENCH_KINDS_OUT (JSON path).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { HnswIndex } from '../src/index/hnsw-index.js';
import { EF_LADDER, recallAt, StreamingTopK } from '../src/index/recall.js';
import { perturbedMembers, queryGeometry, syntheticQueries, type QueryGeometry } from '../src/index/tuning-queries.js';
import { normalizeInto } from '../src/index/vector-index.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { clusteredVectors } from '../test/helpers/store-fixtures.js';

const DIM = 512;
const N = Number(process.env.BENCH_N ?? 100_000);
const Q = Number(process.env.BENCH_QUERIES ?? 200);
const OUT = resolve('bench/out');
const LADDER = EF_LADDER.filter((ef) => ef <= 512);

const dir = join(OUT, `index-${N}`);
mkdirSync(dir, { recursive: true });
const vectorsPath = join(dir, 'vectors.f32');
let vectors: Float32Array;
if (existsSync(vectorsPath)) {
  const buf = readFileSync(vectorsPath);
  vectors = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
} else {
  vectors = clusteredVectors(N, DIM, { seed: 2024 });
  writeFileSync(vectorsPath, Buffer.from(vectors.buffer, vectors.byteOffset, vectors.byteLength));
}
const row = (i: number) => vectors.subarray(i * DIM, (i + 1) * DIM);
const rand = seededRandom(77);
const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
const unitNoise = () => {
  const v = Float32Array.from({ length: DIM }, gauss);
  normalizeInto(v, v);
  return v;
};

const t = performance.now();
const graphPath = join(dir, 'kinds-graph.bin');
let index: HnswIndex;
if (existsSync(graphPath)) {
  index = await HnswIndex.load(graphPath, DIM, []);
} else {
  index = HnswIndex.create(DIM, N + 16);
  for (let i = 0; i < N; i++) index.add(i + 1, row(i));
  await index.write(graphPath);
}
console.log(`graph of ${N}: ${((performance.now() - t) / 1000).toFixed(1)} s (load average ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);

// The collection's mean direction (the image cone's axis) and a gap direction orthogonal to it.
const mean = new Float32Array(DIM);
for (let i = 0; i < N; i++) for (let j = 0; j < DIM; j++) mean[j]! += vectors[i * DIM + j]!;
normalizeInto(mean, mean);
const gap = unitNoise();
let gm = 0;
for (let j = 0; j < DIM; j++) gm += gap[j]! * mean[j]!;
for (let j = 0; j < DIM; j++) gap[j]! -= gm * mean[j]!;
normalizeInto(gap, gap);

async function exactTop(queries: Float32Array, k: number): Promise<StreamingTopK> {
  const top = new StreamingTopK(queries, DIM, k);
  const chunk = 50_000;
  const ids = new Uint32Array(chunk);
  for (let s = 0; s < N; s += chunk) {
    const e = Math.min(N, s + chunk);
    for (let i = s; i < e; i++) ids[i - s] = i + 1;
    await top.add(vectors.subarray(s * DIM, e * DIM), ids, e - s);
  }
  return top;
}

const pick = () => Math.floor(rand() * N);
const build = (f: (q: number, out: Float32Array) => void) => {
  const out = new Float32Array(Q * DIM);
  const tmp = new Float32Array(DIM);
  for (let q = 0; q < Q; q++) {
    f(q, tmp);
    normalizeInto(tmp, out, q * DIM);
  }
  return out;
};

const midpoints = build((_, tmp) => {
  const a = row(pick());
  const b = row(pick());
  for (let j = 0; j < DIM; j++) tmp[j] = a[j]! + b[j]!;
});
// bench/index.ts's queries, same formula and indices.
const benchQueries = build((q, tmp) => {
  const a = (q * 7919 + 3) % N;
  const b = (q * 104729 + 11) % N;
  for (let j = 0; j < DIM; j++) tmp[j] = q % 2 === 0 ? vectors[a * DIM + j]! + vectors[b * DIM + j]! : vectors[a * DIM + j]! + 0.04 * Math.sin(q * 31 + j * 7);
});
const nearDuplicates = build((q, tmp) => {
  const a = row(pick());
  for (let j = 0; j < DIM; j++) tmp[j] = a[j]! + 0.04 * Math.sin(q * 31 + j * 7);
});

/** Concepts: the mean of a random photo's 20 nearest photos, i.e. something a group of photos shares. */
const seeds = build((_, tmp) => tmp.set(row(pick())));
const seedTop = await exactTop(seeds, 20);
const concepts = build((q, tmp) => {
  tmp.fill(0);
  for (const id of seedTop.truth(q).ids) {
    const v = row(id - 1);
    for (let j = 0; j < DIM; j++) tmp[j]! += v[j]!;
  }
});

/** A text-like query: the concept without the image cone's axis, plus `detail` of text-only noise. */
function textLike(detail: number): Float32Array {
  return build((q, tmp) => {
    const c = concepts.subarray(q * DIM, (q + 1) * DIM);
    let cm = 0;
    for (let j = 0; j < DIM; j++) cm += c[j]! * mean[j]!;
    const noise = unitNoise();
    let rn = 0;
    for (let j = 0; j < DIM; j++) {
      tmp[j] = c[j]! - cm * mean[j]!;
      rn += tmp[j]! * tmp[j]!;
    }
    rn = Math.sqrt(rn);
    for (let j = 0; j < DIM; j++) tmp[j] = tmp[j]! / rn + detail * noise[j]!;
  });
}

/** Moves each query into a cone of its own: best photo cosine → ~0.3, as CLIP ViT-B/32 text queries score. */
async function withGap(queries: Float32Array): Promise<Float32Array> {
  const top = await exactTop(queries, 1);
  const out = new Float32Array(queries.length);
  for (let q = 0; q < Q; q++) {
    const s1 = top.truth(q).scores[0]!;
    const a = Math.min(1, 0.3 / Math.max(1e-6, s1));
    const c = Math.sqrt(Math.max(0, 1 - a * a));
    for (let j = 0; j < DIM; j++) out[q * DIM + j] = a * queries[q * DIM + j]! + c * gap[j]!;
    normalizeInto(out.subarray(q * DIM, (q + 1) * DIM), out, q * DIM);
  }
  return out;
}

const kinds: [string, Float32Array][] = [
  ['midpoints (old tuner)', midpoints],
  ['bench queries (mid + near-dup)', benchQueries],
  ['near-duplicates', nearDuplicates],
  ['concept, image cone', concepts],
  ['text-like, detail 0', await withGap(textLike(0))],
  ['text-like, detail 0.5', await withGap(textLike(0.5))],
  ['text-like, detail 1', await withGap(textLike(1))],
  ['text-like, detail 1.5', await withGap(textLike(1.5))],
  ['gap on near-duplicates', await withGap(nearDuplicates)],
  ['gap on midpoints', await withGap(midpoints)],
];
const allIds = Array.from({ length: N }, (_, i) => i);
for (const level of [0.5, 1, 1.5]) kinds.push([`perturbed members, noise ${level}`, perturbedMembers(Q, DIM, allIds, row, level, 5)]);
kinds.push(['synthetic fallback (tuner: half midpoints, half photo + noise 0.65)', syntheticQueries(Q, DIM, allIds, row, 100)]);
if (process.env.BENCH_KINDS_ONLY) kinds.splice(0, kinds.length, ...kinds.filter(([k]) => process.env.BENCH_KINDS_ONLY!.split(',').some((w) => k.includes(w))));

const sample = new Float32Array(4000 * DIM);
for (let s = 0; s < 4000; s++) sample.set(row(Math.floor((s * 2654435761) % N)), s * DIM);

const results: { kind: string; geometry: QueryGeometry; recall: { ef: number; recall: number }[] }[] = [];
for (const [kind, queries] of kinds) {
  const truth = await exactTop(queries, 10);
  const geometry = queryGeometry(queries, DIM, (q) => truth.truth(q).scores, sample, 4000);
  const recall = LADDER.map((ef) => {
    let sum = 0;
    for (let q = 0; q < Q; q++) sum += recallAt(index.searchSync(queries.subarray(q * DIM, (q + 1) * DIM), 10, { ef }), truth.truth(q), 10);
    return { ef, recall: +(sum / Q).toFixed(4) };
  });
  results.push({ kind, geometry, recall });
  console.log(kind, JSON.stringify(geometry), recall.map((r) => `${r.ef}:${r.recall}`).join(' '));
}

const g = (x: number) => x.toFixed(3);
console.log(`\n| kind (${Q} queries, ${N.toLocaleString('en')} × ${DIM}) | top-1 | top1 − top10 | mean ± sd to collection | z(top-1) | (top1−top10)/sd | rel. contrast | ${LADDER.map((ef) => `ef ${ef}`).join(' | ')} |`);
console.log(`|---|---|---|---|---|---|---|${LADDER.map(() => '---').join('|')}|`);
for (const r of results) {
  const m = r.geometry;
  console.log(
    `| ${r.kind} | ${g(m.top1)} | ${g(m.spread)} | ${g(m.mean)} ± ${g(m.sd)} | ${m.z1.toFixed(1)} | ${m.spreadZ.toFixed(2)} | ${g(m.relativeContrast)} | ${r.recall.map((x) => x.recall.toFixed(3)).join(' | ')} |`,
  );
}
console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
writeFileSync(process.env.BENCH_KINDS_OUT ?? join(OUT, `index-kinds-${N}.json`), JSON.stringify(results, null, 2));
