/**
 * int8 weights for an ONNX tower, written by rewriting the graph (issue 19): every MatMul or Gemm whose weight is
 * a float32 initializer gets that weight quantized per output channel (symmetric, one scale per column of the
 * [K, N] weight), expressed in one of several ONNX Runtime CPU formulations. The rest of the graph (attention's
 * activation × activation MatMuls, embeddings, LayerNorm, convolutions) stays float32. In `dynamic-quantize-matmul`
 * and `matmul-integer`, the linear layers that read one activation (attention's Q, K, V) become one quantized MatMul
 * and a Split (`fuseSharedInput`): the same numbers, one activation quantization (BENCHMARKS.md: no measured speed-up
 * on AVX2, identical outputs).
 *
 * Pure: bytes in, bytes out. The formulations are kept side by side because which is fastest depends on the CPU's
 * int8 instructions (AVX2 only, AVX-VNNI, AVX-512 VNNI); BENCHMARKS.md has the measured table, `QUANT_FORMAT_DEFAULT`
 * the one the product writes.
 */
import { endianness } from 'node:os';
import onnxProto from 'onnx-proto';
import { ClipdexError } from '../errors.js';

const { onnx } = onnxProto;
type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
type ModelProto = onnxProto.onnx.IModelProto;

import { QUANT_FORMAT_DEFAULT, QUANT_FORMATS, type QuantFormat } from './quant-formats.js';

export { QUANT_FORMAT_DEFAULT, QUANT_FORMATS, type QuantFormat };

export interface QuantizeOptions {
  format?: QuantFormat;
  /**
   * Weights in [-64, 63] instead of [-127, 127]. On CPUs without VNNI, ORT's uint8 × int8 kernel sums pairs of
   * products in int16 (vpmaddubsw), which saturates for 255 · 127 · 2; 7-bit weights cannot. Default: true
   * for the formulations that multiply in int8 (their kernel choice is ORT's, per CPU, at run time).
   */
  reduceRange?: boolean;
  /** matmul-nbits only: weights per block along K (a power of two, ≥ 16). Default 32. */
  blockSize?: number;
  /** Weights with fewer elements stay float32 (tiny projections cost nothing and lose precision). Default 0. */
  minElements?: number;
  /**
   * `dynamic-quantize-matmul` and `matmul-integer`: linear layers that read the same activation (an attention block's
   * Q, K and V projections) become one quantized MatMul over their weights side by side, [K, N1 + N2 + …], biases
   * side by side, and a Split back into the outputs they had. One activation quantization and one wider GEMM instead
   * of three; the per-column weights and scales are the same numbers as unfused. Default: true.
   */
  fuseSharedInput?: boolean;
  /** Called after each weight is quantized. */
  onWeight?: (done: number, total: number) => void;
}

export interface QuantizeResult {
  bytes: Uint8Array;
  format: QuantFormat;
  /** Weights (initializers) quantized, and the MatMul/Gemm nodes rewritten to use them. */
  weights: number;
  nodes: number;
  /** Groups of linear layers on one activation fused into one quantized MatMul + Split (`fuseSharedInput`). */
  fused: number;
  /** Float32 weight bytes before, int8 (plus scale) bytes after. */
  bytesBefore: number;
  bytesAfter: number;
}

/** Ops whose presence means the graph is quantized already (ours, ORT's quantizer's, or an export's). */
const QUANTIZED_OPS = new Set([
  'MatMulInteger',
  'DynamicQuantizeMatMul',
  'MatMulIntegerToFloat',
  'MatMulNBits',
  'QLinearMatMul',
  'QGemm',
  'DynamicQuantizeLinear',
  'QuantizeLinear',
  'DequantizeLinear',
  'ConvInteger',
  'QLinearConv',
]);

const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const INT64 = 7;
const MS_DOMAIN = 'com.microsoft';

