/**
 * The int8 text tower for queries (issue 19): `int8` query precision opens the text tower's int8 version, made
 * once in the model cache, while photos keep the vectors the fp32 image tower gave them. On the self-built tiny
 * model (seeded random weights), with real ONNX Runtime sessions, a real library (SQLite) and real servers: the
 * int8 embeddings differ from fp32 yet agree with them; a search's score is the cosine of the stored vector with
 * an embedding from a plain ORT session on the cached int8 file; the file is made once, remade when its source
 * changes or it is damaged, and not needed on disk when the cache cannot be written; switching precision
 * re-encodes nothing and keeps the model key; `clipdex serve --query-precision int8` answers and says int8; bad
 * values are usage errors; a trained version's text tower is quantized too.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../src/library/library.js';
import { ClipModel } from '../src/model/clip-model.js';
import { meanCosine, topKOverlap } from '../src/model/embedding-agreement.js';
import { INT8_TEXT_CACHE_DIR, INT8_TEXT_FILE } from '../src/model/int8-text-tower.js';
import { type ModelSpec, readModelDir } from '../src/model/model-dir.js';
import { quantizedOps } from '../src/model/quantize-graph.js';
import { quantizeModel } from '../src/model/quantize-model.js';
import type { TextPrecision } from '../src/model/query-precision.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { towerFileName, versionsDir } from '../src/store/adapters-repo.js';
import { startServer, type RunningServer } from '../src/server/server.js';
import { runCli } from './helpers/cli.js';
import { startServe } from './helpers/e2e-server.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { indexFiles } from './helpers/library-fixture.js';
import { AGREEMENT_PHRASES } from './helpers/phrases.js';
import { sharedPath } from './helpers/shared.js';

const SESSION = { providers: ['cpu' as const], threads: 1 };
let tmp: string;
let modelDir: string;
let spec: ModelSpec;
let files: string[];

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'clipdex-query-int8-'));
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 11, force: true })).dir;
  spec = await readModelDir(modelDir);
  // The shared photos when there (real pictures: rankings as in model-quantize.test.ts), else generated ones.
  const shared = ['labeled/fishes', 'labeled/tools', 'labeled/renewable', 'labeled/others', 'skimage'].map((s) => sharedPath('photos', s));
  if (shared.every((d) => d !== null)) {
    // Every second one (61 of 121): the same spread of subjects, half the decoding (the file must stay quick).
    files = shared.flatMap((d) => readdirSync(d!).filter((f) => /\.(webp|png|jpe?g)$/i.test(f)).sort().map((f) => join(d!, f))).filter((_, i) => i % 2 === 0);
  } else {
    const photos = join(tmp, 'photos');
    mkdirSync(photos, { recursive: true });
    files = [];
    for (let i = 0; i < 60; i++) {
      const file = join(photos, `p${i}.jpg`);
      await writeJpeg(file, i + 1);
      files.push(file);
    }
  }
}, 120_000);

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The one entry folder of the int8 cache under `cacheDir` (fails when there are more or none). */
function onlyEntry(cacheDir: string): string {
  const names = readdirSync(join(cacheDir, INT8_TEXT_CACHE_DIR)).filter((n) => !n.startsWith('.'));
  expect(names).toHaveLength(1);
  return join(cacheDir, INT8_TEXT_CACHE_DIR, names[0]!);
}

function precisionOf(model: ClipModel): TextPrecision {
  const p = model.textPrecision;
  if (!p) throw new Error('the text tower is not open');
  return p;
}

async function withModel<T>(options: Parameters<typeof ClipModel.load>[1], fn: (model: ClipModel) => Promise<T>): Promise<T> {
  const model = await ClipModel.load(spec, { ...SESSION, lazyImageTower: true, ...options });
  try {
    return await fn(model);
  } finally {
    await model.release();
  }
}

