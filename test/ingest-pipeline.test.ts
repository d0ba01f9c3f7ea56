import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipdexError } from '../src/errors.js';
import { hashFile } from '../src/ingest/content-hash.js';
import {
  runEncodePipeline,
  type EncodePipelineOptions,
  type PipelineModel,
  type PipelineProgress,
  type PipelineResult,
} from '../src/ingest/encode-pipeline.js';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { noise, sleep, writeJpeg } from './helpers/ingest-fixtures.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

interface File {
  path: string;
  id: number;
}

let tmp: string;
let model: ClipModel;
let good: File[];
let bad: { file: File; code: string }[];
let all: File[];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-pipeline-'));
  const dir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 11 })).dir;
  model = await ClipModel.load(await readModelDir(dir), { providers: ['cpu'] });

  const photos = join(tmp, 'photos');
  good = [];
  for (let i = 0; i < 36; i++) {
    // Varied sizes and aspect ratios, so decode times differ and completion order scrambles.
    const w = 48 + ((i * 37) % 400);
    const h = 48 + ((i * 53) % 300);
    const path = join(photos, `good-${i}.jpg`);
    await writeJpeg(path, 100 + i, w, h);
    good.push({ path, id: 0 });
  }
  const png = join(photos, 'exif.png');
  await sharp(noise(40, 30, 5), { raw: { width: 40, height: 30, channels: 3 } })
    .png()
    .withExif({ IFD0: { Make: 'PipeCam' }, IFD2: { DateTimeOriginal: '2022:05:06 07:08:09' } })
    .toFile(png);
  good.push({ path: png, id: 0 });

  const full = await sharp(noise(200, 150, 9), { raw: { width: 200, height: 150, channels: 3 } }).jpeg().toBuffer();
  const put = async (name: string, bytes: Buffer | string, code: string) => {
    const path = join(photos, name);
    if (code !== 'FILE_NOT_FOUND') await writeFile(path, bytes);
    return { file: { path, id: 0 }, code };
  };
  bad = [
    await put('truncated.jpg', full.subarray(0, Math.floor(full.length * 0.5)), 'DECODE_FAILED'),
    await put('text.jpg', 'this is a shopping list, not a photo', 'NOT_AN_IMAGE'),
    await put('empty.jpg', Buffer.alloc(0), 'EMPTY_FILE'),
    await put('gone.jpg', '', 'FILE_NOT_FOUND'),
    // 3000×3000 declared: over the maxPixels the tests pass, so refused before decoding.
    await put('bomb.png', await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#000' } }).png().toBuffer(), 'IMAGE_TOO_LARGE'),
  ];
  // Bad files spread through the good ones.
  all = [...good];
  bad.forEach((b, k) => all.splice(3 + k * 8, 0, b.file));
  all.forEach((f, i) => (f.id = i));
});

afterAll(async () => {
  await model?.release();
  await rm(tmp, { recursive: true, force: true });
});

const baseOptions = (): EncodePipelineOptions<File> => ({ model, maxPixels: 2000 * 2000, decodeConcurrency: 2, batchSize: 8 });

async function run(files: AsyncIterable<File> | Iterable<File>, options: Partial<EncodePipelineOptions<File>> = {}) {
  const delivered: PipelineResult<File>[][] = [];
  const stats = await runEncodePipeline(files, (r) => void delivered.push(r), { ...baseOptions(), ...options });
  return { stats, delivered, results: delivered.flat() };
}

const cosine = (a: Float32Array, b: Float32Array) => a.reduce((s, x, i) => s + x * b[i]!, 0);

