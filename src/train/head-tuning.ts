/**
 * What both towers' block tuners (text-tower/tune-text-blocks.ts, image-tower/tune-image-blocks.ts) share
 * outside their graphs: the checks of their options, unit rows, the learnable temperature's clamp, merging a
 * LoRA update into its matrix, and the epochs with early stopping.
 */
import { ClipdexError } from '../errors.js';
import { type InferenceSession, runSession, type Tensor } from '../inference/onnx-runtime.js';
import { seededRandom } from '../util/seeded-random.js';
import { Adam } from './adam.js';
import type { CandidateFit } from './candidate.js';
import { LOGIT_SCALE, loraA } from './head-training-graph.js';
import { fixedBatches, shuffledBatches } from './training-batches.js';

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

/** A block candidate's weights by their training-graph names (LoRA factors unmerged, the logit scale included). */
export interface HeadParameters {
  values: Map<string, Float32Array>;
}

export interface BlockFitSetup {
  /** 'text' or 'image': named in run errors. */
  what: string;
  stepSession: InferenceSession;
  evalSession: InferenceSession;
  /** Parameter name → the name of its gradient among the step session's outputs. */
  gradients: ReadonlyMap<string, string>;
  /** The parameters, in the order Adam steps them; their starting values. */
  wrt: readonly string[];
  initial: ReadonlyMap<string, Float32Array>;
  /** LoRA: its rank and the matrices whose A factor each fit draws from its seed (B starts at 0). */
  lora: { rank: number; matrices: readonly string[] } | null;
  learningRate: number;
  lambda: number;
  batchSize: number;
  /** The step's inputs for these pairs (indices into the data's pairs) at these parameter values. */
  batch: (pairs: readonly number[], values: ReadonlyMap<string, Float32Array>, lambda: number) => HeadBatch;
  signal?: AbortSignal;
}

/**
 * A fresh fit of a block candidate (text-blocks-candidate.ts, image-blocks-candidate.ts) on the trainer's pairs:
 * Adam on every parameter (the temperature at 1e-2), the clamp after each step, held-out loss weighted by the
 * batches' photos.
 */
export function startBlockFit(s: BlockFitSetup, trainPairs: readonly number[], seed: number): CandidateFit<HeadParameters> {
  const rand = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const values = new Map([...s.initial].map(([n, v]) => [n, v.slice()]));
  // B = 0, so a fit starts exactly at the pretrained weights; A ~ N(0, 1/r), drawn from the fit's seed.
  if (s.lora) {
    const { rank, matrices } = s.lora;
    for (const n of matrices) values.get(loraA(n))!.forEach((_, i, a) => (a[i] = gauss() / Math.sqrt(rank)));
  }
  const adam = new Map(s.wrt.map((n) => [n, new Adam(values.get(n)!.length, { learningRate: n === LOGIT_SCALE ? 1e-2 : s.learningRate })]));
  return {
    async epoch() {
      let lossSum = 0;
      for (const b of shuffledBatches(trainPairs.length, s.batchSize, rand)) {
        if (s.signal?.aborted) throw cancelled();
        const out = await runSession(s.stepSession, `a ${s.what}-block training step`, s.batch(b.map((i) => trainPairs[i]!), values, s.lambda).feeds);
        for (const [name, a] of adam) a.step(values.get(name)!, out[s.gradients.get(name)!]!.data as Float32Array);
        clampLogScale(values.get(LOGIT_SCALE)!);
        lossSum += (out.contrastive!.data as Float32Array)[0]! * b.length;
      }
      return lossSum / Math.max(1, trainPairs.length);
    },
    async heldOutLoss(pairs) {
      let sum = 0;
      let count = 0;
      for (const b of fixedBatches(pairs.length, s.batchSize)) {
        const batch = s.batch(b.map((i) => pairs[i]!), values, 0);
        const out = await runSession(s.evalSession, `a ${s.what}-block validation pass`, batch.feeds);
        sum += (out.contrastive!.data as Float32Array)[0]! * batch.n;
        count += batch.n;
      }
      return count === 0 ? 0 : sum / count;
    },
    snapshot: () => ({ values: new Map([...values].map(([n, v]) => [n, v.slice()])) }),
    logitScale: () => Math.exp(values.get(LOGIT_SCALE)![0]!),
  };
}
