/**
 * The inputs of one text-block training (or validation) step over cached residuals: the distinct photos and
 * captions of its pairs, each photo's stored embedding, the multi-positive matrix (photos sharing a caption
 * are positives), the captions' residuals padded to the batch's longest, and the head's current tensors.
 */
import { type Tensor, tensor } from '../../inference/onnx-runtime.js';
import { type ResidualCache, residualBatch } from './residual-cache.js';

/** Each photo row's caption rows, from (photo row, caption row) pairs. */
export function captionsByImage(pairs: Iterable<readonly [image: number, caption: number]>): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const [image, caption] of pairs) out.set(image, [...(out.get(image) ?? []), caption]);
  return out;
}

export interface StepContext {
  cache: ResidualCache;
  /** Stored image embeddings, row-major [rows, embedDim]. */
  images: Float32Array;
  embedDim: number;
  captionsOf: ReadonlyMap<number, readonly number[]>;
  /** The trained tensors by name; read when the feeds are built, so a step sees the latest values. */
  values: ReadonlyMap<string, Float32Array>;
  dims: ReadonlyMap<string, readonly number[]>;
}

export function stepFeeds(ctx: StepContext, pairs: readonly (readonly [image: number, caption: number])[], lambda: number): { n: number; captionRows: number[]; feeds: () => Record<string, Tensor> } {
  const E = ctx.embedDim;
  const D = ctx.cache.width;
  const imageRows = [...new Set(pairs.map((p) => p[0]))];
  const captionRows = [...new Set(pairs.map((p) => p[1]))];
  const at = new Map(captionRows.map((c, i) => [c, i]));
  const n = imageRows.length;
  const m = captionRows.length;
  const img = new Float32Array(n * E);
  imageRows.forEach((r, i) => img.set(ctx.images.subarray(r * E, (r + 1) * E), i * E));
  const q = new Float32Array(n * m);
  imageRows.forEach((r, i) => {
    for (const c of ctx.captionsOf.get(r) ?? []) if (at.has(c)) q[i * m + at.get(c)!] = 1;
  });
  const { residual, poolIndex, T } = residualBatch(ctx.cache, captionRows);
  return {
    n,
    captionRows,
    feeds: () => {
      const f: Record<string, Tensor> = {
        residual: tensor('float32', residual, [m, T, D]),
        pool_index: tensor('int64', poolIndex, [m, 1, D]),
        images: tensor('float32', img, [n, E]),
        positives: tensor('float32', q, [n, m]),
        lambda: tensor('float32', Float32Array.of(lambda), []),
      };
      for (const [name, v] of ctx.values) f[name] = tensor('float32', v, ctx.dims.get(name)!);
      return f;
    },
  };
}
