import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import onnxProto from 'onnx-proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../src/inference/onnx-runtime.js';
import { modelKeyFor } from '../src/library/model-key.js';
import { ClipModel } from '../src/model/clip-model.js';
import { presetArchitecture } from '../src/model/clip-architecture.js';
import { LAYOUT_IO } from '../src/model/clip-onnx-graph.js';
import { meanCosine, minCosine, topKOverlap } from '../src/model/embedding-agreement.js';
import { readModelDir } from '../src/model/model-dir.js';
import { GraphBuilder } from '../src/model/onnx-graph.js';
import { QUANT_FORMAT_DEFAULT, QUANT_FORMATS, type QuantFormat, quantizedOps, quantizeGraph, quantizePerColumn } from '../src/model/quantize-graph.js';
import { quantizeModel } from '../src/model/quantize-model.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { runCli } from './helpers/cli.js';
import { AGREEMENT_PHRASES } from './helpers/phrases.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';
import * as ort from 'onnxruntime-node';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-quantize-'));
const fp32Dir = join(tmp, 'tiny');
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
beforeAll(async () => {
  await buildTinyModel({ out: fp32Dir, preset: 'tiny' });
}, 120_000);

/** Seeded uniform numbers in [-1, 1), so a failure reproduces. */
function seeded(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** One MatMul by a constant [K, N] weight, plus a bias (the Add the DynamicQuantizeMatMul rewrite folds in). */
function linearGraph(w: Float32Array, bias: Float32Array, K: number, N: number): Uint8Array {
  const b = new GraphBuilder('linear');
  const x = b.input('x', 'float', ['rows', K]);
  const mm = b.op('MatMul', [x, b.weight('w', w, [K, N])]);
  b.op('Add', [mm, b.weight('bias', bias, [N])], {}, 'y');
  b.output('y', 'float', ['rows', N]);
  return b.toBytes();
}

async function run(graph: Uint8Array, x: Float32Array, rows: number, K: number, level: 'all' | 'disabled' = 'all'): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1, graphOptimizationLevel: level });
  try {
    const out = await session.run({ x: new ort.Tensor('float32', x, [rows, K]) });
    return out.y!.data as Float32Array;
  } finally {
    await session.release();
  }
}

describe('per-column int8 weights', () => {
  it('maps each column\'s largest magnitude to ±qmax and reconstructs every weight within half a step', () => {
    const K = 37;
    const N = 11;
    const w = seeded(K * N, 7).map((v, i) => v * (1 + (i % N))); // columns of different ranges
    w[5 * N + 3] = 0; // a value exactly 0 stays 0
    for (let k = 0; k < K; k++) w[k * N + 10] = 0; // an all-zero column
    const { q, scales } = quantizePerColumn(w, K, N, 127);
    for (let n = 0; n < N - 1; n++) {
      const column = Array.from({ length: K }, (_, k) => q[k * N + n]!);
      expect(Math.max(...column.map(Math.abs))).toBe(127);
      for (let k = 0; k < K; k++) expect(Math.abs(q[k * N + n]! * scales[n]! - w[k * N + n]!)).toBeLessThanOrEqual(scales[n]! / 2 + 1e-7);
    }
    expect(q[5 * N + 3]).toBe(0);
    expect(scales[10]).toBe(1);
    expect(Array.from({ length: K }, (_, k) => q[k * N + 10])).toEqual(new Array(K).fill(0));
  });
});

