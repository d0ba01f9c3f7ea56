/**
 * How uncertain a mean gain measured on few test queries is: a seeded, stratified percentile bootstrap.
 * Each stratum (a retrieval direction) is resampled with replacement on its own, the statistic is the mean
 * of the strata's means (what the trainer's headline averages), and the interval is the central `level`
 * share of the resampled statistics. Seeded, so the same run reports the same interval.
 */
import { seededRandom } from '../util/seeded-random.js';

export interface BootstrapOptions {
  /** Default 2000: the 5th percentile of 2000 draws moves by well under a point between seeds. */
  resamples?: number;
  /** Two-sided coverage; default 0.9 (its lower bound is a one-sided 95% bound). */
  level?: number;
  seed?: number;
}

export interface Interval {
  /** The statistic on the data as measured. */
  estimate: number;
  low: number;
  high: number;
  level: number;
  resamples: number;
}

/** The mean over strata of each stratum's mean; empty strata are left out. */
export function meanOfMeans(strata: readonly (readonly number[])[]): number {
  const used = strata.filter((s) => s.length > 0);
  if (used.length === 0) return 0;
  return used.reduce((sum, s) => sum + s.reduce((a, b) => a + b, 0) / s.length, 0) / used.length;
}

export function bootstrapInterval(strata: readonly (readonly number[])[], options: BootstrapOptions = {}): Interval {
  const resamples = options.resamples ?? 2000;
  const level = options.level ?? 0.9;
  const used = strata.filter((s) => s.length > 0);
  const estimate = meanOfMeans(used);
  const rand = seededRandom(options.seed ?? 1);
  const stats = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (const s of used) {
      let t = 0;
      for (let i = 0; i < s.length; i++) t += s[Math.floor(rand() * s.length)]!;
      sum += t / s.length;
    }
    stats[r] = used.length === 0 ? 0 : sum / used.length;
  }
  stats.sort();
  const tail = (1 - level) / 2;
  return { estimate, low: quantile(stats, tail), high: quantile(stats, 1 - tail), level, resamples };
}

/** Linear interpolation between order statistics (type 7, R's and NumPy's default). */
function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const at = q * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (at - lo) * (sorted[hi]! - sorted[lo]!);
}
