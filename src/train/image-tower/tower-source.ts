/**
 * A model folder's image tower read as it is, for tuning its last blocks (issue 17, image side): the graph,
 * its sizes, and where each trainable tensor of the last blocks, the post-LayerNorm and the projection lives.
 *
 * Tensors are known here by canonical names — the ones clipdex's `visionGraph` writes
 * (`vision.layers.{i}.self_attn.q_proj.weight` stored [in, out], `vision.post_layernorm.weight`,
 * `visual_projection.weight` [width, embed]) — each mapped to an initializer of the real graph, or a slice of
 * one, transposed or not (tower-naming.ts, shared with the text side). Three namings are read:
 *   - clipdex's (both layouts of `models build-tiny`: the layout changes the I/O, not the names);
 *   - Hugging Face's (optimum / transformers.js): `vision_model.encoder.layers.{i}.layer_norm1.weight`,
 *     `….self_attn.q_proj.bias`, `vision_model.post_layernorm.*`, the projection `visual_projection` — matrices
 *     usually anonymous, found from their named bias (tower-graph-lookup.ts);
 *   - OpenCLIP's (Immich's `visual/model.onnx`, open_clip's VisionTransformer through torch.onnx):
 *     `visual.transformer.resblocks.{i}.ln_1`, `ln_2`, `attn.out_proj`, `mlp.c_fc`, `mlp.c_proj`, `visual.ln_post`,
 *     `visual.proj` (a bare [width, embed] parameter used as `pooled @ proj`, no bias), `visual.positional_embedding`,
 *     under whatever prefix precedes `transformer.resblocks.` (`visual.`); q, k, v are thirds of the fused
 *     `attn.in_proj_weight` [3·width, width] and `attn.in_proj_bias`, found from the named bias as on the text side.
 * A block's input is its first LayerNorm's, a LayerNormalization node or spelled out before opset 17; its MLP
 * activation is QuickGELU (OpenAI) or exact GELU (LAION-trained OpenCLIP: Erf, or a Gelu node), and the head
 * is rebuilt with the same one. All of it is found when the tower is read, so what cannot be tuned is refused
 * before a photo is encoded, naming what was not found.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { type ModelSpec, readModelDir } from '../../model/model-dir.js';
import type { MlpActivation } from '../../model/clip-architecture.js';
import { type IrGraph, readGraph } from '../graph-grad/onnx-ir.js';
import { consumers, producer } from '../tower-graph-lookup.js';
import { BLOCK_LINEARS, BLOCK_NORMS, blockActivation, layerNormInput, locateSource, type Naming, openClipBlockName, openClipPrefix, readSource, type SourceName, storedTensors, type TensorSource } from '../tower-naming.js';

export type { Naming, TensorSource };

export interface ImageTower {
  spec: ModelSpec;
  /** Absolute path of the image tower's ONNX file. */
  path: string;
  graph: IrGraph;
  naming: Naming;
  /** What OpenCLIP's names start with before `transformer.resblocks.` (`visual.`; unused by the other namings). */
  prefix: string;
  layers: number;
  width: number;
  heads: number;
  embedDim: number;
  /** Each block's MLP activation (QuickGELU, or exact GELU in LAION-trained OpenCLIP towers). */
  activations: MlpActivation[];
  /** 1 class token + the patches. */
  tokens: number;
  /** The pixel input's side. */
  imageSize: number;
  /** The graph's output is L2-normalised inside (OpenCLIP/Immich layout). */
  normalizedOutput: boolean;
}

export const IMAGE_PROJECTION = 'visual_projection.weight';

/** The canonical names of the tensors that tuning image blocks [first, layers) touches, in a fixed order. */
export function imageHeadTensorNames(first: number, layers: number): string[] {
  const names: string[] = [];
  for (let i = first; i < layers; i++) {
    const p = `vision.layers.${i}`;
    for (const ln of BLOCK_NORMS) names.push(`${p}.${ln}.weight`, `${p}.${ln}.bias`);
    for (const lin of BLOCK_LINEARS) names.push(`${p}.${lin}.weight`, `${p}.${lin}.bias`);
  }
  names.push('vision.post_layernorm.weight', 'vision.post_layernorm.bias', IMAGE_PROJECTION);
  return names;
}

/** 2-D tensors: what LoRA updates; 1-D ones (LayerNorms, biases) are tuned in full in every mode. */
export function isImageMatrix(name: string): boolean {
  return name === IMAGE_PROJECTION || (name.endsWith('.weight') && /\.(self_attn|mlp)\./.test(name));
}

/** The canonical [in, out] dims of a head tensor. */
export function imageCanonicalDims(name: string, width: number, embedDim: number): number[] {
  if (name === IMAGE_PROJECTION) return [width, embedDim];
  const fc1 = name.includes('.mlp.fc1.');
  const fc2 = name.includes('.mlp.fc2.');
  if (isImageMatrix(name)) return [fc2 ? 4 * width : width, fc1 ? 4 * width : width];
  return [fc1 ? 4 * width : width];
}

