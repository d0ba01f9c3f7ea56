/**
 * Fine-tunes the two adapters on embedded pairs: CLIP's own recipe (symmetric InfoNCE, learnable
 * temperature, Adam), early stopping on validation loss, then WiSE-FT — the blend between the base model
 * and the tuned one that scores best on validation, leaning to the base when scores tie, so the model keeps
 * what it knew. Pure computation: the data comes in as embeddings, the result goes out as weights and
 * numbers; reading the library and saving the adapter belong to the adapter service.
 */
import { ClipdexError } from '../errors.js';
import type { PairSplit } from '../store/pairs-repo.js';
import { seededRandom } from '../util/seeded-random.js';
import { parseParam } from '../validation/param-rules.js';
import { batchSizeRule, blendsRule, epochsRule, identityPenaltyRule, learningRateRule, patienceRule, seedRule } from '../validation/train-params.js';
import { Adam } from './adam.js';
import { identityMatrix, mixAdapter, type AdapterWeights } from '../adapter/adapter-weights.js';
import { projectBulk, similarityMatrix } from '../adapter/projection-kernel.js';
import { ContrastiveKernel } from './contrastive-kernel.js';
import { meanRecall, retrievalMetrics, type RetrievalMetrics } from './retrieval-metrics.js';
import { fixedBatches, makeBatch, pairRelation, shuffledBatches, type EmbeddedPairs, type TargetMode } from './training-batches.js';

export interface TrainingData extends EmbeddedPairs {
  /** Split of each photo row. */
  imageSplit: readonly PairSplit[];
  /** The base model's logit scale (e^s; 100 for OpenAI's CLIP): where the learnable temperature starts. */
  logitScale: number;
  /**
   * For the retention report: base embeddings of phrases that are not captions in the training set, and
   * a sample of the library's photos to search with them.
   */
  probes?: { texts: Float32Array; count: number; gallery: Float32Array; galleryCount: number };
}

export interface TrainOptions {
  /** At most this many epochs; early stopping usually ends sooner. Default 100. */
  epochs?: number;
  /** Pairs per batch. Default 256 (CLIP's contrastive signal grows with the batch; memory here is no limit). */
  batchSize?: number;
  /** Default 2e-3. */
  learningRate?: number;
  /** Penalty towards identity, λ·|W − I|². Default 0.01. */
  identityPenalty?: number;
  /** Epochs without a better validation loss before stopping. Default 8. */
  patience?: number;
  seed?: number;
  targets?: TargetMode;
  /** WiSE-FT blends tried on validation (then ±0.1 around the best). Default 0, 0.2, …, 1. */
  blends?: number[];
  threads?: number;
}

export interface EpochRecord {
  epoch: number;
  trainLoss: number;
  /** null without validation pairs. */
  valLoss: number | null;
  /** The learned logit scale e^s after the epoch. */
  logitScale: number;
}

export interface TrainProgress {
  epoch: number;
  maxEpochs: number;
  history: EpochRecord[];
  bestEpoch: number;
  bestValLoss: number | null;
  epochsWithoutImprovement: number;
  patience: number;
}

export interface Retention {
  /** Share of the top 10 photos for phrases outside the training set that stay in the top 10 (1 = unchanged). */
  top10Overlap: number;
  /** Mean cosine between the base and the adapted embedding of those phrases. */
  textCosine: number;
  phrases: number;
  gallery: number;
}

export interface TrainOutcome {
  /** The blended adapter (what would be activated). */
  weights: AdapterWeights;
  /** The blend chosen on validation: 0 = base, 1 = fully fine-tuned. */
  blend: number;
  blends: { blend: number; meanRecall: number }[];
  logitScale: number;
  history: EpochRecord[];
  bestEpoch: number;
  stoppedEarly: boolean;
  before: RetrievalMetrics | null;
  after: RetrievalMetrics | null;
  retention: Retention | null;
  /** Beats the base model on validation (and may be activated). */
  improved: boolean;
  /** Why it did or did not improve, in words for the user. */
  verdict: string;
  trainPairs: number;
  valPairs: number;
  trainImages: number;
  valImages: number;
  captions: number;
  durationMs: number;
  options: Required<Omit<TrainOptions, 'threads'>>;
}