describe('quantizeGraph on one linear layer, against the arithmetic done here', () => {
  const K = 96;
  const N = 40;
  const rows = 6;
  const w = seeded(K * N, 1);
  const bias = seeded(N, 2);
  const x = seeded(rows * K, 3);
  const graph = linearGraph(w, bias, K, N);
  /** y = x · W + b in float64. */
  const exact = (weights: Float32Array) => {
    const y = new Float64Array(rows * N);
    for (let r = 0; r < rows; r++) for (let n = 0; n < N; n++) {
      let s = bias[n]!;
      for (let k = 0; k < K; k++) s += x[r * K + k]! * weights[k * N + n]!;
      y[r * N + n] = s;
    }
    return y;
  };
  const reference = exact(w);
  const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
    return m;
  };
  const scaleOfY = Math.max(...Array.from(reference, Math.abs));

  it.each(QUANT_FORMATS)('%s: runs in ONNX Runtime, no float32 weight left, output close to x·W + b', async (format) => {
    const result = quantizeGraph(graph, { format });
    expect(result).toMatchObject({ weights: 1, nodes: 1, format });
    expect(result.bytesAfter).toBeLessThan(result.bytesBefore / 3);
    expect(quantizedOps(result.bytes).length).toBeGreaterThan(0);
    const model = onnxProto.onnx.ModelProto.decode(result.bytes);
    expect(model.graph!.initializer!.map((t) => t.name)).not.toContain('w');
    const y = await run(result.bytes, x, rows, K);
    // 7- or 8-bit weights and (for the dynamic formulations) 8-bit activations: a few percent of |y| at most.
    expect(maxAbsDiff(y, reference) / scaleOfY).toBeLessThan(format === 'weight-only' || format === 'matmul-nbits' ? 0.01 : 0.03);
  });

  // Optimisations off: ORT 1.30's 'all' level turns DequantizeLinear → MatMul into its own int8 kernel (activations
  // quantized too, measured ~1e-2 off), which would hide what the graph itself says.
  it('weight-only, run as written, equals x · dequantized(W) + b to float32 rounding: the graph holds exactly the int8 weights and scales', async () => {
    const { q, scales } = quantizePerColumn(w, K, N, 127);
    const dequantized = Float32Array.from(q, (v, i) => v * scales[i % N]!);
    const y = await run(quantizeGraph(graph, { format: 'weight-only' }).bytes, x, rows, K, 'disabled');
    expect(maxAbsDiff(y, exact(dequantized))).toBeLessThan(1e-4);
  });

  it('refuses a graph quantized already, and leaves a graph with no constant weight as it was', () => {
    const once = quantizeGraph(graph).bytes;
    expect(() => quantizeGraph(once)).toThrow(/quantized already \(it has DynamicQuantizeMatMul\)/);
    const b = new GraphBuilder('act');
    const a = b.input('a', 'float', [4, 4]);
    b.op('MatMul', [a, a], {}, 'y');
    b.output('y', 'float', [4, 4]);
    expect(quantizeGraph(b.toBytes())).toMatchObject({ weights: 0, nodes: 0 });
  });
});

/** How many nodes of each op type a graph holds. */
function opCounts(bytes: Uint8Array): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of onnxProto.onnx.ModelProto.decode(bytes).graph!.node!) counts[n.opType!] = (counts[n.opType!] ?? 0) + 1;
  return counts;
}

async function runFeeds(graph: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(graph, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    return (await session.run(feeds))[session.outputNames[0]!]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** The smallest cosine between matching rows of two [rows, n] outputs. */
function minRowCosine(a: Float32Array, b: Float32Array, rows: number): number {
  const n = a.length / rows;
  let min = 1;
  for (let r = 0; r < rows; r++) {
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = r * n; i < (r + 1) * n; i++) {
      ab += a[i]! * b[i]!;
      aa += a[i]! ** 2;
      bb += b[i]! ** 2;
    }
    min = Math.min(min, ab / Math.sqrt(aa * bb));
  }
  return min;
}

function maxAbs(a: ArrayLike<number>, b?: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - (b ? b[i]! : 0)));
  return m;
}

