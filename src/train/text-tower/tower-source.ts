/**
 * A model folder's text tower read as it is, for tuning its last blocks (issue 17): the graph, its sizes,
 * and where each trainable tensor of the last blocks, the final LayerNorm and the projection lives in it.
 *
 * Tensors are known inside this module by canonical names — the ones clipdex's own builder writes
 * (`text.layers.{i}.self_attn.q_proj.weight` stored [in, out], `text.final_layer_norm.weight`,
 * `text_projection.weight` [width, embed]) — and each maps to an initializer of the real graph, transposed
 * or not. Two namings are read:
 *   - clipdex's (what `models build-tiny` writes in BOTH layouts: the layout changes the I/O, not the names);
 *   - Hugging Face's (optimum / transformers.js exports): `text_model.encoder.layers.{i}.layer_norm1.weight`,
 *     `….self_attn.q_proj.bias`, `text_model.final_layer_norm.*`. Their matrices are usually anonymous
 *     (`onnx::MatMul_1234`: torch folds the transpose into a new constant), so a matrix is found from its
 *     named bias: the Add that adds the bias, the MatMul (or Gemm) feeding it, that node's weight.
 * OpenCLIP/Immich exports name blocks `transformer.resblocks.{i}` with q, k, v fused into one `in_proj`
 * matrix; they are refused with a message saying so (not built yet).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { type ModelSpec, readModelDir } from '../../model/model-dir.js';
import { type IrGraph, type IrNode, readGraph } from '../graph-grad/onnx-ir.js';

export type Naming = 'clipdex' | 'hf';

/** Where a canonical tensor lives in the real graph. */
export interface TensorSource {
  /** The initializer's name in the tower's graph. */
  name: string;
  /** Stored as the transpose of the canonical [in, out] layout (PyTorch's [out, in]). */
  transpose: boolean;
  /** Canonical dims. */
  dims: number[];
}

export interface TextTower {
  spec: ModelSpec;
  /** Absolute path of the text tower's ONNX file. */
  path: string;
  graph: IrGraph;
  naming: Naming;
  layers: number;
  width: number;
  heads: number;
  embedDim: number;
  contextLength: number;
  /** The graph's output is L2-normalised inside (OpenCLIP/Immich layout). */
  normalizedOutput: boolean;
}

export const BLOCK_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2'] as const;
const BLOCK_NORMS = ['layer_norm1', 'layer_norm2'] as const;

/** The canonical names of the tensors that tuning blocks [first, layers) touches, in a fixed order. */
export function headTensorNames(first: number, layers: number): string[] {
  const names: string[] = [];
  for (let i = first; i < layers; i++) {
    const p = `text.layers.${i}`;
    for (const ln of BLOCK_NORMS) names.push(`${p}.${ln}.weight`, `${p}.${ln}.bias`);
    for (const lin of BLOCK_LINEARS) names.push(`${p}.${lin}.weight`, `${p}.${lin}.bias`);
  }
  names.push('text.final_layer_norm.weight', 'text.final_layer_norm.bias', 'text_projection.weight');
  return names;
}

/** The canonical [in, out] dims of a head tensor. */
export function canonicalDims(name: string, width: number, embedDim: number): number[] {
  if (name === 'text_projection.weight') return [width, embedDim];
  const fc1 = name.includes('.mlp.fc1.');
  const fc2 = name.includes('.mlp.fc2.');
  if (name.endsWith('.weight') && /\.(self_attn|mlp)\./.test(name)) return [fc2 ? 4 * width : width, fc1 ? 4 * width : width];
  return [fc1 ? 4 * width : width];
}

/** 2-D tensors: what LoRA updates; 1-D ones (LayerNorms, biases) are tuned in full in every mode. */
export function isMatrix(name: string): boolean {
  return name === 'text_projection.weight' || (name.endsWith('.weight') && /\.(self_attn|mlp)\./.test(name));
}

function hfName(canonical: string): string {
  if (canonical.startsWith('text.layers.')) return canonical.replace(/^text\.layers\./, 'text_model.encoder.layers.');
  if (canonical.startsWith('text.final_layer_norm.')) return canonical.replace(/^text\./, 'text_model.');
  return canonical;
}

