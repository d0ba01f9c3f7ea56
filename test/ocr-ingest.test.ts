/**
 * OCR during ingest, on a real library (SQLite file, HNSW, the self-built CLIP model) and the real PP-OCRv4
 * weights: new photos read from the same decode, photos indexed before read in the background once OCR is
 * turned on, and a photo OCR cannot read indexed for CLIP all the same with the failure recorded.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import { ocrEnabledFromEnv } from '../src/ingest/ocr-service.js';
import type { Library } from '../src/library/library.js';
import { OcrRepo } from '../src/store/ocr-repo.js';
import { openLibrary } from './helpers/ingest-library.js';
import { tinyModel } from './helpers/library-fixture.js';
import { CONDITIONS, fold, makeOcrPhotos, type OcrPhoto } from './helpers/ocr-photos.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const chelsea = sharedPath('photos', 'skimage', 'chelsea.png');

describe.skipIf(!chelsea)(`OCR in ingest ${chelsea ? '' : NEEDS_SHARED}`, () => {
  let tmp: string;
  let modelDir: string;
  let photos: OcrPhoto[];
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'clipdex-ocr-ingest-'));
    modelDir = await tinyModel(tmp);
    // Large, outlined words: the condition read best (test/ocr-accuracy), so every one is expected here.
    photos = await makeOcrPhotos(3, CONDITIONS.filter((c) => c.name === 'large-110px'));
  }, 300_000);
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  const folder = (name: string): string => {
    const dir = join(tmp, name);
    mkdirSync(dir, { recursive: true });
    for (const p of photos) writeFileSync(join(dir, `${p.name}.png`), p.png);
    return dir;
  };

  const textsOf = (lib: Library, path: string): string[] => {
    const image = lib.images.getByPath(path)!;
    return new OcrRepo(lib.store.db).reading(image.contentHash!)?.lines.map((l) => l.text) ?? [];
  };

  it('reads new photos during ingest: every word found, searchable, counted', async () => {
    const dir = folder('new');
    const lib = await openLibrary(join(tmp, 'data-new'), modelDir);
    try {
      const engine = await IngestEngine.start(lib, { roots: [dir], watch: false, ocr: { session: { threads: 2, providers: ['cpu'] } } });
      await engine.ocrIdle();
      const status = engine.ocrStatus();
      await engine.close();
      expect(status).toMatchObject({ enabled: true, unavailable: null, done: photos.length, failed: 0, pending: 0 });
      const repo = new OcrRepo(lib.store.db);
      for (const p of photos) {
        const path = join(dir, `${p.name}.png`);
        expect(fold(textsOf(lib, path).join(' ')), p.name).toContain(fold(p.truth));
        const reading = repo.reading(lib.images.getByPath(path)!.contentHash!)!;
        for (const l of reading.lines) for (const [x, y] of l.box) expect(x >= 0 && x <= 1 && y >= 0 && y <= 1).toBe(true);
        expect(repo.search([p.truth], 10).map((h) => h.imageId)).toContain(lib.images.getByPath(path)!.id);
      }
    } finally {
      await lib.close();
    }
  }, 300_000);

  it('off, nothing is read and the photos count as pending; turned on, the indexed photos are read in the background', async () => {
    const dir = folder('later');
    const lib = await openLibrary(join(tmp, 'data-later'), modelDir);
    try {
      const off = await IngestEngine.start(lib, { roots: [dir], watch: false, ocr: false });
      await off.ocrIdle();
      expect(off.status().ocr).toEqual({ enabled: false, source: 'option', unavailable: null, done: 0, failed: 0, pending: photos.length });
      await off.close();

      // No scan: nothing is queued for ingest, so all the reading is the background pass's.
      const on = await IngestEngine.start(lib, { watch: false, scan: false, ocr: { session: { threads: 2, providers: ['cpu'] } } });
      await on.ocrIdle();
      expect(on.ocrStatus()).toMatchObject({ enabled: true, done: photos.length, failed: 0, pending: 0 });
      await on.close();
      for (const p of photos) expect(fold(textsOf(lib, join(dir, `${p.name}.png`)).join(' '))).toContain(fold(p.truth));
    } finally {
      await lib.close();
    }
  }, 300_000);

  it('turned on in a running engine (the library setting), the indexed photos are read while ingest runs on; turned off, reading stops and what was read stays searchable', async () => {
    // Neither the option nor CLIPDEX_OCR (vitest.config.ts sets it off): the library's setting decides.
    vi.stubEnv('CLIPDEX_OCR', '');
    const dir = folder('toggle');
    const lib = await openLibrary(join(tmp, 'data-toggle'), modelDir);
    try {
      const repo = new OcrRepo(lib.store.db);
      repo.setSetting(false);
      const engine = await IngestEngine.start(lib, { roots: [dir], watch: false });
      await engine.ocrIdle();
      expect(engine.ocrStatus()).toMatchObject({ enabled: false, source: 'library', done: 0, pending: photos.length });
      expect(await engine.setOcrEnabled(true)).toMatchObject({ enabled: true, source: 'library' });
      await engine.ocrIdle();
      expect(engine.ocrStatus()).toMatchObject({ enabled: true, done: photos.length, failed: 0, pending: 0 });
      expect(await engine.setOcrEnabled(false)).toMatchObject({ enabled: false, source: 'library', done: photos.length });
      for (const p of photos) expect(repo.search([p.truth], 10).map((h) => h.imageId)).toContain(lib.images.getByPath(join(dir, `${p.name}.png`))!.id);
      await engine.close();
      expect(repo.setting()).toBe(false);
    } finally {
      vi.unstubAllEnvs();
      await lib.close();
    }
  }, 300_000);

  it('a photo OCR cannot read in time is indexed for CLIP all the same, with the OCR failure and its reason recorded', async () => {
    const dir = folder('fails');
    const lib = await openLibrary(join(tmp, 'data-fails'), modelDir);
    try {
      const engine = await IngestEngine.start(lib, { roots: [dir], watch: false, ocr: { hardLimitMs: 1, session: { threads: 1, providers: ['cpu'] } } });
      await engine.ocrIdle();
      const status = engine.ocrStatus();
      await engine.close();
      expect(status).toMatchObject({ done: 0, failed: photos.length, pending: 0 });
      for (const p of photos) {
        const image = lib.images.getByPath(join(dir, `${p.name}.png`))!;
        expect(image.status).toBe('indexed');
        expect(new OcrRepo(lib.store.db).reading(image.contentHash!)).toMatchObject({
          status: 'failed',
          errorCode: 'INFERENCE_FAILED',
          errorMessage: expect.stringMatching(/took longer than 1 ms/),
        });
      }
    } finally {
      await lib.close();
    }
  }, 300_000);

  it('CLIPDEX_OCR: on/off, anything else refused', () => {
    expect(ocrEnabledFromEnv({ CLIPDEX_OCR: 'off' })).toBe(false);
    expect(ocrEnabledFromEnv({ CLIPDEX_OCR: 'ON' })).toBe(true);
    expect(ocrEnabledFromEnv({})).toBeUndefined();
    expect(() => ocrEnabledFromEnv({ CLIPDEX_OCR: 'maybe' })).toThrow(/on or off/);
  });
});
