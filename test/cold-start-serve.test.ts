/**
 * `clipdex serve`'s start: a text search needs the text tower, the index and the database only, so the
 * image tower opens once the server listens, and indexing starts once it is open. The order is read from
 * the server's startup marks (CLIPDEX_TRACE_STARTUP=1), never from timings. A damaged image model leaves
 * text search working and is said in the log and in the status; with a sound one, photos are indexed and an
 * uploaded image finds them.
 */
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from './helpers/e2e-server.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { tinyModel } from './helpers/library-fixture.js';

let tmp: string;
let model: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-cold-start-'));
  model = await tinyModel(tmp);
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** The startup marks in the server's log, in the order written (one stderr stream: the order is the program's). */
function marks(log: string): string[] {
  return log.split('\n').flatMap((line) => {
    const m = /^clipdex-startup (.*)$/.exec(line);
    return m ? [(JSON.parse(m[1]!) as { mark: string }).mark] : [];
  });
}

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: any }> {
  const res = await fetch(url, init);
  return { status: res.status, body: await res.json() };
}

/** Polls the status until `done` holds (a generous deadline: CI machines are busy), returning it. */
async function statusUntil(server: ServeProcess, done: (status: any) => boolean, what: string): Promise<any> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const { body } = await json(`${server.url}/api/status`);
    if (done(body)) return body;
    if (Date.now() > deadline) throw new Error(`${what}: not reached; last status ${JSON.stringify(body)}\n${server.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function serve(dataDir: string, modelDir: string, root: string): Promise<ServeProcess> {
  return startServe(['--model', modelDir, '--data-dir', dataDir, '--cache-dir', join(tmp, 'cache')], ['--root', root], { CLIPDEX_TRACE_STARTUP: '1', CLIPDEX_THREADS: '1' }, 90_000);
}

describe('clipdex serve at start', () => {
  it('opens the image tower only once listening, answers text searches, then indexes and answers an uploaded image', async () => {
    const root = join(tmp, 'photos');
    const bytes = await writeJpeg(join(root, 'a.jpg'), 1);
    await writeJpeg(join(root, 'b.jpg'), 2);
    const server = await serve(join(tmp, 'data'), model, root);
    try {
      const text = await json(`${server.url}/api/search?q=${encodeURIComponent('a red square')}&limit=5`);
      expect(text.status, JSON.stringify(text.body)).toBe(200);
      const status = await statusUntil(server, (s) => s.indexed === 2, 'both photos indexed');
      expect(status.model).toMatchObject({ ready: true, imageTower: 'open' });
      const order = marks(server.log());
      const at = (mark: string) => {
        expect(order, server.log()).toContain(mark);
        return order.indexOf(mark);
      };
      // Opened at load, before the library is open: what a text search needs.
      expect(at('text session created')).toBeLessThan(at('library open'));
      expect(at('library open')).toBeLessThan(at('listening'));
      // The image tower's session starts after the server listens, on the encoder thread.
      expect(at('listening')).toBeLessThan(at('image session start'));
      expect(at('image session start')).toBeLessThan(at('image tower open'));
      // Indexed after: the same text search finds the photos now, and so does an uploaded image.
      const found = await json(`${server.url}/api/search?q=${encodeURIComponent('a red square')}&limit=5`);
      expect(found.body.results).toHaveLength(2);
      const form = new FormData();
      form.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), 'a.jpg');
      const byImage = await json(`${server.url}/api/search`, { method: 'POST', body: form });
      expect(byImage.status, JSON.stringify(byImage.body)).toBe(200);
      expect(byImage.body.results[0].path).toBe(join(root, 'a.jpg'));
    } finally {
      await server.stop();
    }
  }, 180_000);

  it('answers text searches with a damaged image model, and says in the log and the status what is wrong', async () => {
    // A library indexed with the sound model first, so that a text search has photos to find.
    const root = join(tmp, 'photos-2');
    await writeJpeg(join(root, 'c.jpg'), 3);
    const dataDir = join(tmp, 'data-2');
    const damaged = join(tmp, 'damaged-model');
    await cp(model, damaged, { recursive: true });
    const sound = await serve(dataDir, damaged, root);
    try {
      await statusUntil(sound, (s) => s.indexed === 1, 'the photo indexed');
    } finally {
      await sound.stop();
    }
    const vision = join(damaged, 'onnx', 'vision_model.onnx');
    const size = (await readFile(vision)).length;
    await writeFile(vision, Buffer.alloc(size, 0x5a));
    // The key is the model's fingerprint: the damaged file makes it another model, whose vectors are not
    // there. The text tower and the tokenizer are the ones that matter here; the index is the new key's (empty).
    const server = await serve(dataDir, damaged, root);
    try {
      const text = await json(`${server.url}/api/search?q=${encodeURIComponent('a blue circle')}&limit=5`);
      expect(text.status, JSON.stringify(text.body)).toBe(200);
      const status = await statusUntil(server, (s) => s.model?.imageTower !== 'opening', 'the image tower settled');
      expect(status.model).toMatchObject({ ready: true, imageTower: { state: 'failed', error: { code: 'MODEL_INVALID' } } });
      expect(status.ingest).toMatchObject({ phase: 'failed' });
      expect(server.log()).toMatch(/the image tower cannot be opened: .*vision_model\.onnx/);
      expect(server.log()).toContain('text search works');
      const form = new FormData();
      form.append('image', new Blob([new Uint8Array(await readFile(join(root, 'c.jpg')))], { type: 'image/jpeg' }), 'c.jpg');
      const byImage = await json(`${server.url}/api/search`, { method: 'POST', body: form });
      expect(byImage.status).toBeGreaterThanOrEqual(400);
      expect(byImage.body.error.code).toBe('MODEL_INVALID');
    } finally {
      await server.stop();
    }
  }, 240_000);
});

