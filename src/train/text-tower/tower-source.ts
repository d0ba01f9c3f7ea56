/**
 * A model folder's text tower read as it is, for tuning its last blocks (issue 17): the graph, its sizes,
 * and where each trainable tensor of the last blocks, the final LayerNorm and the projection lives in it.
 *
 * Tensors are known inside this module by canonical names — the ones clipdex's own builder writes
 * (`text.layers.{i}.self_attn.q_proj.weight` stored [in, out], `text.final_layer_norm.weight`,
 * `text_projection.weight` [width, embed]) — and each maps to an initializer of the real graph, or a slice of
 * one, transposed or not (`TensorSource`). Three namings are read:
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
 *   - OpenCLIP's LAION-trained towers use exact GELU (open_clip's default nn.GELU: an Erf), OpenAI's QuickGELU;
 *     the rebuilt head is QuickGELU's, so `readTextTower` refuses the former by name (`quickGeluAfter`).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { type ModelSpec, readModelDir } from '../../model/model-dir.js';
import { type IrGraph, readGraph } from '../graph-grad/onnx-ir.js';
import { consumers, lastMatrix, matrixOfBias, producer } from '../tower-graph-lookup.js';

export type Naming = 'clipdex' | 'hf' | 'openclip';

/** Where a canonical tensor lives in the real graph. */
export interface TensorSource {
  /** The initializer's name in the tower's graph. */
  name: string;
  /** Stored as the transpose of the canonical [in, out] layout (PyTorch's [out, in]). */
  transpose: boolean;
  /** Canonical dims (of the slice, where there is one). */
  dims: number[];
  /**
   * Only part of the initializer (q, k or v of a fused in_proj): elements [from, to) along the canonical
   * output dimension — rows of PyTorch's [out, in] matrix, columns of an [in, out] one, elements of a bias.
   */
  slice?: { from: number; to: number };
}

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

const OPENCLIP_PARTS: readonly (readonly [string, string])[] = [
  ['layer_norm1.', 'ln_1.'],
  ['layer_norm2.', 'ln_2.'],
  ['self_attn.out_proj.', 'attn.out_proj.'],
  ['mlp.fc1.', 'mlp.c_fc.'],
  ['mlp.fc2.', 'mlp.c_proj.'],
];