describe('encode pipeline', () => {
  it('gives every file exactly one result: the right embedding, thumbnail, hash and EXIF, or a typed error', async () => {
    const progress: PipelineProgress[] = [];
    const { stats, results } = await run(all, { onProgress: (p) => progress.push(p), progressIntervalMs: 0 });
    expect(results).toHaveLength(all.length);
    expect(results.map((r) => r.seq).sort((a, b) => a - b)).toEqual(all.map((_, i) => i));
    for (const r of results) expect(r.file).toBe(all[r.seq]);

    const byPath = new Map(results.map((r) => [r.file.path, r]));
    for (const b of bad) {
      const r = byPath.get(b.file.path)!;
      expect(r.status, b.file.path).toBe('failed');
      if (r.status !== 'failed') continue;
      expect(r.error).toBeInstanceOf(ClipdexError);
      expect(r.error.code, b.file.path).toBe(b.code);
      expect(r.error.message).toContain(b.file.path);
    }

    // The same embeddings as the model's own one-call API: nothing was mixed up across batches.
    const reference = await model.embedImages(good.map((g) => g.path));
    for (const [i, g] of good.entries()) {
      const r = byPath.get(g.path)!;
      expect(r.status, g.path).toBe('encoded');
      if (r.status !== 'encoded' || !reference[i]!.ok) throw new Error(`${g.path} not encoded`);
      expect(cosine(r.embedding, reference[i]!.embedding)).toBeGreaterThan(0.9999);
      expect(r.content).toEqual({ ...(await hashFile(g.path)), changed: false });
      const thumb = await sharp(r.thumbnail!).metadata();
      expect(thumb.format).toBe('webp');
      expect(Math.max(thumb.width!, thumb.height!)).toBe(Math.min(320, Math.max(r.info.width, r.info.height)));
    }
    const png = byPath.get(good.at(-1)!.path)!;
    expect(png.status === 'encoded' && png.exif).toMatchObject({ cameraMake: 'PipeCam', takenAt: { local: '2022-05-06T07:08:09' } });

    expect(stats).toMatchObject({ done: all.length, encoded: good.length, failed: bad.length, skipped: 0, inFlight: 0 });
    expect(progress.at(-1)).toMatchObject({ done: all.length, encoded: good.length, failed: bad.length });
    for (let i = 1; i < progress.length; i++) expect(progress[i]!.done).toBeGreaterThanOrEqual(progress[i - 1]!.done);
    expect(progress.at(-1)!.filesPerSecond).toBeGreaterThan(0);
  });

  it('never holds more than `window` files, and a slow sink holds the input back', async () => {
    let pulled = 0;
    let acknowledged = 0;
    let worstAhead = 0;
    let maxReported = 0;
    const window = 6;
    async function* input() {
      for (const f of all) {
        pulled++;
        worstAhead = Math.max(worstAhead, pulled - acknowledged);
        yield f;
      }
    }
    const sinkSizes: number[] = [];
    const pulledDuringSink: number[] = [];
    const stats = await runEncodePipeline(
      input(),
      async (results) => {
        pulledDuringSink.push(pulled - acknowledged);
        sinkSizes.push(results.length);
        // A database that takes its time: the pipeline must wait for it, not pile up work.
        await sleep(60);
        acknowledged += results.length;
      },
      { ...baseOptions(), batchSize: 4, window, onInFlight: (n) => (maxReported = Math.max(maxReported, n)) },
    );
    expect(stats.done).toBe(all.length);
    expect(sinkSizes.reduce((a, b) => a + b, 0)).toBe(all.length);
    expect(worstAhead).toBeLessThanOrEqual(window);
    expect(Math.max(...pulledDuringSink)).toBeLessThanOrEqual(window);
    expect(stats.maxInFlight).toBeLessThanOrEqual(window);
    expect(maxReported).toBe(stats.maxInFlight);
    // The window did fill up: the bound was exercised, not merely never approached.
    expect(stats.maxInFlight).toBe(window);
    expect(stats.window).toBe(window);
  });

  it('skips content the caller already has, before decoding or encoding it', async () => {
    let encodedImages = 0;
    const counting: PipelineModel = {
      spec: model.spec,
      image: {
        batchSize: model.image.batchSize,
        encode: (pixels, count) => {
          encodedImages += count;
          return model.image.encode(pixels, count);
        },
      },
    };
    const known = new Set((await Promise.all(good.slice(0, 10).map((g) => hashFile(g.path)))).map((c) => c.hash));
    const skipCalls: string[] = [];
    const { results } = await run(good, {
      model: counting,
      skip: (file, content) => {
        skipCalls.push(file.path);
        return known.has(content.hash);
      },
    });
    const skipped = results.filter((r) => r.status === 'skipped');
    expect(skipped.map((r) => r.file.path).sort()).toEqual(good.slice(0, 10).map((g) => g.path).sort());
    for (const r of skipped) expect(known.has(r.status === 'skipped' ? r.content.hash : '')).toBe(true);
    expect(encodedImages).toBe(good.length - 10);
    expect(skipCalls).toHaveLength(good.length);

    // A failing lookup is the caller's failure, not the file's: the run stops instead of recording it.
    const lookupDown = new Error('database is locked');
    await expect(run(good, { skip: () => Promise.reject(lookupDown) })).rejects.toBe(lookupDown);
  });

  it('stops and rejects when the sink fails, and lets the input generator clean up', async () => {
    let cleanedUp = false;
    async function* input() {
      try {
        for (;;) for (const f of good) yield f;
      } finally {
        cleanedUp = true;
      }
    }
    let calls = 0;
    const failure = new Error('disk full');
    await expect(
      runEncodePipeline(input(), () => {
        if (++calls === 2) throw failure;
      }, baseOptions()),
    ).rejects.toBe(failure);
    await sleep(50);
    expect(cleanedUp).toBe(true);
  });

  it('stops on an encoder failure instead of marking every later file as bad', async () => {
    let batches = 0;
    const failing: PipelineModel = {
      spec: model.spec,
      image: {
        batchSize: 8,
        encode: async (pixels, count) => {
          if (++batches === 2) throw new ClipdexError('INFERENCE_FAILED', 'the session died');
          return model.image.encode(pixels, count);
        },
      },
    };
    const delivered: PipelineResult<File>[] = [];
    await expect(runEncodePipeline(good, (r) => void delivered.push(...r), { ...baseOptions(), model: failing })).rejects.toMatchObject({
      code: 'INFERENCE_FAILED',
    });
    expect(delivered.every((r) => r.status !== 'failed')).toBe(true);
    expect(delivered.length).toBeLessThan(good.length);
  });

  it('aborts promptly even while the input is waiting for more files', async () => {
    const controller = new AbortController();
    async function* live() {
      yield good[0]!;
      yield good[1]!;
      // A live queue with nothing new: this pull never ends on its own.
      await new Promise(() => {});
    }
    const delivered: PipelineResult<File>[] = [];
    const running = runEncodePipeline(live(), (r) => void delivered.push(...r), { ...baseOptions(), signal: controller.signal });
    // The two files get through without waiting for a full batch (latency for a watched folder).
    const deadline = Date.now() + 15_000;
    while (delivered.length < 2 && Date.now() < deadline) await sleep(20);
    expect(delivered.map((r) => r.status)).toEqual(['encoded', 'encoded']);
    controller.abort();
    await expect(running).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('decodes from the path when hashing, EXIF and thumbnails are off, with the same embeddings', async () => {
    const files = good.slice(0, 5);
    const [plain, full] = await Promise.all([run(files, { hash: false, exif: false, thumbnail: false }), run(files)]);
    expect(plain.results).toHaveLength(files.length);
    for (const r of plain.results) {
      if (r.status !== 'encoded') throw new Error(`${r.file.path}: ${r.status}`);
      expect([r.content, r.exif, r.thumbnail]).toEqual([undefined, undefined, undefined]);
      const twin = full.results.find((f) => f.file === r.file)!;
      expect(twin.status === 'encoded' && cosine(twin.embedding, r.embedding)).toBeGreaterThan(0.9999);
    }
  });

  it('handles an empty input', async () => {
    const { stats, delivered } = await run([]);
    expect(delivered).toEqual([]);
    expect(stats).toMatchObject({ done: 0, maxInFlight: 0 });
  });
});

const edge = sharedPath('photos', 'edge');
describe.skipIf(!edge)(`../shared/photos/edge through the pipeline ${edge ? '' : NEEDS_SHARED}`, () => {
  it('encodes every readable format and records the broken files with their reason', async () => {
    const names = (await readdir(edge!)).sort();
    const files = names.map((n, id) => ({ path: join(edge!, n), id }));
    // The default pixel limit: the 2560 px photos are ordinary, not bombs.
    const { results } = await run(files, { maxPixels: undefined });
    expect(results).toHaveLength(files.length);
    const outcome = Object.fromEntries(results.map((r) => [r.file.path.slice(edge!.length + 1), r.status === 'failed' ? r.error.code : r.status]));
    expect(outcome).toMatchObject({
      'truncated.jpg': 'DECODE_FAILED',
      'not-an-image.jpg': 'NOT_AN_IMAGE',
      'empty.png': 'EMPTY_FILE',
      'chelsea.heic': 'encoded',
      'coffee.avif': 'encoded',
      'multipage.tif': 'encoded',
      'no_time_for_that_tiny.gif': 'encoded',
      'yellow_rose.lossy-with-alpha.webp': 'encoded',
      'logo.png': 'encoded',
    });
    expect(Object.entries(outcome).filter(([, s]) => s !== 'encoded').map(([n]) => n).sort()).toEqual(['empty.png', 'not-an-image.jpg', 'truncated.jpg']);
    const dune = results.find((r) => r.file.path.endsWith('Dune.jpg'))!;
    expect(dune.status === 'encoded' && dune.exif?.cameraModel).toBe('Canon EOS DIGITAL REBEL');
  });
});
