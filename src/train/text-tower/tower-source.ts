/**
 * A model folder's text tower read as it is, for tuning its last blocks (issue 17): the graph, its sizes,
 * and where each trainable tensor of the last blocks, the final LayerNorm and the projection lives in it.
 *
 * Tensors are known inside this module by canonical names — the ones clipdex's own builder writes
 * (`text.layers.{i}.self_attn.q_proj.weight` stored [in, out], `text.final_layer_norm.weight`,
 * `text_projection.weight` [width, embed]) — and each maps to an initializer of the real graph, or a slice of
 * one, transposed or not (`TensorSource`, tower-naming.ts). Three namings are read:
 *   - clipdex's (what `models build-tiny` writes in BOTH layouts: the layout changes the I/O, not the names);
 *   - Hugging Face's (optimum / transformers.js exports): `text_model.encoder.layers.{i}.layer_norm1.weight`,
 *     `….self_attn.q_proj.bias`, `text_model.final_layer_norm.*`. Their matrices are usually anonymous
 *     (`onnx::MatMul_1234`: torch folds the transpose into a new constant), so a matrix is found from its
 *     named bias: the Add that adds the bias, the MatMul (or Gemm) feeding it, that node's weight (directly or
 *     through a Transpose);
 *   - OpenCLIP's (Immich's `textual/model.onnx`, open_clip's own export): `transformer.resblocks.{i}.ln_1`,
 *     `ln_2`, `attn.out_proj`, `mlp.c_fc`, `mlp.c_proj`, `ln_final`, `text_projection` (a bare [width, embed]
 *     parameter used as `x @ text_projection`, no bias), with an optional prefix (`text.` in CustomTextCLIP).
 *     q, k and v are ONE nn.MultiheadAttention `in_proj_weight` [3·width, width] (PyTorch's [out, in]) and
 *     `in_proj_bias` [3·width]: canonical q, k, v are its rows [0, w), [w, 2w), [2w, 3w) and the bias's same
 *     elements, found from the named bias like Hugging Face's matrices.
 *
 * What real OpenCLIP exports look like (read 2026-12 with the code search, not from a downloaded file):
 *   - Immich's exporter (immich-app/immich, machine-learning/export/immich_model_exporter/exporters/onnx/
 *     models/openclip.py) calls `torch.backends.mha.set_fastpath_enabled(False)` — the fused
 *     `aten::_native_multi_head_attention` has no ONNX symbolic (pytorch/pytorch#143107) — then exports
 *     `model.encode_text(text, normalize=True)` with the TorchScript exporter (constant folding on), input
 *     `text` int32 [1, 77], output `embedding`. Its clean-up globs (exporters/constants.py: `*onnx*`,
 *     `*.weight`, `*.bias`, `*in_proj_bias`) are the names of the external-data files it writes: named
 *     biases and LayerNorms, `in_proj_bias` under its own name, and the matrices as anonymous
 *     `onnx::MatMul_*` constants (torch folded `in_proj_weight`ᵀ into a new [width, 3·width] one).
 *   - So attention runs through torch.nn.functional's `_in_projection_packed`: for self-attention it is ONE
 *     `linear(x, in_proj_weight, in_proj_bias)` (MatMul by the weight's transpose, then Add of the bias), split
 *     into q, k, v after the bias: by `chunk(3, dim=-1)` (a Split) in older torch, by
 *     `unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2).squeeze(-2)` and `[0]`, `[1]`, `[2]` (Reshape,
 *     Unsqueeze, Transpose, Squeeze, Gather) since torch 1.13. How it is split does not matter here: only the
 *     Add of the bias and the MatMul feeding it are followed.
 *   - Exports older than opset 17 have no LayerNormalization: torch spells it out as ReduceMean, Sub, Pow,
 *     ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β (`residualEntering` follows γ's Mul back to the Sub's input).
 *   - OpenCLIP's LAION-trained towers use exact GELU (open_clip's default nn.GELU: Div √2, Erf, Add 1, Mul, Mul
 *     0.5, or a Gelu node from opset 20), OpenAI's QuickGELU: `readTextTower` finds each block's
 *     (`activations`, tower-naming.ts' `blockActivation`) and the head is rebuilt with it; any other is
 *     refused, naming what the first MLP linear feeds.
 * The finding itself (slices of a fused in_proj, spelled-out LayerNorms, the activation) is tower-naming.ts',
 * shared with the image side.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { type ModelSpec, readModelDir } from '../../model/model-dir.js';
import type { MlpActivation } from '../../model/clip-architecture.js';
import { type IrGraph, readGraph } from '../graph-grad/onnx-ir.js';
import { BLOCK_LINEARS, BLOCK_NORMS, blockActivation, layerNormInput, locateSource, type Naming, openClipBlockName, openClipPrefix, readSource, type SourceName, type TensorSource, transpose, writeSource } from '../tower-naming.js';

export type { Naming, TensorSource };
export { BLOCK_LINEARS, readSource, transpose, writeSource };

export interface TextTower {
  spec: ModelSpec;
  /** Absolute path of the text tower's ONNX file. */
  path: string;
  graph: IrGraph;
  naming: Naming;
  /** What OpenCLIP's names start with before `transformer.resblocks.` ('' in a plain CLIP; unused by the other namings). */
  prefix: string;
  layers: number;
  width: number;
  heads: number;
  embedDim: number;
  /** Each block's MLP activation (QuickGELU, or exact GELU in LAION-trained OpenCLIP towers). */
  activations: MlpActivation[];
  contextLength: number;
  /** The graph's output is L2-normalised inside (OpenCLIP/Immich layout). */
  normalizedOutput: boolean;
}


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

