/**
 * One vector–Jacobian product per ONNX op: given the gradients of a node's outputs, the ops that compute the
 * gradients of its inputs. Each rule lists the inputs it differentiates (the rest — indices, shapes, axes,
 * a Where's condition — carry no gradient), and is only asked for the inputs that lead to a parameter.
 *
 * Forward values a rule needs (a Sigmoid's output, a LayerNormalization's input) are read from the forward
 * graph, which runs in the same session, so nothing is recomputed except LayerNormalization's statistics.
 */
import { ClipdexError } from '../../errors.js';
import type { DTypeName } from '../../model/onnx-graph.js';
import type { Emitter } from './emitter.js';
import type { IrNode } from './onnx-ir.js';
import { normAxis, reduceAxes } from './shape-infer.js';

export interface VjpArgs {
  node: IrNode;
  /** Gradient of each output, null where no path from it reaches the loss. */
  gy: (string | null)[];
  /** Whether input `i` needs a gradient: a rule may skip the work for the others. */
  needs: (i: number) => boolean;
  e: Emitter;
}

export interface VjpRule {
  /** Inputs this op differentiates; others are cut (indices, shapes, axes, conditions). */
  inputs: number[] | 'all';
  vjp(a: VjpArgs): (string | null)[];
}

/** Ops whose outputs carry no gradient at all (integer or boolean results, constants, step functions). */
export const NON_DIFFERENTIABLE = new Set([
  'Shape', 'Size', 'ArgMax', 'ArgMin', 'EyeLike', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'Not', 'And',
  'Or', 'Xor', 'NonZero', 'ConstantOfShape', 'Range', 'Sign', 'Floor', 'Ceil', 'Round',
]);

const input = (n: IrNode, i: number): string => n.inputs[i] as string;
const out = (n: IrNode, i = 0): string => n.outputs[i] as string;
const g0 = (a: VjpArgs): string => {
  const g = a.gy[0];
  if (!g) throw new Error(`${a.node.opType}: no gradient for its output`);
  return g;
};
const dt = (a: VjpArgs, i = 0): DTypeName => a.e.info(input(a.node, i)).dtype;
const why = (n: IrNode): string => `${n.opType} (${out(n)})`;

/** An elementwise rule: `local(i)` is the gradient with respect to input i before undoing broadcasting. */
function broadcasting(inputs: number[] | 'all', local: (a: VjpArgs, i: number) => string): VjpRule {
  return {
    inputs,
    vjp: (a) =>
      a.node.inputs.map((name, i) => (a.needs(i) ? a.e.unbroadcast(local(a, i), out(a.node), name, why(a.node)) : null)),
  };
}

/** A rule for a one-input op whose gradient is g·f′, written with the forward input x and output y. */
function unary(local: (a: VjpArgs, g: string, x: string, y: string) => string): VjpRule {
  return { inputs: [0], vjp: (a) => [local(a, g0(a), input(a.node, 0), out(a.node))] };
}

/** Transposes the last two axes of a value of rank `rank`. */
function swapLast(e: Emitter, v: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 1] = rank - 2;
  perm[rank - 2] = rank - 1;
  return e.op('Transpose', [v], { perm });
}

function matMul(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const g = g0(a);
  const A = input(node, 0);
  const B = input(node, 1);
  const y = out(node);
  const ra = e.rank(A, why(node));
  const rb = e.rank(B, why(node));
  if (ra < 2 || rb < 2) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `no gradient rule for ${why(node)} with a 1-D operand`);
  }
  const ry = Math.max(ra, rb);
  let gA: string | null = null;
  let gB: string | null = null;
  if (a.needs(0)) {
    if (ra === 2 && rb > 2) {
      // W[M, K] · x[b…, K, N]: ∂W = g′ · x′ᵀ with the batch folded into the columns — one GEMM instead of a
      // per-batch product summed afterwards (which would hold b copies of ∂W).
      const flat = (v: string) => e.op('Reshape', [e.op('Transpose', [v], { perm: batchFirstPerm(ry) }), e.int64([0, -1])]);
      gA = e.op('Gemm', [flat(g), flat(B)], { transB: 1 });
    } else {
      const full = e.note(e.op('MatMul', [g, swapLast(e, B, rb)]), dt(a), batchOf(e, y, A, why(node)));
      gA = e.unbroadcast(full, full, A, why(node));
    }
  }
  if (a.needs(1)) {
    const k = e.info(A).dims?.at(-1);
    const n = e.info(y).dims?.at(-1);
    if (rb === 2 && ra > 2 && typeof k === 'number' && typeof n === 'number') {
      // x[b…, M, K] · W[K, N]: ∂W = x_flatᵀ · g_flat over every row of the batch, one GEMM (same reason).
      gB = e.op('Gemm', [e.op('Reshape', [A, e.int64([-1, k])]), e.op('Reshape', [g, e.int64([-1, n])])], { transA: 1 });
    } else {
      const full = e.note(e.op('MatMul', [swapLast(e, A, ra), g]), dt(a), batchOf(e, y, B, why(node)));
      gB = e.unbroadcast(full, full, B, why(node));
    }
  }
  return [gA, gB];
}

