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
    const g = withLora(readGraph(trainingGraph(tensors, shape, { logitScale: 10, float: 'double' })), 2, (name, [inDim, outDim]) => ({
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
