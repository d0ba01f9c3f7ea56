/**
 * `--text-blocks k --image-blocks m` end to end on a real library (../shared/photos/labeled, the self-built tiny
 * model), in one training run: the adapter, the image-only first stage and the joint candidate on one split;
 * the joint version's two towers stored by their whole-file SHA-256; activation as a model switch to a folder
 * holding both tuned towers (every photo re-encoded with the stored image tower, queries embedded by the
 * stored text tower); the export read by transformers.js giving the active version's embeddings; and a run
 * killed inside the second stage leaving no half version.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openGraph, runSession, tensor } from '../src/inference/onnx-runtime.js';
import { ModelSwitcher } from '../src/ingest/model-switch.js';
import { Library } from '../src/library/library.js';
import { preprocessBatch } from '../src/model/image-preprocess.js';
import { keyDir } from '../src/index/index-files.js';
import { queryLogPath, readQueryLog } from '../src/index/query-log.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { imageTowerOf, textTowerOf, versionsDir } from '../src/store/adapters-repo.js';
import { AdapterService, type TrainResult } from '../src/train/adapter-service.js';
import { describeModelRef } from '../src/train/adapter-export.js';
import { folderLabelRows, importLabels } from '../src/train/label-import.js';
import { CLI, runCli } from './helpers/cli.js';
import { labeledLibrary } from './helpers/labeled-library.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const labeled = sharedPath('photos', 'labeled');
const firstPhoto = (folder: string) => join(labeled!, folder, readdirSync(join(labeled!, folder)).filter((f) => f.endsWith('.webp')).sort()[0]!);
const maxGap = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
};
const unit = (v: ArrayLike<number>) => {
  const norm = Math.hypot(...Array.from(v));
  return Float32Array.from(v, (x) => x / norm);
};

describe.skipIf(!labeled)(`both towers tuned in one run on ../shared/photos/labeled ${labeled ? '' : NEEDS_SHARED}`, () => {
  let dir: string;
  let dataDir: string;
  let cacheDir: string;
  let modelDir: string;
  let library: Library;
  let switcher: ModelSwitcher;
  let service: AdapterService;
  let run: TrainResult;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-both-'));
    // The labeled photos indexed once per test process, copied here (test/helpers/labeled-library.ts).
    ({ dataDir, cacheDir, modelDir } = await labeledLibrary(dir));
    library = await Library.open({ dataDir, model: modelDir, cacheDir });
    expect(importLabels(library, folderLabelRows(library, labeled!)).problemCount).toBe(0);
    switcher = new ModelSwitcher(library, { cacheDir, pollMs: 60_000 });
    service = new AdapterService(library, { switcher });
    // The joint candidate is saved whatever the selection prefers (the library-only `save` seam), so that its
    // activation and export are exercised; the comparison still says which one the selection chose.
    run = await service.train({ seed: 3, textBlocks: 1, imageBlocks: 1, epochs: 3, save: 'both-towers' });
  }, 600_000);

  afterAll(async () => {
    await switcher?.close();
    await library?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports the adapter, the image-only stage and the joint candidate on one split, the selection by held-out recall', () => {
    const c = run.comparison!;
    const joint = c.bothTowers!;
    expect(joint).toMatchObject({ textBlocks: 1, imageBlocks: 1, lora: null, rounds: 1 });
    expect(c.imageBlocks).toMatchObject({ k: 1, lora: null });
    expect(c.textBlocks).toBeUndefined();
    for (const field of ['trainPairs', 'trainImages', 'testPairs', 'testImages', 'captions'] as const) {
      expect(joint[field]).toBe(c.adapter[field]);
      expect(c.imageBlocks![field]).toBe(c.adapter[field]);
    }
    // The joint candidate is judged against the base model, as every candidate is: the same "before".
    expect(joint.gain!.before).toBeCloseTo(c.adapter.gain!.before, 2);
    expect(joint.gain!.before).toBeCloseTo(c.imageBlocks!.gain!.before, 6);
    expect(joint.imageBlend).toBe(c.imageBlocks!.blend);
    const chosenScore = (o: typeof c.adapter) => o.blends.find((b) => b.blend === o.blend)!.meanRecall;
    expect(c.chosen).toBe(chosenScore(joint) > chosenScore(c.adapter) ? 'both-towers' : 'adapter');
    // Stage 2's blend 0 is stage 1's model: the joint choice is never worse on the held-out photos (blend tolerance).
    expect(chosenScore(joint)).toBeGreaterThanOrEqual(chosenScore(c.imageBlocks!) - 0.005 - 1e-9);
    expect(run.adapter.metrics.kind).toBe('both-towers');
    expect(run.reencode!.note).toMatch(/^activating re-encodes \d+ photos with the tuned towers, about \d+/);
  });

  it('stores both towers, each fingerprinted whole-file and kept by towerFiles()', () => {
    const image = imageTowerOf(run.adapter)!;
    const text = textTowerOf(run.adapter)!;
    expect(image.file).toBe(`image-${image.sha256}.onnx`);
    expect(text.file).toBe(`text-${text.sha256}.onnx`);
    for (const ref of [image, text]) {
      const bytes = readFileSync(join(versionsDir(dataDir), ref.file));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(ref.sha256);
      expect(library.adapters.towerFiles().has(ref.file)).toBe(true);
    }
    expect(readdirSync(versionsDir(dataDir)).sort()).toEqual([image.file, text.file].sort());
  });

  let baseKey: string;
  let derivedDir: string;
  const phrases = ['a photo of fishes', 'a photo of tools', 'a red bicycle by the sea'];

  it('activates by a model switch: photos re-encoded by the stored image tower, queries embedded by the stored text tower, in an index of its own', async () => {
    baseKey = library.requireModel().key;
    const use = (await service.activate(run.adapter.version)).modelSwitch!;
    expect(use.outcome).toBe('pending');
    expect(library.searchSpace().key).toBe(baseKey);
    // What `clipdex status` names the switch's target by: the version, not only a folder under the data directory.
    expect(describeModelRef(use.dir)).toBe(`version ${run.adapter.version} of ${library.modelRef} (${use.dir})`);
    await switcher.runToEnd();
    derivedDir = use.dir;
    const key = library.requireModel().key;
    expect(key).toBe(use.key);
    // Its own key and index, never the base one (its adapter weights are the identity on both sides).
    expect(key).not.toBe(baseKey);
    expect(library.searchSpace().key).toBe(key);
    expect(library.embeddings.count(key)).toBe(library.embeddings.count(baseKey));
    expect(service.derivedFrom()).toMatchObject({ baseKey, version: run.adapter.version, kind: 'both-towers' });

    const spec = library.requireModel().model.spec;
    const imageRef = imageTowerOf(run.adapter)!;
    const textRef = textTowerOf(run.adapter)!;
    expect(readFileSync(join(derivedDir, spec.vision.file)).equals(readFileSync(join(versionsDir(dataDir), imageRef.file)))).toBe(true);
    expect(readFileSync(join(derivedDir, spec.text.file)).equals(readFileSync(join(versionsDir(dataDir), textRef.file)))).toBe(true);
    // At a text blend above 0 the stored text tower is not the base one.
    if (run.comparison!.bothTowers!.blend > 0) expect(readFileSync(join(versionsDir(dataDir), textRef.file)).equals(readFileSync(join(modelDir, spec.text.file)))).toBe(false);

    // A photo's stored vector is the stored image tower's own embedding of it, run here on the stored file.
    const session = await openGraph(readFileSync(join(versionsDir(dataDir), imageRef.file)), 'the stored tuned image tower');
    try {
      const photo = firstPhoto('fishes');
      const { tensor: pixels } = await preprocessBatch([photo], spec.preprocess);
      const S = spec.preprocess.size;
      const out = await runSession(session, 'the test', () => ({ [spec.vision.input]: tensor('float32', pixels, [1, 3, S, S]) }));
      const id = library.images.getByPath(photo)!.id;
      expect(maxGap(library.embeddings.forImage(id, key)!, unit(out[spec.vision.output]!.data as Float32Array))).toBeLessThan(1e-5);
      if (run.comparison!.bothTowers!.imageBlend > 0) expect(maxGap(library.embeddings.forImage(id, key)!, library.embeddings.forImage(id, baseKey)!)).toBeGreaterThan(1e-4);
    } finally {
      await session.release();
    }

    // The query: the library's text embedding is the stored text tower's, and a search scores with it.
    const stored = await library.requireModel().model.openTextTowerAt(join(versionsDir(dataDir), textRef.file));
    try {
      const ours = await library.requireModel().model.embedTexts(phrases);
      const theirs = await stored.encode(phrases);
      ours.forEach((v, r) => expect(maxGap(v, theirs[r]!)).toBeLessThan(1e-5));
      const top = (await new QueryEngine(library).search({ terms: [{ text: phrases[0]! }], limit: 5 })).results[0]!;
      const v = library.embeddings.forImage(top.id, key)!;
      let cos = 0;
      for (let i = 0; i < v.length; i++) cos += theirs[0]![i]! * v[i]!;
      expect(top.score).toBeCloseTo(cos, 4);
      // The search logged its query embedding for the index's ef tuner (src/index/query-log.ts), under this key.
      const logged = readQueryLog(queryLogPath(keyDir(library.paths.indexDir, key)), v.length);
      expect(logged.some((q) => maxGap(q, theirs[0]!) < 1e-6)).toBe(true);
    } finally {
      await stored.release();
    }
  }, 300_000);

  it('exports a folder transformers.js reads: its text and image embeddings are the active version\'s', async () => {
    // Exported from the base model's view (versions belong to the model they were trained on); the switch back is instant.
    const back = await service.rollback('base');
    expect(back.modelSwitch!.outcome).toBe('switched');
    const { dir: exported } = await service.export(run.adapter.version, join(dir, 'export'));
    const spec = library.requireModel().model.spec;
    expect(readFileSync(join(exported, spec.vision.file)).equals(readFileSync(join(derivedDir, spec.vision.file)))).toBe(true);
    expect(readFileSync(join(exported, spec.text.file)).equals(readFileSync(join(derivedDir, spec.text.file)))).toBe(true);
    // Back on the joint version (its vectors kept: at once), which is what the export must reproduce.
    const again = (await service.activate(run.adapter.version)).modelSwitch!;
    expect(again.outcome).toBe('switched');
    const key = library.requireModel().key;
    const ours = await library.requireModel().model.embedTexts(phrases);

    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = `${dirname(exported)}/`;
    const name = basename(exported);
    const options = { local_files_only: true, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } } as const;
    const tokenizer = await tf.AutoTokenizer.from_pretrained(name, { local_files_only: true });
    const textModel = await tf.CLIPTextModelWithProjection.from_pretrained(name, options);
    const vision = await tf.CLIPVisionModelWithProjection.from_pretrained(name, options);
    try {
      const CONTEXT = 77;
      const ids = new BigInt64Array(phrases.length * CONTEXT).fill(BigInt(tokenizer.pad_token_id!));
      phrases.forEach((t, row) => tokenizer.encode(t).forEach((id, k) => (ids[row * CONTEXT + k] = BigInt(id))));
      const { text_embeds } = await textModel({ input_ids: new tf.Tensor('int64', ids, [phrases.length, CONTEXT]) });
      const d = text_embeds.dims[1] as number;
      const flat = text_embeds.data as Float32Array;
      phrases.forEach((_, r) => expect(maxGap(unit(flat.subarray(r * d, (r + 1) * d)), ours[r]!)).toBeLessThan(1e-4));

      const photo = firstPhoto('tools');
      const S = spec.preprocess.size;
      const { tensor: pixels } = await preprocessBatch([photo], spec.preprocess);
      const { image_embeds } = await vision({ pixel_values: new tf.Tensor('float32', pixels, [1, 3, S, S]) });
      expect(maxGap(unit(image_embeds.data as Float32Array), library.embeddings.forImage(library.images.getByPath(photo)!.id, key)!)).toBeLessThan(1e-4);
    } finally {
      await textModel.dispose();
      await vision.dispose();
    }
    await service.rollback('base');
  }, 300_000);

  it('clipdex train --text-blocks 1 --image-blocks 1: the three candidates side by side, and the run ends by naming the saved version', async () => {
    await switcher.close();
    const key = library.requireModel().key;
    const before = library.adapters.list(key).length;
    await library.close();
    let reopened = false;
    try {
      const r = await runCli(['--data-dir', dataDir, '--cache-dir', cacheDir, 'train', '--text-blocks', '1', '--image-blocks', '1', '--epochs', '1', '--seed', '3'], {}, 240_000);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/Candidates on the same split \(saved: (the adapter|both towers), the higher on the selection step of the adapter and both towers\)/);
      expect(r.stdout).toContain('image blocks k=1 (stage 1)');
      expect(r.stdout).toContain('both: image k=1, text k=1');
      const saved = /Saved as (jointly tuned version \(its own image and text towers\)|adapter) v(\d+)\./.exec(r.stdout);
      expect(saved, r.stdout).not.toBeNull();
      expect(r.stdout).toContain(`(saved: ${saved![1] === 'adapter' ? 'the adapter' : 'both towers'},`);
      // A joint version waits to be activated (a re-encode), and says how.
      if (saved![1] !== 'adapter') expect(r.stdout).toContain(`clipdex adapters activate ${saved![2]}`);
      library = await Library.open({ dataDir, cacheDir });
      reopened = true;
      const versions = library.adapters.list(key);
      expect(versions).toHaveLength(before + 1);
      expect(versions.at(-1)).toMatchObject({ version: Number(saved![2]), metrics: { kind: saved![1] === 'adapter' ? 'adapter' : 'both-towers' } });
    } finally {
      if (!reopened) library = await Library.open({ dataDir, cacheDir });
      switcher = new ModelSwitcher(library, { cacheDir, pollMs: 60_000 });
    }
  }, 300_000);

  it('a run SIGKILLed inside the second stage (text blocks against the tuned image tower) leaves no version and no tower file', async () => {
    await switcher.close();
    const key = library.requireModel().key;
    const versionsBefore = library.adapters.list(key).map((v) => v.version);
    await library.close();
    const listing = () => readdirSync(versionsDir(dataDir)).filter((f) => f.endsWith('.onnx') || f.includes('.partial-')).sort();
    const filesBefore = listing();
    const child = spawn(process.execPath, [CLI, '--data-dir', dataDir, '--cache-dir', cacheDir, 'train', '--text-blocks', '1', '--image-blocks', '1', '--epochs', '3', '--seed', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (/^both-towers .*epoch \d+/m.test(err)) resolve();
      });
      child.on('exit', (code) => reject(new Error(`clipdex train ended (${code}) before the second stage trained: ${err}`)));
    });
    // Epochs 2 and 3 of the folds and the final fit are still to run: the kill lands inside stage 2.
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    library = await Library.open({ dataDir, cacheDir });
    switcher = new ModelSwitcher(library, { cacheDir, pollMs: 60_000 });
    expect(library.adapters.list(key).map((v) => v.version)).toEqual(versionsBefore);
    expect(listing()).toEqual(filesBefore);
    expect(existsSync(join(versionsDir(dataDir), imageTowerOf(run.adapter)!.file))).toBe(true);
  }, 300_000);
});
