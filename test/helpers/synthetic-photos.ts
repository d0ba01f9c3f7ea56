/**
 * A library that is already large, without decoding or encoding a photo: rows straight through the store,
 * each with clustered embedding and a real file of the size and mtime recorded, so a server's start-up scan
 * finds every photo unchanged and keeps it (without the files the scan would sweep the rows, or an absent
 * folder would take them offline and out of the index). Used by bench/query.ts and the load and fault
 * tests, which each need thousands of photos in seconds.
 */
import { linkSync, mkdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Library } from '../../src/library/library.js';
import { clusteredVectors } from './store-fixtures.js';

/** ext4 allows 65,000 hard links to one file: a new source file every 50,000 photos. */
const LINKS_PER_SOURCE = 50_000;

export interface SyntheticPhotos {
  /** A watched root (registered if new). */
  root: string;
  count: number;
  /** Seed of the clustered embeddings. */
  seed: number;
  /** Where photo i's file goes (absolute, under the root). */
  path: (i: number) => string;
  /** Its content hash: distinct per photo, and from other calls on the same library. */
  hash: (i: number) => string;
  /**
   * The files: hard links to one source with these bytes (`linked`, made beside the root in `sourceDir`,
   * with an mtime long ago, so the scan never reads it as being written), or each file a few bytes of its own.
   */
  files: { linked: Buffer; sourceDir: string } | 'distinct';
  width: number | null;
  height: number | null;
  format?: string;
  takenAt?: (i: number) => number | null;
  /** A WebP file hard-linked as every photo's thumbnail. */
  thumbnail?: string;
}

export async function addSyntheticPhotos(library: Library, spec: SyntheticPhotos): Promise<void> {
  const { key, model } = library.requireModel();
  const vectors = clusteredVectors(spec.count, model.dim, { seed: spec.seed });
  const rootId = (library.roots.getByPath(spec.root) ?? library.roots.add(spec.root)).id;
  const files: { path: string; size: number; mtimeMs: number }[] = new Array(spec.count);
  let source: { path: string; size: number; mtimeMs: number } | null = null;
  for (let i = 0; i < spec.count; i++) {
    const path = spec.path(i);
    if (i === 0 || dirname(path) !== dirname(spec.path(i - 1))) mkdirSync(dirname(path), { recursive: true });
    if (spec.files === 'distinct') {
      writeFileSync(path, `synthetic photo ${i}\n`);
      const st = statSync(path);
      files[i] = { path, size: st.size, mtimeMs: st.mtimeMs };
      continue;
    }
    if (i % LINKS_PER_SOURCE === 0) {
      const sourcePath = join(spec.files.sourceDir, `synthetic-source-${i / LINKS_PER_SOURCE}.jpg`);
      rmSync(sourcePath, { force: true });
      writeFileSync(sourcePath, spec.files.linked);
      // A whole second, long ago: compared exactly with the stored mtime, and not "being written" to the scan.
      utimesSync(sourcePath, new Date(Date.UTC(2020, 0, 1)), new Date(Date.UTC(2020, 0, 1)));
      const st = statSync(sourcePath);
      source = { path: sourcePath, size: st.size, mtimeMs: st.mtimeMs };
    }
    linkSync(source!.path, path);
    files[i] = { path, size: source!.size, mtimeMs: source!.mtimeMs };
  }
  library.store.db.transaction(() => {
    for (let i = 0; i < spec.count; i++) {
      const hash = spec.hash(i);
      const f = files[i]!;
      library.embeddings.put(hash, key, vectors.subarray(i * model.dim, (i + 1) * model.dim));
      library.images.upsert({
        rootId,
        path: f.path,
        size: f.size,
        mtimeMs: f.mtimeMs,
        contentHash: hash,
        width: spec.width,
        height: spec.height,
        format: spec.format ?? 'jpeg',
        takenAt: spec.takenAt?.(i) ?? null,
        status: 'indexed',
      });
    }
  })();
  if (spec.thumbnail) {
    for (let i = 0; i < spec.count; i++) {
      const t = library.thumbnails.path(spec.hash(i));
      mkdirSync(dirname(t), { recursive: true });
      linkSync(spec.thumbnail, t);
    }
  }
}
