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
import { ClipdexError } from '../errors.js';
import { keyDir } from '../index/index-files.js';
import { parseParam } from '../validation/param-rules.js';
import { testFractionRule, valFractionRule } from '../validation/train-params.js';
import type { IndexProgress } from '../index/index-manager.js';
import type { Library, SearchSpace } from '../library/library.js';
import { type AdapterRecord, type AdapterSummary, textTowerOf, towerFileName, versionsDir } from '../store/adapters-repo.js';
import { blobToVector } from '../store/vector-blob.js';
import { AdaptedEmbeddings, versionSearchKey } from '../adapter/adapter-embeddings.js';
import { ActivationLease } from '../adapter/adapter-leftovers.js';
import { defaultExportDir, exportAdaptedModel } from './adapter-export.js';
import { decodeAdapter, encodeAdapter, identityMatrix, type AdapterWeights } from '../adapter/adapter-weights.js';
import { writeFileAtomic } from './text-tower/tower-writer.js';
import { labeledPhotos, type SkippedLabel } from './labeled-photos.js';
import { byCodeUnits, type SplitShares } from './pair-split.js';
import { PROBE_PHRASES } from './probe-phrases.js';
import { DEFAULT_SHARES, planSplit, storedSplits } from './split-plan.js';
import { type CandidateOutcome, trainAdapters, trainWithTextBlocks, type TrainOptions, type TrainOutcome, type TrainProgress, type TrainingData } from './trainer.js';
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
  /** LoRA rank of the tuned text blocks' matrices; 0/absent = full weights. */
  lora?: number;
  /**
   * Library-only (neither the CLI nor the API sets it): which candidate of a text-block run to save —
   * 'selected' (default) the one the selection step scored higher, or the named one, to use a candidate
   * the selection did not prefer (the comparison still says which it chose).
   */
  save?: 'selected' | 'adapter' | 'text-blocks';
}

/** Both candidates of a `textBlocks` run, side by side (the CLI's table, the API's `comparison`). */
export interface CandidateComparison {
  chosen: 'adapter' | 'text-blocks';
  adapter: CandidateOutcome;
  textBlocks: CandidateOutcome & { k: number; lora: number | null };
}

export type AdapterJobProgress =
  | { phase: 'preparing'; message: string }
  | { phase: 'caching'; done: number; total: number }
  | { phase: 'training'; training: TrainProgress; candidate?: 'adapter' | 'text-blocks' }
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
  /** Present when text blocks were tuned: both candidates and which one was saved. */
  comparison?: CandidateComparison;
}

export interface ActivationResult {
  adapter: AdapterSummary | null;
  projected: number;
  durationMs: number;
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

export class AdapterService {
  private job: string | null = null;

  constructor(private readonly library: Library) {}

  /** What is running now ('training', 'activating'), or null. */
  get busy(): string | null {
    return this.job;
  }

  list(): { versions: AdapterSummary[]; active: number | null; otherModels: OtherModelVersions[] } {
    const { key } = this.library.requireModel();
    const versions = this.library.adapters.list(key);
    return { versions, active: versions.find((v) => v.active)?.version ?? null, otherModels: this.otherModels() };
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
      if (request.lora && !request.textBlocks) throw new ClipdexError('INVALID_ARGUMENT', 'lora applies to tuned text blocks: give textBlocks too');
      const shares: SplitShares = {
        valFraction: parseParam(valFractionRule, request.valFraction ?? DEFAULT_SHARES.valFraction, 'valFraction'),
        testFraction: parseParam(testFractionRule, request.testFraction ?? DEFAULT_SHARES.testFraction, 'testFraction'),
      };
      onProgress?.({ phase: 'preparing', message: 'reading labeled photos and encoding captions' });
      const { data, skipped, splits } = await this.collect(shares, request.seed ?? 1, request.folds);
      const skippedPairs = skipped.length;
      const { key } = this.library.requireModel();
      if (request.textBlocks) return this.trainDepth(request, data, splits, skipped, shares, onProgress, signal);
      const outcome = await trainAdapters(data, request, (training) => onProgress?.({ phase: 'training', training }), signal);
      onProgress?.({ phase: 'evaluating' });
      const { weights, ...rest } = outcome;
      const metrics: AdapterMetrics = { ...rest, baseKey: key, dim: data.dim, ...shares, skippedPairs };
      // One transaction: a run killed before it commits leaves neither a version nor a changed split record.
      const saved = this.library.store.transaction(() => {
        this.library.pairs.setSplits(splits);
        return this.library.adapters.add(key, encodeAdapter(weights), metrics as unknown as Record<string, unknown>);
      });
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
      const sha256 = createHash('sha256').update(depth.towerBytes).digest('hex');
      const file = towerFileName(sha256);
      await writeFileAtomic(join(versionsDir(this.library.paths.dir), file), depth.towerBytes, signal);
      // On Postgres every machine searches with the versions: the tower goes into the database too, before its row.
      shareTower(this.library.store, sha256, depth.towerBytes);
      // The image side is the locked image tower: the stored embeddings as they are.
      weights = { dim: data.dim, image: identityMatrix(data.dim), text: identityMatrix(data.dim) };
      outcome = { ...depth.textBlocks, weights };
      metrics = { ...depth.textBlocks, ...base, kind: 'text-blocks', textTower: { file, sha256 } };
    } else {
      weights = adapterWeights;
      outcome = depth.adapter;
      metrics = { ...adapterRest, ...base, kind: 'adapter' };
    }
    const saved = this.library.store.transaction(() => {
      this.library.pairs.setSplits(splits);
      return this.library.adapters.add(key, encodeAdapter(weights), metrics);
    });
    return { adapter: summary(saved), outcome, skippedPairs: skipped.length, skipped, comparison };
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

  /** Back to the base model (`'base'`) or to an earlier version (activated again: re-projected and indexed). */
  async rollback(to: 'base' | number, onProgress?: (p: AdapterJobProgress) => void): Promise<ActivationResult> {
    if (to !== 'base') return this.activate(to, onProgress);
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
    const tower = textTowerOf(record);
    // The stored tower, checked against its fingerprint: an export must carry the weights that were judged.
    const textBytes = tower ? await readFile(await towerPath(this.library.store, this.library.paths.dir, tower)) : undefined;
    if (tower && createHash('sha256').update(textBytes!).digest('hex') !== tower.sha256) {
      throw new ClipdexError('ADAPTER_INVALID', `version ${version}'s text tower is not the one trained (its SHA-256 changed); it cannot be exported`);
    }
    const dir = await exportAdaptedModel(
      model.spec,
      weights,
      outDir ?? defaultExportDir(this.library.paths.dir, modelName, version),
      {
        baseModel: this.library.modelRef,
        baseKey: key,
        adapterVersion: version,
        blend: Number(record.metrics.blend ?? 1),
        metrics: { before: record.metrics.before, after: record.metrics.after, retention: record.metrics.retention, ...(tower ? { kind: 'text-blocks', textTower: tower } : {}) },
      },
      textBytes,
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
  private async collect(shares: SplitShares, seed: number, folds?: number): Promise<{ data: TrainingData; skipped: SkippedLabel[]; splits: Map<number, 'train' | 'val'> }> {
    const { model, key } = this.library.requireModel();
    const d = model.dim;
    const labels = labeledPhotos(this.library, key);
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
