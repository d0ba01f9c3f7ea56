/**
 * What the text head's and the image head's training graphs share (text-tower/head-graph.ts,
 * image-tower/head-graph.ts): each rebuilds its tower's last blocks from the initializers, and then both
 * score the same way and are pulled towards the same place —
 *   logits = e^s · images·textsᵀ (n × m, `logit_scale` = s a learnable initializer)
 *   contrastive = ½(CE_rows(logits, Q/rowsum) + CE_cols(logits, Q/colsum))   (multi-positive symmetric InfoNCE)
 *   loss = contrastive + λ·Σ|θ − θ0|²
 * — and both may train low-rank updates (LoRA) of their matrices instead of the matrices.
 */
import type { BlockWeights, LinearWeights, MlpActivation } from '../model/clip-architecture.js';
import type { FloatTypeName, GraphBuilder } from '../model/onnx-graph.js';
import type { IrGraph, IrTensor } from './graph-grad/onnx-ir.js';

export const LOGIT_SCALE = 'logit_scale';

export const loraA = (name: string) => `${name}.lora_a`;
export const loraB = (name: string) => `${name}.lora_b`;

/** Canonical name → values ([in, out] for matrices). */
export type HeadTensors = ReadonlyMap<string, Float32Array>;

export function headTensor(t: HeadTensors, name: string): Float32Array {
  const v = t.get(name);
  if (!v) throw new Error(`head tensor ${name} missing`);
  return v;
}

/** Block `prefix` (`text.layers.3`, `vision.layers.11`) as clip-onnx-graph's `transformerBlock` takes it, with its MLP activation. */
export function blockWeights(t: HeadTensors, prefix: string, width: number, activation: MlpActivation = 'quick_gelu'): BlockWeights {
  const lin = (n: string, inDim: number, outDim: number): LinearWeights => ({ w: headTensor(t, `${prefix}.${n}.weight`), b: headTensor(t, `${prefix}.${n}.bias`), inDim, outDim });
  const ln = (n: string) => ({ gamma: headTensor(t, `${prefix}.${n}.weight`), beta: headTensor(t, `${prefix}.${n}.bias`) });
  return {
    activation,
    ln1: ln('layer_norm1'),
    q: lin('self_attn.q_proj', width, width),
    k: lin('self_attn.k_proj', width, width),
    v: lin('self_attn.v_proj', width, width),
    out: lin('self_attn.out_proj', width, width),
    ln2: ln('layer_norm2'),
    fc1: lin('mlp.fc1', width, 4 * width),
    fc2: lin('mlp.fc2', 4 * width, width),
  };
}

/** v / |v| along the last axis. */
export function unitRows(b: GraphBuilder, v: string, output?: string): string {
  return b.op('Div', [v, b.op('ReduceL2', [v], { axes: [-1], keepdims: 1 })], {}, output);
}

export interface ContrastiveTail {
  /** Normalised image embeddings [images, embed] (a graph value). */
  images: string;
  /** Normalised text embeddings [captions, embed] (a graph value). */
  texts: string;
  /** The tuned tensors, by the names the head's graph gives their initializers. */
  tuned: readonly string[];
  /** A tuned tensor's pretrained values and their dims. */
  pretrained: (name: string) => { data: Float32Array; dims: number[] };
  logitScale: number;
}

/**
 * Writes the scoring, the loss and the penalty after a head: inputs `positives` [images, captions] and
 * `lambda` (0 for validation); outputs `loss` and `contrastive` (the loss without the penalty).
 */
export function contrastiveTail(b: GraphBuilder, t: ContrastiveTail, float: FloatTypeName): void {
  const q = b.input('positives', float, ['images', 'captions']);
  const lambda = b.input('lambda', float, []);
  const logScale = b.weight(LOGIT_SCALE, Float64Array.of(Math.log(t.logitScale)), []);
  const logits = b.op('Mul', [b.op('MatMul', [t.images, b.op('Transpose', [t.texts], { perm: [1, 0] })]), b.op('Exp', [logScale])]);
  const ce = (axis: number) => {
    const target = b.op('Div', [q, b.op('ReduceSum', [q, b.int64([axis])], { keepdims: 1 })]);
    const picked = b.op('ReduceSum', [b.op('Mul', [target, b.op('LogSoftmax', [logits], { axis })]), b.int64([axis])], { keepdims: 0 });
    return b.op('Neg', [b.op('ReduceMean', [picked], { keepdims: 0 })]);
  };
  const contrastive = b.op('Mul', [b.scalar(0.5), b.op('Add', [ce(1), ce(0)])], {}, 'contrastive');
  const penalties = t.tuned.map((name) => {
    const { data, dims } = t.pretrained(name);
    const pretrained = b.weight(`${name}.pretrained`, data, dims);
    return b.op('ReduceSumSquare', [b.op('Sub', [name, pretrained])], { keepdims: 0 });
  });
  const penalty = penalties.length === 1 ? penalties[0]! : b.op('Sum', penalties);
  b.op('Add', [contrastive, b.op('Mul', [lambda, penalty])], {}, 'loss');
  b.output('loss', float, []);
  b.output('contrastive', float, []);
}

export type LoraInit = (name: string, dims: number[]) => { a: Float32Array | Float64Array; b: Float32Array | Float64Array };

/**
 * Rewrites every matrix W of a head (`isMatrix`) as W0 + A·B (A [in, r], B [r, out], both initializers, so
 * both can be differentiated); the penalty's W − W0 then is A·B. W0 stays a constant named `${W}.base`. The
 * new nodes go first: they read only initializers.
 */
export function withLora(g: IrGraph, rank: number, isMatrix: (name: string) => boolean, init: LoraInit): IrGraph {
  const out: IrGraph = { ...g, initializers: new Map(g.initializers), nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs] })) };
  const added = [];
  for (const [name, t] of g.initializers) {
    if (!isMatrix(name) || t.dims.length !== 2) continue;
    const [inDim, outDim] = t.dims as [number, number];
    const { a, b } = init(name, t.dims);
    const base = `${name}.base`;
    out.initializers.delete(name);
    out.initializers.set(base, { ...t, name: base });
    const pretrained = out.initializers.get(`${name}.pretrained`);
    out.initializers.delete(`${name}.pretrained`);
    const tensor = (n: string, dims: number[], data: Float32Array | Float64Array): IrTensor => ({ name: n, dtype: t.dtype, dims, data: t.dtype === 'double' ? Float64Array.from(data) : Float32Array.from(data) });
    out.initializers.set(loraA(name), tensor(loraA(name), [inDim, rank], a));
    out.initializers.set(loraB(name), tensor(loraB(name), [rank, outDim], b));
    added.push({ opType: 'MatMul', inputs: [loraA(name), loraB(name)], outputs: [`${name}.delta`], attrs: {} });
    added.push({ opType: 'Add', inputs: [base, `${name}.delta`], outputs: [name], attrs: {} });
    if (pretrained) for (const n of out.nodes) n.inputs = n.inputs.map((v) => (v === `${name}.pretrained` ? base : v));
  }
  out.nodes = [...added, ...out.nodes];
  return out;
}

/** The same graph with these initializers turned into inputs (a forward session fed the current weights). */
export function initializersAsInputs(g: IrGraph, names: readonly string[]): IrGraph {
  const out: IrGraph = { ...g, initializers: new Map(g.initializers), inputs: [...g.inputs] };
  for (const name of names) {
    const t = out.initializers.get(name);
    if (!t) throw new Error(`no initializer ${name}`);
    out.initializers.delete(name);
    out.inputs.push({ name, dtype: t.dtype, dims: [...t.dims] });
  }
  return out;
}
