/**
 * What both towers' block tuners (text-tower/tune-text-blocks.ts, image-tower/tune-image-blocks.ts) share
 * outside their graphs: the checks of their options, unit rows, the learnable temperature's clamp and
 * merging a LoRA update into its matrix.
 */
import { ClipdexError } from '../errors.js';

/** The learnable temperature is clamped to e^s ≤ 100, as CLIP clamps it. */
export const MAX_LOG_SCALE = Math.log(100);

/** CLIP clamps its logit scale at 100 after every step; below 1 the softmax would be flat. */
export function clampLogScale(s: Float32Array | Float64Array): void {
  s[0] = Math.min(MAX_LOG_SCALE, Math.max(0, s[0]!));
}

export function invalid(message: string): ClipdexError {
  return new ClipdexError('INVALID_ARGUMENT', message);
}

export function cancelled(): ClipdexError {
  return invalid('training was cancelled');
}

export function positiveInt(v: number, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isInteger(v) || v < 1 || v > max) throw invalid(`${what} must be an integer from 1 to ${max}, got ${v}`);
  return v;
}

export function positive(v: number, what: string): number {
  if (!(Number.isFinite(v) && v > 0)) throw invalid(`${what} must be a positive number, got ${v}`);
  return v;
}

/** Each row of `v` (rows of `dim`) scaled to unit length, in place; a zero row stays zero. */
export function toUnitRows(v: Float32Array, dim: number): Float32Array {
  for (let r = 0; r < v.length / dim; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += v[r * dim + k]! ** 2;
    const norm = Math.sqrt(s);
    if (norm > 0) for (let k = 0; k < dim; k++) v[r * dim + k]! /= norm;
  }
  return v;
}

/** Each row of `v` (rows of `dim`) scaled to unit length, in place; a zero row is refused as `${what} ${row}`. */
export function normalizeRows(v: Float32Array, dim: number, what: string): Float32Array {
  for (let r = 0; r < v.length / dim; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += v[r * dim + k]! ** 2;
    const norm = Math.sqrt(s);
    if (!(norm > 0)) throw invalid(`${what} ${r} is zero`);
    for (let k = 0; k < dim; k++) v[r * dim + k]! /= norm;
  }
  return v;
}

/** W0 + A·B ([in, out]; A [in, r], B [r, out]). */
export function mergeLora(w0: Float32Array, a: Float32Array, b: Float32Array, rank: number): Float32Array {
  const w = Float32Array.from(w0);
  const inDim = a.length / rank;
  const outDim = b.length / rank;
  for (let i = 0; i < inDim; i++) {
    for (let r = 0; r < rank; r++) {
      const air = a[i * rank + r]!;
      if (air === 0) continue;
      for (let j = 0; j < outDim; j++) w[i * outDim + j]! += air * b[r * outDim + j]!;
    }
  }
  return w;
}
