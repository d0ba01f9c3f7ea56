/** The optimiser on data with a known answer: captions are a hidden linear map of the photos plus noise. */
import { describe, expect, it } from 'vitest';
import { trainAdapters, type TrainingData } from '../src/train/trainer.js';
import { seededRandom } from '../src/util/seeded-random.js';

function hiddenMapData(seed: number, d = 32, n = 600, noise = 0.05): TrainingData {
  const rand = seededRandom(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  const normalize = (v: Float32Array, o: number) => {
    let s = 0;
    for (let k = 0; k < d; k++) s += v[o + k]! ** 2;
    for (let k = 0; k < d; k++) v[o + k]! /= Math.sqrt(s);
  };
  const map = Float32Array.from({ length: d * d }, () => gauss() / Math.sqrt(d));
  const images = new Float32Array(n * d);
  const texts = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < d; k++) images[i * d + k] = gauss();
    normalize(images, i * d);
    for (let j = 0; j < d; j++) {
      let s = 0;
      for (let k = 0; k < d; k++) s += images[i * d + k]! * map[k * d + j]!;
      texts[i * d + j] = s + noise * gauss();
    }
    normalize(texts, i * d);
  }
  return {
    dim: d,
    images,
    texts,
    pairs: Array.from({ length: n }, (_, i) => [i, i] as const),
    imageSplit: Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 'val' : i % 5 === 1 ? 'test' : 'train')),
    logitScale: 100,
  };
}

describe('training on a hidden linear map', () => {
  it('recovers it: test recall@1 goes from chance to near 1, with an interval far above 0', async () => {
    const out = await trainAdapters(hiddenMapData(3), { seed: 1 });
    // 120 validation photos: enough to choose on them alone.
    expect(out.selection).toMatchObject({ method: 'holdout', folds: 1, photos: 120 });
    expect(out.testImages).toBe(120);
    // Measured on the 120 test pairs (600 captions): text→image recall@1 0.01 → 0.93, image→text 0 → 0.86;
    // mean recall@1/5/10 +92.4 points, 90% interval +90.1 to +94.3.
    expect(out.before!.textToImage.r1).toBeLessThan(0.05);
    expect(out.after!.textToImage.r1).toBeGreaterThan(0.8);
    expect(out.after!.textToImage.r5).toBeGreaterThan(0.95);
    expect(out.after!.imageToText.r1).toBeGreaterThan(0.75);
    expect(out.improved).toBe(true);
    expect(out.gain!.low).toBeGreaterThan(0.7);
    expect(out.verdict).toMatch(/^improves: \+[\d.]+ points mean recall@1\/5\/10 on 120 test photos/);
    expect(out.blend).toBeGreaterThan(0.5);
    // The validation loss went down from the start.
    expect(out.history[out.bestEpoch - 1]!.valLoss!).toBeLessThan(out.history[0]!.valLoss! * 0.5);
  }, 60_000);

  it('refuses data it cannot learn from, saying what is missing', async () => {
    const data = hiddenMapData(4, 8, 10);
    await expect(trainAdapters({ ...data, pairs: data.pairs.map(([i]) => [i, 0] as const) })).rejects.toThrow(/at least 2 different captions/);
  });
});
