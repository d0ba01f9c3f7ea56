/**
 * Fine-tunes the last k blocks of a CLIP image tower, its post-LayerNorm and its projection on labeled
 * (photo, caption) pairs against FIXED caption embeddings (issue 17, image side, `--image-blocks k`; the text
 * tower stays locked here, as the image tower does on the text side):
 *
 *   1. the tower is read as it is (tower-source.ts) and the tensors to tune located in its graph;
 *   2. each photo is preprocessed by the product's own pipeline (or given as pixels) and the residual stream
 *      entering block L−k cached once per photo (activation-cache.ts);
 *   3. the head rebuilt from the initializers (head-graph.ts) must reproduce the tower's own output on those
 *      photos — a tower whose head is not CLIP's ViT is refused here instead of trained wrongly;
 *   4. the training graph (head → normalise → scaled cosine against the captions → multi-positive symmetric
 *      InfoNCE with a learnable temperature, + λ·|θ − θ0|²) is differentiated once (graph-grad) and each step
 *      is one ORT run; Adam updates every tensor; early stopping on the validation pairs' loss;
 *   5. the best epoch's tensors come back by their names in the real graph, and merged into it on request.
 *
 * A step runs the head over every distinct photo of its batch of pairs: the cost of an epoch grows with the
 * photos, and the training graph keeps each block's activations for the backward pass (ViT-B/32, k = 2:
 * about 7 MB a photo), hence the default 64 pairs per step.
 */
