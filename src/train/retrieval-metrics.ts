/**
 * Retrieval quality on labeled pairs, both ways, as CLIP papers report it: recall@1/5/10 and mean rank.
 * recall@k is the share of queries with at least one correct answer in the top k, so it never falls as k
 * grows; the rank is that of the best-placed correct answer. With many correct answers (28 photos of "a
 * photo of a fish") recall@5 says little about the rest of the top 5, so p5/p10 say how full of correct
 * answers the top k is.
 */
export interface DirectionMetrics {
  /** recall@k: share of queries with a correct answer in the top k. */
  r1: number;
  r5: number;
  r10: number;
  /**
   * precision@k out of what could be: correct answers in the top k over min(k, correct answers), averaged
   * over queries (1 when the top k is as full of correct answers as it can be). precision@1 is recall@1.
   */
  p5: number;
  p10: number;
  meanRank: number;
  queries: number;
}

export interface RetrievalMetrics {
  textToImage: DirectionMetrics;
  imageToText: DirectionMetrics;
}

/** One number to compare models by: the mean of the six recalls. */
export function meanRecall(m: RetrievalMetrics): number {
  const a = m.textToImage;
  const b = m.imageToText;
  return (a.r1 + a.r5 + a.r10 + b.r1 + b.r5 + b.r10) / 6;
}

/**
 * `sims` is the n×m matrix of cosines between n images and m texts; `pairs` are [image row, text row].
 * Text→image searches the n images for each text that has a pair; image→text searches all m texts for
 * each image.
 */
export function retrievalMetrics(sims: Float32Array, n: number, m: number, pairs: readonly (readonly [number, number])[]): RetrievalMetrics {
  return retrievalDetail(sims, n, m, pairs).metrics;
}

/** Per query, the rank of its best-placed correct answer: what a bootstrap over queries resamples. */
export interface QueryRanks {
  textToImage: number[];
  imageToText: number[];
}

/** The same metrics with each query's rank, in query order (texts by row, photos by row). */
export function retrievalDetail(sims: Float32Array, n: number, m: number, pairs: readonly (readonly [number, number])[]): { metrics: RetrievalMetrics; ranks: QueryRanks } {
  const imagesOf = new Map<number, Set<number>>();
  const textsOf = new Map<number, Set<number>>();
  for (const [i, t] of pairs) {
    (imagesOf.get(t) ?? imagesOf.set(t, new Set()).get(t)!).add(i);
    (textsOf.get(i) ?? textsOf.set(i, new Set()).get(i)!).add(t);
  }
  const column = (t: number) => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = sims[i * m + t]!;
    return out;
  };
  const byRow = <T>(map: Map<number, T>) => [...map].sort((a, b) => a[0] - b[0]);
  const t2i = direction(byRow(imagesOf).map(([t, positives]) => ({ scores: column(t), positives })));
  const i2t = direction(byRow(textsOf).map(([i, positives]) => ({ scores: sims.subarray(i * m, (i + 1) * m), positives })));
  return { metrics: { textToImage: t2i.metrics, imageToText: i2t.metrics }, ranks: { textToImage: t2i.ranks, imageToText: i2t.ranks } };
}

/** recall@1, @5 and @10 of one query, averaged: its share of the mean recall. */
export function queryRecall(rank: number): number {
  return ((rank <= 1 ? 1 : 0) + (rank <= 5 ? 1 : 0) + (rank <= 10 ? 1 : 0)) / 3;
}

function direction(queries: { scores: Float32Array; positives: Set<number> }[]): { metrics: DirectionMetrics; ranks: number[] } {
  const bestRanks: number[] = [];
  if (queries.length === 0) return { metrics: { r1: 0, r5: 0, r10: 0, p5: 0, p10: 0, meanRank: 0, queries: 0 }, ranks: bestRanks };
  let r1 = 0;
  let r5 = 0;
  let r10 = 0;
  let p5 = 0;
  let p10 = 0;
  let rankSum = 0;
  for (const { scores, positives } of queries) {
    // Rank of a correct answer = 1 + how many wrong answers score at least as high (ties count against
    // it) + how many correct ones score strictly higher. With few correct answers (a photo's caption),
    // counting is O(m) each; with many (a label's photos), sort the wrong ones once and binary-search.
    const pos = [...positives].map((i) => scores[i]!).sort((a, b) => b - a);
    let ranks: number[];
    if (pos.length <= 8) {
      ranks = pos.map((p, k) => {
        let atLeast = 0;
        for (let i = 0; i < scores.length; i++) if (scores[i]! >= p) atLeast++;
        return 1 + k + atLeast - pos.filter((x) => x >= p).length;
      });
    } else {
      const negatives = Float32Array.from(scores.filter((_, i) => !positives.has(i))).sort().reverse();
      ranks = pos.map((p, k) => 1 + k + countAtLeast(negatives, p));
    }
    // ranks[0] is the best-placed correct answer: a hit at k is that one being within the top k.
    const best = ranks[0]!;
    bestRanks.push(best);
    const precisionAt = (k: number) => ranks.filter((r) => r <= k).length / Math.min(k, positives.size);
    if (best <= 1) r1++;
    if (best <= 5) r5++;
    if (best <= 10) r10++;
    p5 += precisionAt(5);
    p10 += precisionAt(10);
    rankSum += best;
  }
  const q = queries.length;
  const round = (x: number) => Math.round(x * 10_000) / 10_000;
  return { metrics: { r1: round(r1 / q), r5: round(r5 / q), r10: round(r10 / q), p5: round(p5 / q), p10: round(p10 / q), meanRank: round(rankSum / q), queries: q }, ranks: bestRanks };
}

/** How many of `desc` (sorted high to low) are ≥ x: binary search. */
function countAtLeast(desc: Float32Array, x: number): number {
  let lo = 0;
  let hi = desc.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (desc[mid]! >= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
