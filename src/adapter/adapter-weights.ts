/**
 * The trained adapters: one d×d matrix per tower, applied to the base model's embedding as u = x·W and
 * then normalised. Because clipdex normalises every embedding, x·W on a stored (normalised) vector ranks
 * exactly like fine-tuning the tower's projection layer (P' = P·W), which is also how the adapter is
 * exported: one MatMul after the base graph's output.
 */
import { ClipdexError } from '../errors.js';

export interface AdapterWeights {
  dim: number;
  /** d×d, row-major, u = x·W. */
  image: Float32Array;
  text: Float32Array;
}

const MAGIC = 0x41584443; // "CDXA" little-endian
const FORMAT_VERSION = 1;
const HEADER_BYTES = 12;

export function identityMatrix(dim: number): Float32Array {
  const w = new Float32Array(dim * dim);
  for (let i = 0; i < dim; i++) w[i * dim + i] = 1;
  return w;
}

/** Exactly I: a version whose image side this is leaves every photo's vector as the base model stored it. */
export function isIdentityMatrix(w: Float32Array, dim: number): boolean {
  if (w.length !== dim * dim) return false;
  for (let i = 0; i < w.length; i++) if (w[i] !== (i % (dim + 1) === 0 ? 1 : 0)) return false;
  return true;
}

export function identityAdapter(dim: number): AdapterWeights {
  return { dim, image: identityMatrix(dim), text: identityMatrix(dim) };
}

/** WiSE-FT's weight-space interpolation: I + α(W − I); α = 0 is the base model, 1 the fine-tuned one. */
export function mixAdapter(tuned: AdapterWeights, alpha: number): AdapterWeights {
  const mix = (w: Float32Array) => {
    const out = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) {
      const eye = i % (tuned.dim + 1) === 0 ? 1 : 0;
      out[i] = eye + alpha * (w[i]! - eye);
    }
    return out;
  };
  return { dim: tuned.dim, image: mix(tuned.image), text: mix(tuned.text) };
}

/** "CDXA", format version, dim, then the image and the text matrix as float32 little-endian. */
export function encodeAdapter(w: AdapterWeights): Uint8Array {
  const n = w.dim * w.dim;
  const bytes = new Uint8Array(HEADER_BYTES + 8 * n);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, FORMAT_VERSION, true);
  view.setUint32(8, w.dim, true);
  for (let i = 0; i < n; i++) {
    view.setFloat32(HEADER_BYTES + 4 * i, w.image[i]!, true);
    view.setFloat32(HEADER_BYTES + 4 * (n + i), w.text[i]!, true);
  }
  return bytes;
}

export function decodeAdapter(bytes: Uint8Array): AdapterWeights {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < HEADER_BYTES || view.getUint32(0, true) !== MAGIC) {
    throw new ClipdexError('ADAPTER_INVALID', 'adapter weights are not in clipdex adapter format');
  }
  const version = view.getUint32(4, true);
  if (version !== FORMAT_VERSION) throw new ClipdexError('ADAPTER_INVALID', `adapter weights have format version ${version}; this clipdex reads ${FORMAT_VERSION}`);
  const dim = view.getUint32(8, true);
  const n = dim * dim;
  if (bytes.byteLength !== HEADER_BYTES + 8 * n) throw new ClipdexError('ADAPTER_INVALID', `adapter weights are ${bytes.byteLength} bytes, ${HEADER_BYTES + 8 * n} expected for dimension ${dim}`);
  const image = new Float32Array(n);
  const text = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    image[i] = view.getFloat32(HEADER_BYTES + 4 * i, true);
    text[i] = view.getFloat32(HEADER_BYTES + 4 * (n + i), true);
  }
  return { dim, image, text };
}

/** x·W, normalised, for each of `count` rows: for a few vectors (queries); bulk work goes through ORT. */
export function projectRows(rows: Float32Array, count: number, w: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(count * dim);
  for (let r = 0; r < count; r++) {
    const o = r * dim;
    for (let k = 0; k < dim; k++) {
      const x = rows[o + k]!;
      if (x === 0) continue;
      const wk = k * dim;
      for (let j = 0; j < dim; j++) out[o + j]! += x * w[wk + j]!;
    }
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += out[o + j]! ** 2;
    norm = Math.sqrt(norm) || 1;
    for (let j = 0; j < dim; j++) out[o + j]! /= norm;
  }
  return out;
}
