/**
 * Fine-tunes a candidate (today the two projection adapters) on embedded pairs and judges it honestly.
 * The labeled photos come split three ways (pair-split.ts): the choices — the epoch early stopping keeps,
 * the WiSE-FT blend between the base and the tuned model — are made on the validation part when it is
 * large enough, else by k-fold cross-validation over the photos the model learns from (cross-validation.ts);
 * the verdict and the before/after table come from the test photos, which no choice has seen, with a
 * bootstrap interval on the gain (verdict.ts). Pure computation: embeddings in, weights and numbers out;
 * reading the library and saving the version belong to the adapter service.
 */
import { ClipdexError } from '../errors.js';
import { mixAdapter, type AdapterWeights } from '../adapter/adapter-weights.js';
import { projectBulk, similarityMatrix } from '../adapter/projection-kernel.js';
import { parseParam } from '../validation/param-rules.js';
import { batchSizeRule, blendsRule, epochsRule, foldsRule, identityPenaltyRule, learningRateRule, patienceRule, seedRule } from '../validation/train-params.js';
import { adapterCandidate } from './adapter-candidate.js';
import { type TextBlocksKind, type TextBlockWeights, textBlocksCandidate } from './text-blocks-candidate.js';
import { type ImageBlocksKind, type ImageBlockWeights, imageBlocksCandidate } from './image-blocks-candidate.js';
import type { PhotoInput } from './image-tower/tune-image-blocks.js';
import type { CandidateFit, CandidateKind } from './candidate.js';
import { DEFAULT_FOLDS, foldCount, makeFolds, selectionMethod, type Fold, type SelectionMethod } from './cross-validation.js';
import type { PhotoSplit } from './pair-split.js';
import { meanRecall, retrievalDetail, type RetrievalMetrics } from './retrieval-metrics.js';
import type { EmbeddedPairs, TargetMode } from './training-batches.js';
import { judge, measureGain, type Gain, type TestSet } from './verdict.js';

export interface TrainingData extends EmbeddedPairs {
  /** Part of each photo row. */
  imageSplit: readonly PhotoSplit[];
  /** Each photo row's content hash (folds follow content); the row number when absent. */
  photoKeys?: readonly string[];
  /** Each caption row's text (names untested captions, stratifies folds); "caption N" when absent. */
  captionTexts?: readonly string[];
  /** The base model's logit scale (e^s; 100 for OpenAI's CLIP): where the learnable temperature starts. */
  logitScale: number;
  /**
   * For the retention report: base embeddings of phrases that are not captions in the training set, and
   * a sample of the library's photos to search with them.
   */
  probes?: { texts: Float32Array; count: number; gallery: Float32Array; galleryCount: number; phrases?: readonly string[] };
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
  /** WiSE-FT blends tried (then ±0.1 around the best). Default 0, 0.2, …, 1. */
  blends?: number[];
  /** Folds of the cross-validation used on small sets. Default 5. */
  folds?: number;
  /** How the choices are made: 'auto' (default) uses the validation part from 30 photos, else cross-validation. */
  selection?: 'auto' | SelectionMethod;
  threads?: number;
}

export interface EpochRecord {
  epoch: number;
  /** Mean training loss (over the folds, under cross-validation). */
  trainLoss: number;
  /** Validation loss (the folds' mean held-out loss under cross-validation); null without held-out pairs. */
  valLoss: number | null;
  /** The learned logit scale e^s after the epoch (the folds' mean under cross-validation). */
  logitScale: number;
}

