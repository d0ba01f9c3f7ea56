/**
 * How the trainer makes its choices (the epoch to stop at, the WiSE-FT blend) without looking at the test
 * photos: on a validation part when it is large enough, else by k-fold cross-validation over the photos
 * it learns from.
 *
 * Why 30: a recall share measured on v photos has a standard error near √(0.25/v) — 9 points at 30, 11 at
 * 20, 22 at 5 — and the blends the choice weighs differ by a few points. Below 30 one handful of photos
 * decides (issue 17: blend 0 chosen on 5 validation photos, nothing learned); k-fold scores every photo
 * it learns from once, so the choice rests on all of them, at k + 1 fits' cost — small sets train in
 * seconds. Folds are keyed on content, like the split, so they too are the same in any library.
 */
import { assignFolds, type PairRef } from './pair-split.js';

/** A validation part with fewer photos than this is too small to choose on alone. */
export const MIN_HOLDOUT_PHOTOS = 30;
export const DEFAULT_FOLDS = 5;

export type SelectionMethod = 'holdout' | 'cross-validation';

export function selectionMethod(valPhotos: number, wanted: 'auto' | SelectionMethod = 'auto'): SelectionMethod {
  if (wanted !== 'auto') return wanted;
  return valPhotos >= MIN_HOLDOUT_PHOTOS ? 'holdout' : 'cross-validation';
}

/** k for this many photos: as asked, but every fold holds out at least 2 photos (and k ≥ 2). */
export function foldCount(photos: number, wanted: number = DEFAULT_FOLDS): number {
  return Math.max(2, Math.min(wanted, Math.floor(photos / 2)));
}

export interface Fold {
  /** Pair indices the fold learns from. */
  train: number[];
  /** Pair indices it holds out. */
  held: number[];
  /** Photo rows it holds out. */
  heldRows: number[];
}

/**
 * The k folds over these pairs (indices into `pairs`), by photo: `photoKey` and `caption` name a pair's
 * photo and caption in content terms, so the folds follow content, not rows.
 */
export function makeFolds(
  pairIndices: readonly number[],
  pairs: readonly (readonly [number, number])[],
  photoKey: (row: number) => string,
  caption: (row: number) => string,
  k: number,
  seed: number,
): Fold[] {
  const refs: PairRef[] = pairIndices.map((p) => ({ photo: photoKey(pairs[p]![0]), caption: caption(pairs[p]![1]) }));
  const foldOf = assignFolds(refs, k, seed);
  const folds: Fold[] = Array.from({ length: k }, () => ({ train: [], held: [], heldRows: [] }));
  pairIndices.forEach((p, i) => {
    const f = foldOf.get(refs[i]!.photo)!;
    folds.forEach((fold, j) => (j === f ? fold.held : fold.train).push(p));
  });
  for (const fold of folds) fold.heldRows = [...new Set(fold.held.map((p) => pairs[p]![0]))].sort((a, b) => a - b);
  return folds;
}
