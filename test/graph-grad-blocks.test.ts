/**
 * Whole pieces of CLIP through the generated gradients: one text block (pre-LN, causal self-attention with
 * the tower's mask, QuickGELU MLP) and one ViT block, built by clip-onnx-graph's own builders in float64,
 * every weight checked against central differences; then the contrastive head (final LayerNorm, projection,
 * L2 normalisation, scaled cosine, symmetric multi-positive InfoNCE). Last, the generic pass applied to the
 * hand-derived training kernel's own forward graph must reproduce the kernel's hand-written gradients.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { openGraph } from '../src/inference/onnx-runtime.js';
import { type BlockWeights, type ClipArchitecture, type LinearWeights, presetArchitecture, seededWeights } from '../src/model/clip-architecture.js';
import { layerNorm, textGraph, transformerBlockGraph, visionGraph } from '../src/model/clip-onnx-graph.js';
import { GraphBuilder } from '../src/model/onnx-graph.js';
import { contrastiveStepGraph } from '../src/train/contrastive-kernel.js';
import { differentiate } from '../src/train/graph-grad/differentiate.js';
import { readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { asDouble, checkGradients, openDoubleSafe, randomArray } from './helpers/graph-grad-check.js';

const TOL = 1e-6;
const WIDTH = 8;
const HEADS = 2;
const SEQ = 5;
const BATCH = 2;

let seed = 100;
const rand = (n: number, scale: number, offset = 0) => Float32Array.from(randomArray(n, seed++, scale, offset));
const linear = (inDim: number, outDim: number): LinearWeights => ({ w: rand(inDim * outDim, inDim ** -0.5), b: rand(outDim, 0.1), inDim, outDim });
/** Random everywhere, LayerNorm scales included: the seeded CLIP init (unit scales, zero biases) is a special point. */
function randomBlock(): BlockWeights {
  return {
    ln1: { gamma: rand(WIDTH, 0.3, 1), beta: rand(WIDTH, 0.1) },
    q: linear(WIDTH, WIDTH),
    k: linear(WIDTH, WIDTH),
    v: linear(WIDTH, WIDTH),
    out: linear(WIDTH, WIDTH),
    ln2: { gamma: rand(WIDTH, 0.3, 1), beta: rand(WIDTH, 0.1) },
    fc1: linear(WIDTH, 4 * WIDTH),
    fc2: linear(4 * WIDTH, WIDTH),
  };
}

function blockWeightNames(bytes: Uint8Array): string[] {
  return [...readGraph(bytes).initializers.values()].filter((t) => t.name.startsWith('block.') && t.dtype === 'double').map((t) => t.name);
}

