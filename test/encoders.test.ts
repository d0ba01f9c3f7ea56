import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession, providerUnavailableReason, sessionOptionsFromEnv } from '../src/inference/onnx-runtime.js';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-enc-'));
let modelDir: string;
let model: ClipModel;

beforeAll(async () => {
  modelDir = (await buildTinyModel({ out: join(tmp, 'model'), seed: 3 })).dir;
  model = await ClipModel.load(await readModelDir(modelDir), { providers: ['cpu'], threads: 1 });
});
afterAll(async () => {
  await model?.release();
  rmSync(tmp, { recursive: true, force: true });
});

function cosine(a: Float32Array, b: Float32Array): number {
  return a.reduce((s, x, i) => s + x * b[i]!, 0);
}

describe('execution providers', () => {
  const vision = () => join(modelDir, 'onnx', 'vision_model.onnx');

  it('falls back from CUDA to the CPU and says why', async () => {
    const cudaReason = providerUnavailableReason('cuda');
    const opened = await openSession(vision(), { providers: ['cuda', 'cpu'] });
    if (cudaReason) {
      expect(opened.provider).toBe('cpu');
      expect(opened.fallbacks).toEqual([{ provider: 'cuda', reason: cudaReason }]);
    } else {
      expect(opened.provider).toBe('cuda');
    }
    await opened.session.release();
  });

  it.skipIf(!providerUnavailableReason('cuda'))('fails clearly when no requested provider can run (skipped where CUDA runs)', async () => {
    await expect(openSession(vision(), { providers: ['cuda'] })).rejects.toMatchObject({
      code: 'EXECUTION_PROVIDER_UNAVAILABLE',
      message: expect.stringMatching(/cuda: /),
    });
  });

  it('treats webgpu as an opt-in that falls back with a reason when it cannot start', async () => {
    const opened = await openSession(vision(), { providers: ['webgpu', 'cpu'] }).catch((e: unknown) => e);
    if (opened instanceof Error) throw opened;
    const { provider, fallbacks, session } = opened as Awaited<ReturnType<typeof openSession>>;
    expect(['webgpu', 'cpu']).toContain(provider);
    if (provider === 'cpu') expect(fallbacks[0]).toMatchObject({ provider: 'webgpu', reason: expect.any(String) });
    await session.release();
  });

  it('reads CLIPDEX_PROVIDERS and CLIPDEX_THREADS, refusing unknown providers', () => {
    expect(sessionOptionsFromEnv({ CLIPDEX_PROVIDERS: 'webgpu, CPU', CLIPDEX_THREADS: '3' })).toEqual({ providers: ['webgpu', 'cpu'], threads: 3 });
    expect(sessionOptionsFromEnv({})).toEqual({});
    expect(() => sessionOptionsFromEnv({ CLIPDEX_PROVIDERS: 'tpu' })).toThrow(/unknown provider tpu/);
  });

  it('rejects a bad thread count and a missing or corrupt model file with typed errors', async () => {
    await expect(openSession(vision(), { threads: 0 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(openSession(join(tmp, 'nope.onnx'))).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
    const corrupt = join(tmp, 'corrupt.onnx');
    writeFileSync(corrupt, Buffer.from('this is not a protobuf model'));
    await expect(openSession(corrupt, { providers: ['cpu'] })).rejects.toMatchObject({ code: 'MODEL_INVALID' });
  });
});

describe('text encoder', () => {
  it('gives the same embedding for a phrase alone or inside a batch of different lengths', async () => {
    const phrases = ['dog', 'a dog asleep on the sofa in the living room', 'sunset'];
    const batch = await model.embedTexts(phrases);
    for (let i = 0; i < phrases.length; i++) {
      const [alone] = await model.embedTexts([phrases[i]!]);
      expect(cosine(alone!, batch[i]!)).toBeGreaterThan(1 - 1e-6);
    }
  });

  it('truncates text longer than the context and still encodes it', async () => {
    const [long] = await model.embedTexts(['word '.repeat(500)]);
    expect(long).toHaveLength(model.dim);
    expect(Math.hypot(...long!)).toBeCloseTo(1, 5);
  });
});

const edge = sharedPath('photos', 'edge');
describe.skipIf(!edge)(`image embeddings of real files ${edge ? '' : NEEDS_SHARED}`, () => {
  it('gives every EXIF orientation of the same picture (nearly) the same embedding', async () => {
    const files = Array.from({ length: 9 }, (_, i) => join(edge!, `orientation_${i}.jpg`));
    const results = await model.embedImages(files);
    const embeddings = results.map((r) => {
      if (!r.ok) throw r.error;
      return r.embedding;
    });
    for (const e of embeddings.slice(1)) expect(cosine(e, embeddings[0]!)).toBeGreaterThan(0.999);
  });

  it('embeds every decodable edge case and reports each bad one with its own code, in order', async () => {
    const names = readdirSync(edge!).sort();
    const results = await model.embedImages(names.map((n) => join(edge!, n)));
    const byName = new Map(names.map((n, i) => [n, results[i]!]));
    const expectedFailures: Record<string, string> = {
      'empty.png': 'EMPTY_FILE',
      'not-an-image.jpg': 'NOT_AN_IMAGE',
      'truncated.jpg': 'DECODE_FAILED',
    };
    for (const [name, result] of byName) {
      if (name in expectedFailures) {
        expect(result.ok, name).toBe(false);
        if (!result.ok) expect(result.error.code, name).toBe(expectedFailures[name]);
      } else {
        expect(result.ok, `${name}: ${result.ok ? '' : result.error.message}`).toBe(true);
        if (result.ok) expect(result.embedding).toHaveLength(model.dim);
      }
    }
    // HEIC and AVIF decode (the prebuilt sharp lacks HEVC; heic-decode covers it).
    expect(byName.get('chelsea.heic')!.ok).toBe(true);
    expect(byName.get('coffee.avif')!.ok).toBe(true);
  });
});
