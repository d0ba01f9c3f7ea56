/**
 * The precision of the text tower that encodes queries (issue 19): `fp32` (the model's own file, the default) or
 * `int8` (its MatMul/Gemm weights quantized once into the model cache, int8-text-tower.ts). Photos' vectors come
 * from the image tower alone, so an int8 text tower changes the query embedding slightly and nothing stored: the
 * same model key, the same index, no re-encoding. The default stays fp32: no trained model could be checked
 * where this was written, and published figures warn that dynamic int8 CLIP can lose accuracy.
 */
import { ClipdexError } from '../errors.js';

export type QueryPrecision = 'fp32' | 'int8';
export const QUERY_PRECISIONS: readonly QueryPrecision[] = ['fp32', 'int8'];
export const QUERY_PRECISION_ENV = 'CLIPDEX_QUERY_PRECISION';

/** A precision named by a person, or INVALID_ARGUMENT naming the allowed values. */
export function parseQueryPrecision(value: string, name: string): QueryPrecision {
  const v = value.trim().toLowerCase();
  if ((QUERY_PRECISIONS as readonly string[]).includes(v)) return v as QueryPrecision;
  throw new ClipdexError('INVALID_ARGUMENT', `${name} must be ${QUERY_PRECISIONS.join(' or ')}, got ${JSON.stringify(value)}`);
}

/** `CLIPDEX_QUERY_PRECISION=int8|fp32`; unset or empty: undefined (the caller's default, fp32). */
export function queryPrecisionFromEnv(env: Readonly<Record<string, string | undefined>> = process.env): QueryPrecision | undefined {
  const v = env[QUERY_PRECISION_ENV];
  return v === undefined || v.trim() === '' ? undefined : parseQueryPrecision(v, QUERY_PRECISION_ENV);
}

/** The precision a process uses: the one given (an option), else CLIPDEX_QUERY_PRECISION's, else fp32. */
export function resolveQueryPrecision(given?: QueryPrecision): QueryPrecision {
  return given ?? queryPrecisionFromEnv() ?? 'fp32';
}

/** What the text tower that encodes queries runs as, and where its int8 file came from. */
export type TextPrecision =
  | { precision: 'fp32' }
  /** The tower file is quantized already (an int8 model folder): used as it is, whatever was asked. */
  | { precision: 'int8'; source: 'model' }
  /**
   * Quantized for queries from the fp32 tower: `hit` reused from the cache, `written` made now and kept,
   * `unsaved` made now but not kept (the cache dir could not be written; `reason` says why).
   */
  | { precision: 'int8'; source: 'query'; state: 'hit' | 'written' | 'unsaved'; file: string | null; reason?: string; discarded?: string };

/** In words, for `clipdex status` and the server's status. */
export function describeTextPrecision(p: TextPrecision): string {
  if (p.precision === 'fp32') return 'fp32';
  if (p.source === 'model') return 'int8 (the model is int8: photos encoded by its int8 image tower)';
  return 'int8 for queries (photos encoded in fp32)';
}
