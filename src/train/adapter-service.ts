/**
 * The trainer as users drive it, over one library: gather the labeled pairs with their stored embeddings,
 * split by photo content (train / validation / test), train, judge on the test photos, save the adapter
 * with its numbers; activate (re-project every stored embedding,
 * build that index in the background, switch searches in one step), roll back, export. The CLI, the REST
 * API and the web page all call this.
 */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { ClipdexError, errorMessage } from '../errors.js';
import { keyDir } from '../index/index-files.js';
import { parseParam } from '../validation/param-rules.js';
import { testFractionRule, valFractionRule } from '../validation/train-params.js';
import type { IndexProgress } from '../index/index-manager.js';
import type { Library, SearchSpace } from '../library/library.js';
import { type AdapterRecord, type AdapterSummary, imageTowerFileName, imageTowerOf, textTowerOf, MODEL_DIRS, type TextTowerRef, towerFileName, versionsDir } from '../store/adapters-repo.js';
import type { ModelSwitcher, UseResult } from '../ingest/model-switch.js';
import { preprocessBatch } from '../model/image-preprocess.js';
import { blobToVector } from '../store/vector-blob.js';
import { AdaptedEmbeddings, versionSearchKey } from '../adapter/adapter-embeddings.js';
import { ActivationLease } from '../adapter/adapter-leftovers.js';
import { defaultExportDir, derivedModelInfo, exportAdaptedModel, type ExportInfo } from './adapter-export.js';
import { decodeAdapter, encodeAdapter, identityMatrix, type AdapterWeights } from '../adapter/adapter-weights.js';
import { writeFileAtomic } from './text-tower/tower-writer.js';
import { labeledPhotos, type SkippedLabel, type UsableLabel } from './labeled-photos.js';
import { byCodeUnits, type SplitShares } from './pair-split.js';
import { PROBE_PHRASES } from './probe-phrases.js';
import { DEFAULT_SHARES, planSplit, storedSplits } from './split-plan.js';
import { type BothTowersOutcome, type CandidateOutcome, trainAdapters, trainWithBothTowers, trainWithImageBlocks, trainWithTextBlocks, type TrainOptions, type TrainOutcome, type TrainProgress, type TrainingData } from './trainer.js';
import { shareTower, towerPath } from '../library/version-towers.js';

export interface TrainRequest extends TrainOptions {
  /** Share of each caption's photos held out to choose the epoch and the blend. Default 0.2. */
  valFraction?: number;
  /** Share held out from every choice to judge the result. Default 0.2. */
  testFraction?: number;
  /**
   * Text blocks to tune, from the top (0, the default: the adapters alone, as before). Above 0 the run also
   * trains the adapter-only candidate on the same split, and saves whichever the selection step scores higher.
   */
  textBlocks?: number;
  /**
   * Image blocks to tune, from the top (0/absent: none). Above 0 the run also trains the adapter-only
   * candidate on the same split and saves the selection's winner; an image-tuned version is searched only
   * once the library is re-encoded with its tower (activation starts that switch). With textBlocks too the
   * run tunes both towers, one after the other (trainer.ts `trainWithBothTowers`), against the adapter.
   */
  imageBlocks?: number;
  /** LoRA rank of the tuned text or image blocks' matrices; 0/absent = full weights. */
  lora?: number;
  /**
   * Library-only (neither the CLI nor the API sets it): which candidate of a text-block run to save —
   * 'selected' (default) the one the selection step scored higher, or the named one, to use a candidate
   * the selection did not prefer (the comparison still says which it chose).
   */
  save?: 'selected' | 'adapter' | 'text-blocks' | 'image-blocks' | 'both-towers';
}

/** Both candidates of a `textBlocks` or `imageBlocks` run, side by side (the CLI's table, the API's `comparison`). */
export interface CandidateComparison {
  chosen: 'adapter' | 'text-blocks' | 'image-blocks' | 'both-towers';
  adapter: CandidateOutcome;
  /** Present on a textBlocks run. */
  textBlocks?: CandidateOutcome & { k: number; lora: number | null };
  /** Present on an imageBlocks run; on a run with both, the image-only first stage (reported, never saved). */
  imageBlocks?: CandidateOutcome & { k: number; lora: number | null };
  /** Present on a run with textBlocks and imageBlocks: both towers tuned. */
  bothTowers?: BothTowersOutcome;
}

/** What activating an image-tuned version costs: every photo re-encoded with its tower. */
export interface ActivationEstimate {
  /** Photos (distinct contents) the library would re-encode. */
  photos: number;
  /** Measured on this run's labeled photos: decode + the whole image tower, per photo. */
  msPerPhoto: number;
  seconds: number;
  /** "activating re-encodes N photos with the tuned image tower, about T". */
  note: string;
}

export type AdapterJobProgress =
  | { phase: 'preparing'; message: string }
  | { phase: 'caching'; done: number; total: number; /** What runs through the frozen blocks (absent: captions). */ of?: 'captions' | 'photos' }
  | { phase: 'training'; training: TrainProgress; candidate?: 'adapter' | 'text-blocks' | 'image-blocks' | 'both-towers' }
  | { phase: 'decoding'; done: number; total: number }
  | { phase: 'evaluating' }
  | { phase: 'projecting'; done: number; total: number }
  | { phase: 'indexing'; index: IndexProgress }
  | { phase: 'switching' };

