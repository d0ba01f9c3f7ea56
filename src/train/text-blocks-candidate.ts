/**
 * The last k blocks of the text tower (its final LayerNorm and projection with them), full or LoRA, as a
 * candidate beside the projection adapters (candidate.ts): the trainer's split, selection, blend and verdict
 * treat both alike. The image side is the locked image tower — the photos' stored embeddings as they are,
 * no projection — so a text-tuned version never re-encodes or re-projects a photo (LiT); what depth buys
 * is then measured against the adapter on the same split, without an image adapter muddying it.
 *
 * The pieces are text-tower/'s (tune-text-blocks.ts runs the same recipe as one call); here the loop is
 * the trainer's, so fits start, step and snapshot on the trainer's pairs and folds.
 */
import { ClipdexError } from '../errors.js';
import { type InferenceSession, openGraph } from '../inference/onnx-runtime.js';
import { loadTextTokenizer } from '../model/text-tokenizer.js';
import type { CandidateKind } from './candidate.js';
import { differentiate } from './graph-grad/differentiate.js';
import { readGraph, writeGraph } from './graph-grad/onnx-ir.js';
import type { EmbeddedPairs } from './training-batches.js';
import { initializersAsInputs, LOGIT_SCALE, loraA, loraB, trainingGraph, withLora } from './text-tower/head-graph.js';
import { cacheResiduals } from './text-tower/residual-cache.js';
import { captionsByImage, stepFeeds } from './text-tower/step-feeds.js';
import { headTensorNames, isMatrix, readTextTower, residualEntering, type TextTower } from './text-tower/tower-source.js';
import { headShape, readHeadTensors, runHead } from './text-tower/tune-text-blocks.js';
import { type BlockFitSetup, type HeadParameters, mergeLora, startBlockFit, toUnitRows } from './head-tuning.js';
import { mergedTowerBytes } from './text-tower/tower-writer.js';

export interface TextBlocksOptions {
  /** The model folder whose text tower is tuned (the library's base model). */
  modelDir: string;
  /** The distinct captions, in the data's caption order. */
  captions: readonly string[];
  /** Blocks to tune, from the top. */
  k: number;
  /** LoRA rank of the matrices; null = full weights. */
  lora: number | null;
  batchSize: number;
  /** Adam's step for the head; default 1e-4 full, 1e-3 LoRA (tune-text-blocks' measured defaults). */
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
export type TextBlockWeights = HeadParameters;

export interface TextBlocksKind extends CandidateKind<TextBlockWeights> {
  readonly tower: TextTower;
  readonly k: number;
  readonly lora: number | null;
  /** The head's tensors (canonical names) blended towards the pretrained ones: θ0 + blend·(θ − θ0). */
  headTensors(weights: TextBlockWeights, blend: number): Map<string, Float32Array>;
  /** The tower's graph with those tensors merged in. */
  towerBytes(weights: TextBlockWeights, blend: number): Uint8Array;
  /** Other texts (rows × embedDim, normalised) under those weights: their frozen blocks run once, then the head. */
  encode(texts: readonly string[], weights: TextBlockWeights, blend: number): Promise<Float32Array>;
  /**
   * Learn and score against these photo embeddings (rows × embedDim, the data's photo rows) from now on: a
   * joint run's second stage fits the text head against the tuned image tower's embeddings of the photos.
   * The kind is made before any fit (its checks refuse a bad request early), so the photos come later.
   */
  useImages(rows: Float32Array): void;
}

export async function textBlocksCandidate(data: EmbeddedPairs, o: TextBlocksOptions): Promise<TextBlocksKind> {
  const tower = await readTextTower(o.modelDir);
  const E = tower.embedDim;
  const D = tower.width;
  if (E !== data.dim) throw new ClipdexError('MODEL_INVALID', `${o.modelDir}: the text tower's ${E}-dimensional embeddings are not the library's ${data.dim}`);
  if (!Number.isInteger(o.k) || o.k < 1 || o.k > tower.layers) throw new ClipdexError('INVALID_ARGUMENT', `text blocks must be an integer from 1 to ${tower.layers} (the model's text layers), got ${o.k}`);
  if (o.lora !== null && (!Number.isInteger(o.lora) || o.lora < 1 || o.lora > D)) throw new ClipdexError('INVALID_ARGUMENT', `LoRA rank must be an integer from 1 to ${D} (the text width), got ${o.lora}`);
  const rank = o.lora;
  const m = o.captions.length;
  if (m * E !== data.texts.length) throw new ClipdexError('INVALID_ARGUMENT', `${m} caption texts for ${data.texts.length / E} caption rows`);
  const threads = o.threads === undefined ? {} : { threads: o.threads };
  const shape = headShape(tower, o.k);
  let images = toUnitRows(Float32Array.from(data.images), E);
  const photos = images.length / E;

  const tokenizer = await loadTextTokenizer(tower.spec);
  const tokenized = await tokenizer.tokenize(o.captions, tower.contextLength);
  const cache = await cacheResiduals(tower, shape.first, tokenized.map((t) => t.ids), residualEntering(tower, shape.first), {
    ...threads,
    padId: tokenizer.padId,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onCache ? { onProgress: o.onCache } : {}),
  });
  const theta0 = readHeadTensors(tower, shape.first);
  const names = headTensorNames(shape.first, shape.layers);
  let forward = readGraph(trainingGraph(theta0, shape, { logitScale: o.logitScale }));
  if (rank) forward = withLora(forward, rank, (_n, [inDim, outDim]) => ({ a: new Float32Array(inDim! * rank), b: new Float32Array(rank * outDim!) }));
  const wrt = [...(rank ? names.flatMap((n) => (isMatrix(n) ? [loraA(n), loraB(n)] : [n])) : names), LOGIT_SCALE];
  const grad = differentiate(forward, { loss: 'loss', wrt });
  const initial = new Map(grad.parameters.map((p) => [p.name, Float32Array.from(p.data as Float32Array)]));
  const dims = new Map(grad.parameters.map((p) => [p.name, p.dims]));
  const stepSession: InferenceSession = await openGraph(writeGraph(grad.graph), 'the text-block training step', threads);
  const evalSession: InferenceSession = await openGraph(writeGraph(initializersAsInputs(forward, wrt)), 'the text-block validation pass', threads).catch(async (err: unknown) => {
    await stepSession.release();
    throw err;
  });
  const lr = o.learningRate ?? (rank ? 1e-3 : 1e-4);
  const lambda = o.lambda ?? 1e-3;
  const captionsOf = captionsByImage(data.pairs);
  const feedsFor = (pairs: readonly number[], values: ReadonlyMap<string, Float32Array>, lambdaValue: number) =>
    stepFeeds({ cache, images, embedDim: E, captionsOf, values, dims }, pairs.map((k) => data.pairs[k]!), lambdaValue);

