/**
 * Fine-tunes the last k blocks of a CLIP text tower, its final LayerNorm and its projection on labeled
 * (caption, photo) pairs against the photos' stored embeddings (issue 17, "text side"; the image tower stays
 * locked, LiT-style, so no photo is re-encoded).
 *
 *   1. the tower is read as it is (tower-source.ts) and the tensors to tune located in its graph;
 *   2. the residual stream entering block L−k is cached once per distinct caption (residual-cache.ts);
 *   3. the head rebuilt from the initializers (head-graph.ts) must reproduce the tower's own output on those
 *      captions — a model whose head is not CLIP's is refused here instead of trained wrongly;
 *   4. the training graph (head → normalise → scaled cosine → multi-positive symmetric InfoNCE with a
 *      learnable temperature, + λ·|θ − θ0|²) is differentiated once (graph-grad) and each step is one ORT
 *      run; Adam updates every tensor; early stopping on the validation pairs' loss;
 *   5. the best epoch's tensors come back by their names in the real graph, and merged into it on request.
 *
 * A step covers every distinct caption of its batch of pairs, so the text cost of an epoch grows with the
 * captions, not the pairs: the default batch (1024 pairs) puts a 1k-pair set in one step per epoch, where a
 * bigger batch also gives InfoNCE more negatives.
 */