describe('linear layers on one activation (attention\'s Q, K, V) fused into one quantized MatMul', () => {
  // Fused, the int8 weights and column scales are the unfused ones side by side, and the activation is quantized
  // once over the same tensor the three quantized alone: the integer products are the same, and so is each float
  // output (measured: identical, max |fused − unfused| = 0 on every case below). 1e-6 · max|y| leaves room for a
  // kernel that orders its float epilogue differently for a wider N.
  const QKV_FORMATS: QuantFormat[] = ['dynamic-quantize-matmul', 'matmul-integer'];
  const quantizedMatMuls = (c: Record<string, number>, format: QuantFormat) => (format === 'matmul-integer' ? c.MatMulInteger ?? 0 : c.DynamicQuantizeMatMul ?? 0);

  it.each([
    ['hf', 'dynamic-quantize-matmul'],
    ['openclip', 'dynamic-quantize-matmul'],
    ['hf', 'matmul-integer'],
  ] as const)('%s layout, %s: one quantized MatMul + Split per block where there were three; both towers embed as unfused', async (layout, format) => {
    const dir = layout === 'hf' ? fp32Dir : join(tmp, `tiny-${layout}`);
    if (!existsSync(dir)) await buildTinyModel({ out: dir, preset: 'tiny', layout });
    const arch = presetArchitecture('tiny', 1000);
    for (const tower of ['vision', 'text'] as const) {
      const source = new Uint8Array(readFileSync(join(dir, LAYOUT_IO[layout][tower].file)));
      const unfused = quantizeGraph(source, { format, fuseSharedInput: false });
      const fused = quantizeGraph(source, { format });
      const blocks = arch[tower].layers;
      expect(unfused.fused).toBe(0);
      expect(fused.fused).toBe(blocks);
      // The same weights, quantized the same: only the way they are laid out changed.
      expect(fused).toMatchObject({ weights: unfused.weights, nodes: unfused.nodes, bytesBefore: unfused.bytesBefore, bytesAfter: unfused.bytesAfter });
      const [a, b] = [opCounts(unfused.bytes), opCounts(fused.bytes)];
      expect(quantizedMatMuls(a, format) - quantizedMatMuls(b, format)).toBe(2 * blocks);
      expect((b.Split ?? 0) - (a.Split ?? 0)).toBe(blocks);
      if (format === 'matmul-integer') expect(a.DynamicQuantizeLinear! - b.DynamicQuantizeLinear!).toBe(2 * blocks);

      const batch = layout === 'hf' ? 2 : 1;
      const input = LAYOUT_IO[layout][tower].input;
      const L = arch.text.contextLength;
      const feeds =
        tower === 'vision'
          ? { [input]: new ort.Tensor('float32', seeded(batch * 3 * arch.imageSize ** 2, 11), [batch, 3, arch.imageSize, arch.imageSize]) }
          : layout === 'hf'
            ? { [input]: new ort.Tensor('int64', BigInt64Array.from({ length: batch * 9 }, (_, i) => BigInt(1 + ((i * 37) % 300))), [batch, 9]) }
            : { [input]: new ort.Tensor('int32', Int32Array.from({ length: L }, (_, i) => (i < 9 ? 1 + ((i * 37) % 300) : 0)), [1, L]) };
      const [yUnfused, yFused, yFp32] = await Promise.all([runFeeds(unfused.bytes, feeds), runFeeds(fused.bytes, feeds), runFeeds(source, feeds)]);
      expect(maxAbs(yFused, yUnfused)).toBeLessThanOrEqual(1e-6 * maxAbs(yUnfused));
      // And still the int8 tower, not another function: near fp32 as before.
      expect(minRowCosine(yFused, yFp32, batch)).toBeGreaterThan(0.995);
    }
  }, 120_000);

  it.each(QKV_FORMATS)('%s: an exporter\'s graph (anonymous weights, W behind a Transpose, bias first, a Gemm) fuses too', async (format) => {
    // What torch.onnx writes for three nn.Linear on one input, in its several shapes, and an out projection after.
    const D = 48;
    const rows = 5;
    const b = new GraphBuilder('export');
    const x = b.input('x', 'float', ['rows', D]);
    const wq = seeded(D * D, 21);
    const q = b.op('Add', [b.weight('q_proj.bias', seeded(D, 22), [D]), b.op('MatMul', [x, b.op('Transpose', [b.weight('onnx::Transpose_7', wq, [D, D])], { perm: [1, 0] })])]);
    const k = b.op('Add', [b.op('MatMul', [x, b.weight('onnx::MatMul_8', seeded(D * D, 23), [D, D])]), b.weight('k_proj.bias', seeded(D, 24), [D])]);
    const v = b.op('Gemm', [x, b.weight('onnx::Gemm_9', seeded(D * D, 25), [D, D]), b.weight('v_proj.bias', seeded(D, 26), [D])], { transB: 1 });
    const mixed = b.op('Add', [b.op('Mul', [q, k]), v]);
    b.op('MatMul', [mixed, b.weight('onnx::MatMul_10', seeded(D * D, 27), [D, D])], {}, 'y');
    b.output('y', 'float', ['rows', D]);
    const source = b.toBytes();
    const unfused = quantizeGraph(source, { format, fuseSharedInput: false });
    const fused = quantizeGraph(source, { format });
    expect(fused).toMatchObject({ weights: 4, nodes: 4, fused: 1 });
    const counts = opCounts(fused.bytes);
    expect(quantizedMatMuls(counts, format)).toBe(2); // Q·K·V fused, and the out projection alone
    expect(counts.Split).toBe(1);
    expect(counts.Transpose).toBeUndefined(); // the exporter's W^T went with its float32 weight
    expect(counts.Gemm).toBeUndefined();
    const initializers = onnxProto.onnx.ModelProto.decode(fused.bytes).graph!.initializer!;
    expect(initializers.filter((t) => t.dataType === 1 && (t.dims ?? []).length === 2)).toEqual([]);
    const xs = seeded(rows * D, 28);
    const feeds = { x: new ort.Tensor('float32', xs, [rows, D]) };
    const [yUnfused, yFused, yFp32] = await Promise.all([runFeeds(unfused.bytes, feeds), runFeeds(fused.bytes, feeds), runFeeds(source, feeds)]);
    expect(maxAbs(yFused, yUnfused)).toBeLessThanOrEqual(1e-6 * maxAbs(yUnfused));
    expect(minRowCosine(yFused, yFp32, rows)).toBeGreaterThan(0.995);
  });

  it('a Gemm alone (transB, bias C) becomes one DynamicQuantizeMatMul with the bias folded in', async () => {
    const D = 24;
    const rows = 3;
    const b = new GraphBuilder('gemm');
    const x = b.input('x', 'float', ['rows', D]);
    b.op('Gemm', [x, b.weight('onnx::Gemm_1', seeded(D * D, 41), [D, D]), b.weight('bias', seeded(D, 42), [D])], { transB: 1 }, 'y');
    b.output('y', 'float', ['rows', D]);
    const source = b.toBytes();
    const q = quantizeGraph(source);
    expect(q).toMatchObject({ weights: 1, nodes: 1, fused: 0 });
    expect(opCounts(q.bytes)).toEqual({ DynamicQuantizeMatMul: 1 });
    const feeds = { x: new ort.Tensor('float32', seeded(rows * D, 43), [rows, D]) };
    expect(minRowCosine(await runFeeds(q.bytes, feeds), await runFeeds(source, feeds), rows)).toBeGreaterThan(0.995);
  });

  it('leaves unfused what it does not recognise: one linear layer alone, or the formulations that do not fuse', () => {
    const D = 16;
    const b = new GraphBuilder('pair');
    const x = b.input('x', 'float', ['rows', D]);
    const p = b.op('MatMul', [x, b.weight('p', seeded(D * D, 31), [D, D])]);
    // alpha ≠ 1: a Gemm the rewrite leaves float32, so its neighbour on x stays alone.
    const s = b.op('Gemm', [x, b.weight('s', seeded(D * D, 32), [D, D])], { alpha: { float: 0.5 } });
    b.op('Add', [p, s], {}, 'y');
    b.output('y', 'float', ['rows', D]);
    expect(quantizeGraph(b.toBytes())).toMatchObject({ weights: 1, nodes: 1, fused: 0 });
    const tiny = new Uint8Array(readFileSync(join(fp32Dir, LAYOUT_IO.hf.vision.file)));
    for (const format of ['matmul-nbits', 'weight-only'] as const) expect(quantizeGraph(tiny, { format }).fused).toBe(0);
  });
});