export interface TrainProgress {
  /** 'holdout' / 'cross-validation': choosing the epoch; 'final': the fit on every train and validation photo. */
  stage: 'holdout' | 'cross-validation' | 'final';
  folds: number;
  epoch: number;
  maxEpochs: number;
  /** The curve early stopping watches (the final fit adds none). */
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

export interface Selection {
  method: SelectionMethod;
  /** 1 for the validation part. */
  folds: number;
  /** Photos the choices were scored on (validation photos, or every photo of the folds). */
  photos: number;
  /** The epoch chosen (the weights of that epoch, or a final fit of that many epochs). */
  epochs: number;
}

export interface TrainOutcome {
  /** The blended adapter (what would be activated). */
  weights: AdapterWeights;
  /** The blend chosen: 0 = base, 1 = fully fine-tuned. */
  blend: number;
  /** Mean recall at each blend tried, as the choice scored it (validation or cross-validation, never test). */
  blends: { blend: number; meanRecall: number }[];
  selection: Selection;
  logitScale: number;
  history: EpochRecord[];
  bestEpoch: number;
  stoppedEarly: boolean;
  /** Test photos, base model. */
  before: RetrievalMetrics | null;
  /** Test photos, the version. */
  after: RetrievalMetrics | null;
  /** The headline gain on the test photos with its bootstrap interval; null without test photos. */
  gain: Gain | null;
  test: TestSet;
  retention: Retention | null;
  /** Shown better than the base model on the test photos: the interval on the gain is above 0. */
  improved: boolean;
  /** Why it did or did not improve, in words for the user. */
  verdict: string;
  /** Pairs and photos the saved weights learned from. */
  trainPairs: number;
  trainImages: number;
  /** Pairs and photos used only for the choices (0 under cross-validation, where they are learned from too). */
  valPairs: number;
  valImages: number;
  testPairs: number;
  testImages: number;
  captions: number;
  durationMs: number;
  options: Required<Omit<TrainOptions, 'threads'>>;
}

/** The options with their defaults, each through its rule (validation/train-params): INVALID_ARGUMENT naming the first bad one. */
export function resolveTrainOptions(o: TrainOptions = {}): Required<Omit<TrainOptions, 'threads'>> {
  const epochs = parseParam(epochsRule, o.epochs ?? 100, 'epochs');
  const batchSize = parseParam(batchSizeRule, o.batchSize ?? 256, 'batch size');
  const patience = parseParam(patienceRule, o.patience ?? 8, 'patience');
  const seed = parseParam(seedRule, o.seed ?? 1, 'seed');
  const learningRate = parseParam(learningRateRule, o.learningRate ?? 2e-3, 'learning rate');
  const identityPenalty = parseParam(identityPenaltyRule, o.identityPenalty ?? 0.01, 'identity penalty');
  const blends = parseParam(blendsRule, o.blends ?? [0, 0.2, 0.4, 0.6, 0.8, 1], 'blends');
  const folds = parseParam(foldsRule, o.folds ?? DEFAULT_FOLDS, 'folds');
  const selection = o.selection ?? 'auto';
  if (!['auto', 'holdout', 'cross-validation'].includes(selection)) throw new ClipdexError('INVALID_ARGUMENT', `selection must be "auto", "holdout" or "cross-validation", got ${JSON.stringify(selection)}`);
  return { epochs, batchSize, learningRate, identityPenalty, patience, seed, targets: o.targets ?? 'multi-positive', blends, folds, selection };
}

type Options = Required<Omit<TrainOptions, 'threads'>>;

/** The run's checks before any fit: the selection method and the pairs learned from. */
function planRun(data: TrainingData, opts: Options): { method: SelectionMethod; fitPairs: number[] } {
  const pairsIn = (part: PhotoSplit) => data.pairs.flatMap((p, k) => (data.imageSplit[p[0]] === part ? [k] : []));
  const rowsIn = (part: PhotoSplit) => data.imageSplit.flatMap((s, i) => (s === part ? [i] : []));
  const method = selectionMethod(rowsIn('val').length, opts.selection);
  if (method === 'holdout' && rowsIn('val').length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'a validation part is needed to choose on it: raise the validation share, or let the trainer cross-validate');
  const fitPairs = method === 'holdout' ? pairsIn('train') : [...pairsIn('train'), ...pairsIn('val')].sort((a, b) => a - b);
  const fitCaptions = new Set(fitPairs.map((k) => data.pairs[k]![1]));
  if (fitPairs.length < 4 || fitCaptions.size < 2) {
    throw new ClipdexError(
      'NOT_ENOUGH_LABELS',
      `training needs at least 4 labeled photos with at least 2 different captions to learn from, besides the test photos (has ${fitPairs.length} pairs, ${fitCaptions.size} caption${fitCaptions.size === 1 ? '' : 's'}): contrastive learning learns from telling captions apart`,
    );
  }
  return { method, fitPairs };
}

export async function trainAdapters(data: TrainingData, options: TrainOptions = {}, onProgress?: (p: TrainProgress) => void, signal?: AbortSignal): Promise<TrainOutcome> {
  const started = performance.now();
  const opts = resolveTrainOptions(options);
  const plan = planRun(data, opts);
  const kind = await adapterCandidate(data, { ...opts, logitScale: data.logitScale, ...(options.threads === undefined ? {} : { threads: options.threads }) });
  try {
    const { fitted, outcome } = await judgeCandidate(kind, data, opts, plan, onProgress, signal);
    const weights = mixAdapter(fitted.weights, fitted.blend);
    const p = data.probes;
    const d = data.dim;
    return { ...outcome, weights, retention: p ? await retention(p, d, await projectBulk(p.texts, p.count, weights.text, d), await projectBulk(p.gallery, p.galleryCount, weights.image, d)) : null, durationMs: Math.round(performance.now() - started) };
  } finally {
    await kind.release();
  }
}

/** A candidate's outcome without its weights: what the CLI, API and stored metrics show of it. */
export type CandidateOutcome = Omit<TrainOutcome, 'weights'>;

export interface TextBlocksTrainOptions extends TrainOptions {
  /** Text blocks to tune, from the top (≥ 1). */
  textBlocks: number;
  /** LoRA rank of the tuned matrices; null/0 = full weights. */
  lora?: number | null;
  /** The base model's folder (its text tower is read and tuned). */
  modelDir: string;
  /** Called while the captions' residuals are cached, before the text-block fits. */
  onCache?: (done: number, total: number) => void;
}

export interface DepthOutcome {
  /** The adapter-only candidate, trained on the same split (what today's run gives). */
  adapter: TrainOutcome;
  /** The text-block candidate; its image side is the locked image tower (stored embeddings as they are). */
  textBlocks: CandidateOutcome & { k: number; lora: number | null };
  /** The merged text tower at the chosen blend (ONNX bytes). */
  towerBytes: Uint8Array;
  /** Which one the selection step chose (its blend's held-out mean recall; a tie keeps the adapter). */
  chosen: 'adapter' | 'text-blocks';
}

/** The adapter and the last k text blocks on one split (againstAdapter); retention is measured through the tuned tower. */
export async function trainWithTextBlocks(data: TrainingData, options: TextBlocksTrainOptions, onProgress?: (p: TrainProgress & { candidate: 'adapter' | 'text-blocks' }) => void, signal?: AbortSignal): Promise<DepthOutcome> {
  if (!data.captionTexts) throw new ClipdexError('INVALID_ARGUMENT', 'tuning text blocks needs the captions\' texts');
  const captions = data.captionTexts;
  const run = await againstAdapter<TextBlockWeights, TextBlocksKind, 'text-blocks', Record<string, never>>(
    data,
    options,
    'text-blocks',
    (opts) =>
      textBlocksCandidate(data, {
        modelDir: options.modelDir,
        captions,
        k: options.textBlocks,
        lora: options.lora ? options.lora : null,
        batchSize: opts.batchSize,
        logitScale: data.logitScale,
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(signal ? { signal } : {}),
        ...(options.onCache ? { onCache: options.onCache } : {}),
      }),
    // Retention through the tuned tower itself; the image side is locked, so the gallery stays as stored.
    async (kind, fitted) => {
      const p = data.probes;
      const tunedProbes = p?.phrases ? await kind.encode(p.phrases, fitted.weights, fitted.blend) : null;
      return p && tunedProbes ? retention(p, data.dim, tunedProbes, p.gallery) : null;
    },
    () => ({}),
    onProgress,
    signal,
  );
  return { adapter: run.adapter, textBlocks: run.deep, towerBytes: run.towerBytes, chosen: run.chosen };
}

export interface ImageBlocksTrainOptions extends TrainOptions {
  /** Image blocks to tune, from the top (≥ 1). */
  imageBlocks: number;
  /** LoRA rank of the tuned matrices; null/0 = full weights. */
  lora?: number | null;
  /** The base model's folder (its image tower is read and tuned). */
  modelDir: string;
  /** Each photo row's pixels (the product's preprocessing) or file, in the data's photo-row order. */
  photos: readonly PhotoInput[];
  /** Called while the photos' block inputs are cached, before the image-block fits. */
  onCache?: (done: number, total: number) => void;
}

export interface ImageDepthOutcome {
  /** The adapter-only candidate, trained on the same split. */
  adapter: TrainOutcome;
  /** The image-block candidate; its text side is the locked text tower (stored caption embeddings as they are). */
  imageBlocks: CandidateOutcome & { k: number; lora: number | null };
  /** The merged image tower at the chosen blend (ONNX bytes). */
  towerBytes: Uint8Array;
  /** Which one the selection step chose (its blend's held-out mean recall; a tie keeps the adapter). */
  chosen: 'adapter' | 'image-blocks';
  /** Milliseconds the whole image tower took per labeled photo while caching (it runs the full graph once per photo). */
  towerMsPerPhoto: number;
}

/**
 * The adapter and the last k image blocks on one split, as `trainWithTextBlocks` does for the text side.
 * Retention is not measured for the image blocks (null): it would re-encode the whole gallery sample.
 */
export async function trainWithImageBlocks(data: TrainingData, options: ImageBlocksTrainOptions, onProgress?: (p: TrainProgress & { candidate: 'adapter' | 'image-blocks' }) => void, signal?: AbortSignal): Promise<ImageDepthOutcome> {
  const run = await againstAdapter<ImageBlockWeights, ImageBlocksKind, 'image-blocks', { towerMsPerPhoto: number }>(
    data,
    options,
    'image-blocks',
    (opts) =>
      imageBlocksCandidate(data, {
        modelDir: options.modelDir,
        photos: options.photos,
        k: options.imageBlocks,
        lora: options.lora ? options.lora : null,
        batchSize: opts.batchSize,
        logitScale: data.logitScale,
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(signal ? { signal } : {}),
        ...(options.onCache ? { onCache: options.onCache } : {}),
      }),
    async () => null,
    (kind) => ({ towerMsPerPhoto: options.photos.length > 0 ? kind.cacheMs / options.photos.length : 0 }),
    onProgress,
    signal,
  );
  return { adapter: run.adapter, imageBlocks: run.deep, towerBytes: run.towerBytes, chosen: run.chosen, ...run.extra };
}

export interface BothTowersTrainOptions extends TrainOptions {
  /** Text blocks to tune, from the top (≥ 1). */
  textBlocks: number;
  /** Image blocks to tune, from the top (≥ 1). */
  imageBlocks: number;
  /** LoRA rank of both towers' tuned matrices; null/0 = full weights. */
  lora?: number | null;
  /** The base model's folder (both towers are read and tuned). */
  modelDir: string;
  /** Each photo row's pixels (the product's preprocessing) or file, in the data's photo-row order. */
  photos: readonly PhotoInput[];
  /** Called while the photos' block inputs, then the captions' residuals, are cached. */
  onCache?: (done: number, total: number, of: 'photos' | 'captions') => void;
}

/** The joint candidate's outcome: the second stage's fit (text blocks against the tuned image tower), judged against the base model. */
export type BothTowersOutcome = CandidateOutcome & {
  textBlocks: number;
  imageBlocks: number;
  lora: number | null;
  /** The image tower's blend (stage 1); `blend` is the text tower's (stage 2). */
  imageBlend: number;
  /** Alternation rounds (image, then text = 1). */
  rounds: number;
};

export interface BothTowersDepthOutcome {
  /** The adapter-only candidate, trained on the same split. */
  adapter: TrainOutcome;
  /** Stage 1 on its own: the image blocks against the captions' base embeddings (as `--image-blocks` gives it). */
  imageBlocks: CandidateOutcome & { k: number; lora: number | null };
  /** Both towers: stage 2's text blocks against the tuned image tower's embeddings of the photos. */
  bothTowers: BothTowersOutcome;
  textTowerBytes: Uint8Array;
  imageTowerBytes: Uint8Array;
  /** The adapter or the joint candidate, by the held-out mean recall of their chosen blends (a tie keeps the adapter). */
  chosen: 'adapter' | 'both-towers';
  towerMsPerPhoto: number;
}

/**
 * The last m image blocks and the last k text blocks, tuned one tower at a time (LiT-style alternation), beside
 * the adapter on one split. Stage 1 is the image candidate as `--image-blocks` trains it, against the captions'
 * fixed base embeddings; stage 2 tunes the text blocks against the tuned image tower's embeddings of the
 * labeled photos (every row: test photos are encoded, never learned from). Why not one graph with both heads:
 * its backward pass would hold both towers' activations and Adam states at once and cost both heads per step
 * on a CPU, while one tower at a time reuses each side's cached frozen blocks, keeps its own early stopping
 * and blend, and the other side is a fixed matrix of embeddings. One round only: a second (the image blocks
 * again against the tuned text tower, then the text blocks again) was tried on ../shared/photos/labeled,
 * seed 3, by training on the activated joint version's folder, and both its stages settled on blend 0 (test
 * mean recall unchanged, 85.1%) for about 30% more time; that trial's choices were made on photos the first
 * round's final fit had learned from, so it is a rough sign, not a clean measurement.
 * Stage 2's blend 0 is stage 1's result, so the joint candidate scores at least as well as the image-only
 * stage on the held-out photos (up to the half-point tolerance of the blend choice): the selection is
 * adapter against joint, with the image-only stage reported beside them.
 */
export async function trainWithBothTowers(
  data: TrainingData,
  options: BothTowersTrainOptions,
  onProgress?: (p: TrainProgress & { candidate: 'adapter' | 'image-blocks' | 'both-towers' }) => void,
  signal?: AbortSignal,
): Promise<BothTowersDepthOutcome> {
  if (!data.captionTexts) throw new ClipdexError('INVALID_ARGUMENT', 'tuning text blocks needs the captions\' texts');
  const opts = resolveTrainOptions(options);
  const plan = planRun(data, opts);
  const started = performance.now();
  const lora = options.lora ? options.lora : null;
  const threads = options.threads === undefined ? {} : { threads: options.threads };
  const common = { lora, batchSize: opts.batchSize, logitScale: data.logitScale, ...threads, ...(signal ? { signal } : {}) };
  // Both kinds first: their checks (depths, LoRA rank, a CLIP head) refuse a bad request before any fit.
  const imageKind = await imageBlocksCandidate(data, { ...common, modelDir: options.modelDir, photos: options.photos, k: options.imageBlocks, ...(options.onCache ? { onCache: (d: number, t: number) => options.onCache!(d, t, 'photos') } : {}) });
  try {
    const textKind = await textBlocksCandidate(data, { ...common, modelDir: options.modelDir, captions: data.captionTexts, k: options.textBlocks, ...(options.onCache ? { onCache: (d: number, t: number) => options.onCache!(d, t, 'captions') } : {}) });
    try {
      const prepareMs = performance.now() - started;
      const adapter = await trainAdapters(data, options, (p) => onProgress?.({ ...p, candidate: 'adapter' }), signal);
      const stage1Started = performance.now();
      const stage1 = await judgeCandidate(imageKind, data, opts, plan, (p) => onProgress?.({ ...p, candidate: 'image-blocks' }), signal);
      const imageBlend = stage1.fitted.blend;
      const imageTowerBytes = imageKind.towerBytes(stage1.fitted.weights, imageBlend);
      const imageBlocks = { ...stage1.outcome, retention: null, durationMs: Math.round(prepareMs + performance.now() - stage1Started), k: imageKind.k, lora: imageKind.lora };
      const stage2Started = performance.now();
      const tunedImages = await imageKind.embedRows(stage1.fitted.weights, imageBlend);
      const foldImages = new Map<string, Float32Array>();
      for (const f of stage1.fitted.folds) foldImages.set(f.train.join(','), await imageKind.embedRows(f.weights, imageBlend));
      // Cross-validation's final fit learns from every photo of the folds: against the final image tower.
      foldImages.set([...new Set(stage1.fitted.folds.flatMap((f) => f.train))].sort((a, b) => a - b).join(','), tunedImages);
      const stage2Data: TrainingData = { ...data, images: tunedImages };
      const stage2Kind = stageTwoKind(textKind, foldImages, tunedImages);
      const stage2 = await judgeCandidate(stage2Kind, stage2Data, opts, plan, (p) => onProgress?.({ ...p, candidate: 'both-towers' }), signal, {
        // The image head at blend 0 is the base tower, against the captions' base embeddings: the base model.
        baseline: (rows) => imageKind.similarities(stage1.fitted.weights, 0, rows),
        changed: (textBlend) => textBlend > 0 || imageBlend > 0,
      });
      const textTowerBytes = textKind.towerBytes(stage2.fitted.weights, stage2.fitted.blend);
      // Retention through both tuned towers: the probes through the tuned text tower, the gallery as stored
      // (re-encoding the gallery sample through the image tower would cost a full tower run per photo).
      const p = data.probes;
      textKind.useImages(tunedImages);
      const tunedProbes = p?.phrases ? await textKind.encode(p.phrases, stage2.fitted.weights, stage2.fitted.blend) : null;
      const bothTowers: BothTowersOutcome = {
        ...stage2.outcome,
        retention: p && tunedProbes && imageBlend === 0 ? await retention(p, data.dim, tunedProbes, p.gallery) : null,
        durationMs: Math.round(prepareMs + (stage2Started - stage1Started) + performance.now() - stage2Started),
        textBlocks: textKind.k,
        imageBlocks: imageKind.k,
        lora,
        imageBlend,
        rounds: 1,
      };
      const chosen = chosenScore(bothTowers) > chosenScore(adapter) ? 'both-towers' : 'adapter';
      return { adapter, imageBlocks, bothTowers, textTowerBytes, imageTowerBytes, chosen, towerMsPerPhoto: options.photos.length > 0 ? imageKind.cacheMs / options.photos.length : 0 };
    } finally {
      await textKind.release();
    }
  } finally {
    await imageKind.release();
  }
}

/** The held-out (never test) mean recall at the blend a candidate chose: what the selection step compares. */
function chosenScore(o: CandidateOutcome): number {
  return Math.max(0, ...o.blends.map((b) => (Math.abs(b.blend - o.blend) < 1e-9 ? b.meanRecall : 0)));
}

/** What a deeper candidate (tuned blocks of a tower) gives beside a CandidateKind: its depth and its merged tower. */
interface DeepKind<W> extends CandidateKind<W> {
  readonly k: number;
  readonly lora: number | null;
  towerBytes(weights: W, blend: number): Uint8Array;
}

/**
 * One deeper candidate and the adapter on one split, one after the other through the same selection and
 * verdict; the one whose choice scored higher on the held-out (never test) photos is the version to save (a
 * tie keeps the adapter). The candidate is made first, so its model checks (depth, LoRA rank, a CLIP head)
 * refuse a bad request before any fit.
 */
async function againstAdapter<W, K extends DeepKind<W>, N extends string, X>(
  data: TrainingData,
  options: TrainOptions,
  name: N,
  makeKind: (opts: Options) => Promise<K>,
  retentionOf: (kind: K, fitted: { weights: W; blend: number }) => Promise<Retention | null>,
  extraOf: (kind: K) => X,
  onProgress: ((p: TrainProgress & { candidate: 'adapter' | N }) => void) | undefined,
  signal: AbortSignal | undefined,
): Promise<{ adapter: TrainOutcome; deep: CandidateOutcome & { k: number; lora: number | null }; towerBytes: Uint8Array; chosen: 'adapter' | N; extra: X }> {
  const opts = resolveTrainOptions(options);
  const plan = planRun(data, opts);
  const started = performance.now();
  const kind = await makeKind(opts);
  try {
    const prepareMs = performance.now() - started;
    const adapter = await trainAdapters(data, options, (p) => onProgress?.({ ...p, candidate: 'adapter' }), signal);
    const fitStarted = performance.now();
    const { fitted, outcome } = await judgeCandidate(kind, data, opts, plan, (p) => onProgress?.({ ...p, candidate: name }), signal);
    const towerBytes = kind.towerBytes(fitted.weights, fitted.blend);
    const deep = { ...outcome, retention: await retentionOf(kind, fitted), durationMs: Math.round(prepareMs + performance.now() - fitStarted), k: kind.k, lora: kind.lora };
    const chosen: 'adapter' | N = chosenScore(deep) > chosenScore(adapter) ? name : 'adapter';
    return { adapter, deep, towerBytes, chosen, extra: extraOf(kind) };
  } finally {
    await kind.release();
  }
}

/**
 * How a candidate is judged when its blend 0 is not the base model (a joint run's second stage: blend 0 is
 * the tuned image tower with the base text tower): `baseline` scores the base model's photo rows for the
 * "before" of the verdict, and `changed` says whether the version differs from the base at all.
 */
interface JudgeAgainst {
  baseline: (rows: readonly number[]) => Promise<Float32Array>;
  changed: (blend: number) => boolean;
}

/** Fit, choose and judge one candidate on the run's split: everything of its outcome but weights, retention and duration. */
async function judgeCandidate<W>(kind: CandidateKind<W>, data: TrainingData, opts: Options, plan: { method: SelectionMethod; fitPairs: number[] }, onProgress?: (p: TrainProgress) => void, signal?: AbortSignal, against?: JudgeAgainst) {
  const d = data.dim;
  const { method, fitPairs } = plan;
  const pairsIn = (part: PhotoSplit) => data.pairs.flatMap((p, k) => (data.imageSplit[p[0]] === part ? [k] : []));
  const rowsIn = (part: PhotoSplit) => data.imageSplit.flatMap((s, i) => (s === part ? [i] : []));
  const fitted = await fitAndScore(kind, data, method, opts, onProgress, signal);
  const testRows = rowsIn('test');
  const testPairs = pairsIn('test');
  const tested = new Set(testPairs.map((k) => data.pairs[k]![1]));
  const captionName = (c: number) => data.captionTexts?.[c] ?? `caption ${c}`;
  const m = data.texts.length / d;
  const test: TestSet = {
    photos: testRows.length,
    pairs: testPairs.length,
    untested: Array.from({ length: m }, (_, c) => c).filter((c) => !tested.has(c)).map(captionName),
  };
  let before: RetrievalMetrics | null = null;
  let after: RetrievalMetrics | null = null;
  let gain: Gain | null = null;
  if (testRows.length > 0) {
    const b = against ? detailOf(data, await against.baseline(testRows), testRows) : await scoreRows(kind, data, fitted.weights, 0, testRows);
    const a = await scoreRows(kind, data, fitted.weights, fitted.blend, testRows);
    before = b.metrics;
    after = a.metrics;
    gain = measureGain(b.ranks, a.ranks, { seed: opts.seed });
  }
  // judge() reads blend 0 as "the base model itself"; a joint version at text blend 0 may still differ (its image side).
  const { improved, verdict } = judge(gain, against?.changed(fitted.blend) ? Math.max(fitted.blend, 1e-9) : fitted.blend, test);
  const learned = method === 'holdout' ? rowsIn('train').length : rowsIn('train').length + rowsIn('val').length;
  const outcome: Omit<CandidateOutcome, 'retention' | 'durationMs'> = {
    blend: fitted.blend,
    blends: fitted.blends,
    selection: fitted.selection,
    logitScale: fitted.logitScale,
    history: fitted.history,
    bestEpoch: fitted.selection.epochs,
    stoppedEarly: fitted.stoppedEarly,
    before,
    after,
    gain,
    test,
    improved,
    verdict,
    trainPairs: fitPairs.length,
    trainImages: learned,
    valPairs: method === 'holdout' ? pairsIn('val').length : 0,
    valImages: method === 'holdout' ? rowsIn('val').length : 0,
    testPairs: testPairs.length,
    testImages: testRows.length,
    captions: m,
    options: opts,
  };
  return { fitted, outcome };
}

interface Fitted<W> {
  weights: W;
  /** Each fold's training pairs and its weights at the chosen epoch (one entry under 'holdout'). */
  folds: { train: readonly number[]; weights: W }[];
  blend: number;
  blends: { blend: number; meanRecall: number }[];
  selection: Selection;
  history: EpochRecord[];
  stoppedEarly: boolean;
  logitScale: number;
}

/**
 * Where a candidate is trained and scored: the one place any kind of candidate goes through. The choices
 * come from held-out photos that are never the test photos — the validation part ('holdout'), or each
 * fold in turn ('cross-validation': the k fits run in step and early stopping watches their mean held-out
 * loss, so the epoch is chosen on every photo; then one fit on all of them runs that many epochs). The
 * blend is the smallest whose mean recall on those held-out photos is within half a point of the best:
 * among equally good models, the one closest to the base keeps the most of what it knew.
 */
export async function fitAndScore<W>(kind: CandidateKind<W>, data: TrainingData, method: SelectionMethod, opts: Options, onProgress?: (p: TrainProgress) => void, signal?: AbortSignal): Promise<Fitted<W>> {
  const pairsIn = (part: PhotoSplit) => data.pairs.flatMap((p, k) => (data.imageSplit[p[0]] === part ? [k] : []));
  let folds: Fold[];
  if (method === 'holdout') {
    const held = pairsIn('val');
    folds = [{ train: pairsIn('train'), held, heldRows: [...new Set(held.map((p) => data.pairs[p]![0]))].sort((a, b) => a - b) }];
  } else {
    const pool = [...pairsIn('train'), ...pairsIn('val')].sort((a, b) => a - b);
    const photos = new Set(pool.map((p) => data.pairs[p]![0])).size;
    folds = makeFolds(pool, data.pairs, (row) => data.photoKeys?.[row] ?? String(row), (c) => data.captionTexts?.[c] ?? String(c), foldCount(photos, opts.folds), opts.seed);
  }
  // Each fold its own seeded order; the holdout fit keeps the run's seed itself.
  const fits = folds.map((f, i) => kind.start(f.train, method === 'holdout' ? opts.seed : opts.seed + 7919 * (i + 1)));
  const history: EpochRecord[] = [];
  let best = { loss: Infinity, epoch: 0, weights: fits.map((f) => f.snapshot()), logitScale: mean(fits.map((f) => f.logitScale())) };
  let sinceBest = 0;
  let stoppedEarly = false;
  const stage = method;
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    checkAborted(signal);
    const trainLosses: number[] = [];
    const heldLosses: number[] = [];
    for (const [i, fit] of fits.entries()) {
      trainLosses.push(await fit.epoch());
      if (folds[i]!.held.length > 0) heldLosses.push(await fit.heldOutLoss(folds[i]!.held));
    }
    const valLoss = heldLosses.length > 0 ? mean(heldLosses) : null;
    history.push({ epoch, trainLoss: mean(trainLosses), valLoss, logitScale: mean(fits.map((f) => f.logitScale())) });
    const monitored = valLoss ?? mean(trainLosses);
    if (monitored < best.loss - 1e-6) {
      best = { loss: monitored, epoch, weights: fits.map((f) => f.snapshot()), logitScale: mean(fits.map((f) => f.logitScale())) };
      sinceBest = 0;
    } else {
      sinceBest++;
    }
    onProgress?.({ stage, folds: folds.length, epoch, maxEpochs: opts.epochs, history, bestEpoch: best.epoch, bestValLoss: valLoss === null ? null : best.loss, epochsWithoutImprovement: sinceBest, patience: opts.patience });
    if (sinceBest >= opts.patience) {
      stoppedEarly = true;
      break;
    }
  }