import { ClipdexError } from '../../errors.js';
import { type InferenceSession, openGraph, runSession, tensor } from '../../inference/onnx-runtime.js';
import { loadTextTokenizer } from '../../model/text-tokenizer.js';
import { projectRows } from '../../adapter/adapter-weights.js';
import { seededRandom } from '../../util/seeded-random.js';
import { Adam } from '../adam.js';
import { differentiate } from '../graph-grad/differentiate.js';
import { type IrGraph, readGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import { fixedBatches } from '../training-batches.js';
import { invalid, mergeLora, normalizeRows, positive, positiveInt, runHeadEpochs, type BlockTuningOptions, type BlockTuningProgress, type HeadEpoch } from '../head-tuning.js';
import { type HeadShape, type HeadTensors, headGraph, initializersAsInputs, LOGIT_SCALE, loraA, loraB, trainingGraph, withLora } from './head-graph.js';
import { cacheResiduals, type ResidualCache, residualBatch } from './residual-cache.js';
import { captionsByImage, stepFeeds } from './step-feeds.js';
import { headTensorNames, isMatrix, readTensor, readTextTower, residualEntering, type TextTower } from './tower-source.js';
import { mergedTowerBytes, storedTensors, writeFileAtomic, writeTunedModelDir } from './tower-writer.js';

export interface TextBlockPair {
  /** Index into `captions`. */
  caption: number;
  /** Row of `imageEmbeddings`. */
  image: number;
  split: 'train' | 'val';
}

export interface TuneTextBlocksOptions extends BlockTuningOptions {
  /** The distinct captions. */
  captions: readonly string[];
  /** [photos, embedDim] stored image embeddings (normalised here). */
  imageEmbeddings: Float32Array;
  /** An image adapter (embedDim²; u = x·W) the photos are projected through first, as the active version does. */
  imageAdapter?: Float32Array;
  pairs: readonly TextBlockPair[];
  /** Pairs per step. Default 1024. */
  batchSize?: number;
  onProgress?: (p: TextBlockProgress) => void;
}

export type TextBlockProgress = BlockTuningProgress;

export type TextBlockEpoch = HeadEpoch;

export interface TuneTextBlocksResult {
  /** The tuned tensors by their initializer names in the tower's graph, in the graph's own layout (a fused in_proj whole). */
  tensors: Map<string, { dims: number[]; data: Float32Array }>;
  /** The same by canonical name ([in, out] matrices), LoRA merged. */
  canonical: Map<string, Float32Array>;
  history: TextBlockEpoch[];
  bestEpoch: number;
  /** Validation loss at the best epoch (null without validation pairs). */
  valLoss: number | null;
  stoppedEarly: boolean;
  logitScale: number;
  /** The training graph's normalised embedding of each caption at the best epoch. */
  captionEmbeddings: Float32Array[];
  /** Largest |rebuilt head − tower| over the captions before training (the check of step 3). */
  headError: number;
  /**
   * Where the time went: reading the tower (parse), the residual cache, checking the rebuilt head, building
   * and differentiating the graph and opening its sessions (setup), the training steps, the validation
   * passes, and merging the result into the tower (finish). trainMs = setup + steps + validation + finish.
   */
  timings: { readMs: number; cacheMs: number; checkMs: number; setupMs: number; stepsMs: number; validationMs: number; finishMs: number; trainMs: number; steps: number; positionsCached: number };
  parameters: number;
  /** The tower's graph with the tuned tensors merged in. */
  towerBytes(): Uint8Array;
  /** Encodes texts with the tuned tower: normalised embeddings. */
  encodeTexts(texts: readonly string[]): Promise<Float32Array[]>;
  /** Writes the tuned text tower to `path` (temporary file + rename). */
  writeTower(path: string, signal?: AbortSignal): Promise<void>;
  /** Writes a complete model folder with the tuned text tower (loads as `--model outDir`). */
  writeModelDir(outDir: string, signal?: AbortSignal): Promise<string>;
}

/** The tower's current head tensors, canonical names, [in, out] matrices. */
export function readHeadTensors(tower: TextTower, first: number): Map<string, Float32Array> {
  return new Map(headTensorNames(first, tower.layers).map((n) => [n, readTensor(tower, n)]));
}

export function headShape(tower: TextTower, k: number): HeadShape {
  return { width: tower.width, heads: tower.heads, embedDim: tower.embedDim, contextLength: tower.contextLength, first: tower.layers - k, layers: tower.layers, activations: tower.activations };
}

/** Runs the rebuilt head over cached captions: each caption's output as the tower's graph gives it. */
export async function runHead(tensors: HeadTensors, shape: HeadShape, cache: ResidualCache, captions: readonly number[], options: { normalize: boolean; threads?: number }): Promise<Float32Array[]> {
  const session = await openGraph(headGraph(tensors, shape, { normalize: options.normalize }), 'the rebuilt text head', options.threads === undefined ? {} : { threads: options.threads });
  try {
    const out: Float32Array[] = [];
    for (let s = 0; s < captions.length; s += 64) {
      const chunk = captions.slice(s, s + 64);
      const { residual, poolIndex, T } = residualBatch(cache, chunk);
      const r = await runSession(session, 'the rebuilt text head', () => ({
        residual: tensor('float32', residual, [chunk.length, T, shape.width]),
        pool_index: tensor('int64', poolIndex, [chunk.length, 1, shape.width]),
      }));
      const e = r.embeds!.data as Float32Array;
      chunk.forEach((_, i) => out.push(e.slice(i * shape.embedDim, (i + 1) * shape.embedDim)));
    }
    return out;
  } finally {
    await session.release();
  }
}

export async function tuneTextBlocks(options: TuneTextBlocksOptions): Promise<TuneTextBlocksResult> {
  const t0 = performance.now();
  const tower = await readTextTower(options.modelDir);
  const readMs = performance.now() - t0;
  const k = positiveInt(options.k ?? 2, 'k (text blocks)', tower.layers);
  const rank = options.lora ? positiveInt(options.lora, 'LoRA rank', tower.width) : null;
  const lambda = options.lambda ?? 1e-3;
  if (!(Number.isFinite(lambda) && lambda >= 0)) throw invalid(`lambda must be a number ≥ 0, got ${lambda}`);
  const lr = positive(options.learningRate ?? (rank ? 1e-3 : 1e-4), 'learning rate');
  const temperatureRate = positive(options.temperatureRate ?? 1e-2, 'temperature learning rate');
  const epochs = positiveInt(options.epochs ?? 30, 'epochs');
  const patience = positiveInt(options.patience ?? 5, 'patience');
  const batchSize = positiveInt(options.batchSize ?? 1024, 'batch size');
  const E = tower.embedDim;
  const m = options.captions.length;
  if (options.imageEmbeddings.length % E !== 0) throw invalid(`image embeddings are not rows of ${E} (the model's embedding size)`);
  const photos = options.imageEmbeddings.length / E;
  for (const p of options.pairs) {
    if (!Number.isInteger(p.caption) || p.caption < 0 || p.caption >= m) throw invalid(`pair caption ${p.caption} is not one of the ${m} captions`);
    if (!Number.isInteger(p.image) || p.image < 0 || p.image >= photos) throw invalid(`pair image ${p.image} is not one of the ${photos} image rows`);
    if (p.split !== 'train' && p.split !== 'val') throw invalid(`pair split must be train or val, got ${String(p.split)}`);
  }
  const train = options.pairs.filter((p) => p.split === 'train');
  const val = options.pairs.filter((p) => p.split === 'val');
  if (train.length < 2 || new Set(train.map((p) => p.caption)).size < 2) {
    throw new ClipdexError('NOT_ENOUGH_LABELS', `tuning text blocks needs training pairs with at least 2 different captions (has ${train.length} pairs, ${new Set(train.map((p) => p.caption)).size} captions)`);
  }
  let images = Float32Array.from(options.imageEmbeddings);
  if (options.imageAdapter) {
    if (options.imageAdapter.length !== E * E) throw invalid(`the image adapter is not ${E}×${E}`);
    images = Float32Array.from(projectRows(images, photos, options.imageAdapter, E));
  }
  normalizeRows(images, E, 'image embedding');
  const threads = options.threads === undefined ? {} : { threads: options.threads };
  const shape = headShape(tower, k);

  // 2. The residual cache.
  const tokenizer = await loadTextTokenizer(tower.spec);
  const tokenized = await tokenizer.tokenize(options.captions, tower.contextLength);
  const cache = await cacheResiduals(tower, shape.first, tokenized.map((t) => t.ids), residualEntering(tower, shape.first), {
    ...threads,
    padId: tokenizer.padId,
    signal: options.signal,
    onProgress: (done, total) => options.onProgress?.({ phase: 'cache', done, total }),
  });

  // 3. The rebuilt head must be the tower's head.
  const checkStart = performance.now();
  const theta0 = readHeadTensors(tower, shape.first);
  const all = Array.from({ length: m }, (_, i) => i);
  const rebuilt = await runHead(theta0, shape, cache, all, { normalize: tower.normalizedOutput, ...threads });
  let headError = 0;
  let scale = 0;
  rebuilt.forEach((row, c) => row.forEach((v, i) => {
    headError = Math.max(headError, Math.abs(v - cache.towerEmbeddings[c]![i]!));
    scale = Math.max(scale, Math.abs(cache.towerEmbeddings[c]![i]!));
  }));
  if (!(headError <= 1e-3 * scale)) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: the text head rebuilt from its initializers differs from the tower's own output by ${headError.toExponential(2)} (of ${scale.toExponential(2)}); its last blocks are not CLIP's, so they are not tuned`);
  }

  const checkMs = performance.now() - checkStart;

  // 4. The training graph, differentiated once.
  const started = performance.now();
  let stepsMs = 0;
  let validationMs = 0;
  let setupMs = 0;
  let forward: IrGraph = readGraph(trainingGraph(theta0, shape, { logitScale: options.logitScale ?? tower.spec.logitScale }));
  const rand = seededRandom(options.seed ?? 1);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  if (rank) {
    // B = 0: training starts exactly at the pretrained weights. A ~ N(0, 1/r), so one Adam step on B moves
    // W by about the learning rate per element, as a step of the full matrix would.
    forward = withLora(forward, rank, (_name, [inDim, outDim]) => ({
      a: Float32Array.from({ length: inDim! * rank }, () => gauss() / Math.sqrt(rank)),
      b: new Float32Array(rank * outDim!),
    }));
  }
  const wrt = [...(rank ? headTensorNames(shape.first, shape.layers).flatMap((n) => (isMatrix(n) ? [loraA(n), loraB(n)] : [n])) : headTensorNames(shape.first, shape.layers)), LOGIT_SCALE];
  const grad = differentiate(forward, { loss: 'loss', wrt });
  const values = new Map(grad.parameters.map((p) => [p.name, Float32Array.from(p.data as Float32Array)]));
  const dims = new Map(grad.parameters.map((p) => [p.name, p.dims]));
  const stepSession = await openGraph(writeGraph(grad.graph), 'the text-block training step', threads);
  let evalSession: InferenceSession | null = null;
  try {
    evalSession = await openGraph(writeGraph(initializersAsInputs(forward, wrt)), 'the text-block validation pass', threads);
    setupMs = performance.now() - started;
    const adam = new Map(wrt.map((n) => [n, new Adam(values.get(n)!.length, { learningRate: n === LOGIT_SCALE ? temperatureRate : lr })]));
    const step = { cache, images, embedDim: E, captionsOf: captionsByImage(options.pairs.map((p) => [p.image, p.caption] as const)), values, dims };
    const batchFeeds = (pairs: readonly TextBlockPair[], lambdaValue: number) => stepFeeds(step, pairs.map((p) => [p.image, p.caption] as const), lambdaValue);

    const valBatches = fixedBatches(val.length, batchSize).map((b) => batchFeeds(b.map((i) => val[i]!), 0));
    const loop = await runHeadEpochs({
      what: 'text',
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
    for (const name of headTensorNames(shape.first, shape.layers)) {
      if (!rank || !isMatrix(name)) {
        canonical.set(name, values.get(name)!);
        continue;
      }
      canonical.set(name, mergeLora(theta0.get(name)!, values.get(loraA(name))!, values.get(loraB(name))!, rank));
    }
    // Every caption's embedding from the training graph at the kept weights.
    const captionEmbeddings: Float32Array[] = [];
    for (let s = 0; s < m; s += 64) {
      const rows = all.slice(s, s + 64);
      const dummy = rows.map((c) => ({ caption: c, image: 0, split: 'train' as const }));
      const out = await runSession(evalSession, 'embedding the captions', batchFeeds(dummy, 0).feeds);
      const e = out.embeds!.data as Float32Array;
      rows.forEach((_, i) => captionEmbeddings.push(e.slice(i * E, (i + 1) * E)));
    }
    const tensors = storedTensors(tower, canonical);
    // Merged on first use: serialising a ViT-B/32 tower takes seconds that a caller who only wants the tensors should not pay.
    let mergedBytes: Uint8Array | null = null;
    const merged = (): Uint8Array => {
      mergedBytes ??= mergedTowerBytes(tower, canonical);
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
      captionEmbeddings,
      headError,
      timings: { readMs, cacheMs: cache.ms, checkMs, setupMs, stepsMs, validationMs, finishMs: performance.now() - finishStart, trainMs: performance.now() - started, steps, positionsCached: cache.positionsRun },
      parameters: wrt.reduce((s, n) => s + (values.get(n)?.length ?? 0), 0),
      towerBytes: merged,
      encodeTexts: async (texts) => {
        const tuned: TextTower = { ...tower, graph: readGraph(merged()) };
        const rows = await tokenizer.tokenize(texts, tower.contextLength);
        const out = await cacheResiduals(tuned, shape.first, rows.map((r) => r.ids), residualEntering(tuned, shape.first), { ...threads, padId: tokenizer.padId });
        return out.towerEmbeddings.map((v) => normalizeRows(Float32Array.from(v), E, 'text embedding'));
      },
      writeTower: (path, signal) => writeFileAtomic(path, merged(), signal),
      writeModelDir: (outDir, signal) => writeTunedModelDir(tower, merged(), outDir, signal),
    };
  } finally {
    await stepSession.release();
    await evalSession?.release();
  }
}
