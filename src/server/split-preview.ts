import { z } from 'zod';
import type { Library } from '../library/library.js';
import { labeledPhotos } from '../train/labeled-photos.js';
import { assignSplit } from '../train/pair-split.js';
import { seedText, valFractionText } from '../validation/train-params.js';

/** GET /api/training/split: the options that decide the split, as the training form sends them. */
export const splitPreviewQuery = z
  .object({
    valFraction: valFractionText.optional(),
    seed: seedText.optional(),
  })
  .strict();

export interface SplitPreview {
  valFraction: number;
  seed: number;
  /** Labels (photo/caption pairs) and distinct photos on each side. */
  train: { labels: number; photos: number };
  val: { labels: number; photos: number };
  /** Labels the trainer would leave out: their photo is missing, offline, failed or not indexed (yet). */
  skipped: number;
}

/**
 * The split the next training run would use with these options, without storing it: the same pairs the
 * trainer takes (indexed photos with a base-model vector, as AdapterService.collect picks them) through the
 * same assignSplit. Before the first run every stored label reads 'train'; this says what will be held out.
 */
export function previewSplit(library: Library, valFraction = 0.2, seed = 1): SplitPreview {
  const { key } = library.requireModel();
  const { usable, skipped } = labeledPhotos(library, key);
  const refs = usable.map((u) => ({ imageId: u.imageId, caption: u.pair.caption }));
  const split = assignSplit(refs, valFraction, seed);
  const side = (which: 'train' | 'val') => {
    const pairs = refs.filter((r) => (split.get(r.imageId) ?? 'train') === which);
    return { labels: pairs.length, photos: new Set(pairs.map((r) => r.imageId)).size };
  };
  return { valFraction, seed, train: side('train'), val: side('val'), skipped: skipped.length };
}
