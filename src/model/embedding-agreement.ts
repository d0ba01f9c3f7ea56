/**
 * How closely two versions of a model (fp32 and its int8 copy) agree on the same inputs: the measures issue 19 sets
 * the bar with. Both sides' embeddings must be L2-normalised and in the same order.
 */

/** Mean over rows of the cosine between row i of `a` and row i of `b`. */
export function meanCosine(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  if (a.length !== b.length || a.length === 0) throw new Error(`meanCosine: ${a.length} and ${b.length} rows`);
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += dot(a[i]!, b[i]!);
  return sum / a.length;
}

/** The smallest of those cosines: one input a variant gets badly wrong shows here, not in the mean. */
export function minCosine(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let min = Infinity;
  for (let i = 0; i < a.length; i++) min = Math.min(min, dot(a[i]!, b[i]!));
  return min;
}

/** Indexes of the `k` images scoring highest against `text`, best first. */
export function topK(text: Float32Array, images: readonly Float32Array[], k: number): number[] {
  return images
    .map((img, i) => ({ i, s: dot(text, img) }))
    .sort((x, y) => y.s - x.s || x.i - y.i)
    .slice(0, k)
    .map((x) => x.i);
}

/**
 * Text → image retrieval agreement: for each phrase, the share of model A's top-k images that are also in model B's
 * top-k (each model ranking its own image embeddings with its own text embedding), averaged over phrases.
 */
export function topKOverlap(
  a: { texts: readonly Float32Array[]; images: readonly Float32Array[] },
  b: { texts: readonly Float32Array[]; images: readonly Float32Array[] },
  k: number,
): number {
  if (a.texts.length !== b.texts.length || a.images.length !== b.images.length) throw new Error('topKOverlap: the two sides differ in size');
  const kk = Math.min(k, a.images.length);
  let sum = 0;
  for (let t = 0; t < a.texts.length; t++) {
    const mine = new Set(topK(a.texts[t]!, a.images, kk));
    sum += topK(b.texts[t]!, b.images, kk).filter((i) => mine.has(i)).length / kk;
  }
  return sum / a.texts.length;
}

function dot(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i]! * y[i]!;
  return s;
}
