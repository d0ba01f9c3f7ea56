/**
 * `--text-blocks k` end to end on a real library (../shared/photos/labeled, the self-built tiny model):
 * both candidates trained on one split and reported side by side, the saved version's text tower stored by
 * its SHA-256 and searched through once activated, rollback to the base exact, a killed run leaving no half
 * version, and the export loading as a model whose text embeddings are the activated version's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import * as tf from '@huggingface/transformers';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { QueryEngine } from '../src/search/query-engine.js';
import { startServer } from '../src/server/server.js';
import { textTowerOf, versionsDir } from '../src/store/adapters-repo.js';
import { AdapterService, type TrainResult } from '../src/train/adapter-service.js';
import { folderLabelRows, importLabels } from '../src/train/label-import.js';
import { CLI, runCli } from './helpers/cli.js';
import { CHROMIUM, CHROMIUM_ARGS, HAS_CHROMIUM, NEEDS_CHROMIUM, eventually, startServe, watchPage, type ServeProcess } from './helpers/e2e-server.js';
import { labeledLibrary } from './helpers/labeled-library.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const labeled = sharedPath('photos', 'labeled');
const FOLDERS = ['fishes', 'tools', 'renewable', 'others'];

describe.skipIf(!labeled)(`text-block training on ../shared/photos/labeled ${labeled ? '' : NEEDS_SHARED}`, () => {
  let dir: string;
  let dataDir: string;
  let modelDir: string;
  let library: Library;
  let service: AdapterService;
  let engine: QueryEngine;
  let run: TrainResult;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'clipdex-tblocks-'));
    ({ dataDir, modelDir } = await labeledLibrary(dir));
    library = await Library.open({ dataDir, model: modelDir, cacheDir: join(dir, 'cache') });
    service = new AdapterService(library);
    engine = new QueryEngine(library);
    expect(importLabels(library, folderLabelRows(library, labeled!)).problemCount).toBe(0);
    run = await service.train({ seed: 3, textBlocks: 1 });
  }, 600_000);

  afterAll(async () => {
    await library?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports both candidates on the same split, each with a verdict from the test photos, and saves the one the selection chose', () => {
    const c = { ...run.comparison!, textBlocks: run.comparison!.textBlocks! };
    expect(c.textBlocks.k).toBe(1);
    expect(c.textBlocks.lora).toBeNull();
    // One split: the same photos learned from, chosen on and tested on, and the same base model before.
    for (const field of ['trainPairs', 'trainImages', 'testPairs', 'testImages', 'captions'] as const) expect(c.textBlocks[field]).toBe(c.adapter[field]);
    expect(c.textBlocks.selection).toMatchObject({ method: c.adapter.selection.method, folds: c.adapter.selection.folds, photos: c.adapter.selection.photos });
    expect(c.adapter.gain).not.toBeNull();
    expect(c.textBlocks.gain).not.toBeNull();
    // The text-block head at blend 0 is the tower itself, so "before" matches the adapter's base (0.6757 both).
    expect(c.textBlocks.gain!.before).toBeCloseTo(c.adapter.gain!.before, 2);
    expect(c.textBlocks.verdict.length).toBeGreaterThan(0);
    // Phrases outside the labels, through the tuned tower: some move, not all (a blend of 0 would keep all).
    expect(c.textBlocks.retention).not.toBeNull();
    expect(c.textBlocks.retention!.top10Overlap).toBeGreaterThan(0);
    expect(c.textBlocks.retention!.top10Overlap).toBeLessThanOrEqual(1);
    expect(c.textBlocks.retention!.textCosine).toBeLessThan(1);
    // Measured with seed 3 on 23 test photos: text blocks 0.676 → 0.900 (90% interval +6.5 … +41.3 pt), the
    // adapter 0.676 → 0.893; on a random-weight model neither is asserted to beat the other.
    expect(c.textBlocks.gain!.after).toBeGreaterThanOrEqual(c.textBlocks.gain!.before + 0.1);
    const chosenScore = (o: typeof c.adapter) => o.blends.find((b) => b.blend === o.blend)!.meanRecall;
    expect(c.chosen).toBe(chosenScore(c.textBlocks) > chosenScore(c.adapter) ? 'text-blocks' : 'adapter');
    expect(run.adapter.metrics.kind).toBe(c.chosen);
    expect(run.outcome.blend).toBe(c.chosen === 'adapter' ? c.adapter.blend : c.textBlocks.blend);
  });

  /** A text-tuned version: this run's if the text blocks won, else one saved on purpose (same seed, same split). */
  let textRun: TrainResult;
  it('stores a text-tuned version with its tower, fingerprinted whole-file', async () => {
    textRun = run.comparison!.chosen === 'text-blocks' ? run : await service.train({ seed: 3, textBlocks: 1, save: 'text-blocks' });
    const ref = textTowerOf(textRun.adapter)!;
    expect(ref).not.toBeNull();
    const bytes = readFileSync(join(versionsDir(dataDir), ref.file));
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(ref.sha256);
    expect(readdirSync(versionsDir(dataDir)).filter((f) => !library.adapters.towerFiles().has(f))).toEqual([]);
  }, 600_000);

  const phrases = FOLDERS.map((f) => `a photo of ${f}`);
  const search = async () => Promise.all(phrases.map((text) => engine.search({ terms: [{ text }], limit: 20 })));
  const hits = (rs: Awaited<ReturnType<typeof search>>) => rs.map((r) => r.results.map((h) => [h.id, h.score]));
  let baseResults: Awaited<ReturnType<typeof search>>;

  it('activates: phrases are encoded by the tuned tower, and the searches change', async () => {
    baseResults = await search();
    const activation = await service.activate(textRun.adapter.version);
    expect(activation.adapter!.active).toBe(true);
    const space = library.searchSpace();
    expect(space.adapter?.text).toBeTruthy();
    const tuned = await search();
    // The query vector is the tuned tower's own embedding: the top hit's score is its cosine with that photo.
    const [q] = await space.adapter!.text!.encode([phrases[0]!]);
    const top = tuned[0]!.results[0]!;
    const v = library.embeddings.forImage(top.id, space.key)!;
    let cos = 0;
    for (let i = 0; i < v.length; i++) cos += q![i]! * v[i]!;
    expect(top.score).toBeCloseTo(cos, 4);
    const [baseQ] = await library.requireModel().model.embedTexts([phrases[0]!]);
    let moved = 0;
    for (let i = 0; i < q!.length; i++) moved = Math.max(moved, Math.abs(q![i]! - baseQ![i]!));
    expect(moved).toBeGreaterThan(1e-3);
    expect(hits(tuned)).not.toEqual(hits(baseResults));
  }, 300_000);

  it('exports a model folder with the tuned tower merged: its text embeddings, in clipdex and in transformers.js, are the active version\'s', async () => {
    const out = join(dir, 'export');
    const { dir: exported } = await service.export(textRun.adapter.version, out);
    const other = await Library.open({ dataDir: join(dir, 'exported-data'), model: exported, cacheDir: join(dir, 'cache') });
    try {
      const texts = [...phrases, 'a red bicycle by the sea'];
      const fromExport = await other.requireModel().model.embedTexts(texts);
      const active = await library.searchSpace().adapter!.text!.encode(texts);
      let worst = 0;
      fromExport.forEach((e, r) => e.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - active[r]![i]!)))));
      expect(worst).toBeLessThan(1e-5);

      // An independent reader: transformers.js, its own tokenizer and CLIP classes, on the exported folder.
      tf.env.allowRemoteModels = false;
      tf.env.allowLocalModels = true;
      tf.env.localModelPath = `${dirname(exported)}/`;
      const name = basename(exported);
      const tokenizer = await tf.AutoTokenizer.from_pretrained(name, { local_files_only: true });
      const textModel = await tf.CLIPTextModelWithProjection.from_pretrained(name, { local_files_only: true, dtype: 'fp32', device: 'cpu', session_options: { intraOpNumThreads: 1 } });
      try {
        const CONTEXT = 77;
        const data = new BigInt64Array(texts.length * CONTEXT).fill(BigInt(tokenizer.pad_token_id!));
        texts.forEach((t, row) => tokenizer.encode(t).forEach((id, k) => (data[row * CONTEXT + k] = BigInt(id))));
        const { text_embeds } = await textModel({ input_ids: new tf.Tensor('int64', data, [texts.length, CONTEXT]) });
        const dim = text_embeds.dims[1] as number;
        const flat = text_embeds.data as Float32Array;
        let theirs = 0;
        texts.forEach((_, r) => {
          const row = flat.subarray(r * dim, (r + 1) * dim);
          const norm = Math.hypot(...Array.from(row));
          row.forEach((x, i) => (theirs = Math.max(theirs, Math.abs(x / norm - active[r]![i]!))));
        });
        expect(theirs).toBeLessThan(1e-4);
      } finally {
        await textModel.dispose();
      }
      // The image side is locked: the exported image tower is the base one, byte for byte.
      const spec = library.requireModel().model.spec;
      expect(readFileSync(join(exported, spec.vision.file)).equals(readFileSync(join(spec.dir, spec.vision.file)))).toBe(true);
    } finally {
      await other.close();
    }
  }, 300_000);

  it('rolls back to exactly the base results', async () => {
    await service.rollback('base');
    expect(library.searchSpace().adapter).toBeNull();
    expect(hits(await search())).toEqual(hits(baseResults));
  }, 300_000);

  it('is searched in the base index: activating it copies no vector, and leaving it for an adapter version and back keeps the base vectors whole', async () => {
    const base = library.requireModel();
    const photos = library.embeddings.count(base.key);
    expect(photos).toBeGreaterThan(0);
    const activation = await service.activate(textRun.adapter.version);
    expect(activation.projected).toBe(0);
    expect(library.searchSpace().key).toBe(base.key);
    expect(library.searchSpace().index).toBe(base.index);
    // An adapter-only version has its own projected vectors and index; leaving the text version for it
    // retires the text version's space, which shares the base key.
    const adapterOnly = await service.train({ seed: 3 });
    expect(textTowerOf(adapterOnly.adapter)).toBeNull();
    expect((await service.activate(adapterOnly.adapter.version)).projected).toBe(photos);
    expect(library.searchSpace().key).not.toBe(base.key);
    await service.rollback('base');
    // Retired spaces are given back after a grace period; closing the library does it now.
    await library.close();
    library = await Library.open({ dataDir, model: modelDir, cacheDir: join(dir, 'cache') });
    service = new AdapterService(library);
    engine = new QueryEngine(library);
    expect(library.embeddings.count(library.requireModel().key)).toBe(photos);
    expect(hits(await search())).toEqual(hits(baseResults));
  }, 300_000);

  it('clipdex train --text-blocks: both candidates in --json and as a table, LoRA too; bad values refused', async () => {
    const cli = (...args: string[]) => runCli(['--data-dir', dataDir, '--model', modelDir, '--cache-dir', join(dir, 'cache'), ...args], {}, 600_000);
    const json = await cli('--json', 'train', '--text-blocks', '1', '--lora', '4', '--epochs', '3', '--seed', '3');
    expect(json.code, json.stderr).toBe(0);
    const r = JSON.parse(json.stdout) as { adapter: { version: number; metrics: Record<string, unknown> }; comparison: { chosen: string; adapter: { gain: unknown }; textBlocks: { k: number; lora: number; gain: unknown } } };
    expect(r.comparison.textBlocks).toMatchObject({ k: 1, lora: 4 });
    expect(r.comparison.adapter.gain).toBeTruthy();
    expect(r.comparison.textBlocks.gain).toBeTruthy();
    expect(r.adapter.metrics.kind).toBe(r.comparison.chosen);
    expect(json.stderr).toMatch(/^adapter .*epoch 1\//m);
    expect(json.stderr).toMatch(/^text-blocks .*epoch 1\//m);

    const text = await cli('train', '--text-blocks', '1', '--epochs', '3', '--seed', '4');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/Candidates on the same split/);
    expect(text.stdout).toMatch(/adapter\s+text blocks k=1/);
    expect(text.stdout).toMatch(/^ {2}test mean recall +\d/m);
    expect(text.stdout).toMatch(/Saved as (adapter|text-tuned version) v\d+\./);

    // The text-tuned version of the earlier tests is listed as one.
    const list = await cli('adapters', 'list');
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(`v${textRun.adapter.version}`);
    expect(list.stdout).toMatch(/text blocks k=1 \(its own text tower/);

    for (const [args, message] of [
      [['--text-blocks', '-1'], /--text-blocks/],
      [['--text-blocks', '1.5'], /--text-blocks/],
      [['--lora', '4'], /--lora applies to tuned text blocks/],
      [['--text-blocks', '64'], /text blocks must be an integer from 1 to \d+/],
    ] as const) {
      const bad = await cli('train', ...args);
      expect(bad.code, bad.stderr).not.toBe(0);
      expect(bad.stderr).toMatch(message);
    }
  }, 900_000);

  it('POST /api/training takes textBlocks and lora; the result of its job carries both candidates', async () => {
    const server = await startServer({ library, port: 0 });
    try {
      const call = async (path: string, body?: unknown) => {
        const res = await fetch(`${server.url}${path}`, body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, body: (await res.json()) as any };
      };
      for (const body of [{ textBlocks: -1 }, { textBlocks: 1.5 }, { lora: 2 }, { textBlocks: 1, lora: -3 }]) {
        const bad = await call('/api/training', body);
        expect(bad.status, JSON.stringify(body)).toBe(400);
      }
      expect((await call('/api/training', { textBlocks: 1, lora: 2, epochs: 3, seed: 6 })).status).toBe(202);
      let job: any = null;
      // Each answer is awaited; the loop ends when the job does (a loaded machine only makes it longer).
      for (let i = 0; i < 6000 && !job; i++) {
        const { body } = await call('/api/training');
        if (body.job && !body.running) job = body.job;
        else await new Promise((r) => setTimeout(r, 100));
      }
      expect(job.state, JSON.stringify(job.error)).toBe('done');
      expect(job.result.comparison.textBlocks).toMatchObject({ k: 1, lora: 2 });
      expect(job.result.adapter.metrics.kind).toBe(job.result.comparison.chosen);
    } finally {
      await server.close();
    }
  }, 900_000);

  it('a killed run leaves no half version, and the next open removes what one left', async () => {
    const key = library.requireModel().key;
    const versionsBefore = library.adapters.list(key).map((v) => v.version);
    const towersBefore = readdirSync(versionsDir(dataDir)).sort();
    await library.close();
    const child = spawn(process.execPath, [CLI, '--data-dir', dataDir, '--model', modelDir, '--cache-dir', join(dir, 'cache'), 'train', '--text-blocks', '1', '--seed', '5'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Killed inside the text-block candidate's epochs: the adapter is done, nothing is saved yet.
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        if (/^text-blocks .*epoch \d+/m.test(err)) resolve();
      });
      child.on('exit', (code) => reject(new Error(`clipdex train ended (${code}) before the text blocks trained: ${err}`)));
    });
    child.kill('SIGKILL');
    await exited;
    // What a kill between writing a tower and recording it leaves, and one killed while writing.
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    const orphan = `text-${'0'.repeat(64)}.onnx`;
    const partial = `text-${'1'.repeat(64)}.onnx.partial-${dead}-abcd1234`;
    // A tower renamed into place a moment ago may be one a run beside is about to record: kept. Older: removed.
    const young = `text-${'2'.repeat(64)}.onnx`;
    const anHourAgo = new Date(Date.now() - 3_600_000);
    for (const name of [orphan, partial]) {
      writeFileSync(join(versionsDir(dataDir), name), 'x');
      utimesSync(join(versionsDir(dataDir), name), anHourAgo, anHourAgo);
    }
    writeFileSync(join(versionsDir(dataDir), young), 'x');
    writeFileSync(join(versionsDir(dataDir), 'notes.txt'), 'not clipdex\'s');
    library = await Library.open({ dataDir, model: modelDir, cacheDir: join(dir, 'cache') });
    expect(library.adapters.list(key).map((v) => v.version)).toEqual(versionsBefore);
    expect(readdirSync(versionsDir(dataDir)).sort()).toEqual([...towersBefore, young, 'notes.txt'].sort());
    for (const v of library.adapters.list(key)) {
      const ref = textTowerOf(v);
      if (ref) expect(existsSync(join(versionsDir(dataDir), ref.file))).toBe(true);
    }
  }, 600_000);
});