describe('the tiny model quantized', () => {
  const photos = sharedPath('photos');

  it.each(QUANT_FORMATS)('%s: both towers load and embed in ONNX Runtime', async (format) => {
    const out = join(tmp, `int8-${format}`);
    const q = await quantizeModel(await readModelDir(fp32Dir), { out, format, sourceKey: 'tiny#x', sourceRef: fp32Dir });
    expect(q.towers.map((t) => t.tower)).toEqual(['image', 'text']);
    for (const t of q.towers) expect(t.weights).toBeGreaterThan(0);
    const spec = await readModelDir(out);
    expect(spec.quantization).toMatchObject({ precision: 'int8', formulation: format, sourceKey: 'tiny#x' });
    const model = await ClipModel.load(spec, { providers: ['cpu'], threads: 1 });
    try {
      const [t] = await model.embedTexts(['a photo of a fish']);
      expect(t!.length).toBe(model.dim);
      expect(t!.every(Number.isFinite)).toBe(true);
    } finally {
      await model.release();
    }
  });

  it.skipIf(!photos)(`default formulation agrees with fp32 on the shared photos and 100 phrases ${photos ? '' : NEEDS_SHARED}`, async () => {
    const figures = await agreementWithFp32(fp32Dir, join(tmp, 'int8-default'), photos!);
    console.log(`tiny preset (seeded random weights), ${QUANT_FORMAT_DEFAULT} vs fp32: ${JSON.stringify(figures)}`);
    // Measured here (random weights, BENCHMARKS.md "int8 models"): image mean 0.9998, min 0.9997, text mean 0.9990,
    // top-10 0.925. The bars sit a little under those: the product's bar (mean cosine ≥ 0.995) with room for
    // another CPU's kernels, and the top-10 overlap a margin under what random weights give.
    expect(figures.imageMean).toBeGreaterThan(0.998);
    expect(figures.imageMin).toBeGreaterThan(0.995);
    expect(figures.textMean).toBeGreaterThan(0.995);
    expect(figures.top10).toBeGreaterThan(0.88);
  }, 300_000);

  const realDirs = (process.env.CLIPDEX_REAL_MODEL_DIR ?? '').split(delimiter).filter((d) => d !== '');
  it.skipIf(realDirs.length === 0 || !photos)(
    `a real model (CLIPDEX_REAL_MODEL_DIR) agrees with its int8 copy: mean cosine ≥ 0.995, top-10 overlap ≥ 0.9 ${realDirs.length === 0 ? '(skipped: CLIPDEX_REAL_MODEL_DIR not set)' : photos ? '' : NEEDS_SHARED}`,
    async () => {
      for (const [i, dir] of realDirs.entries()) {
        const figures = await agreementWithFp32(dir, join(tmp, `real-int8-${i}`), photos!);
        console.log(`${dir}, ${QUANT_FORMAT_DEFAULT} vs fp32: ${JSON.stringify(figures)}`);
        expect(figures.imageMean).toBeGreaterThan(0.995);
        expect(figures.textMean).toBeGreaterThan(0.995);
        expect(figures.top10).toBeGreaterThanOrEqual(0.9);
      }
    },
    1_800_000,
  );
});

