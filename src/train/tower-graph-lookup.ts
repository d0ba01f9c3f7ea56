/**
 * Finding a tower's tensors in a real export's graph when their names do not say which they are: torch folds
 * a Linear's transpose into a new anonymous constant (`onnx::MatMul_1234`), but keeps the bias's name, so a
 * matrix is found from its named bias — the Add that adds the bias, the MatMul (or Gemm) feeding it, that
 * node's weight, through a Transpose node or not.
 *
 * Both towers' sources (text-tower/tower-source.ts, image-tower/tower-source.ts) read graphs with these.
 */
import type { IrGraph, IrNode } from './graph-grad/onnx-ir.js';

export interface FoundMatrix {
  /** The initializer's name. */
  name: string;
  /** Stored as the transpose of the [in, out] layout the MatMul uses (PyTorch's [out, in]). */
  transpose: boolean;
}

export function consumers(g: IrGraph, value: string): IrNode[] {
  return g.nodes.filter((n) => n.inputs.includes(value));
}

export function producer(g: IrGraph, value: string): IrNode | undefined {
  return g.nodes.find((n) => n.outputs.includes(value));
}

/** An initializer used as a MatMul/Gemm weight: directly, or through a Transpose node. */
export function weightBehind(g: IrGraph, value: string, transB: boolean): FoundMatrix | null {
  if (g.initializers.has(value)) return { name: value, transpose: transB };
  const p = producer(g, value);
  if (p?.opType === 'Transpose' && g.initializers.has(p.inputs[0]!)) {
    const perm = p.attrs.perm as number[] | undefined;
    if (perm === undefined || (perm[0] === 1 && perm[1] === 0)) return { name: p.inputs[0]!, transpose: !transB };
  }
  return null;
}

/** The matrix multiplied into the value to which `bias` is added. */
export function matrixOfBias(g: IrGraph, bias: string): FoundMatrix | null {
  for (const n of consumers(g, bias)) {
    if (n.opType === 'Gemm' && n.inputs[2] === bias) return weightBehind(g, n.inputs[1]!, n.attrs.transB === 1);
    if (n.opType !== 'Add') continue;
    const other = n.inputs[0] === bias ? n.inputs[1]! : n.inputs[0]!;
    const p = producer(g, other);
    if (p?.opType === 'MatMul') return weightBehind(g, p.inputs[1]!, false);
  }
  return null;
}

/** The weight of the graph's last MatMul/Gemm that multiplies by an initializer (a CLIP tower's projection). */
export function lastMatrix(g: IrGraph): FoundMatrix | null {
  const last = [...g.nodes].reverse().find((n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && weightBehind(g, n.inputs[1]!, n.attrs.transB === 1));
  return last ? weightBehind(g, last.inputs[1]!, last.attrs.transB === 1) : null;
}