export interface TrainResult {
  adapter: AdapterSummary;
  outcome: TrainOutcome;
  /** Pairs left out: their photo is missing, offline, failed or not indexed yet (the labels are kept). */
  skippedPairs: number;
  /** Each of them, with the reason. */
  skipped: SkippedLabel[];
  /** Present when text or image blocks were tuned: both candidates and which one was saved. */
  comparison?: CandidateComparison;
  /** Present when the saved version is image-tuned: what activating it will cost (every photo re-encoded). */
  reencode?: ActivationEstimate;
}

export interface ActivationResult {
  adapter: AdapterSummary | null;
  projected: number;
  durationMs: number;
  /**
   * An image-tuned version (or `rollback base` from one): the model switch started to its model folder (or
   * back to the base model). `pending`: the photos are re-encoded in the background, searches keep the
   * current model until every one is done; `switched`: done now.
   */
  modelSwitch?: UseResult & { dir: string };
}

/** What a model folder materialized from a version says of itself (its clipdex-adapter.json). */
export interface DerivedModel {
  baseModel: string;
  baseKey: string;
  version: number;
  /** 'image-blocks', or 'both-towers' when the folder holds a tuned text tower too. */
  kind: 'image-blocks' | 'both-towers';
}

/** The metrics JSON stored with each adapter version (everything but the weights). */
export interface AdapterMetrics extends Omit<TrainOutcome, 'weights'> {
  baseKey: string;
  dim: number;
  valFraction: number;
  testFraction: number;
  skippedPairs: number;
}

const GALLERY_SAMPLE = 2000;

/** Trained versions of another model of the library (model switch): listed, not activatable here. */
export interface OtherModelVersions {
  modelKey: string;
  /** The model's name (its key before '#'). */
  model: string;
  /** What loads it (`clipdex models use <ref>`). */
  ref: string;
  versions: number[];
  note: string;
}

export interface AdapterServiceOptions {
  /**
   * The library's model switcher: activating an image-tuned version (and rolling back from one) is a model
   * switch. Without it such an activation is refused (the caller has no background encoder to run it).
   */
  switcher?: ModelSwitcher;
}

export class AdapterService {
  private job: string | null = null;

  constructor(
    private readonly library: Library,
    private readonly options: AdapterServiceOptions = {},
  ) {}

  /** What is running now ('training', 'activating'), or null. */
  get busy(): string | null {
    return this.job;
  }

  list(): { versions: AdapterSummary[]; active: number | null; otherModels: OtherModelVersions[]; derivedFrom: DerivedModel | null } {
    const { key } = this.library.requireModel();
    const versions = this.library.adapters.list(key);
    return { versions, active: versions.find((v) => v.active)?.version ?? null, otherModels: this.otherModels(), derivedFrom: this.derivedFrom() };
  }

  /** When the library's model is a folder materialized from an image-tuned version: which one, of which model. */
  derivedFrom(): DerivedModel | null {
    const info = derivedModelInfo(this.library.requireModel().model.spec.dir);
    return info ? { baseModel: info.baseModel, baseKey: info.baseKey, version: info.adapterVersion, kind: info.metrics.kind === 'both-towers' ? 'both-towers' : 'image-blocks' } : null;
  }

  /** Versions trained on the library's other models: theirs, usable after switching back (`models use`). */
  otherModels(): OtherModelVersions[] {
    const { key: current } = this.library.requireModel();
    return this.library.models
      .knownRefs()
      .filter((m) => m.key !== current)
      .map((m) => ({ modelKey: m.key, model: m.key.split('#')[0]!, ref: m.ref, versions: this.library.adapters.list(m.key).map((a) => a.version) }))
      .filter((m) => m.versions.length > 0)
      .map((m) => ({ ...m, note: `trained on ${m.model}; switch back to use ${m.versions.length === 1 ? 'it' : 'them'} (\`clipdex models use ${m.ref}\`)` }));
  }

  /** An adapter of the loaded model by version number. */
  version(version: number): AdapterRecord {
    const { key } = this.library.requireModel();
    const summary = this.library.adapters.list(key).find((a) => a.version === version);
    if (!summary) {
      // Versions belong to the model they were trained on: one of another model of this library says so.
      const other = otherModelVersion(this.library, key, version);
      if (other) {
        throw new ClipdexError('ADAPTER_INVALID', `adapter v${version} was trained on ${other.name}, not on ${key.split('#')[0]}; switch back to use it (\`clipdex models use ${other.ref}\`)`, {
          details: { version, trainedOn: other.key },
        });
      }
      throw new ClipdexError('FILE_NOT_FOUND', `no adapter version ${version} for model ${key} (see \`clipdex adapters list\`)`);
    }
    return this.library.adapters.get(summary.id)!;
  }

