/**
 * A plain-data ONNX graph the reverse pass can walk and extend: nodes as GraphBuilder writes them (op type,
 * input and output names, attributes), initializers with their data, the graph's inputs and outputs.
 *
 * Read from serialised bytes rather than from a GraphBuilder's insides, so the same path takes the graphs
 * clipdex builds and, later, the exported models users bring (issue 17: "read as they are"); written back
 * through GraphBuilder, the project's one ONNX writer.
 */
import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';
import { ClipdexError } from '../../errors.js';
import { type AttrValue, type Dim, DType, type DTypeName, GraphBuilder, type InitializerData } from '../../model/onnx-graph.js';

const { onnx } = onnxProto;

export interface IrValue {
  name: string;
  dtype: DTypeName;
  dims: Dim[];
}

export interface IrTensor {
  name: string;
  dtype: DTypeName;
  dims: number[];
  data: InitializerData;
}

export interface IrNode {
  opType: string;
  /** '' marks an omitted optional input, as in ONNX. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export interface IrGraph {
  name: string;
  opset: number;
  inputs: IrValue[];
  outputs: IrValue[];
  initializers: Map<string, IrTensor>;
  nodes: IrNode[];
}

const LITTLE_ENDIAN = endianness() === 'LE';

const DTYPE_BY_CODE = new Map<number, DTypeName>(Object.entries(DType).map(([name, code]) => [code, name as DTypeName]));

/** protobufjs hands int64 fields back as Long objects or numbers, depending on what is installed. */
function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(String(v));
}

function dtypeOf(code: number, what: string): DTypeName {
  const name = DTYPE_BY_CODE.get(code);
  if (!name) throw new ClipdexError('MODEL_INVALID', `${what}: ONNX element type ${code} is not supported by the gradient graphs`);
  return name;
}

/** A TensorProto's values as a typed array of its own type, from raw_data or the typed repeated fields. */
function tensorData(t: onnxProto.onnx.ITensorProto, dtype: DTypeName, count: number): InitializerData {
  const raw = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  // Copy the raw bytes to an aligned buffer: a subarray of the decoded message may start at any offset.
  const aligned = raw ? new Uint8Array(raw).buffer : null;
  const le = raw ? new DataView(aligned as ArrayBuffer) : null;
  switch (dtype) {
    case 'float':
      // A whole tower is ~60M floats: on a little-endian host view the copied bytes instead of decoding each.
      if (aligned && LITTLE_ENDIAN) return new Float32Array(aligned, 0, count);
      return le ? Float32Array.from({ length: count }, (_, i) => le.getFloat32(i * 4, true)) : Float32Array.from(t.floatData ?? []);
    case 'double':
      return le ? Float64Array.from({ length: count }, (_, i) => le.getFloat64(i * 8, true)) : Float64Array.from(t.doubleData ?? []);
    case 'int64':
      return le
        ? BigInt64Array.from({ length: count }, (_, i) => le.getBigInt64(i * 8, true))
        : BigInt64Array.from(t.int64Data ?? [], (v) => BigInt(String(v)));
    case 'int32':
      return le ? Int32Array.from({ length: count }, (_, i) => le.getInt32(i * 4, true)) : Int32Array.from(t.int32Data ?? []);
    case 'bool':
      return raw ? Uint8Array.from(raw) : Uint8Array.from(t.int32Data ?? []);
  }
}

function readTensor(t: onnxProto.onnx.ITensorProto, name: string): IrTensor {
  const dtype = dtypeOf(t.dataType ?? 0, `initializer ${name}`);
  const dims = (t.dims ?? []).map(num);
  return { name, dtype, dims, data: tensorData(t, dtype, dims.reduce((a, b) => a * b, 1)) };
}

function readValue(v: onnxProto.onnx.IValueInfoProto): IrValue {
  const tt = v.type?.tensorType;
  const name = v.name ?? '';
  if (!tt) throw new ClipdexError('MODEL_INVALID', `graph value ${name} is not a tensor`);
  const dims = (tt.shape?.dim ?? []).map((d, i): Dim => (d.dimParam ? d.dimParam : d.dimValue != null && num(d.dimValue) > 0 ? num(d.dimValue) : `${name}_dim${i}`));
  return { name, dtype: dtypeOf(tt.elemType ?? 0, `graph value ${name}`), dims };
}

