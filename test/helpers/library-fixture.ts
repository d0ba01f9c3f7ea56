/**
 * A real library (SQLite file, vector index, thumbnails) on the self-built model, with photos indexed
 * through the real store and encoder. Ingestion has tests of its own; API and search tests start here.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type AdapterWeights, identityAdapter } from '../../src/adapter/adapter-weights.js';
import { hashFile } from '../../src/ingest/content-hash.js';
import type { Library } from '../../src/library/library.js';
import { openImage } from '../../src/model/image-decode.js';
import { buildTinyModel } from '../../src/model/tiny-model-builder.js';

/**
 * A trained version's weights standing in for a real one: the identity with one image entry moved, so the
 * version has an image side of its own (projected vectors, its own index). An identity version would be
 * searched in the base index with nothing of its own, and activation would do none of its work.
 */
export function projectingAdapter(dim: number): AdapterWeights {
  const w = identityAdapter(dim);
  w.image[1] = 0.25;
  return w;
}

export async function tinyModel(dir: string, seed = 11): Promise<string> {
  return (await buildTinyModel({ out: join(dir, 'model'), seed, force: true })).dir;
}

/** Adds each file under `root` as an indexed photo with its embedding and thumbnail; returns their ids in order. */
export async function indexFiles(library: Library, root: string, files: string[], takenAt?: (file: string, i: number) => number | null): Promise<number[]> {
  const { model, key } = library.requireModel();
  const rootRecord = library.roots.getByPath(root) ?? library.roots.add(root);
  const ids: number[] = [];
  const results = await model.embedImages(files);
  for (let i = 0; i < files.length; i++) {
    const file = files[i]!;
    const result = results[i]!;
    const st = statSync(file);
    if (!result.ok) {
      ids.push(
        library.images.upsert({ rootId: rootRecord.id, path: file, size: st.size, mtimeMs: st.mtimeMs, status: 'error', errorCode: result.error.code, errorMessage: result.error.message }).id,
      );
      continue;
    }
    const { hash } = await hashFile(file);
    const image = await openImage(readFileSync(file), { name: file });
    await library.thumbnails.put(hash, await image.thumbnail());
    library.embeddings.put(hash, key, result.embedding);
    const record = library.images.upsert({
      rootId: rootRecord.id,
      path: file,
      size: st.size,
      mtimeMs: st.mtimeMs,
      contentHash: hash,
      width: image.info.width,
      height: image.info.height,
      format: image.info.format,
      takenAt: takenAt?.(file, i) ?? null,
      status: 'indexed',
    });
    ids.push(record.id);
  }
  return ids;
}
