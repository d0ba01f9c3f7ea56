/**
 * Tuning the text tower's last blocks (issue 17): the head rebuilt from a real tower's initializers against
 * the tower itself (both layouts, and Hugging Face's naming with anonymous and transposed matrices); the
 * whole training graph's gradient against float64 central differences; a synthetic model in which a linear
 * map of the pooled text embedding cannot tell two caption sets apart but a tuned block can; the tuned tower
 * written back, loaded by clipdex, and equal to what training saw; and cancelled writes that leave nothing.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRows } from '../src/adapter/adapter-weights.js';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { readGraph, writeGraph, type IrGraph } from '../src/train/graph-grad/onnx-ir.js';
import { type HeadShape, LOGIT_SCALE, loraB, trainingGraph, withLora } from '../src/train/text-tower/head-graph.js';
import { cacheResiduals } from '../src/train/text-tower/residual-cache.js';
import { headTensorNames, isMatrix, readTextTower, residualEntering } from '../src/train/text-tower/tower-source.js';
import { headShape, readHeadTensors, runHead, type TextBlockPair, tuneTextBlocks } from '../src/train/text-tower/tune-text-blocks.js';
import { trainAdapters } from '../src/train/trainer.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { checkGradients, randomArray } from './helpers/graph-grad-check.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-tblocks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const CAPTIONS = ['a photo of a dog', 'red car', 'the quick brown fox jumps over the lazy dog near the river bank', 'x', 'two cats sleeping on a sofa'];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

/** Rewrites a clipdex-built HF tower with the names a Hugging Face export uses: anonymous matrices, q_proj stored [out, in] behind a Transpose. */
function renameAsHfExport(g: IrGraph): IrGraph {
  const rename = new Map<string, string>();
  let anon = 1000;
  const out: IrGraph = { ...g, initializers: new Map(), nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs] })) };
  const transposed: { name: string; value: string }[] = [];
  for (const [name, t] of g.initializers) {
    let to = name.replace(/^text\.layers\./, 'text_model.encoder.layers.').replace(/^text\.final_layer_norm\./, 'text_model.final_layer_norm.');
    if (isMatrix(name)) to = `onnx::MatMul_${anon++}`;
    if (name.endsWith('.self_attn.q_proj.weight')) {
      // Stored as PyTorch keeps it ([out, in]) and transposed in the graph.
      to = to.replace('onnx::MatMul_', 'onnx::Transposed_');
      const [rows, cols] = t.dims as [number, number];
      const data = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) data[c * rows + r] = (t.data as Float32Array)[r * cols + c]!;
      out.initializers.set(to, { ...t, name: to, dims: [cols, rows], data });
      transposed.push({ name: to, value: `${to}.t` });
      rename.set(name, `${to}.t`);
      continue;
    }
    rename.set(name, to);
    out.initializers.set(to, { ...t, name: to });
  }
  for (const n of out.nodes) n.inputs = n.inputs.map((v) => rename.get(v) ?? v);
  out.nodes = [...transposed.map((t) => ({ opType: 'Transpose', inputs: [t.name], outputs: [t.value], attrs: { perm: [1, 0] } })), ...out.nodes];
  return out;
}

