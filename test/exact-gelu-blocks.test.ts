/**
 * Block tuning on towers whose MLP uses exact GELU 0.5·x·(1 + erf(x/√2)), as OpenCLIP's LAION-trained towers
 * do (issue 17), on both sides. Tiny clipdex-built towers in the OpenCLIP layout get every block's QuickGELU
 * rewritten into exact GELU as torch.onnx spells nn.GELU out (helpers/openclip-export.ts); under real ONNX
 * Runtime they are read, each block's activation found, the rebuilt head (written with the same activation)
 * equals the tower, a short run lowers the loss, and the written tower loads in clipdex with the embeddings
 * the run's own encoder gives. The training graph with exact GELU passes the float64 central-difference check.
 * The detection itself: each spelling (torch's order, the other order, a Gelu node) is GELU; the tanh
 * approximation and other activations are refused, named.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { transformerBlockGraph } from '../src/model/clip-onnx-graph.js';
import { readModelDir } from '../src/model/model-dir.js';
import { GraphBuilder } from '../src/model/onnx-graph.js';
import { loadTextTokenizer } from '../src/model/text-tokenizer.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { type IrGraph, readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { blockWeights } from '../src/train/head-training-graph.js';
import { cacheActivations } from '../src/train/image-tower/activation-cache.js';
import { type ImageHeadShape, imageTrainingGraph } from '../src/train/image-tower/head-graph.js';
import { imageHeadTensorNames, imageResidualEntering, isImageMatrix, readImageHeadTensors, readImageTower } from '../src/train/image-tower/tower-source.js';
import { type ImageBlockPair, imageHeadShape, photoPixels, runImageHead, tuneImageBlocks } from '../src/train/image-tower/tune-image-blocks.js';
import { type HeadShape, LOGIT_SCALE, trainingGraph } from '../src/train/text-tower/head-graph.js';
import { cacheResiduals } from '../src/train/text-tower/residual-cache.js';
import { headTensorNames, isMatrix, readTextTower, residualEntering } from '../src/train/text-tower/tower-source.js';
import { headShape, readHeadTensors, runHead, type TextBlockPair, tuneTextBlocks } from '../src/train/text-tower/tune-text-blocks.js';
import { consumers } from '../src/train/tower-graph-lookup.js';
import { blockActivation, mlpActivation } from '../src/train/tower-naming.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { checkGradients, erfInDouble, openDoubleSafe, randomArray } from './helpers/graph-grad-check.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { asOpenClipExport, withExactGelu } from './helpers/openclip-export.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-exact-gelu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const TEXT_FILE = join('textual', 'model.onnx');
const VISION_FILE = join('visual', 'model.onnx');

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function tinyWith(name: string, file: string, rewrite: (g: IrGraph) => IrGraph): Promise<string> {
  const dir = (await buildTinyModel({ out: join(tmp, name), layout: 'openclip', seed: 7 })).dir;
  writeFileSync(join(dir, file), writeGraph(rewrite(readGraph(readFileSync(join(dir, file))))));
  return dir;
}

/** The value each block's first MLP linear gives (the Add of its c_fc bias), in block order. */
function hiddens(g: IrGraph): string[] {
  const out: string[] = [];
  for (const [name] of g.initializers) {
    if (!/mlp\.c_fc\.bias$/.test(name)) continue;
    out.push(consumers(g, name).find((n) => n.opType === 'Add')!.outputs[0]!);
  }
  return out;
}

