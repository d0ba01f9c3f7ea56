/**
 * Appends the backward nodes to a graph: fresh value names, small constants (shared, not repeated per rule),
 * one Shape node per value however many rules ask for it, and the two broadcasting helpers every
 * elementwise rule needs.
 */
import { ClipdexError } from '../../errors.js';
import { type AttrValue, DType, type DTypeName } from '../../model/onnx-graph.js';
import type { IrGraph } from './onnx-ir.js';
import { type GraphFacts, type MaybeDim, normAxis, type ValueInfo } from './shape-infer.js';

export class Emitter {
  private readonly used = new Set<string>();
  private readonly constCache = new Map<string, string>();
  private readonly shapeCache = new Map<string, string>();
  private counter = 0;

  constructor(
    readonly graph: IrGraph,
    readonly facts: GraphFacts,
  ) {
    for (const v of [...graph.inputs, ...graph.outputs]) this.used.add(v.name);
    for (const name of graph.initializers.keys()) this.used.add(name);
    for (const n of graph.nodes) for (const o of [...n.inputs, ...n.outputs]) this.used.add(o);
  }

  fresh(hint: string): string {
    let name = `${hint}_${this.counter++}`;
    while (this.used.has(name)) name = `${hint}_${this.counter++}`;
    this.used.add(name);
    return name;
  }

  /** Reserves a name chosen by the caller (a gradient output); refuses one already in the graph. */
  claim(name: string): string {
    if (this.used.has(name)) throw new ClipdexError('INVALID_ARGUMENT', `gradient graph: the name ${name} is already taken`);
    this.used.add(name);
    return name;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    return this.opN(opType, inputs, attrs, 1, output ? [output] : undefined)[0] as string;
  }

  opN(opType: string, inputs: string[], attrs: Record<string, AttrValue>, count: number, outputs?: string[]): string[] {
    const outs = outputs ?? Array.from({ length: count }, () => this.fresh(`grad_${opType.toLowerCase()}`));
    this.graph.nodes.push({ opType, inputs, outputs: outs, attrs });
    return outs;
  }

  info(name: string): ValueInfo {
    const i = this.facts.info.get(name);
    if (!i) throw new ClipdexError('MODEL_INVALID', `gradient graph: nothing is known about value ${name}`);
    return i;
  }

  /** Records what is known of an emitted value, so a later helper (unbroadcast) can reason about it. */
  note(name: string, dtype: DTypeName, dims: MaybeDim[] | null): string {
    this.facts.info.set(name, { dtype, dims });
    return name;
  }

  dims(name: string, why: string): MaybeDim[] {
    const d = this.info(name).dims;
    if (!d) throw new ClipdexError('MODEL_UNSUPPORTED', `gradient of ${why}: the rank of ${name} cannot be inferred`);
    return d;
  }

  rank(name: string, why: string): number {
    return this.dims(name, why).length;
  }

  constInts(name: string): number[] | undefined {
    return this.facts.consts.get(name);
  }

  private constant(key: string, make: (name: string) => void): string {
    let name = this.constCache.get(key);
    if (!name) {
      name = this.fresh('grad_const');
      make(name);
      this.constCache.set(key, name);
    }
    return name;
  }

  /** A 1-D int64 tensor (axes, shapes, split sizes). */
  int64(values: number[]): string {
    return this.constant(`i64[${values.join(',')}]`, (name) =>
      this.graph.initializers.set(name, { name, dtype: 'int64', dims: [values.length], data: BigInt64Array.from(values, (v) => BigInt(v)) }),
    );
  }

