/**
 * What both towers' block tuners (text-tower/tune-text-blocks.ts, image-tower/tune-image-blocks.ts) share
 * outside their graphs: the checks of their options, unit rows, the learnable temperature's clamp, merging a
 * LoRA update into its matrix, and the epochs with early stopping.
 */
import { ClipdexError } from '../errors.js';
import { type InferenceSession, runSession, type Tensor } from '../inference/onnx-runtime.js';
import type { Adam } from './adam.js';
import { LOGIT_SCALE } from './head-training-graph.js';
import { shuffledBatches } from './training-batches.js';

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

/** The options both block tuners take (tuneTextBlocks, tuneImageBlocks). */
export interface BlockTuningOptions {
  /** A CLIP model folder (Hugging Face, OpenCLIP/Immich or clipdex-built layout). */
  modelDir: string;
  /** Blocks to tune, counted from the top. Default 2. */
  k?: number;
  /** LoRA rank for the matrices (LayerNorms and biases are tuned in full); null/0 = full weights. Default null. */
  lora?: number | null;
  /** λ of the pull towards the pretrained weights. Default 1e-3. */
  lambda?: number;
  /** Adam's step. Default 1e-4 for full weights, 1e-3 for LoRA. */
  learningRate?: number;
  /** Adam's step for the temperature. Default 1e-2. */
  temperatureRate?: number;
  /** Default 30. */
  epochs?: number;
  /** Epochs without a better validation loss before stopping. Default 5. */
  patience?: number;
  seed?: number;
  threads?: number;
  /** e^s to start from; default the model's own. */
  logitScale?: number;
  signal?: AbortSignal;
}

/** What a block tuner reports while it runs: the frozen blocks' cache, then each epoch. */
export type BlockTuningProgress =
  | { phase: 'cache'; done: number; total: number }
  | { phase: 'train'; epoch: number; maxEpochs: number; trainLoss: number; valLoss: number | null; bestEpoch: number; logitScale: number };

/** One batch's inputs (`n`: what its loss is averaged over, for the validation mean). */
export interface HeadBatch {
  n: number;
  feeds: () => Record<string, Tensor>;
}

export interface HeadEpochsOptions {
  /** 'text' or 'image': named in run errors. */
  what: string;
  stepSession: InferenceSession;
  evalSession: InferenceSession;
  /** Parameter name → the name of its gradient among the step session's outputs. */
  gradients: ReadonlyMap<string, string>;
  /** The parameters, updated in place (LOGIT_SCALE among them: clamped after every step). */
  values: Map<string, Float32Array<ArrayBuffer>>;
  adam: ReadonlyMap<string, Adam>;
  trainCount: number;
  batchSize: number;
  rand: () => number;
  /** The training batch of these training-pair indices. */
  trainBatch: (indices: readonly number[]) => HeadBatch;
  valBatches: readonly HeadBatch[];
  epochs: number;
  patience: number;
  signal?: AbortSignal;
  onEpoch?: (e: HeadEpoch & { bestEpoch: number }) => void;
}

export interface HeadEpoch {
  epoch: number;
  /** The contrastive loss over the epoch's steps (without the penalty). */
  trainLoss: number;
  valLoss: number | null;
  logitScale: number;
}

/**
 * The epochs both block tuners run: shuffled batches, one ORT run and an Adam step per batch, the temperature
 * clamped, the validation pairs' loss after each epoch, and early stopping on it (on the training loss without
 * validation pairs). Returns the best epoch's parameters; `values` is left at the last epoch's.
 */
export async function runHeadEpochs(o: HeadEpochsOptions): Promise<{ history: HeadEpoch[]; best: { loss: number; epoch: number; values: Map<string, Float32Array<ArrayBuffer>> }; stoppedEarly: boolean; steps: number; stepsMs: number; validationMs: number }> {
  const snapshot = () => new Map([...o.values].map(([n, v]) => [n, v.slice()]));
  const history: HeadEpoch[] = [];
  let best = { loss: Infinity, epoch: 0, values: snapshot() };
  let sinceBest = 0;
  let stoppedEarly = false;
  let steps = 0;
  let stepsMs = 0;
  let validationMs = 0;
  for (let epoch = 1; epoch <= o.epochs; epoch++) {
    let lossSum = 0;
    const stepStart = performance.now();
    for (const b of shuffledBatches(o.trainCount, o.batchSize, o.rand)) {
      if (o.signal?.aborted) throw cancelled();
      const out = await runSession(o.stepSession, `a ${o.what}-block training step`, o.trainBatch(b).feeds);
      for (const [name, adam] of o.adam) adam.step(o.values.get(name)!, out[o.gradients.get(name)!]!.data as Float32Array);
      clampLogScale(o.values.get(LOGIT_SCALE)!);
      lossSum += (out.contrastive!.data as Float32Array)[0]! * b.length;
      steps++;
    }
    stepsMs += performance.now() - stepStart;
    const valStart = performance.now();
    let valLoss: number | null = null;
    if (o.valBatches.length > 0) {
      let sum = 0;
      let count = 0;
      for (const vb of o.valBatches) {
        const out = await runSession(o.evalSession, `a ${o.what}-block validation pass`, vb.feeds);
        sum += (out.contrastive!.data as Float32Array)[0]! * vb.n;
        count += vb.n;
      }
      valLoss = sum / count;
    }
    validationMs += performance.now() - valStart;
    const trainLoss = lossSum / o.trainCount;
    const logitScale = Math.exp(o.values.get(LOGIT_SCALE)![0]!);
    history.push({ epoch, trainLoss, valLoss, logitScale });
    const monitored = valLoss ?? trainLoss;
    if (monitored < best.loss - 1e-6) {
      best = { loss: monitored, epoch, values: snapshot() };
      sinceBest = 0;
    } else {
      sinceBest++;
    }
    o.onEpoch?.({ epoch, trainLoss, valLoss, logitScale, bestEpoch: best.epoch });
    if (sinceBest >= o.patience) {
      stoppedEarly = true;
      break;
    }
  }
  return { history, best, stoppedEarly, steps, stepsMs, validationMs };
}
