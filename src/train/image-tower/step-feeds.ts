/**
 * The inputs of one image-block training (or validation) step over cached activations: the distinct photos
 * and captions of its pairs, the photos' activations, the captions' fixed embeddings, the multi-positive
 * matrix (a photo's every caption among the batch's is a positive), and the head's current tensors; and the
 * LoRA factors merged back into a matrix. Shared by tune-image-blocks.ts and the trainer's candidate.
 */
import { type Tensor, tensor } from '../../inference/onnx-runtime.js';
import { type ActivationCache, activationBatch } from './activation-cache.js';

export interface ImageStepContext {
  cache: ActivationCache;
  /** Fixed caption embeddings, normalised, row-major [captions, embedDim]. */
  texts: Float32Array;
  embedDim: number;
  /** Photo row → its caption rows (over every pair, so a batch sees all of a photo's positives it holds). */
  captionsOf: ReadonlyMap<number, readonly number[]>;
  /** The trained tensors by name; read when the feeds are built, so a step sees the latest values. */
  values: ReadonlyMap<string, Float32Array>;
  dims: ReadonlyMap<string, readonly number[]>;
}

export function imageStepFeeds(ctx: ImageStepContext, pairs: readonly (readonly [image: number, caption: number])[], lambda: number): { n: number; imageRows: number[]; feeds: () => Record<string, Tensor> } {
  const E = ctx.embedDim;
  const imageRows = [...new Set(pairs.map((p) => p[0]))];
  const captionRows = [...new Set(pairs.map((p) => p[1]))];
  const at = new Map(captionRows.map((c, i) => [c, i]));
  const n = imageRows.length;
  const m = captionRows.length;
  const txt = new Float32Array(m * E);
  captionRows.forEach((c, i) => txt.set(ctx.texts.subarray(c * E, (c + 1) * E), i * E));
  const q = new Float32Array(n * m);
  imageRows.forEach((r, i) => {
    for (const c of ctx.captionsOf.get(r) ?? []) if (at.has(c)) q[i * m + at.get(c)!] = 1;
  });
  const residual = activationBatch(ctx.cache, imageRows);
  return {
    n,
    imageRows,
    feeds: () => {
      const f: Record<string, Tensor> = {
        residual: tensor('float32', residual, [n, ctx.cache.tokens, ctx.cache.width]),
        texts: tensor('float32', txt, [m, E]),
        positives: tensor('float32', q, [n, m]),
        lambda: tensor('float32', Float32Array.of(lambda), []),
      };
      for (const [name, v] of ctx.values) f[name] = tensor('float32', v, ctx.dims.get(name)!);
      return f;
    },
  };
}

/** Photo row → its caption rows. */
export function captionsOfImages(pairs: Iterable<readonly [image: number, caption: number]>): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const [image, caption] of pairs) out.set(image, [...(out.get(image) ?? []), caption]);
  return out;
}

