/**
 * Tuning the last image blocks of an OpenCLIP / Immich export (issue 17, image side). A clipdex-built image
 * tower in the Immich layout is rewritten the way torch.onnx lays out open_clip's VisionTransformer
 * (helpers/openclip-export.ts): `visual.transformer.resblocks.{i}` names, q, k, v fused into one in_proj
 * matrix and bias, anonymous folded matrices, `visual.ln_post`, `visual.proj`, and in a second variant every
 * LayerNorm spelled out at opset 16. Run with real ONNX Runtime: the rewrite gives the same embeddings as the
 * original; the tower is read, its head rebuilt exactly, trained, written back with in_proj still fused, and
 * loaded by clipdex with the embeddings `encodeImages` gives.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClipModel } from '../src/model/clip-model.js';
import { readModelDir } from '../src/model/model-dir.js';
import { buildTinyModel } from '../src/model/tiny-model-builder.js';
import { type IrGraph, readGraph, writeGraph } from '../src/train/graph-grad/onnx-ir.js';
import { cacheActivations } from '../src/train/image-tower/activation-cache.js';
import { imageHeadTensorNames, imageResidualEntering, locateImage, readImageHeadTensors, readImageTower } from '../src/train/image-tower/tower-source.js';
import { type ImageBlockPair, imageHeadShape, photoPixels, runImageHead, tuneImageBlocks } from '../src/train/image-tower/tune-image-blocks.js';
import { seededRandom } from '../src/util/seeded-random.js';
import { writeJpeg } from './helpers/ingest-fixtures.js';
import { asOpenClipExport, type OpenClipVariant } from './helpers/openclip-export.js';

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-openclip-image-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const W = 128;
const VISION_FILE = join('visual', 'model.onnx');
const VARIANTS: readonly OpenClipVariant[] = ['fused', 'fused-spelled-ln'];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function embed(dir: string, files: readonly string[]): Promise<Float32Array[]> {
  const model = await ClipModel.load(await readModelDir(dir), { threads: 1 });
  try {
    return (await model.embedImages([...files])).map((r) => {
      if (!r.ok) throw r.error;
      return r.embedding;
    });
  } finally {
    await model.release();
  }
}

/** A copy of the tiny model folder (Immich layout) with its image graph replaced by `rewrite(graph)`. */
async function variantDir(name: string, rewrite: (g: IrGraph) => IrGraph): Promise<string> {
  const dir = (await buildTinyModel({ out: join(tmp, name), layout: 'openclip', seed: 7 })).dir;
  const file = join(dir, VISION_FILE);
  writeFileSync(file, writeGraph(rewrite(readGraph(readFileSync(file)))));
  return dir;
}

