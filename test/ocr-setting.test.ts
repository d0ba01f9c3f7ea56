/**
 * Whether OCR reads, and why: on by default, off as the library's setting (kept in its database), CLIPDEX_OCR
 * for one run over it, the engine's option over both; changed on a running engine, by `clipdex ocr` and by
 * PUT /api/ocr. Real SQLite, the real engine and server, the built CLI. No photos: nothing is read, so the OCR
 * model is never loaded here (test/ocr-ingest.test.ts reads with a toggle).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { IngestEngine } from '../src/ingest/ingest-engine.js';
import { resolveOcr } from '../src/ingest/ocr-service.js';
import type { Library } from '../src/library/library.js';
import { startServer } from '../src/server/server.js';
import { OcrRepo } from '../src/store/ocr-repo.js';
import { runCli } from './helpers/cli.js';
import { openLibrary } from './helpers/ingest-library.js';
import { tinyModel } from './helpers/library-fixture.js';

let tmp: string;
let modelDir: string;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-ocr-setting-'));
  modelDir = await tinyModel(tmp);
}, 120_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
// vitest.config.ts sets CLIPDEX_OCR=off for every test; each test here says what it wants.
afterEach(() => {
  vi.unstubAllEnvs();
});

const start = (lib: Library, ocr?: boolean) => IngestEngine.start(lib, { watch: false, scan: false, ...(ocr === undefined ? {} : { ocr }) });

describe('resolveOcr', () => {
  it('option > CLIPDEX_OCR > the library > on', () => {
    expect(resolveOcr({ env: {} })).toEqual({ enabled: true, source: 'default' });
    expect(resolveOcr({ env: {}, library: false })).toEqual({ enabled: false, source: 'library' });
    expect(resolveOcr({ env: { CLIPDEX_OCR: 'on' }, library: false })).toEqual({ enabled: true, source: 'env' });
    expect(resolveOcr({ option: false, env: { CLIPDEX_OCR: 'on' }, library: true })).toEqual({ enabled: false, source: 'option' });
    expect(() => resolveOcr({ env: { CLIPDEX_OCR: 'maybe' } })).toThrow(/CLIPDEX_OCR/);
  });
});

describe('the library setting on the engine', () => {
  it('on by default; turned off, it stays off across a reopen; turned on again at once', async () => {
    vi.stubEnv('CLIPDEX_OCR', '');
    const dataDir = join(tmp, 'data-default');
    let lib = await openLibrary(dataDir, modelDir);
    try {
      const engine = await start(lib);
      expect(engine.status().ocr).toMatchObject({ enabled: true, source: 'default' });
      expect(await engine.setOcrEnabled(false)).toMatchObject({ enabled: false, source: 'library' });
      expect(engine.status().ocr).toMatchObject({ enabled: false, source: 'library' });
      await engine.close();
    } finally {
      await lib.close();
    }
    lib = await openLibrary(dataDir, modelDir);
    try {
      expect(new OcrRepo(lib.store.db).setting()).toBe(false);
      const engine = await start(lib);
      expect(engine.ocrStatus()).toMatchObject({ enabled: false, source: 'library' });
      expect(await engine.setOcrEnabled(true)).toMatchObject({ enabled: true, source: 'library', unavailable: null });
      await engine.close();
      expect(new OcrRepo(lib.store.db).setting()).toBe(true);
    } finally {
      await lib.close();
    }
  });

  it('CLIPDEX_OCR overrides the library, and a change against it is refused naming CLIPDEX_OCR', async () => {
    const lib = await openLibrary(join(tmp, 'data-env'), modelDir);
    try {
      new OcrRepo(lib.store.db).setSetting(false);
      vi.stubEnv('CLIPDEX_OCR', 'on');
      const engine = await start(lib);
      try {
        expect(engine.ocrStatus()).toMatchObject({ enabled: true, source: 'env' });
        await expect(engine.setOcrEnabled(false)).rejects.toMatchObject({ code: 'SETTING_OVERRIDDEN', message: expect.stringMatching(/CLIPDEX_OCR=on/) });
        expect(engine.ocrStatus()).toMatchObject({ enabled: true, source: 'env' });
        expect(new OcrRepo(lib.store.db).setting()).toBe(false);
      } finally {
        await engine.close();
      }
      // The engine's own option outranks both.
      vi.stubEnv('CLIPDEX_OCR', '');
      const forced = await start(lib, true);
      try {
        expect(forced.ocrStatus()).toMatchObject({ enabled: true, source: 'option' });
        await expect(forced.setOcrEnabled(false)).rejects.toMatchObject({ code: 'SETTING_OVERRIDDEN' });
      } finally {
        await forced.close();
      }
    } finally {
      await lib.close();
    }
  });
});

describe('clipdex ocr', () => {
  it('off, then the state: off, from the library; a bad word is a usage error', async () => {
    const env = { CLIPDEX_DATA_DIR: join(tmp, 'data-cli'), CLIPDEX_OCR: undefined };
    const set = await runCli(['ocr', 'off'], env);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toMatch(/Text in photos: off \(the library's setting\)/);
    expect(set.stdout).toMatch(/next start/);
    const shown = await runCli(['--json', 'ocr'], env);
    expect(shown.code, shown.stderr).toBe(0);
    expect(JSON.parse(shown.stdout)).toEqual({ enabled: false, source: 'library', library: 'off', unavailable: null, done: 0, failed: 0, pending: 0 });
    const overridden = await runCli(['ocr'], { ...env, CLIPDEX_OCR: 'on' });
    expect(overridden.stdout).toMatch(/Text in photos: on \(CLIPDEX_OCR=on .*library's setting: off\)/);
    const bad = await runCli(['ocr', 'maybe'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/on or off/);
  });
});

describe('PUT /api/ocr', () => {
  it('toggles the running engine and the library setting; a bad body is 400 JSON, a change against CLIPDEX_OCR 409', async () => {
    vi.stubEnv('CLIPDEX_OCR', '');
    const lib = await openLibrary(join(tmp, 'data-api'), modelDir);
    const engine = await start(lib);
    const server = await startServer({ library: lib, ingest: engine, port: 0 });
    const put = async (body: unknown) => {
      const res = await fetch(`${server.url}/api/ocr`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as any };
    };
    try {
      expect(await put({ enabled: false })).toMatchObject({ status: 200, body: { enabled: false, source: 'library', done: 0, pending: 0 } });
      const status = (await (await fetch(`${server.url}/api/status`)).json()) as any;
      expect(status.ingest.ocr).toMatchObject({ enabled: false, source: 'library' });
      expect(new OcrRepo(lib.store.db).setting()).toBe(false);
      expect(await put({ enabled: true })).toMatchObject({ status: 200, body: { enabled: true, source: 'library' } });
      for (const bad of [{ enabled: 'no' }, {}, { enabled: true, more: 1 }]) {
        const res = await put(bad);
        expect(res.status, JSON.stringify(bad)).toBe(400);
        expect(res.type).toMatch(/application\/json/);
        expect(res.body.error.code).toBe('INVALID_ARGUMENT');
      }
    } finally {
      await server.close();
      await engine.close();
    }
    // CLIPDEX_OCR in the server's environment: refused, and the page gets the reason.
    vi.stubEnv('CLIPDEX_OCR', 'off');
    const forced = await start(lib);
    const server2 = await startServer({ library: lib, ingest: forced, port: 0 });
    try {
      const res = await fetch(`${server2.url}/api/ocr`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ enabled: true }) });
      expect(res.status).toBe(409);
      expect(((await res.json()) as any).error).toMatchObject({ code: 'SETTING_OVERRIDDEN', message: expect.stringMatching(/CLIPDEX_OCR=off/) });
    } finally {
      await server2.close();
      await forced.close();
      await lib.close();
    }
  });
});