/** The quantized ops a graph already holds (empty: not quantized). */
export function quantizedOps(model: Uint8Array): string[] {
  const decoded = decodeModel(model);
  return [...new Set((decoded.graph?.node ?? []).map((n) => n.opType ?? '').filter((op) => QUANTIZED_OPS.has(op)))];
}

/**
 * Symmetric per-column quantization of a row-major [K, N] weight: scale_n = max|W[:, n]| / qmax, q = round(W / scale).
 * A zero column gets scale 1 (any scale reproduces it exactly; 0 would divide by zero downstream).
 */
export function quantizePerColumn(w: Float32Array, K: number, N: number, qmax: number): { q: Int8Array; scales: Float32Array } {
  const absMax = new Float32Array(N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n++) {
      const a = Math.abs(w[row + n]!);
      if (a > absMax[n]!) absMax[n] = a;
    }
  }
  const scales = new Float32Array(N);
  const inverse = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    const s = absMax[n]! > 0 ? absMax[n]! / qmax : 1;
    scales[n] = s;
    inverse[n] = 1 / s;
  }
  const q = new Int8Array(K * N);
  for (let k = 0; k < K; k++) {
    const row = k * N;
    for (let n = 0; n < N; n++) q[row + n] = clamp(Math.round(w[row + n]! * inverse[n]!), qmax);
  }
  return { q, scales };
}

function clamp(v: number, qmax: number): number {
  return Math.min(qmax, Math.max(-qmax, v));
}

/**
 * MatMulNBits' layout for bits = 8: B as uint8 [N, K/blockSize, blockSize] (each output column's K values, block by
 * block), one float scale per (column, block), zero point 128 (the op's default when none is given, so symmetric).
 */
export function quantizeNBits8(w: Float32Array, K: number, N: number, blockSize: number): { packed: Uint8Array; scales: Float32Array; blocks: number } {
  const blocks = Math.ceil(K / blockSize);
  const packed = new Uint8Array(N * blocks * blockSize).fill(128);
  const scales = new Float32Array(N * blocks);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < blocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let absMax = 0;
      for (let k = k0; k < k1; k++) absMax = Math.max(absMax, Math.abs(w[k * N + n]!));
      const s = absMax > 0 ? absMax / 127 : 1;
      scales[n * blocks + b] = s;
      const base = (n * blocks + b) * blockSize;
      for (let k = k0; k < k1; k++) packed[base + k - k0] = 128 + clamp(Math.round(w[k * N + n]! / s), 127);
    }
  }
  return { packed, scales, blocks };
}

