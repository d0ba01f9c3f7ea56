/**
 * The queries ef is tuned on when not enough real ones have been logged yet, and the measures that say how
 * hard a query is for the graph (bench/index-query-kinds.ts; BENCHMARKS.md, "1M × 512").
 *
 * What was measured at 100k (issue 19; BENCHMARKS.md, "Which queries ef is tuned on"): midpoints of two
 * random photos, the old tuner's queries, need the most ef of the in-collection kinds (their true top 10 is
 * split between two unrelated neighbourhoods); photo-like queries (a stored photo plus noise) the least.
 * Text-like queries built on CLIP's published geometry (a concept shared by a group of photos, off the
 * image cone, best photo ~0.3, relative contrast 1.2 against 2.3 for the benchmark's queries) need as
 * much ef as the benchmark's half-and-half mix of the two, and less than midpoints alone; moving a
 * photo-like query into a text cone by a random offset makes it harder still (more than midpoints). So a
 * low best score or a low relative contrast alone does not say how hard a query is for the graph.
 */
import { normalizeInto } from './vector-index.js';
import { seededRandom } from '../util/seeded-random.js';

/** Noise (relative to a unit photo vector) of the photo-like half of the synthetic fallback. */
export const SYNTHETIC_NOISE = 0.65;

/**
 * The synthetic fallback: half midpoints of two random members (a query between two groups of photos,
 * the hardest kind measured), half random members plus noise of norm SYNTHETIC_NOISE (a photo like one in
 * the library). Measured at 100k (bench/index-query-kinds.ts), their mix needs the same ef as text-like
 * queries built on CLIP's published geometry (best photo ~0.3, low contrast), where midpoints alone need
 * 1.7× that ef and photo-like queries alone half of it.
 */
export function syntheticQueries(
  count: number,
  dim: number,
  ids: readonly number[],
  vectorOf: (id: number) => ArrayLike<number> | undefined,
  seed: number,
): Float32Array {
  const out = new Float32Array(ids.length > 0 ? count * dim : 0);
  if (ids.length === 0) return out;
  const r = seededRandom(seed);
  const pick = () => ids[Math.floor(r() * ids.length)]!;
  const photoLike = perturbedMembers(Math.ceil(count / 2), dim, ids, vectorOf, SYNTHETIC_NOISE, seed + 1);
  const tmp = new Float32Array(dim);
  for (let q = 0; q < count; q++) {
    if (q % 2 === 1) {
      out.set(photoLike.subarray(((q - 1) / 2) * dim, ((q + 1) / 2) * dim), q * dim);
      continue;
    }
    const a = vectorOf(pick());
    const b = vectorOf(pick());
    const na = a ? norm(a) : 0;
    const nb = b ? norm(b) : 0;
    for (let j = 0; j < dim; j++) tmp[j] = (a && na > 0 ? a[j]! / na : 0) + (b && nb > 0 ? b[j]! / nb : 0);
    normalizeInto(tmp, out, q * dim);
  }
  return out;
}

function norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let j = 0; j < v.length; j++) s += v[j]! * v[j]!;
  return Math.sqrt(s);
}

/**
 * `count` queries, each a random member plus isotropic Gaussian noise of norm `level`, normalised. Random
 * members are drawn with replacement; the noise is fresh per query, so no query equals a stored vector.
 */
export function perturbedMembers(
  count: number,
  dim: number,
  ids: readonly number[],
  vectorOf: (id: number) => ArrayLike<number> | undefined,
  level: number,
  seed: number,
): Float32Array {
  const out = new Float32Array(ids.length > 0 ? count * dim : 0);
  if (ids.length === 0) return out;
  const r = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const tmp = new Float32Array(dim);
  const noise = new Float32Array(dim);
  for (let q = 0; q < count; q++) {
    const v = vectorOf(ids[Math.floor(r() * ids.length)]!);
    let nn = 0;
    for (let j = 0; j < dim; j++) {
      noise[j] = gauss();
      nn += noise[j]! * noise[j]!;
    }
    const vn = v ? norm(v) : 0;
    const vs = vn > 0 ? 1 / vn : 0;
    const ns = level / Math.sqrt(nn || 1);
    for (let j = 0; j < dim; j++) tmp[j] = (v ? v[j]! * vs : 0) + noise[j]! * ns;
    normalizeInto(tmp, out, q * dim);
  }
  return out;
}

/** Medians over a batch of queries: how peaked each query's exact top 10 is against the whole collection. */
export interface QueryGeometry {
  /** Cosine of the best match. */
  top1: number;
  /** top-1 cosine − top-10 cosine. */
  spread: number;
  /** Mean and standard deviation of the query's cosines to a sample of the collection. */
  mean: number;
  sd: number;
  /** (top1 − mean) / sd: how far the best match stands out, unchanged by scaling or offsetting every cosine. */
  z1: number;
  /** (top1 − top10) / sd. */
  spreadZ: number;
  /** Relative contrast (He et al. 2012): mean Euclidean distance / nearest distance, for unit vectors. */
  relativeContrast: number;
}

export function queryGeometry(
  queries: Float32Array,
  dim: number,
  topScores: (q: number) => readonly number[],
  sample: Float32Array,
  sampleCount: number,
): QueryGeometry {
  const n = queries.length / dim;
  const cols: Record<keyof QueryGeometry, number[]> = { top1: [], spread: [], mean: [], sd: [], z1: [], spreadZ: [], relativeContrast: [] };
  for (let q = 0; q < n; q++) {
    const query = queries.subarray(q * dim, (q + 1) * dim);
    let s1 = 0;
    let s2 = 0;
    let dist = 0;
    for (let i = 0; i < sampleCount; i++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += query[j]! * sample[i * dim + j]!;
      s1 += s;
      s2 += s * s;
      dist += Math.sqrt(Math.max(0, 2 - 2 * s));
    }
    const mean = s1 / sampleCount;
    const sd = Math.sqrt(Math.max(1e-12, s2 / sampleCount - mean * mean));
    const top = topScores(q);
    const t1 = top[0] ?? 0;
    const t10 = top[Math.min(9, top.length - 1)] ?? 0;
    cols.top1.push(t1);
    cols.spread.push(t1 - t10);
    cols.mean.push(mean);
    cols.sd.push(sd);
    cols.z1.push((t1 - mean) / sd);
    cols.spreadZ.push((t1 - t10) / sd);
    cols.relativeContrast.push(dist / sampleCount / Math.max(1e-6, Math.sqrt(Math.max(0, 2 - 2 * t1))));
  }
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? 0 : s[Math.floor(s.length / 2)]!;
  };
  return {
    top1: median(cols.top1),
    spread: median(cols.spread),
    mean: median(cols.mean),
    sd: median(cols.sd),
    z1: median(cols.z1),
    spreadZ: median(cols.spreadZ),
    relativeContrast: median(cols.relativeContrast),
  };
}
