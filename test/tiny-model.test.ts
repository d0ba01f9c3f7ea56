import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parameterCount, presetArchitecture, type ClipWeights } from '../src/model/clip-architecture.js';
import { ClipModel } from '../src/model/clip-model.js';
import { TextEncoder } from '../src/model/text-encoder.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel, builtWeights } from '../src/model/tiny-model-builder.js';
import type { ClipTokenizer } from '../src/model/tokenizer.js';
import { l2normalize, referenceImageEmbedding, referenceTextEmbedding } from './helpers/clip-reference.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-tiny-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function randomPixels(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 4 - 2; // normalised pixels lie roughly in [-2, 2]
  });
}

describe('self-built CLIP model', () => {
  let hfDir: string;
  let openclipDir: string;
  let weights: ClipWeights;

  beforeAll(async () => {
    hfDir = (await buildTinyModel({ out: join(tmp, 'hf'), seed: 7 })).dir;
    openclipDir = (await buildTinyModel({ out: join(tmp, 'openclip'), seed: 7, layout: 'openclip' })).dir;
    weights = await builtWeights({ seed: 7 });
  });

  it('writes the Hugging Face export layout with its config files', async () => {
    const spec = await readModelDir(hfDir);
    expect(spec.layout).toBe('hf');
    expect(spec.vision.file).toBe('onnx/vision_model.onnx');
    expect(spec.text.file).toBe('onnx/text_model.onnx');
    expect(spec.preprocess).toMatchObject({ size: 224, resizeMode: 'shortest', interpolation: 'bicubic' });
    expect(spec.contextLength).toBe(77);
    expect(spec.embeddingDim).toBe(64);
    const session = await ort.InferenceSession.create(join(hfDir, spec.vision.file));
    expect(session.inputNames).toEqual(['pixel_values']);
    expect(session.outputNames).toEqual(['image_embeds']);
    const text = await ort.InferenceSession.create(join(hfDir, spec.text.file));
    expect(text.inputNames).toEqual(['input_ids']);
    expect(text.outputNames).toEqual(['text_embeds']);
    expect(text.inputMetadata[0]).toMatchObject({ type: 'int64', shape: ['batch', 'sequence'] });
  });

  it('writes the OpenCLIP/Immich layout: fixed batch 1, int32 ids, normalised outputs', async () => {
    const spec = await readModelDir(openclipDir);
    expect(spec.layout).toBe('openclip');
    const text = await ort.InferenceSession.create(join(openclipDir, 'textual/model.onnx'));
    expect(text.inputMetadata[0]).toMatchObject({ name: 'text', type: 'int32', shape: [1, 77] });
    const vision = await ort.InferenceSession.create(join(openclipDir, 'visual/model.onnx'));
    expect(vision.inputMetadata[0]).toMatchObject({ name: 'image', shape: [1, 3, 224, 224] });
  });

  it('is reproducible: the same seed writes the same bytes, another seed other bytes', async () => {
    const again = (await buildTinyModel({ out: join(tmp, 'again'), seed: 7 })).dir;
    const other = (await buildTinyModel({ out: join(tmp, 'other'), seed: 8 })).dir;
    for (const f of ['onnx/vision_model.onnx', 'onnx/text_model.onnx', 'tokenizer.json', 'config.json']) {
      expect(sha256(join(again, f)), f).toBe(sha256(join(hfDir, f)));
    }
    expect(sha256(join(other, 'onnx/vision_model.onnx'))).not.toBe(sha256(join(hfDir, 'onnx/vision_model.onnx')));
  });

  it('refuses to overwrite a non-empty directory without force', async () => {
    await expect(buildTinyModel({ out: hfDir })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('image tower matches a plain TypeScript forward pass within 1e-4', async () => {
    const model = await ClipModel.load(await readModelDir(hfDir), { providers: ['cpu'] });
    const per = 3 * 224 * 224;
    const pixels = randomPixels(3 * per, 42);
    const got = await model.image.encode(pixels, 3);
    for (let i = 0; i < 3; i++) {
      const want = l2normalize(referenceImageEmbedding(weights, pixels.subarray(i * per, (i + 1) * per)));
      expect(maxAbsDiff(got[i]!, want)).toBeLessThan(1e-4);
    }
    await model.release();
  });

  it('text tower matches a plain TypeScript forward pass within 1e-4', async () => {
    const model = await ClipModel.load(await readModelDir(hfDir), { providers: ['cpu'] });
    const phrases = ['a photo of a cat', 'dog asleep on the sofa', ''];
    const got = await model.embedTexts(phrases);
    phrases.forEach((p, i) => {
      const want = l2normalize(referenceTextEmbedding(weights, (model.tokenizer as ClipTokenizer).encode(p)));
      expect(maxAbsDiff(got[i]!, want), p).toBeLessThan(1e-4);
    });
    await model.release();
  });

  it('text at the real token length equals the padded-to-77 result within 1e-5', async () => {
    const model = await ClipModel.load(await readModelDir(hfDir), { providers: ['cpu'] });
    expect(model.text).toBeInstanceOf(TextEncoder);
    expect((model.text as TextEncoder).dynamicLength).toBe(true);
    const phrases = ['a', 'kids on a beach at sunset', 'x'.repeat(300), 'grandma’s garden 🌹 in 2024'];
    const short = await model.text.encode(phrases);
    const padded = await model.text.encode(phrases, { padToContext: true });
    phrases.forEach((p, i) => expect(maxAbsDiff(short[i]!, padded[i]!), p).toBeLessThan(1e-5));
    // Different phrases give different embeddings: the equality above is not vacuous.
    expect(maxAbsDiff(short[0]!, short[1]!)).toBeGreaterThan(1e-2);
    await model.release();
  });

  it('both layouts of the same weights give the same embeddings (batch-1 graphs run in a loop)', async () => {
    const hf = await ClipModel.load(await readModelDir(hfDir), { providers: ['cpu'] });
    const oc = await ClipModel.load(await readModelDir(openclipDir), { providers: ['cpu'] });
    expect(oc.image.batchSize).toBe(1);
    const pixels = randomPixels(2 * 3 * 224 * 224, 3);
    const [a, b] = [await hf.image.encode(pixels, 2), await oc.image.encode(pixels, 2)];
    for (let i = 0; i < 2; i++) expect(maxAbsDiff(a[i]!, b[i]!)).toBeLessThan(1e-5);
    const phrases = ['a red kayak', 'snow'];
    const [ta, tb] = [await hf.embedTexts(phrases), await oc.embedTexts(phrases)];
    for (let i = 0; i < 2; i++) expect(maxAbsDiff(ta[i]!, tb[i]!)).toBeLessThan(1e-5);
    await Promise.all([hf.release(), oc.release()]);
  });

  it('outputs are unit vectors and not collapsed', async () => {
    const model = await ClipModel.load(await readModelDir(hfDir), { providers: ['cpu'] });
    const pixels = randomPixels(4 * 3 * 224 * 224, 11);
    const e = await model.image.encode(pixels, 4);
    for (const v of e) expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    const cos = e[0]!.reduce((s, x, i) => s + x * e[1]![i]!, 0);
    expect(cos).toBeLessThan(0.999);
    await model.release();
  });

  it('the vit-b-32 preset has the published OpenAI ViT-B/32 parameter counts', () => {
    const arch = presetArchitecture('vit-b-32', 49408);
    // 151,277,313 in total for openai/clip-vit-base-patch32, of which 1 is logit_scale.
    expect(parameterCount(arch)).toEqual({ vision: 87_849_216, text: 63_428_096 });
  });
});
