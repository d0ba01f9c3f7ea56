/**
 * Retrieval quality on labeled pairs, both ways, as CLIP papers report it: recall@1/5/10 and mean rank.
 * With several correct answers (28 photos of "a photo of a fish"), recall@k is the share of the top k that
 * is correct, out of what could be (min(k, positives)); the rank is that of the best-placed correct answer.
 */
export interface DirectionMetrics {
  r1: number;
  r5: number;
  r10: number;
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
 * `images` (n×d) and `texts` (m×d) are normalised embeddings; `pairs` are [image row, text row]. Text→image
 * searches the n images for each text that has a pair; image→text searches all m texts for each image.
 */
export function retrievalMetrics(images: Float32Array, n: number, texts: Float32Array, m: number, dim: number, pairs: readonly (readonly [number, number])[]): RetrievalMetrics {
  const sims = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += images[i * dim + k]! * texts[j * dim + k]!;
      sims[i * m + j] = s;
    }
  }
  const imagesOf = new Map<number, Set<number>>();
  const textsOf = new Map<number, Set<number>>();
  for (const [i, t] of pairs) {
    (imagesOf.get(t) ?? imagesOf.set(t, new Set()).get(t)!).add(i);
    (textsOf.get(i) ?? textsOf.set(i, new Set()).get(i)!).add(t);
  }
  const t2i = direction([...imagesOf].map(([t, positives]) => ({ scores: Array.from({ length: n }, (_, i) => sims[i * m + t]!), positives })));
  const i2t = direction([...textsOf].map(([i, positives]) => ({ scores: Array.from(sims.subarray(i * m, (i + 1) * m)), positives })));
  return { textToImage: t2i, imageToText: i2t };
}

function direction(queries: { scores: number[]; positives: Set<number> }[]): DirectionMetrics {
  if (queries.length === 0) return { r1: 0, r5: 0, r10: 0, meanRank: 0, queries: 0 };
  let r1 = 0;
  let r5 = 0;
  let r10 = 0;
  let rankSum = 0;
  for (const { scores, positives } of queries) {
    // Ties are broken against the query (a correct answer tied with a wrong one does not count as ahead).
    const order = scores.map((s, i) => ({ s, i, pos: positives.has(i) })).sort((a, b) => b.s - a.s || Number(a.pos) - Number(b.pos));
    const recallAt = (k: number) => order.slice(0, k).filter((o) => o.pos).length / Math.min(k, positives.size);
    r1 += recallAt(1);
    r5 += recallAt(5);
    r10 += recallAt(10);
    rankSum += order.findIndex((o) => o.pos) + 1;
  }
  const q = queries.length;
  const round = (x: number) => Math.round(x * 10_000) / 10_000;
  return { r1: round(r1 / q), r5: round(r5 / q), r10: round(r10 / q), meanRank: round(rankSum / q), queries: q };
}
