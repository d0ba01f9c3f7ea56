/**
 * An exported adapter is an ordinary model: the base graphs with one MatMul appended. Loaded by clipdex
 * (a plain ONNX Runtime session per tower), it must give what the in-process projection gives.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { exportAdaptedModel } from '../src/train/adapter-export.js';
import { projectRows, type AdapterWeights } from '../src/adapter/adapter-weights.js';
import { seededRandom } from '../src/util/seeded-random.js';

let dir: string;
let images: Uint8Array[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'clipdex-export-'));
  images = await Promise.all(
    [0, 1, 2].map((i) =>
      sharp({ create: { width: 64 + 40 * i, height: 48 + 30 * i, channels: 3, background: { r: 200 - 60 * i, g: 40 * i, b: 90 } } })
        .png()
        .toBuffer()
        .then((b) => new Uint8Array(b)),
    ),
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomAdapter(dim: number, seed: number): AdapterWeights {
  const rand = seededRandom(seed);
  const m = () => Float32Array.from({ length: dim * dim }, (_, i) => (i % (dim + 1) === 0 ? 1 : 0) + 0.2 * (rand() * 2 - 1));
  return { dim, image: m(), text: m() };
}

const maxDiff = (a: Float32Array, b: Float32Array) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

describe.each(['hf', 'openclip'] as const)('export of an adapter on a %s-layout model', (layout) => {
  it('loads as a model and equals the in-process projection within 1e-5', async () => {
    const built = await buildTinyModel({ out: join(dir, `base-${layout}`), seed: 5, layout, force: true });
    const spec = await readModelDir(built.dir);
    const weights = randomAdapter(64, 9);
    const out = await exportAdaptedModel(spec, weights, join(dir, `exported-${layout}`), { baseModel: 'tiny', baseKey: 'tiny#x', adapterVersion: 1, blend: 1, metrics: {} });

    const base = await ClipModel.load(spec);
    const exported = await ClipModel.load(await readModelDir(out));
    try {
      const phrases = ['a photo of a fish', 'grandma in the garden', 'our red kayak'];
      const baseText = await base.embedTexts(phrases);
      const exportedText = await exported.embedTexts(phrases);
      const baseImages = await base.embedImages(images);
      const exportedImages = await exported.embedImages(images);
      for (let i = 0; i < phrases.length; i++) {
        const expected = projectRows(baseText[i]!, 1, weights.text, 64);
        expect(maxDiff(exportedText[i]!, expected)).toBeLessThan(1e-5);
        // And the adapter really changed the output (an export that dropped it would also "load").
        expect(maxDiff(exportedText[i]!, baseText[i]!)).toBeGreaterThan(1e-2);
      }
      for (let i = 0; i < images.length; i++) {
        const b = baseImages[i]!;
        const e = exportedImages[i]!;
        if (!b.ok || !e.ok) throw new Error('test image failed to encode');
        expect(maxDiff(e.embedding, projectRows(b.embedding, 1, weights.image, 64))).toBeLessThan(1e-5);
      }
    } finally {
      await base.release();
      await exported.release();
    }
  }, 60_000);
});

it('refuses to overwrite a folder that has files in it', async () => {
  const built = await buildTinyModel({ out: join(dir, 'base-refuse'), seed: 5, force: true });
  const spec = await readModelDir(built.dir);
  await expect(exportAdaptedModel(spec, randomAdapter(64, 1), built.dir, { baseModel: 't', baseKey: 't', adapterVersion: 1, blend: 1, metrics: {} })).rejects.toThrow(/not empty/);
});

it('loses nothing that was written into the target folder while it exported', async () => {
  const built = await buildTinyModel({ out: join(dir, 'base-race'), seed: 5, force: true });
  const spec = await readModelDir(built.dir);
  const target = join(dir, 'export-race');
  mkdirSync(target); // empty: accepted when the export starts
  const exporting = exportAdaptedModel(spec, randomAdapter(64, 2), target, { baseModel: 't', baseKey: 't', adapterVersion: 1, blend: 1, metrics: {} });
  // The export is now past its checks and copying (it awaits the tower files); the user drops a photo in.
  writeFileSync(join(target, 'IMG_0001.jpg'), 'a photo the user copied here');
  await expect(exporting).rejects.toThrow(/written to while/);
  expect(readFileSync(join(target, 'IMG_0001.jpg'), 'utf8')).toBe('a photo the user copied here');
  // Nor is the half-written export left beside it.
  expect(readdirSync(dir).filter((f) => f.startsWith('export-race.'))).toEqual([]);
});

it('never removes a folder it did not create, even one named like its own scratch folder', async () => {
  const built = await buildTinyModel({ out: join(dir, 'base-scratch'), seed: 5, force: true });
  const spec = await readModelDir(built.dir);
  const target = join(dir, 'export-scratch');
  const lookalike = `${target}.partial-${process.pid}`;
  mkdirSync(lookalike);
  writeFileSync(join(lookalike, 'keep.txt'), 'mine');
  await exportAdaptedModel(spec, randomAdapter(64, 3), target, { baseModel: 't', baseKey: 't', adapterVersion: 1, blend: 1, metrics: {} });
  expect(readFileSync(join(lookalike, 'keep.txt'), 'utf8')).toBe('mine');
  expect(existsSync(join(target, 'clipdex-adapter.json'))).toBe(true);
});
