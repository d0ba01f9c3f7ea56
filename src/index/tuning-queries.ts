/**
 * The queries ef is tuned on when not enough real ones have been logged yet, and the measures that say how
 * hard a query is for the graph (bench/index-query-kinds.ts; BENCHMARKS.md, "1M × 512").
 *
 * What was measured (issue 19): the old tuner's midpoints of two random photos are the hardest kind there
 * is for a graph — their true top 10 is split between two unrelated neighbourhoods and greedy search finds
 * one of them. Neither a photo-like query nor a text-like one looks like that: both have one neighbourhood.
 * The CLIP modality gap (a text query's best photo scores ~0.3, image↔image neighbours ~0.8–0.95) is, to
 * first order, an offset orthogonal to the photos: it scales every cosine alike and changes neither the
 * ranking nor the path through the graph. What does make a text query harder is that the part of it that
 * points at photos is a concept shared by many of them plus detail no photo has — lower contrast between the
 * top hits and the rest. A stored photo plus isotropic noise has exactly that shape, and its noise level
 * sets how low the contrast goes.
 */
import { normalizeInto } from './vector-index.js';
import { seededRandom } from '../util/seeded-random.js';

/**
 * Noise (relative to a unit photo vector) of the synthetic fallback. At 1.0 the query's own photo scores
 * ~0.71 and its top 10 are spread like a text query's concept with as much text-only detail as concept
 * (the "text-like, detail 1" row of the measurement), which needed more ef than the benchmark's queries
 * and less than the midpoints.
 */
export const SYNTHETIC_NOISE = 1.0;

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
    let vn = 0;
    let nn = 0;
    for (let j = 0; j < dim; j++) {
      noise[j] = gauss();
      nn += noise[j]! * noise[j]!;
      vn += v ? v[j]! * v[j]! : 0;
    }
    const vs = vn > 0 ? 1 / Math.sqrt(vn) : 0;
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