/** Quantizes the MatMul/Gemm weights of one ONNX model (a tower file's bytes). */
export function quantizeGraph(modelBytes: Uint8Array, options: QuantizeOptions = {}): QuantizeResult {
  const format = options.format ?? QUANT_FORMAT_DEFAULT;
  if (!QUANT_FORMATS.includes(format)) throw new ClipdexError('INVALID_ARGUMENT', `unknown int8 format "${format}" (known: ${QUANT_FORMATS.join(', ')})`);
  const reduceRange = options.reduceRange ?? format !== 'weight-only';
  const qmax = reduceRange ? 63 : 127;
  const blockSize = options.blockSize ?? 32;
  if (format === 'matmul-nbits' && (blockSize < 16 || (blockSize & (blockSize - 1)) !== 0)) {
    throw new ClipdexError('INVALID_ARGUMENT', `MatMulNBits block size must be a power of two ≥ 16, got ${blockSize}`);
  }
  const model = decodeModel(modelBytes);
  const graph = model.graph;
  if (!graph) throw new ClipdexError('MODEL_INVALID', 'the ONNX file has no graph');
  const already = quantizedOps(modelBytes);
  if (already.length > 0) throw new ClipdexError('MODEL_UNSUPPORTED', `the graph is quantized already (it has ${already.join(', ')})`);

  const defaultOpset = Number(model.opsetImport?.find((o) => (o.domain ?? '') === '')?.version ?? 0);
  if (format === 'weight-only' && defaultOpset < 13) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `weight-only int8 needs opset 13 or later (per-axis DequantizeLinear); the graph is opset ${defaultOpset}`);
  }
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) initializers.set(t.name, t);
  const names = new Set<string>();
  for (const n of graph.node ?? []) for (const v of [...(n.input ?? []), ...(n.output ?? [])]) names.add(v);
  for (const t of initializers.keys()) names.add(t);
  let counter = 0;
  const fresh = (hint: string) => {
    let name = `${hint}_q8_${counter++}`;
    while (names.has(name)) name = `${hint}_q8_${counter++}`;
    names.add(name);
    return name;
  };

  const producers = new Map<string, NodeProto>();
  for (const n of graph.node ?? []) for (const v of n.output ?? []) producers.set(v, n);
  const weightOf = (node: NodeProto) => quantizableWeight(node, initializers, producers, options.minElements ?? 0);
  const targets = (graph.node ?? []).filter((node) => weightOf(node) !== null);
  const keyOf = (w: LinearWeight) => `${w.tensor.name}|${w.transB ? 1 : 0}`;
  const total = new Set(targets.map((n) => keyOf(weightOf(n)!))).size;
  /** Quantized weight per (initializer, transposed?): a weight shared by several nodes is stored once. */
  const done = new Map<string, { inputs: string[]; K: number; N: number }>();
  let bytesBefore = 0;
  let bytesAfter = 0;
  let rewritten = 0;
  let fusedGroups = 0;
  /** Source weights quantized (alone or in a fused group), for the count, the progress and bytesBefore. */
  const seen = new Set<string>();
  const see = (w: LinearWeight) => {
    const key = keyOf(w);
    if (seen.has(key)) return;
    seen.add(key);
    bytesBefore += (w.tensor.dims ?? []).map(Number).reduce((a, b) => a * b, 1) * 4;
    options.onWeight?.(seen.size, total);
  };
  const added: TensorProto[] = [];
  const out: NodeProto[] = [];

  const readers = new Map<string, NodeProto[]>();
  for (const n of graph.node ?? []) for (const v of n.input ?? []) readers.set(v, [...(readers.get(v) ?? []), n]);
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const isVector = (name: string | undefined, N: number) => {
    const t = name ? initializers.get(name) : undefined;
    const dims = (t?.dims ?? []).map(Number);
    return !!t && t.dataType === FLOAT && dims.length === 1 && dims[0] === N;
  };
  /** A MatMul whose only reader is `+ bias[N]` (a float32 initializer): the Add and the bias, or null. */
  const addedBias = (node: NodeProto, N: number): { add: NodeProto; bias: string } | null => {
    if (node.opType !== 'MatMul') return null;
    const y = node.output![0]!;
    const users = readers.get(y) ?? [];
    const add = users[0];
    if (users.length !== 1 || !add || add.opType !== 'Add' || (add.domain ?? '') !== '' || graphOutputs.has(y)) return null;
    const other = add.input![0] === y ? add.input![1] : add.input![0];
    return isVector(other, N) ? { add, bias: other! } : null;
  };
  /** A Gemm's C when it is a float32 [N] initializer ('' when it has none), or null (another shape: not folded). */
  const gemmBias = (node: NodeProto, N: number): string | null => {
    const c = node.input![2];
    if (!c) return '';
    return isVector(c, N) ? c : null;
  };

  // DynamicQuantizeMatMul takes the bias itself: a MatMul whose only reader is `+ bias[N]`, or a Gemm with a [N] C,
  // becomes one node.
  const folded = new Set<NodeProto>();
  const biasOf = (node: NodeProto, N: number): { add: NodeProto | null; bias: string } | null => {
    if (format !== 'dynamic-quantize-matmul') return null;
    if (node.opType === 'Gemm') {
      const c = gemmBias(node, N);
      return c ? { add: null, bias: c } : null;
    }
    return addedBias(node, N);
  };

  // Linear layers reading one activation (Q, K, V): fused into one quantized MatMul and a Split.
  const groups = new Map<NodeProto, FusedMember[]>();
  const members = new Set<NodeProto>();
  if ((options.fuseSharedInput ?? true) && (format === 'dynamic-quantize-matmul' || format === 'matmul-integer') && defaultOpset >= 11) {
    const byInput = new Map<string, FusedMember[]>();
    for (const node of targets) {
      const w = weightOf(node)!;
      const dims = (w.tensor.dims ?? []).map(Number);
      const [K, N] = w.transB ? [dims[1]!, dims[0]!] : [dims[0]!, dims[1]!];
      let m: FusedMember | null = null;
      if (node.opType === 'Gemm') {
        const c = gemmBias(node, N);
        if (c !== null) m = { node, weight: w, K, N, bias: c || null, add: null, output: node.output![0]! };
      } else {
        const b = addedBias(node, N);
        m = { node, weight: w, K, N, bias: b?.bias ?? null, add: b?.add ?? null, output: b ? b.add.output![0]! : node.output![0]! };
      }
      if (m) byInput.set(node.input![0]!, [...(byInput.get(node.input![0]!) ?? []), m]);
    }
    for (const group of byInput.values()) {
      if (group.length < 2 || group.some((m) => m.K !== group[0]!.K)) continue;
      // The fused node stands where the group's first member stood: its input exists there, and every reader of a
      // member's output comes after that member.
      groups.set(group[0]!.node, group);
      for (const m of group) {
        members.add(m.node);
        if (m.add) folded.add(m.add);
      }
    }
  }

  const fusedNodes = (group: FusedMember[]): NodeProto[] => {
    const K = group[0]!.K;
    const N = group.reduce((s, m) => s + m.N, 0);
    const w = new Float32Array(K * N);
    let offset = 0;
    for (const m of group) {
      const dims = (m.weight.tensor.dims ?? []).map(Number);
      const raw = floatData(m.weight.tensor);
      const part = m.weight.transB ? transpose(raw, dims[0]!, dims[1]!) : raw;
      for (let k = 0; k < K; k++) w.set(part.subarray(k * m.N, (k + 1) * m.N), k * N + offset);
      offset += m.N;
      see(m.weight);
    }
    // Per column: the same int8 weights and scales as each member quantized alone.
    const { q, scales } = quantizePerColumn(w, K, N, qmax);
    const base = `${group[0]!.weight.tensor.name}_fused${group.length}`;
    const qName = fresh(`${base}_int8`);
    const sName = fresh(`${base}_scale`);
    added.push(tensorProto(qName, INT8, [K, N], q), tensorProto(sName, FLOAT, [N], scales));
    bytesAfter += q.byteLength + scales.byteLength;
    let biasName = '';
    if (group.some((m) => m.bias)) {
      const bias = new Float32Array(N);
      let at = 0;
      for (const m of group) {
        if (m.bias) bias.set(floatData(initializers.get(m.bias)!), at);
        at += m.N;
      }
      biasName = fresh(`${base}_bias`);
      added.push(tensorProto(biasName, FLOAT, [N], bias));
    }
    const x = group[0]!.node.input![0]!;
    const hint = `${group[0]!.node.name || group[0]!.output}_fused`;
    const product = fresh(`${hint}_out`);
    const nodes =
      format === 'dynamic-quantize-matmul'
        ? [
            onnx.NodeProto.create({
              opType: 'DynamicQuantizeMatMul',
              input: biasName ? [x, qName, sName, '', biasName] : [x, qName, sName],
              output: [product],
              name: fresh(`${hint}_DynamicQuantizeMatMul`),
              domain: MS_DOMAIN,
            }),
          ]
        : rewrite(
            onnx.NodeProto.create({ opType: biasName ? 'Gemm' : 'MatMul', input: [x, qName, biasName], output: [product], name: hint }),
            { inputs: [qName, sName], K, N },
            format,
            blockSize,
            fresh,
          );
    const sizes = group.map((m) => m.N);
    const outputs = group.map((m) => m.output);
    const splitName = fresh(`${hint}_Split`);
    if (defaultOpset >= 13) {
      const splitSizes = fresh(`${hint}_split_sizes`);
      added.push(tensorProto(splitSizes, INT64, [sizes.length], BigInt64Array.from(sizes, BigInt)));
      nodes.push(onnx.NodeProto.create({ opType: 'Split', input: [product, splitSizes], output: outputs, name: splitName, attribute: [intAttr('axis', -1)] }));
    } else {
      nodes.push(
        onnx.NodeProto.create({
          opType: 'Split',
          input: [product],
          output: outputs,
          name: splitName,
          attribute: [intAttr('axis', -1), onnx.AttributeProto.create({ name: 'split', type: onnx.AttributeProto.AttributeType.INTS, ints: sizes })],
        }),
      );
    }
    return nodes;
  };

  for (const node of graph.node ?? []) {
    if (folded.has(node)) continue;
    const group = groups.get(node);
    if (group) {
      out.push(...fusedNodes(group));
      rewritten += group.length;
      fusedGroups++;
      continue;
    }
    if (members.has(node)) continue;
    const weight = weightOf(node);
    if (!weight) {
      out.push(node);
      continue;
    }
    const { tensor, transB } = weight;
    const cacheKey = keyOf(weight);
    let q = done.get(cacheKey);
    if (!q) {
      const dims = (tensor.dims ?? []).map(Number);
      const raw = floatData(tensor);
      const [K, N] = transB ? [dims[1]!, dims[0]!] : [dims[0]!, dims[1]!];
      const w = transB ? transpose(raw, dims[0]!, dims[1]!) : raw;
      const base = tensor.name!;
      if (format === 'matmul-nbits') {
        const { packed, scales, blocks } = quantizeNBits8(w, K, N, blockSize);
        const qName = fresh(`${base}_b`);
        const sName = fresh(`${base}_scales`);
        added.push(tensorProto(qName, UINT8, [N, blocks, blockSize], packed), tensorProto(sName, FLOAT, [N * blocks], scales));
        bytesAfter += packed.byteLength + scales.byteLength;
        q = { inputs: [qName, sName], K, N };
      } else {
        const { q: qw, scales } = quantizePerColumn(w, K, N, qmax);
        const qName = fresh(`${base}_int8`);
        const sName = fresh(`${base}_scale`);
        added.push(tensorProto(qName, INT8, [K, N], qw), tensorProto(sName, FLOAT, [N], scales));
        bytesAfter += qw.byteLength + scales.byteLength;
        const inputs = [qName, sName];
        if (format === 'weight-only') {
          const zName = fresh(`${base}_zero`);
          added.push(tensorProto(zName, INT8, [N], new Int8Array(N)));
          inputs.push(zName);
        }
        q = { inputs, K, N };
      }
      done.set(cacheKey, q);
      see(weight);
    }
    rewritten++;
    const bias = biasOf(node, q.N);
    if (bias) {
      if (bias.add) folded.add(bias.add);
      out.push(
        onnx.NodeProto.create({
          opType: 'DynamicQuantizeMatMul',
          input: [node.input![0]!, q.inputs[0]!, q.inputs[1]!, '', bias.bias],
          output: [(bias.add ?? node).output![0]!],
          name: fresh(`${node.name || node.output![0]}_DynamicQuantizeMatMul`),
          domain: MS_DOMAIN,
        }),
      );
      continue;
    }
    out.push(...rewrite(node, q, format, blockSize, fresh));
  }

  // A Transpose that only fed a weight we quantized (an export's W^T) goes; then an initializer nothing reads any
  // more (every user was rewritten) leaves the file; one still read stays.
  const read = new Set<string>(graphOutputs);
  for (const n of out) for (const v of n.input ?? []) read.add(v);
  const kept = out.filter((n) => !(n.opType === 'Transpose' && initializers.has(n.input?.[0] ?? '') && !read.has(n.output?.[0] ?? '')));
  const used = new Set<string>();
  for (const n of kept) for (const v of n.input ?? []) used.add(v);
  for (const o of graph.output ?? []) if (o.name) used.add(o.name);
  graph.node = kept;
  graph.initializer = [...(graph.initializer ?? []).filter((t) => used.has(t.name ?? '')), ...added];
  graph.input = (graph.input ?? []).filter((i) => !initializers.has(i.name ?? '') || used.has(i.name ?? ''));
  if (format === 'dynamic-quantize-matmul' || format === 'matmul-nbits') {
    model.opsetImport ??= [];
    if (!model.opsetImport.some((o) => o.domain === MS_DOMAIN)) model.opsetImport.push(onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: 1 }));
  }
  return { bytes: onnx.ModelProto.encode(model).finish(), format, weights: seen.size, nodes: rewritten, fused: fusedGroups, bytesBefore, bytesAfter };
}

