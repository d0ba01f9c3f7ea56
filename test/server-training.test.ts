/**
 * Labels, training, activation, rollback and export over the REST API: a real HTTP server on a real
 * library with the self-built model, photos generated in four colours and labeled by folder.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { indexFiles, tinyModel } from './helpers/library-fixture.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-api-train-'));
const photos = join(tmp, 'photos');
const COLOURS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 190, 40], blue: [30, 40, 210], yellow: [230, 220, 30] };
let library: Library;
let server: RunningServer;
const idsByColour = new Map<string, number[]>();

beforeAll(async () => {
  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  for (const [name, [r, g, b]] of Object.entries(COLOURS)) {
    mkdirSync(join(photos, name), { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < 8; i++) {
      const file = join(photos, name, `${name}-${i}.png`);
      // Same colour, a different grey stripe each: photos of one label are alike, never identical.
      await sharp({ create: { width: 96, height: 72, channels: 3, background: { r, g, b } } })
        .composite([{ input: { create: { width: 10 + 8 * i, height: 72, channels: 3, background: { r: 30 * i, g: 30 * i, b: 30 * i } } }, left: 4 * i, top: 0 }])
        .png()
        .toFile(file);
      files.push(file);
    }
    idsByColour.set(name, await indexFiles(library, photos, files));
  }
  server = await startServer({ library, port: 0 });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

async function api(path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${server.url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    ...(init.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitForJob(): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const { body } = await api('/api/training');
    if (body.job && !body.running) return body.job;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('training job did not finish');
}

describe('labels', () => {
  it('refuses to train before there is anything to learn from', async () => {
    const r = await api('/api/training', { body: {} });
    expect(r.status).toBe(409);
    expect(r.body.error.code).toBe('NOT_ENOUGH_LABELS');
  });

  it('labels selected photos, once per photo and caption', async () => {
    const red = idsByColour.get('red')!;
    const first = await api('/api/labels', { body: { imageIds: red.slice(0, 3), caption: '  something red ' } });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ added: 3, duplicates: 0 });
    const again = await api('/api/labels', { body: { imageIds: red.slice(0, 4), caption: 'something red' } });
    expect(again.body).toMatchObject({ added: 1, duplicates: 3 });
    const list = await api(`/api/labels?imageId=${red[0]}`);
    expect(list.body.labels).toEqual([expect.objectContaining({ imageId: red[0], caption: 'something red', split: 'train' })]);
  });

  it('imports folder-as-label with a template, and rows with a bad one reported', async () => {
    const folder = await api('/api/labels/import', { body: { folder: photos, template: 'a {folder} picture' } });
    expect(folder.status).toBe(201);
    expect(folder.body).toMatchObject({ added: 32, problemCount: 0 });
    const rows = await api('/api/labels/import', {
      body: { rows: [{ photo: idsByColour.get('blue')![0], caption: 'sky colour' }, { photo: 999_999, caption: 'nothing' }, { photo: join(photos, 'green', 'green-1.png'), caption: 'grass colour' }] },
    });
    expect(rows.body).toMatchObject({ added: 2, problemCount: 1 });
    expect(rows.body.problems[0]).toMatchObject({ row: 2, reason: expect.stringMatching(/no photo with id 999999/) });
    const { body } = await api('/api/labels?limit=1000');
    const byCaption = Object.fromEntries(body.captions.map((c: { caption: string; photos: number }) => [c.caption, c.photos]));
    expect(byCaption).toMatchObject({ 'a red picture': 8, 'a green picture': 8, 'a blue picture': 8, 'a yellow picture': 8, 'something red': 4 });
    expect(body.counts.train + body.counts.val).toBe(32 + 4 + 2);
  });

  it('edits and deletes a label; unknown ids are 404', async () => {
    const { body } = await api('/api/labels?caption=sky%20colour');
    const id = body.labels[0].id;
    const edited = await api(`/api/labels/${id}`, { method: 'PATCH', body: { caption: 'the colour of the sky' } });
    expect(edited.status).toBe(200);
    expect(edited.body.caption).toBe('the colour of the sky');
    expect((await api(`/api/labels/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`/api/labels/${id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await api('/api/labels/999999', { method: 'PATCH', body: { caption: 'x' } })).status).toBe(404);
  });

  it('answers bad requests with 4xx JSON errors', async () => {
    const cases: [string, unknown, number][] = [
      ['/api/labels', { imageIds: [idsByColour.get('red')![0]], caption: '   ' }, 400],
      ['/api/labels', { imageIds: [999_999], caption: 'x' }, 404],
      ['/api/labels', { imageIds: 'all', caption: 'x' }, 400],
      ['/api/labels', { imageIds: [], caption: 'x' }, 400],
      ['/api/labels/import', { folder: 'relative/path' }, 400],
      ['/api/labels/import', { folder: join(tmp, 'nowhere') }, 404],
      ['/api/labels/import', { folder: photos, template: 'no placeholder' }, 400],
      ['/api/training', { epochs: -1 }, 400],
      ['/api/training', { valFraction: 2 }, 400],
      ['/api/training', { testFraction: -0.1 }, 400],
      ['/api/training', { valFraction: 0.6, testFraction: 0.4 }, 400],
      ['/api/training', { unknown: true }, 400],
      ['/api/adapters/rollback', { to: 'yesterday' }, 400],
      ['/api/adapters/99/activate', {}, 404],
      ['/api/adapters/99/export', {}, 404],
    ];
    for (const [path, body, status] of cases) {
      const r = await api(path, { body });
      expect({ path, body, status: r.status }).toEqual({ path, body, status });
      expect(typeof r.body.error.message).toBe('string');
    }
  });
});

describe('training and adapters', () => {
  let baseline: any;

  it('trains in the background (one job at a time) and stores the version with its numbers', async () => {
    baseline = (await api('/api/search?q=a%20red%20picture&limit=32')).body;
    // What the run will hold out, asked first with its seed: the run must agree.
    const preview = await api('/api/training/split?seed=2');
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ selection: 'cross-validation', folds: 5, val: { labels: 0, photos: 0 }, valFraction: 0.2, testFraction: 0.2 });
    const tooMuch = await api('/api/training/split?valFraction=0.5&testFraction=0.5');
    expect(tooMuch.status).toBe(400);
    expect(tooMuch.body.error.message).toMatch(/at least a tenth/);
    const started = await api('/api/training', { body: { seed: 2, epochs: 1000, patience: 1000 } });
    expect(started.status).toBe(202);
    expect(started.body).toMatchObject({ kind: 'train', state: 'running' });
    const second = await api('/api/training', { body: {} });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('BUSY');
    const job = await waitForJob();
    expect(job.state).toBe('done');
    expect(job.result.adapter.version).toBe(1);
    expect(job.result.outcome.history.length).toBeGreaterThan(10);
    expect(job.result.outcome.weights).toBeUndefined();
    const { body } = await api('/api/adapters');
    expect(body.active).toBeNull();
    expect(body.versions[0].metrics).toMatchObject({ before: expect.any(Object), after: expect.any(Object), verdict: expect.any(String), gain: expect.any(Object) });
    // 32 colour photos: too few for a validation part, so 5-fold cross-validation chose; the test photos judged.
    expect(job.result.outcome.selection).toMatchObject({ method: 'cross-validation', folds: 5 });
    expect(job.result.outcome.testImages).toBe(preview.body.test.photos);
    expect(job.result.outcome.trainImages).toBe(preview.body.train.photos);
    expect(job.result.outcome.after.imageToText.queries).toBe(job.result.outcome.testImages);
    // The stored split puts each photo on one side only.
    const labels = (await api('/api/labels?limit=1000')).body.labels as { imageId: number; split: string }[];
    const splitOf = new Map<number, string>();
    for (const l of labels) {
      expect(splitOf.get(l.imageId) ?? l.split).toBe(l.split);
      splitOf.set(l.imageId, l.split);
    }
  }, 60_000);

  it('activates a version: status and searches use it; rollback restores the base results exactly', async () => {
    expect((await api('/api/adapters/1/activate', { body: {} })).status).toBe(202);
    const job = await waitForJob();
    expect(job).toMatchObject({ kind: 'activate', state: 'done' });
    const status = (await api('/api/status')).body;
    expect(status.search.adapter).toMatchObject({ version: 1 });
    const tuned = (await api('/api/search?q=a%20red%20picture&limit=32')).body;
    expect(tuned.modelKey).toBe(status.search.key);
    expect(tuned.modelKey).not.toBe(baseline.modelKey);
    const red = new Set(idsByColour.get('red'));
    const redInTop8 = (r: any) => r.results.slice(0, 8).filter((x: { id: number }) => red.has(x.id)).length;
    expect(redInTop8(tuned)).toBeGreaterThanOrEqual(redInTop8(baseline));

    expect((await api('/api/adapters/rollback', { body: { to: 'base' } })).status).toBe(202);
    expect(await waitForJob()).toMatchObject({ kind: 'rollback', state: 'done' });
    expect((await api('/api/status')).body.search.adapter).toBeNull();
    const back = (await api('/api/search?q=a%20red%20picture&limit=32')).body;
    expect(back.results.map((r: { id: number; score: number }) => [r.id, r.score])).toEqual(baseline.results.map((r: { id: number; score: number }) => [r.id, r.score]));
  }, 60_000);

  it('exports a version as a model folder', async () => {
    const r = await api('/api/adapters/1/export', { body: {} });
    expect(r.status).toBe(201);
    expect(existsSync(join(r.body.dir, 'onnx', 'vision_model.onnx'))).toBe(true);
    expect(existsSync(join(r.body.dir, 'clipdex-adapter.json'))).toBe(true);
    const again = await api('/api/adapters/1/export', { body: { dir: r.body.dir } });
    expect(again.status).toBe(400);
  });
});

it('describes the label, training and adapter endpoints in OpenAPI', async () => {
  const { body } = await api('/api/openapi.json');
  expect(Object.keys(body.paths)).toEqual(
    expect.arrayContaining(['/api/labels', '/api/labels/import', '/api/labels/{id}', '/api/training', '/api/adapters', '/api/adapters/{version}/activate', '/api/adapters/rollback', '/api/adapters/{version}/export']),
  );
  expect(body.paths['/api/training'].post.requestBody.content['application/json'].schema.properties).toHaveProperty('valFraction');
  expect(body.paths['/api/training'].post.requestBody.content['application/json'].schema.properties).toHaveProperty('testFraction');
});
