import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContrastiveKernel } from '../src/train/contrastive-kernel.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { referenceLoss, referenceTerms, type ReferenceInput } from './helpers/contrastive-reference.js';

const d = 6;
let kernel: ContrastiveKernel;

beforeAll(async () => {
  kernel = await ContrastiveKernel.create(d, { threads: 1 });
});
afterAll(async () => {
  await kernel.release();
});

function unitRows(count: number, rand: () => number): Float32Array {
  const out = new Float32Array(count * d);
  for (let r = 0; r < count; r++) {
    let norm = 0;
    for (let k = 0; k < d; k++) {
      out[r * d + k] = rand() * 2 - 1;
      norm += out[r * d + k]! ** 2;
    }
    for (let k = 0; k < d; k++) out[r * d + k]! /= Math.sqrt(norm);
  }
  return out;
}

function nearIdentity(rand: () => number, spread: number): Float32Array {
  const w = new Float32Array(d * d);
  for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) w[a * d + b] = (a === b ? 1 : 0) + spread * (rand() * 2 - 1);
  return w;
}

describe('contrastive training kernel (ONNX graph with hand-derived gradients)', () => {
  // Five images, three captions; images 0–2 share caption 0 (multi-positive), image 4 has two captions.
  const n = 5;
  const m = 3;
  const positives = Float32Array.from([1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]);
  const rand = seededRandom(7);
  const input: ReferenceInput & { images: Float32Array; texts: Float32Array; positives: Float32Array } = {
    images: unitRows(n, rand),
    texts: unitRows(m, rand),
    positives,
    n,
    m,
    d,
  };
  const imageW = nearIdentity(rand, 0.3);
  const textW = nearIdentity(rand, 0.3);
  const logScale = 1.7;
  const lambda = 0.05;

  it('computes the same loss, and the same two directions, as an independent float64 reference', async () => {
    const r = await kernel.step(input, { imageW, textW, logScale, lambda });
    const expected = referenceTerms(input, imageW, textW, logScale, lambda);
    expect(Math.abs(r.loss - expected.loss)).toBeLessThan(1e-5);
    expect(Math.abs(r.imageToText - expected.imageToText)).toBeLessThan(1e-5);
    expect(Math.abs(r.textToImage - expected.textToImage)).toBeLessThan(1e-5);
    // The penalty is what the total holds beyond the mean of the two directions: a graph that dropped it or
    // weighed it wrongly would still match each direction.
    expect(Math.abs(r.loss - 0.5 * (r.imageToText + r.textToImage) - lambda * expected.penalty)).toBeLessThan(1e-5);
    expect(lambda * expected.penalty).toBeGreaterThan(1e-2);
  });

  /** Central differences of the float64 reference: every weight of both adapters, then the temperature. */
  function numericGradient(h: number): number[] {
    const out: number[] = [];
    for (const which of ['image', 'text'] as const) {
      const w = which === 'image' ? imageW : textW;
      for (let i = 0; i < d * d; i++) {
        const wp = Float64Array.from(w);
        const wm = Float64Array.from(w);
        wp[i]! += h;
        wm[i]! -= h;
        const f = (x: Float64Array) => (which === 'image' ? referenceLoss(input, x, textW, logScale, lambda) : referenceLoss(input, imageW, x, logScale, lambda));
        out.push((f(wp) - f(wm)) / (2 * h));
      }
    }
    out.push((referenceLoss(input, imageW, textW, logScale + h, lambda) - referenceLoss(input, imageW, textW, logScale - h, lambda)) / (2 * h));
    return out;
  }

  /**
   * Elementwise: |analytic − numeric| ≤ 1e-4·|numeric| + 5e-7·max|numeric|. Measured (h = 1e-4…1e-6, same
   * numbers): the float32 graph is off by at most 1.6e-7 absolute with max|g| ≈ 2.47, i.e. ~6e-8 of the largest
   * element (float32 rounding), and by at most 3.6e-5 relative on the smallest (|g| ≈ 3e-4). The floor
   * 5e-7·max|g| ≈ 1.2e-6 is ~8× the measured worst, so a 1% error in even the smallest element fails.
   */
  function gradientMismatches(analytic: ArrayLike<number>, numeric: number[]): string[] {
    const floor = 5e-7 * Math.max(...numeric.map(Math.abs));
    const bad: string[] = [];
    numeric.forEach((x, i) => {
      const err = Math.abs(analytic[i]! - x);
      if (!(err <= 1e-4 * Math.abs(x) + floor)) bad.push(`#${i}: analytic ${analytic[i]} vs numeric ${x}`);
    });
    return bad;
  }

  it('has gradients equal, element by element, to central finite differences of the float64 reference', async () => {
    const r = await kernel.step(input, { imageW, textW, logScale, lambda });
    const analytic = [...r.gradImageW, ...r.gradTextW, r.gradLogScale];
    expect(analytic).toHaveLength(2 * d * d + 1);
    const numeric = numericGradient(1e-6);
    expect(gradientMismatches(analytic, numeric)).toEqual([]);

    // The check can fail: the same comparison rejects gradients with the kinds of mistakes a hand derivation makes.
    const smallest = numeric.reduce((best, x, i) => (Math.abs(x) < Math.abs(numeric[best]!) ? i : best), 0);
    const largest = numeric.reduce((best, x, i) => (Math.abs(x) > Math.abs(numeric[best]!) ? i : best), 0);
    const scaled = (i: number, factor: number) => analytic.map((g, k) => (k === i ? g * factor : g));
    expect(gradientMismatches(scaled(smallest, 1.01), numeric)).toHaveLength(1);
    expect(gradientMismatches(scaled(largest, 1.001), numeric)).toHaveLength(1);
    expect(gradientMismatches(scaled(smallest, -1), numeric)).toHaveLength(1);
    // Missing the penalty's 2·lambda·(W − I): every off-diagonal weight moved by up to 2·0.05·0.3.
    const noPenalty = analytic.map((g, k) => {
      if (k >= 2 * d * d) return g;
      const w = k < d * d ? imageW : textW;
      const i = k % (d * d);
      return g - 2 * lambda * (w[i]! - (Math.floor(i / d) === i % d ? 1 : 0));
    });
    expect(gradientMismatches(noPenalty, numeric).length).toBeGreaterThan(d * d);
    // Temperature gradient with its sign flipped.
    expect(gradientMismatches(scaled(2 * d * d, -1), numeric)).toHaveLength(1);
  });

  it('a gradient step lowers the loss', async () => {
    const r = await kernel.step(input, { imageW, textW, logScale, lambda });
    const lr = 0.05;
    const wi = imageW.map((w, i) => w - lr * r.gradImageW[i]!);
    const wt = textW.map((w, i) => w - lr * r.gradTextW[i]!);
    const after = await kernel.step(input, { imageW: wi, textW: wt, logScale: logScale - lr * r.gradLogScale, lambda });
    expect(after.loss).toBeLessThan(r.loss);
  });

  it('refuses a batch whose shapes do not match', async () => {
    await expect(kernel.step({ ...input, n: 4 }, { imageW, textW, logScale, lambda })).rejects.toThrow(/shapes/);
  });
});