describe('an OpenCLIP export of the image tower', () => {
  const dirs: Record<string, string> = {};
  const files: string[] = [];
  let original: Float32Array[];
  beforeAll(async () => {
    dirs.clipdex = (await buildTinyModel({ out: join(tmp, 'clipdex'), layout: 'openclip', seed: 7 })).dir;
    for (const v of VARIANTS) dirs[v] = await variantDir(v, (g) => asOpenClipExport(g, v, 'image'));
    for (let i = 0; i < 14; i++) {
      files.push(join(tmp, 'photos', `p${i}.jpg`));
      await writeJpeg(files[i]!, 300 + i, 96, 80);
    }
    original = await embed(dirs.clipdex, files.slice(0, 4));
  }, 120_000);

  for (const variant of VARIANTS) {
    it(`${variant}: the rewritten graph is laid out as the export and gives the original tower's embeddings`, async () => {
      const g = readGraph(readFileSync(join(dirs[variant]!, VISION_FILE)));
      const names = [...g.initializers.keys()];
      expect(names.filter((n) => /q_proj|k_proj|v_proj|vision\.|visual_projection/.test(n))).toEqual([]);
      expect(g.initializers.get('visual.transformer.resblocks.1.attn.in_proj_bias')!.dims).toEqual([3 * W]);
      for (const n of ['visual.transformer.resblocks.1.ln_1.weight', 'visual.ln_post.weight', 'visual.proj', 'visual.positional_embedding', 'visual.conv1.weight']) expect(names).toContain(n);
      expect(g.nodes.some((n) => n.opType === 'LayerNormalization')).toBe(variant === 'fused');
      expect(g.opset).toBe(variant === 'fused' ? 17 : 16);
      const rewritten = await embed(dirs[variant]!, files.slice(0, 4));
      const worst = Math.max(...rewritten.map((e, i) => maxAbsDiff(e, original[i]!)));
      console.log(`image ${variant}: max |rewritten − original| embedding ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(1e-5);
    }, 60_000);

    it(`${variant}: read as it is, q, k, v are thirds of in_proj and the rebuilt head is the tower's`, async () => {
      const tower = await readImageTower(dirs[variant]!);
      const base = await readImageTower(dirs.clipdex!);
      expect(tower.naming).toBe('openclip');
      expect(tower.prefix).toBe('visual.');
      expect([tower.layers, tower.width, tower.heads, tower.embedDim, tower.tokens]).toEqual([2, W, 4, 64, 50]);
      expect(tower.activations).toEqual(['quick_gelu', 'quick_gelu']);
      const k = locateImage(tower, 'vision.layers.1.self_attn.k_proj.weight');
      expect(k.slice).toEqual({ from: W, to: 2 * W });
      expect(k.dims).toEqual([W, W]);
      expect(k.transpose).toBe(variant === 'fused');
      expect(k.name).toBe(variant === 'fused' ? 'visual.transformer.resblocks.1.attn.in_proj_weight' : locateImage(tower, 'vision.layers.1.self_attn.q_proj.weight').name);
      expect(locateImage(tower, 'vision.layers.1.self_attn.v_proj.bias')).toEqual({ name: 'visual.transformer.resblocks.1.attn.in_proj_bias', transpose: false, dims: [W], slice: { from: 2 * W, to: 3 * W } });
      expect(locateImage(tower, 'visual_projection.weight')).toEqual({ name: 'visual.proj', transpose: false, dims: [W, 64] });
      expect(locateImage(tower, 'vision.post_layernorm.bias').name).toBe('visual.ln_post.bias');
      // Every head tensor, read back from its slice or name, is the clipdex tower's own, bit for bit.
      const ours = readImageHeadTensors(tower, 0);
      const theirs = readImageHeadTensors(base, 0);
      for (const name of imageHeadTensorNames(0, 2)) expect(maxAbsDiff(ours.get(name)!, theirs.get(name)!), name).toBe(0);

      const pixels = await photoPixels(tower, files.slice(0, 4));
      for (const blocks of [1, 2]) {
        const shape = imageHeadShape(tower, blocks);
        const cache = await cacheActivations(tower, shape.first, pixels, imageResidualEntering(tower, shape.first), { threads: 1 });
        const baseCache = await cacheActivations(base, shape.first, pixels, imageResidualEntering(base, shape.first), { threads: 1 });
        const residualError = Math.max(...cache.activations.map((r, i) => maxAbsDiff(r, baseCache.activations[i]!)));
        const head = await runImageHead(ours, shape, cache, pixels.map((_, i) => i), { normalize: tower.normalizedOutput, threads: 1 });
        const headError = Math.max(...head.map((h, i) => maxAbsDiff(h, cache.towerEmbeddings[i]!)));
        console.log(`image ${variant}, k=${blocks}: block ${shape.first}'s input vs clipdex's ${residualError.toExponential(2)}; max |head − tower| ${headError.toExponential(2)}`);
        expect(residualError).toBeLessThan(1e-5);
        expect(headError).toBeLessThan(1e-5);
      }
    }, 60_000);
  }

  describe('trained and written back', () => {
    const E = 64;
    const rand = seededRandom(77);
    const texts = Float32Array.from({ length: 4 * E }, () => rand() * 2 - 1);
    const pairs: ImageBlockPair[] = Array.from({ length: 12 }, (_, i) => ({ image: i, caption: i % 4, split: i < 8 ? 'train' : 'val' }));

    for (const variant of VARIANTS) {
      it(`${variant}: the loss goes down, and the tuned tower loads in clipdex with in_proj still fused`, async () => {
        const dir = dirs[variant]!;
        const photos = files.slice(0, 12);
        const out = await tuneImageBlocks({ modelDir: dir, photos, textEmbeddings: texts, pairs, k: 2, learningRate: 1e-3, epochs: 6, patience: 6, seed: 2, threads: 1 });
        const first = out.history[0]!;
        const last = out.history.at(-1)!;
        expect(out.headError).toBeLessThan(1e-5);
        expect(last.trainLoss).toBeLessThan(first.trainLoss);
        // The fused matrix and bias come back whole, once, by their names in the graph.
        const tower = await readImageTower(dir);
        const inProj = locateImage(tower, 'vision.layers.0.self_attn.q_proj.weight').name;
        expect(out.tensors.get(inProj)!.dims).toEqual(variant === 'fused' ? [3 * W, W] : [W, 3 * W]);
        expect(out.tensors.get('visual.transformer.resblocks.0.attn.in_proj_bias')!.dims).toEqual([3 * W]);
        expect(out.tensors.get('visual.proj')!.dims).toEqual([W, E]);

        const copy = await out.writeModelDir(join(tmp, `${variant}-tuned`));
        const written = readGraph(readFileSync(join(copy, VISION_FILE)));
        const before = readGraph(readFileSync(join(dir, VISION_FILE)));
        expect(written.nodes.map((n) => n.opType)).toEqual(before.nodes.map((n) => n.opType));
        expect([...written.initializers.keys()].sort()).toEqual([...before.initializers.keys()].sort());
        expect(written.initializers.get(inProj)!.dims).toEqual(before.initializers.get(inProj)!.dims);
        // Read back from the written file through the slices: exactly the tuned tensors.
        const reread = readImageHeadTensors(await readImageTower(copy), 0);
        for (const name of imageHeadTensorNames(0, 2)) expect(maxAbsDiff(reread.get(name)!, out.canonical.get(name)!), name).toBe(0);
        const moved = maxAbsDiff(out.canonical.get('vision.layers.1.self_attn.k_proj.weight')!, readImageHeadTensors(tower, 0).get('vision.layers.1.self_attn.k_proj.weight')!);
        expect(moved).toBeGreaterThan(1e-4);

        const viaClipdex = await embed(copy, files);
        const viaTuned = await out.encodeImages(files);
        const worst = Math.max(...viaTuned.map((e, i) => maxAbsDiff(e, viaClipdex[i]!)));
        const vsTraining = Math.max(...photos.map((_, i) => maxAbsDiff(viaClipdex[i]!, out.imageEmbeddings[i]!)));
        const baseEmbeddings = await embed(dir, photos);
        const change = Math.max(...photos.map((_, i) => maxAbsDiff(baseEmbeddings[i]!, viaClipdex[i]!)));
        console.log(`image ${variant}: train loss ${first.trainLoss.toFixed(4)} → ${last.trainLoss.toFixed(4)} in ${out.history.length} epochs; loaded tuned tower vs encodeImages ${worst.toExponential(2)}, vs the training graph ${vsTraining.toExponential(2)}; moved from the base by ${change.toExponential(2)}`);
        expect(worst).toBeLessThan(1e-5);
        expect(vsTraining).toBeLessThan(1e-5);
        expect(change).toBeGreaterThan(1e-3);
      }, 120_000);
    }
  });

  it('an in_proj whose bias has no name is refused, naming what was not found', async () => {
    const dir = await variantDir('anonymous-bias', (g) => {
      const out = asOpenClipExport(g, 'fused', 'image');
      const bias = 'visual.transformer.resblocks.0.attn.in_proj_bias';
      out.initializers.set('onnx::Add_9', { ...out.initializers.get(bias)!, name: 'onnx::Add_9' });
      out.initializers.delete(bias);
      for (const n of out.nodes) n.inputs = n.inputs.map((v) => (v === bias ? 'onnx::Add_9' : v));
      return out;
    });
    await expect(readImageTower(dir)).rejects.toThrow(/cannot locate vision\.layers\.0\.self_attn\.q_proj\.weight in the image tower \(no initializer visual\.transformer\.resblocks\.0\.attn\.in_proj_bias, the bias its matrix is found from\)/);
  }, 60_000);
});