function hfName(canonical: string): string {
  if (canonical.startsWith('vision.layers.')) return canonical.replace(/^vision\.layers\./, 'vision_model.encoder.layers.');
  if (canonical.startsWith('vision.')) return canonical.replace(/^vision\./, 'vision_model.');
  return canonical;
}

function openClipName(canonical: string): SourceName {
  const block = /^vision\.layers\.(\d+)\.(.+)$/.exec(canonical);
  if (block) return openClipBlockName('', block[1]!, block[2]!);
  if (canonical.startsWith('vision.post_layernorm.')) return { name: canonical.replace(/^vision\.post_layernorm\./, 'ln_post.') };
  if (canonical === IMAGE_PROJECTION) return { name: 'proj' };
  if (canonical === 'vision.position_embedding') return { name: 'positional_embedding' };
  return { name: canonical };
}

type Names = Pick<ImageTower, 'naming' | 'prefix'>;

/** The initializer a canonical name maps to (for a matrix found from its bias: the matrix's own name), and its part of a fused in_proj. */
function sourceOf(tower: Names, canonical: string): SourceName {
  if (tower.naming === 'clipdex') return { name: canonical };
  if (tower.naming === 'hf') return { name: hfName(canonical) };
  const o = openClipName(canonical);
  return { ...o, name: tower.prefix + o.name };
}

function sourceName(tower: Names, canonical: string): string {
  return sourceOf(tower, canonical).name;
}

function unsupported(message: string): ClipdexError {
  return new ClipdexError('MODEL_UNSUPPORTED', message);
}

export async function readImageTower(modelDir: string): Promise<ImageTower> {
  const spec = await readModelDir(modelDir);
  if (spec.scoreCalibration !== null) {
    throw unsupported(`${spec.dir}: tuning image blocks is built for CLIP image towers (class-token pooling); this is a sigmoid-loss (SigLIP) model, whose image tower pools by attention`);
  }
  const path = join(spec.dir, spec.vision.file);
  const graph = readGraph(await readFile(path));
  const has = (n: string) => graph.initializers.has(n);
  const openClip = openClipPrefix(graph);
  const naming: Naming | null = has('vision.layers.0.layer_norm1.weight') ? 'clipdex' : has('vision_model.encoder.layers.0.layer_norm1.weight') ? 'hf' : openClip !== null ? 'openclip' : null;
  if (!naming) {
    throw unsupported(`${path}: cannot find the image blocks by name (looked for vision.layers.0.layer_norm1.weight, vision_model.encoder.layers.0.layer_norm1.weight and visual.transformer.resblocks.0.ln_1.weight)`);
  }
  const names: Names = { naming, prefix: openClip ?? '' };
  let layers = 0;
  while (has(sourceName(names, `vision.layers.${layers}.layer_norm1.weight`))) layers++;
  const width = graph.initializers.get(sourceName(names, 'vision.layers.0.layer_norm1.weight'))!.dims[0]!;
  const config = await readConfig(spec.dir);
  const tower: ImageTower = { spec, path, graph, ...names, layers, width, heads: 0, embedDim: 0, activations: [], tokens: 0, imageSize: spec.preprocess.size, normalizedOutput: spec.vision.normalized };
  tower.heads = headsOf(tower, config);
  tower.embedDim = locateImage(tower, IMAGE_PROJECTION).dims[1]!;
  tower.tokens = tokensOf(tower);
  // Every tensor, every block's input and activation found now: a graph that cannot be tuned is refused
  // before any photo is encoded, naming what was not found.
  for (const name of imageHeadTensorNames(0, layers)) locateImage(tower, name);
  for (let i = 0; i < layers; i++) {
    imageResidualEntering(tower, i);
    tower.activations.push(blockActivation(graph, path, 'image', i, sourceName(tower, `vision.layers.${i}.mlp.fc1.bias`)));
  }
  return tower;
}

