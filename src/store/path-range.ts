import { sep } from 'node:path';

/** Every path under `dir` sorts in [lo, hi): a range on a UNIQUE(path) index (images, ingest_queue). */
export function prefixRange(dir: string): { lo: string; hi: string } {
  const lo = dir.endsWith(sep) ? dir : dir + sep;
  return { lo, hi: lo.slice(0, -1) + String.fromCharCode(lo.charCodeAt(lo.length - 1) + 1) };
}
