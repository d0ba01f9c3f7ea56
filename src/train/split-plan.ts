/**
 * The split a training run will use, from the usable labels: the three parts by content hash, how the
 * choices will be made (validation part or cross-validation), and the counts users see. The trainer
 * (adapter-service.ts) and the split preview (GET /api/training/split) both ask here, so the preview is
 * the run's split, not an estimate of it.
 */
import { ClipdexError } from '../errors.js';
import type { PairSplit } from '../store/pairs-repo.js';
import { DEFAULT_FOLDS, foldCount, selectionMethod, type SelectionMethod } from './cross-validation.js';
import type { UsableLabel } from './labeled-photos.js';
import { assignSplit, type PhotoSplit, type SplitShares } from './pair-split.js';

export interface PartCount {
  labels: number;
  photos: number;
}

export interface SplitPlan {
  /** content hash → part. */
  parts: Map<string, PhotoSplit>;
  selection: SelectionMethod;
  /** k of the cross-validation; 1 with a validation part. */
  folds: number;
  /**
   * As the run uses them: `train` is what the saved version learns from (under cross-validation the
   * validation photos join it), `val` what only the choices see, `test` what only the verdict sees.
   */
  counts: { train: PartCount; val: PartCount; test: PartCount };
}

export const DEFAULT_SHARES: SplitShares = { valFraction: 0.2, testFraction: 0.2 };

export function checkShares(shares: SplitShares): void {
  if (shares.valFraction + shares.testFraction > 0.9 + 1e-9) {
    throw new ClipdexError('INVALID_ARGUMENT', `the validation and test shares together must leave at least a tenth of the photos to learn from (got ${shares.valFraction} + ${shares.testFraction})`);
  }
}

export function planSplit(usable: readonly UsableLabel[], shares: SplitShares, seed: number, folds: number = DEFAULT_FOLDS): SplitPlan {
  checkShares(shares);
  const parts = assignSplit(
    usable.map((u) => ({ photo: u.contentHash, caption: u.pair.caption })),
    shares,
    seed,
  );
  const count = (part: PhotoSplit) => {
    const labels = usable.filter((u) => parts.get(u.contentHash) === part);
    return { labels: labels.length, photos: new Set(labels.map((u) => u.contentHash)).size };
  };
  const [train, val, test] = [count('train'), count('val'), count('test')];
  const selection = selectionMethod(val.photos);
  if (selection === 'holdout') return { parts, selection, folds: 1, counts: { train, val, test } };
  return {
    parts,
    selection,
    folds: foldCount(train.photos + val.photos, folds),
    counts: { train: { labels: train.labels + val.labels, photos: train.photos + val.photos }, val: { labels: 0, photos: 0 }, test },
  };
}

/**
 * What is stored with the labels after a run: 'val' for a photo the saved version did not learn from
 * (test, and validation when the run chose on it), 'train' for the rest. The stored value is a record of
 * the last run, shown by the labels list; it is never an input — each run computes its split afresh.
 */
export function storedSplits(usable: readonly UsableLabel[], plan: SplitPlan): Map<number, PairSplit> {
  const out = new Map<number, PairSplit>();
  for (const u of usable) {
    const part = plan.parts.get(u.contentHash);
    out.set(u.imageId, part === 'test' || (part === 'val' && plan.selection === 'holdout') ? 'val' : 'train');
  }
  return out;
}