export async function readTextTower(modelDir: string): Promise<TextTower> {
  const spec = await readModelDir(modelDir);
  if (spec.tokenizer.kind !== 'clip' || spec.scoreCalibration !== null) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${spec.dir}: tuning text blocks is built for CLIP text towers (BPE tokenizer, end-token pooling); this model is not one`);
  }
  const path = join(spec.dir, spec.text.file);
  const graph = readGraph(await readFile(path));
  const has = (n: string) => graph.initializers.has(n);
  if (graph.nodes.some((n) => /^transformer\.resblocks\./.test(n.inputs.join(' '))) || [...graph.initializers.keys()].some((n) => n.startsWith('transformer.resblocks.'))) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${path}: an OpenCLIP export (transformer.resblocks.*, fused in_proj); tuning its text blocks is not supported yet — use the Hugging Face export of the same model`);
  }
  const naming: Naming | null = has('text.layers.0.layer_norm1.weight') ? 'clipdex' : has('text_model.encoder.layers.0.layer_norm1.weight') ? 'hf' : null;
  if (!naming) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${path}: cannot find the text blocks by name (looked for text.layers.0.layer_norm1.weight and text_model.encoder.layers.0.layer_norm1.weight)`);
  }
  let layers = 0;
  while (has(sourceName(naming, `text.layers.${layers}.layer_norm1.weight`))) layers++;
  const width = graph.initializers.get(sourceName(naming, 'text.layers.0.layer_norm1.weight'))!.dims[0]!;
  const config = await readConfig(spec.dir);
  const textConfig = (config.text_config ?? config.text_cfg ?? {}) as Record<string, unknown>;
  const configured = textConfig.num_attention_heads ?? textConfig.heads;
  // Every CLIP text tower has 64-wide heads (512/8, 768/12, 1024/16): the fallback when no config says.
  const heads = typeof configured === 'number' ? configured : width / 64;
  if (!Number.isInteger(heads) || heads < 1 || width % heads !== 0) {
    throw new ClipdexError('MODEL_INVALID', `${spec.dir}: ${heads} attention heads do not divide the text width ${width}`);
  }
  const tower: TextTower = {
    spec,
    path,
    graph,
    naming,
    layers,
    width,
    heads,
    embedDim: 0,
    contextLength: spec.contextLength,
    normalizedOutput: spec.text.normalized,
  };
  tower.embedDim = locate(tower, 'text_projection.weight').dims[1]!;
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

function sourceName(naming: Naming, canonical: string): string {
  return naming === 'clipdex' ? canonical : hfName(canonical);
}

function consumers(g: IrGraph, value: string): IrNode[] {
  return g.nodes.filter((n) => n.inputs.includes(value));
}

function producer(g: IrGraph, value: string): IrNode | undefined {
  return g.nodes.find((n) => n.outputs.includes(value));
}

/** An initializer used as a MatMul/Gemm weight: directly, or through a Transpose node. */
function weightBehind(g: IrGraph, value: string, transB: boolean): { name: string; transpose: boolean } | null {
  if (g.initializers.has(value)) return { name: value, transpose: transB };
  const p = producer(g, value);
  if (p?.opType === 'Transpose' && g.initializers.has(p.inputs[0]!)) {
    const perm = p.attrs.perm as number[] | undefined;
    if (perm === undefined || (perm[0] === 1 && perm[1] === 0)) return { name: p.inputs[0]!, transpose: !transB };
  }
  return null;
}

/** The matrix multiplied into the value to which `bias` is added. */
function matrixOfBias(g: IrGraph, bias: string): { name: string; transpose: boolean } | null {
  for (const n of consumers(g, bias)) {
    if (n.opType === 'Gemm' && n.inputs[2] === bias) return weightBehind(g, n.inputs[1]!, n.attrs.transB === 1);
    if (n.opType !== 'Add') continue;
    const other = n.inputs[0] === bias ? n.inputs[1]! : n.inputs[0]!;
    const p = producer(g, other);
    if (p?.opType === 'MatMul') return weightBehind(g, p.inputs[1]!, false);
  }
  return null;
}

/** Where canonical tensor `name` lives in the tower's graph; MODEL_UNSUPPORTED naming it when it cannot be found. */
export function locate(tower: Pick<TextTower, 'graph' | 'naming' | 'path'>, name: string): TensorSource {
  const g = tower.graph;
  const fail = (why: string) => new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: cannot locate ${name} in the text tower (${why})`);
  const direct = sourceName(tower.naming, name);
  if (!isMatrix(name)) {
    const t = g.initializers.get(direct);
    if (!t) throw fail(`no initializer ${direct}`);
    return { name: direct, transpose: false, dims: [...t.dims] };
  }
  let found: { name: string; transpose: boolean } | null = null;
  if (name === 'text_projection.weight') {
    // clipdex: the named [width, embed] MatMul weight. HF: the MatMul after the pooled final LayerNorm
    // (the last MatMul of the graph with an initializer weight), named or not.
    const last = [...g.nodes].reverse().find((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && weightBehind(g, n.inputs[1]!, n.attrs.transB === 1));
    found = g.initializers.has(direct) && tower.naming === 'clipdex' ? { name: direct, transpose: false } : last ? weightBehind(g, last.inputs[1]!, last.attrs.transB === 1) : null;
  } else if (tower.naming === 'clipdex' && g.initializers.has(direct)) {
    found = { name: direct, transpose: false };
  } else {
    found = matrixOfBias(g, direct.replace(/\.weight$/, '.bias'));
  }
  if (!found) throw fail('no MatMul or Gemm weight found next to its bias');
  const t = g.initializers.get(found.name)!;
  if (t.dims.length !== 2 || t.dtype !== 'float') throw fail(`${found.name} is ${t.dtype} [${t.dims.join(', ')}], not a float matrix`);
  const dims = found.transpose ? [t.dims[1]!, t.dims[0]!] : [...t.dims];
  return { name: found.name, transpose: found.transpose, dims };
}

/** A canonical tensor's values ([in, out] for matrices), copied out of the graph. */
export function readTensor(tower: TextTower, name: string): Float32Array {
  const src = locate(tower, name);
  const data = tower.graph.initializers.get(src.name)!.data as Float32Array;
  return src.transpose ? transpose(data, src.dims[1]!, src.dims[0]!) : Float32Array.from(data);
}

/** [rows, cols] → [cols, rows]. */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** The value entering block `layer` (the residual stream before its first LayerNorm). */
export function residualEntering(tower: TextTower, layer: number): string {
  const gamma = sourceName(tower.naming, `text.layers.${layer}.layer_norm1.weight`);
  const ln = consumers(tower.graph, gamma).find((n) => n.opType === 'LayerNormalization');
  if (!ln) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: block ${layer}'s first LayerNorm is not a LayerNormalization node (an export older than opset 17 spells it out in ops); re-export with opset 17`);
  }
  return ln.inputs[0]!;
}
