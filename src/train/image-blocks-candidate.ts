/**
 * The last k blocks of the image tower (its post-LayerNorm and projection with them), full or LoRA, as a
 * candidate beside the projection adapters and the text blocks (candidate.ts): the trainer's split,
 * selection, blend and verdict treat it alike. The text side is the locked text tower — the captions'
 * stored embeddings as they are, no projection — so what the image depth buys is measured on its own.
 *
 * Unlike the text side, a version chosen here changes how photos are encoded: the library's photos would be
 * re-encoded through the merged tower (`towerBytes`) before searching with it. This module only fits and
 * scores; storing such a version is not built yet.
 *
 * The pieces are image-tower/'s (tune-image-blocks.ts runs the same recipe as one call); here the loop is
 * the trainer's, so fits start, step and snapshot on the trainer's pairs and folds. Every photo row of the
 * data (test photos included, for the verdict) has its block-(L−k) activations cached once.
 */
import { ClipdexError } from '../errors.js';
import { type InferenceSession, openGraph } from '../inference/onnx-runtime.js';
import type { CandidateKind } from './candidate.js';
import { differentiate } from './graph-grad/differentiate.js';
import { readGraph, writeGraph } from './graph-grad/onnx-ir.js';
import { cacheActivations } from './image-tower/activation-cache.js';
import { imageTrainingGraph, LOGIT_SCALE, loraA, loraB, withImageLora } from './image-tower/head-graph.js';
import { initializersAsInputs } from './text-tower/head-graph.js';
import { captionsOfImages, imageStepFeeds } from './image-tower/step-feeds.js';
import { type BlockFitSetup, type HeadParameters, mergeLora, startBlockFit, toUnitRows } from './head-tuning.js';
import { type ImageTower, imageHeadTensorNames, imageResidualEntering, isImageMatrix, readImageHeadTensors, readImageTower } from './image-tower/tower-source.js';
import { mergedImageTowerBytes } from './image-tower/tower-writer.js';
import { checkImageHead, imageHeadShape, type PhotoInput, photoPixels, runImageHead } from './image-tower/tune-image-blocks.js';
import type { EmbeddedPairs } from './training-batches.js';

export interface ImageBlocksOptions {
  /** The model folder whose image tower is tuned (the library's base model). */
  modelDir: string;
  /** Each photo row's pixels or file, in the data's photo-row order. */
  photos: readonly PhotoInput[];
  /** Blocks to tune, from the top. */
  k: number;
  /** LoRA rank of the matrices; null = full weights. */
  lora: number | null;
  batchSize: number;
  /** Adam's step for the head; default 1e-4 full, 1e-3 LoRA (as the text side). */
  learningRate?: number;
  /** Pull towards the pretrained weights. Default 1e-3. */
  lambda?: number;
  /** Where the learnable temperature starts (e^s). */
  logitScale: number;
  threads?: number;
  signal?: AbortSignal;
  onCache?: (done: number, total: number) => void;
}

/** A fit's parameters by their training-graph names (LoRA factors unmerged, the logit scale included). */
export type ImageBlockWeights = HeadParameters;

export interface ImageBlocksKind extends CandidateKind<ImageBlockWeights> {
  readonly tower: ImageTower;
  readonly k: number;
  readonly lora: number | null;
  /** Largest |rebuilt head − tower| over the data's photos (checked ≤ 1e-3 × scale when the kind is made). */
  readonly headError: number;
  /** Bytes of the activation cache. */
  readonly cacheBytes: number;
  /** Milliseconds the cache took: the whole image tower run once on every photo row (pixels given). */
  readonly cacheMs: number;
  /** The head's tensors (canonical names) blended towards the pretrained ones: θ0 + blend·(θ − θ0). */
  headTensors(weights: ImageBlockWeights, blend: number): Map<string, Float32Array>;
  /** The image tower's graph with those tensors merged in. */
  towerBytes(weights: ImageBlockWeights, blend: number): Uint8Array;
  /** Other photos (rows × embedDim, normalised) under those weights: their frozen blocks run once, then the head. */
  encode(photos: readonly PhotoInput[], weights: ImageBlockWeights, blend: number): Promise<Float32Array>;
  /** The data's own photo rows (rows × embedDim, normalised) under those weights, from the cache (no tower run). */
  embedRows(weights: ImageBlockWeights, blend: number): Promise<Float32Array>;
}

