/**
 * Threads that run ONNX Runtime are asked to stop, never terminated mid-run (src/util/worker-stop.ts): a
 * `worker.terminate()` while a session runs aborts the whole process when the run returns (SIGABRT,
 * "terminate called after throwing an instance of 'Napi::Error'"). `clipdex index` with OCR on (the default)
 * did that in 4 runs of 4 on 28 photos: the engine closed the OCR thread while it was reading a photo.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ThreadImageEncoder } from '../src/ingest/encoder-thread.js';
import { ClipModel } from '../src/model/clip-model.js';
import { decodeRgb } from '../src/model/image-decode.js';
import { readModelDir } from '../src/model/model-dir.js';
import { OcrThread } from '../src/ocr/ocr-thread.js';
import { runCli } from './helpers/cli.js';
import { tinyModel } from './helpers/library-fixture.js';
import { CONDITIONS, makeOcrPhotos } from './helpers/ocr-photos.js';
import { AGREEMENT_PHRASES as PHRASES } from './helpers/phrases.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

let tmp: string;
let modelDir: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-worker-stop-'));
  modelDir = await tinyModel(tmp);
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('a thread closed while it encodes', () => {
  it('the text thread answers the texts it was sent, then exits', async () => {
    const spec = await readModelDir(modelDir);
    const model = await ClipModel.load(spec, { textThread: true, lazyImageTower: true, threads: 1, providers: ['cpu'] });
    const texts = [...PHRASES, ...PHRASES, ...PHRASES];
    const inFlight = model.embedTexts(texts);
    // Closed while the thread works through them: they are answered, not dropped, and the process lives.
    await new Promise((r) => setTimeout(r, 5));
    await model.release();
    const rows = await inFlight;
    expect(rows).toHaveLength(texts.length);
    for (const r of rows) expect(Number.isFinite(r[0]!)).toBe(true);
  }, 60_000);

  it('the image encoder thread encodes the batches it was sent, then exits; later ones are refused', async () => {
    const spec = await readModelDir(modelDir);
    const enc = await ThreadImageEncoder.open(spec, { session: { providers: ['cpu'], threads: 1 }, batch: 4 });
    const size = spec.preprocess.size;
    const batch = () => new Float32Array(4 * 3 * size * size).map((_, i) => Math.sin(i));
    const sent = [enc.encode(batch(), 4), enc.encode(batch(), 4), enc.encode(batch(), 4)];
    await enc.close();
    for (const rows of await Promise.all(sent)) expect(rows).toHaveLength(4);
    await expect(enc.encode(batch(), 4)).rejects.toThrow(/closed/);
  }, 60_000);
});

const chelsea = sharedPath('photos', 'skimage', 'chelsea.png');

describe.skipIf(!chelsea)(`OCR's thread closed mid-read ${chelsea ? '' : NEEDS_SHARED}`, () => {
  let photos: Awaited<ReturnType<typeof makeOcrPhotos>>;
  beforeAll(async () => {
    photos = await makeOcrPhotos(2, CONDITIONS.filter((c) => c.name === 'large-110px'));
  }, 120_000);

  it('close() while a photo is read: the read is refused, close resolves once the thread is gone, a new thread reads', async () => {
    const image = await decodeRgb(photos[0]!.png);
    const thread = new OcrThread({ session: { threads: 1, providers: ['cpu'] } });
    // A first read opens the engine; the second is the one in flight when the thread is closed.
    await thread.read(await decodeRgb(photos[1]!.png));
    const reading = thread.read(image).then(
      () => null,
      (err: unknown) => err,
    );
    await new Promise((r) => setTimeout(r, 20));
    await thread.close();
    expect(String(await reading)).toMatch(/the OCR thread is closed/);
    const again = new OcrThread({ session: { threads: 1, providers: ['cpu'] } });
    try {
      expect((await again.read(image)).lines.length).toBeGreaterThan(0);
    } finally {
      await again.close();
    }
  }, 120_000);

  it('`clipdex index` with OCR on ends with its summary, run after run (it aborted while OCR was reading)', async () => {
    const dir = join(tmp, 'photos');
    mkdirSync(dir, { recursive: true });
    for (const p of photos) writeFileSync(join(dir, `${p.name}.png`), p.png);
    for (let run = 0; run < 3; run++) {
      const data = join(tmp, `data-${run}`);
      const r = await runCli(['--data-dir', data, '--model', modelDir, '--cache-dir', join(tmp, 'cache'), 'index', dir], { CLIPDEX_OCR: 'on' });
      expect(r.stderr).not.toMatch(/terminate called|Napi::Error/);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Done in [\\d.]+ s .*: ${photos.length} encoded`, 'm'));
    }
  }, 300_000);
});