describe('finding the MLP activation', () => {
  let text: IrGraph;
  beforeAll(async () => {
    const dir = (await buildTinyModel({ out: join(tmp, 'detect'), layout: 'openclip', seed: 7 })).dir;
    text = asOpenClipExport(readGraph(readFileSync(join(dir, TEXT_FILE))), 'fused');
  }, 60_000);

  it('QuickGELU, exact GELU in each spelling, and a Gelu node are told apart; tanh GELU and ReLU are refused by name', () => {
    expect(hiddens(text).map((h) => mlpActivation(text, h))).toEqual(['quick_gelu', 'quick_gelu']);
    for (const form of ['torch', 'scaled', 'node'] as const) {
      const g = withExactGelu(text, form);
      expect(g.nodes.some((n) => n.opType === 'Sigmoid')).toBe(false);
      expect(hiddens(g).map((h) => mlpActivation(g, h)), form).toEqual(['gelu', 'gelu']);
    }
    const tanh = withExactGelu(text, 'node');
    for (const n of tanh.nodes) if (n.opType === 'Gelu') n.attrs = { approximate: 'tanh' };
    expect(mlpActivation(tanh, hiddens(tanh)[0]!)).toEqual({ feeds: 'Gelu' });
    expect(() => blockActivation(tanh, 'model.onnx', 'text', 0, 'transformer.resblocks.0.mlp.c_fc.bias')).toThrow(
      /model\.onnx: text block 0's MLP activation on the Add of transformer\.resblocks\.0\.mlp\.c_fc\.bias is neither CLIP's QuickGELU x·σ\(1\.702x\) nor exact GELU 0\.5·x·\(1 \+ erf\(x\/√2\)\) \(it feeds: Gelu\); the tower uses the tanh approximation of GELU/,
    );
    // A wrong constant (x/2 instead of x/√2) is not GELU.
    const wrong = withExactGelu(text, 'torch');
    wrong.initializers.set('gelu_sqrt2', { name: 'gelu_sqrt2', dtype: 'float', dims: [], data: Float32Array.of(2) });
    expect(mlpActivation(wrong, hiddens(wrong)[1]!)).toEqual({ feeds: 'Div, Mul' });
  });

  it('transformerBlock writes QuickGELU by default, as before, and exact GELU when asked', () => {
    const t = new Map(
      imageHeadTensorNames(0, 1)
        .filter((n) => n.startsWith('vision.layers.'))
        .map((n) => [n, new Float32Array(n.includes('fc1.weight') || n.includes('fc2.weight') ? 8 * 32 : n.includes('fc1.bias') ? 32 : isImageMatrix(n) ? 64 : 8)] as const),
    );
    const ops = (g: Uint8Array) => readGraph(g).nodes.map((n) => n.opType);
    const plain = blockWeights(t, 'vision.layers.0', 8);
    const byDefault = transformerBlockGraph({ ...plain, activation: undefined }, { heads: 2, width: 8 });
    expect(byDefault).toEqual(transformerBlockGraph(plain, { heads: 2, width: 8 }));
    expect(ops(byDefault)).toContain('Sigmoid');
    expect(ops(byDefault)).not.toContain('Erf');
    const gelu = ops(transformerBlockGraph(blockWeights(t, 'vision.layers.0', 8, 'gelu'), { heads: 2, width: 8 }));
    expect(gelu).toContain('Erf');
    expect(gelu).not.toContain('Sigmoid');
  });
});

