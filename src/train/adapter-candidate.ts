/**
 * The projection adapters as a candidate: two d×d matrices over stored embeddings (the image tower locked,
 * LiT-style), fitted with CLIP's own recipe — symmetric InfoNCE over multi-positive batches, a learnable
 * temperature clamped as CLIP clamps it, Adam, a penalty towards identity.
 */
import { identityMatrix, mixAdapter, type AdapterWeights } from '../adapter/adapter-weights.js';
import { projectBulk, similarityMatrix } from '../adapter/projection-kernel.js';
import { seededRandom } from '../util/seeded-random.js';
import { Adam } from './adam.js';
import type { CandidateFit, CandidateKind } from './candidate.js';
import { ContrastiveKernel, type StepInput } from './contrastive-kernel.js';
import { fixedBatches, makeBatch, pairRelation, shuffledBatches, type EmbeddedPairs, type TargetMode } from './training-batches.js';
import { clampLogScale, MAX_LOG_SCALE } from './head-tuning.js';

export interface AdapterFitOptions {
  batchSize: number;
  learningRate: number;
  identityPenalty: number;
  targets: TargetMode;
  /** The base model's logit scale: where the learnable temperature starts. */
  logitScale: number;
  threads?: number;
}

export async function adapterCandidate(data: EmbeddedPairs, o: AdapterFitOptions): Promise<CandidateKind<AdapterWeights>> {
  const d = data.dim;
  const related = pairRelation(data.pairs);
  const kernel = await ContrastiveKernel.create(d, o.threads === undefined ? {} : { threads: o.threads });
  const m = data.texts.length / d;
  // Held-out pairs are measured every epoch: their batches are built once per list.
  const heldOut = new WeakMap<readonly number[], StepInput[]>();
  const batchesOf = (pairs: readonly number[]) => {
    let batches = heldOut.get(pairs);
    if (!batches) {
      batches = fixedBatches(pairs.length, o.batchSize).map((b) => makeBatch(data, b.map((i) => pairs[i]!), related, o.targets));
      heldOut.set(pairs, batches);
    }
    return batches;
  };

  return {
    name: 'adapter',
    start(trainPairs, seed): CandidateFit<AdapterWeights> {
      const rand = seededRandom(seed);
      const imageW = identityMatrix(d);
      const textW = identityMatrix(d);
      const logScale = Float64Array.of(Math.min(MAX_LOG_SCALE, Math.max(0, Math.log(o.logitScale))));
      const adam = { image: new Adam(d * d, { learningRate: o.learningRate }), text: new Adam(d * d, { learningRate: o.learningRate }), scale: new Adam(1, { learningRate: o.learningRate }) };
      return {
        async epoch() {
          let lossSum = 0;
          for (const batch of shuffledBatches(trainPairs.length, o.batchSize, rand)) {
            const input = makeBatch(data, batch.map((i) => trainPairs[i]!), related, o.targets);
            const r = await kernel.step(input, { imageW, textW, logScale: logScale[0]!, lambda: o.identityPenalty });
            adam.image.step(imageW, r.gradImageW);
            adam.text.step(textW, r.gradTextW);
            adam.scale.step(logScale, [r.gradLogScale]);
            // CLIP clamps its logit scale at 100 after every step; below 1 the softmax would be flat.
            clampLogScale(logScale);
            lossSum += (r.loss - penaltyOf(imageW, textW, d, o.identityPenalty)) * batch.length;
          }
          return lossSum / trainPairs.length;
        },
        async heldOutLoss(pairs) {
          let sum = 0;
          let count = 0;
          for (const input of batchesOf(pairs)) {
            const r = await kernel.step(input, { imageW, textW, logScale: logScale[0]!, lambda: 0 });
            sum += r.loss * input.n;
            count += input.n;
          }
          return count === 0 ? 0 : sum / count;
        },
        snapshot: () => ({ dim: d, image: imageW.slice(), text: textW.slice() }),
        logitScale: () => Math.exp(logScale[0]!),
      };
    },
    async similarities(weights, blend, imageRows) {
      const w = mixAdapter(weights, blend);
      const images = new Float32Array(imageRows.length * d);
      imageRows.forEach((row, k) => images.set(data.images.subarray(row * d, (row + 1) * d), k * d));
      return similarityMatrix(await projectBulk(images, imageRows.length, w.image, d), imageRows.length, await projectBulk(data.texts, m, w.text, d), m, d);
    },
    release: () => kernel.release(),
  };
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
