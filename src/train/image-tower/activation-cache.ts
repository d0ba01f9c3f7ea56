/**
 * The residual stream entering image block L−k, once per photo: the tower's own graph, run as it is with that
 * internal value added as an output. The blocks below L−k are frozen, so every training step starts from this
 * cache instead of re-running the patch embedding and the lower blocks over the pixels.
 *
 * Every token is kept (no causal mask on the image side: the class token attends to every patch), so a photo
 * costs tokens × width × 4 bytes: ViT-B/32 50 × 768 × 4 B ≈ 154 KB, ViT-B/16 197 × 768 × 4 B ≈ 605 KB,
 * ViT-L/14 257 × 1024 × 4 B ≈ 1.05 MB. Hundreds of labeled photos fit easily (500 ViT-B/32 photos: 77 MB).
 * MAX_CACHE_BYTES (2 GiB) refuses a cache that would not: 13,900 ViT-B/32 photos, 3,500 ViT-B/16, 2,000
 * ViT-L/14 — well above what a person labels by hand — and, on a 2-core 8 GB laptop, about what still leaves
 * room for the tower, the training graph's activations and the rest of clipdex. It is checked before anything
 * runs.
 */
import { ClipdexError } from '../../errors.js';
import { openGraph, runSession, tensor } from '../../inference/onnx-runtime.js';
import { cloneGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import type { ImageTower } from './tower-source.js';

export const MAX_CACHE_BYTES = 2 * 1024 ** 3;

export interface ActivationCache {
  width: number;
  tokens: number;
  /** Per photo: [tokens, width], the residual entering the first tuned block. */
  activations: Float32Array[];
  /** Per photo: the tower's own output, as its graph gives it (raw, or normalised in OpenCLIP's layout). */
  towerEmbeddings: Float32Array[];
  /** What `activations` holds. */
  bytes: number;
  ms: number;
}

export interface ActivationCacheOptions {
  threads?: number;
  /** Photos per run where the graph's batch is free. Default 16. */
  batchSize?: number;
  /** Refuse above this many bytes. Default MAX_CACHE_BYTES. */
  maxBytes?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** Bytes the cache of `photos` photos takes. */
export function activationCacheBytes(photos: number, tower: Pick<ImageTower, 'tokens' | 'width'>): number {
  return photos * tower.tokens * tower.width * 4;
}

/** `pixels`: one [3, size, size] normalised CHW tensor per photo (image-preprocess.ts's output). */
export async function cacheActivations(tower: ImageTower, layer: number, pixels: readonly Float32Array[], residualValue: string, options: ActivationCacheOptions = {}): Promise<ActivationCache> {
  const started = performance.now();
  const D = tower.width;
  const T = tower.tokens;
  const S = tower.imageSize;
  const plane = 3 * S * S;
  const bytes = activationCacheBytes(pixels.length, tower);
  const maxBytes = options.maxBytes ?? MAX_CACHE_BYTES;
  if (bytes > maxBytes) {
    throw new ClipdexError(
      'INVALID_ARGUMENT',
      `caching block ${layer}'s input for ${pixels.length} photos takes ${(bytes / 1024 ** 2).toFixed(0)} MB (${T} tokens × ${D} × 4 B each), above the ${(maxBytes / 1024 ** 2).toFixed(0)} MB bound: tune on fewer photos`,
    );
  }
  pixels.forEach((p, i) => {
    if (p.length !== plane) throw new ClipdexError('INVALID_ARGUMENT', `photo ${i} has ${p.length} pixel values; the image tower takes 3×${S}×${S} = ${plane}`);
  });
  const g = cloneGraph(tower.graph);
  const input = g.inputs.find((v) => v.name === tower.spec.vision.input) ?? (g.inputs.length === 1 ? g.inputs[0] : undefined);
  if (!input || g.inputs.length !== 1) throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: expected the image tower's one pixel input ${tower.spec.vision.input}`);
  const output = g.outputs.find((v) => v.name === tower.spec.vision.output) ?? g.outputs[0];
  if (!output) throw new ClipdexError('MODEL_INVALID', `${tower.path}: the image tower has no output`);
  g.outputs = [output, { name: residualValue, dtype: 'float', dims: ['batch', T, D] }];
  const fixedBatch = typeof input.dims[0] === 'number' ? input.dims[0] : null;
  const batchSize = fixedBatch ?? options.batchSize ?? 16;
  const session = await openGraph(writeGraph(g), `the image tower with its block-${layer} input as an output`, options.threads === undefined ? {} : { threads: options.threads });
  const cache: ActivationCache = { width: D, tokens: T, activations: [], towerEmbeddings: [], bytes, ms: 0 };
  try {
    for (let start = 0; start < pixels.length; start += batchSize) {
      if (options.signal?.aborted) throw new ClipdexError('INVALID_ARGUMENT', 'training was cancelled');
      const batch = pixels.slice(start, start + batchSize);
      const n = fixedBatch ?? batch.length;
      const packed = new Float32Array(n * plane);
      batch.forEach((p, i) => packed.set(p, i * plane));
      const out = await runSession(session, 'caching the image activations', () => ({ [input.name]: tensor('float32', packed, [n, 3, S, S]) }));
      const res = out[residualValue]!.data as Float32Array;
      if (res.length !== n * T * D) throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: block ${layer}'s input has ${res.length / n} values per photo, not ${T} tokens × ${D}`);
      const emb = out[output.name]!.data as Float32Array;
      const E = emb.length / n;
      batch.forEach((_, i) => {
        cache.activations.push(res.slice(i * T * D, (i + 1) * T * D));
        cache.towerEmbeddings.push(emb.slice(i * E, (i + 1) * E));
      });
      options.onProgress?.(Math.min(pixels.length, start + batch.length), pixels.length);
    }
  } finally {
    await session.release();
  }
  cache.ms = performance.now() - started;
  return cache;
}

/** These photos' activations as one [n, tokens, width] batch. */
export function activationBatch(cache: ActivationCache, photos: readonly number[]): Float32Array {
  const size = cache.tokens * cache.width;
  const out = new Float32Array(photos.length * size);
  photos.forEach((p, i) => out.set(cache.activations[p]!, i * size));
  return out;
}