describe('exact GELU, text tower', () => {
  let dir: string;
  const captions = ['a dog on a beach', 'a red car', 'two cats', 'a bowl of fruit'];
  beforeAll(async () => {
    dir = await tinyWith('text-gelu', TEXT_FILE, (g) => withExactGelu(asOpenClipExport(g, 'fused'), 'torch'));
  }, 60_000);

  it('is read with GELU in every block, and the rebuilt head is the tower', async () => {
    const tower = await readTextTower(dir);
    expect(tower.activations).toEqual(['gelu', 'gelu']);
    const tokenizer = await loadTextTokenizer(tower.spec);
    const rows = (await tokenizer.tokenize(captions, tower.contextLength)).map((r) => r.ids);
    const tensors = readHeadTensors(tower, 0);
    for (const k of [1, 2]) {
      const shape = headShape(tower, k);
      const cache = await cacheResiduals(tower, shape.first, rows, residualEntering(tower, shape.first), { padId: tokenizer.padId, threads: 1 });
      const head = await runHead(tensors, shape, cache, captions.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
      const error = Math.max(...head.map((h, c) => maxAbsDiff(h, cache.towerEmbeddings[c]!)));
      // Against the same head written with QuickGELU: the activation is what makes it equal.
      const quick = await runHead(tensors, { ...shape, activations: undefined }, cache, captions.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
      const quickError = Math.max(...quick.map((h, c) => maxAbsDiff(h, cache.towerEmbeddings[c]!)));
      console.log(`text exact GELU, k=${k}: max |head − tower| ${error.toExponential(2)} (with QuickGELU instead: ${quickError.toExponential(2)})`);
      expect(error).toBeLessThan(1e-5);
      expect(quickError).toBeGreaterThan(1e-4);
    }
  }, 60_000);

  it('a short run lowers the loss, and the written tower loads in clipdex as encodeTexts gives it', async () => {
    const E = 64;
    const rand = seededRandom(77);
    const images = Float32Array.from({ length: 12 * E }, () => rand() * 2 - 1);
    const pairs: TextBlockPair[] = Array.from({ length: 12 }, (_, i) => ({ caption: i % 4, image: i, split: i < 8 ? 'train' : 'val' }));
    const out = await tuneTextBlocks({ modelDir: dir, captions, imageEmbeddings: images, pairs, k: 2, learningRate: 3e-3, epochs: 5, patience: 5, seed: 2, threads: 1 });
    const first = out.history[0]!;
    const last = out.history.at(-1)!;
    expect(out.headError).toBeLessThan(1e-5);
    expect(last.trainLoss).toBeLessThan(first.trainLoss);
    const copy = await out.writeModelDir(join(tmp, 'text-gelu-tuned'));
    expect(readGraph(readFileSync(join(copy, TEXT_FILE))).nodes.filter((n) => n.opType === 'Erf')).toHaveLength(2);
    const model = await ClipModel.load(await readModelDir(copy), { threads: 1 });
    const texts = [...captions, 'something else'];
    const viaClipdex = await model.embedTexts(texts).finally(() => model.release());
    const viaTuned = await out.encodeTexts(texts);
    const worst = Math.max(...viaTuned.map((e, c) => maxAbsDiff(e, viaClipdex[c]!)));
    const vsTraining = Math.max(...captions.map((_, c) => maxAbsDiff(viaClipdex[c]!, out.captionEmbeddings[c]!)));
    console.log(`text exact GELU: train loss ${first.trainLoss.toFixed(4)} → ${last.trainLoss.toFixed(4)}; loaded vs encodeTexts ${worst.toExponential(2)}, vs the training graph ${vsTraining.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
    expect(vsTraining).toBeLessThan(1e-5);
  }, 120_000);
});

describe('exact GELU, image tower (OpenCLIP layout, LayerNorms spelled out)', () => {
  let dir: string;
  const files: string[] = [];
  beforeAll(async () => {
    dir = await tinyWith('image-gelu', VISION_FILE, (g) => withExactGelu(asOpenClipExport(g, 'fused-spelled-ln', 'image'), 'scaled'));
    for (let i = 0; i < 12; i++) {
      files.push(join(tmp, 'photos', `p${i}.jpg`));
      await writeJpeg(files[i]!, 500 + i, 96, 80);
    }
  }, 60_000);

  it('is read with GELU in every block, and the rebuilt head is the tower', async () => {
    const tower = await readImageTower(dir);
    expect(tower.naming).toBe('openclip');
    expect(tower.activations).toEqual(['gelu', 'gelu']);
    const pixels = await photoPixels(tower, files.slice(0, 4));
    const tensors = readImageHeadTensors(tower, 0);
    for (const k of [1, 2]) {
      const shape = imageHeadShape(tower, k);
      const cache = await cacheActivations(tower, shape.first, pixels, imageResidualEntering(tower, shape.first), { threads: 1 });
      const head = await runImageHead(tensors, shape, cache, pixels.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
      const error = Math.max(...head.map((h, i) => maxAbsDiff(h, cache.towerEmbeddings[i]!)));
      const quick = await runImageHead(tensors, { ...shape, activations: undefined }, cache, pixels.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
      const quickError = Math.max(...quick.map((h, i) => maxAbsDiff(h, cache.towerEmbeddings[i]!)));
      console.log(`image exact GELU, k=${k}: max |head − tower| ${error.toExponential(2)} (with QuickGELU instead: ${quickError.toExponential(2)})`);
      expect(error).toBeLessThan(1e-5);
      expect(quickError).toBeGreaterThan(1e-4);
    }
  }, 60_000);

  it('a short run lowers the loss, and the written tower loads in clipdex as encodeImages gives it', async () => {
    const E = 64;
    const rand = seededRandom(77);
    const texts = Float32Array.from({ length: 4 * E }, () => rand() * 2 - 1);
    const pairs: ImageBlockPair[] = Array.from({ length: 12 }, (_, i) => ({ image: i, caption: i % 4, split: i < 8 ? 'train' : 'val' }));
    const out = await tuneImageBlocks({ modelDir: dir, photos: files, textEmbeddings: texts, pairs, k: 2, learningRate: 1e-3, epochs: 6, patience: 6, seed: 2, threads: 1 });
    const first = out.history[0]!;
    const last = out.history.at(-1)!;
    expect(out.headError).toBeLessThan(1e-5);
    expect(last.trainLoss).toBeLessThan(first.trainLoss);
    const copy = await out.writeModelDir(join(tmp, 'image-gelu-tuned'));
    const model = await ClipModel.load(await readModelDir(copy), { threads: 1 });
    const viaClipdex = (await model.embedImages(files).finally(() => model.release())).map((r) => {
      if (!r.ok) throw r.error;
      return r.embedding;
    });
    const viaTuned = await out.encodeImages(files);
    const worst = Math.max(...viaTuned.map((e, i) => maxAbsDiff(e, viaClipdex[i]!)));
    const vsTraining = Math.max(...files.map((_, i) => maxAbsDiff(viaClipdex[i]!, out.imageEmbeddings[i]!)));
    console.log(`image exact GELU: train loss ${first.trainLoss.toFixed(4)} → ${last.trainLoss.toFixed(4)}; loaded vs encodeImages ${worst.toExponential(2)}, vs the training graph ${vsTraining.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-5);
    expect(vsTraining).toBeLessThan(1e-5);
  }, 120_000);
});

describe('the training graph with exact GELU against float64 central differences (one block)', () => {
  function tensorsFor(names: readonly string[], projection: string, matrix: (n: string) => boolean, seed0: number): Map<string, Float32Array> {
    let seed = seed0;
    return new Map(
      names.map((name) => {
        const isLn = /norm/.test(name);
        const dims = name === projection ? [8, 6] : name.includes('fc1.weight') ? [8, 32] : name.includes('fc2.weight') ? [32, 8] : matrix(name) ? [8, 8] : [name.includes('fc1.bias') ? 32 : 8];
        const n = dims.reduce((a, b) => a * b, 1);
        const data = Float32Array.from(randomArray(n, seed++, isLn && name.endsWith('weight') ? 0.3 : dims.length === 2 ? dims[0]! ** -0.5 : 0.1, isLn && name.endsWith('weight') ? 1 : 0));
        return [name, data] as const;
      }),
    );
  }
  const moved = (g: IrGraph) => {
    // The penalty pulls towards the starting weights, so at them its gradient is 0: start elsewhere.
    for (const [name, t] of g.initializers) if (name.endsWith('.pretrained')) g.initializers.set(name, { ...t, data: (t.data as Float64Array).map((v, i) => v + 0.05 * Math.sin(i + 1)) });
    return g;
  };

  it('the harness’s float64 erf (ORT has no float64 Erf kernel) is erf to 1e-15', async () => {
    const b = new GraphBuilder('erf', { float: 'double' });
    b.input('x', 'double', [6]);
    b.op('Erf', ['x'], {}, 'y');
    b.output('y', 'double', [6]);
    const session = await openDoubleSafe(writeGraph(erfInDouble(readGraph(b.toBytes()))));
    const x = Float64Array.of(0, 0.5, 1, 2, -3, 5);
    // erf at these points, to 16 digits (Abramowitz & Stegun table 7.1, Wolfram).
    const want = [0, 0.5204998778130465, 0.8427007929497149, 0.9953222650189527, -0.9999779095030014, 0.9999999999984626];
    const y = (await session.run({ x: new ort.Tensor('float64', x, [6]) })).y!.data as Float64Array;
    await session.release();
    const worst = maxAbsDiff(y, want);
    console.log(`erfInDouble: max |error| ${worst.toExponential(2)}`);
    expect(worst).toBeLessThan(1e-15);
  });

  it('image side: every tensor of the block, the post-LayerNorm, the projection, the temperature and the input', async () => {
    const shape: ImageHeadShape = { width: 8, heads: 2, embedDim: 6, tokens: 5, first: 1, layers: 2, activations: ['quick_gelu', 'gelu'] };
    const names = imageHeadTensorNames(shape.first, shape.layers);
    const g = moved(readGraph(imageTrainingGraph(tensorsFor(names, 'visual_projection.weight', isImageMatrix, 700), shape, { logitScale: 10, float: 'double' })));
    expect(g.nodes.filter((n) => n.opType === 'Erf')).toHaveLength(1);
    const feeds = {
      residual: { data: randomArray(3 * shape.tokens * 8, 71), dims: [3, shape.tokens, 8] },
      texts: { data: randomArray(4 * 6, 72), dims: [4, 6] },
      positives: { data: Float64Array.from([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1]), dims: [3, 4] },
      lambda: { data: Float64Array.of(0.3), dims: [] },
    };
    const r = await checkGradients(g, { output: 'loss', wrt: [...names, LOGIT_SCALE, 'residual'], feeds, sample: 12, lower: erfInDouble });
    console.log(`image training graph, exact GELU: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
  }, 60_000);

  it('text side: every tensor of the block, the final LayerNorm, the projection, the temperature and the input', async () => {
    const shape: HeadShape = { width: 8, heads: 2, embedDim: 6, contextLength: 7, first: 0, layers: 1, activations: ['gelu'] };
    const names = headTensorNames(shape.first, shape.layers);
    const g = moved(readGraph(trainingGraph(tensorsFor(names, 'text_projection.weight', isMatrix, 800), shape, { logitScale: 10, float: 'double' })));
    expect(g.nodes.filter((n) => n.opType === 'Erf')).toHaveLength(1);
    const ends = [4, 2, 3];
    const feeds = {
      residual: { data: randomArray(3 * 5 * 8, 81), dims: [3, 5, 8] },
      pool_index: { data: BigInt64Array.from({ length: 3 * 8 }, (_, i) => BigInt(ends[Math.floor(i / 8)]!)), dims: [3, 1, 8] },
      images: { data: randomArray(4 * 6, 82), dims: [4, 6] },
      positives: { data: Float64Array.from([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1]), dims: [4, 3] },
      lambda: { data: Float64Array.of(0.3), dims: [] },
    };
    const r = await checkGradients(g, { output: 'loss', wrt: [...names, LOGIT_SCALE, 'residual'], feeds, sample: 12, lower: erfInDouble });
    console.log(`text training graph, exact GELU: ${r.count} sampled elements, max relative error ${r.maxRelative.toExponential(2)}`);
    expect(r.maxAbsGradient).toBeGreaterThan(0.01);
    expect(r.maxRelative).toBeLessThan(1e-6);
  }, 60_000);
});