const MAX_LOG_SCALE = Math.log(100);

/** The options with their defaults, each through its rule (validation/train-params): INVALID_ARGUMENT naming the first bad one. */
export function resolveTrainOptions(o: TrainOptions = {}): Required<Omit<TrainOptions, 'threads'>> {
  const epochs = parseParam(epochsRule, o.epochs ?? 100, 'epochs');
  const batchSize = parseParam(batchSizeRule, o.batchSize ?? 256, 'batch size');
  const patience = parseParam(patienceRule, o.patience ?? 8, 'patience');
  const seed = parseParam(seedRule, o.seed ?? 1, 'seed');
  const learningRate = parseParam(learningRateRule, o.learningRate ?? 2e-3, 'learning rate');
  const identityPenalty = parseParam(identityPenaltyRule, o.identityPenalty ?? 0.01, 'identity penalty');
  const blends = parseParam(blendsRule, o.blends ?? [0, 0.2, 0.4, 0.6, 0.8, 1], 'blends');
  return { epochs, batchSize, learningRate, identityPenalty, patience, seed, targets: o.targets ?? 'multi-positive', blends };
}

export async function trainAdapters(data: TrainingData, options: TrainOptions = {}, onProgress?: (p: TrainProgress) => void, signal?: AbortSignal): Promise<TrainOutcome> {
  const started = performance.now();
  const opts = resolveTrainOptions(options);
  const d = data.dim;
  const trainPairs = data.pairs.flatMap((p, k) => (data.imageSplit[p[0]] === 'train' ? [k] : []));
  const valPairs = data.pairs.flatMap((p, k) => (data.imageSplit[p[0]] === 'val' ? [k] : []));
  const trainCaptions = new Set(trainPairs.map((k) => data.pairs[k]![1]));
  if (trainPairs.length < 4 || trainCaptions.size < 2) {
    throw new ClipdexError(
      'NOT_ENOUGH_LABELS',
      `training needs at least 4 labeled photos with at least 2 different captions in the training split (has ${trainPairs.length} pairs, ${trainCaptions.size} caption${trainCaptions.size === 1 ? '' : 's'}): contrastive learning learns from telling captions apart`,
    );
  }
  const related = pairRelation(data.pairs);
  const kernel = await ContrastiveKernel.create(d, options.threads === undefined ? {} : { threads: options.threads });
  try {
    const rand = seededRandom(opts.seed);
    const imageW = identityMatrix(d);
    const textW = identityMatrix(d);
    const logScale = Float64Array.of(Math.min(MAX_LOG_SCALE, Math.max(0, Math.log(data.logitScale))));
    const adam = { image: new Adam(d * d, { learningRate: opts.learningRate }), text: new Adam(d * d, { learningRate: opts.learningRate }), scale: new Adam(1, { learningRate: opts.learningRate }) };
    const valBatches = fixedBatches(valPairs.length, opts.batchSize).map((b) => makeBatch(data, b.map((i) => valPairs[i]!), related, opts.targets));
    const history: EpochRecord[] = [];
    let best = { loss: Infinity, epoch: 0, image: imageW.slice(), text: textW.slice(), logScale: logScale[0]! };
    let sinceBest = 0;
    let stoppedEarly = false;

    for (let epoch = 1; epoch <= opts.epochs; epoch++) {
      if (signal?.aborted) throw new ClipdexError('INVALID_ARGUMENT', 'training was cancelled');
      let lossSum = 0;
      for (const batch of shuffledBatches(trainPairs.length, opts.batchSize, rand)) {
        const input = makeBatch(data, batch.map((i) => trainPairs[i]!), related, opts.targets);
        const r = await kernel.step(input, { imageW, textW, logScale: logScale[0]!, lambda: opts.identityPenalty });
        adam.image.step(imageW, r.gradImageW);
        adam.text.step(textW, r.gradTextW);
        adam.scale.step(logScale, [r.gradLogScale]);
        // CLIP clamps its logit scale at 100 after every step; below 1 the softmax would be flat.
        logScale[0] = Math.min(MAX_LOG_SCALE, Math.max(0, logScale[0]!));
        lossSum += (r.loss - penaltyOf(imageW, textW, d, opts.identityPenalty)) * batch.length;
      }
      let valLoss: number | null = null;
      if (valBatches.length > 0) {
        let sum = 0;
        let count = 0;
        for (const input of valBatches) {
          const r = await kernel.step(input, { imageW, textW, logScale: logScale[0]!, lambda: 0 });
          sum += r.loss * input.n;
          count += input.n;
        }
        valLoss = sum / count;
      }
      history.push({ epoch, trainLoss: lossSum / trainPairs.length, valLoss, logitScale: Math.exp(logScale[0]!) });
      const monitored = valLoss ?? lossSum / trainPairs.length;
      if (monitored < best.loss - 1e-6) {
        best = { loss: monitored, epoch, image: imageW.slice(), text: textW.slice(), logScale: logScale[0]! };
        sinceBest = 0;
      } else {
        sinceBest++;
      }
      onProgress?.({ epoch, maxEpochs: opts.epochs, history, bestEpoch: best.epoch, bestValLoss: valLoss === null ? null : best.loss, epochsWithoutImprovement: sinceBest, patience: opts.patience });
      if (sinceBest >= opts.patience) {
        stoppedEarly = true;
        break;
      }
    }

    const tuned: AdapterWeights = { dim: d, image: best.image, text: best.text };
    const evaluation = await evaluateBlends(data, tuned, opts.blends);
    const chosen = evaluation.chosen;
    const weights = mixAdapter(tuned, chosen.blend);
    const improved = evaluation.before !== null && chosen.blend > 0 && chosen.meanRecall > meanRecall(evaluation.before);
    const verdict =
      evaluation.before === null
        ? 'no validation photos, so there is no evidence that the adapter helps; label more photos (each label needs at least 2) or raise the validation share'
        : improved
          ? `beats the base model on ${valPairs.length} validation pairs: mean recall ${pct(meanRecall(evaluation.before))} → ${pct(chosen.meanRecall)} (blend ${chosen.blend})`
          : `does not beat the base model on ${valPairs.length} validation pairs (mean recall ${pct(meanRecall(evaluation.before))} at best ${pct(Math.max(...evaluation.blends.map((b) => b.meanRecall)))}); kept but not activated`;
    return {
      weights,
      blend: chosen.blend,
      blends: evaluation.blends,
      logitScale: Math.exp(best.logScale),
      history,
      bestEpoch: best.epoch,
      stoppedEarly,
      before: evaluation.before,
      after: evaluation.before === null ? null : await evaluation.at(chosen.blend),
      retention: data.probes ? await retention(data, weights) : null,
      improved,
      verdict,
      trainPairs: trainPairs.length,
      valPairs: valPairs.length,
      trainImages: data.imageSplit.filter((s) => s === 'train').length,
      valImages: data.imageSplit.filter((s) => s === 'val').length,
      captions: data.texts.length / d,
      durationMs: Math.round(performance.now() - started),
      options: opts,
    };
  } finally {
    await kernel.release();
  }
}