describe('the head rebuilt from the tower’s initializers', () => {
  const dirs: Record<string, string> = {};
  beforeAll(async () => {
    for (const layout of ['hf', 'openclip'] as const) dirs[layout] = (await buildTinyModel({ out: join(tmp, `tiny-${layout}`), layout, seed: 7 })).dir;
    // The same weights under Hugging Face's export names.
    const hfNamed = join(tmp, 'tiny-hf-named');
    await buildTinyModel({ out: hfNamed, layout: 'hf', seed: 7 });
    const file = join(hfNamed, 'onnx', 'text_model.onnx');
    writeFileSync(file, writeGraph(renameAsHfExport(readGraph(readFileSync(file)))));
    dirs['hf-named'] = hfNamed;
  }, 120_000);

  for (const variant of ['hf', 'openclip', 'hf-named'] as const) {
    it(`${variant}: applied to the cached residual it gives the tower's own output, and clipdex's encoder agrees`, async () => {
      const tower = await readTextTower(dirs[variant]!);
      expect(tower.naming).toBe(variant === 'hf-named' ? 'hf' : 'clipdex');
      expect([tower.layers, tower.width, tower.heads, tower.embedDim]).toEqual([2, 128, 4, 64]);
      const tokenizer = await loadTextTokenizer(tower.spec);
      const rows = (await tokenizer.tokenize(CAPTIONS, tower.contextLength)).map((r) => r.ids);
      const model = await ClipModel.load(await readModelDir(dirs[variant]!), { threads: 1 });
      const encoded = await model.embedTexts([...CAPTIONS]);
      await model.release();
      for (const k of [1, 2]) {
        const shape = headShape(tower, k);
        const cache = await cacheResiduals(tower, shape.first, rows, residualEntering(tower, shape.first), { padId: tokenizer.padId, threads: 1 });
        // Each caption keeps only its positions up to the end token.
        expect(cache.lengths).toEqual(rows.map((r) => r.length));
        const head = await runHead(readHeadTensors(tower, shape.first), shape, cache, CAPTIONS.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
        let worst = 0;
        let peak = 0;
        head.forEach((h, c) => {
          worst = Math.max(worst, maxAbsDiff(h, cache.towerEmbeddings[c]!));
          peak = Math.max(peak, ...cache.towerEmbeddings[c]!.map(Math.abs));
          // The second route: clipdex's text encoder on the model folder, normalised.
          worst = Math.max(worst, maxAbsDiff(unit(h), encoded[c]!));
        });
        console.log(`${variant}, k=${k}: max |head − tower| ${worst.toExponential(2)} (outputs up to ${peak.toFixed(3)})`);
        expect(peak).toBeGreaterThan(0.05);
        expect(worst).toBeLessThan(1e-5);
      }
    }, 120_000);
  }

  it('the openclip layout runs one caption at a time at the full context; the hf layout at each batch’s longest caption', async () => {
    const short = ['a dog', 'a cat', 'a red car', 'two dogs'];
    for (const layout of ['hf', 'openclip'] as const) {
      const tower = await readTextTower(dirs[layout]!);
      const tokenizer = await loadTextTokenizer(tower.spec);
      const rows = (await tokenizer.tokenize(short, tower.contextLength)).map((r) => r.ids);
      const longest = Math.max(...rows.map((r) => r.length));
      expect(longest).toBeLessThan(20);
      const cache = await cacheResiduals(tower, 1, rows, residualEntering(tower, 1), { padId: tokenizer.padId, threads: 1 });
      expect(cache.positionsRun).toBe(layout === 'hf' ? 4 * longest : 4 * 77);
      // What is kept is each caption's own positions, whatever the run was padded to.
      expect(cache.residuals.map((r) => r.length / 128)).toEqual(rows.map((r) => r.length));
    }
  }, 60_000);
});

describe('the training graph’s whole gradient against float64 central differences', () => {
  const shape: HeadShape = { width: 8, heads: 2, embedDim: 6, contextLength: 7, first: 1, layers: 3 };
  let seed = 300;
  const tensors = new Map(
    headTensorNames(shape.first, shape.layers).map((name) => {
      const isLn = /norm/.test(name);
      const dims = name === 'text_projection.weight' ? [8, 6] : name.includes('fc1.weight') ? [8, 32] : name.includes('fc2.weight') ? [32, 8] : isMatrix(name) ? [8, 8] : [name.includes('fc1.bias') ? 32 : 8];
      const n = dims.reduce((a, b) => a * b, 1);
      // Random everywhere, LayerNorm scales around 1: the CLIP init (unit scales, zero biases) is a special point.
      const data = Float32Array.from(randomArray(n, seed++, isLn && name.endsWith('weight') ? 0.3 : dims.length === 2 ? dims[0]! ** -0.5 : 0.1, isLn && name.endsWith('weight') ? 1 : 0));
      return [name, data] as const;
    }),
  );
  const m = 3;
  const n = 4;
  const T = 5;
  // Caption ends at positions 4, 2, 3; images 0 and 1 share caption 0; image 3 has captions 1 and 2.
  const ends = [4, 2, 3];
  const poolIndex = BigInt64Array.from({ length: m * 8 }, (_, i) => BigInt(ends[Math.floor(i / 8)]!));
  const feeds = {
    residual: { data: randomArray(m * T * 8, 41), dims: [m, T, 8] },
    pool_index: { data: poolIndex, dims: [m, 1, 8] },
    images: { data: randomArray(n * 6, 42), dims: [n, 6] },
    positives: { data: Float64Array.from([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]), dims: [n, m] },
    lambda: { data: Float64Array.of(0.3), dims: [] },
  };

  it('full weights: every tensor of two blocks, the final LayerNorm, the projection and the temperature', async () => {
    // The penalty pulls towards the starting weights, so at them its gradient is 0: start elsewhere.
    const bytes = trainingGraph(tensors, shape, { logitScale: 10, float: 'double' });
    const g = readGraph(bytes);
    for (const [name, t] of g.initializers) if (name.endsWith('.pretrained')) g.initializers.set(name, { ...t, data: (t.data as Float64Array).map((v, i) => v + 0.05 * Math.sin(i + 1)) });
    const wrt = [...headTensorNames(shape.first, shape.layers), LOGIT_SCALE, 'residual'];
    const r = await checkGradients(g, { output: 'loss', wrt, feeds, sample: 12 });
    console.log(`training graph: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
    // Positions after a caption's end token cannot reach the loss (causal mask, pooling at the end token).
    const gr = r.analytic.get('residual')!;
    expect(Math.max(...gr.subarray((1 * T + 3) * 8, (2 * T) * 8).map(Math.abs))).toBe(0);
    expect(Math.max(...gr.subarray((1 * T + 2) * 8, (1 * T + 3) * 8).map(Math.abs))).toBeGreaterThan(1e-4);
  }, 120_000);

  it('LoRA: A and B of every matrix, with the full LayerNorms and biases', async () => {
    const g = withLora(readGraph(trainingGraph(tensors, shape, { logitScale: 10, float: 'double' })), 2, (_name, [inDim, outDim]) => ({
      a: Float64Array.from(randomArray(inDim! * 2, seed++, 0.5)),
      // Not 0 as in training: at B = 0 the gradient of A is exactly 0 and the check would prove nothing about it.
      b: Float64Array.from(randomArray(2 * outDim!, seed++, 0.2)),
    }));
    const names = headTensorNames(shape.first, shape.layers);
    const wrt = [...names.flatMap((n) => (isMatrix(n) ? [`${n}.lora_a`, loraB(n)] : [n])), LOGIT_SCALE];
    const r = await checkGradients(g, { output: 'loss', wrt, feeds, sample: 12 });
    console.log(`LoRA training graph: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
  }, 120_000);
});

/**
 * A tiny model in which the last 16 of the 128 residual dimensions are "dead": no token but two ('x' and
 * 'z', equal elsewhere) writes there (x: +δ, z: −δ, δ of zero mean, so every LayerNorm's mean and variance
 * stay equal), no
 * block reads them (zero rows of q, k, v, fc1) or writes them (zero columns of out, fc2). So "red x" and
 * "red z" have the same pooled embedding to the last rounding: no map of the pooled embedding can tell them
 * apart. The residual stream does carry the difference (at x's position), so a tuned block can learn to read it.
 */
async function blindModel(dir: string): Promise<{ dir: string; xId: number; zId: number }> {
  await buildTinyModel({ out: dir, layout: 'hf', seed: 5 });
  const file = join(dir, 'onnx', 'text_model.onnx');
  const g = readGraph(readFileSync(file));
  const tokenizer = await loadTextTokenizer(await readModelDir(dir));
  const [xIds, zIds] = (await tokenizer.tokenize(['x', 'z'], 77)).map((t) => t.ids);
  const xId = xIds![1]!;
  const zId = zIds![1]!;
  const D = 128;
  const dead = (j: number) => j >= D - 16;
  const table = g.initializers.get('text.token_embedding.weight')!.data as Float32Array;
  const rand = seededRandom(9);
  const delta = Array.from({ length: 16 }, () => (rand() < 0.5 ? -0.15 : 0.15));
  const mean = delta.reduce((a, b) => a + b, 0) / 16;
  // z is x in the live dimensions: the two tokens differ only where nothing reads.
  table.copyWithin(zId * D, xId * D, xId * D + D - 16);
  for (let row = 0; row < table.length / D; row++) {
    for (let j = D - 16; j < D; j++) table[row * D + j] = row === xId ? delta[j - D + 16]! - mean : row === zId ? -(delta[j - D + 16]! - mean) : 0;
  }
  const positions = g.initializers.get('text.position_embedding.weight')!.data as Float32Array;
  for (let i = 0; i < positions.length; i++) if (dead(i % D)) positions[i] = 0;
  for (const [name, t] of g.initializers) {
    const data = t.data as Float32Array;
    if (/\.(q_proj|k_proj|v_proj|fc1)\.weight$/.test(name) || name === 'text_projection.weight') {
      const cols = t.dims[1]!;
      for (let r = D - 16; r < D; r++) data.fill(0, r * cols, (r + 1) * cols);
    } else if (/\.(out_proj|fc2)\.(weight|bias)$/.test(name)) {
      for (let i = 0; i < data.length; i++) if (dead(i % D)) data[i] = 0;
    }
  }
  writeFileSync(file, writeGraph(g));
  return { dir, xId, zId };
}

const WORDS = ['red', 'blue', 'green', 'pink', 'gold', 'teal', 'plum', 'lime'];

/** Photos of caption (word, mark): a word direction plus a mark direction plus noise, 6 per caption (4 train, 2 val). */
function blindData() {
  const E = 64;
  const rand = seededRandom(21);
  const g = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const vec = () => unit(Float32Array.from({ length: E }, g));
  const wordDir = WORDS.map(vec);
  const markDir = [vec(), vec()];
  const captions: string[] = [];
  const images: number[] = [];
  const pairs: TextBlockPair[] = [];
  WORDS.forEach((w, wi) => {
    ['x', 'z'].forEach((mark, mi) => {
      const c = captions.push(`${w} ${mark}`) - 1;
      for (let p = 0; p < 6; p++) {
        const row = images.length / E;
        images.push(...unit(Float32Array.from({ length: E }, (_, k) => wordDir[wi]![k]! + markDir[mi]![k]! + 0.25 * g())));
        pairs.push({ caption: c, image: row, split: p < 4 ? 'train' : 'val' });
      }
    });
  });
  return { captions, images: Float32Array.from(images), pairs, E };
}

/**
 * Share of validation photos that score their own caption above its twin (same word, other mark) by more
 * than 1e-4 — a tie is a miss — and the mean of (own − twin).
 */
function twinAccuracy(data: ReturnType<typeof blindData>, texts: Float32Array[], images: Float32Array) {
  const E = data.E;
  let hits = 0;
  let margin = 0;
  const val = data.pairs.filter((p) => p.split === 'val');
  for (const p of val) {
    const twin = p.caption ^ 1;
    const img = images.subarray(p.image * E, (p.image + 1) * E);
    const dot = (t: Float32Array) => t.reduce((s, v, k) => s + v * img[k]!, 0);
    const d = dot(texts[p.caption]!) - dot(texts[twin]!);
    margin += d / val.length;
    if (d > 1e-4) hits++;
  }
  return { accuracy: hits / val.length, margin };
}

describe('a caption difference no linear head can see, but a tuned block can', () => {
  let blind: { dir: string; xId: number; zId: number };
  const data = blindData();
  beforeAll(async () => {
    blind = await blindModel(join(tmp, 'blind'));
  }, 120_000);

  it('the twins have the same base embedding, and the adapter trainer cannot separate them', async () => {
    const model = await ClipModel.load(await readModelDir(blind.dir), { threads: 1 });
    const texts = await model.embedTexts([...data.captions]);
    await model.release();
    for (let c = 0; c < texts.length; c += 2) expect(maxAbsDiff(texts[c]!, texts[c + 1]!)).toBeLessThan(1e-6);
    // The words do differ: the base model is not blind to everything.
    expect(maxAbsDiff(texts[0]!, texts[2]!)).toBeGreaterThan(0.05);
    const E = data.E;
    const flat = new Float32Array(texts.length * E);
    texts.forEach((t, i) => flat.set(t, i * E));
    const imageRows = data.images.length / E;
    const split = new Array<'train' | 'val'>(imageRows);
    for (const p of data.pairs) split[p.image] = p.split;
    const out = await trainAdapters({ dim: E, images: data.images, texts: flat, pairs: data.pairs.map((p) => [p.image, p.caption] as const), imageSplit: split, logitScale: 100 }, { seed: 1, threads: 1 });
    const adaptedTexts = projectRows(flat, texts.length, out.weights.text, E);
    const adaptedImages = projectRows(data.images, imageRows, out.weights.image, E);
    const r = twinAccuracy(data, Array.from({ length: texts.length }, (_, i) => unit(adaptedTexts.slice(i * E, (i + 1) * E))), adaptedImages);
    console.log(`adapter: twin accuracy ${r.accuracy}, mean margin ${r.margin.toExponential(2)}, ${out.history.length} epochs, blend ${out.blend}`);
    // Measured: 0 of 32 validation photos, mean margin 1.6e-10 (rounding): the adapter cannot see the mark.
    expect(r.accuracy).toBe(0);
    expect(Math.abs(r.margin)).toBeLessThan(1e-5);
  }, 120_000);

  for (const lora of [null, 4] as const) {
    it(`tuning the last block${lora ? ` (LoRA rank ${lora})` : ''} separates them; the loss goes down and the temperature moves`, async () => {
      const out = await tuneTextBlocks({ modelDir: blind.dir, captions: data.captions, imageEmbeddings: data.images, pairs: data.pairs, k: 1, lora, learningRate: lora ? 3e-3 : 1e-3, batchSize: 16, epochs: 60, patience: 10, seed: 1, threads: 1 });
      const r = twinAccuracy(data, out.captionEmbeddings, data.images);
      const first = out.history[0]!;
      const best = out.history[out.bestEpoch - 1]!;
      console.log(`blocks${lora ? ` LoRA ${lora}` : ''}: twin accuracy ${r.accuracy}, mean margin ${r.margin.toExponential(2)}, val loss ${first.valLoss!.toFixed(3)} → ${best.valLoss!.toFixed(3)} at epoch ${out.bestEpoch}/${out.history.length}, logit scale ${first.logitScale.toFixed(2)} → ${best.logitScale.toFixed(2)}, ${out.parameters} parameters, ${(out.timings.trainMs / 1000).toFixed(1)} s`);
      expect(out.headError).toBeLessThan(1e-5);
      // Measured (32 validation photos): full weights 1.0 of twins told apart, mean margin 0.28; LoRA rank 4
      // 0.94, margin 0.20 — against 0 and 1.6e-10 for the adapter above.
      expect(r.accuracy).toBeGreaterThan(0.85);
      expect(r.margin).toBeGreaterThan(0.1);
      expect(best.valLoss!).toBeLessThan(first.valLoss! * 0.8);
      expect(best.trainLoss).toBeLessThan(first.trainLoss * 0.8);
      expect(Math.abs(Math.log(best.logitScale / 14.2857))).toBeGreaterThan(0.05);
    }, 300_000);
  }
});

describe('the tuned tower, written back', () => {
  let dir: string;
  const captions = ['a dog on a beach', 'a red car', 'two cats', 'a bowl of fruit'];
  const E = 64;
  const rand = seededRandom(77);
  const images = Float32Array.from({ length: 12 * E }, () => rand() * 2 - 1);
  const pairs: TextBlockPair[] = Array.from({ length: 12 }, (_, i) => ({ caption: i % 4, image: i, split: i < 8 ? 'train' : 'val' }));
  beforeAll(async () => {
    dir = (await buildTinyModel({ out: join(tmp, 'write'), layout: 'hf', seed: 8 })).dir;
  }, 60_000);

  it('encodes the training captions as the training graph did, and loads in clipdex as a model folder', async () => {
    const out = await tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs, k: 2, learningRate: 3e-3, epochs: 4, patience: 4, seed: 2, threads: 1 });
    // The tuned tensors come back by the graph's own names, and they did move.
    const tower = await readTextTower(dir);
    expect([...out.tensors.keys()].sort()).toEqual(headTensorNames(0, 2).sort());
    const moved = maxAbsDiff(out.tensors.get('text.layers.1.mlp.fc1.weight')!.data, readHeadTensors(tower, 0).get('text.layers.1.mlp.fc1.weight')!);
    expect(moved).toBeGreaterThan(1e-3);
    const encoded = await out.encodeTexts(captions);
    const worst = Math.max(...encoded.map((e, c) => maxAbsDiff(e, out.captionEmbeddings[c]!)));
    const copy = await out.writeModelDir(join(tmp, 'tuned-model'));
    const model = await ClipModel.load(await readModelDir(copy), { threads: 1 });
    const queries = ['a dog', 'something else entirely'];
    const viaClipdex = await model.embedTexts([...captions, ...queries]);
    await model.release();
    const viaTuned = await out.encodeTexts(queries);
    const worstLoaded = Math.max(...captions.map((_, c) => maxAbsDiff(viaClipdex[c]!, out.captionEmbeddings[c]!)), ...queries.map((_, q) => maxAbsDiff(viaClipdex[captions.length + q]!, viaTuned[q]!)));
    console.log(`tuned tower vs training graph: ${worst.toExponential(2)}; loaded as a model folder: ${worstLoaded.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
    expect(worstLoaded).toBeLessThan(1e-5);
    // The base model encodes them differently: the equality above is the tuning's, not the base's.
    const base = await ClipModel.load(await readModelDir(dir), { threads: 1 });
    const before = await base.embedTexts([...captions]);
    await base.release();
    expect(Math.max(...captions.map((_, c) => maxAbsDiff(before[c]!, viaClipdex[c]!)))).toBeGreaterThan(1e-3);
  }, 180_000);

  it('a cancelled write leaves the old file or none, and no temporary file', async () => {
    const out = await tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs, k: 1, epochs: 1, seed: 2, threads: 1 });
    const folder = join(tmp, 'cancel');
    const target = join(folder, 'text_model.onnx');
    const aborted = AbortSignal.abort();
    await expect(out.writeTower(target, aborted)).rejects.toThrow(/cancelled/);
    expect(existsSync(folder) ? readdirSync(folder) : []).toEqual([]);
    writeFileSync(target, 'the old tower');
    await expect(out.writeTower(target, aborted)).rejects.toThrow(/cancelled/);
    expect(readFileSync(target, 'utf8')).toBe('the old tower');
    await expect(out.writeModelDir(join(tmp, 'cancelled-model'), aborted)).rejects.toThrow(/cancelled/);
    expect(readdirSync(tmp).filter((f) => f.startsWith('cancelled-model'))).toEqual([]);
    expect(readdirSync(folder)).toEqual(['text_model.onnx']);
    await out.writeTower(target);
    expect(readFileSync(target).length).toBe(out.towerBytes().length);
  }, 120_000);

  it('a run cancelled between epochs rejects, and bad options are refused by name', async () => {
    const controller = new AbortController();
    await expect(
      tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs, k: 1, epochs: 10, threads: 1, signal: controller.signal, onProgress: (p) => p.phase === 'train' && controller.abort() }),
    ).rejects.toThrow(/cancelled/);
    await expect(tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs, k: 3 })).rejects.toThrow(/k \(text blocks\) must be an integer from 1 to 2/);
    await expect(tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs: [{ caption: 9, image: 0, split: 'train' }] })).rejects.toThrow(/caption 9/);
    await expect(tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs: pairs.map((p) => ({ ...p, caption: 0 })) })).rejects.toThrow(/at least 2 different captions/);
  }, 120_000);
});
