/**
 * The verdict on a trained version, from the test photos alone: no choice (epochs, blend) has seen them.
 * The headline is the mean recall — recall@1, @5 and @10 as CLIP papers define them (share of queries with
 * a correct answer in the top k), averaged over k and over both directions, the figure the blend is chosen
 * by. Its gain comes with a 90% bootstrap interval over the test queries, paired (each query before and
 * after) and stratified by direction; "improved" is claimed only when the whole interval is above 0.
 */
import { bootstrapInterval, type BootstrapOptions } from './bootstrap.js';
import { queryRecall, type QueryRanks } from './retrieval-metrics.js';

export interface Gain {
  /** What the figures measure, in words. */
  metric: string;
  before: number;
  after: number;
  /** after − before, as shares (0.142 = +14.2 points). */
  change: number;
  /** The interval on the change. */
  low: number;
  high: number;
  level: number;
  resamples: number;
  /** The queries resampled: a caption per tested caption, a photo per test photo. */
  queries: { textToImage: number; imageToText: number };
}

export interface TestSet {
  photos: number;
  pairs: number;
  /** Captions with no test photo (too few photos to hold one out): the test cannot say how they fare. */
  untested: string[];
}

export const HEADLINE = 'mean recall@1/5/10';

/** The gain between two rankings of the same test queries, with its interval. */
export function measureGain(before: QueryRanks, after: QueryRanks, options: BootstrapOptions = {}): Gain {
  const diffs = (a: number[], b: number[]) => b.map((r, i) => queryRecall(r) - queryRecall(a[i]!));
  const mean = (ranks: QueryRanks) => {
    const dirs = [ranks.textToImage, ranks.imageToText].filter((d) => d.length > 0);
    return dirs.length === 0 ? 0 : dirs.reduce((s, d) => s + d.reduce((a, r) => a + queryRecall(r), 0) / d.length, 0) / dirs.length;
  };
  const interval = bootstrapInterval([diffs(before.textToImage, after.textToImage), diffs(before.imageToText, after.imageToText)], options);
  const round = (x: number) => Math.round(x * 10_000) / 10_000;
  return {
    metric: HEADLINE,
    before: round(mean(before)),
    after: round(mean(after)),
    change: round(interval.estimate),
    low: round(interval.low),
    high: round(interval.high),
    level: interval.level,
    resamples: interval.resamples,
    queries: { textToImage: before.textToImage.length, imageToText: before.imageToText.length },
  };
}

export interface Verdict {
  improved: boolean;
  verdict: string;
}

const points = (x: number) => `${x > 0 ? '+' : x < 0 ? '−' : '±'}${Math.abs(100 * x).toFixed(1)}`;
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The gain in words: "+14.2 points mean recall@1/5/10 on 12 test photos (90% interval +3.0 to +25.0)". */
export function gainText(gain: Gain, testPhotos: number): string {
  return (
    `${points(gain.change)} points ${gain.metric} on ${testPhotos} test photo${testPhotos === 1 ? '' : 's'} ` +
    `(${pct(gain.before)} → ${pct(gain.after)}; ${Math.round(gain.level * 100)}% interval ${points(gain.low)} to ${points(gain.high)})`
  );
}

/**
 * Improved only with test photos, a blend above 0 (else the version is the base model) and an interval
 * wholly above 0. Otherwise the words say which of these failed and what would help.
 */
export function judge(gain: Gain | null, blend: number, test: TestSet): Verdict {
  const untested = test.untested.length > 0 ? `; ${test.untested.length} caption${test.untested.length === 1 ? ' has' : 's have'} too few photos to test (label at least 2 photos each)` : '';
  if (gain === null || test.photos === 0) {
    return {
      improved: false,
      verdict: `no test photos, so there is no evidence that it helps${untested || ''}: label at least 2 photos per caption and keep a test share above 0; kept but not activated`,
    };
  }
  if (blend === 0) {
    return { improved: false, verdict: `the choice settled on blend 0, the base model itself, so nothing changes: ${gainText(gain, test.photos)}${untested}; kept but not activated` };
  }
  if (gain.low > 0) return { improved: true, verdict: `improves: ${gainText(gain, test.photos)}${untested}` };
  const why = gain.change > 0 ? 'the interval reaches 0 or below, so the gain may be chance' : 'no gain';
  return { improved: false, verdict: `no supported improvement: ${gainText(gain, test.photos)}; ${why}${untested}; label more photos for a surer answer; kept but not activated` };
}