function penaltyOf(a: Float32Array, b: Float32Array, d: number, lambda: number): number {
  if (lambda === 0) return 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const eye = i % (d + 1) === 0 ? 1 : 0;
    s += (a[i]! - eye) ** 2 + (b[i]! - eye) ** 2;
  }
  return lambda * s;
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/**
 * Validation metrics at every blend (0, 0.2, …, 1, then ±0.1 around the best). The chosen blend is the
 * smallest whose mean recall is within 0.5 points of the best: among equally good models, the one closest
 * to the base keeps the most of what it knew.
 */
async function evaluateBlends(data: TrainingData, tuned: AdapterWeights, blends: number[]) {
  const d = data.dim;
  const valRows = data.imageSplit.flatMap((s, i) => (s === 'val' ? [i] : []));
  const images = new Float32Array(valRows.length * d);
  valRows.forEach((row, k) => images.set(data.images.subarray(row * d, (row + 1) * d), k * d));
  const m = data.texts.length / d;
  const rowOf = new Map(valRows.map((row, k) => [row, k]));
  const pairs = data.pairs.flatMap(([i, c]) => (rowOf.has(i) ? [[rowOf.get(i)!, c] as const] : []));
  const cache = new Map<number, RetrievalMetrics>();
  const at = async (blend: number): Promise<RetrievalMetrics> => {
    const known = cache.get(blend);
    if (known) return known;
    const w = mixAdapter(tuned, blend);
    const sims = await similarityMatrix(await projectBulk(images, valRows.length, w.image, d), valRows.length, await projectBulk(data.texts, m, w.text, d), m, d);
    const metrics = retrievalMetrics(sims, valRows.length, m, pairs);
    cache.set(blend, metrics);
    return metrics;
  };
  if (valRows.length === 0) return { before: null, blends: [], chosen: { blend: 0, meanRecall: 0 }, at };
  const score = async (blend: number) => ({ blend, meanRecall: Math.round(meanRecall(await at(blend)) * 10_000) / 10_000 });
  const scored: { blend: number; meanRecall: number }[] = [];
  for (const blend of [...new Set([0, ...blends])].sort((a, b) => a - b)) scored.push(await score(blend));
  const coarseBest = scored.reduce((a, b) => (b.meanRecall > a.meanRecall ? b : a));
  for (const blend of [coarseBest.blend - 0.1, coarseBest.blend + 0.1]) {
    const b = Math.round(blend * 100) / 100;
    if (b > 0 && b < 1 && !scored.some((s) => Math.abs(s.blend - b) < 1e-9)) scored.push(await score(b));
  }
  scored.sort((a, b) => a.blend - b.blend);
  const bestScore = Math.max(...scored.map((s) => s.meanRecall));
  const chosen = scored.find((s) => s.meanRecall >= bestScore - 0.005)!;
  return { before: await at(0), blends: scored, chosen, at };
}

