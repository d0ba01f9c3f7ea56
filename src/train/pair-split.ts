/**
 * Which labeled photos are held out for validation. By photo, never by pair: a photo with two captions is
 * in one split only, so validation never scores a photo the adapter was trained on. Stratified by caption
 * (each photo counts under its first caption), so every label with two or more photos has at least one
 * photo on each side; and deterministic in (seed, photo id), so the same library and seed give the same
 * split and adding photos to one label does not reshuffle the others.
 */
import type { PairSplit } from '../store/pairs-repo.js';

export interface PairRef {
  imageId: number;
  caption: string;
}

/** imageId → split. valFraction 0 puts everything in train. */
export function assignSplit(pairs: readonly PairRef[], valFraction: number, seed: number): Map<number, PairSplit> {
  const primary = new Map<number, string>();
  for (const p of [...pairs].sort((a, b) => a.imageId - b.imageId || a.caption.localeCompare(b.caption))) {
    if (!primary.has(p.imageId)) primary.set(p.imageId, p.caption);
  }
  const groups = new Map<string, number[]>();
  for (const [imageId, caption] of primary) {
    const list = groups.get(caption) ?? [];
    list.push(imageId);
    groups.set(caption, list);
  }
  const split = new Map<number, PairSplit>();
  for (const ids of groups.values()) {
    const ordered = [...ids].sort((a, b) => hashUnit(seed, a) - hashUnit(seed, b) || a - b);
    let val = Math.round(valFraction * ordered.length);
    if (valFraction > 0 && ordered.length >= 2) val = Math.min(ordered.length - 1, Math.max(1, val));
    if (ordered.length < 2) val = 0;
    ordered.forEach((id, i) => split.set(id, i < val ? 'val' : 'train'));
  }
  return split;
}

/** A hash of (seed, id) in [0, 1): murmur3's finaliser, stable across platforms and versions. */
function hashUnit(seed: number, id: number): number {
  let h = (Math.imul(id, 0x9e3779b1) ^ Math.imul(seed + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296;
}