describe('gradients of whole CLIP blocks against float64 central differences', () => {
  const x = { data: randomArray(BATCH * SEQ * WIDTH, 7), dims: [BATCH, SEQ, WIDTH] };

  for (const tower of ['text', 'image'] as const) {
    it(`one ${tower} block: every weight and the input`, async () => {
      const bytes = transformerBlockGraph(randomBlock(), { heads: HEADS, width: WIDTH, contextLength: tower === 'text' ? 7 : undefined, float: 'double' });
      const weights = blockWeightNames(bytes);
      // ln1, q, k, v, out, ln2, fc1, fc2: 16 weight tensors.
      expect(weights).toHaveLength(16);
      const r = await checkGradients(bytes, { output: 'y', wrt: [...weights, 'x'], feeds: { x } });
      console.log(`${tower} block: ${r.count} elements, max relative error ${r.maxRelative.toExponential(2)}`, JSON.stringify(Object.fromEntries(Object.entries(r.perName).map(([k, v]) => [k, Number(v.toExponential(1))]))));
      expect(r.count).toBe(weights.reduce((n, w) => n + (readGraph(bytes).initializers.get(w)?.data.length ?? 0), 0) + x.data.length);
      expect(r.maxAbsGradient).toBeGreaterThan(0.1);
      expect(r.maxRelative).toBeLessThan(TOL);
      // Softmax ignores a shift of a row's scores, and the key bias shifts each query's row by q·b: its
      // gradient is exactly zero — a rule that leaked anything through the softmax would show here.
      const keyBias = r.analytic.get('block.self_attn.k_proj.bias') as Float64Array;
      expect(Math.max(...keyBias.map(Math.abs))).toBeLessThan(1e-12);
    });
  }

  it('the text block is causal in the backward pass too: token 0 receives nothing from later tokens', async () => {
    const run = async (contextLength: number | undefined) => {
      const bytes = transformerBlockGraph(randomBlock(), { heads: HEADS, width: WIDTH, contextLength, float: 'double' });
      const grad = differentiate(readGraph(bytes), { upstream: ['y'], wrt: ['x'] });
      const session = await openDoubleSafe(writeGraph(grad.graph));
      // The upstream gradient is non-zero on token 0 of each caption only.
      const seedData = new Float64Array(BATCH * SEQ * WIDTH);
      for (let b = 0; b < BATCH; b++) seedData.set(randomArray(WIDTH, 40 + b), b * SEQ * WIDTH);
      const out = await session.run({ x: new ort.Tensor('float64', x.data, x.dims), [grad.seeds.get('y') as string]: new ort.Tensor('float64', seedData, x.dims) });
      await session.release();
      const gx = out[grad.gradients.get('x') as string]!.data as Float64Array;
      let later = 0;
      for (let b = 0; b < BATCH; b++) for (let t = 1; t < SEQ; t++) for (let k = 0; k < WIDTH; k++) later = Math.max(later, Math.abs(gx[(b * SEQ + t) * WIDTH + k]!));
      return later;
    };
    expect(await run(7)).toBe(0);
    // Without the mask, the same seed does reach later tokens: the zero above is the mask's doing.
    expect(await run(undefined)).toBeGreaterThan(1e-3);
  });

  it('the contrastive head: final LayerNorm, projection, L2 normalise, scaled cosine, symmetric InfoNCE', async () => {
    const m = 4; // captions
    const n = 5; // images
    const D = WIDTH;
    const E = 6;
    const b = new GraphBuilder('head', { float: 'double' });
    const pooled = b.input('pooled', 'double', [m, D]);
    const images = b.input('images', 'double', [n, E]);
    // Multi-positive: images 0 and 1 share caption 0; image 4 has captions 2 and 3.
    const q = b.weight('positives', Float64Array.from([1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]), [n, m]);
    const s = b.weight('logit_scale', Float64Array.of(Math.log(1 / 0.07) / 2), []);
    const normed = layerNorm(b, pooled, { gamma: rand(D, 0.3, 1), beta: rand(D, 0.1) }, 'text.final_layer_norm');
    const proj = b.op('MatMul', [normed, b.weight('text_projection.weight', rand(D * E, D ** -0.5), [D, E])]);
    const unit = (v: string) => b.op('Div', [v, b.op('ReduceL2', [v], { axes: [-1], keepdims: 1 })]);
    const sim = b.op('MatMul', [unit(images), b.op('Transpose', [unit(proj)], { perm: [1, 0] })]);
    const logits = b.op('Mul', [sim, b.op('Exp', [s])]);
    const ce = (axis: number) => {
      const target = b.op('Div', [q, b.op('ReduceSum', [q, b.int64([axis])], { keepdims: 1 })]);
      const picked = b.op('ReduceSum', [b.op('Mul', [target, b.op('LogSoftmax', [logits], { axis })]), b.int64([axis])], { keepdims: 0 });
      return b.op('Neg', [b.op('ReduceMean', [picked], { keepdims: 0 })]);
    };
    b.op('Mul', [b.scalar(0.5), b.op('Add', [ce(1), ce(0)])], {}, 'loss');
    b.output('loss', 'double', []);
    const wrt = ['text.final_layer_norm.weight', 'text.final_layer_norm.bias', 'text_projection.weight', 'logit_scale', 'pooled', 'images'];
    const r = await checkGradients(b.toBytes(), {
      output: 'loss',
      wrt,
      feeds: { pooled: { data: randomArray(m * D, 51, 2), dims: [m, D] }, images: { data: randomArray(n * E, 52), dims: [n, E] } },
    });
    console.log(`contrastive head: ${r.count} elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(TOL);
  });
});

describe('whole towers as textGraph/visionGraph write them (hf layout), widened to float64', () => {
  // Small widths so every sampled element's two extra runs stay cheap; the towers' structure is the real one.
  const arch: ClipArchitecture = {
    ...presetArchitecture('tiny', 40),
    vision: { width: 16, layers: 2, heads: 2 },
    text: { width: 16, layers: 2, heads: 2, contextLength: 77, vocabSize: 40 },
    embedDim: 8,
  };
  const weights = seededWeights(arch, 5);
  const trainable = (bytes: Uint8Array, pattern: RegExp) =>
    [...readGraph(bytes).initializers.values()].filter((t) => pattern.test(t.name) && t.dtype === 'float').map((t) => t.name);

  it('text tower: the last block, final LayerNorm, projection, token table (Gather) and positions (Slice)', async () => {
    const bytes = textGraph(weights, 'hf');
    const wrt = trainable(bytes, /^(text\.layers\.1\.|text\.final_layer_norm|text_projection|text\.token_embedding|text\.position_embedding)/);
    expect(wrt).toHaveLength(16 + 5);
    // Two captions of six tokens; the end token (the largest id, where CLIP pools) at different places, and
    // a repeated id so the token table's gradient must add two rows' contributions.
    const ids = BigInt64Array.from([1, 5, 7, 5, 39, 0, 2, 3, 39, 0, 0, 0], (v) => BigInt(v));
    const r = await checkGradients(asDouble(readGraph(bytes)), { output: 'text_embeds', wrt, feeds: { input_ids: { data: ids, dims: [2, 6] } }, sample: 24 });
    console.log(`text tower: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(TOL);
    // Token rows never looked up, and positions past the six used, get exactly zero.
    const table = r.analytic.get('text.token_embedding.weight') as Float64Array;
    expect(Math.max(...table.subarray(10 * 16, 11 * 16).map(Math.abs))).toBe(0);
    const positions = r.analytic.get('text.position_embedding.weight') as Float64Array;
    expect(Math.max(...positions.subarray(6 * 16).map(Math.abs))).toBe(0);
    // Tokens after the pooled end token cannot reach the output (causal mask, pooling at the end token).
    expect(Math.max(...positions.subarray(5 * 16, 6 * 16).map(Math.abs))).toBe(0);
    expect(Math.max(...positions.subarray(4 * 16, 5 * 16).map(Math.abs))).toBeGreaterThan(1e-4);
  });

  it('image tower: the last block, post-LayerNorm, projection, class token and positions (the patch Conv stays fixed)', async () => {
    const bytes = visionGraph(weights, 'hf');
    const wrt = trainable(bytes, /^(vision\.layers\.1\.|vision\.post_layernorm|visual_projection|vision\.class_embedding|vision\.position_embedding)/);
    expect(wrt).toHaveLength(16 + 5);
    const pixels = randomArray(3 * 224 * 224, 71);
    const r = await checkGradients(asDouble(readGraph(bytes)), { output: 'image_embeds', wrt, feeds: { pixel_values: { data: pixels, dims: [1, 3, 224, 224] } }, sample: 24 });
    console.log(`image tower: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(TOL);
  });

  it('refuses to differentiate through the patch Conv, naming it', () => {
    expect(() => differentiate(readGraph(visionGraph(weights, 'hf')), { upstream: ['image_embeds'], wrt: ['vision.patch_embedding.weight'] })).toThrow(
      /no gradient rule for ONNX op Conv/,
    );
  });
});

describe('the generic pass against the hand-derived contrastive kernel', () => {
  it("differentiating the kernel's own forward graph gives the kernel's hand-written gradients", async () => {
    const d = 6;
    const n = 5;
    const m = 3;
    // The kernel's graph holds the forward (loss) and its hand-derived backward (grad_wi, grad_wt, grad_s).
    // Differentiating 'loss' walks only the forward nodes, so one run yields both sets side by side.
    const grad = differentiate(readGraph(contrastiveStepGraph(d)), { loss: 'loss', wrt: ['wi', 'wt', 's'] });
    // The production path: float32, openGraph's session options (all of ORT's optimisations on).
    const session = await openGraph(writeGraph(grad.graph), 'the generated contrastive gradients', { threads: 1 });
    const unitRows = (rows: number, s: number) => {
      const v = Float32Array.from(randomArray(rows * d, s));
      for (let r = 0; r < rows; r++) {
        const norm = Math.hypot(...v.subarray(r * d, (r + 1) * d));
        for (let k = 0; k < d; k++) v[r * d + k]! /= norm;
      }
      return v;
    };
    const nearIdentity = (s: number) => Float32Array.from(randomArray(d * d, s, 0.3), (v, i) => v + (i % (d + 1) === 0 ? 1 : 0));
    const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
    const out = await session.run({
      x: f32(unitRows(n, 61), [n, d]),
      t: f32(unitRows(m, 62), [m, d]),
      q: f32(Float32Array.from([1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]), [n, m]),
      wi: f32(nearIdentity(63), [d, d]),
      wt: f32(nearIdentity(64), [d, d]),
      s: f32(Float32Array.of(1.7), []),
      lambda: f32(Float32Array.of(0.05), []),
    });
    await session.release();
    for (const [hand, generic] of [
      ['grad_wi', 'grad.wi'],
      ['grad_wt', 'grad.wt'],
      ['grad_s', 'grad.s'],
    ] as const) {
      const h = out[hand]!.data as Float32Array;
      const g = out[generic]!.data as Float32Array;
      expect(g).toHaveLength(h.length);
      const peak = Math.max(...h.map(Math.abs));
      const diff = Math.max(...h.map((v, i) => Math.abs(v - g[i]!)));
      // Two float32 evaluations of one quantity by different op sequences over d = 6: they agree to a few
      // float32 roundings of the largest term; 1e-5 of the peak is ~100 of them and far below any real error.
      console.log(`${generic} vs ${hand}: max |difference| ${diff.toExponential(2)} of peak ${peak.toExponential(2)}`);
      expect(peak).toBeGreaterThan(1e-2);
      expect(diff).toBeLessThan(1e-5 * peak);
    }
  });
});