/** The shape of an operand's gradient before its batch axes are summed: y's batch axes, the operand's matrix. */
function batchOf(e: Emitter, y: string, operand: string, what: string) {
  const yd = e.dims(y, what);
  return [...yd.slice(0, -2), ...e.dims(operand, what).slice(-2)];
}

/** Moves axis rank − 2 (the rows) first, keeping the batch axes and the last in order. */
function batchFirstPerm(rank: number): number[] {
  return [rank - 2, ...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1];
}

function gemm(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const g = g0(a);
  const [A, B, C] = [input(node, 0), input(node, 1), node.inputs[2]];
  const transA = node.attrs.transA === 1;
  const transB = node.attrs.transB === 1;
  const alphaAttr = node.attrs.alpha as { float: number } | undefined;
  const betaAttr = node.attrs.beta as { float: number } | undefined;
  const alpha = { float: alphaAttr?.float ?? 1 };
  const beta = betaAttr?.float ?? 1;
  let gA: string | null = null;
  let gB: string | null = null;
  let gC: string | null = null;
  if (a.needs(0)) {
    gA = transA
      ? e.op('Gemm', [B, g], { alpha, transA: transB ? 1 : 0, transB: 1 })
      : e.op('Gemm', [g, B], { alpha, transB: transB ? 0 : 1 });
  }
  if (a.needs(1)) {
    gB = transB
      ? e.op('Gemm', [g, A], { alpha, transA: 1, transB: transA ? 1 : 0 })
      : e.op('Gemm', [A, g], { alpha, transA: transA ? 0 : 1 });
  }
  if (C && a.needs(2)) {
    const scaled = beta === 1 ? g : e.op('Mul', [g, e.scalar(beta, dt(a))]);
    gC = e.unbroadcast(scaled, out(node), C, why(node));
  }
  return [gA, gB, gC];
}

function reduction(kind: 'sum' | 'mean' | 'sumsquare' | 'l2'): VjpRule {
  return {
    inputs: [0],
    vjp: (a) => {
      const { e, node } = a;
      const x = input(node, 0);
      const rank = e.rank(x, why(node));
      const axes = reduceAxes(node, rank, e.facts.consts);
      if (!axes) throw new ClipdexError('MODEL_UNSUPPORTED', `gradient of ${why(node)}: its axes are not constant`);
      const keep = ((node.attrs.keepdims as number | undefined) ?? 1) === 1;
      const spread = e.expandReduced(g0(a), axes, keep, x);
      const d = dt(a);
      switch (kind) {
        case 'sum':
          return [spread];
        case 'mean':
          return [e.op('Div', [spread, e.countRatio(x, out(node), d)])];
        case 'sumsquare':
          return [e.op('Mul', [spread, e.op('Mul', [x, e.scalar(2, d)])])];
        case 'l2':
          return [e.op('Mul', [spread, e.op('Div', [x, e.expandReduced(out(node), axes, keep, x)])])];
      }
    },
  };
}

/** Mean over `axes` with keepdims, as ReduceSum · 1/n (ReduceMean's axes moved from attribute to input at opset 18). */
function meanKeep(e: Emitter, v: string, axes: number[], like: string, stats: string, dtype: DTypeName): string {
  return e.op('Div', [e.op('ReduceSum', [v, e.int64(axes)], { keepdims: 1 }), e.countRatio(like, stats, dtype)]);
}

/**
 * LayerNormalization: the statistics are recomputed here rather than taken from the node's optional Mean and
 * InvStdDev outputs, because those are stored in `stash_type` (float32 by default) and would cost a float64
 * graph its precision; two reductions per row are small beside the block's matrix products.
 */