  /** Refuses early (before a background job starts) when the labels cannot train anything. */
  checkReady(): void {
    this.library.requireModel();
    const { photos, captions } = this.library.pairs.variety();
    if (photos < 4 || captions < 2) {
      throw new ClipdexError(
        'NOT_ENOUGH_LABELS',
        `training needs labeled photos with at least 2 different captions (has ${photos} photo${photos === 1 ? '' : 's'}, ${captions} caption${captions === 1 ? '' : 's'}); label more photos first`,
      );
    }
  }

  async train(request: TrainRequest = {}, onProgress?: (p: AdapterJobProgress) => void, signal?: AbortSignal): Promise<TrainResult> {
    return this.exclusive('training', async () => {
      if (request.lora && !request.textBlocks && !request.imageBlocks) throw new ClipdexError('INVALID_ARGUMENT', 'lora applies to tuned text or image blocks: give textBlocks or imageBlocks too');
      const shares: SplitShares = {
        valFraction: parseParam(valFractionRule, request.valFraction ?? DEFAULT_SHARES.valFraction, 'valFraction'),
        testFraction: parseParam(testFractionRule, request.testFraction ?? DEFAULT_SHARES.testFraction, 'testFraction'),
      };
      onProgress?.({ phase: 'preparing', message: 'reading labeled photos and encoding captions' });
      // Image blocks learn from the photos' pixels: a labeled photo whose file does not decode is left out (with its reason).
      const pixels = request.imageBlocks ? new PhotoPixels(this.library, onProgress) : null;
      const { data, skipped, splits } = await this.collect(shares, request.seed ?? 1, request.folds, pixels ? (usable) => pixels.keepReadable(usable) : undefined);
      if (request.imageBlocks && request.textBlocks) return this.trainBothTowers(request, data, splits, skipped, shares, pixels!, onProgress, signal);
      if (request.imageBlocks) return this.trainImageDepth(request, data, splits, skipped, shares, pixels!, onProgress, signal);
      const skippedPairs = skipped.length;
      const { key } = this.library.requireModel();
      if (request.textBlocks) return this.trainDepth(request, data, splits, skipped, shares, onProgress, signal);
      const outcome = await trainAdapters(data, request, (training) => onProgress?.({ phase: 'training', training }), signal);
      onProgress?.({ phase: 'evaluating' });
      const { weights, ...rest } = outcome;
      const metrics: AdapterMetrics = { ...rest, baseKey: key, dim: data.dim, ...shares, skippedPairs };
      const saved = this.saveVersion(key, splits, weights, metrics as unknown as Record<string, unknown>);
      return { adapter: summary(saved), outcome, skippedPairs, skipped };
    });
  }

  /**
   * A run with text blocks: the adapter and the text blocks on one split; the winner of the selection step
   * is saved. A text-tuned version's tower is written first (temporary file + rename, named by its SHA-256)
   * and only then recorded, in the same transaction as the split: a run killed before the commit leaves a
   * file no version names, which the next open removes (AdaptersRepo.removeOrphanTowers).
   */
  private async trainDepth(
    request: TrainRequest,
    data: TrainingData,
    splits: Map<number, 'train' | 'val'>,
    skipped: SkippedLabel[],
    shares: SplitShares,
    onProgress?: (p: AdapterJobProgress) => void,
    signal?: AbortSignal,
  ): Promise<TrainResult> {
    if (![undefined, 'selected', 'adapter', 'text-blocks'].includes(request.save)) throw new ClipdexError('INVALID_ARGUMENT', `save must be "selected", "adapter" or "text-blocks", got ${JSON.stringify(request.save)}`);
    const { key, model } = this.library.requireModel();
    const depth = await trainWithTextBlocks(
      data,
      { ...request, textBlocks: request.textBlocks!, lora: request.lora ?? null, modelDir: model.spec.dir, onCache: (done, total) => onProgress?.({ phase: 'caching', done, total }) },
      ({ candidate, ...training }) => onProgress?.({ phase: 'training', training, candidate }),
      signal,
    );
    onProgress?.({ phase: 'evaluating' });
    const { weights: adapterWeights, ...adapterRest } = depth.adapter;
    const comparison: CandidateComparison = { chosen: depth.chosen, adapter: adapterRest, textBlocks: depth.textBlocks };
    const base = { baseKey: key, dim: data.dim, ...shares, skippedPairs: skipped.length, comparison };
    let weights: AdapterWeights;
    let metrics: Record<string, unknown>;
    let outcome: TrainOutcome;
    const keep = request.save === undefined || request.save === 'selected' ? depth.chosen : request.save;
    if (keep === 'text-blocks') {
      const { file, sha256 } = await this.storeTower(depth.towerBytes, towerFileName, signal);
      // The image side is the locked image tower: the stored embeddings as they are.
      weights = { dim: data.dim, image: identityMatrix(data.dim), text: identityMatrix(data.dim) };
      outcome = { ...depth.textBlocks, weights };
      metrics = { ...depth.textBlocks, ...base, kind: 'text-blocks', textTower: { file, sha256 } };
    } else {
      weights = adapterWeights;
      outcome = depth.adapter;
      metrics = { ...adapterRest, ...base, kind: 'adapter' };
    }
    const saved = this.saveVersion(key, splits, weights, metrics);
    return { adapter: summary(saved), outcome, skippedPairs: skipped.length, skipped, comparison };
  }