/** Quantizes `fp32` into `out` and measures the agreement of the two over the shared photos and the 100 phrases. */
async function agreementWithFp32(fp32: string, out: string, photos: string) {
  const files = ['labeled/fishes', 'labeled/tools', 'labeled/renewable', 'labeled/others', 'skimage'].flatMap((sub) =>
    readdirSync(join(photos, sub))
      .filter((f) => /\.(webp|png|jpe?g)$/i.test(f))
      .sort()
      .map((f) => join(photos, sub, f)),
  );
  expect(files.length).toBeGreaterThan(100);
  await quantizeModel(await readModelDir(fp32), { out, sourceKey: 'fp32', sourceRef: fp32, force: true });
  const embed = async (dir: string) => {
    const model = await ClipModel.load(await readModelDir(dir), { providers: ['cpu'], threads: 2 });
    try {
      const images = (await model.embedImages(files)).map((r) => {
        if (!r.ok) throw r.error;
        return r.embedding;
      });
      return { images, texts: await model.embedTexts([...AGREEMENT_PHRASES]) };
    } finally {
      await model.release();
    }
  };
  const a = await embed(fp32);
  const b = await embed(out);
  return {
    imageMean: meanCosine(a.images, b.images),
    imageMin: minCosine(a.images, b.images),
    textMean: meanCosine(a.texts, b.texts),
    top10: topKOverlap(a, b, 10),
  };
}

