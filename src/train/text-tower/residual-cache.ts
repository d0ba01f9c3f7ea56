/**
 * The residual stream entering block L−k, once per distinct caption: the tower's own graph, run as it is with
 * that internal value added as an output. Captions are few and the blocks below L−k are frozen, so every
 * training step starts from this cache instead of re-running the lower blocks.
 *
 * Only the positions up to each caption's end token matter: the causal mask keeps later positions out of
 * the pooled one. So a batch runs at its longest real length (where the graph's sequence dimension is free)
 * and each caption keeps just its own positions — a typical caption is ~10 of the 77.
 */
import { ClipdexError } from '../../errors.js';
import { openGraph, runSession, type Tensor, tensor } from '../../inference/onnx-runtime.js';
import { cloneGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import type { TextTower } from './tower-source.js';

export interface ResidualCache {
  width: number;
  /** Per caption: [length, width], positions 0 … end token. */
  residuals: Float32Array[];
  /** Per caption: its end-token position + 1. */
  lengths: number[];
  /** Per caption: the tower's own output, as its graph gives it (raw, or normalised in OpenCLIP's layout). */
  towerEmbeddings: Float32Array[];
  /** Token positions the tower ran over, padding included. */
  positionsRun: number;
  ms: number;
}

export interface CacheOptions {
  threads?: number;
  /** Captions per run where the graph's batch is free. Default 32. */
  batchSize?: number;
  /** Pad every row to the context (to measure what the short rows save). */
  padToContext?: boolean;
  padId?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/** The end-token position: the first largest id, as the tower's ArgMax pools (CLIP's end token has the largest id). */
export function endPosition(ids: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < ids.length; i++) if (ids[i]! > ids[best]!) best = i;
  return best;
}

export async function cacheResiduals(tower: TextTower, layer: number, rows: readonly (readonly number[])[], residualValue: string, options: CacheOptions = {}): Promise<ResidualCache> {
  const started = performance.now();
  const g = cloneGraph(tower.graph);
  const D = tower.width;
  const input = g.inputs.find((v) => v.name === tower.spec.text.input) ?? (g.inputs.length === 1 ? g.inputs[0] : undefined);
  if (!input) throw new ClipdexError('MODEL_INVALID', `${tower.path}: no input ${tower.spec.text.input}`);
  if (input.dtype !== 'int64' && input.dtype !== 'int32') throw new ClipdexError('MODEL_INVALID', `${tower.path}: input ${input.name} is ${input.dtype}, not token ids`);
  const output = g.outputs.find((v) => v.name === tower.spec.text.output) ?? g.outputs[0];
  if (!output) throw new ClipdexError('MODEL_INVALID', `${tower.path}: the text tower has no output`);
  g.outputs = [output, { name: residualValue, dtype: 'float', dims: ['batch', 'sequence', D] }];
  const others = g.inputs.filter((v) => v !== input);
  for (const v of others) {
    if (v.name !== 'attention_mask') throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: the text tower has an input ${v.name} that clipdex cannot feed`);
  }
  const fixedBatch = typeof input.dims[0] === 'number' ? input.dims[0] : null;
  const fixedLength = typeof input.dims[1] === 'number' ? input.dims[1] : null;
  const batchSize = fixedBatch ?? options.batchSize ?? 32;
  const session = await openGraph(writeGraph(g), `the text tower with its block-${layer} residual as an output`, options.threads === undefined ? {} : { threads: options.threads });
  const cache: ResidualCache = { width: D, residuals: [], lengths: [], towerEmbeddings: [], positionsRun: 0, ms: 0 };
  try {
    for (let start = 0; start < rows.length; start += batchSize) {
      if (options.signal?.aborted) throw new ClipdexError('INVALID_ARGUMENT', 'training was cancelled');
      const batch = rows.slice(start, start + batchSize);
      const n = fixedBatch ?? batch.length;
      const longest = Math.max(...batch.map((r) => r.length));
      const T = fixedLength ?? (options.padToContext ? tower.contextLength : longest);
      if (longest > T) throw new ClipdexError('INVALID_ARGUMENT', `a caption has ${longest} tokens; the text tower takes ${T}`);
      const ids = new Array<number>(n * T).fill(options.padId ?? 0);
      const mask = new Array<number>(n * T).fill(0);
      batch.forEach((r, i) => r.forEach((id, j) => {
        ids[i * T + j] = id;
        mask[i * T + j] = 1;
      }));
      const asTensor = (values: number[], dtype: 'int64' | 'int32'): Tensor =>
        dtype === 'int64' ? tensor('int64', BigInt64Array.from(values, BigInt), [n, T]) : tensor('int32', Int32Array.from(values), [n, T]);
      const feeds = () => {
        const f: Record<string, Tensor> = { [input.name]: asTensor(ids, input.dtype as 'int64' | 'int32') };
        for (const v of others) f[v.name] = asTensor(mask, v.dtype === 'int32' ? 'int32' : 'int64');
        return f;
      };
      const out = await runSession(session, 'caching the text residuals', feeds);
      cache.positionsRun += n * T;
      const res = out[residualValue]!.data as Float32Array;
      const emb = out[output.name]!.data as Float32Array;
      const E = emb.length / n;
      batch.forEach((_, i) => {
        const len = endPosition(ids.slice(i * T, (i + 1) * T)) + 1;
        cache.lengths.push(len);
        cache.residuals.push(res.slice(i * T * D, (i * T + len) * D));
        cache.towerEmbeddings.push(emb.slice(i * E, (i + 1) * E));
      });
      options.onProgress?.(Math.min(rows.length, start + batch.length), rows.length);
    }
  } finally {
    await session.release();
  }
  cache.ms = performance.now() - started;
  return cache;
}

/** Residuals of these captions as one zero-padded [m, T, width] batch, and GatherElements' end-token index. */
export function residualBatch(cache: ResidualCache, captions: readonly number[]): { residual: Float32Array; poolIndex: BigInt64Array; T: number } {
  const D = cache.width;
  const T = Math.max(...captions.map((c) => cache.lengths[c]!));
  const residual = new Float32Array(captions.length * T * D);
  const poolIndex = new BigInt64Array(captions.length * D);
  captions.forEach((c, i) => {
    residual.set(cache.residuals[c]!, i * T * D);
    poolIndex.fill(BigInt(cache.lengths[c]! - 1), i * D, (i + 1) * D);
  });
  return { residual, poolIndex, T };
}
