/**
 * Batches for contrastive training. A batch is a random set of labeled pairs; its rows are the distinct
 * photos in it and its columns the distinct captions, and every (photo, caption) that is a labeled pair
 * anywhere is a positive. So 28 fish photos captioned "a photo of a fish" are one column with 28
 * positives, not 28 columns that the loss would push apart ('multi-positive'). 'pair-only' is the naive
 * CLIP batch (pair k ↔ pair k, duplicates treated as negatives), kept to show the difference.
 */
import type { StepInput } from './contrastive-kernel.js';

export type TargetMode = 'multi-positive' | 'pair-only';

export interface EmbeddedPairs {
  dim: number;
  /** One row per distinct photo. */
  images: Float32Array;
  /** One row per distinct caption. */
  texts: Float32Array;
  /** [photo row, caption row] */
  pairs: readonly (readonly [number, number])[];
}

/** photo row → its caption rows: the pair relation positives are read from. */
export type PairRelation = ReadonlyMap<number, readonly number[]>;

export function pairRelation(pairs: readonly (readonly [number, number])[]): PairRelation {
  const captionsOf = new Map<number, number[]>();
  for (const [i, c] of pairs) {
    const list = captionsOf.get(i);
    if (list) list.push(c);
    else captionsOf.set(i, [c]);
  }
  return captionsOf;
}

/** The batch for these pair indices. `related` is the pair relation used for positives (all known pairs). */
export function makeBatch(data: EmbeddedPairs, pairIndices: readonly number[], related: PairRelation, mode: TargetMode): StepInput {
  const d = data.dim;
  if (mode === 'pair-only') {
    const n = pairIndices.length;
    const images = new Float32Array(n * d);
    const texts = new Float32Array(n * d);
    const positives = new Float32Array(n * n);
    pairIndices.forEach((p, k) => {
      const [i, c] = data.pairs[p]!;
      images.set(data.images.subarray(i * d, (i + 1) * d), k * d);
      texts.set(data.texts.subarray(c * d, (c + 1) * d), k * d);
      positives[k * n + k] = 1;
    });
    return { images, texts, positives, n, m: n };
  }
  const imageRows: number[] = [];
  const captionRows: number[] = [];
  const imageAt = new Map<number, number>();
  const captionAt = new Map<number, number>();
  for (const p of pairIndices) {
    const [i, c] = data.pairs[p]!;
    if (!imageAt.has(i)) imageAt.set(i, imageRows.push(i) - 1);
    if (!captionAt.has(c)) captionAt.set(c, captionRows.push(c) - 1);
  }
  const n = imageRows.length;
  const m = captionRows.length;
  const images = new Float32Array(n * d);
  const texts = new Float32Array(m * d);
  imageRows.forEach((i, k) => images.set(data.images.subarray(i * d, (i + 1) * d), k * d));
  captionRows.forEach((c, k) => texts.set(data.texts.subarray(c * d, (c + 1) * d), k * d));
  const positives = new Float32Array(n * m);
  for (let a = 0; a < n; a++) {
    for (const c of related.get(imageRows[a]!) ?? []) {
      const b = captionAt.get(c);
      if (b !== undefined) positives[a * m + b] = 1;
    }
  }
  return { images, texts, positives, n, m };
}

/** Fisher–Yates with the caller's seeded generator, cut into batches of at most `size` (the last one merged if tiny). */
export function shuffledBatches(count: number, size: number, rand: () => number): number[][] {
  const order = Array.from({ length: count }, (_, i) => i);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return chunks(order, size);
}

/** Fixed batches over all of a split, in order: validation loss comparable from epoch to epoch. */
export function fixedBatches(count: number, size: number): number[][] {
  return chunks(Array.from({ length: count }, (_, i) => i), size);
}

function chunks(order: number[], size: number): number[][] {
  const batches: number[][] = [];
  for (let s = 0; s < order.length; s += size) batches.push(order.slice(s, s + size));
  // A batch of one pair has no negatives and teaches nothing; fold a short tail into the previous batch.
  if (batches.length > 1 && batches[batches.length - 1]!.length < Math.min(8, size / 4)) {
    const tail = batches.pop()!;
    batches[batches.length - 1]!.push(...tail);
  }
  return batches;
}