  /** A 0-D int64 tensor (Range bounds). */
  int64Scalar(value: number): string {
    return this.constant(`i64(${value})`, (name) =>
      this.graph.initializers.set(name, { name, dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(value)) }),
    );
  }

  /** A 0-D float constant in the element type of the values it will meet. */
  scalar(value: number, dtype: DTypeName): string {
    if (dtype !== 'float' && dtype !== 'double') throw new Error(`scalar of type ${dtype}`);
    return this.constant(`${dtype}(${value})`, (name) =>
      this.graph.initializers.set(name, {
        name,
        dtype,
        dims: [],
        data: dtype === 'double' ? Float64Array.of(value) : Float32Array.of(value),
      }),
    );
  }

  /** Shape(x), emitted once per value. */
  shape(x: string): string {
    let s = this.shapeCache.get(x);
    if (!s) {
      const known = this.info(x).dims;
      s = known?.every((d) => typeof d === 'number') ? this.int64(known as number[]) : this.op('Shape', [x]);
      this.shapeCache.set(x, s);
    }
    return s;
  }

  /** Zeros shaped like forward value x. */
  zerosLike(x: string): string {
    return this.op('Expand', [this.scalar(0, this.info(x).dtype), this.shape(x)]);
  }

  /** Casts `v` to ONNX element type `dtype` unless it is already of it. */
  castTo(v: string, from: DTypeName, to: DTypeName): string {
    return from === to ? v : this.op('Cast', [v], { to: DType[to] });
  }

  /**
   * Reduces gradient `g` (shaped like forward value `like`) back to the shape of `x`, an operand broadcast
   * into `like`: summed over the axes `x` lacks or has as 1. Decided from static shapes where they settle it;
   * otherwise the axes are found at run time from the two Shapes.
   */
  unbroadcast(g: string, like: string, x: string, why: string): string {
    const gd = this.dims(like, why);
    const xd = this.dims(x, why);
    const lead = gd.length - xd.length;
    if (lead < 0) throw new ClipdexError('MODEL_INVALID', `gradient of ${why}: ${x} has a higher rank than ${like}`);
    const axes: number[] = [];
    let ambiguous = false;
    for (let i = 0; i < gd.length; i++) {
      if (i < lead) {
        axes.push(i);
        continue;
      }
      const a = xd[i - lead];
      const b = gd[i];
      if (b === 1) continue;
      if (a === 1) axes.push(i);
      else if (typeof a === 'number' || (a !== null && a === b)) continue;
      // A symbolic or unknown size against another: it may be 1 at run time.
      else ambiguous = true;
    }
    if (ambiguous) return this.unbroadcastDynamic(g, like, x, lead);
    if (axes.length === 0) return g;
    const summed = this.op('ReduceSum', [g, this.int64(axes)], { keepdims: 1 });
    return this.op('Reshape', [summed, this.shape(x)]);
  }

  private unbroadcastDynamic(g: string, like: string, x: string, lead: number): string {
    const gShape = this.shape(like);
    const xShape = lead > 0 ? this.op('Concat', [this.int64(Array(lead).fill(1)), this.shape(x)], { axis: 0 }) : this.shape(x);
    // Axes where the padded operand's size differs from the gradient's: exactly the broadcast ones.
    const differs = this.op('Not', [this.op('Equal', [xShape, gShape])]);
    const axes = this.op('Reshape', [this.op('NonZero', [differs]), this.int64([-1])]);
    const summed = this.op('ReduceSum', [g, axes], { keepdims: 1, noop_with_empty_axes: 1 });
    return this.op('Reshape', [summed, this.shape(x)]);
  }

  /** `g`, the gradient of a reduction's output, broadcast back over the input `x`. */
  expandReduced(g: string, axes: number[], keepdims: boolean, x: string): string {
    const rank = this.rank(x, 'a reduction');
    const back = keepdims || axes.length === 0 || axes.length === rank ? g : this.op('Unsqueeze', [g, this.int64(axes.map((a) => normAxis(a, rank)))]);
    return this.op('Expand', [back, this.shape(x)]);
  }

  /** The element count of `big` over that of `small`, as a float scalar (a mean's divisor). */
  countRatio(big: string, small: string, dtype: DTypeName): string {
    const a = this.info(big).dims;
    const b = this.info(small).dims;
    const prod = (d: MaybeDim[] | null) => (d?.every((v) => typeof v === 'number') ? (d as number[]).reduce((p, v) => p * v, 1) : null);
    const pa = prod(a);
    const pb = prod(b);
    if (pa !== null && pb !== null) return this.scalar(pa / pb, dtype);
    return this.op('Div', [this.op('Cast', [this.op('Size', [big])], { to: DType[dtype] }), this.op('Cast', [this.op('Size', [small])], { to: DType[dtype] })]);
  }
}
