/**
 * Float32Array ↔ SQLite BLOB. The only place vectors are serialised: everything above the store
 * sees Float32Array. Stored little-endian so a database file moves between machines unchanged.
 */
import { endianness } from 'node:os';
import { ClipdexError } from '../errors.js';

const LITTLE_ENDIAN = endianness() === 'LE';

/** Bytes to bind as a BLOB. On little-endian hosts a view of the caller's memory (SQLite copies it on bind). */
export function vectorToBlob(vector: Float32Array): Buffer {
  if (LITTLE_ENDIAN) return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength);
  const out = Buffer.alloc(vector.byteLength);
  for (let i = 0; i < vector.length; i++) out.writeFloatLE(vector[i]!, i * 4);
  return out;
}

/**
 * A fresh, aligned Float32Array holding the BLOB's values. Copies because a Buffer may sit at any
 * byteOffset inside a pooled ArrayBuffer, where a Float32Array view would be misaligned or alias.
 */
export function blobToVector(blob: Uint8Array, expectedDim?: number): Float32Array {
  if (blob.byteLength % 4 !== 0) {
    throw new ClipdexError('DATABASE_INVALID', `stored vector has ${blob.byteLength} bytes, not a whole number of float32 values`);
  }
  const dim = blob.byteLength / 4;
  if (expectedDim !== undefined && dim !== expectedDim) {
    throw new ClipdexError('DIMENSION_MISMATCH', `stored vector has ${dim} dimensions, expected ${expectedDim}`);
  }
  const out = new Float32Array(dim);
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(blob);
  } else {
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    for (let i = 0; i < dim; i++) out[i] = view.getFloat32(i * 4, true);
  }
  return out;
}

/** Copies a BLOB's values into `target` at `offset` (a row of a contiguous matrix) without an intermediate array. */
export function blobInto(blob: Uint8Array, target: Float32Array, offset: number): void {
  if (LITTLE_ENDIAN && blob.byteOffset % 4 === 0) {
    target.set(new Float32Array(blob.buffer, blob.byteOffset, blob.byteLength / 4), offset);
  } else {
    target.set(blobToVector(blob), offset);
  }
}