function layerNorm(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  if (a.gy[1] || a.gy[2]) throw new ClipdexError('MODEL_UNSUPPORTED', `no gradient rule for the Mean/InvStdDev outputs of ${why(node)}`);
  const g = g0(a);
  const [x, scale, bias] = [input(node, 0), input(node, 1), node.inputs[2]];
  const y = out(node);
  const rank = e.rank(x, why(node));
  const axis = normAxis((node.attrs.axis as number | undefined) ?? -1, rank);
  const axes = Array.from({ length: rank - axis }, (_, i) => axis + i);
  const eps = (node.attrs.epsilon as { float: number } | undefined)?.float ?? 1e-5;
  const d = dt(a);
  // A forward value shaped like the statistics (x's leading axes, 1 on the normalised ones) for countRatio.
  const statsDims = (e.info(x).dims ?? []).map((v, i) => (i < axis ? v : 1));
  const stats = e.fresh('grad_ln_stats');
  e.facts.info.set(stats, { dtype: d, dims: statsDims });
  const mean = (v: string) => meanKeep(e, v, axes, x, stats, d);
  const mu = e.op('ReduceSum', [x, e.int64(axes)], { keepdims: 1 }, stats);
  const muScaled = e.op('Div', [mu, e.countRatio(x, stats, d)]);
  const xc = e.op('Sub', [x, muScaled]);
  const variance = mean(e.op('Mul', [xc, xc]));
  const inv = e.op('Reciprocal', [e.op('Sqrt', [e.op('Add', [variance, e.scalar(eps, d)])])]);
  const xhat = e.op('Mul', [xc, inv]);
  const gScale = a.needs(1) ? e.unbroadcast(e.op('Mul', [g, xhat]), y, scale, why(node)) : null;
  const gBias = bias && a.needs(2) ? e.unbroadcast(g, y, bias, why(node)) : null;
  let gx: string | null = null;
  if (a.needs(0)) {
    const gxhat = e.op('Mul', [g, scale]);
    const centred = e.op('Sub', [gxhat, mean(gxhat)]);
    const radial = e.op('Mul', [xhat, mean(e.op('Mul', [gxhat, xhat]))]);
    gx = e.op('Mul', [inv, e.op('Sub', [centred, radial])]);
  }
  return [gx, gScale, gBias];
}

function softmax(log: boolean): VjpRule {
  return unary((a, g, _x, y) => {
    const { e, node } = a;
    const axis = (node.attrs.axis as number | undefined) ?? -1;
    const rank = e.rank(y, why(node));
    const ax = e.int64([normAxis(axis, rank)]);
    if (log) return e.op('Sub', [g, e.op('Mul', [e.op('Exp', [y]), e.op('ReduceSum', [g, ax], { keepdims: 1 })])]);
    return e.op('Mul', [y, e.op('Sub', [g, e.op('ReduceSum', [e.op('Mul', [g, y]), ax], { keepdims: 1 })])]);
  });
}

/** Back to the input's shape: Reshape, Flatten, Squeeze and Unsqueeze only move elements' indices. */
const reshapeLike: VjpRule = unary((a, g, x) => a.e.op('Reshape', [g, a.e.shape(x)]));

/**
 * Slice: the gradient scatters g into zeros at the sliced positions. The positions come from slicing an index
 * grid (0…n−1 shaped like x) with the very same starts/ends/axes/steps inputs, so negative bounds, clamping,
 * steps and bounds known only at run time (the text tower's sequence length) follow ONNX's own Slice exactly.
 * Costs an int64 tensor the size of x, which for the slices of CLIP's towers (positions, the mask) is small.
 */
function slice(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const x = input(node, 0);
  const n = e.op('Size', [x]);
  const grid = e.op('Reshape', [e.op('Range', [e.int64Scalar(0), n, e.int64Scalar(1)]), e.shape(x)]);
  const picked = e.op('Reshape', [e.op('Slice', [grid, ...node.inputs.slice(1)]), e.int64([-1])]);
  const zeros = e.op('Expand', [e.scalar(0, dt(a)), e.op('Reshape', [n, e.int64([1])])]);
  const flat = e.op('ScatterElements', [zeros, picked, e.op('Reshape', [g0(a), e.int64([-1])])], { axis: 0 });
  return [e.op('Reshape', [flat, e.shape(x)])];
}