describe('clipdex models quantize (built bin)', () => {
  const env = () => ({ CLIPDEX_CACHE_DIR: join(tmp, 'cli', 'cache'), CLIPDEX_DATA_DIR: join(tmp, 'cli', 'data'), CLIPDEX_MODEL: undefined });

  it('writes a folder that index and search use, under a key of its own', async () => {
    const out = join(tmp, 'cli-int8');
    const r = await runCli(['--json', 'models', 'quantize', fp32Dir, '--out', out], env());
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout) as { key: string; sourceKey: string; format: string; copied: string[] };
    expect(summary.format).toBe(QUANT_FORMAT_DEFAULT);
    expect(summary.key).not.toBe(summary.sourceKey);
    expect(summary.key).toMatch(/^cli-int8#/);
    expect(summary.copied).toEqual(expect.arrayContaining(['config.json', 'preprocessor_config.json', 'tokenizer_config.json']));
    // Independent of the CLI's own report: the keys as the library computes them.
    const [fp32Key, int8Key] = await Promise.all([modelKeyFor(await readModelDir(fp32Dir)), modelKeyFor(await readModelDir(out))]);
    expect(int8Key).toBe(summary.key);
    expect(fp32Key).toBe(summary.sourceKey);

    const photos = join(tmp, 'photos');
    mkdirSync(photos, { recursive: true });
    const sharp = (await import('sharp')).default;
    for (const [i, colour] of [[255, 0, 0], [0, 255, 0], [0, 0, 255]].entries()) {
      await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: colour[0]!, g: colour[1]!, b: colour[2]! } } })
        .jpeg()
        .toFile(join(photos, `p${i}.jpg`));
    }
    const index = await runCli(['--model', out, 'index', photos, '--no-watch'], env());
    expect(index.code, index.stderr).toBe(0);
    expect(index.stdout).toMatch(/3 encoded/);
    const search = await runCli(['--model', out, '--json', 'search', 'red'], env());
    expect(search.code, search.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(search.stdout))).toContain(summary.key);
  }, 180_000);

  it('refuses an int8 folder, a folder of no known layout, and a non-empty --out', async () => {
    const out = join(tmp, 'cli-int8-b');
    expect((await runCli(['models', 'quantize', fp32Dir, '--out', out], env())).code).toBe(0);
    const again = await runCli(['models', 'quantize', out, '--out', join(tmp, 'twice')], env());
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/is an int8 model already/);
    expect(existsSync(join(tmp, 'twice'))).toBe(false);

    const odd = join(tmp, 'odd');
    mkdirSync(odd, { recursive: true });
    writeFileSync(join(odd, 'model.onnx'), 'x');
    const unknown = await runCli(['models', 'quantize', odd, '--out', join(tmp, 'odd-int8')], env());
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/is not a CLIP model directory/);

    const busy = await runCli(['models', 'quantize', fp32Dir, '--out', out], env());
    expect(busy.code).not.toBe(0);
    expect(busy.stderr).toMatch(/is not empty \(use --force/);
    expect(JSON.parse(readFileSync(join(out, 'clipdex-quantization.json'), 'utf8'))).toMatchObject({ precision: 'int8' });
  }, 120_000);
});

it('opens a quantized tower through the project\'s session code (graph optimisations on)', async () => {
  const out = join(tmp, 'int8-session');
  await quantizeModel(await readModelDir(fp32Dir), { out, sourceKey: 'k', sourceRef: fp32Dir });
  const { session } = await openSession(join(out, 'onnx', 'vision_model.onnx'), { providers: ['cpu'], threads: 1 });
  expect(session.inputNames).toEqual(['pixel_values']);
  await session.release();
});