/** OpenCLIP's name for a canonical tensor; q, k, v name the fused in_proj and say which third (`part`) is theirs. */
function openClipName(canonical: string): { name: string; part?: number } {
  const block = /^text\.layers\.(\d+)\.(.+)$/.exec(canonical);
  if (block) {
    const [, i, rest] = block as unknown as [string, string, string];
    const qkv = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
    if (qkv) return { name: `transformer.resblocks.${i}.attn.in_proj_${qkv[2]}`, part: 'qkv'.indexOf(qkv[1]!) };
    const mapped = OPENCLIP_PARTS.find(([from]) => rest.startsWith(from));
    return { name: `transformer.resblocks.${i}.${mapped ? mapped[1] + rest.slice(mapped[0].length) : rest}` };
  }
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
  const openClip = [...graph.initializers.keys()].map((n) => /^(.*)transformer\.resblocks\.0\.ln_1\.weight$/.exec(n)).find((m) => m !== null);
  const naming: Naming | null = has('text.layers.0.layer_norm1.weight') ? 'clipdex' : has('text_model.encoder.layers.0.layer_norm1.weight') ? 'hf' : openClip ? 'openclip' : null;
  if (!naming) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `${path}: cannot find the text blocks by name (looked for the initializers text.layers.0.layer_norm1.weight, text_model.encoder.layers.0.layer_norm1.weight and transformer.resblocks.0.ln_1.weight)`);
  }
  const prefix = openClip?.[1] ?? '';
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
    contextLength: spec.contextLength,
    normalizedOutput: spec.text.normalized,
  };
  tower.embedDim = locate(tower, 'text_projection.weight').dims[1]!;
  // Every tensor and every block's input found now, so a graph that cannot be tuned is refused before any
  // caption is encoded, naming what was not found.
  for (const name of headTensorNames(0, layers)) locate(tower, name);
  for (let i = 0; i < layers; i++) {
    residualEntering(tower, i);
    quickGeluAfter(tower, i);
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
function sourceName(tower: Names, canonical: string): { name: string; part?: number } {
  if (tower.naming === 'clipdex') return { name: canonical };
  if (tower.naming === 'hf') return { name: hfName(canonical) };
  const o = openClipName(canonical);
  return { ...o, name: tower.prefix + o.name };
}

/** Where canonical tensor `name` lives in the tower's graph; MODEL_UNSUPPORTED naming it, and what was not found, when it cannot be found. */
export function locate(tower: Pick<TextTower, 'graph' | 'naming' | 'prefix' | 'path'>, name: string): TensorSource {
  const g = tower.graph;
  const fail = (why: string) => new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: cannot locate ${name} in the text tower (${why})`);
  const { name: direct, part } = sourceName(tower, name);
  const thirds = (total: number, what: string): { from: number; to: number } => {
    if (total % 3 !== 0) throw fail(`the fused ${what} has ${total} outputs, not 3 × width`);
    return { from: (part! * total) / 3, to: ((part! + 1) * total) / 3 };
  };
  if (!isMatrix(name)) {
    const t = g.initializers.get(direct);
    if (!t) throw fail(`no initializer ${direct}`);
    if (part === undefined) return { name: direct, transpose: false, dims: [...t.dims] };
    const slice = thirds(t.dims[0]!, direct);
    return { name: direct, transpose: false, dims: [slice.to - slice.from], slice };
  }
  let found: { name: string; transpose: boolean } | null = null;
  const bias = direct.replace(/weight$/, 'bias');
  if (name === 'text_projection.weight') {
    // clipdex and OpenCLIP: the named [width, embed] MatMul weight (OpenCLIP's `x @ text_projection`). HF, or
    // no such name: the MatMul after the pooled final LayerNorm (the last MatMul of the graph with an
    // initializer weight), named or not.
    const usedAsIs = g.initializers.has(direct) && (tower.naming === 'clipdex' || consumers(g, direct).some((n) => n.opType === 'MatMul' && n.inputs[1] === direct));
    found = usedAsIs && tower.naming !== 'hf' ? { name: direct, transpose: false } : lastMatrix(g);
    if (!found) throw fail('no MatMul or Gemm with an initializer weight');
  } else if (tower.naming === 'clipdex' && g.initializers.has(direct)) {
    found = { name: direct, transpose: false };
  } else {
    if (!g.initializers.has(bias)) throw fail(`no initializer ${bias}, the bias its matrix is found from`);
    found = matrixOfBias(g, bias);
    if (!found) throw fail(`no MatMul or Gemm with an initializer weight (directly or through a Transpose) feeding the Add of ${bias}`);
  }
  const t = g.initializers.get(found.name)!;
  if (t.dims.length !== 2 || t.dtype !== 'float') throw fail(`${found.name} is ${t.dtype} [${t.dims.join(', ')}], not a float matrix`);
  const dims = found.transpose ? [t.dims[1]!, t.dims[0]!] : [...t.dims];
  if (part === undefined) return { name: found.name, transpose: found.transpose, dims };
  const slice = thirds(dims[1]!, found.name);
  return { name: found.name, transpose: found.transpose, dims: [dims[0]!, slice.to - slice.from], slice };
}

/** A canonical tensor's values ([in, out] for matrices), copied out of the graph. */
export function readTensor(tower: TextTower, name: string): Float32Array {
  const src = locate(tower, name);
  return readSource(tower.graph.initializers.get(src.name)!.data as Float32Array, src);
}

/** The canonical values `src` names inside the initializer's stored values. */
export function readSource(stored: Float32Array, src: TensorSource): Float32Array {
  if (!src.slice) return src.dims.length === 2 && src.transpose ? transpose(stored, src.dims[1]!, src.dims[0]!) : Float32Array.from(stored);
  const { from, to } = src.slice;
  if (src.dims.length === 1) return stored.slice(from, to);
  const [inDim, outDim] = src.dims as [number, number];
  // [out, in] storage: the slice is whole rows, contiguous.
  if (src.transpose) return transpose(stored.subarray(from * inDim, to * inDim), outDim, inDim);
  const total = stored.length / inDim;
  const out = new Float32Array(inDim * outDim);
  for (let i = 0; i < inDim; i++) out.set(stored.subarray(i * total + from, i * total + to), i * outDim);
  return out;
}

/** Writes canonical `values` into the initializer's stored values (`stored` is changed in place). */
export function writeSource(stored: Float32Array, src: TensorSource, values: Float32Array): void {
  const count = src.dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new ClipdexError('INVALID_ARGUMENT', `${values.length} values for ${src.name}${src.slice ? `[${src.slice.from}, ${src.slice.to})` : ''}, which holds ${count}`);
  if (!src.slice) {
    stored.set(src.dims.length === 2 && src.transpose ? transpose(values, src.dims[0]!, src.dims[1]!) : values);
    return;
  }
  const { from } = src.slice;
  if (src.dims.length === 1) {
    stored.set(values, from);
    return;
  }
  const [inDim, outDim] = src.dims as [number, number];
  if (src.transpose) {
    stored.set(transpose(values, inDim, outDim), from * inDim);
    return;
  }
  const total = stored.length / inDim;
  for (let i = 0; i < inDim; i++) stored.set(values.subarray(i * outDim, (i + 1) * outDim), i * total + from);
}

/** [rows, cols] → [cols, rows]. */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/**
 * Refuses a block whose MLP activation is not CLIP's QuickGELU, x·σ(1.702·x), on the output of its first MLP
 * linear: the rebuilt head (and its gradient) is QuickGELU's. OpenCLIP's LAION-trained towers use exact GELU
 * (an Erf); they are named here rather than trained through the wrong activation.
 */
function quickGeluAfter(tower: Pick<TextTower, 'graph' | 'naming' | 'prefix' | 'path'>, layer: number): void {
  const g = tower.graph;
  const bias = sourceName(tower, `text.layers.${layer}.mlp.fc1.bias`).name;
  const hidden = consumers(g, bias).find((n) => n.opType === 'Add')?.outputs[0];
  if (hidden !== undefined) {
    for (const scaled of consumers(g, hidden)) {
      if (scaled.opType !== 'Mul') continue;
      const c = g.initializers.get(scaled.inputs[0] === hidden ? scaled.inputs[1]! : scaled.inputs[0]!);
      if (c?.data.length !== 1 || !(Math.abs(Number(c.data[0]) - 1.702) < 1e-3)) continue;
      const sigmoid = consumers(g, scaled.outputs[0]!).find((n) => n.opType === 'Sigmoid');
      if (sigmoid && consumers(g, sigmoid.outputs[0]!).some((n) => n.opType === 'Mul' && n.inputs.includes(hidden))) return;
    }
  }
  const after = hidden === undefined ? 'no Add of it' : consumers(g, hidden).map((n) => n.opType).join(', ') || 'nothing';
  throw new ClipdexError(
    'MODEL_UNSUPPORTED',
    `${tower.path}: block ${layer}'s MLP activation is not CLIP's QuickGELU x·σ(1.702x) on the Add of ${bias} (it feeds: ${after})${g.nodes.some((n) => n.opType === 'Erf' || n.opType === 'Gelu') ? '; the tower uses exact GELU (Erf), as OpenCLIP\'s LAION-trained towers do, which tuning does not support yet' : ''}`,
  );
}

/**
 * The input of the LayerNorm whose scale is `gamma`: a LayerNormalization node's, or, where an export older
 * than opset 17 spelled it out (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β), the value
 * that both the first ReduceMean and the Sub take, found from γ's Mul backwards (Mul ← Div ← Sub).
 */
function layerNormInput(g: IrGraph, gamma: string): string | null {
  for (const n of consumers(g, gamma)) {
    if (n.opType === 'LayerNormalization' && n.inputs[1] === gamma) return n.inputs[0]!;
    if (n.opType !== 'Mul') continue;
    const div = producer(g, n.inputs[0] === gamma ? n.inputs[1]! : n.inputs[0]!);
    if (div?.opType !== 'Div') continue;
    const sub = producer(g, div.inputs[0]!);
    if (sub?.opType !== 'Sub') continue;
    const mean = producer(g, sub.inputs[1]!);
    if (mean?.opType === 'ReduceMean' && mean.inputs[0] === sub.inputs[0]) return sub.inputs[0]!;
  }
  return null;
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