  // The blends, scored on each fold's held-out photos at the chosen epoch, averaged over the folds.
  const scoredFolds = folds.map((f, i) => ({ fold: f, weights: best.weights[i]! })).filter((x) => x.fold.heldRows.length > 0);
  const cache = new Map<number, number>();
  const score = async (blend: number) => {
    if (!cache.has(blend)) {
      let sum = 0;
      for (const { fold, weights } of scoredFolds) sum += meanRecall((await scoreRows(kind, data, weights, blend, fold.heldRows)).metrics);
      cache.set(blend, Math.round((sum / Math.max(1, scoredFolds.length)) * 10_000) / 10_000);
    }
    return { blend, meanRecall: cache.get(blend)! };
  };
  const blends: { blend: number; meanRecall: number }[] = [];
  let blend = 0;
  if (scoredFolds.length > 0) {
    for (const b of [...new Set([0, ...opts.blends])].sort((x, y) => x - y)) blends.push(await score(b));
    const coarseBest = blends.reduce((a, b) => (b.meanRecall > a.meanRecall ? b : a));
    for (const around of [coarseBest.blend - 0.1, coarseBest.blend + 0.1]) {
      const b = Math.round(around * 100) / 100;
      if (b > 0 && b < 1 && !blends.some((s) => Math.abs(s.blend - b) < 1e-9)) blends.push(await score(b));
    }
    blends.sort((a, b) => a.blend - b.blend);
    const bestScore = Math.max(...blends.map((s) => s.meanRecall));
    blend = blends.find((s) => s.meanRecall >= bestScore - 0.005)!.blend;
  }
  const photosScored = new Set(scoredFolds.flatMap((x) => x.fold.heldRows)).size;
  const selection: Selection = { method, folds: folds.length, photos: photosScored, epochs: best.epoch };
  const foldWeights = folds.map((f, i) => ({ train: f.train, weights: best.weights[i]! }));
  if (method === 'holdout') return { weights: best.weights[0]!, folds: foldWeights, blend, blends, selection, history, stoppedEarly, logitScale: best.logitScale };

