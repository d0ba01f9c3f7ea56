/**
 * A deliberately plain forward pass of CLIP in TypeScript (float64 accumulation, no tricks),
 * written from the paper's equations, to check the ONNX graphs number for number.
 */
import type { BlockWeights, ClipWeights, LayerNormWeights, LinearWeights } from '../../src/model/clip-architecture.js';

type Matrix = Float64Array[]; // rows of tokens

function layerNorm(x: Matrix, ln: LayerNormWeights): Matrix {
  return x.map((row) => {
    const n = row.length;
    let mean = 0;
    for (const v of row) mean += v;
    mean /= n;
    let variance = 0;
    for (const v of row) variance += (v - mean) ** 2;
    variance /= n;
    const inv = 1 / Math.sqrt(variance + 1e-5);
    return row.map((v, i) => (v - mean) * inv * ln.gamma[i]! + ln.beta[i]!);
  });
}

function linear(x: Matrix, lin: LinearWeights): Matrix {
  return x.map((row) => {
    const out = new Float64Array(lin.outDim);
    for (let o = 0; o < lin.outDim; o++) {
      let s = lin.b[o]!;
      for (let i = 0; i < lin.inDim; i++) s += row[i]! * lin.w[i * lin.outDim + o]!;
      out[o] = s;
    }
    return out;
  });
}

function matVec(row: Float64Array, w: Float32Array, outDim: number): Float64Array {
  const out = new Float64Array(outDim);
  for (let o = 0; o < outDim; o++) {
    let s = 0;
    for (let i = 0; i < row.length; i++) s += row[i]! * w[i * outDim + o]!;
    out[o] = s;
  }
  return out;
}

function attention(x: Matrix, blk: BlockWeights, heads: number, causal: boolean): Matrix {
  const T = x.length;
  const D = x[0]!.length;
  const hd = D / heads;
  const q = linear(x, blk.q);
  const k = linear(x, blk.k);
  const v = linear(x, blk.v);
  const ctx: Matrix = Array.from({ length: T }, () => new Float64Array(D));
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < T; i++) {
      const scores = new Float64Array(T);
      let max = -Infinity;
      for (let j = 0; j < T; j++) {
        if (causal && j > i) {
          scores[j] = -Infinity;
          continue;
        }
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[i]![h * hd + d]! * k[j]![h * hd + d]!;
        scores[j] = s / Math.sqrt(hd);
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = 0; j < T; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let j = 0; j < T; j++) {
        const p = scores[j]! / sum;
        for (let d = 0; d < hd; d++) ctx[i]![h * hd + d]! += p * v[j]![h * hd + d]!;
      }
    }
  }
  return linear(ctx, blk.out);
}

function add(a: Matrix, b: Matrix): Matrix {
  return a.map((row, i) => row.map((v, j) => v + b[i]![j]!));
}

function block(x: Matrix, blk: BlockWeights, heads: number, causal: boolean): Matrix {
  const x1 = add(x, attention(layerNorm(x, blk.ln1), blk, heads, causal));
  const hidden = linear(layerNorm(x1, blk.ln2), blk.fc1).map((row) => row.map((v) => v / (1 + Math.exp(-1.702 * v))));
  return add(x1, linear(hidden, blk.fc2));
}

/** One image, CHW float32 [3, S, S] → raw (unnormalised) image embedding. */
export function referenceImageEmbedding(w: ClipWeights, pixels: Float32Array): Float64Array {
  const { arch, vision } = w;
  const S = arch.imageSize;
  const P = arch.patchSize;
  const D = arch.vision.width;
  const G = S / P;
  const tokens: Matrix = [Float64Array.from(vision.classEmbedding)];
  for (let gy = 0; gy < G; gy++) {
    for (let gx = 0; gx < G; gx++) {
      const t = new Float64Array(D);
      for (let o = 0; o < D; o++) {
        let s = 0;
        for (let c = 0; c < 3; c++) {
          for (let ky = 0; ky < P; ky++) {
            for (let kx = 0; kx < P; kx++) {
              s += vision.patch[((o * 3 + c) * P + ky) * P + kx]! * pixels[c * S * S + (gy * P + ky) * S + gx * P + kx]!;
            }
          }
        }
        t[o] = s;
      }
      tokens.push(t);
    }
  }
  let x: Matrix = tokens.map((row, i) => row.map((v, d) => v + vision.positions[i * D + d]!));
  x = layerNorm(x, vision.preLn);
  for (const blk of vision.blocks) x = block(x, blk, arch.vision.heads, false);
  const pooled = layerNorm([x[0]!], vision.postLn)[0]!;
  return matVec(pooled, vision.projection, arch.embedDim);
}

/** Token ids (start … end, unpadded) → raw text embedding, pooled at the first highest id (the end token). */
export function referenceTextEmbedding(w: ClipWeights, ids: number[]): Float64Array {
  const { arch, text } = w;
  const D = arch.text.width;
  let x: Matrix = ids.map((id, pos) => {
    const row = new Float64Array(D);
    for (let d = 0; d < D; d++) row[d] = text.tokens[id * D + d]! + text.positions[pos * D + d]!;
    return row;
  });
  for (const blk of text.blocks) x = block(x, blk, arch.text.heads, true);
  x = layerNorm(x, text.finalLn);
  let end = 0;
  ids.forEach((id, i) => {
    if (id > ids[end]!) end = i;
  });
  return matVec(x[end]!, text.projection, arch.embedDim);
}

export function l2normalize(v: ArrayLike<number>): Float64Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const n = Math.sqrt(s);
  return Float64Array.from(v, (x) => x / n);
}