/** OpenCLIP's name for a canonical tensor (before the prefix); q, k, v name the fused in_proj and say which third (`part`) is theirs. */
function openClipName(canonical: string): SourceName {
  const block = /^text\.layers\.(\d+)\.(.+)$/.exec(canonical);
  if (block) return openClipBlockName('', block[1]!, block[2]!);
  if (canonical.startsWith('text.final_layer_norm.')) return { name: canonical.replace(/^text\.final_layer_norm\./, 'ln_final.') };
  if (canonical === 'text_projection.weight') return { name: 'text_projection' };
  return { name: canonical };
}

export async function readTextTower(modelDir: string): Promise<TextTower> {
  const spec = await readModelDir(modelDir);
  if (spec.tokenizer.kind !== 'clip' || spec.scoreCalibration !== null) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${spec.dir}: tuning text blocks is built for CLIP text towers (BPE tokenizer, end-token pooling); this model is not one`);
  }
  const path = join(spec.dir, spec.text.file);
  const graph = readGraph(await readFile(path));
  const has = (n: string) => graph.initializers.has(n);
  // OpenCLIP's blocks, under whatever prefix the exported module put before them.
  const openClip = openClipPrefix(graph);
  const naming: Naming | null = has('text.layers.0.layer_norm1.weight') ? 'clipdex' : has('text_model.encoder.layers.0.layer_norm1.weight') ? 'hf' : openClip !== null ? 'openclip' : null;
  if (!naming) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${path}: cannot find the text blocks by name (looked for the initializers text.layers.0.layer_norm1.weight, text_model.encoder.layers.0.layer_norm1.weight and transformer.resblocks.0.ln_1.weight)`);
  }
  const prefix = openClip ?? '';
  const named = (canonical: string) => sourceName({ naming, prefix }, canonical).name;
  let layers = 0;
  while (has(named(`text.layers.${layers}.layer_norm1.weight`))) layers++;
  const width = graph.initializers.get(named('text.layers.0.layer_norm1.weight'))!.dims[0]!;
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
    prefix,
    layers,
    width,
    heads,
    embedDim: 0,
    activations: [],
    contextLength: spec.contextLength,
    normalizedOutput: spec.text.normalized,
  };
  tower.embedDim = locate(tower, 'text_projection.weight').dims[1]!;
  // Every tensor and every block's input found now, so a graph that cannot be tuned is refused before any
  // caption is encoded, naming what was not found.
  for (const name of headTensorNames(0, layers)) locate(tower, name);
  for (let i = 0; i < layers; i++) {
    residualEntering(tower, i);
    tower.activations.push(blockActivation(graph, path, 'text', i, sourceName(tower, `text.layers.${i}.mlp.fc1.bias`).name));
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

type Names = Pick<TextTower, 'naming' | 'prefix'>;

/** The initializer a canonical name maps to (for a matrix found from its bias: the matrix's own name), and its part of a fused in_proj. */
function sourceName(tower: Names, canonical: string): SourceName {
  if (tower.naming === 'clipdex') return { name: canonical };
  if (tower.naming === 'hf') return { name: hfName(canonical) };
  const o = openClipName(canonical);
  return { ...o, name: tower.prefix + o.name };
}

/** Where canonical tensor `name` lives in the tower's graph; MODEL_UNSUPPORTED naming it, and what was not found, when it cannot be found. */
export function locate(tower: Pick<TextTower, 'graph' | 'naming' | 'prefix' | 'path'>, name: string): TensorSource {
  return locateSource(tower, 'text tower', { name, source: sourceName(tower, name), matrix: isMatrix(name), projection: name === 'text_projection.weight' });
}

/** A canonical tensor's values ([in, out] for matrices), copied out of the graph. */
export function readTensor(tower: TextTower, name: string): Float32Array {
  const src = locate(tower, name);
  return readSource(tower.graph.initializers.get(src.name)!.data as Float32Array, src);
}

/** The value entering block `layer` (the residual stream before its first LayerNorm). */
export function residualEntering(tower: Pick<TextTower, 'graph' | 'naming' | 'prefix' | 'path'>, layer: number): string {
  const gamma = sourceName(tower, `text.layers.${layer}.layer_norm1.weight`).name;
  const input = layerNormInput(tower.graph, gamma);
  if (input === null) {
    throw new ClipdexError(
      'MODEL_UNSUPPORTED',
      `${tower.path}: cannot find block ${layer}'s input: ${gamma} is neither the scale of a LayerNormalization node nor the γ of a spelled-out LayerNorm (Mul γ of a Div of a Sub of the input and its ReduceMean)`,
    );
  }
  return input;
}