const PAGE_SKIP = !HAS_CHROMIUM ? NEEDS_CHROMIUM : !labeled ? `${NEEDS_SHARED} (needs photos/labeled)` : '';


describe.skipIf(PAGE_SKIP !== '')(`the Training page's Text blocks control ${PAGE_SKIP}`, () => {
  let tmp: string;
  let server: ServeProcess;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'clipdex-tblocks-page-'));
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

  it('sends textBlocks, and the report shows both candidates and which one was saved', async () => {
    await page.click('nav a[data-route="labels"]');
    await page.waitForSelector('#view-labels:not([hidden])');
    await page.fill('#import-folder', labeled!);
    await page.click('#import-labels button[type="submit"]');
    await eventually(async () => (await page.textContent('#import-message'))?.startsWith('Added'), 'the import report');
    await page.click('nav a[data-route="training"]');
    await page.waitForSelector('#view-training:not([hidden])');
    expect(await page.inputValue('#train-text-blocks')).toBe('0');
    await page.fill('#train-text-blocks', '1');
    await page.fill('#train-epochs', '5');
    await page.fill('#train-seed', '3');
    const posted = page.waitForRequest((r) => r.url().endsWith('/api/training') && r.method() === 'POST');
    await page.click('#train-start');
    expect((await posted).postDataJSON()).toMatchObject({ textBlocks: 1, epochs: 5, seed: 3 });
    await eventually(async () => (await page.getAttribute('#train-phase', 'data-phase')) === 'done', `training to finish\n${server.log()}`, 300_000);
    const { job } = (await (await fetch(`${server.url}/api/training`)).json()) as { job: { result: { comparison: { chosen: string } } } };
    await eventually(async () => page.isVisible('#report-comparison'), 'the comparison line');
    expect(await page.getAttribute('#report-comparison', 'data-chosen')).toBe(job.result.comparison.chosen);
    const line = (await page.textContent('#report-comparison'))!;
    expect(line).toContain('text blocks k=1');
    expect(line).toContain(`saved: ${job.result.comparison.chosen === 'adapter' ? 'the adapter' : 'the text blocks'}`);
    await page.screenshot({ path: join(tmp, 'training-text-blocks.png') });
    expect(problems).toEqual([]);
  }, 600_000);
});
