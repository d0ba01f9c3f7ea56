/**
 * What the text and the image tower sources (text-tower/tower-source.ts, image-tower/tower-source.ts) share
 * to find a CLIP tower's tensors in a real export, whichever tower it is:
 *   - canonical names → the graph's: OpenCLIP's block names (`transformer.resblocks.{i}.ln_1`, `attn.out_proj`,
 *     `mlp.c_fc`, `mlp.c_proj`; q, k, v as thirds of the fused nn.MultiheadAttention `in_proj_weight`
 *     [3·width, width] and `in_proj_bias`), `openClipBlockName`;
 *   - where a canonical tensor lives (`locateSource`): an initializer, transposed or not, or a slice of one
 *     (`TensorSource`), matrices found from their named bias (tower-graph-lookup.ts) or, the projection, by
 *     name or as the graph's last matrix; its values read and written through the slice (`readSource`,
 *     `writeSource`, `storedTensors`);
 *   - a block's input: the input of its first LayerNorm, a LayerNormalization node or the spelled-out
 *     pattern of exports older than opset 17 (`layerNormInput`);
 *   - a block's MLP activation (`mlpActivation`): QuickGELU x·σ(1.702x) (OpenAI's CLIP), exact GELU (open_clip's
 *     nn.GELU in LAION-trained towers: torch.onnx's Div √2 / Erf / Add 1 / Mul x / Mul 0.5, the Muls in either
 *     order, or a Gelu node from opset 20), so the rebuilt head uses the same one.
 */
import { ClipdexError } from '../errors.js';
import type { MlpActivation } from '../model/clip-architecture.js';
import type { IrGraph } from './graph-grad/onnx-ir.js';
import { consumers, type FoundMatrix, lastMatrix, matrixOfBias, producer } from './tower-graph-lookup.js';

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

/** A canonical tensor's name in the graph; q, k, v name the fused in_proj and say which third (`part`) is theirs. */
export interface SourceName {
  name: string;
  part?: number;
}

export const BLOCK_LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2'] as const;
export const BLOCK_NORMS = ['layer_norm1', 'layer_norm2'] as const;

const OPENCLIP_PARTS: readonly (readonly [string, string])[] = [
  ['layer_norm1.', 'ln_1.'],
  ['layer_norm2.', 'ln_2.'],
  ['self_attn.out_proj.', 'attn.out_proj.'],
  ['mlp.fc1.', 'mlp.c_fc.'],
  ['mlp.fc2.', 'mlp.c_proj.'],
];

/** OpenCLIP's name of `rest` (`self_attn.q_proj.weight`, `layer_norm1.bias`, …) in block `layer`, after `prefix`. */
export function openClipBlockName(prefix: string, layer: string | number, rest: string): SourceName {
  const block = `${prefix}transformer.resblocks.${layer}`;
  const qkv = /^self_attn\.([qkv])_proj\.(weight|bias)$/.exec(rest);
  if (qkv) return { name: `${block}.attn.in_proj_${qkv[2]}`, part: 'qkv'.indexOf(qkv[1]!) };
  const mapped = OPENCLIP_PARTS.find(([from]) => rest.startsWith(from));
  return { name: `${block}.${mapped ? mapped[1] + rest.slice(mapped[0].length) : rest}` };
}

/** What OpenCLIP's names start with before `transformer.resblocks.0.ln_1.weight` in this graph, or null when there is none. */
export function openClipPrefix(g: IrGraph): string | null {
  for (const n of g.initializers.keys()) {
    const m = /^(.*)transformer\.resblocks\.0\.ln_1\.weight$/.exec(n);
    if (m) return m[1]!;
  }
  return null;
}

export interface LocateRequest {
  /** The canonical name (for messages). */
  name: string;
  /** Its initializer's name (for a matrix found from its bias: the matrix's own) and part of a fused in_proj. */
  source: SourceName;
  /** 2-D: found by name (clipdex), else from its named bias. */
  matrix: boolean;
  /** The projection: a bare matrix used as `x @ proj` (no bias), by name, else the graph's last matrix. */
  projection: boolean;
}