function decodeModel(bytes: Uint8Array): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new ClipdexError('MODEL_INVALID', `not a readable ONNX model: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

interface LinearWeight {
  tensor: TensorProto;
  /** The initializer is [N, K] (Gemm transB, or an export's Transpose in front of the MatMul). */
  transB: boolean;
}

/** One linear layer of a group fused on a shared input: its weight, its bias ([N] initializer) and the name its readers read. */
interface FusedMember {
  node: NodeProto;
  weight: LinearWeight;
  K: number;
  N: number;
  bias: string | null;
  /** The MatMul's `+ bias` Add, folded into the fused node. */
  add: NodeProto | null;
  output: string;
}

/**
 * The float32 2-D initializer a MatMul (input B) or Gemm (input B, plain alpha, A not transposed) multiplies by,
 * directly or through a 2-D Transpose (exports that keep PyTorch's [out, in] Linear weight), or null when the node is
 * not one we rewrite (activation × activation, batched weights, other types).
 */
function quantizableWeight(
  node: NodeProto,
  initializers: Map<string, TensorProto>,
  producers: Map<string, NodeProto>,
  minElements: number,
): LinearWeight | null {
  if ((node.domain ?? '') !== '') return null;
  if (node.opType !== 'MatMul' && node.opType !== 'Gemm') return null;
  const [a, bName] = node.input ?? [];
  if (!a || !bName || initializers.has(a)) return null;
  let tensor = initializers.get(bName);
  let transposed = false;
  const producer = producers.get(bName);
  if (!tensor && producer && producer.opType === 'Transpose' && (producer.domain ?? '') === '') {
    const perm = producer.attribute?.find((x) => x.name === 'perm')?.ints?.map(Number);
    if (!perm || (perm[0] === 1 && perm[1] === 0 && perm.length === 2)) {
      tensor = initializers.get(producer.input?.[0] ?? '');
      transposed = true;
    }
  }
  if (!tensor || tensor.dataType !== FLOAT || (tensor.dims ?? []).length !== 2) return null;
  if (tensor.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `weight ${tensor.name} is stored in an external data file; only self-contained ONNX files are quantized`);
  }
  const dims = (tensor.dims ?? []).map(Number);
  if (dims[0]! * dims[1]! < minElements) return null;
  if (node.opType === 'Gemm') {
    // A scaled product or bias is left float32: CLIP exports write neither.
    if (attrInt(node, 'transA', 0) !== 0 || attrFloat(node, 'alpha', 1) !== 1 || attrFloat(node, 'beta', 1) !== 1) return null;
    return { tensor, transB: (attrInt(node, 'transB', 0) === 1) !== transposed };
  }
  return { tensor, transB: transposed };
}

/** The replacement nodes for one MatMul/Gemm; the original output name is kept so the rest of the graph is untouched. */
function rewrite(node: NodeProto, q: { inputs: string[]; K: number; N: number }, format: QuantFormat, blockSize: number, fresh: (hint: string) => string): NodeProto[] {
  const x = node.input![0]!;
  const y = node.output![0]!;
  const hint = node.name || y;
  // Gemm's bias is added after the product; MatMul has none.
  const bias = node.opType === 'Gemm' ? node.input![2] : undefined;
  const product = bias ? fresh(`${hint}_mm`) : y;
  const nodes: NodeProto[] = [];
  const make = (opType: string, inputs: string[], outputs: string[], attrs: InstanceType<typeof onnx.AttributeProto>[] = [], domain = '') =>
    nodes.push(onnx.NodeProto.create({ opType, input: inputs, output: outputs, name: fresh(`${hint}_${opType}`), attribute: attrs, domain }));
  const [qName, sName, zName] = q.inputs as [string, string, string?];
  switch (format) {
    case 'matmul-integer': {
      const xq = fresh(`${hint}_xq`);
      const xs = fresh(`${hint}_xs`);
      const xz = fresh(`${hint}_xz`);
      make('DynamicQuantizeLinear', [x], [xq, xs, xz]);
      const acc = fresh(`${hint}_i32`);
      make('MatMulInteger', [xq, qName, xz], [acc]);
      const accF = fresh(`${hint}_f32`);
      make('Cast', [acc], [accF], [intAttr('to', FLOAT)]);
      const scale = fresh(`${hint}_scale`);
      make('Mul', [xs, sName], [scale]);
      make('Mul', [accF, scale], [product]);
      break;
    }
    case 'dynamic-quantize-matmul':
      make('DynamicQuantizeMatMul', [x, qName, sName], [product], [], MS_DOMAIN);
      break;
    case 'matmul-nbits':
      make(
        'MatMulNBits',
        [x, qName, sName],
        [product],
        [intAttr('K', q.K), intAttr('N', q.N), intAttr('bits', 8), intAttr('block_size', blockSize), intAttr('accuracy_level', 4)],
        MS_DOMAIN,
      );
      break;
    case 'weight-only': {
      const wf = fresh(`${hint}_w`);
      make('DequantizeLinear', [qName, sName, zName!], [wf], [intAttr('axis', 1)]);
      make('MatMul', [x, wf], [product]);
      break;
    }
  }
  if (bias) {
    make('Add', [product, bias], [y]);
  }
  return nodes;
}

function intAttr(name: string, i: number) {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INT, i });
}

function attrInt(node: NodeProto, name: string, fallback: number): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? Number(a.i ?? 0) : fallback;
}

function attrFloat(node: NodeProto, name: string, fallback: number): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? Number(a.f ?? 0) : fallback;
}

function floatData(t: TensorProto): Float32Array {
  const count = (t.dims ?? []).map(Number).reduce((a, b) => a * b, 1);
  if (t.rawData && t.rawData.length > 0) {
    if (t.rawData.length !== count * 4) throw new ClipdexError('MODEL_INVALID', `initializer ${t.name}: ${t.rawData.length} bytes for ${count} floats`);
    // A copy: protobufjs hands out Buffers, whose slice() shares (and may be offset into) a pooled ArrayBuffer.
    if (endianness() === 'LE') return new Float32Array(Uint8Array.from(t.rawData).buffer);
    const dv = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    return Float32Array.from({ length: count }, (_, i) => dv.getFloat32(i * 4, true));
  }
  if (t.floatData && t.floatData.length === count) return Float32Array.from(t.floatData);
  throw new ClipdexError('MODEL_INVALID', `initializer ${t.name}: no data for ${count} floats`);
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

function tensorProto(name: string, dataType: number, dims: number[], data: Int8Array | Uint8Array | Float32Array | BigInt64Array): TensorProto {
  let raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  if (endianness() !== 'LE' && (data instanceof Float32Array || data instanceof BigInt64Array)) {
    raw = new Uint8Array(data.byteLength);
    const dv = new DataView(raw.buffer);
    if (data instanceof Float32Array) data.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    else data.forEach((v, i) => dv.setBigInt64(i * 8, v, true));
  }
  return onnx.TensorProto.create({ name, dataType, dims, rawData: raw });
}
