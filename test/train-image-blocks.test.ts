/**
 * `--image-blocks k` end to end on a real library (../shared/photos/labeled, the self-built tiny model): both
 * candidates on one split, the image-tuned version's tower stored by its whole-file SHA-256, activation as a
 * model switch to a model folder materialized from it (every photo re-encoded, searches on the base model
 * until then), the re-encoded vectors being the tuned tower's own — and transformers.js's, reading that folder —,
 * the export carrying exactly the stored tower, rollback to the base instant and exact, and the CLI's options,
 * report and refusals.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openGraph, runSession, tensor } from '../src/inference/onnx-runtime.js';
import { ModelSwitcher } from '../src/ingest/model-switch.js';
import { Library } from '../src/library/library.js';
import { preprocessBatch } from '../src/model/image-preprocess.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { startServer } from '../src/server/server.js';
import { imageTowerOf, textTowerOf, versionsDir } from '../src/store/adapters-repo.js';
import { AdapterService, type TrainResult } from '../src/train/adapter-service.js';
import { folderLabelRows, importLabels } from '../src/train/label-import.js';
import { CLI, runCli } from './helpers/cli.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from './helpers/e2e-server.js';
import { labeledLibrary } from './helpers/labeled-library.js';
import { indexFiles } from './helpers/library-fixture.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const labeled = sharedPath('photos', 'labeled');
const skimage = sharedPath('photos', 'skimage');
const FOLDERS = ['fishes', 'tools', 'renewable', 'others'];

describe.skipIf(!labeled || !skimage)(`image-block training and activation on ../shared/photos/labeled ${labeled && skimage ? '' : NEEDS_SHARED}`, () => {
  let dir: string;
  let dataDir: string;
  let cacheDir: string;
  let modelDir: string;
  let library: Library;
  let switcher: ModelSwitcher;
  let service: AdapterService;
  let engine: QueryEngine;
  let run: TrainResult;
  let broken: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-iblocks-'));
    ({ dataDir, cacheDir, modelDir } = await labeledLibrary(dir));
    library = await Library.open({ dataDir, model: modelDir, cacheDir });
    expect(importLabels(library, folderLabelRows(library, labeled!)).problemCount).toBe(0);
    // A labeled photo of its own content whose file no longer decodes: left out with its reason, not a crash.
    const extra = join(dir, 'extra');
    mkdirSync(extra);
    broken = join(extra, 'coffee.png');
    copyFileSync(join(skimage!, 'coffee.png'), broken);
    const [id] = await indexFiles(library, extra, [broken]);
    library.pairs.addUnique(id!, 'a photo of others');
    writeFileSync(broken, 'not a photo any more');
    switcher = new ModelSwitcher(library, { cacheDir, pollMs: 60_000 });
    service = new AdapterService(library, { switcher });
    engine = new QueryEngine(library);
    run = await service.train({ seed: 3, imageBlocks: 1, epochs: 3 });
  }, 300_000);

  afterAll(async () => {
    await switcher?.close();
    await library?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports both candidates on the same split and skips the labeled photo whose file does not decode', () => {
    const c = run.comparison!;
    expect(c.imageBlocks).toMatchObject({ k: 1, lora: null });
    expect(c.textBlocks).toBeUndefined();
    for (const field of ['trainPairs', 'trainImages', 'testPairs', 'testImages', 'captions'] as const) expect(c.imageBlocks![field]).toBe(c.adapter[field]);
    expect(c.adapter.gain).not.toBeNull();
    expect(c.imageBlocks!.gain).not.toBeNull();
    // At blend 0 the image head is the tower itself: the same "before" as the adapter's base.
    expect(c.imageBlocks!.gain!.before).toBeCloseTo(c.adapter.gain!.before, 2);
    const chosenScore = (o: typeof c.adapter) => o.blends.find((b) => b.blend === o.blend)!.meanRecall;
    expect(c.chosen).toBe(chosenScore(c.imageBlocks!) > chosenScore(c.adapter) ? 'image-blocks' : 'adapter');
    expect(run.adapter.metrics.kind).toBe(c.chosen);
    const skipped = run.skipped.find((s) => s.path === broken);
    expect(skipped?.reason).toMatch(/^photo unreadable for image-block tuning/);
  });

  let imageRun: TrainResult;
  it('stores an image-tuned version: identity weights, its tower fingerprinted whole-file, kept by towerFiles(), and a re-encode estimate', async () => {
    imageRun = run.comparison!.chosen === 'image-blocks' ? run : await service.train({ seed: 3, imageBlocks: 1, epochs: 3, save: 'image-blocks' });
    const ref = imageTowerOf(imageRun.adapter)!;
    expect(ref.file).toBe(`image-${ref.sha256}.onnx`);
    expect(textTowerOf(imageRun.adapter)).toBeNull();
    const bytes = readFileSync(join(versionsDir(dataDir), ref.file));
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(ref.sha256);
    expect(library.adapters.towerFiles().has(ref.file)).toBe(true);
    expect(readdirSync(versionsDir(dataDir)).filter((f) => !library.adapters.towerFiles().has(f))).toEqual([]);
    const photos = library.models.coverage(library.requireModel().key).total;
    expect(imageRun.reencode).toMatchObject({ photos });
    expect(imageRun.reencode!.msPerPhoto).toBeGreaterThan(0);
    expect(imageRun.reencode!.note).toMatch(new RegExp(`^activating re-encodes ${photos} photos with the tuned image tower, about \\d+`));
    expect(imageRun.adapter.metrics.reencode).toEqual(imageRun.reencode);

    // The export carries exactly the trained tower (its text tower is the base one, locked on this side).
    const { dir: exported } = await service.export(imageRun.adapter.version, join(dir, 'export'));
    const spec = library.requireModel().model.spec;
    expect(readFileSync(join(exported, spec.vision.file)).equals(bytes)).toBe(true);
    expect(readFileSync(join(exported, spec.text.file)).equals(readFileSync(join(spec.dir, spec.text.file)))).toBe(true);
  }, 300_000);

  const phrases = FOLDERS.map((f) => `a photo of ${f}`);
  const search = async () => Promise.all(phrases.map((text) => engine.search({ terms: [{ text }], limit: 20 })));
  const hits = (rs: Awaited<ReturnType<typeof search>>) => rs.map((r) => r.results.map((h) => [h.id, h.score]));
  let baseResults: Awaited<ReturnType<typeof search>>;
  let baseKey: string;
  let derivedKey: string;

  it('activates by a model switch: pending while searches keep the base model, then every photo re-encoded with the tuned tower', async () => {
    // The photo broken for training is whole again (a switch waits for every photo, as `models use` does).
    copyFileSync(join(skimage!, 'coffee.png'), broken);
    baseKey = library.requireModel().key;
    baseResults = await search();
    const result = await service.activate(imageRun.adapter.version);
    const use = result.modelSwitch!;
    expect(use.outcome).toBe('pending');
    expect(use.key).not.toBe(baseKey);
    expect(existsSync(join(use.dir, 'clipdex-adapter.json'))).toBe(true);
    expect(use.dir.startsWith(join(versionsDir(dataDir), 'models'))).toBe(true);
    // Until the switch ends, searches use the base model exactly as before.
    expect(library.searchSpace().key).toBe(baseKey);
    expect(hits(await search())).toEqual(hits(baseResults));
    await switcher.runToEnd();
    derivedKey = use.key;
    expect(library.requireModel().key).toBe(derivedKey);
    expect(library.searchSpace().key).toBe(derivedKey);
    expect(library.embeddings.count(derivedKey)).toBe(library.embeddings.count(baseKey));

    // A photo's stored vector is the stored tuned tower's own embedding of it (run here on the stored file).
    const ref = imageTowerOf(imageRun.adapter)!;
    const spec = library.requireModel().model.spec;
    const session = await openGraph(readFileSync(join(versionsDir(dataDir), ref.file)), 'the stored tuned image tower');
    let worst = 0;
    let moved = 0;
    try {
      const photo = join(labeled!, 'fishes', readdirSync(join(labeled!, 'fishes')).filter((f) => f.endsWith('.webp')).sort()[0]!);
      const id = library.images.getByPath(photo)!.id;
      const { tensor: pixels } = await preprocessBatch([photo], spec.preprocess);
      const S = spec.preprocess.size;
      const out = await runSession(session, 'the test', () => ({ [spec.vision.input]: tensor('float32', pixels, [1, 3, S, S]) }));
      const raw = out[spec.vision.output]!.data as Float32Array;
      const norm = Math.hypot(...Array.from(raw));
      const stored = library.embeddings.forImage(id, derivedKey)!;
      const base = library.embeddings.forImage(id, baseKey)!;
      stored.forEach((x, i) => {
        worst = Math.max(worst, Math.abs(x - raw[i]! / norm));
        moved = Math.max(moved, Math.abs(x - base[i]!));
      });
    } finally {
      await session.release();
    }
    expect(worst).toBeLessThan(1e-5);
    expect(moved).toBeGreaterThan(1e-4);

    // An independent reader: transformers.js loads the folder the library now searches with and embeds the same
    // pixels through its own CLIP vision class; its embedding is the stored one.
    tf.env.allowRemoteModels = false;
    tf.env.allowLocalModels = true;
    tf.env.localModelPath = `${dirname(use.dir)}/`;
    const vision = await tf.CLIPVisionModelWithProjection.from_pretrained(basename(use.dir), { local_files_only: true, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } });
    try {
      const photo = join(labeled!, 'tools', readdirSync(join(labeled!, 'tools')).filter((f) => f.endsWith('.webp')).sort()[0]!);
      const S = spec.preprocess.size;
      const { tensor: pixels } = await preprocessBatch([photo], spec.preprocess);
      const { image_embeds } = await vision({ pixel_values: new tf.Tensor('float32', pixels, [1, 3, S, S]) });
      const theirs = image_embeds.data as Float32Array;
      const norm = Math.hypot(...Array.from(theirs));
      const stored = library.embeddings.forImage(library.images.getByPath(photo)!.id, derivedKey)!;
      let gap = 0;
      stored.forEach((x, i) => (gap = Math.max(gap, Math.abs(x - theirs[i]! / norm))));
      expect(gap).toBeLessThan(1e-4);
    } finally {
      await vision.dispose();
    }
  }, 300_000);

  it('rollback base from the derived model is instant (nothing encoded) and gives exactly the base results', async () => {
    const encoded = switcher.encoded;
    expect(service.derivedFrom()).toMatchObject({ baseKey, version: imageRun.adapter.version });
    const result = await service.rollback('base');
    expect(result.modelSwitch!.outcome).toBe('switched');
    expect(switcher.encoded).toBe(encoded);
    expect(library.requireModel().key).toBe(baseKey);
    expect(hits(await search())).toEqual(hits(baseResults));
    // Labels are per photo: every one is still there.
    expect(library.pairs.list().length).toBeGreaterThan(100);
  }, 300_000);

  it('the API: POST /api/training takes imageBlocks; activate and rollback of an image-tuned version are model switches', async () => {
    const server = await startServer({ library, port: 0, modelSwitch: switcher });
    try {
      const call = async (path: string, body?: unknown) => {
        const res = await fetch(`${server.url}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, body: (await res.json()) as any };
      };
      const finished = async () => {
        for (let i = 0; i < 6000; i++) {
          const { body } = await call('/api/training');
          if (body.job && !body.running) return body.job;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error('the job did not finish');
      };
      for (const body of [{ imageBlocks: -1 }, { imageBlocks: 1.5 }, { lora: 2 }, { imageBlocks: 64 }]) {
        const bad = await call('/api/training', body);
        if (bad.status === 202) expect((await finished()).error.message, JSON.stringify(body)).toMatch(/image blocks must be an integer from 1 to \d+/);
        else expect(bad.status, JSON.stringify(body)).toBe(400);
      }
      expect((await call('/api/training', { imageBlocks: 1, epochs: 2, seed: 6 })).status).toBe(202);
      const job = await finished();
      expect(job.state, JSON.stringify(job.error)).toBe('done');
      expect(job.result.comparison.imageBlocks).toMatchObject({ k: 1, lora: null });
      expect(job.result.adapter.metrics.kind).toBe(job.result.comparison.chosen);
      if (job.result.comparison.chosen === 'image-blocks') expect(job.result.reencode.note).toMatch(/^activating re-encodes \d+ photos with the tuned image tower/);

      // The version re-encoded above keeps its vectors: the switch is done at once, then back to the base.
      expect((await call(`/api/adapters/${imageRun.adapter.version}/activate`, {})).status).toBe(202);
      const activation = await finished();
      expect(activation.state, JSON.stringify(activation.error)).toBe('done');
      expect(activation.result.modelSwitch).toMatchObject({ outcome: 'switched', key: derivedKey });
      expect(library.requireModel().key).toBe(derivedKey);
      expect((await call('/api/adapters', undefined)).body.derivedFrom).toMatchObject({ version: imageRun.adapter.version, baseKey });
      expect((await call('/api/adapters/rollback', { to: 'base' })).status).toBe(202);
      const rollback = await finished();
      expect(rollback.result.modelSwitch).toMatchObject({ outcome: 'switched', key: baseKey });
      expect(library.requireModel().key).toBe(baseKey);
    } finally {
      await server.close();
    }
  }, 300_000);

  it('clipdex train --image-blocks and adapters activate/list/rollback; bad values refused', async () => {
    await switcher.close();
    await library.close();
    // No --model: the library's own recorded model, as a user runs it after a switch.
    const cli = (...args: string[]) => runCli(['--data-dir', dataDir, '--cache-dir', cacheDir, ...args], {}, 300_000);
    const json = await cli('--json', 'train', '--image-blocks', '1', '--epochs', '1', '--seed', '4', '--lora', '2');
    expect(json.code, json.stderr).toBe(0);
    const r = JSON.parse(json.stdout) as { adapter: { metrics: Record<string, unknown> }; comparison: { chosen: string; adapter: { gain: unknown }; imageBlocks: { k: number; lora: number; gain: unknown } }; reencode?: { note: string } };
    expect(r.comparison.imageBlocks).toMatchObject({ k: 1, lora: 2 });
    expect(r.comparison.adapter.gain).toBeTruthy();
    expect(r.comparison.imageBlocks.gain).toBeTruthy();
    expect(r.adapter.metrics.kind).toBe(r.comparison.chosen);
    if (r.comparison.chosen === 'image-blocks') expect(r.reencode!.note).toMatch(/activating re-encodes \d+ photos/);
    expect(json.stderr).toMatch(/^image-blocks .*epoch 1\//m);

    // The version re-encoded above: its vectors are kept, so activating it again switches at once.
    const v = imageRun.adapter.version;
    const activate = await cli('adapters', 'activate', String(v), '--wait');
    expect(activate.code, activate.stderr).toBe(0);
    expect(activate.stdout).toMatch(/Switched to image-tuned version v\d+/);
    const list = await cli('adapters', 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`The library's model is version ${v} of \\S+ \\(its tuned image tower\\)`));
    const back = await cli('adapters', 'rollback', 'base');
    expect(back.code, back.stderr).toBe(0);
    expect(back.stdout).toMatch(/Switched to the base model/);
    const listBase = await cli('adapters', 'list');
    expect(listBase.stdout).toContain(`v${v}`);
    expect(listBase.stdout).toMatch(/image blocks k=1 \(its own image tower; activating re-encodes \d+ photos/);

    for (const [args, message] of [
      [['--image-blocks', '-1'], /--image-blocks/],
      [['--image-blocks', '64'], /image blocks must be an integer from 1 to \d+/],
      [['--lora', '4'], /--lora applies to tuned text blocks or image blocks/],
    ] as const) {
      const bad = await cli('train', ...args);
      expect(bad.code, bad.stderr).not.toBe(0);
      expect(bad.stderr).toMatch(message);
    }

    // What a run killed between writing its image tower and recording the version leaves: removed at the
    // next open (an hour old), while every recorded tower, text or image, stays.
    const orphan = `image-${'0'.repeat(64)}.onnx`;
    writeFileSync(join(versionsDir(dataDir), orphan), 'x');
    const anHourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(versionsDir(dataDir), orphan), anHourAgo, anHourAgo);
    library = await Library.open({ dataDir, cacheDir });
    switcher = new ModelSwitcher(library, { cacheDir, pollMs: 60_000 });
    expect(existsSync(join(versionsDir(dataDir), orphan))).toBe(false);
    expect(existsSync(join(versionsDir(dataDir), imageTowerOf(imageRun.adapter)!.file))).toBe(true);
  }, 600_000);
});

describe.skipIf(!labeled)(`a killed --image-blocks run ${labeled ? '' : NEEDS_SHARED}`, () => {
  it('leaves no version and no tower file: the tower is written only after training, and recorded with it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'clipdex-iblocks-kill-'));
    try {
      const { dataDir, cacheDir, modelDir } = await labeledLibrary(dir);
      let library = await Library.open({ dataDir, model: modelDir, cacheDir });
      const key = library.requireModel().key;
      expect(importLabels(library, folderLabelRows(library, labeled!)).problemCount).toBe(0);
      await library.close();
      const listing = () => (existsSync(versionsDir(dataDir)) ? readdirSync(versionsDir(dataDir)).sort() : []);
      const filesBefore = listing();
      const child = spawn(process.execPath, [CLI, '--data-dir', dataDir, '--model', modelDir, '--cache-dir', cacheDir, 'train', '--image-blocks', '1', '--seed', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      // Killed inside the image-block candidate's epochs: the adapter is done, the photos cached, nothing saved.
      await new Promise<void>((resolve, reject) => {
        let err = '';
        child.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          if (/^image-blocks .*epoch \d+/m.test(err)) resolve();
        });
        child.on('exit', (code) => reject(new Error(`clipdex train ended (${code}) before the image blocks trained: ${err}`)));
      });
      child.kill('SIGKILL');
      await exited;
      library = await Library.open({ dataDir, model: modelDir, cacheDir });
      try {
        expect(library.adapters.list(key)).toEqual([]);
        expect(listing()).toEqual(filesBefore);
        expect([...library.adapters.towerFiles()]).toEqual([]);
      } finally {
        await library.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});

const PAGE_SKIP = !HAS_CHROMIUM ? NEEDS_CHROMIUM : !labeled ? `${NEEDS_SHARED} (needs photos/labeled)` : '';

describe.skipIf(PAGE_SKIP !== '')(`the Training page's Image blocks control ${PAGE_SKIP}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'clipdex-iblocks-page-'));
    let photos = 0;
    for (const folder of FOLDERS) photos += readdirSync(join(labeled!, folder)).filter((f) => f.endsWith('.webp')).length;
    // Indexed already (a copy): the server's scan of the root finds every photo as it is and encodes none.
    const { dataDir, cacheDir, modelDir } = await labeledLibrary(tmp);
    server = await startServe(['--model', modelDir], ['--root', labeled!], { CLIPDEX_DATA_DIR: dataDir, CLIPDEX_CACHE_DIR: cacheDir });
    await eventually(
      async () => {
        const s = (await (await fetch(`${server.url}/api/status`)).json()) as { indexed: number; pending: number; ingest: { phase?: string } | null };
        return s.indexed === photos && s.pending === 0 && (s.ingest?.phase ?? 'idle') === 'idle';
      },
      `${photos} photos indexed\n${server.log()}`,
      120_000,
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
    page.setDefaultTimeout(30_000);
    watchPage(page, problems);
    await page.goto(server.url);
    await eventually(async () => (await page.getAttribute('#status-connection', 'data-state')) === 'live', 'the live event stream');
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await server?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('sends imageBlocks; the report shows both candidates and, for an image-tuned version, what activating costs; Activate re-encodes the library', async () => {
    await page.click('nav a[data-route="labels"]');
    await page.waitForSelector('#view-labels:not([hidden])');
    await page.fill('#import-folder', labeled!);
    await page.click('#import-labels button[type="submit"]');
    await eventually(async () => (await page.textContent('#import-message'))?.startsWith('Added'), 'the import report');
    await page.click('nav a[data-route="training"]');
    await page.waitForSelector('#view-training:not([hidden])');
    expect(await page.inputValue('#train-image-blocks')).toBe('0');
    await page.fill('#train-image-blocks', '1');
    await page.fill('#train-epochs', '3');
    await page.fill('#train-seed', '3');
    const posted = page.waitForRequest((r) => r.url().endsWith('/api/training') && r.method() === 'POST');
    await page.click('#train-start');
    expect((await posted).postDataJSON()).toMatchObject({ imageBlocks: 1, epochs: 3, seed: 3 });
    await eventually(async () => (await page.getAttribute('#train-phase', 'data-phase')) === 'done', `training to finish\n${server.log()}`, 300_000);
    const { job } = (await (await fetch(`${server.url}/api/training`)).json()) as { job: { result: { adapter: { version: number }; comparison: { chosen: string }; reencode?: { note: string } } } };
    await eventually(async () => page.isVisible('#report-comparison'), 'the comparison line');
    expect(await page.getAttribute('#report-comparison', 'data-chosen')).toBe(job.result.comparison.chosen);
    const line = (await page.textContent('#report-comparison'))!;
    expect(line).toContain('image blocks k=1');
    expect(line).toContain(`saved: ${job.result.comparison.chosen === 'adapter' ? 'the adapter' : 'the image blocks'}`);
    if (job.result.comparison.chosen === 'image-blocks') {
      expect(await page.textContent('#report-reencode')).toContain(job.result.reencode!.note);
      // Activate: confirmed (watchPage accepts) after saying what it costs, then a model switch.
      const confirms: string[] = [];
      page.on('dialog', (d) => confirms.push(d.message()));
      const v = job.result.adapter.version;
      await page.click(`#adapters-body tr[data-version="${v}"] button[data-job="activate"]`);
      await eventually(
        async () => ((await (await fetch(`${server.url}/api/adapters`)).json()) as { derivedFrom: { version: number } | null }).derivedFrom?.version === v,
        `the library switched to v${v}'s model\n${server.log()}`,
        120_000,
      );
      expect(confirms.some((m) => m.includes(job.result.reencode!.note))).toBe(true);
    }
    await page.screenshot({ path: join(tmp, 'training-image-blocks.png') });
    expect(problems).toEqual([]);
  }, 600_000);

  it('sends textBlocks with imageBlocks: one run tunes both towers, and the report shows the adapter, the image stage and both towers', async () => {
    await page.fill('#train-text-blocks', '1');
    await page.fill('#train-image-blocks', '1');
    await page.fill('#train-epochs', '1');
    await page.fill('#train-seed', '3');
    const posted = page.waitForRequest((r) => r.url().endsWith('/api/training') && r.method() === 'POST');
    await page.click('#train-start');
    expect((await posted).postDataJSON()).toMatchObject({ textBlocks: 1, imageBlocks: 1, epochs: 1, seed: 3 });
    type Job = { state: string; result?: { comparison: { chosen: string; bothTowers?: { imageBlocks: number; textBlocks: number } } } };
    let job: Job | null = null;
    await eventually(
      async () => {
        job = ((await (await fetch(`${server.url}/api/training`)).json()) as { job: Job | null }).job;
        if (job?.state === 'failed' || (job?.state === 'done' && !job.result?.comparison.bothTowers)) throw new Error(`the joint run: ${JSON.stringify(job).slice(0, 2000)}`);
        return job?.state === 'done';
      },
      `the joint run to finish\n${server.log()}`,
      300_000,
    );
    const comparison = (job as unknown as Job).result!.comparison;
    expect(comparison.bothTowers).toMatchObject({ imageBlocks: 1, textBlocks: 1 });
    await eventually(async () => (await page.getAttribute('#report-comparison', 'data-chosen')) === comparison.chosen && ((await page.textContent('#report-comparison')) ?? '').includes('both towers'), 'the joint comparison line');
    const line = (await page.textContent('#report-comparison'))!;
    expect(line).toContain('image blocks k=1 (first stage)');
    expect(line).toContain('both towers (image k=1, text k=1)');
    expect(line).toContain(`saved: ${comparison.chosen === 'adapter' ? 'the adapter' : 'both towers'}`);
    expect(problems).toEqual([]);
  }, 600_000);
});
