/**
 * Which labeled photos the trainer learns from, which it makes its choices on, and which judge the result.
 * By photo, never by pair: a photo with two captions is on one side only. A photo is its content (the
 * content hash), not its row: row ids follow the order in which parallel indexing happened to finish, so
 * a split keyed on them gave the same labels different splits — and different versions — in two libraries
 * (issue 17). Keyed on (seed, content hash), the same labels split the same way in any library, and a
 * photo found twice (two copies of one file) can never sit on both sides.
 *
 * Stratified by caption: each photo counts under its rarest caption, and each caption's photos are
 * ordered by the hash and cut in turn into test, validation and train, with these minimums per caption:
 * 2 photos give 1 test and 1 train; 3 or more give at least 1 of each (validation only when its share is
 * above 0). A caption with a single photo can only teach: it goes to train, and the verdict cannot test
 * it (the trainer names such captions as untested).
 */
export type PhotoSplit = 'train' | 'val' | 'test';

export interface PairRef {
  /** The photo: its content hash. */
  photo: string;
  caption: string;
}

export interface SplitShares {
  /** Share of each caption's photos held out to choose the epochs and the blend. */
  valFraction: number;
  /** Share held out, untouched by every choice, to judge the result. */
  testFraction: number;
}

/** Code-unit order: the same on every machine and locale (localeCompare is not). */
export function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** photo → the caption it is stratified under: its rarest (fewest photos), ties in code-unit order. */
export function primaryCaptions(pairs: readonly PairRef[]): Map<string, string> {
  const photosOf = new Map<string, Set<string>>();
  for (const p of pairs) (photosOf.get(p.caption) ?? photosOf.set(p.caption, new Set()).get(p.caption)!).add(p.photo);
  const primary = new Map<string, string>();
  for (const p of pairs) {
    const known = primary.get(p.photo);
    if (known === undefined) {
      primary.set(p.photo, p.caption);
      continue;
    }
    const a = photosOf.get(p.caption)!.size;
    const b = photosOf.get(known)!.size;
    if (a < b || (a === b && byCodeUnits(p.caption, known) < 0)) primary.set(p.photo, p.caption);
  }
  return primary;
}

/** Each caption's photos in the seed's order: groups in caption order, photos by hash(seed, photo). */
function strata(photos: ReadonlyMap<string, string>, seed: number): string[][] {
  const groups = new Map<string, string[]>();
  for (const [photo, caption] of photos) (groups.get(caption) ?? groups.set(caption, []).get(caption)!).push(photo);
  return [...groups.keys()].sort(byCodeUnits).map((caption) => {
    const keyed = groups.get(caption)!.map((photo) => ({ photo, h: hashUnit(seed, photo) }));
    keyed.sort((a, b) => a.h - b.h || byCodeUnits(a.photo, b.photo));
    return keyed.map((k) => k.photo);
  });
}

/** photo (content hash) → its part. Shares of 0 leave that part empty. */
export function assignSplit(pairs: readonly PairRef[], shares: SplitShares, seed: number): Map<string, PhotoSplit> {
  const split = new Map<string, PhotoSplit>();
  for (const ordered of strata(primaryCaptions(pairs), seed)) {
    const n = ordered.length;
    const test = shares.testFraction > 0 && n >= 2 ? clamp(Math.round(shares.testFraction * n), 1, n - 1) : 0;
    const val = shares.valFraction > 0 && n - test >= 2 ? clamp(Math.round(shares.valFraction * n), 1, n - test - 1) : 0;
    ordered.forEach((photo, i) => split.set(photo, i < test ? 'test' : i < test + val ? 'val' : 'train'));
  }
  return split;
}

/**
 * photo → fold (0 … k−1) for cross-validation over these pairs' photos: stratified the same way (each
 * caption's photos dealt round the folds in hash order, the deal running on from one caption to the
 * next so the folds stay even), with its own hash stream so folds do not echo the split.
 */
export function assignFolds(pairs: readonly PairRef[], k: number, seed: number): Map<string, number> {
  const folds = new Map<string, number>();
  let dealt = 0;
  for (const ordered of strata(primaryCaptions(pairs), seed ^ 0x2545f491)) {
    for (const photo of ordered) folds.set(photo, dealt++ % k);
  }
  return folds;
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/**
 * A hash of (seed, photo) in [0, 1): FNV-1a over the text, then murmur3's finaliser mixed with the seed.
 * Stable across platforms and versions: a split must not change under an upgrade.
 */
export function hashUnit(seed: number, photo: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < photo.length; i++) h = Math.imul(h ^ photo.charCodeAt(i), 0x01000193) >>> 0;
  h = (h ^ Math.imul(seed + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}