describe('multi-positive targets (many photos share one caption)', () => {
  it('a perfect model reaches the floor with multi-positive targets; naive CLIP batches add ln 4 per shared caption', async () => {
    // Three captions, four photos each, every photo exactly on its caption: retrieval is perfect.
    const rand = seededRandom(11);
    const captions = unitRows(3, rand);
    const n = 12;
    const images = new Float32Array(n * d);
    for (let i = 0; i < n; i++) images.set(captions.subarray((i % 3) * d, (i % 3 + 1) * d), i * d);
    const eye = nearIdentity(rand, 0);
    const params = { imageW: eye, textW: eye, logScale: Math.log(100), lambda: 0 };

    const multi = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) multi[i * 3 + (i % 3)] = 1;
    const good = await kernel.step({ images, texts: captions, positives: multi, n, m: 3 }, params);

    // Naive CLIP batch: caption k is a separate column for pair k, duplicates count as negatives.
    const texts = new Float32Array(n * d);
    for (let i = 0; i < n; i++) texts.set(captions.subarray((i % 3) * d, (i % 3 + 1) * d), i * d);
    const onehot = new Float32Array(n * n);
    for (let i = 0; i < n; i++) onehot[i * n + i] = 1;
    const naive = await kernel.step({ images, texts, positives: onehot, n, m: n }, params);

    // Multi-positive: image→text is ~0, text→image is the entropy of its targets (4 equally right photos),
    // so the loss reads as distance from perfect and validation loss is comparable across batch makeups.
    expect(good.imageToText).toBeLessThan(0.01);
    expect(Math.abs(good.textToImage - Math.log(4))).toBeLessThan(0.01);
    // Naive: each photo must pick "its" copy among 4 identical captions, and each copy "its" photo among 4
    // equally right ones — impossible, so both directions sit at ln 4 however good the model is.
    expect(naive.imageToText).toBeGreaterThan(0.99 * Math.log(4));
    expect(naive.textToImage).toBeGreaterThan(0.99 * Math.log(4));
    expect(naive.loss - good.loss).toBeGreaterThan(0.45 * Math.log(4));
  });
});
