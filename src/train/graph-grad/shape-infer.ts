/**
 * Element types, ranks and (where knowable) dimensions of every value of a forward graph, plus the values of
 * small integer tensors (shapes, axes, slice bounds) that are constant. The VJP rules need them to undo
 * broadcasting, to invert a Transpose or to know which axes a LayerNormalization normalised.
 *
 * A dimension is a number, a symbolic name ('batch'), or null (unknown). Two equal symbols are taken to be the
 * same size, and a symbol or unknown is never assumed to be 1 — where that matters the rules fall back to
 * computing the broadcast axes at run time.
 */
import type { Dim, DTypeName } from '../../model/onnx-graph.js';
import { DType } from '../../model/onnx-graph.js';
import type { IrGraph, IrNode } from './onnx-ir.js';

export type MaybeDim = Dim | null;

export interface ValueInfo {
  dtype: DTypeName;
  /** null: rank unknown. */
  dims: MaybeDim[] | null;
}

export interface GraphFacts {
  info: Map<string, ValueInfo>;
  /** Values of constant integer tensors, flattened. */
  consts: Map<string, number[]>;
}

const DTYPE_BY_CODE = new Map<number, DTypeName>(Object.entries(DType).map(([n, c]) => [c, n as DTypeName]));

export function isFloat(dtype: DTypeName): boolean {
  return dtype === 'float' || dtype === 'double';
}

export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function bcastDim(a: MaybeDim, b: MaybeDim): MaybeDim {
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === b) return a;
  // A fixed size beside a symbol: the symbol is either 1 or that size, so the result is the size.
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  // Two different symbols: either may be 1 at run time.
  return null;
}

export function broadcastDims(...shapes: (MaybeDim[] | null)[]): MaybeDim[] | null {
  if (shapes.some((s) => s === null)) return null;
  const ss = shapes as MaybeDim[][];
  const rank = Math.max(...ss.map((s) => s.length));
  const out: MaybeDim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: MaybeDim = 1;
    for (const s of ss) {
      const k = i - (rank - s.length);
      if (k >= 0) d = bcastDim(d, s[k] ?? null);
    }
    out.push(d);
  }
  return out;
}

const UNARY_SAME = new Set([
  'Identity', 'Neg', 'Sigmoid', 'Tanh', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Erf', 'Relu', 'Abs', 'Softmax', 'LogSoftmax',
  'Dropout', 'Sign', 'Floor', 'Ceil', 'Round', 'LeakyRelu', 'Gelu', 'Elu', 'Softplus',
]);
const BROADCAST = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sum', 'Max', 'Min', 'Mean', 'Mod']);
const COMPARE = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor']);
const REDUCE = new Set(['ReduceSum', 'ReduceMean', 'ReduceSumSquare', 'ReduceL2', 'ReduceMax', 'ReduceMin', 'ReduceProd', 'ReduceL1', 'ReduceLogSumExp']);

/** Axes a Reduce* node reduces (sorted, non-negative), or 'all', or null when they are not constant. */
export function reduceAxes(node: IrNode, rank: number, consts: Map<string, number[]>): number[] | null {
  const fromInput = node.inputs[1];
  let axes: number[] | undefined;
  if (fromInput) {
    const c = consts.get(fromInput);
    if (!c) return null;
    axes = c;
  } else if (Array.isArray(node.attrs.axes)) {
    axes = node.attrs.axes;
  }
  if (!axes || axes.length === 0) {
    return node.attrs.noop_with_empty_axes === 1 ? [] : Array.from({ length: rank }, (_, i) => i);
  }
  return [...new Set(axes.map((a) => normAxis(a, rank)))].sort((a, b) => a - b);
}

function sliceLength(dim: number, start: number, end: number, step: number): number {
  const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
  let s = start < 0 ? start + dim : start;
  let e = end < 0 ? end + dim : end;
  if (step > 0) {
    s = clamp(s, 0, dim);
    e = clamp(e, 0, dim);
    return Math.max(0, Math.ceil((e - s) / step));
  }
  s = clamp(s, -1, dim - 1);
  e = clamp(e, -1, dim - 1);
  return Math.max(0, Math.ceil((e - s) / step));
}