  /**
   * A tuned tower written under its whole-file SHA-256 (temporary file + rename) before the version that names
   * it is recorded; on Postgres every machine searches with the versions, so it goes into the database too.
   */
  private async storeTower(bytes: Uint8Array, fileName: (sha256: string) => string, signal?: AbortSignal): Promise<{ file: string; sha256: string }> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const file = fileName(sha256);
    await writeFileAtomic(join(versionsDir(this.library.paths.dir), file), bytes, signal);
    shareTower(this.library.store, sha256, bytes);
    return { file, sha256 };
  }

  /**
   * The version's row, recorded in the same transaction as the split it was trained on: a run killed before
   * the commit leaves neither a version nor a changed split record.
   */
  private saveVersion(key: string, splits: Map<number, 'train' | 'val'>, weights: AdapterWeights, metrics: Record<string, unknown>): AdapterRecord {
    return this.library.store.transaction(() => {
      this.library.pairs.setSplits(splits);
      return this.library.adapters.add(key, encodeAdapter(weights), metrics);
    });
  }

  /**
   * A run with image blocks: the adapter and the last k image blocks on one split, the selection's winner
   * saved. An image-tuned version stores its merged image tower as the text side stores its text tower
   * (temporary file + rename, named by its SHA-256, recorded in the same transaction as the split); its
   * adapter weights are the identity on both sides, and its metrics say what activating it will cost.
   */
  private async trainImageDepth(
    request: TrainRequest,
    data: TrainingData,
    splits: Map<number, 'train' | 'val'>,
    skipped: SkippedLabel[],
    shares: SplitShares,
    pixels: PhotoPixels,
    onProgress?: (p: AdapterJobProgress) => void,
    signal?: AbortSignal,
  ): Promise<TrainResult> {
    if (![undefined, 'selected', 'adapter', 'image-blocks'].includes(request.save)) throw new ClipdexError('INVALID_ARGUMENT', `save must be "selected", "adapter" or "image-blocks", got ${JSON.stringify(request.save)}`);
    const { key, model } = this.library.requireModel();
    const depth = await trainWithImageBlocks(
      data,
      {
        ...request,
        imageBlocks: request.imageBlocks!,
        lora: request.lora ?? null,
        modelDir: model.spec.dir,
        photos: pixels.rows(data.photoKeys!),
        onCache: (done, total) => onProgress?.({ phase: 'caching', done, total, of: 'photos' }),
      },
      ({ candidate, ...training }) => onProgress?.({ phase: 'training', training, candidate }),
      signal,
    );
    onProgress?.({ phase: 'evaluating' });
    const { weights: adapterWeights, ...adapterRest } = depth.adapter;
    const comparison: CandidateComparison = { chosen: depth.chosen, adapter: adapterRest, imageBlocks: depth.imageBlocks };
    const base = { baseKey: key, dim: data.dim, ...shares, skippedPairs: skipped.length, comparison };
    const keep = request.save === undefined || request.save === 'selected' ? depth.chosen : request.save;
    let weights: AdapterWeights;
    let metrics: Record<string, unknown>;
    let outcome: TrainOutcome;
    let reencode: ActivationEstimate | undefined;
    if (keep === 'image-blocks') {
      const { file, sha256 } = await this.storeTower(depth.towerBytes, imageTowerFileName, signal);
      // Activating it re-encodes every photo: estimated from this run, where each labeled photo was decoded
      // (the product's preprocessing) and then run once through the whole image tower (the activation cache's
      // graph is the full tower with one more output), so decode + tower per photo is what a re-encode costs;
      // scaled by the library's photo count. The switch measures again on the library's own photos when it starts.
      reencode = this.reencodeEstimate(key, pixels.decodeMsPerPhoto() + depth.towerMsPerPhoto, 'the tuned image tower');
      weights = { dim: data.dim, image: identityMatrix(data.dim), text: identityMatrix(data.dim) };
      outcome = { ...depth.imageBlocks, weights };
      metrics = { ...depth.imageBlocks, ...base, kind: 'image-blocks', imageTower: { file, sha256 }, reencode };
    } else {
      weights = adapterWeights;
      outcome = depth.adapter;
      metrics = { ...adapterRest, ...base, kind: 'adapter' };
    }
    const saved = this.saveVersion(key, splits, weights, metrics);
    return { adapter: summary(saved), outcome, skippedPairs: skipped.length, skipped, comparison, ...(reencode ? { reencode } : {}) };
  }

  /**
   * A run with text and image blocks: the adapter and both towers tuned (image blocks, then text blocks against
   * the tuned image tower) on one split, the selection's winner saved. A joint version stores both merged
   * towers (each written under its SHA-256 before the one transaction that records the version and the
   * split, so a killed run leaves at most unrecorded files, removed at the next open); its adapter weights are
   * the identity, and activating it is a model switch to a folder holding both towers (every photo re-encoded).
   */
  private async trainBothTowers(
    request: TrainRequest,
    data: TrainingData,
    splits: Map<number, 'train' | 'val'>,
    skipped: SkippedLabel[],
    shares: SplitShares,
    pixels: PhotoPixels,
    onProgress?: (p: AdapterJobProgress) => void,
    signal?: AbortSignal,
  ): Promise<TrainResult> {
    if (![undefined, 'selected', 'adapter', 'both-towers'].includes(request.save)) throw new ClipdexError('INVALID_ARGUMENT', `save must be "selected", "adapter" or "both-towers", got ${JSON.stringify(request.save)}`);
    const { key, model } = this.library.requireModel();
    const depth = await trainWithBothTowers(
      data,
      {
        ...request,
        textBlocks: request.textBlocks!,
        imageBlocks: request.imageBlocks!,
        lora: request.lora ?? null,
        modelDir: model.spec.dir,
        photos: pixels.rows(data.photoKeys!),
        onCache: (done, total, of) => onProgress?.({ phase: 'caching', done, total, of }),
      },
      ({ candidate, ...training }) => onProgress?.({ phase: 'training', training, candidate }),
      signal,
    );
    onProgress?.({ phase: 'evaluating' });
    const { weights: adapterWeights, ...adapterRest } = depth.adapter;
    const comparison: CandidateComparison = { chosen: depth.chosen, adapter: adapterRest, imageBlocks: depth.imageBlocks, bothTowers: depth.bothTowers };
    const base = { baseKey: key, dim: data.dim, ...shares, skippedPairs: skipped.length, comparison };
    const keep = request.save === undefined || request.save === 'selected' ? depth.chosen : request.save;
    let weights: AdapterWeights;
    let metrics: Record<string, unknown>;
    let outcome: TrainOutcome;
    let reencode: ActivationEstimate | undefined;
    if (keep === 'both-towers') {
      const imageTower = await this.storeTower(depth.imageTowerBytes, imageTowerFileName, signal);
      const textTower = await this.storeTower(depth.textTowerBytes, towerFileName, signal);
      reencode = this.reencodeEstimate(key, pixels.decodeMsPerPhoto() + depth.towerMsPerPhoto, 'the tuned towers');
      weights = { dim: data.dim, image: identityMatrix(data.dim), text: identityMatrix(data.dim) };
      outcome = { ...depth.bothTowers, weights };
      metrics = { ...depth.bothTowers, ...base, kind: 'both-towers', imageTower, textTower, reencode };
    } else {
      weights = adapterWeights;
      outcome = depth.adapter;
      metrics = { ...adapterRest, ...base, kind: 'adapter' };
    }
    const saved = this.saveVersion(key, splits, weights, metrics);
    return { adapter: summary(saved), outcome, skippedPairs: skipped.length, skipped, comparison, ...(reencode ? { reencode } : {}) };
  }

  /** What activating a version with its own image tower costs: the library's photos × decode + tower per photo. */
  private reencodeEstimate(key: string, msPerPhoto: number, what: string): ActivationEstimate {
    const photos = this.library.models.coverage(key).total;
    const seconds = Math.round((photos * msPerPhoto) / 1000);
    return { photos, msPerPhoto: Math.round(msPerPhoto * 10) / 10, seconds, note: `activating re-encodes ${photos} photo${photos === 1 ? '' : 's'} with ${what}, about ${durationText(seconds)}` };
  }

  /**
   * Makes a version the one searches use: projects every stored embedding under the adapter's key, opens
   * (building, in the worker) its index, then in one transaction projects what arrived meanwhile and marks
   * it active, and swaps the library's search space. Searches keep answering from the old space throughout.
   */
  async activate(version: number, onProgress?: (p: AdapterJobProgress) => void): Promise<ActivationResult> {
    return this.exclusive('activating', async () => {
      const started = performance.now();
      const { model, key: baseKey } = this.library.requireModel();
      const record = this.version(version);
      // Checked first: an image-tuned version's photos have other vectors, so it is never searched under the
      // base key (which versionSearchKey would give its identity weights); it becomes a model switch instead.
      const image = imageTowerOf(record);
      if (image) return this.switchToImageVersion(record, image, started);
      const weights = decodeAdapter(record.weights);
      if (weights.dim !== model.dim) throw new ClipdexError('ADAPTER_INVALID', `adapter v${version} is ${weights.dim}-dimensional; the model is ${model.dim}-dimensional`);
      const current = this.library.searchSpace();
      if (current.adapter?.id === record.id) return { adapter: summary(this.library.adapters.get(record.id)!), projected: 0, durationMs: 0 };
      const key = versionSearchKey(baseKey, record.id, weights);
      // Until this activation ends, a library opening elsewhere leaves the key's rows and folder alone.
      const lease = ActivationLease.take(this.library.store.db, key);
      try {
        return await this.switchTo(record, weights, key, started, onProgress);
      } finally {
        lease.release();
      }
    });
  }

  /** The activation proper (its key leased by the caller). */
  private async switchTo(record: AdapterRecord, weights: AdapterWeights, key: string, started: number, onProgress?: (p: AdapterJobProgress) => void): Promise<ActivationResult> {
    const { model, key: baseKey, index: baseIndex } = this.library.requireModel();
    const adapted = new AdaptedEmbeddings(this.library.store.db, this.library.embeddings, baseKey);
    const filled = await adapted.fillMissing(key, weights, (done, total) => onProgress?.({ phase: 'projecting', done, total }));
    let projected = filled.written;
    // The projected rows (2 KB each) sit in the WAL; the index build reads them all, and reads through a
    // 200 MB WAL are slower than from the database file. Fold them in first (PASSIVE: never blocks).
    if (filled.written > 10_000) this.library.store.checkpointWal();
    // A text-tuned version's tower, checked against its fingerprint before anything switches.
    const text = await this.library.openTunedText(record);
    let index: Awaited<ReturnType<Library['openIndex']>>;
    try {
      // Searched under the base key (a text-tuned version): the base index, nothing to build.
      index = key === baseKey ? baseIndex : await this.library.openIndex(key, (p) => onProgress?.({ phase: 'indexing', index: p }));
    } catch (err) {
      await text?.release();
      throw err;
    }
    try {
      onProgress?.({ phase: 'switching' });
      projected += this.library.store.transaction(() => {
        const n = adapted.fillMissingSync(key, weights, filled.throughId);
        this.library.adapters.activate(record.id);
        return n;
      });
    } catch (err) {
      if (index !== baseIndex) await index.close();
      await text?.release();
      throw err;
    }
    this.library.setSearchSpace({ model, key, index, adapter: { id: record.id, version: record.version, weights, text } }, (old) => this.dropSpace(old));
    return { adapter: summary(this.library.adapters.get(record.id)!), projected, durationMs: Math.round(performance.now() - started) };
  }

  /**
   * An image-tuned version: its model folder materialized once under the data directory (the stored tower
   * checked against its SHA-256 first), then a model switch to that folder: every photo re-encoded in the
   * background, searches on the current model until the library switches.
   */
  private async switchToImageVersion(record: AdapterRecord, ref: TextTowerRef, started: number): Promise<ActivationResult> {
    const switcher = this.requireSwitcher();
    const dir = await this.versionModelDir(record, ref);
    const use = await switcher.use(dir);
    return { adapter: summary(record), projected: 0, durationMs: Math.round(performance.now() - started), modelSwitch: { ...use, dir } };
  }

  /** `<dataDir>/versions/models/<model>-v<N>-<sha12>/`, written once (staging folder + rename); reused after. */
  async versionModelDir(record: AdapterRecord, ref: TextTowerRef): Promise<string> {
    const { model, key } = this.library.requireModel();
    const name = key.split('#')[0]!.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
    const dir = join(versionsDir(this.library.paths.dir), MODEL_DIRS, `${name}-v${record.version}-${ref.sha256.slice(0, 12)}`);
    if (existsSync(join(dir, 'clipdex-adapter.json'))) return dir;
    const bytes = await this.readTower(record.version, ref, 'image', 'activated');
    // A joint version's folder holds its tuned text tower too: searches after the switch embed queries with it.
    const text = textTowerOf(record);
    const textBytes = text ? await this.readTower(record.version, text, 'text', 'activated') : undefined;
    const info: ExportInfo = {
      baseModel: this.library.modelRef,
      baseKey: key,
      adapterVersion: record.version,
      blend: Number(record.metrics.blend ?? 1),
      metrics: { before: record.metrics.before, after: record.metrics.after, ...(text ? { kind: 'both-towers', imageTower: ref, textTower: text } : { kind: 'image-blocks', imageTower: ref }) },
    };
    await exportAdaptedModel(model.spec, decodeAdapter(record.weights), dir, info, { image: bytes, ...(textBytes ? { text: textBytes } : {}) }, { link: true });
    return dir;
  }

  /** A version's stored tower, refused unless its whole-file SHA-256 is the recorded one (the weights that were judged). */
  private async readTower(version: number, ref: TextTowerRef, side: 'text' | 'image', use: string): Promise<Uint8Array> {
    const bytes = await readFile(await towerPath(this.library.store, this.library.paths.dir, ref)).catch((err: unknown) => {
      throw new ClipdexError('ADAPTER_INVALID', `version ${version}'s ${side} tower (${ref.file}) cannot be read: ${errorMessage(err)}`, { cause: err });
    });
    if (createHash('sha256').update(bytes).digest('hex') !== ref.sha256) {
      throw new ClipdexError('ADAPTER_INVALID', `version ${version}'s ${side} tower is not the one trained (its SHA-256 changed); it cannot be ${use}`);
    }
    return bytes;
  }

  private requireSwitcher(): ModelSwitcher {
    if (!this.options.switcher) throw new ClipdexError('INVALID_ARGUMENT', 'an image-tuned version is activated by re-encoding the library; this caller has no model switcher');
    return this.options.switcher;
  }

  /**
   * Back to the base model (`'base'`) or to an earlier version (activated again: re-projected and indexed).
   * On a model folder materialized from an image-tuned version, `'base'` switches back to its base model:
   * instant, its vectors were kept.
   */
  async rollback(to: 'base' | number, onProgress?: (p: AdapterJobProgress) => void): Promise<ActivationResult> {
    if (to !== 'base') return this.activate(to, onProgress);
    const derived = this.derivedFrom();
    if (derived) {
      return this.exclusive('activating', async () => {
        const started = performance.now();
        const use = await this.requireSwitcher().use(derived.baseModel);
        return { adapter: null, projected: 0, durationMs: Math.round(performance.now() - started), modelSwitch: { ...use, dir: derived.baseModel } };
      });
    }
    return this.exclusive('activating', async () => {
      const started = performance.now();
      const loaded = this.library.requireModel();
      this.library.adapters.deactivate(loaded.key);
      this.library.setSearchSpace({ model: loaded.model, key: loaded.key, index: loaded.index, adapter: null }, (old) => this.dropSpace(old));
      return { adapter: null, projected: 0, durationMs: Math.round(performance.now() - started) };
    });
  }

  /**
   * Writes version `version` as a model directory of plain ONNX files (default under the data directory's
   * exports/); returns the folder. Loadable with `--model <dir>`, or by any ONNX Runtime.
   */
  async export(version: number, outDir?: string): Promise<{ dir: string }> {
    const { model, key } = this.library.requireModel();
    const record = this.version(version);
    const weights = decodeAdapter(record.weights);
    const modelName = key.split('#')[0]!;
    const image = imageTowerOf(record);
    const text = textTowerOf(record);
    // The stored towers, checked against their fingerprints: an export must carry the weights that were judged.
    const imageBytes = image ? await this.readTower(version, image, 'image', 'exported') : undefined;
    const textBytes = text ? await this.readTower(version, text, 'text', 'exported') : undefined;
    const kind = image && text ? { kind: 'both-towers', imageTower: image, textTower: text } : image ? { kind: 'image-blocks', imageTower: image } : text ? { kind: 'text-blocks', textTower: text } : {};
    const dir = await exportAdaptedModel(
      model.spec,
      weights,
      outDir ?? defaultExportDir(this.library.paths.dir, modelName, version),
      {
        baseModel: this.library.modelRef,
        baseKey: key,
        adapterVersion: version,
        blend: Number(record.metrics.blend ?? 1),
        metrics: { before: record.metrics.before, after: record.metrics.after, retention: record.metrics.retention, ...kind },
      },
      imageBytes || textBytes ? { ...(imageBytes ? { image: imageBytes } : {}), ...(textBytes ? { text: textBytes } : {}) } : undefined,
    );
    return { dir };
  }

  /**
   * A version that is no longer searched gives back its stored vectors and index files (once its index is
   * closed) — unless it became active again meanwhile.
   */
  private async dropSpace(space: SearchSpace): Promise<void> {
    const base = this.library.requireModel().key;
    // A version searched under the base key owns no vectors and no index folder: nothing of it to give back.
    if (!space.adapter || space.key === base || this.library.searchSpace().key === space.key) return;
    new AdaptedEmbeddings(this.library.store.db, this.library.embeddings, base).drop(space.key);
    await rm(keyDir(this.library.paths.indexDir, space.key), { recursive: true, force: true });
  }

  private async exclusive<T>(what: string, run: () => Promise<T>): Promise<T> {
    if (this.job) throw new ClipdexError('BUSY', `the trainer is busy ${this.job}; wait for it to finish`);
    this.job = what;
    try {
      return await run();
    } finally {
      this.job = null;
    }
  }

  /**
   * Labeled pairs with the base embeddings of their photos and captions, and the split. Everything is put
   * in content order — photos by content hash, captions by text, pairs by both — so the data, and with it
   * the trained version, depend on the labels alone, never on row ids or the order labels were made in.
   */
  private async collect(
    shares: SplitShares,
    seed: number,
    folds?: number,
    prune?: (usable: UsableLabel[]) => Promise<{ usable: UsableLabel[]; skipped: SkippedLabel[] }>,
  ): Promise<{ data: TrainingData; skipped: SkippedLabel[]; splits: Map<number, 'train' | 'val'> }> {
    const { model, key } = this.library.requireModel();
    const d = model.dim;
    const found = labeledPhotos(this.library, key);
    const pruned = prune ? await prune(found.usable) : null;
    const labels = pruned ? { usable: pruned.usable, skipped: [...found.skipped, ...pruned.skipped] } : found;
    const vectorOf = new Map<string, Float32Array>();
    for (const u of labels.usable) if (!vectorOf.has(u.contentHash)) vectorOf.set(u.contentHash, u.vector);
    const photoKeys = [...vectorOf.keys()].sort(byCodeUnits);
    const captions = [...new Set(labels.usable.map((u) => u.pair.caption))].sort(byCodeUnits);
    const rowOf = new Map(photoKeys.map((h, i) => [h, i]));
    const captionOf = new Map(captions.map((c, i) => [c, i]));
    // Two copies of one photo labeled alike are one example, not two.
    const pairKeys = new Set(labels.usable.map((u) => rowOf.get(u.contentHash)! * captions.length + captionOf.get(u.pair.caption)!));
    const pairs = [...pairKeys].sort((a, b) => a - b).map((k) => [Math.floor(k / captions.length), k % captions.length] as [number, number]);
    const plan = planSplit(labels.usable, shares, seed, folds);
    const images = new Float32Array(photoKeys.length * d);
    photoKeys.forEach((h, i) => images.set(vectorOf.get(h)!, i * d));
    const texts = await this.embedTexts(captions);
    const probeList = PROBE_PHRASES.filter((p) => !captionOf.has(p));
    const gallery = this.gallerySample(key, d);
    return {
      data: {
        dim: d,
        images,
        texts,
        pairs,
        imageSplit: photoKeys.map((h) => plan.parts.get(h) ?? 'train'),
        photoKeys,
        captionTexts: captions,
        logitScale: model.spec.logitScale,
        ...(gallery.count >= 10 ? { probes: { texts: await this.embedTexts(probeList), count: probeList.length, gallery: gallery.vectors, galleryCount: gallery.count, phrases: probeList } } : {}),
      },
      skipped: labels.skipped,
      splits: storedSplits(labels.usable, plan),
    };
  }

  private async embedTexts(texts: string[]): Promise<Float32Array> {
    const { model } = this.library.requireModel();
    const out = new Float32Array(texts.length * model.dim);
    for (let s = 0; s < texts.length; s += 64) {
      const vectors = await model.embedTexts(texts.slice(s, s + 64));
      vectors.forEach((v, i) => out.set(v, (s + i) * model.dim));
    }
    return out;
  }

  /** A fixed pseudo-random sample of the library's photos (the same at every run, for comparable retention). */
  private gallerySample(key: string, d: number): { vectors: Float32Array; count: number } {
    const rows = this.library.embeddings.indexedSample(key, GALLERY_SAMPLE);
    const vectors = new Float32Array(rows.length * d);
    rows.forEach((r, i) => vectors.set(blobToVector(r, d), i * d));
    return { vectors, count: rows.length };
  }
}