function concat(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const rank = e.rank(out(node), why(node));
  const axis = normAxis(node.attrs.axis as number, rank);
  const sizes = node.inputs.map((v) => e.info(v).dims?.[axis]);
  const split = sizes.every((s) => typeof s === 'number')
    ? e.int64(sizes as number[])
    : e.op(
        'Concat',
        node.inputs.map((v) => e.op('Gather', [e.shape(v), e.int64([axis])], { axis: 0 })),
        { axis: 0 },
      );
  const parts = e.opN('Split', [g0(a), split], { axis }, node.inputs.length);
  return parts.map((p, i) => (a.needs(i) ? p : null));
}

function split(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const x = input(node, 0);
  const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, e.rank(x, why(node)));
  const parts = node.outputs.map((o, k) => a.gy[k] ?? e.zerosLike(o));
  return [e.op('Concat', parts, { axis })];
}

/** Indices made non-negative (ONNX allows −1 for the last) and int64, as ScatterND needs. */
function normalisedIndices(e: Emitter, idx: string, data: string, axis: number): string {
  const dtype = e.info(idx).dtype;
  const i64 = e.castTo(idx, dtype, 'int64');
  const known = e.constInts(idx);
  if (known?.every((v) => v >= 0)) return i64;
  const size = e.op('Gather', [e.shape(data), e.int64Scalar(axis)], { axis: 0 });
  return e.op('Where', [e.op('Less', [i64, e.int64Scalar(0)]), e.op('Add', [i64, size]), i64]);
}

/**
 * Gather (embedding lookup): ScatterND with reduction 'add' into zeros of the table's shape. Repeated ids
 * accumulate. Chosen over a one-hot MatMul: that costs tokens × vocabulary memory and FLOPs (64 captions of
 * 77 tokens against CLIP's 49,408 ids: 243M elements), the scatter only the gradient's own size.
 */
function gather(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const [data, idx] = [input(node, 0), input(node, 1)];
  const rd = e.rank(data, why(node));
  const ri = e.rank(idx, why(node));
  const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, rd);
  const ix = e.op('Unsqueeze', [normalisedIndices(e, idx, data, axis), e.int64([-1])]);
  const g = g0(a);
  if (axis === 0) return [e.op('ScatterND', [e.zerosLike(data), ix, g], { reduction: 'add' }), null];
  // Bring the gathered axis first (in the table and in g), scatter, and put it back.
  const toFront = [axis, ...Array.from({ length: rd }, (_, i) => i).filter((i) => i !== axis)];
  const back = toFront.map((_, i) => toFront.indexOf(i));
  const gPerm = [
    ...Array.from({ length: ri }, (_, i) => axis + i),
    ...Array.from({ length: axis }, (_, i) => i),
    ...Array.from({ length: rd - axis - 1 }, (_, i) => axis + ri + i),
  ];
  const zeros = e.op('Transpose', [e.zerosLike(data)], { perm: toFront });
  const scattered = e.op('ScatterND', [zeros, ix, e.op('Transpose', [g], { perm: gPerm })], { reduction: 'add' });
  return [e.op('Transpose', [scattered], { perm: back }), null];
}

function gatherElements(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const [data, idx] = [input(node, 0), input(node, 1)];
  const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, e.rank(data, why(node)));
  const ix = normalisedIndices(e, idx, data, axis);
  return [e.op('ScatterElements', [e.zerosLike(data), ix, g0(a)], { axis, reduction: 'add' }), null];
}

function where(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const g = g0(a);
  const zero = e.scalar(0, e.info(out(node)).dtype);
  const c = input(node, 0);
  const ga = a.needs(1) ? e.unbroadcast(e.op('Where', [c, g, zero]), out(node), input(node, 1), why(node)) : null;
  const gb = a.needs(2) ? e.unbroadcast(e.op('Where', [c, zero, g]), out(node), input(node, 2), why(node)) : null;
  return [null, ga, gb];
}

function pow(a: VjpArgs): (string | null)[] {
  const { e, node } = a;
  const g = g0(a);
  const [x, p] = [input(node, 0), input(node, 1)];
  const d = dt(a);
  const pf = e.castTo(p, e.info(p).dtype, d);
  const gx = a.needs(0)
    ? e.unbroadcast(e.op('Mul', [g, e.op('Mul', [pf, e.op('Pow', [x, e.op('Sub', [pf, e.scalar(1, d)])])])]), out(node), x, why(node))
    : null;
  const gp = a.needs(1) ? e.unbroadcast(e.op('Mul', [g, e.op('Mul', [out(node), e.op('Log', [x])])]), out(node), p, why(node)) : null;
  return [gx, gp];
}