export async function imageBlocksCandidate(data: EmbeddedPairs, o: ImageBlocksOptions): Promise<ImageBlocksKind> {
  const tower = await readImageTower(o.modelDir);
  const E = tower.embedDim;
  const D = tower.width;
  if (E !== data.dim) throw new ClipdexError('MODEL_INVALID', `${o.modelDir}: the image tower's ${E}-dimensional embeddings are not the library's ${data.dim}`);
  if (!Number.isInteger(o.k) || o.k < 1 || o.k > tower.layers) throw new ClipdexError('INVALID_ARGUMENT', `image blocks must be an integer from 1 to ${tower.layers} (the model's image layers), got ${o.k}`);
  if (o.lora !== null && (!Number.isInteger(o.lora) || o.lora < 1 || o.lora > D)) throw new ClipdexError('INVALID_ARGUMENT', `LoRA rank must be an integer from 1 to ${D} (the image width), got ${o.lora}`);
  const rank = o.lora;
  const photos = data.images.length / E;
  if (o.photos.length !== photos) throw new ClipdexError('INVALID_ARGUMENT', `${o.photos.length} photos for ${photos} photo rows`);
  const m = data.texts.length / E;
  const threads = o.threads === undefined ? {} : { threads: o.threads };
  const shape = imageHeadShape(tower, o.k);
  const texts = toUnitRows(Float32Array.from(data.texts), E);

  const residualValue = imageResidualEntering(tower, shape.first);
  const cache = await cacheActivations(tower, shape.first, await photoPixels(tower, o.photos), residualValue, {
    ...threads,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onCache ? { onProgress: o.onCache } : {}),
  });
  const theta0 = readImageHeadTensors(tower, shape.first);
  const headError = await checkImageHead(tower, shape, cache, theta0, threads);
  const names = imageHeadTensorNames(shape.first, shape.layers);
  let forward = readGraph(imageTrainingGraph(theta0, shape, { logitScale: o.logitScale }));
  if (rank) forward = withImageLora(forward, rank, (_n, [inDim, outDim]) => ({ a: new Float32Array(inDim! * rank), b: new Float32Array(rank * outDim!) }));
  const wrt = [...(rank ? names.flatMap((n) => (isImageMatrix(n) ? [loraA(n), loraB(n)] : [n])) : names), LOGIT_SCALE];
  const grad = differentiate(forward, { loss: 'loss', wrt });
  const initial = new Map(grad.parameters.map((p) => [p.name, Float32Array.from(p.data as Float32Array)]));
  const dims = new Map(grad.parameters.map((p) => [p.name, p.dims]));
  const stepSession: InferenceSession = await openGraph(writeGraph(grad.graph), 'the image-block training step', threads);
  const evalSession: InferenceSession = await openGraph(writeGraph(initializersAsInputs(forward, wrt)), 'the image-block validation pass', threads).catch(async (err: unknown) => {
    await stepSession.release();
    throw err;
  });
  const lr = o.learningRate ?? (rank ? 1e-3 : 1e-4);
  const lambda = o.lambda ?? 1e-3;
  const captionsOf = captionsOfImages(data.pairs);
  const feedsFor = (pairs: readonly number[], values: ReadonlyMap<string, Float32Array>, lambdaValue: number) =>
    imageStepFeeds({ cache, texts, embedDim: E, captionsOf, values, dims }, pairs.map((k) => data.pairs[k]!), lambdaValue);

  const headTensors = (weights: ImageBlockWeights, blend: number): Map<string, Float32Array> => {
    const out = new Map<string, Float32Array>();
    for (const name of names) {
      const base = theta0.get(name)!;
      const tuned = rank && isImageMatrix(name) ? mergeLora(base, weights.values.get(loraA(name))!, weights.values.get(loraB(name))!, rank) : weights.values.get(name)!;
      // WiSE-FT: the blend moves along the straight line from the pretrained weights to the fit's.
      out.set(name, Float32Array.from(base, (v, i) => v + blend * (tuned[i]! - v)));
    }
    return out;
  };

  const fitSetup: BlockFitSetup = {
    what: 'image',
    stepSession,
    evalSession,
    gradients: grad.gradients,
    wrt,
    initial,
    lora: rank ? { rank, matrices: names.filter(isImageMatrix) } : null,
    learningRate: lr,
    lambda,
    batchSize: o.batchSize,
    batch: feedsFor,
    ...(o.signal ? { signal: o.signal } : {}),
  };
  return {
    name: rank ? `image-blocks (k=${o.k}, LoRA ${rank})` : `image-blocks (k=${o.k})`,
    tower,
    k: o.k,
    lora: rank,
    headError,
    cacheBytes: cache.bytes,
    cacheMs: cache.ms,
    start: (trainPairs, seed) => startBlockFit(fitSetup, trainPairs, seed),
    async similarities(weights, blend, imageRows) {
      for (const row of imageRows) if (!Number.isInteger(row) || row < 0 || row >= photos) throw new ClipdexError('INVALID_ARGUMENT', `image row ${row} is not one of ${photos}`);
      const embedded = await runImageHead(headTensors(weights, blend), shape, cache, imageRows, { normalize: true, ...threads });
      const out = new Float32Array(imageRows.length * m);
      embedded.forEach((x, r) => {
        for (let c = 0; c < m; c++) {
          let s = 0;
          for (let k = 0; k < E; k++) s += x[k]! * texts[c * E + k]!;
          out[r * m + c] = s;
        }
      });
      return out;
    },
    headTensors,
    towerBytes: (weights, blend) => mergedImageTowerBytes(tower, headTensors(weights, blend)),
    async encode(inputs, weights, blend) {
      const own = await cacheActivations(tower, shape.first, await photoPixels(tower, inputs), residualValue, threads);
      const out = await runImageHead(headTensors(weights, blend), shape, own, Array.from({ length: inputs.length }, (_, i) => i), { normalize: true, ...threads });
      const flat = new Float32Array(inputs.length * E);
      out.forEach((v, i) => flat.set(v, i * E));
      return flat;
    },
    async embedRows(weights, blend) {
      const out = await runImageHead(headTensors(weights, blend), shape, cache, Array.from({ length: photos }, (_, i) => i), { normalize: true, ...threads });
      const flat = new Float32Array(photos * E);
      out.forEach((v, i) => flat.set(v, i * E));
      return flat;
    },
    async release() {
      await stepSession.release();
      await evalSession.release();
    },
  };
}
