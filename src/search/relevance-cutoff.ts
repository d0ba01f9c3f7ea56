/**
 * Where the strong matches of a ranked list end. Every search ranks the whole library, so a list of 60 is
 * always full; what the user needs is how many of those are worth looking at ("12 good matches · show 48
 * weaker"). Two rules, chosen by what the scores are:
 *
 * - **relative** (cosine scores, every CLIP model today): strong means at least `ratio` × the best score.
 *   A fixed cosine fails across queries (a good phrase match scores 0.3, a good photo match 0.95) while a
 *   share of the best adapts to both, and it is the rule `minScoreRatio` has always applied. The default
 *   0.9 is the boundary date-sorted searches already used. A gap rule (cut at the largest drop) was tried
 *   on paper and left: neighbouring CLIP scores differ by thousandths, so the largest gap lands on noise,
 *   and it moves when one photo is added. When even the best score is ≤ 0 nothing resembles the query at
 *   all, and nothing is strong.
 * - **absolute** (models whose score is a calibrated probability, e.g. SigLIP's sigmoid): strong means
 *   p ≥ `threshold`, default 0.5 — the point where the model itself says "more likely a match than not".
 *   Such a score means the same across queries, so no share of the best is needed, and a query with no
 *   match in the library gets no strong result, which the relative rule cannot say.
 *
 * Pure: scores in, a count out; the query engine supplies the scores and marks the results.
 */
import { ClipdexError } from '../errors.js';
import { calibratedProbability, type ScoreCalibration } from '../model/manifest.js';

/** The relative rule's default share of the best score. */
export const DEFAULT_STRONG_RATIO = 0.9;
/** The absolute rule's default probability. */
export const DEFAULT_STRONG_PROBABILITY = 0.5;

export type RankedScores =
  /** Cosine similarities (or any score without a calibrated meaning). */
  | { calibrated?: false; scores: readonly number[]; ratio?: number }
  /** Probabilities in [0, 1] from a model calibrated to give them. */
  | { calibrated: true; probabilities: readonly number[]; threshold?: number };

export interface RelevanceCutoff {
  rule: 'relative' | 'absolute';
  /** relative: the share of the best score; absolute: the probability a strong match needs. */
  value: number;
  /** The least score (cosine, or probability for the absolute rule) a strong match has; null when nothing can be. */
  minScore: number | null;
  /** How many of the scores are strong. */
  strongCount: number;
}

/** The cut-off of a list of scores, in any order (a ranked list is the usual one). */
export function relevanceCutoff(list: RankedScores): RelevanceCutoff {
  if (list.calibrated) {
    const threshold = checkShare(list.threshold ?? DEFAULT_STRONG_PROBABILITY, 'threshold');
    return { rule: 'absolute', value: threshold, minScore: threshold, strongCount: countAtLeast(list.probabilities, threshold) };
  }
  const ratio = checkShare(list.ratio ?? DEFAULT_STRONG_RATIO, 'ratio');
  let best = -Infinity;
  for (const s of list.scores) if (s > best) best = s;
  if (!(best > 0)) return { rule: 'relative', value: ratio, minScore: null, strongCount: 0 };
  const minScore = best * ratio;
  return { rule: 'relative', value: ratio, minScore, strongCount: countAtLeast(list.scores, minScore) };
}

/** Whether one score is strong under a cut-off already made. */
export function isStrong(score: number, cutoff: Pick<RelevanceCutoff, 'minScore'>): boolean {
  return cutoff.minScore !== null && score >= cutoff.minScore;
}

function countAtLeast(scores: readonly number[], min: number): number {
  let n = 0;
  // NaN compares false: a broken score is never strong.
  for (const s of scores) if (s >= min) n++;
  return n;
}

function checkShare(value: number, name: string): number {
  if (!(value >= 0 && value <= 1)) throw new ClipdexError('INVALID_ARGUMENT', `the cut-off's ${name} must be a number from 0 to 1, got ${value}`);
  return value;
}

/**
 * The model's cosine → probability when its score is calibrated (SigLIP's sigmoid(scale · cosine + bias),
 * from the trained logit scale and bias the model folder carries); null for every CLIP model, whose
 * softmax-trained cosine has no absolute meaning.
 */
export function calibrationOf(model: { readonly scoreCalibration: ScoreCalibration | null }): ((cosine: number) => number) | null {
  const calibration = model.scoreCalibration;
  return calibration ? (cosine) => calibratedProbability(cosine, calibration) : null;
}
