/**
 * Tuning the image tower's last blocks (issue 17, image side): the head rebuilt from a real tower's
 * initializers against the tower itself (both layouts, and Hugging Face's naming with anonymous and
 * transposed matrices) on synthetic pixels and on real photos; the whole training graph's gradient against
 * float64 central differences (full and LoRA); a synthetic model in which twin photos have the same base
 * embedding but different block inputs, told apart only after tuning; the tuned tower written back, loaded
 * by clipdex, and equal to what `encodeImages` gives; cancelled runs and writes that leave nothing.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { type IrGraph, readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { activationCacheBytes, cacheActivations } from '../src/train/image-tower/activation-cache.js';
import { type ImageHeadShape, imageTrainingGraph, LOGIT_SCALE, loraA, loraB, withImageLora } from '../src/train/image-tower/head-graph.js';
import { imageHeadTensorNames, imageResidualEntering, isImageMatrix, readImageHeadTensors, readImageTower } from '../src/train/image-tower/tower-source.js';
import { type ImageBlockPair, imageHeadShape, photoPixels, runImageHead, tuneImageBlocks } from '../src/train/image-tower/tune-image-blocks.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { checkGradients, randomArray } from './helpers/graph-grad-check.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { NEEDS_SHARED, sharedPath } from './helpers/shared.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-iblocks-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const S = 224;
const PLANE = 3 * S * S;

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

/** Random normalised-looking pixel tensors ([3, 224, 224], values about ±2). */
function syntheticPixels(count: number, seed: number): Float32Array[] {
  const rand = seededRandom(seed);
  return Array.from({ length: count }, () => Float32Array.from({ length: PLANE }, () => rand() * 4 - 2));
}

/** Two photos from each labeled folder of ../shared, or [] without it. */
function realPhotos(): string[] {
  const root = sharedPath('photos', 'labeled');
  if (!root) return [];
  return ['fishes', 'tools', 'renewable', 'others'].flatMap((f) =>
    readdirSync(join(root, f))
      .filter((n) => n.endsWith('.webp'))
      .sort()
      .slice(0, 2)
      .map((n) => join(root, f, n)),
  );
}