describe('int8 query embeddings against fp32', () => {
  it('differ from fp32 (the int8 file is used) yet agree: mean cosine ≥ 0.995, text→image top-10 overlap ≥ 0.88 against fp32 photo vectors', async () => {
    const cacheDir = join(tmp, 'agree-cache');
    const phrases = [...AGREEMENT_PHRASES];
    const { images, fp32 } = await withModel({ cacheDir, queryPrecision: 'fp32' }, async (m) => {
      const embedded = (await m.embedImages(files)).map((r) => {
        if (!r.ok) throw r.error;
        return r.embedding;
      });
      return { images: embedded, fp32: await m.embedTexts(phrases) };
    });
    const int8 = await withModel({ cacheDir, queryPrecision: 'int8' }, async (m) => {
      expect(precisionOf(m)).toMatchObject({ precision: 'int8', source: 'query', state: 'written' });
      return m.embedTexts(phrases);
    });
    let maxDiff = 0;
    for (let i = 0; i < phrases.length; i++) for (let d = 0; d < fp32[i]!.length; d++) maxDiff = Math.max(maxDiff, Math.abs(fp32[i]![d]! - int8[i]![d]!));
    const figures = { maxDiff, meanCosine: meanCosine(fp32, int8), top10: topKOverlap({ texts: fp32, images }, { texts: int8, images }, 10), photos: images.length };
    console.log(`int8 text tower vs fp32 (tiny preset, random weights), photos in fp32: ${JSON.stringify(figures)}`);
    expect(maxDiff).toBeGreaterThan(1e-4);
    expect(figures.meanCosine).toBeGreaterThanOrEqual(0.995);
    expect(figures.top10).toBeGreaterThanOrEqual(0.88);
  }, 60_000);
});

describe('the int8 file, made once', () => {
  it('is reused by a second open (not rewritten), remade for a changed source (the old entry removed), and rewritten when truncated', async () => {
    const cacheDir = join(tmp, 'once-cache');
    // A copy of the model: its text tower is changed below, and the shared model must stay as it is.
    const copy = join(tmp, 'model-copy');
    rmSync(copy, { recursive: true, force: true });
    await buildTinyModel({ out: copy, seed: 11, force: true });
    const copySpec = await readModelDir(copy);
    const open = async () => {
      const model = await ClipModel.load(copySpec, { ...SESSION, lazyImageTower: true, cacheDir, queryPrecision: 'int8' });
      try {
        return { precision: precisionOf(model), vector: (await model.embedTexts(['a dog on a beach']))[0]! };
      } finally {
        await model.release();
      }
    };
    const first = await open();
    expect(first.precision).toMatchObject({ state: 'written' });
    const entry = onlyEntry(cacheDir);
    const file = join(entry, INT8_TEXT_FILE);
    expect(first.precision).toMatchObject({ file });
    expect(quantizedOps(new Uint8Array(readFileSync(file))).length).toBeGreaterThan(0);
    const before = statSync(file);

    const second = await open();
    expect(second.precision).toMatchObject({ state: 'hit', file });
    const after = statSync(file);
    expect([after.ino, after.mtimeMs, after.size]).toEqual([before.ino, before.mtimeMs, before.size]);
    expect(Array.from(second.vector)).toEqual(Array.from(first.vector));

    // The source changed (touched: same bytes, another mtime): a new entry, the old one gone.
    const source = join(copy, copySpec.text.file);
    const later = new Date(statSync(source).mtimeMs + 5000);
    utimesSync(source, later, later);
    const third = await open();
    expect(third.precision).toMatchObject({ state: 'written' });
    const newEntry = onlyEntry(cacheDir);
    expect(newEntry).not.toBe(entry);

    // Truncated: discarded (and said), written again, and the tower works as before.
    const newFile = join(newEntry, INT8_TEXT_FILE);
    truncateSync(newFile, Math.floor(statSync(newFile).size / 2));
    const fourth = await open();
    expect(fourth.precision).toMatchObject({ state: 'written', file: newFile });
    expect((fourth.precision as { discarded?: string }).discarded).toMatch(/was discarded: text_model\.onnx has \d+ bytes/);
    expect(Array.from(fourth.vector)).toEqual(Array.from(first.vector));
  }, 60_000);

  it('a file ONNX Runtime cannot parse (same size as recorded) is discarded, said, and rewritten', async () => {
    const cacheDir = join(tmp, 'garbled-cache');
    const open = () => withModel({ cacheDir, queryPrecision: 'int8' }, async (m) => ({ precision: precisionOf(m), vector: (await m.embedTexts(['a red car']))[0]! }));
    const first = await open();
    const file = join(onlyEntry(cacheDir), INT8_TEXT_FILE);
    // Same size, garbage bytes: only ONNX Runtime can tell. The optimized-graph entry of the good file is keyed by
    // its stamp (size, mtime, inode), which the rewrite changes, so ORT does read the garbled one.
    writeFileSync(file, Buffer.alloc(statSync(file).size, 0xab));
    const second = await open();
    expect(second.precision).toMatchObject({ state: 'written', file });
    expect((second.precision as { discarded?: string }).discarded).toMatch(/ONNX Runtime could not open it/);
    expect(Array.from(second.vector)).toEqual(Array.from(first.vector));
  }, 60_000);

  it('works when the cache dir cannot be written: quantized into a temporary file, said, nothing kept', async () => {
    // A file where the cache dir would be: no folder can be made under it, root or not.
    const blocked = join(tmp, 'not-a-dir');
    writeFileSync(blocked, 'x');
    const result = await withModel({ cacheDir: blocked, queryPrecision: 'int8' }, async (m) => ({ precision: precisionOf(m), vector: (await m.embedTexts(['a red car']))[0]! }));
    expect(result.precision).toMatchObject({ precision: 'int8', source: 'query', state: 'unsaved', file: null });
    expect((result.precision as { reason?: string }).reason).toMatch(/the cache could not be written/);
    const reference = await withModel({ cacheDir: join(tmp, 'agree-cache'), queryPrecision: 'int8' }, async (m) => (await m.embedTexts(['a red car']))[0]!);
    expect(Array.from(result.vector)).toEqual(Array.from(reference));
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('clipdex-int8-text-'))).toEqual([]);
  }, 60_000);
});