  // Cross-validation chose; now one fit learns from every photo of the folds for the chosen epochs.
  const all = [...new Set(folds.flatMap((f) => f.held))].sort((a, b) => a - b);
  const final: CandidateFit<W> = kind.start(all, opts.seed);
  for (let epoch = 1; epoch <= best.epoch; epoch++) {
    checkAborted(signal);
    await final.epoch();
    onProgress?.({ stage: 'final', folds: folds.length, epoch, maxEpochs: best.epoch, history, bestEpoch: best.epoch, bestValLoss: best.loss, epochsWithoutImprovement: sinceBest, patience: opts.patience });
  }
  return { weights: final.snapshot(), folds: foldWeights, blend, blends, selection, history, stoppedEarly, logitScale: final.logitScale() };
}

/**
 * Stage 2 of a joint run as a candidate: the text blocks, each fit against the photos as the image tower of
 * its own stage-1 fit embeds them. The folds are the same in both stages (same pool, seed and count), so a
 * fold's text fit learns and is scored against the image tower that fold's stage-1 fit learned without its
 * held-out photos; the final fit (and the test photos' verdict) against the final image tower. Against one
 * image tower for every fold, the final one — which learned from every fold's photos — would make the
 * held-out scores of stage 2 look better than they are.
 */
function stageTwoKind(textKind: TextBlocksKind, foldImages: ReadonlyMap<string, Float32Array>, finalImages: Float32Array): CandidateKind<TextBlockWeights> {
  const imagesOf = new WeakMap<TextBlockWeights, Float32Array>();
  const against = <T>(images: Float32Array, run: () => T): T => {
    textKind.useImages(images);
    return run();
  };
  return {
    name: `both towers (${textKind.name} against the tuned image blocks)`,
    start(trainPairs, seed) {
      const images = foldImages.get(trainPairs.join(','));
      // Never a silent fallback: a fold matched to the wrong image tower would leak its held-out photos.
      if (!images) throw new ClipdexError('INVALID_ARGUMENT', 'a joint run\'s second stage got training pairs that are none of the first stage\'s folds');
      const fit = against(images, () => textKind.start(trainPairs, seed));
      return {
        // The fits of the folds run in turn, one epoch each: each sets its own photos before its steps.
        epoch: () => against(images, () => fit.epoch()),
        heldOutLoss: (pairs) => against(images, () => fit.heldOutLoss(pairs)),
        snapshot() {
          const w = fit.snapshot();
          imagesOf.set(w, images);
          return w;
        },
        logitScale: () => fit.logitScale(),
      };
    },
    similarities: (weights, blend, rows) => against(imagesOf.get(weights) ?? finalImages, () => textKind.similarities(weights, blend, rows)),
    release: async () => {},
  };
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new ClipdexError('INVALID_ARGUMENT', 'training was cancelled');
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Retrieval among these photo rows, against every caption, under a candidate's weights at a blend. */
async function scoreRows<W>(kind: CandidateKind<W>, data: TrainingData, weights: W, blend: number, rows: readonly number[]) {
  return detailOf(data, await kind.similarities(weights, blend, rows), rows);
}

/** Retrieval among these photo rows from their cosines against every caption (rows × captions). */
function detailOf(data: TrainingData, similarities: Float32Array, rows: readonly number[]) {
  const m = data.texts.length / data.dim;
  const rowOf = new Map(rows.map((row, k) => [row, k]));
  const pairs = data.pairs.flatMap(([i, c]) => (rowOf.has(i) ? [[rowOf.get(i)!, c] as const] : []));
  return retrievalDetail(similarities, rows.length, m, pairs);
}

/** How far phrases outside the labels move: their tuned embeddings (`tunedTexts`) against the gallery as the version sees it. */
async function retention(p: NonNullable<TrainingData['probes']>, d: number, tunedTexts: Float32Array, tunedGallery: Float32Array): Promise<Retention> {
  const baseTexts = p.texts;
  const baseSims = await similarityMatrix(baseTexts, p.count, p.gallery, p.galleryCount, d);
  const tunedSims = await similarityMatrix(tunedTexts, p.count, tunedGallery, p.galleryCount, d);
  const top10 = (sims: Float32Array, q: number) => {
    const row = Array.from(sims.subarray(q * p.galleryCount, (q + 1) * p.galleryCount), (s, i) => ({ s, i }));
    return new Set(row.sort((a, b) => b.s - a.s || a.i - b.i).slice(0, 10).map((x) => x.i));
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