/** A clipdex-built HF image tower under the names a Hugging Face export uses: anonymous matrices, q_proj stored [out, in] behind a Transpose. */
function renameAsHfExport(g: IrGraph): IrGraph {
  const rename = new Map<string, string>();
  let anon = 2000;
  const out: IrGraph = { ...g, initializers: new Map(), nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs] })) };
  const transposed: { name: string; value: string }[] = [];
  const named: Record<string, string> = {
    'vision.class_embedding': 'vision_model.embeddings.class_embedding',
    'vision.position_embedding': 'vision_model.embeddings.position_embedding.weight',
    'vision.patch_embedding.weight': 'vision_model.embeddings.patch_embedding.weight',
  };
  for (const [name, t] of g.initializers) {
    let to = named[name] ?? name.replace(/^vision\.layers\./, 'vision_model.encoder.layers.').replace(/^vision\.(pre_layrnorm|post_layernorm)\./, 'vision_model.$1.');
    if (isImageMatrix(name)) to = `onnx::MatMul_${anon++}`;
    if (name.endsWith('.self_attn.q_proj.weight')) {
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

describe('the image head rebuilt from the tower’s initializers', () => {
  const dirs: Record<string, string> = {};
  const photos = realPhotos();
  beforeAll(async () => {
    for (const layout of ['hf', 'openclip'] as const) dirs[layout] = (await buildTinyModel({ out: join(tmp, `tiny-${layout}`), layout, seed: 7 })).dir;
    const hfNamed = join(tmp, 'tiny-hf-named');
    await buildTinyModel({ out: hfNamed, layout: 'hf', seed: 7 });
    const file = join(hfNamed, 'onnx', 'vision_model.onnx');
    writeFileSync(file, writeGraph(renameAsHfExport(readGraph(readFileSync(file)))));
    dirs['hf-named'] = hfNamed;
  }, 60_000);

  for (const variant of ['hf', 'openclip', 'hf-named'] as const) {
    it(`${variant}: applied to the cached activations of synthetic pixels${photos.length ? ' and real photos' : ` ${NEEDS_SHARED} (real photos)`} it gives the tower's own output, and clipdex's encoder agrees`, async () => {
      const tower = await readImageTower(dirs[variant]!);
      expect(tower.naming).toBe(variant === 'hf-named' ? 'hf' : 'clipdex');
      expect([tower.layers, tower.width, tower.heads, tower.embedDim, tower.tokens]).toEqual([2, 128, 4, 64, 50]);
      const pixels = [...syntheticPixels(3, 11), ...(await photoPixels(tower, photos))];
      const model = await ClipModel.load(await readModelDir(dirs[variant]!), { threads: 1 });
      const encoded = photos.length ? await model.embedImages(photos) : [];
      await model.release();
      for (const k of [1, 2]) {
        const shape = imageHeadShape(tower, k);
        const cache = await cacheActivations(tower, shape.first, pixels, imageResidualEntering(tower, shape.first), { threads: 1 });
        expect(cache.bytes).toBe(pixels.length * 50 * 128 * 4);
        const head = await runImageHead(readImageHeadTensors(tower, shape.first), shape, cache, pixels.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
        let worst = 0;
        let viaClipdex = 0;
        let peak = 0;
        head.forEach((h, p) => {
          worst = Math.max(worst, maxAbsDiff(h, cache.towerEmbeddings[p]!));
          peak = Math.max(peak, ...cache.towerEmbeddings[p]!.map(Math.abs));
        });
        encoded.forEach((e, i) => {
          if (!e.ok) throw e.error;
          viaClipdex = Math.max(viaClipdex, maxAbsDiff(unit(head[3 + i]!), e.embedding));
        });
        console.log(`${variant}, k=${k}: ${pixels.length} photos, max |head − tower| ${worst.toExponential(2)} (outputs up to ${peak.toFixed(3)}), |head − ClipModel| ${viaClipdex.toExponential(2)} over ${encoded.length} real photos`);
        expect(peak).toBeGreaterThan(0.05);
        expect(worst).toBeLessThan(1e-5);
        expect(viaClipdex).toBeLessThan(1e-5);
      }
    }, 60_000);
  }

  it('refuses a cache above its bound, an OpenCLIP resblocks graph and a pre-opset-17 LayerNorm, by name', async () => {
    const tower = await readImageTower(dirs.hf!);
    expect(activationCacheBytes(1, { tokens: 50, width: 768 })).toBe(153_600);
    await expect(cacheActivations(tower, 1, syntheticPixels(2, 3), imageResidualEntering(tower, 1), { maxBytes: 50_000 })).rejects.toThrow(/above the 0 MB bound: tune on fewer photos/);
    const resblocks = join(tmp, 'resblocks');
    await buildTinyModel({ out: resblocks, layout: 'hf', seed: 7 });
    const file = join(resblocks, 'onnx', 'vision_model.onnx');
    const g = readGraph(readFileSync(file));
    const renamed: IrGraph = { ...g, initializers: new Map([...g.initializers].map(([n, t]) => [n.replace('vision.layers.', 'visual.transformer.resblocks.'), { ...t, name: n.replace('vision.layers.', 'visual.transformer.resblocks.') }])), nodes: g.nodes.map((n) => ({ ...n, inputs: n.inputs.map((v) => v.replace('vision.layers.', 'visual.transformer.resblocks.')) })) };
    writeFileSync(file, writeGraph(renamed));
    await expect(readImageTower(resblocks)).rejects.toThrow(/OpenCLIP export \(visual\.transformer\.resblocks/);
    // A LayerNorm spelled out in ops: block 1's first LayerNorm is no LayerNormalization node.
    const old = { ...tower, graph: { ...tower.graph, nodes: tower.graph.nodes.map((n) => (n.inputs.includes('vision.layers.1.layer_norm1.weight') ? { ...n, opType: 'Mul' } : n)) } };
    expect(() => imageResidualEntering(old, 1)).toThrow(/older than opset 17/);
  }, 60_000);
});

describe('the image training graph’s whole gradient against float64 central differences', () => {
  const shape: ImageHeadShape = { width: 8, heads: 2, embedDim: 6, tokens: 5, first: 1, layers: 3 };
  let seed = 500;
  const tensors = new Map(
    imageHeadTensorNames(shape.first, shape.layers).map((name) => {
      const isLn = /norm/.test(name);
      const dims = name === 'visual_projection.weight' ? [8, 6] : name.includes('fc1.weight') ? [8, 32] : name.includes('fc2.weight') ? [32, 8] : isImageMatrix(name) ? [8, 8] : [name.includes('fc1.bias') ? 32 : 8];
      const n = dims.reduce((a, b) => a * b, 1);
      // Random everywhere, LayerNorm scales around 1: the CLIP init (unit scales, zero biases) is a special point.
      const data = Float32Array.from(randomArray(n, seed++, isLn && name.endsWith('weight') ? 0.3 : dims.length === 2 ? dims[0]! ** -0.5 : 0.1, isLn && name.endsWith('weight') ? 1 : 0));
      return [name, data] as const;
    }),
  );
  const n = 3;
  const m = 4;
  // Photo 0 has captions 0 and 1; photos 1 and 2 share caption 2; photo 2 also has caption 3.
  const feeds = {
    residual: { data: randomArray(n * shape.tokens * 8, 51), dims: [n, shape.tokens, 8] },
    texts: { data: randomArray(m * 6, 52), dims: [m, 6] },
    positives: { data: Float64Array.from([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]), dims: [n, m] },
    lambda: { data: Float64Array.of(0.3), dims: [] },
  };

  it('full weights: every tensor of two blocks, the post-LayerNorm, the projection, the temperature and the input', async () => {
    const g = readGraph(imageTrainingGraph(tensors, shape, { logitScale: 10, float: 'double' }));
    // The penalty pulls towards the starting weights, so at them its gradient is 0: start elsewhere.
    for (const [name, t] of g.initializers) if (name.endsWith('.pretrained')) g.initializers.set(name, { ...t, data: (t.data as Float64Array).map((v, i) => v + 0.05 * Math.sin(i + 1)) });
    const wrt = [...imageHeadTensorNames(shape.first, shape.layers), LOGIT_SCALE, 'residual'];
    const r = await checkGradients(g, { output: 'loss', wrt, feeds, sample: 12 });
    console.log(`image training graph: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
    // No mask on the image side: every token of the input reaches the loss, patches included.
    const gr = r.analytic.get('residual')!;
    for (let t = 1; t < shape.tokens; t++) expect(Math.max(...gr.subarray(t * 8, (t + 1) * 8).map(Math.abs))).toBeGreaterThan(1e-5);
  }, 60_000);

  it('LoRA: A and B of every matrix, with the full LayerNorms and biases', async () => {
    const g = withImageLora(readGraph(imageTrainingGraph(tensors, shape, { logitScale: 10, float: 'double' })), 2, (_name, [inDim, outDim]) => ({
      a: Float64Array.from(randomArray(inDim! * 2, seed++, 0.5)),
      // Not 0 as in training: at B = 0 the gradient of A is exactly 0 and the check would prove nothing about it.
      b: Float64Array.from(randomArray(2 * outDim!, seed++, 0.2)),
    }));
    const names = imageHeadTensorNames(shape.first, shape.layers);
    // The projection is a LoRA matrix too (the text side's withLora would have left visual_projection whole).
    expect(g.initializers.has(loraA('visual_projection.weight'))).toBe(true);
    const wrt = [...names.flatMap((nm) => (isImageMatrix(nm) ? [loraA(nm), loraB(nm)] : [nm])), LOGIT_SCALE];
    const r = await checkGradients(g, { output: 'loss', wrt, feeds, sample: 12 });
    console.log(`LoRA image training graph: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
  }, 60_000);
});
