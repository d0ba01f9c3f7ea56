/**
 * ONNX Runtime's optimized graphs kept on disk (inference/optimized-cache.ts): written at the first open,
 * opened from afterwards with the same outputs, made again when the model file changes, and a damaged entry
 * ignored, removed and written anew, never used.
 */
import { existsSync, readdirSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPTIMIZED_CACHE_DIR } from '../src/inference/optimized-cache.js';
import type { GraphCacheOutcome, SessionOptions } from '../src/inference/onnx-runtime.js';
import { readModelDir } from '../src/model/model-dir.js';
import { TextEncoder } from '../src/model/text-encoder.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { openTower } from '../src/model/tower-session.js';
import { tinyModel } from './helpers/library-fixture.js';

let tmp: string;
let modelDir: string;
let textFile: string;
const phrases = ['a red square', 'kids on a beach at sunset', 'x'];

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clipdex-ort-cache-'));
  modelDir = await tinyModel(tmp);
  textFile = join(tmp, 'text.onnx');
  await copyFile(join(modelDir, 'onnx', 'text_model.onnx'), textFile);
}, 60_000);

afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Opens the text tower from `file` and encodes the phrases; returns the embeddings and how the cache served. */
async function encodeWith(file: string, session: SessionOptions): Promise<{ rows: number[][]; cache: GraphCacheOutcome }> {
  const spec = await readModelDir(modelDir);
  const tower = await openTower(file, spec.text, 'text', { threads: 1, ...session });
  const encoder = new TextEncoder(tower, await loadTextTokenizer(spec), spec.contextLength);
  try {
    return { rows: (await encoder.encode(phrases)).map((r) => Array.from(r)), cache: tower.graphCache };
  } finally {
    await encoder.release();
  }
}

const entries = (cacheDir: string) => (existsSync(join(cacheDir, OPTIMIZED_CACHE_DIR)) ? readdirSync(join(cacheDir, OPTIMIZED_CACHE_DIR)) : []);

describe('the optimized-graph cache', () => {
  let reference: number[][];

  beforeAll(async () => {
    const plain = await encodeWith(textFile, {});
    expect(plain.cache).toEqual({ state: 'off' });
    reference = plain.rows;
  }, 60_000);

  it('writes the optimized graph at the first open and opens from it after, with the same embeddings', async () => {
    const cacheDir = join(tmp, 'cache-reuse');
    const first = await encodeWith(textFile, { cacheDir });
    expect(first.cache.state).toBe('written');
    const [entry] = entries(cacheDir);
    expect(entries(cacheDir)).toHaveLength(1);
    const files = readdirSync(join(cacheDir, OPTIMIZED_CACHE_DIR, entry!)).sort();
    expect(files).toEqual(['entry.json', 'graph.onnx', 'weights.bin']);
    const second = await encodeWith(textFile, { cacheDir });
    expect(second.cache).toEqual({ state: 'hit', dir: join(cacheDir, OPTIMIZED_CACHE_DIR, entry!) });
    expect(first.rows).toEqual(reference);
    expect(second.rows).toEqual(reference);
  }, 60_000);

  it('is not used with CLIPDEX_ORT_CACHE=off, and refuses another value', async () => {
    const cacheDir = join(tmp, 'cache-off');
    const before = process.env.CLIPDEX_ORT_CACHE;
    try {
      process.env.CLIPDEX_ORT_CACHE = 'off';
      expect((await encodeWith(textFile, { cacheDir })).cache).toEqual({ state: 'off' });
      expect(entries(cacheDir)).toEqual([]);
      process.env.CLIPDEX_ORT_CACHE = 'maybe';
      await expect(encodeWith(textFile, { cacheDir })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('CLIPDEX_ORT_CACHE') });
    } finally {
      if (before === undefined) delete process.env.CLIPDEX_ORT_CACHE;
      else process.env.CLIPDEX_ORT_CACHE = before;
    }
  }, 60_000);

  it('optimizes a changed model file again and removes the entry of its old contents', async () => {
    const cacheDir = join(tmp, 'cache-changed');
    const file = join(tmp, 'changing.onnx');
    await copyFile(textFile, file);
    expect((await encodeWith(file, { cacheDir })).cache.state).toBe('written');
    const [old] = entries(cacheDir);
    // Another tower in its place: the other model's text file (another seed), so the outputs must change too.
    const other = await tinyModel(join(tmp, 'other'), 12);
    await copyFile(join(other, 'onnx', 'text_model.onnx'), file);
    const changed = await encodeWith(file, { cacheDir });
    expect(changed.cache.state).toBe('written');
    expect(changed.rows).not.toEqual(reference);
    expect(entries(cacheDir)).toHaveLength(1);
    expect(entries(cacheDir)).not.toContain(old);
    // The same bytes with another modification time are a changed file too (the stamp is the key).
    await utimes(file, new Date(), new Date(Date.now() + 60_000));
    expect((await encodeWith(file, { cacheDir })).cache.state).toBe('written');
    expect(entries(cacheDir)).toHaveLength(1);
  }, 90_000);

  const damages: [string, (dir: string) => Promise<void>, RegExp][] = [
    ['a truncated weights file', (dir) => truncate(join(dir, 'weights.bin'), 100), /weights\.bin has 100 bytes/],
    [
      'a graph of the same size with other bytes',
      async (dir) => {
        const graph = await readFile(join(dir, 'graph.onnx'));
        graph.fill(0x41, 0, 64);
        await writeFile(join(dir, 'graph.onnx'), graph);
      },
      /graph\.onnx is not the one written/,
    ],
    ['an entry record that is not JSON', (dir) => writeFile(join(dir, 'entry.json'), '{"format":'), /entry\.json cannot be read/],
    ['a missing graph', (dir) => rm(join(dir, 'graph.onnx')), /cannot be read/],
  ];

  for (const [what, damage, why] of damages) {
    it(`ignores ${what}, says so, and writes the entry again`, async () => {
      const cacheDir = join(tmp, `cache-damaged-${what.replace(/\W+/g, '-')}`);
      expect((await encodeWith(textFile, { cacheDir })).cache.state).toBe('written');
      const dir = join(cacheDir, OPTIMIZED_CACHE_DIR, entries(cacheDir)[0]!);
      await damage(dir);
      const again = await encodeWith(textFile, { cacheDir });
      expect(again.cache).toMatchObject({ state: 'written', dir, discarded: expect.stringMatching(why) });
      expect(again.rows).toEqual(reference);
      const healed = await encodeWith(textFile, { cacheDir });
      expect(healed.cache).toEqual({ state: 'hit', dir });
      expect(healed.rows).toEqual(reference);
    }, 60_000);
  }

  it('opens the model as before when the cache cannot be written', async () => {
    const cacheDir = join(tmp, 'cache-is-a-file');
    await writeFile(cacheDir, 'not a folder');
    const opened = await encodeWith(textFile, { cacheDir });
    expect(opened.cache).toMatchObject({ state: 'unsaved', reason: expect.any(String) });
    expect(opened.rows).toEqual(reference);
  }, 60_000);
});