function readAttr(a: onnxProto.onnx.IAttributeProto, where: string): AttrValue {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.INT:
      return num(a.i);
    case T.INTS:
      return (a.ints ?? []).map(num);
    case T.FLOAT:
      return { float: a.f ?? 0 };
    case T.FLOATS:
      return { floats: [...(a.floats ?? [])] };
    case T.STRING:
      return new TextDecoder().decode(a.s ?? new Uint8Array());
    default:
      throw new ClipdexError('MODEL_INVALID', `${where}: attribute ${a.name} of type ${a.type} is not supported by the gradient graphs`);
  }
}

/**
 * Constant nodes become initializers: the reverse pass treats both as fixed data, and GraphBuilder writes
 * no tensor attributes.
 */
function constantTensor(node: onnxProto.onnx.INodeProto, name: string): IrTensor {
  const a = node.attribute?.[0];
  if (!a || node.attribute?.length !== 1) throw new ClipdexError('MODEL_INVALID', `Constant ${name}: expected one attribute`);
  switch (a.name) {
    case 'value':
      return readTensor(a.t as onnxProto.onnx.ITensorProto, name);
    case 'value_float':
      return { name, dtype: 'float', dims: [], data: Float32Array.of(a.f ?? 0) };
    case 'value_floats':
      return { name, dtype: 'float', dims: [a.floats?.length ?? 0], data: Float32Array.from(a.floats ?? []) };
    case 'value_int':
      return { name, dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(String(a.i))) };
    case 'value_ints':
      return { name, dtype: 'int64', dims: [a.ints?.length ?? 0], data: BigInt64Array.from(a.ints ?? [], (v) => BigInt(String(v))) };
    default:
      throw new ClipdexError('MODEL_INVALID', `Constant ${name}: attribute ${a.name} is not supported by the gradient graphs`);
  }
}

/** Parses a serialised ModelProto (the default ONNX domain only) into an IrGraph. */
export function readGraph(bytes: Uint8Array): IrGraph {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) throw new ClipdexError('MODEL_INVALID', 'the ONNX model has no graph');
  const opset = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const initializers = new Map<string, IrTensor>();
  for (const t of graph.initializer ?? []) initializers.set(t.name ?? '', readTensor(t, t.name ?? ''));
  const nodes: IrNode[] = [];
  for (const n of graph.node ?? []) {
    if (n.domain && n.domain !== 'ai.onnx') {
      throw new ClipdexError('MODEL_INVALID', `node ${n.name || n.opType}: operator domain ${n.domain} is not supported by the gradient graphs`);
    }
    if (n.opType === 'Constant') {
      const out = n.output?.[0] ?? '';
      initializers.set(out, constantTensor(n, out));
      continue;
    }
    const attrs: Record<string, AttrValue> = {};
    for (const a of n.attribute ?? []) attrs[a.name ?? ''] = readAttr(a, `${n.opType} ${n.name}`);
    nodes.push({ opType: n.opType ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs });
  }
  return {
    name: graph.name || 'graph',
    opset: opset ? num(opset.version) : 17,
    // An initializer listed among the inputs is an overridable default: here it stays an initializer.
    inputs: (graph.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(readValue),
    outputs: (graph.output ?? []).map(readValue),
    initializers,
    nodes,
  };
}

/** Serialises an IrGraph through GraphBuilder. */
export function writeGraph(g: IrGraph): Uint8Array {
  const b = new GraphBuilder(g.name);
  for (const v of g.inputs) b.input(v.name, v.dtype, v.dims);
  for (const t of g.initializers.values()) b.initializer(t.name, t.dtype, t.dims, t.data);
  for (const n of g.nodes) b.op(n.opType, n.inputs, n.attrs, n.outputs);
  for (const v of g.outputs) b.output(v.name, v.dtype, v.dims);
  return b.toBytes(g.opset);
}

/** A copy whose node list, maps and value lists can be changed without touching `g` (tensor data is shared). */
export function cloneGraph(g: IrGraph): IrGraph {
  return {
    ...g,
    inputs: g.inputs.map((v) => ({ ...v, dims: [...v.dims] })),
    outputs: g.outputs.map((v) => ({ ...v, dims: [...v.dims] })),
    initializers: new Map(g.initializers),
    nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attrs: { ...n.attrs } })),
  };
}