describe('a tower quantized already', () => {
  it('is used as it is: an int8 model folder (its marker says so) and an int8 file passed as a trained tower (its ops say so)', async () => {
    const int8Dir = join(tmp, 'model-int8');
    await quantizeModel(spec, { out: int8Dir, sourceKey: 'tiny', sourceRef: modelDir, force: true });
    const cacheDir = join(tmp, 'as-is-cache');
    const int8Spec = await readModelDir(int8Dir);
    const model = await ClipModel.load(int8Spec, { ...SESSION, lazyImageTower: true, cacheDir, queryPrecision: 'int8' });
    try {
      expect(precisionOf(model)).toEqual({ precision: 'int8', source: 'model' });
    } finally {
      await model.release();
    }
    // An int8 file that no marker announces, opened for the fp32 model as a trained tower: found by its ops, not
    // quantized again (the model's own tower is left closed, so nothing else would write an entry).
    const fp32Model = await ClipModel.load(spec, { ...SESSION, lazyImageTower: true, lazyTextTower: true, cacheDir, queryPrecision: 'int8' });
    try {
      expect(fp32Model.textTowerOpen).toBe(false);
      const tower = await fp32Model.openTextTowerAt(join(int8Dir, int8Spec.text.file));
      expect(tower.precision).toEqual({ precision: 'int8', source: 'model' });
      expect((await tower.encode(['a red car']))[0]!.length).toBe(fp32Model.dim);
      await tower.release();
    } finally {
      await fp32Model.release();
    }
    expect(existsSync(join(cacheDir, INT8_TEXT_CACHE_DIR))).toBe(false);
  }, 60_000);
});

