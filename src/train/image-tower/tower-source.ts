/**
 * A model folder's image tower read as it is, for tuning its last blocks (issue 17, image side): the graph,
 * its sizes, and where each trainable tensor of the last blocks, the post-LayerNorm and the projection lives.
 *
 * Tensors are known here by canonical names — the ones clipdex's `visionGraph` writes
 * (`vision.layers.{i}.self_attn.q_proj.weight` stored [in, out], `vision.post_layernorm.weight`,
 * `visual_projection.weight` [width, embed]) — each mapped to an initializer of the real graph, transposed or
 * not. Two namings are read, as on the text side (text-tower/tower-source.ts):
 *   - clipdex's (both layouts of `models build-tiny`: the layout changes the I/O, not the names);
 *   - Hugging Face's (optimum / transformers.js): `vision_model.encoder.layers.{i}.layer_norm1.weight`,
 *     `….self_attn.q_proj.bias`, `vision_model.post_layernorm.*`, the projection `visual_projection` — matrices
 *     usually anonymous, found from their named bias (tower-graph-lookup.ts).
 * OpenCLIP/Immich exports (`visual.transformer.resblocks.{i}`, q, k, v fused in one `in_proj`) are refused.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { type ModelSpec, readModelDir } from '../../model/model-dir.js';
import { type IrGraph, readGraph } from '../graph-grad/onnx-ir.js';
import { BLOCK_LINEARS, type Naming, type TensorSource, transpose } from '../text-tower/tower-source.js';
import { consumers, type FoundMatrix, lastMatrix, matrixOfBias, producer } from '../tower-graph-lookup.js';

export type { Naming, TensorSource };

export interface ImageTower {
  spec: ModelSpec;
  /** Absolute path of the image tower's ONNX file. */
  path: string;
  graph: IrGraph;
  naming: Naming;
  layers: number;
  width: number;
  heads: number;
  embedDim: number;
  /** 1 class token + the patches. */
  tokens: number;
  /** The pixel input's side. */
  imageSize: number;
  /** The graph's output is L2-normalised inside (OpenCLIP/Immich layout). */
  normalizedOutput: boolean;
}

const BLOCK_NORMS = ['layer_norm1', 'layer_norm2'] as const;
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