export const RULES: Readonly<Record<string, VjpRule>> = {
  Identity: unary((_a, g) => g),
  Dropout: unary((_a, g) => g),
  Neg: unary((a, g) => a.e.op('Neg', [g])),
  Cast: unary((a, g, x, y) => a.e.castTo(g, a.e.info(y).dtype, a.e.info(x).dtype)),
  Sigmoid: unary((a, g, _x, y) => a.e.op('Mul', [g, a.e.op('Mul', [y, a.e.op('Sub', [a.e.scalar(1, dt(a)), y])])])),
  Tanh: unary((a, g, _x, y) => a.e.op('Mul', [g, a.e.op('Sub', [a.e.scalar(1, dt(a)), a.e.op('Mul', [y, y])])])),
  Exp: unary((a, g, _x, y) => a.e.op('Mul', [g, y])),
  Log: unary((a, g, x) => a.e.op('Div', [g, x])),
  Sqrt: unary((a, g, _x, y) => a.e.op('Div', [a.e.op('Mul', [g, a.e.scalar(0.5, dt(a))]), y])),
  Reciprocal: unary((a, g, _x, y) => a.e.op('Neg', [a.e.op('Mul', [g, a.e.op('Mul', [y, y])])])),
  Relu: unary((a, g, x) => a.e.op('Mul', [g, a.e.castTo(a.e.op('Greater', [x, a.e.scalar(0, dt(a))]), 'bool', dt(a))])),
  Erf: unary((a, g, x) => {
    const { e } = a;
    const d = dt(a);
    return e.op('Mul', [g, e.op('Mul', [e.scalar(2 / Math.sqrt(Math.PI), d), e.op('Exp', [e.op('Neg', [e.op('Mul', [x, x])])])])]);
  }),
  Softmax: softmax(false),
  LogSoftmax: softmax(true),
  Add: broadcasting('all', (a) => g0(a)),
  Sum: broadcasting('all', (a) => g0(a)),
  Sub: broadcasting('all', (a, i) => (i === 0 ? g0(a) : a.e.op('Neg', [g0(a)]))),
  Mul: broadcasting('all', (a, i) => a.e.op('Mul', [g0(a), input(a.node, 1 - i)])),
  Div: broadcasting('all', (a, i) => {
    const { e, node } = a;
    const g = g0(a);
    const b = input(node, 1);
    return i === 0 ? e.op('Div', [g, b]) : e.op('Neg', [e.op('Div', [e.op('Mul', [g, out(node)]), b])]);
  }),
  Pow: { inputs: 'all', vjp: pow },
  MatMul: { inputs: 'all', vjp: matMul },
  Gemm: { inputs: 'all', vjp: gemm },
  ReduceSum: reduction('sum'),
  ReduceMean: reduction('mean'),
  ReduceSumSquare: reduction('sumsquare'),
  ReduceL2: reduction('l2'),
  LayerNormalization: { inputs: 'all', vjp: layerNorm },
  Reshape: { inputs: [0], vjp: reshapeLike.vjp },
  Flatten: reshapeLike,
  Squeeze: { inputs: [0], vjp: reshapeLike.vjp },
  Unsqueeze: { inputs: [0], vjp: reshapeLike.vjp },
  Transpose: unary((a, g, x) => {
    const rank = a.e.rank(x, why(a.node));
    const perm = (a.node.attrs.perm as number[] | undefined) ?? Array.from({ length: rank }, (_, i) => rank - 1 - i);
    return a.e.op('Transpose', [g], { perm: perm.map((_, i) => perm.indexOf(i)) });
  }),
  Expand: { inputs: [0], vjp: (a) => [a.e.unbroadcast(g0(a), out(a.node), input(a.node, 0), why(a.node))] },
  Slice: { inputs: [0], vjp: slice },
  Concat: { inputs: 'all', vjp: concat },
  Split: { inputs: [0], vjp: split },
  Gather: { inputs: [0], vjp: gather },
  GatherElements: { inputs: [0], vjp: gatherElements },
  Where: { inputs: [1, 2], vjp: where },
};
