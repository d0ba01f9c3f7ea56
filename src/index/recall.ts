/**
 * Choosing ef by measurement: sample queries, exact top-k as ground truth (streamed through the ORT
 * kernel so a million vectors never sit in memory at once), then the smallest ef on a ladder whose
 * recall@k reaches the target.
 */
import { topKInnerProduct } from './topk-kernel.js';
import type { SearchHit } from './vector-index.js';

/**
 * Candidate ef values, smallest first; finer above 128, where each step costs ~0.1–0.2 ms at 1M (the 1M
 * benchmark's ef 160 and 192 straddle its target, hence 176).
 */
export const EF_LADDER = [16, 24, 32, 48, 64, 96, 128, 144, 160, 176, 192, 224, 256, 320, 384, 512, 768, 1024] as const;

/** Exact top-k of a fixed batch of queries over rows fed chunk by chunk. */
export class StreamingTopK {
  private readonly best: { ids: number[]; scores: number[] }[];

  constructor(
    /** Normalised queries, row-major. */
    readonly queries: Float32Array,
    readonly dim: number,
    readonly k: number,
  ) {
    this.best = Array.from({ length: queries.length / dim }, () => ({ ids: [], scores: [] }));
  }

  get queryCount(): number {
    return this.best.length;
  }

  /** Folds a chunk of normalised rows (row-major, `ids[i]` labels row i) into every query's top k. */
  async add(rows: Float32Array, ids: ArrayLike<number>, n: number): Promise<void> {
    if (n === 0 || this.best.length === 0) return;
    const tops = await topKInnerProduct(rows, n, this.dim, this.queries, this.k);
    tops.forEach((top, qi) => {
      const cur = this.best[qi]!;
      const merged: { id: number; score: number }[] = cur.ids.map((id, i) => ({ id, score: cur.scores[i]! }));
      for (let j = 0; j < top.rows.length; j++) merged.push({ id: ids[top.rows[j]!]!, score: top.scores[j]! });
      merged.sort((a, b) => b.score - a.score);
      merged.length = Math.min(merged.length, this.k);
      cur.ids = merged.map((m) => m.id);
      cur.scores = merged.map((m) => m.score);
    });
  }

  truth(qi: number): { ids: number[]; scores: number[] } {
    return this.best[qi]!;
  }
}

/**
 * recall@k of one answer against the exact top k, tie-aware: identical files share one embedding, so
 * several ids can tie at the k-th score and any of them is a correct answer.
 */
export function recallAt(hits: readonly SearchHit[], truth: { ids: number[]; scores: number[] }, k: number): number {
  const want = Math.min(k, truth.ids.length);
  if (want === 0) return 1;
  const kth = truth.scores[want - 1]!;
  const seen = new Set<number>();
  let good = 0;
  for (const h of hits.slice(0, want)) {
    if (seen.has(h.id)) continue;
    seen.add(h.id);
    if (h.score >= kth - 1e-5) good++;
  }
  return good / want;
}

export interface EfChoice {
  ef: number;
  recall: number;
  /** Every ef tried with its recall, for the build log and the benchmark. */
  tried: { ef: number; recall: number }[];
}

/**
 * The smallest ef on the ladder whose mean recall reaches `target + margin`. The margin covers sampling
 * error: given a number, `margin` (200 queries × 10 results give a standard error of ~0.003 at 0.98);
 * given each query's recall, one-sided 95% of the measured standard error (at least MIN_MARGIN), so 512
 * logged queries need less margin than 200. Falls back to the best seen.
 */
export function chooseEf(
  measure: (ef: number) => number | readonly number[],
  target: number,
  margin = 0.005,
  ladder: readonly number[] = EF_LADDER,
): EfChoice {
  const tried: { ef: number; recall: number }[] = [];
  for (const ef of ladder) {
    const m = measure(ef);
    const { recall, need } = typeof m === 'number' ? { recall: m, need: margin } : withStandardError(m);
    tried.push({ ef, recall });
    if (recall >= target + need) return { ef, recall, tried };
  }
  const best = tried.reduce((a, b) => (b.recall > a.recall ? b : a));
  return { ef: best.ef, recall: best.recall, tried };
}

const MIN_MARGIN = 0.002;

function withStandardError(perQuery: readonly number[]): { recall: number; need: number } {
  const n = perQuery.length;
  if (n === 0) return { recall: 1, need: MIN_MARGIN };
  const mean = perQuery.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? perQuery.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  return { recall: mean, need: Math.max(MIN_MARGIN, (1.645 * Math.sqrt(variance)) / Math.sqrt(n)) };
}