async function readConfig(dir: string): Promise<Record<string, unknown>> {
  try {
    const v: unknown = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/**
 * config.json's `vision_config.num_attention_heads` (Hugging Face), else OpenCLIP's `vision_cfg.head_width`,
 * else the graph's own head split (the Reshape to [0, 0, heads, headDim] after q_proj, where it is a constant),
 * else width/64 (every CLIP ViT has 64-wide heads). A wrong count is caught later: the rebuilt head would not
 * reproduce the tower's output.
 */
function headsOf(tower: ImageTower, config: Record<string, unknown>): number {
  const hf = (config.vision_config ?? {}) as Record<string, unknown>;
  const oc = (config.vision_cfg ?? {}) as Record<string, unknown>;
  const heads =
    typeof hf.num_attention_heads === 'number'
      ? hf.num_attention_heads
      : typeof oc.head_width === 'number'
        ? tower.width / oc.head_width
        : (headsFromGraph(tower) ?? tower.width / 64);
  if (!Number.isInteger(heads) || heads < 1 || tower.width % heads !== 0) {
    throw new ClipdexError('MODEL_INVALID', `${tower.spec.dir}: ${heads} attention heads do not divide the image width ${tower.width}`);
  }
  return heads;
}

/**
 * The head width of the attention's split: the first Reshape to a constant shape whose last entry divides the
 * width (clipdex's and HF's [0, 0, heads, headDim], torch's [L, batch·heads, headDim]) within a few nodes of
 * block 0's q bias (the fused in_proj's, in OpenCLIP's naming).
 */
function headsFromGraph(tower: ImageTower): number | null {
  const g = tower.graph;
  const bias = sourceName(tower, 'vision.layers.0.self_attn.q_proj.bias');
  let frontier = consumers(g, bias).flatMap((n) => n.outputs);
  const seen = new Set(frontier);
  for (let hop = 0; hop < 8 && frontier.length > 0; hop++) {
    const next: string[] = [];
    for (const v of frontier) {
      for (const n of consumers(g, v)) {
        if (n.opType === 'Reshape') {
          const shape = g.initializers.get(n.inputs[1]!);
          const last = shape && shape.dims.length === 1 && shape.dims[0]! >= 3 ? Number((shape.data as BigInt64Array)[shape.dims[0]! - 1]) : 0;
          if (last > 0 && last < tower.width && tower.width % last === 0) return tower.width / last;
        }
        if (n.opType === 'MatMul' || n.opType === 'Softmax') continue;
        for (const o of n.outputs) {
          if (seen.has(o)) continue;
          seen.add(o);
          next.push(o);
        }
      }
    }
    frontier = next;
  }
  return null;
}

/** Positions the blocks run over: the position embedding's rows, else (side / patch)² + 1 from the patch Conv. */
function tokensOf(tower: ImageTower): number {
  const g = tower.graph;
  const pos = g.initializers.get(sourceName(tower, 'vision.position_embedding')) ?? g.initializers.get('vision_model.embeddings.position_embedding.weight');
  if (pos && pos.dims.length === 2 && pos.dims[1] === tower.width) return pos.dims[0]!;
  const conv = g.nodes.find((n) => n.opType === 'Conv' && g.initializers.get(n.inputs[1]!)?.dims.length === 4);
  const patch = conv ? g.initializers.get(conv.inputs[1]!)!.dims[3]! : null;
  if (!patch || tower.imageSize % patch !== 0) throw unsupported(`${tower.path}: cannot tell how many tokens the image tower runs over (no position embedding of width ${tower.width}, no patch Conv)`);
  return (tower.imageSize / patch) ** 2 + 1;
}

/** Where canonical tensor `name` lives in the image tower's graph; MODEL_UNSUPPORTED naming it when it cannot be found. */
export function locateImage(tower: Pick<ImageTower, 'graph' | 'naming' | 'prefix' | 'path'>, name: string): TensorSource {
  return locateSource(tower, 'image tower', { name, source: sourceOf(tower, name), matrix: isImageMatrix(name), projection: name === IMAGE_PROJECTION });
}

/** A canonical tensor's values ([in, out] for matrices), copied out of the graph (out of its third of a fused in_proj). */
export function readImageTensor(tower: ImageTower, name: string): Float32Array {
  const src = locateImage(tower, name);
  return readSource(tower.graph.initializers.get(src.name)!.data as Float32Array, src);
}

/**
 * The initializers these canonical tensors live in, by their names in the tower's graph, with the tuned values
 * written in, in the graph's own layout and dims (a fused in_proj whole, any third not given kept).
 */
export function storedImageTensors(tower: ImageTower, tensors: ReadonlyMap<string, Float32Array>): Map<string, { dims: number[]; data: Float32Array }> {
  return storedTensors(tower.graph, (name) => locateImage(tower, name), tensors);
}

/** The tower's current head tensors for blocks [first, layers): canonical names, [in, out] matrices. */
export function readImageHeadTensors(tower: ImageTower, first: number): Map<string, Float32Array> {
  return new Map(imageHeadTensorNames(first, tower.layers).map((n) => [n, readImageTensor(tower, n)]));
}

/** The value entering block `layer` (the residual stream before its first LayerNorm: a LayerNormalization node's input, or a spelled-out one's). */
export function imageResidualEntering(tower: Pick<ImageTower, 'graph' | 'naming' | 'prefix' | 'path'>, layer: number): string {
  const gamma = sourceName(tower, `vision.layers.${layer}.layer_norm1.weight`);
  const input = layerNormInput(tower.graph, gamma);
  if (input === null) {
    throw unsupported(
      `${tower.path}: cannot find image block ${layer}'s input: ${gamma} is neither the scale of a LayerNormalization node nor the γ of a spelled-out LayerNorm (Mul γ of a Div of a Sub of the input and its ReduceMean)`,
    );
  }
  // The residual is a computed value (or the graph's input): anything else means the graph is not what this reads.
  if (!producer(tower.graph, input) && !tower.graph.inputs.some((v) => v.name === input)) {
    throw unsupported(`${tower.path}: image block ${layer}'s input ${input} is produced by no node`);
  }
  return input;
}
