import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** Element types used by the CLIP graphs (ONNX TensorProto.DataType values). */
export const DType = { float: 1, int32: 6, int64: 7 } as const;
export type DTypeName = keyof typeof DType;

/** A dimension: a fixed size, or a symbolic name such as 'batch'. */
export type Dim = number | string;

type AttrValue = number | number[] | string | { floats: number[] } | { float: number };

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

  constructor(private readonly graphName: string) {}

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

  /** A float32 initializer; `data` is copied so later changes to the caller's array don't leak in. */
  weight(name: string, data: Float32Array, dims: number[]): string {
    if (data.length !== dims.reduce((a, b) => a * b, 1)) {
      throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(',')}]`);
    }
    this.names.add(name);
    this.initializers.push(
      onnx.TensorProto.create({ name, dataType: DType.float, dims, rawData: littleEndianBytes(data) }),
    );
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

  scalar(value: number, hint = 'const_f32'): string {
    const name = this.fresh(hint);
    this.initializers.push(
      onnx.TensorProto.create({ name, dataType: DType.float, dims: [], rawData: littleEndianBytes(new Float32Array([value])) }),
    );
    return name;
  }

  /** Adds a node and returns the name of its (first) output. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, output?: string): string {
    const out = output ?? this.fresh(opType.toLowerCase());
    this.names.add(out);
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: [out],
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
function littleEndianBytes(view: Float32Array | BigInt64Array | Int32Array): Uint8Array {
  if (endianness() === 'LE') return new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice();
  const bytes = new Uint8Array(view.byteLength);
  const dv = new DataView(bytes.buffer);
  if (view instanceof Float32Array) view.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  else if (view instanceof BigInt64Array) view.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  else view.forEach((v, i) => dv.setInt32(i * 4, v, true));
  return bytes;
}
