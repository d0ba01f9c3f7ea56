/**
 * Which labels the trainer can learn from now, and why the others wait. A label outlives its photo (see
 * store/pairs-repo.ts): one whose photo is missing, on a folder that is offline, failed or not indexed
 * yet is left out of training with a reason the user can act on, never an error and never deleted.
 * The trainer (adapter-service.ts) and the split preview ask this one place.
 */
import type { Library } from '../library/library.js';
import type { LabeledPair } from '../store/pairs-repo.js';

export interface UsableLabel {
  pair: LabeledPair;
  imageId: number;
  /** The photo's content: what the split and the folds are keyed on, the same in any library. */
  contentHash: string;
  vector: Float32Array;
}

export interface SkippedLabel {
  pairId: number;
  caption: string;
  /** The photo's path, or the last one known when it is missing. */
  path: string;
  reason: string;
}

export function labeledPhotos(library: Library, modelKey: string): { usable: UsableLabel[]; skipped: SkippedLabel[] } {
  const usable: UsableLabel[] = [];
  const skipped: SkippedLabel[] = [];
  // One lookup per photo: 28 labels on one photo read its row and vector once.
  const photos = new Map<number, ReturnType<typeof photoState>>();
  for (const pair of library.pairs.list()) {
    if (pair.imageId === null) {
      const since = pair.missingSince === null ? '' : ` since ${new Date(pair.missingSince).toISOString()}`;
      skipped.push({
        pairId: pair.id,
        caption: pair.caption,
        path: pair.lastPath,
        reason: `photo missing${since}, kept: it comes back when the same photo is in the library again (last at ${pair.lastPath})`,
      });
      continue;
    }
    let photo = photos.get(pair.imageId);
    if (!photo) {
      photo = photoState(library, pair.imageId, modelKey, pair.lastPath);
      photos.set(pair.imageId, photo);
    }
    if (photo.vector) usable.push({ pair, imageId: pair.imageId, contentHash: photo.contentHash!, vector: photo.vector });
    else skipped.push({ pairId: pair.id, caption: pair.caption, path: photo.path, reason: photo.reason! });
  }
  return { usable, skipped };
}

function photoState(library: Library, imageId: number, modelKey: string, lastPath: string): { path: string; vector?: Float32Array; contentHash?: string; reason?: string } {
  const image = library.images.get(imageId);
  if (!image) return { path: lastPath, reason: `photo missing, kept (last at ${lastPath})` };
  const { path } = image;
  if (image.status === 'offline') return { path, reason: `photo offline: its folder is not available now (${path})` };
  if (image.status === 'error') return { path, reason: `photo failed to index (${path}): ${image.errorMessage ?? image.errorCode ?? 'unknown error'}` };
  const vector = image.status === 'indexed' && image.contentHash !== null ? library.embeddings.forImage(imageId, modelKey) : undefined;
  if (!vector) return { path, reason: `photo not indexed yet (${path})` };
  return { path, vector, contentHash: image.contentHash! };
}