async function retention(data: TrainingData, w: AdapterWeights): Promise<Retention> {
  const p = data.probes!;
  const d = data.dim;
  const baseTexts = p.texts;
  const tunedTexts = await projectBulk(p.texts, p.count, w.text, d);
  const baseSims = await similarityMatrix(baseTexts, p.count, p.gallery, p.galleryCount, d);
  const tunedSims = await similarityMatrix(tunedTexts, p.count, await projectBulk(p.gallery, p.galleryCount, w.image, d), p.galleryCount, d);
  const top10 = (sims: Float32Array, q: number) => {
    const row = Array.from(sims.subarray(q * p.galleryCount, (q + 1) * p.galleryCount), (s, i) => ({ s, i }));
    return new Set(row.sort((a, b) => b.s - a.s).slice(0, 10).map((x) => x.i));
  };
  let overlap = 0;
  let cosine = 0;
  for (let q = 0; q < p.count; q++) {
    const before = top10(baseSims, q);
    const after = top10(tunedSims, q);
    overlap += [...after].filter((i) => before.has(i)).length / Math.max(1, before.size);
    for (let k = 0; k < d; k++) cosine += baseTexts[q * d + k]! * tunedTexts[q * d + k]!;
  }
  const round = (x: number) => Math.round(x * 10_000) / 10_000;
  return { top10Overlap: round(overlap / Math.max(1, p.count)), textCosine: round(cosine / Math.max(1, p.count)), phrases: p.count, gallery: p.galleryCount };
}
