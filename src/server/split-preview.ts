import { z } from 'zod';
import type { Library } from '../library/library.js';
import { labeledPhotos } from '../train/labeled-photos.js';
import { DEFAULT_SHARES, planSplit, type PartCount } from '../train/split-plan.js';
import { seedText, testFractionText, valFractionText } from '../validation/train-params.js';

/** GET /api/training/split: the options that decide the split, as the training form sends them. */
export const splitPreviewQuery = z
  .object({
    valFraction: valFractionText.optional(),
    testFraction: testFractionText.optional(),
    seed: seedText.optional(),
  })
  .strict();

export interface SplitPreview {
  valFraction: number;
  testFraction: number;
  seed: number;
  /** How the epoch and the blend will be chosen: on the validation part, or by k-fold cross-validation. */
  selection: 'holdout' | 'cross-validation';
  /** k of the cross-validation; 1 with a validation part. */
  folds: number;
  /** Labels (photo/caption pairs) and distinct photos the version learns from (under cross-validation, every photo but the test ones). */
  train: PartCount;
  /** Held out for the choices only (0 under cross-validation). */
  val: PartCount;
  /** Held out from every choice, to judge the result. */
  test: PartCount;
  /** Labels the trainer would leave out: their photo is missing, offline, failed or not indexed (yet). */
  skipped: number;
}

/**
 * The split the next training run would use with these options, without storing it: the same labels the
 * trainer takes (labeledPhotos) through the same planSplit, keyed by content.
 */
export function previewSplit(library: Library, valFraction = DEFAULT_SHARES.valFraction, seed = 1, testFraction = DEFAULT_SHARES.testFraction): SplitPreview {
  const { key } = library.requireModel();
  const { usable, skipped } = labeledPhotos(library, key);
  const plan = planSplit(usable, { valFraction, testFraction }, seed);
  return { valFraction, testFraction, seed, selection: plan.selection, folds: plan.folds, ...plan.counts, skipped: skipped.length };
}