describe('a library searched at int8 precision', () => {
  const dataDir = () => join(tmp, 'lib');
  const cacheDir = () => join(tmp, 'lib-cache');
  let library: Library;
  let server: RunningServer;
  let atFp32: ReturnType<typeof snapshot>;

  beforeAll(async () => {
    // Indexed at fp32 (the default), with the library's own encoder path.
    const base = await Library.open({ dataDir: dataDir(), model: modelDir, cacheDir: cacheDir(), session: { ...SESSION, queryPrecision: 'fp32' } });
    // A folder of their own (copies): a server started on this library later scans its roots, and must find
    // these photos indexed already, not a hundred more to encode.
    const root = join(tmp, 'lib-photos');
    mkdirSync(root, { recursive: true });
    const mine = files.slice(0, 24).map((f, i) => {
      const to = join(root, `${i}-${f.split('/').pop()}`);
      copyFileSync(f, to);
      return to;
    });
    await indexFiles(base, root, mine);
    atFp32 = snapshot(base);
    await base.close();
    library = await Library.open({ dataDir: dataDir(), model: modelDir, cacheDir: cacheDir(), session: { ...SESSION, queryPrecision: 'int8', textThread: true } });
    server = await startServer({ library, port: 0 });
  }, 60_000);

  let closed = false;
  afterAll(async () => {
    if (closed) return;
    await server?.close();
    await library?.close();
  });

  it('scores a photo with the cosine of its stored vector and a plain ONNX Runtime session\'s embedding from the cached int8 file', async () => {
    const phrase = 'a fish in the water';
    const res = await fetch(`${server.url}/api/search?q=${encodeURIComponent(phrase)}&limit=10`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { results: { id: number; score: number }[] };
    expect(body.results.length).toBeGreaterThan(3);

    const { model, key } = library.requireModel();
    const p = precisionOf(model);
    expect(p).toMatchObject({ precision: 'int8', source: 'query' });
    const file = (p as { file: string }).file;
    expect(file.startsWith(join(cacheDir(), INT8_TEXT_CACHE_DIR))).toBe(true);
    // Independent of the product's encoder: the tokenizer's ids through a plain session on the int8 file.
    const [row] = await model.tokenizer.tokenize([phrase], spec.contextLength);
    const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
    let query: Float32Array;
    try {
      const n = row!.ids.length;
      const feeds: Record<string, ort.Tensor> = { [spec.text.input]: new ort.Tensor('int64', BigInt64Array.from(row!.ids, BigInt), [1, n]) };
      if (session.inputNames.includes('attention_mask')) feeds.attention_mask = new ort.Tensor('int64', BigInt64Array.from(row!.mask, BigInt), [1, n]);
      const out = await session.run(feeds);
      const raw = (out[spec.text.output] ?? out[session.outputNames[0]!])!.data as Float32Array;
      const norm = Math.hypot(...raw);
      query = raw.map((v) => v / norm);
    } finally {
      await session.release();
    }
    for (const hit of body.results) {
      const stored = library.embeddings.forImage(hit.id, key)!;
      let cos = 0;
      for (let d = 0; d < stored.length; d++) cos += stored[d]! * query[d]!;
      expect(Math.abs(hit.score - cos)).toBeLessThan(1e-5);
    }
  }, 60_000);

  it('status says the text tower is int8 for queries', async () => {
    const status = (await (await fetch(`${server.url}/api/status`)).json()) as { model: { textTower: Record<string, unknown> } };
    expect(status.model.textTower).toMatchObject({ state: 'open', precision: 'int8', description: 'text tower: int8 for queries (photos encoded in fp32)', int8Cache: 'written' });
  });

  it('a trained version\'s text tower is quantized too (its own int8 entry), and its embeddings agree with its fp32 ones', async () => {
    // A trained tower stands in as another tower with the same inputs and outputs (the tiny model of another
    // seed), stored as training stores one: under the versions folder, named by its SHA-256.
    const other = await buildTinyModel({ out: join(tmp, 'model-seed-12'), seed: 12, force: true });
    const bytes = readFileSync(join(other.dir, spec.text.file));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    mkdirSync(versionsDir(dataDir()), { recursive: true });
    writeFileSync(join(versionsDir(dataDir()), towerFileName(sha256)), bytes);
    const record = { version: 1, metrics: { kind: 'text-blocks', textTower: { file: towerFileName(sha256), sha256 } } };
    const tunedInt8 = (await library.openTunedText(record))!;
    const base = library.requireModel().model;
    const fp32Model = await ClipModel.load(spec, { ...SESSION, lazyImageTower: true, cacheDir: cacheDir(), queryPrecision: 'fp32' });
    const tunedFp32 = (await library.openTunedText(record, fp32Model))!;
    try {
      expect(tunedInt8.precision).toMatchObject({ precision: 'int8', source: 'query', state: 'written' });
      expect((tunedInt8.precision as { file: string }).file).not.toBe((precisionOf(base) as { file: string }).file);
      expect(tunedFp32.precision).toEqual({ precision: 'fp32' });
      const phrases = [...AGREEMENT_PHRASES].slice(0, 40);
      const [a, b, own] = await Promise.all([tunedFp32.encode(phrases), tunedInt8.encode(phrases), base.embedTexts(phrases)]);
      expect(meanCosine(a, b)).toBeGreaterThanOrEqual(0.995);
      // The tuned tower's, not the base tower's: another seed gives other embeddings.
      expect(meanCosine(b, own)).toBeLessThan(0.9);
    } finally {
      await Promise.all([tunedInt8.release(), tunedFp32.release(), fp32Model.release()]);
    }
  }, 60_000);

  it('switching fp32 → int8 → fp32 keeps the model key and re-encodes nothing (photo vectors byte-identical)', async () => {
    // Last in this block: it closes the int8 library and opens the same data dir at fp32 again.
    expect(precisionOf(library.requireModel().model)).toMatchObject({ precision: 'int8' });
    expect(snapshot(library)).toEqual(atFp32);
    closed = true;
    await server.close();
    await library.close();
    const again = await Library.open({ dataDir: dataDir(), model: modelDir, cacheDir: cacheDir(), session: { ...SESSION, queryPrecision: 'fp32' } });
    try {
      expect(precisionOf(again.requireModel().model)).toEqual({ precision: 'fp32' });
      expect(snapshot(again)).toEqual(atFp32);
    } finally {
      await again.close();
    }
  }, 60_000);
});

/** The library's model key, the keys it holds vectors for, and every indexed photo's stored vector (hex). */
function snapshot(lib: Library) {
  const { key } = lib.requireModel();
  const records = lib.images.listByStatus('indexed', 1000, 0);
  return {
    key,
    models: lib.embeddings.models().map((m) => m.modelKey),
    count: lib.embeddings.count(key),
    vectors: records.map((r) => `${r.path} ${Buffer.from(lib.embeddings.forImage(r.id, key)!.buffer).toString('hex')}`),
  };
}

describe('the CLI (built bin)', () => {
  const globals = () => ['--model', modelDir, '--data-dir', join(tmp, 'lib'), '--cache-dir', join(tmp, 'serve-cache')];
  const env = { CLIPDEX_THREADS: '1', CLIPDEX_QUERY_PRECISION: undefined, CLIPDEX_MODEL: undefined } as const;

  it('`clipdex serve --query-precision int8` writes the int8 file (said in its log), answers a search, and its status says int8', async () => {
    const serve = await startServe(globals(), ['--query-precision', 'int8'], { CLIPDEX_THREADS: '1' });
    try {
      const search = await fetch(`${serve.url}/api/search?q=${encodeURIComponent('a hammer on a table')}&limit=5`);
      expect(search.status, serve.log()).toBe(200);
      const body = (await search.json()) as { results: { score: number }[] };
      expect(body.results.length).toBeGreaterThan(0);
      const status = (await (await fetch(`${serve.url}/api/status`)).json()) as { model: { textTower: Record<string, unknown> } };
      expect(status.model.textTower).toMatchObject({ precision: 'int8', description: 'text tower: int8 for queries (photos encoded in fp32)' });
      expect(serve.log()).toMatch(/text tower: wrote its int8 version for queries to .*int8-text.*text_model\.onnx/);
    } finally {
      await serve.stop();
    }
    // `clipdex status` of the same library, at the precision the environment asks: said in its JSON and its text.
    const status = await runCli([...globals(), '--json', 'status'], { ...env, CLIPDEX_QUERY_PRECISION: 'int8' });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).model.textTower).toBe('text tower: int8 for queries (photos encoded in fp32)');
  }, 90_000);

  it('refuses a bad precision, on the command line or in CLIPDEX_QUERY_PRECISION, as a usage error (exit 2) naming the allowed values', async () => {
    const [flag, fromEnv, search] = await Promise.all([
      runCli([...globals(), 'serve', '--port', '0', '--query-precision', 'int4'], env),
      runCli([...globals(), 'serve', '--port', '0'], { ...env, CLIPDEX_QUERY_PRECISION: 'x' }),
      runCli([...globals(), 'search', 'a cat', '--query-precision', 'int4'], env),
    ]);
    expect(flag.code, flag.stderr).toBe(2);
    expect(flag.stderr).toMatch(/--query-precision must be fp32 or int8, got "int4"/);
    expect(fromEnv.code, fromEnv.stderr).toBe(2);
    expect(fromEnv.stderr).toMatch(/CLIPDEX_QUERY_PRECISION must be fp32 or int8, got "x"/);
    expect(search.code, search.stderr).toBe(2);
    expect(search.stderr).toMatch(/--query-precision must be fp32 or int8/);
  }, 60_000);

  it('`clipdex search --query-precision int8` searches in this process with the cached int8 file', async () => {
    const r = await runCli([...globals(), '--json', 'search', 'a hammer on a table', '--query-precision', 'int8', '-k', '3'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).results).toHaveLength(3);
    // The entry the server wrote is reused: still one.
    onlyEntry(join(tmp, 'serve-cache'));
  }, 60_000);
});