function product(dims: MaybeDim[]): number | null {
  let p = 1;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

/** Walks the nodes in the given (topological) order. */
export function inferFacts(g: IrGraph, order: IrNode[] = g.nodes): GraphFacts {
  const info = new Map<string, ValueInfo>();
  const consts = new Map<string, number[]>();
  for (const v of g.inputs) info.set(v.name, { dtype: v.dtype, dims: [...v.dims] });
  for (const t of g.initializers.values()) {
    info.set(t.name, { dtype: t.dtype, dims: [...t.dims] });
    if ((t.dtype === 'int64' || t.dtype === 'int32') && t.data.length <= 64) consts.set(t.name, Array.from(t.data, Number));
  }
  for (const node of order) inferNode(node, info, consts);
  return { info, consts };
}

function inferNode(node: IrNode, info: Map<string, ValueInfo>, consts: Map<string, number[]>): void {
  const inInfo = (i: number): ValueInfo | undefined => (node.inputs[i] ? info.get(node.inputs[i] as string) : undefined);
  const inDims = (i: number) => inInfo(i)?.dims ?? null;
  const c = (i: number) => (node.inputs[i] ? consts.get(node.inputs[i] as string) : undefined);
  const x = inInfo(0);
  const dtype0: DTypeName = x?.dtype ?? 'float';
  const set = (k: number, dtype: DTypeName, dims: MaybeDim[] | null, value?: number[]) => {
    const out = node.outputs[k];
    if (!out) return;
    info.set(out, { dtype, dims });
    if (value && (dtype === 'int64' || dtype === 'int32')) consts.set(out, value);
  };
  const op = node.opType;
  const xd = inDims(0);
  const rank = xd?.length;

  if (UNARY_SAME.has(op)) return set(0, dtype0, xd);
  if (BROADCAST.has(op)) return set(0, dtype0, broadcastDims(...node.inputs.map((_, i) => inDims(i))));
  if (COMPARE.has(op)) return set(0, 'bool', broadcastDims(inDims(0), inDims(1)));
  if (op === 'Not') return set(0, 'bool', xd);
  if (op === 'Where') return set(0, inInfo(1)?.dtype ?? 'float', broadcastDims(inDims(0), inDims(1), inDims(2)));
  if (op === 'Cast') {
    const to = DTYPE_BY_CODE.get(node.attrs.to as number) ?? dtype0;
    return set(0, to, xd, c(0));
  }
  if (op === 'LayerNormalization') {
    set(0, dtype0, xd);
    if (xd) {
      const axis = normAxis((node.attrs.axis as number | undefined) ?? -1, xd.length);
      const stats = xd.map((d, i) => (i < axis ? d : 1));
      set(1, 'float', stats);
      set(2, 'float', stats);
    }
    return;
  }
  if (op === 'MatMul') {
    const a = inDims(0);
    const b = inDims(1);
    if (!a || !b) return set(0, dtype0, null);
    const a2 = a.length === 1 ? [1, a[0] ?? null] : a;
    const b2 = b.length === 1 ? [b[0] ?? null, 1] : b;
    const batch = broadcastDims(a2.slice(0, -2), b2.slice(0, -2)) ?? [];
    const dims = [...batch, ...(a.length === 1 ? [] : [a2[a2.length - 2] ?? null]), ...(b.length === 1 ? [] : [b2[b2.length - 1] ?? null])];
    return set(0, dtype0, dims);
  }
  if (op === 'Gemm') {
    const a = inDims(0);
    const b = inDims(1);
    const m = a ? (node.attrs.transA === 1 ? a[1] : a[0]) ?? null : null;
    const n = b ? (node.attrs.transB === 1 ? b[0] : b[1]) ?? null : null;
    return set(0, dtype0, [m, n]);
  }
  if (op === 'Transpose') {
    if (!xd) return set(0, dtype0, null);
    const perm = (node.attrs.perm as number[] | undefined) ?? xd.map((_, i) => xd.length - 1 - i);
    return set(0, dtype0, perm.map((p) => xd[p] ?? null));
  }
  if (op === 'Reshape') {
    const shape = c(1);
    if (!shape) {
      const len = inDims(1)?.[0];
      return set(0, dtype0, typeof len === 'number' ? Array.from({ length: len }, () => null) : null, c(0));
    }
    const allowZero = node.attrs.allowzero === 1;
    const dims: MaybeDim[] = shape.map((s, i) => (s === 0 && !allowZero ? (xd?.[i] ?? null) : s === -1 ? null : s));
    const minus = shape.indexOf(-1);
    if (minus >= 0 && xd) {
      const total = product(xd);
      const rest = product(dims.filter((_, i) => i !== minus));
      if (total !== null && rest !== null && rest > 0) dims[minus] = total / rest;
      else if (total === null && rest !== null && xd.length === dims.length) {
        // [B, S, H, d] → [B, S, H·d] style merges keep a symbolic leading dim when the known tail matches.
        const same = dims.every((d, i) => i === minus || d === xd[i]);
        if (same) dims[minus] = xd[minus] ?? null;
      }
    }
    return set(0, dtype0, dims, c(0));
  }
  if (op === 'Flatten') {
    if (!xd) return set(0, dtype0, [null, null]);
    const axis = normAxis((node.attrs.axis as number | undefined) ?? 1, xd.length);
    return set(0, dtype0, [product(xd.slice(0, axis)), product(xd.slice(axis))]);
  }
  if (op === 'Unsqueeze' || op === 'Squeeze') {
    const axesRaw = c(1) ?? (node.attrs.axes as number[] | undefined);
    if (!xd) return set(0, dtype0, null, c(0));
    if (op === 'Unsqueeze') {
      if (!axesRaw) return set(0, dtype0, null, c(0));
      const outRank = xd.length + axesRaw.length;
      const axes = new Set(axesRaw.map((a) => normAxis(a, outRank)));
      const dims: MaybeDim[] = [];
      let k = 0;
      for (let i = 0; i < outRank; i++) dims.push(axes.has(i) ? 1 : (xd[k++] ?? null));
      return set(0, dtype0, dims, c(0));
    }
    if (!axesRaw) {
      if (xd.some((d) => typeof d !== 'number')) return set(0, dtype0, null, c(0));
      return set(0, dtype0, xd.filter((d) => d !== 1), c(0));
    }
    const axes = new Set(axesRaw.map((a) => normAxis(a, xd.length)));
    return set(0, dtype0, xd.filter((_, i) => !axes.has(i)), c(0));
  }
  if (op === 'Expand') {
    const shape = c(1);
    if (shape) return set(0, dtype0, broadcastDims(xd, shape));
    const len = inDims(1)?.[0];
    if (typeof len !== 'number' || !xd) return set(0, dtype0, null);
    return set(0, dtype0, broadcastDims(xd, Array.from({ length: len }, () => null)));
  }
  if (op === 'Slice') {
    if (!xd) return set(0, dtype0, null);
    const starts = c(1);
    const ends = c(2);
    const axes = node.inputs[3] ? c(3) : xd.map((_, i) => i);
    const steps = node.inputs[4] ? c(4) : undefined;
    if (!axes) return set(0, dtype0, xd.map(() => null));
    const dims = [...xd];
    axes.forEach((a, k) => {
      const ax = normAxis(a, xd.length);
      const d = xd[ax];
      const s = starts?.[k];
      const e = ends?.[k];
      dims[ax] = typeof d === 'number' && s !== undefined && e !== undefined ? sliceLength(d, s, e, steps?.[k] ?? 1) : null;
    });
    const src = c(0);
    let value: number[] | undefined;
    if (src && xd.length === 1 && starts && ends && typeof dims[0] === 'number') {
      const d = src.length;
      const step = steps?.[0] ?? 1;
      let s = starts[0] ?? 0;
      s = s < 0 ? Math.max(s + d, 0) : Math.min(s, d);
      value = Array.from({ length: dims[0] }, (_, i) => src[s + i * step] as number);
    }
    return set(0, dtype0, dims, value);
  }
  if (op === 'Concat') {
    const all = node.inputs.map((_, i) => inDims(i));
    if (all.some((d) => d === null) || !xd) return set(0, dtype0, null);
    const axis = normAxis(node.attrs.axis as number, xd.length);
    const dims = [...xd];
    const sizes = all.map((d) => (d as MaybeDim[])[axis] ?? null);
    dims[axis] = sizes.every((s) => typeof s === 'number') ? (sizes as number[]).reduce((a, b) => a + b, 0) : null;
    const vals = node.inputs.map((_, i) => c(i));
    return set(0, dtype0, dims, vals.every((v) => v) ? (vals as number[][]).flat() : undefined);
  }
  if (op === 'Split') {
    if (!xd) return node.outputs.forEach((_, k) => set(k, dtype0, null));
    const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, xd.length);
    const sizes = c(1) ?? (node.attrs.split as number[] | undefined);
    node.outputs.forEach((_, k) => {
      const dims = [...xd];
      const whole = xd[axis];
      dims[axis] = sizes?.[k] ?? (typeof whole === 'number' ? whole / node.outputs.length : null);
      set(k, dtype0, dims);
    });
    return;
  }
  if (op === 'Gather') {
    const idx = inDims(1);
    if (!xd || !idx) return set(0, dtype0, null);
    const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, xd.length);
    const src = c(0);
    const ix = c(1);
    const value = src && ix && xd.length === 1 ? ix.map((i) => src[i < 0 ? i + src.length : i] as number) : undefined;
    return set(0, dtype0, [...xd.slice(0, axis), ...idx, ...xd.slice(axis + 1)], value);
  }
  if (op === 'GatherElements') return set(0, dtype0, inDims(1));
  if (op === 'ScatterElements' || op === 'ScatterND') return set(0, dtype0, xd);
  if (REDUCE.has(op)) {
    if (rank === undefined || !xd) return set(0, dtype0, null);
    const axes = reduceAxes(node, rank, consts);
    const keep = (node.attrs.keepdims as number | undefined) ?? 1;
    if (!axes) return set(0, dtype0, keep ? xd.map(() => null) : null);
    const red = new Set(axes);
    const dims = keep ? xd.map((d, i) => (red.has(i) ? 1 : d)) : xd.filter((_, i) => !red.has(i));
    return set(0, dtype0, dims);
  }
  if (op === 'ArgMax' || op === 'ArgMin') {
    if (!xd) return set(0, 'int64', null);
    const axis = normAxis((node.attrs.axis as number | undefined) ?? 0, xd.length);
    const keep = (node.attrs.keepdims as number | undefined) ?? 1;
    return set(0, 'int64', keep ? xd.map((d, i) => (i === axis ? 1 : d)) : xd.filter((_, i) => i !== axis));
  }
  if (op === 'Shape') {
    if (!xd) return set(0, 'int64', [null]);
    const start = normAxis((node.attrs.start as number | undefined) ?? 0, xd.length);
    const end = node.attrs.end === undefined ? xd.length : normAxis(node.attrs.end as number, xd.length);
    const dims = xd.slice(start, end);
    const known = dims.every((d) => typeof d === 'number');
    return set(0, 'int64', [dims.length], known ? (dims as number[]) : undefined);
  }
  if (op === 'Size') return set(0, 'int64', [], xd && product(xd) !== null ? [product(xd) as number] : undefined);
  if (op === 'EyeLike') return set(0, DTYPE_BY_CODE.get(node.attrs.dtype as number) ?? dtype0, xd);
  if (op === 'ConstantOfShape') {
    const shape = c(0);
    return set(0, 'float', shape ? shape : null);
  }
  if (op === 'Range') return set(0, dtype0, [null]);
  if (op === 'Conv') return set(0, dtype0, xd ? [xd[0] ?? null, inDims(1)?.[0] ?? null, ...xd.slice(2).map(() => null)] : null);
  if (op === 'Pad' || op === 'Tile') return set(0, dtype0, xd ? xd.map(() => null) : null);
  node.outputs.forEach((_, k) => set(k, dtype0, null));
}