function sourceName(naming: Naming, canonical: string): string {
  return naming === 'clipdex' ? canonical : hfName(canonical);
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
  if ([...graph.initializers.keys()].some((n) => /(^|\.)transformer\.resblocks\./.test(n)) || graph.nodes.some((n) => n.inputs.some((v) => /(^|\.)transformer\.resblocks\./.test(v)))) {
    throw unsupported(`${path}: an OpenCLIP export (visual.transformer.resblocks.*, fused in_proj); tuning its image blocks is not supported yet — use the Hugging Face export of the same model`);
  }
  const naming: Naming | null = has('vision.layers.0.layer_norm1.weight') ? 'clipdex' : has('vision_model.encoder.layers.0.layer_norm1.weight') ? 'hf' : null;
  if (!naming) {
    throw unsupported(`${path}: cannot find the image blocks by name (looked for vision.layers.0.layer_norm1.weight and vision_model.encoder.layers.0.layer_norm1.weight)`);
  }
  let layers = 0;
  while (has(sourceName(naming, `vision.layers.${layers}.layer_norm1.weight`))) layers++;
  const width = graph.initializers.get(sourceName(naming, 'vision.layers.0.layer_norm1.weight'))!.dims[0]!;
  const config = await readConfig(spec.dir);
  const tower: ImageTower = { spec, path, graph, naming, layers, width, heads: 0, embedDim: 0, tokens: 0, imageSize: spec.preprocess.size, normalizedOutput: spec.vision.normalized };
  tower.heads = headsOf(tower, config);
  tower.embedDim = locateImage(tower, IMAGE_PROJECTION).dims[1]!;
  tower.tokens = tokensOf(tower);
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

function headsFromGraph(tower: ImageTower): number | null {
  const g = tower.graph;
  const bias = sourceName(tower.naming, 'vision.layers.0.self_attn.q_proj.bias');
  let frontier = consumers(g, bias).flatMap((n) => n.outputs);
  for (let hop = 0; hop < 3; hop++) {
    const next: string[] = [];
    for (const v of frontier) {
      for (const n of consumers(g, v)) {
        if (n.opType === 'Reshape') {
          const shape = g.initializers.get(n.inputs[1]!);
          if (shape && shape.dims[0] === 4) return Number((shape.data as BigInt64Array)[2]);
        }
        if (n.opType === 'Mul' || n.opType === 'Div') next.push(...n.outputs);
      }
    }
    frontier = next;
  }
  return null;
}

/** Positions the blocks run over: the position embedding's rows, else (side / patch)² + 1 from the patch Conv. */
function tokensOf(tower: ImageTower): number {
  const g = tower.graph;
  const pos = g.initializers.get(sourceName(tower.naming, 'vision.position_embedding')) ?? g.initializers.get('vision_model.embeddings.position_embedding.weight');
  if (pos && pos.dims.length === 2 && pos.dims[1] === tower.width) return pos.dims[0]!;
  const conv = g.nodes.find((n) => n.opType === 'Conv' && g.initializers.get(n.inputs[1]!)?.dims.length === 4);
  const patch = conv ? g.initializers.get(conv.inputs[1]!)!.dims[3]! : null;
  if (!patch || tower.imageSize % patch !== 0) throw unsupported(`${tower.path}: cannot tell how many tokens the image tower runs over (no position embedding of width ${tower.width}, no patch Conv)`);
  return (tower.imageSize / patch) ** 2 + 1;
}

/** Where canonical tensor `name` lives in the image tower's graph; MODEL_UNSUPPORTED naming it when it cannot be found. */
export function locateImage(tower: Pick<ImageTower, 'graph' | 'naming' | 'path'>, name: string): TensorSource {
  const g = tower.graph;
  const fail = (why: string) => unsupported(`${tower.path}: cannot locate ${name} in the image tower (${why})`);
  const direct = sourceName(tower.naming, name);
  if (!isImageMatrix(name)) {
    const t = g.initializers.get(direct);
    if (!t) throw fail(`no initializer ${direct}`);
    return { name: direct, transpose: false, dims: [...t.dims] };
  }
  let found: FoundMatrix | null;
  if (g.initializers.has(direct) && tower.naming === 'clipdex') found = { name: direct, transpose: false };
  else if (name === IMAGE_PROJECTION) found = lastMatrix(g);
  else found = matrixOfBias(g, direct.replace(/\.weight$/, '.bias'));
  if (!found) throw fail('no MatMul or Gemm weight found next to its bias');
  const t = g.initializers.get(found.name)!;
  if (t.dims.length !== 2 || t.dtype !== 'float') throw fail(`${found.name} is ${t.dtype} [${t.dims.join(', ')}], not a float matrix`);
  const dims = found.transpose ? [t.dims[1]!, t.dims[0]!] : [...t.dims];
  return { name: found.name, transpose: found.transpose, dims };
}

/** A canonical tensor's values ([in, out] for matrices), copied out of the graph. */
export function readImageTensor(tower: ImageTower, name: string): Float32Array {
  const src = locateImage(tower, name);
  const data = tower.graph.initializers.get(src.name)!.data as Float32Array;
  return src.transpose ? transpose(data, src.dims[1]!, src.dims[0]!) : Float32Array.from(data);
}

/** The tower's current head tensors for blocks [first, layers): canonical names, [in, out] matrices. */
export function readImageHeadTensors(tower: ImageTower, first: number): Map<string, Float32Array> {
  return new Map(imageHeadTensorNames(first, tower.layers).map((n) => [n, readImageTensor(tower, n)]));
}

/** The value entering block `layer` (the residual stream before its first LayerNorm). */
export function imageResidualEntering(tower: ImageTower, layer: number): string {
  const gamma = sourceName(tower.naming, `vision.layers.${layer}.layer_norm1.weight`);
  const ln = consumers(tower.graph, gamma).find((n) => n.opType === 'LayerNormalization');
  if (!ln) {
    throw unsupported(`${tower.path}: image block ${layer}'s first LayerNorm is not a LayerNormalization node (an export older than opset 17 spells it out in ops); re-export with opset 17`);
  }
  // The residual is a computed value (or the graph's input): anything else means the graph is not what this reads.
  if (!producer(tower.graph, ln.inputs[0]!) && !tower.graph.inputs.some((v) => v.name === ln.inputs[0])) {
    throw unsupported(`${tower.path}: image block ${layer}'s input ${ln.inputs[0]} is produced by no node`);
  }
  return ln.inputs[0]!;
}