function summary(record: AdapterRecord): AdapterSummary {
  const { weights: _w, ...rest } = record;
  return rest;
}

/** The base model of another of the library's models that has a version `version` (model switch). */
function otherModelVersion(library: Library, currentKey: string, version: number): { key: string; name: string; ref: string } | null {
  for (const { key, ref } of library.models.knownRefs()) {
    if (key === currentKey) continue;
    if (library.adapters.list(key).some((a) => a.version === version)) return { key, name: key.split('#')[0]!, ref };
  }
  return null;
}

function durationText(seconds: number): string {
  if (seconds < 90) return `${seconds} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/**
 * The labeled photos' pixels for image-block tuning, through the product's preprocessing (the model's own
 * `preprocess`, as ingest encodes): one per content, from the first of its files that decodes. A content none
 * of whose files decodes is left out, each of its labels skipped with the reason.
 */
class PhotoPixels {
  private readonly byHash = new Map<string, Float32Array>();
  private decodeMs = 0;

  constructor(
    private readonly library: Library,
    private readonly onProgress?: (p: AdapterJobProgress) => void,
  ) {}

  async keepReadable(usable: UsableLabel[]): Promise<{ usable: UsableLabel[]; skipped: SkippedLabel[] }> {
    const started = performance.now();
    const { spec } = this.library.requireModel().model;
    const pathsOf = new Map<string, string[]>();
    for (const u of usable) {
      const path = this.library.images.get(u.imageId)?.path;
      const paths = pathsOf.get(u.contentHash) ?? [];
      if (path && !paths.includes(path)) paths.push(path);
      pathsOf.set(u.contentHash, paths);
    }
    const why = new Map<string, string>();
    const hashes = [...pathsOf.keys()];
    const plane = 3 * spec.preprocess.size ** 2;
    for (let s = 0; s < hashes.length; s += 32) {
      const chunk = hashes.slice(s, s + 32);
      for (const h of chunk) {
        for (const path of pathsOf.get(h)!) {
          const batch = await preprocessBatch([path], spec.preprocess);
          const item = batch.items[0]!;
          if (item.ok) {
            this.byHash.set(h, batch.tensor.slice(0, plane));
            why.delete(h);
            break;
          }
          why.set(h, `photo unreadable for image-block tuning (${path}): ${errorMessage(item.error)}`);
        }
        if (!this.byHash.has(h) && !why.has(h)) why.set(h, 'photo has no file to read for image-block tuning');
      }
      this.onProgress?.({ phase: 'decoding', done: Math.min(hashes.length, s + chunk.length), total: hashes.length });
    }
    this.decodeMs = performance.now() - started;
    const skipped: SkippedLabel[] = [];
    const kept = usable.filter((u) => {
      if (this.byHash.has(u.contentHash)) return true;
      skipped.push({ pairId: u.pair.id, caption: u.pair.caption, path: pathsOf.get(u.contentHash)?.[0] ?? u.pair.lastPath, reason: why.get(u.contentHash)! });
      return false;
    });
    return { usable: kept, skipped };
  }

  /** The pixels in the data's photo-row order. */
  rows(photoKeys: readonly string[]): Float32Array[] {
    return photoKeys.map((h) => this.byHash.get(h)!);
  }

  decodeMsPerPhoto(): number {
    return this.byHash.size > 0 ? this.decodeMs / this.byHash.size : 0;
  }
}