/** Where a canonical tensor lives in `tower.graph`; MODEL_UNSUPPORTED naming it, and what was not found, when it cannot be found. */
export function locateSource(tower: { graph: IrGraph; naming: Naming; path: string }, what: string, r: LocateRequest): TensorSource {
  const g = tower.graph;
  const fail = (why: string) => new ClipdexError('MODEL_UNSUPPORTED', `${tower.path}: cannot locate ${r.name} in the ${what} (${why})`);
  const { name: direct, part } = r.source;
  const thirds = (total: number, fused: string): { from: number; to: number } => {
    if (total % 3 !== 0) throw fail(`the fused ${fused} has ${total} outputs, not 3 × width`);
    return { from: (part! * total) / 3, to: ((part! + 1) * total) / 3 };
  };
  if (!r.matrix) {
    const t = g.initializers.get(direct);
    if (!t) throw fail(`no initializer ${direct}`);
    if (part === undefined) return { name: direct, transpose: false, dims: [...t.dims] };
    const slice = thirds(t.dims[0]!, direct);
    return { name: direct, transpose: false, dims: [slice.to - slice.from], slice };
  }
  let found: FoundMatrix | null = null;
  const bias = direct.replace(/weight$/, 'bias');
  if (r.projection) {
    // clipdex and OpenCLIP: the named [width, embed] MatMul weight (OpenCLIP's `x @ proj`). HF, or no such
    // name: the MatMul after the pooled final LayerNorm (the last MatMul of the graph with an initializer
    // weight), named or not.
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

/**
 * The initializers these canonical tensors live in, by their names in the tower's graph, with the tuned values
 * written in: in the graph's own layout and dims, whole (a fused in_proj keeps any third not given here).
 */
export function storedTensors(graph: IrGraph, locate: (name: string) => TensorSource, tensors: ReadonlyMap<string, Float32Array>): Map<string, { dims: number[]; data: Float32Array }> {
  const out = new Map<string, { dims: number[]; data: Float32Array }>();
  for (const [name, data] of tensors) {
    const src = locate(name);
    let stored = out.get(src.name);
    if (!stored) {
      const t = graph.initializers.get(src.name)!;
      stored = { dims: [...t.dims], data: Float32Array.from(t.data as Float32Array) };
      out.set(src.name, stored);
    }
    try {
      writeSource(stored.data, src, data);
    } catch (err) {
      throw new ClipdexError('INVALID_ARGUMENT', `tuned ${name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out;
}

/** [rows, cols] → [cols, rows]. */
export function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/**
 * The input of the LayerNorm whose scale is `gamma`: a LayerNormalization node's, or, where an export older
 * than opset 17 spelled it out (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β), the value
 * that both the first ReduceMean and the Sub take, found from γ's Mul backwards (Mul ← Div ← Sub).
 */
export function layerNormInput(g: IrGraph, gamma: string): string | null {
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

/** The value of a one-element float initializer, or null. */
function constant(g: IrGraph, value: string): number | null {
  const c = g.initializers.get(value);
  return c?.data.length === 1 && (c.dtype === 'float' || c.dtype === 'double') ? Number(c.data[0]) : null;
}

const near = (v: number | null, want: number) => v !== null && Math.abs(v - want) < 1e-3 * Math.abs(want);

/** The other input of a two-input node. */
const other = (inputs: readonly string[], one: string) => (inputs[0] === one ? inputs[1]! : inputs[0]!);

/**
 * The MLP activation applied to `hidden` (the first MLP linear's output, the Add of its bias), or, when it is
 * none this reads, what `hidden` feeds (for the refusal). QuickGELU: Mul(x, Sigmoid(Mul(x, 1.702))). Exact
 * GELU: a Gelu node without the tanh approximation, or Erf(x / √2 — a Div by √2 or a Mul by 1/√2) + 1 times
 * x and 0.5, in either order: Mul(Mul(x, e), 0.5), Mul(Mul(e, 0.5), x), Mul(e, Mul(x, 0.5)).
 */
export function mlpActivation(g: IrGraph, hidden: string): MlpActivation | { feeds: string } {
  const uses = consumers(g, hidden);
  for (const n of uses) {
    if (n.opType === 'Gelu' && (n.attrs.approximate === undefined || n.attrs.approximate === 'none')) return 'gelu';
    if (n.opType === 'Mul' && near(constant(g, other(n.inputs, hidden)), 1.702)) {
      const sigmoid = consumers(g, n.outputs[0]!).find((s) => s.opType === 'Sigmoid');
      if (sigmoid && consumers(g, sigmoid.outputs[0]!).some((m) => m.opType === 'Mul' && m.inputs.includes(hidden))) return 'quick_gelu';
    }
    const scaled = (n.opType === 'Div' && n.inputs[0] === hidden && near(constant(g, n.inputs[1]!), Math.SQRT2)) || (n.opType === 'Mul' && near(constant(g, other(n.inputs, hidden)), Math.SQRT1_2));
    if (!scaled) continue;
    for (const erf of consumers(g, n.outputs[0]!).filter((e) => e.opType === 'Erf')) {
      for (const plus of consumers(g, erf.outputs[0]!).filter((a) => a.opType === 'Add' && near(constant(g, other(a.inputs, erf.outputs[0]!)), 1))) {
        const e = plus.outputs[0]!;
        const halfOfX = (v: string) => {
          const p = producer(g, v);
          return p?.opType === 'Mul' && p.inputs.includes(hidden) && near(constant(g, other(p.inputs, hidden)), 0.5);
        };
        for (const m1 of consumers(g, e).filter((m) => m.opType === 'Mul')) {
          const o1 = other(m1.inputs, e);
          if (halfOfX(o1)) return 'gelu';
          const wants = o1 === hidden ? 'half' : near(constant(g, o1), 0.5) ? 'x' : null;
          if (wants === null) continue;
          for (const m2 of consumers(g, m1.outputs[0]!).filter((m) => m.opType === 'Mul')) {
            const o2 = other(m2.inputs, m1.outputs[0]!);
            if (wants === 'half' ? near(constant(g, o2), 0.5) : o2 === hidden) return 'gelu';
          }
        }
      }
    }
  }
  return { feeds: uses.map((n) => n.opType).join(', ') || 'nothing' };
}

/**
 * Block `layer`'s MLP activation, found after the Add of its first MLP linear's bias (`fc1Bias`, the name in
 * the graph); MODEL_UNSUPPORTED naming what it is instead.
 */
export function blockActivation(g: IrGraph, path: string, what: string, layer: number, fc1Bias: string): MlpActivation {
  const hidden = consumers(g, fc1Bias).find((n) => n.opType === 'Add' || n.opType === 'Gemm')?.outputs[0];
  const found = hidden === undefined ? { feeds: `no Add of ${fc1Bias}` } : mlpActivation(g, hidden);
  if (typeof found === 'string') return found;
  const tanh = g.nodes.some((n) => n.opType === 'Gelu' && n.attrs.approximate === 'tanh');
  throw new ClipdexError(
    'MODEL_UNSUPPORTED',
    `${path}: ${what} block ${layer}'s MLP activation on the Add of ${fc1Bias} is neither CLIP's QuickGELU x·σ(1.702x) nor exact GELU 0.5·x·(1 + erf(x/√2)) (it feeds: ${found.feeds})${tanh ? '; the tower uses the tanh approximation of GELU, which tuning does not support' : ''}`,
  );
}
