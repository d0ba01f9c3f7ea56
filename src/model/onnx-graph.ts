import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** Element types used by the CLIP graphs (ONNX TensorProto.DataType values); double and bool for gradient graphs. */
export const DType = { float: 1, int32: 6, int64: 7, bool: 9, double: 11 } as const;
export type DTypeName = keyof typeof DType;
/** The floating-point types a graph's weights and constants may be written in. */
export type FloatTypeName = 'float' | 'double';
/** Data of an initializer, by element type: float, double, int64, int32, bool (one byte per element). */
export type InitializerData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

/** A dimension: a fixed size, or a symbolic name such as 'batch'. */
export type Dim = number | string;

export type AttrValue = number | number[] | string | { floats: number[] } | { float: number };

/**
 * A small ONNX graph builder: just enough operators and bookkeeping to write the CLIP towers.
 * Written by hand because the only maintained ONNX writers are Python; onnx-proto supplies the schema.
 */
export class GraphBuilder {
  private readonly nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  private readonly initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  private readonly inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly outputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  /** Element type of `weight` and `scalar`: float32 for the models; float64 lets gradient checks reach 1e-6. */
  private readonly floatType: FloatTypeName;
  private readonly copyWeights: boolean;

  /**
   * `copyWeights: false` makes `weight` keep a view of the caller's array instead of a copy: for writers that
   * call `toBytes` before returning, where no later change can leak in, and whose weights are big enough
   * (XLM-R Large's 1.2 GB text tower) that a second copy beside the serialised model would double the memory.
   */
  constructor(
    private readonly graphName: string,
    options: { float?: FloatTypeName; copyWeights?: boolean } = {},
  ) {
    this.floatType = options.float ?? 'float';
    this.copyWeights = options.copyWeights ?? true;
  }

  /** A fresh value name, unique in this graph. */
  fresh(hint: string): string {
    let name = `${hint}_${this.counter++}`;
    while (this.names.has(name)) name = `${hint}_${this.counter++}`;
    this.names.add(name);
    return name;
  }

  input(name: string, dtype: DTypeName, dims: Dim[]): string {
    this.names.add(name);
    this.inputs.push(valueInfo(name, dtype, dims));
    return name;
  }

  output(name: string, dtype: DTypeName, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, dtype, dims));
  }

  /**
   * A floating-point initializer in the builder's float type (float32 unless made with `float: 'double'`);
   * `data` is copied so later changes to the caller's array don't leak in.
   */
  weight(name: string, data: Float32Array | Float64Array, dims: number[]): string {
    // Converted only when the type differs: `initializer` copies already, unless told not to.
    const typed =
      this.floatType === 'double' ? (data instanceof Float64Array ? data : Float64Array.from(data)) : data instanceof Float32Array ? data : Float32Array.from(data);
    if (this.copyWeights) return this.initializer(name, this.floatType, dims, typed);
    if (typed.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${name}: ${typed.length} values for dims [${dims.join(',')}]`);
    this.names.add(name);
    const rawData = endianness() === 'LE' ? new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength) : littleEndianBytes(typed);
    this.initializers.push(onnx.TensorProto.create({ name, dataType: DType[this.floatType], dims, rawData }));
    return name;
  }

  /** A named initializer of any supported type, its data as given (for graphs read back and rewritten). */
  initializer(name: string, dtype: DTypeName, dims: number[], data: InitializerData): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(',')}]`);
    }
    this.names.add(name);
    this.initializers.push(onnx.TensorProto.create({ name, dataType: DType[dtype], dims, rawData: littleEndianBytes(data) }));
    return name;
  }

  int64(values: number[], hint = 'const_i64'): string {
    const name = this.fresh(hint);
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push(
      onnx.TensorProto.create({ name, dataType: DType.int64, dims: [values.length], rawData: littleEndianBytes(data) }),
    );
    return name;
  }

  /** A scalar constant in the builder's float type. */
  scalar(value: number, hint = 'const_f32'): string {
    const name = this.fresh(hint);
    const data = this.floatType === 'double' ? new Float64Array([value]) : new Float32Array([value]);
    this.initializers.push(onnx.TensorProto.create({ name, dataType: DType[this.floatType], dims: [], rawData: littleEndianBytes(data) }));
    return name;
  }

  /** Adds a node and returns the name of its (first) output; `output` may name several (Split, LayerNormalization). */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string | string[]): string {
    const outs = output === undefined ? [this.fresh(opType.toLowerCase())] : typeof output === 'string' ? [output] : output;
    const out = outs[0];
    if (out === undefined) throw new Error(`${opType}: a node needs an output`);
    for (const o of outs) this.names.add(o);
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: outs,
        name: this.fresh(`n_${opType}`),
        attribute: Object.entries(attrs).map(([key, value]) => attribute(key, value)),
      }),
    );
    return out;
  }

  /** Serialises to a ModelProto. Opset 17 is the first with LayerNormalization. */
  toBytes(opset = 17, producer = 'clipdex'): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: producer,
      opsetImport: [onnx.OperatorSetIdProto.create({ domain: '', version: opset })],
      graph: onnx.GraphProto.create({
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      }),
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, dtype: DTypeName, dims: Dim[]) {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType: DType[dtype],
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) =>
            typeof d === 'number'
              ? onnx.TensorShapeProto.Dimension.create({ dimValue: d })
              : onnx.TensorShapeProto.Dimension.create({ dimParam: d }),
          ),
        }),
      }),
    }),
  });
}

function attribute(name: string, value: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: use { float } for non-integers`);
    return onnx.AttributeProto.create({ name, type: T.INT, i: value });
  }
  if (typeof value === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(value) });
  if (Array.isArray(value)) return onnx.AttributeProto.create({ name, type: T.INTS, ints: value });
  if ('floats' in value) return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: value.floats });
  return onnx.AttributeProto.create({ name, type: T.FLOAT, f: value.float });
}

/** ONNX raw_data is little-endian; copy exactly the view's bytes (a subarray's buffer holds more). */
function littleEndianBytes(view: InitializerData): Uint8Array {
  if (endianness() === 'LE' || view instanceof Uint8Array) return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
  const bytes = new Uint8Array(view.byteLength);
  const dv = new DataView(bytes.buffer);
  if (view instanceof Float32Array) view.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  else if (view instanceof Float64Array) view.forEach((v, i) => dv.setFloat64(i * 8, v, true));
  else if (view instanceof BigInt64Array) view.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  else view.forEach((v, i) => dv.setInt32(i * 4, v, true));
  return bytes;
}