  const headTensors = (weights: TextBlockWeights, blend: number): Map<string, Float32Array> => {
    const out = new Map<string, Float32Array>();
    for (const name of names) {
      const base = theta0.get(name)!;
      const tuned = rank && isMatrix(name) ? mergeLora(base, weights.values.get(loraA(name))!, weights.values.get(loraB(name))!, rank) : weights.values.get(name)!;
      // WiSE-FT: the blend moves along the straight line from the pretrained weights to the fit's.
      out.set(name, Float32Array.from(base, (v, i) => v + blend * (tuned[i]! - v)));
    }
    return out;
  };

  const allCaptions = Array.from({ length: m }, (_, i) => i);
  const fitSetup: BlockFitSetup = {
    what: 'text',
    stepSession,
    evalSession,
    gradients: grad.gradients,
    wrt,
    initial,
    lora: rank ? { rank, matrices: names.filter(isMatrix) } : null,
    learningRate: lr,
    lambda,
    batchSize: o.batchSize,
    batch: feedsFor,
    ...(o.signal ? { signal: o.signal } : {}),
  };
  return {
    name: rank ? `text-blocks (k=${o.k}, LoRA ${rank})` : `text-blocks (k=${o.k})`,
    tower,
    k: o.k,
    lora: rank,
    start: (trainPairs, seed) => startBlockFit(fitSetup, trainPairs, seed),
    async similarities(weights, blend, imageRows) {
      const texts = await runHead(headTensors(weights, blend), shape, cache, allCaptions, { normalize: true, ...threads });
      const out = new Float32Array(imageRows.length * m);
      imageRows.forEach((row, r) => {
        if (row < 0 || row >= photos) throw new ClipdexError('INVALID_ARGUMENT', `image row ${row} is not one of ${photos}`);
        const x = images.subarray(row * E, (row + 1) * E);
        texts.forEach((t, c) => {
          let s = 0;
          for (let k = 0; k < E; k++) s += x[k]! * t[k]!;
          out[r * m + c] = s;
        });
      });
      return out;
    },
    headTensors,
    towerBytes: (weights, blend) => mergedTowerBytes(tower, headTensors(weights, blend)),
    async encode(texts, weights, blend) {
      const rows = await tokenizer.tokenize(texts, tower.contextLength);
      const own = await cacheResiduals(tower, shape.first, rows.map((t) => t.ids), residualEntering(tower, shape.first), { ...threads, padId: tokenizer.padId });
      const out = await runHead(headTensors(weights, blend), shape, own, Array.from({ length: texts.length }, (_, i) => i), { normalize: true, ...threads });
      const flat = new Float32Array(texts.length * E);
      out.forEach((v, i) => flat.set(v, i * E));
      return flat;
    },
    useImages(rows) {
      if (rows.length !== photos * E) throw new ClipdexError('INVALID_ARGUMENT', `${rows.length / E} photo rows for ${photos}`);
      images = toUnitRows(Float32Array.from(rows), E);
    },
    async release() {
      await stepSession.release();
      await evalSession.release();
    },
  };
}
