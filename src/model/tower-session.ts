import { ClipdexError } from '../errors.js';
import {
  type GraphCacheOutcome,
  type InferenceSession,
  openSession,
  type ProviderFallback,
  type ProviderName,
  runSession,
  type SessionOptions,
  type Tensor,
} from '../inference/onnx-runtime.js';
import type { TowerSpec } from './manifest.js';
import { startupMark } from '../util/startup-trace.js';

/** What the graph itself declares about one input, so we feed it what it expects. */
export interface InputInfo {
  name: string;
  type: string;
  /** Declared shape; a string or negative number is a free (dynamic) dimension. */
  shape: readonly (number | string)[];
}

/** One tower (image or text) opened on a provider, with names and shapes taken from the graph. */
export interface TowerSession {
  session: InferenceSession;
  provider: ProviderName;
  fallbacks: ProviderFallback[];
  /** Whether it was opened from a saved optimized graph (inference/optimized-cache.ts). */
  graphCache: GraphCacheOutcome;
  input: InputInfo;
  /** Other inputs the graph declares (e.g. attention_mask). */
  extraInputs: InputInfo[];
  output: string;
  outputDim: number | null;
  /** Largest batch the graph accepts: Infinity when the batch dimension is free. */
  maxBatch: number;
  normalized: boolean;
}

export function isDynamic(dim: number | string | undefined): boolean {
  return typeof dim === 'string' || (typeof dim === 'number' && dim < 0);
}

function inputInfos(session: InferenceSession): InputInfo[] {
  return session.inputMetadata.map((m) =>
    m.isTensor ? { name: m.name, type: m.type, shape: m.shape } : { name: m.name, type: 'non-tensor', shape: [] },
  );
}

export async function openTower(path: string, spec: TowerSpec, what: 'image' | 'text', options: SessionOptions): Promise<TowerSession> {
  startupMark(`${what} session start`);
  const { session, provider, fallbacks, graphCache } = await openSession(path, options);
  startupMark(`${what} session created`);
  const inputs = inputInfos(session);
  // The manifest names the input; a graph that calls it differently but has one obvious candidate still works.
  const input = inputs.find((i) => i.name === spec.input) ?? (inputs.length === 1 ? inputs[0] : undefined);
  if (!input) {
    throw new ClipdexError(
      'MODEL_INVALID',
      `${what} model ${path} has no input named ${spec.input} (it has: ${inputs.map((i) => i.name).join(', ')})`,
    );
  }
  const outputs = session.outputMetadata;
  const out =
    outputs.find((o) => o.name === spec.output) ??
    outputs.find((o) => /embed/i.test(o.name)) ??
    (outputs.length === 1 ? outputs[0] : undefined);
  if (!out) {
    throw new ClipdexError(
      'MODEL_INVALID',
      `${what} model ${path} has no output named ${spec.output} (it has: ${outputs.map((o) => o.name).join(', ')})`,
    );
  }
  const outShape = out.isTensor ? out.shape : [];
  const last = outShape[outShape.length - 1];
  const batchDim = input.shape[0];
  return {
    session,
    provider,
    fallbacks,
    graphCache,
    input,
    extraInputs: inputs.filter((i) => i !== input),
    output: out.name,
    outputDim: typeof last === 'number' && last > 0 ? last : null,
    maxBatch: isDynamic(batchDim) ? Infinity : typeof batchDim === 'number' ? batchDim : 1,
    normalized: spec.normalized,
  };
}

/** L2-normalises each row of a [rows, dim] buffer into its own Float32Array. */
export function normalizedRows(data: Float32Array, rows: number, dim: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let r = 0; r < rows; r++) {
    const row = data.slice(r * dim, (r + 1) * dim);
    let sum = 0;
    for (let i = 0; i < dim; i++) sum += row[i]! * row[i]!;
    const norm = Math.sqrt(sum);
    if (!(norm > 0) || !Number.isFinite(norm)) {
      throw new ClipdexError('INFERENCE_FAILED', `the model produced a ${norm === 0 ? 'zero' : 'non-finite'} embedding`);
    }
    for (let i = 0; i < dim; i++) row[i]! /= norm;
    out.push(row);
  }
  return out;
}

/** Runs one batch through a tower and returns its `rows` embeddings, L2-normalised. */
export async function runTower(tower: TowerSession, feeds: Record<string, Tensor>, rows: number, what: 'image' | 'text'): Promise<Float32Array[]> {
  const result = await runSession(tower.session, `${what} encoder failed`, () => feeds);
  const tensor = result[tower.output] as Tensor;
  return normalizedRows(tensor.data as Float32Array, rows, tensor.dims[tensor.dims.length - 1]!);
}