import { ClipdexError } from '../../errors.js';
import { type InferenceSession, openGraph, runSession, tensor } from '../../inference/onnx-runtime.js';
import { preprocessBatch } from '../../model/image-preprocess.js';
import { seededRandom } from '../../util/seeded-random.js';
import { Adam } from '../adam.js';
import { differentiate } from '../graph-grad/differentiate.js';
import { type IrGraph, readGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import { initializersAsInputs } from '../text-tower/head-graph.js';
import { cancelled, invalid, mergeLora, normalizeRows, positive, positiveInt, runHeadEpochs, type BlockTuningOptions, type BlockTuningProgress, type HeadEpoch } from '../head-tuning.js';
import { fixedBatches } from '../training-batches.js';
import { type ActivationCache, activationBatch, cacheActivations } from './activation-cache.js';
import { type ImageHeadShape, type ImageHeadTensors, imageHeadGraph, imageTrainingGraph, LOGIT_SCALE, loraA, loraB, withImageLora } from './head-graph.js';
import { captionsOfImages, type ImageStepContext, imageStepFeeds } from './step-feeds.js';
import { type ImageTower, imageHeadTensorNames, imageResidualEntering, isImageMatrix, readImageHeadTensors, readImageTower, storedImageTensors } from './tower-source.js';
import { IMAGE_TOWER, mergedImageTowerBytes, writeFileAtomic, writeTunedImageModelDir } from './tower-writer.js';

/** A photo: its preprocessed pixels ([3, size, size] CHW, image-preprocess.ts) or a file to preprocess. */
export type PhotoInput = Float32Array | string;

export interface ImageBlockPair {
  /** Index into `photos`. */
  image: number;
  /** Row of `textEmbeddings`. */
  caption: number;
  split: 'train' | 'val';
}

export interface TuneImageBlocksOptions extends BlockTuningOptions {
  photos: readonly PhotoInput[];
  /** [captions, embedDim] fixed caption embeddings (normalised here). */
  textEmbeddings: Float32Array;
  pairs: readonly ImageBlockPair[];
  /** Pairs per step. Default 64. */
  batchSize?: number;
  /** Refuse an activation cache above this many bytes (default activation-cache.ts's MAX_CACHE_BYTES). */
  maxCacheBytes?: number;
  onProgress?: (p: ImageBlockProgress) => void;
}

export type ImageBlockProgress = BlockTuningProgress;

export type ImageBlockEpoch = HeadEpoch;

export interface TuneImageBlocksResult {
  /** The tuned tensors by their initializer names in the tower's graph, in the graph's own layout. */
  tensors: Map<string, { dims: number[]; data: Float32Array }>;
  /** The same by canonical name ([in, out] matrices), LoRA merged. */
  canonical: Map<string, Float32Array>;
  history: ImageBlockEpoch[];
  bestEpoch: number;
  /** Validation loss at the best epoch (null without validation pairs). */
  valLoss: number | null;
  stoppedEarly: boolean;
  logitScale: number;
  /** The training graph's normalised embedding of each photo at the best epoch. */
  imageEmbeddings: Float32Array[];
  /** Largest |rebuilt head − tower| over the photos before training (the check of step 3). */
  headError: number;
  /** Bytes the activation cache held. */
  cacheBytes: number;
  /**
   * Where the time went: reading the tower, preprocessing files, the activation cache, checking the rebuilt
   * head, building and differentiating the graph and opening its sessions (setup), the training steps, the
   * validation passes, the final embeddings (finish). trainMs = setup + steps + validation + finish.
   */
  timings: { readMs: number; preprocessMs: number; cacheMs: number; checkMs: number; setupMs: number; stepsMs: number; validationMs: number; finishMs: number; trainMs: number; steps: number };
  parameters: number;
  /** The image tower's graph with the tuned tensors merged in (built on first use). */
  towerBytes(): Uint8Array;
  /** Encodes photos with the tuned tower: normalised embeddings. */
  encodeImages(photos: readonly PhotoInput[]): Promise<Float32Array[]>;
  /** Writes the tuned image tower to `path` (temporary file + rename). */
  writeTower(path: string, signal?: AbortSignal): Promise<void>;
  /** Writes a complete model folder with the tuned image tower (loads as `--model outDir`). */
  writeModelDir(outDir: string, signal?: AbortSignal): Promise<string>;
}

export function imageHeadShape(tower: ImageTower, k: number): ImageHeadShape {
  return { width: tower.width, heads: tower.heads, embedDim: tower.embedDim, tokens: tower.tokens, first: tower.layers - k, layers: tower.layers, activations: tower.activations };
}

/** Pixels of each photo: tensors as given, files through the model's own preprocessing. A file that fails refuses the run, naming it. */
export async function photoPixels(tower: ImageTower, photos: readonly PhotoInput[]): Promise<Float32Array[]> {
  const plane = 3 * tower.imageSize ** 2;
  const files = photos.flatMap((p, i) => (typeof p === 'string' ? [{ p, i }] : []));
  const out = photos.map((p) => (typeof p === 'string' ? new Float32Array(0) : p));
  if (files.length > 0) {
    const batch = await preprocessBatch(files.map((f) => f.p), tower.spec.preprocess);
    batch.items.forEach((item, j) => {
      if (!item.ok) throw item.error;
      out[files[j]!.i] = batch.tensor.slice(j * plane, (j + 1) * plane);
    });
  }
  return out;
}

/** Runs the rebuilt head over cached photos: each photo's output as the tower's graph gives it. */
export async function runImageHead(tensors: ImageHeadTensors, shape: ImageHeadShape, cache: ActivationCache, photos: readonly number[], options: { normalize: boolean; threads?: number }): Promise<Float32Array[]> {
  const session = await openGraph(imageHeadGraph(tensors, shape, { normalize: options.normalize }), 'the rebuilt image head', options.threads === undefined ? {} : { threads: options.threads });
  try {
    const out: Float32Array[] = [];
    for (let s = 0; s < photos.length; s += 32) {
      const chunk = photos.slice(s, s + 32);
      const residual = activationBatch(cache, chunk);
      const r = await runSession(session, 'the rebuilt image head', () => ({ residual: tensor('float32', residual, [chunk.length, shape.tokens, shape.width]) }));
      const e = r.embeds!.data as Float32Array;
      chunk.forEach((_, i) => out.push(e.slice(i * shape.embedDim, (i + 1) * shape.embedDim)));
    }
    return out;
  } finally {
    await session.release();
  }
}

/**
 * The rebuilt head over every cached photo against the tower's own output: the largest |Δ|; MODEL_UNSUPPORTED
 * when it is above 1e-3 × the output's scale (the tower's last blocks are not CLIP's ViT).
 */
export async function checkImageHead(tower: ImageTower, shape: ImageHeadShape, cache: ActivationCache, theta0: ImageHeadTensors, threads: { threads?: number }): Promise<number> {
  const rebuilt = await runImageHead(theta0, shape, cache, Array.from({ length: cache.activations.length }, (_, i) => i), { normalize: tower.normalizedOutput, ...threads });
  let headError = 0;
  let scale = 0;
  rebuilt.forEach((row, p) => row.forEach((v, i) => {
    headError = Math.max(headError, Math.abs(v - cache.towerEmbeddings[p]![i]!));
    scale = Math.max(scale, Math.abs(cache.towerEmbeddings[p]![i]!));
  }));
  if (!(headError <= 1e-3 * scale)) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: the image head rebuilt from its initializers differs from the tower's own output by ${headError.toExponential(2)} (of ${scale.toExponential(2)}); its last blocks are not CLIP's ViT, so they are not tuned`);
  }
  return headError;
}

/** Runs a whole image tower graph over pixels: normalised embeddings. */
async function encodeWith(bytes: Uint8Array, tower: ImageTower, pixels: readonly Float32Array[], threads: { threads?: number }): Promise<Float32Array[]> {
  const g = readGraph(bytes);
  const input = g.inputs.find((v) => v.name === tower.spec.vision.input) ?? g.inputs[0]!;
  const output = g.outputs.find((v) => v.name === tower.spec.vision.output) ?? g.outputs[0]!;
  const fixed = typeof input.dims[0] === 'number' ? input.dims[0] : null;
  const S = tower.imageSize;
  const plane = 3 * S * S;
  const session = await openGraph(bytes, 'the tuned image tower', threads);
  try {
    const out: Float32Array[] = [];
    const size = fixed ?? 16;
    for (let s = 0; s < pixels.length; s += size) {
      const chunk = pixels.slice(s, s + size);
      const n = fixed ?? chunk.length;
      const packed = new Float32Array(n * plane);
      chunk.forEach((p, i) => packed.set(p, i * plane));
      const r = await runSession(session, 'the tuned image tower', () => ({ [input.name]: tensor('float32', packed, [n, 3, S, S]) }));
      const e = r[output.name]!.data as Float32Array;
      const E = e.length / n;
      chunk.forEach((_, i) => out.push(normalizeRows(e.slice(i * E, (i + 1) * E), E, 'image embedding')));
    }
    return out;
  } finally {
    await session.release();
  }
}

export async function tuneImageBlocks(options: TuneImageBlocksOptions): Promise<TuneImageBlocksResult> {
  const t0 = performance.now();
  const tower = await readImageTower(options.modelDir);
  const readMs = performance.now() - t0;
  const k = positiveInt(options.k ?? 2, 'k (image blocks)', tower.layers);
  const rank = options.lora ? positiveInt(options.lora, 'LoRA rank', tower.width) : null;
  const lambda = options.lambda ?? 1e-3;
  if (!(Number.isFinite(lambda) && lambda >= 0)) throw invalid(`lambda must be a number ≥ 0, got ${lambda}`);
  const lr = positive(options.learningRate ?? (rank ? 1e-3 : 1e-4), 'learning rate');
  const temperatureRate = positive(options.temperatureRate ?? 1e-2, 'temperature learning rate');
  const epochs = positiveInt(options.epochs ?? 30, 'epochs');
  const patience = positiveInt(options.patience ?? 5, 'patience');
  const batchSize = positiveInt(options.batchSize ?? 64, 'batch size');
  const E = tower.embedDim;
  if (options.textEmbeddings.length % E !== 0 || options.textEmbeddings.length === 0) throw invalid(`text embeddings are not rows of ${E} (the model's embedding size)`);
  const m = options.textEmbeddings.length / E;
  const photos = options.photos.length;
  for (const p of options.pairs) {
    if (!Number.isInteger(p.caption) || p.caption < 0 || p.caption >= m) throw invalid(`pair caption ${p.caption} is not one of the ${m} caption rows`);
    if (!Number.isInteger(p.image) || p.image < 0 || p.image >= photos) throw invalid(`pair image ${p.image} is not one of the ${photos} photos`);
    if (p.split !== 'train' && p.split !== 'val') throw invalid(`pair split must be train or val, got ${String(p.split)}`);
  }
  const train = options.pairs.filter((p) => p.split === 'train');
  const val = options.pairs.filter((p) => p.split === 'val');
  if (train.length < 2 || new Set(train.map((p) => p.caption)).size < 2) {
    throw new ClipdexError('NOT_ENOUGH_LABELS', `tuning image blocks needs training pairs with at least 2 different captions (has ${train.length} pairs, ${new Set(train.map((p) => p.caption)).size} captions)`);
  }
  const texts = normalizeRows(Float32Array.from(options.textEmbeddings), E, 'text embedding');
  const threads = options.threads === undefined ? {} : { threads: options.threads };
  const shape = imageHeadShape(tower, k);

  // 2. Pixels, then the activation cache.
  const preStart = performance.now();
  const pixels = await photoPixels(tower, options.photos);
  const preprocessMs = performance.now() - preStart;
  if (options.signal?.aborted) throw cancelled();
  const cache = await cacheActivations(tower, shape.first, pixels, imageResidualEntering(tower, shape.first), {
    ...threads,
    ...(options.maxCacheBytes === undefined ? {} : { maxBytes: options.maxCacheBytes }),
    signal: options.signal,
    onProgress: (done, total) => options.onProgress?.({ phase: 'cache', done, total }),
  });

  // 3. The rebuilt head must be the tower's head.
  const checkStart = performance.now();
  const theta0 = readImageHeadTensors(tower, shape.first);
  const all = Array.from({ length: photos }, (_, i) => i);
  const headError = await checkImageHead(tower, shape, cache, theta0, threads);
  const checkMs = performance.now() - checkStart;

  // 4. The training graph, differentiated once.
  const started = performance.now();
  let stepsMs = 0;
  let validationMs = 0;
  let forward: IrGraph = readGraph(imageTrainingGraph(theta0, shape, { logitScale: options.logitScale ?? tower.spec.logitScale }));
  const rand = seededRandom(options.seed ?? 1);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  if (rank) {
    // B = 0: training starts exactly at the pretrained weights; A ~ N(0, 1/r), as on the text side.
    forward = withImageLora(forward, rank, (_name, [inDim, outDim]) => ({
      a: Float32Array.from({ length: inDim! * rank }, () => gauss() / Math.sqrt(rank)),
      b: new Float32Array(rank * outDim!),
    }));
  }
  const names = imageHeadTensorNames(shape.first, shape.layers);
  const wrt = [...(rank ? names.flatMap((n) => (isImageMatrix(n) ? [loraA(n), loraB(n)] : [n])) : names), LOGIT_SCALE];
  const grad = differentiate(forward, { loss: 'loss', wrt });
  const values = new Map(grad.parameters.map((p) => [p.name, Float32Array.from(p.data as Float32Array)]));
  const dims = new Map(grad.parameters.map((p) => [p.name, p.dims]));
  const step: ImageStepContext = { cache, texts, embedDim: E, captionsOf: captionsOfImages(options.pairs.map((p) => [p.image, p.caption] as const)), values, dims };
  const batchFeeds = (pairs: readonly { image: number; caption: number }[], lambdaValue: number) => imageStepFeeds(step, pairs.map((p) => [p.image, p.caption] as const), lambdaValue);

  const stepSession = await openGraph(writeGraph(grad.graph), 'the image-block training step', threads);
  let evalSession: InferenceSession | null = null;
  try {
    evalSession = await openGraph(writeGraph(initializersAsInputs(forward, wrt)), 'the image-block validation pass', threads);
    const setupMs = performance.now() - started;
    const adam = new Map(wrt.map((n) => [n, new Adam(values.get(n)!.length, { learningRate: n === LOGIT_SCALE ? temperatureRate : lr })]));
    const valBatches = fixedBatches(val.length, batchSize).map((b) => batchFeeds(b.map((i) => val[i]!), 0));
    const loop = await runHeadEpochs({
      what: 'image',
      stepSession,
      evalSession,
      gradients: grad.gradients,
      values,
      adam,
      trainCount: train.length,
      batchSize,
      rand,
      trainBatch: (indices) => batchFeeds(indices.map((i) => train[i]!), lambda),
      valBatches,
      epochs,
      patience,
      ...(options.signal ? { signal: options.signal } : {}),
      onEpoch: ({ epoch, trainLoss, valLoss, bestEpoch, logitScale }) => options.onProgress?.({ phase: 'train', epoch, maxEpochs: epochs, trainLoss, valLoss, bestEpoch, logitScale }),
    });
    const { history, best, stoppedEarly, steps } = loop;
    stepsMs = loop.stepsMs;
    validationMs = loop.validationMs;

    // 5. The best epoch's weights, LoRA merged.
    const finishStart = performance.now();
    values.clear();
    for (const [n, v] of best.values) values.set(n, v);
    const canonical = new Map<string, Float32Array>();
    for (const name of names) {
      if (!rank || !isImageMatrix(name)) {
        canonical.set(name, values.get(name)!);
        continue;
      }
      const w = mergeLora(theta0.get(name)!, values.get(loraA(name))!, values.get(loraB(name))!, rank);
      canonical.set(name, w);
    }
    // Every photo's embedding from the training graph at the kept weights (one caption row: the loss is not read).
    const imageEmbeddings: Float32Array[] = [];
    for (let s = 0; s < photos; s += 32) {
      const rows = all.slice(s, s + 32);
      const out = await runSession(evalSession, 'embedding the photos', batchFeeds(rows.map((image) => ({ image, caption: 0 })), 0).feeds);
      const e = out.embeds!.data as Float32Array;
      rows.forEach((_, i) => imageEmbeddings.push(e.slice(i * E, (i + 1) * E)));
    }
    const tensors = storedImageTensors(tower, canonical);
    let mergedBytes: Uint8Array | null = null;
    const merged = (): Uint8Array => {
      mergedBytes ??= mergedImageTowerBytes(tower, canonical);
      return mergedBytes;
    };
    return {
      tensors,
      canonical,
      history,
      bestEpoch: best.epoch,
      valLoss: valBatches.length > 0 ? best.loss : null,
      stoppedEarly,
      logitScale: Math.exp(values.get(LOGIT_SCALE)![0]!),
      imageEmbeddings,
      headError,
      cacheBytes: cache.bytes,
      timings: { readMs, preprocessMs, cacheMs: cache.ms, checkMs, setupMs, stepsMs, validationMs, finishMs: performance.now() - finishStart, trainMs: performance.now() - started, steps },
      parameters: wrt.reduce((s, n) => s + (values.get(n)?.length ?? 0), 0),
      towerBytes: merged,
      encodeImages: async (inputs) => encodeWith(merged(), tower, await photoPixels(tower, inputs), threads),
      writeTower: (path, signal) => writeFileAtomic(path, merged(), signal, IMAGE_TOWER),
      writeModelDir: (outDir, signal) => writeTunedImageModelDir(tower, merged(), outDir, signal),
    };
  } finally {
    await stepSession.release();
    await evalSession?.release();
  }
}
